//! IPv4 input and output (RFC 791, RFC 1122 §3.2 for hosts).
//!
//! Input validates the header (version, IHL, total length against the frame, header
//! checksum unless the device vouched for it), drops fragments (no reassembly), and
//! hands the payload to the protocol. Output routes (on-link or via the gateway),
//! resolves the next hop through ARP (holding the packet on a miss) and writes the
//! Ethernet and IPv4 headers in place in the transmit frame.

use std::net::Ipv4Addr;

use smoltcp::wire::{EthernetAddress, EthernetProtocol, IpProtocol, Ipv4Packet};

use super::arp::{self, Resolve};
use super::{ether, icmp, Interface, NetCtx};
use crate::checksum;
use crate::mbuf::{CsumFlags, Pkt};
use crate::stats::Counters;

/// IPv4 header length without options.
pub const HEADER_LEN: usize = 20;
/// The TTL we send with (RFC 1700's recommended default, Linux's and FreeBSD's too).
pub const DEFAULT_TTL: u8 = 64;

/// The ECN field of the IPv4 header (RFC 3168 §5: "the ECN field in the IP header with
/// four ECN codepoints, '00' to '11'"). The transport picks it per packet on output and
/// reads it on input; the IP layer only carries it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Ecn {
    /// `00`: Not-ECT, the transport does not do ECN for this packet.
    #[default]
    NotEct,
    /// `01`: ECT(1).
    Ect1,
    /// `10`: ECT(0), what an RFC 3168 TCP sets on its data packets.
    Ect0,
    /// `11`: CE, Congestion Experienced (set by a router instead of dropping).
    Ce,
}

impl Ecn {
    /// The codepoint from the two low bits of the TOS/traffic-class byte.
    pub fn from_bits(bits: u8) -> Ecn {
        match bits & 3 {
            0 => Ecn::NotEct,
            1 => Ecn::Ect1,
            2 => Ecn::Ect0,
            _ => Ecn::Ce,
        }
    }

    /// The two bits on the wire.
    pub fn bits(self) -> u8 {
        match self {
            Ecn::NotEct => 0,
            Ecn::Ect1 => 1,
            Ecn::Ect0 => 2,
            Ecn::Ce => 3,
        }
    }

    /// ECT(0), ECT(1) or CE: the sender declared an ECN-capable transport.
    pub fn is_ect(self) -> bool {
        self != Ecn::NotEct
    }
}

/// A received IPv4 packet after validation: addresses, protocol and payload.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4In<'a> {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address (one of ours).
    pub dst: Ipv4Addr,
    /// The upper-layer protocol.
    pub protocol: IpProtocol,
    /// The payload, trimmed to the total length (Ethernet padding removed).
    pub payload: &'a [u8],
    /// Offload flags of the frame it came in.
    pub csum: CsumFlags,
    /// LRO: the payload is this many TCP segments of `lro_segsz` bytes (the last may
    /// be shorter), coalesced; 0 for a packet as it arrived.
    pub lro_nsegs: u16,
    /// LRO: the size of the coalesced segments.
    pub lro_segsz: u16,
    /// The ECN field (RFC 3168), for the transport.
    pub ecn: Ecn,
    /// The frame's link-layer source (the sender, or the router it came through):
    /// where an answer goes when the ARP cache has no entry for the sender.
    pub src_mac: EthernetAddress,
}

/// Why output did not send.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OutputError {
    /// Off every owned subnet and no gateway.
    #[error("no route to host")]
    NoRoute,
    /// Larger than the MTU (we never fragment).
    #[error("packet larger than the MTU")]
    TooBig,
    /// The ARP hold queue for the next hop is full.
    #[error("ARP hold queue full")]
    HoldFull,
    /// The next hop could not be resolved: it did not answer recently, the ARP cache is
    /// full, or an answer found neither an entry nor a unicast source to go back to.
    #[error("next hop unresolved")]
    Unresolved,
    /// No room on the transmit path.
    #[error("transmit ring full")]
    NoBuffer,
}

