//! CUBIC (RFC 9438): the window grows along W_cubic(t) = C*(t-K)^3 + W_max after a
//! congestion event, concave up to the old maximum and convex beyond it, never slower than
//! a Reno flow would (the Reno-friendly region), with fast convergence, the RFC 9438 §4.8
//! timeout rule, an undo for spurious RTOs, and no growth or curve ageing while the
//! application limits the sender. Slow start is RFC 5681's with ABC, or HyStart++ (RFC 9406)
//! in the `cubic-hs` variant. After Linux's CUBIC where the RFC leaves a choice.
//!
//! Units: the RFC's window quantities (W_max, W_est, cwnd_epoch, cwnd_prior) are kept in
//! segments of the current SMSS, as f64, and converted from and to [`CcVars`]' bytes at each
//! use. Division of labour with the transport is NewReno's (see the crate docs): the
//! transport inflates during fast recovery, this module reduces on the signal, grows outside
//! recovery, and deflates when recovery ends (RFC 6582 option (1), as NewReno).
//!
//! Float safety: every f64 comes from a u32 or a [`Duration`], the only divisions are by a
//! window of at least one segment or by [`C`], and f64 → u32 casts saturate (NaN → 0), so no
//! input can panic or wrap; growth per ACK is then capped by ABC's credit.

use std::time::{Duration, Instant};

use crate::hystart::HyStart;
use crate::window;
use crate::{
    AckInfo, CcFactory, CcSignal, CcVars, CongInfo, CongestionControl, IdleInfo, Recovery,
    RttSample,
};

/// The name CUBIC is registered under.
pub const NAME: &str = "cubic";
/// The name of CUBIC with HyStart++ ([`Cubic::with_hystart`]).
pub const NAME_HS: &str = "cubic-hs";

/// RFC 9438 §4.1: "C: Constant that determines the aggressiveness of CUBIC in competing
/// with other congestion control algorithms in high-BDP networks." §5: "C SHOULD be set
/// to 0.4." Unit: segments / s³.
pub const C: f64 = 0.4;
/// RFC 9438 §4.6: "The parameter beta_cubic SHOULD be set to 0.7".
pub const BETA: f64 = 0.7;
/// RFC 9438 §4.3: "alpha_cubic = 3 * (1 - beta_cubic) / (1 + beta_cubic)" (≈ 0.53): the
/// Reno-friendly additive increase per RTT that matches Reno's average rate.
pub const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

/// Builds plain [`Cubic`] controllers; registered by [`crate::Registry::with_builtins`]
/// (which also registers [`NAME_HS`], built by [`Cubic::with_hystart`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl CcFactory for Factory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn build(&self) -> Box<dyn CongestionControl> {
        Box::new(Cubic::default())
    }
}

/// RFC 9438 §4.2, Figure 2: "K = cubic_root((W_max - cwnd_epoch)/C)", seconds, with both
/// windows in segments. 0 when W_max is not above cwnd_epoch (no plateau to climb back to:
/// the curve starts in its convex part, RFC 9438 §4.8 and §4.10).
pub fn k_seconds(w_max: f64, cwnd_epoch: f64) -> f64 {
    let gap = w_max - cwnd_epoch;
    if gap > 0.0 {
        (gap / C).cbrt()
    } else {
        // Also the NaN case: comparisons with NaN are false.
        0.0
    }
}

/// RFC 9438 §4.2, Figure 1: "W_cubic(t) = C * (t - K)^3 + W_max", segments, for `t` and
/// `k` in seconds.
pub fn w_cubic(t: f64, k: f64, w_max: f64) -> f64 {
    C * (t - k).powi(3) + w_max
}

/// Which rule set cwnd on the last ACK (RFC 9438 §4.3-4.5), for `state()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    /// No ACK since the last reset, or growth not allowed.
    None,
    /// cwnd < ssthresh.
    SlowStart,
    /// §4.3: W_cubic(t) < W_est.
    RenoFriendly,
    /// §4.4: cwnd < W_max.
    Concave,
    /// §4.5: cwnd >= W_max.
    Convex,
}

