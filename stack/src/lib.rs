//! xstack: a userspace TCP/IP stack on AF_XDP.
pub mod checksum;
pub mod mbuf;
pub mod net;
pub mod netisr;
pub mod stats;
