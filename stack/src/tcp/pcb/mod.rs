//! Protocol control blocks (FreeBSD `in_pcb`): the shared connection object that
//! worker and application threads both touch, listening sockets with their accept
//! queues, and the table that finds a connection for a segment and hands out
//! ephemeral ports.
//!
//! Locking: the table's maps are behind `RwLock`s (lookups take the read side); each
//! connection has its own `Mutex` around its control block, taken by the worker that
//! owns the connection while it processes a segment or a timer, and by application
//! threads for the short time it takes to copy data in or out. No lock is held while
//! another is taken, except table -> connection in that order.
//!
//! `conn` holds the shared connection and listener objects, `group` the pcbgroups
//! (FreeBSD `in_pcbgroup`) and their counters, `table` the table itself, `ports` where
//! its search for an ephemeral port starts (RFC 6056).

mod conn;
mod group;
mod ports;
mod table;
#[cfg(test)]
mod tests;

pub use conn::{Conn, ConnInner, FourTuple, Listener, ReadinessSink};
pub use group::{GroupMap, GroupStats};
pub use table::PcbTable;

/// Why a bind or connect could not get its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PcbError {
    /// The address/port is taken.
    #[error("address in use")]
    AddrInUse,
    /// No ephemeral port is free for this destination.
    #[error("no free ephemeral port")]
    NoPorts,
    /// The stack holds `TcpConfig::max_connections` connections.
    #[error("connection limit reached: the stack holds max_connections ({0}) connections")]
    ConnLimit(usize),
}

/// Ephemeral port range (Linux's default `ip_local_port_range`).
pub const EPHEMERAL: std::ops::RangeInclusive<u16> = 32768..=60999;
