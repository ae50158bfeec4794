//! The stack and the kernel share one interface: the XDP program passes the kernel's own
//! traffic up, so both answer for their own addresses at the same time.

mod common;

use common::*;

const KERNEL_ADDR: &str = "198.18.0.3";

/// The stack answers pings to .1 while the stack side's kernel answers pings to .3.
#[test]
fn stack_and_kernel_answer_side_by_side() {
    if !require_root() {
        return;
    }
    let pair = VethPair::new("coexist", 1);
    pair.add_stack_kernel_addr(&format!("{KERNEL_ADDR}/24"));
    let stack = pair.spawn_stack(&[]);
    let (to_stack, to_kernel) = std::thread::scope(|s| {
        let a = s.spawn(|| pair.ping(STACK_ADDR, 50, "0.01", None));
        let b = s.spawn(|| pair.ping(KERNEL_ADDR, 50, "0.01", None));
        (
            a.join().expect("ping thread"),
            b.join().expect("ping thread"),
        )
    });
    eprintln!("{}\n{}", to_stack.output, to_kernel.output);
    let (_, json) = stack.stop(libc::SIGTERM);
    to_stack.assert_all(50);
    to_kernel.assert_all(50);
    let queues = json_queues(&json);
    let passed: u64 = queues.iter().map(|q| q.2).sum();
    let redirected: u64 = queues.iter().map(|q| q.1).sum();
    assert!(
        passed > 0,
        "kernel traffic should show as xdp_passed > 0: {json}"
    );
    assert!(
        redirected > 0,
        "stack traffic should show as xdp_redirected > 0: {json}"
    );
}
