//! ECN (RFC 3168) end to end over the simulated link: a link that marks ECT frames CE
//! with some probability instead of dropping them. Both ends negotiate ECN; the transfer
//! completes byte for byte with no retransmission at all (nothing is lost), and the
//! sender's window is cut by the echoed marks -- once per window -- for NewReno and
//! CUBIC alike. With ECN off the same link marks nothing (no frame is ECT).

use std::time::Duration;

use super::sim_transfer::{pattern, transfer};
use crate::sim::{LinkConfig, Sim};
use crate::tcp::{EcnStats, TcpConfig};

const TOTAL: usize = 4 * 1024 * 1024;

/// 100 Mbit/s, 5 ms each way, 2% of ECT frames marked CE, no loss.
fn marking_link() -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(5),
        rate_bps: Some(100_000_000),
        ce_mark: 0.02,
        ..Default::default()
    }
}

struct Run {
    sim: Sim,
    client: EcnStats,
    server: EcnStats,
    client_ecn: bool,
    server_ecn: bool,
    client_retransmits: u64,
    server_retransmits: u64,
    ssthresh: u32,
}

fn run(cc: &str, ecn: bool, seed: u64) -> Run {
    let cfg = TcpConfig {
        ecn,
        ..TcpConfig::default()
    };
    let mut sim = Sim::with_config(seed, marking_link(), 1, cfg);
    for h in &sim.hosts {
        h.tcp.cc.set_default(cc).expect("built-in module");
    }
    let (got, client, server) = transfer(&mut sim, TOTAL, Duration::from_secs(300));
    assert_eq!(got.len(), TOTAL);
    assert!(got == pattern(0, TOTAL), "bytes differ ({cc}, ecn {ecn})");
    let (c, s) = (client.lock(), server.lock());
    assert_eq!(c.tcb.congestion(), cc);
    let (client_stats, server_stats) = (c.tcb.stats().ecn, s.tcb.stats().ecn);
    let (client_ecn, server_ecn) = (c.tcb.ecn(), s.tcb.ecn());
    let (client_retransmits, server_retransmits) =
        (c.tcb.stats().retransmits, s.tcb.stats().retransmits);
    let ssthresh = c.tcb.info().ssthresh;
    drop((c, s));
    eprintln!(
        "{cc} ecn {ecn}: marked {} frames; sender {client_stats:?} ssthresh {ssthresh}; receiver {server_stats:?}",
        sim.ce_marked
    );
    Run {
        sim,
        client: client_stats,
        server: server_stats,
        client_ecn,
        server_ecn,
        client_retransmits,
        server_retransmits,
        ssthresh,
    }
}

fn marks_cut_the_window_without_retransmissions(cc: &str) {
    let r = run(cc, true, 7);
    assert!(r.client_ecn && r.server_ecn, "ECN negotiated both ways");
    assert!(r.sim.ce_marked > 0, "the link marked nothing");
    // RFC 3168 §6.1.3: every CE mark reached the receiver's count (only ECT data frames
    // can be marked, and they all go one way here).
    assert_eq!(r.server.ce_received, r.sim.ce_marked);
    assert!(r.server.ece_sent > 0 && r.client.ece_received > 0);
    // §6.1.2: reductions, and a CWR for each (the receiver saw them all: no loss).
    assert!(r.client.reductions > 0, "{:?}", r.client);
    assert!(r.client.cwr_sent >= r.client.reductions);
    assert_eq!(r.server.cwr_received, r.client.cwr_sent);
    // Once per window: fewer reductions than marks (several marks fall in one window).
    assert!(r.client.reductions < r.sim.ce_marked, "{:?}", r.client);
    assert!(r.ssthresh < u32::MAX, "ssthresh never reduced");
    // Marks are not losses.
    assert_eq!((r.client_retransmits, r.server_retransmits), (0, 0));
    assert_eq!(r.sim.dropped, 0);
    // The stack-wide counters agree with the connections'.
    assert_eq!(r.sim.counter(0, "tcp.ecn_reductions"), r.client.reductions);
    assert_eq!(r.sim.counter(1, "tcp.ecn_ce_rx"), r.server.ce_received);
    assert_eq!(r.sim.counter(1, "tcp.ecn_ece_tx"), r.server.ece_sent);
    assert_eq!(r.sim.counter(0, "tcp.ecn_cwr_tx"), r.client.cwr_sent);
    assert_eq!(r.sim.counter(0, "tcp.ecn_ect_tx"), r.client.ect_sent);
    assert_eq!(r.sim.counter(0, "tcp.ecn_negotiated"), 1);
    assert_eq!(r.sim.counter(1, "tcp.ecn_negotiated"), 1);
    assert_eq!(r.sim.counter(0, "tcp.retransmits"), 0);
}

#[test]
fn newreno_reacts_to_ce_marks() {
    marks_cut_the_window_without_retransmissions("newreno");
}

#[test]
fn cubic_reacts_to_ce_marks() {
    marks_cut_the_window_without_retransmissions("cubic");
}

// The control: without ECN nothing is ECT, so the same marking link marks nothing and
// no ECN state moves.
#[test]
fn without_ecn_nothing_is_marked() {
    let r = run("newreno", false, 7);
    assert!(!r.client_ecn && !r.server_ecn);
    assert_eq!(r.sim.ce_marked, 0);
    assert_eq!(r.client, EcnStats::default());
    assert_eq!(r.server, EcnStats::default());
    assert_eq!(r.sim.counter(0, "tcp.ecn_negotiated"), 0);
}
