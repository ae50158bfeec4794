//! Pluggable TCP congestion control for xstack, after FreeBSD's `struct cc_algo` (mod_cc(9)).
//!
//! # Shape
//!
//! - [`CongestionControl`]: one controller per connection. Its state is its own struct (no
//!   `void *`); the hooks get a [`CcVars`] (cwnd, ssthresh, maxseg), the only part of the
//!   connection a module may write, plus a small event struct the transport fills in.
//! - [`CcFactory`] builds controllers; a [`Registry`] (one per stack instance, never global)
//!   maps names to factories, keeps the default and lists what is available. Applications
//!   register their own modules by name at run time.
//! - [`window`]: the arithmetic every module shares (IW, loss window, ssthresh floor, ABC
//!   increments, restart window) and the transport's fast-recovery inflation helpers.
//! - [`newreno`]: RFC 5681 + RFC 6582 + RFC 3465 (ABC).
//! - [`cubic`]: RFC 9438, on the same hooks and the same shared arithmetic.
//! - [`bbr`]: BBR (draft-ietf-ccwg-bbr, v3's state machine and loss response), a model-based
//!   module driven by [`RateSample`]s and setting a pacing rate.
//! - [`hystart`]: HyStart++ (RFC 9406), an option of both: `newreno-hs`, `cubic-hs`.
//! - [`testing`]: a model-based harness that drives any controller through random event
//!   sequences and checks the invariants every standard module keeps.
//!
//! # How the transport drives a module
//!
//! The transport does its own bookkeeping first (snd_una, FlightSize, duplicate-ACK counting,
//! the RFC 6582 `recover` point, the RTT estimator, the round counter) and only then calls
//! one hook, so a module never has to reach into the control block. The rules below are the
//! contract; each hook's doc repeats the part that concerns it.
//!
//! **Connection start.** Once the handshake has fixed the sender MSS:
//! `let mut vars = CcVars::new(maxseg)` (cwnd = IW per RFC 6928, ssthresh "arbitrarily high"),
//! `let mut cc = registry.create(name)?` and `cc.conn_init(&mut vars)`. If the SYN or SYN-ACK
//! had to be retransmitted, RFC 5681 §3.1 limits the initial window to one segment: set
//! `vars.cwnd = window::loss_window(maxseg)` before `conn_init`.
//!
//! **Each arriving ACK**, after the transport's bookkeeping:
//! 1. ECN-Echo set (RFC 3168): [`cong_signal`](CongestionControl::cong_signal)`(Ecn)` first;
//!    if the connection was [`Recovery::Open`] the transport then enters [`Recovery::Cwr`]
//!    with `recover = snd_max`.
//! 2. The ACK produced a valid RTT sample (Karn's rule): [`rtt_sample`](CongestionControl::rtt_sample).
//! 3. Exactly one of:
//!    - it ends a recovery episode (cumulative ACK at or beyond `recover` while in
//!      [`Recovery::Fast`] or [`Recovery::Cwr`]): [`post_recovery`](CongestionControl::post_recovery),
//!      and not `ack_received`;
//!    - it acknowledges new data otherwise (including partial ACKs in fast recovery):
//!      [`ack_received`](CongestionControl::ack_received)`(Ack)`;
//!    - it is the duplicate ACK that reaches the threshold (the third, RFC 5681 §3.2) and
//!      RFC 6582 §3.2 step 1 allows fast retransmit: [`cong_signal`](CongestionControl::cong_signal)`(NDupAck)`;
//!    - any other duplicate ACK: [`ack_received`](CongestionControl::ack_received)`(DupAck)`.
//!
//! **Fast recovery: who does what.** FreeBSD's split, which keeps modules small:
//!
//! | event | transport | module |
//! | --- | --- | --- |
//! | threshold dup ACK | `recover = snd_max`; `cong_signal(NDupAck)`; retransmit; then `cwnd += 3*SMSS` ([`window::fast_retransmit_inflate`]) | ssthresh per its rule (NewReno: RFC 5681 eq. (4)); `cwnd = min(cwnd, ssthresh)` |
//! | further dup ACK | `cwnd += SMSS` ([`window::dupack_inflate`]); `ack_received(DupAck)` | nothing |
//! | partial ACK | retransmit; deflate ([`window::partial_ack_deflate`]); `ack_received(Ack)` with `recovery: Fast` | nothing: no growth during recovery |
//! | full ACK | `post_recovery` | deflate (NewReno: RFC 6582 §3.2 step 3 option (1)) |
//!
//! So between `cong_signal(NDupAck)` and `post_recovery` the transport owns `cwnd` (the
//! inflation is its business, as in FreeBSD's `tcp_input`); modules must not change cwnd or
//! ssthresh from `ack_received` while [`Recovery::Fast`] or [`Recovery::Cwr`].
//! With SACK the transport does not inflate: it sets cwnd on every ACK of the episode by
//! Proportional Rate Reduction (RFC 6937, PRR-SSRB: [`window::prr_sndcnt`]) toward the
//! ssthresh the module chose, so every module's reduction is paced the same way.
//!
//! **One reduction per episode.** The transport raises `NDupAck` at most once per episode and
//! `Ecn` as ECN-Echo ACKs arrive; it always passes the recovery state the connection was in.
//! A module reduces only when that state is [`Recovery::Open`] (RFC 3168 §6.1.2: "the TCP
//! sender's congestion window should be reduced only once in response to a series of dropped
//! and/or CE packets from a single window of data").
//!
//! **Timers.** RTO expiry: `cong_signal(Rto)` with [`CongInfo::rto_count`] = the backoff count
//! including this expiry, then `recover = snd_max` and [`Recovery::Rto`] until snd_nxt
//! catches up with snd_max again. A spurious RTO detected later (F-RTO RFC 5682, Eifel
//! RFC 3522, DSACK): `cong_signal(RtoErr)` before processing the ACK that revealed it; the
//! module restores its pre-RTO cwnd/ssthresh and the transport restores its own pre-RTO
//! state (`recover`, the recovery state).
//!
//! **Delivery-rate samples** (draft-cheng-iccrg-delivery-rate-estimation): for each ACK that
//! delivered data (cumulatively or by SACK), after every other hook of that ACK and after
//! the transport's own recovery arithmetic (PRR), the transport passes a [`RateSample`] to
//! [`rate_sample`](CongestionControl::rate_sample). It is the last writer of cwnd for that
//! ACK, so a model-based module (BBR) may set cwnd there. Modules that do not care keep the
//! default empty body; modules that do say so with
//! [`wants_rate_samples`](CongestionControl::wants_rate_samples), and get samples whether
//! or not the transport's loss detection (RACK-TLP) keeps a send record of its own.
//!
//! **Enhanced RTT** (FreeBSD's `h_ertt`): when the stack runs an ERTT helper on the
//! connection, each new measurement ([`Ertt`]: every data segment timed, Karn and
//! delayed-ACK aware) goes to [`ertt_sample`](CongestionControl::ertt_sample) before the
//! other hooks of the ACK that produced it. Without the helper it is never called, so a
//! module that needs it must fall back to [`RttSample`]s (`examples/vegas.rs`).
//!
//! **Pacing.** Before each burst of new data the transport reads
//! [`pacing_rate`](CongestionControl::pacing_rate) and spaces the bursts at that rate;
//! `None` (the default) means no pacing, the behaviour of window-based modules.
//! Retransmissions are not paced.
//!
//! **Sending after a pause.** When the transport is about to send new data, nothing is in
//! flight, and it has sent data before: [`after_idle`](CongestionControl::after_idle) with
//! the time since the last data segment and the current RTO.
//!
//! **MSS changes** (PMTUD): [`CcVars::set_maxseg`], which keeps the invariants below.
//!
//! **Switching modules at run time** (TCP_CONGESTION): see [`switch`]. The connection keeps
//! its [`CcVars`]; the new module starts from the current cwnd and ssthresh.
//!
//! **Invariants** every module keeps (checked after every step by [`testing::Harness`]):
//! `cwnd >= maxseg`, `ssthresh >= 2*maxseg`, no wrap-around (saturating arithmetic), cwnd
//! equals one loss window right after an RTO, an ACK grows cwnd by at most
//! [`window::ABC_LIMIT_SEGS`] segments per ACK it stands for and not at all when the sender
//! was not cwnd-limited, and a congestion signal never raises cwnd.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::time::{Duration, Instant};

