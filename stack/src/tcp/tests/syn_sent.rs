//! SYN-SENT (RFC 9293 §3.10.7.3): the active open and every kind of segment that can
//! answer our SYN.

use super::harness::*;

// RFC 9293 §3.10.1 OPEN, active: "A SYN segment of the form <SEQ=ISS><CTL=SYN> is sent.
// Set SND.UNA to ISS, SND.NXT to ISS+1, enter SYN-SENT state".
#[test]
fn connect_sends_one_syn_with_mss_and_arms_timers() {
    let mut c = Conn::connect(cfg());
    assert_eq!(c.state(), State::SynSent);
    recv!(c, our_syn());
    recv_nothing!(c);
    assert_eq!(c.tcb.snd_una(), OUR_ISS);
    assert_eq!(c.tcb.snd_nxt(), OUR_ISS + 1);
    // RFC 6298 (2.1): RTO <- 1 second before any sample.
    assert_eq!(c.timer(TimerKind::Rexmt), Some(Duration::from_secs(1)));
    assert_eq!(c.timer(TimerKind::ConnEstab), Some(Duration::from_secs(75)));
}

// RFC 9293 §3.10.7.3: "If SND.UNA > ISS (our SYN has been ACKed), change the connection
// state to ESTABLISHED, form an ACK segment <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and send
// it."
#[test]
fn syn_ack_establishes_and_is_acknowledged() {
    let mut c = syn_sent();
    c.advance(Duration::from_millis(30));
    send!(c, peer_syn().ack(OUR_ISS + 1));
    assert_eq!(c.state(), State::Established);
    recv!(c, our_ack(0, 0, RCVBUF as u16));
    recv_nothing!(c);
    assert_eq!(c.tcb.irs(), PEER_ISS);
    assert_eq!(c.tcb.rcv_nxt(), PEER_ISS + 1);
    assert_eq!(c.tcb.snd_una(), OUR_ISS + 1);
    // RFC 7323 §2.2: the SYN's window is never scaled.
    assert_eq!(c.tcb.snd_wnd(), PEER_WIN as u32);
    // The SYN was timed (not retransmitted): RFC 6298 (2.2) first sample, 30 ms.
    assert_eq!(c.tcb.rtt().srtt(), Some(Duration::from_millis(30)));
    assert!(!c.tcb.timers().is_set(TimerKind::Rexmt));
    assert!(!c.tcb.timers().is_set(TimerKind::ConnEstab));
    // RFC 6928: IW = min(10*MSS, max(2*MSS, 14600)).
    assert_eq!(c.tcb.ccv().cwnd, 14600);
}

// RFC 9293 §3.10.7.3: "If SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset (unless the
// RST bit is set, if so drop the segment and return) <SEQ=SEG.ACK><CTL=RST>".
#[test]
fn unacceptable_ack_is_answered_with_reset() {
    for bad in [OUR_ISS, OUR_ISS - 100, OUR_ISS + 2] {
        let mut c = syn_sent();
        let s = peer_syn().ack(bad);
        send!(c, s => InputOutcome::SendReset);
        assert_eq!(c.state(), State::SynSent);
        recv_nothing!(c);
        // What the layer sends for SendReset.
        let bytes = wire(&s);
        assert_eq!(reset_for(&parse_wire(&bytes)), Some((bad, Seq(0), F::RST)));
    }
}

// Same rule: "... (unless the RST bit is set, if so drop the segment and return)".
#[test]
fn reset_with_unacceptable_ack_is_dropped() {
    let mut c = syn_sent();
    send!(c, seg(PEER_ISS).ack(OUR_ISS + 5).flags(F::RST));
    assert_eq!(c.state(), State::SynSent);
    assert_eq!(c.tcb.error(), None);
    recv_nothing!(c);
}

// RFC 9293 §3.10.7.3: "If the ACK was acceptable, then signal to the user 'error:
// connection reset', drop the segment, enter CLOSED state, delete TCB, and return."
#[test]
fn reset_with_acceptable_ack_refuses_the_connection() {
    let mut c = syn_sent();
    send!(c, seg(Seq(0)).ack(OUR_ISS + 1).flags(F::RST));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.tcb.error(), Some(TcpError::Refused));
    assert!(c.tcb.is_dead());
    recv_nothing!(c);
    assert_eq!(c.tcb.poll_timeout(), None);
}

// RFC 9293 §3.10.7.3: "Otherwise (no ACK), drop the segment and return." (RFC 5961 §3.2
// keeps RSTs without an acceptable ACK from tearing down a connection attempt.)
#[test]
fn reset_without_ack_is_dropped() {
    let mut c = syn_sent();
    send!(c, seg(PEER_ISS).flags(F::RST));
    assert_eq!(c.state(), State::SynSent);
    recv_nothing!(c);
}

// RFC 9293 §3.10.7.3: "If neither of the SYN or RST bits is set, then drop the segment
// and return."
#[test]
fn plain_ack_is_dropped() {
    let mut c = syn_sent();
    send!(c, seg(PEER_ISS).ack(OUR_ISS + 1).win(100));
    assert_eq!(c.state(), State::SynSent);
    recv_nothing!(c);
}

// RFC 9293 §3.10.7.3: "Data or controls that were queued for transmission may be
// included." and "If there are other controls or text in the segment, continue
// processing at the sixth step".
#[test]
fn data_on_the_syn_ack_is_delivered() {
    let mut c = syn_sent();
    send!(c, peer_syn().ack(OUR_ISS + 1).bytes(0, 10));
    assert_eq!(c.state(), State::Established);
    recv!(c, our_ack(0, 10, (RCVBUF - 10) as u16));
    assert_eq!(c.read_all(), pattern(0, 10));
}

// RFC 9293 §3.10.2 SEND, SYN-SENT: "Queue the data for transmission after entering
// ESTABLISHED state."
#[test]
fn data_queued_in_syn_sent_goes_out_with_the_handshake_ack() {
    let mut c = syn_sent();
    c.write(&pattern(0, 100));
    recv_nothing!(c);
    send!(c, peer_syn().ack(OUR_ISS + 1));
    recv!(c, our_ack(0, 0, RCVBUF as u16).flags(F::PSH).bytes(0, 100));
    recv_nothing!(c);
}

// RFC 9293 §3.10.4 CLOSE, SYN-SENT: "Delete the TCB and return 'error: closing' responses
// to any queued SENDs, or RECEIVEs."
#[test]
fn close_deletes_the_tcb_without_sending() {
    let mut c = syn_sent();
    c.tcb.close(c.now);
    assert_eq!(c.state(), State::Closed);
    recv_nothing!(c);
    assert!(c.tcb.is_dead());
}

// RFC 1122 §4.2.3.9: ICMP time exceeded and net/host unreachable are soft errors: "TCP
// MUST NOT abort the connection", but the error should reach the application. It does
// as the reason when the connection then times out (FreeBSD's `t_softerror`).
#[test]
fn soft_icmp_error_is_the_reason_of_a_later_timeout() {
    let mut c = syn_sent_with(TcpConfig {
        syn_retries: 1,
        ..cfg()
    });
    let err = crate::net::icmp::IcmpError {
        kind: (11, 0),
        local: LOCAL,
        remote: REMOTE,
        seq: OUR_ISS,
        mtu: 0,
    };
    assert!(!c.tcb.icmp_error(&err), "a soft error does not drop");
    assert_eq!(c.state(), State::SynSent);
    assert_eq!(c.tcb.error(), None);
    while c.state() != State::Closed {
        c.fire();
        let _ = c.output();
    }
    assert_eq!(c.tcb.error(), Some(TcpError::HostUnreachable));
}
