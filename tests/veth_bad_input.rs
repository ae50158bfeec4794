//! Every start-up error: exit code non-zero (2 for usage, 1 for run-time), exactly one
//! stderr line starting with `xstack: error: `, no panic text, nothing left attached.

mod common;

use common::*;

fn up_args<'a>(iface: &'a str, addr: &'a str) -> Vec<&'a str> {
    vec!["up", "--iface", iface, "--addr", addr, "--idle", "sleep"]
}

fn assert_nothing_attached(pair: &VethPair) {
    let link = pair.stack_link();
    assert!(
        !link.contains("prog/xdp"),
        "XDP program left attached after an error:\n{link}"
    );
}

/// Run as `nobody` with no capabilities.
#[test]
fn not_root() {
    if !require_root() || !require_tool("setpriv") {
        return;
    }
    let pair = VethPair::new("nonroot", 1);
    // The target dir may not be reachable by nobody: run a world-executable copy.
    let copy = world_executable_copy();
    let bin = copy.bin.to_str().expect("utf-8 temp path");
    let prefix = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ];
    pair.run_stack_expect_exit(&prefix, bin, &up_args(STACK_IF, STACK_CIDR))
        .assert_error(1);
    assert_nothing_attached(&pair);
}

/// uid 0 but without any capability (no CAP_NET_ADMIN, no CAP_BPF).
#[test]
fn root_without_capabilities() {
    if !require_root() || !require_tool("setpriv") {
        return;
    }
    let pair = VethPair::new("nocaps", 1);
    let prefix = ["setpriv", "--inh-caps=-all", "--bounding-set=-all"];
    pair.run_stack_expect_exit(&prefix, XSTACK_BIN, &up_args(STACK_IF, STACK_CIDR))
        .assert_error(1);
    assert_nothing_attached(&pair);
}

#[test]
fn no_such_interface() {
    if !require_root() {
        return;
    }
    let pair = VethPair::new("noiface", 1);
    pair.run_stack_expect_exit(&[], XSTACK_BIN, &up_args("nosuch0", STACK_CIDR))
        .assert_error(1);
    assert_nothing_attached(&pair);
}

/// Addresses not in CIDR form are usage errors (exit 2).
#[test]
fn address_not_cidr() {
    if !require_root() {
        return;
    }
    let pair = VethPair::new("badcidr", 1);
    for addr in ["198.18.0.1", "foo/24", "198.18.0.1/33", "198.18.0/24"] {
        pair.run_stack_expect_exit(&[], XSTACK_BIN, &up_args(STACK_IF, addr))
            .assert_error(2);
    }
    assert_nothing_attached(&pair);
}

/// The kernel on the interface already holds the address the stack is asked to own.
#[test]
fn kernel_already_holds_address() {
    if !require_root() {
        return;
    }
    let pair = VethPair::new("dupaddr", 1);
    pair.add_stack_kernel_addr(STACK_CIDR);
    pair.run_stack_expect_exit(&[], XSTACK_BIN, &up_args(STACK_IF, STACK_CIDR))
        .assert_error(1);
    assert_nothing_attached(&pair);
}

/// A second `xstack up` on the interface fails; the first keeps its program and keeps
/// answering.
#[test]
fn second_stack_on_same_interface() {
    if !require_root() {
        return;
    }
    let pair = VethPair::new("second", 1);
    let first = pair.spawn_stack(&[]);
    let prog = pair.xdp_prog_id();
    let second = pair.run_stack_expect_exit(&[], XSTACK_BIN, &up_args(STACK_IF, STACK_CIDR));
    let ping = pair.ping(STACK_ADDR, 20, "0.01", None);
    let prog_after = pair.xdp_prog_id();
    let (_, json) = first.stop(libc::SIGTERM);
    second.assert_error(1);
    assert!(
        prog.is_some(),
        "first stack should have an XDP program attached"
    );
    assert_eq!(
        prog, prog_after,
        "the second stack must not replace the first's program"
    );
    ping.assert_all(20);
    eprintln!("first stack: {json}");
}

/// A foreign XDP program (here the committed steering object, attached with `ip link`)
/// makes `xstack up` fail, and stays attached.
#[test]
fn foreign_xdp_program_attached() {
    if !require_root() {
        return;
    }
    let obj = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ebpf/xdp_steer.o");
    let pair = VethPair::new("foreign", 1);
    let out = pair.exec_stack_ns([
        "ip", "link", "set", "dev", STACK_IF, "xdp", "obj", obj, "sec", "xdp",
    ]);
    if !out.status.success() {
        println!(
            "skipping: `ip link set xdp obj` failed (iproute2 without libbpf?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let prog = pair.xdp_prog_id();
    assert!(
        prog.is_some(),
        "foreign program should be attached:\n{}",
        pair.stack_link()
    );
    pair.run_stack_expect_exit(&[], XSTACK_BIN, &up_args(STACK_IF, STACK_CIDR))
        .assert_error(1);
    assert_eq!(
        pair.xdp_prog_id(),
        prog,
        "the foreign program must stay attached:\n{}",
        pair.stack_link()
    );
}
