//! xstack: a userspace TCP/IP stack on AF_XDP.
pub mod mbuf;
pub mod netisr;
