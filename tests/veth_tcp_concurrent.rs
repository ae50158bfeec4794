//! 50 concurrent connections from Linux to `xstack http` over a veth pair.

mod common;

use std::collections::BTreeSet;

use common::*;

const CONNS: usize = 50;
const SIZE: u64 = 1024 * 1024;

/// One `curl --parallel --parallel-immediate --parallel-max 50` fetches `/bytes/1MiB` 50
/// times over 50 connections at once; every body has the right sha256.
#[test]
fn fifty_concurrent_downloads() {
    if !require_root() || !require_tool("curl") {
        return;
    }
    let dir = TestDir::new("par50");
    let pair = VethPair::new_headers_only("par50", 1, 128);
    let stack = pair.spawn_http(&[]);
    let url = format!("http://{STACK_ADDR}/bytes/{SIZE}");
    let outs: Vec<String> = (0..CONNS)
        .map(|i| dir.path.join(format!("body{i}")).display().to_string())
        .collect();
    let mut args: Vec<&str> = vec![
        "--no-progress-meter",
        "--parallel",
        "--parallel-immediate",
        "--parallel-max",
        "50",
        "--max-time",
        "120",
        "-w",
        "%{stderr}curl: http_code=%{http_code} size=%{size_download} local_port=%{local_port} connects=%{num_connects}\\n",
    ];
    for o in &outs {
        args.extend(["-o", o.as_str(), url.as_str()]);
    }
    let run = pair.curl(&args);
    eprintln!("{}", run.context());
    let stats = pair.curl(&["--max-time", "10", &format!("http://{STACK_ADDR}/stats")]);
    eprintln!("/stats: {}", stats.stdout_text());
    eprintln!("vstk receive drops:\n{}", pair.stack_rx_drops());
    let (_, json) = stack.stop(libc::SIGTERM);
    for (q, redirected, _) in json_queues(&json) {
        let rx = json["queues"][q as usize]["rx_frames"]
            .as_u64()
            .unwrap_or(0);
        eprintln!(
            "queue {q}: {redirected} frames redirected by XDP, {rx} received by the stack \
             ({} lost between the two)",
            redirected.saturating_sub(rx)
        );
    }
    let ctx = format!("{}\nstack exit counters: {json}", run.context());
    assert!(run.status.success(), "curl failed: {ctx}");

    // In parallel mode curl may still draw its progress meter on stderr; the -w reports
    // are found wherever they start.
    let reports: Vec<&str> = run
        .stderr
        .split(['\n', '\r'])
        .filter_map(|l| l.find("curl: http_code=").map(|i| &l[i..]))
        .collect();
    assert_eq!(reports.len(), CONNS, "one -w line per transfer: {ctx}");
    let ports: BTreeSet<&str> = reports
        .iter()
        .filter_map(|l| l.split("local_port=").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .collect();
    assert_eq!(
        ports.len(),
        CONNS,
        "{CONNS} transfers over {CONNS} distinct connections: {ctx}"
    );
    assert!(
        reports.iter().all(|l| l.contains("http_code=200")),
        "every transfer gets 200: {ctx}"
    );

    let want = xstack_tools::http::pattern_sha256(SIZE);
    let mut bad = Vec::new();
    for o in &outs {
        let p = std::path::Path::new(o);
        let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let sum = if p.exists() {
            file_sha256(p)
        } else {
            "missing".into()
        };
        if len != SIZE || sum != want {
            bad.push(format!("{o}: {len} bytes, sha256 {sum}"));
        }
    }
    assert!(
        bad.is_empty(),
        "bodies with wrong size or sha256 (want {want}):\n{}\n{ctx}",
        bad.join("\n")
    );
    assert!(
        json_counter(&json, "tcp.conns_opened") >= CONNS as u64,
        "the stack should have opened at least {CONNS} connections: {ctx}"
    );
}
