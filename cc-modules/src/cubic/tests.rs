//! CUBIC against RFC 9438's closed forms, driven at a fixed simulated RTT.

use super::*;
use std::time::{Duration, Instant};

const MSS: u32 = 1460;

/// A bulk sender at a fixed RTT: each round the window at its start is acknowledged one MSS
/// per ACK, the ACKs spread evenly across the RTT; the sender is always cwnd-limited.
struct Sim {
    cc: Cubic,
    v: CcVars,
    now: Instant,
    rtt: Duration,
    round: u64,
    /// When the current congestion-avoidance stage began: the first ACK after `loss`.
    t_epoch: Option<Instant>,
    /// The next ACK starts a congestion-avoidance stage.
    stage_pending: bool,
}

impl Sim {
    fn new(cc: Cubic, cwnd_segments: u32, rtt_ms: u64) -> Self {
        let mut v = CcVars {
            cwnd: cwnd_segments * MSS,
            ssthresh: CcVars::SSTHRESH_INFINITE,
            maxseg: MSS,
        };
        let mut cc = cc;
        cc.conn_init(&mut v);
        Self {
            cc,
            v,
            now: Instant::now(),
            rtt: Duration::from_millis(rtt_ms),
            round: 0,
            t_epoch: None,
            stage_pending: false,
        }
    }

    fn ack_info(&self, bytes: u32) -> AckInfo {
        AckInfo {
            bytes_acked: bytes,
            in_flight: self.v.cwnd,
            cwnd_limited: true,
            srtt: Some(self.rtt),
            min_rtt: Some(self.rtt),
            round: self.round,
            ..AckInfo::new(self.now)
        }
    }

    fn ack(&mut self, bytes: u32) {
        if self.stage_pending {
            self.t_epoch = Some(self.now);
            self.stage_pending = false;
        }
        let ack = self.ack_info(bytes);
        self.cc.ack_received(&mut self.v, CcSignal::Ack, &ack);
    }

    fn cong(&self, in_flight: u32) -> CongInfo {
        CongInfo {
            in_flight,
            ..CongInfo::new(self.now)
        }
    }

    /// A fast retransmit with `in_flight` outstanding, and the end of its recovery with
    /// plenty still in flight (so cwnd = ssthresh, RFC 6582 option (1)).
    fn loss_with_flight(&mut self, in_flight: u32) {
        let info = self.cong(in_flight);
        self.cc.cong_signal(&mut self.v, CcSignal::NDupAck, &info);
        let end = AckInfo {
            recovery: Recovery::Fast,
            in_flight: u32::MAX / 2,
            ..self.ack_info(MSS)
        };
        self.cc.post_recovery(&mut self.v, &end);
        self.stage_pending = true;
    }

    /// A loss when the whole window is in flight.
    fn loss(&mut self) {
        self.loss_with_flight(self.v.cwnd);
    }

    fn round(&mut self) {
        self.round_stretched(1);
    }

    /// A round whose ACKs each cover `per_ack` segments (a receiver with GRO or SACK
    /// compression acknowledges several at once).
    fn round_stretched(&mut self, per_ack: u32) {
        self.round += 1;
        let mut left = self.v.cwnd;
        let step = self.rtt / left.div_ceil(per_ack * MSS).max(1);
        while left > 0 {
            let bytes = left.min(per_ack * MSS);
            self.now += step;
            self.ack(bytes);
            left -= bytes;
        }
    }

    fn segments(&self) -> f64 {
        f64::from(self.v.cwnd) / f64::from(MSS)
    }

    /// Seconds since the congestion-avoidance stage began.
    fn t(&self) -> f64 {
        (self.now - self.t_epoch.unwrap()).as_secs_f64()
    }

    fn state(&self, key: &str) -> String {
        let state = self.cc.state();
        let (_, value) = state.iter().find(|(k, _)| *k == key).unwrap();
        value.clone()
    }
}

/// RFC 9438 Figure 1 and Figure 2 written out independently of the module's helpers.
fn closed_form(t: f64, w_max: f64, cwnd_epoch: f64) -> f64 {
    let k = ((w_max - cwnd_epoch) / 0.4).cbrt();
    0.4 * (t - k).powi(3) + w_max
}

