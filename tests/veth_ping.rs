//! The stack answers ICMP echo (and the ARP before it) from a Linux peer.

mod common;

use common::*;

/// `ping -c 200 -i 0.005 -W 1 198.18.0.1` from the peer: every echo is answered.
#[test]
fn ping_200_all_answered() {
    if !require_root() {
        return;
    }
    let pair = VethPair::new("ping", 1);
    let stack = pair.spawn_stack(&[]);
    let ping = pair.ping(STACK_ADDR, 200, "0.005", None);
    eprintln!("{}", ping.output);
    let (_, json) = stack.stop(libc::SIGTERM);
    ping.assert_all(200);
    let redirected: u64 = json_queues(&json).iter().map(|q| q.1).sum();
    assert!(
        redirected >= 200,
        "200 echo requests answered but only {redirected} frames redirected to the stack: {json}"
    );
}

/// The same with busy-polling workers (`--idle busy`), briefly: one core spins.
#[test]
fn ping_busy_poll() {
    if !require_root() {
        return;
    }
    let pair = VethPair::new("pingbusy", 1);
    let stack = pair.spawn_stack(&["--idle", "busy"]);
    let ping = pair.ping(STACK_ADDR, 50, "0.005", None);
    eprintln!("{}", ping.output);
    let (_, json) = stack.stop(libc::SIGINT);
    ping.assert_all(50);
    eprintln!("{json}");
}
