//! RACK-TLP (RFC 8985) and PRR (RFC 6937) on one control block, segment by segment:
//! tail loss probes, time-based loss marking, the reordering window and its DSACK
//! adaptation, and PRR's pacing of fast recovery.

use super::harness::*;
use xstack_cc::Recovery;

/// SACK and timestamps on, RACK-TLP and PRR on (the stack's defaults).
fn rack_cfg() -> TcpConfig {
    TcpConfig {
        sack: true,
        timestamps: true,
        rack: true,
        prr: true,
        ..cfg()
    }
}

/// Established with `cfg` (10 ms handshake RTT), nodelay, `n` segments written and the
/// first 10 (IW) sent at 10 ms. Returns the connection and the MSS.
fn flight_with(cfg: TcpConfig, n: usize) -> (Conn, u32) {
    let mut c = established_cfg(
        cfg,
        peer_syn().ack(OUR_ISS + 1).sack_ok().ts(1, our_tsval(0)),
    );
    c.tcb.set_nodelay(true);
    let m = c.tcb.t_maxseg();
    c.write(&pattern(0, n * m as usize));
    assert_eq!(c.output().len(), n.min(10));
    (c, m)
}

fn flight(n: usize) -> (Conn, u32) {
    flight_with(rack_cfg(), n)
}

/// Our sequence number at the start of segment `k`.
fn o(k: u32, m: u32) -> Seq {
    OUR_ISS + 1 + k * m
}

/// The peer's ACK of `k` segments echoing `ecr`.
fn ack(k: u32, m: u32, ecr: u32) -> Seg {
    peer_ack(0, k * m).ts(2, ecr)
}

fn tsval(s: &Seg) -> u32 {
    s.options.timestamps.expect("timestamps").0
}

// RFC 8985 §7: the last two segments of a flight are lost. No duplicate ACK can come;
// the PTO (2*SRTT) fires long before the RTO, the probe resends the last segment, its
// SACK lets RACK mark the other lost by time, and recovery repairs it: no RTO.
#[test]
fn lost_tail_is_probed_after_two_srtt_and_repaired_without_an_rto() {
    let (mut c, m) = flight(10);
    c.advance(Duration::from_millis(10));
    send!(c, ack(8, m, our_tsval(10)));
    assert!(c.output().is_empty());
    let srtt = c.tcb.rtt().srtt().expect("srtt");
    let pto = c.timer(TimerKind::Tlp).expect("PTO armed");
    // RFC 8985 §7.2: "PTO = 2 * SRTT" (two segments in flight: no delayed-ACK allowance).
    assert_eq!(pto, srtt * 2);
    assert!(pto < c.timer(TimerKind::Rexmt).expect("RTO armed"));
    assert_eq!(c.fire(), pto);
    // RFC 8985 §7.3: no new data, so "Retransmit the highest-sequence segment sent so far".
    let out = c.output();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].seq, out[0].payload.len()), (o(9, m), m as usize));
    assert_eq!(c.tcb.stats().tlp_probes, 1);
    assert_eq!(c.tcb.info().tlp_probes, 1);
    // The probe arrives, segment 8 does not: one SACK, no third duplicate ACK.
    c.advance(Duration::from_millis(10));
    send!(c, ack(8, m, tsval(&out[0])).sack(o(9, m), o(10, m)));
    // RFC 8985 §6.2: segment 8 was sent before the probe, more than RACK.rtt + reo_wnd
    // ago: lost.
    assert_eq!(c.tcb.recovery(), Recovery::Fast);
    assert_eq!(c.tcb.dupacks(), 1);
    assert_eq!(c.tcb.stats().rack_lost, 1);
    let out = c.output();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].seq, o(8, m));
    c.advance(Duration::from_millis(10));
    send!(c, ack(10, m, tsval(&out[0])));
    assert_eq!(c.tcb.recovery(), Recovery::Open);
    assert_eq!(c.tcb.snd_una(), o(10, m));
    assert_eq!(c.tcb.stats().rtos, 0);
    assert_eq!(c.tcb.stats().fast_recoveries, 1);
    // Repaired 2*SRTT + 2 RTT after the last ACK: a fraction of the 200 ms minimum RTO.
    assert!(pto + Duration::from_millis(20) < Duration::from_millis(100));
}

