//! RFC 5961's attacks on a live connection, with Linux as the peer: while curl
//! downloads from `xstack http`, a tool in the peer's namespace forges segments of that
//! connection (RSTs and SYNs inside the window but not at its left edge, data
//! acknowledging bytes never sent). The connection survives with every byte intact, the
//! stack answers with challenge ACKs within their limits, and sends no RST.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn in_window_rst_syn_and_bad_ack_injection_leave_the_download_intact() {
    if !require_root() || !require_tool("curl") {
        return;
    }
    let pair = VethPair::new_headers_only("inject", 1, 64);
    let stack = pair.spawn_http(&[]);
    // At most 200 MB/s (below), so the download outlasts the injection (3 s) however
    // fast the stack and the build are.
    const N: u64 = 1_000_000_000;
    let want = xstack_tools::http::pattern_sha256(N);
    let dst = format!("{STACK_ADDR}:80");
    // 30,000 forged segments at 10,000 a second: during the download.
    let mut inject = pair.spawn_peer(
        "inject",
        &[
            XSTACK_BIN, "inject", "--iface", PEER_IF, &dst, "--count", "30000", "--rate", "10000",
        ],
    );
    let dl = pair.curl_sha256_with(
        &format!("http://{STACK_ADDR}/bytes/{N}"),
        120,
        &["--limit-rate", "200M"],
    );
    inject.wait_for("\"sent\"", Duration::from_secs(60));
    eprintln!("inject: {}", inject.output());
    eprintln!("download: {:.2} Gbit/s", dl.gbit_per_s());
    let (_, json) = stack.stop(libc::SIGTERM);
    let c = |k: &str| json_counter(&json, k);
    eprintln!(
        "tcp.rx {} tcp.tx {} acks_suppressed {} acks_suppressed_per_conn {} rst_tx {}",
        c("tcp.rx"),
        c("tcp.tx"),
        c("tcp.acks_suppressed"),
        c("tcp.acks_suppressed_per_conn"),
        c("tcp.rst_tx")
    );
    assert!(
        dl.status.success(),
        "curl failed under injection: {}",
        dl.stderr
    );
    assert_eq!(dl.bytes, N, "bytes: {}", dl.stderr);
    assert_eq!(dl.sha256, want, "sha256 of the body");
    assert!(
        inject.output().contains("\"sent\":30000"),
        "{}",
        inject.output()
    );
    // Nothing forged made the stack reset its side.
    assert_eq!(c("tcp.rst_tx"), 0, "{json}");
}
