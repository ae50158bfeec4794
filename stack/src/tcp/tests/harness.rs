//! Fixtures and helpers for the per-state sans-IO tests (in the style of smoltcp's
//! `send!` / `recv!` / `recv_nothing!`): one [`Tcb`] under test, a simulated clock, and segments
//! described by [`Seg`] values that go through the real wire format (`emit` + `parse`)
//! on the way in, and are compared field by field on the way out.
//!
//! Conventions: we are 198.18.0.1:80, the peer 198.18.0.2:40000; our ISS is [`OUR_ISS`]
//! and the peer's [`PEER_ISS`]. The default configuration ([`cfg`]) turns window scaling,
//! timestamps and SACK off so windows and headers are plain numbers; tests about options
//! turn them back on.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use crate::mbuf::CsumFlags;
use crate::tcp::segment::{self, ChecksumMode, SegmentOut};
use crate::tcp::tcb::Tcb;

pub use std::time::Duration;

pub use crate::tcp::input::{reset_for, InputOutcome};
pub use crate::tcp::segment::{Ecn, TcpFlags, TcpOptions};
pub use crate::tcp::seq::Seq;
pub use crate::tcp::timer::TimerKind;
pub use crate::tcp::{Keepalive, State, TcpConfig, TcpError, UserError};

pub use crate::tcp::segment::TcpFlags as F;

/// Our address.
pub const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 80);
/// The peer's address.
pub const REMOTE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 40000);
/// Our initial send sequence number.
pub const OUR_ISS: Seq = Seq(1000);
/// The peer's initial sequence number.
pub const PEER_ISS: Seq = Seq(5000);
/// The MSS both sides use by default.
pub const MSS: usize = 1460;
/// Our receive buffer in the default configuration (also our SYN's window).
pub const RCVBUF: usize = 16384;
/// The window the peer advertises in the default fixtures.
pub const PEER_WIN: u16 = 65535;

/// The deterministic default configuration: no window scaling, timestamps or SACK, and
/// (for tests that turn SACK on) plain RFC 6675 loss recovery: no RACK-TLP, no PRR
/// (`rack.rs` tests turn them on).
pub fn cfg() -> TcpConfig {
    TcpConfig {
        mss: MSS as u16,
        sndbuf: 64 * 1024,
        rcvbuf: RCVBUF,
        window_scaling: false,
        timestamps: false,
        sack: false,
        rack: false,
        prr: false,
        ..TcpConfig::default()
    }
}

/// A segment, as fed in or as expected out. Build with [`seg`] and the setters.
#[derive(Clone, PartialEq, Eq)]
pub struct Seg {
    pub seq: Seq,
    pub ack: Seq,
    pub flags: TcpFlags,
    pub window: u16,
    pub options: TcpOptions,
    pub payload: Vec<u8>,
    /// The IP header's ECN field: what arrives with an input segment, what our output
    /// asks IP to send.
    pub ecn: Ecn,
}

impl std::fmt::Debug for Seg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "<SEQ={} ACK={} CTL={:?} WIN={} LEN={}",
            self.seq.0,
            self.ack.0,
            self.flags,
            self.window,
            self.payload.len()
        )?;
        if self.options != TcpOptions::default() {
            write!(f, " {:?}", self.options)?;
        }
        if self.ecn != Ecn::NotEct {
            write!(f, " IP:{:?}", self.ecn)?;
        }
        write!(f, ">")
    }
}

/// A segment with sequence number `seq`, no flags, no ACK, window 0, no data.
pub fn seg(seq: Seq) -> Seg {
    Seg {
        seq,
        ack: Seq(0),
        flags: TcpFlags::empty(),
        window: 0,
        options: TcpOptions::default(),
        payload: Vec::new(),
        ecn: Ecn::NotEct,
    }
}

