//! ICMP for IPv4 (RFC 792): echo reply, and the errors that concern TCP (destination
//! unreachable, time exceeded) handed up with the segment they quote (FreeBSD's
//! `tcp_ctlinput`); other messages are counted and dropped.

use smoltcp::wire::{Icmpv4Message, Icmpv4Packet, IpProtocol};

use std::net::{Ipv4Addr, SocketAddrV4};

use super::ipv4::{self, Ipv4In};
use super::{Interface, NetCtx};
use crate::checksum;
use crate::mbuf::CsumFlags;
use crate::stats::Counters;
use crate::tcp::seq::Seq;

/// An ICMP error about a TCP segment we sent: what happened, and the quoted segment's
/// ends and sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpError {
    /// ICMP type and code.
    pub kind: (u8, u8),
    /// Our end of the connection (the quoted packet's source).
    pub local: SocketAddrV4,
    /// The peer's end (the quoted packet's destination).
    pub remote: SocketAddrV4,
    /// The quoted segment's sequence number.
    pub seq: Seq,
    /// For "fragmentation needed": the next-hop MTU (RFC 1191 §4), or from a router
    /// older than RFC 1191 that leaves it zero, the plateau below the quoted datagram's
    /// length (RFC 1191 §7); 0 for every other error.
    pub mtu: u16,
}

/// ICMP type: destination unreachable.
const UNREACHABLE: u8 = 3;
/// ICMP type: time exceeded.
const TIME_EXCEEDED: u8 = 11;

impl IcmpError {
    /// A hard error: the peer or the path refuses the connection. RFC 1122 §4.2.3.9:
    /// destination unreachable "codes 2-4: These are hard error conditions"; code 4
    /// (fragmentation needed) is PMTUD's business, not an error here. The
    /// administratively-prohibited codes (9, 10, 13, RFC 1812 §5.2.7.1) count as hard,
    /// as in FreeBSD and Linux. Net/host unreachable (0, 1, 5) and time exceeded are
    /// soft (RFC 1122: "TCP MUST NOT abort the connection").
    pub fn is_hard(&self) -> bool {
        matches!(self.kind, (UNREACHABLE, 2 | 3 | 9 | 10 | 13))
    }

    /// The soft error this reports, as Linux's `icmp_err_convert` maps it: net
    /// unreachable (codes 0, 6, 11) as "network unreachable", the other host-side
    /// unreachable codes and time exceeded as "no route to host". `None` for hard
    /// errors and fragmentation needed.
    pub fn soft_error(&self) -> Option<crate::tcp::TcpError> {
        use crate::tcp::TcpError;
        match self.kind {
            (UNREACHABLE, 0 | 6 | 11) => Some(TcpError::NetUnreachable),
            (UNREACHABLE, 1 | 5 | 7 | 8 | 12 | 14 | 15) | (TIME_EXCEEDED, _) => {
                Some(TcpError::HostUnreachable)
            }
            _ => None,
        }
    }
    /// Destination unreachable, fragmentation needed and DF set (code 4): path MTU
    /// discovery's signal (RFC 1191).
    pub fn is_frag_needed(&self) -> bool {
        self.kind == (UNREACHABLE, FRAG_NEEDED)
    }
}

/// Destination-unreachable code: fragmentation needed and DF set.
const FRAG_NEEDED: u8 = 4;

/// RFC 1191 §7's table of MTU plateaus, for routers that report no MTU.
const PLATEAUS: [u16; 10] = [32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68];

/// The MTU a "fragmentation needed" error reports: its next-hop MTU field (the low 16
/// bits of the header's second word), else the largest plateau below the quoted
/// datagram's total length.
fn reported_mtu(header: &[u8], quoted: &[u8]) -> u16 {
    let field = u16::from_be_bytes([header[6], header[7]]);
    if field != 0 {
        return field;
    }
    let len = u16::from_be_bytes([quoted[2], quoted[3]]);
    PLATEAUS.into_iter().find(|&p| p < len).unwrap_or(68)
}

