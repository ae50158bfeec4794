//! The fuzzed stack: a [`SimStack`] driven only through [`Event`]s, each recorded, so a
//! failing run is a list of events that replays without the fuzzer (a trace file).

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::time::{Duration, Instant};

use smoltcp::wire::EthernetAddress;
use xstack::sim::{SimStack, SimStackConfig};
use xstack::{Keepalive, OptionLayout, TcpConfig, TcpListener, TcpStream};

use crate::check::{self, Bounds, FlowCheck, SentSeg};
use crate::frames::{TARGET_IP, TARGET_MAC};

/// One thing that happens to the fuzzed stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Frames arrive together (each on the queue `inject_any` picks), as one receive
    /// batch: LRO sees them at once.
    Rx(Vec<Vec<u8>>),
    /// The clock moves to this many nanoseconds after the start.
    At(u64),
    /// The application listens on a port with a backlog.
    Listen(u16, usize),
    /// The application connects (non-blocking) to an address.
    Connect(SocketAddrV4),
    /// The application accepts from listener `i`, if a connection is ready.
    Accept(usize),
    /// The application writes `n` bytes on stream `i` (as much as fits).
    Write(usize, usize),
    /// The application reads what is there on stream `i`.
    Read(usize),
    /// The application shuts down stream `i`: its sending side (0), receiving side (1)
    /// or both (2).
    Shutdown(usize, u8),
    /// The application drops stream `i`.
    Close(usize),
    /// Connections opened from now on get the non-default TCP settings whose bits are
    /// set ([`KNOBS`]), as a `sysctl` would.
    Knobs(u32),
    /// The application sets an option on stream `i`: [`SockOpt`] `kind` with `value`.
    Opt(usize, u8, u32),
    /// The application drops every stream and listener, and the clock runs from
    /// deadline to deadline for up to this many seconds: every connection must be gone
    /// by then.
    Drain(u64),
}

impl Event {
    /// The event as one line of a trace file.
    pub fn line(&self) -> String {
        match self {
            Event::Rx(fs) => {
                let hexes: Vec<String> = fs.iter().map(|f| hex(f)).collect();
                format!("rx {}", hexes.join(" "))
            }
            Event::At(ns) => format!("at {ns}"),
            Event::Listen(p, b) => format!("listen {p} {b}"),
            Event::Connect(a) => format!("connect {a}"),
            Event::Accept(i) => format!("accept {i}"),
            Event::Write(i, n) => format!("write {i} {n}"),
            Event::Read(i) => format!("read {i}"),
            Event::Shutdown(i, how) => format!("shutdown {i} {how}"),
            Event::Close(i) => format!("close {i}"),
            Event::Opt(i, k, v) => format!("opt {i} {k} {v}"),
            Event::Knobs(k) => format!("knobs {k}"),
            Event::Drain(s) => format!("drain {s}"),
        }
    }

    /// Parses a line written by [`Event::line`].
    pub fn parse(line: &str) -> Result<Event, String> {
        let mut w = line.split_whitespace();
        let (verb, a, b) = (w.next().unwrap_or(""), w.next(), w.next());
        let num = |s: Option<&str>| -> Result<usize, String> {
            s.ok_or("missing number")?
                .parse()
                .map_err(|e| format!("{e}"))
        };
        Ok(match verb {
            "rx" => Event::Rx(
                line.split_whitespace()
                    .skip(1)
                    .map(unhex)
                    .collect::<Result<_, _>>()?,
            ),
            "at" => Event::At(num(a)? as u64),
            "listen" => Event::Listen(num(a)? as u16, num(b)?),
            "connect" => Event::Connect(a.ok_or("address")?.parse().map_err(|e| format!("{e}"))?),
            "accept" => Event::Accept(num(a)?),
            "write" => Event::Write(num(a)?, num(b)?),
            "read" => Event::Read(num(a)?),
            "shutdown" => Event::Shutdown(num(a)?, num(b)? as u8),
            "close" => Event::Close(num(a)?),
            "knobs" => Event::Knobs(num(a)? as u32),
            "opt" => Event::Opt(num(a)?, num(b)? as u8, num(w.next())? as u32),
            "drain" => Event::Drain(num(a)? as u64),
            _ => return Err(format!("unknown event {line:?}")),
        })
    }
}

