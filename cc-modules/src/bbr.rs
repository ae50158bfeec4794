//! BBR congestion control after draft-ietf-ccwg-bbr (BBRv3): a model of the path (the
//! bottleneck bandwidth `max_bw` and the round-trip propagation delay `min_rtt`) built from
//! the transport's delivery-rate samples ([`RateSample`]), from which the module sets a
//! pacing rate and cwnd.
//!
//! # As built
//!
//! - States: Startup, Drain, ProbeBW (Down, Cruise, Refill, Up) and ProbeRTT (§4.3), with the
//!   draft's gains: Startup pacing 2.77 / cwnd 2, Drain pacing 0.35, ProbeBW_DOWN 0.90,
//!   ProbeBW_UP 1.25 (cwnd gain 2.25), ProbeRTT cwnd = half a BDP every 5 s for 200 ms and
//!   one round.
//! - Filters (§4.5): max_bw is the maximum over the last two ProbeBW cycles (in Startup, over
//!   the whole of Startup); min_rtt is the minimum over 10 s, refreshed from the 5 s
//!   ProbeRTT window.
//! - Loss response (v3, §4.5.10, §4.5.12): a rate sample whose losses exceed 2% of the data
//!   in flight when its segment was sent ("inflight too high") sets `inflight_hi` and ends
//!   ProbeBW_UP (or Startup), once per probe and only for samples of the probe (REFILL and
//!   UP, until the first round of DOWN ends); losses in a round outside bandwidth probing
//!   cut the short-term model `bw_lo`/`inflight_lo` by beta = 0.7. ProbeBW_UP grows
//!   `inflight_hi` with a slope that doubles each round. Not taken from
//!   draft-ietf-ccwg-bbr-06: `NoteLoss` restarting the loss round at a round's first loss
//!   (on the model path of `tests/bbr.rs` with 1% loss it lowered the goodput from 84% to
//!   77% of the link) and the per-lost-packet `InflightAtLoss`.
//! - ACK aggregation (§4.5.5): the excess of what ACKs delivered over what `bw` predicts,
//!   a max over 10 rounds (1 in Startup), is added to the cwnd target.
//! - Not built: v3's ECN response (ECN-Echo is treated as a loss-recovery episode by the
//!   transport only: BBR keeps its model) and the offload budget (the quantization budget
//!   is `MinPipeCwnd`, 4 segments).
//! - Randomness (the ProbeBW wait of 2..3 s, §4.3.3.5) comes from a small deterministic
//!   generator per connection: the module never reads a clock or the OS.
//!
//! # Driving
//!
//! The model and the control parameters change only in [`CongestionControl::rate_sample`],
//! the last hook of each ACK. Loss recovery: on `NDupAck` the module saves its cwnd (-06
//! §5.6.4.4: no packet conservation; the loss response is the model's) and
//! `post_recovery` restores it; on an RTO cwnd falls to one segment and `RtoErr` restores
//! it. ssthresh is left "infinite": BBR has no slow-start threshold.
use std::time::{Duration, Instant};

use crate::{
    window, AckInfo, CcFactory, CcSignal, CcVars, CongInfo, CongestionControl, IdleInfo,
    RateSample, Recovery,
};

/// The name BBR is registered under.
pub const NAME: &str = "bbr";

/// §4.6.2: "BBRStartupPacingGain ... 4*ln(2) = 2.77".
const STARTUP_PACING_GAIN: f64 = 2.77;
/// §4.3.2: Drain's pacing gain, "0.35" (about 1/2.77 rounded for the draft's v3).
const DRAIN_PACING_GAIN: f64 = 0.35;
/// §4.6.4.2: the default cwnd gain.
const DEFAULT_CWND_GAIN: f64 = 2.0;
/// §4.3.3.3: ProbeBW_UP's cwnd gain.
const PROBE_UP_CWND_GAIN: f64 = 2.25;
/// §4.3.3: ProbeBW_DOWN / ProbeBW_UP pacing gains.
const PROBE_DOWN_PACING_GAIN: f64 = 0.90;
const PROBE_UP_PACING_GAIN: f64 = 1.25;
/// §4.3.4: "BBRProbeRTTCwndGain = 0.5".
const PROBE_RTT_CWND_GAIN: f64 = 0.5;
/// §4.3.4: "ProbeRTTDuration: 200 ms".
const PROBE_RTT_DURATION: Duration = Duration::from_millis(200);
/// §4.3.4: "ProbeRTTInterval: 5 secs".
const PROBE_RTT_INTERVAL: Duration = Duration::from_secs(5);
/// §4.5.4: "MinRTTFilterLen: 10 secs".
const MIN_RTT_FILTER_LEN: Duration = Duration::from_secs(10);
/// §4.5.10: "BBRLossThresh: 2%".
const LOSS_THRESH: f64 = 0.02;
/// §4.5.10: "BBRBeta: 0.7", the multiplicative cut of the loss response.
const BETA: f64 = 0.7;
/// §4.3.3.6: "BBRHeadroom: 0.15".
const HEADROOM: f64 = 0.15;
/// §4.6.2: "BBRPacingMarginPercent: 1%".
const PACING_MARGIN_PERCENT: f64 = 1.0;
/// §4.3.1.2: bandwidth must grow by 25% per round to count as still growing ...
const FULL_BW_THRESH: f64 = 1.25;
/// ... for 3 rounds.
const FULL_BW_COUNT: u32 = 3;
/// §4.3.1.3: Startup exits on loss after this many loss events in a round.
const STARTUP_FULL_LOSS_COUNT: u32 = 6;
/// §4.5.5: the extra_acked max filter spans 10 rounds once the pipe is full, 1 before.
const EXTRA_ACKED_ROUNDS: usize = 10;
/// §4.6.4.1: "BBRMinPipeCwnd: 4 * SMSS".
const MIN_PIPE_SEGS: u64 = 4;