pub mod bbr;
pub mod cubic;
pub mod hystart;
pub mod newreno;
mod registry;
pub mod testing;
pub mod window;

pub use bbr::Bbr;
pub use cubic::Cubic;
pub use hystart::HyStart;
pub use newreno::NewReno;
pub use registry::{from_fn, CcError, CcFactory, FnFactory, Registry, MAX_NAME_LEN};

/// The congestion state of one connection: the only thing a module writes (modules never
/// see the whole control block). All values are in bytes, as in FreeBSD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CcVars {
    /// Congestion window (`snd_cwnd`), bytes. During NewReno fast recovery (no SACK) it
    /// includes the transport's RFC 5681 §3.2 inflation; during SACK recovery (RFC
    /// 6675) the transport counts `pipe` instead and leaves cwnd at the module's value.
    pub cwnd: u32,
    /// Slow-start threshold (`snd_ssthresh`), bytes.
    pub ssthresh: u32,
    /// Sender maximum segment size (SMSS, FreeBSD `t_maxseg`), bytes. Read-only for modules:
    /// the transport changes it through [`CcVars::set_maxseg`].
    pub maxseg: u32,
}

impl CcVars {
    /// The "arbitrarily high" initial ssthresh. RFC 5681 §3.1: "The initial value of ssthresh
    /// SHOULD be set arbitrarily high (e.g., to the size of the largest possible advertised
    /// window), but ssthresh MUST be reduced in response to congestion."
    pub const SSTHRESH_INFINITE: u32 = u32::MAX;

