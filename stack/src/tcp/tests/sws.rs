//! Silly window syndrome avoidance (RFC 9293 §3.8.6.2), both sides, and window updates
//! after the application reads.

use super::harness::*;

const M: u32 = MSS as u32;

/// Established, the peer filled `n` bytes of our window (the application has not read).
fn filled(n: usize) -> Conn {
    let mut c = established();
    let mut off = 0;
    while off < n {
        let k = MSS.min(n - off);
        send!(c, peer_ack(off as u32, 0).bytes(off, k));
        off += k;
    }
    let _ = c.output();
    c
}

// RFC 9293 §3.8.6.2.2: "the receiver SHOULD NOT increase the window until it can be
// increased by at least min(fraction*RCV.BUFF, Eff.snd.MSS)" -- but it never shrinks
// what it promised (§3.8.6.2.2: "the window should not be shrunk").
#[test]
fn receiver_does_not_advertise_a_tiny_window() {
    let mut c = filled(RCVBUF);
    assert_eq!(c.tcb.rcv_adv(), PEER_ISS + 1 + RCVBUF as u32);
    // Reading 500 bytes frees 500: less than an MSS and under a quarter of the buffer.
    let mut b = vec![0u8; 500];
    assert_eq!(c.tcb.recv(&mut b), Ok(500));
    assert!(!c.tcb.window_update_wanted());
    recv_nothing!(c);
    // A probe byte fits in the freed space and is taken; its (delayed) ACK still
    // advertises a zero window, not 499.
    send!(c, peer_ack(RCVBUF as u32, 0).bytes(RCVBUF, 1));
    recv_nothing!(c);
    c.advance(Duration::from_millis(40));
    recv!(c, our_ack(0, RCVBUF as u32 + 1, 0));
}

// Window updates after reads (BSD's rule): sent once the window grew by two segments or
// half the buffer since last advertised.
#[test]
fn window_update_after_reading_two_segments() {
    let mut c = filled(RCVBUF);
    let mut b = vec![0u8; 2 * MSS - 1];
    c.tcb.recv(&mut b).unwrap();
    assert!(!c.tcb.window_update_wanted());
    recv_nothing!(c);
    c.tcb.recv(&mut b[..1]).unwrap();
    assert!(c.tcb.window_update_wanted());
    recv!(c, our_ack(0, RCVBUF as u32, 2 * M as u16));
    assert!(!c.tcb.window_update_wanted());
    assert_eq!(c.tcb.rcv_adv(), PEER_ISS + 1 + RCVBUF as u32 + 2 * M);
}

// A receiver that was promised-to keeps its right edge when data arrives (the window only
// shrinks by what was received).
#[test]
fn advertised_right_edge_never_moves_left() {
    let mut c = filled(RCVBUF - 1000);
    // 1000 bytes of window left: less than an MSS, but it was promised.
    send!(c, peer_ack(RCVBUF as u32 - 1000, 0).bytes(0, 0));
    assert_eq!(c.tcb.rcv_window(), 1000);
}

// RFC 9293 §3.8.6.2.1, the sender: send only "(1) if a maximum-sized segment can be sent
// ... (2) or if the data is pushed and all queued data can be sent now ... (3) or if at
// least a fraction Fs of the maximum window can be sent ... (4) or if the data is PUSHed
// and the override timeout occurs." Fs = 1/2.
#[test]
fn sender_waits_for_a_useful_window() {
    let mut c = established();
    send!(c, peer_ack(0, 0).win(500));
    c.write(&pattern(0, 2000));
    // 500 bytes fit: not a full segment, not all the data, not half of the 65535 the peer
    // once offered.
    recv_nothing!(c);
    // (4): the override timeout (the persist timer) sends what fits.
    assert_eq!(c.fire(), Duration::from_millis(200));
    recv!(c, our_ack(0, 0, RCVBUF as u16).bytes(0, 500));
    // The window opens to a full segment: sent at once.
    send!(c, peer_ack(0, 500).win(2000));
    recv!(c, our_ack(500, 0, RCVBUF as u16).bytes(500, MSS));
}

