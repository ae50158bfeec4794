//! xstack: a userspace TCP/IP stack on AF_XDP.
//!
//! Frames come off the NIC through AF_XDP sockets (one per receive queue, steered by
//! an XDP program), are processed by one pinned worker per queue through a netisr
//! dispatcher, and leave through the same sockets. See `DESIGN.md` for the whole path.
pub mod checksum;
pub mod device;
pub mod http;
pub mod mbuf;
pub mod net;
pub mod netisr;
pub mod sim;
pub mod socket;
pub mod stack;
pub mod stats;
pub mod tcp;
pub mod worker;

pub use socket::{Event, Interest, NetStack, Poller, TcpListener, TcpStream};
pub use stack::{Snapshot, Stack, StackConfig};
pub use tcp::tcb::{Keepalive, TcpInfo};
