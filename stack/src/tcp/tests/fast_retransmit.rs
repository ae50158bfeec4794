//! Fast retransmit and NewReno fast recovery (RFC 5681 §3.2, RFC 6582), with the cwnd the
//! congestion-control contract (cc-modules lib.rs, "Fast recovery: who does what") gives.

use super::harness::*;
use xstack_cc::Recovery;

const W: u16 = RCVBUF as u16;
const M: u32 = MSS as u32;

/// Established, nodelay, 11 segments queued: the first 10 (IW) sent, the 11th held by cwnd.
/// Limited transmit (RFC 3042, `TcpConfig::limited_transmit`) is off so these tests see RFC 5681 and
/// RFC 6582 alone.
fn flight_of_ten() -> Conn {
    let cfg = TcpConfig {
        limited_transmit: false,
        ..cfg()
    };
    let mut c = established_cfg(cfg, peer_syn().ack(OUR_ISS + 1));
    c.tcb.set_nodelay(true);
    c.write(&pattern(0, 11 * MSS));
    let out = c.output();
    assert_eq!(out.len(), 10);
    assert_eq!(c.tcb.ccv().cwnd, 10 * M);
    c
}

fn dupack() -> Seg {
    peer_ack(0, 0)
}

// RFC 5681 §3.2: "The fast retransmit algorithm uses the arrival of 3 duplicate ACKs (as
// defined in section 2, without any intervening ACKs which move SND.UNA) as an indication
// that a segment has been lost."
#[test]
fn two_duplicates_do_nothing() {
    let mut c = flight_of_ten();
    send!(c, dupack());
    send!(c, dupack());
    recv_nothing!(c);
    assert_eq!(c.tcb.ccv().cwnd, 10 * M);
    assert_eq!(c.tcb.recovery(), Recovery::Open);
}

// RFC 5681 §2 DUPLICATE ACKNOWLEDGMENT: "(b) the incoming acknowledgment carries no data,
// ... (e) the advertised window in the incoming acknowledgment equals the advertised window
// in the last incoming acknowledgment."
#[test]
fn acks_with_data_or_a_new_window_are_not_duplicates() {
    let mut c = flight_of_ten();
    send!(c, dupack().bytes(0, 10));
    send!(c, peer_ack(10, 0).win(60000));
    send!(c, peer_ack(10, 0).win(60000));
    let out = c.output();
    assert!(out.iter().all(|s| s.payload.is_empty()), "{out:?}");
    assert_eq!(c.tcb.dupacks(), 1);
}

// The whole episode, step by step.
#[test]
fn fast_retransmit_and_newreno_recovery() {
    let mut c = flight_of_ten();
    send!(c, dupack());
    send!(c, dupack());
    send!(c, dupack());
    // RFC 5681 §3.2 step 2: "ssthresh = max (FlightSize / 2, 2*SMSS)" = 7300; step 3: "The
    // lost segment starting at SND.UNA MUST be retransmitted and cwnd set to ssthresh plus
    // 3*SMSS." RFC 6582 §3.2 step 2: "recover" = the highest sequence sent.
    assert_eq!(c.tcb.ccv().ssthresh, 5 * M);
    assert_eq!(c.tcb.ccv().cwnd, 8 * M);
    assert_eq!(c.tcb.recovery(), Recovery::Fast);
    assert_eq!(c.tcb.recover(), OUR_ISS + 1 + 10 * M);
    recv!(c, our_ack(0, 0, W).bytes(0, MSS));
    recv_nothing!(c);
    // Step 4: "For each additional duplicate ACK received (after the third), cwnd MUST be
    // incremented by SMSS." Step 5: send new data when cwnd allows: the 11th segment goes
    // once cwnd exceeds the flight (10 segments) by one.
    for k in 9..=11u32 {
        send!(c, dupack());
        assert_eq!(c.tcb.ccv().cwnd, k * M);
        if k < 11 {
            recv_nothing!(c);
        }
    }
    recv!(c, our_ack(10 * M, 0, W).flags(F::PSH).bytes(10 * MSS, MSS));
    // RFC 6582 §3.2 step 3, partial ACK (segments 1-3 arrived, 4 lost too): "retransmit
    // the first unacknowledged segment ... deflate the congestion window by the amount of
    // new data acknowledged ... If the partial ACK acknowledges at least one SMSS of new
    // data, then add back SMSS bytes".
    c.advance(Duration::from_millis(50));
    send!(c, peer_ack(0, 3 * M));
    assert_eq!(c.tcb.ccv().cwnd, 11 * M - 3 * M + M);
    assert_eq!(c.tcb.recovery(), Recovery::Fast);
    recv!(c, our_ack(3 * M, 0, W).bytes(3 * MSS, MSS));
    recv_nothing!(c);
    // RFC 6298 (5.3): the partial ACK restarted the retransmission timer.
    assert_eq!(c.timer(TimerKind::Rexmt), Some(c.tcb.rto()));
    // Full ACK (covers `recover`): RFC 6582 §3.2 step 3 "Set cwnd to either (1) min
    // (ssthresh, max(FlightSize, SMSS) + SMSS)" -- NewReno's post_recovery; FlightSize is
    // the 11th segment.
    send!(c, peer_ack(0, 10 * M));
    assert_eq!(c.tcb.recovery(), Recovery::Open);
    assert_eq!(c.tcb.ccv().cwnd, 2 * M);
    assert_eq!(c.tcb.ccv().ssthresh, 5 * M);
    recv_nothing!(c);
    assert_eq!(c.tcb.stats().retransmits, 2);
}

// RFC 6582 §3.2 step 1: "If the Cumulative Acknowledgment field didn't cover more than
// recover, check to see if the congestion window is greater than SMSS bytes ... [else] do
// not enter the Fast Retransmit": duplicates for data sent before the last episode began
// start no second episode (one reduction per window).
#[test]
fn no_second_episode_for_the_same_window() {
    let mut c = flight_of_ten();
    for _ in 0..3 {
        send!(c, dupack());
    }
    let _ = c.output();
    // A partial ACK, then an RTO ends fast recovery the hard way ...
    send!(c, peer_ack(0, M));
    let _ = c.output();
    c.fire();
    let _ = c.output();
    let ssthresh = c.tcb.ccv().ssthresh;
    // ... and duplicates of an ACK still below `recover` are not a new episode.
    for _ in 0..3 {
        send!(c, peer_ack(0, M));
    }
    assert_eq!(c.tcb.ccv().ssthresh, ssthresh);
    assert_ne!(c.tcb.recovery(), Recovery::Fast);
}

// Zero-window ACKs are not loss signals: answers to window probes match RFC 5681's
// duplicate definition but must not trigger a retransmission into a closed window.
#[test]
fn zero_window_acks_are_not_duplicates() {
    let mut c = flight_of_ten();
    send!(c, peer_ack(0, 0).win(0));
    for _ in 0..3 {
        send!(c, peer_ack(0, 0).win(0));
    }
    assert_eq!(c.tcb.recovery(), Recovery::Open);
    for s in c.output() {
        assert!(s.payload.len() <= 1, "{s:?}");
    }
}
