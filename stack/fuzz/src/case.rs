//! One fuzz case: the fuzzed stack and a peer stack with connections in every TCP state
//! between them, then fuzzed frames, relayed (sometimes mutated) traffic, application
//! calls and clock jumps, checking after every step.

use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use smoltcp::wire::EthernetAddress;
use xstack::sim::{SimStack, SimStackConfig};
use xstack::{TcpListener, TcpStream};

use crate::check;
use crate::frames::{be16, ETH, ETH_IPV4, FIN, PEER_IP, PEER_MAC, SYN, TARGET_IP};
use crate::gen::{self, Knowledge};
use crate::target::{apply_knobs, Event, Setup, SharedTrace, Target, KNOBS, MTU};

/// Which of the peer's frames a blackhole rule lets through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Nothing,
    Syn,
    Fin,
}

/// Drops TCP frames between the target's port `port` and the peer's `peer_port` in one
/// direction: how connections are held in SYN-SENT, SYN-RCVD, FIN-WAIT-1, LAST-ACK and
/// CLOSING.
#[derive(Clone, Copy)]
struct Rule {
    to_target: bool,
    port: u16,
    peer_port: Option<u16>,
    pass: Pass,
}

impl Rule {
    fn drops(&self, f: &[u8], to_target: bool) -> bool {
        if to_target != self.to_target
            || f.len() < ETH + 34
            || be16(f, 12) != ETH_IPV4
            || f[ETH + 9] != 6
        {
            return false;
        }
        let l4 = ETH + (f[ETH] & 0x0f) as usize * 4;
        let Some(tcp) = f.get(l4..l4 + 14) else {
            return false;
        };
        let (src, dst) = (be16(tcp, 0), be16(tcp, 2));
        let (ours, theirs) = if to_target { (dst, src) } else { (src, dst) };
        if ours != self.port || self.peer_port.is_some_and(|p| p != theirs) {
            return false;
        }
        match self.pass {
            Pass::Nothing => true,
            Pass::Syn => tcp[13] & SYN == 0,
            Pass::Fin => tcp[13] & FIN == 0,
        }
    }
}

/// A random configuration of the fuzzed stack.
fn setup(rng: &mut StdRng) -> Setup {
    let buf =
        |rng: &mut StdRng| [256 * 1024, 256 * 1024, 16 * 1024, 4096, 1][rng.random_range(0..5)];
    Setup {
        workers: rng.random_range(1..3),
        ecn: rng.random_bool(0.5),
        timestamps: rng.random_bool(0.8),
        sack: rng.random_bool(0.8),
        window_scaling: rng.random_bool(0.8),
        lro: rng.random_bool(0.3),
        csum_offload: rng.random_bool(0.3),
        sndbuf: buf(rng),
        rcvbuf: buf(rng),
        mss: [1460, 1460, 536, 88][rng.random_range(0..4)],
    }
}

/// Non-default TCP settings for the connections opened after setup: each in about one
/// case in four.
fn knobs(rng: &mut StdRng) -> u32 {
    (0..KNOBS.len())
        .filter(|_| rng.random_bool(0.25))
        .fold(0, |k, i| k | 1 << i)
}

/// The fuzzed stack, its peer and the fuzzer's state.
pub struct World {
    pub target: Target,
    peer: SimStack,
    peer_listener: Option<TcpListener>,
    peer_streams: Vec<TcpStream>,
    know: Knowledge,
    rules: Vec<Rule>,
    rng: StdRng,
    start: Instant,
    to_peer: Vec<Vec<u8>>,
    /// Frames for the peer held until the clock next moves (a link with delay, so
    /// data stays in flight while fuzzed ACKs and SACKs arrive).
    held: Vec<Vec<u8>>,
    /// Setup is done: the link holds, drops and mutates frames.
    fuzzing: bool,
}

type Res<T = ()> = Result<T, String>;

