//! SYN cookies answered in the XDP program (`--no-offload syncookie` turns it off):
//!
//! - Linux's connections to `xstack http` get their SYN,ACK from the program: it counts
//!   them, the stack keeps no SYN cache entry and takes each handshake's ACK as a cookie
//!   ACK, and the connection has what the handshake negotiated (window scaling, SACK,
//!   timestamps) and a true RTT sample from it.
//! - A connection whose 4-tuple the stack still holds in TIME-WAIT (the server closed
//!   first) is opened again: the program cannot see TIME-WAIT, the stack lets the old
//!   incarnation go when the cookie ACK arrives.
//! - With the offload off, the stack answers SYNs itself (SYN cache).

mod common;

use common::*;

fn queue_counter(json: &serde_json::Value, key: &str) -> u64 {
    json["queues"]
        .as_array()
        .unwrap_or_else(|| panic!("no queues: {json}"))
        .iter()
        .map(|q| q[key].as_u64().unwrap_or_else(|| panic!("no {key}: {q}")))
        .sum()
}

fn get(pair: &VethPair, args: &[&str]) -> CurlRun {
    let mut a = vec!["--max-time", "10", "-s"];
    a.extend_from_slice(args);
    let r = pair.curl(&a);
    assert!(r.status.success(), "{}", r.context());
    r
}

#[test]
fn handshakes_are_answered_in_xdp_with_nothing_lost() {
    if !require_root() || !require_tool("curl") {
        return;
    }
    let pair = VethPair::new_headers_only("syncookie", 1, 96);
    let stack = pair.spawn_http(&[]);
    let base = format!("http://{STACK_ADDR}");
    for _ in 0..5 {
        let r = get(&pair, &[&format!("{base}/bytes/100000")]);
        assert_eq!(r.stdout.len(), 100_000);
    }
    let info = get(&pair, &[&format!("{base}/info")]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("/info JSON");
    let (_, json) = stack.stop(libc::SIGTERM);
    let ctx = format!("/info: {info}\nexit: {json}");
    assert!(queue_counter(&json, "xdp_syn_answered") >= 6, "{ctx}");
    assert!(json_counter(&json, "tcp.syncookies_ok") >= 6, "{ctx}");
    assert_eq!(json_counter(&json, "tcp.syncache_added"), 0, "{ctx}");
    assert_eq!(json_counter(&json, "tcp.syncookies_bad"), 0, "{ctx}");
    // What Linux's SYN asked for survived in the cookie: its window scale (7 by default
    // for Linux's buffers, ours from our buffer), SACK, timestamps.
    assert!(info["sack"] == true && info["timestamps"] == true, "{ctx}");
    let ws = info["wscale"].as_array().expect("wscale pair");
    assert!(
        ws.iter().all(|w| w.as_u64().is_some_and(|w| w > 0)),
        "{ctx}"
    );
    assert_eq!(info["mss"], 1448, "1460 less the timestamps: {ctx}");
    // The handshake's RTT, from the microsecond clock in the cookie's TSval: a veth
    // round trip, not 0 and not a millisecond tick.
    let srtt = info["srtt_us"].as_u64().expect("srtt_us");
    assert!(srtt > 0 && srtt < 5_000, "srtt {srtt} µs: {ctx}");
}

#[test]
fn a_connection_reopens_over_time_wait() {
    if !require_root() || !require_tool("curl") {
        return;
    }
    let pair = VethPair::new_headers_only("syncookie-tw", 1, 96);
    let stack = pair.spawn_http(&[]);
    let url = format!("http://{STACK_ADDR}/bytes/1000");
    // `Connection: close`: the server closes first and keeps the 4-tuple in TIME-WAIT;
    // the client's port is free again at once.
    for i in 0..3 {
        let r = get(
            &pair,
            &["--local-port", "45000", "-H", "Connection: close", &url],
        );
        assert_eq!(r.stdout.len(), 1000, "round {i}");
    }
    let (_, json) = stack.stop(libc::SIGTERM);
    assert!(json_counter(&json, "tcp.time_wait_reopened") >= 2, "{json}");
    assert!(queue_counter(&json, "xdp_syn_answered") >= 3, "{json}");
    assert_eq!(json_counter(&json, "tcp.rst_tx"), 0, "{json}");
}

#[test]
fn with_the_offload_off_the_stack_answers() {
    if !require_root() || !require_tool("curl") {
        return;
    }
    let pair = VethPair::new_headers_only("syncookie-off", 1, 96);
    let stack = pair.spawn_http(&["--no-offload", "syncookie"]);
    let r = get(&pair, &[&format!("http://{STACK_ADDR}/bytes/100")]);
    assert_eq!(r.stdout.len(), 100);
    let (_, json) = stack.stop(libc::SIGTERM);
    assert_eq!(queue_counter(&json, "xdp_syn_answered"), 0, "{json}");
    assert!(json_counter(&json, "tcp.syncache_added") >= 1, "{json}");
    assert_eq!(json_counter(&json, "tcp.syncookies_ok"), 0, "{json}");
}