/// Validates a received IPv4 frame (Ethernet header included) and delivers it to
/// ICMP; other protocols are counted as unknown. See [`input_with`].
#[cfg(test)]
pub fn input(ifp: &Interface, ctx: &mut impl NetCtx, pkt: Pkt<'_>) {
    input_with(ifp, ctx, pkt, |ctx, _| {
        Counters::inc(&ctx.counters().ip_unknown_proto)
    });
}

/// What IPv4 hands to TCP: a segment, or an ICMP error about one we sent.
pub enum ToTcp<'a, 'b> {
    /// A packet carrying TCP.
    Segment(&'b Ipv4In<'a>),
    /// An ICMP error quoting one of our segments.
    Error(icmp::IcmpError),
}

/// Validates a received IPv4 frame and delivers it: ICMP here (its errors about TCP
/// segments on to `tcp`), TCP to `tcp`, anything else counted as an unknown protocol.
pub fn input_with<C: NetCtx>(
    ifp: &Interface,
    ctx: &mut C,
    pkt: Pkt<'_>,
    tcp: impl FnOnce(&mut C, ToTcp<'_, '_>),
) {
    let Some(ip) = validate(ifp, ctx, pkt) else {
        return;
    };
    match ip.protocol {
        IpProtocol::Icmp => {
            if let Some(e) = icmp::input(ifp, ctx, &ip) {
                tcp(ctx, ToTcp::Error(e));
            }
        }
        IpProtocol::Tcp => tcp(ctx, ToTcp::Segment(&ip)),
        _ => Counters::inc(&ctx.counters().ip_unknown_proto),
    }
}

/// The checks of [`input`], separated so later protocols reuse them. Every rejection
/// is counted.
pub fn validate<'a>(ifp: &Interface, ctx: &impl NetCtx, pkt: Pkt<'a>) -> Option<Ipv4In<'a>> {
    let c = ctx.counters();
    Counters::inc(&c.ip_rx);
    let Some(bytes) = pkt.data.get(ether::HEADER_LEN..) else {
        Counters::inc(&c.ip_truncated);
        return None;
    };
    if bytes.len() < HEADER_LEN {
        Counters::inc(&c.ip_truncated);
        return None;
    }
    let p = Ipv4Packet::new_unchecked(bytes);
    let hlen = p.header_len() as usize;
    if p.version() != 4 || hlen < HEADER_LEN {
        Counters::inc(&c.ip_bad_header);
        return None;
    }
    let total = p.total_len() as usize;
    if hlen > bytes.len() || total < hlen || total > bytes.len() {
        Counters::inc(&c.ip_truncated);
        return None;
    }
    // Trim Ethernet padding: from here on the packet is exactly `total` bytes.
    let bytes = &bytes[..total];
    let device_checked = pkt.meta.csum.contains(CsumFlags::IP_CHECKED);
    if device_checked {
        if !pkt.meta.csum.contains(CsumFlags::IP_VALID) {
            Counters::inc(&c.ip_bad_checksum);
            return None;
        }
    } else if !checksum::verify(&bytes[..hlen]) {
        Counters::inc(&c.ip_bad_checksum);
        return None;
    }
    let p = Ipv4Packet::new_unchecked(bytes);
    if p.more_frags() || p.frag_offset() != 0 {
        Counters::inc(&c.ip_fragments);
        return None;
    }
    let src = p.src_addr();
    let dst = p.dst_addr();
    // RFC 1122 §3.2.1.3: a host MUST silently discard a datagram whose source is
    // broadcast, multicast, loopback or unspecified; a subnet's all-zeros host address
    // is the obsolete broadcast form (§3.3.6). A datagram from the wire claiming one of
    // our own addresses is forged (a LAND attack): answering it would talk to ourselves
    // (Linux drops it as a martian too).
    if src.is_broadcast()
        || src.is_multicast()
        || src.is_loopback()
        || src.is_unspecified()
        || ifp
            .addrs
            .iter()
            .any(|c| c.prefix_len < 31 && (c.broadcast() == src || c.network() == src))
        || ifp.owns(src)
    {
        Counters::inc(&c.ip_martian);
        return None;
    }
    if !ifp.owns(dst) {
        Counters::inc(&c.ip_not_ours);
        return None;
    }
    // RFC 1122 §3.2.1.7: a host MUST NOT discard a datagram just because it was
    // received with TTL less than 2 -- so the TTL is not checked on input.
    Some(Ipv4In {
        src,
        dst,
        protocol: p.next_header(),
        payload: &bytes[hlen..],
        csum: pkt.meta.csum,
        lro_nsegs: pkt.meta.lro_nsegs,
        lro_segsz: pkt.meta.tso_segsz,
        ecn: Ecn::from_bits(p.ecn()),
        src_mac: EthernetAddress::from_bytes(&pkt.data[6..12]),
    })
}