// RFC 9438 §4.2 (Figure 1), §4.4 (concave), §4.5 (convex): after a loss at W_max, cwnd
// follows W_cubic(t) = C*(t-K)^3 + W_max, K = cbrt(W_max*(1-beta)/C).
#[test]
fn window_follows_w_cubic_after_a_loss_within_one_percent() {
    let w_max = 1000.0;
    let mut s = Sim::new(Cubic::default(), 1000, 100);
    s.loss();
    assert_eq!((s.v.cwnd, s.v.ssthresh), (700 * MSS, 700 * MSS));
    let k = (w_max * (1.0 - 0.7) / 0.4_f64).cbrt();
    let (mut max_dev, mut at) = (0.0_f64, 0.0);
    let (mut concave, mut convex) = (0, 0);
    s.round();
    while s.t() < 2.0 * k {
        s.round();
        let t = s.t();
        let want = closed_form(t, w_max, 700.0);
        let dev = (s.segments() - want).abs() / want;
        if dev > max_dev {
            (max_dev, at) = (dev, t);
        }
        let region = s.state("region");
        if t < k - 0.5 {
            assert_eq!(region, "concave", "t = {t:.2}");
            concave += 1;
        } else if t > k + 0.5 {
            assert_eq!(region, "convex", "t = {t:.2}");
            convex += 1;
        }
    }
    println!(
        "CUBIC vs W_cubic(t), W_max = 1000, RTT 100 ms, K = {k:.3} s: max deviation {:.4}% at t = {at:.2} s over {} rounds",
        max_dev * 100.0,
        s.round
    );
    assert!(max_dev < 0.01, "max deviation {max_dev} at t = {at}");
    assert!(
        concave > 50 && convex > 50,
        "{concave} concave, {convex} convex rounds"
    );
    // The curve went past W_max, by C*K^3 at t = 2K: the convex probe.
    assert!(s.segments() > 1250.0, "{}", s.segments());
}

// RFC 9438 §4.2, Figure 2: K = cubic_root((W_max - cwnd_epoch)/C); with cwnd_epoch =
// beta*W_max after a loss with the window in flight, K = cbrt(W_max*(1-beta)/C).
#[test]
fn k_is_computed_from_w_max_and_cwnd_epoch() {
    // (W_max, FlightSize at the loss, K in seconds computed by hand)
    let cases = [
        (10, 10, 1.957_433_8),
        (100, 100, 4.217_163_3),
        (1000, 1000, 9.085_603_0),
        // Half the window in flight: ssthresh = cwnd_epoch = 35, K = cbrt(65/0.4).
        (100, 50, 5.456_964_4),
    ];
    for (w_max, flight, want) in cases {
        let mut s = Sim::new(Cubic::default(), w_max, 100);
        s.loss_with_flight(flight * MSS);
        assert_eq!(s.cc.k(), None, "the stage starts with its first ACK");
        s.ack(MSS);
        let k = s.cc.k().unwrap();
        assert!(
            (k - want).abs() < 1e-6,
            "W_max {w_max}: K = {k}, want {want}"
        );
        assert_eq!(s.state("k_ms"), format!("{:.1}", want * 1000.0));
        assert_eq!(s.cc.w_max(), f64::from(w_max));
    }
    assert_eq!(k_seconds(100.0, 100.0), 0.0);
    assert_eq!(k_seconds(50.0, 100.0), 0.0);
    assert_eq!(k_seconds(f64::NAN, 1.0), 0.0);
}