impl Region {
    fn as_str(self) -> &'static str {
        match self {
            Region::None => "-",
            Region::SlowStart => "slow-start",
            Region::RenoFriendly => "reno-friendly",
            Region::Concave => "concave",
            Region::Convex => "convex",
        }
    }
}

/// One congestion-avoidance stage: the curve it follows.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Epoch {
    /// RFC 9438 `t_epoch`, shifted forward by application-limited periods (§4.2).
    start: Instant,
    /// RFC 9438 `cwnd_epoch`, segments.
    cwnd: f64,
    /// The W_max of Figure 1 for this stage (the curve's plateau, "origin point" in Linux),
    /// segments.
    w_max: f64,
    /// K, seconds.
    k: f64,
    /// RFC 9438 `W_est`, segments.
    w_est: f64,
    /// The last ACK this stage saw, to measure application-limited gaps.
    last_ack: Instant,
    /// Growth below one byte, carried to the next ACK so slow growth is not rounded away.
    carry: f64,
}

/// Everything a spurious-RTO undo restores (RFC 9438 §4.9).
#[derive(Debug, Clone, PartialEq)]
struct Core {
    hystart: HyStart,
    /// RFC 9438 `W_max`, segments: cwnd just before the last window reduction, after fast
    /// convergence. 0 when undefined (before any congestion event, and after an RTO: §4.8).
    w_max: f64,
    /// RFC 9438 `cwnd_prior`, segments: cwnd when ssthresh was last set (0 = never).
    cwnd_prior: f64,
    /// The current congestion-avoidance stage; `None` until the first ACK of one.
    epoch: Option<Epoch>,
    region: Region,
    /// The first clock reading seen: the origin of `state()`'s relative times.
    clock_origin: Option<Instant>,
    /// The latest clock reading seen, for `state()`'s `t_ms`.
    last_now: Option<Instant>,
}

/// One connection's CUBIC state.
#[derive(Debug, Clone, PartialEq)]
pub struct Cubic {
    core: Core,
    /// The state before the first expiry of the current RTO run, for `RtoErr`.
    undo: window::RtoUndo<Core>,
}

impl Default for Cubic {
    /// CUBIC with RFC 5681 slow start.
    fn default() -> Self {
        Self {
            core: Core {
                hystart: HyStart::new(false),
                w_max: 0.0,
                cwnd_prior: 0.0,
                epoch: None,
                region: Region::None,
                clock_origin: None,
                last_now: None,
            },
            undo: window::RtoUndo::default(),
        }
    }
}

impl Cubic {
    /// CUBIC whose initial slow start is HyStart++ (RFC 9406), registered as [`NAME_HS`].
    /// RFC 9438 §4.10: "In general, CUBIC SHOULD use the HyStart++ slow start algorithm
    /// \[RFC9406\] or MAY use the Reno TCP slow start algorithm \[RFC5681\] in the rare cases
    /// when HyStart++ is not suitable."
    pub fn with_hystart() -> Self {
        let mut cc = Self::default();
        cc.core.hystart = HyStart::new(true);
        cc
    }

    /// W_max in segments (0 while undefined).
    pub fn w_max(&self) -> f64 {
        self.core.w_max
    }

    /// K of the current congestion-avoidance stage, seconds; `None` outside one.
    pub fn k(&self) -> Option<f64> {
        self.core.epoch.map(|e| e.k)
    }

    /// W_est of the current congestion-avoidance stage, segments; `None` outside one.
    pub fn w_est(&self) -> Option<f64> {
        self.core.epoch.map(|e| e.w_est)
    }
}

impl Core {
    fn seen(&mut self, now: Instant) {
        self.clock_origin.get_or_insert(now);
        self.last_now = Some(now);
    }

