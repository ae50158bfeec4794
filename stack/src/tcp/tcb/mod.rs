//! The TCP control block (RFC 9293 §3.3.1's TCB, FreeBSD's `struct tcpcb`): its
//! state, its creation (active and passive open), option negotiation and the helpers
//! the engine shares. The user calls on it live in `tcb/usrreq.rs`, the
//! `tcp_info` snapshot in `tcb/info.rs`, the settings and error types in `config.rs`.
//!
//! The control block is sans-IO: segments come in through [`Tcb::input`]
//! (`input.rs`), segments to send come out of [`Tcb::poll_output`] (`output.rs`), and
//! [`Tcb::poll_timeout`] / [`Tcb::handle_timeout`] (`timer.rs`) drive time.
//! Nothing here reads a clock or touches a device: `now` is always an argument.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xstack_cc::{CcVars, CongestionControl, Recovery};

use super::bounds::{Gauge, Slot};
use super::config::{TcpConfig, TcpError};
use super::cwnd_trace::{CcEvent, CwndTrace};
use super::hhook::HelperSlot;
use super::prr::Prr;
use super::rack::Rack;
use super::recvbuf::RecvBuffer;
use super::rtt::RttEstimator;
use super::sack::Scoreboard;
use super::segment::MAX_WSCALE;
use super::sendbuf::SendBuffer;
use super::seq::Seq;
use super::timer::{TimerKind, Timers};

mod hooks;
mod info;
mod usrreq;

pub use info::{ConnStats, EcnStats, TcpInfo};

/// TCP connection states (RFC 9293 §3.3.2). LISTEN lives in the listener, not here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// No connection (the initial and final state).
    Closed,
    /// SYN sent, waiting for SYN,ACK.
    SynSent,
    /// SYN received and SYN,ACK sent, waiting for the ACK.
    SynReceived,
    /// Open in both directions.
    Established,
    /// We closed; our FIN not yet acknowledged.
    FinWait1,
    /// Our FIN acknowledged, waiting for the peer's FIN.
    FinWait2,
    /// The peer closed; we may still send.
    CloseWait,
    /// Both closed simultaneously; waiting for the ACK of our FIN.
    Closing,
    /// The peer closed, then we did; waiting for the ACK of our FIN.
    LastAck,
    /// Waiting 2*MSL before the 4-tuple may be reused.
    TimeWait,
}

impl State {
    /// RFC 9293's "synchronized" states: a SYN has been received and acknowledged.
    pub fn is_synchronized(self) -> bool {
        !matches!(self, State::Closed | State::SynSent | State::SynReceived)
    }

    /// States in which data may still arrive from the peer.
    pub fn can_receive(self) -> bool {
        matches!(self, State::Established | State::FinWait1 | State::FinWait2)
    }

    /// The name `ss`/netstat prints.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::SynSent => "SYN_SENT",
            State::SynReceived => "SYN_RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN_WAIT_1",
            State::FinWait2 => "FIN_WAIT_2",
            State::CloseWait => "CLOSE_WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST_ACK",
            State::TimeWait => "TIME_WAIT",
        }
    }
}

/// What the Eifel detection algorithm (RFC 3522) remembers about an RTO, and the
/// transport state to put back if it was spurious (the contract in cc-modules: "the
/// transport restores its own pre-RTO state (`recover`, the recovery state)").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RtoUndo {
    /// RFC 3522 §2 step (2): "set the variable RetransmitTS to the value of the
    /// Timestamp Value field of the Timestamps option included in the retransmit sent
    /// when loss recovery is initiated".
    pub retransmit_ts: u32,
    /// The recovery state before the RTO.
    pub recovery: Recovery,
    /// `recover` before the RTO.
    pub recover: Seq,
}