// RFC 9438 §4.3: when W_cubic(t) < W_est, cwnd = W_est, which grows by alpha_cubic per RTT
// (W_est += alpha_cubic * segments_acked / cwnd), then by 1 per RTT once W_est >= cwnd_prior.
#[test]
fn reno_friendly_estimate_takes_over_when_larger() {
    // Small W_max and a short RTT: Reno's additive increase beats the cubic curve.
    let mut s = Sim::new(Cubic::default(), 20, 10);
    s.loss();
    assert_eq!(s.v.cwnd, 14 * MSS);
    let rounds_to_prior = 6.0 / ALPHA; // from 14 to cwnd_prior = 20 at alpha_cubic
    for n in 1..=60 {
        s.round();
        let n = f64::from(n);
        let want = if n <= rounds_to_prior {
            14.0 + ALPHA * n
        } else {
            20.0 + (n - rounds_to_prior)
        };
        let got = s.segments();
        assert!(
            (got - want).abs() / want < 0.02,
            "round {n}: {got} segments, want {want}"
        );
        assert_eq!(s.state("region"), "reno-friendly", "round {n}");
        assert!(got > closed_form(s.t(), 20.0, 14.0), "round {n}");
    }
    // The state shows W_est driving cwnd.
    let w_est: f64 = s.state("w_est").parse().unwrap();
    assert!(
        (w_est - s.segments()).abs() < 0.05,
        "{w_est} vs {}",
        s.segments()
    );
}

// RFC 9438 §4.3: "W_est = W_est + alpha_cubic * segments_acked / cwnd": a stretch ACK
// counts every segment it covers, so ACKs of 6 segments each grow the Reno-friendly window
// as fast as one ACK per segment (an ABC-capped credit of 2 segments per ACK grew it a third
// as fast, and CUBIC fell behind Linux's behind a receiver with GRO).
#[test]
fn stretch_acks_grow_the_reno_friendly_window_as_fast() {
    let mut one = Sim::new(Cubic::default(), 20, 1);
    let mut six = Sim::new(Cubic::default(), 20, 1);
    one.loss();
    six.loss();
    for _ in 0..30 {
        one.round();
        six.round_stretched(6);
    }
    let (a, b) = (one.segments(), six.segments());
    assert!(a > 30.0, "{a} segments after 30 rounds");
    assert!(
        (a - b).abs() / a < 0.05,
        "per-segment ACKs {a}, 6 per ACK {b}"
    );
}

// RFC 9438 §4.7: a loss below the previous W_max releases bandwidth: W_max = cwnd*(1+beta)/2.
#[test]
fn fast_convergence_reduces_w_max() {
    let mut s = Sim::new(Cubic::default(), 100, 100);
    s.loss();
    assert_eq!(s.cc.w_max(), 100.0);
    // The window only got back to 80 before the next loss.
    s.v.cwnd = 80 * MSS;
    s.loss();
    assert!((s.cc.w_max() - 68.0).abs() < 1e-9, "{}", s.cc.w_max());
    assert_eq!(s.state("w_max"), "68.00");
    assert_eq!(s.v.ssthresh, 56 * MSS);
    // A loss above the old W_max just records it.
    s.v.cwnd = 120 * MSS;
    s.loss();
    assert_eq!(s.cc.w_max(), 120.0);
}

// RFC 9438 §4.6 via RFC 3168 §6.1.2: one reduction per episode, whether loss or ECN.
#[test]
fn one_reduction_per_loss_episode() {
    let mut s = Sim::new(Cubic::default(), 100, 100);
    let info = s.cong(100 * MSS);
    s.cc.cong_signal(&mut s.v, CcSignal::NDupAck, &info);
    assert_eq!((s.v.cwnd, s.v.ssthresh), (70 * MSS, 70 * MSS));
    let (vars, cc) = (s.v, s.cc.clone());
    for recovery in [Recovery::Fast, Recovery::Cwr, Recovery::Rto] {
        for sig in [CcSignal::NDupAck, CcSignal::Ecn] {
            let info = CongInfo {
                recovery,
                ..s.cong(70 * MSS)
            };
            s.cc.cong_signal(&mut s.v, sig, &info);
            assert_eq!(s.v, vars, "{sig:?} during {recovery:?}");
            assert_eq!(s.cc, cc, "{sig:?} during {recovery:?}");
        }
    }
}

