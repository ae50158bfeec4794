//! A SYN on a synchronized connection (RFC 5961 §4, RFC 9293 §3.10.7.4 "fourth").

use super::harness::*;

const W: u16 = RCVBUF as u16;

// RFC 5961 §4.2: "If the SYN bit is set, irrespective of the sequence number, TCP MUST send
// an ACK (also referred to as challenge ACK) to the remote peer: <SEQ=SND.NXT>
// <ACK=RCV.NXT><CTL=ACK>. After sending the acknowledgment, TCP MUST drop the unacceptable
// segment and stop processing further."
#[test]
fn syn_in_window_gets_a_challenge_ack() {
    for (state, make) in every_state() {
        if matches!(state, State::SynSent | State::SynReceived) {
            continue;
        }
        let mut c = make();
        let (snd_max, rcv_nxt) = (c.tcb.snd_max(), c.tcb.rcv_nxt());
        send!(c, seg(rcv_nxt + 10).flags(F::SYN).win(PEER_WIN));
        recv!(c, seg(snd_max).ack(rcv_nxt).win(W));
        assert_eq!(c.state(), state, "SYN in {state:?}");
        assert_eq!(c.tcb.error(), None);
        assert_eq!(c.tcb.stats().challenge_acks, 1);
    }
}

// "irrespective of the sequence number": exactly at RCV.NXT, and outside the window (where
// the sequence test's own ACK answers it).
#[test]
fn syn_anywhere_gets_an_ack_and_no_reset() {
    for at in [PEER_ISS + 1, PEER_ISS - 1000, PEER_ISS + 1 + 100_000] {
        let mut c = established();
        send!(c, seg(at).flags(F::SYN).win(PEER_WIN));
        recv!(c, our_ack(0, 0, W));
        assert_eq!(c.state(), State::Established);
    }
}

// A SYN carrying data must not deliver it.
#[test]
fn syn_with_data_delivers_nothing() {
    let mut c = established();
    send!(c, peer_ack(0, 0).flags(F::SYN).bytes(0, 100));
    recv!(c, our_ack(0, 0, W));
    assert_eq!(c.tcb.readable(), 0);
    assert_eq!(c.tcb.rcv_nxt(), PEER_ISS + 1);
}

// The active opener's handshake ACK was lost: the peer retransmits its SYN,ACK. It is old
// (before RCV.NXT), so RFC 9293's sequence test answers it with an ACK, which is what
// completes the peer's handshake.
#[test]
fn retransmitted_syn_ack_is_acknowledged() {
    let mut c = established();
    send!(c, peer_syn().ack(OUR_ISS + 1));
    recv!(c, our_ack(0, 0, W));
    assert_eq!(c.state(), State::Established);
}

// Without RFC 5961's check (`challenge_syn` off, FreeBSD's insecure_syn=1), RFC 793's
// rule: "If the SYN is in the window it is an error, send a reset ... enter the CLOSED
// state": <SEQ=SND.NXT><ACK=RCV.NXT><CTL=RST,ACK>, the user told "connection reset".
#[test]
fn syn_in_window_resets_when_the_challenge_is_off() {
    let cfg = TcpConfig {
        challenge_syn: false,
        ..cfg()
    };
    let mut c = established_cfg(cfg.clone(), peer_syn().ack(OUR_ISS + 1));
    let (snd_max, rcv_nxt) = (c.tcb.snd_max(), c.tcb.rcv_nxt());
    send!(c, seg(rcv_nxt).flags(F::SYN).win(PEER_WIN));
    recv!(c, seg(snd_max).ack(rcv_nxt).flags(F::RST | F::ACK).win(0));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.tcb.error(), Some(TcpError::Reset));
    // Outside the window the sequence test still answers with a plain ACK.
    let mut c = established_cfg(cfg, peer_syn().ack(OUR_ISS + 1));
    send!(c, seg(rcv_nxt + 100_000).flags(F::SYN).win(PEER_WIN));
    recv!(c, seg(snd_max).ack(rcv_nxt).win(W));
    assert_eq!(c.state(), State::Established);
}