    /// Start a congestion-avoidance stage at `now` with cwnd `cwnd` (segments).
    fn start_epoch(&mut self, now: Instant, cwnd: f64) -> Epoch {
        // RFC 9438 §4.10: "CUBIC [...] may exit the first slow start without incurring any
        // packet loss and thus W_max is undefined. In this special case, CUBIC sets
        // cwnd_prior = cwnd and switches to congestion avoidance. It then increases its
        // congestion window size using Figure 1, where t is the elapsed time since the
        // beginning of the current congestion avoidance stage, K is set to 0, and W_max is
        // set to the congestion window size at the beginning of the current congestion
        // avoidance stage." §4.8 says the same of the first stage after a timeout. A W_max
        // below cwnd_epoch (a module switched in with a larger window) is treated alike.
        if self.cwnd_prior <= 0.0 {
            self.cwnd_prior = cwnd;
        }
        if self.w_max.is_nan() || self.w_max <= cwnd {
            self.w_max = cwnd;
        }
        let epoch = Epoch {
            start: now,
            cwnd,
            w_max: self.w_max,
            k: k_seconds(self.w_max, cwnd),
            // RFC 9438 §4.3: "W_est is set equal to cwnd_epoch at the start of the
            // congestion avoidance stage." (§4.8 repeats it for the stage after a timeout.)
            w_est: cwnd,
            last_ack: now,
            carry: 0.0,
        };
        self.epoch = Some(epoch);
        epoch
    }

    /// One ACK in congestion avoidance that may grow cwnd by up to `credit` bytes.
    fn congestion_avoidance(&mut self, v: &mut CcVars, ack: &AckInfo, credit: u32) {
        let mss = f64::from(v.maxseg.max(1));
        let cwnd = f64::from(v.cwnd.max(1)) / mss;
        let mut e = match self.epoch {
            Some(e) => e,
            None => self.start_epoch(ack.now, cwnd),
        };
        // RFC 9438 §4.2: "t = current_time - t_epoch".
        let t = ack.now.saturating_duration_since(e.start).as_secs_f64();
        // RFC 9438 §4.2: "where RTT is the smoothed round-trip time". Before any sample
        // (cannot happen in practice: an RTT sample precedes congestion avoidance), the
        // target is the curve now.
        let rtt = ack.srtt.or(ack.min_rtt).unwrap_or(Duration::ZERO);
        let segments_acked = f64::from(credit) / mss;

        // RFC 9438 §4.3: "W_est = W_est + alpha_cubic * segments_acked / cwnd" (Figure 4),
        // and "Once W_est has grown to reach the cwnd at the time of most recently setting
        // ssthresh -- that is, W_est >= cwnd_prior -- the sender SHOULD set alpha_cubic to 1
        // to ensure that it can achieve the same congestion window increment rate as Reno".
        let alpha = if e.w_est >= self.cwnd_prior {
            1.0
        } else {
            ALPHA
        };
        e.w_est += alpha * segments_acked / cwnd;

        let next = if w_cubic(t, e.k, e.w_max) < e.w_est {
            // RFC 9438 §4.3: "When receiving a new ACK in congestion avoidance (where cwnd
            // could be greater than or less than W_max), CUBIC checks whether W_cubic(t) is
            // less than W_est. If so, CUBIC is in the Reno-friendly region and cwnd SHOULD be
            // set to W_est at each reception of a new ACK."
            self.region = Region::RenoFriendly;
            e.w_est
        } else {
            // RFC 9438 §4.4 (concave, cwnd < W_max) and §4.5 (convex, cwnd >= W_max): "cwnd
            // MUST be incremented by (target - cwnd)/cwnd for each received new ACK, where
            // target is calculated as described in Section 4.2." Per segment acknowledged,
            // so stretch and delayed ACKs count what they cover.
            self.region = if cwnd < e.w_max {
                Region::Concave
            } else {
                Region::Convex
            };
            let target = target(w_cubic(t + rtt.as_secs_f64(), e.k, e.w_max), cwnd);
            cwnd + (target - cwnd) / cwnd * segments_acked
        };
        // Back to bytes. A window never shrinks on an ACK; growth is capped by the bytes
        // the ACK covers and by ABC's L segments per ACK (the modules' invariant), which
        // §4.2's 1.5*cwnd bound already keeps CUBIC under except in the Reno-friendly jump
        // after W_est overtakes the curve.
        let cap = credit.min(window::ABC_LIMIT_SEGS.saturating_mul(v.maxseg.max(1)));
        let total = ((next - cwnd) * mss).max(0.0) + e.carry;
        let whole = total.floor();
        let incr = if whole >= f64::from(cap) {
            e.carry = 0.0;
            cap
        } else {
            e.carry = total - whole;
            whole as u32
        };
        v.cwnd = window::grow(v.cwnd, incr);
        e.last_ack = ack.now;
        self.epoch = Some(e);
    }