/// Sends an IPv4 packet of `payload_len` bytes (written by `fill`) from `src` to `dst`,
/// Not-ECT. (The stack's own packets go through [`output_full`] or [`output_answer`].)
#[cfg(test)]
pub fn output(
    ifp: &Interface,
    ctx: &mut impl NetCtx,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    payload_len: usize,
    fill: &mut dyn FnMut(&mut [u8]),
) -> Result<(), OutputError> {
    let out = Out {
        src,
        dst,
        protocol,
        ecn: Ecn::NotEct,
        payload_len,
        l4_csum_offset: None,
    };
    out.send(ifp, ctx, Hold::Yes, fill)
}

/// [`output`] for a packet that only answers one we received (a RST for a closed port,
/// an echo reply) from `reply_mac`: an on-link destination missing from the ARP cache
/// gets it at `reply_mac` and no entry is made (`ArpCache::resolve_answer`), so forged
/// sources can neither fill the cache nor have us ask the network about them. The
/// gateway, one address we configured, is resolved as for any packet.
#[allow(clippy::too_many_arguments)]
pub fn output_answer(
    ifp: &Interface,
    ctx: &mut impl NetCtx,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    reply_mac: EthernetAddress,
    protocol: IpProtocol,
    payload_len: usize,
    fill: &mut dyn FnMut(&mut [u8]),
) -> Result<(), OutputError> {
    let out = Out {
        src,
        dst,
        protocol,
        ecn: Ecn::NotEct,
        payload_len,
        l4_csum_offset: None,
    };
    out.send(ifp, ctx, Hold::No(reply_mac), fill)
}

/// [`output`], with the ECN codepoint the transport chose for this packet (RFC 3168
/// §6.1: TCP marks ECT only on its new data segments), for a payload whose L4 checksum
/// `fill` may leave partial (`CSUM_TCP`, when `l4_csum_offset` is set): the field at that offset within the payload holds
/// the folded pseudo-header sum and the device finishes it
/// ([`NetCtx::transmit_partial`]); a packet held for ARP is finished in software right
/// away, since it is sent later through the plain path.
#[allow(clippy::too_many_arguments)]
pub fn output_full(
    ifp: &Interface,
    ctx: &mut impl NetCtx,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    ecn: Ecn,
    payload_len: usize,
    l4_csum_offset: Option<u16>,
    fill: &mut dyn FnMut(&mut [u8]),
) -> Result<(), OutputError> {
    let out = Out {
        src,
        dst,
        protocol,
        ecn,
        payload_len,
        l4_csum_offset,
    };
    out.send(ifp, ctx, Hold::Yes, fill)
}

