//! Explicit Congestion Notification (RFC 3168 §6.1): the SYN/SYN-ACK negotiation both
//! ways, ECT(0) only on new data, the receiver's ECE echo until CWR, and the sender's
//! once-per-window reaction with CWR on the next new data segment.

use super::harness::*;
use xstack_cc::{CcSignal, Recovery};

const W: u16 = RCVBUF as u16;
const M: u32 = MSS as u32;

/// Our advertised window with `unread` bytes received and not yet read.
fn win(unread: u32) -> u16 {
    (RCVBUF as u32 - unread) as u16
}

/// The default test configuration with ECN on.
fn ecn_cfg() -> TcpConfig {
    TcpConfig { ecn: true, ..cfg() }
}

/// An ECN-setup SYN (RFC 3168 §6.1.1: "a SYN packet with the ECE and CWR flags set").
fn ecn_syn(s: Seg) -> Seg {
    s.flags(F::ECE | F::CWR)
}

/// ESTABLISHED (active open, 10 ms handshake) with ECN negotiated, limited transmit off
/// and Nagle off, so windows and segments are plain numbers.
fn ecn_established() -> Conn {
    let cfg = TcpConfig {
        limited_transmit: false,
        ..ecn_cfg()
    };
    let mut c = syn_sent_with(cfg);
    c.advance(Duration::from_millis(10));
    send!(c, peer_syn().ack(OUR_ISS + 1).flags(F::ECE));
    recv!(c, our_ack(0, 0, W));
    assert!(c.tcb.ecn(), "ECN negotiated");
    c.tcb.set_nodelay(true);
    c
}

/// [`ecn_established`] with 20 segments queued and the first 10 (IW) sent ECT(0).
fn ecn_flight_of_ten() -> Conn {
    let mut c = ecn_established();
    c.write(&pattern(0, 20 * MSS));
    let out = c.output();
    assert_eq!(out.len(), 10);
    assert!(out.iter().all(|s| s.ecn == Ecn::Ect0), "{out:?}");
    c
}

// ------------------------------------------------------------------ negotiation

// RFC 3168 §6.1.1: "Before a TCP connection can use ECN, Host A sends an ECN-setup SYN
// packet"; "A host MUST NOT set ECT on SYN or SYN-ACK packets."
#[test]
fn active_open_sends_an_ecn_setup_syn_not_ect() {
    let mut c = Conn::connect(ecn_cfg());
    recv!(c, ecn_syn(our_syn()));
}

// "An 'ECN-setup SYN-ACK packet' is a SYN-ACK packet with the ECE flag set but the CWR
// flag not set": ECN is on; the handshake's ACK carries neither flag.
#[test]
fn ecn_setup_syn_ack_turns_ecn_on() {
    let mut c = Conn::connect(ecn_cfg());
    let _ = c.output();
    send!(c, peer_syn().ack(OUR_ISS + 1).flags(F::ECE));
    recv!(c, our_ack(0, 0, W));
    assert!(c.tcb.ecn());
    assert!(c.tcb.info().ecn);
    c.write(&pattern(0, 100));
    recv!(
        c,
        our_ack(0, 0, W)
            .flags(F::PSH)
            .bytes(0, 100)
            .ip_ecn(Ecn::Ect0)
    );
}

// A peer without ECN answers a plain SYN-ACK: no ECT on our data.
#[test]
fn plain_syn_ack_leaves_ecn_off() {
    let mut c = Conn::connect(ecn_cfg());
    let _ = c.output();
    send!(c, peer_syn().ack(OUR_ISS + 1));
    recv!(c, our_ack(0, 0, W));
    assert!(!c.tcb.ecn());
    c.write(&pattern(0, 100));
    recv!(c, our_ack(0, 0, W).flags(F::PSH).bytes(0, 100));
}

// RFC 3168 §6.1.1: a SYN-ACK with both ECE and CWR is not an ECN-setup SYN-ACK (what a
// middlebox that reflects the flags would send).
#[test]
fn syn_ack_with_ece_and_cwr_is_not_ecn_setup() {
    let mut c = Conn::connect(ecn_cfg());
    let _ = c.output();
    send!(c, peer_syn().ack(OUR_ISS + 1).flags(F::ECE | F::CWR));
    assert!(!c.tcb.ecn());
}

