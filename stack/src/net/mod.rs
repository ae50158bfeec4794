//! The protocols below TCP: Ethernet, ARP, IPv4 and ICMP.
//!
//! Everything here is sans-IO: input functions take a frame and a [`NetCtx`] (the clock,
//! the worker's counters and its transmit path) and produce frames through
//! [`NetCtx::transmit`]. The worker provides the real context; tests provide one that
//! records frames.

pub mod arp;
pub mod ether;
pub mod icmp;
pub mod ipv4;
pub mod lro;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use smoltcp::wire::EthernetAddress;

use crate::stats::Counters;

/// An IPv4 address with its prefix length, as given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// The network mask.
    pub fn netmask(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix_len as u32)
        }
    }

    /// True when `ip` is on this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) & self.netmask()) == (u32::from(self.addr) & self.netmask())
    }

    /// The subnet's network address (host part all zeros: the obsolete broadcast form
    /// RFC 1122 §3.3.6 asks hosts to recognize).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.netmask())
    }

    /// The subnet's directed broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.netmask())
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Why a string is not an `A.B.C.D/NN` address.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    /// No `/NN` part.
    #[error("'{0}' is not in CIDR form A.B.C.D/NN (missing /prefix)")]
    MissingPrefix(String),
    /// The address part does not parse.
    #[error("'{0}' is not in CIDR form A.B.C.D/NN (bad IPv4 address)")]
    BadAddress(String),
    /// The prefix is not a number in 0..=32.
    #[error("'{0}' is not in CIDR form A.B.C.D/NN (prefix must be 0..32)")]
    BadPrefix(String),
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| CidrError::MissingPrefix(s.to_string()))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| CidrError::BadAddress(s.to_string()))?;
        let prefix_len: u8 = p.parse().map_err(|_| CidrError::BadPrefix(s.to_string()))?;
        if prefix_len > 32 {
            return Err(CidrError::BadPrefix(s.to_string()));
        }
        Ok(Ipv4Cidr { addr, prefix_len })
    }
}

/// ARP timers and limits (FreeBSD's `net.link.ether.inet.*` sysctls).
#[derive(Clone, Copy, Debug)]
pub struct ArpConfig {
    /// How long a resolved entry stays valid (`max_age`).
    pub entry_timeout: Duration,
    /// Interval between requests while resolving.
    pub retry_interval: Duration,
    /// Requests sent before resolution fails (`maxtries`).
    pub max_tries: u32,
    /// Packets held per incomplete entry (`maxhold`).
    pub max_hold: usize,
    /// Entries in the cache, resolved or not; a new neighbour beyond it is refused
    /// (`arp.refused_cache_full`) until entries expire.
    pub max_entries: usize,
    /// How long a destination that did not answer `max_tries` requests is left alone
    /// (FreeBSD's `arpt_down`): packets for it are dropped without a new request.
    pub down_time: Duration,
    /// ARP requests sent per second, all destinations together (`None`: no limit);
    /// the retry interval limits each destination to one a second.
    pub max_requests_per_sec: Option<u32>,
}

impl Default for ArpConfig {
    fn default() -> Self {
        ArpConfig {
            entry_timeout: Duration::from_secs(60),
            retry_interval: Duration::from_secs(1),
            max_tries: 3,
            max_hold: 16,
            max_entries: 1024,
            down_time: Duration::from_secs(20),
            max_requests_per_sec: Some(100),
        }
    }
}

/// One network interface as the stack sees it: link address, MTU, owned addresses,
/// the default gateway, the ARP cache and the rate limits. Shared by all workers of a stack.
#[derive(Debug)]
pub struct Interface {
    /// Our link-layer address.
    pub mac: EthernetAddress,
    /// IP MTU (the Ethernet payload size).
    pub mtu: usize,
    /// Addresses the stack owns on this interface.
    pub addrs: Vec<Ipv4Cidr>,
    /// Next hop for destinations off every owned subnet.
    pub gateway: Option<Ipv4Addr>,
    /// The neighbour cache.
    pub arp: arp::ArpCache,
    /// The stack-wide rate limits on answers to unsolicited traffic.
    pub limits: crate::ratelimit::Limiters,
}

impl Interface {
    /// An interface with an empty ARP cache.
    pub fn new(
        mac: EthernetAddress,
        mtu: usize,
        addrs: Vec<Ipv4Cidr>,
        gateway: Option<Ipv4Addr>,
        arp: ArpConfig,
    ) -> Self {
        Interface {
            mac,
            mtu,
            addrs,
            gateway,
            arp: arp::ArpCache::new(arp),
            limits: crate::ratelimit::Limiters::default(),
        }
    }

    /// The same interface with rate limits `limits` (the defaults otherwise).
    pub fn with_limits(mut self, limits: crate::ratelimit::RateLimits) -> Self {
        self.limits = crate::ratelimit::Limiters::new(limits);
        self
    }

