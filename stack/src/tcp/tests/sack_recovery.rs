//! SACK-based loss recovery (RFC 6675): entry, NextSeg() order, pipe, the rescue
//! retransmission, exit, and what the congestion-control module sees (cc-modules lib.rs:
//! one `NDupAck` per episode, `post_recovery` at the end, no inflation by the transport).

use super::harness::*;
use xstack_cc::{CcSignal, Recovery};

const W: u16 = RCVBUF as u16;
const M: u32 = MSS as u32;

/// Our sequence number at the start of segment `k`.
fn o(k: u32) -> Seq {
    OUR_ISS + 1 + k * M
}

/// Segment `k` of our stream as we send it.
fn data(k: u32) -> Seg {
    our_ack(k * M, 0, W).bytes(k as usize * MSS, MSS)
}

/// A duplicate ACK from the peer carrying `blocks` (segment numbers, end exclusive).
fn dup(blocks: &[(u32, u32)]) -> Seg {
    blocks
        .iter()
        .fold(peer_ack(0, 0), |s, &(l, r)| s.sack(o(l), o(r)))
}

/// Established with SACK, nodelay, `n` segments queued, the first 10 (IW) sent.
fn sack_flight(n: usize) -> Conn {
    let cfg = TcpConfig {
        sack: true,
        ..cfg()
    };
    let mut c = established_cfg(cfg, peer_syn().ack(OUR_ISS + 1).sack_ok());
    c.tcb.set_nodelay(true);
    c.write(&pattern(0, n * MSS));
    assert_eq!(c.output().len(), 10);
    c
}

// The whole episode with two losses (segments 0 and 2), step by step.
#[test]
fn rfc6675_episode_retransmits_lost_segments_first_then_new_data() {
    let mut c = sack_flight(20);
    let log = c.record_cc();
    // RFC 3042 limited transmit on the first two duplicates (segments 10 and 11).
    send!(c, dup(&[(1, 2)]));
    recv!(c, data(10));
    send!(c, dup(&[(3, 4), (1, 2)]));
    recv!(c, data(11));
    assert_eq!(
        c.tcb.ccv().cwnd,
        10 * M,
        "limited transmit leaves cwnd alone"
    );
    // RFC 6675 §5 (1): "If DupAcks >= DupThresh, go to step (4)". (4.2): "ssthresh =
    // cwnd = (FlightSize / 2)" -- 12 segments in flight. (4.3): "Retransmit the first data
    // segment presumed dropped -- the segment starting with sequence number HighACK + 1".
    send!(c, dup(&[(3, 5), (1, 2)]));
    assert_eq!(c.tcb.recovery(), Recovery::Fast);
    assert_eq!(
        (c.tcb.ccv().ssthresh, c.tcb.ccv().cwnd),
        (6 * M, 6 * M),
        "no +3*SMSS inflation"
    );
    assert_eq!(c.tcb.recover(), o(12), "RecoveryPoint = HighData");
    recv!(c, data(0));
    assert_eq!(
        (c.tcb.sb().high_rxt, c.tcb.sb().rescue_rxt),
        (o(1), Some(o(1)))
    );
    // SetPipe: segment 0 lost but retransmitted (1), segment 2 not yet lost (only 2 SMSS
    // SACKed above it: 1), the tail 5..12 (7): 9 segments > cwnd.
    assert_eq!(c.tcb.pipe(), 9 * M);
    // Further duplicates shrink the pipe; nothing goes until cwnd - pipe >= 1 SMSS.
    send!(c, dup(&[(3, 6), (1, 2)]));
    assert_eq!(
        c.tcb.pipe(),
        7 * M,
        "segment 2 is now lost (3 SMSS SACKed above)"
    );
    recv_nothing!(c);
    send!(c, dup(&[(3, 7), (1, 2)]));
    assert_eq!(c.tcb.pipe(), 6 * M);
    recv_nothing!(c);
    // NextSeg() rule (1): the lowest lost segment above HighRxt -- segment 2, before any
    // new data.
    send!(c, dup(&[(3, 8), (1, 2)]));
    recv!(c, data(2));
    assert_eq!(c.tcb.sb().high_rxt, o(3));
    assert_eq!(c.tcb.pipe(), 6 * M);
    // Rule (2): nothing lost left to resend: new data.
    send!(c, dup(&[(3, 9), (1, 2)]));
    recv!(c, data(12));
    send!(c, dup(&[(3, 10), (1, 2)]));
    recv!(c, data(13));
    // A partial ACK (the retransmitted segment 0 arrived): RFC 6675 neither retransmits
    // for it nor deflates; cwnd stays at ssthresh. Pipe: segment 2 (retransmitted) and
    // 10..14 minus nothing SACKed there = 5, so one more new segment fits.
    send!(c, peer_ack(0, 2 * M).sack(o(3), o(10)));
    assert_eq!(c.tcb.recovery(), Recovery::Fast);
    assert_eq!(c.tcb.ccv().cwnd, 6 * M);
    assert_eq!(c.tcb.pipe(), 5 * M);
    recv!(c, data(14));
    // RFC 6675 §5 (A): "An incoming cumulative ACK for a sequence number greater than
    // RecoveryPoint signals the end of loss recovery".
    send!(c, peer_ack(0, 12 * M));
    assert_eq!(c.tcb.recovery(), Recovery::Open);
    // One reduction per episode: NDupAck once, then post_recovery (RFC 6582 option (1):
    // min(ssthresh, FlightSize + SMSS) with segments 12..15 still out).
    assert_eq!(
        *log.lock().unwrap(),
        vec![CcEvent::Signal(CcSignal::NDupAck), CcEvent::PostRecovery]
    );
    assert_eq!(c.tcb.ccv().ssthresh, 6 * M);
    assert_eq!(c.tcb.ccv().cwnd, 4 * M);
    assert_eq!(
        c.tcb.stats().retransmits,
        2,
        "only the two lost segments were resent"
    );
    assert_eq!(c.tcb.stats().fast_recoveries, 1);
}