// ECN off (the default): a plain SYN, and an ECE on the SYN-ACK changes nothing.
#[test]
fn disabled_sends_a_plain_syn_and_ignores_ece() {
    let mut c = Conn::connect(cfg());
    recv!(c, our_syn());
    send!(c, peer_syn().ack(OUR_ISS + 1).flags(F::ECE));
    recv!(c, our_ack(0, 0, W));
    assert!(!c.tcb.ecn());
}

// RFC 3168 §6.1.1.1: "A host that receives no reply to an ECN-setup SYN within the normal
// SYN retransmission timeout interval MAY resend the SYN and any subsequent SYN
// retransmissions with CWR and ECE cleared"; §6.1.1: having sent a non-ECN-setup SYN, the
// host must not use ECN, whatever the SYN-ACK says.
#[test]
fn retransmitted_syn_falls_back_to_no_ecn() {
    let mut c = Conn::connect(ecn_cfg());
    recv!(c, ecn_syn(our_syn()));
    c.fire();
    recv!(c, our_syn());
    send!(c, peer_syn().ack(OUR_ISS + 1).flags(F::ECE));
    assert_eq!(c.state(), State::Established);
    assert!(!c.tcb.ecn());
}

// Simultaneous open: both SYNs are ECN-setup SYNs; our SYN,ACK then is an ECN-setup
// SYN-ACK.
#[test]
fn simultaneous_open_negotiates_on_the_peers_syn() {
    let mut c = Conn::connect(ecn_cfg());
    let _ = c.output();
    send!(c, ecn_syn(peer_syn()));
    assert!(c.tcb.ecn());
    recv!(c, our_syn().ack(PEER_ISS + 1).flags(F::ECE));
}

// RFC 3168 §6.1.1: "If a host has received an ECN-setup SYN packet, then it MAY send an
// ECN-setup SYN-ACK packet."
#[test]
fn passive_answers_an_ecn_setup_syn_with_ece() {
    let mut c = Conn::accept(ecn_cfg(), ecn_syn(peer_syn()));
    recv!(c, our_syn().ack(PEER_ISS + 1).flags(F::ECE));
    send!(c, peer_ack(0, 0) => InputOutcome::Established);
    assert!(c.tcb.ecn());
    c.write(&pattern(0, 10));
    recv!(
        c,
        our_ack(0, 0, W)
            .flags(F::PSH)
            .bytes(0, 10)
            .ip_ecn(Ecn::Ect0)
    );
}

// "Otherwise, it MUST NOT send an ECN-setup SYN-ACK packet": with ECN off, a plain
// SYN-ACK to an ECN-setup SYN.
#[test]
fn passive_with_ecn_off_answers_a_plain_syn_ack() {
    let mut c = Conn::accept(cfg(), ecn_syn(peer_syn()));
    recv!(c, our_syn().ack(PEER_ISS + 1));
    send!(c, peer_ack(0, 0) => InputOutcome::Established);
    assert!(!c.tcb.ecn());
}

// The peer's SYN is retransmitted without ECE and CWR (our SYN,ACK was lost and it fell
// back, RFC 3168 §6.1.1.1): it will not echo CE, so we answer plainly and drop ECN.
#[test]
fn passive_follows_a_peer_that_fell_back() {
    let mut c = Conn::accept(ecn_cfg(), ecn_syn(peer_syn()));
    recv!(c, our_syn().ack(PEER_ISS + 1).flags(F::ECE));
    send!(c, peer_syn());
    recv!(c, our_syn().ack(PEER_ISS + 1));
    send!(c, peer_ack(0, 0) => InputOutcome::Established);
    assert!(!c.tcb.ecn());
}

// A plain SYN, or one with only ECE, is not an ECN-setup SYN.
#[test]
fn passive_answers_a_non_ecn_setup_syn_plainly() {
    for syn in [
        peer_syn(),
        peer_syn().flags(F::ECE),
        peer_syn().flags(F::CWR),
    ] {
        let mut c = Conn::accept(ecn_cfg(), syn.clone());
        recv!(c, our_syn().ack(PEER_ISS + 1));
        assert!(!c.tcb.ecn(), "{syn:?}");
    }
}