/// The control block of one connection.
pub struct Tcb {
    /// Shared with the stack (and the other connections) until a per-socket setting
    /// changes it (`Arc::make_mut`): most connections never own a copy.
    pub(super) cfg: Arc<TcpConfig>,
    /// TCP_NODELAY, per socket (set on most server connections, so not in `cfg`).
    pub(super) nodelay: bool,
    pub(super) state: State,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    /// Came from a listener (so a RST in SYN-RECEIVED just discards it).
    pub(super) passive: bool,
    /// The application dropped its handle: FIN-WAIT-2 is bounded by
    /// `orphan_fin_timeout`, zero-window probing by `orphan_persist_probes`.
    pub(super) orphaned: bool,
    /// Its unit in the stack-wide orphan gauge (`max_orphans`), while orphaned and
    /// neither closed nor in TIME-WAIT.
    orphan_slot: Option<Slot>,
    /// Its unit in the stack-wide TIME-WAIT gauge (`max_time_wait`), while in it.
    time_wait_slot: Option<Slot>,
    pub(super) created: Instant,

    // --- send sequence space (RFC 9293 §3.3.1) ---
    pub(super) iss: Seq,
    pub(super) snd_una: Seq,
    pub(super) snd_nxt: Seq,
    /// Highest sequence number sent + 1 (BSD `snd_max`).
    pub(super) snd_max: Seq,
    pub(super) snd_wnd: u32,
    pub(super) snd_wl1: Seq,
    pub(super) snd_wl2: Seq,
    /// The largest window the peer ever offered (RFC 5961's MAX.SND.WND).
    pub(super) max_sndwnd: u32,
    /// Shift applied to the peer's window field.
    pub(super) snd_wscale: u8,
    /// Send MSS: payload bytes per full segment (options already deducted).
    pub(super) t_maxseg: u32,

    // --- receive sequence space ---
    pub(super) irs: Seq,
    /// The text of the peer's SYN in a simultaneous open, queued until ESTABLISHED
    /// (RFC 9293 §3.10.7.3).
    pub(super) syn_data: Option<Vec<u8>>,
    pub(super) rcv_nxt: Seq,
    /// Right edge of the window we last advertised (BSD `rcv_adv`).
    pub(super) rcv_adv: Seq,
    pub(super) rcv_wscale: u8,
    /// The peer's FIN, received out of order: processed when rcv_nxt reaches it.
    pub(super) rcv_fin: Option<Seq>,
    /// ACK number we last sent.
    pub(super) last_ack_sent: Seq,

    // --- options ---
    pub(super) ts_enabled: bool,
    pub(super) ts_recent: u32,
    ts_offset: u32,
    pub(super) sack_ok: bool,
    pub(super) wscale_ok: bool,
    /// ECN (RFC 3168 §6.1.1): we sent an ECN-setup SYN or SYN,ACK and no non-ECN-setup
    /// one (the first half of the negotiation).
    pub(super) ecn_setup_sent: bool,
    /// ECN negotiated: data segments go out ECT(0), CE marks are echoed, ECE is obeyed.
    pub(super) ecn_ok: bool,
    /// Receiver side (RFC 3168 §6.1.3): a CE mark arrived; every ACK carries ECE until
    /// a segment with CWR does (Linux's TCP_ECN_DEMAND_CWR).
    pub(super) ecn_echo: bool,
    /// Sender side (RFC 3168 §6.1.2): the window was reduced; the next new data segment
    /// carries CWR (Linux's TCP_ECN_QUEUE_CWR).
    pub(super) ecn_cwr_due: bool,

    // --- buffers ---
    pub(super) sndbuf: SendBuffer,
    pub(super) rcvbuf: RecvBuffer,
    /// Sequence number of our FIN, fixed when the application closed (no data can be
    /// queued after it).
    snd_fin: Option<Seq>,
    /// The peer's FIN was received (reads return EOF once drained).
    pub(super) fin_received: bool,

