//! Zero windows: the persist timer and its probes on the sending side (RFC 9293 §3.8.6.1,
//! RFC 1122 §4.2.2.17), and answering probes on the receiving side.

use super::harness::*;

const W: u16 = RCVBUF as u16;

/// Established, the peer's window closed, 100 bytes waiting.
fn closed_window() -> Conn {
    let mut c = established();
    send!(c, peer_ack(0, 0).win(0));
    c.write(&pattern(0, 100));
    recv_nothing!(c);
    c
}

// RFC 9293 §3.8.6.1: "The sending TCP peer must regularly transmit at least one octet of
// new data (if available), or retransmit to the receiving TCP peer even if the send
// window is zero, in order to "probe" the window." RFC 1122 §4.2.2.17: "The transmitting
// host SHOULD send the first zero-window probe when a zero window has existed for the
// retransmission timeout period, and SHOULD increase exponentially the interval between
// successive probes."
#[test]
fn zero_window_probe_with_backoff() {
    let mut c = closed_window();
    assert_eq!(
        c.timer(TimerKind::Persist),
        Some(Duration::from_millis(200))
    );
    assert!(!c.tcb.timers().is_set(TimerKind::Rexmt));
    for ms in [200u64, 400, 800, 1600, 3200] {
        assert_eq!(c.fire(), Duration::from_millis(ms));
        // Always the same first byte: the probe is refused, SND.UNA does not move.
        recv!(c, our_ack(0, 0, W).bytes(0, 1));
        recv_nothing!(c);
        send!(c, peer_ack(0, 0).win(0));
        recv_nothing!(c);
    }
}

// RFC 1122 §4.2.2.17: "A TCP MAY keep its offered receive window closed indefinitely. As
// long as the receiving TCP continues to send acknowledgments in response to the probe
// segments, the sending TCP MUST allow the connection to stay open." Probes are neither
// retransmissions that count toward giving up nor duplicate ACKs for fast retransmit.
#[test]
fn a_window_closed_for_long_keeps_the_connection() {
    let mut c = established_with(
        TcpConfig {
            max_retransmits: 3,
            ..cfg()
        },
        peer_syn().ack(OUR_ISS + 1),
    );
    send!(c, peer_ack(0, 0).win(0));
    c.write(&pattern(0, 100));
    recv_nothing!(c);
    let mut waits = Vec::new();
    for _ in 0..12 {
        waits.push(c.fire().as_millis() as u64);
        recv!(c, our_ack(0, 0, W).bytes(0, 1));
        send!(c, peer_ack(0, 0).win(0));
        recv_nothing!(c);
    }
    assert_eq!(c.state(), State::Established);
    // The interval doubles up to 60 s.
    assert_eq!(
        &waits[..],
        &[200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000, 60000]
    );
    assert_eq!(c.tcb.recovery(), xstack_cc::Recovery::Open);
}

// The window opens: data flows at once, from SND.UNA, and the persist timer stops.
#[test]
fn window_update_ends_persist() {
    let mut c = closed_window();
    c.fire();
    recv!(c, our_ack(0, 0, W).bytes(0, 1));
    send!(c, peer_ack(0, 0).win(1000));
    recv!(c, our_ack(0, 0, W).flags(F::PSH).bytes(0, 100));
    assert!(!c.tcb.timers().is_set(TimerKind::Persist));
    assert_eq!(c.timer(TimerKind::Rexmt), Some(Duration::from_millis(200)));
    send!(c, peer_ack(0, 100).win(1000));
    assert!(c.tcb.poll_timeout().is_none());
}

// A probe the receiver took (its window had opened by a byte): the next probe carries the
// next byte.
#[test]
fn accepted_probe_byte_advances() {
    let mut c = closed_window();
    c.fire();
    recv!(c, our_ack(0, 0, W).bytes(0, 1));
    send!(c, peer_ack(0, 1).win(0));
    recv_nothing!(c);
    assert_eq!(c.tcb.snd_una(), OUR_ISS + 2);
    c.fire();
    recv!(c, our_ack(1, 0, W).bytes(1, 1));
}

