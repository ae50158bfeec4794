//! HyStart++ (RFC 9406): a slow-start exit on rising delay, shared by every module that
//! slow-starts (NewReno, CUBIC). A module owns one [`HyStart`], forwards its RTT samples and
//! congestion signals to it, and asks it how much a slow-start ACK may grow cwnd.
//!
//! The state machine, per RFC 9406 §4.2: standard slow start while tracking each round's
//! minimum RTT; when a round's minimum (over at least [`N_RTT_SAMPLE`] samples) exceeds the
//! previous round's by the threshold, Conservative Slow Start (CSS) grows cwnd at a quarter
//! of the rate; an RTT back below the CSS baseline means the exit was spurious and slow start
//! resumes; after [`CSS_ROUNDS`] rounds of CSS, congestion avoidance (ssthresh = cwnd). A loss
//! or ECN mark ends it all: the module's own reduction sets ssthresh.
//!
//! Rounds are the transport's ([`AckInfo::round`], [`RttSample::round`]): a round ends when
//! an ACK covers the snd_nxt recorded at its start, RFC 9406 §4.2's `windowEnd`.

use std::time::Duration;

use crate::{window, AckInfo, CcVars, RttSample};

/// RFC 9406 §4.3: "MIN_RTT_THRESH = 4 msec".
pub const MIN_RTT_THRESH: Duration = Duration::from_millis(4);
/// RFC 9406 §4.3: "MAX_RTT_THRESH = 16 msec".
pub const MAX_RTT_THRESH: Duration = Duration::from_millis(16);
/// RFC 9406 §4.3: "MIN_RTT_DIVISOR = 8".
pub const MIN_RTT_DIVISOR: u32 = 8;
/// RFC 9406 §4.3: "N_RTT_SAMPLE = 8": samples a round needs before its minimum counts.
pub const N_RTT_SAMPLE: u32 = 8;
/// RFC 9406 §4.3: "CSS_GROWTH_DIVISOR = 4": CSS grows at a quarter of slow start's rate.
pub const CSS_GROWTH_DIVISOR: u32 = 4;
/// RFC 9406 §4.3: "CSS_ROUNDS = 5": rounds of CSS before congestion avoidance.
pub const CSS_ROUNDS: u64 = 5;

/// Where HyStart++ is in the initial slow start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Standard slow start, watching each round's minimum RTT for an increase.
    SlowStart,
    /// Conservative Slow Start after a delay increase.
    Css {
        /// RFC 9406 `cssBaselineMinRtt`: the round minimum that triggered CSS.
        baseline: Duration,
        /// The round CSS began in; CSS ends [`CSS_ROUNDS`] rounds later.
        start_round: u64,
    },
    /// Not (or no longer) in use: the module slow-starts the standard way. Also the state
    /// of a disabled [`HyStart`].
    Done,
}

impl Phase {
    /// A short stable name for `state()`: `slow-start`, `css` or `done`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::SlowStart => "slow-start",
            Phase::Css { .. } => "css",
            Phase::Done => "done",
        }
    }
}

/// One connection's HyStart++ state. [`HyStart::default`] is disabled: every call is then a
/// no-op and slow start is RFC 5681's.
///
/// The measurements live in a box that exists only while HyStart++ runs (slow start or
/// CSS) and is freed when it is done: every connection carries a module, and this is for
/// its first round trips only (inline, it was 72 of a NewReno's 160 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HyStart {
    enabled: bool,
    run: Option<Box<Run>>,
}

/// HyStart++ while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    /// `SlowStart` or `Css` (never `Done`: a finished run is dropped).
    phase: Phase,
    /// The round the minima below belong to.
    round: u64,
    /// RFC 9406 `lastRoundMinRTT`; `None` is the RFC's infinity.
    last_round_min: Option<Duration>,
    /// RFC 9406 `currentRoundMinRTT`.
    current_round_min: Option<Duration>,
    /// RFC 9406 `rttSampleCount`.
    samples: u32,
}

impl Default for HyStart {
    fn default() -> Self {
        Self::new(false)
    }
}