// RFC 8985 §7.4: only the last segment is lost. With one segment in flight the PTO
// includes the delayed-ACK allowance and is capped by the RTO's expiry; the probe goes
// out in the RTO's place, repairs the loss, and the ACK that echoes the probe's
// timestamp says so: the window is reduced as for fast recovery, not to one segment.
#[test]
fn probe_that_repairs_the_last_segment_reduces_cwnd_once() {
    let (mut c, m) = flight(10);
    c.advance(Duration::from_millis(10));
    send!(c, ack(9, m, our_tsval(10)));
    assert!(c.output().is_empty());
    let pto = c.timer(TimerKind::Tlp).expect("PTO armed");
    assert_eq!(
        Some(pto),
        c.timer(TimerKind::Rexmt),
        "capped at the RTO's expiry"
    );
    let cwnd = c.tcb.ccv().cwnd;
    c.fire();
    let out = c.output();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].seq, o(9, m));
    assert_eq!(c.tcb.stats().rtos, 0, "the probe took the RTO's place");
    assert!(c.timer(TimerKind::Rexmt).is_some(), "the RTO restarts");
    c.advance(Duration::from_millis(10));
    send!(c, ack(10, m, tsval(&out[0])));
    let st = c.tcb.stats();
    assert_eq!((st.tlp_recoveries, st.rtos, st.fast_recoveries), (1, 0, 0));
    let v = c.tcb.ccv();
    assert!(
        v.ssthresh < cwnd && v.cwnd <= v.ssthresh && v.cwnd > m,
        "cwnd {} -> {v:?}",
        cwnd
    );
    // An ACK echoing the original's timestamp (the original arrived) is no loss.
    let (mut c, m) = flight(10);
    c.advance(Duration::from_millis(10));
    send!(c, ack(9, m, our_tsval(10)));
    c.fire();
    assert_eq!(c.output().len(), 1);
    let cwnd = c.tcb.ccv().cwnd;
    c.advance(Duration::from_millis(10));
    send!(c, ack(10, m, our_tsval(10)));
    assert_eq!(c.tcb.stats().tlp_recoveries, 0);
    assert!(c.tcb.ccv().cwnd >= cwnd);
}

// RFC 8985 §6.2: one SACK above a hole is not DupThresh, but RACK marks the hole lost
// once RACK.rtt + reo_wnd (min_RTT / 4) has passed since it was sent -- by the RACK
// reordering timer.
#[test]
fn hole_is_lost_by_time_without_three_duplicate_acks() {
    let (mut c, m) = flight(10);
    c.advance(Duration::from_millis(10));
    send!(c, ack(0, m, our_tsval(10)).sack(o(1, m), o(2, m)));
    assert_eq!(c.tcb.recovery(), Recovery::Open);
    assert!(c.output().is_empty());
    let reo = c.timer(TimerKind::RackReo).expect("RACK timer armed");
    // Sent at the same instant as segment 1: due a reordering window (2.5 ms) from now
    // (less the nanosecond by which the log ranks segment 0 before segment 1).
    let wnd = c.tcb.rtt().min_rtt().expect("min_rtt") / 4;
    assert!(
        reo <= wnd && reo + Duration::from_micros(1) > wnd,
        "{reo:?}"
    );
    assert!(c.timer(TimerKind::Tlp).is_none(), "RACK decides first");
    c.fire();
    let st = c.tcb.stats();
    assert_eq!((st.rack_lost, st.rack_reo_timeouts), (1, 1));
    assert_eq!(c.tcb.recovery(), Recovery::Fast);
    assert_eq!(c.tcb.dupacks(), 1);
    let out = c.output();
    assert_eq!(out.first().map(|s| s.seq), Some(o(0, m)), "{out:?}");
    assert_eq!(c.tcb.info().lost, 0, "resent: no longer counted lost");
}