/// The state machine of §4.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Exponential search for the bottleneck bandwidth.
    Startup,
    /// Drain the queue Startup built.
    Drain,
    /// ProbeBW_DOWN: drain what probing left, stay below the estimated pipe.
    ProbeBwDown,
    /// ProbeBW_CRUISE: hold inflight with headroom.
    ProbeBwCruise,
    /// ProbeBW_REFILL: refill the pipe for one round before probing.
    ProbeBwRefill,
    /// ProbeBW_UP: probe for more bandwidth.
    ProbeBwUp,
    /// Shrink inflight to see the propagation delay.
    ProbeRtt,
}

impl Mode {
    /// Stable identifier shown in `/info`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Startup => "startup",
            Mode::Drain => "drain",
            Mode::ProbeBwDown => "probe_bw_down",
            Mode::ProbeBwCruise => "probe_bw_cruise",
            Mode::ProbeBwRefill => "probe_bw_refill",
            Mode::ProbeBwUp => "probe_bw_up",
            Mode::ProbeRtt => "probe_rtt",
        }
    }

    fn is_probe_bw(self) -> bool {
        matches!(
            self,
            Mode::ProbeBwDown | Mode::ProbeBwCruise | Mode::ProbeBwRefill | Mode::ProbeBwUp
        )
    }
}

/// §4.3.3.6 ack phases of ProbeBW, which decide when the bandwidth filter advances and when
/// `inflight_hi` may be adapted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckPhase {
    Init,
    ProbeStarting,
    ProbeFeedback,
    ProbeStopping,
    Refilling,
}

/// The factory registered as `"bbr"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl CcFactory for Factory {
    fn name(&self) -> &'static str {
        NAME
    }
    fn build(&self) -> Box<dyn CongestionControl> {
        Box::new(Bbr::default())
    }
}

/// One connection's BBR state (§4.2's per-connection variables, bytes and bytes/second).
#[derive(Debug, Clone)]
pub struct Bbr {
    mode: Mode,
    pacing_gain: f64,
    cwnd_gain: f64,
    /// Bytes per second; 0 until the first sample (then [`Self::pacing_rate`] is the
    /// initial rate of §4.6.2).
    pacing_rate: f64,
    /// The pacing rate is still the one of `conn_init`, which had no RTT to go by.
    init_pacing: bool,
    /// The bandwidth the model uses: `min(max_bw, bw_lo)`.
    bw: f64,
    /// Two-cycle max filter (§4.5.2.4): slot 1 is the current cycle.
    bw_hi: [f64; 2],
    bw_lo: f64,
    bw_latest: f64,
    inflight_hi: f64,
    inflight_lo: f64,
    inflight_latest: f64,
    min_rtt: Option<Duration>,
    min_rtt_stamp: Option<Instant>,
    probe_rtt_min_delay: Option<Duration>,
    probe_rtt_min_stamp: Option<Instant>,
    probe_rtt_done_stamp: Option<Instant>,
    probe_rtt_round_done: bool,
    prior_cwnd: u32,
    idle_restart: bool,
    // Round counting (§4.5.1).
    next_round_delivered: u64,
    round_start: bool,
    round_count: u64,
    rounds_since_bw_probe: u64,
    // Startup exit (§4.3.1.2-3).
    full_bw: f64,
    full_bw_count: u32,
    full_bw_now: bool,
    full_bw_reached: bool,
    // Loss rounds (§4.5.10.1).
    loss_round_delivered: u64,
    loss_round_start: bool,
    loss_in_round: bool,
    loss_events_in_round: u32,
    // ProbeBW (§4.3.3).
    ack_phase: AckPhase,
    cycle_stamp: Option<Instant>,
    bw_probe_wait: Duration,
    bw_probe_samples: bool,
    bw_probe_up_rounds: u32,
    bw_probe_up_acks: u64,
    probe_up_cnt: u64,
    /// §4.5.5 ACK aggregation: the start of the current measurement interval, what was
    /// delivered in it, and the per-round maxima of the excess (slot = round % 10).
    extra_acked_interval_start: Option<Instant>,
    extra_acked_delivered: f64,
    extra_acked_slots: [(u64, f64); EXTRA_ACKED_ROUNDS],
    extra_acked: f64,
    /// cwnd before an RTO, for `RtoErr`.
    pre_rto_cwnd: Option<u32>,
    rng: u64,
}

impl Default for Bbr {
    fn default() -> Self {
        Self::with_seed(0x9e37_79b9_7f4a_7c15)
    }
}