impl HyStart {
    /// HyStart++ on (`enabled`) or off. Its phase is settled by [`HyStart::conn_init`].
    pub fn new(enabled: bool) -> Self {
        Self { enabled, run: None }
    }

    /// Whether HyStart++ was asked for (it may be [`Phase::Done`] already).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.run.as_ref().map_or(Phase::Done, |r| r.phase)
    }

    /// Whether CSS is in force (slow-start growth divided by [`CSS_GROWTH_DIVISOR`]).
    pub fn in_css(&self) -> bool {
        matches!(self.phase(), Phase::Css { .. })
    }

    /// Call from the module's `conn_init`.
    pub fn conn_init(&mut self, v: &CcVars) {
        // RFC 9406 §4.2: "It is RECOMMENDED that an implementation use HyStart++ only for the
        // initial slow start (when the ssthresh is at its initial value of arbitrarily high
        // per [RFC5681]) and fall back to using standard slow start for the remainder of the
        // connection lifetime." A module switched in mid-connection with ssthresh already set
        // is past that initial slow start.
        let initial = v.ssthresh == CcVars::SSTHRESH_INFINITE && v.in_slow_start();
        *self = Self::new(self.enabled);
        if self.enabled && initial {
            self.run = Some(Box::new(Run {
                phase: Phase::SlowStart,
                round: 0,
                last_round_min: None,
                current_round_min: None,
                samples: 0,
            }));
        }
    }

    /// Call from the module's `rtt_sample`: tracks the round minimum and moves between slow
    /// start and CSS.
    pub fn rtt_sample(&mut self, sample: &RttSample) {
        let Some(run) = self.run.as_deref_mut() else {
            return;
        };
        run.enter_round(sample.round);
        // RFC 9406 §4.2: "Keep track of the minimum observed RTT:
        // currentRoundMinRTT = min(currentRoundMinRTT, currRTT); rttSampleCount += 1"
        let current = run
            .current_round_min
            .map_or(sample.rtt, |m| m.min(sample.rtt));
        run.current_round_min = Some(current);
        run.samples = run.samples.saturating_add(1);
        if run.samples < N_RTT_SAMPLE {
            return;
        }
        match run.phase {
            Phase::SlowStart => {
                // RFC 9406 §4.2: "if ((rttSampleCount >= N_RTT_SAMPLE) AND
                // (currentRoundMinRTT != infinity) AND (lastRoundMinRTT != infinity))
                // RttThresh = max(MIN_RTT_THRESH, min(lastRoundMinRTT / MIN_RTT_DIVISOR,
                // MAX_RTT_THRESH)) if (currentRoundMinRTT >= (lastRoundMinRTT + RttThresh))
                // cssBaselineMinRtt = currentRoundMinRTT; exit slow start and enter CSS"
                let Some(last) = run.last_round_min else {
                    return;
                };
                if current >= last.saturating_add(rtt_thresh(last)) {
                    run.phase = Phase::Css {
                        baseline: current,
                        start_round: sample.round,
                    };
                }
            }
            Phase::Css { baseline, .. } => {
                // RFC 9406 §4.2: "if (currentRoundMinRTT < cssBaselineMinRtt)
                // cssBaselineMinRtt = infinity; resume slow start including HyStart++"
                if current < baseline {
                    run.phase = Phase::SlowStart;
                }
            }
            Phase::Done => {}
        }
    }

    /// The bytes a slow-start ACK may add, from ABC's `credit` (`min(N, L*SMSS)`, see
    /// [`window::growth_credit`]): all of it in standard slow start, a
    /// [`CSS_GROWTH_DIVISOR`]th in CSS. Once CSS has lasted [`CSS_ROUNDS`] rounds this sets
    /// `ssthresh = cwnd` (congestion avoidance from now on) and returns 0.
    pub fn slow_start_increment(&mut self, v: &mut CcVars, ack: &AckInfo, credit: u32) -> u32 {
        let Some(run) = self.run.as_deref_mut() else {
            return credit;
        };
        run.enter_round(ack.round);
        let Phase::Css { start_round, .. } = run.phase else {
            return credit;
        };
        if ack.round.saturating_sub(start_round) >= CSS_ROUNDS {
            // RFC 9406 §4.2: "If CSS_ROUNDS rounds are complete, enter congestion avoidance
            // by setting the ssthresh to the current cwnd. ssthresh = cwnd"
            v.ssthresh = v.cwnd.max(window::min_ssthresh(v.maxseg));
            self.run = None;
            return 0;
        }
        // RFC 9406 §4.2: "For each arriving ACK in CSS, where N is the number of previously
        // unacknowledged bytes acknowledged in the arriving ACK: Update the cwnd:
        // cwnd = cwnd + (min(N, L*SMSS) / CSS_GROWTH_DIVISOR)"
        credit / CSS_GROWTH_DIVISOR
    }

    /// Call on every congestion signal the module reacts to (loss, ECN, RTO): HyStart++ is
    /// over for this connection.
    pub fn on_congestion(&mut self) {
        // RFC 9406 §4.2: "If loss or ECN-marking is observed at any time during CSS, enter
        // congestion avoidance by setting the ssthresh to the decreased value per the
        // congestion control algorithm." The same holds in slow start (RFC 5681); and
        // HyStart++ is for the initial slow start only (see conn_init).
        self.run = None;
    }

    /// `(key, value)` pairs for the module's `state()`: the phase and the round minima.
    pub fn state(&self) -> Vec<(&'static str, String)> {
        let us = |d: Option<Duration>| d.map_or("-".to_string(), |d| d.as_micros().to_string());
        let (last, current) = self
            .run
            .as_ref()
            .map_or((None, None), |r| (r.last_round_min, r.current_round_min));
        let mut out = vec![
            ("hystart", self.phase().as_str().to_string()),
            ("hs_last_round_min_rtt_us", us(last)),
            ("hs_round_min_rtt_us", us(current)),
        ];
        if let Phase::Css {
            baseline,
            start_round,
        } = self.phase()
        {
            out.push(("hs_css_baseline_us", baseline.as_micros().to_string()));
            out.push(("hs_css_start_round", start_round.to_string()));
        }
        out
    }
}

