//! TCP (RFC 9293 and companions): sans-IO connection engine, options, buffers,
//! timers, and the demultiplexer that finds the connection for a segment.

// The engine (lead, in progress; enabled once the cc-modules API lands):
// pub mod input;
// pub mod output;
// pub mod tcb;
// pub mod timer;
pub mod isn;
pub mod recvbuf;
pub mod rtt;
pub mod segment;
pub mod sendbuf;
pub mod seq;

// pub use tcb::{State, Tcb, TcpConfig, TcpError, TcpInfo};