// (2): all the queued data fits -- sent even though it is small.
#[test]
fn sender_sends_everything_that_fits() {
    let mut c = established();
    send!(c, peer_ack(0, 0).win(500));
    c.write(&pattern(0, 400));
    recv!(c, our_ack(0, 0, RCVBUF as u16).flags(F::PSH).bytes(0, 400));
}

// (3): at least half the largest window the peer ever offered.
#[test]
fn sender_sends_half_the_max_window() {
    let mut c = syn_sent();
    send!(c, peer_syn().ack(OUR_ISS + 1).win(1000));
    let _ = c.output();
    send!(c, peer_ack(0, 0).win(600));
    c.write(&pattern(0, 2000));
    recv!(c, our_ack(0, 0, RCVBUF as u16).bytes(0, 600));
}

// RCV.WND bookkeeping: data the peer sent past the edge we advertised (room had opened,
// no update was due yet) puts RCV.NXT beyond `rcv_adv`. The window must then be the free
// space, not the wrapped distance to the old edge -- which would make every sequence
// number "in window" (RFC 5961 §3.2: an RST far outside must be silently dropped).
#[test]
fn data_past_the_advertised_edge_does_not_open_the_window_wide() {
    let mut c = filled(RCVBUF);
    let mut b = vec![0u8; 1000];
    c.tcb.recv(&mut b).unwrap();
    send!(c, peer_ack(RCVBUF as u32, 0).bytes(RCVBUF, 1000));
    assert_eq!(c.tcb.rcv_nxt(), c.tcb.rcv_adv() + 1000);
    // Before our (delayed) ACK re-advertises the edge:
    let far = c.tcb.rcv_nxt() + 100_000;
    send!(c, seg(far).flags(F::RST));
    recv_nothing!(c);
    send!(c, seg(far).ack(OUR_ISS + 1).win(PEER_WIN).bytes(0, 10));
    recv!(c, our_ack(0, RCVBUF as u32 + 1000, 0));
    assert_eq!(c.state(), State::Established);
    assert_eq!(c.tcb.stats().challenge_acks, 0);
}

// Found by the fuzzer: SO_RCVBUF set to 0 on an established connection with nothing
// buffered made output loop forever: with a zero capacity, "half the buffer" is 0, so a
// window update that opens nothing was due on every poll (a million ACKs at one instant).
#[test]
fn a_receive_buffer_shrunk_to_nothing_sends_no_endless_updates() {
    for n in [0, 1, 100] {
        let mut c = established();
        c.tcb.set_buffer_sizes(None, Some(n));
        let out = c.output();
        assert!(out.len() <= 1, "rcvbuf {n}: {} segments", out.len());
        assert!(c.output().is_empty(), "rcvbuf {n}: nothing more");
    }
}

// Found by the fuzzer: with window scaling, a receive buffer set smaller than one unit
// of the scale (here 1 byte, shift 3) made a window update due that the window field
// cannot carry (1 >> 3 = 0): each ACK left the advertised edge where it was, and output
// sent ACKs forever. An update is due only for what the scaled field can say.
#[test]
fn a_window_below_the_scale_unit_sends_no_endless_updates() {
    for n in [1, 7] {
        let mut c = Conn::connect(TcpConfig {
            rcvbuf: 256 * 1024,
            window_scaling: true,
            ..cfg()
        });
        recv!(c, our_syn().win(65535).wscale(3));
        c.tcb.set_buffer_sizes(None, Some(n));
        send!(c, peer_syn().ack(OUR_ISS + 1).win(1000).wscale(2));
        let out = c.output();
        assert!(out.len() <= 1, "rcvbuf {n}: {} segments", out.len());
        assert!(c.output().is_empty(), "rcvbuf {n}: nothing more");
    }
}
