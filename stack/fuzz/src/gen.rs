//! Structure-aware frame generation: valid Ethernet/ARP/IPv4/TCP/ICMP built around the
//! flows the fuzzed stack has live (learned from what it sends), then mutated.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

use rand::rngs::StdRng;
use rand::Rng;

use crate::check::SentSeg;
use crate::frames::*;

/// A flow the fuzzed stack has sent on: what it expects next from the other side.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    /// The fuzzed stack's end.
    pub local: SocketAddrV4,
    /// The other end.
    pub remote: SocketAddrV4,
    /// The stack's next sequence number (what an ACK from the peer acknowledges).
    pub snd_nxt: u32,
    /// What the stack acknowledged (the peer's next sequence number).
    pub rcv_nxt: u32,
    /// The window it advertised.
    pub win: u16,
}

/// What the fuzzer knows of the fuzzed stack: its live flows, frames it sent (to quote
/// in ICMP errors) and recent frames it received (to mutate).
#[derive(Default)]
pub struct Knowledge {
    pub flows: VecDeque<Flow>,
    pub sent: VecDeque<Vec<u8>>,
    pub pool: VecDeque<Vec<u8>>,
}

const KEEP: usize = 32;

fn push_bounded<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() >= KEEP {
        q.pop_front();
    }
    q.push_back(v);
}

impl Knowledge {
    /// Learns from a frame the stack sent.
    pub fn learn_sent(&mut self, frame: &[u8], seg: Option<&SentSeg>) {
        if frame.len() >= ETH + 28 && be16(frame, 12) == ETH_IPV4 {
            push_bounded(&mut self.sent, frame.to_vec());
        }
        let Some(s) = seg else { return };
        let local = SocketAddrV4::new(s.src, s.sport);
        let remote = SocketAddrV4::new(s.dst, s.dport);
        let flow = Flow {
            local,
            remote,
            snd_nxt: s.seq.wrapping_add(s.len),
            rcv_nxt: s.ack,
            win: s.win,
        };
        if let Some(f) = self
            .flows
            .iter_mut()
            .find(|f| f.local == local && f.remote == remote)
        {
            *f = flow;
        } else {
            push_bounded(&mut self.flows, flow);
        }
    }

    /// Remembers a frame the stack received, to mutate later.
    pub fn learn_received(&mut self, frame: &[u8]) {
        push_bounded(&mut self.pool, frame.to_vec());
    }
}

/// A sequence number near `base`: at it, just off it, a window away, or anywhere.
pub fn near(rng: &mut StdRng, base: u32, win: u32) -> u32 {
    match rng.random_range(0..10) {
        0..=3 => base,
        4..=5 => base.wrapping_add(rng.random_range(0..3)).wrapping_sub(1),
        6 => base.wrapping_add(rng.random_range(0..win.max(1))),
        7 => base
            .wrapping_add(win)
            .wrapping_add(rng.random_range(0..3))
            .wrapping_sub(1),
        8 => base.wrapping_add(0x8000_0000u32.wrapping_add(rng.random_range(0..3))),
        _ => rng.random(),
    }
}

/// A sometimes-interesting 16-bit value.
fn val16(rng: &mut StdRng) -> u16 {
    *[0, 1, 0x7fff, 0x8000, 0xffff, 536, 1460, 1500, 9000]
        .get(rng.random_range(0..12))
        .unwrap_or(&rng.random())
}

/// TCP options: well-formed ones in random order, sometimes malformed lengths.
pub fn tcp_options(rng: &mut StdRng, flow: Option<&Flow>) -> Vec<u8> {
    let mut o = Vec::new();
    for _ in 0..rng.random_range(0..6) {
        match rng.random_range(0..20) {
            0 | 10 => {
                o.extend_from_slice(&[2, 4]);
                o.extend_from_slice(&val16(rng).to_be_bytes());
            }
            1 | 11 => o.extend_from_slice(&[3, 3, rng.random_range(0..20)]),
            2 | 12 => o.extend_from_slice(&[4, 2]),
            3 | 13 | 14 => sack(rng, &mut o, flow),
            4 | 15 | 16 => {
                o.extend_from_slice(&[8, 10]);
                o.extend_from_slice(&rng.random::<[u8; 8]>());
            }
            5 | 17 => o.push(1),
            6 => o.push(0),
            // A known kind with a wrong length, or an unknown kind.
            7 => o.extend_from_slice(&[rng.random_range(2..9), rng.random_range(0..4)]),
            8 | 18 => {
                let len = rng.random_range(2..12u8);
                o.extend_from_slice(&[rng.random(), len]);
                o.extend((0..len.saturating_sub(2)).map(|_| rng.random::<u8>()));
            }
            _ => o.extend_from_slice(&[rng.random_range(2..9), rng.random_range(20..255)]),
        }
    }
    o.truncate(40);
    o
}