// RFC 6675 §5 (2): "If DupAcks < DupThresh but IsLost (HighACK + 1) returns true --
// indicating at least three segments have arrived above the current cumulative
// acknowledgment point, which is taken to indicate loss -- go to step (4)." (Here the
// ACKs for segments 1 and 2 were lost: the first duplicate already SACKs three.)
#[test]
fn one_duplicate_sacking_three_segments_enters_recovery() {
    let mut c = sack_flight(10);
    send!(c, dup(&[(1, 4)]));
    assert_eq!(c.tcb.dupacks(), 1);
    assert_eq!(c.tcb.recovery(), Recovery::Fast);
    recv!(c, data(0));
}

// RFC 6675 §4 NextSeg() rule (3) and rule (4), the rescue retransmission: "we provide the
// opportunity for a single "rescue" retransmission per entry into loss recovery. If
// HighACK is greater than RescueRxt (or RescueRxt is undefined), then one segment of up to
// SMSS octets that MUST include the highest outstanding unSACKed sequence number SHOULD be
// returned".
#[test]
fn rule_three_then_a_single_rescue_retransmission() {
    let mut c = sack_flight(10);
    // Segments 0 and 9 lost; 1..8 SACKed one by one (3 duplicates, then more).
    send!(c, dup(&[(1, 2)]));
    send!(c, dup(&[(1, 3)]));
    send!(c, dup(&[(1, 4)]));
    recv!(c, data(0));
    for k in 5..=9 {
        send!(c, dup(&[(1, k)]));
    }
    // Nothing lost but segment 0 (already resent); no new data; segment 9 lies above the
    // highest SACK, so rule (3) does not apply to it: nothing yet (RescueRxt = segment 0).
    recv_nothing!(c);
    // The retransmission of 0 arrives: HighACK passes RescueRxt, and the tail segment
    // goes out as the rescue retransmission -- once.
    send!(c, peer_ack(0, 9 * M));
    assert_eq!(c.tcb.recovery(), Recovery::Fast);
    recv!(c, data(9).flags(F::PSH));
    assert_eq!(c.tcb.sb().rescue_rxt, Some(o(10)));
    assert_eq!(
        c.tcb.sb().high_rxt,
        o(9),
        "rule (4): HighRxt MUST NOT be updated"
    );
    send!(c, peer_ack(0, 9 * M));
    recv_nothing!(c);
    send!(c, peer_ack(0, 10 * M));
    assert_eq!(c.tcb.recovery(), Recovery::Open);
}

