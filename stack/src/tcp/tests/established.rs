//! ESTABLISHED (RFC 9293 §3.10.7.4): data both ways, the sequence-number check, the
//! window update rule, the FIN.

use super::harness::*;

const W: u16 = RCVBUF as u16;

// RFC 9293 §3.10.2 SEND: data goes out as <SEQ=SND.NXT><ACK=RCV.NXT>, and RFC 6298
// (5.1): "Every time a packet containing data is sent (including a retransmission), if
// the timer is not running, start it running so that it will expire after RTO seconds".
#[test]
fn send_data_and_get_it_acknowledged() {
    let mut c = established();
    c.write(&pattern(0, 100));
    recv!(c, our_ack(0, 0, W).flags(F::PSH).bytes(0, 100));
    recv_nothing!(c);
    // The handshake measured 10 ms: RTO = SRTT + 4*RTTVAR = 30 ms, clamped to the 200 ms
    // minimum.
    assert_eq!(c.timer(TimerKind::Rexmt), Some(Duration::from_millis(200)));
    c.advance(Duration::from_millis(10));
    send!(c, peer_ack(0, 100));
    recv_nothing!(c);
    assert_eq!(c.tcb.snd_una(), OUR_ISS + 101);
    // RFC 6298 (5.2): "When all outstanding data has been acknowledged, turn off the
    // retransmission timer."
    assert!(!c.tcb.timers().is_set(TimerKind::Rexmt));
    assert_eq!(c.tcb.stats().bytes_acked, 100);
}

// Segmentation: at most one MSS per segment, only the last one pushed.
#[test]
fn large_write_is_cut_into_mss_segments() {
    let mut c = established();
    c.write(&pattern(0, 3000));
    recv!(
        c,
        [
            our_ack(0, 0, W).bytes(0, MSS),
            our_ack(MSS as u32, 0, W).bytes(MSS, MSS),
        ]
    );
    // The 80-byte tail waits for an ACK (Nagle, RFC 9293 §3.7.4: "when there is
    // unacknowledged data, buffer all user data ... until the outstanding data has been
    // acknowledged or until the TCP can send a full-sized segment").
    recv_nothing!(c);
    send!(c, peer_ack(0, 2 * MSS as u32));
    recv!(
        c,
        our_ack(2 * MSS as u32, 0, W)
            .flags(F::PSH)
            .bytes(2 * MSS, 80)
    );
}

// The peer's window limits what is sent: RFC 9293 §3.8.6.2.1 usable window
// U = SND.UNA + SND.WND - SND.NXT.
#[test]
fn peer_window_limits_sending() {
    let mut c = established();
    send!(c, peer_ack(0, 0).win(2000));
    c.write(&pattern(0, 5000));
    recv!(c, our_ack(0, 0, W).bytes(0, MSS));
    // 540 bytes of window left: less than a segment and not the whole of what we have,
    // and less than half the largest window the peer offered: held (SWS avoidance).
    recv_nothing!(c);
    send!(c, peer_ack(0, MSS as u32).win(2000));
    recv!(c, our_ack(MSS as u32, 0, W).bytes(MSS, MSS));
}

// RFC 9293 §3.10.7.4 (seventh): "Once the TCP endpoint takes responsibility for the data,
// it advances RCV.NXT over the data accepted, and adjusts RCV.WND as appropriate".
#[test]
fn in_order_data_is_delivered_and_the_window_shrinks() {
    let mut c = established();
    send!(c, peer_ack(0, 0).bytes(0, MSS));
    send!(c, peer_ack(MSS as u32, 0).flags(F::PSH).bytes(MSS, MSS));
    // Two full segments: an ACK at once (RFC 5681 §4.2).
    recv!(c, our_ack(0, 2 * MSS as u32, W - 2 * MSS as u16));
    assert_eq!(c.read_all(), pattern(0, 2 * MSS));
    assert_eq!(c.tcb.stats().bytes_received, 2 * MSS as u64);
}

// RFC 9293 §3.10.7.4 (first): "If a segment's contents straddle the boundary between old
// and new, only the new parts are processed."
#[test]
fn overlapping_retransmission_delivers_only_the_new_part() {
    let mut c = established();
    send!(c, peer_ack(0, 0).bytes(0, 100));
    send!(c, peer_ack(50, 0).bytes(50, 100));
    assert_eq!(c.read_all(), pattern(0, 150));
    assert_eq!(c.tcb.rcv_nxt(), PEER_ISS + 151);
}

// RFC 9293 §3.10.7.4 (first): "If an incoming segment is not acceptable, an acknowledgment
// should be sent in reply (unless the RST bit is set ...): <SEQ=SND.NXT><ACK=RCV.NXT>
// <CTL=ACK>. After sending the acknowledgment, drop the unacceptable segment".
#[test]
fn segments_outside_the_window_are_acknowledged_and_dropped() {
    let mut c = established();
    // Entirely old (a duplicate of data never sent is still "old").
    send!(
        c,
        seg(PEER_ISS + 1 - 200)
            .ack(OUR_ISS + 1)
            .win(PEER_WIN)
            .bytes(0, 100)
    );
    recv!(c, our_ack(0, 0, W));
    // Beyond the right edge.
    send!(c, peer_ack(RCVBUF as u32, 0).bytes(0, 10));
    recv!(c, our_ack(0, 0, W));
    // A zero-length segment beyond the window.
    send!(c, peer_ack(RCVBUF as u32 + 5, 0));
    recv!(c, our_ack(0, 0, W));
    assert_eq!(c.tcb.readable(), 0);
    assert_eq!(c.tcb.stats().drops, 3);
}

