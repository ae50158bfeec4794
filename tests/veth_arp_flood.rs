//! An ARP flood at the stack: a million requests for its address from random senders
//! on its subnet (random MACs), with Linux as the peer. The ARP cache stays at its cap
//! (`StackConfig.arp.max_entries`), the refusals are counted, and the stack still
//! answers the real peer throughout.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn an_arp_flood_leaves_the_cache_at_its_cap_and_the_stack_answering() {
    if !require_root() {
        return;
    }
    let pair = VethPair::new_headers_only("arpflood", 1, 64);
    // A /16 for the stack: room for more neighbours than the cache's 1,024 entries.
    let stack = pair.spawn_stack_raw(&[
        "up",
        "--iface",
        STACK_IF,
        "--addr",
        "198.18.0.1/16",
        "--idle",
        "sleep",
    ]);
    // Senders in 198.18.128.0/17, on the stack's subnet: neither its address nor the
    // peer's, whose real entry a forged one would otherwise overwrite.
    let mut flood = pair.spawn_peer(
        "arp-flood",
        &[
            XSTACK_BIN,
            "arp-flood",
            "--iface",
            PEER_IF,
            STACK_ADDR,
            "--sources",
            "198.18.128.0/17",
            "--count",
            "1000000",
        ],
    );
    // The peer keeps getting answers during the flood.
    let during = pair.ping(STACK_ADDR, 20, "0.1", None);
    flood.wait_for("\"sent\"", Duration::from_secs(120));
    eprintln!("flood: {}", flood.output());
    let after = pair.ping(STACK_ADDR, 5, "0.2", None);
    let (_, json) = stack.stop(libc::SIGTERM);
    let c = |k: &str| json_counter(&json, k);
    eprintln!(
        "arp.rx {} refused_cache_full {} requests_answered {}",
        c("arp.rx"),
        c("arp.refused_cache_full"),
        c("arp.requests_answered")
    );
    // The flood is sent as fast as the peer can (over 300k/s on a quick machine), which
    // may be more than the stack drains (a debug build): the excess, pings included, is
    // dropped at the socket's receive ring (`xsk_rx_dropped`), as a kernel drops at its
    // backlog. Not stalling means answers keep coming during the flood and all after it.
    assert!(
        during.received >= 5,
        "pings during the flood: {}",
        during.output
    );
    assert_eq!(after.received, 5, "pings after the flood: {}", after.output);
    // 32,768 possible senders against a cache of 1,024: once full, every request from a
    // sender not in it is refused and counted, so the cache stays at its cap.
    assert!(c("arp.rx") > 100_000, "the flood reached the stack: {json}");
    assert!(
        c("arp.refused_cache_full") > c("arp.rx") / 2,
        "most requests found the cache full: {json}"
    );
}