// RFC 6675 §5: "a new recovery phase (as described in Section 5) MUST NOT be initiated
// until HighACK is greater than or equal to the new value of RecoveryPoint" -- and
// duplicates during recovery never reduce again.
#[test]
fn no_second_reduction_within_an_episode() {
    let mut c = sack_flight(10);
    let log = c.record_cc();
    for k in 2..=9 {
        send!(c, dup(&[(1, k)]));
    }
    let _ = c.output();
    let ssthresh = c.tcb.ccv().ssthresh;
    send!(c, peer_ack(0, 3 * M).sack(o(4), o(9)));
    for _ in 0..5 {
        send!(c, peer_ack(0, 3 * M).sack(o(4), o(9)));
    }
    assert_eq!(c.tcb.ccv().ssthresh, ssthresh);
    let signals = log
        .lock()
        .unwrap()
        .iter()
        .filter(|e| **e == CcEvent::Signal(CcSignal::NDupAck))
        .count();
    assert_eq!(signals, 1);
}

// After an RTO the scoreboard survives the first expiry: go-back-N skips SACKed data
// (see timer.rs for the RFC 2018 §8 trade-off), and RFC 6675 §5.1's "RecoveryPoint MUST
// be set to HighData".
#[test]
fn go_back_n_after_rto_skips_sacked_segments() {
    let mut c = sack_flight(10);
    send!(c, dup(&[(1, 2)]));
    send!(c, dup(&[(3, 4), (1, 2)]));
    let _ = c.output();
    // No third duplicate (and only 2 SMSS SACKed: IsLost is false): the RTO fires.
    c.fire();
    assert_eq!(c.tcb.recovery(), Recovery::Rto);
    assert_eq!(c.tcb.recover(), o(10));
    recv!(c, data(0));
    // Segments 0 and 1 now acknowledged: the next retransmissions are 2, then 4 (3
    // skipped, and not counted against cwnd = 2 after one ACK of slow start).
    send!(c, peer_ack(0, 2 * M).sack(o(3), o(4)));
    recv!(c, [data(2), data(4)]);
    assert_eq!(c.tcb.stats().retransmits, 3);
}

/// Segments 0..10 sent, 0 lost; the duplicates SACK 1..8 (entry at the third, with the
/// retransmission of 0 while `snd_max` is segment 12), then new data 12..16 as the pipe
/// drains, while the duplicates SACK up to segment 11: everything sent before the
/// retransmission.
fn retransmitted_zero_then_new_data() -> (Conn, std::sync::Arc<std::sync::Mutex<Vec<CcEvent>>>) {
    let mut c = sack_flight(40);
    let log = c.record_cc();
    send!(c, dup(&[(1, 2)]));
    recv!(c, data(10));
    send!(c, dup(&[(1, 3)]));
    recv!(c, data(11));
    send!(c, dup(&[(1, 4)]));
    recv!(c, data(0));
    assert_eq!(c.tcb.ccv().cwnd, 6 * M);
    for k in 5..=7 {
        send!(c, dup(&[(1, k)]));
        recv_nothing!(c);
    }
    // Pipe: the retransmission of 0 and segments 8..12.
    for k in 8..=12 {
        send!(c, dup(&[(1, k)]));
        recv!(c, data(k + 4));
    }
    assert_eq!(
        c.tcb.stats().lost_rexmits,
        0,
        "nothing sent after it is SACKed"
    );
    (c, log)
}