/// Sends a TCP frame longer than the MTU for the device to segment (`CSUM_TSO`):
/// `payload_len` bytes of TCP (a `tcp_hlen`-byte header, then data cut into `mss`-byte
/// segments), written by `fill` with the pseudo-header sum over the whole TCP length in
/// its checksum field. Only to a next hop already resolved: a frame waiting for ARP
/// would be held whole, and the hold queue sends ordinary frames. On an error nothing
/// was sent and the caller sends the segments itself.
#[allow(clippy::too_many_arguments)]
pub fn output_tso(
    ifp: &Interface,
    ctx: &mut impl NetCtx,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ecn: Ecn,
    payload_len: usize,
    tcp_hlen: usize,
    mss: u16,
    fill: &mut dyn FnMut(&mut [u8]),
) -> Result<(), OutputError> {
    let len = ether::HEADER_LEN + HEADER_LEN + payload_len;
    if len > ctx.tso_frame_max() || HEADER_LEN + payload_len > u16::MAX as usize {
        return Err(OutputError::TooBig);
    }
    let Some(next_hop) = ifp.next_hop(dst) else {
        return Err(OutputError::NoRoute);
    };
    let Some(mac) = ifp.arp.lookup(next_hop, ctx.now()) else {
        return Err(OutputError::Unresolved);
    };
    let out = Out {
        src,
        dst,
        protocol: IpProtocol::Tcp,
        ecn,
        payload_len,
        l4_csum_offset: None,
    };
    let mut frame = |buf: &mut [u8]| out.write_frame(ifp, mac, buf, fill);
    let params = crate::device::gso::GsoParams {
        hdr_len: (ether::HEADER_LEN + HEADER_LEN + tcp_hlen) as u16,
        mss,
    };
    if ctx.transmit_tso(len, params, &mut frame) {
        Counters::inc(&ctx.counters().ip_tx);
        Ok(())
    } else {
        Err(OutputError::NoBuffer)
    }
}

/// Whether a packet may wait in the ARP hold queue (and make an entry) on a miss; if
/// not, the link address to send it to instead.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hold {
    Yes,
    No(EthernetAddress),
}

/// One outgoing packet's header fields.
struct Out {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    ecn: Ecn,
    payload_len: usize,
    l4_csum_offset: Option<u16>,
}

impl Out {
    fn write_ip(&self, buf: &mut [u8], fill: &mut dyn FnMut(&mut [u8])) {
        let ip_len = HEADER_LEN + self.payload_len;
        write_header(buf, self.src, self.dst, self.protocol, ip_len as u16);
        if self.ecn != Ecn::NotEct {
            set_ecn(buf, self.ecn);
        }
        fill(&mut buf[HEADER_LEN..]);
    }

    /// Writes the whole frame to `mac`: Ethernet header, IPv4 header, then `fill`.
    fn write_frame(
        &self,
        ifp: &Interface,
        mac: EthernetAddress,
        buf: &mut [u8],
        fill: &mut dyn FnMut(&mut [u8]),
    ) {
        ether::write_header(buf, ifp.mac, mac, EthernetProtocol::Ipv4);
        self.write_ip(&mut buf[ether::HEADER_LEN..], fill);
    }

