//! TIME-WAIT (RFC 9293 §3.6, §3.10.7.4, §3.10.8): 2*MSL, retransmitted FINs.

use super::harness::*;

const W: u16 = RCVBUF as u16;

// RFC 9293 §3.10.8 "Time-Wait Timeout: If the time-wait timeout expires on a connection,
// delete the TCB, enter the CLOSED state, and return."
#[test]
fn two_msl_expiry_closes() {
    let mut c = time_wait();
    c.advance(Duration::from_secs(59));
    assert_eq!(c.state(), State::TimeWait);
    c.advance(Duration::from_secs(1));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.tcb.error(), None);
    assert!(c.tcb.is_dead());
    recv_nothing!(c);
}

// The duration is configurable (TcpConfig::time_wait).
#[test]
fn two_msl_is_configurable() {
    let mut c = established_with(
        TcpConfig {
            time_wait: Duration::from_secs(2),
            ..cfg()
        },
        peer_syn().ack(OUR_ISS + 1),
    );
    c.tcb.close(c.now);
    let _ = c.output();
    send!(c, peer_ack(0, 1).flags(F::FIN));
    assert_eq!(c.state(), State::TimeWait);
    assert_eq!(c.fire(), Duration::from_secs(2));
    assert_eq!(c.state(), State::Closed);
}

// RFC 9293 §3.10.7.4 (fifth, TIME-WAIT): "The only thing that can arrive in this state is
// a retransmission of the remote FIN. Acknowledge it, and restart the 2 MSL timeout."
#[test]
fn retransmitted_fin_is_acknowledged_and_restarts_2msl() {
    let mut c = time_wait();
    c.advance(Duration::from_secs(30));
    send!(c, peer_ack(0, 1).flags(F::FIN));
    recv!(c, our_ack(1, 1, W));
    assert_eq!(c.state(), State::TimeWait);
    assert_eq!(c.timer(TimerKind::TwoMsl), Some(Duration::from_secs(60)));
    c.advance(Duration::from_secs(59));
    assert_eq!(c.state(), State::TimeWait);
}

// Anything else acceptable in TIME-WAIT is ignored; an old duplicate is acknowledged
// without restarting the timer.
#[test]
fn other_segments_do_not_restart_2msl() {
    let mut c = time_wait();
    c.advance(Duration::from_secs(30));
    send!(c, peer_ack(1, 1));
    recv_nothing!(c);
    send!(c, peer_ack(0, 1).bytes(0, 10));
    recv!(c, our_ack(1, 1, W));
    assert_eq!(c.timer(TimerKind::TwoMsl), Some(Duration::from_secs(30)));
}

// RFC 9293 §3.10.2 SEND, TIME-WAIT: "Return 'error: connection closing'".
#[test]
fn send_fails() {
    let mut c = time_wait();
    assert_eq!(c.tcb.send(b"x"), Err(UserError::SendClosed));
}

// RFC 9293 §3.10.7.4 (second, TIME-WAIT): "If the RST bit is set, then enter the CLOSED
// state, delete the TCB, and return."
#[test]
fn reset_closes() {
    let mut c = time_wait();
    send!(c, seg(PEER_ISS + 2).flags(F::RST));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.tcb.error(), None);
}

// A SYN in TIME-WAIT is challenged like in any synchronized state (RFC 5961 §4.2).
#[test]
fn syn_is_challenged() {
    let mut c = time_wait();
    send!(c, seg(PEER_ISS + 100_000).flags(F::SYN).win(PEER_WIN));
    recv!(c, our_ack(1, 1, W));
    assert_eq!(c.state(), State::TimeWait);
}

/// Through FIN-WAIT-2 into TIME-WAIT with `cfg`; returns the ACK of the peer's FIN.
fn into_time_wait(cfg: TcpConfig) -> (Conn, Vec<Seg>) {
    let mut c = established_with(cfg, peer_syn().ack(OUR_ISS + 1));
    c.tcb.close(c.now);
    recv!(c, our_ack(0, 0, W).flags(F::FIN));
    send!(c, peer_ack(0, 1));
    send!(c, peer_ack(0, 1).flags(F::FIN));
    assert_eq!(c.state(), State::TimeWait);
    let out = c.output();
    (c, out)
}

// Linux's tcp_max_tw_buckets: beyond `max_time_wait` connections in TIME-WAIT, one more
// still acknowledges the peer's FIN, then closes at once (counted); a connection that
// leaves TIME-WAIT gives its place back.
#[test]
fn time_wait_beyond_the_stack_bound_closes_at_once() {
    use crate::tcp::bounds::Gauge;
    let cfg = TcpConfig {
        max_time_wait: 1,
        ..cfg()
    };
    let (mut a, out) = into_time_wait(cfg.clone());
    assert_eq!(out, vec![our_ack(1, 1, W)]);
    let bounds = a.tcb.config().bounds.clone();
    assert_eq!(bounds.load(Gauge::TimeWait), 1);
    let (mut b, out) = into_time_wait(TcpConfig {
        bounds: bounds.clone(),
        ..cfg
    });
    assert_eq!(out, vec![our_ack(1, 1, W)], "the FIN is still acknowledged");
    b.advance(Duration::ZERO);
    assert_eq!(b.state(), State::Closed);
    assert!(b.tcb.is_dead());
    let counted = bounds.counters().snapshot();
    assert!(
        counted.contains(&("tcp.time_wait_refused_limit", 1)),
        "{counted:?}"
    );
    a.advance(Duration::from_secs(60));
    assert_eq!(a.state(), State::Closed);
    assert_eq!(bounds.load(Gauge::TimeWait), 0);
}