impl World {
    /// A case's world for `seed`, with one or two workers on the fuzzed stack; its
    /// events are recorded in `log`.
    pub fn new(seed: u64, log: SharedTrace) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let start = Instant::now();
        let target = Target::new(setup(&mut rng), start, log);
        let mut pc = SimStackConfig::new(EthernetAddress(PEER_MAC), PEER_IP, start);
        pc.isn_key[0] = 1;
        // The peer's own configuration varies too: it shapes what reaches the target.
        let p = setup(&mut rng);
        pc.tcp.ecn = target.log.borrow().setup.ecn;
        (pc.tcp.timestamps, pc.tcp.sack) = (p.timestamps, p.sack);
        (pc.tcp.window_scaling, pc.tcp.mss) = (p.window_scaling, p.mss);
        (pc.tcp.sndbuf, pc.tcp.rcvbuf) = (p.sndbuf, p.rcvbuf);
        World {
            target,
            peer: SimStack::new(pc),
            peer_listener: None,
            peer_streams: Vec::new(),
            know: Knowledge::default(),
            rules: Vec::new(),
            rng,
            start,
            to_peer: Vec::new(),
            held: Vec::new(),
            fuzzing: false,
        }
    }

    /// Applies an event to the target and queues what it sends for the peer.
    fn ev(&mut self, ev: Event) -> Res {
        for (f, seg) in self.target.apply(ev)? {
            self.know.learn_sent(&f, seg.as_ref());
            if !self.rules.iter().any(|r| r.drops(&f, false)) {
                self.to_peer.push(f);
            }
        }
        Ok(())
    }

    /// Delivers frames both ways until neither side sends (or a bound on rounds).
    fn pump(&mut self) -> Res {
        for _ in 0..64 {
            for f in std::mem::take(&mut self.to_peer) {
                match self.fuzzing.then(|| self.rng.random_range(0..10)) {
                    Some(0) => {}
                    Some(1..=4) => self.held.push(f),
                    _ => self.peer.inject_any(f),
                }
            }
            self.peer.run_now();
            let sent = self.peer.take_sent();
            if sent.is_empty() {
                return Ok(());
            }
            let mut batch = Vec::new();
            for mut f in sent {
                check::sent_frame(&f, PEER_MAC, PEER_IP, MTU)
                    .map_err(|e| format!("peer sent: {e}"))?;
                if self.rules.iter().any(|r| r.drops(&f, true)) {
                    continue;
                }
                if self.fuzzing && self.rng.random_bool(0.1) {
                    gen::mutate(&mut self.rng, &mut f);
                }
                self.know.learn_received(&f);
                batch.push(f);
            }
            // What the peer sent at once arrives as one batch, or frame by frame.
            if self.rng.random_bool(0.5) {
                self.ev(Event::Rx(batch))?;
            } else {
                for f in batch {
                    self.ev(Event::Rx(vec![f]))?;
                }
            }
        }
        Ok(())
    }

    /// Moves both clocks by `dt` and relays what that makes them send.
    fn advance(&mut self, dt: Duration) -> Res {
        let ns = self.target.elapsed() + dt.as_nanos() as u64;
        self.ev(Event::At(ns))?;
        self.peer.advance_to(self.start + Duration::from_nanos(ns));
        for f in std::mem::take(&mut self.held) {
            self.peer.inject_any(f);
        }
        self.pump()
    }

    fn settle(&mut self) -> Res {
        self.pump()?;
        for _ in 0..5 {
            self.advance(Duration::from_millis(50))?;
        }
        Ok(())
    }

    fn peer_connect(&mut self, port: u16) -> Res {
        let s = TcpStream::connect_nonblocking(self.peer.net(), SocketAddrV4::new(TARGET_IP, port))
            .map_err(|e| format!("peer connect: {e}"))?;
        self.peer_streams.push(s);
        self.peer.run_now();
        self.settle()
    }

    /// The target connects to the peer's port 80, which the peer accepts: returns the
    /// target's stream index, the peer's stream index and the target's local port.
    fn connection(&mut self) -> Res<(usize, usize, u16)> {
        let i = self.target.streams();
        self.ev(Event::Connect(SocketAddrV4::new(PEER_IP, 80)))?;
        self.settle()?;
        let l = self.peer_listener.as_ref().ok_or("no peer listener")?;
        let (s, _) = l.accept().map_err(|e| format!("peer accept: {e}"))?;
        let _ = s.set_nonblocking(true);
        self.peer_streams.push(s);
        let port = self
            .target
            .stream_addrs(i)
            .ok_or("target connect failed")?
            .0
            .port();
        Ok((i, self.peer_streams.len() - 1, port))
    }

    fn peer_shutdown(&mut self, p: usize) {
        let _ = self.peer_streams[p].shutdown(Shutdown::Write);
        self.peer.run_now();
    }

    /// Connections in every state: ESTABLISHED both ways with data, SYN-SENT, SYN-RCVD,
    /// FIN-WAIT-1, FIN-WAIT-2, CLOSE-WAIT, LAST-ACK, CLOSING, TIME-WAIT.
    pub fn setup(&mut self) -> Res {
        self.ev(Event::Listen(80, 8))?;
        self.ev(Event::Listen(81, 4))?;
        let l = TcpListener::bind_with_backlog(self.peer.net(), SocketAddrV4::new(PEER_IP, 80), 32)
            .map_err(|e| format!("peer listen: {e}"))?;
        let _ = l.set_nonblocking(true);
        self.peer_listener = Some(l);
        self.settle()?;
        // ESTABLISHED, passive, with data both ways.
        self.peer_connect(80)?;
        let a = self.target.streams();
        self.ev(Event::Accept(0))?;
        self.ev(Event::Write(a, 3000))?;
        let _ = std::io::Write::write(&mut &self.peer_streams[0], &[7; 2000]);
        self.settle()?;
        self.ev(Event::Read(a))?;
        // ESTABLISHED, active.
        self.connection()?;
        // SYN-SENT: the SYN never reaches the peer.
        self.rules.push(Rule {
            to_target: false,
            port: 0,
            peer_port: Some(7),
            pass: Pass::Nothing,
        });
        self.block_syn_sent()?;
        // SYN-RCVD: only the peer's SYN gets through.
        self.rules.push(Rule {
            to_target: true,
            port: 81,
            peer_port: None,
            pass: Pass::Syn,
        });
        self.peer_connect(81)?;
        self.closing_states()
    }

    fn block_syn_sent(&mut self) -> Res {
        let i = self.target.streams();
        self.ev(Event::Connect(SocketAddrV4::new(PEER_IP, 7)))?;
        if let Some((l, _)) = self.target.stream_addrs(i) {
            self.rules.last_mut().ok_or("rule")?.port = l.port();
        }
        self.to_peer.clear();
        self.settle()
    }

    fn closing_states(&mut self) -> Res {
        let block = |port, pass| Rule {
            to_target: true,
            port,
            peer_port: Some(80),
            pass,
        };
        // FIN-WAIT-1: our FIN is never acknowledged.
        let (s, _, port) = self.connection()?;
        self.rules.push(block(port, Pass::Nothing));
        self.ev(Event::Shutdown(s, 0))?;
        self.settle()?;
        // FIN-WAIT-2: acknowledged, the peer keeps its side open.
        let (s, _, _) = self.connection()?;
        self.ev(Event::Shutdown(s, 0))?;
        self.settle()?;
        // CLOSE-WAIT: the peer closed.
        let (_, p, _) = self.connection()?;
        self.peer_shutdown(p);
        self.settle()?;
        // LAST-ACK: the peer closed, then we did; our FIN is never acknowledged.
        let (s, p, port) = self.connection()?;
        self.peer_shutdown(p);
        self.settle()?;
        self.rules.push(block(port, Pass::Nothing));
        self.ev(Event::Shutdown(s, 0))?;
        self.settle()?;
        // CLOSING: both close at once; only the peer's FIN reaches us.
        let (s, p, port) = self.connection()?;
        self.rules.push(block(port, Pass::Fin));
        self.ev(Event::Shutdown(s, 0))?;
        self.peer_shutdown(p);
        self.pump()?;
        // TIME-WAIT: we closed first, then the peer.
        let (s, p, _) = self.connection()?;
        self.ev(Event::Shutdown(s, 0))?;
        self.settle()?;
        self.peer_shutdown(p);
        self.settle()
    }

    /// One fuzz step.
    pub fn step(&mut self) -> Res {
        match self.rng.random_range(0..100) {
            0..=74 => {
                let f = gen::frame(&mut self.rng, &self.know);
                self.ev(Event::Rx(vec![f]))?;
            }
            75..=78 => {
                let fs = gen::train(&mut self.rng, &self.know);
                self.ev(Event::Rx(fs))?;
            }
            79 => {
                let fs = gen::arp_flood(&mut self.rng);
                self.ev(Event::Rx(fs))?;
            }
            80..=89 => {
                let dt = match self.rng.random_range(0..20) {
                    0..=13 => self.rng.random_range(0..10_000_000),
                    14..=18 => self.rng.random_range(10_000_000..1_000_000_000),
                    _ => self.rng.random_range(1_000_000_000..100_000_000_000),
                };
                self.advance(Duration::from_nanos(dt))?;
            }
            90..=94 => self.peer_app(),
            _ => self.target_app()?,
        }
        self.fuzzing = true;
        self.pump()
    }

    fn target_app(&mut self) -> Res {
        let n = self.target.streams().max(1);
        let i = self.rng.random_range(0..n + 1);
        let ev = match self.rng.random_range(0..10) {
            8 | 9 => {
                let kind = self.rng.random_range(0..6u8);
                let value = match kind {
                    0 | 1 => [0, 1, 100, 1460, 4096, 65536, 1 << 20, u32::MAX]
                        [self.rng.random_range(0..8)],
                    4 => [0, 1, 100, 5000][self.rng.random_range(0..4)],
                    _ => self.rng.random_range(0..4),
                };
                Event::Opt(i, kind, value)
            }
            0 | 1 => Event::Write(i, self.rng.random_range(1..100_000)),
            2 | 3 => Event::Read(i),
            4 => Event::Shutdown(i, self.rng.random_range(0..3)),
            5 => Event::Close(i),
            6 => Event::Accept(self.rng.random_range(0..2)),
            // The peer (listening or not), a host that does not answer ARP, a
            // destination with no route.
            _ if n < 64 => Event::Connect(
                [
                    SocketAddrV4::new(PEER_IP, 80),
                    SocketAddrV4::new(PEER_IP, 7),
                    SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 77), 80),
                    SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 80),
                ][self.rng.random_range(0..4)],
            ),
            _ => Event::Read(i),
        };
        self.ev(ev)
    }

    fn peer_app(&mut self) {
        if self.peer_streams.is_empty() {
            return;
        }
        let s = &self.peer_streams[self.rng.random_range(0..self.peer_streams.len())];
        let mut r: &TcpStream = s;
        match self.rng.random_range(0..5) {
            0 => {
                let _ = std::io::Write::write(&mut r, &vec![9; self.rng.random_range(1..20_000)]);
            }
            3 => {
                let how = [Shutdown::Write, Shutdown::Read, Shutdown::Both];
                let _ = s.shutdown(how[self.rng.random_range(0..3)]);
            }
            4 => {
                let i = self.rng.random_range(0..self.peer_streams.len());
                drop(self.peer_streams.swap_remove(i));
            }
            1 => {
                let _ = std::io::Read::read(&mut r, &mut [0; 65536]);
            }
            _ => {
                if let Some(l) = &self.peer_listener {
                    while let Ok((s, _)) = l.accept() {
                        let _ = s.set_nonblocking(true);
                        self.peer_streams.push(s);
                    }
                }
            }
        }
        self.peer.run_now();
    }
}