// Lost-retransmission detection (sack.rs; Linux's tcp_mark_lost_retrans, RFC 8985 §6's
// idea): segments 12.. were first sent after the retransmission of 0; once DupThresh of
// them are SACKed (RFC 6675's reordering allowance) and 0 is still a hole, that
// retransmission was lost. It is sent again at once -- before new data, with no RTO and
// no second reduction -- and only once: the new copy needs new evidence (data sent after
// *it*).
#[test]
fn lost_retransmission_is_detected_by_a_later_sack_and_resent() {
    let (mut c, log) = retransmitted_zero_then_new_data();
    let ssthresh = c.tcb.ccv().ssthresh;
    // Segments 12 and 13 arrive: reordering is still possible.
    send!(c, dup(&[(1, 13)]));
    recv!(c, data(17));
    send!(c, dup(&[(1, 14)]));
    recv!(c, data(18));
    assert_eq!(c.tcb.stats().lost_rexmits, 0);
    // Segment 14 too: three segments sent after the retransmission overtook it.
    send!(c, dup(&[(1, 15)]));
    assert_eq!(c.tcb.stats().lost_rexmits, 1);
    // Pipe: segments 15..19 only (the lost retransmission left the network), so with
    // cwnd 6 two segments go: 0 again, then new data.
    recv!(c, [data(0), data(19)]);
    assert_eq!(c.tcb.stats().rtos, 0);
    assert_eq!(c.tcb.recovery(), Recovery::Fast);
    assert_eq!((c.tcb.ccv().ssthresh, c.tcb.ccv().cwnd), (ssthresh, 6 * M));
    // Later SACKs of data sent before the second copy (15..19) prove nothing about it.
    for k in 16..=19 {
        send!(c, dup(&[(1, k)]));
        recv!(c, data(k + 4));
    }
    assert_eq!(c.tcb.stats().lost_rexmits, 1);
    assert_eq!(c.tcb.stats().retransmits, 2);
    // The second copy arrives: the episode ends (RecoveryPoint was segment 12).
    send!(c, peer_ack(0, 19 * M));
    assert_eq!(c.tcb.recovery(), Recovery::Open);
    assert_eq!(
        *log.lock().unwrap(),
        vec![CcEvent::Signal(CcSignal::NDupAck), CcEvent::PostRecovery],
        "one reduction for the episode"
    );
}

// The same episode, but the retransmission of 0 arrives before segment 12: the ACK
// that SACKs 12 acknowledges 0 too, and nothing is resent.
#[test]
fn delivered_retransmission_is_not_resent() {
    let (mut c, _log) = retransmitted_zero_then_new_data();
    send!(c, peer_ack(0, 12 * M).sack(o(13), o(14)));
    assert_eq!(c.tcb.stats().lost_rexmits, 0);
    let out = c.output();
    assert!(out.iter().all(|s| s.seq >= o(17)), "only new data: {out:?}");
    assert_eq!(c.tcb.stats().retransmits, 1);
}

// Two holes retransmitted; the SACK that passes their mark also covers one of them: only
// the other one is lost again.
#[test]
fn only_the_undelivered_retransmission_is_resent() {
    let mut c = sack_flight(40);
    // Segments 0 and 2 lost; 1 and 3..9 SACKed.
    send!(c, dup(&[(1, 2)]));
    recv!(c, data(10));
    send!(c, dup(&[(3, 4), (1, 2)]));
    recv!(c, data(11));
    send!(c, dup(&[(3, 5), (1, 2)]));
    recv!(c, data(0));
    send!(c, dup(&[(3, 6), (1, 2)]));
    recv_nothing!(c);
    send!(c, dup(&[(3, 7), (1, 2)]));
    recv_nothing!(c);
    send!(c, dup(&[(3, 8), (1, 2)]));
    recv!(c, data(2));
    send!(c, dup(&[(3, 9), (1, 2)]));
    recv!(c, data(12));
    send!(c, dup(&[(3, 10), (1, 2)]));
    recv!(c, data(13));
    // The retransmission of 2 arrives, then segment 12: the retransmission of 0 (sent
    // while snd_max was segment 12) is lost, the one of 2 is not.
    send!(c, dup(&[(1, 11)]));
    recv!(c, [data(14), data(15)]);
    send!(c, dup(&[(1, 13)]));
    recv!(c, [data(16), data(17)]);
    assert_eq!(
        c.tcb.stats().lost_rexmits,
        0,
        "only 12 SACKed of what followed"
    );
    send!(c, dup(&[(1, 14)]));
    recv!(c, data(18));
    assert_eq!(c.tcb.stats().lost_rexmits, 0, "only 12, 13");
    send!(c, dup(&[(1, 15)]));
    assert_eq!(c.tcb.stats().lost_rexmits, 1);
    let out = c.output();
    assert_eq!(out.first(), Some(&data(0)), "{out:?}");
    assert!(out[1..].iter().all(|s| s.seq >= o(19)), "{out:?}");
    assert_eq!(c.tcb.stats().retransmits, 3, "0, 2, and 0 again");
    assert_eq!(c.tcb.stats().rtos, 0);
}

