//! Simultaneous open and simultaneous close (RFC 9293 §3.5 Figure 8, §3.6 Figure 13).

use super::harness::*;

const W: u16 = RCVBUF as u16;

// RFC 9293 §3.10.7.3: "If the SYN bit is on ... Otherwise, enter SYN-RECEIVED, form a
// SYN,ACK segment <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK> and send it."
#[test]
fn simultaneous_open_with_crossing_syn_acks() {
    let mut c = syn_sent();
    c.advance(Duration::from_millis(5));
    send!(c, peer_syn());
    assert_eq!(c.state(), State::SynReceived);
    recv!(c, our_syn().ack(PEER_ISS + 1));
    recv_nothing!(c);
    // Figure 8 line 6: <SEQ=300><ACK=101><CTL=SYN,ACK> arrives: ESTABLISHED, nothing more
    // to send (our own SYN,ACK already answers the peer's SYN).
    c.advance(Duration::from_millis(5));
    send!(c, peer_syn().ack(OUR_ISS + 1) => InputOutcome::Established);
    assert_eq!(c.state(), State::Established);
    recv_nothing!(c);
    assert!(!c.tcb.timers().is_set(TimerKind::Rexmt));
    // Neither our SYN nor our SYN,ACK was lost: full IW, and the SYN,ACK was timed.
    assert_eq!(c.tcb.ccv().cwnd, 14600);
    assert_eq!(c.tcb.stats().retransmits, 0);
    assert_eq!(c.tcb.rtt().srtt(), Some(Duration::from_millis(5)));
    // Data flows.
    c.write(&pattern(0, 10));
    recv!(c, our_ack(0, 0, W).flags(F::PSH).bytes(0, 10));
}

// The peer answers our SYN,ACK with a plain ACK (it had already processed our SYN).
#[test]
fn simultaneous_open_completed_by_an_ack() {
    let mut c = syn_sent();
    send!(c, peer_syn());
    let _ = c.output();
    send!(c, peer_ack(0, 0) => InputOutcome::Established);
    assert_eq!(c.state(), State::Established);
    recv_nothing!(c);
}

// The SYN,ACK of a simultaneous open is retransmitted while unanswered.
#[test]
fn simultaneous_open_retransmits_the_syn_ack() {
    let mut c = syn_sent();
    send!(c, peer_syn());
    recv!(c, our_syn().ack(PEER_ISS + 1));
    c.fire();
    recv!(c, our_syn().ack(PEER_ISS + 1));
}

// RFC 9293 §3.6 Figure 13: both send FIN; each receives the other's FIN in FIN-WAIT-1
// ("enter the CLOSING state"), acknowledges it, then gets the ACK of its own FIN
// ("enter the TIME-WAIT state").
#[test]
fn simultaneous_close() {
    let mut c = established();
    c.tcb.close(c.now);
    recv!(c, our_ack(0, 0, W).flags(F::FIN));
    send!(c, peer_ack(0, 0).flags(F::FIN));
    assert_eq!(c.state(), State::Closing);
    recv!(c, our_ack(1, 1, W));
    send!(c, peer_ack(1, 1));
    assert_eq!(c.state(), State::TimeWait);
    recv_nothing!(c);
    c.advance(Duration::from_secs(60));
    assert_eq!(c.state(), State::Closed);
}

// The crossing FIN may already acknowledge ours: straight to TIME-WAIT.
#[test]
fn simultaneous_close_with_the_fin_acking_ours() {
    let mut c = fin_wait_1();
    send!(c, peer_ack(0, 1).flags(F::FIN));
    assert_eq!(c.state(), State::TimeWait);
    recv!(c, our_ack(1, 1, W));
}

// RFC 9293 §3.10.7.3 (SYN-SENT, SYN without ACK): "If there are other controls or text
// in the segment, queue them for processing after the ESTABLISHED state has been
// reached". The SYN,ACK does not acknowledge the text; ESTABLISHED delivers it.
#[test]
fn text_on_the_peers_syn_is_delivered_once_established() {
    let mut c = syn_sent();
    send!(c, peer_syn().data(b"abc"));
    assert_eq!(c.state(), State::SynReceived);
    recv!(c, our_syn().ack(PEER_ISS + 1));
    assert!(c.read_all().is_empty());
    send!(c, peer_ack(3, 0) => InputOutcome::Established);
    assert_eq!(c.read_all(), b"abc");
    assert_eq!(c.tcb.rcv_nxt(), PEER_ISS + 4);
}
