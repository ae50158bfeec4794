//! Helper hooks (`tcp/hhook.rs`) on whole connections over the simulated link: each point
//! fires with the right data, helper data exists only on connections made while the
//! helper was registered and is freed when they are discarded, and unregistering stops
//! the calls.

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::sim_transfer::transfer;
use crate::hhook::{AckDoneCtx, ConnCtx, Helper, HookPoint, HookPoints, InputCtx, OutputCtx};
use crate::sim::{LinkConfig, Sim};
use crate::tcp::segment::TcpFlags;
use crate::tcp::tcb::State;
use crate::TcpConfig;

/// What a hook saw.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Ev {
    Input {
        ack: u32,
        acked: u32,
        len: usize,
        snd_una: u32,
    },
    AckDone {
        rate: bool,
        snd_una: u32,
    },
    Output {
        seq: u32,
        len: usize,
        retransmit: bool,
        flags: TcpFlags,
    },
    Established(State),
    Closed(State),
}

/// Records every hook call, per connection (by its local end), and counts the
/// per-connection data alive.
pub(super) struct Recorder {
    pub name: &'static str,
    pub log: Arc<Mutex<Vec<(SocketAddrV4, Ev)>>>,
    pub live: Arc<AtomicUsize>,
    /// Data ever made.
    pub made: Arc<AtomicUsize>,
}

impl Recorder {
    pub(super) fn new(name: &'static str) -> Recorder {
        Recorder {
            name,
            log: Arc::default(),
            live: Arc::default(),
            made: Arc::default(),
        }
    }

    fn push(&self, vars_local: SocketAddrV4, ev: Ev) {
        self.log.lock().unwrap().push((vars_local, ev));
    }
}

/// A recorder's per-connection data: counted while it exists.
pub(super) struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Helper for Recorder {
    type Data = Live;

    fn name(&self) -> &str {
        self.name
    }

    fn hook_points(&self) -> HookPoints {
        HookPoints::of(&HookPoint::ALL)
    }

    fn new_conn_data(&self) -> Live {
        self.live.fetch_add(1, Ordering::SeqCst);
        self.made.fetch_add(1, Ordering::SeqCst);
        Live(self.live.clone())
    }

    fn input(&self, _: &mut Live, c: &InputCtx<'_>) {
        let ev = Ev::Input {
            ack: c.ack,
            acked: c.acked,
            len: c.payload_len,
            snd_una: c.vars.snd_una,
        };
        self.push(c.vars.local, ev);
    }

    fn ack_done(&self, _: &mut Live, c: &AckDoneCtx) {
        let ev = Ev::AckDone {
            rate: c.rate.is_some(),
            snd_una: c.vars.snd_una,
        };
        self.push(c.vars.local, ev);
    }

    fn output(&self, _: &mut Live, c: &OutputCtx) {
        let ev = Ev::Output {
            seq: c.seq,
            len: c.len,
            retransmit: c.retransmit,
            flags: c.flags,
        };
        self.push(c.vars.local, ev);
    }

    fn established(&self, _: &mut Live, c: &ConnCtx) {
        self.push(c.vars.local, Ev::Established(c.vars.state));
    }

    fn closed(&self, _: &mut Live, c: &ConnCtx) {
        self.push(c.vars.local, Ev::Closed(c.vars.state));
    }
}

fn short_time_wait() -> TcpConfig {
    TcpConfig {
        time_wait: Duration::from_millis(500),
        ..Default::default()
    }
}

