//! Out-of-order data (RFC 9293 §3.10.7.4: "Segments with higher beginning sequence numbers
//! SHOULD be held for later processing"), duplicates, and a FIN that arrives early.

use super::harness::*;

const W: u16 = RCVBUF as u16;

#[test]
fn out_of_order_data_is_held_then_delivered_in_order() {
    let mut c = established();
    send!(c, peer_ack(200, 0).bytes(200, 100));
    send!(c, peer_ack(100, 0).bytes(100, 100));
    assert_eq!(c.tcb.readable(), 0);
    assert_eq!(c.tcb.rcv_nxt(), PEER_ISS + 1);
    // Each was answered with a duplicate ACK for RCV.NXT; the window still counts from
    // RCV.NXT (held data sits inside it).
    recv!(c, our_ack(0, 0, W));
    send!(c, peer_ack(0, 0).bytes(0, 100));
    recv!(c, our_ack(0, 300, W - 300));
    assert_eq!(c.read_all(), pattern(0, 300));
}

// Duplicates of held data and of delivered data change nothing but draw an ACK.
#[test]
fn duplicates_are_harmless() {
    let mut c = established();
    send!(c, peer_ack(100, 0).bytes(100, 100));
    send!(c, peer_ack(100, 0).bytes(100, 100));
    recv!(c, our_ack(0, 0, W));
    send!(c, peer_ack(0, 0).bytes(0, 100));
    let _ = c.output();
    send!(c, peer_ack(0, 0).bytes(0, 200));
    recv!(c, our_ack(0, 200, W - 200));
    assert_eq!(c.read_all(), pattern(0, 200));
}

// Overlapping pieces in any order reassemble into the stream.
#[test]
fn overlapping_pieces_reassemble() {
    let mut c = established();
    for (from, n) in [
        (500, 300),
        (300, 300),
        (900, 100),
        (50, 400),
        (0, 60),
        (780, 150),
    ] {
        send!(c, peer_ack(from as u32, 0).bytes(from, n));
    }
    assert_eq!(c.read_all(), pattern(0, 1000));
    assert_eq!(c.tcb.rcv_nxt(), PEER_ISS + 1001);
    assert!(!c.tcb.rcvbuf().has_ooo());
}

// RFC 9293 §3.10.7.4 (eighth): "If the FIN bit is set, signal the user 'connection
// closing' ... advance RCV.NXT over the FIN" -- only once everything before it arrived
// (the FIN is at the end of the text, which "must be processed in sequence").
#[test]
fn fin_out_of_order_waits_for_the_gap() {
    let mut c = established();
    send!(c, peer_ack(100, 0).flags(F::FIN).bytes(100, 50));
    assert_eq!(c.state(), State::Established);
    assert!(!c.tcb.fin_received());
    recv!(c, our_ack(0, 0, W));
    send!(c, peer_ack(0, 0).bytes(0, 100));
    assert_eq!(c.state(), State::CloseWait);
    assert!(c.tcb.fin_received());
    recv!(c, our_ack(0, 151, W - 150));
    assert_eq!(c.read_all(), pattern(0, 150));
}

// A bare FIN ahead of missing data, filled in two steps.
#[test]
fn bare_fin_ahead_of_two_gaps() {
    let mut c = established();
    send!(c, peer_ack(300, 0).flags(F::FIN));
    send!(c, peer_ack(100, 0).bytes(100, 100));
    send!(c, peer_ack(0, 0).bytes(0, 100));
    assert_eq!(c.state(), State::Established);
    let _ = c.output();
    send!(c, peer_ack(200, 0).bytes(200, 100));
    assert_eq!(c.state(), State::CloseWait);
    recv!(c, our_ack(0, 301, W - 300));
}

// The same in FIN-WAIT-2: the early FIN leads to TIME-WAIT once the gap fills.
#[test]
fn fin_out_of_order_in_fin_wait_2() {
    let mut c = fin_wait_2();
    send!(c, peer_ack(10, 1).flags(F::FIN).bytes(10, 10));
    assert_eq!(c.state(), State::FinWait2);
    let _ = c.output();
    send!(c, peer_ack(0, 1).bytes(0, 10));
    assert_eq!(c.state(), State::TimeWait);
    recv!(c, our_ack(1, 21, W - 20));
}

// Data beyond the right edge of the window is trimmed (RFC 9293 §3.10.7.4: "segments
// ... trimming off any portions that lie outside the window").
#[test]
fn data_beyond_the_window_is_trimmed() {
    let mut c = established();
    // 100 bytes starting 50 before the right edge: 50 kept, out of order.
    let at = RCVBUF - 50;
    send!(c, peer_ack(at as u32, 0).bytes(at, 100));
    recv!(c, our_ack(0, 0, W));
    // Fill everything before it.
    let mut off = 0;
    while off < at {
        let n = MSS.min(at - off);
        send!(c, peer_ack(off as u32, 0).bytes(off, n));
        off += n;
    }
    assert_eq!(c.tcb.rcv_nxt(), PEER_ISS + 1 + RCVBUF as u32);
    assert_eq!(c.read_all(), pattern(0, RCVBUF));
}

// A peer sending every other byte: out-of-order ranges stop at `max_ooo_ranges` and
// held bytes at `max_ooo_bytes`; the rest is dropped and counted (the peer resends it),
// and the stream still reassembles once the holes fill.
#[test]
fn out_of_order_data_is_bounded_in_ranges_and_bytes() {
    let cfg = TcpConfig {
        max_ooo_ranges: 4,
        max_ooo_bytes: 300,
        ..cfg()
    };
    let mut c = established_with(cfg, peer_syn().ack(OUR_ISS + 1));
    let bounds = c.tcb.config().bounds.clone();
    for k in 1..=6u32 {
        send!(c, peer_ack(200 * k, 0).bytes(200 * k as usize, 1));
    }
    assert_eq!(c.tcb.rcvbuf().ooo_count(), 4);
    // Growing a held range past 300 bytes held is refused as well.
    send!(c, peer_ack(201, 0).bytes(201, 299));
    assert_eq!(c.tcb.rcvbuf().ooo_count(), 4);
    let counted = bounds.counters().snapshot();
    assert!(counted.contains(&("tcp.drop_ooo_ranges", 2)), "{counted:?}");
    assert!(counted.contains(&("tcp.drop_ooo_bytes", 1)), "{counted:?}");
    let _ = c.output();
    send!(c, peer_ack(0, 0).bytes(0, 1400));
    assert_eq!(c.read_all(), pattern(0, 1400));
}
