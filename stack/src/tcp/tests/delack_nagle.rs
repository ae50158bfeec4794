//! The ACK policy (RFC 9293 §3.8.6.3, RFC 5681 §4.2) and Nagle (RFC 9293 §3.7.4, RFC 896).

use super::harness::*;

const W: u16 = RCVBUF as u16;
const M: u32 = MSS as u32;

// RFC 5681 §4.2: "an ACK SHOULD be generated for at least every second full-sized segment".
#[test]
fn every_second_full_segment_is_acknowledged_at_once() {
    let mut c = established();
    send!(c, peer_ack(0, 0).bytes(0, MSS));
    recv_nothing!(c);
    send!(c, peer_ack(M, 0).bytes(MSS, MSS));
    recv!(c, our_ack(0, 2 * M, W - 2 * M as u16));
    assert!(!c.tcb.timers().is_set(TimerKind::Delack));
    send!(c, peer_ack(2 * M, 0).bytes(2 * MSS, MSS));
    recv_nothing!(c);
    send!(c, peer_ack(3 * M, 0).bytes(3 * MSS, MSS));
    recv!(c, our_ack(0, 4 * M, W - 4 * M as u16));
}

// RFC 9293 §3.8.6.3: "an ACK should not be excessively delayed; in particular, the delay
// MUST be less than 0.5 seconds". Ours is 40 ms (configurable).
#[test]
fn a_lone_segment_is_acknowledged_after_the_delayed_ack_timeout() {
    let mut c = established();
    send!(c, peer_ack(0, 0).flags(F::PSH).bytes(0, 100));
    recv_nothing!(c);
    assert_eq!(c.timer(TimerKind::Delack), Some(Duration::from_millis(40)));
    c.advance(Duration::from_millis(39));
    recv_nothing!(c);
    c.advance(Duration::from_millis(1));
    recv!(c, our_ack(0, 100, W - 100));
    // A second segment inside the delay does not push the deadline back.
    send!(c, peer_ack(100, 0).bytes(100, 10));
    c.advance(Duration::from_millis(20));
    send!(c, peer_ack(110, 0).bytes(110, 10));
    assert_eq!(c.timer(TimerKind::Delack), Some(Duration::from_millis(20)));
}

#[test]
fn delayed_ack_timeout_is_configurable() {
    let mut c = established_with(
        TcpConfig {
            delack: Duration::from_millis(5),
            ..cfg()
        },
        peer_syn().ack(OUR_ISS + 1),
    );
    send!(c, peer_ack(0, 0).bytes(0, 100));
    assert_eq!(c.fire(), Duration::from_millis(5));
    recv!(c, our_ack(0, 100, W - 100));
}

// Data we send carries the pending ACK: no separate ACK after it.
#[test]
fn delayed_ack_rides_on_outgoing_data() {
    let mut c = established();
    send!(c, peer_ack(0, 0).bytes(0, 100));
    c.write(&pattern(0, 10));
    recv!(c, our_ack(0, 100, W - 100).flags(F::PSH).bytes(0, 10));
    assert!(!c.tcb.timers().is_set(TimerKind::Delack));
    recv_nothing!(c);
}

// RFC 5681 §4.2: "an immediate ACK SHOULD be generated when an out-of-order segment
// arrives" and §3.2: "a TCP receiver SHOULD send an immediate ACK when the incoming segment
// fills in all or part of a gap in the sequence space."
#[test]
fn out_of_order_and_gap_filling_segments_are_acknowledged_at_once() {
    let mut c = established();
    send!(c, peer_ack(M, 0).bytes(MSS, MSS));
    recv!(c, our_ack(0, 0, W));
    send!(c, peer_ack(3 * M, 0).bytes(3 * MSS, MSS));
    recv!(c, our_ack(0, 0, W));
    // Fills the first gap: ACK at once, up to the second gap.
    send!(c, peer_ack(0, 0).bytes(0, MSS));
    recv!(c, our_ack(0, 2 * M, W - 2 * M as u16));
    // Fills the second gap.
    send!(c, peer_ack(2 * M, 0).bytes(2 * MSS, MSS));
    recv!(c, our_ack(0, 4 * M, W - 4 * M as u16));
    assert_eq!(c.read_all(), pattern(0, 4 * MSS));
}

// RFC 9293 §3.7.4 (Nagle): "If there is unacknowledged data (i.e., SND.NXT > SND.UNA), then
// the sending TCP endpoint buffers all user data (regardless of the PSH bit) until the
// outstanding data has been acknowledged or until the TCP endpoint can send a full-sized
// segment (Eff.snd.MSS bytes)".
#[test]
fn nagle_holds_small_segments_while_data_is_in_flight() {
    let mut c = established();
    c.write(&pattern(0, 10));
    recv!(c, our_ack(0, 0, W).flags(F::PSH).bytes(0, 10));
    c.write(&pattern(10, 10));
    recv_nothing!(c);
    c.write(&pattern(20, 10));
    recv_nothing!(c);
    send!(c, peer_ack(0, 10));
    recv!(c, our_ack(10, 0, W).flags(F::PSH).bytes(10, 20));
}

// ... "or until the TCP endpoint can send a full-sized segment".
#[test]
fn nagle_lets_full_segments_through() {
    let mut c = established();
    c.write(&pattern(0, 10));
    let _ = c.output();
    c.write(&pattern(10, MSS + 5));
    recv!(c, our_ack(10, 0, W).bytes(10, MSS));
    recv_nothing!(c);
}

// RFC 9293 §3.7.4: "A TCP implementation SHOULD implement the Nagle algorithm ... However,
// there MUST be a way for an application to disable the Nagle algorithm on an individual
// connection." (TCP_NODELAY)
#[test]
fn nodelay_sends_small_segments_at_once() {
    let mut c = established();
    c.tcb.set_nodelay(true);
    c.write(&pattern(0, 10));
    recv!(c, our_ack(0, 0, W).flags(F::PSH).bytes(0, 10));
    c.write(&pattern(10, 10));
    recv!(c, our_ack(10, 0, W).flags(F::PSH).bytes(10, 10));
}

// Turning nodelay on releases what Nagle held (on the next output).
#[test]
fn nodelay_releases_held_data() {
    let mut c = established();
    c.write(&pattern(0, 10));
    let _ = c.output();
    c.write(&pattern(10, 10));
    recv_nothing!(c);
    c.tcb.set_nodelay(true);
    recv!(c, our_ack(10, 0, W).flags(F::PSH).bytes(10, 10));
}

// A FIN does not wait for Nagle: closing flushes the small tail with the FIN.
#[test]
fn close_flushes_the_tail_past_nagle() {
    let mut c = established();
    c.write(&pattern(0, 10));
    let _ = c.output();
    c.write(&pattern(10, 10));
    recv_nothing!(c);
    c.tcb.close(c.now);
    recv!(c, our_ack(10, 0, W).flags(F::PSH | F::FIN).bytes(10, 10));
}