fn sack(rng: &mut StdRng, o: &mut Vec<u8>, flow: Option<&Flow>) {
    let n = rng.random_range(1..5u8);
    let len = if rng.random_bool(0.8) {
        2 + 8 * n
    } else {
        rng.random_range(2..40)
    };
    o.extend_from_slice(&[5, len]);
    let base = flow.map_or(rng.random(), |f| f.snd_nxt);
    for _ in 0..n {
        let back = rng.random_range(0..20_000);
        let left = near(rng, base.wrapping_sub(back), 3000);
        let right = left
            .wrapping_add(rng.random_range(0..4000))
            .wrapping_sub(100);
        o.extend_from_slice(&left.to_be_bytes());
        o.extend_from_slice(&right.to_be_bytes());
    }
}

fn flags(rng: &mut StdRng) -> u8 {
    const COMMON: [u8; 9] = [
        ACK,
        ACK | PSH,
        ACK,
        FIN | ACK,
        RST,
        RST | ACK,
        SYN,
        SYN | ACK,
        FIN | PSH | ACK,
    ];
    if rng.random_bool(0.9) {
        COMMON[rng.random_range(0..COMMON.len())] | (rng.random_bool(0.05) as u8 * 0x20)
    } else {
        rng.random()
    }
}

fn payload(rng: &mut StdRng) -> Vec<u8> {
    let n = match rng.random_range(0..10) {
        0..=4 => 0,
        5..=7 => rng.random_range(1..100),
        8 => rng.random_range(100..1460),
        _ => rng.random_range(1400..1600),
    };
    vec![rng.random(); n]
}

/// A segment on a live flow, its numbers near the flow's window.
pub fn tcp_on_flow(rng: &mut StdRng, f: &Flow) -> Vec<u8> {
    let h = TcpHdr {
        sport: f.remote.port(),
        dport: f.local.port(),
        seq: near(rng, f.rcv_nxt, f.win as u32),
        ack: near(rng, f.snd_nxt, 65535),
        flags: flags(rng),
        win: if rng.random_bool(0.7) {
            65535
        } else {
            val16(rng)
        },
        urg: if rng.random_bool(0.05) {
            rng.random()
        } else {
            0
        },
        options: if rng.random_bool(0.5) {
            tcp_options(rng, Some(f))
        } else {
            Vec::new()
        },
    };
    let seg = tcp(*f.remote.ip(), *f.local.ip(), &h, &payload(rng));
    let mut ip = IpHdr::new(*f.remote.ip(), *f.local.ip(), 6);
    ip.tos = if rng.random_bool(0.1) {
        rng.random()
    } else {
        0
    };
    ether(
        TARGET_MAC,
        src_mac(rng, *f.remote.ip()),
        ETH_IPV4,
        &ipv4(&ip, &ip_options(rng), &seg),
    )
}

/// IPv4 options, now and then: router alert, record route, timestamps, NOPs, garbage.
fn ip_options(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..20) {
        0 => vec![0x94, 4, 0, 0],
        1 => vec![7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0],
        2 => vec![0x44, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        3 => vec![1, 1, 1, 0],
        4 => (0..rng.random_range(1..40)).map(|_| rng.random()).collect(),
        _ => Vec::new(),
    }
}

/// A timestamps option (RFC 7323) with a random echo: RTT samples from nonsense.
fn ts_option(rng: &mut StdRng, tsval: u32) -> Vec<u8> {
    let mut o = vec![1, 1, 8, 10];
    o.extend_from_slice(&tsval.to_be_bytes());
    o.extend_from_slice(&rng.random::<u32>().to_be_bytes());
    o
}

