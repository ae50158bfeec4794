//! RSS placement on a 4-queue veth pair. With the RSS emulation (`ebpf/rss_tc.c` on the
//! Linux side, steering each flow to the rx queue its Toeplitz hash names), every TCP
//! segment arrives on the queue of the worker that owns its connection: netisr hands
//! nothing over. Without it, veth spreads flows its own way, segments are handed to
//! their owner through netisr's queues, and every byte still arrives intact.

mod common;

use common::*;

const CONNS: usize = 40;
const SIZE: u64 = 256 * 1024;

/// Runs 40 parallel downloads; returns the stack's exit JSON after checking every body.
fn downloads(pair: &VethPair, dir: &TestDir) -> serde_json::Value {
    let stack = pair.spawn_http(&["--queues", "4"]);
    let url = format!("http://{STACK_ADDR}/bytes/{SIZE}");
    let outs: Vec<String> = (0..CONNS)
        .map(|i| dir.path.join(format!("b{i}")).display().to_string())
        .collect();
    let mut args: Vec<&str> = vec![
        "--no-progress-meter",
        "--parallel",
        "--parallel-immediate",
        "--parallel-max",
        "40",
        "--max-time",
        "120",
    ];
    for o in &outs {
        args.extend(["-o", o.as_str(), url.as_str()]);
    }
    let run = pair.curl(&args);
    let (_, json) = stack.stop(libc::SIGTERM);
    assert!(
        run.status.success(),
        "curl failed: {}\nstack: {json}",
        run.context()
    );
    let want = xstack_tools::http::pattern_sha256(SIZE);
    for o in &outs {
        let got = file_sha256(std::path::Path::new(o));
        assert_eq!(got, want, "{o}: wrong body\nstack: {json}");
    }
    json
}

fn ip_handoffs(json: &serde_json::Value) -> u64 {
    json["netisr"]["protos"]
        .as_array()
        .and_then(|p| p.iter().find(|x| x["name"] == "ip"))
        .and_then(|x| x["queued"].as_u64())
        .unwrap_or(u64::MAX)
}

#[test]
fn with_rss_emulation_no_segment_is_handed_over() {
    if !require_root() || !require_tool("curl") {
        return;
    }
    let dir = TestDir::new("rss-on");
    let pair = VethPair::new("rsson", 4);
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
    let json = downloads(&pair, &dir);
    let queues = json_queues(&json);
    let busy = queues.iter().filter(|q| q.1 > 0).count();
    eprintln!(
        "with RSS emulation: per queue (queue, redirected, passed) {queues:?}; ip handoffs {}",
        ip_handoffs(&json)
    );
    assert!(busy >= 3, "flows should spread over the queues: {queues:?}");
    assert_eq!(ip_handoffs(&json), 0, "segments crossed workers: {json}");
}

#[test]
fn without_rss_emulation_handoffs_are_counted_and_nothing_is_lost() {
    if !require_root() || !require_tool("curl") {
        return;
    }
    let dir = TestDir::new("rss-off");
    let pair = VethPair::new("rssoff", 4);
    let json = downloads(&pair, &dir);
    let handoffs = ip_handoffs(&json);
    eprintln!(
        "without RSS emulation: per queue {:?}; ip handoffs {handoffs}",
        json_queues(&json)
    );
    assert!(
        handoffs > 0 && handoffs != u64::MAX,
        "veth's own placement should disagree with RSS for some flows: {json}"
    );
    let qdrops: u64 = json["netisr"]["protos"]
        .as_array()
        .map(|p| p.iter().map(|x| x["qdrops"].as_u64().unwrap_or(0)).sum())
        .unwrap_or(0);
    assert_eq!(qdrops, 0, "{json}");
}