    // --- congestion control ---
    pub(super) cc: Box<dyn CongestionControl>,
    pub(super) ccv: CcVars,
    /// Congestion control started (at establishment, once the MSS is known).
    pub(super) cc_started: bool,
    pub(super) dupacks: u32,
    /// The recovery state, as the congestion-control contract defines it.
    pub(super) recovery: Recovery,
    /// RFC 6582's `recover`.
    pub(super) recover: Seq,
    /// Retransmit exactly one segment at snd_una next (fast retransmit / partial ACK).
    pub(super) rexmit_one: bool,
    /// Pacing (`tcp/output.rs`): when the next burst of new data may leave; `None`
    /// until the first paced burst.
    pub(super) pace_next: Option<Instant>,
    /// Pacing: the largest burst (TSO segment) the current rate allows, 0 = no limit.
    pub(super) pace_burst: usize,
    /// The sender was cwnd-limited when it last ran out of window.
    pub(super) cwnd_limited: bool,
    /// Round counting for modules: a round ends when snd_una passes `round_end`.
    pub(super) round_end: Seq,
    pub(super) rounds: u64,
    /// When the last data segment went out (for `after_idle`).
    pub(super) last_data_sent: Option<Instant>,
    /// The SACK scoreboard and RFC 6675's HighRxt/RescueRxt (sender side).
    pub(super) sb: Scoreboard,
    /// A D-SACK block (RFC 2883) to report in the next ACK (receiver side).
    pub(super) dsack: Option<(Seq, Seq)>,
    /// Eifel detection (RFC 3522) of the last RTO, until its first acceptable ACK.
    pub(super) eifel: Option<RtoUndo>,
    /// RACK-TLP (RFC 8985): the send log, RACK's and TLP's state (`tcp/rack.rs`); boxed,
    /// so a connection that never sends data pays one allocation, not the struct.
    pub(super) rack: Box<Rack>,
    /// PRR (RFC 6937) during a SACK fast-recovery episode (`tcp/prr.rs`).
    pub(super) prr: Option<Prr>,

    // --- RTT ---
    pub(super) rtt: RttEstimator,
    /// Karn timing without timestamps: (sequence timed, when sent).
    pub(super) rtt_timing: Option<(Seq, Instant)>,
    /// Consecutive RTO expirations (BSD `t_rxtshift`).
    pub(super) rxtshift: u32,

    // --- ACK policy ---
    pub(super) ack_now: bool,
    /// The pending ACK is a challenge ACK (RFC 5961): a bare ACK at SND.NXT, never
    /// carrying a FIN again (`fin_with_every_ack`), as FreeBSD's `tcp_respond` sends it.
    pub(super) challenge_now: bool,
    /// In-order bytes received since our last ACK.
    pub(super) unacked_bytes: u32,
    /// Send a zero-window probe byte even though the window is closed.
    pub(super) force_one: bool,
    pub(super) persist_shift: u32,
    /// When the peer's window closed with data waiting (the persist timer's start);
    /// `None` while it is open.
    pub(super) zero_window_since: Option<Instant>,
    /// Send a RST (abort) on the next output.
    pub(super) send_rst: bool,
    /// A keepalive probe is due on the next output.
    pub(super) keep_probe_due: bool,
    /// Keepalive probes sent without an answer.
    pub(super) keep_probes: u32,
    /// Last time a segment arrived (for keepalive and idle restart).
    pub(super) last_rx: Instant,
    /// Challenge ACK rate limit (RFC 5961 §7): window start and count.
    pub(super) challenge_window: (Instant, u32),
    /// A challenge or out-of-window ACK owed, not yet settled against the limits
    /// (`tcp/ack_limit.rs`).
    pub(super) limited_ack: Option<super::ack_limit::LimitedAck>,
    /// When the last ACK for an unacceptable segment without data was sent.
    pub(super) last_oow_ack: Option<Instant>,

