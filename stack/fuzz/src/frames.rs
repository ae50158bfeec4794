//! Building valid frames (Ethernet, ARP, IPv4, TCP, ICMP) with correct checksums, and
//! the offsets the mutators need.

use std::net::Ipv4Addr;

/// The fuzzed stack's link-layer address.
pub const TARGET_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
/// The peer stack's link-layer address.
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
/// The fuzzed stack's address (on 198.18.0.0/24).
pub const TARGET_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The peer stack's address.
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// Ethernet header length.
pub const ETH: usize = 14;
/// EtherType IPv4.
pub const ETH_IPV4: u16 = 0x0800;
/// EtherType ARP.
pub const ETH_ARP: u16 = 0x0806;
/// TCP flags.
pub const FIN: u8 = 0x01;
/// SYN flag.
pub const SYN: u8 = 0x02;
/// RST flag.
pub const RST: u8 = 0x04;
/// PSH flag.
pub const PSH: u8 = 0x08;
/// ACK flag.
pub const ACK: u8 = 0x10;

/// The Internet checksum of `data` (RFC 1071), starting from `sum`.
pub fn csum(sum: u32, data: &[u8]) -> u16 {
    let mut s = sum as u64;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        s += w as u64;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// The IPv4 pseudo-header sum for a TCP/UDP checksum.
pub fn pseudo(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> u32 {
    let w = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]) as u32;
    w(&src[..2]) + w(&src[2..]) + w(&dst[..2]) + w(&dst[2..]) + proto as u32 + (len as u32 & 0xffff)
}

/// An Ethernet frame.
pub fn ether(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An ARP packet (Ethernet/IPv4).
pub fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0, 1, 0x08, 0x00, 6, 4];
    p.extend_from_slice(&op.to_be_bytes());
    p.extend_from_slice(&sha);
    p.extend_from_slice(&spa.octets());
    p.extend_from_slice(&tha);
    p.extend_from_slice(&tpa.octets());
    p
}

/// IPv4 header fields that vary.
#[derive(Clone, Copy, Debug)]
pub struct IpHdr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub ttl: u8,
    pub tos: u8,
    pub ident: u16,
    /// Flags and fragment offset (the 16-bit field).
    pub frag: u16,
}

impl IpHdr {
    /// A plain header: TTL 64, DF.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> IpHdr {
        IpHdr {
            src,
            dst,
            proto,
            ttl: 64,
            tos: 0,
            ident: 0,
            frag: 0x4000,
        }
    }
}

