//! Holds down the heap allocations of a short connection: the connection-rate
//! microbenchmark (`stack/examples/cps.rs`, with its counting allocator) run briefly.
//! The counts are deterministic; the bounds leave half an allocation of slack for
//! whatever the test harness's own threads allocate meanwhile.

#[allow(dead_code)]
#[path = "../examples/cps.rs"]
mod cps;

#[test]
fn a_short_connection_allocates_little() {
    let f = cps::run(["1000".to_string()].into_iter());
    // Every connection completed, and the server holds the TIME-WAITs of the last 2 s.
    assert!(f.time_wait > 1000, "TIME-WAIT: {}", f.time_wait);
    // Server: the SYN,ACK's throwaway control block (congestion module and RACK state),
    // the real one (the same two), the `Conn`, the send log's first block: 6. The 4 KiB
    // rings come from the pool, timers and RACK updates allocate nothing (10 before).
    assert!(
        f.server_allocs <= 6.5,
        "server allocations per connection: {}",
        f.server_allocs
    );
    // Client: the control block's two boxes, the `Conn`, the send log: 4.
    assert!(
        f.client_allocs <= 4.5,
        "client allocations per connection: {}",
        f.client_allocs
    );
}
