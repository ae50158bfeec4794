//! 1,000 concurrent connections from Linux to `xstack http --queues 4` on a 4-queue veth
//! pair, each downloading 64 KB. The Linux client (Python asyncio in the peer namespace)
//! opens all 1,000 connections first and only sends the requests once every one of them
//! is established, so the stack really holds 1,000 connections at once. Every body must
//! come back whole and in order (its sha256 is checked against the digest computed here).
//!
//! With the RSS emulation on the Linux side (`ebpf/rss_tc.c`) each flow arrives on the
//! queue of the worker that owns its pcbgroup, so netisr hands nothing over. Without it
//! veth picks queues its own way; segments reach their owner through counted handoffs
//! and still nothing is lost or reordered.

mod common;

use common::*;
use sha2::{Digest, Sha256};

const CONNS: usize = 1000;
const SIZE: usize = 64 * 1024;

/// The peer: opens `n` connections, waits until all are established, then sends one
/// `GET /bytes/SIZE` on each and checks every body. Prints one JSON line.
const CLIENT: &str = r#"
import asyncio, hashlib, json, resource, sys, time
host, n, size, want = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1024, n + 1024))

async def main():
    state = {"open": 0, "live": 0, "peak": 0}
    all_open = asyncio.Event()
    t0 = time.monotonic()

    async def one(i):
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, 80), 60)
        except Exception as e:
            return "connect: " + repr(e)
        state["open"] += 1
        state["live"] += 1
        state["peak"] = max(state["peak"], state["live"])
        if state["open"] == n:
            state["all_open_s"] = time.monotonic() - t0
            all_open.set()
        try:
            # Hold the connection until all n are open: they are concurrent for real.
            await asyncio.wait_for(all_open.wait(), 120)
            w.write(b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % size)
            await w.drain()
            data = await asyncio.wait_for(r.read(), 120)
        except Exception as e:
            return "exchange: " + repr(e)
        finally:
            state["live"] -= 1
            w.close()
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return "status: " + head[:40].decode("latin1")
        if len(body) != size:
            return "length %d" % len(body)
        if hashlib.sha256(body).hexdigest() != want:
            return "sha256 mismatch"
        return None

    errors = [e for e in await asyncio.gather(*(one(i) for i in range(n))) if e]
    print(json.dumps({"conns": n, "ok": n - len(errors), "errors": errors[:10],
                      "peak_open": state["peak"], "all_open_s": state.get("all_open_s"),
                      "elapsed_s": time.monotonic() - t0}), flush=True)

asyncio.run(main())
"#;

fn expected_sha256() -> String {
    let body: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    hex_lower(&Sha256::digest(&body))
}