/// How the fuzzed stack is built: drawn per case, the first line of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    /// Workers (receive queues).
    pub workers: usize,
    pub ecn: bool,
    pub timestamps: bool,
    pub sack: bool,
    pub window_scaling: bool,
    pub lro: bool,
    /// The device finishes TCP checksums.
    pub csum_offload: bool,
    pub sndbuf: usize,
    pub rcvbuf: usize,
    /// The MSS the stack announces.
    pub mss: u16,
}

/// What each bit of [`Event::Knobs`] changes from the default TCP configuration.
pub const KNOBS: [&str; 16] = [
    "no RFC 5961 challenge ACK for RST",
    "no RFC 5961 challenge ACK for SYN",
    "ICMP hard errors ignored",
    "no limited transmit",
    "no lost-retransmission detection",
    "buffers rounded to the MSS",
    "nodelay",
    "no delayed ACK",
    "no TIME-WAIT",
    "one retransmission",
    "no SYN retries",
    "TSO bursts of one MSS",
    "RTO 1 ms minimum, 10 ms initial",
    "FreeBSD option layout",
    "no RACK-TLP",
    "no PRR",
];

/// Applies the knobs set in `bits` to `c`.
pub fn apply_knobs(c: &mut TcpConfig, bits: u32) {
    let on = |i: usize| bits & (1 << i) != 0;
    c.challenge_rst &= !on(0);
    c.challenge_syn &= !on(1);
    c.icmp_hard_errors &= !on(2);
    c.limited_transmit &= !on(3);
    c.lost_retransmit &= !on(4);
    c.round_buffers_to_mss |= on(5);
    c.nodelay |= on(6);
    if on(7) {
        c.delack = Duration::ZERO;
    }
    if on(8) {
        c.time_wait = Duration::ZERO;
    }
    if on(9) {
        c.max_retransmits = 1;
    }
    if on(10) {
        c.syn_retries = 0;
    }
    if on(11) {
        c.tso_max = c.mss as usize;
    }
    if on(12) {
        c.rto.min = Duration::from_millis(1);
        c.rto.initial = Duration::from_millis(10);
    }
    if on(13) {
        c.option_layout = OptionLayout::FreeBsd;
    }
    c.rack &= !on(14);
    c.prr &= !on(15);
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            workers: 1,
            ecn: false,
            timestamps: true,
            sack: true,
            window_scaling: true,
            lro: false,
            csum_offload: false,
            sndbuf: 256 * 1024,
            rcvbuf: 256 * 1024,
            mss: 1460,
        }
    }
}

impl Setup {
    /// The setup as one trace line.
    pub fn line(&self) -> String {
        let b = |x: bool| x as u8;
        format!(
            "setup {} {} {} {} {} {} {} {} {} {}",
            self.workers,
            b(self.ecn),
            b(self.timestamps),
            b(self.sack),
            b(self.window_scaling),
            b(self.lro),
            b(self.csum_offload),
            self.sndbuf,
            self.rcvbuf,
            self.mss
        )
    }

    /// Parses the words after `setup`.
    pub fn parse(words: &str) -> Result<Setup, String> {
        let n: Vec<usize> = words
            .split_whitespace()
            .map(|w| w.parse().map_err(|e| format!("setup: {e}")))
            .collect::<Result<_, _>>()?;
        let [workers, ecn, ts, sack, ws, lro, csum, sndbuf, rcvbuf, mss] = n[..] else {
            return Err("setup: ten numbers".into());
        };
        Ok(Setup {
            workers,
            ecn: ecn != 0,
            timestamps: ts != 0,
            sack: sack != 0,
            window_scaling: ws != 0,
            lro: lro != 0,
            csum_offload: csum != 0,
            sndbuf,
            rcvbuf,
            mss: mss as u16,
        })
    }
}

/// A case's events and the stack they apply to: what a trace file holds.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// How the fuzzed stack was built.
    pub setup: Setup,
    /// Every event applied, in order.
    pub events: Vec<Event>,
}

/// A trace shared between a case and its runner, so it survives a panic.
pub type SharedTrace = Rc<RefCell<Trace>>;

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses lower- or upper-case hex.
pub fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err("odd hex length".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("{e}")))
        .collect()
}

/// The fuzzed stack, its sockets and the events it has seen.
pub struct Target {
    pub stack: SimStack,
    start: Instant,
    listeners: Vec<TcpListener>,
    streams: Vec<Option<TcpStream>>,
    /// Every event applied so far.
    pub log: SharedTrace,
    bounds: Bounds,
    /// Frames received.
    pub frames: u64,
    flows: FlowCheck,
    /// Connections closed so far (when it moves, `flows` drops the dead ones).
    closed: u64,
}