// ------------------------------------------------------------------ ECT on data only

// RFC 3168 §6.1.4 (pure ACKs Not-ECT), §6.1.5 ("MUST NOT set either ECT codepoint ... for
// retransmitted data packets"), §6.1.6 (window probes Not-ECT).
#[test]
fn ect_only_on_new_data() {
    let mut c = ecn_established();
    // A pure ACK for the peer's data.
    send!(c, peer_ack(0, 0).flags(F::PSH).bytes(0, 2 * MSS));
    recv!(c, our_ack(0, 2 * M, win(2 * M)));
    assert_eq!(c.read_all().len(), 2 * MSS);
    // New data: ECT(0).
    c.write(&pattern(0, MSS));
    recv!(
        c,
        our_ack(0, 2 * M, W)
            .flags(F::PSH)
            .bytes(0, MSS)
            .ip_ecn(Ecn::Ect0)
    );
    // Its retransmission: Not-ECT.
    c.fire();
    recv!(c, our_ack(0, 2 * M, W).flags(F::PSH).bytes(0, MSS));
    send!(c, peer_ack(2 * M, M).win(0));
    assert_eq!(c.tcb.stats().ecn.ect_sent, 1);
    // A zero-window probe: Not-ECT.
    c.write(&pattern(MSS, 10));
    recv_nothing!(c);
    c.fire();
    recv!(c, our_ack(M, 2 * M, W).bytes(MSS, 1));
    // The rest of the data: ECT(0), and CWR, since the RTO reduced the window (RFC
    // 3168 §6.1.2; as Linux, any reduction queues CWR, and probes do not carry it).
    send!(c, peer_ack(2 * M, M + 1));
    recv!(
        c,
        our_ack(M + 1, 2 * M, W)
            .flags(F::PSH | F::CWR)
            .bytes(MSS + 1, 9)
            .ip_ecn(Ecn::Ect0)
    );
    // A FIN without data: Not-ECT.
    send!(c, peer_ack(2 * M, M + 10));
    c.tcb.close(c.now);
    recv!(c, our_ack(M + 10, 2 * M, W).flags(F::FIN));
}

// ------------------------------------------------------------------ receiver: ECE until CWR

// RFC 3168 §6.1.3: "When TCP receives a CE data packet at the destination end-system, the
// TCP data receiver sets the ECN-Echo flag in the TCP header of the subsequent ACK
// packet"; "continues to set the ECN-Echo flag in all the ACK packets it sends (whether
// they acknowledge CE data packets or non-CE data packets) until it receives a CWR
// packet"; "If another CE packet is received by the data receiver, the receiver would once
// again send ACK packets with the ECN-Echo flag set."
#[test]
fn ce_is_echoed_on_every_ack_until_cwr() {
    let mut c = ecn_established();
    let data = |k: u32| {
        peer_ack(k * M, 0)
            .bytes(k as usize * MSS, MSS)
            .ip_ecn(Ecn::Ect0)
    };
    // One unmarked segment: delayed ACK as usual.
    send!(c, data(0));
    recv_nothing!(c);
    // A CE mark: an immediate ACK with ECE (our choice: the first mark is not delayed).
    send!(c, data(1).ip_ecn(Ecn::Ce));
    recv!(c, our_ack(0, 2 * M, win(2 * M)).flags(F::ECE));
    // Unmarked data: still ECE, on the normal ACK schedule (every second segment).
    send!(c, data(2));
    recv_nothing!(c);
    send!(c, data(3));
    recv!(c, our_ack(0, 4 * M, win(4 * M)).flags(F::ECE));
    // Our data segments carry it too.
    c.write(&pattern(0, 100));
    recv!(
        c,
        our_ack(0, 4 * M, win(4 * M))
            .flags(F::PSH | F::ECE)
            .bytes(0, 100)
            .ip_ecn(Ecn::Ect0)
    );
    // The peer's CWR ends the echo.
    send!(c, data(4).ack(OUR_ISS + 101).flags(F::CWR));
    send!(c, data(5).ack(OUR_ISS + 101));
    recv!(c, our_ack(100, 6 * M, win(6 * M)));
    // A new mark starts it again.
    send!(c, data(6).ack(OUR_ISS + 101).ip_ecn(Ecn::Ce));
    recv!(c, our_ack(100, 7 * M, win(7 * M)).flags(F::ECE));
    let s = c.tcb.stats().ecn;
    assert_eq!((s.ce_received, s.cwr_received, s.ece_sent), (2, 1, 4));
}

