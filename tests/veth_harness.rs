//! Self-tests of the veth harness with Linux on both ends (no xstack involved): the
//! namespaces come and go, the peer is reachable, the pcap is kept only on failure.

mod common;

use common::*;
use std::path::Path;

fn ns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Linux on both ends: the layout works and Drop removes the namespaces and the pcap.
#[test]
fn harness_linux_to_linux_ping_and_teardown() {
    if !require_root() {
        return;
    }
    let (ns_a, ns_b, pcap);
    {
        let pair = VethPair::new("harness", 2);
        ns_a = pair.ns_stack.clone();
        ns_b = pair.ns_peer.clone();
        pcap = pair.pcap_path().to_path_buf();
        assert!(ns_exists(&ns_a) && ns_exists(&ns_b), "{}", pair.describe());
        // The stack side carries no kernel address by default.
        let addrs = pair.exec_stack_ns(["ip", "-4", "addr", "show", "dev", STACK_IF]);
        assert!(
            !String::from_utf8_lossy(&addrs.stdout).contains("inet "),
            "vstk must start without an IPv4 address"
        );
        // Stand in for the stack: the kernel answers on vstk for this test only.
        pair.add_stack_kernel_addr("198.18.0.1/24");
        pair.ping(STACK_ADDR, 5, "0.01", None).assert_all(5);
        assert_eq!(pair.xdp_prog_id(), None, "no XDP program expected");
        if have_tool("tcpdump") {
            assert!(
                pcap.exists(),
                "tcpdump should be writing {}",
                pcap.display()
            );
        }
    }
    assert!(
        !ns_exists(&ns_a) && !ns_exists(&ns_b),
        "namespaces left behind"
    );
    assert!(!pcap.exists(), "pcap of a passing test should be deleted");
}

/// Peer extra addresses work as ping sources (the spread test relies on it).
#[test]
fn harness_peer_source_addresses() {
    if !require_root() {
        return;
    }
    let pair = VethPair::new("hsrc", 1);
    pair.add_stack_kernel_addr("198.18.0.1/24");
    pair.add_peer_addr("198.18.0.100/24");
    pair.ping(STACK_ADDR, 3, "0.01", Some("198.18.0.100"))
        .assert_all(3);
}

/// A panicking test keeps its pcap under target/veth-pcaps/<test>.pcap.
#[test]
fn harness_keeps_pcap_on_panic() {
    if !require_root() || !require_tool("tcpdump") {
        return;
    }
    let name = test_name("harness_keeps_pcap_on_panic");
    let kept = target_dir().join("veth-pcaps").join(format!("{name}.pcap"));
    let _ = std::fs::remove_file(&kept);
    let result = std::panic::catch_unwind(|| {
        let pair = VethPair::new("hpanic", 1);
        pair.add_stack_kernel_addr("198.18.0.1/24");
        pair.ping(STACK_ADDR, 2, "0.01", None).assert_all(2);
        panic!("deliberate panic to exercise the pcap-keeping path");
    });
    assert!(result.is_err());
    assert!(kept.exists(), "expected the pcap at {}", kept.display());
    let len = std::fs::metadata(&kept).map(|m| m.len()).unwrap_or(0);
    // pcap global header is 24 bytes; two echoes and ARP add more.
    assert!(len > 24, "pcap has no packets ({len} bytes)");
    let _ = std::fs::remove_file(&kept);
}