    /// The state of a new connection whose sender MSS is `maxseg`: cwnd = the RFC 6928
    /// initial window ([`window::initial_window`]), ssthresh = [`Self::SSTHRESH_INFINITE`].
    /// A `maxseg` of 0 (never valid on the wire) is treated as 1 so no later division or
    /// invariant can fail.
    pub fn new(maxseg: u32) -> Self {
        let maxseg = maxseg.max(1);
        Self {
            cwnd: window::initial_window(maxseg),
            ssthresh: Self::SSTHRESH_INFINITE,
            maxseg,
        }
    }

    /// Change the sender MSS (path MTU discovery, MSS clamping), keeping the invariants
    /// modules rely on: cwnd stays at least one segment and ssthresh at least two. Windows
    /// are in bytes, so nothing else needs rescaling.
    pub fn set_maxseg(&mut self, maxseg: u32) {
        self.maxseg = maxseg.max(1);
        self.cwnd = self.cwnd.max(window::loss_window(self.maxseg));
        self.ssthresh = self.ssthresh.max(window::min_ssthresh(self.maxseg));
    }

    /// Whether the slow-start rule applies. RFC 5681 §3.1: "The slow start algorithm is used
    /// when cwnd < ssthresh, while the congestion avoidance algorithm is used when cwnd >
    /// ssthresh. When cwnd and ssthresh are equal, the sender may use either slow start or
    /// congestion avoidance." We take congestion avoidance at equality, the cautious choice.
    pub fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }
}

/// Why a hook is called: FreeBSD's `ccsignal_t`. `Ack` and `DupAck` are ACK types for
/// [`CongestionControl::ack_received`]; the others are congestion signals for
/// [`CongestionControl::cong_signal`]. Match with a wildcard arm: more may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CcSignal {
    /// `CC_ACK`: an ACK that acknowledges new data (snd_una advances), including partial ACKs
    /// during fast recovery. Passed to `ack_received`.
    Ack,
    /// `CC_DUPACK`: a duplicate ACK (RFC 5681 §2 definition) other than the one that reaches
    /// the fast-retransmit threshold. Passed to `ack_received` with `bytes_acked == 0`.
    DupAck,
    /// `CC_ECN`: an ACK carried ECN-Echo (RFC 3168 §6.1.2). Raised for every such ACK, before
    /// the ACK itself is processed; the module reduces only when [`CongInfo::recovery`] is
    /// [`Recovery::Open`].
    Ecn,
    /// `CC_RTO`: the retransmission timer expired (RFC 6298 §5.4). [`CongInfo::rto_count`]
    /// tells a first expiry from a backed-off one.
    Rto,
    /// `CC_RTO_ERR`: the last RTO turned out to be spurious (F-RTO RFC 5682, Eifel RFC 3522,
    /// DSACK); undo what `Rto` did. Raised only while the connection is still recovering
    /// from that RTO.
    RtoErr,
    /// `CC_NDUPACK`: the duplicate-ACK threshold was reached and the transport enters fast
    /// retransmit / fast recovery (RFC 5681 §3.2 step 2, RFC 6582 §3.2 step 1 permitting).
    /// Raised once per loss episode.
    NDupAck,
    /// Module-private signals (FreeBSD's `CC_SIGPRIVMASK` range). The transport never raises
    /// them; a module may feed its own hooks with them. Modules ignore values they don't own.
    Private(u32),
}

impl CcSignal {
    /// True for the signals that report congestion (everything but the ACK types).
    pub fn is_congestion(self) -> bool {
        !matches!(self, CcSignal::Ack | CcSignal::DupAck)
    }
}

