//! RST processing in every state (RFC 9293 §3.10.7, RFC 5961 §3), and the RST we send for
//! segments that belong to no connection (RFC 9293 §3.10.7.1, `input::reset_for`).

use super::harness::*;

const W: u16 = RCVBUF as u16;

/// What an exact RST does in each synchronized-or-later state: (state, error after).
fn expected(state: State) -> Option<TcpError> {
    match state {
        // RFC 9293 (second, SYN-RECEIVED): passive open: "return this connection to LISTEN
        // state" -- here the embryonic connection disappears, the application never saw it.
        State::SynReceived => None,
        // "ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2, CLOSE-WAIT: If the RST bit is set, then any
        // outstanding RECEIVEs and SEND should receive 'reset' responses."
        State::Established | State::FinWait1 | State::FinWait2 | State::CloseWait => {
            Some(TcpError::Reset)
        }
        // "CLOSING, LAST-ACK, TIME-WAIT: If the RST bit is set, then enter the CLOSED
        // state, delete the TCB, and return." A socket still held in CLOSING or
        // LAST-ACK learns of it, as on Linux (`tcp_reset`) and FreeBSD.
        State::Closing | State::LastAck => Some(TcpError::Reset),
        _ => None,
    }
}

// RFC 5961 §3.2: "If the RST bit is set and the sequence number exactly matches the next
// expected sequence number (RCV.NXT), then TCP MUST reset the connection."
#[test]
fn exact_reset_in_every_state() {
    for (state, make) in every_state() {
        if state == State::SynSent {
            continue; // RFC 9293 §3.10.7.3: see syn_sent.rs (needs an acceptable ACK)
        }
        let mut c = make();
        let rcv_nxt = c.tcb.rcv_nxt();
        send!(c, seg(rcv_nxt).flags(F::RST));
        assert_eq!(c.state(), State::Closed, "RST in {state:?}");
        assert_eq!(c.tcb.error(), expected(state), "RST in {state:?}");
        recv_nothing!(c);
        assert!(c.tcb.is_dead());
        assert_eq!(c.tcb.poll_timeout(), None, "timers left in {state:?}");
        // RST,ACK is the same.
        let mut c = make();
        send!(c, seg(rcv_nxt).ack(c.tcb.snd_max()).flags(F::RST));
        assert_eq!(c.state(), State::Closed, "RST,ACK in {state:?}");
    }
}

// RFC 5961 §3.2: "If the RST bit is set and the sequence number does not exactly match
// the next expected sequence value, yet is within the current receive window
// (RCV.NXT < SEG.SEQ < RCV.NXT+RCV.WND), TCP MUST send an acknowledgment (challenge ACK):
// <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>. After sending the challenge ACK, TCP MUST drop the
// unacceptable segment and stop processing the incoming packet further."
#[test]
fn in_window_reset_gets_a_challenge_ack_in_every_state() {
    for (state, make) in every_state() {
        if state == State::SynSent {
            continue;
        }
        let mut c = make();
        let (rcv_nxt, snd_max) = (c.tcb.rcv_nxt(), c.tcb.snd_max());
        send!(c, seg(rcv_nxt + 1).flags(F::RST));
        assert_eq!(c.state(), state);
        recv!(c, seg(snd_max).ack(rcv_nxt).win(W));
        assert_eq!(c.tcb.stats().challenge_acks, 1);
        send!(c, seg(rcv_nxt + RCVBUF as u32 - 1).flags(F::RST));
        recv!(c, seg(snd_max).ack(rcv_nxt).win(W));
        assert_eq!(c.state(), state);
    }
}

// RFC 5961 §3.2: "If the RST bit is set and the sequence number is outside the current
// receive window, silently drop the segment."
#[test]
fn out_of_window_reset_is_silently_dropped() {
    for (state, make) in every_state() {
        if state == State::SynSent {
            continue;
        }
        let mut c = make();
        let rcv_nxt = c.tcb.rcv_nxt();
        for s in [rcv_nxt - 1, rcv_nxt + RCVBUF as u32, rcv_nxt + 0x4000_0000] {
            send!(c, seg(s).flags(F::RST));
            recv_nothing!(c);
            assert_eq!(c.state(), state);
        }
    }
}