impl Bbr {
    /// A controller whose ProbeBW wait randomisation starts from `seed` (any value; a fixed
    /// seed makes runs reproducible).
    pub fn with_seed(seed: u64) -> Self {
        Self {
            mode: Mode::Startup,
            pacing_gain: STARTUP_PACING_GAIN,
            cwnd_gain: DEFAULT_CWND_GAIN,
            pacing_rate: 0.0,
            init_pacing: true,
            bw: 0.0,
            bw_hi: [0.0; 2],
            bw_lo: f64::INFINITY,
            bw_latest: 0.0,
            inflight_hi: f64::INFINITY,
            inflight_lo: f64::INFINITY,
            inflight_latest: 0.0,
            min_rtt: None,
            min_rtt_stamp: None,
            probe_rtt_min_delay: None,
            probe_rtt_min_stamp: None,
            probe_rtt_done_stamp: None,
            probe_rtt_round_done: false,
            prior_cwnd: 0,
            idle_restart: false,
            next_round_delivered: 0,
            round_start: false,
            round_count: 0,
            rounds_since_bw_probe: 0,
            full_bw: 0.0,
            full_bw_count: 0,
            full_bw_now: false,
            full_bw_reached: false,
            loss_round_delivered: 0,
            loss_round_start: false,
            loss_in_round: false,
            loss_events_in_round: 0,
            ack_phase: AckPhase::Init,
            cycle_stamp: None,
            bw_probe_wait: Duration::from_secs(2),
            bw_probe_samples: false,
            bw_probe_up_rounds: 0,
            bw_probe_up_acks: 0,
            probe_up_cnt: u64::MAX,
            extra_acked_interval_start: None,
            extra_acked_delivered: 0.0,
            extra_acked_slots: [(0, 0.0); EXTRA_ACKED_ROUNDS],
            extra_acked: 0.0,
            pre_rto_cwnd: None,
            rng: seed | 1,
        }
    }

    /// The current state.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The bottleneck bandwidth estimate the model uses, bytes per second.
    pub fn bw(&self) -> u64 {
        self.bw as u64
    }

    /// The windowed max bandwidth (without the short-term bound), bytes per second.
    pub fn max_bw(&self) -> u64 {
        self.max_bw_f() as u64
    }

    /// The propagation-delay estimate.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// `inflight_hi`, bytes; `None` while unset (infinite).
    pub fn inflight_hi(&self) -> Option<u64> {
        self.inflight_hi
            .is_finite()
            .then_some(self.inflight_hi as u64)
    }

    /// Whether Startup judged the pipe full.
    pub fn full_bw_reached(&self) -> bool {
        self.full_bw_reached
    }