/// The options [`Event::Opt`] sets, by kind: 0 send buffer size, 1 receive buffer size,
/// 2 congestion control (`value` indexes [`CC_MODULES`]), 3 nodelay, 4 keepalive (off
/// when `value` is 0, else probing after `value` ms idle), 5 RACK-TLP (on unless `value`
/// is 0).
fn set_opt(s: &TcpStream, kind: u8, value: u32) {
    let _ = match kind {
        0 => s.set_send_buffer_size(value as usize),
        1 => s.set_recv_buffer_size(value as usize),
        2 => s.set_congestion(CC_MODULES[value as usize % CC_MODULES.len()]),
        3 => s.set_nodelay(value != 0),
        5 => s.set_rack(value != 0),
        _ => s.set_keepalive((value != 0).then(|| Keepalive {
            idle: Duration::from_millis(value as u64),
            interval: Duration::from_millis(value as u64 / 2 + 1),
            count: value % 5 + 1,
        })),
    };
}

/// The congestion-control modules [`Event::Opt`] switches between.
pub const CC_MODULES: [&str; 5] = ["newreno", "cubic", "newreno-hs", "cubic-hs", "bbr"];

/// A frame the stack sent, with its TCP segment if it is one.
pub type Sent = (Vec<u8>, Option<SentSeg>);

/// The fuzzed stack's MTU.
pub const MTU: usize = 1500;

impl Target {
    /// A stack built as `setup` says at 198.18.0.1/24, recording into `log` (emptied).
    pub fn new(setup: Setup, start: Instant, log: SharedTrace) -> Target {
        *log.borrow_mut() = Trace {
            setup,
            events: Vec::new(),
        };
        let mut c = SimStackConfig::new(EthernetAddress(TARGET_MAC), TARGET_IP, start);
        c.workers = setup.workers;
        c.mtu = MTU;
        c.lro = setup.lro;
        c.tx_csum_offload = setup.csum_offload;
        c.tcp.ecn = setup.ecn;
        c.tcp.timestamps = setup.timestamps;
        c.tcp.sack = setup.sack;
        c.tcp.window_scaling = setup.window_scaling;
        c.tcp.sndbuf = setup.sndbuf;
        c.tcp.rcvbuf = setup.rcvbuf;
        c.tcp.mss = setup.mss;
        let stack = SimStack::new(c);
        // The helper hooks run on every connection, so crafted frames reach them too.
        for name in xstack::helpers::NAMES {
            xstack::helpers::register(&stack.net(), name).expect("in-tree helper");
        }
        Target {
            stack,
            start,
            listeners: Vec::new(),
            streams: Vec::new(),
            log,
            bounds: Bounds {
                connections: 0,
                // The neighbours a /24 can hold besides us.
                arp: 253,
            },
            frames: 0,
            flows: FlowCheck::default(),
            closed: 0,
        }
    }

    /// The simulated time, as nanoseconds since the start.
    pub fn elapsed(&self) -> u64 {
        (self.stack.now() - self.start).as_nanos() as u64
    }

    /// Streams opened so far (closed ones included: indices are stable).
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// A stream's local and remote addresses, while open.
    pub fn stream_addrs(&self, i: usize) -> Option<(SocketAddrV4, SocketAddrV4)> {
        let s = self.streams.get(i)?.as_ref()?;
        match (s.local_addr().ok()?, s.peer_addr().ok()?) {
            (SocketAddr::V4(l), SocketAddr::V4(r)) => Some((l, r)),
            _ => None,
        }
    }

    /// Applies `ev`, runs the stack, checks what it sent and its state; returns the TCP
    /// segments and frames it sent.
    pub fn apply(&mut self, ev: Event) -> Result<Vec<Sent>, String> {
        self.log.borrow_mut().events.push(ev.clone());
        match ev {
            Event::Rx(fs) => {
                self.frames += fs.len() as u64;
                for f in fs {
                    self.stack.inject_any(f);
                }
            }
            Event::At(ns) => {
                let t = self.start + Duration::from_nanos(ns);
                if t > self.stack.now() {
                    self.stack.advance_to(t);
                }
            }
            Event::Drain(secs) => return self.drain(secs),
            ev => self.app(ev),
        }
        self.stack.run_now();
        if let Some(due) = self
            .stack
            .next_deadline()
            .filter(|&d| d <= self.stack.now())
        {
            return Err(format!(
                "a deadline {:?} before now is left after running",
                self.stack.now() - due
            ));
        }
        self.forget_closed();
        let mut out = Vec::new();
        for f in self.stack.take_sent() {
            let seg = check::sent_frame(&f, TARGET_MAC, TARGET_IP, MTU)
                .and_then(|seg| {
                    seg.as_ref()
                        .map_or(Ok(()), |s| self.flows.sent(s))
                        .map(|_| seg)
                })
                .map_err(|e| format!("sent frame {}: {e}", hex(&f)))?;
            out.push((f, seg));
        }
        check::state(&self.stack, &self.bounds)?;
        Ok(out)
    }