// RFC 5961 §7: "the challenge ACKs SHOULD be rate limited"; §7.2 suggests a limit per
// interval. Ours: 10 per second per connection.
#[test]
fn challenge_acks_are_rate_limited() {
    let mut c = established();
    for _ in 0..10 {
        send!(c, seg(PEER_ISS + 100).flags(F::RST));
        recv!(c, our_ack(0, 0, W));
    }
    send!(c, seg(PEER_ISS + 100).flags(F::RST));
    recv_nothing!(c);
    // In-window SYNs draw from the same budget (RFC 5961 §4.2).
    send!(c, seg(PEER_ISS + 100).flags(F::SYN).win(PEER_WIN));
    recv_nothing!(c);
    assert_eq!(c.tcb.stats().challenge_acks, 10);
    c.advance(Duration::from_secs(1));
    send!(c, seg(PEER_ISS + 100).flags(F::RST));
    recv!(c, our_ack(0, 0, W));
    assert_eq!(c.state(), State::Established);
}

// A connection already CLOSED answers nothing itself: the layer treats the segment as
// for a closed port.
#[test]
fn closed_tcb_hands_segments_to_the_reset_path() {
    let mut c = established();
    c.tcb.abort();
    let _ = c.output();
    send!(c, peer_ack(0, 0).bytes(0, 5) => InputOutcome::SendReset);
    recv_nothing!(c);
}

// RFC 9293 §3.10.7.1: "If the ACK bit is off, sequence number zero is used,
// <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>. If the ACK bit is on, <SEQ=SEG.ACK>
// <CTL=RST>"; "An incoming segment containing a RST is discarded."
#[test]
fn reset_for_a_closed_port() {
    let cases = [
        (
            seg(Seq(7)).flags(F::SYN).win(100),
            Some((Seq(0), Seq(8), F::RST | F::ACK)),
        ),
        (
            seg(Seq(7)).bytes(0, 10),
            Some((Seq(0), Seq(17), F::RST | F::ACK)),
        ),
        (
            seg(Seq(7)).flags(F::FIN).bytes(0, 10),
            Some((Seq(0), Seq(18), F::RST | F::ACK)),
        ),
        (
            seg(Seq(7)).ack(Seq(99)).bytes(0, 10),
            Some((Seq(99), Seq(0), F::RST)),
        ),
        (
            seg(Seq(7)).ack(Seq(99)).flags(F::SYN),
            Some((Seq(99), Seq(0), F::RST)),
        ),
        (seg(Seq(7)).flags(F::RST), None),
        (seg(Seq(7)).ack(Seq(99)).flags(F::RST), None),
    ];
    for (s, want) in cases {
        let bytes = wire(&s);
        assert_eq!(reset_for(&parse_wire(&bytes)), want, "{s:?}");
    }
}

// RFC 9293 §3.10.5 ABORT: "SYN-SENT STATE: All queued SENDs and RECEIVEs should be given
// 'connection reset' notification. Delete the TCB" -- no RST: the peer knows nothing.
#[test]
fn abort_in_syn_sent_sends_nothing() {
    let mut c = syn_sent();
    c.tcb.abort();
    recv_nothing!(c);
    assert!(c.tcb.is_dead());
}

// RFC 9293 §3.10.5 ABORT, SYN-RECEIVED ... CLOSE-WAIT: "Send a reset segment:
// <SEQ=SND.NXT><CTL=RST>". CLOSING, LAST-ACK, TIME-WAIT: "Respond with 'ok' and delete the
// TCB".
#[test]
fn abort_in_every_state() {
    for (state, make) in every_state() {
        let mut c = make();
        let (snd_max, rcv_nxt) = (c.tcb.snd_max(), c.tcb.rcv_nxt());
        c.tcb.abort();
        let out = c.output();
        match state {
            State::SynReceived
            | State::Established
            | State::FinWait1
            | State::FinWait2
            | State::CloseWait => {
                assert_eq!(
                    out,
                    vec![seg(snd_max).ack(rcv_nxt).flags(F::RST)],
                    "{state:?}"
                )
            }
            _ => assert!(out.is_empty(), "{state:?}: {out:?}"),
        }
        assert!(c.tcb.is_dead());
    }
}

// Without RFC 5961's check (`challenge_rst` off, FreeBSD's insecure_rst=1), RFC 793's
// rule: a RST anywhere in the window resets the connection.
#[test]
fn in_window_reset_resets_when_the_challenge_is_off() {
    let cfg = TcpConfig {
        challenge_rst: false,
        ..cfg()
    };
    let mut c = established_cfg(cfg, peer_syn().ack(OUR_ISS + 1));
    let rcv_nxt = c.tcb.rcv_nxt();
    send!(c, seg(rcv_nxt + 100).flags(F::RST));
    recv_nothing!(c);
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.tcb.error(), Some(TcpError::Reset));
    assert_eq!(c.tcb.stats().challenge_acks, 0);
}
