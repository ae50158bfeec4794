//! xstack: a userspace TCP/IP stack on AF_XDP.
//!
//! Frames come off the NIC through AF_XDP sockets (one per receive queue, steered by
//! an XDP program), are processed by one pinned worker per queue through a netisr
//! dispatcher, and leave through the same sockets. See `DESIGN.md` for the whole path.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::io::{Read, Write};
//! use xstack::{Stack, StackConfig, TcpListener, TcpStream, Poller, Interest};
//!
//! let stack = Stack::start(StackConfig::new("eth1", vec!["10.0.0.5/24".parse()?]))?;
//! let listener = TcpListener::bind(&stack, "0.0.0.0:80".parse::<std::net::SocketAddr>()?)?;
//! std::thread::spawn(move || loop {                 // handles work from any thread
//!     let (mut conn, _peer) = listener.accept().unwrap();
//!     conn.set_congestion("newreno").unwrap();      // per socket, switchable at any time
//!     std::thread::spawn(move || { let mut b = [0; 4096]; let n = conn.read(&mut b).unwrap();
//!                                  conn.write_all(&b[..n]).unwrap(); });
//! });
//! let mut c = TcpStream::connect_timeout(&stack, "10.0.0.9:80".parse::<std::net::SocketAddr>()?,
//!                                        std::time::Duration::from_secs(5))?;
//! c.set_nodelay(true)?;
//! c.write_all(b"hello")?;
//! println!("{:?}", c.info());                       // state, cc, cwnd, ssthresh, srtt, rto, retransmits...
//! c.set_nonblocking(true)?;                         // or: event loops with a readiness poller
//! let poller = Poller::new();
//! poller.register(&c, 1, Interest::READABLE)?;
//! let mut events = Vec::new();
//! poller.wait(&mut events, Some(std::time::Duration::from_millis(100)))?;
//! # Ok(()) }
//! ```
pub mod checksum;
pub mod device;
pub mod http;
pub mod mbuf;
pub mod net;
pub mod netisr;
pub mod rss;
pub mod sim;
pub mod socket;
pub mod stack;
pub mod stats;
pub mod tcp;
pub mod worker;

pub use socket::{ConnectOptions, Event, Interest, NetStack, Poller, TcpListener, TcpStream};
pub use stack::{Snapshot, Stack, StackConfig};
pub use tcp::{Keepalive, TcpInfo};
