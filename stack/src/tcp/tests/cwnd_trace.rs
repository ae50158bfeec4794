//! The opt-in cwnd trace (`tcp::cwnd_trace`) records, after each congestion-control step,
//! exactly the window the module and the transport left: checked against the values the
//! fast-retransmit tests derive from RFC 5681 / RFC 6582, and for an RTO.

use super::harness::*;
use crate::tcp::cwnd_trace::{CcEvent as Ev, CwndSample};

const M: u32 = MSS as u32;

/// Established 10 ms after creation with a trace on from the start; 11 segments queued,
/// the first 10 (IW) sent.
fn traced_flight_of_ten() -> Conn {
    let cfg = TcpConfig {
        limited_transmit: false,
        cwnd_trace: Some(1000),
        ..cfg()
    };
    let mut c = established_cfg(cfg, peer_syn().ack(OUR_ISS + 1));
    c.tcb.set_nodelay(true);
    c.write(&pattern(0, 11 * MSS));
    assert_eq!(c.output().len(), 10);
    c
}

fn events(s: &[CwndSample]) -> Vec<Ev> {
    s.iter().map(|x| x.event).collect()
}

#[test]
fn trace_is_off_by_default() {
    let mut c = established();
    assert!(!c.tcb.cwnd_tracing());
    assert!(c.tcb.take_cwnd_trace().is_none());
}

// RFC 5681 §3.2 / RFC 6582 §3.2 values as in fast_retransmit.rs, seen through the trace.
#[test]
fn trace_records_init_dupacks_loss_recovery_and_rto() {
    let mut c = traced_flight_of_ten();
    let dupack = peer_ack(0, 0);
    for _ in 0..3 {
        send!(c, dupack.clone());
    }
    recv!(c, our_ack(0, 0, RCVBUF as u16).bytes(0, MSS));
    c.advance(Duration::from_millis(50));
    // Full ACK: covers `recover` (the 10 segments), the episode ends.
    send!(c, peer_ack(0, 10 * M));
    let t = c.tcb.take_cwnd_trace().expect("trace on");
    let s = t.samples();
    assert_eq!(
        events(s),
        vec![Ev::Init, Ev::DupAck, Ev::DupAck, Ev::Loss, Ev::PostRecovery],
        "{s:?}"
    );
    // conn_init at establishment, 10 ms after the SYN: IW, ssthresh "arbitrarily high".
    assert_eq!(
        (s[0].t_us, s[0].cwnd, s[0].ssthresh),
        (10_000, 10 * M, u32::MAX)
    );
    assert_eq!(s[0].cc, "newreno");
    // Two dup ACKs below the threshold change nothing; the flight is the 10 segments.
    assert_eq!((s[2].cwnd, s[2].in_flight), (10 * M, 10 * M));
    // Threshold: ssthresh = FlightSize/2 by the module, then cwnd = ssthresh + 3*SMSS by
    // the transport; the sample shows both parts of the step.
    assert_eq!(
        (s[3].cwnd, s[3].ssthresh, s[3].in_flight),
        (8 * M, 5 * M, 10 * M)
    );
    // Full ACK 50 ms later: RFC 6582 option (1), min(ssthresh, max(FlightSize, SMSS) +
    // SMSS) with the 11th segment not yet sent: 2 SMSS. SRTT from the 10 ms handshake.
    assert_eq!(s[4].t_us, 60_000);
    assert_eq!(
        (s[4].cwnd, s[4].ssthresh, s[4].in_flight),
        (2 * M, 5 * M, 0)
    );
    assert_eq!(s[4].srtt_us, 10_000);
    assert_eq!(t.dropped(), 0);

    // New data with nothing in flight: after_idle (a pause shorter than the RTO keeps
    // cwnd). No answer: the RTO sets cwnd to the loss window and ssthresh to
    // max(FlightSize / 2, 2*SMSS) (RFC 5681 §3.1), 200 ms later.
    let out = c.output();
    assert!(!out.is_empty());
    c.fire();
    let t = c.tcb.take_cwnd_trace().expect("trace still on after take");
    let s = t.samples();
    assert_eq!(events(s), vec![Ev::Idle, Ev::Rto], "{s:?}");
    assert_eq!((s[0].t_us, s[0].cwnd, s[0].in_flight), (60_000, 2 * M, 0));
    assert_eq!((s[1].t_us, s[1].cwnd, s[1].ssthresh), (260_000, M, 2 * M));
    assert_eq!(s[1].in_flight, M, "the 11th segment is outstanding");

    // Switching the trace off discards it.
    c.tcb.set_cwnd_trace(None);
    assert!(c.tcb.take_cwnd_trace().is_none());
}

