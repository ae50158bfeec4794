//! ICMP for IPv4 (RFC 792): echo reply; other messages are counted and dropped.

use smoltcp::wire::{Icmpv4Message, Icmpv4Packet, IpProtocol};

use super::ipv4::{self, Ipv4In};
use super::{Interface, NetCtx};
use crate::checksum;
use crate::mbuf::CsumFlags;
use crate::stats::Counters;

/// Handles one ICMP message addressed to us.
pub fn input(ifp: &Interface, ctx: &mut impl NetCtx, ip: &Ipv4In<'_>) {
    let c = ctx.counters();
    Counters::inc(&c.icmp_rx);
    let Ok(p) = Icmpv4Packet::new_checked(ip.payload) else {
        Counters::inc(&c.icmp_truncated);
        return;
    };
    if !ip.csum.contains(CsumFlags::DATA_VALID) && !checksum::verify(ip.payload) {
        Counters::inc(&c.icmp_bad_checksum);
        return;
    }
    if p.msg_type() != Icmpv4Message::EchoRequest || p.msg_code() != 0 {
        Counters::inc(&c.icmp_other);
        return;
    }
    // RFC 792: "To form an echo reply message, the source and destination addresses
    // are simply reversed, the type code changed to 0, and the checksum recomputed."
    // Identifier, sequence number and data are returned unchanged, so the checksum is
    // updated incrementally for the type change alone (RFC 1624).
    let request = ip.payload;
    let old_word = u16::from_be_bytes([request[0], request[1]]);
    let old_sum = u16::from_be_bytes([request[2], request[3]]);
    let new_sum = checksum::update16(
        old_sum,
        old_word,
        (u8::from(Icmpv4Message::EchoReply) as u16) << 8,
    );
    let sent = ipv4::output(
        ifp,
        ctx,
        ip.dst,
        ip.src,
        IpProtocol::Icmp,
        request.len(),
        &mut |buf| {
            buf.copy_from_slice(request);
            buf[0] = Icmpv4Message::EchoReply.into();
            buf[1] = 0;
            buf[2..4].copy_from_slice(&new_sum.to_be_bytes());
        },
    );
    if sent.is_ok() {
        Counters::inc(&ctx.counters().icmp_echo_replied);
    }
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
            "incrementally updated checksum is right"
        );
        assert_eq!(ctx.count("icmp.echo_replies_tx"), 1);
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
}
