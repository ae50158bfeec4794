//! Receive-side scaling: the Toeplitz hash NICs use to place flows on receive queues
//! (Microsoft's "RSS hashing" specification), so the stack can compute the same hash
//! as the device and align its connection tables with the device's placement.
//!
//! The hash input for IPv4 is source address, destination address, then (for TCP and
//! UDP) source port and destination port, all in network byte order; for other
//! protocols only the two addresses.

use std::net::Ipv4Addr;

/// The well-known default key (Microsoft's verification key, used by most drivers).
pub const MICROSOFT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Entries in the indirection table (a power of two, as NICs use).
pub const INDIRECTION_SIZE: usize = 128;

/// A Toeplitz hasher with a 40-byte key (enough for IPv6 4-tuples, 36 bytes of input).
///
/// The hash of a byte at position `i` depends only on the byte and `i`, so it is
/// precomputed per position and value: hashing is one table lookup per input byte.
#[derive(Clone)]
pub struct Toeplitz {
    key: [u8; 40],
    table: Box<[[u32; 256]; 36]>,
}

impl std::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toeplitz")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Default for Toeplitz {
    fn default() -> Self {
        Toeplitz::new(MICROSOFT_KEY)
    }
}

impl Toeplitz {
    /// A hasher with `key`.
    pub fn new(key: [u8; 40]) -> Self {
        let mut table = Box::new([[0u32; 256]; 36]);
        for (pos, row) in table.iter_mut().enumerate() {
            for (value, slot) in row.iter_mut().enumerate() {
                let mut one = [0u8; 36];
                one[pos] = value as u8;
                *slot = bitwise(&key, &one[..=pos]);
            }
        }
        Toeplitz { key, table }
    }

    /// The key.
    #[cfg(test)]
    pub fn key(&self) -> &[u8; 40] {
        &self.key
    }

    /// The Toeplitz hash of `input` (at most 36 bytes: longer input is truncated,
    /// since the key only covers that many). For every set bit of the input, counting
    /// from the most significant bit of the first byte, the 32 key bits starting at
    /// that bit position are XORed into the result.
    pub fn hash(&self, input: &[u8]) -> u32 {
        input
            .iter()
            .zip(self.table.iter())
            .fold(0, |h, (&b, row)| h ^ row[b as usize])
    }

    /// The receive queue an RSS device with the standard indirection table (entry i
    /// -> queue i mod `queues`) puts a frame with this hash on.
    pub fn queue_of(hash: u32, queues: usize) -> usize {
        (hash as usize & (INDIRECTION_SIZE - 1)) % queues.max(1)
    }

    #[cfg(test)]
    /// The IPv4 2-tuple hash (`NDIS_HASH_IPV4`).
    pub fn ipv4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&src.octets());
        b[4..].copy_from_slice(&dst.octets());
        self.hash(&b)
    }

    /// The IPv4 4-tuple hash (`NDIS_HASH_TCP_IPV4`, also used for UDP).
    pub fn ipv4_ports(&self, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u32 {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&src.octets());
        b[4..8].copy_from_slice(&dst.octets());
        b[8..10].copy_from_slice(&sport.to_be_bytes());
        b[10..].copy_from_slice(&dport.to_be_bytes());
        self.hash(&b)
    }
}

/// The definition, bit by bit: for every set bit of the input (most significant bit of
/// the first byte first), XOR in the 32 key bits starting at that bit's position.
fn bitwise(key: &[u8; 40], input: &[u8]) -> u32 {
    let input = &input[..input.len().min(36)];
    let mut result = 0u32;
    let mut window = u64::from_be_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ]);
    for (i, &byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                result ^= (window >> (32 - bit)) as u32;
            }
        }
        // Slide the window by one byte.
        window = (window << 8) | key.get(i + 8).copied().unwrap_or(0) as u64;
    }
    result
}

/// What happened to a FLOW-policy packet, for netisr's flow observer (`crate::netisr::FlowObserver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEvent {
    /// Handled at once on the worker it arrived on (its flow's owner).
    Direct,
    /// Arrived on another worker and was put on the owner's queue (a handoff).
    HandedOff,
    /// Arrived on another worker and the owner's queue was full (a qdrop).
    QDropped,
}