impl Seg {
    /// Sets the ACK bit and number.
    pub fn ack(mut self, ack: Seq) -> Seg {
        self.flags |= TcpFlags::ACK;
        self.ack = ack;
        self
    }
    /// Adds control bits.
    pub fn flags(mut self, f: TcpFlags) -> Seg {
        self.flags |= f;
        self
    }
    /// Sets the window field.
    pub fn win(mut self, w: u16) -> Seg {
        self.window = w;
        self
    }
    /// Sets the payload.
    pub fn data(mut self, d: &[u8]) -> Seg {
        self.payload = d.to_vec();
        self
    }
    /// `n` payload bytes of the test pattern starting at stream offset `from`.
    pub fn bytes(self, from: usize, n: usize) -> Seg {
        self.data(&pattern(from, n))
    }
    /// Sets the MSS option.
    pub fn mss(mut self, m: u16) -> Seg {
        self.options.mss = Some(m);
        self
    }
    /// Sets the timestamps option.
    pub fn ts(mut self, val: u32, ecr: u32) -> Seg {
        self.options.timestamps = Some((val, ecr));
        self
    }
    /// Sets the window-scale option.
    pub fn wscale(mut self, s: u8) -> Seg {
        self.options.wscale = Some(s);
        self
    }
    /// Sets SACK-permitted.
    pub fn sack_ok(mut self) -> Seg {
        self.options.sack_permitted = true;
        self
    }
    /// Sets the IP header's ECN codepoint.
    pub fn ip_ecn(mut self, e: Ecn) -> Seg {
        self.ecn = e;
        self
    }
    /// Appends a SACK block `[left, right)`.
    pub fn sack(mut self, left: Seq, right: Seq) -> Seg {
        assert!(self.options.push_sack(left, right), "at most 4 SACK blocks");
        self
    }
}

/// Our TSval at `ms` after the connection was created (RFC 7323 §5.4: a per-connection
/// random offset; ours is derived from the ISS).
pub fn our_tsval(ms: u32) -> u32 {
    OUR_ISS.0.rotate_left(13).wrapping_add(ms)
}

/// The test pattern: byte i of a stream is `(i % 251)`.
pub fn pattern(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(|i| (i % 251) as u8).collect()
}

/// A connection under test and its simulated clock.
pub struct Conn {
    pub tcb: Tcb,
    pub now: Instant,
}

fn cc() -> Box<dyn xstack_cc::CongestionControl> {
    Box::new(xstack_cc::NewReno::default())
}

impl Conn {
    /// SYN-SENT, the SYN not yet polled.
    pub fn connect(cfg: TcpConfig) -> Conn {
        let t0 = Instant::now();
        let tcb = Tcb::connect(cfg, LOCAL, REMOTE, OUR_ISS, cc(), t0);
        Conn { tcb, now: t0 }
    }

    /// SYN-RECEIVED from the peer's `syn`, the SYN,ACK not yet polled.
    pub fn accept(cfg: TcpConfig, syn: Seg) -> Conn {
        let t0 = Instant::now();
        let bytes = wire(&syn);
        let mut s = parse_wire(&bytes);
        s.ecn = syn.ecn;
        let tcb = Tcb::accept_syn(cfg, LOCAL, REMOTE, OUR_ISS, cc(), &s, t0);
        Conn { tcb, now: t0 }
    }

    /// Feeds one segment in at the current time.
    pub fn input(&mut self, s: &Seg) -> InputOutcome {
        let bytes = wire(s);
        let mut parsed = parse_wire(&bytes);
        parsed.ecn = s.ecn;
        self.tcb.input(&parsed, self.now)
    }

    /// Everything `poll_output` has to send now.
    pub fn output(&mut self) -> Vec<Seg> {
        let mut v = Vec::new();
        while let Some(o) = self.tcb.poll_output(self.now) {
            let mut payload = vec![0u8; o.payload_len];
            assert_eq!(self.tcb.copy_payload(&o, &mut payload), o.payload_len);
            v.push(Seg {
                seq: o.hdr.seq,
                ack: o.hdr.ack,
                flags: o.hdr.flags,
                window: o.hdr.window,
                options: o.hdr.options,
                payload,
                ecn: o.ecn,
            });
            assert!(v.len() < 1000, "poll_output does not stop");
        }
        v
    }

