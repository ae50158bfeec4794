//! Packet metadata carried beside every frame, after FreeBSD's mbuf packet header
//! (`m_pkthdr`): length, receive queue, the RSS hash when the device gave one, and the
//! checksum/segmentation offload flags (`csum_flags`).

use bitflags::bitflags;

bitflags! {
    /// Checksum and segmentation offload flags, after FreeBSD's `CSUM_*` (sys/mbuf.h).
    ///
    /// Receive flags say what the device already checked; transmit flags say what the
    /// device is asked to do. The software path computes or verifies whatever a flag does
    /// not cover.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct CsumFlags: u32 {
        // --- receive (CSUM_L3_CALC / CSUM_L3_VALID / CSUM_L4_CALC / CSUM_L4_VALID) ---
        /// The device checked the IPv4 header checksum (`CSUM_IP_CHECKED`).
        const IP_CHECKED = 1 << 0;
        /// ... and it was valid (`CSUM_IP_VALID`).
        const IP_VALID = 1 << 1;
        /// The device verified the L4 checksum; `csum_data` is 0xffff (`CSUM_DATA_VALID`).
        const DATA_VALID = 1 << 2;
        /// The L4 checksum still needs the pseudo-header added (`CSUM_PSEUDO_HDR`).
        const PSEUDO_HDR = 1 << 3;

        // --- transmit ---
        /// The device must compute the IPv4 header checksum (`CSUM_IP`).
        const IP = 1 << 8;
        /// The device must compute the TCP checksum (`CSUM_TCP`).
        const TCP = 1 << 9;
        /// The device must compute the UDP checksum (`CSUM_UDP`).
        const UDP = 1 << 10;
        /// The device must segment this TCP packet by `tso_segsz` (`CSUM_TSO`). Reserved:
        /// no device path sets it yet.
        const TSO = 1 << 11;
    }
}

/// Where an RSS hash came from and what it covers (FreeBSD `M_HASHTYPE_*`). No device
/// path hands a hash over yet (AF_XDP passes none to an aya-loaded program, so the
/// hash is computed in software: `rss::ip_flow_hash`); netisr uses one when present.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(dead_code)]
pub enum HashType {
    /// Computed by the device over the IPv4 2-tuple.
    Ipv4,
    /// Computed by the device over the IPv4 + TCP 4-tuple.
    TcpIpv4,
    /// Computed by the device over the IPv4 + UDP 4-tuple.
    UdpIpv4,
    /// An opaque hash (not Toeplitz, or type unknown).
    Opaque,
}

/// A flow hash and its type (`m_pkthdr.flowid` + `M_HASHTYPE_GET`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RssHash {
    /// The 32-bit hash value.
    pub value: u32,
    /// What it was computed over.
    pub kind: HashType,
}

/// Metadata of one received or to-be-sent frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PktMeta {
    /// Frame length in bytes, Ethernet header included.
    pub len: u32,
    /// Receive queue the frame arrived on (0 for locally generated frames).
    pub rxq: u16,
    /// Flow hash, when the device handed one over.
    pub rss_hash: Option<RssHash>,
    /// Offload flags.
    pub csum: CsumFlags,
    /// Segment size for `CsumFlags::TSO`; on receive, the size of the segments LRO
    /// coalesced (FreeBSD's `tso_segsz`).
    pub tso_segsz: u16,
    /// Segments LRO coalesced into this packet (`lro_nsegs`); 0 when it did not.
    pub lro_nsegs: u16,
}

impl PktMeta {
    /// Metadata for a frame received on `rxq`, with nothing verified by the device.
    pub fn rx(len: usize, rxq: u16) -> Self {
        PktMeta {
            len: len as u32,
            rxq,
            ..Default::default()
        }
    }

    /// The flow id (RSS hash value), if known.
    pub fn flowid(&self) -> Option<u32> {
        self.rss_hash.map(|h| h.value)
    }
}

/// A received packet as handed between layers: a borrowed frame (zero-copy out of the
/// UMEM on the direct path) and its metadata.
#[derive(Clone, Copy, Debug)]
pub struct Pkt<'a> {
    /// The frame bytes, Ethernet header first.
    pub data: &'a [u8],
    /// What is known about the frame.
    pub meta: PktMeta,
}