/// An IPv4 packet with `options` (padded to 4 bytes) and a valid header checksum.
pub fn ipv4(h: &IpHdr, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut opts = options.to_vec();
    opts.resize(options.len().div_ceil(4) * 4, 0);
    opts.truncate(40);
    let hl = 20 + opts.len();
    let mut p = vec![0u8; hl];
    p[0] = 0x40 | (hl / 4) as u8;
    p[1] = h.tos;
    p[2..4].copy_from_slice(&((hl + payload.len()).min(0xffff) as u16).to_be_bytes());
    p[4..6].copy_from_slice(&h.ident.to_be_bytes());
    p[6..8].copy_from_slice(&h.frag.to_be_bytes());
    p[8] = h.ttl;
    p[9] = h.proto;
    p[12..16].copy_from_slice(&h.src.octets());
    p[16..20].copy_from_slice(&h.dst.octets());
    p[20..].copy_from_slice(&opts);
    let c = csum(0, &p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// TCP header fields.
#[derive(Clone, Debug)]
pub struct TcpHdr {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// The flag byte (CWR and ECE included).
    pub flags: u8,
    pub win: u16,
    pub urg: u16,
    /// Raw option bytes (padded with zeros to 4 bytes, at most 40).
    pub options: Vec<u8>,
}

/// A TCP segment with a valid checksum for `src` -> `dst`.
pub fn tcp(src: Ipv4Addr, dst: Ipv4Addr, h: &TcpHdr, payload: &[u8]) -> Vec<u8> {
    let mut opts = h.options.clone();
    opts.truncate(40);
    opts.resize(opts.len().div_ceil(4) * 4, 0);
    let hl = 20 + opts.len();
    let mut s = vec![0u8; hl];
    s[0..2].copy_from_slice(&h.sport.to_be_bytes());
    s[2..4].copy_from_slice(&h.dport.to_be_bytes());
    s[4..8].copy_from_slice(&h.seq.to_be_bytes());
    s[8..12].copy_from_slice(&h.ack.to_be_bytes());
    s[12] = ((hl / 4) as u8) << 4;
    s[13] = h.flags;
    s[14..16].copy_from_slice(&h.win.to_be_bytes());
    s[18..20].copy_from_slice(&h.urg.to_be_bytes());
    s[20..].copy_from_slice(&opts);
    s.extend_from_slice(payload);
    let c = csum(pseudo(src.octets(), dst.octets(), 6, s.len()), &s);
    s[16..18].copy_from_slice(&c.to_be_bytes());
    s
}

/// An ICMP message with a valid checksum: type, code, the 4 "rest of header" bytes,
/// then `body`.
pub fn icmp(ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(body);
    let c = csum(0, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// A whole Ethernet + IPv4 frame to the target from the peer's MAC.
pub fn ip_frame(h: &IpHdr, options: &[u8], payload: &[u8]) -> Vec<u8> {
    ether(TARGET_MAC, PEER_MAC, ETH_IPV4, &ipv4(h, options, payload))
}

/// Recomputes the IPv4 header checksum and the TCP or ICMP checksum of an Ethernet
/// frame, as far as its (possibly mutated) lengths allow.
pub fn fix_checksums(f: &mut [u8]) {
    if f.len() < ETH + 20 || f[12..14] != ETH_IPV4.to_be_bytes() {
        return;
    }
    let ip = &mut f[ETH..];
    let hl = ((ip[0] & 0x0f) as usize * 4).max(20);
    if ip.len() < hl {
        return;
    }
    ip[10..12].fill(0);
    let c = csum(0, &ip[..hl]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let total = (u16::from_be_bytes([ip[2], ip[3]]) as usize).clamp(hl, ip.len());
    let (src, dst) = (ip_at(ip, 12), ip_at(ip, 16));
    let proto = ip[9];
    let l4 = &mut ip[hl..total];
    match proto {
        6 if l4.len() >= 20 => {
            l4[16..18].fill(0);
            let c = csum(pseudo(src, dst, 6, l4.len()), l4);
            l4[16..18].copy_from_slice(&c.to_be_bytes());
        }
        1 if l4.len() >= 4 => {
            l4[2..4].fill(0);
            let c = csum(0, l4);
            l4[2..4].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
}

/// Four bytes at `at` as an address.
pub fn ip_at(b: &[u8], at: usize) -> [u8; 4] {
    [b[at], b[at + 1], b[at + 2], b[at + 3]]
}

/// A big-endian u16 at `at`.
pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A big-endian u32 at `at`.
pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_carry_valid_checksums() {
        let h = TcpHdr {
            sport: 1,
            dport: 80,
            seq: 7,
            ack: 0,
            flags: SYN,
            win: 1000,
            urg: 0,
            options: vec![2, 4, 5, 0xb4, 1],
        };
        let seg = tcp(PEER_IP, TARGET_IP, &h, b"abc");
        assert_eq!(seg[12] >> 4, 7, "options padded to 8 bytes");
        let f = ip_frame(&IpHdr::new(PEER_IP, TARGET_IP, 6), &[], &seg);
        let ip = &f[ETH..];
        assert_eq!(csum(0, &ip[..20]), 0);
        let l4 = &ip[20..];
        assert_eq!(
            csum(pseudo(ip_at(ip, 12), ip_at(ip, 16), 6, l4.len()), l4),
            0
        );
        let mut broken = f.clone();
        broken[ETH + 24] ^= 1;
        broken[ETH + 20 + 4] ^= 1;
        fix_checksums(&mut broken);
        let ip = &broken[ETH..];
        assert_eq!(csum(0, &ip[..20]), 0);
        assert_eq!(
            csum(
                pseudo(ip_at(ip, 12), ip_at(ip, 16), 6, ip.len() - 20),
                &ip[20..]
            ),
            0
        );
    }
}