    /// Advances the clock by `d` and runs the timers due.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.tcb.handle_timeout(self.now);
    }

    /// Jumps the clock to the next deadline and runs it; returns how far it jumped.
    pub fn fire(&mut self) -> Duration {
        let t = self.tcb.poll_timeout().expect("a timer is armed");
        let d = t.saturating_duration_since(self.now);
        self.now = self.now.max(t);
        self.tcb.handle_timeout(self.now);
        d
    }

    /// When timer `k` fires, relative to now.
    pub fn timer(&self, k: TimerKind) -> Option<Duration> {
        self.tcb
            .timers()
            .get(k)
            .map(|t| t.saturating_duration_since(self.now))
    }

    /// Queues `data` for sending; asserts it all fits.
    pub fn write(&mut self, data: &[u8]) {
        assert_eq!(self.tcb.send(data), Ok(data.len()));
    }

    /// Reads everything readable.
    pub fn read_all(&mut self) -> Vec<u8> {
        let mut buf = vec![0u8; 1 << 20];
        let n = self.tcb.recv(&mut buf).unwrap_or(0);
        buf.truncate(n);
        buf
    }

    pub fn state(&self) -> State {
        self.tcb.state()
    }
}

/// The bytes on the wire for `s` (peer -> us).
pub fn wire(s: &Seg) -> Vec<u8> {
    let out = SegmentOut {
        src_port: REMOTE.port(),
        dst_port: LOCAL.port(),
        seq: s.seq,
        ack: s.ack,
        flags: s.flags,
        window: s.window,
        options: s.options,
    };
    let hl = out.header_len();
    let mut buf = vec![0u8; hl + s.payload.len()];
    buf[hl..].copy_from_slice(&s.payload);
    out.emit(*REMOTE.ip(), *LOCAL.ip(), &mut buf, ChecksumMode::Full);
    buf
}

/// Parses what [`wire`] built, as the input path does.
pub fn parse_wire(bytes: &[u8]) -> segment::Segment<'_> {
    segment::parse(*REMOTE.ip(), *LOCAL.ip(), bytes, CsumFlags::empty()).expect("valid segment")
}

/// Pushes one segment in; optionally asserts the outcome.
macro_rules! send {
    ($c:expr, $s:expr) => {{
        let o = $c.input(&$s);
        assert_eq!(
            o,
            $crate::tcp::input::InputOutcome::Ok,
            "input outcome for {:?}",
            $s
        );
    }};
    ($c:expr, $s:expr => $outcome:expr) => {{
        let o = $c.input(&$s);
        assert_eq!(o, $outcome, "input outcome for {:?}", $s);
    }};
}

/// Asserts exactly these segments come out now, in order.
macro_rules! recv {
    ($c:expr, [$($s:expr),* $(,)?]) => {{
        let got = $c.output();
        let want: Vec<$crate::tcp::tests::harness::Seg> = vec![$($s),*];
        assert_eq!(got, want, "segments out (state {:?})", $c.state());
    }};
    ($c:expr, $s:expr) => {
        recv!($c, [$s])
    };
}

/// Asserts nothing comes out now.
macro_rules! recv_nothing {
    ($c:expr) => {{
        let got = $c.output();
        assert!(
            got.is_empty(),
            "expected nothing, got {:?} (state {:?})",
            got,
            $c.state()
        );
    }};
}

// ---------------------------------------------------------------- fixtures

/// Our SYN as the default config sends it.
pub fn our_syn() -> Seg {
    seg(OUR_ISS)
        .flags(F::SYN)
        .win(RCVBUF as u16)
        .mss(MSS as u16)
}

