//! NewReno: RFC 5681 slow start and congestion avoidance with Appropriate Byte Counting
//! (RFC 3465), the RFC 6582 end of fast recovery, the RFC 3168 response to ECN, the RFC 5681
//! §4.1 restart window, and an undo for spurious RTOs. After FreeBSD's NewReno module.
//!
//! Division of labour with the transport (see the crate docs): the transport inflates and
//! deflates cwnd during fast recovery; this module sets ssthresh and cwnd when congestion is
//! signalled, grows cwnd outside recovery, and deflates when recovery ends.
//!
//! [`NewReno::with_hystart`] (registered as `newreno-hs`) replaces the initial slow start
//! with HyStart++ (RFC 9406, [`crate::hystart`]).

use crate::hystart::HyStart;
use crate::window;
use crate::{
    AckInfo, CcFactory, CcSignal, CcVars, CongInfo, CongestionControl, IdleInfo, Recovery,
    RttSample,
};

/// The name NewReno is registered under.
pub const NAME: &str = "newreno";
/// The name of NewReno with HyStart++ ([`NewReno::with_hystart`]).
pub const NAME_HS: &str = "newreno-hs";

/// Builds plain [`NewReno`] controllers; registered by [`crate::Registry::with_builtins`]
/// (which also registers [`NAME_HS`], built by [`NewReno::with_hystart`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Factory;

impl CcFactory for Factory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn build(&self) -> Box<dyn CongestionControl> {
        Box::new(NewReno::default())
    }
}

/// One connection's NewReno state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewReno {
    /// RFC 3465 §2.1's `bytes_acked`: bytes credited toward the next SMSS of
    /// congestion-avoidance growth.
    ca_bytes_acked: u32,
    /// cwnd and ssthresh before the first expiry of the current RTO run, for `RtoErr`.
    undo: window::RtoUndo<HyStart>,
    /// HyStart++ for the initial slow start; disabled by default.
    hystart: HyStart,
}

impl NewReno {
    /// NewReno whose initial slow start is HyStart++ (RFC 9406), registered as [`NAME_HS`].
    pub fn with_hystart() -> Self {
        Self {
            hystart: HyStart::new(true),
            ..Self::default()
        }
    }

    /// Bytes credited toward the next congestion-avoidance increase (RFC 3465 §2.1).
    pub fn ca_bytes_acked(&self) -> u32 {
        self.ca_bytes_acked
    }
}