/// Parses an ICMP error that quotes a TCP segment from `ifp` (RFC 792: the original IP
/// header and at least 64 bits of its data: ports and sequence number).
fn tcp_error(
    ifp: &Interface,
    p: &Icmpv4Packet<&[u8]>,
    raw: &[u8],
) -> Result<Option<IcmpError>, ()> {
    let (ty, code) = (u8::from(p.msg_type()), p.msg_code());
    if ty != UNREACHABLE && ty != TIME_EXCEEDED {
        return Ok(None);
    }
    let quoted = p.data();
    let hlen = (*quoted.first().ok_or(())? & 0x0f) as usize * 4;
    if quoted[0] >> 4 != 4 || hlen < 20 || quoted.len() < hlen + 8 || quoted[9] != 6 {
        return Err(());
    }
    let addr =
        |at: usize| Ipv4Addr::new(quoted[at], quoted[at + 1], quoted[at + 2], quoted[at + 3]);
    let (src, dst) = (addr(12), addr(16));
    if !ifp.owns(src) {
        return Err(());
    }
    let tcp = &quoted[hlen..hlen + 8];
    let port = |at: usize| u16::from_be_bytes([tcp[at], tcp[at + 1]]);
    let mtu = if (ty, code) == (UNREACHABLE, FRAG_NEEDED) {
        reported_mtu(raw, quoted)
    } else {
        0
    };
    Ok(Some(IcmpError {
        kind: (ty, code),
        local: SocketAddrV4::new(src, port(0)),
        remote: SocketAddrV4::new(dst, port(2)),
        seq: Seq(u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]])),
        mtu,
    }))
}