/// The peer's SYN (no options but MSS), window [`PEER_WIN`].
pub fn peer_syn() -> Seg {
    seg(PEER_ISS).flags(F::SYN).win(PEER_WIN).mss(MSS as u16)
}

/// A pure ACK from the peer: `<SEQ=PEER_ISS+1+peer_off><ACK=OUR_ISS+1+our_off>`.
pub fn peer_ack(peer_off: u32, our_off: u32) -> Seg {
    seg(PEER_ISS + 1 + peer_off)
        .ack(OUR_ISS + 1 + our_off)
        .win(PEER_WIN)
}

/// Our ACK: `<SEQ=OUR_ISS+1+our_off><ACK=PEER_ISS+1+peer_off>` with window `win`.
pub fn our_ack(our_off: u32, peer_off: u32, win: u16) -> Seg {
    seg(OUR_ISS + 1 + our_off)
        .ack(PEER_ISS + 1 + peer_off)
        .win(win)
}

/// SYN-SENT with `cfg`, the SYN already sent (and checked).
pub fn syn_sent_with(cfg: TcpConfig) -> Conn {
    let mut c = Conn::connect(cfg);
    let _ = c.output();
    assert_eq!(c.state(), State::SynSent);
    c
}

/// SYN-SENT with the default config.
pub fn syn_sent() -> Conn {
    let mut c = Conn::connect(cfg());
    recv!(c, our_syn());
    c
}

/// SYN-RECEIVED (passive) with the default config, the SYN,ACK already sent.
pub fn syn_received() -> Conn {
    let mut c = Conn::accept(cfg(), peer_syn());
    recv!(c, our_syn().ack(PEER_ISS + 1));
    assert_eq!(c.state(), State::SynReceived);
    c
}

/// ESTABLISHED (active open) with `cfg`; the peer's SYN,ACK is `synack`.
pub fn established_with(cfg: TcpConfig, synack: Seg) -> Conn {
    let mut c = syn_sent_with(cfg);
    send!(c, synack);
    let _ = c.output();
    assert_eq!(c.state(), State::Established);
    c
}

/// ESTABLISHED (active open) as [`established`] (10 ms handshake RTT) but with `cfg` and
/// the peer's SYN,ACK `synack`, which must acknowledge our SYN.
pub fn established_cfg(cfg: TcpConfig, synack: Seg) -> Conn {
    let mut c = syn_sent_with(cfg);
    c.advance(Duration::from_millis(10));
    send!(c, synack);
    let _ = c.output();
    assert_eq!(c.state(), State::Established);
    c
}

/// ESTABLISHED (active open), default config: snd 1001.., rcv 5001.., peer window 65535,
/// MSS 1460 both ways, cwnd = IW = 14600, SRTT 10 ms (RTO at its 200 ms minimum).
pub fn established() -> Conn {
    let mut c = syn_sent();
    c.advance(Duration::from_millis(10));
    send!(c, peer_syn().ack(OUR_ISS + 1));
    // RFC 9293 §3.10.7.3: "form an ACK segment <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>".
    recv!(c, our_ack(0, 0, RCVBUF as u16));
    assert_eq!(c.state(), State::Established);
    c
}

/// FIN-WAIT-1: established, we closed, our FIN sent (not acknowledged).
pub fn fin_wait_1() -> Conn {
    let mut c = established();
    c.tcb.close(c.now);
    recv!(c, our_ack(0, 0, RCVBUF as u16).flags(F::FIN));
    assert_eq!(c.state(), State::FinWait1);
    c
}

/// FIN-WAIT-2: our FIN acknowledged.
pub fn fin_wait_2() -> Conn {
    let mut c = fin_wait_1();
    send!(c, peer_ack(0, 1));
    recv_nothing!(c);
    assert_eq!(c.state(), State::FinWait2);
    c
}