    /// Routes, resolves and sends (or holds) the packet.
    fn send(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        hold: Hold,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), OutputError> {
        let ip_len = HEADER_LEN + self.payload_len;
        if ip_len > ifp.mtu {
            return Err(OutputError::TooBig);
        }
        let Some(next_hop) = ifp.next_hop(self.dst) else {
            Counters::inc(&ctx.counters().ip_no_route);
            return Err(OutputError::NoRoute);
        };
        let now = ctx.now();
        let hold = if ifp.gateway == Some(next_hop) {
            Hold::Yes
        } else {
            hold
        };
        let resolved = match hold {
            Hold::No(reply_mac) => match ifp.arp.resolve_answer(next_hop, now) {
                Some(r) => r,
                None if reply_mac.is_unicast() => {
                    Counters::inc(&ctx.counters().arp_answer_to_source);
                    Resolve::Known(reply_mac)
                }
                None => {
                    Counters::inc(&ctx.counters().arp_answer_no_entry);
                    return Err(OutputError::Unresolved);
                }
            },
            Hold::Yes => ifp.arp.resolve(next_hop, now, || {
                let mut v = vec![0u8; ip_len];
                self.write_ip(&mut v, fill);
                if let Some(off) = self.l4_csum_offset {
                    checksum::finish_partial(&mut v, HEADER_LEN, off as usize);
                }
                v
            }),
        };
        let c = ctx.counters();
        let mac = match resolved {
            Resolve::Known(mac) => mac,
            Resolve::KnownRefresh(mac) => {
                // A stale entry: revalidate it, but do not hold the packet.
                arp::request(ifp, ctx, next_hop);
                mac
            }
            Resolve::HeldAndAsk => {
                Counters::inc(&c.arp_held);
                arp::request(ifp, ctx, next_hop);
                return Ok(());
            }
            Resolve::Held => {
                Counters::inc(&c.arp_held);
                return Ok(());
            }
            Resolve::Dropped => {
                Counters::inc(&c.arp_hold_overflow);
                return Err(OutputError::HoldFull);
            }
            Resolve::HostDown => {
                Counters::inc(&c.arp_host_down);
                return Err(OutputError::Unresolved);
            }
            Resolve::CacheFull => {
                Counters::inc(&c.arp_cache_full);
                return Err(OutputError::Unresolved);
            }
        };
        self.transmit(ifp, ctx, mac, fill)
    }

    /// Writes the frame to `mac` on the transmit path.
    fn transmit(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        mac: EthernetAddress,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), OutputError> {
        let mut frame = |buf: &mut [u8]| self.write_frame(ifp, mac, buf, fill);
        let len = ether::HEADER_LEN + HEADER_LEN + self.payload_len;
        let ok = match self.l4_csum_offset {
            Some(off) => ctx.transmit_partial(
                len,
                (ether::HEADER_LEN + HEADER_LEN) as u16,
                off,
                &mut frame,
            ),
            None => ctx.transmit(len, &mut frame),
        };
        if ok {
            Counters::inc(&ctx.counters().ip_tx);
            Ok(())
        } else {
            Err(OutputError::NoBuffer)
        }
    }
}