/// The recovery state the transport is in (FreeBSD's `IN_FASTRECOVERY` / `IN_CONGRECOVERY`
/// flags and the go-back-N phase after an RTO), as one value so no impossible combination
/// can be passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Recovery {
    /// No recovery in progress: the module may grow cwnd and react to congestion.
    #[default]
    Open,
    /// RFC 6582 fast recovery (`IN_FASTRECOVERY`): entered on `NDupAck`, left by the ACK that
    /// covers `recover`. The transport owns cwnd (inflation) until `post_recovery`.
    Fast,
    /// ECN congestion window reduced (`IN_CONGRECOVERY`, RFC 3168 §6.1.2): entered on an
    /// `Ecn` signal in `Open`, left by the ACK that covers `recover` (one window later).
    Cwr,
    /// After an RTO, while the transport resends what was outstanding (snd_nxt < snd_max):
    /// slow start from the loss window, with ABC's per-ACK limit at one segment.
    Rto,
}

impl Recovery {
    /// True while a window reduction is in force (fast recovery or CWR): no growth, no
    /// second reduction. FreeBSD's `IN_RECOVERY()`.
    pub fn in_recovery(self) -> bool {
        matches!(self, Recovery::Fast | Recovery::Cwr)
    }
}

/// What the transport knows about one ACK, filled in after its own bookkeeping. Passed to
/// [`CongestionControl::ack_received`] and [`CongestionControl::post_recovery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckInfo {
    /// Bytes newly acknowledged by this ACK: how far snd_una advanced (FreeBSD
    /// `ccv->bytes_this_ack`); 0 for a duplicate ACK.
    pub bytes_acked: u32,
    /// How many ACK segments this call stands for, at least 1. The transport may merge the
    /// ACKs of one receive batch into one call (FreeBSD `ccv->nsegs`); ABC's per-ACK limit
    /// scales with it. A value of 0 is treated as 1.
    pub acks: u32,
    /// FlightSize after this ACK: bytes sent and not yet cumulatively acknowledged
    /// (snd_max - snd_una).
    pub in_flight: u32,
    /// The sender was limited by cwnd, not by the application or the peer's window, when
    /// this ACK's data went out (FreeBSD `CCF_CWND_LIMITED`; RFC 7661's concern). Recommended
    /// rule: the flight just before this ACK was within one SMSS of cwnd, or data was queued
    /// that cwnd held back. Modules do not grow cwnd on ACKs where this is false.
    pub cwnd_limited: bool,
    /// The recovery state the connection is in for this ACK. For `post_recovery`, the
    /// episode that this ACK ends ([`Recovery::Fast`] or [`Recovery::Cwr`]).
    pub recovery: Recovery,
    /// The transport's clock when the ACK was processed (sans-IO: modules never read a clock).
    pub now: Instant,
    /// Smoothed RTT (RFC 6298 SRTT), once there is a sample.
    pub srtt: Option<Duration>,
    /// Smallest RTT sample seen on the connection.
    pub min_rtt: Option<Duration>,
    /// Round-trip round counter kept by the transport: it increments when an ACK covers the
    /// snd_nxt recorded when the current round began, and the new round ends at the current
    /// snd_nxt (RFC 9406 §4.2 `windowEnd`). Already updated for this ACK.
    pub round: u64,
}

impl AckInfo {
    /// An ACK at `now` that acknowledges nothing, with one ACK segment, nothing in flight,
    /// not cwnd-limited, [`Recovery::Open`], no RTT samples and round 0. Fill the rest with
    /// struct-update syntax: `AckInfo { bytes_acked: 1460, ..AckInfo::new(now) }`.
    pub fn new(now: Instant) -> Self {
        Self {
            bytes_acked: 0,
            acks: 1,
            in_flight: 0,
            cwnd_limited: false,
            recovery: Recovery::Open,
            now,
            srtt: None,
            min_rtt: None,
            round: 0,
        }
    }
}

/// What the transport knows when it raises a congestion signal. Passed to
/// [`CongestionControl::cong_signal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CongInfo {
    /// FlightSize when the congestion was detected (snd_max - snd_una), before the transport
    /// retransmits or pulls snd_nxt back. RFC 5681 §3.1 warns that using cwnd here instead
    /// is "an easy mistake to make".
    pub in_flight: u32,
    /// The recovery state the connection was in before this signal. Reductions happen only
    /// from [`Recovery::Open`]: one per episode.
    pub recovery: Recovery,
    /// For [`CcSignal::Rto`]: consecutive expiries for the same outstanding data, this one
    /// included (FreeBSD `t_rxtshift` after its increment): 1 for the first. Otherwise the
    /// current count (0 when no RTO is pending).
    pub rto_count: u32,
    /// The transport's clock.
    pub now: Instant,
}

