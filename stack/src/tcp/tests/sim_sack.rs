//! SACK against NewReno-without-SACK over the simulated link: the same transfer, seed and
//! link impairments with `sack` on and off on both ends. Every byte must arrive either
//! way, and SACK-based recovery (RFC 6675) must need fewer retransmitted bytes than
//! RFC 6582 NewReno, which learns of one hole per round trip.
//!
//! The link draws its random numbers per frame, so once the two runs' traffic differs
//! the individual losses differ too; the seed fixes the loss process, not the exact
//! frames. The margins below are wide.

use std::time::Duration;

use super::sim_transfer::{pattern, transfer};
use crate::sim::{LinkConfig, Sim};
use crate::tcp::TcpConfig;

/// Transfers 4 MB over `link` with SACK on or off; returns (retransmitted payload bytes,
/// retransmitted segments) of the sender.
fn run(link: LinkConfig, seed: u64, sack: bool) -> (u64, u64) {
    run_len(link, seed, sack, 4 * 1024 * 1024)
}

fn run_len(link: LinkConfig, seed: u64, sack: bool, total: usize) -> (u64, u64) {
    let cfg = TcpConfig {
        sack,
        ..TcpConfig::default()
    };
    let mut sim = Sim::with_config(seed, link, 1, cfg);
    let (got, client, _server) = transfer(&mut sim, total, Duration::from_secs(900));
    assert_eq!(got.len(), total);
    assert!(got == pattern(0, total), "bytes differ (sack {sack})");
    let t = client.lock();
    let info = t.tcb.info();
    assert_eq!(info.sack, sack);
    let st = t.tcb.stats();
    eprintln!(
        "  sack {sack:5}: bytes_retrans {:8} retransmits {:5} fast_recoveries {:4} dsacks {:3} spurious_rtos {} limited_transmits {} (dropped frames {})",
        info.bytes_retrans, info.retransmits, st.fast_recoveries, st.dsacks, st.spurious_rtos, st.limited_transmits, sim.dropped
    );
    (info.bytes_retrans, info.retransmits)
}

/// Sums over `seeds`: one seed's margin is at the mercy of where its losses fall once the
/// two runs' traffic diverges.
fn compare(name: &str, link: LinkConfig, seeds: std::ops::Range<u64>) {
    let (mut sack, mut newreno) = (0, 0);
    for seed in seeds {
        eprintln!("{name} (seed {seed}):");
        sack += run(link, seed, true).0;
        newreno += run(link, seed, false).0;
    }
    eprintln!("{name}: retransmitted bytes SACK {sack} vs NewReno without SACK {newreno}");
    assert!(
        sack < newreno,
        "{name}: SACK retransmitted {sack} bytes, NewReno {newreno}"
    );
}

fn link(loss: f64, burst: Option<(f64, u32)>) -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(1),
        loss,
        burst,
        duplicate: 0.005,
        rate_bps: Some(100_000_000),
        ..Default::default()
    }
}

#[test]
fn sack_beats_newreno_at_1_percent_loss() {
    compare("1% loss", link(0.01, None), 11..15);
}

#[test]
fn sack_beats_newreno_at_3_percent_loss() {
    compare("3% loss", link(0.03, None), 12..16);
}

// Bursts: each loss starts a burst of 3 more drops with probability 1/2, so one window
// loses several segments in a row -- NewReno's worst case (one hole per RTT).
#[test]
fn sack_beats_newreno_with_burst_loss() {
    compare("burst loss", link(0.01, Some((0.5, 3))), 13..17);
}

/// Short transfers under heavy loss over several seeds: every one must finish (a stall
/// in recovery would hit the time limit). Longer than the 256 KiB send buffer, so the
/// helper's close comes after the handshake (a close in SYN-SENT deletes the TCB, RFC
/// 9293 §3.10.4, queued data and all).
#[test]
fn stress() {
    for seed in 100..124 {
        for sack in [true, false] {
            eprintln!("stress seed {seed} sack {sack}");
            run_len(link(0.05, Some((0.3, 3))), seed, sack, 1024 * 1024);
        }
    }
}
