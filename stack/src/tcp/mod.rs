//! TCP (RFC 9293 and companions), laid out along FreeBSD's seams:
//!
//! - the sans-IO connection engine: the control block and its user calls (`tcb`, with
//!   `tcb::usrreq` and the `tcp_info` snapshot in `tcb::info`; settings and errors in
//!   `config`), segment arrival (`input`), what to send (`output`), timers (`timer`),
//!   SACK loss recovery (`sack`), ECN (`ecn`), path MTU discovery (`pmtu`) and the
//!   limits on ACKs a flood can provoke (`ack_limit`);
//! - its building blocks: sequence numbers, RTT estimation, buffers, ISNs, segment
//!   parsing, the cwnd trace;
//! - the connection tables (`pcb`: connections, pcbgroups, the table), and the layer
//!   that ties them to IPv4 and the workers (`layer`).

pub mod ack_limit;
pub mod bounds;
pub mod bufpool;
pub mod config;
pub mod cwnd_trace;
pub mod ecn;
pub mod helpers;
pub mod hhook;
pub mod input;
pub mod isn;
pub mod layer;
mod listen;
pub mod memtrim;
pub mod output;
pub mod pcb;
pub mod pmtu;
pub mod prr;
pub mod rack;
pub mod rate;
pub mod recvbuf;
pub mod rtt;
pub mod sack;
pub mod segment;
pub mod sendbuf;
pub mod seq;
pub mod syncache;
pub mod tcb;
pub mod timer;

#[cfg(test)]
mod tests;

pub use config::{Keepalive, TcpConfig, TcpError, TimeWaitInput, UserError};
pub use syncache::SynCookies;
#[cfg(test)]
pub use tcb::EcnStats;
pub use tcb::{State, Tcb, TcpInfo};