// RFC 8985 §6.2: a hole filled within the reordering window is reordering, not loss;
// and once reordering was seen, three SACKed segments no longer zero the window.
#[test]
fn reordering_within_the_window_is_not_marked_lost() {
    let (mut c, m) = flight(10);
    c.advance(Duration::from_millis(10));
    send!(c, ack(0, m, our_tsval(10)).sack(o(1, m), o(2, m)));
    assert!(c.timer(TimerKind::RackReo).is_some());
    c.advance(Duration::from_millis(1));
    send!(c, ack(2, m, our_tsval(10)));
    assert!(c.timer(TimerKind::RackReo).is_none());
    assert_eq!(c.tcb.stats().rack_lost, 0);
    assert_eq!(c.tcb.recovery(), Recovery::Open);
    assert!(c.tcb.info().rack_reordering_seen);
    // Segment 2 missing, 3..6 SACKed: with reordering seen the window stays
    // min_RTT / 4 (without it, DupThresh SACKed segments would make it zero).
    send!(c, ack(2, m, our_tsval(10)).sack(o(3, m), o(6, m)));
    assert_eq!(c.tcb.recovery(), Recovery::Open);
    assert!(c.timer(TimerKind::RackReo).is_some());
    assert_eq!(
        c.tcb.info().rack_reo_wnd_us,
        (c.tcb.rtt().min_rtt().expect("min_rtt") / 4).as_micros() as u64
    );
}

// RFC 8985 §6.2 step 4: a D-SACK (a retransmission was spurious) grows the reordering
// window by min_RTT / 4, once per round trip.
#[test]
fn dsack_grows_the_reordering_window() {
    let (mut c, m) = flight(10);
    c.advance(Duration::from_millis(10));
    // Three segments SACKed above segment 0, no reordering seen: window 0, lost at once.
    send!(c, ack(0, m, our_tsval(10)).sack(o(1, m), o(4, m)));
    assert_eq!(c.tcb.recovery(), Recovery::Fast);
    assert_eq!(c.tcb.info().rack_reo_wnd_us, 0);
    let out = c.output();
    assert_eq!(out[0].seq, o(0, m));
    assert_eq!(c.tcb.info().rack_reo_wnd_mult, 1);
    // The original was only late: the peer reports the retransmission as a duplicate.
    c.advance(Duration::from_millis(10));
    send!(c, ack(10, m, our_tsval(10)).sack(o(0, m), o(1, m)));
    assert_eq!(c.tcb.stats().dsacks, 1);
    let info = c.tcb.info();
    assert_eq!(info.rack_reo_wnd_mult, 2);
    let min_rtt = c.tcb.rtt().min_rtt();
    let srtt = Some(Duration::from_secs(1));
    let want = min_rtt.expect("min_rtt") / 2;
    assert_eq!(c.tcb.rack().reo_wnd(false, min_rtt, srtt), want);
}

/// Runs one fast-recovery episode with one lost segment: cwnd grown to 20 segments,
/// a flight of 20 (segments 10..30) plus two limited-transmit segments, segment 10
/// lost, the others SACKed one per ACK. Returns the segments sent in answer to each
/// duplicate ACK from the entry on, and ssthresh in segments.
fn recovery_sends(prr: bool) -> (Vec<usize>, u32) {
    let cfg = TcpConfig {
        rack: false,
        prr,
        sndbuf: 256 * 1024,
        ..rack_cfg()
    };
    let (mut c, m) = flight_with(cfg, 80);
    c.advance(Duration::from_millis(10));
    for k in 1..=10 {
        send!(c, ack(k, m, our_tsval(10)));
    }
    assert_eq!(c.output().len(), 20);
    c.advance(Duration::from_millis(10));
    let dup = |k: u32| ack(10, m, our_tsval(20)).sack(o(11, m), o(k, m));
    send!(c, dup(12));
    assert_eq!(c.output().len(), 1, "limited transmit");
    send!(c, dup(13));
    assert_eq!(c.output().len(), 1, "limited transmit");
    let mut sent = Vec::new();
    for k in 14..=32 {
        send!(c, dup(k));
        assert_eq!(c.tcb.recovery(), Recovery::Fast);
        sent.push(c.output().len());
    }
    assert_eq!(c.tcb.prr().is_some(), prr);
    (sent, c.tcb.ccv().ssthresh / m)
}