    /// An ACK on which the sender was not cwnd-limited, in congestion avoidance.
    fn app_limited(&mut self, now: Instant) {
        // RFC 9438 §4.2: "The elapsed time t in Figure 1 MUST NOT include periods during
        // which cwnd has not been updated due to application-limited behavior (see Section
        // 5.8)." The time since the previous ACK is taken out of t by moving t_epoch.
        if let Some(e) = &mut self.epoch {
            let gap = now.saturating_duration_since(e.last_ack);
            e.start = e.start.checked_add(gap).unwrap_or(now).min(now);
            e.last_ack = now;
        }
    }

    /// RFC 9438 §4.6 and §4.7: the reaction to a loss or an ECN mark.
    fn reduce(&mut self, v: &mut CcVars, in_flight: u32) {
        let cwnd = f64::from(v.cwnd) / f64::from(v.maxseg.max(1));
        // RFC 9438 §4.7: "if (cwnd < W_max and fast convergence enabled) { // should we make
        // room for others W_max = cwnd * (1 + beta_cubic) / 2 } else { // remember cwnd
        // before reduction W_max = cwnd }"
        self.w_max = if cwnd < self.w_max {
            cwnd * (1.0 + BETA) / 2.0
        } else {
            cwnd
        };
        self.set_ssthresh(v, cwnd, in_flight);
        // RFC 9438 §4.6: "cwnd = max(ssthresh, 2) // reduction on loss, cwnd >= 2 SMSS";
        // with ECN "cwnd = max(ssthresh, 1)". window::reduce sets cwnd = ssthresh (at least
        // 2 SMSS) unless cwnd was already below it: a signal never opens the window.
        window::reduce(v, v.ssthresh);
        self.epoch = None;
        self.region = Region::None;
    }

    /// RFC 9438 §4.6's ssthresh, also used on a timeout (§4.8).
    fn set_ssthresh(&mut self, v: &mut CcVars, cwnd: f64, in_flight: u32) {
        // RFC 9438 §4.6: "ssthresh = flight_size * beta_cubic // new ssthresh" and
        // "cwnd_prior = cwnd // save cwnd". FlightSize, not cwnd: "Some implementations of
        // CUBIC currently use cwnd instead of flight_size when calculating a new ssthresh.
        // Implementations that use cwnd MUST use other measures to prevent cwnd from growing
        // when the volume of bytes in flight is smaller than cwnd." (We have those measures
        // too: no growth when not cwnd-limited.) "ssthresh = max(ssthresh, 2) // ssthresh >=
        // 2 SMSS".
        self.cwnd_prior = cwnd;
        // Rounded, so that 0.7 * 1460000 is 1022000 and not 1021999.99... truncated.
        let ssthresh = (f64::from(in_flight) * BETA).round() as u32;
        v.ssthresh = ssthresh.max(window::min_ssthresh(v.maxseg));
    }
}

