//! What must hold after every step: each frame the stack sends is well formed, and its
//! tables and buffers stay within their bounds.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use xstack::sim::{SimStack, MAX_OOO_RANGES};

use crate::frames::{be16, be32, csum, ip_at, pseudo, ACK, ETH, ETH_ARP, ETH_IPV4, RST, SYN};

/// A TCP segment the stack sent, as the fuzzer learns live flows from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentSeg {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub win: u16,
    /// Sequence space used: payload, plus one for SYN and one for FIN.
    pub len: u32,
}

/// Checks one frame the stack at `(mac, ip)` sent; returns its TCP segment if it is one.
pub fn sent_frame(
    f: &[u8],
    mac: [u8; 6],
    ip: Ipv4Addr,
    mtu: usize,
) -> Result<Option<SentSeg>, String> {
    if f.len() < ETH || f.len() > ETH + mtu {
        return Err(format!("frame of {} bytes (MTU {mtu})", f.len()));
    }
    if f[6..12] != mac {
        return Err("source MAC is not ours".into());
    }
    match be16(f, 12) {
        ETH_ARP => arp(&f[ETH..], mac, ip).map(|_| None),
        ETH_IPV4 if f[0] & 1 != 0 => Err("IPv4 to a broadcast or multicast MAC".into()),
        ETH_IPV4 => ipv4(&f[ETH..], ip),
        t => Err(format!("EtherType {t:#06x}")),
    }
}

/// An address no packet of ours may go to: ours, unspecified, loopback, multicast,
/// limited or our subnet's (198.18.0.0/24) directed broadcast.
fn bad_destination(dst: Ipv4Addr, ours: Ipv4Addr) -> bool {
    dst == ours
        || dst.is_unspecified()
        || dst.is_loopback()
        || dst.is_multicast()
        || dst.is_broadcast()
        || dst.octets()[..3] == ours.octets()[..3] && matches!(dst.octets()[3], 0 | 255)
}

fn arp(p: &[u8], mac: [u8; 6], ip: Ipv4Addr) -> Result<(), String> {
    if p.len() < 28 || p[..6] != [0, 1, 0x08, 0x00, 6, 4] {
        return Err("ARP header".into());
    }
    let op = be16(p, 6);
    if op != 1 && op != 2 {
        return Err(format!("ARP op {op}"));
    }
    if p[8..14] != mac || ip_at(p, 14) != ip.octets() {
        return Err("ARP sender is not us".into());
    }
    let tpa = Ipv4Addr::from(ip_at(p, 24));
    if op == 1 && (tpa != ip && bad_destination(tpa, ip)) {
        return Err(format!("ARP request for {tpa}"));
    }
    // A reply to a probe (RFC 5227) goes to the unspecified address.
    if op == 2 && (p[18] & 1 != 0 || !tpa.is_unspecified() && bad_destination(tpa, ip)) {
        return Err(format!(
            "ARP reply to {tpa} at a group MAC or a bad address"
        ));
    }
    Ok(())
}

fn ipv4(p: &[u8], ours: Ipv4Addr) -> Result<Option<SentSeg>, String> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return Err("IPv4 version or length".into());
    }
    let hl = (p[0] & 0x0f) as usize * 4;
    let total = be16(p, 2) as usize;
    if hl < 20 || total < hl || total > p.len() {
        return Err(format!(
            "IPv4 lengths: header {hl}, total {total}, frame {}",
            p.len()
        ));
    }
    if csum(0, &p[..hl]) != 0 {
        return Err("IPv4 header checksum".into());
    }
    if ip_at(p, 12) != ours.octets() {
        return Err(format!("IPv4 source {:?} is not ours", ip_at(p, 12)));
    }
    if p[8] == 0 || be16(p, 6) & 0x3fff != 0 {
        return Err("TTL 0 or a fragment".into());
    }
    if bad_destination(ip_at(p, 16).into(), ours) {
        return Err(format!("IPv4 to {:?}", ip_at(p, 16)));
    }
    let l4 = &p[hl..total];
    match p[9] {
        6 => tcp(l4, ip_at(p, 12), ip_at(p, 16)).map(Some),
        1 if l4.len() >= 8 && csum(0, l4) == 0 => Ok(None),
        1 => Err("ICMP length or checksum".into()),
        pr => Err(format!("IP protocol {pr}")),
    }
}

