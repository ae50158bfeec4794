//! Lost-retransmission detection (`tcp/sack.rs`) over the simulated link: the same
//! transfers with it on and off. In plain RFC 6675 a retransmission that is lost again is
//! only repaired by the RTO; with detection most of those RTOs disappear. Every byte must
//! arrive either way.
//!
//! The link draws its random numbers per frame, so once the two runs' traffic differs
//! their individual losses differ too: the comparison is over the sum of several seeds,
//! with a wide margin.

use std::time::Duration;

use super::sim_transfer::{pattern, transfer};
use crate::sim::{LinkConfig, Sim};
use crate::tcp::TcpConfig;

/// What one transfer cost the sender.
#[derive(Clone, Copy, Debug, Default)]
struct Cost {
    rtos: u64,
    lost_rexmits: u64,
    retransmits: u64,
    dsacks: u64,
    /// Simulated time the transfer took.
    time: Duration,
}

/// Transfers `total` bytes over `link` with lost-retransmission detection on or off.
fn run(link: LinkConfig, seed: u64, detect: bool, total: usize) -> Cost {
    let cfg = TcpConfig {
        lost_retransmit: detect,
        // The mechanism RACK subsumes, measured on its own.
        rack: false,
        ..TcpConfig::default()
    };
    let mut sim = Sim::with_config(seed, link, 1, cfg);
    let start = sim.now;
    let (got, client, _server) = transfer(&mut sim, total, Duration::from_secs(3600));
    assert_eq!(got.len(), total);
    assert!(got == pattern(0, total), "bytes differ (detect {detect})");
    let t = client.lock();
    let st = t.tcb.stats();
    Cost {
        rtos: st.rtos,
        lost_rexmits: st.lost_rexmits,
        retransmits: st.retransmits,
        dsacks: st.dsacks,
        time: sim.now.saturating_duration_since(start),
    }
}

/// A 2 ms RTT path at 100 Mbit/s with random loss in both directions. A short RTT, as
/// on the veth path the bench measures, is where an RTO hurts: the 200 ms minimum RTO is
/// a hundred round trips of idle link and a restart from one segment.
fn link(loss: f64) -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(1),
        loss,
        rate_bps: Some(100_000_000),
        ..Default::default()
    }
}

/// Sums the costs over `seeds` with detection off and on; prints both.
fn compare(name: &str, loss: f64, seeds: std::ops::Range<u64>, total: usize) -> (Cost, Cost) {
    let mut sum = [Cost::default(); 2];
    for seed in seeds {
        for (i, detect) in [false, true].into_iter().enumerate() {
            let c = run(link(loss), seed, detect, total);
            eprintln!("{name} seed {seed} detect {detect:5}: {c:?}");
            sum[i].rtos += c.rtos;
            sum[i].lost_rexmits += c.lost_rexmits;
            sum[i].retransmits += c.retransmits;
            sum[i].dsacks += c.dsacks;
            sum[i].time += c.time;
        }
    }
    eprintln!("{name}: without detection {:?}", sum[0]);
    eprintln!("{name}: with detection    {:?}", sum[1]);
    (sum[0], sum[1])
}

fn check(name: &str, off: Cost, on: Cost) {
    // Without detection, lost retransmissions do happen on this link (else the
    // comparison says nothing), and with it they are found instead of timed out.
    assert!(
        off.rtos >= 4,
        "{name}: only {} RTOs without detection",
        off.rtos
    );
    assert_eq!(off.lost_rexmits, 0, "{name}: detection was off");
    assert!(on.lost_rexmits > 0, "{name}: nothing detected");
    assert!(
        on.rtos * 2 <= off.rtos,
        "{name}: {} RTOs with detection, {} without",
        on.rtos,
        off.rtos
    );
    assert!(
        on.time < off.time,
        "{name}: {:?} with detection, {:?} without",
        on.time,
        off.time
    );
}

#[test]
fn fewer_rtos_at_1_percent_loss() {
    let (off, on) = compare("1% loss", 0.01, 20..26, 32 * 1024 * 1024);
    check("1% loss", off, on);
}

#[test]
fn fewer_rtos_at_3_percent_loss() {
    let (off, on) = compare("3% loss", 0.03, 30..36, 8 * 1024 * 1024);
    check("3% loss", off, on);
}

/// A 10 ms RTT path whose 1 ms jitter reorders frames (100 Mbit/s: 0.12 ms a frame) and
/// that duplicates some: the case where declaring a retransmission lost on the first
/// later SACK would resend delivered ones.
fn reordering_link(loss: f64) -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(1),
        duplicate: 0.005,
        ..link(loss)
    }
}

// Spurious re-retransmissions: on a reordering path the detection must not cost more
// retransmissions than it saves.
#[test]
fn reordering_costs_few_extra_retransmissions() {
    let mut sum = [Cost::default(); 2];
    for seed in 40..52 {
        for (i, detect) in [false, true].into_iter().enumerate() {
            let c = run(reordering_link(0.03), seed, detect, 2 * 1024 * 1024);
            eprintln!("reordering seed {seed} detect {detect:5}: {c:?}");
            sum[i].rtos += c.rtos;
            sum[i].lost_rexmits += c.lost_rexmits;
            sum[i].retransmits += c.retransmits;
            sum[i].dsacks += c.dsacks;
            sum[i].time += c.time;
        }
    }
    eprintln!("reordering: without detection {:?}", sum[0]);
    eprintln!("reordering: with detection    {:?}", sum[1]);
    let (off, on) = (sum[0], sum[1]);
    // Reordering deeper than DupThresh resends some delivered retransmissions (as it
    // does first transmissions), but the RTOs saved outweigh them.
    assert!(
        on.retransmits * 10 <= off.retransmits * 11,
        "{} retransmissions with detection, {} without",
        on.retransmits,
        off.retransmits
    );
    assert!(
        on.rtos < off.rtos,
        "{} RTOs with detection, {} without",
        on.rtos,
        off.rtos
    );
}