/// RFC 9438 §4.2, Figure 3: target = cwnd if W_cubic(t + RTT) < cwnd; 1.5 * cwnd if
/// W_cubic(t + RTT) > 1.5 * cwnd; W_cubic(t + RTT) otherwise. "The lower and upper bounds
/// below ensure that CUBIC's congestion window increase rate is non-decreasing and is less
/// than the increase rate of slow start". A NaN lands on the lower bound.
fn target(w_cubic_next: f64, cwnd: f64) -> f64 {
    if w_cubic_next.is_nan() || w_cubic_next < cwnd {
        cwnd
    } else if w_cubic_next > 1.5 * cwnd {
        1.5 * cwnd
    } else {
        w_cubic_next
    }
}

impl CongestionControl for Cubic {
    fn name(&self) -> &'static str {
        if self.core.hystart.enabled() {
            NAME_HS
        } else {
            NAME
        }
    }

    fn conn_init(&mut self, v: &mut CcVars) {
        // TCP_CONGESTION semantics: keep the window handed over, only repair invariants. The
        // curve starts with the first congestion-avoidance ACK (K = 0, W_max = that cwnd).
        window::repair(v);
        self.core.hystart.conn_init(v);
    }

    fn ack_received(&mut self, v: &mut CcVars, sig: CcSignal, ack: &AckInfo) {
        self.core.seen(ack.now);
        let Some(credit) = window::growth_credit(sig, ack, v) else {
            if sig == CcSignal::Ack && ack.recovery == Recovery::Open && !ack.cwnd_limited {
                self.core.app_limited(ack.now);
            }
            return;
        };
        if v.in_slow_start() {
            // RFC 9438 §4.10: "CUBIC MUST employ a slow-start algorithm, when cwnd is no more
            // than ssthresh." RFC 5681 §3.1 with ABC, or HyStart++; see newreno.rs.
            self.core.region = Region::SlowStart;
            let incr = self.core.hystart.slow_start_increment(v, ack, credit);
            v.cwnd = window::grow(v.cwnd, incr);
            return;
        }
        self.core.congestion_avoidance(v, ack, credit);
    }

    fn cong_signal(&mut self, v: &mut CcVars, sig: CcSignal, info: &CongInfo) {
        debug_assert!(
            sig.is_congestion(),
            "{sig:?} is an ACK type: pass it to ack_received"
        );
        self.core.seen(info.now);
        match sig {
            CcSignal::NDupAck | CcSignal::Ecn => {
                // RFC 3168 §6.1.2: reduce "only once in response to a series of dropped
                // and/or CE packets from a single window of data". RFC 9438 §3.5: "CUBIC
                // [...] treats ECN-Echo ACKs as congestion events", per §4.6.
                if info.recovery != Recovery::Open {
                    return;
                }
                self.core.hystart.on_congestion();
                self.core.reduce(v, info.in_flight);
                // A real congestion signal: no undoing past it.
                self.undo.forget();
            }
            CcSignal::Rto => {
                // RFC 9438 §4.8: "In the case of a timeout, CUBIC follows Reno to reduce cwnd
                // [RFC5681] but sets ssthresh using beta_cubic (same as in Section 4.6)". A
                // backed-off expiry holds ssthresh (RFC 5681 §3.1), as in NewReno.
                if info.rto_count <= 1 {
                    self.undo.save(v, self.core.clone());
                    let cwnd = f64::from(v.cwnd) / f64::from(v.maxseg.max(1));
                    self.core.set_ssthresh(v, cwnd, info.in_flight);
                    // RFC 9438 §4.8: "During the first congestion avoidance stage after a
                    // timeout, CUBIC increases its congestion window size using Figure 1,
                    // where t is the elapsed time since the beginning of the current
                    // congestion avoidance stage, K is set to 0, and W_max is set to the
                    // congestion window size at the beginning of the current congestion
                    // avoidance stage." W_max becomes undefined until then (Linux's
                    // bictcp_reset on entering Loss does the same); the undo keeps the old one.
                    self.core.w_max = 0.0;
                }
                // RFC 5681 §3.1: "cwnd MUST be set to no more than the loss window, LW".
                v.cwnd = window::loss_window(v.maxseg);
                self.core.epoch = None;
                self.core.region = Region::None;
                self.core.hystart.on_congestion();
            }
            CcSignal::RtoErr => {
                // RFC 9438 §4.9: on a spurious congestion event CUBIC may undo: "cwnd =
                // cwnd_prior", with ssthresh, W_max, K and the epoch put back as they were
                // before the event. Here: everything saved at the first RTO, exactly, with
                // cwnd/ssthresh re-floored in case the MSS grew meanwhile.
                if let Some(core) = self.undo.restore(v) {
                    self.core = core;
                }
            }
            // ACK types (a transport bug, asserted above) and private signals: nothing.
            _ => {}
        }
    }

    fn post_recovery(&mut self, v: &mut CcVars, ack: &AckInfo) {
        self.core.seen(ack.now);
        // As NewReno: RFC 6582 §3.2 step 3 option (1) after fast recovery; nothing to deflate
        // after CWR. The new congestion-avoidance stage starts with the next growth ACK.
        if ack.recovery == Recovery::Fast {
            v.cwnd = window::reno_post_recovery_cwnd(v.ssthresh, ack.in_flight, v.maxseg);
        }
    }

    fn after_idle(&mut self, v: &mut CcVars, idle: &IdleInfo) {
        self.core.seen(idle.now);
        if idle.exceeds_rto() {
            // RFC 5681 §4.1: "a TCP SHOULD set cwnd to no more than RW before beginning
            // transmission if the TCP has not sent data in an interval exceeding the
            // retransmission timeout." The window no longer follows the curve: a new stage
            // begins when congestion avoidance resumes (W_max is kept for its K).
            v.cwnd = window::restart_window(v.cwnd, v.maxseg);
            self.core.epoch = None;
            self.core.region = Region::None;
        } else if let Some(e) = &mut self.core.epoch {
            // RFC 9438 §5.8 / §4.2: an idle sender is application-limited, and t must not
            // include that time, or "W_cubic(t) might be very high after restarting from
            // these periods". Linux's bictcp_cwnd_event(CA_EVENT_TX_START) moves epoch_start
            // forward by the idle time, never past now.
            e.start = e
                .start
                .checked_add(idle.idle)
                .unwrap_or(idle.now)
                .min(idle.now);
            e.last_ack = idle.now;
        }
    }

    fn rtt_sample(&mut self, _v: &mut CcVars, sample: &RttSample) {
        self.core.seen(sample.now);
        self.core.hystart.rtt_sample(sample);
    }

    fn state(&self) -> Vec<(&'static str, String)> {
        let c = &self.core;
        let ms = |from: Instant, to: Option<Instant>| {
            to.map_or("-".to_string(), |to| {
                to.saturating_duration_since(from).as_millis().to_string()
            })
        };
        let (k_ms, epoch_start_ms, t_ms, w_est, origin) = match c.epoch {
            Some(e) => (
                format!("{:.1}", e.k * 1000.0),
                c.clock_origin
                    .map_or("-".to_string(), |o| ms(o, Some(e.start))),
                ms(e.start, c.last_now),
                format!("{:.2}", e.w_est),
                format!("{:.2}", e.w_max),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
        };
        let mut out = vec![
            ("w_max", format!("{:.2}", c.w_max)),
            ("k_ms", k_ms),
            ("epoch_start_ms", epoch_start_ms),
            ("t_ms", t_ms),
            ("w_est", w_est),
            ("origin", origin),
            ("cwnd_prior", format!("{:.2}", c.cwnd_prior)),
            ("region", c.region.as_str().to_string()),
            ("rto_undo", self.undo.describe()),
        ];
        if c.hystart.enabled() {
            out.extend(c.hystart.state());
        }
        out
    }
}

#[cfg(test)]
mod tests;
