//! Keepalive (RFC 1122 §4.2.3.6): off by default, probes after an idle time, the
//! connection dropped when they go unanswered.

use super::harness::*;

const W: u16 = RCVBUF as u16;

fn ka() -> Keepalive {
    Keepalive {
        idle: Duration::from_secs(10),
        interval: Duration::from_secs(2),
        count: 3,
    }
}

fn with_keepalive() -> Conn {
    established_with(
        TcpConfig {
            keepalive: Some(ka()),
            ..cfg()
        },
        peer_syn().ack(OUR_ISS + 1),
    )
}

// RFC 1122 §4.2.3.6: "Keep-alive packets MUST only be sent when no data or acknowledgement
// packets have been received for the connection within an interval" and "MUST default to
// off".
#[test]
fn off_by_default() {
    let c = established();
    assert_eq!(c.tcb.poll_timeout(), None);
}

// RFC 1122 §4.2.3.6: "Such a segment generally contains SEG.SEQ = SND.NXT-1 and may or may
// not contain one garbage octet of data." Ours has no data; the peer must ACK it.
#[test]
fn probe_after_idle_and_answer_resets() {
    let mut c = with_keepalive();
    assert_eq!(c.fire(), Duration::from_secs(10));
    recv!(c, seg(OUR_ISS).ack(PEER_ISS + 1).win(W));
    recv_nothing!(c);
    send!(c, peer_ack(0, 0));
    recv_nothing!(c);
    // The answer restarts the idle period.
    assert_eq!(c.timer(TimerKind::Keepalive), Some(Duration::from_secs(10)));
}

// Unanswered probes: every `interval`, then the connection is dropped (RFC 1122: "the
// connection is to be aborted" -- we send a RST and report TimedOut).
#[test]
fn unanswered_probes_drop_the_connection() {
    let mut c = with_keepalive();
    let mut waits = Vec::new();
    for _ in 0..3 {
        waits.push(c.fire().as_secs());
        recv!(c, seg(OUR_ISS).ack(PEER_ISS + 1).win(W));
    }
    waits.push(c.fire().as_secs());
    assert_eq!(waits, vec![10, 2, 2, 2]);
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.tcb.error(), Some(TcpError::TimedOut));
    recv!(c, seg(OUR_ISS + 1).ack(PEER_ISS + 1).flags(F::RST));
}

// Traffic from the peer postpones the first probe.
#[test]
fn traffic_postpones_probes() {
    let mut c = with_keepalive();
    c.advance(Duration::from_secs(9));
    send!(c, peer_ack(0, 0).bytes(0, 10));
    assert_eq!(c.timer(TimerKind::Keepalive), Some(Duration::from_secs(10)));
}

// Enabling it on an open connection (SO_KEEPALIVE after connect).
#[test]
fn enable_at_run_time() {
    let mut c = established();
    c.tcb.set_keepalive(Some(ka()), c.now);
    assert_eq!(c.timer(TimerKind::Keepalive), Some(Duration::from_secs(10)));
    c.tcb.set_keepalive(None, c.now);
    assert_eq!(c.tcb.poll_timeout(), None);
}

// The other side: a keepalive probe from the peer (SEG.SEQ = RCV.NXT - 1) is old and
// draws an ACK (RFC 9293 §3.10.7.4 first step).
#[test]
fn peers_probe_is_answered() {
    let mut c = established();
    send!(c, seg(PEER_ISS).ack(OUR_ISS + 1).win(PEER_WIN));
    recv!(c, our_ack(0, 0, W));
    // With one garbage octet too.
    send!(c, seg(PEER_ISS).ack(OUR_ISS + 1).win(PEER_WIN).data(&[0]));
    recv!(c, our_ack(0, 0, W));
    assert_eq!(c.tcb.readable(), 0);
}