// RFC 6937: PRR sends about ssthresh/RecoverFS of what each ACK delivers -- from the
// start of recovery, one segment per two ACKs here -- so that by the end of the round
// the sender has sent about ssthresh, with no burst. RFC 6675 alone sends nothing
// until pipe falls below ssthresh, then one per ACK.
#[test]
fn prr_spreads_the_reduction_over_the_round_trip() {
    let (with, ssthresh) = recovery_sends(true);
    let (without, ssthresh_6675) = recovery_sends(false);
    eprintln!("PRR {with:?}, RFC 6675 {without:?}, ssthresh {ssthresh} segments");
    assert_eq!(ssthresh, 11, "half of 22 segments in flight");
    assert_eq!(ssthresh_6675, ssthresh);
    // The entry ACK: the fast retransmit only.
    assert_eq!(with[0], 1);
    // PRR sends during the first half of the round; RFC 6675 sends nothing there.
    assert!(with[1..7].iter().sum::<usize>() >= 2, "{with:?}");
    assert_eq!(without[1..7].iter().sum::<usize>(), 0, "{without:?}");
    // Never more than one segment per ACK, and about ssthresh over the episode.
    assert!(with.iter().all(|&n| n <= 1), "{with:?}");
    let total: usize = with.iter().sum();
    assert!(
        (ssthresh as usize - 1..=ssthresh as usize + 1).contains(&total),
        "{total} segments sent in recovery, ssthresh {ssthresh}: {with:?}"
    );
}

/// Fast recovery whose fast retransmit fills the only hole: segment 0 of 10 lost,
/// 1-3 SACKed (DupThresh), nothing new to send. Returns the connection after the fast
/// retransmit and the MSS.
fn recovery_with_nothing_left_to_send(cfg: TcpConfig) -> (Conn, u32) {
    let (mut c, m) = flight_with(cfg, 10);
    c.advance(Duration::from_millis(10));
    send!(c, ack(0, m, our_tsval(10)).sack(o(1, m), o(4, m)));
    assert_eq!(c.tcb.recovery(), Recovery::Fast);
    let out = c.output();
    assert_eq!(out.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![o(0, m)]);
    (c, m)
}

// The loss bench's most common RTO (README, loss row): the peer answers the fast
// retransmit that fills the only hole with one ACK covering everything, and that ACK is
// lost. Nothing else in flight can produce another and nothing may be sent, so RFC
// 8985 (no PTO in recovery) waits for the RTO. The recovery probe goes out a PTO after
// the retransmission instead; its answer (a D-SACK of the probe) ends the episode with
// the window reduced once, and no RTO.
#[test]
fn fast_recovery_gone_silent_is_probed_instead_of_waiting_for_the_rto() {
    let (mut c, m) = recovery_with_nothing_left_to_send(rack_cfg());
    let ssthresh = c.tcb.ccv().ssthresh;
    let srtt = c.tcb.rtt().srtt().expect("srtt");
    let pto = c.timer(TimerKind::Tlp).expect("recovery probe armed");
    assert_eq!(pto, srtt * 2);
    assert!(pto < c.timer(TimerKind::Rexmt).expect("RTO armed"));
    assert_eq!(c.fire(), pto);
    let out = c.output();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].seq, o(9, m), "the highest segment sent");
    let st = c.tcb.stats();
    assert_eq!((st.recovery_probes, st.tlp_probes, st.rtos), (1, 0, 0));
    assert_eq!(c.tcb.info().recovery_probes, 1);
    assert!(c.timer(TimerKind::Tlp).is_none(), "one probe at a time");
    c.advance(Duration::from_millis(10));
    send!(c, ack(10, m, tsval(&out[0])).sack(o(9, m), o(10, m)));
    assert_eq!(c.tcb.recovery(), Recovery::Open);
    assert_eq!(c.tcb.snd_una(), o(10, m));
    let st = c.tcb.stats();
    assert_eq!((st.rtos, st.tlp_recoveries, st.fast_recoveries), (0, 0, 1));
    assert_eq!(c.tcb.ccv().ssthresh, ssthresh, "reduced once, at the entry");
}

// In recovery the probe waits for silence: every ACK restarts its PTO, so a recovery
// whose ACKs keep coming sends none. Switched off, recovery waits for the RTO as RFC
// 8985 and Linux do.
#[test]
fn recovery_probe_waits_for_silence_and_can_be_switched_off() {
    let (mut c, m) = recovery_with_nothing_left_to_send(rack_cfg());
    let pto = c.timer(TimerKind::Tlp).expect("recovery probe armed");
    c.advance(pto / 2);
    send!(c, ack(0, m, our_tsval(10)).sack(o(1, m), o(5, m)));
    assert!(c.output().is_empty());
    assert_eq!(c.timer(TimerKind::Tlp), Some(pto), "restarted by the ACK");
    let cfg = TcpConfig {
        recovery_probe: false,
        ..rack_cfg()
    };
    let (mut c, _) = recovery_with_nothing_left_to_send(cfg);
    assert!(c.timer(TimerKind::Tlp).is_none());
    c.fire();
    let st = c.tcb.stats();
    assert_eq!((st.recovery_probes, st.rtos), (0, 1));
}