// RFC 9438 §3.5 / §4.6: an ECN-Echo from Open is a congestion event like a loss.
#[test]
fn ecn_reduces_like_a_loss() {
    let mut s = Sim::new(Cubic::default(), 100, 100);
    let info = s.cong(100 * MSS);
    s.cc.cong_signal(&mut s.v, CcSignal::Ecn, &info);
    assert_eq!((s.v.cwnd, s.v.ssthresh), (70 * MSS, 70 * MSS));
    assert_eq!(s.cc.w_max(), 100.0);
    // A signal never opens the window: cwnd below the new ssthresh stays.
    let mut s = Sim::new(Cubic::default(), 1, 100);
    let info = s.cong(10 * MSS);
    s.cc.cong_signal(&mut s.v, CcSignal::Ecn, &info);
    assert_eq!((s.v.cwnd, s.v.ssthresh), (MSS, 7 * MSS));
}

// RFC 9438 §4.8: on a timeout cwnd = 1 MSS (RFC 5681), ssthresh = beta * FlightSize; the
// first congestion-avoidance stage after it has K = 0 and W_max = cwnd_epoch.
#[test]
fn rto_sets_one_segment_and_restarts_the_curve_from_the_stage_start() {
    // A loss first, so there is a W_max (120) the timeout must set aside.
    let mut s = Sim::new(Cubic::default(), 120, 100);
    s.loss();
    s.v.cwnd = 100 * MSS;
    let rto = |s: &Sim, n, flight| CongInfo {
        rto_count: n,
        ..s.cong(flight)
    };
    let info = rto(&s, 1, 100 * MSS);
    s.cc.cong_signal(&mut s.v, CcSignal::Rto, &info);
    assert_eq!((s.v.cwnd, s.v.ssthresh), (MSS, 70 * MSS));
    assert_eq!(s.cc.k(), None);
    // A backed-off expiry holds ssthresh (RFC 5681 §3.1).
    let info = rto(&s, 2, 3 * MSS);
    s.cc.cong_signal(&mut s.v, CcSignal::Rto, &info);
    assert_eq!((s.v.cwnd, s.v.ssthresh), (MSS, 70 * MSS));
    // Slow start back (ABC L = 1 after an RTO), then congestion avoidance.
    while s.v.in_slow_start() {
        let ack = AckInfo {
            recovery: Recovery::Rto,
            ..s.ack_info(4 * MSS)
        };
        s.cc.ack_received(&mut s.v, CcSignal::Ack, &ack);
    }
    assert_eq!(s.v.cwnd, 70 * MSS);
    s.ack(MSS);
    assert_eq!(s.state("k_ms"), "0.0");
    assert_eq!(s.state("origin"), "70.00");
    assert_eq!(s.state("w_est"), format!("{:.2}", 70.0 + 1.0 / 70.0));
    assert_eq!(s.cc.w_max(), 70.0);
}

// RFC 9438 §4.9: a spurious timeout is undone: cwnd, ssthresh, W_max, K and the epoch come
// back exactly as they were before the (first) RTO.
#[test]
fn rto_err_restores_the_pre_rto_state_exactly() {
    let mut s = Sim::new(Cubic::default(), 100, 100);
    s.loss();
    for _ in 0..10 {
        s.round();
    }
    let (vars, cc) = (s.v, s.cc.clone());
    let state = s.cc.state();
    assert_ne!(s.state("k_ms"), "-");
    for n in 1..=2 {
        let info = CongInfo {
            rto_count: n,
            ..s.cong(s.v.cwnd)
        };
        s.cc.cong_signal(&mut s.v, CcSignal::Rto, &info);
    }
    let ack = AckInfo {
        recovery: Recovery::Rto,
        ..s.ack_info(MSS)
    };
    s.cc.ack_received(&mut s.v, CcSignal::Ack, &ack);
    assert_ne!(s.v, vars);
    assert_ne!(s.cc.state(), state);
    let info = s.cong(s.v.cwnd);
    s.cc.cong_signal(&mut s.v, CcSignal::RtoErr, &info);
    assert_eq!(s.v, vars);
    assert_eq!(s.cc, cc);
    assert_eq!(s.cc.state(), state);
    // One undo per RTO run.
    s.cc.cong_signal(&mut s.v, CcSignal::RtoErr, &info);
    assert_eq!((s.v, &s.cc), (vars, &cc));
    // After a real loss there is nothing to undo.
    let info = CongInfo {
        rto_count: 1,
        ..s.cong(s.v.cwnd)
    };
    s.cc.cong_signal(&mut s.v, CcSignal::Rto, &info);
    let info = CongInfo {
        recovery: Recovery::Open,
        ..s.cong(s.v.cwnd)
    };
    s.cc.cong_signal(&mut s.v, CcSignal::NDupAck, &info);
    let after_loss = (s.v, s.cc.clone());
    s.cc.cong_signal(&mut s.v, CcSignal::RtoErr, &info);
    assert_eq!((s.v, s.cc), after_loss);
}