// The window shrinks to zero while data is in flight and nothing acknowledges it: FreeBSD
// tcp_output "If window shrank to 0, cancel pending retransmit, pull snd_nxt back to
// (closed) window, and set the persist timer". Probing, not retransmitting into a closed
// window until the connection times out.
#[test]
fn window_closing_with_data_in_flight_switches_to_probing() {
    let mut c = established_with(
        TcpConfig {
            max_retransmits: 3,
            ..cfg()
        },
        peer_syn().ack(OUR_ISS + 1),
    );
    c.write(&pattern(0, 100));
    recv!(c, our_ack(0, 0, W).flags(F::PSH).bytes(0, 100));
    send!(c, peer_ack(0, 0).win(0));
    for _ in 0..8 {
        c.fire();
        for s in c.output() {
            assert_eq!(s.seq, OUR_ISS + 1);
            assert!(s.payload.len() <= 1, "no data into a closed window: {s:?}");
        }
        send!(c, peer_ack(0, 0).win(0));
    }
    assert_eq!(c.state(), State::Established);
    send!(c, peer_ack(0, 0).win(5000));
    recv!(c, our_ack(0, 0, W).flags(F::PSH).bytes(0, 100));
}

// Receiving side. RFC 9293 §3.8.6.1: "When zero window probes are received, the receiving
// TCP MUST answer with the current window"; §3.10.7.4: "If the RCV.WND is zero, no segments
// will be acceptable, but special allowance should be made to accept valid ACKs, URGs, and
// RSTs."
#[test]
fn probe_into_our_closed_window_is_answered_and_its_ack_taken() {
    let mut c = established();
    c.write(&pattern(0, 100));
    let _ = c.output();
    // The peer fills our 16 KiB window (the application does not read).
    let mut off = 0;
    while off < RCVBUF {
        let n = MSS.min(RCVBUF - off);
        send!(c, peer_ack(off as u32, 0).bytes(off, n));
        off += n;
    }
    recv!(c, our_ack(100, RCVBUF as u32, 0));
    // A probe whose ACK field acknowledges our data: the byte is refused, the ACK is
    // taken, and the answer carries the (still zero) window.
    send!(c, peer_ack(RCVBUF as u32, 100).bytes(RCVBUF, 1));
    recv!(c, our_ack(100, RCVBUF as u32, 0));
    assert_eq!(c.tcb.snd_una(), OUR_ISS + 101);
    assert_eq!(c.tcb.readable(), RCVBUF);
    // Once the application reads, the window reopens and the next probe is taken.
    assert_eq!(c.read_all().len(), RCVBUF);
    recv!(c, our_ack(100, RCVBUF as u32, W));
    send!(c, peer_ack(RCVBUF as u32, 100).bytes(RCVBUF, 1));
    assert_eq!(c.tcb.readable(), 1);
}

// A zero-window peer of a live connection is visible in `TcpInfo`: since when the
// window is closed and how many probes went unanswered; both clear when it opens.
#[test]
fn tcp_info_reports_a_zero_window_peer() {
    let mut c = closed_window();
    let since = c.tcb.info().snd_zero_window_since_ms;
    assert!(since.is_some());
    for _ in 0..3 {
        c.fire();
        let _ = c.output();
        send!(c, peer_ack(0, 0).win(0));
    }
    let info = c.tcb.info();
    assert_eq!(
        (info.snd_zero_window_since_ms, info.zero_window_probes),
        (since, 3)
    );
    send!(c, peer_ack(0, 0).win(1000));
    let info = c.tcb.info();
    assert_eq!(
        (info.snd_zero_window_since_ms, info.zero_window_probes),
        (None, 0)
    );
}

// Linux's tcp_orphan_retries: an orphaned connection whose peer keeps its window closed
// (so our FIN never goes out) is dropped with a RST after `orphan_persist_probes`
// probes, instead of staying in FIN-WAIT-1 forever; a live one keeps probing.
#[test]
fn an_orphan_gives_up_on_a_zero_window_after_the_probe_bound() {
    let mut c = closed_window();
    c.tcb.close(c.now);
    c.tcb.set_orphaned(c.now);
    assert_eq!(c.state(), State::FinWait1);
    let bounds = c.tcb.config().bounds.clone();
    let probes = c.tcb.config().orphan_persist_probes;
    assert_eq!(probes, 8);
    for _ in 0..probes {
        c.fire();
        recv!(c, our_ack(0, 0, W).bytes(0, 1));
        send!(c, peer_ack(0, 0).win(0));
    }
    assert_eq!(c.state(), State::FinWait1);
    c.fire();
    recv!(c, our_ack(1, 0, 0).flags(F::RST | F::ACK));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.tcb.error(), Some(TcpError::TimedOut));
    let counted = bounds.counters().snapshot();
    assert!(
        counted.contains(&("tcp.orphan_persist_dropped", 1)),
        "{counted:?}"
    );
    assert_eq!(bounds.load(crate::tcp::bounds::Gauge::Orphans), 0);
}