    fn max_bw_f(&self) -> f64 {
        self.bw_hi[0].max(self.bw_hi[1])
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: enough for choosing a wait in a range.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn min_pipe_cwnd(v: &CcVars) -> f64 {
        (MIN_PIPE_SEGS * u64::from(v.maxseg)) as f64
    }

    fn set_mode(&mut self, mode: Mode, pacing_gain: f64, cwnd_gain: f64) {
        self.mode = mode;
        self.pacing_gain = pacing_gain;
        self.cwnd_gain = cwnd_gain;
    }

    /// §4.6.4.2 BBRBDPMultiple: `gain * bw * min_rtt`, or the initial window before any RTT.
    fn bdp_multiple(&self, v: &CcVars, gain: f64) -> f64 {
        match self.min_rtt {
            Some(rtt) if self.bw > 0.0 => gain * self.bw * rtt.as_secs_f64(),
            _ => f64::from(window::initial_window(v.maxseg)),
        }
    }

    /// §4.6.4.2 BBRQuantizationBudget, without the offload budget.
    fn quantization_budget(&self, v: &CcVars, inflight: f64) -> f64 {
        let mut inflight = inflight.max(Self::min_pipe_cwnd(v));
        if self.mode == Mode::ProbeBwUp {
            inflight += 2.0 * f64::from(v.maxseg);
        }
        inflight
    }

    /// §4.6.4.2 BBRInflight(gain).
    fn inflight(&self, v: &CcVars, gain: f64) -> f64 {
        self.quantization_budget(v, self.bdp_multiple(v, gain))
    }

    /// §4.3.3.6 BBRInflightWithHeadroom.
    fn inflight_with_headroom(&self, v: &CcVars) -> f64 {
        if !self.inflight_hi.is_finite() {
            return f64::INFINITY;
        }
        let headroom = (HEADROOM * self.inflight_hi).max(f64::from(v.maxseg));
        (self.inflight_hi - headroom).max(Self::min_pipe_cwnd(v))
    }

    fn probe_rtt_cwnd(&self, v: &CcVars) -> f64 {
        self.bdp_multiple(v, PROBE_RTT_CWND_GAIN)
            .max(Self::min_pipe_cwnd(v))
    }

    // ---- §4.5.1 rounds ----

    fn start_round(&mut self, rs: &RateSample) {
        self.next_round_delivered = rs.total_delivered;
    }

    fn update_round(&mut self, rs: &RateSample) {
        if rs.prior_delivered >= self.next_round_delivered {
            self.start_round(rs);
            self.round_count += 1;
            self.rounds_since_bw_probe += 1;
            self.round_start = true;
        } else {
            self.round_start = false;
        }
    }

    // ---- §4.5.10 latest signals and the short-term model ----

    fn update_latest_delivery_signals(&mut self, rs: &RateSample) {
        self.loss_round_start = false;
        self.bw_latest = self.bw_latest.max(rs.delivery_rate as f64);
        self.inflight_latest = self.inflight_latest.max(rs.delivered as f64);
        if rs.prior_delivered >= self.loss_round_delivered {
            self.loss_round_delivered = rs.total_delivered;
            self.loss_round_start = true;
        }
    }

    fn advance_latest_delivery_signals(&mut self, rs: &RateSample) {
        if self.loss_round_start {
            self.bw_latest = rs.delivery_rate as f64;
            self.inflight_latest = rs.delivered as f64;
        }
    }

    fn reset_congestion_signals(&mut self) {
        self.loss_in_round = false;
        self.loss_events_in_round = 0;
        self.bw_latest = 0.0;
        self.inflight_latest = 0.0;
    }

    fn reset_short_term_model(&mut self) {
        self.bw_lo = f64::INFINITY;
        self.inflight_lo = f64::INFINITY;
    }

    fn is_probing_bw(&self) -> bool {
        matches!(
            self.mode,
            Mode::Startup | Mode::ProbeBwRefill | Mode::ProbeBwUp
        )
    }

    fn update_congestion_signals(&mut self, v: &CcVars, rs: &RateSample) {
        self.update_max_bw(rs);
        if rs.newly_lost > 0 {
            self.loss_in_round = true;
            self.loss_events_in_round += 1;
        }
        if !self.loss_round_start {
            return;
        }
        // §4.5.10.3 BBRAdaptLowerBoundsFromCongestion: outside bandwidth probing, a round
        // with loss cuts the short-term model.
        if !self.is_probing_bw() && self.loss_in_round {
            if !self.bw_lo.is_finite() {
                self.bw_lo = self.max_bw_f();
            }
            if !self.inflight_lo.is_finite() {
                self.inflight_lo = f64::from(v.cwnd);
            }
            self.bw_lo = self.bw_latest.max(BETA * self.bw_lo);
            self.inflight_lo = self.inflight_latest.max(BETA * self.inflight_lo);
        }
        self.loss_in_round = false;
        self.loss_events_in_round = 0;
    }

    // ---- §4.5.2 max_bw ----

    fn update_max_bw(&mut self, rs: &RateSample) {
        let rate = rs.delivery_rate as f64;
        // §4.5.2.4: app-limited samples enter only if they raise the estimate.
        if rate > 0.0 && (rate >= self.max_bw_f() || !rs.is_app_limited) {
            self.bw_hi[1] = self.bw_hi[1].max(rate);
        }
    }

    fn advance_max_bw_filter(&mut self) {
        self.bw_hi[0] = self.bw_hi[1];
        self.bw_hi[1] = 0.0;
    }

    fn bound_bw_for_model(&mut self) {
        self.bw = self.max_bw_f().min(self.bw_lo);
    }

    // ---- §4.5.5 ACK aggregation ----

    /// §4.5.5 BBRUpdateACKAggregation: how much more than `bw` predicts arrived in the
    /// current interval of ACKs (aggregation by receivers, links and offloads), a max over
    /// the last 10 rounds (one round in Startup), which cwnd adds to absorb it.
    fn update_ack_aggregation(&mut self, v: &CcVars, rs: &RateSample) {
        let start = *self.extra_acked_interval_start.get_or_insert(rs.now);
        let interval = rs.now.saturating_duration_since(start).as_secs_f64();
        let mut expected = self.bw * interval;
        // "Reset interval if ACK rate is below expected rate".
        if self.extra_acked_delivered <= expected {
            self.extra_acked_delivered = 0.0;
            self.extra_acked_interval_start = Some(rs.now);
            expected = 0.0;
        }
        self.extra_acked_delivered += f64::from(rs.newly_acked);
        let extra = (self.extra_acked_delivered - expected)
            .max(0.0)
            .min(f64::from(v.cwnd));
        let len = if self.full_bw_reached {
            EXTRA_ACKED_ROUNDS as u64
        } else {
            1
        };
        let slot =
            &mut self.extra_acked_slots[(self.round_count % EXTRA_ACKED_ROUNDS as u64) as usize];
        if slot.0 != self.round_count {
            *slot = (self.round_count, 0.0);
        }
        slot.1 = slot.1.max(extra);
        let round = self.round_count;
        self.extra_acked = self
            .extra_acked_slots
            .iter()
            .filter(|(r, _)| round.saturating_sub(*r) < len)
            .map(|s| s.1)
            .fold(0.0, f64::max);
    }

    // ---- §4.3.1 Startup ----

    fn reset_full_bw(&mut self) {
        self.full_bw = 0.0;
        self.full_bw_count = 0;
        self.full_bw_now = false;
    }

    fn check_startup_done(&mut self, v: &CcVars, rs: &RateSample) {
        self.check_full_bw_reached(rs);
        self.check_startup_high_loss(v, rs);
        if self.mode == Mode::Startup && self.full_bw_reached {
            self.set_mode(Mode::Drain, DRAIN_PACING_GAIN, DEFAULT_CWND_GAIN);
        }
    }

    /// §4.3.1.2: "if BBR notices that there are several (three) rounds where attempts to
    /// double the delivery rate actually result in little increase (less than 25 percent),
    /// then it estimates that it has reached BBR.max_bw".
    fn check_full_bw_reached(&mut self, rs: &RateSample) {
        if self.full_bw_now || !self.round_start || rs.is_app_limited {
            return;
        }
        let max_bw = self.max_bw_f();
        if max_bw >= self.full_bw * FULL_BW_THRESH {
            self.full_bw = max_bw;
            self.full_bw_count = 0;
            return;
        }
        self.full_bw_count += 1;
        self.full_bw_now = self.full_bw_count >= FULL_BW_COUNT;
        if self.full_bw_now {
            self.full_bw_reached = true;
        }
    }

    /// §4.3.1.3: Startup also ends when a round saw enough loss events and the loss rate
    /// was too high; inflight_hi then starts at what was in flight.
    fn check_startup_high_loss(&mut self, v: &CcVars, rs: &RateSample) {
        if self.full_bw_reached || self.mode != Mode::Startup {
            return;
        }
        if self.loss_round_start
            && self.loss_events_in_round >= STARTUP_FULL_LOSS_COUNT
            && is_inflight_too_high(rs)
        {
            self.inflight_hi = self
                .bdp_multiple(v, 1.0)
                .max(self.inflight_latest)
                .max(Self::min_pipe_cwnd(v));
            self.full_bw_reached = true;
        }
    }

    fn check_drain(&mut self, v: &CcVars, rs: &RateSample) {
        if self.mode == Mode::Drain && f64::from(rs.in_flight) <= self.inflight(v, 1.0) {
            self.enter_probe_bw(rs);
        }
    }

    // ---- §4.3.3 ProbeBW ----

    fn enter_probe_bw(&mut self, rs: &RateSample) {
        self.start_probe_bw_down(rs);
    }

    fn pick_probe_wait(&mut self) {
        // §4.3.3.5: "rounds_since_bw_probe = random_int_between(0, 1)", and a wall-clock
        // wait of 2 s plus up to 1 s.
        self.rounds_since_bw_probe = self.next_random() % 2;
        let extra_ms = self.next_random() % 1000;
        self.bw_probe_wait = Duration::from_secs(2) + Duration::from_millis(extra_ms);
    }

    fn start_probe_bw_down(&mut self, rs: &RateSample) {
        self.reset_congestion_signals();
        self.probe_up_cnt = u64::MAX;
        self.pick_probe_wait();
        self.cycle_stamp = Some(rs.now);
        self.ack_phase = AckPhase::ProbeStopping;
        self.start_round(rs);
        self.set_mode(Mode::ProbeBwDown, PROBE_DOWN_PACING_GAIN, DEFAULT_CWND_GAIN);
    }

    fn start_probe_bw_cruise(&mut self) {
        self.set_mode(Mode::ProbeBwCruise, 1.0, DEFAULT_CWND_GAIN);
    }

    fn start_probe_bw_refill(&mut self, rs: &RateSample) {
        self.reset_short_term_model();
        self.bw_probe_up_rounds = 0;
        self.bw_probe_up_acks = 0;
        self.ack_phase = AckPhase::Refilling;
        self.start_round(rs);
        self.set_mode(Mode::ProbeBwRefill, 1.0, DEFAULT_CWND_GAIN);
    }

    fn start_probe_bw_up(&mut self, v: &CcVars, rs: &RateSample) {
        self.ack_phase = AckPhase::ProbeStarting;
        self.start_round(rs);
        self.reset_full_bw();
        self.full_bw = rs.delivery_rate as f64;
        self.cycle_stamp = Some(rs.now);
        self.set_mode(Mode::ProbeBwUp, PROBE_UP_PACING_GAIN, PROBE_UP_CWND_GAIN);
        self.raise_inflight_hi_slope(v);
    }

    fn has_elapsed_in_phase(&self, now: Instant, interval: Duration) -> bool {
        self.cycle_stamp
            .is_some_and(|s| now > s.checked_add(interval).unwrap_or(s))
    }

    /// §4.3.3.5 BBRIsRenoCoexistenceProbeTime.
    fn is_reno_coexistence_probe_time(&self, v: &CcVars) -> bool {
        let reno_rounds = (self.inflight(v, 1.0) / f64::from(v.maxseg)) as u64;
        self.rounds_since_bw_probe >= reno_rounds.min(63)
    }

    fn check_time_to_probe_bw(&mut self, v: &CcVars, rs: &RateSample) -> bool {
        if self.has_elapsed_in_phase(rs.now, self.bw_probe_wait)
            || self.is_reno_coexistence_probe_time(v)
        {
            self.start_probe_bw_refill(rs);
            return true;
        }
        false
    }

    fn check_time_to_cruise(&self, v: &CcVars, rs: &RateSample) -> bool {
        let inflight = f64::from(rs.in_flight);
        if inflight > self.inflight_with_headroom(v) {
            return false;
        }
        inflight <= self.inflight(v, 1.0)
    }

    fn update_probe_bw_cycle_phase(&mut self, v: &CcVars, rs: &RateSample) {
        if !self.full_bw_reached {
            return;
        }
        self.adapt_upper_bounds(v, rs);
        if !self.mode.is_probe_bw() {
            return;
        }
        match self.mode {
            Mode::ProbeBwDown => {
                if self.check_time_to_probe_bw(v, rs) {
                    return;
                }
                if self.check_time_to_cruise(v, rs) {
                    self.start_probe_bw_cruise();
                }
            }
            Mode::ProbeBwCruise => {
                self.check_time_to_probe_bw(v, rs);
            }
            Mode::ProbeBwRefill => {
                // "After one round of REFILL, start UP."
                if self.round_start {
                    self.bw_probe_samples = true;
                    self.start_probe_bw_up(v, rs);
                }
            }
            Mode::ProbeBwUp => {
                let min_rtt = self.min_rtt.unwrap_or(Duration::ZERO);
                if self.has_elapsed_in_phase(rs.now, min_rtt)
                    && f64::from(rs.in_flight) > self.inflight(v, self.pacing_gain)
                {
                    self.start_probe_bw_down(rs);
                }
            }
            Mode::Startup | Mode::Drain | Mode::ProbeRtt => {}
        }
    }

    /// §4.3.3.6 BBRAdaptUpperBounds.
    fn adapt_upper_bounds(&mut self, v: &CcVars, rs: &RateSample) {
        if self.ack_phase == AckPhase::ProbeStarting && self.round_start {
            // Starting to get bandwidth-probing samples.
            self.ack_phase = AckPhase::ProbeFeedback;
        }
        if self.ack_phase == AckPhase::ProbeStopping && self.round_start {
            // End of samples from the bandwidth probe phase: later losses are not the
            // probe's, and may no longer cut inflight_hi (-06 §5.3.3.9 AdaptLongTermModel,
            // "BBR.is_bw_probe_sample = false").
            self.bw_probe_samples = false;
            self.ack_phase = AckPhase::Init;
            if self.mode.is_probe_bw() && !rs.is_app_limited {
                self.advance_max_bw_filter();
            }
        }
        if self.check_inflight_too_high(v, rs) {
            return;
        }
        if !self.inflight_hi.is_finite() {
            return;
        }
        let tx = f64::from(rs.tx_in_flight);
        if tx > self.inflight_hi {
            self.inflight_hi = tx;
        }
        if self.mode == Mode::ProbeBwUp {
            self.probe_inflight_hi_upward(v, rs);
        }
    }

    fn check_inflight_too_high(&mut self, v: &CcVars, rs: &RateSample) -> bool {
        if is_inflight_too_high(rs) {
            if self.bw_probe_samples {
                self.handle_inflight_too_high(v, rs);
            }
            return true;
        }
        false
    }

    /// §4.5.10.2 BBRHandleInflightTooHigh: "BBR.inflight_hi = max(rs.tx_in_flight,
    /// BBRTargetInflight() * BBRBeta)".
    fn handle_inflight_too_high(&mut self, v: &CcVars, rs: &RateSample) {
        self.bw_probe_samples = false;
        if !rs.is_app_limited {
            let target = self.bdp_multiple(v, 1.0).min(f64::from(v.cwnd));
            self.inflight_hi = f64::from(rs.tx_in_flight)
                .max(target * BETA)
                .max(Self::min_pipe_cwnd(v));
        }
        if self.mode == Mode::ProbeBwUp {
            self.start_probe_bw_down(rs);
        }
    }

    fn raise_inflight_hi_slope(&mut self, v: &CcVars) {
        let growth_this_round = u64::from(v.maxseg) << self.bw_probe_up_rounds;
        self.bw_probe_up_rounds = (self.bw_probe_up_rounds + 1).min(30);
        self.probe_up_cnt = (u64::from(v.cwnd) / growth_this_round.max(1)).max(1);
    }

    fn probe_inflight_hi_upward(&mut self, v: &CcVars, rs: &RateSample) {
        if !rs.cwnd_limited || f64::from(v.cwnd) < self.inflight_hi {
            return;
        }
        self.bw_probe_up_acks += u64::from(rs.newly_acked);
        if self.bw_probe_up_acks >= self.probe_up_cnt {
            let delta = self.bw_probe_up_acks / self.probe_up_cnt;
            self.bw_probe_up_acks -= delta * self.probe_up_cnt;
            self.inflight_hi += (delta * u64::from(v.maxseg)) as f64;
        }
        if self.round_start {
            self.raise_inflight_hi_slope(v);
        }
    }

    // ---- §4.3.4 ProbeRTT and §4.5.4 min_rtt ----

    fn update_min_rtt(&mut self, rs: &RateSample) -> bool {
        let now = rs.now;
        // The draft stamps the filter at init; without a clock there, the first sample does.
        let probe_rtt_expired = self
            .probe_rtt_min_stamp
            .is_some_and(|s| now > s + PROBE_RTT_INTERVAL);
        if let Some(rtt) = rs.rtt.filter(|r| !r.is_zero()) {
            if self.probe_rtt_min_delay.is_none_or(|d| rtt < d) || probe_rtt_expired {
                self.probe_rtt_min_delay = Some(rtt);
                self.probe_rtt_min_stamp = Some(now);
            }
        }
        let min_rtt_expired = self
            .min_rtt_stamp
            .is_none_or(|s| now > s + MIN_RTT_FILTER_LEN);
        if let Some(d) = self.probe_rtt_min_delay {
            if self.min_rtt.is_none_or(|m| d < m) || min_rtt_expired {
                self.min_rtt = Some(d);
                self.min_rtt_stamp = self.probe_rtt_min_stamp;
            }
        }
        probe_rtt_expired
    }

    fn check_probe_rtt(&mut self, v: &mut CcVars, rs: &RateSample, probe_rtt_expired: bool) {
        if self.mode != Mode::ProbeRtt && probe_rtt_expired && !self.idle_restart {
            self.set_mode(Mode::ProbeRtt, 1.0, PROBE_RTT_CWND_GAIN);
            self.save_cwnd(v);
            self.probe_rtt_done_stamp = None;
            self.ack_phase = AckPhase::ProbeStopping;
            self.start_round(rs);
        }
        if self.mode == Mode::ProbeRtt {
            self.handle_probe_rtt(v, rs);
        }
        if rs.delivered > 0 {
            self.idle_restart = false;
        }
    }

    fn handle_probe_rtt(&mut self, v: &mut CcVars, rs: &RateSample) {
        match self.probe_rtt_done_stamp {
            None if f64::from(rs.in_flight) <= self.probe_rtt_cwnd(v) => {
                // Inflight is low enough: hold it there for 200 ms and one round.
                self.probe_rtt_done_stamp = Some(rs.now + PROBE_RTT_DURATION);
                self.probe_rtt_round_done = false;
                self.start_round(rs);
            }
            None => {}
            Some(_) => {
                if self.round_start {
                    self.probe_rtt_round_done = true;
                }
                if self.probe_rtt_round_done {
                    self.check_probe_rtt_done(v, rs);
                }
            }
        }
    }

    fn check_probe_rtt_done(&mut self, v: &mut CcVars, rs: &RateSample) {
        if self.probe_rtt_done_stamp.is_some_and(|d| rs.now > d) {
            // Wait another 5 s before the next ProbeRTT.
            self.probe_rtt_min_stamp = Some(rs.now);
            self.restore_cwnd(v);
            self.exit_probe_rtt(rs);
        }
    }

    fn exit_probe_rtt(&mut self, rs: &RateSample) {
        self.reset_short_term_model();
        if self.full_bw_reached {
            self.start_probe_bw_down(rs);
            self.start_probe_bw_cruise();
        } else {
            self.set_mode(Mode::Startup, STARTUP_PACING_GAIN, DEFAULT_CWND_GAIN);
        }
    }

    fn save_cwnd(&mut self, v: &CcVars) {
        self.prior_cwnd = if self.mode == Mode::ProbeRtt && self.prior_cwnd > 0 {
            self.prior_cwnd.max(v.cwnd)
        } else {
            v.cwnd
        };
    }

    fn restore_cwnd(&mut self, v: &mut CcVars) {
        v.cwnd = v.cwnd.max(self.prior_cwnd);
    }

    // ---- §4.6 control parameters ----

    /// §4.6.2 BBRSetPacingRateWithGain.
    fn set_pacing_rate(&mut self, v: &CcVars, srtt: Option<Duration>) {
        if self.init_pacing && srtt.is_some() {
            // The initial rate assumed 1 ms; redo it with the first measured RTT.
            self.init_pacing = false;
            self.pacing_rate = 0.0;
        }
        if self.bw <= 0.0 || self.pacing_rate <= 0.0 {
            // §4.6.2 BBRInitPacingRate: "nominal_bandwidth = InitialCwnd / (SRTT ? SRTT :
            // 1ms)".
            let rtt = srtt.or(self.min_rtt).unwrap_or(Duration::from_millis(1));
            let nominal = f64::from(window::initial_window(v.maxseg)) / rtt.as_secs_f64().max(1e-6);
            self.pacing_rate = STARTUP_PACING_GAIN * nominal;
            if self.bw <= 0.0 {
                return;
            }
        }
        let rate = self.pacing_gain * self.bw * (100.0 - PACING_MARGIN_PERCENT) / 100.0;
        if self.full_bw_reached || rate > self.pacing_rate {
            self.pacing_rate = rate;
        }
    }

    /// §4.6.4.6 BBRSetCwnd plus §4.6.4.5's model bounds.
    fn set_cwnd(&mut self, v: &mut CcVars, rs: &RateSample) {
        // §4.6.4.2 BBRUpdateMaxInflight: "inflight = BBRBDPMultiple(BBR.cwnd_gain) +
        // BBR.extra_acked".
        let max_inflight =
            self.quantization_budget(v, self.bdp_multiple(v, self.cwnd_gain) + self.extra_acked);
        let mut cwnd = f64::from(v.cwnd);
        if self.full_bw_reached {
            cwnd = (cwnd + f64::from(rs.newly_acked)).min(max_inflight);
        } else if cwnd < max_inflight
            || (rs.total_delivered as f64) < f64::from(window::initial_window(v.maxseg))
        {
            cwnd += f64::from(rs.newly_acked);
        }
        cwnd = cwnd.max(Self::min_pipe_cwnd(v));
        if self.mode == Mode::ProbeRtt {
            cwnd = cwnd.min(self.probe_rtt_cwnd(v));
        }
        // §4.6.4.5 BBRBoundCwndForModel.
        let mut cap = f64::INFINITY;
        if self.mode.is_probe_bw() && self.mode != Mode::ProbeBwCruise {
            cap = self.inflight_hi;
        } else if matches!(self.mode, Mode::ProbeRtt | Mode::ProbeBwCruise) {
            cap = self.inflight_with_headroom(v);
        }
        cap = cap.min(self.inflight_lo).max(Self::min_pipe_cwnd(v));
        cwnd = cwnd.min(cap);
        v.cwnd = clamp_u32(cwnd).max(window::loss_window(v.maxseg));
    }
}

/// §4.5.10.2 IsInflightTooHigh: "rs.lost > rs.tx_in_flight * BBRLossThresh".
fn is_inflight_too_high(rs: &RateSample) -> bool {
    rs.lost as f64 > f64::from(rs.tx_in_flight) * LOSS_THRESH && rs.lost > 0
}

fn clamp_u32(x: f64) -> u32 {
    if x.is_nan() {
        0
    } else if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        x as u32
    }
}