// A CE mark on a segment outside the window is ignored (RFC 3168 §6.1.5: "the TCP data
// receiver SHOULD ignore the ECN field on arriving data packets that are outside of the
// receiver's current window").
#[test]
fn ce_on_an_old_segment_is_ignored() {
    let mut c = ecn_established();
    send!(c, peer_ack(0, 0).bytes(0, 2 * MSS));
    recv!(c, our_ack(0, 2 * M, win(2 * M)));
    send!(c, peer_ack(0, 0).bytes(0, MSS).ip_ecn(Ecn::Ce));
    recv!(c, our_ack(0, 2 * M, win(2 * M)));
    assert_eq!(c.tcb.stats().ecn.ce_received, 0);
}

// Without ECN, CE means nothing to TCP (a non-ECN sender never sends ECT).
#[test]
fn ce_without_ecn_is_not_echoed() {
    let mut c = established();
    send!(c, peer_ack(0, 0).bytes(0, MSS).ip_ecn(Ecn::Ce));
    recv_nothing!(c);
    c.fire();
    recv!(c, our_ack(0, M, win(M)));
}

// ------------------------------------------------------------------ sender: once per window

// RFC 3168 §6.1.2: "the TCP sender's congestion window should be reduced only once in
// response to a series of dropped and/or CE packets from a single window of data"; "The
// TCP sender sets the CWR flag in the TCP header of the first new data packet sent after
// the window reduction".
#[test]
fn ece_reduces_once_per_window_and_cwr_goes_on_the_next_new_data() {
    let mut c = ecn_flight_of_ten();
    let log = c.record_cc();
    let recover = OUR_ISS + 1 + 10 * M;
    // The first ECE ACK: NewReno halves (ssthresh = FlightSize / 2 = 5 segments, cwnd =
    // ssthresh); the transport enters CWR until the window sent so far is acknowledged.
    send!(c, peer_ack(0, M).flags(F::ECE));
    assert_eq!((c.tcb.ccv().cwnd, c.tcb.ccv().ssthresh), (5 * M, 5 * M));
    assert_eq!(c.tcb.recovery(), Recovery::Cwr);
    assert_eq!(c.tcb.recover(), recover);
    recv_nothing!(c); // 9 segments in flight, cwnd 5
                      // More ECE ACKs from the same window: no further reduction (nor growth).
    for k in 2..=5 {
        send!(c, peer_ack(0, k * M).flags(F::ECE));
        assert_eq!((c.tcb.ccv().cwnd, c.tcb.ccv().ssthresh), (5 * M, 5 * M));
    }
    // Flight 5 segments = cwnd; one more ACK opens room for one new segment: CWR on it,
    // and ECT(0).
    send!(c, peer_ack(0, 6 * M).flags(F::ECE));
    recv!(
        c,
        our_ack(10 * M, 0, W)
            .flags(F::CWR)
            .bytes(10 * MSS, MSS)
            .ip_ecn(Ecn::Ect0)
    );
    // CWR only once.
    send!(c, peer_ack(0, 7 * M).flags(F::ECE));
    recv!(
        c,
        our_ack(11 * M, 0, W).bytes(11 * MSS, MSS).ip_ecn(Ecn::Ect0)
    );
    // The ACK that covers `recover` ends the episode (post_recovery, no reduction).
    send!(c, peer_ack(0, 10 * M));
    assert_eq!(c.tcb.recovery(), Recovery::Open);
    let _ = c.output();
    // An ECE for the next window reduces again.
    let flight = c.tcb.in_flight();
    send!(c, peer_ack(0, 11 * M).flags(F::ECE));
    assert_eq!(c.tcb.recovery(), Recovery::Cwr);
    assert_eq!(c.tcb.ccv().ssthresh, (flight / 2).max(2 * M));
    let s = c.tcb.stats().ecn;
    assert_eq!((s.ece_received, s.reductions, s.cwr_sent), (8, 2, 1));
    // Every ECE ACK reached the module (the contract), which reduced only from Open.
    let ecn_signals = log
        .lock()
        .unwrap()
        .iter()
        .filter(|e| **e == CcEvent::Signal(CcSignal::Ecn))
        .count();
    assert_eq!(ecn_signals, 8);
    assert_eq!(c.tcb.stats().retransmits, 0);
}