/// Two identical senders in congestion avoidance, one of which is about to pause.
fn twins() -> (Sim, Sim) {
    let mut s = Sim::new(Cubic::default(), 100, 100);
    s.loss();
    for _ in 0..5 {
        s.round();
    }
    let twin = Sim {
        cc: s.cc.clone(),
        v: s.v,
        ..Sim::new(Cubic::default(), 1, 100)
    };
    let twin = Sim {
        now: s.now,
        t_epoch: s.t_epoch,
        ..twin
    };
    (s, twin)
}

// RFC 9438 §5.8: no growth while application-limited; §4.2: "The elapsed time t in Figure 1
// MUST NOT include periods during which cwnd has not been updated due to
// application-limited behavior".
#[test]
fn application_limited_acks_neither_grow_nor_age_the_curve() {
    let (mut paused, mut control) = twins();
    let cwnd = paused.v.cwnd;
    for _ in 0..20 {
        paused.now += Duration::from_millis(100);
        let ack = AckInfo {
            cwnd_limited: false,
            ..paused.ack_info(MSS)
        };
        paused.cc.ack_received(&mut paused.v, CcSignal::Ack, &ack);
    }
    assert_eq!(paused.v.cwnd, cwnd, "no growth while app-limited");
    // Two seconds later the curve resumes where it stopped: the same growth as a sender
    // that never paused (without the shift, t would jump by 2 s).
    paused.ack(MSS);
    control.ack(MSS);
    assert_eq!(paused.v.cwnd, control.v.cwnd);
    assert_eq!(paused.state("t_ms"), control.state("t_ms"));
    let shifted = |s: &Sim| -> u128 { s.state("epoch_start_ms").parse().unwrap() };
    assert_eq!(shifted(&paused), shifted(&control) + 2000);
}

// Linux's bictcp_cwnd_event(CA_EVENT_TX_START): an idle period shifts t_epoch forward; past
// the RTO, RFC 5681 §4.1's restart window applies instead.
#[test]
fn after_idle_shifts_the_epoch_or_restarts() {
    let (mut idle, mut control) = twins();
    idle.now += Duration::from_millis(800);
    let info = IdleInfo {
        idle: Duration::from_millis(800),
        rto: Duration::from_secs(1),
        now: idle.now,
    };
    let cwnd = idle.v.cwnd;
    idle.cc.after_idle(&mut idle.v, &info);
    assert_eq!(idle.v.cwnd, cwnd);
    idle.ack(MSS);
    control.ack(MSS);
    assert_eq!(
        idle.v.cwnd, control.v.cwnd,
        "t does not include the idle time"
    );
    // The shift never moves t_epoch past now.
    let info = IdleInfo {
        idle: Duration::from_secs(3600),
        rto: Duration::MAX,
        now: idle.now,
    };
    idle.cc.after_idle(&mut idle.v, &info);
    assert_eq!(idle.state("t_ms"), "0");
    // Longer than the RTO: cwnd = min(IW, cwnd) and a new stage later.
    let info = IdleInfo {
        idle: Duration::from_secs(2),
        rto: Duration::from_secs(1),
        now: idle.now,
    };
    idle.cc.after_idle(&mut idle.v, &info);
    assert_eq!(idle.v.cwnd, window::initial_window(MSS));
    assert_eq!(idle.state("k_ms"), "-");
}

