//! Spurious retransmission timeouts: Eifel detection (RFC 3522) with timestamps, the
//! module's undo through `cong_signal(RtoErr)`, and the transport's own undo (recovery
//! state, `recover`, and RFC 4015's SND.NXT <- SND.MAX).

use super::harness::*;
use xstack_cc::{CcSignal, Recovery};

/// Established with timestamps (10 ms handshake RTT), nodelay, three full segments sent
/// at 10 ms with TSval `our_tsval(10)`; returns the connection, its cc log and SMSS.
fn three_in_flight() -> (Conn, std::sync::Arc<std::sync::Mutex<Vec<CcEvent>>>, u32) {
    let cfg = TcpConfig {
        timestamps: true,
        ..cfg()
    };
    let mut c = established_cfg(cfg, peer_syn().ack(OUR_ISS + 1).ts(1, our_tsval(0)));
    assert!(c.tcb.ts_enabled());
    let log = c.record_cc();
    let mss = c.tcb.t_maxseg();
    c.tcb.set_nodelay(true);
    c.write(&pattern(0, 3 * mss as usize));
    let out = c.output();
    assert_eq!(out.len(), 3);
    assert!(out
        .iter()
        .all(|s| s.options.timestamps == Some((our_tsval(10), 1))));
    (c, log, mss)
}

/// The RTO fires; returns the TSval of the retransmission of segment 0.
fn rto(c: &mut Conn) -> u32 {
    c.fire();
    assert_eq!(c.tcb.recovery(), Recovery::Rto);
    let out = c.output();
    assert_eq!(out.len(), 1, "one segment under the loss window: {out:?}");
    assert_eq!(out[0].seq, OUR_ISS + 1);
    out[0].options.timestamps.expect("timestamps").0
}

// RFC 3522 §2 step (4): "If the value of the Timestamp Echo Reply field of the acceptable
// ACK's Timestamps option is smaller than the value of RetransmitTS, then proceed to step
// (5)"; (5) "Set SpuriousRecovery to TRUE". The response: RtoErr to the module (which puts
// back cwnd and ssthresh), and RFC 4015 §2 step (6): "Resume the transmission with
// previously unsent data: Set SND.NXT <- SND.MAX".
#[test]
fn eifel_detects_an_ack_of_the_original_and_undoes_the_rto() {
    let (mut c, log, mss) = three_in_flight();
    let (cwnd, ssthresh) = (c.tcb.ccv().cwnd, c.tcb.ccv().ssthresh);
    let retransmit_ts = rto(&mut c);
    assert!(retransmit_ts > our_tsval(10));
    assert_eq!(c.tcb.ccv().cwnd, mss, "RFC 5681 §3.1 loss window");
    // The ACK of the original first segment, delayed past the RTO, echoes its TSval.
    send!(c, peer_ack(0, mss).ts(2, our_tsval(10)));
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            CcEvent::Signal(CcSignal::Rto),
            CcEvent::Signal(CcSignal::RtoErr)
        ]
    );
    // Restored before the ACK is processed; the ACK itself then earns slow start's
    // credit for the segment it acknowledges.
    assert_eq!(
        (c.tcb.ccv().cwnd, c.tcb.ccv().ssthresh),
        (cwnd + mss, ssthresh)
    );
    assert_eq!(c.tcb.recovery(), Recovery::Open);
    assert_eq!(c.tcb.snd_nxt(), c.tcb.snd_max());
    assert_eq!(c.tcb.stats().spurious_rtos, 1);
    // Segments 1 and 2 are not sent again: the peer has them.
    recv_nothing!(c);
    send!(c, peer_ack(0, 3 * mss).ts(2, our_tsval(10)));
    assert_eq!(c.tcb.stats().retransmits, 1);
}

// The first acceptable ACK echoes the retransmission: the RTO was genuine.
#[test]
fn an_ack_of_the_retransmission_is_not_spurious() {
    let (mut c, log, mss) = three_in_flight();
    let retransmit_ts = rto(&mut c);
    send!(c, peer_ack(0, mss).ts(2, retransmit_ts));
    assert_eq!(*log.lock().unwrap(), vec![CcEvent::Signal(CcSignal::Rto)]);
    assert_eq!(c.tcb.recovery(), Recovery::Rto);
    assert_eq!(c.tcb.stats().spurious_rtos, 0);
    // Go-back-N goes on with segment 1.
    let out = c.output();
    assert_eq!(out.first().map(|s| s.seq), Some(OUR_ISS + 1 + mss));
    // Only the first acceptable ACK decides (RFC 3522 §2 step (3)): a later ACK echoing
    // the originals changes nothing.
    send!(c, peer_ack(0, 2 * mss).ts(2, our_tsval(10)));
    assert_eq!(*log.lock().unwrap(), vec![CcEvent::Signal(CcSignal::Rto)]);
}

// Detection runs for the first expiry only: after a backed-off one the first
// retransmission went unanswered too.
#[test]
fn no_detection_after_a_backed_off_timeout() {
    let (mut c, log, mss) = three_in_flight();
    rto(&mut c);
    c.fire();
    let _ = c.output();
    send!(c, peer_ack(0, mss).ts(2, our_tsval(10)));
    assert!(!log
        .lock()
        .unwrap()
        .contains(&CcEvent::Signal(CcSignal::RtoErr)));
    assert_eq!(c.tcb.stats().spurious_rtos, 0);
}

// Eifel needs timestamps (RFC 3522 §1: "It requires that the TCP Timestamps option
// defined in RFC 1323 be enabled for a connection").
#[test]
fn no_detection_without_timestamps() {
    let mut c = established();
    let log = c.record_cc();
    c.tcb.set_nodelay(true);
    c.write(&pattern(0, 3 * MSS));
    let _ = c.output();
    c.fire();
    let _ = c.output();
    send!(c, peer_ack(0, MSS as u32));
    assert_eq!(*log.lock().unwrap(), vec![CcEvent::Signal(CcSignal::Rto)]);
    assert_eq!(c.tcb.recovery(), Recovery::Rto);
}