    pub(super) timers: Timers,
    /// When to look whether idle, empty buffers can give their memory back
    /// (`buffer_idle_release`); set while a buffer holds memory. Not one of the
    /// protocol's timers: only the TCP layer's schedule ([`Tcb::poll_deadline`]) sees it.
    pub(super) buffer_check_at: Option<Instant>,
    error: Option<TcpError>,
    /// The last soft error ICMP reported (FreeBSD's `t_softerror`, Linux's
    /// `sk_err_soft`): the reason given when the connection then times out.
    pub(super) soft_error: Option<TcpError>,
    pub(super) stats: ConnStats,
    /// Readiness changed since the owner last looked (wake the application).
    pub(super) events: bool,
    /// The opt-in cwnd trace (boxed: one pointer when off).
    pub(super) cwnd_trace: Option<Box<CwndTrace>>,
    /// Helper modules' data (`tcp/hhook.rs`, FreeBSD's OSD slot): `None` unless a helper
    /// was registered on the stack when the connection was made (`attach_helpers`: an
    /// active open, or a passive one leaving the SYN cache); one pointer otherwise.
    pub(super) helpers: Option<Box<HelperSlot>>,
}

impl std::fmt::Debug for Tcb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tcb")
            .field("state", &self.state)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("snd_una", &self.snd_una)
            .field("snd_nxt", &self.snd_nxt)
            .field("snd_max", &self.snd_max)
            .field("rcv_nxt", &self.rcv_nxt)
            .finish_non_exhaustive()
    }
}

/// The smallest shift that lets `buf` bytes be advertised in a 16-bit field
/// (RFC 7323 §2.3: at most 14).
fn wscale_for(buf: usize) -> u8 {
    let mut s = 0u8;
    while s < 14 && (65535usize << s) < buf {
        s += 1;
    }
    s
}

impl Tcb {
    pub(super) fn new(
        cfg: Arc<TcpConfig>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: Seq,
        cc: Box<dyn CongestionControl>,
        now: Instant,
    ) -> Tcb {
        let rtt = RttEstimator::new(cfg.rto);
        let mss = cfg.mss as u32;
        let rcv_wscale = if cfg.window_scaling {
            cfg.window_shift
                .map_or_else(|| wscale_for(cfg.rcvbuf), |s| s.min(MAX_WSCALE))
        } else {
            0
        };
        let mut tcb = Tcb {
            state: State::Closed,
            local,
            remote,
            passive: false,
            orphaned: false,
            orphan_slot: None,
            time_wait_slot: None,
            created: now,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            snd_wl1: Seq(0),
            snd_wl2: iss,
            max_sndwnd: 0,
            snd_wscale: 0,
            // Until the peer says otherwise (RFC 9293 §3.7.1: default 536).
            t_maxseg: 536.min(mss),
            irs: Seq(0),
            syn_data: None,
            rcv_nxt: Seq(0),
            rcv_adv: Seq(0),
            rcv_wscale,
            rcv_fin: None,
            last_ack_sent: Seq(0),
            ts_enabled: false,
            ts_recent: 0,
            // A per-connection offset so timestamps do not reveal uptime (RFC 7323 §5.4).
            ts_offset: iss.0.rotate_left(13),
            sack_ok: false,
            wscale_ok: false,
            ecn_setup_sent: false,
            ecn_ok: false,
            ecn_echo: false,
            ecn_cwr_due: false,
            sndbuf: SendBuffer::new(cfg.sndbuf),
            rcvbuf: {
                let mut b = RecvBuffer::new(cfg.rcvbuf);
                b.set_ooo_limits(cfg.max_ooo_ranges, cfg.max_ooo_bytes);
                b
            },
            snd_fin: None,
            fin_received: false,
            cc,
            ccv: CcVars::new(536),
            cc_started: false,
            dupacks: 0,
            recovery: Recovery::Open,
            recover: iss,
            rexmit_one: false,
            pace_next: None,
            pace_burst: 0,
            cwnd_limited: false,
            round_end: iss,
            rounds: 0,
            last_data_sent: None,
            sb: Scoreboard::with_limits(
                cfg.sack_max_holes,
                cfg.bounds.clone(),
                cfg.sack_global_max_holes,
            ),
            dsack: None,
            eifel: None,
            rack: Box::default(),
            prr: None,
            rtt,
            rtt_timing: None,
            rxtshift: 0,
            ack_now: false,
            challenge_now: false,
            unacked_bytes: 0,
            force_one: false,
            persist_shift: 0,
            zero_window_since: None,
            send_rst: false,
            keep_probe_due: false,
            keep_probes: 0,
            last_rx: now,
            challenge_window: (now, 0),
            limited_ack: None,
            last_oow_ack: None,
            timers: Timers::new(now),
            buffer_check_at: None,
            error: None,
            soft_error: None,
            stats: ConnStats::default(),
            events: false,
            cwnd_trace: cfg.cwnd_trace.map(|n| Box::new(CwndTrace::new(now, n))),
            nodelay: cfg.nodelay,
            helpers: None,
            cfg,
        };
        tcb.set_maxseg(536.min(mss));
        tcb
    }
    /// A passive open: a SYN arrived for a listener (RFC 9293 §3.10.7.2). The caller
    /// checked that the segment is a SYN without ACK/RST. The SYN,ACK goes out on the
    /// next [`Tcb::poll_output`].
    pub fn accept_syn(
        cfg: impl Into<Arc<TcpConfig>>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: Seq,
        cc: Box<dyn CongestionControl>,
        syn: &super::segment::Segment<'_>,
        now: Instant,
    ) -> Tcb {
        let mut tcb = Tcb::new(cfg.into(), local, remote, iss, cc, now);
        tcb.passive = true;
        tcb.state = State::SynReceived;
        tcb.irs = syn.seq;
        tcb.rcv_nxt = syn.seq + 1;
        tcb.rcv_adv = tcb.rcv_nxt;
        tcb.last_ack_sent = tcb.rcv_nxt;
        tcb.negotiate(syn);
        tcb.ecn_input_syn(syn.flags);
        // The SYN's window is never scaled (RFC 7323 §2.2).
        tcb.snd_wnd = syn.window as u32;
        tcb.max_sndwnd = tcb.snd_wnd;
        tcb.snd_wl1 = syn.seq;
        tcb.snd_wl2 = iss;
        tcb.timers
            .set(TimerKind::ConnEstab, now + tcb.cfg.connect_timeout);
        tcb
    }

