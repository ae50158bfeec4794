//! Retransmission (RFC 6298): the RTO, its backoff, Karn's rule, SYN retries and the
//! connect timeout, giving up on data with a RST.

use super::harness::*;
use crate::tcp::rtt::RtoConfig;

const W: u16 = RCVBUF as u16;
const M: u32 = MSS as u32;

// RFC 6298 (5.4) "Retransmit the earliest segment that has not been acknowledged by the
// TCP receiver", (5.5) "The host MUST set RTO <- RTO * 2 ("back off the timer")", (5.6)
// "Start the retransmission timer, such that it expires after RTO seconds".
#[test]
fn rto_retransmits_and_backs_off() {
    let mut c = established();
    c.write(&pattern(0, 100));
    recv!(c, our_ack(0, 0, W).flags(F::PSH).bytes(0, 100));
    for rto_ms in [200u64, 400, 800, 1600, 3200] {
        assert_eq!(
            c.timer(TimerKind::Rexmt),
            Some(Duration::from_millis(rto_ms))
        );
        c.advance(Duration::from_millis(rto_ms - 1));
        recv_nothing!(c);
        c.advance(Duration::from_millis(1));
        recv!(c, our_ack(0, 0, W).flags(F::PSH).bytes(0, 100));
    }
    assert_eq!(c.tcb.stats().retransmits, 5);
    assert_eq!(c.tcb.stats().bytes_retrans, 500);
}

// RFC 6298 (2.2) and (2.3): "SRTT <- R, RTTVAR <- R/2, RTO <- SRTT + max (G, K*RTTVAR)",
// then "RTTVAR <- (1 - beta) * RTTVAR + beta * |SRTT - R'|, SRTT <- (1 - alpha) * SRTT +
// alpha * R'".
#[test]
fn rto_follows_the_samples() {
    let rto = RtoConfig {
        min: Duration::from_millis(10),
        ..RtoConfig::default()
    };
    let mut c = syn_sent_with(TcpConfig { rto, ..cfg() });
    c.advance(Duration::from_millis(10));
    send!(c, peer_syn().ack(OUR_ISS + 1));
    let _ = c.output();
    // R = 10 ms: SRTT 10, RTTVAR 5, RTO 10 + 4*5 = 30 ms.
    assert_eq!(c.tcb.rto(), Duration::from_millis(30));
    c.write(&pattern(0, 10));
    let _ = c.output();
    assert_eq!(c.timer(TimerKind::Rexmt), Some(Duration::from_millis(30)));
    c.advance(Duration::from_millis(20));
    send!(c, peer_ack(0, 10));
    // R' = 20: RTTVAR = 3/4*5 + 1/4*10 = 6.25, SRTT = 7/8*10 + 20/8 = 11.25,
    // RTO = 11.25 + 25 = 36.25 ms.
    assert_eq!(c.tcb.rtt().srtt(), Some(Duration::from_micros(11_250)));
    assert_eq!(c.tcb.rto(), Duration::from_micros(36_250));
}

// RFC 6298 §3 (Karn): "RTT samples MUST NOT be made using segments that were
// retransmitted"; and §5: the backed-off RTO stays until "a new RTT measurement is
// obtained (which can only happen when new data has been sent and acknowledged)".
#[test]
fn karn_no_sample_from_a_retransmission_and_backoff_kept() {
    let mut c = established();
    c.write(&pattern(0, 100));
    let _ = c.output();
    c.advance(Duration::from_millis(200));
    recv!(c, our_ack(0, 0, W).flags(F::PSH).bytes(0, 100));
    c.advance(Duration::from_millis(150));
    send!(c, peer_ack(0, 100));
    // No sample: SRTT is still the handshake's 10 ms.
    assert_eq!(c.tcb.rtt().srtt(), Some(Duration::from_millis(10)));
    // The next segment is timed with the backed-off RTO (400 ms).
    c.write(&pattern(100, 100));
    recv!(c, our_ack(100, 0, W).flags(F::PSH).bytes(100, 100));
    assert_eq!(c.timer(TimerKind::Rexmt), Some(Duration::from_millis(400)));
    // Its ACK is a valid sample (R = 50 ms): the RTO collapses back to the computed one.
    c.advance(Duration::from_millis(50));
    send!(c, peer_ack(0, 200));
    assert_eq!(c.tcb.rto(), Duration::from_millis(200));
    assert!(c.tcb.rtt().srtt() > Some(Duration::from_millis(10)));
}

// RFC 6298 (5.3): "When an ACK is received that acknowledges new data, restart the
// retransmission timer so that it will expire after RTO seconds (for the current value of
// RTO)."
#[test]
fn partial_ack_restarts_the_timer() {
    let mut c = established();
    c.tcb.set_nodelay(true);
    c.write(&pattern(0, 2 * MSS));
    assert_eq!(c.output().len(), 2);
    c.advance(Duration::from_millis(100));
    send!(c, peer_ack(0, M));
    assert_eq!(c.timer(TimerKind::Rexmt), Some(Duration::from_millis(200)));
    c.advance(Duration::from_millis(199));
    recv_nothing!(c);
    c.advance(Duration::from_millis(1));
    recv!(c, our_ack(M, 0, W).flags(F::PSH).bytes(MSS, MSS));
}