/// Writes a 20-byte IPv4 header with DF set, ID 0 and a software checksum.
fn write_header(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    total_len: u16,
) {
    let mut p = Ipv4Packet::new_unchecked(&mut buf[..HEADER_LEN]);
    p.set_version(4);
    p.set_header_len(HEADER_LEN as u8);
    p.set_dscp(0);
    p.set_ecn(0);
    p.set_total_len(total_len);
    // RFC 6864 §4.1: the ID of an atomic datagram (DF set, not a fragment) has no
    // meaning, and a counter would tell an observer how much the stack sends (RFC 7739
    // §5.1). Zero, as FreeBSD writes with `net.inet.ip.rfc6864=1`.
    p.set_ident(0);
    p.clear_flags();
    // We never fragment, so DF tells routers to say so (RFC 1191 path MTU discovery).
    p.set_dont_frag(true);
    p.set_frag_offset(0);
    p.set_hop_limit(DEFAULT_TTL);
    p.set_next_header(protocol);
    p.set_src_addr(src);
    p.set_dst_addr(dst);
    p.set_checksum(0);
    let sum = checksum::checksum(&buf[..HEADER_LEN]);
    buf[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// Rewrites the ECN field of the IPv4 header at the start of `buf`, updating its
/// checksum incrementally (RFC 1624). Also what a simulated router does to mark CE.
pub fn set_ecn(buf: &mut [u8], ecn: Ecn) {
    let old = u16::from_be_bytes([buf[0], buf[1]]);
    buf[1] = (buf[1] & !3) | ecn.bits();
    let new = u16::from_be_bytes([buf[0], buf[1]]);
    let sum = u16::from_be_bytes([buf[10], buf[11]]);
    let sum = checksum::update16(sum, old, new);
    buf[10..12].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::PktMeta;
    use crate::net::testctx::*;

    /// A valid IPv4/ICMP frame from the peer to us, 8 bytes of ICMP payload.
    pub(crate) fn ip_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + payload.len()];
        ether::write_header(&mut f, PEER_MAC, OUR_MAC, EthernetProtocol::Ipv4);
        write_header(
            &mut f[14..],
            PEER_IP,
            OUR_IP,
            IpProtocol::Icmp,
            (20 + payload.len()) as u16,
        );
        f[34..].copy_from_slice(payload);
        f
    }

    fn check(f: &[u8]) -> (bool, TestCtx) {
        let ifp = iface();
        let ctx = TestCtx::new();
        let ok = validate(
            &ifp,
            &ctx,
            Pkt {
                data: f,
                meta: PktMeta::rx(f.len(), 0),
            },
        )
        .is_some();
        (ok, ctx)
    }

    #[test]
    fn golden_header() {
        let mut buf = [0u8; 20];
        write_header(&mut buf, PEER_IP, OUR_IP, IpProtocol::Icmp, 84);
        assert_eq!(
            buf,
            [
                0x45, 0x00, 0x00, 0x54, 0x00, 0x00, 0x40, 0x00, 0x40, 0x01, 0xae, 0x81, 198, 18, 0,
                2, 198, 18, 0, 1
            ]
        );
        assert!(checksum::verify(&buf));
    }

    // RFC 3168 §5: the ECN field is the two low bits of the TOS byte; rewriting it keeps
    // the header checksum valid (RFC 1624 incremental update), and input reports it.
    #[test]
    fn ecn_field_round_trips_with_a_valid_checksum() {
        for e in [Ecn::NotEct, Ecn::Ect1, Ecn::Ect0, Ecn::Ce] {
            assert_eq!(Ecn::from_bits(e.bits()), e);
            let mut f = ip_frame(&[8, 0, 0, 0, 0, 0, 0, 0]);
            f[15] = 0xb8; // DSCP EF: must survive
            f[24..26].fill(0);
            let sum = checksum::checksum(&f[14..34]);
            f[24..26].copy_from_slice(&sum.to_be_bytes());
            set_ecn(&mut f[14..], e);
            assert!(checksum::verify(&f[14..34]), "{e:?}");
            assert_eq!(f[15] >> 2, 0xb8 >> 2, "DSCP kept");
            let (ifp, ctx) = (iface(), TestCtx::new());
            let pkt = Pkt {
                data: &f,
                meta: PktMeta::rx(f.len(), 0),
            };
            assert_eq!(validate(&ifp, &ctx, pkt).map(|ip| ip.ecn), Some(e));
        }
        assert!(!Ecn::NotEct.is_ect() && Ecn::Ect0.is_ect() && Ecn::Ce.is_ect());
    }

    #[test]
    fn valid_packet_passes_and_padding_is_trimmed() {
        let mut f = ip_frame(&[8, 0, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&[0xee; 10]); // Ethernet padding
        let ifp = iface();
        let ctx = TestCtx::new();
        let ip = validate(
            &ifp,
            &ctx,
            Pkt {
                data: &f,
                meta: PktMeta::rx(f.len(), 0),
            },
        )
        .unwrap();
        assert_eq!(ip.payload.len(), 8);
        assert_eq!(ip.src, PEER_IP);
    }

    #[test]
    fn each_malformation_has_its_counter() {
        let good = ip_frame(&[0; 8]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..30].to_vec(), "ip.drop_truncated"),
            (
                {
                    let mut f = good.clone();
                    f[14] = 0x65;
                    f
                },
                "ip.drop_bad_header",
            ),
            (
                {
                    let mut f = good.clone();
                    f[14] = 0x44;
                    f
                },
                "ip.drop_bad_header",
            ),
            (
                {
                    let mut f = good.clone();
                    f[16] = 0x01;
                    f
                },
                "ip.drop_truncated",
            ),
            (
                {
                    let mut f = good.clone();
                    f[17] = 10;
                    f
                },
                "ip.drop_truncated",
            ),
            (
                {
                    let mut f = good.clone();
                    f[24] ^= 1;
                    f
                },
                "ip.drop_bad_checksum",
            ),
        ];
        for (f, counter) in cases {
            let (ok, ctx) = check(&f);
            assert!(!ok, "{counter}");
            assert_eq!(ctx.count(counter), 1, "{counter}");
        }
    }

    fn rewrite(f: &mut [u8], edit: impl FnOnce(&mut Ipv4Packet<&mut [u8]>)) {
        let mut p = Ipv4Packet::new_unchecked(&mut f[14..34]);
        edit(&mut p);
        p.set_checksum(0);
        let sum = checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&sum.to_be_bytes());
    }

    #[test]
    fn fragments_martians_and_strangers_are_dropped() {
        let mut f = ip_frame(&[0; 8]);
        rewrite(&mut f, |p| p.set_more_frags(true));
        let (ok, ctx) = check(&f);
        assert!(!ok);
        assert_eq!(ctx.count("ip.drop_fragments"), 1);

        let mut f = ip_frame(&[0; 8]);
        rewrite(&mut f, |p| p.set_frag_offset(8));
        assert_eq!(check(&f).1.count("ip.drop_fragments"), 1);

        let mut f = ip_frame(&[0; 8]);
        rewrite(&mut f, |p| p.set_src_addr(Ipv4Addr::new(198, 18, 0, 255)));
        assert_eq!(check(&f).1.count("ip.drop_martian_source"), 1);

        let mut f = ip_frame(&[0; 8]);
        rewrite(&mut f, |p| p.set_src_addr(Ipv4Addr::new(224, 0, 0, 1)));
        assert_eq!(check(&f).1.count("ip.drop_martian_source"), 1);

        // Found by the fuzzer: a SYN from the subnet's all-zeros address was answered
        // (an ARP request went out for 198.18.0.0).
        let mut f = ip_frame(&[0; 8]);
        rewrite(&mut f, |p| p.set_src_addr(Ipv4Addr::new(198, 18, 0, 0)));
        assert_eq!(check(&f).1.count("ip.drop_martian_source"), 1);

        // Found by the fuzzer: a segment from our own address to our own address was
        // answered with a RST to ourselves.
        let mut f = ip_frame(&[0; 8]);
        rewrite(&mut f, |p| p.set_src_addr(p.dst_addr()));
        assert_eq!(check(&f).1.count("ip.drop_martian_source"), 1);

        let mut f = ip_frame(&[0; 8]);
        rewrite(&mut f, |p| p.set_dst_addr(Ipv4Addr::new(198, 18, 0, 9)));
        assert_eq!(check(&f).1.count("ip.drop_not_ours"), 1);
    }

    #[test]
    fn device_checked_flags_are_honoured() {
        let mut f = ip_frame(&[0; 8]);
        f[24] ^= 0xff; // corrupt the header checksum
        let ifp = iface();
        let ctx = TestCtx::new();
        let mut meta = PktMeta::rx(f.len(), 0);
        // No flags: the software path catches it.
        assert!(validate(&ifp, &ctx, Pkt { data: &f, meta }).is_none());
        // The device checked it and says valid: not re-summed.
        meta.csum = CsumFlags::IP_CHECKED | CsumFlags::IP_VALID;
        assert!(validate(&ifp, &ctx, Pkt { data: &f, meta }).is_some());
        // The device checked it and says invalid.
        meta.csum = CsumFlags::IP_CHECKED;
        assert!(validate(&ifp, &ctx, Pkt { data: &f, meta }).is_none());
        assert_eq!(ctx.count("ip.drop_bad_checksum"), 2);
    }

    /// CSUM_TCP on a context without the offload (and for a packet held for ARP): the
    /// partial checksum `fill` leaves is finished in software before the frame leaves.
    #[test]
    fn partial_checksum_is_finished_without_the_offload() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        let seg_len = 40usize;
        let mut fill = |b: &mut [u8]| {
            for (i, x) in b.iter_mut().enumerate() {
                *x = i as u8;
            }
            let pseudo =
                checksum::pseudo_header_v4(OUR_IP.octets(), PEER_IP.octets(), 6, seg_len as u16);
            b[16..18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        };
        let valid = |frame: &[u8]| {
            let tcp = &frame[34..];
            let pseudo =
                checksum::pseudo_header_v4(OUR_IP.octets(), PEER_IP.octets(), 6, tcp.len() as u16);
            checksum::fold(checksum::add(pseudo, tcp)) == 0xffff
        };
        let mut send = |ctx: &mut TestCtx| {
            let (src, dst) = (OUR_IP, PEER_IP);
            output_full(
                &ifp,
                ctx,
                src,
                dst,
                IpProtocol::Tcp,
                Ecn::NotEct,
                seg_len,
                Some(16),
                &mut fill,
            )
            .unwrap()
        };
        // Held for ARP, then released by the reply.
        send(&mut ctx);
        ctx.take_sent();
        let held = ifp.arp.resolve_for_test(PEER_IP, PEER_MAC, ctx.now);
        assert_eq!(held.len(), 1);
        let mut frame = vec![0u8; 14];
        frame.extend_from_slice(&held[0]);
        assert!(valid(&frame), "a held packet is finished before it waits");
        // Resolved: through transmit_partial's software fallback.
        send(&mut ctx);
        let sent = ctx.take_sent();
        assert_eq!(sent.len(), 1);
        assert!(valid(&sent[0]));
    }

    #[test]
    fn output_routes_on_link_and_via_gateway() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        // Unknown neighbour: held, one ARP request goes out.
        output(
            &ifp,
            &mut ctx,
            OUR_IP,
            PEER_IP,
            IpProtocol::Icmp,
            8,
            &mut |b| b.fill(1),
        )
        .unwrap();
        let sent = ctx.take_sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(&sent[0][12..14], &[0x08, 0x06]);
        // Off-link: resolved through the gateway.
        output(
            &ifp,
            &mut ctx,
            OUR_IP,
            Ipv4Addr::new(198, 19, 5, 5),
            IpProtocol::Icmp,
            8,
            &mut |b| b.fill(1),
        )
        .unwrap();
        let sent = ctx.take_sent();
        let req = smoltcp::wire::ArpPacket::new_checked(&sent[0][14..42]).unwrap();
        assert_eq!(req.target_protocol_addr(), &[198, 18, 0, 254]);
        // Too big.
        assert_eq!(
            output(
                &ifp,
                &mut ctx,
                OUR_IP,
                PEER_IP,
                IpProtocol::Icmp,
                1481,
                &mut |_| {}
            ),
            Err(OutputError::TooBig)
        );
    }

    #[test]
    fn the_ip_id_of_our_datagrams_is_zero_not_a_counter() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        ifp.arp.resolve_for_test(PEER_IP, PEER_MAC, ctx.now);
        for len in [8, 100, 1000] {
            output(
                &ifp,
                &mut ctx,
                OUR_IP,
                PEER_IP,
                IpProtocol::Udp,
                len,
                &mut |b| b.fill(0),
            )
            .unwrap();
        }
        let sent = ctx.take_sent();
        assert_eq!(sent.len(), 3);
        for f in sent {
            let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
            assert!(ip.dont_frag());
            assert_eq!(ip.ident(), 0);
            assert!(ip.verify_checksum());
        }
    }

    #[test]
    fn no_route_without_gateway() {
        let mut ifp = iface();
        ifp.gateway = None;
        let mut ctx = TestCtx::new();
        assert_eq!(
            output(
                &ifp,
                &mut ctx,
                OUR_IP,
                Ipv4Addr::new(198, 19, 0, 1),
                IpProtocol::Icmp,
                8,
                &mut |_| {}
            ),
            Err(OutputError::NoRoute)
        );
        assert_eq!(ctx.count("ip.drop_no_route"), 1);
    }
}