/// A train of in-order segments on one live flow, arriving together (what LRO merges),
/// padded as short Ethernet frames are, one of them sometimes mutated.
pub fn train(rng: &mut StdRng, k: &Knowledge) -> Vec<Vec<u8>> {
    if k.flows.is_empty() {
        return vec![garbage(rng)];
    }
    let f = k.flows[rng.random_range(0..k.flows.len())];
    let n = rng.random_range(2..9);
    let mut seq = near(rng, f.rcv_nxt, f.win as u32);
    let ack = near(rng, f.snd_nxt, 65535);
    let tsval: u32 = rng.random();
    let with_ts = rng.random_bool(0.5);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let len = [0, 1, 100, 536, 1448, rng.random_range(0..1460)][rng.random_range(0..6)];
        let last = i == n - 1;
        let flags = match rng.random_range(0..10) {
            0 if last => ACK | FIN,
            1 | 2 if last => ACK | PSH,
            3 => ACK | PSH,
            _ => ACK,
        };
        let tsv = tsval.wrapping_add(i as u32 / 2);
        let h = TcpHdr {
            sport: f.remote.port(),
            dport: f.local.port(),
            seq,
            ack,
            flags,
            win: 65535,
            urg: 0,
            options: if with_ts {
                ts_option(rng, tsv)
            } else {
                Vec::new()
            },
        };
        let seg = tcp(*f.remote.ip(), *f.local.ip(), &h, &vec![0x61; len]);
        let ip = IpHdr::new(*f.remote.ip(), *f.local.ip(), 6);
        let mut frame = ether(TARGET_MAC, PEER_MAC, ETH_IPV4, &ipv4(&ip, &[], &seg));
        pad(&mut frame);
        out.push(frame);
        seq = seq.wrapping_add(len as u32);
    }
    if rng.random_bool(0.3) {
        let i = rng.random_range(0..n);
        mutate(rng, &mut out[i]);
    }
    out
}

/// Pads a frame to Ethernet's 60-byte minimum, as a NIC does (the IPv4 total length,
/// not the frame's, says where the packet ends).
pub fn pad(f: &mut Vec<u8>) {
    if f.len() < 60 {
        f.resize(60, 0);
    }
}

/// A random host on the target's subnet (or the peer).
fn some_host(rng: &mut StdRng) -> Ipv4Addr {
    if rng.random_bool(0.5) {
        PEER_IP
    } else {
        Ipv4Addr::new(198, 18, 0, rng.random_range(2..255))
    }
}

fn src_mac(rng: &mut StdRng, ip: Ipv4Addr) -> [u8; 6] {
    if ip == PEER_IP || rng.random_bool(0.9) {
        PEER_MAC
    } else {
        [0x02, 0, 0, 0, 0x10, ip.octets()[3]]
    }
}

/// A segment to a listener or a closed port, from a host that may not exist.
pub fn tcp_new(rng: &mut StdRng) -> Vec<u8> {
    let src = some_host(rng);
    let h = TcpHdr {
        sport: rng.random_range(1024..1100),
        dport: [80, 81, 82, rng.random()][rng.random_range(0..4)],
        seq: rng.random(),
        ack: if rng.random_bool(0.5) {
            0
        } else {
            rng.random()
        },
        flags: if rng.random_bool(0.7) {
            SYN | [0, 0, 0xc0][rng.random_range(0..3)]
        } else {
            flags(rng)
        },
        win: val16(rng),
        urg: 0,
        options: tcp_options(rng, None),
    };
    let data = if rng.random_bool(0.3) {
        payload(rng)
    } else {
        Vec::new()
    };
    let seg = tcp(src, TARGET_IP, &h, &data);
    ether(
        TARGET_MAC,
        src_mac(rng, src),
        ETH_IPV4,
        &ipv4(&IpHdr::new(src, TARGET_IP, 6), &[], &seg),
    )
}

