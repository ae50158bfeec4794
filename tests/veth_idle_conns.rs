//! 10,000 idle connections from Linux held open by the stack: every one is established
//! and the stack's resident memory per connection stays small (buffers are allocated
//! only when data arrives).

mod common;

use std::time::{Duration, Instant};

use common::*;

const CONNS: usize = 10_000;

#[test]
fn ten_thousand_idle_connections() {
    if !require_root() || !require_tool("python3") {
        return;
    }
    let pair = VethPair::new_headers_only("idle10k", 1, 96);
    let stack = pair.spawn_stack_raw(&[
        "hold", "--iface", STACK_IF, "--addr", STACK_CIDR, "--port", "9000", "--idle", "sleep",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let before = vm_rss_kib(stack.pid());
    let mut opener = pair.spawn_peer(
        "opener",
        &["python3", "-c", IDLE_OPENER, &CONNS.to_string()],
    );
    opener.wait_for(&format!("open {CONNS}"), Duration::from_secs(120));
    // The accept thread logs every thousand.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stack
        .stderr_text()
        .contains(&format!("holding {CONNS} connections"))
    {
        assert!(
            Instant::now() < deadline,
            "stack did not accept all: {}",
            stack.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = vm_rss_kib(stack.pid());
    let per_conn = (after.saturating_sub(before) * 1024) as f64 / CONNS as f64;
    eprintln!("{CONNS} idle connections: VmRSS {before} KiB -> {after} KiB, {per_conn:.0} bytes per connection");
    drop(opener);
    let (_, json) = stack.stop(libc::SIGTERM);
    assert!(
        json_counter(&json, "tcp.conns_opened") >= CONNS as u64,
        "{json}"
    );
    assert!(
        before > 0 && after > before,
        "VmRSS not readable: {before} {after}"
    );
    // Idle connections hold no buffer memory; the control block, its connection
    // object and the table entries are a few KiB.
    assert!(per_conn < 8192.0, "{per_conn:.0} bytes per idle connection");
}