// RFC 9438 §4.10: leaving slow start without a loss, K = 0 and W_max = cwnd_epoch; with
// cwnd_prior = cwnd_epoch alpha_cubic is 1 from the start, so W_est = 40 + t/RTT leads until
// the convex curve 40 + C*t^3 overtakes it at t = sqrt(1/(C*RTT)) = 5 s.
#[test]
fn congestion_avoidance_without_a_prior_loss_starts_convex() {
    let mut s = Sim::new(Cubic::default(), 10, 100);
    s.v.ssthresh = 40 * MSS;
    s.round();
    s.round();
    assert_eq!(s.v.cwnd, 40 * MSS);
    assert_eq!(s.state("region"), "slow-start");
    s.ack(MSS);
    assert_eq!(s.cc.k(), Some(0.0));
    assert_eq!(s.cc.w_max(), 40.0);
    assert_eq!(s.state("cwnd_prior"), "40.00");
    s.t_epoch = Some(s.now);
    while s.t() < 4.5 {
        s.round();
        assert_eq!(s.state("region"), "reno-friendly", "t = {:.2}", s.t());
    }
    while s.t() < 5.5 {
        s.round();
    }
    for _ in 0..10 {
        s.round();
        assert_eq!(s.state("region"), "convex", "t = {:.2}", s.t());
        let want = closed_form(s.t(), 40.0, 40.0);
        assert!(
            (s.segments() - want).abs() / want < 0.01,
            "t = {:.2}: {} vs {want}",
            s.t(),
            s.segments()
        );
    }
}

#[test]
fn names_state_keys_and_switching() {
    assert_eq!(Cubic::default().name(), "cubic");
    assert_eq!(Cubic::with_hystart().name(), "cubic-hs");
    assert_eq!(Factory.build().name(), "cubic");
    let keys: Vec<_> = Cubic::default()
        .state()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        [
            "w_max",
            "k_ms",
            "epoch_start_ms",
            "t_ms",
            "w_est",
            "origin",
            "cwnd_prior",
            "region",
            "rto_undo"
        ]
    );
    assert!(Cubic::with_hystart()
        .state()
        .iter()
        .any(|(k, _)| *k == "hystart"));
    // TCP_CONGESTION: switching in keeps the window.
    let mut v = CcVars {
        cwnd: 50 * MSS,
        ssthresh: 30 * MSS,
        maxseg: MSS,
    };
    let _ = crate::switch(&mut v, Factory.build());
    assert_eq!((v.cwnd, v.ssthresh), (50 * MSS, 30 * MSS));
}

#[test]
fn extreme_inputs_neither_panic_nor_wrap() {
    let now = Instant::now();
    for maxseg in [1, 536, 65_535] {
        for cwnd in [maxseg, u32::MAX / 2, window::MAX_CWND, u32::MAX] {
            let mut cc = Cubic::with_hystart();
            let mut v = CcVars {
                cwnd,
                ssthresh: 2 * maxseg,
                maxseg,
            };
            cc.conn_init(&mut v);
            for (i, rtt) in [Duration::ZERO, Duration::MAX, Duration::from_millis(1)]
                .into_iter()
                .enumerate()
            {
                // Clocks far apart, and going backwards.
                let at = [now + Duration::from_secs(1 << 30), now, now][i];
                let ack = AckInfo {
                    bytes_acked: u32::MAX,
                    acks: u32::MAX,
                    in_flight: u32::MAX,
                    cwnd_limited: true,
                    srtt: Some(rtt),
                    min_rtt: Some(rtt),
                    round: u64::MAX,
                    ..AckInfo::new(at)
                };
                let before = v.cwnd;
                cc.ack_received(&mut v, CcSignal::Ack, &ack);
                assert!(v.cwnd >= before, "{maxseg} {cwnd} {i}");
                cc.rtt_sample(
                    &mut v,
                    &RttSample {
                        rtt,
                        srtt: rtt,
                        min_rtt: rtt,
                        round: 0,
                        now: at,
                    },
                );
                cc.after_idle(
                    &mut v,
                    &IdleInfo {
                        idle: Duration::MAX,
                        rto: Duration::MAX,
                        now: at,
                    },
                );
                let info = CongInfo {
                    in_flight: u32::MAX,
                    ..CongInfo::new(at)
                };
                cc.cong_signal(&mut v, CcSignal::Ecn, &info);
                assert!(v.cwnd >= maxseg && v.ssthresh >= 2 * maxseg);
                let _ = cc.state();
            }
        }
    }
}
