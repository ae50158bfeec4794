//! CLOSE-WAIT and LAST-ACK (RFC 9293 §3.10.4, §3.10.7.4): the peer closed first.

use super::harness::*;

const W: u16 = RCVBUF as u16;

// RFC 9293 §3.10.2 SEND, CLOSE-WAIT: "Segmentize any text to be sent and queue it for
// output."
#[test]
fn close_wait_still_sends() {
    let mut c = close_wait();
    c.write(&pattern(0, 100));
    recv!(c, our_ack(0, 1, W).flags(F::PSH).bytes(0, 100));
    send!(c, peer_ack(1, 100));
    assert_eq!(c.tcb.snd_una(), OUR_ISS + 101);
    assert_eq!(c.state(), State::CloseWait);
}

// RFC 9293 §3.10.7.4 (seventh, CLOSE-WAIT): "This should not occur since a FIN has been
// received from the remote side. Ignore the segment text." (We still acknowledge.)
#[test]
fn text_after_fin_is_ignored() {
    let mut c = close_wait();
    send!(c, peer_ack(1, 0).bytes(1, 10));
    recv!(c, our_ack(0, 1, W));
    assert_eq!(c.tcb.readable(), 0);
}

// RFC 9293 §3.10.7.4 (eighth, CLOSE-WAIT): "Remain in the CLOSE-WAIT state." A
// retransmitted FIN is old: it gets an ACK.
#[test]
fn retransmitted_fin_is_acknowledged() {
    let mut c = close_wait();
    send!(c, peer_ack(0, 0).flags(F::FIN));
    recv!(c, our_ack(0, 1, W));
    assert_eq!(c.state(), State::CloseWait);
}

// RFC 9293 §3.10.4 CLOSE, CLOSE-WAIT: "Queue this request until all preceding SENDs have
// been segmentized; then send a FIN segment, enter LAST-ACK state."
#[test]
fn close_sends_fin_and_enters_last_ack() {
    let mut c = close_wait();
    c.write(&pattern(0, 50));
    c.tcb.close(c.now);
    assert_eq!(c.state(), State::LastAck);
    recv!(c, our_ack(0, 1, W).flags(F::PSH | F::FIN).bytes(0, 50));
}

// RFC 9293 §3.10.7.4 (fifth, LAST-ACK): "The only thing that can arrive in this state is
// an acknowledgment of our FIN. If our FIN is now acknowledged, delete the TCB, enter the
// CLOSED state, and return."
#[test]
fn ack_of_fin_closes() {
    let mut c = last_ack();
    send!(c, peer_ack(1, 0));
    assert_eq!(c.state(), State::LastAck);
    send!(c, peer_ack(1, 1));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.tcb.error(), None);
    assert!(c.tcb.is_dead());
    recv_nothing!(c);
    assert_eq!(c.tcb.poll_timeout(), None);
}

// The FIN is retransmitted in LAST-ACK until acknowledged, with RFC 6298 backoff.
#[test]
fn last_ack_retransmits_fin() {
    let mut c = last_ack();
    c.advance(Duration::from_millis(200));
    recv!(c, our_ack(0, 1, W).flags(F::FIN));
    c.advance(Duration::from_millis(400));
    recv!(c, our_ack(0, 1, W).flags(F::FIN));
    send!(c, peer_ack(1, 1));
    assert_eq!(c.state(), State::Closed);
}

// A retransmitted FIN in LAST-ACK (the peer lost our ACK of it) is acknowledged again.
#[test]
fn last_ack_acknowledges_a_retransmitted_fin() {
    let mut c = last_ack();
    send!(c, peer_ack(0, 0).flags(F::FIN));
    recv!(c, our_ack(1, 1, W));
    assert_eq!(c.state(), State::LastAck);
}

// Reads drain what arrived before the FIN, then report end of stream.
#[test]
fn reads_drain_then_end() {
    let mut c = established();
    send!(c, peer_ack(0, 0).bytes(0, 20));
    send!(c, peer_ack(20, 0).flags(F::FIN));
    assert_eq!(c.state(), State::CloseWait);
    assert_eq!(c.read_all(), pattern(0, 20));
    assert_eq!(c.read_all(), Vec::<u8>::new());
    assert!(c.tcb.fin_received());
}