// RFC 5681 §3.1: "when a TCP sender detects segment loss using the retransmission timer
// ... the value of ssthresh MUST be set to no more than ... max (FlightSize / 2, 2*SMSS)"
// and "cwnd MUST be set to no more than the loss window, LW, which equals 1 full-sized
// segment". Then slow start resends what was outstanding (go-back-N).
#[test]
fn rto_collapses_cwnd_and_goes_back_n() {
    let mut c = established();
    c.tcb.set_nodelay(true);
    c.write(&pattern(0, 4 * MSS));
    assert_eq!(c.output().len(), 4);
    c.advance(Duration::from_millis(200));
    assert_eq!((c.tcb.ccv().cwnd, c.tcb.ccv().ssthresh), (M, 2 * M));
    recv!(c, our_ack(0, 0, W).bytes(0, MSS));
    send!(c, peer_ack(0, M));
    // Slow start, one segment per ACK after an RTO (RFC 3465 L = 1*SMSS).
    assert_eq!(c.tcb.ccv().cwnd, 2 * M);
    recv!(
        c,
        [
            our_ack(M, 0, W).bytes(MSS, MSS),
            our_ack(2 * M, 0, W).bytes(2 * MSS, MSS)
        ]
    );
    // The ACK for everything: the last segment need not be resent.
    send!(c, peer_ack(0, 4 * M));
    recv_nothing!(c);
    assert!(!c.tcb.timers().is_set(TimerKind::Rexmt));
}

// The connection gives up after `max_retransmits` expirations: RFC 9293 §3.8.3 R2, "the
// TCP implementation SHOULD close the connection", with a RST so the peer knows (as
// Linux's tcp_write_timeout -> tcp_done does not, but FreeBSD's tcp_drop does).
#[test]
fn data_retries_then_timed_out_with_reset() {
    let mut c = established_with(
        TcpConfig {
            max_retransmits: 3,
            ..cfg()
        },
        peer_syn().ack(OUR_ISS + 1),
    );
    c.write(&pattern(0, 100));
    let _ = c.output();
    let mut at = Vec::new();
    for _ in 0..3 {
        at.push(c.fire().as_millis());
        recv!(c, our_ack(0, 0, W).flags(F::PSH).bytes(0, 100));
    }
    at.push(c.fire().as_millis());
    assert_eq!(at, vec![200, 400, 800, 1600]);
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.tcb.error(), Some(TcpError::TimedOut));
    recv!(c, seg(OUR_ISS + 101).ack(PEER_ISS + 1).flags(F::RST));
    assert!(c.tcb.is_dead());
    assert_eq!(c.tcb.send(b"x"), Err(UserError::Failed(TcpError::TimedOut)));
}

// SYN retransmission (RFC 6298 (5.5) doubling from the 1 s initial RTO), then TimedOut
// without a RST: nothing was synchronized.
#[test]
fn syn_retries_then_timed_out() {
    let mut c = Conn::connect(TcpConfig {
        syn_retries: 2,
        ..cfg()
    });
    recv!(c, our_syn());
    assert_eq!(c.fire(), Duration::from_secs(1));
    recv!(c, our_syn());
    assert_eq!(c.fire(), Duration::from_secs(2));
    recv!(c, our_syn());
    assert_eq!(c.fire(), Duration::from_secs(4));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.tcb.error(), Some(TcpError::TimedOut));
    recv_nothing!(c);
    assert!(c.tcb.is_dead());
}

// The connect timeout bounds the whole attempt, whatever the retries left.
#[test]
fn connect_timeout() {
    let mut c = Conn::connect(TcpConfig {
        connect_timeout: Duration::from_millis(2500),
        ..cfg()
    });
    recv!(c, our_syn());
    c.advance(Duration::from_secs(1));
    recv!(c, our_syn());
    c.advance(Duration::from_millis(1499));
    assert_eq!(c.state(), State::SynSent);
    c.advance(Duration::from_millis(1));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.tcb.error(), Some(TcpError::TimedOut));
    recv_nothing!(c);
}

// A SYN,ACK answered after a retransmitted SYN: no RTT sample (Karn), IW of one segment
// (RFC 5681 §3.1) and RTO 3 s (RFC 6298 (5.7)).
#[test]
fn late_syn_ack_after_syn_retransmission() {
    let mut c = syn_sent();
    c.advance(Duration::from_secs(1));
    recv!(c, our_syn());
    c.advance(Duration::from_millis(100));
    send!(c, peer_syn().ack(OUR_ISS + 1));
    recv!(c, our_ack(0, 0, W));
    assert_eq!(c.tcb.rtt().srtt(), None);
    assert_eq!(c.tcb.ccv().cwnd, M);
    assert_eq!(c.tcb.rto(), Duration::from_secs(3));
    assert!(!c.tcb.timers().is_set(TimerKind::Rexmt));
}

// The passive side retransmits its SYN,ACK with the same limit.
#[test]
fn syn_ack_retries_then_gives_up() {
    let mut c = Conn::accept(
        TcpConfig {
            syn_retries: 1,
            ..cfg()
        },
        peer_syn(),
    );
    recv!(c, our_syn().ack(PEER_ISS + 1));
    assert_eq!(c.fire(), Duration::from_secs(1));
    recv!(c, our_syn().ack(PEER_ISS + 1));
    assert_eq!(c.fire(), Duration::from_secs(2));
    assert_eq!(c.state(), State::Closed);
    recv_nothing!(c);
}