impl CongInfo {
    /// A signal at `now` with nothing in flight, from [`Recovery::Open`], rto_count 0.
    pub fn new(now: Instant) -> Self {
        Self {
            in_flight: 0,
            recovery: Recovery::Open,
            rto_count: 0,
            now,
        }
    }
}

/// The pause before the transport resumes sending. Passed to [`CongestionControl::after_idle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleInfo {
    /// Time since the last data segment was sent.
    pub idle: Duration,
    /// The current retransmission timeout (RFC 6298 RTO).
    pub rto: Duration,
    /// The transport's clock.
    pub now: Instant,
}

impl IdleInfo {
    /// RFC 5681 §4.1's condition: the TCP "has not sent data in an interval exceeding the
    /// retransmission timeout".
    pub fn exceeds_rto(&self) -> bool {
        self.idle > self.rto
    }
}

/// One RTT measurement. Passed to [`CongestionControl::rtt_sample`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttSample {
    /// This measurement (never from a retransmitted segment: Karn's rule, RFC 6298 §3).
    pub rtt: Duration,
    /// SRTT after the transport folded this sample in.
    pub srtt: Duration,
    /// Smallest RTT sample seen on the connection, this one included.
    pub min_rtt: Duration,
    /// The round ([`AckInfo::round`]) of the ACK that produced the sample.
    pub round: u64,
    /// The transport's clock.
    pub now: Instant,
}

/// One delivery-rate sample (draft-cheng-iccrg-delivery-rate-estimation §3.3), taken by the
/// transport for an ACK that delivered data. Passed to [`CongestionControl::rate_sample`].
///
/// "Delivered" counts bytes cumulatively acknowledged or selectively acknowledged (SACK),
/// each byte once. The sample is over the interval from the send of the most recently sent
/// segment this ACK delivered (the draft's packet `P`) to this ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSample {
    /// `delivered / interval` in bytes per second; 0 when the interval is zero or the sample
    /// is invalid (the draft's `rs.delivery_rate`).
    pub delivery_rate: u64,
    /// Bytes delivered over the sample interval (`C.delivered - P.delivered`).
    pub delivered: u64,
    /// The sample interval: the longer of the send and ACK phases (draft §3.3, "to
    /// prevent ... an overestimate of the delivery rate").
    pub interval: Duration,
    /// RTT of `P` (its send to this ACK); `None` if `P` was retransmitted (Karn's rule).
    pub rtt: Option<Duration>,
    /// `P` was sent while the sender was application-limited: the rate may understate the
    /// path, so a max filter should take it only if it is higher than what it has.
    pub is_app_limited: bool,
    /// `P.delivered`: the connection's delivered count when `P` was sent. Round counting:
    /// a round ends when `prior_delivered` reaches the `total_delivered` noted at its start.
    pub prior_delivered: u64,
    /// `C.delivered` after this ACK: bytes delivered over the connection's life.
    pub total_delivered: u64,
    /// Bytes newly delivered by this ACK (cumulative plus newly SACKed).
    pub newly_acked: u32,
    /// Bytes this ACK newly marked lost (RACK, SACK scoreboard).
    pub newly_lost: u32,
    /// Bytes marked lost between the send of `P` and this ACK (`C.lost - P.lost`).
    pub lost: u64,
    /// Bytes in flight just after `P` was sent, `P` included (BBR's `rs.tx_in_flight`).
    pub tx_in_flight: u32,
    /// Bytes in flight before this ACK.
    pub prior_in_flight: u32,
    /// Bytes in flight after this ACK (and its loss marking).
    pub in_flight: u32,
    /// The sender was cwnd-limited (the rule of [`AckInfo::cwnd_limited`]).
    pub cwnd_limited: bool,
    /// The recovery state the connection is in for this ACK.
    pub recovery: Recovery,
    /// The transport's clock.
    pub now: Instant,
}

impl RateSample {
    /// An empty sample at `now` (nothing delivered, no RTT, [`Recovery::Open`]). Fill the
    /// rest with struct-update syntax.
    pub fn new(now: Instant) -> Self {
        Self {
            delivery_rate: 0,
            delivered: 0,
            interval: Duration::ZERO,
            rtt: None,
            is_app_limited: false,
            prior_delivered: 0,
            total_delivered: 0,
            newly_acked: 0,
            newly_lost: 0,
            lost: 0,
            tx_in_flight: 0,
            prior_in_flight: 0,
            in_flight: 0,
            cwnd_limited: false,
            recovery: Recovery::Open,
            now,
        }
    }
}