impl Run {
    fn enter_round(&mut self, round: u64) {
        if round == self.round {
            return;
        }
        // RFC 9406 §4.2: "At the start of each round during standard slow start and CSS,
        // initialize the variables used to compute the last round's and current round's
        // minimum RTT: lastRoundMinRTT = currentRoundMinRTT; currentRoundMinRTT = infinity;
        // rttSampleCount = 0"
        self.round = round;
        self.last_round_min = self.current_round_min.take();
        self.samples = 0;
    }
}

/// RFC 9406 §4.2's `RttThresh`: an eighth of the last round's minimum RTT, clamped to
/// [[`MIN_RTT_THRESH`], [`MAX_RTT_THRESH`]].
fn rtt_thresh(last_round_min: Duration) -> Duration {
    (last_round_min / MIN_RTT_DIVISOR).clamp(MIN_RTT_THRESH, MAX_RTT_THRESH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CcSignal, CongInfo, CongestionControl, Registry};
    use std::time::Instant;

    const MSS: u32 = 1460;

    fn ms(x: f64) -> Duration {
        Duration::from_secs_f64(x / 1000.0)
    }

    /// A connection driven round by round: every byte of the window at the round's start is
    /// acknowledged, one MSS per ACK, each ACK with an RTT sample first (as the transport
    /// orders them).
    struct Conn {
        cc: Box<dyn CongestionControl>,
        v: CcVars,
        round: u64,
        now: Instant,
    }

    impl Conn {
        fn new(name: &str) -> Self {
            let mut cc = Registry::with_builtins().create(name).unwrap();
            let mut v = CcVars::new(MSS);
            cc.conn_init(&mut v);
            Self {
                cc,
                v,
                round: 0,
                now: Instant::now(),
            }
        }

        fn ack(&mut self, rtt: Duration) {
            self.now += Duration::from_millis(1);
            let sample = RttSample {
                rtt,
                srtt: rtt,
                min_rtt: rtt,
                round: self.round,
                now: self.now,
            };
            self.cc.rtt_sample(&mut self.v, &sample);
            let ack = AckInfo {
                bytes_acked: MSS,
                in_flight: self.v.cwnd,
                cwnd_limited: true,
                srtt: Some(rtt),
                min_rtt: Some(rtt),
                round: self.round,
                ..AckInfo::new(self.now)
            };
            self.cc.ack_received(&mut self.v, CcSignal::Ack, &ack);
        }

        /// One round at `rtt`; returns the number of ACKs.
        fn round(&mut self, rtt: Duration) -> u32 {
            self.round += 1;
            let acks = self.v.cwnd / MSS;
            for _ in 0..acks {
                self.ack(rtt);
            }
            acks
        }

        fn phase(&self) -> String {
            let state = self.cc.state();
            let (_, phase) = state.iter().find(|(k, _)| *k == "hystart").unwrap();
            phase.clone()
        }
    }

    const HS_MODULES: [&str; 2] = ["newreno-hs", "cubic-hs"];

    // RFC 9406 §4.2: RttThresh = max(MIN_RTT_THRESH, min(lastRoundMinRTT / MIN_RTT_DIVISOR,
    // MAX_RTT_THRESH)).
    #[test]
    fn rtt_threshold_is_an_eighth_clamped_to_4_and_16_ms() {
        assert_eq!(rtt_thresh(ms(10.0)), ms(4.0));
        assert_eq!(rtt_thresh(ms(80.0)), ms(10.0));
        assert_eq!(rtt_thresh(ms(100.0)), ms(12.5));
        assert_eq!(rtt_thresh(ms(1000.0)), ms(16.0));
        assert_eq!(rtt_thresh(Duration::MAX), MAX_RTT_THRESH);
    }

    // RFC 9406 §4.2: a round minimum at lastRoundMinRTT + RttThresh exits slow start into CSS,
    // where each ACK adds min(N, L*SMSS) / CSS_GROWTH_DIVISOR.
    #[test]
    fn rtt_increase_exits_slow_start_into_css() {
        for name in HS_MODULES {
            let mut c = Conn::new(name);
            assert_eq!(c.phase(), "slow-start", "{name}");
            for _ in 0..3 {
                c.round(ms(100.0));
            }
            assert_eq!(c.v.cwnd, 80 * MSS, "{name}: plain slow start doubles");
            // 112 ms is below 100 + 12.5: no exit, slow start goes on.
            c.round(ms(112.0));
            assert_eq!(
                (c.phase().as_str(), c.v.cwnd),
                ("slow-start", 160 * MSS),
                "{name}"
            );
            // The next round compares against 112 ms: 112 + 14 = 126 ms triggers.
            let acks = c.round(ms(126.0));
            assert_eq!(c.phase(), "css", "{name}");
            // The 8th sample comes before the 8th ACK: 7 ACKs at full rate, the rest at 1/4.
            let want = 160 * MSS + 7 * MSS + (acks - 7) * (MSS / 4);
            assert_eq!(c.v.cwnd, want, "{name}");
            assert_eq!(
                c.v.ssthresh,
                CcVars::SSTHRESH_INFINITE,
                "{name}: still slow start"
            );
        }
    }

    #[test]
    fn too_few_samples_or_no_previous_round_never_exit() {
        for name in HS_MODULES {
            let mut c = Conn::new(name);
            // Round 1 has no previous round to compare with, however high its RTT.
            c.round(ms(10.0));
            c.round(ms(500.0));
            assert_eq!(c.phase(), "css", "{name}: control: a full round does exit");
            let mut c = Conn::new(name);
            c.round(ms(10.0));
            c.round += 1;
            for _ in 0..N_RTT_SAMPLE - 1 {
                c.ack(ms(500.0));
            }
            assert_eq!(c.phase(), "slow-start", "{name}: 7 samples are not enough");
            c.ack(ms(500.0));
            assert_eq!(c.phase(), "css", "{name}: the 8th is");
        }
    }

    // RFC 9406 §4.2: "if (currentRoundMinRTT < cssBaselineMinRtt) ... resume slow start".
    #[test]
    fn rtt_back_below_the_baseline_resumes_slow_start() {
        for name in HS_MODULES {
            let mut c = Conn::new(name);
            c.round(ms(100.0));
            c.round(ms(100.0));
            c.round(ms(120.0));
            assert_eq!(c.phase(), "css", "{name}");
            // Still at the baseline: CSS goes on.
            c.round(ms(120.0));
            assert_eq!(c.phase(), "css", "{name}");
            let before = c.v.cwnd;
            let acks = c.round(ms(100.0));
            assert_eq!(c.phase(), "slow-start", "{name}");
            // 7 ACKs in CSS, then full-rate slow start from the 8th sample on.
            let want = before + 7 * (MSS / 4) + (acks - 7) * MSS;
            assert_eq!(c.v.cwnd, want, "{name}");
            // And HyStart++ watches again: another rise goes back to CSS.
            c.round(ms(130.0));
            assert_eq!(c.phase(), "css", "{name}");
        }
    }

    // RFC 9406 §4.2: "If CSS_ROUNDS rounds are complete, enter congestion avoidance by
    // setting the ssthresh to the current cwnd."
    #[test]
    fn css_rounds_end_in_congestion_avoidance() {
        for name in HS_MODULES {
            let mut c = Conn::new(name);
            c.round(ms(100.0));
            c.round(ms(120.0)); // CSS from round 2
            for _ in 0..4 {
                c.round(ms(120.0));
            }
            // Rounds 2..=6 ran: the CSS round began in plus four more.
            assert_eq!(c.phase(), "css", "{name}: round {}", c.round);
            assert_eq!(c.v.ssthresh, CcVars::SSTHRESH_INFINITE, "{name}");
            c.round += 1;
            let cwnd = c.v.cwnd;
            c.ack(ms(120.0));
            assert_eq!(c.phase(), "done", "{name}");
            assert_eq!(
                (c.v.cwnd, c.v.ssthresh),
                (cwnd, cwnd),
                "{name}: ssthresh = cwnd"
            );
            assert!(!c.v.in_slow_start(), "{name}");
        }
    }

    #[test]
    fn a_congestion_signal_ends_hystart_and_only_the_initial_slow_start_uses_it() {
        for name in HS_MODULES {
            let mut c = Conn::new(name);
            c.round(ms(100.0));
            c.round(ms(120.0));
            assert_eq!(c.phase(), "css", "{name}");
            let info = CongInfo {
                in_flight: c.v.cwnd,
                ..CongInfo::new(c.now)
            };
            c.cc.cong_signal(&mut c.v, CcSignal::NDupAck, &info);
            assert_eq!(c.phase(), "done", "{name}");
            // A module switched in with ssthresh already set never starts HyStart++.
            let mut v = CcVars {
                cwnd: 10 * MSS,
                ssthresh: 100 * MSS,
                maxseg: MSS,
            };
            let cc = crate::switch(&mut v, Registry::with_builtins().create(name).unwrap());
            assert!(
                cc.state().contains(&("hystart", "done".to_string())),
                "{name}"
            );
        }
    }

    #[test]
    fn disabled_hystart_is_inert() {
        let mut h = HyStart::default();
        let mut v = CcVars::new(MSS);
        h.conn_init(&v);
        assert_eq!(h.phase(), Phase::Done);
        let now = Instant::now();
        for round in 1..=3 {
            for _ in 0..10 {
                let rtt = ms(10.0 * round as f64 * round as f64);
                h.rtt_sample(&RttSample {
                    rtt,
                    srtt: rtt,
                    min_rtt: rtt,
                    round,
                    now,
                });
            }
        }
        let ack = AckInfo {
            round: 3,
            ..AckInfo::new(now)
        };
        assert_eq!(h.slow_start_increment(&mut v, &ack, MSS), MSS);
        assert_eq!(h, HyStart::default());
    }
}
