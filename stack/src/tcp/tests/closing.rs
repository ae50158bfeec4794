//! CLOSING (RFC 9293 §3.10.7.4): both FINs crossed, ours not yet acknowledged.

use super::harness::*;

const W: u16 = RCVBUF as u16;

// RFC 9293 §3.10.7.4 (fifth, CLOSING): "In addition to the processing for the ESTABLISHED
// state, if the ACK acknowledges our FIN, then enter the TIME-WAIT state; otherwise,
// ignore the segment."
#[test]
fn ack_of_fin_enters_time_wait() {
    let mut c = closing();
    send!(c, peer_ack(1, 0));
    assert_eq!(c.state(), State::Closing);
    send!(c, peer_ack(1, 1));
    assert_eq!(c.state(), State::TimeWait);
    recv_nothing!(c);
    assert_eq!(c.timer(TimerKind::TwoMsl), Some(Duration::from_secs(60)));
    assert!(!c.tcb.timers().is_set(TimerKind::Rexmt));
}

// RFC 9293 §3.10.7.4 (eighth, CLOSING): "Remain in the CLOSING state." A retransmitted FIN
// is acknowledged.
#[test]
fn retransmitted_fin_is_acknowledged() {
    let mut c = closing();
    send!(c, peer_ack(0, 0).flags(F::FIN));
    recv!(c, our_ack(1, 1, W));
    assert_eq!(c.state(), State::Closing);
}

// Our FIN is retransmitted until acknowledged.
#[test]
fn our_fin_is_retransmitted() {
    let mut c = closing();
    c.advance(Duration::from_millis(200));
    recv!(c, our_ack(0, 1, W).flags(F::FIN));
    send!(c, peer_ack(1, 1));
    assert_eq!(c.state(), State::TimeWait);
}

// RFC 9293 §3.10.7.4 (second, CLOSING): "If the RST bit is set, then enter the CLOSED
// state, delete the TCB, and return." The application still holding the socket is told
// (ECONNRESET), as Linux's `tcp_reset` and FreeBSD do.
#[test]
fn reset_closes_with_reset_error() {
    let mut c = closing();
    send!(c, seg(PEER_ISS + 2).flags(F::RST));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.tcb.error(), Some(TcpError::Reset));
}

// The peer retransmits its FIN (our ACK of it was lost), now acknowledging our FIN: the
// duplicate FIN is acknowledged and its ACK still moves CLOSING to TIME-WAIT (FreeBSD
// trims the duplicate and processes the ACK; Linux accepts a segment ending at RCV.NXT).
#[test]
fn duplicate_fin_acking_our_fin_enters_time_wait() {
    let mut c = closing();
    send!(c, peer_ack(0, 1).flags(F::FIN));
    assert_eq!(c.state(), State::TimeWait);
    recv!(c, our_ack(1, 1, W));
}