    /// Applies the options of the peer's SYN (or SYN,ACK): MSS, window scale,
    /// timestamps and SACK-permitted are on only when both sides offered them.
    pub(crate) fn negotiate(&mut self, syn: &super::segment::Segment<'_>) {
        let none = super::segment::TcpOptions::default();
        let o = if self.cfg.no_options {
            &none
        } else {
            &syn.options
        };
        // RFC 9293 §3.7.1: without the option, assume 536.
        let peer_mss = o.mss.map(|m| m as u32).unwrap_or(536).max(64);
        if self.cfg.window_scaling {
            if let Some(ws) = o.wscale {
                self.wscale_ok = true;
                // RFC 7323 §2.3: a shift above 14 is treated as 14.
                self.snd_wscale = ws.min(14);
            }
        }
        if !self.wscale_ok {
            self.rcv_wscale = 0;
            self.snd_wscale = 0;
        }
        if self.cfg.timestamps {
            if let Some((tsval, _)) = o.timestamps {
                self.ts_enabled = true;
                self.ts_recent = tsval;
            }
        }
        self.sack_ok = self.cfg.sack && o.sack_permitted;
        let mss = peer_mss.min(self.cfg.mss as u32);
        self.set_maxseg(mss);
        if self.cfg.round_buffers_to_mss {
            let up = |n: usize| n.div_ceil(mss as usize) * mss as usize;
            let (snd, rcv) = (up(self.cfg.sndbuf), up(self.cfg.rcvbuf));
            self.set_buffer_sizes(Some(snd), Some(rcv));
        }
    }

