//! Ethernet framing between packetdrill (IP packets) and the simulated stack
//! (Ethernet frames), and the ARP answers that keep ARP out of packetdrill's sight.

/// The stack's link-layer address.
pub const STACK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The address the shim answers ARP requests with (packetdrill's side of the link).
pub const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

const ETH_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;

/// What the stack sent, seen from the wire.
#[derive(Debug, PartialEq, Eq)]
pub enum Outbound {
    /// An IPv4 packet (trimmed to its total length), for packetdrill.
    Ip(Vec<u8>),
    /// The frame answering an ARP request, to inject back into the stack.
    ArpReply(Vec<u8>),
    /// Anything else (ARP replies, other ethertypes): dropped.
    Ignored,
}

/// The Ethernet frame carrying IP packet `ip` to the stack (`None` unless IPv4).
pub fn wrap_ip(ip: &[u8]) -> Option<Vec<u8>> {
    if ip.first().map(|b| b >> 4) != Some(4) {
        return None;
    }
    let mut f = Vec::with_capacity(ETH_LEN + ip.len());
    f.extend_from_slice(&STACK_MAC);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    f.extend_from_slice(ip);
    Some(f)
}

/// Classifies a frame the stack sent.
pub fn classify(frame: &[u8]) -> Outbound {
    if frame.len() < ETH_LEN {
        return Outbound::Ignored;
    }
    let payload = &frame[ETH_LEN..];
    match u16::from_be_bytes([frame[12], frame[13]]) {
        ETHERTYPE_IPV4 if payload.len() >= 20 => {
            let total = u16::from_be_bytes([payload[2], payload[3]]) as usize;
            let n = if (20..=payload.len()).contains(&total) {
                total
            } else {
                payload.len()
            };
            Outbound::Ip(payload[..n].to_vec())
        }
        ETHERTYPE_ARP => arp_reply(payload).map_or(Outbound::Ignored, Outbound::ArpReply),
        _ => Outbound::Ignored,
    }
}

/// The reply (a whole frame) to an Ethernet/IPv4 ARP request: whatever address the
/// stack asks for is [`PEER_MAC`].
fn arp_reply(arp: &[u8]) -> Option<Vec<u8>> {
    // htype 1, ptype 0x0800, hlen 6, plen 4, op 1 (request).
    if arp.len() < 28 || arp[..6] != [0, 1, 8, 0, 6, 4] || arp[6..8] != [0, 1] {
        return None;
    }
    let (sha, spa, tpa) = (&arp[8..14], &arp[14..18], &arp[24..28]);
    let mut f = Vec::with_capacity(ETH_LEN + 28);
    f.extend_from_slice(sha);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(tpa);
    f.extend_from_slice(sha);
    f.extend_from_slice(spa);
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_is_wrapped_and_unwrapped() {
        let mut ip = vec![0x45, 0, 0, 20];
        ip.resize(20, 0);
        let f = wrap_ip(&ip).expect("ipv4");
        assert_eq!(&f[..6], &STACK_MAC);
        assert_eq!(&f[12..14], &[8, 0]);
        // Padding after the IP total length is not part of the packet.
        let mut padded = f.clone();
        padded.resize(60, 0);
        assert_eq!(classify(&padded), Outbound::Ip(ip));
        assert_eq!(wrap_ip(&[0x60, 0, 0, 0]), None, "IPv6 is not wrapped");
    }

    #[test]
    fn arp_requests_are_answered_with_the_peer_mac() {
        let mut req = Vec::new();
        req.extend_from_slice(&[0xff; 6]);
        req.extend_from_slice(&STACK_MAC);
        req.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 1]);
        req.extend_from_slice(&STACK_MAC);
        req.extend_from_slice(&[192, 168, 0, 1]);
        req.extend_from_slice(&[0; 6]);
        req.extend_from_slice(&[192, 0, 2, 1]);
        let Outbound::ArpReply(r) = classify(&req) else {
            panic!("no reply")
        };
        assert_eq!(&r[..6], &STACK_MAC);
        assert_eq!(&r[20..22], &[0, 2], "op reply");
        assert_eq!(&r[22..28], &PEER_MAC);
        assert_eq!(&r[28..32], &[192, 0, 2, 1]);
        assert_eq!(&r[38..42], &[192, 168, 0, 1]);
        // A reply is not answered.
        assert_eq!(classify(&r), Outbound::Ignored);
    }
}