/// An enhanced RTT estimate from a helper module (FreeBSD's `h_ertt`, read by its delay-based
/// modules): every data segment timed, not one per RTT; retransmitted segments excluded
/// (Karn); samples an ACK may have held for the receiver's delayed-ACK timer kept apart.
/// Passed to [`CongestionControl::ertt_sample`] when the stack runs such a helper on the
/// connection (in xstack, the `ertt` helper); without one, modules never see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ertt {
    /// The newest measurement not suspected of a delayed-ACK wait.
    pub rtt: Duration,
    /// The smallest measurement over the connection's life (the propagation estimate a
    /// delay-based module compares against: Vegas' BaseRTT).
    pub min_rtt: Duration,
    /// The largest measurement over the connection's life.
    pub max_rtt: Duration,
    /// An exponentially weighted average of the measurements (gain 1/8, as RFC 6298's SRTT).
    pub srtt: Duration,
    /// Measurements taken (those suspected of a delayed-ACK wait not counted).
    pub samples: u64,
    /// ACKs whose measurement was set aside as possibly delayed by the receiver.
    pub delayed: u64,
    /// The transport's round counter when this measurement was taken
    /// ([`AckInfo::round`]).
    pub round: u64,
    /// The transport's clock when it was taken.
    pub now: Instant,
}

/// ECN marks on one received data segment. Passed to [`CongestionControl::ecn_pkt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcnPacket {
    /// The IP header carried CE (Congestion Experienced). FreeBSD `CCF_IPHDR_CE`.
    pub ce: bool,
    /// The TCP header carried CWR. FreeBSD `CCF_TCPHDR_CWR`.
    pub cwr: bool,
    /// The transport's clock.
    pub now: Instant,
}

/// How the transport should acknowledge the segment a module just saw in
/// [`CongestionControl::ecn_pkt`] (FreeBSD's `CCF_ACKNOW` output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AckPolicy {
    /// The transport's usual delayed-ACK rules.
    #[default]
    Normal,
    /// Send an ACK now (e.g. DCTCP on a change of the CE state, RFC 8257 §3.2).
    Immediate,
}

/// A congestion-control algorithm's per-connection controller (FreeBSD `struct cc_algo` plus
/// its `cc_data`). The transport owns one per connection, built by a [`CcFactory`], and
/// calls the hooks below in the order the crate docs describe. A hook writes only `v`
/// ([`CcVars`]) and the controller's own fields.
pub trait CongestionControl: Send + fmt::Debug {
    /// The registered name, e.g. `"newreno"`. The same value as its factory's
    /// [`CcFactory::name`].
    fn name(&self) -> &'static str;

    /// Called once when the controller is attached to a connection: at establishment, after
    /// `v` was made with [`CcVars::new`]; or when the socket switches to this module
    /// ([`switch`]), with the connection's current vars. It must not reset a cwnd or
    /// ssthresh that is already set (FreeBSD's newreno `conn_init` doesn't touch them);
    /// initialise the module's own state from them instead.
    fn conn_init(&mut self, v: &mut CcVars) {
        let _ = v;
    }

    /// Called for each ACK that acknowledges new data (`sig` = [`CcSignal::Ack`]) and for each
    /// duplicate ACK below or above the fast-retransmit threshold (`sig` =
    /// [`CcSignal::DupAck`]), after the transport's bookkeeping and after `rtt_sample`. Not
    /// called for the ACK that ends a recovery episode (that one goes to `post_recovery`) nor
    /// for the threshold duplicate ACK (that one is `cong_signal(NDupAck)`). The usual place
    /// to grow cwnd; while `ack.recovery.in_recovery()`, cwnd belongs to the transport.
    fn ack_received(&mut self, v: &mut CcVars, sig: CcSignal, ack: &AckInfo);

    /// Called when the transport detects congestion: `sig` is [`CcSignal::NDupAck`],
    /// [`CcSignal::Ecn`], [`CcSignal::Rto`] or [`CcSignal::RtoErr`] (never `Ack`/`DupAck`),
    /// before the transport reacts (retransmits, inflates, changes its recovery state). The
    /// module sets ssthresh and cwnd; for `NDupAck` and `Ecn` only when `info.recovery` is
    /// [`Recovery::Open`], and never raising cwnd.
    fn cong_signal(&mut self, v: &mut CcVars, sig: CcSignal, info: &CongInfo);