    /// Sets the send MSS from the negotiated MSS, deducting the timestamp option that
    /// every segment will carry (RFC 9293 §3.7.1: the MSS counts options against it).
    fn set_maxseg(&mut self, mss: u32) {
        let opt = if self.ts_enabled { 12 } else { 0 };
        self.t_maxseg = mss.saturating_sub(opt).max(64);
        if self.cc_started {
            self.ccv.set_maxseg(self.t_maxseg);
        }
    }

    /// Starts congestion control once the handshake fixed the MSS: cwnd = IW (RFC
    /// 6928), or one segment if the SYN or SYN,ACK had to be retransmitted (RFC 5681
    /// §3.1), then the module's `conn_init`.
    pub(crate) fn cc_init(&mut self) {
        if self.cc_started {
            return;
        }
        self.cc_started = true;
        self.ccv = CcVars::new(self.t_maxseg);
        if self.stats.retransmits > 0 {
            self.ccv.cwnd = xstack_cc::window::loss_window(self.t_maxseg);
        }
        self.cc.conn_init(&mut self.ccv);
        // Only `input` starts congestion control, and it set `last_rx` to this segment's
        // arrival time.
        self.trace_cc(CcEvent::Init, self.last_rx);
    }

    /// In FIN-WAIT-2 without an owner, the wait for the peer's FIN is bounded.
    pub(crate) fn arm_orphan_timer(&mut self, now: Instant) {
        if self.orphaned && self.state == State::FinWait2 {
            self.timers
                .set(TimerKind::TwoMsl, now + self.cfg.orphan_fin_timeout);
        }
    }

    /// The connection lost its owner: it takes a unit of the stack-wide orphan gauge,
    /// or, beyond `max_orphans`, is reset at once (counted). False when reset.
    pub(crate) fn take_orphan_slot(&mut self) -> bool {
        if self.orphan_slot.is_some() || matches!(self.state, State::Closed | State::TimeWait) {
            return true;
        }
        let b = &self.cfg.bounds;
        self.orphan_slot = b.try_take(Gauge::Orphans, 1, self.cfg.max_orphans);
        if self.orphan_slot.is_none() {
            b.count(|c| &c.orphans_reset);
            self.abort();
            return false;
        }
        true
    }