// A zero-length segment at RCV.NXT is acceptable ("SEG.LEN = 0, RCV.WND > 0:
// RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND"), and a pure ACK is not acknowledged.
#[test]
fn pure_ack_is_not_acknowledged() {
    let mut c = established();
    send!(c, peer_ack(0, 0));
    recv_nothing!(c);
}

// RFC 9293 §3.10.7.4 (fifth): "If the ACK bit is off, drop the segment and return".
#[test]
fn segment_without_ack_bit_is_dropped() {
    let mut c = established();
    send!(c, seg(PEER_ISS + 1).bytes(0, 10));
    recv_nothing!(c);
    assert_eq!(c.tcb.readable(), 0);
}

// RFC 9293 §3.10.7.4 (fifth): "If SND.WL1 < SEG.SEQ or (SND.WL1 = SEG.SEQ and SND.WL2 =<
// SEG.ACK), set SND.WND <- SEG.WND". An older segment (reordered) must not.
#[test]
fn window_update_only_from_newer_segments() {
    let mut c = established();
    send!(c, peer_ack(100, 0).bytes(0, 0).win(30000)); // newer: taken
    assert_eq!(c.tcb.snd_wnd(), 30000);
    send!(c, peer_ack(50, 0).win(100)); // SEG.SEQ < SND.WL1: ignored
    assert_eq!(c.tcb.snd_wnd(), 30000);
}

// RFC 9293 §3.10.7.4 (eighth): "ESTABLISHED STATE: Enter the CLOSE-WAIT state." and
// "advance RCV.NXT over the FIN, and send an acknowledgment for the FIN".
#[test]
fn fin_moves_to_close_wait_and_reads_end() {
    let mut c = established();
    send!(c, peer_ack(0, 0).flags(F::FIN | F::PSH).bytes(0, 10));
    assert_eq!(c.state(), State::CloseWait);
    recv!(c, our_ack(0, 11, W - 10));
    assert_eq!(c.read_all(), pattern(0, 10));
    let mut b = [0u8; 8];
    assert_eq!(c.tcb.recv(&mut b), Ok(0));
    assert!(c.tcb.read_ready());
}

// RFC 9293 §3.10.7.4 (fifth, ESTABLISHED): "If the ACK is a duplicate (SEG.ACK =<
// SND.UNA), it can be ignored." An old ACK with data still delivers its data.
#[test]
fn old_ack_with_data_is_processed() {
    let mut c = established();
    c.write(&pattern(0, 100));
    let _ = c.output();
    send!(c, peer_ack(0, 100));
    send!(c, peer_ack(0, 0).bytes(0, 10));
    assert_eq!(c.tcb.snd_una(), OUR_ISS + 101);
    assert_eq!(c.read_all(), pattern(0, 10));
}

// RFC 9293 §3.10.5 ABORT: "Send a reset segment: <SEQ=SND.NXT><CTL=RST>"; queued data is
// discarded.
#[test]
fn abort_sends_reset() {
    let mut c = established();
    c.write(&pattern(0, 100));
    c.tcb.abort();
    recv!(c, seg(OUR_ISS + 1).ack(PEER_ISS + 1).flags(F::RST));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.tcb.error(), Some(TcpError::Aborted));
    assert!(c.tcb.is_dead());
}

// `buffer_idle_release`: once data stopped flowing for that long, empty buffers give
// their memory back (and grow again on demand); a buffer still holding data keeps it.
#[test]
fn idle_empty_buffers_release_their_memory() {
    let mut c = established();
    c.write(&pattern(0, 2920));
    let sent: usize = c.output().iter().map(|s| s.payload.len()).sum();
    assert_eq!(sent, 2920);
    send!(c, peer_ack(0, 2920).bytes(0, 500));
    let _ = c.output();
    let held = (c.tcb.sndbuf_allocated(), c.tcb.rcvbuf().allocated());
    assert!(held.0 > 0 && held.1 > 0, "{held:?}");
    // Idle, but 500 bytes unread: the receive buffer keeps its memory.
    c.advance(Duration::from_secs(1));
    assert_eq!(c.tcb.sndbuf_allocated(), 0);
    assert!(c.tcb.rcvbuf().allocated() > 0);
    assert_eq!(c.read_all(), pattern(0, 500));
    let _ = c.output();
    c.advance(Duration::from_secs(1));
    assert_eq!(c.tcb.rcvbuf().allocated(), 0);
    // Both grow again on demand.
    send!(c, peer_ack(500, 2920).bytes(500, 100));
    c.write(&pattern(0, 10));
    assert_eq!(c.read_all(), pattern(500, 100));
    assert!(c.tcb.sndbuf_allocated() > 0);
}