    /// Called instead of `ack_received` for the ACK that ends a recovery episode (it covers
    /// `recover`); `ack.recovery` says which episode ends ([`Recovery::Fast`] or
    /// [`Recovery::Cwr`]) and `ack.in_flight` is what is still outstanding. The place to
    /// deflate the window the transport inflated. The transport leaves recovery right after.
    fn post_recovery(&mut self, v: &mut CcVars, ack: &AckInfo) {
        let _ = (v, ack);
    }

    /// Called when the transport is about to send new data with nothing in flight after
    /// having sent data before, whatever the length of the pause; the module decides what
    /// the pause means (RFC 5681 §4.1: restart window when [`IdleInfo::exceeds_rto`]).
    fn after_idle(&mut self, v: &mut CcVars, idle: &IdleInfo) {
        let _ = (v, idle);
    }

    /// Called for each valid RTT measurement (Karn's rule), after the transport updated its
    /// estimator and before the `ack_received`/`post_recovery` of the same ACK. For
    /// delay-based modules and HyStart++ (RFC 9406), which needs per-round RTT minima.
    fn rtt_sample(&mut self, v: &mut CcVars, sample: &RttSample) {
        let _ = (v, sample);
    }

    /// Called on the receiving side for each data segment of an ECN-capable connection,
    /// before the transport decides how to acknowledge it (FreeBSD `ecnpkt_handler`; DCTCP's
    /// receiver lives here). The default keeps the transport's usual ACK behaviour.
    fn ecn_pkt(&mut self, v: &mut CcVars, pkt: &EcnPacket) -> AckPolicy {
        let _ = (v, pkt);
        AckPolicy::Normal
    }

    /// Called for each ACK that delivered data, with its delivery-rate sample, as the last
    /// hook of that ACK (after `ack_received`/`post_recovery`/`cong_signal` and after the
    /// transport's PRR), so what it writes to `v` stands. The default does nothing:
    /// window-based modules ignore rate samples.
    fn rate_sample(&mut self, v: &mut CcVars, rs: &RateSample) {
        let _ = (v, rs);
    }

    /// Called with each new enhanced RTT measurement ([`Ertt`]) when the stack runs an
    /// ERTT helper on the connection: for the ACK that produced it, before that ACK's
    /// `rtt_sample` and `ack_received`/`post_recovery`. The default does nothing: modules
    /// that do not use delay measurements ignore it, and without the helper it is never
    /// called (a module that needs it should fall back to [`RttSample`]s).
    fn ertt_sample(&mut self, v: &mut CcVars, e: &Ertt) {
        let _ = (v, e);
    }

    /// Whether the module uses [`rate_sample`](Self::rate_sample). The transport then keeps
    /// its per-segment send record even where loss detection does not need it (RACK-TLP
    /// off, no SACK), so samples come on every connection. The default, `false`, spares
    /// window-based modules that record.
    fn wants_rate_samples(&self) -> bool {
        false
    }

    /// Whether the module sets cwnd itself during fast recovery (from its own model, in
    /// `rate_sample` or `ack_received`), so the transport must not apply Proportional Rate
    /// Reduction (RFC 6937) over it. Linux skips its PRR (`tcp_cwnd_reduction`) for a
    /// module with its own `cong_control`, as BBR is. The default, `false`: the transport
    /// owns cwnd between `cong_signal(NDupAck)` and `post_recovery`.
    fn owns_recovery_window(&self) -> bool {
        false
    }

    /// The rate at which the transport should pace this connection's new data, in bytes
    /// per second, read before each burst (about 1 ms of data at the rate, at least two
    /// segments). `None` (the default) or `Some(0)`: no pacing, segments go out as cwnd and
    /// the peer's window allow.
    fn pacing_rate(&self) -> Option<u64> {
        None
    }