fn display_bytes(x: f64) -> String {
    if x.is_finite() {
        format!("{}", x as u64)
    } else {
        "-".to_string()
    }
}

impl CongestionControl for Bbr {
    fn name(&self) -> &'static str {
        NAME
    }

    fn conn_init(&mut self, v: &mut CcVars) {
        // BBR has no slow-start threshold; a module switched in keeps the cwnd it finds.
        v.ssthresh = CcVars::SSTHRESH_INFINITE;
        self.set_pacing_rate(v, None);
    }

    fn ack_received(&mut self, _v: &mut CcVars, _sig: CcSignal, _ack: &AckInfo) {
        // Everything happens in `rate_sample`, which follows for each ACK that delivered
        // data.
    }

    fn cong_signal(&mut self, v: &mut CcVars, sig: CcSignal, info: &CongInfo) {
        match sig {
            // -06 §5.6.4.4 OnEnterFastRecovery: save cwnd to restore it when recovery
            // ends, and nothing else: "When a BBR sender is in Fast Recovery it uses the
            // response described in 'Updating the Model Upon Packet Loss'" (the short-term
            // model, once per round). Earlier drafts (and Linux's BBRv1) also held cwnd to
            // what was in flight for the first round of recovery (packet conservation).
            CcSignal::NDupAck if info.recovery == Recovery::Open => {
                self.save_cwnd(v);
            }
            // §4.6.4.4: "Upon retransmission timeout (RTO) ... BBR.prior_cwnd = ...,
            // cwnd = packets_in_flight + 1" (nothing is in flight after an RTO: one segment).
            CcSignal::Rto => {
                if info.rto_count <= 1 {
                    self.pre_rto_cwnd = Some(v.cwnd);
                    self.save_cwnd(v);
                }
                v.cwnd = window::loss_window(v.maxseg);
            }
            CcSignal::RtoErr => {
                if let Some(c) = self.pre_rto_cwnd.take() {
                    v.cwnd = v.cwnd.max(c);
                }
            }
            // ECN: v3's ECN response is not built; the model ignores it.
            _ => {}
        }
    }

    fn post_recovery(&mut self, v: &mut CcVars, _ack: &AckInfo) {
        self.restore_cwnd(v);
    }

    fn after_idle(&mut self, v: &mut CcVars, _idle: &IdleInfo) {
        // §4.4.3: "when restarting from idle ... pace at exactly BBR.bw".
        self.idle_restart = true;
        if self.mode.is_probe_bw() && self.bw > 0.0 {
            let rate = self.bw * (100.0 - PACING_MARGIN_PERCENT) / 100.0;
            self.pacing_rate = rate;
        }
        let _ = v;
    }

    fn rate_sample(&mut self, v: &mut CcVars, rs: &RateSample) {
        // §4.2 BBRUpdateModelAndState.
        self.update_round(rs);
        self.update_latest_delivery_signals(rs);
        self.update_congestion_signals(v, rs);
        self.bound_bw_for_model();
        self.update_ack_aggregation(v, rs);
        self.check_startup_done(v, rs);
        self.check_drain(v, rs);
        self.update_probe_bw_cycle_phase(v, rs);
        let probe_rtt_expired = self.update_min_rtt(rs);
        self.check_probe_rtt(v, rs, probe_rtt_expired);
        self.advance_latest_delivery_signals(rs);
        self.bound_bw_for_model();
        // §4.2 BBRUpdateControlParameters.
        self.set_pacing_rate(v, rs.rtt);
        // BBR is the cwnd controller during recovery too (the transport's PRR result is
        // overridden here, as Linux's `cong_control` replaces PRR).
        self.set_cwnd(v, rs);
    }

    fn owns_recovery_window(&self) -> bool {
        // §4.6.4.4: BBR bounds cwnd in recovery itself (its model's bounds); PRR on top
        // would also shrink cwnd to the pipe on every ACK, as for a loss-based module,
        // though BBR keeps its rate on random loss.
        true
    }

    fn wants_rate_samples(&self) -> bool {
        true
    }

    fn pacing_rate(&self) -> Option<u64> {
        (self.pacing_rate >= 1.0).then_some(self.pacing_rate as u64)
    }

    fn state(&self) -> Vec<(&'static str, String)> {
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| d.as_micros().to_string());
        vec![
            ("mode", self.mode.name().to_string()),
            ("btl_bw", format!("{}", self.bw as u64)),
            ("max_bw", format!("{}", self.max_bw_f() as u64)),
            ("min_rtt_us", ms(self.min_rtt)),
            ("pacing_rate", format!("{}", self.pacing_rate as u64)),
            ("pacing_gain", format!("{:.2}", self.pacing_gain)),
            ("cwnd_gain", format!("{:.2}", self.cwnd_gain)),
            ("inflight_hi", display_bytes(self.inflight_hi)),
            ("inflight_lo", display_bytes(self.inflight_lo)),
            ("bw_lo", display_bytes(self.bw_lo)),
            ("extra_acked", format!("{}", self.extra_acked as u64)),
            ("full_bw_reached", self.full_bw_reached.to_string()),
            ("round", self.round_count.to_string()),
        ]
    }
}
