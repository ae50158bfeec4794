//! Limited transmit (RFC 3042): new data on the first two duplicate ACKs.

use super::harness::*;
use xstack_cc::Recovery;

const W: u16 = RCVBUF as u16;
const M: u32 = MSS as u32;

/// Segment `k` of our stream as we send it.
fn data(k: u32) -> Seg {
    our_ack(k * M, 0, W).bytes(k as usize * MSS, MSS)
}

/// Established with `cfg`, nodelay, `n` segments queued, the first 10 (IW) sent.
fn flight(cfg: TcpConfig, synack: Seg, n: usize) -> Conn {
    let mut c = established_cfg(cfg, synack);
    c.tcb.set_nodelay(true);
    c.write(&pattern(0, n * MSS));
    assert_eq!(c.output().len(), 10);
    c
}

// RFC 3042 §2: "When a TCP sender has previously unsent data queued for transmission it
// SHOULD send a new data segment upon receiving each of the first two duplicate
// acknowledgments ... (a) The receiver's advertised window allows the transmission of the
// segment. (b) The amount of outstanding data would remain less than or equal to the
// congestion window plus 2 segments." and "The congestion window (cwnd) MUST NOT be
// changed when these new segments are transmitted."
#[test]
fn one_new_segment_on_each_of_the_first_two_duplicates() {
    let mut c = flight(cfg(), peer_syn().ack(OUR_ISS + 1), 14);
    send!(c, peer_ack(0, 0));
    recv!(c, data(10));
    assert_eq!(c.tcb.ccv().cwnd, 10 * M);
    send!(c, peer_ack(0, 0));
    recv!(c, data(11));
    assert_eq!(c.tcb.ccv().cwnd, 10 * M);
    assert_eq!(c.tcb.stats().limited_transmits, 2);
    // The third is fast retransmit (RFC 5681 §3.2): segment 0, and NewReno's inflated
    // window (ssthresh 6 + 3 = 9 segments) is still below the 12 in flight.
    send!(c, peer_ack(0, 0));
    assert_eq!(c.tcb.recovery(), Recovery::Fast);
    recv!(c, data(0));
    assert_eq!(c.tcb.ccv().cwnd, 9 * M);
    assert_eq!(c.tcb.stats().limited_transmits, 2);
}

// "(a) The receiver's advertised window allows the transmission of the segment."
#[test]
fn not_beyond_the_receivers_window() {
    let mut c = flight(cfg(), peer_syn().ack(OUR_ISS + 1), 14);
    // The peer's window is exactly the flight: duplicates with that window release nothing.
    send!(c, peer_ack(0, 0).win((10 * M) as u16));
    send!(c, peer_ack(0, 0).win((10 * M) as u16));
    assert_eq!(c.tcb.dupacks(), 1);
    recv_nothing!(c);
    send!(c, peer_ack(0, 0).win((10 * M) as u16));
    recv_nothing!(c);
    assert_eq!(c.tcb.stats().limited_transmits, 0);
}

// Only previously unsent data, and only when there is some.
#[test]
fn nothing_to_send_sends_nothing() {
    let mut c = flight(cfg(), peer_syn().ack(OUR_ISS + 1), 10);
    send!(c, peer_ack(0, 0));
    send!(c, peer_ack(0, 0));
    recv_nothing!(c);
}

// With SACK the duplicates are the ACKs carrying new SACK information (RFC 6675 §2); RFC
// 6675 §5 step (3) allows "previously unsent data segments as per Limited Transmit".
#[test]
fn with_sack_too() {
    let cfg = TcpConfig {
        sack: true,
        ..cfg()
    };
    let mut c = flight(cfg, peer_syn().ack(OUR_ISS + 1).sack_ok(), 14);
    let o = |k: u32| OUR_ISS + 1 + k * M;
    send!(c, peer_ack(0, 0).sack(o(1), o(2)));
    recv!(c, data(10));
    send!(c, peer_ack(0, 0).sack(o(1), o(3)));
    recv!(c, data(11));
    assert_eq!(c.tcb.ccv().cwnd, 10 * M);
    assert_eq!(c.tcb.recovery(), Recovery::Open);
}

// Off by configuration (FreeBSD's net.inet.tcp.rfc3042 = 0).
#[test]
fn can_be_turned_off() {
    let cfg = TcpConfig {
        limited_transmit: false,
        ..cfg()
    };
    let mut c = flight(cfg, peer_syn().ack(OUR_ISS + 1), 14);
    send!(c, peer_ack(0, 0));
    send!(c, peer_ack(0, 0));
    recv_nothing!(c);
}