fn tcp(s: &[u8], src: [u8; 4], dst: [u8; 4]) -> Result<SentSeg, String> {
    if s.len() < 20 {
        return Err("TCP header truncated".into());
    }
    let off = (s[12] >> 4) as usize * 4;
    if off < 20 || off > s.len() {
        return Err(format!("TCP data offset {off}"));
    }
    if csum(pseudo(src, dst, 6, s.len()), s) != 0 {
        return Err("TCP checksum".into());
    }
    options(&s[20..off])?;
    let flags = s[13];
    if flags & SYN != 0 && flags & RST != 0 {
        return Err("SYN and RST together".into());
    }
    if flags & (SYN | RST) != 0 && s.len() > off {
        return Err("data on a SYN or a RST".into());
    }
    if be16(s, 0) == 0 || be16(s, 2) == 0 {
        return Err("TCP port 0".into());
    }
    let len = (s.len() - off) as u32 + (flags & SYN != 0) as u32 + (flags & 1 != 0) as u32;
    Ok(SentSeg {
        src: src.into(),
        dst: dst.into(),
        sport: be16(s, 0),
        dport: be16(s, 2),
        seq: be32(s, 4),
        ack: be32(s, 8),
        flags,
        win: be16(s, 14),
        len,
    })
}

/// Options the stack writes must be well formed: known kinds with their lengths.
fn options(mut o: &[u8]) -> Result<(), String> {
    while let Some(&kind) = o.first() {
        match kind {
            0 => return Ok(()),
            1 => o = &o[1..],
            _ => {
                let len = *o.get(1).ok_or("option without length")? as usize;
                let want = match kind {
                    2 => len == 4,
                    3 => len == 3,
                    4 => len == 2,
                    5 => len >= 10 && (len - 2) % 8 == 0,
                    8 => len == 10,
                    _ => false,
                };
                if !want || len > o.len() {
                    return Err(format!("TCP option kind {kind} length {len}"));
                }
                o = &o[len..];
            }
        }
    }
    Ok(())
}

/// Per-flow facts about what the stack sent that must hold across segments.
#[derive(Default)]
pub struct FlowCheck {
    /// The last acknowledgment number sent on each flow since its last SYN or RST.
    acks: HashMap<(Ipv4Addr, u16, Ipv4Addr, u16), u32>,
}

impl FlowCheck {
    /// The stack's acknowledgment number on a connection never moves backwards
    /// (RCV.NXT only grows) between the segments that start and end it.
    pub fn sent(&mut self, s: &SentSeg) -> Result<(), String> {
        let key = (s.src, s.sport, s.dst, s.dport);
        if s.flags & (SYN | RST) != 0 || s.flags & ACK == 0 {
            match s.flags & (SYN | ACK) == SYN | ACK {
                true => self.acks.insert(key, s.ack),
                false => self.acks.remove(&key),
            };
            return Ok(());
        }
        if let Some(prev) = self.acks.insert(key, s.ack) {
            if (s.ack.wrapping_sub(prev) as i32) < 0 {
                return Err(format!("ACK went back from {prev} to {} on {key:?}", s.ack));
            }
        }
        Ok(())
    }

    /// Forgets the flows `live` says have no connection any more (a new incarnation
    /// whose SYN,ACK never left, held for an unresolved address, starts afresh).
    pub fn retain(&mut self, live: impl Fn(Ipv4Addr, u16, Ipv4Addr, u16) -> bool) {
        self.acks.retain(|k, _| live(k.0, k.1, k.2, k.3));
    }
}

/// Bounds on the stack's state.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Connections in the pcb table.
    pub connections: usize,
    /// ARP cache entries.
    pub arp: usize,
}

/// Checks the stack's tables and buffers against `b`.
pub fn state(s: &SimStack, b: &Bounds) -> Result<(), String> {
    let conns = s.connections().len();
    if conns > b.connections {
        return Err(format!("{conns} connections (bound {})", b.connections));
    }
    let arp = s.arp_entries();
    if arp > b.arp {
        return Err(format!("{arp} ARP entries (bound {})", b.arp));
    }
    for (i, u) in s.buffer_use().iter().enumerate() {
        let ok = u.send_len <= u.send_capacity
            && u.recv_readable <= u.recv_capacity
            && u.recv_allocated <= u.recv_capacity.max(64 * 1024) * 2
            && u.ooo_ranges <= MAX_OOO_RANGES;
        if !ok {
            return Err(format!("connection {i}: buffers out of bounds: {u:?}"));
        }
    }
    for c in ["tcp.rx_misplaced"] {
        if s.counter(c) != 0 {
            return Err(format!("counter {c} = {}", s.counter(c)));
        }
    }
    Ok(())
}