/// Per-worker handoffs out of the exit JSON: `(worker, handoffs_in, handoffs_out, qdrops)`.
fn worker_handoffs(json: &serde_json::Value) -> Vec<(u64, u64, u64, u64)> {
    let ws = json["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("exit JSON has no `workers` array: {json}"));
    ws.iter()
        .map(|w| {
            let f = |k: &str| {
                w[k].as_u64()
                    .unwrap_or_else(|| panic!("worker entry lacks `{k}`: {w}"))
            };
            (
                f("worker"),
                f("handoffs_in"),
                f("handoffs_out"),
                f("qdrops"),
            )
        })
        .collect()
}

/// Runs the 1,000 downloads against a fresh server; returns the stack's exit JSON.
fn thousand_downloads(pair: &VethPair, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--queues", "4"];
    args.extend_from_slice(extra);
    let stack = pair.spawn_http(&args);
    if extra.contains(&"per-worker") {
        assert!(
            stack.stderr_text().contains("(4 event loops)"),
            "{}",
            stack.stderr_text()
        );
    }
    let out = pair.peer_python(
        CLIENT,
        &[
            STACK_ADDR,
            &CONNS.to_string(),
            &SIZE.to_string(),
            &expected_sha256(),
        ],
    );
    // The running stack's /stats carries the same per-worker and per-group view.
    let stats = pair.curl(&["--max-time", "10", &format!("http://{STACK_ADDR}/stats")]);
    let stats: serde_json::Value = serde_json::from_str(&stats.ok_text())
        .unwrap_or_else(|e| panic!("/stats is not JSON ({e}): {}", stats.context()));
    let (_, json) = stack.stop(libc::SIGTERM);
    // (Read while traffic may still move, so only its shape is checked here; the exit
    // JSON, taken when the traffic is over, must add up exactly.)
    let live_conns: u64 = stats["workers"]
        .as_array()
        .filter(|w| w.len() == 4)
        .map(|w| {
            w.iter()
                .map(|x| x["connections"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or_else(|| panic!("/stats lacks 4 workers: {stats}"));
    assert!(live_conns >= 1, "{stats}");
    assert!(
        stats["groups"].as_array().is_some_and(|g| !g.is_empty()),
        "{stats}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "client failed ({}): {stdout}\n{stderr}\nstack: {json}",
        out.status
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("client printed no JSON ({e}): {stdout}\n{stderr}"));
    eprintln!("client: {report}");
    assert_eq!(
        report["ok"].as_u64(),
        Some(CONNS as u64),
        "not every download succeeded: {report}\nstack: {json}"
    );
    assert_eq!(
        report["peak_open"].as_u64(),
        Some(CONNS as u64),
        "connections were not all open at once: {report}"
    );
    assert!(
        json_counter(&json, "tcp.conns_opened") >= CONNS as u64,
        "{json}"
    );
    check_figures_add_up(&json);
    json
}

/// The per-worker and per-group figures of the exit JSON agree with the totals.
fn check_figures_add_up(json: &serde_json::Value) {
    let arr = |k: &str| -> Vec<serde_json::Value> {
        json[k]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("no `{k}` array: {json}"))
    };
    let sum = |v: &[serde_json::Value], k: &str| -> u64 {
        v.iter().map(|x| x[k].as_u64().unwrap_or(0)).sum()
    };
    let (workers, groups) = (arr("workers"), arr("groups"));
    let protos = json["netisr"]["protos"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ip = protos
        .iter()
        .find(|p| p["name"] == "ip")
        .unwrap_or_else(|| panic!("no ip protocol: {json}"));
    let ipf = |k: &str| ip[k].as_u64().unwrap_or(u64::MAX);
    assert_eq!(workers.len(), 4, "{json}");
    assert_eq!(
        sum(&workers, "rx_frames"),
        json_counter(json, "device.rx_frames"),
        "{json}"
    );
    assert_eq!(
        sum(&workers, "packets"),
        sum(&protos, "dispatched") + sum(&protos, "handled"),
        "{json}"
    );
    assert_eq!(
        sum(&workers, "handoffs_in"),
        sum(&protos, "queued"),
        "{json}"
    );
    assert_eq!(
        sum(&workers, "connections"),
        sum(&groups, "connections"),
        "{json}"
    );
    // Every IPv4 packet is counted once in its flow's group.
    assert_eq!(
        sum(&groups, "packets"),
        ipf("dispatched") + ipf("queued"),
        "{json}"
    );
    assert_eq!(sum(&groups, "handoffs_in"), ipf("queued"), "{json}");
    assert_eq!(sum(&groups, "qdrops"), ipf("qdrops"), "{json}");
}

#[test]
fn thousand_connections_with_rss_emulation_need_no_handoffs() {
    if !require_root() || !require_tool("python3") {
        return;
    }
    let pair = VethPair::new_headers_only("many-rss", 4, 96);
    let mut emu = pair.spawn_peer(
        "rss-emulate",
        &[
            XSTACK_BIN,
            "rss-emulate",
            "--iface",
            PEER_IF,
            "--queues",
            "4",
        ],
    );
    emu.wait_for("rss emulation on", UP_TIMEOUT);
    let json = thousand_downloads(&pair, &[]);
    let per_worker = worker_handoffs(&json);
    let handoffs: u64 = per_worker.iter().map(|w| w.2).sum();
    eprintln!(
        "1000 connections, RSS emulation on: handoffs {handoffs}; per worker \
         (worker, in, out, qdrops) {per_worker:?}; per queue {:?}",
        json_queues(&json)
    );
    let busy = json_queues(&json).iter().filter(|q| q.1 > 0).count();
    assert_eq!(busy, 4, "flows should use all four queues: {json}");
    assert_eq!(handoffs, 0, "segments crossed workers: {json}");
}

#[test]
fn thousand_connections_without_rss_emulation_hand_off_and_lose_nothing() {
    if !require_root() || !require_tool("python3") {
        return;
    }
    let pair = VethPair::new_headers_only("many-norss", 4, 96);
    let json = thousand_downloads(&pair, &[]);
    let per_worker = worker_handoffs(&json);
    let handoffs: u64 = per_worker.iter().map(|w| w.2).sum();
    let qdrops: u64 = per_worker.iter().map(|w| w.3).sum();
    eprintln!(
        "1000 connections, RSS emulation off: handoffs {handoffs}, qdrops {qdrops}; per \
         worker (worker, in, out, qdrops) {per_worker:?}"
    );
    assert!(
        handoffs > 0,
        "veth's own placement should disagree with RSS for some flows: {json}"
    );
    let handed_in: u64 = per_worker.iter().map(|w| w.1).sum();
    assert_eq!(handed_in + qdrops, handoffs, "{json}");
}

/// The server with one listener and event loop per worker (`--accept per-worker`,
/// SO_REUSEPORT-like) serves the same 1,000 concurrent downloads.
#[test]
fn thousand_connections_through_per_worker_listeners() {
    if !require_root() || !require_tool("python3") {
        return;
    }
    let pair = VethPair::new_headers_only("many-perw", 4, 96);
    let json = thousand_downloads(&pair, &["--accept", "per-worker"]);
    let packets: Vec<u64> = json["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .map(|x| x["packets"].as_u64().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default();
    eprintln!("1000 connections, per-worker listeners: group packets {packets:?}");
}
