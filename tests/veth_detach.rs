//! The stack leaves no XDP program behind: not after SIGTERM, not after SIGINT, not
//! after failing at start-up.

mod common;

use common::*;

fn stop_detaches(hint: &str, signal: i32, extra: &[&str]) {
    let pair = VethPair::new(hint, 2);
    let stack = pair.spawn_stack(extra);
    let attached = pair.xdp_prog_id();
    // Traffic first, so the program has run when it is taken off.
    let ping = pair.ping(STACK_ADDR, 5, "0.01", None);
    let (_, json) = stack.stop(signal);
    assert!(
        attached.is_some(),
        "while running, `ip link show vstk` should list prog/xdp:\n{}",
        pair.stack_link()
    );
    ping.assert_all(5);
    let link = pair.stack_link();
    assert!(
        !link.contains("prog/xdp") && pair.xdp_prog_id().is_none(),
        "XDP program still attached after signal {signal}:\n{link}\nJSON: {json}"
    );
}

#[test]
fn detach_on_sigterm() {
    if !require_root() {
        return;
    }
    stop_detaches("dterm", libc::SIGTERM, &[]);
}

#[test]
fn detach_on_sigint() {
    if !require_root() {
        return;
    }
    stop_detaches("dint", libc::SIGINT, &[]);
}

#[test]
fn detach_on_sigterm_generic_mode() {
    if !require_root() {
        return;
    }
    stop_detaches("dgen", libc::SIGTERM, &["--xdp-mode", "generic"]);
}

/// A fatal error at start-up (the kernel already holds the address) leaves nothing
/// attached.
#[test]
fn no_program_left_after_startup_error() {
    if !require_root() {
        return;
    }
    let pair = VethPair::new("dfail", 1);
    pair.add_stack_kernel_addr(STACK_CIDR);
    let run = pair.run_stack_expect_exit(
        &[],
        XSTACK_BIN,
        &[
            "up", "--iface", STACK_IF, "--addr", STACK_CIDR, "--idle", "sleep",
        ],
    );
    run.assert_error(1);
    let link = pair.stack_link();
    assert!(
        !link.contains("prog/xdp"),
        "XDP program left after a start-up error:\n{link}"
    );
}

/// `--queues 2` on a 4-queue veth changes the channel count while running; the stack
/// restores it at exit (as its `--help` promises). Generic mode: native XDP on veth
/// needs at least as many rx queues as the peer has tx queues, and the stack says so.
#[test]
fn channel_count_restored_after_exit() {
    if !require_root() {
        return;
    }
    let pair = VethPair::new("dchan", 4);
    let channels = || {
        let out = pair.exec_stack_ns(["ethtool", "-l", STACK_IF]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = channels();
    let stack = pair.spawn_stack(&["--queues", "2", "--xdp-mode", "generic"]);
    let ping = pair.ping(STACK_ADDR, 5, "0.01", None);
    let (_, json) = stack.stop(libc::SIGTERM);
    ping.assert_all(5);
    let after = channels();
    assert_eq!(before, after, "channel count not restored; JSON: {json}");
}
