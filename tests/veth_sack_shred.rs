//! A SACK-shredding receiver: while one Linux client downloads from `xstack http`, a
//! tool in the client's namespace sends, in that download's name, 20,000 duplicate ACKs
//! a second whose SACK blocks cover single bytes with one-byte gaps (the pattern behind
//! Linux's CVE-2019-11478). Another download served by the same worker at the same time
//! keeps at least 0.8x the throughput it has when the same tool sends as many plain
//! duplicate ACKs instead (the control: the same packets to forge, send and take in,
//! without the shredding), the shredded scoreboard stays at its cap (`sack_max_holes`),
//! and both bodies arrive intact.

mod common;

use common::*;
use std::time::Duration;

/// The shredded download: long enough to outlast a round, from a known port.
const SHREDDED_PORT: u16 = 40_000;
/// The measured download.
const N: u64 = 500_000_000;

/// One round: the neighbour download runs (shredded or not) while the measured one is
/// timed; returns the measured one's Gbit/s.
fn round(pair: &VethPair, shred: bool, want: &str) -> f64 {
    let port = SHREDDED_PORT.to_string();
    let big = format!("http://{STACK_ADDR}/bytes/100000000000");
    let _neighbour = pair.spawn_peer(
        "neighbour",
        &[
            "curl",
            "-sS",
            "--local-port",
            &port,
            "--max-time",
            "60",
            "-o",
            "/dev/null",
            &big,
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let client = format!("{PEER_ADDR}:{SHREDDED_PORT}");
    let dst = format!("{STACK_ADDR}:80");
    let blocks = if shred { "3" } else { "0" };
    let shredder = {
        pair.spawn_peer(
            "shred",
            &[
                XSTACK_BIN,
                "sack-shred",
                "--iface",
                PEER_IF,
                &dst,
                "--client",
                &client,
                "--rate",
                "20000",
                "--seconds",
                "60",
                "--blocks",
                blocks,
            ],
        )
    };
    std::thread::sleep(Duration::from_millis(300));
    let dl = pair.curl_sha256(&format!("http://{STACK_ADDR}/bytes/{N}"), 60);
    drop(shredder);
    assert!(dl.status.success(), "download failed: {}", dl.context());
    assert_eq!(
        (dl.bytes, dl.sha256.as_str()),
        (N, want),
        "{}",
        dl.context()
    );
    dl.gbit_per_s()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn a_sack_shredding_receiver_does_not_slow_another_connection() {
    if !require_root() || !require_tool("curl") {
        return;
    }
    let pair = VethPair::new_headers_only("shred", 1, 64);
    let stack = pair.spawn_http(&[]);
    let want = xstack_tools::http::pattern_sha256(N);
    let (mut plain, mut shredded) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        plain.push(round(&pair, false, &want));
        shredded.push(round(&pair, true, &want));
    }
    let (_, json) = stack.stop(libc::SIGTERM);
    let c = |k: &str| json_counter(&json, k);
    let (p, s) = (median(plain.clone()), median(shredded.clone()));
    eprintln!(
        "other download beside one sent plain duplicate ACKs {plain:.2?} Gbit/s, beside a shredded one \
         {shredded:.2?}: medians {p:.2} vs {s:.2} ({:.2}x); sack_refused_conn_limit {} \
         retransmits {}",
        s / p,
        c("tcp.sack_refused_conn_limit"),
        c("tcp.retransmits")
    );
    assert!(
        c("tcp.sack_refused_conn_limit") > 0,
        "the shredder never filled the scoreboard: {json}"
    );
    assert!(
        s >= 0.8 * p,
        "shredding one connection slowed another: {s:.2} vs {p:.2} Gbit/s"
    );
}
