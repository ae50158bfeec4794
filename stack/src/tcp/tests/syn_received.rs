//! SYN-RECEIVED (RFC 9293 §3.10.7.2 for the passive open, §3.10.7.4 for what follows).

use super::harness::*;

// RFC 9293 §3.10.7.2 (LISTEN, SYN): "ISS should be selected and a SYN segment sent of the
// form: <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>".
#[test]
fn syn_is_answered_with_syn_ack() {
    let mut c = Conn::accept(cfg(), peer_syn());
    assert_eq!(c.state(), State::SynReceived);
    recv!(c, our_syn().ack(PEER_ISS + 1));
    recv_nothing!(c);
    assert_eq!(c.tcb.rcv_nxt(), PEER_ISS + 1);
    assert_eq!(c.tcb.snd_nxt(), OUR_ISS + 1);
    assert_eq!(c.timer(TimerKind::Rexmt), Some(Duration::from_secs(1)));
}

// RFC 9293 §3.10.7.4 (fifth, SYN-RECEIVED): "If SND.UNA < SEG.ACK =< SND.NXT, then enter
// ESTABLISHED state and continue processing".
#[test]
fn ack_of_syn_establishes() {
    let mut c = syn_received();
    c.advance(Duration::from_millis(20));
    send!(c, peer_ack(0, 0) => InputOutcome::Established);
    assert_eq!(c.state(), State::Established);
    recv_nothing!(c);
    assert!(!c.tcb.timers().is_set(TimerKind::Rexmt));
    assert_eq!(c.tcb.rtt().srtt(), Some(Duration::from_millis(20)));
    assert_eq!(c.tcb.snd_wnd(), PEER_WIN as u32);
    assert_eq!(c.tcb.ccv().cwnd, 14600);
}

// RFC 9293 §3.10.7.4 (fifth, SYN-RECEIVED): "If the segment acknowledgment is not
// acceptable, form a reset segment <SEQ=SEG.ACK><CTL=RST> and send it."
#[test]
fn unacceptable_ack_is_answered_with_reset() {
    for bad in [OUR_ISS, OUR_ISS + 2] {
        let mut c = syn_received();
        send!(c, peer_ack(0, 0).ack(bad) => InputOutcome::SendReset);
        assert_eq!(c.state(), State::SynReceived);
        recv_nothing!(c);
    }
}

// The handshake's ACK may carry data: "continue processing" reaches the text step.
#[test]
fn data_on_the_handshake_ack_is_delivered() {
    let mut c = syn_received();
    send!(c, peer_ack(0, 0).flags(F::PSH).bytes(0, 300) => InputOutcome::Established);
    assert_eq!(c.read_all(), pattern(0, 300));
    // Less than a full segment: the ACK is delayed (RFC 9293 §3.8.6.3).
    recv_nothing!(c);
    assert_eq!(c.timer(TimerKind::Delack), Some(Duration::from_millis(40)));
}

// ... and a FIN: RFC 9293 §3.10.7.4 (eighth): "SYN-RECEIVED STATE, ESTABLISHED STATE:
// Enter the CLOSE-WAIT state."
#[test]
fn fin_on_the_handshake_ack_goes_to_close_wait() {
    let mut c = syn_received();
    send!(c, peer_ack(0, 0).flags(F::FIN) => InputOutcome::Established);
    assert_eq!(c.state(), State::CloseWait);
    recv!(c, our_ack(0, 1, RCVBUF as u16));
}

// A segment without ACK in SYN-RECEIVED: "if the ACK bit is off, drop the segment and
// return".
#[test]
fn segment_without_ack_is_dropped() {
    let mut c = syn_received();
    send!(c, seg(PEER_ISS + 1).bytes(0, 10));
    assert_eq!(c.state(), State::SynReceived);
    recv_nothing!(c);
    assert_eq!(c.tcb.readable(), 0);
}

// A retransmitted SYN means our SYN,ACK was lost: answer it with the SYN,ACK again (as
// Linux and FreeBSD's syncache do), not with a bare ACK the peer in SYN-SENT would drop
// ("If neither of the SYN or RST bits is set, then drop the segment").
#[test]
fn retransmitted_syn_gets_the_syn_ack_again() {
    let mut c = syn_received();
    c.advance(Duration::from_millis(300));
    send!(c, peer_syn());
    recv!(c, our_syn().ack(PEER_ISS + 1));
    recv_nothing!(c);
    assert_eq!(c.state(), State::SynReceived);
    send!(c, peer_ack(0, 0) => InputOutcome::Established);
}

// A different SYN in SYN-RECEIVED is a new incarnation or an attack: RFC 5961 §4.2
// "the TCP MUST send an ACK (challenge ACK) to the remote peer".
#[test]
fn syn_with_another_sequence_number_is_challenged() {
    let mut c = syn_received();
    send!(c, seg(PEER_ISS + 7).flags(F::SYN).win(PEER_WIN));
    recv!(c, our_ack(0, 0, RCVBUF as u16));
    assert_eq!(c.state(), State::SynReceived);
}

// RFC 9293 §3.10.7.4 (second, SYN-RECEIVED): "If this connection was initiated with a
// passive OPEN (i.e., came from the LISTEN state), then return this connection to LISTEN
// state and return." For us the embryonic connection just goes away, with no error.
#[test]
fn reset_discards_a_passive_connection() {
    let mut c = syn_received();
    send!(c, seg(PEER_ISS + 1).flags(F::RST));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.tcb.error(), None);
    assert!(c.tcb.is_dead());
    recv_nothing!(c);
}