/// CLOSE-WAIT: the peer's FIN received and acknowledged.
pub fn close_wait() -> Conn {
    let mut c = established();
    send!(c, peer_ack(0, 0).flags(F::FIN));
    recv!(c, our_ack(0, 1, RCVBUF as u16));
    assert_eq!(c.state(), State::CloseWait);
    c
}

/// LAST-ACK: CLOSE-WAIT, then we closed; our FIN sent.
pub fn last_ack() -> Conn {
    let mut c = close_wait();
    c.tcb.close(c.now);
    recv!(c, our_ack(0, 1, RCVBUF as u16).flags(F::FIN));
    assert_eq!(c.state(), State::LastAck);
    c
}

/// CLOSING: both FINs crossed; ours not yet acknowledged.
pub fn closing() -> Conn {
    let mut c = fin_wait_1();
    send!(c, peer_ack(0, 0).flags(F::FIN));
    recv!(c, our_ack(1, 1, RCVBUF as u16));
    assert_eq!(c.state(), State::Closing);
    c
}

/// TIME-WAIT: FIN-WAIT-2, then the peer's FIN.
pub fn time_wait() -> Conn {
    let mut c = fin_wait_2();
    send!(c, peer_ack(0, 1).flags(F::FIN));
    recv!(c, our_ack(1, 1, RCVBUF as u16));
    assert_eq!(c.state(), State::TimeWait);
    c
}

/// Every state a Tcb can be in after the handshake started, with its fixture.
pub fn every_state() -> Vec<(State, fn() -> Conn)> {
    vec![
        (State::SynSent, syn_sent as fn() -> Conn),
        (State::SynReceived, syn_received),
        (State::Established, established),
        (State::FinWait1, fin_wait_1),
        (State::FinWait2, fin_wait_2),
        (State::CloseWait, close_wait),
        (State::Closing, closing),
        (State::LastAck, last_ack),
        (State::TimeWait, time_wait),
    ]
}

#[test]
fn fixtures_reach_their_states() {
    for (state, make) in every_state() {
        let c = make();
        assert_eq!(c.state(), state);
    }
}

// ---------------------------------------------------------------- congestion-control log

/// What a [`Recorder`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CcEvent {
    /// `cong_signal(sig)`.
    Signal(xstack_cc::CcSignal),
    /// `post_recovery`.
    PostRecovery,
}

/// NewReno with a log of its congestion signals and post_recovery calls, to check what
/// the transport tells the module (cc-modules lib.rs contract).
#[derive(Debug, Default)]
pub struct Recorder {
    inner: xstack_cc::NewReno,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<CcEvent>>>,
}

impl xstack_cc::CongestionControl for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn conn_init(&mut self, v: &mut xstack_cc::CcVars) {
        self.inner.conn_init(v)
    }
    fn ack_received(
        &mut self,
        v: &mut xstack_cc::CcVars,
        sig: xstack_cc::CcSignal,
        ack: &xstack_cc::AckInfo,
    ) {
        self.inner.ack_received(v, sig, ack)
    }
    fn cong_signal(
        &mut self,
        v: &mut xstack_cc::CcVars,
        sig: xstack_cc::CcSignal,
        info: &xstack_cc::CongInfo,
    ) {
        self.log.lock().unwrap().push(CcEvent::Signal(sig));
        self.inner.cong_signal(v, sig, info)
    }
    fn post_recovery(&mut self, v: &mut xstack_cc::CcVars, ack: &xstack_cc::AckInfo) {
        self.log.lock().unwrap().push(CcEvent::PostRecovery);
        self.inner.post_recovery(v, ack)
    }
}

impl Conn {
    /// Switches the connection to a [`Recorder`]; returns its log.
    pub fn record_cc(&mut self) -> std::sync::Arc<std::sync::Mutex<Vec<CcEvent>>> {
        let r = Recorder::default();
        let log = r.log.clone();
        self.tcb.set_congestion(Box::new(r));
        log
    }
}
