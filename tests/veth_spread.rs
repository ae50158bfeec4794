//! Traffic spread over four rx queues reaches the stack on every queue it lands on.
//!
//! veth delivers a frame on the rx queue its sender picked on transmit, a hash of the
//! flow. ICMP echo from separate `ping` processes with the same source address all land
//! on one queue, so each of the 16 pings here uses its own source address
//! (198.18.0.100-115 on the peer), which spreads them.

mod common;

use common::*;

const PINGERS: u32 = 16;
const COUNT: u32 = 20;

/// 16 concurrent pings from 16 source addresses are all answered, and the stack saw
/// redirected frames on more than one queue.
#[test]
fn spread_over_four_queues() {
    if !require_root() {
        return;
    }
    let pair = VethPair::new("spread", 4);
    let sources: Vec<String> = (0..PINGERS)
        .map(|i| format!("198.18.0.{}", 100 + i))
        .collect();
    for src in &sources {
        pair.add_peer_addr(&format!("{src}/24"));
    }
    let stack = pair.spawn_stack(&["--queues", "4"]);
    let results: Vec<PingResult> = std::thread::scope(|s| {
        let handles: Vec<_> = sources
            .iter()
            .map(|src| {
                let pair = &pair;
                s.spawn(move || pair.ping(STACK_ADDR, COUNT, "0.01", Some(src)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ping thread"))
            .collect()
    });
    let ethtool = pair.stack_xdp_ethtool_stats();
    eprintln!("ethtool -S vstk (xdp):\n{ethtool}");
    let (_, json) = stack.stop(libc::SIGTERM);
    for r in &results {
        r.assert_all(COUNT);
    }
    let queues = json_queues(&json);
    eprintln!(
        "spread of {PINGERS} flows over 4 queues (queue, xdp_redirected, xdp_passed): {queues:?}; netisr ip queued (handoffs): {}",
        json["netisr"]["protos"][0]["queued"]
    );
    let busy = queues.iter().filter(|q| q.1 > 0).count();
    assert!(
        busy > 1,
        "expected xdp_redirected > 0 on more than one queue; queues (queue, redirected, passed): {queues:?}\nethtool:\n{ethtool}\nJSON: {json}"
    );
}