#[test]
fn hooks_fire_at_each_point_with_the_data() {
    let mut sim = Sim::with_config(1, LinkConfig::default(), 1, short_time_wait());
    let (client_rec, server_rec) = (Recorder::new("rec"), Recorder::new("rec"));
    let (clog, slog) = (client_rec.log.clone(), server_rec.log.clone());
    let (clive, slive) = (client_rec.live.clone(), server_rec.live.clone());
    let smade = server_rec.made.clone();
    sim.hosts[0].net().register_helper(client_rec).unwrap();
    sim.hosts[1].net().register_helper(server_rec).unwrap();
    assert_eq!(sim.hosts[0].net().helpers(), ["rec"]);
    let total = 300_000;
    let (got, client, server) = transfer(&mut sim, total, Duration::from_secs(30));
    assert_eq!(got.len(), total);
    assert_eq!(client.lock().tcb.helper_names(), ["rec"]);
    // One for the connection: none for the SYN cache's SYN,ACK.
    assert_eq!(smade.load(Ordering::SeqCst), 1);
    assert_eq!(
        (clive.load(Ordering::SeqCst), slive.load(Ordering::SeqCst)),
        (1, 1)
    );
    let iss = client.lock().tcb.iss().0;
    // Both ends close; the client leaves TIME-WAIT after 500 ms.
    assert!(sim.run_until(Duration::from_secs(5), |_| {
        client.lock().tcb.state() == State::Closed && server.lock().tcb.state() == State::Closed
    }));
    sim.run_until(Duration::from_millis(10), |_| false);
    // Discarded: the data is gone on both ends.
    assert_eq!(
        (clive.load(Ordering::SeqCst), slive.load(Ordering::SeqCst)),
        (0, 0)
    );
    assert!(client.lock().tcb.helper_names().is_empty());

    let log = clog.lock().unwrap().clone();
    let evs: Vec<&Ev> = log.iter().map(|(_, e)| e).collect();
    // The SYN first, ESTABLISHED once, Closed once and last.
    assert!(
        matches!(evs[0], Ev::Output { seq, flags, .. } if *seq == iss && flags.contains(TcpFlags::SYN))
    );
    let est: Vec<usize> = (0..evs.len())
        .filter(|&i| matches!(evs[i], Ev::Established(_)))
        .collect();
    assert_eq!(est, [1], "{:?}", &evs[..4]);
    assert_eq!(evs[1], &Ev::Established(State::Established));
    assert_eq!(evs.last(), Some(&&Ev::Closed(State::Closed)));
    assert_eq!(evs.iter().filter(|e| matches!(e, Ev::Closed(_))).count(), 1);
    // Output: every byte once as new data, in order, then the FIN.
    let mut next = iss.wrapping_add(1);
    let mut fin = false;
    for e in &evs {
        if let Ev::Output {
            seq,
            len,
            retransmit: false,
            flags,
        } = e
        {
            if *len > 0 {
                assert_eq!(*seq, next, "new data in order");
                next = next.wrapping_add(*len as u32);
            }
            fin |= flags.contains(TcpFlags::FIN);
        }
    }
    assert_eq!(next.wrapping_sub(iss.wrapping_add(1)) as usize, total);
    assert!(fin);
    // Input: the ACKs acknowledge everything after the SYN (the data and the FIN), each
    // seen before SND.UNA moves; every Input has its AckDone after it.
    let acked: u64 = evs
        .iter()
        .map(|e| match e {
            Ev::Input {
                ack,
                acked,
                snd_una,
                ..
            } => {
                assert_eq!(ack.wrapping_sub(*snd_una), *acked);
                *acked as u64
            }
            _ => 0,
        })
        .sum();
    assert_eq!(acked, total as u64 + 1);
    let inputs = evs.iter().filter(|e| matches!(e, Ev::Input { .. })).count();
    let dones = evs
        .iter()
        .filter(|e| matches!(e, Ev::AckDone { .. }))
        .count();
    assert_eq!(inputs, dones);
    assert!(evs
        .iter()
        .any(|e| matches!(e, Ev::AckDone { rate: true, .. })));
    for w in evs.windows(2) {
        if let Ev::Input { ack, .. } = w[0] {
            assert!(matches!(w[1], Ev::AckDone { snd_una, .. } if snd_una == ack));
        }
    }
    // The server: a passive open, established by the handshake's ACK; the data in its
    // Input contexts.
    let slog = slog.lock().unwrap().clone();
    assert!(
        matches!(slog[0].1, Ev::Output { flags, .. } if flags.contains(TcpFlags::SYN | TcpFlags::ACK))
    );
    assert!(slog
        .iter()
        .any(|(_, e)| *e == Ev::Established(State::Established)));
    let data_in: usize = slog
        .iter()
        .map(|(_, e)| match e {
            Ev::Input { len, .. } => *len,
            _ => 0,
        })
        .sum();
    assert_eq!(data_in, total);
    assert_eq!(
        slog.last().map(|(_, e)| e),
        Some(&Ev::Closed(State::Closed))
    );
}

/// Sends `n` bytes on `conn` and runs until they are acknowledged.
fn send_acked(sim: &mut Sim, conn: &Arc<crate::tcp::pcb::Conn>, n: usize) {
    let data = vec![7u8; n];
    let mut sent = 0;
    let goal = conn.lock().tcb.stats().bytes_acked + n as u64;
    let ok = sim.run_until(Duration::from_secs(10), |sim| {
        if sent < n {
            sent += sim.send(0, conn, &data[sent..]);
        }
        conn.lock().tcb.stats().bytes_acked >= goal
    });
    assert!(ok);
}

fn established(sim: &mut Sim, conn: &Arc<crate::tcp::pcb::Conn>) {
    assert!(
        sim.run_until(Duration::from_secs(5), |_| conn.lock().tcb.state()
            == State::Established)
    );
}

#[test]
fn data_only_for_connections_made_while_registered_and_unregistering_stops_calls() {
    let mut sim = Sim::new(2, LinkConfig::default(), 2);
    let _l = sim.listen(1, 80, 16);
    let before = sim.connect(0, 80);
    established(&mut sim, &before);

    let rec = Recorder::new("rec");
    let (log, live) = (rec.log.clone(), rec.live.clone());
    let net = sim.hosts[0].net();
    net.register_helper(rec).unwrap();
    assert!(matches!(
        net.register_helper(Recorder::new("rec")),
        Err(crate::hhook::HelperError::Exists(_))
    ));
    // Connections that existed before registration get nothing (khelp's rule).
    send_acked(&mut sim, &before, 20_000);
    assert!(before.lock().tcb.helper_names().is_empty());
    assert!(log.lock().unwrap().is_empty());
    assert_eq!(live.load(Ordering::SeqCst), 0);

    let after = sim.connect(0, 80);
    established(&mut sim, &after);
    assert_eq!(after.lock().tcb.helper_names(), ["rec"]);
    assert_eq!(live.load(Ordering::SeqCst), 1);
    send_acked(&mut sim, &after, 20_000);
    let local = after.lock().tcb.local();
    let n = log.lock().unwrap().len();
    assert!(n > 10);
    assert!(log.lock().unwrap().iter().all(|(l, _)| *l == local));

    // Unregistered: no more calls; the data goes at the connection's next hook point.
    assert!(net.unregister_helper("rec"));
    assert!(!net.unregister_helper("rec"));
    assert!(net.helpers().is_empty());
    send_acked(&mut sim, &after, 20_000);
    assert_eq!(log.lock().unwrap().len(), n);
    assert_eq!(live.load(Ordering::SeqCst), 0);
    assert!(after.lock().tcb.helper_names().is_empty());

    // Registered again: a new connection gets it, the open ones still do not.
    let rec = Recorder::new("rec");
    let live2 = rec.live.clone();
    net.register_helper(rec).unwrap();
    let third = sim.connect(0, 80);
    established(&mut sim, &third);
    assert_eq!(live2.load(Ordering::SeqCst), 1);
    assert!(after.lock().tcb.helper_names().is_empty());
}