// Growth on ACKs: each ACK's sample carries the module's new cwnd (slow start: + the bytes
// acknowledged, RFC 5681 §3.1 with ABC), and the trace stops at its limit.
#[test]
fn trace_follows_slow_start_and_stays_bounded() {
    let mut c = traced_flight_of_ten();
    c.tcb.set_cwnd_trace(Some(3));
    let before = c.tcb.take_cwnd_trace().unwrap();
    assert_eq!(events(before.samples()), vec![Ev::Init]);
    for k in 1..=5u32 {
        send!(c, peer_ack(0, k * M));
    }
    let t = c.tcb.take_cwnd_trace().unwrap();
    let cw: Vec<u32> = t.samples().iter().map(|s| s.cwnd).collect();
    assert_eq!(cw, vec![11 * M, 12 * M, 13 * M]);
    assert!(t.samples().iter().all(|s| s.event == Ev::Ack));
    assert_eq!(t.dropped(), 2);
    assert_eq!(t.samples()[2].in_flight, 7 * M);
}

// RFC 3168 §6.1.2: an ECN-Echo makes the module reduce (NewReno: ssthresh = FlightSize /
// 2, cwnd = ssthresh); the trace shows the `ecn` step, then the ACK's own step with no
// growth while in CWR.
#[test]
fn trace_records_the_ecn_reduction() {
    let cfg = TcpConfig {
        ecn: true,
        limited_transmit: false,
        cwnd_trace: Some(100),
        ..cfg()
    };
    let mut c = syn_sent_with(cfg);
    c.advance(Duration::from_millis(10));
    send!(c, peer_syn().ack(OUR_ISS + 1).flags(F::ECE));
    recv!(c, our_ack(0, 0, RCVBUF as u16));
    assert!(c.tcb.ecn(), "ECN negotiated");
    c.tcb.set_nodelay(true);
    c.write(&pattern(0, 20 * MSS));
    assert_eq!(c.output().len(), 10);
    send!(c, peer_ack(0, M).flags(F::ECE));
    let t = c.tcb.take_cwnd_trace().unwrap();
    let s = t.samples();
    assert_eq!(events(s), vec![Ev::Init, Ev::Ecn, Ev::Ack], "{s:?}");
    assert_eq!((s[1].cwnd, s[1].ssthresh), (5 * M, 5 * M));
    assert_eq!((s[2].cwnd, s[2].in_flight), (5 * M, 9 * M));
}

// The trace's pacing column is the module's `pacing_rate`: 0 for a module that does not
// pace (NewReno), BBR's rate once it has one (draft-ietf-ccwg-bbr §5.6.2: at
// establishment, the initial rate from cwnd and the handshake's RTT), which the ACKs of
// the first flight then keep above 0.
#[test]
fn trace_records_the_pacing_rate() {
    let mut c = traced_flight_of_ten();
    send!(c, peer_ack(0, M));
    let t = c.tcb.take_cwnd_trace().unwrap();
    assert!(t.samples().iter().all(|s| s.pacing_rate == 0), "{t:?}");

    let mut c = traced_flight_of_ten();
    c.tcb.set_congestion(Box::new(xstack_cc::Bbr::default()));
    for k in 1..=5u32 {
        c.advance(Duration::from_millis(1));
        send!(c, peer_ack(0, k * M));
    }
    let t = c.tcb.take_cwnd_trace().unwrap();
    let s = t.samples();
    let acks: Vec<&CwndSample> = s.iter().filter(|x| x.event == Ev::Ack).collect();
    assert_eq!(acks.len(), 5, "{s:?}");
    assert!(
        acks.iter().all(|x| x.pacing_rate > 0 && x.cc == "bbr"),
        "{s:?}"
    );
    let csv = t.to_csv();
    let back = crate::tcp::cwnd_trace::CwndTrace::parse_csv(&csv).unwrap();
    assert_eq!(back, s, "the pacing column survives the CSV");
}