/// An ARP request or reply, sometimes for or from an address it should not be.
pub fn arp_frame(rng: &mut StdRng) -> Vec<u8> {
    let spa = match rng.random_range(0..6) {
        0 => TARGET_IP,
        1 => Ipv4Addr::BROADCAST,
        2 => Ipv4Addr::UNSPECIFIED,
        3 => Ipv4Addr::new(10, 1, 2, 3),
        _ => some_host(rng),
    };
    let tpa = if rng.random_bool(0.8) {
        TARGET_IP
    } else {
        some_host(rng)
    };
    let op = [1, 2, 1, 2, 3, rng.random()][rng.random_range(0..6)];
    let sha = src_mac(rng, spa);
    let mut p = arp(op, sha, spa, [0; 6], tpa);
    if rng.random_bool(0.1) {
        let i = rng.random_range(0..6);
        p[i] = rng.random();
    }
    let dst = if rng.random_bool(0.5) {
        [0xff; 6]
    } else {
        TARGET_MAC
    };
    ether(dst, sha, ETH_ARP, &p)
}

/// A burst of ARP requests for us from senders anywhere (on our subnet or not): the ARP
/// cache must stay bounded.
pub fn arp_flood(rng: &mut StdRng) -> Vec<Vec<u8>> {
    (0..rng.random_range(16..96))
        .map(|_| {
            let spa = if rng.random_bool(0.5) {
                Ipv4Addr::from(rng.random::<u32>())
            } else {
                Ipv4Addr::new(198, 18, 0, rng.random())
            };
            let sha = [
                0x02,
                0x33,
                rng.random(),
                rng.random(),
                rng.random(),
                rng.random(),
            ];
            let mut f = ether(
                [0xff; 6],
                sha,
                ETH_ARP,
                &arp(1, sha, spa, [0; 6], TARGET_IP),
            );
            pad(&mut f);
            f
        })
        .collect()
}

/// ICMP: echo requests, errors quoting one of our frames (a live flow's segment, the
/// sequence number nudged), or any type.
pub fn icmp_frame(rng: &mut StdRng, k: &Knowledge) -> Vec<u8> {
    let router = Ipv4Addr::new(198, 18, 0, 254);
    let quoted = if k.sent.is_empty() {
        Vec::new()
    } else {
        let f = &k.sent[rng.random_range(0..k.sent.len())];
        let mut q = f[ETH..].to_vec();
        q.truncate([28, 28, 48, 8, rng.random_range(0..q.len())][rng.random_range(0..5)]);
        if q.len() >= 28 && rng.random_bool(0.5) {
            let seq = be32(&q, 24)
                .wrapping_add(rng.random_range(0..3))
                .wrapping_sub(1);
            q[24..28].copy_from_slice(&seq.to_be_bytes());
        }
        q
    };
    let (ty, code, rest, body): (u8, u8, [u8; 4], Vec<u8>) = match rng.random_range(0..8) {
        0 | 1 => (
            8,
            0,
            rng.random(),
            vec![rng.random(); rng.random_range(0..1500)],
        ),
        2 | 3 => {
            let mtu =
                [0, 68, 296, 576, 1280, 1400, 1500, 9000, rng.random()][rng.random_range(0..9)];
            let mut r = [0; 4];
            r[2..].copy_from_slice(&u16::to_be_bytes(mtu));
            (3, 4, r, quoted)
        }
        4 => (3, rng.random_range(0..16), [0; 4], quoted),
        5 => (11, rng.random_range(0..2), [0; 4], quoted),
        6 => (rng.random_range(0..20), rng.random(), rng.random(), quoted),
        _ => (0, 0, rng.random(), vec![0; rng.random_range(0..64)]),
    };
    let src = if rng.random_bool(0.5) {
        router
    } else {
        some_host(rng)
    };
    let m = icmp(ty, code, rest, &body);
    ip_frame(&IpHdr::new(src, TARGET_IP, 1), &[], &m)
}

/// An IPv4 fragment of a TCP segment or ICMP message.
pub fn fragment(rng: &mut StdRng, k: &Knowledge) -> Vec<u8> {
    let mut f = if rng.random_bool(0.5) && !k.flows.is_empty() {
        let i = rng.random_range(0..k.flows.len());
        tcp_on_flow(rng, &k.flows[i])
    } else {
        icmp_frame(rng, k)
    };
    let frag: u16 = match rng.random_range(0..3) {
        0 => 0x2000,
        1 => 0x2000 | rng.random_range(1..0x1fff),
        _ => rng.random_range(1..0x1fff),
    };
    f[ETH + 6..ETH + 8].copy_from_slice(&frag.to_be_bytes());
    fix_checksums(&mut f);
    f
}