    /// Enters TIME-WAIT for 2*MSL, within the stack-wide `max_time_wait`; beyond it the
    /// connection stays only until the ACK it owes is out (its 2*MSL timer fires at
    /// once) and is counted. An orphan in TIME-WAIT is no longer counted as an orphan.
    pub(crate) fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        self.timers.clear();
        self.orphan_slot = None;
        let b = &self.cfg.bounds;
        self.time_wait_slot = b.try_take(Gauge::TimeWait, 1, self.cfg.max_time_wait);
        let hold = if self.time_wait_slot.is_some() {
            self.cfg.time_wait
        } else {
            b.count(|c| &c.time_wait_refused);
            Duration::ZERO
        };
        self.timers.set(TimerKind::TwoMsl, now + hold);
        self.events = true;
    }

    /// Moves to CLOSED and drops all timers.
    pub(crate) fn enter_closed(&mut self) {
        self.orphan_slot = None;
        self.time_wait_slot = None;
        self.state = State::Closed;
        self.timers.clear();
        self.buffer_check_at = None;
        self.events = true;
    }

    /// Drops the connection with an error (RFC 9293 "connection reset"/timeouts).
    pub(crate) fn drop_with(&mut self, e: TcpError) {
        // A timeout after ICMP reported a soft error fails with that error (RFC 1122
        // §4.2.3.9 wants it passed on; Linux's `tcp_write_err` does the same).
        let e = match (e, self.soft_error) {
            (TcpError::TimedOut, Some(soft)) => soft,
            _ => e,
        };
        self.error.get_or_insert(e);
        self.enter_closed();
    }

    // ------------------------------------------------------------------ helpers

    /// Sets our timestamp clock so that it reads `ts` now (a SYN cookie's SYN,ACK carried
    /// a TSval chosen for its low bits; the connection made from it goes on from there).
    pub(crate) fn set_ts_clock(&mut self, ts: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.created).as_millis() as u32;
        self.ts_offset = ts.wrapping_sub(elapsed);
    }

    /// Takes no RTT sample from the segment `timed` (a cookie SYN,ACK sent at an unknown
    /// time).
    pub(crate) fn forget_rtt_timing(&mut self, timed: Seq) {
        if self.rtt_timing.is_some_and(|(t, _)| t == timed) {
            self.rtt_timing = None;
        }
    }

    /// The SYN cache sent `resent` retransmissions of this passive open's SYN,ACK
    /// before the control block existed: take them as its own (backed-off timer, no RTT
    /// sample from an ambiguous SYN,ACK, Karn).
    pub(crate) fn synack_resent(&mut self, resent: u32) {
        if resent == 0 {
            return;
        }
        self.rxtshift = resent;
        for _ in 0..resent {
            self.rtt.backoff();
        }
        self.rtt_timing = None;
        self.stats.retransmits += u64::from(resent);
    }

    /// Our timestamp clock: milliseconds since the connection was created, offset.
    pub(crate) fn ts_now(&self, now: Instant) -> u32 {
        (now.saturating_duration_since(self.created).as_millis() as u32)
            .wrapping_add(self.ts_offset)
    }

    /// Sequence number of the first byte in the send buffer.
    pub(crate) fn data_base(&self) -> Seq {
        if self.snd_una == self.iss {
            self.iss + 1
        } else {
            self.snd_una
        }
    }

    /// Sequence number one past the last byte in the send buffer.
    pub(crate) fn data_end(&self) -> Seq {
        self.data_base() + self.sndbuf.len() as u32
    }

    /// The application closed its sending side: a FIN follows the data.
    pub(crate) fn fin_queued(&self) -> bool {
        self.snd_fin.is_some()
    }

    /// Sequence number of our FIN, once the application closed.
    pub(crate) fn fin_seq(&self) -> Option<Seq> {
        self.snd_fin
    }

    /// True once our FIN has been acknowledged.
    pub(crate) fn fin_acked(&self) -> bool {
        self.fin_seq().is_some_and(|f| self.snd_una > f)
    }

    /// Bytes in flight (sent, not acknowledged).
    pub(crate) fn in_flight(&self) -> u32 {
        self.snd_max.dist(self.snd_una)
    }

    /// In RFC 6675 SACK-based loss recovery: fast recovery on a SACK connection.
    pub(crate) fn in_sack_recovery(&self) -> bool {
        self.sack_ok && self.recovery == Recovery::Fast
    }

    /// RFC 6675's `pipe`: "The algorithm's estimate of the number of outstanding octets
    /// in the network" (SetPipe()).
    /// With RACK (RFC 8985) a segment is lost when RACK says so, not by IsLost().
    pub(crate) fn pipe(&self) -> u32 {
        if self.rack_active() {
            return self.rack.log.pipe(self.snd_una, self.snd_max);
        }
        self.sb.pipe(self.snd_una, self.snd_max, self.t_maxseg)
    }

    /// The current retransmission timeout.
    pub(crate) fn rto(&self) -> Duration {
        self.rtt.rto()
    }
}

/// Read access to the control block for the sans-IO tests (`tcp/tests`), which check
/// state but never set it: setting up a state goes through segments and user calls.
#[cfg(test)]
impl Tcb {
    /// Our initial send sequence number.
    pub(crate) fn iss(&self) -> Seq {
        self.iss
    }

    /// The peer's initial sequence number.
    pub(crate) fn irs(&self) -> Seq {
        self.irs
    }

    /// SND.UNA: the oldest unacknowledged sequence number.
    pub(crate) fn snd_una(&self) -> Seq {
        self.snd_una
    }

