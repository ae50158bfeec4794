//! A SYN for a 4-tuple the server holds in TIME-WAIT reopens it at once (RFC 1122
//! §4.2.2.13, as Linux does), instead of the ACK / RST / SYN-retry exchange that makes a
//! client cycling through its ports wait a SYN timeout.

use std::sync::Arc;
use std::time::Duration;

use crate::sim::{LinkConfig, Sim};
use crate::tcp::pcb::{Conn, Listener};
use crate::tcp::segment::{Segment, TcpFlags, TcpOptions};
use crate::tcp::tcb::State;

/// One connection from port 40000 whose server closes first; returns the server's
/// side once it is in TIME-WAIT and the client's side is gone.
fn server_in_time_wait(sim: &mut Sim, listener: &Listener) -> Arc<Conn> {
    let c = sim.connect_from(0, 40000, 80);
    let mut server = None;
    assert!(sim.run_until(Duration::from_secs(5), |sim| {
        if server.is_none() {
            server = sim.accept(listener);
        }
        server.is_some()
    }));
    let s = server.expect("accepted");
    sim.close(1, &s);
    assert!(sim.run_until(Duration::from_secs(5), |_| c.lock().tcb.fin_received()));
    sim.close(0, &c);
    assert!(sim.run_until(Duration::from_secs(5), |sim| {
        s.lock().tcb.state() == State::TimeWait && sim.hosts[0].tcp.pcbs.lookup(&c.tuple).is_none()
    }));
    s
}

#[test]
fn a_new_syn_reopens_a_time_wait_tuple_at_once() {
    let mut sim = Sim::new(31, LinkConfig::default(), 1);
    let listener = sim.listen(1, 80, 16);
    let old = server_in_time_wait(&mut sim, &listener);
    let old_snd_max = old.lock().tcb.snd_max();
    let start = sim.now;
    let c2 = sim.connect_from(0, 40000, 80);
    let mut s2 = None;
    assert!(sim.run_until(Duration::from_secs(5), |sim| {
        if s2.is_none() {
            s2 = sim.accept(&listener);
        }
        s2.is_some() && c2.lock().tcb.state() == State::Established
    }));
    // One round trip or so (5 ms each way), not a SYN retransmission timeout.
    assert!(
        sim.now - start < Duration::from_millis(100),
        "{:?}",
        sim.now - start
    );
    assert_eq!(sim.counter(1, "tcp.time_wait_reopened"), 1);
    assert_eq!(sim.counter(1, "tcp.rst_tx"), 0);
    assert_eq!(sim.counter(0, "tcp.rst_tx"), 0);
    let s2 = s2.expect("accepted");
    assert_eq!(s2.tuple, old.tuple);
    // RFC 1122 §4.2.2.13 (1): the new ISN is beyond everything the old one sent.
    assert!(s2.lock().tcb.iss() > old_snd_max);
    assert_eq!(old.lock().tcb.state(), State::Closed);
}

#[test]
fn old_duplicate_syns_and_other_segments_leave_time_wait_alone() {
    let mut sim = Sim::new(32, LinkConfig::default(), 1);
    let listener = sim.listen(1, 80, 16);
    let s = server_in_time_wait(&mut sim, &listener);
    let tcb = &s.lock().tcb;
    let (rcv_nxt, ts_recent) = (tcb.rcv_nxt(), tcb.ts_recent());
    assert!(tcb.ts_enabled());
    let seg = |seq, flags, ts: Option<u32>| Segment {
        src_port: 40000,
        dst_port: 80,
        seq,
        ack: crate::tcp::seq::Seq(0),
        flags,
        window: 1000,
        urgent: 0,
        options: TcpOptions {
            timestamps: ts.map(|v| (v, 0)),
            ..Default::default()
        },
        payload: &[],
        ecn: Default::default(),
    };
    let syn = TcpFlags::SYN;
    // New: a later sequence number, or a newer timestamp.
    assert_eq!(
        tcb.time_wait_reopen(&seg(rcv_nxt + 1000, syn, Some(ts_recent + 1))),
        Some(tcb.snd_max())
    );
    assert!(tcb
        .time_wait_reopen(&seg(rcv_nxt, syn, Some(ts_recent + 5)))
        .is_some());
    // Old duplicates: an older timestamp (PAWS), or no news at all.
    assert!(tcb
        .time_wait_reopen(&seg(rcv_nxt + 1000, syn, Some(ts_recent - 1)))
        .is_none());
    assert!(tcb
        .time_wait_reopen(&seg(rcv_nxt, syn, Some(ts_recent)))
        .is_none());
    // Not a bare SYN.
    for f in [TcpFlags::ACK, TcpFlags::RST, TcpFlags::FIN] {
        assert!(tcb
            .time_wait_reopen(&seg(rcv_nxt + 1000, syn | f, None))
            .is_none());
    }
    assert!(tcb
        .time_wait_reopen(&seg(rcv_nxt + 1000, TcpFlags::ACK, None))
        .is_none());
}
