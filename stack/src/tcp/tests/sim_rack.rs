//! RACK-TLP over the simulated link: a response whose last two segments are lost is
//! repaired by a tail loss probe within a few round trips, where without RACK-TLP it
//! waits for the retransmission timeout.

use std::collections::HashSet;
use std::time::Duration;

use crate::sim::{LinkConfig, Sim};
use crate::tcp::TcpConfig;

/// TCP payload bytes per segment (MSS 1460 less the timestamp option).
const SEG: u32 = 1448;

/// `(host 1's TCP sequence number, flags, payload length)` of an Ethernet/IPv4/TCP frame.
fn tcp_of(f: &[u8]) -> Option<(u32, u8, usize)> {
    let ip = f.get(14..)?;
    if f.get(12..14)? != [0x08, 0x00] || *ip.get(9)? != 6 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let tcp = ip.get(ihl..)?;
    let doff = usize::from(tcp.get(12)? >> 4) * 4;
    let seq = u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?);
    Some((seq, tcp[13], total.checked_sub(ihl + doff)?))
}

/// What one request/response cost.
#[derive(Debug)]
struct Outcome {
    /// From the response's write to its last byte read by the client.
    took: Duration,
    rtos: u64,
    tlp_probes: u64,
    tlp_counter: u64,
    rack_lost_counter: u64,
    rto_counter: u64,
}

/// The server (host 1) answers with `segs` full segments; the link drops the first
/// transmission of the last two. RTT 10 ms.
fn tail_loss(rack: bool, segs: u32) -> Outcome {
    let cfg = TcpConfig {
        rack,
        ..TcpConfig::default()
    };
    let link = LinkConfig {
        delay: Duration::from_millis(5),
        ..Default::default()
    };
    let mut sim = Sim::with_config(7, link, 1, cfg);
    let total = segs * SEG;
    let mut iss = None;
    let mut dropped = HashSet::new();
    sim.drop_if = Some(Box::new(move |host, f| {
        let Some((seq, flags, len)) = tcp_of(f) else {
            return false;
        };
        if host != 1 {
            return false;
        }
        if flags & 0x02 != 0 {
            iss = Some(seq);
            return false;
        }
        let Some(iss) = iss else { return false };
        let off = seq.wrapping_sub(iss.wrapping_add(1));
        len > 0 && off >= total - 2 * SEG && off < total && dropped.insert(seq)
    }));
    let listener = sim.listen(1, 80, 4);
    let client = sim.connect(0, 80);
    let mut server = None;
    assert!(sim.run_until(Duration::from_secs(1), |sim| {
        server = server.take().or_else(|| sim.accept(&listener));
        server.is_some()
    }));
    let server = server.expect("accepted");
    // Let the handshake's RTT sample settle, then answer.
    sim.run_until(Duration::from_millis(50), |_| false);
    let body = vec![7u8; total as usize];
    assert_eq!(sim.send(1, &server, &body), body.len());
    let start = sim.now;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    assert!(sim.run_until(Duration::from_secs(10), |sim| {
        got += sim.recv(0, &client, &mut buf);
        got == body.len()
    }));
    let took = sim.now.saturating_duration_since(start);
    let st = *server.lock().tcb.stats();
    Outcome {
        took,
        rtos: st.rtos,
        tlp_probes: st.tlp_probes.into(),
        tlp_counter: sim.counter(1, "tcp.tlp_probes"),
        rack_lost_counter: sim.counter(1, "tcp.rack_lost"),
        rto_counter: sim.counter(1, "tcp.rtos"),
    }
}

// RFC 8985 §7: the tail is probed after 2*SRTT and repaired in a few round trips.
#[test]
fn lost_tail_of_a_response_is_repaired_by_a_probe_not_an_rto() {
    let on = tail_loss(true, 20);
    eprintln!("RACK-TLP on: {on:?}");
    assert_eq!(on.rtos, 0, "{on:?}");
    assert_eq!(on.tlp_probes, 1, "{on:?}");
    assert_eq!(on.tlp_counter, 1, "stack-wide tcp.tlp_probes");
    assert_eq!(on.rto_counter, 0, "stack-wide tcp.rtos");
    assert!(on.rack_lost_counter >= 1, "{on:?}");
    // Two rounds of data (IW 10), PTO = 2*SRTT, the probe's round trip, the repair's.
    assert!(on.took < Duration::from_millis(100), "{on:?}");
}

// With RACK-TLP off the lost tail waits for the RTO (at least its 200 ms minimum).
#[test]
fn without_rack_the_lost_tail_waits_for_the_rto() {
    let off = tail_loss(false, 20);
    eprintln!("RACK-TLP off: {off:?}");
    assert!(off.rtos >= 1, "{off:?}");
    assert_eq!(off.rto_counter, off.rtos, "stack-wide tcp.rtos");
    assert_eq!(
        (off.tlp_probes, off.tlp_counter, off.rack_lost_counter),
        (0, 0, 0)
    );
    assert!(off.took >= Duration::from_millis(200), "{off:?}");
}

