//! The retransmission timeout (RFC 6298): smoothed RTT, RTT variance, RTO and its backoff.
//!
//! Sans-IO: the estimator never reads the clock; the TCB measures the RTT and hands the
//! sample in.
//!
//! Karn's rule is the caller's job. RFC 6298 §3: "TCP MUST use Karn's algorithm \[KP87\] for
//! taking RTT samples. That is, RTT samples MUST NOT be made using segments that were
//! retransmitted (and thus for which it is ambiguous whether the reply was for the first
//! instance of the packet or a later instance). The only case when TCP can safely take RTT
//! samples from retransmitted segments is when the TCP timestamp option \[Jac92\] is
//! employed, since the timestamp option removes the ambiguity regarding which instance of
//! the data segment triggered the acknowledgment." So the TCB calls [`RttEstimator::sample`]
//! only with a timestamp-echo RTT or the RTT of a never-retransmitted segment.
//!
//! Also the caller's: RFC 6298 (5.7) "If the timer expires awaiting the ACK of a SYN
//! segment and the TCP implementation is using an RTO less than 3 seconds, the RTO MUST be
//! re-initialized to 3 seconds when data transmission begins (i.e., after the three-way
//! handshake completes)." ([`RttEstimator::reinit`] does the re-initialisation.)

use std::time::Duration;

/// Bounds and constants of the RTO computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtoConfig {
    /// RTO before the first sample. RFC 6298 (2.1): "Until a round-trip time (RTT)
    /// measurement has been made for a segment sent between the sender and receiver, the
    /// sender SHOULD set RTO <- 1 second". Default 1 s.
    pub initial: Duration,
    /// Lower bound on the computed RTO. Default 200 ms, Linux's `TCP_RTO_MIN`.
    ///
    /// Deviation: RFC 6298 (2.4) says "Whenever RTO is computed, if it is less than 1
    /// second, then the RTO SHOULD be rounded up to 1 second." That 1 s was chosen for
    /// coarse clocks and 200 ms delayed ACKs; with a fine clock it stalls a loss on a LAN
    /// for a whole second, which is why Linux and FreeBSD (`rexmit_min` 30 ms) both go
    /// lower. 200 ms stays above the delayed-ACK timer, so a lone segment held back by a
    /// delayed ACK does not cause a spurious retransmission.
    pub min: Duration,
    /// Upper bound on the RTO, backoff included. RFC 6298 (2.5): "A maximum value MAY be
    /// placed on RTO provided it is at least 60 seconds." Default 60 s.
    pub max: Duration,
    /// The clock granularity G. RFC 6298 (2.2): "RTO <- SRTT + max (G, K*RTTVAR)".
    /// Default 1 ms (the sans-IO core's clock is finer, but timers are serviced at
    /// millisecond granularity).
    pub granularity: Duration,
}

impl Default for RtoConfig {
    fn default() -> Self {
        RtoConfig {
            initial: Duration::from_secs(1),
            min: Duration::from_millis(200),
            max: Duration::from_secs(60),
            granularity: Duration::from_millis(1),
        }
    }
}

/// RFC 6298 (2.2): "where K = 4".
const K: u32 = 4;

/// The RFC 6298 RTT estimator of one connection.
///
/// Durations are kept as nanoseconds in `u64`s (with `u64::MAX` for "none"): the same
/// arithmetic as `Duration`'s, in 64 bytes instead of 136, since every connection has one.
#[derive(Clone, Debug)]
pub struct RttEstimator {
    /// `RtoConfig::min`, `max` and `granularity`.
    min: u64,
    max: u64,
    granularity: u64,
    /// SRTT; `NONE` until the first sample.
    srtt: u64,
    /// RTTVAR.
    rttvar: u64,
    /// The RTO computed from the last sample (or the initial RTO), before backoff,
    /// clamped to `[min, max]`.
    base_rto: u64,
    /// The smallest sample seen; `NONE` before the first.
    min_rtt: u64,
    /// How many times the timer has been backed off since the last sample / reset.
    backoff: u32,
}