    /// The module's internal state as `(key, value)` pairs for `GET /info` and `tcp_info`-like
    /// snapshots (NewReno: bytes counted toward the next congestion-avoidance increase;
    /// CUBIC: W_max, K, epoch start). Keys are stable identifiers; values are display text:
    /// a plain decimal number where the value is numeric (`/info` serves it as a JSON
    /// number), `-` while undefined (JSON `null`), words otherwise (a JSON string).
    fn state(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// Switch an established connection to another module at run time (TCP_CONGESTION
/// semantics): the connection keeps `vars`, so the new module starts from the current cwnd
/// and ssthresh; this calls `new.conn_init(vars)` and returns the controller to store in
/// place of the old one (drop the old one; it has no other resources).
///
/// Before the connection is established, just replace the controller: `conn_init` runs at
/// establishment. The transport's own recovery state carries over: a module switched in
/// during fast recovery gets the `post_recovery` of an episode it didn't start, so
/// `post_recovery` must work from `v` and the [`AckInfo`] alone. Module-private history does
/// not carry over: a module switched in after an RTO cannot undo it on `RtoErr` (the window
/// simply stays reduced, the conservative outcome), and NewReno's congestion-avoidance byte
/// count restarts from zero (at most one segment of growth is delayed).
pub fn switch(
    vars: &mut CcVars,
    mut new: Box<dyn CongestionControl>,
) -> Box<dyn CongestionControl> {
    new.conn_init(vars);
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module that remembers the vars its `conn_init` saw, to show `switch` calls it once
    /// with the connection's current state.
    #[derive(Debug, Default)]
    struct Probe {
        seen: Vec<CcVars>,
    }

    impl CongestionControl for Probe {
        fn name(&self) -> &'static str {
            "probe"
        }
        fn conn_init(&mut self, v: &mut CcVars) {
            self.seen.push(*v);
        }
        fn ack_received(&mut self, _: &mut CcVars, _: CcSignal, _: &AckInfo) {}
        fn cong_signal(&mut self, _: &mut CcVars, _: CcSignal, _: &CongInfo) {}
        fn state(&self) -> Vec<(&'static str, String)> {
            vec![("conn_inits", self.seen.len().to_string())]
        }
    }

    #[test]
    fn switch_calls_conn_init_once_with_current_vars() {
        let mut vars = CcVars {
            cwnd: 50 * 1460,
            ssthresh: 30 * 1460,
            maxseg: 1460,
        };
        let cc = switch(&mut vars, Box::new(Probe::default()));
        assert_eq!(cc.name(), "probe");
        assert_eq!(cc.state(), vec![("conn_inits", "1".to_string())]);
        assert_eq!(
            vars,
            CcVars {
                cwnd: 50 * 1460,
                ssthresh: 30 * 1460,
                maxseg: 1460
            }
        );
    }

    // RFC 5681 §3.1: initial ssthresh "arbitrarily high"; RFC 6928 §2: IW.
    #[test]
    fn new_vars_start_with_iw_and_infinite_ssthresh() {
        let v = CcVars::new(1460);
        assert_eq!(
            v,
            CcVars {
                cwnd: 14_600,
                ssthresh: u32::MAX,
                maxseg: 1460
            }
        );
        assert!(v.in_slow_start());
        assert_eq!(CcVars::new(0).maxseg, 1, "a zero MSS is clamped, not kept");
    }

    #[test]
    fn set_maxseg_keeps_one_segment_cwnd_and_two_segment_ssthresh() {
        let mut v = CcVars {
            cwnd: 536,
            ssthresh: 1072,
            maxseg: 536,
        };
        v.set_maxseg(9000);
        assert_eq!(
            v,
            CcVars {
                cwnd: 9000,
                ssthresh: 18_000,
                maxseg: 9000
            }
        );
        // Shrinking the MSS leaves byte windows alone.
        v.set_maxseg(1460);
        assert_eq!(
            v,
            CcVars {
                cwnd: 9000,
                ssthresh: 18_000,
                maxseg: 1460
            }
        );
        v.set_maxseg(0);
        assert_eq!(v.maxseg, 1);
    }

    // RFC 5681 §3.1: equality may use either algorithm; we take congestion avoidance.
    #[test]
    fn slow_start_stops_at_ssthresh() {
        let v = CcVars {
            cwnd: 10,
            ssthresh: 10,
            maxseg: 1,
        };
        assert!(!v.in_slow_start());
        assert!(CcVars { cwnd: 9, ..v }.in_slow_start());
    }

    #[test]
    fn signal_and_recovery_classification() {
        assert!(!CcSignal::Ack.is_congestion());
        assert!(!CcSignal::DupAck.is_congestion());
        for s in [
            CcSignal::Ecn,
            CcSignal::Rto,
            CcSignal::RtoErr,
            CcSignal::NDupAck,
            CcSignal::Private(7),
        ] {
            assert!(s.is_congestion(), "{s:?}");
        }
        assert!(Recovery::Fast.in_recovery() && Recovery::Cwr.in_recovery());
        assert!(!Recovery::Open.in_recovery() && !Recovery::Rto.in_recovery());
    }

    #[test]
    fn idle_exceeds_rto_is_strict() {
        let now = Instant::now();
        let at = |ms| IdleInfo {
            idle: Duration::from_millis(ms),
            rto: Duration::from_millis(200),
            now,
        };
        assert!(!at(200).exceeds_rto());
        assert!(at(201).exceeds_rto());
    }
}