/// Handles one ICMP message addressed to us; an error about a TCP segment of ours is
/// returned for TCP.
pub fn input(ifp: &Interface, ctx: &mut impl NetCtx, ip: &Ipv4In<'_>) -> Option<IcmpError> {
    let c = ctx.counters();
    Counters::inc(&c.icmp_rx);
    let Ok(p) = Icmpv4Packet::new_checked(ip.payload) else {
        Counters::inc(&c.icmp_truncated);
        return None;
    };
    if !ip.csum.contains(CsumFlags::DATA_VALID) && !checksum::verify(ip.payload) {
        Counters::inc(&c.icmp_bad_checksum);
        return None;
    }
    match tcp_error(ifp, &p, ip.payload) {
        Ok(Some(e)) => {
            Counters::inc(&c.icmp_tcp_errors);
            return Some(e);
        }
        Ok(None) => {}
        Err(()) => {
            Counters::inc(&c.icmp_bad_quote);
            return None;
        }
    }
    if p.msg_type() != Icmpv4Message::EchoRequest || p.msg_code() != 0 {
        Counters::inc(&c.icmp_other);
        return None;
    }
    if !ifp
        .limits
        .icmp_echo
        .allow_or_count(ctx.now(), &c.icmp_echo_suppressed)
    {
        return None;
    }
    // RFC 792: "To form an echo reply message, the source and destination addresses
    // are simply reversed, the type code changed to 0, and the checksum recomputed."
    // Identifier, sequence number and data are returned unchanged. The checksum is
    // recomputed in full: an incremental update (RFC 1624) gives 0x0000 for a reply
    // that is all zeros, where only 0xffff verifies.
    let request = ip.payload;
    let sent = ipv4::output_answer(
        ifp,
        ctx,
        ip.dst,
        ip.src,
        ip.src_mac,
        IpProtocol::Icmp,
        request.len(),
        &mut |buf| {
            buf.copy_from_slice(request);
            buf[0] = Icmpv4Message::EchoReply.into();
            buf[1] = 0;
            buf[2..4].fill(0);
            let sum = checksum::checksum(buf);
            buf[2..4].copy_from_slice(&sum.to_be_bytes());
        },
    );
    if sent.is_ok() {
        Counters::inc(&ctx.counters().icmp_echo_replied);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::{Pkt, PktMeta};
    use crate::net::ether;
    use crate::net::testctx::*;
    use smoltcp::wire::{EthernetProtocol, Ipv4Packet};

    fn echo_request(id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
        let mut icmp = vec![0u8; 8 + data.len()];
        icmp[0] = 8;
        icmp[4..6].copy_from_slice(&id.to_be_bytes());
        icmp[6..8].copy_from_slice(&seq.to_be_bytes());
        icmp[8..].copy_from_slice(data);
        let sum = checksum::checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut f = vec![0u8; 34 + icmp.len()];
        ether::write_header(&mut f, PEER_MAC, OUR_MAC, EthernetProtocol::Ipv4);
        let total = (20 + icmp.len()) as u16;
        {
            let mut p = Ipv4Packet::new_unchecked(&mut f[14..34]);
            p.set_version(4);
            p.set_header_len(20);
            p.set_total_len(total);
            p.set_hop_limit(64);
            p.set_next_header(IpProtocol::Icmp);
            p.set_src_addr(PEER_IP);
            p.set_dst_addr(OUR_IP);
            p.fill_checksum();
        }
        f[34..].copy_from_slice(&icmp);
        f
    }

    fn learn_peer(ifp: &Interface, now: std::time::Instant) {
        // Make the peer's MAC known, as its ARP request for us would have.
        ifp.arp.resolve(PEER_IP, now, Vec::new);
        let mut ctx = TestCtx::new();
        ctx.now = now;
        let mut reply = vec![0u8; 42];
        ether::write_header(&mut reply, PEER_MAC, OUR_MAC, EthernetProtocol::Arp);
        smoltcp::wire::ArpRepr::EthernetIpv4 {
            operation: smoltcp::wire::ArpOperation::Reply,
            source_hardware_addr: PEER_MAC,
            source_protocol_addr: PEER_IP,
            target_hardware_addr: OUR_MAC,
            target_protocol_addr: OUR_IP,
        }
        .emit(&mut smoltcp::wire::ArpPacket::new_unchecked(
            &mut reply[14..],
        ));
        crate::net::arp::input(
            ifp,
            &mut ctx,
            Pkt {
                data: &reply,
                meta: PktMeta::rx(42, 0),
            },
        );
    }

    #[test]
    fn echo_request_gets_exact_reply() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        learn_peer(&ifp, ctx.now);
        let data: Vec<u8> = (0..56).collect();
        let req = echo_request(0x1234, 7, &data);
        ipv4::input(
            &ifp,
            &mut ctx,
            Pkt {
                data: &req,
                meta: PktMeta::rx(req.len(), 0),
            },
        );
        let sent = ctx.take_sent();
        assert_eq!(sent.len(), 1);
        let r = &sent[0];
        assert_eq!(&r[0..6], &PEER_MAC.0);
        let ip = Ipv4Packet::new_checked(&r[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), OUR_IP);
        assert_eq!(ip.dst_addr(), PEER_IP);
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), Icmpv4Message::EchoReply);
        assert_eq!(icmp.echo_ident(), 0x1234);
        assert_eq!(icmp.echo_seq_no(), 7);
        assert_eq!(icmp.data(), &data[..]);
        assert!(
            checksum::verify(ip.payload()),
            "the recomputed checksum is right"
        );
        assert_eq!(ctx.count("icmp.echo_replies_tx"), 1);
    }

    // Found by the fuzzer: a valid request whose reply is all zeros (identifier,
    // sequence number and data zero) got the checksum 0x0000 from the incremental
    // update, where only 0xffff verifies (the -0/+0 ambiguity RFC 1624 warns of).
    #[test]
    fn an_all_zero_reply_has_a_checksum_that_verifies() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        learn_peer(&ifp, ctx.now);
        for data in [&[][..], &[0u8; 10][..]] {
            let req = echo_request(0, 0, data);
            assert!(checksum::verify(&req[34..]), "a valid request");
            ipv4::input(
                &ifp,
                &mut ctx,
                Pkt {
                    data: &req,
                    meta: PktMeta::rx(req.len(), 0),
                },
            );
            let sent = ctx.take_sent();
            assert_eq!(sent.len(), 1);
            let icmp = &sent[0][34..];
            assert!(
                checksum::verify(icmp),
                "reply checksum {:02x?}",
                &icmp[2..4]
            );
        }
    }

    #[test]
    fn bad_checksum_truncated_and_other_types_are_counted() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        learn_peer(&ifp, ctx.now);
        let mut bad = echo_request(1, 1, b"abcd");
        *bad.last_mut().unwrap() ^= 1;
        ipv4::input(
            &ifp,
            &mut ctx,
            Pkt {
                data: &bad,
                meta: PktMeta::rx(bad.len(), 0),
            },
        );
        assert_eq!(ctx.count("icmp.drop_bad_checksum"), 1);

        // A 4-byte ICMP message (shorter than the 8-byte header).
        let mut short = echo_request(1, 1, b"");
        short.truncate(38);
        {
            let mut p = Ipv4Packet::new_unchecked(&mut short[14..34]);
            p.set_total_len(24);
            p.fill_checksum();
        }
        ipv4::input(
            &ifp,
            &mut ctx,
            Pkt {
                data: &short,
                meta: PktMeta::rx(short.len(), 0),
            },
        );
        assert_eq!(ctx.count("icmp.drop_truncated"), 1);

        let mut reply = echo_request(1, 1, b"");
        reply[34] = 0; // an echo reply to us: nothing to answer
        let sum = checksum::checksum(&{
            let mut m = reply[34..].to_vec();
            m[2] = 0;
            m[3] = 0;
            m
        });
        reply[36..38].copy_from_slice(&sum.to_be_bytes());
        ipv4::input(
            &ifp,
            &mut ctx,
            Pkt {
                data: &reply,
                meta: PktMeta::rx(reply.len(), 0),
            },
        );
        assert_eq!(ctx.count("icmp.rx_other_types"), 1);
        assert!(ctx.take_sent().is_empty());
    }

    fn feed(ifp: &Interface, ctx: &mut TestCtx, f: &[u8]) {
        let meta = PktMeta::rx(f.len(), 0);
        ipv4::input(ifp, ctx, Pkt { data: f, meta });
    }

    #[test]
    fn an_echo_from_an_unknown_neighbour_goes_back_to_its_link_source() {
        let ifp = iface();
        let mut ctx = TestCtx::new();
        feed(&ifp, &mut ctx, &echo_request(1, 1, b"abcd"));
        let sent = ctx.take_sent();
        assert_eq!(sent.len(), 1, "the reply, and no ARP request");
        assert_eq!(&sent[0][0..6], &PEER_MAC.0);
        assert_eq!(&sent[0][12..14], &[0x08, 0x00]);
        assert!(ifp.arp.is_empty(), "no entry made");
        assert_eq!(ctx.count("arp.answers_to_link_source"), 1);
        assert_eq!(ctx.count("icmp.echo_replies_tx"), 1);
        // From a multicast link-layer source (invalid): nowhere to answer.
        let mut bad = echo_request(1, 2, b"abcd");
        bad[6] = 0x01;
        feed(&ifp, &mut ctx, &bad);
        assert!(ctx.take_sent().is_empty());
        assert_eq!(ctx.count("arp.drop_answer_no_entry"), 1);
        assert!(ifp.arp.is_empty());
    }

    #[test]
    fn the_mtu_of_a_frag_needed_is_its_field_or_the_plateau_below() {
        let mut quoted = [0u8; 28];
        quoted[2..4].copy_from_slice(&1500u16.to_be_bytes());
        assert_eq!(reported_mtu(&[3, 4, 0, 0, 0, 0, 0x04, 0xd2], &quoted), 1234);
        // RFC 1191 §7: a router that reports nothing: the next plateau down.
        assert_eq!(reported_mtu(&[3, 4, 0, 0, 0, 0, 0, 0], &quoted), 1492);
        quoted[2..4].copy_from_slice(&60u16.to_be_bytes());
        assert_eq!(reported_mtu(&[3, 4, 0, 0, 0, 0, 0, 0], &quoted), 68);
    }
}