// No retransmission follows an ECE (the data arrived; only the window shrinks), and CWR
// never goes on a retransmission.
#[test]
fn cwr_is_not_put_on_a_retransmission() {
    let mut c = ecn_flight_of_ten();
    send!(c, peer_ack(0, 0).flags(F::ECE));
    assert_eq!(c.tcb.recovery(), Recovery::Cwr);
    recv_nothing!(c);
    assert_eq!(c.tcb.stats().ecn.ece_received, 1);
    // The RTO fires: the retransmission of the first segment has no CWR.
    c.fire();
    let out = c.output();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].seq, OUR_ISS + 1);
    assert!(!out[0].flags.contains(F::CWR), "{out:?}");
    assert_eq!(out[0].ecn, Ecn::NotEct);
}

// In fast recovery the window was already cut for this window of data: an ECE changes
// nothing (the module sees `recovery: Fast`). The reduction for the loss queued CWR.
#[test]
fn ece_in_fast_recovery_is_no_second_reduction() {
    let mut c = ecn_flight_of_ten();
    for _ in 0..3 {
        send!(c, peer_ack(0, 0));
    }
    assert_eq!(c.tcb.recovery(), Recovery::Fast);
    let (cwnd, ssthresh) = (c.tcb.ccv().cwnd, c.tcb.ccv().ssthresh);
    recv!(c, our_ack(0, 0, W).bytes(0, MSS));
    send!(c, peer_ack(0, 0).flags(F::ECE));
    assert_eq!(c.tcb.recovery(), Recovery::Fast);
    // Only the RFC 5681 step 4 inflation for this duplicate ACK.
    assert_eq!(
        (c.tcb.ccv().cwnd, c.tcb.ccv().ssthresh),
        (cwnd + M, ssthresh)
    );
    assert_eq!(c.tcb.stats().ecn.reductions, 0);
    assert!(c.tcb.ecn_cwr_due(), "the loss reduction queues CWR");
}

// A loss inside a window already reduced for ECN is still repaired by fast retransmit,
// without a second reduction (one per window, RFC 3168 §6.1.2).
#[test]
fn loss_during_cwr_is_fast_retransmitted_without_a_second_cut() {
    let mut c = ecn_flight_of_ten();
    send!(c, peer_ack(0, M).flags(F::ECE));
    assert_eq!(c.tcb.recovery(), Recovery::Cwr);
    let ssthresh = c.tcb.ccv().ssthresh;
    for _ in 0..3 {
        send!(c, peer_ack(0, M).flags(F::ECE));
    }
    assert_eq!(c.tcb.recovery(), Recovery::Fast);
    assert_eq!(c.tcb.ccv().ssthresh, ssthresh);
    let out = c.output();
    assert_eq!(out[0].seq, OUR_ISS + 1 + M, "fast retransmit: {out:?}");
    assert_eq!(out[0].ecn, Ecn::NotEct);
}

// ECE on a connection that did not negotiate ECN is ignored.
#[test]
fn ece_without_ecn_is_ignored() {
    let mut c = established();
    c.tcb.set_nodelay(true);
    c.write(&pattern(0, 4 * MSS));
    let _ = c.output();
    let cwnd = c.tcb.ccv().cwnd;
    send!(c, peer_ack(0, M).flags(F::ECE));
    assert_eq!(c.tcb.recovery(), Recovery::Open);
    assert!(c.tcb.ccv().cwnd >= cwnd);
    assert_eq!(c.tcb.stats().ecn.ece_received, 0);
}