// Plain RFC 6675 (detection off): the lost retransmission waits for the RTO.
#[test]
fn without_detection_a_lost_retransmission_waits_for_the_rto() {
    let cfg = TcpConfig {
        sack: true,
        lost_retransmit: false,
        ..cfg()
    };
    let mut c = established_cfg(cfg, peer_syn().ack(OUR_ISS + 1).sack_ok());
    c.tcb.set_nodelay(true);
    c.write(&pattern(0, 40 * MSS));
    assert_eq!(c.output().len(), 10);
    send!(c, dup(&[(1, 2)]));
    send!(c, dup(&[(1, 3)]));
    send!(c, dup(&[(1, 4)]));
    let _ = c.output();
    for k in 5..=13 {
        send!(c, dup(&[(1, k)]));
    }
    let out = c.output();
    assert!(out.iter().all(|s| s.seq != o(0)), "{out:?}");
    c.fire();
    assert_eq!(c.tcb.stats().rtos, 1);
    assert_eq!(c.tcb.stats().lost_rexmits, 0);
}

// PRR (RFC 6937) is the transport's window for a module that leaves recovery to it; BBR
// bounds its window in recovery itself (draft-ietf-ccwg-bbr §4.6.4.4: its model, cwnd
// saved on entry), as Linux skips PRR for a module with its own `cong_control`. With PRR
// over it, every ACK of an episode set BBR's cwnd to the pipe plus PRR's share, the
// sender stopped after the fast retransmit, and one lost ACK meant an RTO (the bench's
// routed path at 1% loss: 1-7 RTOs of 200 ms per 300 MB).
#[test]
fn prr_does_not_shrink_the_window_of_a_module_that_owns_recovery() {
    for bbr in [false, true] {
        let cfg = TcpConfig {
            sack: true,
            prr: true,
            rack: true,
            ..cfg()
        };
        let mut c = established_cfg(cfg, peer_syn().ack(OUR_ISS + 1).sack_ok());
        c.tcb.set_nodelay(true);
        c.write(&pattern(0, 20 * MSS));
        assert_eq!(c.output().len(), 10);
        if bbr {
            c.tcb.set_congestion(Box::new(xstack_cc::Bbr::default()));
        }
        // Segment 0 lost; 1..4 SACKed: recovery, and the fast retransmit.
        send!(c, dup(&[(1, 2)]));
        send!(c, dup(&[(1, 3)]));
        send!(c, dup(&[(1, 4)]));
        assert_eq!(c.tcb.recovery(), Recovery::Fast, "bbr {bbr}");
        let _ = c.output();
        send!(c, dup(&[(1, 5)]));
        let cwnd = c.tcb.ccv().cwnd;
        if bbr {
            assert_eq!(c.tcb.prr(), None);
            // Not cut: at least what was in flight when recovery began.
            assert!(cwnd >= 10 * M, "bbr cwnd {cwnd}");
        } else {
            assert!(c.tcb.prr().is_some());
            assert!(cwnd < 10 * M, "newreno cwnd {cwnd}");
        }
    }
}
