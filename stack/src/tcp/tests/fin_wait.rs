//! FIN-WAIT-1 and FIN-WAIT-2 (RFC 9293 §3.10.4 CLOSE and §3.10.7.4): we closed first.

use super::harness::*;

const W: u16 = RCVBUF as u16;

// RFC 9293 §3.10.4 CLOSE, ESTABLISHED: "Queue this until all preceding SENDs have been
// segmentized, then form a FIN segment and send it. In any case, enter FIN-WAIT-1 state."
// The FIN rides on the last data segment.
#[test]
fn fin_follows_queued_data_on_the_same_segment() {
    let mut c = established();
    c.write(&pattern(0, 100));
    c.tcb.close(c.now);
    assert_eq!(c.state(), State::FinWait1);
    recv!(c, our_ack(0, 0, W).flags(F::PSH | F::FIN).bytes(0, 100));
    recv_nothing!(c);
    assert_eq!(c.tcb.snd_nxt(), OUR_ISS + 102);
}

// RFC 9293 §3.10.2 SEND, FIN-WAIT-1 ...: "Return 'error: connection closing' and do not
// service request."
#[test]
fn send_after_close_fails() {
    let mut c = fin_wait_1();
    assert_eq!(c.tcb.send(b"x"), Err(UserError::SendClosed));
    assert_eq!(c.tcb.send_space(), 0);
}

// RFC 9293 §3.10.7.4 (fifth, FIN-WAIT-1): "In addition to the processing for the
// ESTABLISHED state, if the FIN segment is now acknowledged, then enter FIN-WAIT-2".
#[test]
fn ack_of_fin_moves_to_fin_wait_2() {
    let mut c = fin_wait_1();
    send!(c, peer_ack(0, 0)); // acknowledges nothing new
    assert_eq!(c.state(), State::FinWait1);
    send!(c, peer_ack(0, 1));
    assert_eq!(c.state(), State::FinWait2);
    recv_nothing!(c);
    assert!(!c.tcb.timers().is_set(TimerKind::Rexmt));
}

// RFC 9293 §3.10.7.4 (seventh): data is still received in FIN-WAIT-1 and FIN-WAIT-2.
#[test]
fn data_is_still_received_after_close() {
    let mut c = fin_wait_1();
    send!(c, peer_ack(0, 0).bytes(0, 2 * MSS));
    recv!(c, our_ack(1, 2 * MSS as u32, W - 2 * MSS as u16));
    send!(c, peer_ack(2 * MSS as u32, 1).bytes(2 * MSS, MSS));
    assert_eq!(c.state(), State::FinWait2);
    send!(c, peer_ack(3 * MSS as u32, 1).bytes(3 * MSS, MSS));
    recv!(c, our_ack(1, 4 * MSS as u32, W - 4 * MSS as u16));
    assert_eq!(c.read_all(), pattern(0, 4 * MSS));
}

// RFC 9293 §3.10.7.4 (eighth, FIN-WAIT-1): "If our FIN has been ACKed (perhaps in this
// segment), then enter TIME-WAIT, start the time-wait timer, turn off the other timers".
#[test]
fn fin_acking_our_fin_goes_straight_to_time_wait() {
    let mut c = fin_wait_1();
    send!(c, peer_ack(0, 1).flags(F::FIN));
    assert_eq!(c.state(), State::TimeWait);
    recv!(c, our_ack(1, 1, W));
    assert_eq!(c.timer(TimerKind::TwoMsl), Some(Duration::from_secs(60)));
    assert!(!c.tcb.timers().is_set(TimerKind::Rexmt));
}

// RFC 9293 §3.10.7.4 (eighth, FIN-WAIT-1): "otherwise, enter the CLOSING state".
#[test]
fn fin_not_acking_our_fin_goes_to_closing() {
    let mut c = fin_wait_1();
    send!(c, peer_ack(0, 0).flags(F::FIN));
    assert_eq!(c.state(), State::Closing);
    recv!(c, our_ack(1, 1, W));
}

// RFC 9293 §3.10.7.4 (eighth, FIN-WAIT-2): "Enter the TIME-WAIT state. Start the
// time-wait timer, turn off the other timers."
#[test]
fn fin_in_fin_wait_2_goes_to_time_wait() {
    let mut c = fin_wait_2();
    c.advance(Duration::from_secs(5));
    send!(c, peer_ack(0, 1).flags(F::FIN));
    assert_eq!(c.state(), State::TimeWait);
    recv!(c, our_ack(1, 1, W));
    assert_eq!(c.timer(TimerKind::TwoMsl), Some(Duration::from_secs(60)));
    assert_eq!(c.tcb.poll_timeout(), Some(c.now + Duration::from_secs(60)));
}

// RFC 9293 §3.10.4 CLOSE, FIN-WAIT-1/2: "Strictly speaking, this is an error and should
// receive an 'error: connection closing' response." A second close changes nothing.
#[test]
fn second_close_changes_nothing() {
    let mut c = fin_wait_1();
    c.tcb.close(c.now);
    assert_eq!(c.state(), State::FinWait1);
    recv_nothing!(c);
}

// The FIN is retransmitted on timeout like data (RFC 9293 §3.8.1).
#[test]
fn fin_is_retransmitted_on_timeout() {
    let mut c = fin_wait_1();
    assert_eq!(c.timer(TimerKind::Rexmt), Some(Duration::from_millis(200)));
    c.advance(Duration::from_millis(200));
    recv!(c, our_ack(0, 0, W).flags(F::FIN));
    assert_eq!(c.timer(TimerKind::Rexmt), Some(Duration::from_millis(400)));
    send!(c, peer_ack(0, 1));
    assert_eq!(c.state(), State::FinWait2);
}

// An ACK for part of the data before the FIN keeps FIN-WAIT-1.
#[test]
fn partial_ack_of_data_before_fin_stays_in_fin_wait_1() {
    let mut c = established();
    c.write(&pattern(0, 100));
    c.tcb.close(c.now);
    let _ = c.output();
    send!(c, peer_ack(0, 100));
    assert_eq!(c.state(), State::FinWait1);
    send!(c, peer_ack(0, 101));
    assert_eq!(c.state(), State::FinWait2);
}

// FIN-WAIT-2 has no timeout in RFC 9293; an orphaned connection (no handle left) would
// wait forever for a peer that never closes, so it is bounded as Linux's
// tcp_fin_timeout bounds it.
#[test]
fn orphaned_fin_wait_2_gives_up_after_the_fin_timeout() {
    let mut c = fin_wait_2();
    // Held by the application: it may wait as long as it likes.
    assert_eq!(c.timer(TimerKind::TwoMsl), None);
    let now = c.now;
    c.tcb.set_orphaned(now);
    let t = c.tcb.config().orphan_fin_timeout;
    assert_eq!(c.timer(TimerKind::TwoMsl), Some(t));
    c.advance(t - Duration::from_millis(1));
    assert_eq!(c.state(), State::FinWait2);
    c.advance(Duration::from_millis(1));
    assert_eq!(c.state(), State::Closed);
    recv_nothing!(c);
}

#[test]
fn orphaned_in_fin_wait_1_arms_the_fin_timeout_on_reaching_fin_wait_2() {
    let mut c = fin_wait_1();
    let now = c.now;
    c.tcb.set_orphaned(now);
    assert_eq!(c.timer(TimerKind::TwoMsl), None);
    send!(c, peer_ack(0, 1));
    assert_eq!(c.state(), State::FinWait2);
    assert_eq!(
        c.timer(TimerKind::TwoMsl),
        Some(c.tcb.config().orphan_fin_timeout)
    );
}