/// "No value" in the estimator's nanosecond fields.
const NONE: u64 = u64::MAX;

/// `d` in nanoseconds, saturating below [`NONE`] (584 years).
fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(NONE).min(NONE - 1)
}

fn dur(n: u64) -> Duration {
    Duration::from_nanos(n)
}

fn opt(n: u64) -> Option<Duration> {
    (n != NONE).then(|| dur(n))
}

impl RttEstimator {
    /// An estimator with no samples yet: RTO = `cfg.initial` (clamped to `[min, max]`).
    pub fn new(cfg: RtoConfig) -> Self {
        let (min, max) = (ns(cfg.min), ns(cfg.max));
        RttEstimator {
            min,
            max,
            granularity: ns(cfg.granularity),
            srtt: NONE,
            rttvar: 0,
            base_rto: clamp(ns(cfg.initial), min, max),
            min_rtt: NONE,
            backoff: 0,
        }
    }

    /// Feeds one RTT measurement (already filtered by Karn's rule, see the module doc).
    ///
    /// RFC 6298 (2.2): "When the first RTT measurement R is made, the host MUST set
    /// SRTT <- R, RTTVAR <- R/2, RTO <- SRTT + max (G, K*RTTVAR) where K = 4."
    ///
    /// RFC 6298 (2.3): "When a subsequent RTT measurement R' is made, a host MUST set
    /// RTTVAR <- (1 - beta) * RTTVAR + beta * |SRTT - R'|, SRTT <- (1 - alpha) * SRTT +
    /// alpha * R' [...] The above SHOULD be computed using alpha=1/8 and beta=1/4".
    ///
    /// A sample also clears the backoff. RFC 6298 §5: "once a new RTT measurement is
    /// obtained (which can only happen when new data has been sent and acknowledged), the
    /// computations outlined in Section 2 are performed, including the computation of RTO,
    /// which may result in "collapsing" RTO back down after it has been subject to
    /// exponential back off (rule 5.5)."
    pub fn sample(&mut self, rtt: Duration) {
        let rtt = ns(rtt);
        if self.srtt == NONE {
            self.srtt = rtt;
            self.rttvar = rtt / 2;
        } else {
            // "The value of SRTT used in the update to RTTVAR is its value before
            // updating SRTT itself using the second assignment."
            let delta = self.srtt.abs_diff(rtt);
            self.rttvar = self.rttvar.saturating_mul(3) / 4 + delta / 4;
            self.srtt = self.srtt.saturating_mul(7) / 8 + rtt / 8;
        }
        self.min_rtt = self.min_rtt.min(rtt);
        self.update_rto();
        self.backoff = 0;
    }

    fn update_rto(&mut self) {
        let srtt = if self.srtt == NONE { 0 } else { self.srtt };
        // K*RTTVAR saturates rather than overflowing on absurd samples.
        let var = self.rttvar.saturating_mul(u64::from(K));
        let rto = srtt.saturating_add(self.granularity.max(var));
        self.base_rto = clamp(rto, self.min, self.max);
    }

