//! A deterministic in-process fuzzer for xstack (`cargo xtask fuzz`).
//!
//! Each case (one seed) builds the fuzzed stack and a peer stack on the simulator
//! (`xstack::sim`), opens connections between them in every TCP state, then feeds the
//! fuzzed stack generated and mutated frames (TCP on live flows with sequence and
//! acknowledgment numbers near their windows, TCP options, ARP, ICMP errors quoting live
//! flows, IPv4 fragments, bad checksums, truncations, VLAN tags, garbage), the peer's
//! traffic (sometimes mutated), application calls and clock jumps. After every step it
//! checks that nothing panicked, every frame sent is well formed with valid checksums,
//! and the stack's tables and buffers are within bounds. A failing case's events are
//! written as a trace that replays on its own.

pub mod case;
pub mod check;
pub mod frames;
pub mod gen;
pub mod runner;
pub mod target;