/// The RSS hash of a received IPv4 frame, as an RSS NIC computes it (Toeplitz over
/// source address, destination address and, for TCP and UDP, the ports), for frames
/// the device handed over without one. The netisr FLOW owner of a frame is the queue
/// the same device would have put it on, so with RSS placement (or the tc emulation in
/// `ebpf/rss_tc.c`) segments need no handoff.
pub fn ip_flow_hash(rss: &Toeplitz, frame: &[u8]) -> Option<u32> {
    let ip = frame.get(crate::net::ether::HEADER_LEN..)?;
    if ip.len() < 20 {
        return None;
    }
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let addrs = &ip[12..20];
    match ip[9] {
        6 | 17 if ihl >= 20 => match ip.get(ihl..ihl + 4) {
            Some(ports) => {
                let mut input = [0u8; 12];
                input[..8].copy_from_slice(addrs);
                input[8..].copy_from_slice(ports);
                Some(rss.hash(&input))
            }
            None => Some(rss.hash(addrs)),
        },
        1 if ihl >= 20 => Some(
            icmp_quoted_flow(ip.get(ihl..).unwrap_or_default())
                .map_or_else(|| rss.hash(addrs), |input| rss.hash(&input)),
        ),
        _ => Some(rss.hash(addrs)),
    }
}

