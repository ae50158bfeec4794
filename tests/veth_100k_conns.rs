//! 100,000 concurrent connections from Linux to the event-driven `xstack http` on one
//! worker: every connection makes one request and gets its answer, all of them stay
//! open at once, then all are closed cleanly (no RST from the stack, nothing left).
//! Reports the stack process's resident memory per idle established connection.
//!
//! The clients are Python processes on the peer (each below the machine's open-file
//! limit), from four addresses (so the 4-tuples fit in the ephemeral ports), each keeping
//! 64 connects and requests in flight at a time. The server needs no descriptor per
//! connection: its event loop hears from xstack's sockets through one ready queue.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Connections held open at once (`XSTACK_100K_CONNS` overrides, for a quick run).
fn conns() -> usize {
    std::env::var("XSTACK_100K_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Client addresses on the peer (the stack is 198.18.0.1/24).
const SOURCES: [&str; 4] = ["198.18.0.20", "198.18.0.21", "198.18.0.22", "198.18.0.23"];

/// Connections per client process: under the open-file limit of 20,000 some machines
/// cannot raise.
const PER_CLIENT: usize = 15_000;

/// Python peer: opens N connections round-robin over the source addresses, each sending
/// one `GET /bytes/1` and reading its whole response, with up to 64 in progress; prints
/// `open N` once all are answered and open, then waits for SIGUSR1 (or 900 s),
/// closes them all (250 per 50 ms) and prints `closed N`.
const CLIENT: &str = include_str!("scripts/conns_client.py");

/// The server's `/stats` (with `query`), asked from the peer's kernel.
fn stats_query(pair: &VethPair, query: &str) -> Option<serde_json::Value> {
    let url = format!("http://198.18.0.1/stats{query}");
    let out = pair.curl(&["--max-time", "10", &url]);
    serde_json::from_str(&out.stdout_text()).ok()
}

/// The server's `/stats`.
fn server_stats(pair: &VethPair) -> Option<serde_json::Value> {
    stats_query(pair, "")
}

/// The server's heap bytes in live allocations (`memory.heap_in_use` in `/stats?heap`;
/// asked twice only: it holds the allocator's locks while it counts).
fn heap_in_use(pair: &VethPair) -> u64 {
    stats_query(pair, "?heap")
        .and_then(|v| v["memory"]["heap_in_use"].as_u64())
        .unwrap_or(0)
}

/// The server's open connections, from its `/stats`.
fn server_connections(pair: &VethPair) -> Option<u64> {
    let v = server_stats(pair)?;
    v["workers"]
        .as_array()?
        .iter()
        .map(|w| w["connections"].as_u64())
        .sum()
}

#[test]
fn a_hundred_thousand_connections_on_one_worker() {
    if !require_root() || !require_tool("python3") || !require_tool("curl") {
        return;
    }
    let n = conns();
    let pair = VethPair::new_headers_only("conns100k", 1, 96);
    for src in SOURCES {
        pair.add_peer_addr(&format!("{src}/24"));
    }
    // 55k ports per source address (the peer's namespace only), not the default 28k.
    pair.exec_peer_ok(["sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000"]);
    // The idle timeout outlasts the open phase and the measurement (under a minute even
    // on a loaded machine) and reaps what a lost FIN and RST would leave half-open.
    let stack = pair.spawn_http(&["--port", "80", "--idle-timeout", "90"]);
    // Settle, and let the first /stats connection come and go.
    let _ = server_connections(&pair);
    std::thread::sleep(Duration::from_millis(500));
    let before = vm_rss_kib(stack.pid());
    let heap_before = heap_in_use(&pair);
    let started = Instant::now();
    let mut clients = Vec::new();
    let mut left = n;
    while left > 0 {
        let k = left.min(PER_CLIENT);
        left -= k;
        clients.push((
            k,
            pair.spawn_peer(
                &format!("client{}", clients.len()),
                &[
                    &python3_path(),
                    "-c",
                    CLIENT,
                    &k.to_string(),
                    &SOURCES.join(","),
                    "198.18.0.1",
                ],
            ),
        ));
    }
    for (k, client) in &mut clients {
        client.wait_for("open ", Duration::from_secs(1000));
        let opened = client.output();
        eprintln!(
            "client: {} ({:.1} s)",
            opened.trim(),
            started.elapsed().as_secs_f64()
        );
        assert!(
            opened.contains(&format!("open {k} failed 0")),
            "not every connection was answered and open: {opened}"
        );
    }
    // Idle: buffers go back after `buffer_idle_release` (1 s), and the allocator gives
    // freed pages back a quiet second after that.
    std::thread::sleep(Duration::from_secs(4));
    let after = vm_rss_kib(stack.pid());
    let heap_after = heap_in_use(&pair);
    if let Some(v) = server_stats(&pair) {
        let c = |k: &str| json_counter(&v, k);
        eprintln!(
            "while open: tcp.rst_tx {}, syncookies_bad {}, retransmits {}",
            c("tcp.rst_tx"),
            c("tcp.syncookies_bad"),
            c("tcp.retransmits")
        );
    }
    let held = server_connections(&pair).unwrap_or(0);
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    let heap_per_conn = heap_after.saturating_sub(heap_before) as f64 / n as f64;
    eprintln!(
        "{n} idle connections (the server holds {held}): VmRSS {before} KiB -> {after} KiB, \
         {per_conn:.0} bytes per connection; heap in use {heap_before} -> {heap_after}, \
         {heap_per_conn:.0} bytes per connection"
    );
    assert!(
        held >= n as u64,
        "the server holds {held} connections, not {n}"
    );
    // Close them all from the client and wait for the server to let go of every one.
    for (_, client) in &clients {
        client.signal(libc::SIGUSR1);
    }
    for (_, client) in &mut clients {
        client.wait_for("closed ", Duration::from_secs(300));
    }
    // Normally all are gone in seconds. A starved debug build can drop both a FIN and
    // the RST Linux sends when it gives up on that orphan (rx ring overflow); such a
    // half-open connection goes at the server's idle timeout, as it would in production.
    let closing = Instant::now();
    let deadline = closing + Duration::from_secs(200);
    let mut left = server_connections(&pair).unwrap_or(u64::MAX);
    while left > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        left = server_connections(&pair).unwrap_or(u64::MAX);
    }
    eprintln!(
        "waited {:.1} s after the clients closed",
        closing.elapsed().as_secs_f64()
    );
    if left > 1 {
        if let Some(v) = server_stats(&pair) {
            eprintln!("still open, by state: {}", v["tcp"]["states"]);
        }
    }
    let (_, json) = stack.stop(libc::SIGTERM);
    let c = |k: &str| json_counter(&json, k);
    eprintln!(
        "after close: {left} left (the /stats request itself is one); tcp.rst_tx {}, \
         conns_opened {}, conns_closed {}",
        c("tcp.rst_tx"),
        c("tcp.conns_opened"),
        c("tcp.conns_closed")
    );
    assert!(
        left <= 1,
        "connections still open a while after the client closed: {left}"
    );
    // A debug build drops frames when 20k FINs arrive at once (its rx ring overflows),
    // so some closes take retransmissions, and an ACK can come back after its
    // connection finished: that gets a RST (as from Linux). A RST for a connection the
    // stack still had would be a reset; there must be none.
    assert!(
        c("tcp.rst_tx") <= c("tcp.syncookies_bad") + c("tcp.rx_no_connection"),
        "the stack reset a connection: {json}"
    );
    assert_eq!(
        c("tcp.conns_closed"),
        c("tcp.conns_opened"),
        "not every connection finished: {json}"
    );
    assert!(c("tcp.conns_opened") >= n as u64, "{json}");
}
