//! xstack: a userspace TCP/IP stack on AF_XDP.
//!
//! Frames come off the NIC through AF_XDP sockets (one per receive queue, steered by
//! an XDP program), are processed by one pinned worker per queue through a netisr
//! dispatcher, and leave through the same sockets. `docs/ARCHITECTURE.md` (in the
//! repository) describes the whole path.
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
#![deny(clippy::undocumented_unsafe_blocks)]

pub(crate) mod checksum;
pub(crate) mod clock;
pub(crate) mod device;
pub(crate) mod link;
pub(crate) mod mbuf;
pub(crate) mod net;
pub(crate) mod netisr;
pub(crate) mod pipeline;
pub(crate) mod ratelimit;
pub(crate) mod rss;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub(crate) mod socket;
pub(crate) mod stack;
pub(crate) mod stats;
pub(crate) mod task;
pub(crate) mod tcp;
pub(crate) mod worker;

// What applications use: the stack, its sockets, its settings and what it reports.
// Test tooling (the tc RSS emulation behind `xstack rss-emulate`), not application API.
#[doc(hidden)]
pub use device::rss_emu::RssEmulation;
pub use device::xdp::{Mode as XdpMode, QueueStats};
pub use device::xsk::{XskConfig, XskStats};
pub use device::{BpfError, DeviceError, LinkInfo, Offload, Offloads};
pub use net::{ArpConfig, CidrError, Ipv4Cidr};
pub use netisr::{NetisrStats, Policy as NetisrPolicy, ProtoStats, WorkStats, WorkstreamStats};
pub use ratelimit::RateLimits;
pub use socket::{
    ConnectOptions, Event, Interest, NetStack, Poller, ReadinessFd, ReadyQueue, Source,
    TcpListener, TcpStream,
};
pub use stack::{
    heap_json, QueueSnapshot, Snapshot, Stack, StackConfig, StartError, WorkerSnapshot,
};
pub use task::{TaskContext, TaskStatus, WorkerTask};
/// Helper hooks (FreeBSD's hhook/khelp): the [`hhook::Helper`] trait, its hook points and
/// their contexts.
pub mod hhook {
    pub use crate::tcp::hhook::{
        AckDoneCtx, ConnCtx, ConnVars, Helper, HelperError, HelperSet, HookPoint, HookPoints,
        InputCtx, OutputCtx,
    };
    pub use crate::tcp::segment::TcpFlags;
    pub use crate::tcp::State;
}
/// The helper modules in the tree: ERTT and per-connection statistics.
pub mod helpers {
    pub use crate::tcp::helpers::ertt::MAX_RECORDS as ERTT_MAX_RECORDS;
    pub use crate::tcp::helpers::{
        register, ErttData, ErttHelper, Log2Histogram, RegisterError, StatsData, StatsHelper, NAMES,
    };
}
pub use tcp::cwnd_trace::{CcEvent, CwndSample, CwndTrace, DEFAULT_TRACE_LIMIT};
pub use tcp::pcb::GroupStats;
pub use tcp::rtt::RtoConfig;
pub use tcp::segment::OptionLayout;
pub use tcp::{Keepalive, SynCookies, TcpConfig, TcpInfo, TimeWaitInput};
pub use worker::IdleMode;
/// Congestion control: the module interface, the built-in modules and the registry a
/// stack builds connections' controllers from ([`NetStack::congestion_control`]).
pub use xstack_cc as cc;