// RFC 9293 §3.10.4 CLOSE, SYN-RECEIVED: "If no SENDs have been issued and there is no
// pending data to send, then form a FIN segment and send it, and enter FIN-WAIT-1 state;
// otherwise, queue for processing after entering ESTABLISHED state." We queue it: the
// SYN,ACK must stay retransmittable until the handshake completes.
#[test]
fn close_queues_the_fin_until_established() {
    let mut c = syn_received();
    c.tcb.close(c.now);
    recv_nothing!(c);
    // The SYN,ACK is still retransmitted on timeout.
    c.advance(Duration::from_secs(1));
    recv!(c, our_syn().ack(PEER_ISS + 1));
    send!(c, peer_ack(0, 0) => InputOutcome::Established);
    assert_eq!(c.state(), State::FinWait1);
    recv!(c, our_ack(0, 0, RCVBUF as u16).flags(F::FIN));
    send!(c, peer_ack(0, 1));
    assert_eq!(c.state(), State::FinWait2);
}

// RFC 5681 §3.1: "if the SYN or SYN/ACK is lost, the initial window used by a sender
// after a correctly transmitted SYN MUST be one segment".
#[test]
fn lost_syn_ack_starts_with_one_segment() {
    let mut c = syn_received();
    c.advance(Duration::from_secs(1));
    recv!(c, our_syn().ack(PEER_ISS + 1));
    send!(c, peer_ack(0, 0) => InputOutcome::Established);
    assert_eq!(c.tcb.ccv().cwnd, MSS as u32);
    // RFC 6298 (5.7): "the RTO MUST be re-initialized to 3 seconds when data
    // transmission begins".
    assert_eq!(c.tcb.rto(), Duration::from_secs(3));
}

// RFC 7323 §2.2: a SYN-ACK's window is not scaled, so with a receive buffer above 64 KB
// it understates the space. That alone is no reason for a window update once the
// handshake completes (Linux sends none): the first segment we send carries the scaled
// window anyway, and an extra ACK per connection costs short-connection rates.
#[test]
fn no_window_update_right_after_the_handshake_with_a_large_buffer() {
    let cfg = TcpConfig {
        rcvbuf: 256 * 1024,
        window_scaling: true,
        ..cfg()
    };
    let mut c = Conn::accept(cfg, peer_syn().wscale(7));
    let synack = c.output();
    assert_eq!(synack.len(), 1);
    assert_eq!(
        synack[0].window, 65535,
        "the SYN-ACK's window is capped, unscaled"
    );
    c.advance(Duration::from_millis(1));
    send!(c, peer_ack(0, 0) => InputOutcome::Established);
    recv_nothing!(c);
    // Setting an option that runs output (TCP_NODELAY, as servers do on accept) still
    // finds no update to send.
    c.tcb.set_nodelay(true);
    recv_nothing!(c);
    // The first data we ACK carries the real (scaled) window.
    send!(c, peer_ack(0, 0).bytes(0, MSS) => InputOutcome::Ok);
    send!(c, peer_ack(0, 0).bytes(MSS, MSS) => InputOutcome::Ok);
    let out = c.output();
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        (out[0].window as usize) << 7 >= 256 * 1024 - 2 * MSS - 128,
        "{out:?}"
    );
}

// The request/response case: the peer's request arrives right after the handshake, the
// application reads it and writes the answer. Reading must not trigger a pure window
// update (the SYN-ACK's capped window is not a promise to correct): the ACK rides on the
// response, as with Linux.
#[test]
fn reading_the_first_request_sends_no_window_update() {
    let cfg = TcpConfig {
        rcvbuf: 256 * 1024,
        window_scaling: true,
        ..cfg()
    };
    let mut c = Conn::accept(cfg, peer_syn().wscale(7));
    c.output();
    send!(c, peer_ack(0, 0) => InputOutcome::Established);
    send!(c, peer_ack(0, 0).bytes(0, 100) => InputOutcome::Ok);
    assert_eq!(c.read_all().len(), 100);
    assert!(
        !c.tcb.window_update_wanted(),
        "no window update after reading the first request"
    );
    c.write(&[1u8; 200]);
    let out = c.output();
    assert_eq!(out.len(), 1, "the response carries the ACK: {out:?}");
    assert_eq!(out[0].payload.len(), 200);
}

// RFC 7323 §2.2: a SYN's window is never scaled, so a passive open's peer was told at
// most 65,535 bytes, whatever the buffer: the receive window checked in SYN-RECEIVED is
// that (as FreeBSD's syncache checks it), not the buffer's.
#[test]
fn passive_window_is_what_the_syn_ack_advertised() {
    let big = TcpConfig {
        rcvbuf: 128 * 1024,
        ..cfg()
    };
    let mut c = Conn::accept(big, peer_syn());
    let _ = c.output();
    // A RST past 65,535 is outside the window: dropped without an answer.
    send!(c, seg(PEER_ISS + 1 + 65_535).flags(F::RST));
    recv_nothing!(c);
    assert_eq!(c.state(), State::SynReceived);
    // Just inside: a challenge ACK (RFC 5961 §3.2).
    send!(c, seg(PEER_ISS + 1 + 65_534).flags(F::RST));
    assert_eq!(c.output().len(), 1);
    assert_eq!(c.state(), State::SynReceived);
}