impl CongestionControl for NewReno {
    fn name(&self) -> &'static str {
        if self.hystart.enabled() {
            NAME_HS
        } else {
            NAME
        }
    }

    fn conn_init(&mut self, v: &mut CcVars) {
        // A new connection arrives with CcVars::new's IW; a switched one with its current
        // window, which TCP_CONGESTION semantics keep. Only restore the invariants, in case
        // the previous module left them broken.
        window::repair(v);
        self.hystart.conn_init(v);
    }

    fn ack_received(&mut self, v: &mut CcVars, sig: CcSignal, ack: &AckInfo) {
        let Some(credit) = window::growth_credit(sig, ack, v) else {
            return;
        };
        if v.in_slow_start() {
            // RFC 5681 §3.1: "During slow start, a TCP increments cwnd by at most SMSS bytes
            // for each ACK received that cumulatively acknowledges new data." With ABC
            // (RFC 3465), by min(N, L*SMSS) instead; see window::ABC_LIMIT_SEGS for L.
            // HyStart++ may take a quarter of that (CSS) or end slow start.
            let incr = self.hystart.slow_start_increment(v, ack, credit);
            v.cwnd = window::grow(v.cwnd, incr);
        } else {
            // RFC 5681 §3.1: "The RECOMMENDED way to increase cwnd during congestion
            // avoidance is to count the number of bytes that have been acknowledged by ACKs
            // for new data. [...] When the number of bytes acknowledged reaches cwnd, then
            // cwnd can be incremented by up to SMSS bytes."
            // RFC 3465 §2.1: "When bytes_acked becomes greater than or equal to the value of
            // the congestion window, bytes_acked is reduced by the value of cwnd. Next, cwnd
            // is incremented by a full-sized segment (SMSS)."
            // The credit is every byte the ACK covers, stretch ACKs included (as Linux's
            // tcp_cong_avoid_ai counts the segments acked; FreeBSD caps one ACK's credit at
            // L*SMSS per ACK it coalesced, which slows growth by the stretch factor when the
            // receiver acknowledges many segments at once, as a Linux receiver with GRO and
            // SACK compression does). One SMSS per cwnd of bytes, at most one per ACK, and
            // less than a window banked: "cwnd MUST NOT be increased by more than SMSS bytes
            // per RTT".
            self.ca_bytes_acked = self.ca_bytes_acked.saturating_add(credit);
            if self.ca_bytes_acked >= v.cwnd {
                self.ca_bytes_acked -= v.cwnd;
                v.cwnd = window::grow(v.cwnd, v.maxseg);
                self.ca_bytes_acked = self.ca_bytes_acked.min(v.cwnd.saturating_sub(1));
            }
        }
    }

    fn cong_signal(&mut self, v: &mut CcVars, sig: CcSignal, info: &CongInfo) {
        debug_assert!(
            sig.is_congestion(),
            "{sig:?} is an ACK type: pass it to ack_received"
        );
        match sig {
            CcSignal::NDupAck | CcSignal::Ecn => {
                // RFC 3168 §6.1.2: "the TCP sender's congestion window should be reduced only
                // once in response to a series of dropped and/or CE packets from a single
                // window of data." An episode (fast recovery, CWR, or the RTO recovery that
                // already cut cwnd to LW) is such a window.
                if info.recovery != Recovery::Open {
                    return;
                }
                // Loss: RFC 5681 §3.2 step 2: "When the third duplicate ACK is received, a
                // TCP MUST set ssthresh to no more than the value given in equation (4)."
                // ECN: RFC 3168 §6.1.2: "The indication of congestion should be treated just
                // as a congestion loss in non-ECN-Capable TCP. That is, the TCP source halves
                // the congestion window "cwnd" and reduces the slow start threshold
                // "ssthresh"." cwnd = ssthresh is step 3's base; the +3*SMSS is the
                // transport's (window::fast_retransmit_inflate).
                window::reduce(v, window::reno_ssthresh(info.in_flight, v.maxseg));
                self.ca_bytes_acked = 0;
                self.hystart.on_congestion();
                // A real congestion signal: no undoing past it.
                self.undo.forget();
            }
            CcSignal::Rto => {
                // RFC 5681 §3.1: ssthresh = max (FlightSize / 2, 2*SMSS) when "the given
                // segment has not yet been resent by way of the retransmission timer"; "On
                // the other hand, when a TCP sender detects segment loss using the
                // retransmission timer and the given segment has already been retransmitted
                // by way of the retransmission timer at least once, the value of ssthresh is
                // held constant."
                if info.rto_count <= 1 {
                    self.undo.save(v, self.hystart.clone());
                    v.ssthresh = window::reno_ssthresh(info.in_flight, v.maxseg);
                }
                // RFC 5681 §3.1: "upon a timeout [...] cwnd MUST be set to no more than the
                // loss window, LW, which equals 1 full-sized segment".
                v.cwnd = window::loss_window(v.maxseg);
                self.ca_bytes_acked = 0;
                self.hystart.on_congestion();
            }
            CcSignal::RtoErr => {
                // The RTO was spurious: put back the window it took away, as FreeBSD does on
                // CC_RTO_ERR ("RTO was unnecessary, so reset everything"). Clamped in case the
                // MSS grew meanwhile.
                if let Some(hystart) = self.undo.restore(v) {
                    self.hystart = hystart;
                }
            }
            // ACK types (a transport bug, asserted above) and private signals: nothing to do.
            _ => {}
        }
    }

    fn post_recovery(&mut self, v: &mut CcVars, ack: &AckInfo) {
        // After CWR cwnd already sits at the reduced value: nothing was inflated.
        if ack.recovery == Recovery::Fast {
            // RFC 6582 §3.2 step 3, option (1); see window::reno_post_recovery_cwnd.
            v.cwnd = window::reno_post_recovery_cwnd(v.ssthresh, ack.in_flight, v.maxseg);
        }
        self.ca_bytes_acked = 0;
    }

    fn after_idle(&mut self, v: &mut CcVars, idle: &IdleInfo) {
        // RFC 5681 §4.1: "Therefore, a TCP SHOULD set cwnd to no more than RW before
        // beginning transmission if the TCP has not sent data in an interval exceeding the
        // retransmission timeout."
        if idle.exceeds_rto() {
            v.cwnd = window::restart_window(v.cwnd, v.maxseg);
        }
    }

    fn rtt_sample(&mut self, _v: &mut CcVars, sample: &RttSample) {
        self.hystart.rtt_sample(sample);
    }

    fn state(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("ca_bytes_acked", self.ca_bytes_acked.to_string()),
            ("rto_undo", self.undo.describe()),
        ];
        if self.hystart.enabled() {
            out.extend(self.hystart.state());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const MSS: u32 = 1460;

    fn ack(now: Instant, bytes: u32) -> AckInfo {
        AckInfo {
            bytes_acked: bytes,
            cwnd_limited: true,
            ..AckInfo::new(now)
        }
    }

    fn cong(now: Instant, in_flight: u32) -> CongInfo {
        CongInfo {
            in_flight,
            ..CongInfo::new(now)
        }
    }

    /// One round trip: the sender fills cwnd and every segment is acknowledged, `per_ack`
    /// segments per ACK (2 = delayed ACKs). Returns how many ACKs the round took.
    fn round(cc: &mut NewReno, v: &mut CcVars, per_ack: u32) -> u32 {
        let now = Instant::now();
        let segments = v.cwnd / v.maxseg;
        let acks = segments / per_ack;
        for _ in 0..acks {
            cc.ack_received(v, CcSignal::Ack, &ack(now, per_ack * v.maxseg));
        }
        acks
    }

    fn fresh() -> (NewReno, CcVars) {
        let mut cc = NewReno::default();
        let mut v = CcVars::new(MSS);
        cc.conn_init(&mut v);
        (cc, v)
    }

    // RFC 5681 §3.1 slow start: each ACK of one SMSS adds one SMSS, so cwnd doubles per RTT.
    #[test]
    fn slow_start_doubles_cwnd_every_round() {
        let (mut cc, mut v) = fresh();
        assert_eq!(v.cwnd, 10 * MSS);
        for r in 1..=5 {
            round(&mut cc, &mut v, 1);
            assert_eq!(v.cwnd, (10 << r) * MSS, "after round {r}");
        }
    }

    // RFC 3465 §2.3: with L = 2*SMSS, slow start still doubles per RTT under delayed ACKs.
    #[test]
    fn slow_start_doubles_with_delayed_acks_thanks_to_abc_l2() {
        let (mut cc, mut v) = fresh();
        assert_eq!(round(&mut cc, &mut v, 2), 5);
        assert_eq!(v.cwnd, 20 * MSS);
        round(&mut cc, &mut v, 2);
        assert_eq!(v.cwnd, 40 * MSS);
    }

    // RFC 5681 §3.1 / RFC 3465 §2.1: congestion avoidance adds one SMSS per cwnd of bytes
    // acknowledged, i.e. one SMSS per RTT.
    #[test]
    fn congestion_avoidance_adds_one_segment_per_round() {
        let (mut cc, mut v) = fresh();
        v.cwnd = 20 * MSS;
        v.ssthresh = 20 * MSS;
        for r in 1..=10 {
            round(&mut cc, &mut v, 1);
            assert_eq!(v.cwnd, (20 + r) * MSS, "after round {r}");
            assert_eq!(cc.ca_bytes_acked(), 0, "a full round leaves no credit over");
        }
        // Delayed ACKs: the same bytes, so the same growth.
        let before = v.cwnd;
        round(&mut cc, &mut v, 2);
        assert_eq!(v.cwnd, before + MSS);
    }

    #[test]
    fn congestion_avoidance_counts_bytes_across_acks() {
        let (mut cc, mut v) = fresh();
        v.cwnd = 4 * MSS;
        v.ssthresh = 2 * MSS;
        let now = Instant::now();
        for _ in 0..3 {
            cc.ack_received(&mut v, CcSignal::Ack, &ack(now, MSS));
        }
        assert_eq!((v.cwnd, cc.ca_bytes_acked()), (4 * MSS, 3 * MSS));
        assert_eq!(cc.state()[0], ("ca_bytes_acked", (3 * MSS).to_string()));
        cc.ack_received(&mut v, CcSignal::Ack, &ack(now, MSS + 100));
        assert_eq!((v.cwnd, cc.ca_bytes_acked()), (5 * MSS, 100));
    }

    // RFC 3465 §2.3: the limit L caps what one stretch ACK adds.
    #[test]
    fn abc_limit_caps_a_stretch_ack() {
        let (mut cc, mut v) = fresh();
        let now = Instant::now();
        cc.ack_received(&mut v, CcSignal::Ack, &ack(now, 8 * MSS));
        assert_eq!(v.cwnd, 12 * MSS, "L = 2: +2 SMSS, not +8");
        // An ACK standing for 3 merged ACKs may add 3 * L segments.
        cc.ack_received(
            &mut v,
            CcSignal::Ack,
            &AckInfo {
                acks: 3,
                ..ack(now, 20 * MSS)
            },
        );
        assert_eq!(v.cwnd, 18 * MSS);
        // Less than a segment adds what it acknowledges.
        cc.ack_received(&mut v, CcSignal::Ack, &ack(now, 100));
        assert_eq!(v.cwnd, 18 * MSS + 100);
    }

    // RFC 3465: L = 1*SMSS while slow-starting after an RTO (see window::ABC_LIMIT_SEGS_AFTER_RTO).
    #[test]
    fn abc_limit_is_one_segment_after_rto() {
        let (mut cc, mut v) = fresh();
        let now = Instant::now();
        cc.cong_signal(
            &mut v,
            CcSignal::Rto,
            &CongInfo {
                rto_count: 1,
                ..cong(now, 40 * MSS)
            },
        );
        assert_eq!(v.cwnd, MSS);
        cc.ack_received(
            &mut v,
            CcSignal::Ack,
            &AckInfo {
                recovery: Recovery::Rto,
                ..ack(now, 8 * MSS)
            },
        );
        assert_eq!(v.cwnd, 2 * MSS);
    }

    // RFC 5681 §3.1: in congestion avoidance a stretch ACK counts every byte it covers
    // ("count the number of bytes that have been acknowledged by ACKs for new data"), so
    // one ACK per 3 segments grows cwnd as fast as one per segment; but it grows cwnd by
    // at most one SMSS and banks less than a window.
    #[test]
    fn stretch_ack_counts_its_bytes_but_grows_at_most_one_segment() {
        let (mut cc, mut v) = fresh();
        v.cwnd = 6 * MSS;
        v.ssthresh = 6 * MSS;
        let now = Instant::now();
        cc.ack_received(&mut v, CcSignal::Ack, &ack(now, 3 * MSS));
        assert_eq!((v.cwnd, cc.ca_bytes_acked()), (6 * MSS, 3 * MSS));
        cc.ack_received(&mut v, CcSignal::Ack, &ack(now, 3 * MSS));
        assert_eq!((v.cwnd, cc.ca_bytes_acked()), (7 * MSS, 0));
        cc.ack_received(&mut v, CcSignal::Ack, &ack(now, 100 * MSS));
        assert_eq!((v.cwnd, cc.ca_bytes_acked()), (8 * MSS, 8 * MSS - 1));
    }

    #[test]
    fn no_growth_when_not_cwnd_limited() {
        let (mut cc, mut v) = fresh();
        let now = Instant::now();
        let app_limited = AckInfo {
            cwnd_limited: false,
            ..ack(now, MSS)
        };
        cc.ack_received(&mut v, CcSignal::Ack, &app_limited);
        assert_eq!(v.cwnd, 10 * MSS, "slow start");
        v.ssthresh = v.cwnd;
        for _ in 0..100 {
            cc.ack_received(&mut v, CcSignal::Ack, &app_limited);
        }
        assert_eq!(
            (v.cwnd, cc.ca_bytes_acked()),
            (10 * MSS, 0),
            "congestion avoidance"
        );
    }

    #[test]
    fn no_growth_during_fast_recovery_or_cwr_nor_on_dup_acks() {
        let (mut cc, mut v) = fresh();
        let now = Instant::now();
        for recovery in [Recovery::Fast, Recovery::Cwr] {
            cc.ack_received(
                &mut v,
                CcSignal::Ack,
                &AckInfo {
                    recovery,
                    ..ack(now, MSS)
                },
            );
        }
        cc.ack_received(&mut v, CcSignal::DupAck, &ack(now, 0));
        assert_eq!(v, CcVars::new(MSS));
    }

    // RFC 5681 §3.2 step 2 + eq. (4): ssthresh = max(FlightSize/2, 2*SMSS), cwnd = ssthresh.
    #[test]
    fn fast_retransmit_halves_the_flight() {
        let (mut cc, mut v) = fresh();
        v.cwnd = 40 * MSS;
        let now = Instant::now();
        cc.cong_signal(&mut v, CcSignal::NDupAck, &cong(now, 36 * MSS));
        assert_eq!(
            (v.cwnd, v.ssthresh),
            (18 * MSS, 18 * MSS),
            "FlightSize, not cwnd"
        );
        // Tiny flight: the 2*SMSS floor.
        let (mut cc, mut v) = fresh();
        cc.cong_signal(&mut v, CcSignal::NDupAck, &cong(now, 3 * MSS));
        assert_eq!((v.cwnd, v.ssthresh), (2 * MSS, 2 * MSS));
    }

    // RFC 3168 §6.1.2: ECN-Echo is treated as a loss, once per window.
    #[test]
    fn ecn_reduces_like_a_loss_once_per_episode() {
        let (mut cc, mut v) = fresh();
        v.cwnd = 40 * MSS;
        let now = Instant::now();
        cc.cong_signal(&mut v, CcSignal::Ecn, &cong(now, 40 * MSS));
        assert_eq!((v.cwnd, v.ssthresh), (20 * MSS, 20 * MSS));
        for recovery in [Recovery::Cwr, Recovery::Fast, Recovery::Rto] {
            cc.cong_signal(
                &mut v,
                CcSignal::Ecn,
                &CongInfo {
                    recovery,
                    ..cong(now, 20 * MSS)
                },
            );
            cc.cong_signal(
                &mut v,
                CcSignal::NDupAck,
                &CongInfo {
                    recovery,
                    ..cong(now, 20 * MSS)
                },
            );
            assert_eq!((v.cwnd, v.ssthresh), (20 * MSS, 20 * MSS), "{recovery:?}");
        }
    }

    #[test]
    fn a_congestion_signal_never_opens_the_window() {
        let (mut cc, mut v) = fresh();
        v.cwnd = MSS;
        cc.cong_signal(&mut v, CcSignal::Ecn, &cong(Instant::now(), 10 * MSS));
        assert_eq!((v.cwnd, v.ssthresh), (MSS, 5 * MSS));
    }

    // RFC 5681 §3.1: after an RTO, ssthresh = max(FlightSize/2, 2*SMSS) and cwnd = LW;
    // a backed-off RTO holds ssthresh constant.
    #[test]
    fn rto_sets_loss_window_and_holds_ssthresh_on_backoff() {
        let (mut cc, mut v) = fresh();
        v.cwnd = 40 * MSS;
        let now = Instant::now();
        cc.cong_signal(
            &mut v,
            CcSignal::Rto,
            &CongInfo {
                rto_count: 1,
                ..cong(now, 30 * MSS)
            },
        );
        assert_eq!((v.cwnd, v.ssthresh), (MSS, 15 * MSS));
        cc.cong_signal(
            &mut v,
            CcSignal::Rto,
            &CongInfo {
                rto_count: 2,
                ..cong(now, 4 * MSS)
            },
        );
        assert_eq!((v.cwnd, v.ssthresh), (MSS, 15 * MSS));
        // A new RTO run (count back at 1) computes it again.
        cc.cong_signal(
            &mut v,
            CcSignal::Rto,
            &CongInfo {
                rto_count: 1,
                ..cong(now, 4 * MSS)
            },
        );
        assert_eq!((v.cwnd, v.ssthresh), (MSS, 2 * MSS));
    }

    // Spurious RTO (RFC 5682 / RFC 3522 detection): RtoErr restores the pre-RTO window.
    #[test]
    fn rto_err_restores_the_window_before_the_first_rto() {
        let (mut cc, mut v) = fresh();
        v.cwnd = 40 * MSS;
        v.ssthresh = 30 * MSS;
        let now = Instant::now();
        cc.cong_signal(
            &mut v,
            CcSignal::Rto,
            &CongInfo {
                rto_count: 1,
                ..cong(now, 40 * MSS)
            },
        );
        cc.cong_signal(
            &mut v,
            CcSignal::Rto,
            &CongInfo {
                rto_count: 2,
                ..cong(now, 40 * MSS)
            },
        );
        assert_eq!(
            cc.state()[1],
            (
                "rto_undo",
                format!("cwnd={} ssthresh={}", 40 * MSS, 30 * MSS)
            )
        );
        cc.ack_received(
            &mut v,
            CcSignal::Ack,
            &AckInfo {
                recovery: Recovery::Rto,
                ..ack(now, MSS)
            },
        );
        cc.cong_signal(&mut v, CcSignal::RtoErr, &cong(now, 39 * MSS));
        assert_eq!((v.cwnd, v.ssthresh), (40 * MSS, 30 * MSS));
        // One undo per RTO: a second RtoErr changes nothing.
        v.cwnd = 7 * MSS;
        cc.cong_signal(&mut v, CcSignal::RtoErr, &cong(now, 39 * MSS));
        assert_eq!((v.cwnd, v.ssthresh), (7 * MSS, 30 * MSS));
        assert_eq!(cc.state()[1], ("rto_undo", "-".to_string()));
    }

    #[test]
    fn rto_err_without_rto_or_after_a_real_loss_does_nothing() {
        let (mut cc, mut v) = fresh();
        let now = Instant::now();
        cc.cong_signal(&mut v, CcSignal::RtoErr, &cong(now, 10 * MSS));
        assert_eq!(v, CcVars::new(MSS));
        cc.cong_signal(
            &mut v,
            CcSignal::Rto,
            &CongInfo {
                rto_count: 1,
                ..cong(now, 10 * MSS)
            },
        );
        assert_eq!((v.cwnd, v.ssthresh), (MSS, 5 * MSS));
        // Back to Open, then fast retransmit: a real loss, so the undo no longer applies.
        cc.cong_signal(&mut v, CcSignal::NDupAck, &cong(now, 2 * MSS));
        let after_loss = v;
        assert_eq!((v.cwnd, v.ssthresh), (MSS, 2 * MSS));
        cc.cong_signal(&mut v, CcSignal::RtoErr, &cong(now, 2 * MSS));
        assert_eq!(v, after_loss);
    }

    // RFC 6582 §3.2 step 3 option (1): cwnd = min(ssthresh, max(FlightSize, SMSS) + SMSS).
    #[test]
    fn post_recovery_deflates_to_flight_plus_one_segment_or_ssthresh() {
        let now = Instant::now();
        let end = |in_flight| AckInfo {
            recovery: Recovery::Fast,
            in_flight,
            ..ack(now, 10 * MSS)
        };
        let (mut cc, mut v) = fresh();
        v.ssthresh = 20 * MSS;
        v.cwnd = 35 * MSS; // inflated by the transport
        cc.post_recovery(&mut v, &end(5 * MSS));
        assert_eq!(v.cwnd, 6 * MSS);
        v.cwnd = 35 * MSS;
        cc.post_recovery(&mut v, &end(30 * MSS));
        assert_eq!(v.cwnd, 20 * MSS);
        v.cwnd = 35 * MSS;
        cc.post_recovery(&mut v, &end(0));
        assert_eq!(v.cwnd, 2 * MSS);
        // The end of a CWR episode leaves the already-reduced window.
        v.cwnd = 9 * MSS;
        cc.post_recovery(
            &mut v,
            &AckInfo {
                recovery: Recovery::Cwr,
                ..end(0)
            },
        );
        assert_eq!(v.cwnd, 9 * MSS);
    }

    // RFC 5681 §4.1: after an idle period longer than the RTO, cwnd = min(IW, cwnd).
    #[test]
    fn after_idle_restarts_from_the_restart_window() {
        let now = Instant::now();
        let rto = Duration::from_millis(300);
        let idle = |ms| IdleInfo {
            idle: Duration::from_millis(ms),
            rto,
            now,
        };
        let (mut cc, mut v) = fresh();
        v.cwnd = 100 * MSS;
        cc.after_idle(&mut v, &idle(300));
        assert_eq!(v.cwnd, 100 * MSS, "not longer than the RTO");
        cc.after_idle(&mut v, &idle(301));
        assert_eq!(v.cwnd, 10 * MSS);
        v.cwnd = 4 * MSS;
        cc.after_idle(&mut v, &idle(10_000));
        assert_eq!(v.cwnd, 4 * MSS, "RW never opens the window");
    }

    // TCP_CONGESTION semantics: switching keeps cwnd/ssthresh.
    #[test]
    fn switching_to_newreno_keeps_the_window() {
        let mut v = CcVars {
            cwnd: 50 * MSS,
            ssthresh: 30 * MSS,
            maxseg: MSS,
        };
        let cc = crate::switch(&mut v, Factory.build());
        assert_eq!(
            v,
            CcVars {
                cwnd: 50 * MSS,
                ssthresh: 30 * MSS,
                maxseg: MSS
            }
        );
        assert_eq!(cc.name(), "newreno");
        // Broken invariants from a misbehaving predecessor are repaired, nothing more.
        let mut v = CcVars {
            cwnd: 10,
            ssthresh: 10,
            maxseg: MSS,
        };
        let _ = crate::switch(&mut v, Factory.build());
        assert_eq!(
            v,
            CcVars {
                cwnd: MSS,
                ssthresh: 2 * MSS,
                maxseg: MSS
            }
        );
    }

    #[test]
    fn growth_saturates_at_max_cwnd() {
        let (mut cc, mut v) = fresh();
        v.cwnd = window::MAX_CWND - 10;
        cc.ack_received(&mut v, CcSignal::Ack, &ack(Instant::now(), u32::MAX));
        assert_eq!(v.cwnd, window::MAX_CWND);
        v.cwnd = u32::MAX;
        cc.ack_received(&mut v, CcSignal::Ack, &ack(Instant::now(), u32::MAX));
        assert_eq!(v.cwnd, u32::MAX, "kept, neither wrapped nor cut");
    }

    #[test]
    fn private_signals_are_ignored() {
        let (mut cc, mut v) = fresh();
        cc.cong_signal(
            &mut v,
            CcSignal::Private(1),
            &cong(Instant::now(), 10 * MSS),
        );
        assert_eq!(v, CcVars::new(MSS));
    }
}