    /// True when `ip` is one of the stack's addresses.
    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        self.addrs.iter().any(|c| c.addr == ip)
    }

    /// True when `ip` can be a neighbour's address: the gateway, or a unicast address on
    /// one of our subnets, not ours and not the subnet's network or broadcast address
    /// (the only addresses the ARP cache needs, which bounds it by the subnets' sizes).
    pub fn is_neighbour(&self, ip: Ipv4Addr) -> bool {
        if self.owns(ip) {
            return false;
        }
        self.gateway == Some(ip)
            || self.addrs.iter().any(|c| {
                let ends = c.prefix_len < 31 && (ip == c.network() || ip == c.broadcast());
                c.prefix_len > 0 && c.contains(ip) && !ends
            })
    }

    /// The source address to use towards `dst`: the owned address on dst's subnet, else
    /// the first one.
    pub fn source_for(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        self.addrs
            .iter()
            .find(|c| c.contains(dst))
            .or_else(|| self.addrs.first())
            .map(|c| c.addr)
    }

    /// The next hop towards `dst` (RFC 1122 §3.3.1.1: on-link destinations directly,
    /// everything else through the gateway), or `None` when there is no route.
    pub fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        if self.addrs.iter().any(|c| c.contains(dst)) {
            Some(dst)
        } else {
            self.gateway
        }
    }
}

/// What a frame tolerates in the worker's transmit batch ([`NetCtx::tx_hold_hint`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TxHold {
    /// Nothing beyond the batch rules that hold for every frame (a SYN,ACK, a RST, ARP).
    #[default]
    Plain,
    /// It may wait up to this long for company while input is dense: a segment of a
    /// connection, a sixteenth of its smoothed RTT.
    Dense(Duration),
    /// Nobody waits on it: it never holds a batch back and never makes one go, but rides
    /// with the next (or goes alone after a millisecond). A pure ACK of the peer's FIN.
    Lazy,
}

/// What protocol code needs from the worker running it. (The [`Interface`] is passed
/// beside it: it is shared by all workers, the context is the worker's own.)
pub trait NetCtx {
    /// The current time (simulated in tests).
    fn now(&self) -> Instant;
    /// This worker's counters.
    fn counters(&self) -> &Counters;
    /// The index of the worker running the code (0 where there is only one).
    fn worker(&self) -> usize {
        0
    }
    /// Sends one frame of `len` bytes, written by `fill`. Returns false (and counts a
    /// drop) when there is no room on the transmit path.
    fn transmit(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool;

    /// How the frames queued from now on (until the next call) may wait for company in
    /// the worker's transmit batch (see `pipeline.rs`, `WorkerCore::hold_tx`). TCP sets
    /// it around each segment it sends.
    fn tx_hold_hint(&mut self, _hint: TxHold) {}

    /// Whether the device finishes TCP/UDP checksums on transmit (FreeBSD's
    /// `IFCAP_TXCSUM`): callers may then write only the pseudo-header sum and send
    /// with [`transmit_partial`](Self::transmit_partial).
    fn tx_csum_offload(&self) -> bool {
        false
    }

    /// The largest frame [`transmit_tso`](Self::transmit_tso) takes (FreeBSD's
    /// `if_hw_tsomax` plus headers); 0 when the device segments nothing.
    fn tso_frame_max(&self) -> usize {
        0
    }

    /// Sends one TCP frame longer than a segment for the device to cut into
    /// `params.mss`-byte segments (`CSUM_TSO`). The TCP checksum field holds the
    /// pseudo-header sum over the frame's whole TCP length. Returns false (and counts a
    /// drop) when the device has no room.
    fn transmit_tso(
        &mut self,
        _len: usize,
        _params: crate::device::gso::GsoParams,
        _fill: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        false
    }

    /// Sends one frame whose L4 checksum the device is asked to finish (`CSUM_TCP`):
    /// the 16-bit field at `csum_start + csum_offset` holds the folded pseudo-header
    /// sum, and the one's-complement sum from `csum_start` to the end belongs there.
    /// Without the offload it is finished here, in software.
    fn transmit_partial(
        &mut self,
        len: usize,
        csum_start: u16,
        csum_offset: u16,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        self.transmit(len, &mut |buf| {
            fill(buf);
            crate::checksum::finish_partial(buf, csum_start as usize, csum_offset as usize);
        })
    }
}

#[cfg(test)]
pub(crate) mod testctx {
    //! A recording [`NetCtx`] for protocol unit tests.
    use super::*;

    pub struct TestCtx {
        pub now: Instant,
        pub counters: Counters,
        pub sent: Vec<Vec<u8>>,
    }

    pub const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
    pub const PEER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);
    pub const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    /// Our test interface: 198.18.0.1/24 with gateway 198.18.0.254.
    pub fn iface() -> Interface {
        Interface::new(
            OUR_MAC,
            1500,
            vec![Ipv4Cidr {
                addr: OUR_IP,
                prefix_len: 24,
            }],
            Some(Ipv4Addr::new(198, 18, 0, 254)),
            ArpConfig::default(),
        )
    }

    impl TestCtx {
        pub fn new() -> Self {
            TestCtx {
                now: Instant::now(),
                counters: Counters::default(),
                sent: Vec::new(),
            }
        }

        pub fn count(&self, name: &str) -> u64 {
            self.counters
                .snapshot()
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no counter {name}"))
        }

        pub fn take_sent(&mut self) -> Vec<Vec<u8>> {
            std::mem::take(&mut self.sent)
        }
    }

    impl NetCtx for TestCtx {
        fn now(&self) -> Instant {
            self.now
        }
        fn counters(&self) -> &Counters {
            &self.counters
        }
        fn transmit(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
            let mut buf = vec![0u8; len];
            fill(&mut buf);
            self.sent.push(buf);
            true
        }
    }
}