// With RACK off a lone SACK is just a duplicate ACK: no timer, no loss marked, no probe.
#[test]
fn rack_off_keeps_dupthresh_and_the_rto() {
    let cfg = TcpConfig {
        rack: false,
        ..rack_cfg()
    };
    let (mut c, m) = flight_with(cfg, 10);
    c.advance(Duration::from_millis(10));
    send!(c, ack(0, m, our_tsval(10)).sack(o(1, m), o(2, m)));
    assert!(c.timer(TimerKind::RackReo).is_none());
    assert!(c.timer(TimerKind::Tlp).is_none());
    send!(c, ack(8, m, our_tsval(10)));
    assert!(c.output().is_empty());
    assert!(c.timer(TimerKind::Tlp).is_none());
    c.fire();
    assert_eq!(c.tcb.stats().rtos, 1);
    assert_eq!(c.tcb.stats().tlp_probes, 0);
    assert!(!c.tcb.info().rack);
}

// RFC 8985 §6.2, RACK_sent_after() ranks transmissions by time, then by sequence. New
// data and a retransmission that go out while one batch of input is handled share its
// clock; the log keeps their send order, so a retransmission sent after new data of the
// same instant is not taken for older than that data (and marked lost again as soon as
// the data is SACKed: a spurious retransmission).
#[test]
fn retransmission_after_new_data_of_the_same_instant_is_not_marked_lost_by_its_sack() {
    let (mut c, m) = flight(30);
    c.advance(Duration::from_millis(10));
    // Segments 0 and 1 arrive: the window grows and new data (segments 10..) goes out.
    send!(c, ack(2, m, our_tsval(10)));
    let new = c.output();
    assert!(!new.is_empty() && new[0].seq == o(10, m), "{new:?}");
    // At the same instant: 3..9 SACKed, so segment 2 is lost (sent with 9, at 10 ms,
    // RACK.rtt ago) and is resent after the new data.
    send!(c, ack(2, m, our_tsval(10)).sack(o(3, m), o(10, m)));
    assert_eq!(c.tcb.recovery(), Recovery::Fast);
    assert_eq!(c.tcb.stats().rack_lost, 1);
    let out = c.output();
    assert!(out.iter().any(|s| s.seq == o(2, m)), "{out:?}");
    // 1 ms later the first two new segments are SACKed; the retransmission's ACK has
    // not come yet. It was sent after them: not lost.
    c.advance(Duration::from_millis(1));
    send!(c, ack(2, m, our_tsval(20)).sack(o(3, m), o(12, m)));
    assert_eq!(
        c.tcb.stats().rack_lost,
        1,
        "the retransmission was marked lost"
    );
    let out = c.output();
    assert!(
        out.iter().all(|s| s.seq != o(2, m)),
        "resent again: {out:?}"
    );
}

// The ACK of a whole flight is lost (the receiver got everything): with more data ready,
// the probe is new data, and it goes out as two segments, which a delayed-ACK receiver
// answers at once (a lone one it would hold for its delayed-ACK timer: 40 ms on Linux).
// With one segment ready, the probe is that one.
#[test]
fn probe_of_new_data_is_two_segments_when_two_are_ready() {
    let (mut c, m) = flight(20);
    let pto = c.timer(TimerKind::Tlp).expect("PTO armed");
    assert_eq!(c.fire(), pto);
    let out = c.output();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!((out[0].seq, out[1].seq), (o(10, m), o(11, m)));
    assert!(out.iter().all(|s| s.payload.len() == m as usize));
    assert_eq!(c.tcb.stats().tlp_probes, 1);
    // The peer ACKs everything: the episode ends, nothing was lost, cwnd is untouched.
    let cwnd = c.tcb.ccv().cwnd;
    c.advance(Duration::from_millis(10));
    send!(c, ack(12, m, tsval(&out[1])));
    assert_eq!(c.tcb.recovery(), Recovery::Open);
    assert!(c.tcb.ccv().cwnd >= cwnd);
    assert_eq!(c.tcb.stats().tlp_recoveries, 0);

    let (mut c, m) = flight(11);
    let pto = c.timer(TimerKind::Tlp).expect("PTO armed");
    assert_eq!(c.fire(), pto);
    let out = c.output();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].seq, o(10, m));
}