// `max_orphans`: a connection let go of while the stack holds that many orphans is
// reset at once; one that closes gives its place back.
#[test]
fn orphans_beyond_the_stack_bound_are_reset() {
    use crate::tcp::bounds::Gauge;
    let cfg = TcpConfig {
        max_orphans: 1,
        ..cfg()
    };
    let mut a = established_with(cfg.clone(), peer_syn().ack(OUR_ISS + 1));
    let bounds = a.tcb.config().bounds.clone();
    let mut b = established_with(
        TcpConfig {
            bounds: bounds.clone(),
            ..cfg
        },
        peer_syn().ack(OUR_ISS + 1),
    );
    a.write(&pattern(0, 100));
    a.tcb.close(a.now);
    a.tcb.set_orphaned(a.now);
    assert_eq!(
        (a.state(), bounds.load(Gauge::Orphans)),
        (State::FinWait1, 1)
    );
    b.tcb.close(b.now);
    b.tcb.set_orphaned(b.now);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.tcb.error(), Some(TcpError::Aborted));
    recv!(b, our_ack(0, 0, 0).flags(F::RST | F::ACK));
    let counted = bounds.counters().snapshot();
    assert!(
        counted.contains(&("tcp.orphans_reset_limit", 1)),
        "{counted:?}"
    );
    a.tcb.abort();
    assert_eq!(bounds.load(Gauge::Orphans), 0);
}

// FreeBSD tcp_timer_persist: "If the user has closed the socket then drop a persisting
// connection after a much reduced timeout" (TCPTV_PERSMAX: 60 s without a segment from
// the peer). Found by the fuzzer: an orphan in LAST-ACK, its peer's window shut and the
// peer gone, probed forever and never left the table.
#[test]
fn a_closed_connection_stops_probing_a_silent_peer() {
    let mut c = closed_window();
    let t0 = c.now;
    c.tcb.close(c.now);
    recv_nothing!(c);
    let mut rst = false;
    for _ in 0..20 {
        if c.state() == State::Closed {
            break;
        }
        c.fire();
        rst |= c.output().iter().any(|s| s.flags.contains(F::RST));
    }
    assert_eq!(c.state(), State::Closed);
    assert!(rst, "the peer is told with a RST");
    let idle = c.now - t0;
    assert!(
        idle >= Duration::from_secs(60) && idle < Duration::from_secs(120),
        "{idle:?}"
    );
}

// RFC 1122 §4.2.2.17 still holds once closed: a peer that answers the probes keeps the
// connection (its silence, not the closed window, ends it).
#[test]
fn a_closed_connection_keeps_probing_a_peer_that_answers() {
    let mut c = closed_window();
    let t0 = c.now;
    c.tcb.close(c.now);
    for _ in 0..16 {
        c.fire();
        recv!(c, our_ack(0, 0, W).bytes(0, 1));
        send!(c, peer_ack(0, 0).win(0));
    }
    assert_eq!(c.state(), State::FinWait1);
    assert!(c.now - t0 > Duration::from_secs(300));
}

// Found by the fuzzer: the window opened while a zero-window probe's byte was in flight.
// The persist timer stopped and nothing armed the retransmission timer (a probe does
// not), so with the peer silent the byte was never sent again and the connection --
// closed by then, its FIN waiting behind a window that shut again -- stayed in LAST-ACK
// with no timer at all. FreeBSD's tcp_output arms the retransmission timer for
// outstanding data whenever the persist timer is off.
#[test]
fn a_probe_in_flight_when_the_window_opens_is_retransmitted() {
    let mut c = established();
    send!(c, peer_ack(0, 0).win(0));
    c.write(&pattern(0, 1));
    recv_nothing!(c);
    c.fire();
    recv!(c, our_ack(0, 0, W).flags(F::PSH).bytes(0, 1));
    // The window opens; the probe is not acknowledged.
    send!(c, peer_ack(0, 0).win(1000));
    let _ = c.output();
    assert!(
        c.tcb.timers().is_set(TimerKind::Rexmt),
        "the byte in flight has a timer"
    );
    c.fire();
    let again = c.output();
    assert!(
        again
            .iter()
            .any(|s| s.seq == OUR_ISS + 1 && s.payload.len() == 1),
        "retransmitted: {again:?}"
    );
}