/// For an ICMP error (destination unreachable, time exceeded) quoting a TCP or UDP
/// packet we sent, the hash input of the flow it is about, as the peer's packets carry
/// it (source and destination swapped): the error is processed on the worker that owns
/// the connection, like the connection's own segments.
fn icmp_quoted_flow(icmp: &[u8]) -> Option<[u8; 12]> {
    if !matches!(icmp.first()?, 3 | 11) {
        return None;
    }
    let q = icmp.get(8..)?;
    let qihl = (*q.first()? & 0x0f) as usize * 4;
    if qihl < 20 || !matches!(*q.get(9)?, 6 | 17) {
        return None;
    }
    let ports = q.get(qihl..qihl + 4)?;
    let mut input = [0u8; 12];
    input[..4].copy_from_slice(q.get(16..20)?);
    input[4..8].copy_from_slice(&q[12..16]);
    input[8..10].copy_from_slice(&ports[2..4]);
    input[10..12].copy_from_slice(&ports[0..2]);
    Some(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsoft's RSS verification vectors for IPv4 ("Verifying the RSS Hash
    /// Calculation"): (destination, source, IPv4-only hash, IPv4-with-TCP hash).
    type Endpoint = (Ipv4Addr, u16);
    const VECTORS: [(Endpoint, Endpoint, u32, u32); 5] = [
        (
            (Ipv4Addr::new(161, 142, 100, 80), 1766),
            (Ipv4Addr::new(66, 9, 149, 187), 2794),
            0x323e8fc2,
            0x51ccc178,
        ),
        (
            (Ipv4Addr::new(65, 69, 140, 83), 4739),
            (Ipv4Addr::new(199, 92, 111, 2), 14230),
            0xd718262a,
            0xc626b0ea,
        ),
        (
            (Ipv4Addr::new(12, 22, 207, 184), 38024),
            (Ipv4Addr::new(24, 19, 198, 95), 12898),
            0xd2d0a5de,
            0x5c2b394a,
        ),
        (
            (Ipv4Addr::new(209, 142, 163, 6), 2217),
            (Ipv4Addr::new(38, 27, 205, 30), 48228),
            0x82989176,
            0xafc7327f,
        ),
        (
            (Ipv4Addr::new(202, 188, 127, 2), 1303),
            (Ipv4Addr::new(153, 39, 163, 191), 44251),
            0x5d1809c5,
            0x10e828a2,
        ),
    ];

    #[test]
    fn microsoft_verification_vectors_ipv4() {
        let t = Toeplitz::default();
        for ((dst, _), (src, _), v4, _) in VECTORS {
            assert_eq!(t.ipv4(src, dst), v4, "{src} -> {dst}");
        }
    }

    #[test]
    fn microsoft_verification_vectors_ipv4_tcp() {
        let t = Toeplitz::default();
        for ((dst, dport), (src, sport), _, tcp) in VECTORS {
            assert_eq!(
                t.ipv4_ports(src, dst, sport, dport),
                tcp,
                "{src}:{sport} -> {dst}:{dport}"
            );
        }
    }

    #[test]
    fn table_matches_the_bitwise_definition() {
        let t = Toeplitz::default();
        let mut x: u32 = 0x9e37_79b9;
        for len in 0..=36 {
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            assert_eq!(t.hash(&input), bitwise(&MICROSOFT_KEY, &input), "len {len}");
        }
    }

    #[test]
    fn long_input_is_truncated_not_a_panic() {
        let t = Toeplitz::default();
        let a = t.hash(&[0xff; 36]);
        assert_eq!(t.hash(&[0xff; 100]), a);
        assert_eq!(t.hash(&[]), 0);
    }

    // Flow hashes of whole frames (netisr FLOW placement).

    fn ip_frame(src: [u8; 4], dst: [u8; 4], proto: u8, l4: [u8; 8]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[14] = 0x45;
        f[23] = proto;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..42].copy_from_slice(&l4);
        f
    }

    #[test]
    fn flow_hash_is_the_rss_hash_of_the_received_tuple() {
        let rss = Toeplitz::default();
        let (a, b) = ([198, 18, 0, 2], [198, 18, 0, 1]);
        let tcp = ip_frame(a, b, 6, [0x30, 0x39, 0, 80, 0, 0, 0, 0]);
        assert_eq!(
            ip_flow_hash(&rss, &tcp),
            Some(rss.ipv4_ports(a.into(), b.into(), 12345, 80))
        );
        // ICMP and other protocols: the address pair only.
        let icmp = ip_frame(a, b, 1, [8, 0, 0, 0, 0, 1, 0, 1]);
        assert_eq!(
            ip_flow_hash(&rss, &icmp),
            Some(rss.ipv4(a.into(), b.into()))
        );
        assert_eq!(ip_flow_hash(&rss, &[0u8; 20]), None);
    }

    #[test]
    fn tcp_flows_spread_over_four_queues() {
        let rss = Toeplitz::default();
        let mut seen = [0u32; 4];
        for port in 40000..40064u16 {
            let p = port.to_be_bytes();
            let f = ip_frame(
                [198, 18, 0, 2],
                [198, 18, 0, 1],
                6,
                [p[0], p[1], 0, 80, 0, 0, 0, 0],
            );
            seen[Toeplitz::queue_of(ip_flow_hash(&rss, &f).unwrap(), 4)] += 1;
        }
        assert!(seen.iter().all(|&n| n >= 4), "{seen:?}");
    }

    #[test]
    fn an_icmp_error_hashes_as_the_flow_it_quotes() {
        let rss = Toeplitz::default();
        let (us, peer) = ([198, 18, 0, 1], [198, 18, 0, 2]);
        // The peer's segment to us, 40000 -> 80.
        let seg = ip_frame(peer, us, 6, [0x9c, 0x40, 0, 80, 0, 0, 0, 0]);
        // A router's port unreachable about our segment 80 -> 40000.
        let mut icmp = vec![0u8; 14 + 20];
        icmp[14] = 0x45;
        icmp[23] = 1;
        icmp[26..30].copy_from_slice(&[198, 18, 0, 254]);
        icmp[30..34].copy_from_slice(&us);
        icmp.extend_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]);
        let mut quoted = [0u8; 28];
        quoted[0] = 0x45;
        quoted[9] = 6;
        quoted[12..16].copy_from_slice(&us);
        quoted[16..20].copy_from_slice(&peer);
        quoted[20..24].copy_from_slice(&[0, 80, 0x9c, 0x40]);
        icmp.extend_from_slice(&quoted);
        assert_eq!(ip_flow_hash(&rss, &icmp), ip_flow_hash(&rss, &seg));
        // An echo request hashes by its addresses only.
        icmp[34] = 8;
        assert_eq!(
            ip_flow_hash(&rss, &icmp),
            Some(rss.ipv4([198, 18, 0, 254].into(), us.into()))
        );
    }
}
