//! The ACK field's acceptability (RFC 9293 §3.10.7.4 "fifth", RFC 5961 §5).

use super::harness::*;

const W: u16 = RCVBUF as u16;

// RFC 5961 §5.2: "If SEG.ACK > SND.NXT then send an ACK, drop the segment, and return."
// The data it carries is not taken either.
#[test]
fn ack_beyond_snd_nxt_is_answered_and_dropped() {
    let mut c = established();
    c.write(&pattern(0, 100));
    let _ = c.output();
    send!(c, peer_ack(0, 101).bytes(0, 50).win(1));
    recv!(c, our_ack(100, 0, W));
    assert_eq!(c.tcb.readable(), 0);
    assert_eq!(c.tcb.snd_una(), OUR_ISS + 1);
    assert_eq!(c.tcb.snd_wnd(), PEER_WIN as u32, "the window was not taken");
    assert_eq!(c.state(), State::Established);
}

// RFC 5961 §5.2: "All incoming segments whose ACK value doesn't satisfy the above condition
// MUST be discarded and an ACK sent back" -- the condition being "(SND.UNA - MAX.SND.WND)
// =< SEG.ACK =< SND.NXT". The ACK sent back is a challenge ACK (rate limited).
#[test]
fn ack_too_old_gets_a_challenge_ack_and_is_dropped() {
    let mut c = established();
    let too_old = OUR_ISS + 1 - PEER_WIN as u32 - 1;
    send!(c, seg(PEER_ISS + 1).ack(too_old).win(PEER_WIN).bytes(0, 50));
    recv!(c, our_ack(0, 0, W));
    assert_eq!(c.tcb.readable(), 0);
    assert_eq!(c.tcb.stats().challenge_acks, 1);
}

// RFC 5961 §5.2: an old ACK within MAX.SND.WND of SND.UNA is acceptable: "If SND.UNA =<
// SEG.ACK =< SND.NXT" handles the new ones and older ones are duplicates that "can be
// ignored" -- their data is still processed.
#[test]
fn old_ack_within_max_snd_wnd_is_accepted() {
    let mut c = established();
    let old = OUR_ISS + 1 - PEER_WIN as u32;
    send!(
        c,
        seg(PEER_ISS + 1)
            .ack(old)
            .win(PEER_WIN)
            .flags(F::PSH)
            .bytes(0, 50)
    );
    assert_eq!(c.read_all(), pattern(0, 50));
    assert_eq!(c.tcb.stats().challenge_acks, 0);
}

// An ACK exactly at SND.NXT is fine; one past SND.MAX is not, even after a retransmission
// pulled SND.NXT back (the bound is the highest sequence sent).
#[test]
fn ack_bound_is_the_highest_sequence_sent() {
    let mut c = established();
    c.write(&pattern(0, 2 * MSS));
    let _ = c.output();
    c.advance(Duration::from_millis(200)); // RTO: snd_nxt goes back to snd_una
    let _ = c.output();
    send!(c, peer_ack(0, 2 * MSS as u32));
    assert_eq!(c.tcb.snd_una(), OUR_ISS + 1 + 2 * MSS as u32);
    recv_nothing!(c);
}

// RFC 9293 §3.10.7.4 (fifth, SYN-RECEIVED): the handshake's ACK must acknowledge exactly
// our SYN (SND.UNA < SEG.ACK =< SND.NXT), anything else draws a reset (syn_received.rs),
// and in SYN-SENT (syn_sent.rs). Here: an ACK for data we have not sent yet, on the
// handshake ACK, is refused the same way.
#[test]
fn handshake_ack_beyond_the_syn_is_reset() {
    let mut c = syn_received();
    send!(c, peer_ack(0, 5) => InputOutcome::SendReset);
    assert_eq!(c.state(), State::SynReceived);
}

// RFC 5961 §5.2 (blind data injection): data acknowledging bytes never sent is dropped
// and answered with an ACK, but only as a challenge ACK is, at most 10 a second: a
// flood of forged data must not make the connection answer every segment.
#[test]
fn acks_for_unsent_data_are_rate_limited() {
    let mut c = established();
    let mut answered = 0;
    for i in 0..100u32 {
        send!(c, peer_ack(i * 10, 5000).bytes(0, 10));
        answered += c.output().len();
    }
    assert_eq!(answered, 10);
    assert!(c.read_all().is_empty(), "the forged data was dropped");
    c.advance(Duration::from_secs(1));
    send!(c, peer_ack(0, 5000).bytes(0, 10));
    assert_eq!(c.output().len(), 1, "a new second, a new allowance");
}