/// Random bytes, sometimes behind a valid Ethernet header.
pub fn garbage(rng: &mut StdRng) -> Vec<u8> {
    let n = rng.random_range(0..1600);
    let mut f: Vec<u8> = (0..n).map(|_| rng.random()).collect();
    if n >= ETH && rng.random_bool(0.7) {
        f[..6].copy_from_slice(&TARGET_MAC);
        let et = [ETH_IPV4, ETH_ARP, 0x8100, 0x88a8, 0x86dd, rng.random()][rng.random_range(0..6)];
        f[12..14].copy_from_slice(&et.to_be_bytes());
    }
    f
}

/// Mutates a frame, knowing where its headers are.
pub fn mutate(rng: &mut StdRng, f: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..4) {
        mutate_once(rng, f);
    }
    if rng.random_bool(0.6) {
        fix_checksums(f);
    }
}

fn mutate_once(rng: &mut StdRng, f: &mut Vec<u8>) {
    let ip = f.len() >= ETH + 20 && be16(f, 12) == ETH_IPV4;
    let l4 = if ip {
        ETH + ((f[ETH] & 0x0f) as usize * 4).max(20)
    } else {
        f.len()
    };
    let set = |f: &mut Vec<u8>, at: usize, v: u8| {
        if let Some(b) = f.get_mut(at) {
            *b = v;
        }
    };
    match rng.random_range(0..12) {
        0 if !f.is_empty() => {
            let i = rng.random_range(0..f.len());
            f[i] ^= 1 << rng.random_range(0..8);
        }
        1 => f.truncate(rng.random_range(0..f.len().max(1))),
        2 => f.extend((0..rng.random_range(1..64)).map(|_| rng.random::<u8>())),
        // A VLAN tag (or QinQ) in front of the EtherType.
        3 if f.len() >= 12 => {
            let tpid: u16 = if rng.random_bool(0.5) { 0x8100 } else { 0x88a8 };
            let tag = [tpid.to_be_bytes(), rng.random::<u16>().to_be_bytes()].concat();
            f.splice(12..12, tag);
        }
        4 => set(f, ETH, rng.random()), // version / IHL
        5 => {
            // total length
            let v = val16(rng).to_be_bytes();
            set(f, ETH + 2, v[0]);
            set(f, ETH + 3, v[1]);
        }
        6 => set(f, ETH + 9, [1, 6, 17, rng.random()][rng.random_range(0..4)]),
        7 => set(f, ETH + 8, rng.random_range(0..3)), // TTL
        8 => set(f, l4 + 12, rng.random()),           // TCP data offset
        9 => set(f, l4 + 13, rng.random()),           // TCP flags
        10 => {
            // an address
            let at = ETH + [12, 16][rng.random_range(0..2)] + rng.random_range(0..4);
            set(
                f,
                at,
                [0, 255, 224, 127, rng.random()][rng.random_range(0..5)],
            );
        }
        _ if !f.is_empty() => {
            let i = rng.random_range(0..f.len());
            f[i] = [0, 0xff, 0x7f, 0x80, rng.random()][rng.random_range(0..5)];
        }
        _ => {}
    }
}

/// One fuzzed frame.
pub fn frame(rng: &mut StdRng, k: &Knowledge) -> Vec<u8> {
    let flow = rng.random_range(0..k.flows.len().max(1));
    let mut f = match rng.random_range(0..100) {
        0..=34 if !k.flows.is_empty() => tcp_on_flow(rng, &k.flows[flow]),
        0..=49 => tcp_new(rng),
        50..=59 => arp_frame(rng),
        60..=71 => icmp_frame(rng, k),
        72..=76 => fragment(rng, k),
        77..=94 if !k.pool.is_empty() => k.pool[rng.random_range(0..k.pool.len())].clone(),
        _ => garbage(rng),
    };
    if rng.random_bool(0.3) {
        mutate(rng, &mut f);
    }
    if rng.random_bool(0.5) {
        pad(&mut f);
    }
    f
}