    /// The current RTO: the base RTO doubled once per backoff, at most `cfg.max`.
    pub fn rto(&self) -> Duration {
        let rto = 1u64
            .checked_shl(self.backoff)
            .and_then(|m| self.base_rto.checked_mul(m))
            .map_or(self.max, |r| r.min(self.max));
        dur(rto)
    }
    /// Backs the timer off after it expired. RFC 6298 (5.5): "The host MUST set RTO <-
    /// RTO * 2 ("back off the timer"). The maximum value discussed in (2.5) above may be
    /// used to provide an upper bound to this doubling operation." The count saturates;
    /// [`rto`](Self::rto) stops growing at `cfg.max`.
    pub fn backoff(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// Clears the backoff (the RTO returns to the base RTO) without a new sample.
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// How many times the timer has been backed off since the last sample or reset.
    #[cfg(test)]
    pub fn backoff_count(&self) -> u32 {
        self.backoff
    }

    /// SRTT, `None` before the first sample.
    pub fn srtt(&self) -> Option<Duration> {
        opt(self.srtt)
    }

    /// RTTVAR (zero before the first sample).
    pub fn rttvar(&self) -> Duration {
        dur(self.rttvar)
    }

    /// The smallest sample seen over the connection's life (not windowed, unlike Linux's
    /// 5-minute `tcpi_min_rtt` filter), `None` before the first sample.
    pub fn min_rtt(&self) -> Option<Duration> {
        opt(self.min_rtt)
    }

    /// Forgets SRTT/RTTVAR and sets the base RTO to `rto` (clamped to `[min, max]`), with
    /// the backoff cleared; `min_rtt` is kept. For RFC 6298 (5.7)'s "re-initialized to 3
    /// seconds" after a SYN timeout, and for §5's note that "a TCP implementation MAY
    /// clear SRTT and RTTVAR after backing off the timer multiple times as it is likely
    /// that the current SRTT and RTTVAR are bogus in this situation." The next sample is
    /// then treated as the first (2.2).
    pub fn reinit(&mut self, rto: Duration) {
        self.srtt = NONE;
        self.rttvar = 0;
        self.base_rto = clamp(ns(rto), self.min, self.max);
        self.backoff = 0;
    }
}

/// `v` clamped to `[lo, hi]`, without `Ord::clamp`'s panic when a misconfigured `lo > hi`
/// (then `hi` wins: the maximum is the safety bound).
fn clamp(v: u64, lo: u64, hi: u64) -> u64 {
    v.max(lo).min(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A config without the 200 ms floor so the raw formulas show.
    fn raw_cfg() -> RtoConfig {
        RtoConfig {
            min: Duration::ZERO,
            ..RtoConfig::default()
        }
    }

    #[test]
    fn initial_rto_is_one_second() {
        // RFC 6298 (2.1): RTO <- 1 second before any measurement.
        let e = RttEstimator::new(RtoConfig::default());
        assert_eq!(e.rto(), Duration::from_secs(1));
        assert_eq!(e.srtt(), None);
        assert_eq!(e.min_rtt(), None);
        assert_eq!(e.rttvar(), Duration::ZERO);
    }

    #[test]
    fn first_sample() {
        // RFC 6298 (2.2): SRTT <- R, RTTVAR <- R/2, RTO <- SRTT + max(G, 4*RTTVAR).
        let mut e = RttEstimator::new(raw_cfg());
        e.sample(ms(100));
        assert_eq!(e.srtt(), Some(ms(100)));
        assert_eq!(e.rttvar(), ms(50));
        assert_eq!(e.rto(), ms(300));
        assert_eq!(e.min_rtt(), Some(ms(100)));
    }

    #[test]
    fn subsequent_samples_follow_the_formulas() {
        // RFC 6298 (2.3), alpha = 1/8, beta = 1/4; RTTVAR uses the old SRTT.
        let mut e = RttEstimator::new(raw_cfg());
        let samples = [100u64, 140, 60, 100, 300, 80];
        let (mut srtt, mut rttvar) = (0f64, 0f64);
        for (i, &r) in samples.iter().enumerate() {
            let r_ms = r as f64;
            if i == 0 {
                srtt = r_ms;
                rttvar = r_ms / 2.0;
            } else {
                rttvar = 0.75 * rttvar + 0.25 * (srtt - r_ms).abs();
                srtt = 0.875 * srtt + 0.125 * r_ms;
            }
            e.sample(ms(r));
            let rto = srtt + (4.0 * rttvar).max(1.0);
            let close = |d: Duration, want: f64| (d.as_secs_f64() * 1000.0 - want).abs() < 1e-3;
            assert!(close(e.srtt().unwrap(), srtt), "srtt at {i}");
            assert!(close(e.rttvar(), rttvar), "rttvar at {i}");
            assert!(close(e.rto(), rto), "rto at {i}: {:?} vs {rto}", e.rto());
        }
        assert_eq!(e.min_rtt(), Some(ms(60)));
    }

    #[test]
    fn second_sample_exact() {
        // 100 then 140: RTTVAR = 3/4*50 + 1/4*40 = 47.5; SRTT = 7/8*100 + 1/8*140 = 105;
        // RTO = 105 + 190 = 295 ms.
        let mut e = RttEstimator::new(raw_cfg());
        e.sample(ms(100));
        e.sample(ms(140));
        assert_eq!(e.rttvar(), Duration::from_micros(47_500));
        assert_eq!(e.srtt(), Some(ms(105)));
        assert_eq!(e.rto(), ms(295));
    }

    #[test]
    fn granularity_floor() {
        // RFC 6298 (2.3): RTO <- SRTT + max(G, K*RTTVAR): with a steady RTT, RTTVAR decays
        // toward 0 and G takes over.
        let mut e = RttEstimator::new(RtoConfig {
            granularity: ms(10),
            ..raw_cfg()
        });
        for _ in 0..200 {
            e.sample(ms(50));
        }
        assert_eq!(e.srtt(), Some(ms(50)));
        assert_eq!(e.rto(), ms(60));
    }

    #[test]
    fn clamped_to_min_and_max() {
        // Default min 200 ms (Linux TCP_RTO_MIN; deviation from RFC 6298 (2.4)'s 1 s).
        let mut e = RttEstimator::new(RtoConfig::default());
        e.sample(Duration::from_micros(50));
        assert_eq!(e.rto(), ms(200));
        // RFC 6298 (2.5): a maximum of at least 60 s.
        e.sample(Duration::from_secs(100));
        assert_eq!(e.rto(), Duration::from_secs(60));
        // Absurd samples saturate instead of overflowing.
        let mut e = RttEstimator::new(RtoConfig::default());
        e.sample(Duration::MAX);
        assert_eq!(e.rto(), Duration::from_secs(60));
    }

    #[test]
    fn backoff_doubles_up_to_max() {
        // RFC 6298 (5.5): RTO <- RTO * 2, bounded by the (2.5) maximum.
        let mut e = RttEstimator::new(RtoConfig::default());
        let mut want = Duration::from_secs(1);
        for i in 0..10 {
            assert_eq!(
                e.rto(),
                want.min(Duration::from_secs(60)),
                "after {i} backoffs"
            );
            assert_eq!(e.backoff_count(), i);
            e.backoff();
            want *= 2;
        }
        assert_eq!(e.rto(), Duration::from_secs(60));
        for _ in 0..100 {
            e.backoff();
        }
        assert_eq!(e.rto(), Duration::from_secs(60));
        e.reset_backoff();
        assert_eq!(e.backoff_count(), 0);
        assert_eq!(e.rto(), Duration::from_secs(1));
    }

    #[test]
    fn backoff_saturates() {
        let mut e = RttEstimator::new(RtoConfig::default());
        e.backoff = u32::MAX - 1;
        e.backoff();
        e.backoff();
        assert_eq!(e.backoff_count(), u32::MAX);
        assert_eq!(e.rto(), Duration::from_secs(60));
    }

    #[test]
    fn sample_collapses_backoff() {
        // RFC 6298 §5: a new measurement may "collapse" RTO back down after backoff.
        let mut e = RttEstimator::new(raw_cfg());
        e.backoff();
        e.backoff();
        assert_eq!(e.rto(), Duration::from_secs(4));
        e.sample(ms(100));
        assert_eq!(e.backoff_count(), 0);
        assert_eq!(e.rto(), ms(300));
    }

    #[test]
    fn reinit_after_syn_timeout() {
        // RFC 6298 (5.7): RTO re-initialised to 3 s; the next sample counts as the first.
        let mut e = RttEstimator::new(raw_cfg());
        e.sample(ms(100));
        e.backoff();
        e.reinit(Duration::from_secs(3));
        assert_eq!(e.rto(), Duration::from_secs(3));
        assert_eq!(e.srtt(), None);
        assert_eq!(e.backoff_count(), 0);
        e.sample(ms(40));
        assert_eq!(e.srtt(), Some(ms(40)));
        assert_eq!(e.rttvar(), ms(20));
        assert_eq!(e.min_rtt(), Some(ms(40)));
    }
}