    /// SND.NXT: the next sequence number to send.
    pub(crate) fn snd_nxt(&self) -> Seq {
        self.snd_nxt
    }

    /// The highest sequence number sent.
    pub(crate) fn snd_max(&self) -> Seq {
        self.snd_max
    }

    /// SND.WND: the peer's window, scaled.
    pub(crate) fn snd_wnd(&self) -> u32 {
        self.snd_wnd
    }

    /// The peer's window scale shift.
    pub(crate) fn snd_wscale(&self) -> u8 {
        self.snd_wscale
    }

    /// The send MSS (timestamps deducted).
    pub(crate) fn t_maxseg(&self) -> u32 {
        self.t_maxseg
    }

    /// RCV.NXT: the next sequence number expected.
    pub(crate) fn rcv_nxt(&self) -> Seq {
        self.rcv_nxt
    }

    /// The right edge of the window last advertised.
    pub(crate) fn rcv_adv(&self) -> Seq {
        self.rcv_adv
    }

    /// Timestamps (RFC 7323) are on.
    pub(crate) fn ts_enabled(&self) -> bool {
        self.ts_enabled
    }

    /// TS.Recent (RFC 7323 §4.3).
    pub(crate) fn ts_recent(&self) -> u32 {
        self.ts_recent
    }

    /// SACK (RFC 2018) was negotiated.
    pub(crate) fn sack_ok(&self) -> bool {
        self.sack_ok
    }

    /// The next new data segment carries CWR (RFC 3168 §6.1.2).
    pub(crate) fn ecn_cwr_due(&self) -> bool {
        self.ecn_cwr_due
    }

    /// The congestion-control variables (cwnd, ssthresh, maxseg).
    pub(crate) fn ccv(&self) -> CcVars {
        self.ccv
    }

    /// Duplicate ACKs counted since the last advance.
    pub(crate) fn dupacks(&self) -> u32 {
        self.dupacks
    }

    /// The loss-recovery state.
    pub(crate) fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// `recover` (RFC 6582): the end of the window recovery repairs.
    pub(crate) fn recover(&self) -> Seq {
        self.recover
    }

    /// The timers.
    pub(crate) fn timers(&self) -> &Timers {
        &self.timers
    }

    /// The SACK scoreboard.
    pub(crate) fn sb(&self) -> &Scoreboard {
        &self.sb
    }

    /// The RTT estimator.
    pub(crate) fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// RACK-TLP's state.
    pub(crate) fn rack(&self) -> &Rack {
        &self.rack
    }

    /// PRR's state in a fast-recovery episode.
    pub(crate) fn prr(&self) -> Option<Prr> {
        self.prr
    }

    /// The receive buffer.
    pub(crate) fn rcvbuf(&self) -> &RecvBuffer {
        &self.rcvbuf
    }

    /// Memory the send buffer holds.
    pub(crate) fn sndbuf_allocated(&self) -> usize {
        self.sndbuf.allocated()
    }
}

#[cfg(any(test, feature = "sim"))]
impl Tcb {
    /// The send and receive buffers, for the simulator's memory accounting.
    pub(crate) fn buffers(&self) -> (&SendBuffer, &RecvBuffer) {
        (&self.sndbuf, &self.rcvbuf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a connection costs before its buffers: the helper slot (`tcp/hhook.rs`) added
    /// one pointer to the control block (1,200 bytes before it).
    #[test]
    fn tcb_size() {
        let n = std::mem::size_of::<Tcb>();
        eprintln!("size_of::<Tcb>() = {n}");
        assert!(n <= 1208, "the control block grew to {n} bytes");
    }

    #[test]
    fn window_scale_fits_the_buffer() {
        assert_eq!(wscale_for(65535), 0);
        assert_eq!(wscale_for(65536), 1);
        assert_eq!(wscale_for(256 * 1024), 3);
        assert_eq!(wscale_for(1 << 30), 14);
        assert_eq!(wscale_for(usize::MAX), 14);
    }
}
