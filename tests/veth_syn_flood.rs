//! A SYN flood from random forged sources (198.19.0.0/16, the benchmark block) at
//! `xstack http`, with Linux as the legitimate client: while it lasts, new connections
//! still succeed and a download still moves, the SYN cache and cookies absorb the flood
//! (no control block per SYN), and the stack ends with no half-open connection.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// SYNs per second: what the sender reaches on a loaded 2-CPU machine alongside the
/// stack (the bench's "SYN flood" row measures 50k/s against Linux).
const RATE: &str = "20000";

#[test]
fn connections_succeed_during_a_syn_flood() {
    if !require_root() || !require_tool("curl") {
        return;
    }
    let pair = VethPair::new_headers_only("synflood", 1, 64);
    // Replies to the forged sources go to the peer (the gateway), which drops them.
    let stack = pair.spawn_http(&["--gateway", PEER_ADDR]);
    let dst = format!("{STACK_ADDR}:80");
    let mut flood = pair.spawn_peer(
        "syn-flood",
        &[
            XSTACK_BIN,
            "syn-flood",
            &dst,
            "--rate",
            RATE,
            "--seconds",
            "6",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    // 20 new connections during the flood, one request each.
    let mut times = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let r = pair.curl(&["--max-time", "5", &format!("http://{STACK_ADDR}/bytes/100")]);
        times.push(started.elapsed());
        assert!(
            r.status.success(),
            "connection {i} during the flood failed: {}",
            r.stderr
        );
        assert_eq!(r.stdout.len(), 100, "connection {i}: body");
    }
    // And a download.
    let dl = pair.curl_sha256(&format!("http://{STACK_ADDR}/bytes/20000000"), 30);
    assert_eq!(
        dl.bytes, 20_000_000,
        "download during the flood: {}",
        dl.stderr
    );
    flood.wait_for("\"sent\"", Duration::from_secs(30));
    let sent = flood.output();
    eprintln!("flood: {sent}");
    times.sort();
    eprintln!(
        "connection times during the flood: median {:?}, max {:?}; download {:.2} Gbit/s",
        times[times.len() / 2],
        times[times.len() - 1],
        dl.gbit_per_s()
    );
    let stats = pair.curl(&["--max-time", "10", &format!("http://{STACK_ADDR}/stats")]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("/stats JSON");
    let (_, json) = stack.stop(libc::SIGTERM);
    let c = |k: &str| json_counter(&stats, k);
    eprintln!(
        "syncache_added {} syncookies_sent {} syncache_overflow {} conns_opened {}",
        c("tcp.syncache_added"),
        c("tcp.syncookies_sent"),
        c("tcp.drop_syncache_overflow"),
        c("tcp.conns_opened")
    );
    assert!(
        c("tcp.syncache_added") + c("tcp.syncookies_sent") > 10_000,
        "the flood reached the listener: {stats}"
    );
    // Only the legitimate connections became control blocks.
    assert!(
        c("tcp.conns_opened") < 100,
        "conns_opened: {stats}\nexit: {json}"
    );
}