    /// The application's calls; their errors are the application's business.
    fn app(&mut self, ev: Event) {
        match ev {
            Event::Listen(port, backlog) => {
                let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
                if let Ok(l) = TcpListener::bind_with_backlog(self.stack.net(), addr, backlog) {
                    let _ = l.set_nonblocking(true);
                    self.listeners.push(l);
                    // Each listener adds its backlog; each stream the application
                    // holds adds one (with a closing twin in TIME-WAIT).
                    self.bounds.connections += backlog;
                }
            }
            Event::Connect(a) => {
                let s = TcpStream::connect_nonblocking(self.stack.net(), a).ok();
                self.add_stream(s);
            }
            Event::Accept(i) => {
                let s = self
                    .listeners
                    .get(i)
                    .and_then(|l| l.accept().ok())
                    .map(|(s, _)| s);
                if let Some(s) = &s {
                    let _ = s.set_nonblocking(true);
                }
                self.add_stream(s);
            }
            Event::Write(i, n) => {
                if let Some(mut s) = self.stream(i) {
                    let _ = s.write(&vec![0x5a; n]);
                }
            }
            Event::Read(i) => {
                if let Some(mut s) = self.stream(i) {
                    let _ = s.read(&mut [0u8; 65536]);
                }
            }
            Event::Shutdown(i, how) => {
                if let Some(s) = self.stream(i) {
                    let how = [Shutdown::Write, Shutdown::Read, Shutdown::Both][how as usize % 3];
                    let _ = s.shutdown(how);
                }
            }
            Event::Close(i) => {
                if let Some(s) = self.streams.get_mut(i) {
                    *s = None;
                }
            }
            Event::Knobs(bits) => self.stack.update_tcp_config(|c| apply_knobs(c, bits)),
            Event::Opt(i, kind, value) => {
                if let Some(s) = self.stream(i) {
                    set_opt(s, kind, value);
                }
            }
            Event::Rx(_) | Event::At(_) | Event::Drain(_) => {}
        }
    }

    /// [`Event::Drain`]: what it sends is checked, then dropped (no peer answers).
    fn drain(&mut self, secs: u64) -> Result<Vec<Sent>, String> {
        self.streams.clear();
        self.listeners.clear();
        let end = self.stack.now() + Duration::from_secs(secs);
        self.stack.run_now();
        while let Some(t) = self.stack.next_deadline().filter(|&t| t <= end) {
            self.stack.advance_to(t.max(self.stack.now()));
            for f in self.stack.take_sent() {
                check::sent_frame(&f, TARGET_MAC, TARGET_IP, MTU)?;
            }
            check::state(&self.stack, &self.bounds)?;
            if self.stack.connections().is_empty() {
                return Ok(Vec::new());
            }
        }
        match self.stack.connections() {
            c if c.is_empty() => Ok(Vec::new()),
            c => Err(format!(
                "{} connection(s) left {secs} s after the application let go: {c:?}",
                c.len()
            )),
        }
    }

    fn forget_closed(&mut self) {
        let closed = self.stack.counter("tcp.conns_closed");
        if closed == self.closed {
            return;
        }
        self.closed = closed;
        let conns = self.stack.connections();
        self.flows.retain(|la, lp, ra, rp| {
            let (l, r) = (SocketAddrV4::new(la, lp), SocketAddrV4::new(ra, rp));
            conns.iter().any(|c| c.0 == l && c.1 == r)
        });
    }

    fn stream(&self, i: usize) -> Option<&TcpStream> {
        self.streams.get(i).and_then(|s| s.as_ref())
    }

    fn add_stream(&mut self, s: Option<TcpStream>) {
        if s.is_some() {
            self.bounds.connections += 2;
        }
        self.streams.push(s);
    }
}
