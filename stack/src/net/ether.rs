//! Ethernet II input classification and header output.

use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol};

use super::{Interface, NetCtx};
use crate::stats::Counters;

/// Ethernet header length (no VLAN tag).
pub const HEADER_LEN: usize = 14;

/// What an accepted frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtherProto {
    /// An ARP packet.
    Arp,
    /// An IPv4 packet.
    Ipv4,
}

/// Checks the Ethernet header of a received frame and says which protocol takes it,
/// or drops it with a counter: too short, addressed to another unicast MAC, or an
/// ethertype the stack does not handle.
pub fn classify(ifp: &Interface, ctx: &impl NetCtx, frame: &[u8]) -> Option<EtherProto> {
    let c = ctx.counters();
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        Counters::inc(&c.ether_truncated);
        return None;
    };
    let dst = eth.dst_addr();
    // Broadcast is taken (ARP requests); other multicast groups have no listener here.
    if dst != ifp.mac && !dst.is_broadcast() {
        Counters::inc(&c.ether_not_ours);
        return None;
    }
    match eth.ethertype() {
        EthernetProtocol::Arp => Some(EtherProto::Arp),
        EthernetProtocol::Ipv4 => Some(EtherProto::Ipv4),
        _ => {
            Counters::inc(&c.ether_unknown_type);
            None
        }
    }
}

/// Writes an Ethernet II header at the start of `buf` (at least [`HEADER_LEN`] bytes).
pub fn write_header(
    buf: &mut [u8],
    src: EthernetAddress,
    dst: EthernetAddress,
    proto: EthernetProtocol,
) {
    let mut eth = EthernetFrame::new_unchecked(buf);
    eth.set_dst_addr(dst);
    eth.set_src_addr(src);
    eth.set_ethertype(proto);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testctx::*;

    fn frame(dst: EthernetAddress, ethertype: u16) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&PEER_MAC.0);
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f
    }

    #[test]
    fn accepts_ours_and_broadcast() {
        let ifp = iface();
        let ctx = TestCtx::new();
        assert_eq!(
            classify(&ifp, &ctx, &frame(OUR_MAC, 0x0800)),
            Some(EtherProto::Ipv4)
        );
        assert_eq!(
            classify(&ifp, &ctx, &frame(EthernetAddress::BROADCAST, 0x0806)),
            Some(EtherProto::Arp)
        );
    }

    #[test]
    fn drops_are_counted() {
        let ifp = iface();
        let ctx = TestCtx::new();
        assert_eq!(classify(&ifp, &ctx, &[0u8; 13]), None);
        assert_eq!(ctx.count("ether.drop_truncated"), 1);
        assert_eq!(classify(&ifp, &ctx, &frame(PEER_MAC, 0x0800)), None);
        assert_eq!(ctx.count("ether.drop_not_ours"), 1);
        assert_eq!(classify(&ifp, &ctx, &frame(OUR_MAC, 0x86dd)), None);
        assert_eq!(classify(&ifp, &ctx, &frame(OUR_MAC, 0x8100)), None);
        assert_eq!(ctx.count("ether.drop_unknown_ethertype"), 2);
    }
}