/// How long a case's end waits for every connection to go once the application has
/// let go: retransmissions give up, FIN-WAIT-2 and TIME-WAIT expire, well within it.
pub const DRAIN_SECS: u64 = 3600;

/// Runs a case: setup, then steps until `frames` frames reached the fuzzed stack.
/// Returns the fuzzed stack's counters at the end, or the first failed check.
pub fn run(seed: u64, frames: u64, log: SharedTrace) -> Res<Vec<(&'static str, u64)>> {
    let mut w = World::new(seed, log);
    w.setup().map_err(|e| format!("setup: {e}"))?;
    let (mine, theirs) = (knobs(&mut w.rng), knobs(&mut w.rng));
    w.ev(Event::Knobs(mine))?;
    w.peer.update_tcp_config(|c| apply_knobs(c, theirs));
    while w.target.frames < frames {
        w.step()?;
    }
    w.target.apply(Event::Drain(DRAIN_SECS))?;
    Ok(w.target.stack.counters())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_leaves_a_connection_in_every_state() {
        for seed in 0..4 {
            let mut w = World::new(seed, SharedTrace::default());
            w.setup().expect("setup");
            let states: Vec<_> = w.target.stack.connections().iter().map(|c| c.2).collect();
            for s in [
                "SYN_SENT",
                "SYN_RECEIVED",
                "ESTABLISHED",
                "FIN_WAIT_1",
                "FIN_WAIT_2",
                "CLOSE_WAIT",
                "CLOSING",
                "LAST_ACK",
                "TIME_WAIT",
            ] {
                assert!(states.contains(&s), "seed {seed}: no {s} in {states:?}");
            }
        }
    }
}