/// What a bulk transfer cost the sender, summed over seeds.
#[derive(Clone, Copy, Debug, Default)]
struct Cost {
    rtos: u64,
    retransmits: u64,
    tlp_probes: u64,
    rack_lost: u64,
    time: Duration,
}

/// Sums over `seeds` the cost of `total` bytes over `link` with RACK-TLP and PRR on, or
/// both off (RFC 6675 with lost-retransmission detection, the behaviour before them).
fn bulk(link: LinkConfig, seeds: std::ops::Range<u64>, total: usize, on: bool) -> Cost {
    use super::sim_transfer::{pattern, transfer};
    let mut c = Cost::default();
    for seed in seeds {
        let cfg = TcpConfig {
            rack: on,
            prr: on,
            ..TcpConfig::default()
        };
        let mut sim = Sim::with_config(seed, link, 1, cfg);
        let start = sim.now;
        let (got, client, _server) = transfer(&mut sim, total, Duration::from_secs(3600));
        assert!(got == pattern(0, total), "bytes differ (RACK-TLP {on})");
        let st = *client.lock().tcb.stats();
        c.rtos += st.rtos;
        c.retransmits += st.retransmits;
        c.tlp_probes += u64::from(st.tlp_probes);
        c.rack_lost += st.rack_lost;
        c.time += sim.now.saturating_duration_since(start);
    }
    eprintln!("RACK-TLP {on}: {c:?}");
    c
}

// Random loss on a 2 ms path: RACK finds lost retransmissions and lost tails without the
// RTO, PRR paces recovery; the transfers finish sooner with fewer RTOs (seeds 20..24,
// 8 MB each: 0 RTOs and 7.8 s with them, 5 RTOs and 9.3 s without).
#[test]
fn bulk_transfer_at_3_percent_loss_is_faster_with_rack_tlp() {
    let link = LinkConfig {
        delay: Duration::from_millis(1),
        loss: 0.03,
        rate_bps: Some(100_000_000),
        ..Default::default()
    };
    let off = bulk(link, 20..24, 8 << 20, false);
    let on = bulk(link, 20..24, 8 << 20, true);
    assert_eq!((off.rack_lost, off.tlp_probes), (0, 0));
    assert!(on.rack_lost > 0);
    assert!(on.rtos < off.rtos, "{on:?} vs {off:?}");
    assert!(on.time < off.time, "{on:?} vs {off:?}");
}

// A path whose jitter reorders frames: DupThresh counts reordered segments as losses;
// RACK's reordering window (and its growth on D-SACKs) waits for them (seeds 20..24,
// 4 MB each: 130 retransmissions and 10.9 s with RACK, 276 and 18.1 s without).
#[test]
fn reordering_path_costs_fewer_retransmissions_with_rack() {
    let link = LinkConfig {
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(1),
        loss: 0.01,
        rate_bps: Some(100_000_000),
        ..Default::default()
    };
    let off = bulk(link, 20..24, 4 << 20, false);
    let on = bulk(link, 20..24, 4 << 20, true);
    assert!(
        on.retransmits * 3 < off.retransmits * 2,
        "{on:?} vs {off:?}"
    );
    assert!(on.time < off.time, "{on:?} vs {off:?}");
}

/// An idle connection gives back the capacity of its send log and SACK lists as well
/// as its buffers (`buffer_idle_release`): they grow with a lossy burst and would
/// otherwise stay at its high-water mark for the connection's life.
#[test]
fn an_idle_connection_gives_back_its_send_log_and_sack_lists() {
    let link = LinkConfig {
        delay: Duration::from_millis(1),
        loss: 0.03,
        ..Default::default()
    };
    let mut sim = Sim::with_config(7, link, 1, TcpConfig::default());
    let total = 512 * 1024;
    let data = super::sim_transfer::pattern(0, total);
    let mut flow = super::sim_transfer::Flow::new(&mut sim, &data);
    let client = flow.client.clone();
    let mut got = 0;
    let mut peak = (0, 0);
    let done = sim.run_until(Duration::from_secs(120), |sim| {
        flow.step(sim, |b| got += b.len());
        let c = client.lock();
        peak.0 = peak.0.max(c.tcb.rack.log.allocated());
        peak.1 = peak.1.max(c.tcb.sb.allocated());
        got == total
    });
    assert!(done, "the transfer did not complete");
    assert!(
        peak.0 > 0 && peak.1 > 0,
        "the log and the SACK lists grew: {peak:?}"
    );
    // Idle, still open: past buffer_idle_release everything empty is given back.
    sim.run_until(Duration::from_secs(3), |_| false);
    let c = client.lock();
    assert_eq!(c.tcb.state(), crate::tcp::State::Established);
    assert_eq!(c.tcb.rack.log.allocated(), 0, "send log");
    assert_eq!(c.tcb.sb.allocated(), 0, "SACK lists");
    assert_eq!(c.tcb.sndbuf_allocated(), 0, "send buffer");
}
