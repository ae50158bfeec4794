//! CVE-2019-11478 on a whole simulated stack: a receiver that SACKs 1-byte blocks with
//! 1-byte gaps. The sender's scoreboard stops at `sack_max_holes`, the extra blocks are
//! counted and ignored, and once the receiver behaves the transfer completes and the
//! connection closes.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use smoltcp::wire::EthernetAddress;

use crate::sim::{host_addr, SimStack, SimStackConfig};
use crate::socket::{TcpListener, TcpStream};
use crate::tcp::segment::{ChecksumMode, SegmentOut, TcpFlags, TcpOptions};
use crate::tcp::seq::Seq;

const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 9];
const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 9);
const SPORT: u16 = 40000;
const TOTAL: usize = 64 * 1024;

/// An Ethernet/IPv4 frame from the peer to host 0 carrying the TCP segment `hdr`.
fn frame(hdr: SegmentOut) -> Vec<u8> {
    let mut tcp = vec![0u8; hdr.header_len()];
    hdr.emit(PEER_IP, host_addr(0), &mut tcp, ChecksumMode::Full);
    let mut f = vec![0u8; 34];
    f[..6].copy_from_slice(&OUR_MAC);
    f[6..12].copy_from_slice(&PEER_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(20 + tcp.len() as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&PEER_IP.octets());
    ip[16..20].copy_from_slice(&host_addr(0).octets());
    let c = crate::checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&tcp);
    f
}

/// The peer's segment to port 80: `seq`, `ack`, `flags`, window 65535, `options`.
fn seg(seq: u32, ack: u32, flags: TcpFlags, options: TcpOptions) -> Vec<u8> {
    frame(SegmentOut {
        src_port: SPORT,
        dst_port: 80,
        seq: Seq(seq),
        ack: Seq(ack),
        flags,
        window: 65535,
        options,
    })
}

/// A TCP segment the stack sent: (seq, flags, payload length).
fn sent_tcp(f: &[u8]) -> Option<(u32, u8, usize)> {
    if f.len() < 54 || f[12..14] != [0x08, 0x00] || f[23] != 6 {
        return None;
    }
    let total = u16::from_be_bytes([f[16], f[17]]) as usize;
    let hl = (f[46] >> 4) as usize * 4;
    let seq = u32::from_be_bytes([f[38], f[39], f[40], f[41]]);
    Some((seq, f[47], total.saturating_sub(20 + hl)))
}

/// The stack on host 0 with a listener on port 80 that has heard the peer's ARP
/// request, and the stream it accepted from the peer (SACK permitted, no window
/// scaling, no timestamps). Returns the stack's first data sequence number.
fn connected() -> (SimStack, TcpStream, u32) {
    let c = SimStackConfig::new(EthernetAddress(OUR_MAC), host_addr(0), Instant::now());
    let mut s = SimStack::new(c);
    let listener = TcpListener::bind(s.net(), SocketAddrV4::new(host_addr(0), 80)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&PEER_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    arp.extend_from_slice(&PEER_MAC);
    arp.extend_from_slice(&PEER_IP.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&host_addr(0).octets());
    s.inject(0, arp);
    let syn_opts = TcpOptions {
        mss: Some(1460),
        sack_permitted: true,
        ..TcpOptions::default()
    };
    s.inject(0, seg(1000, 0, TcpFlags::SYN, syn_opts));
    s.run_now();
    let sent = s.take_sent();
    let iss = sent
        .iter()
        .filter_map(|f| sent_tcp(f))
        .find(|&(_, fl, _)| fl == 0x12)
        .expect("SYN,ACK")
        .0;
    s.inject(0, seg(1001, iss + 1, TcpFlags::ACK, TcpOptions::default()));
    s.run_now();
    let (stream, _) = listener.accept().expect("accepted");
    (s, stream, iss + 1)
}

#[test]
fn one_byte_sack_blocks_are_capped_and_the_transfer_completes() {
    let (mut s, mut stream, base) = connected();
    let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
    stream.set_nonblocking(true).unwrap();
    assert_eq!(stream.write(&data).unwrap(), TOTAL);
    s.run_now();
    s.take_sent();
    let max_holes = s.tcp.conn_config().sack_max_holes;
    // The hostile phase: every ACK SACKs four 1-byte blocks with 1-byte gaps, never
    // moving the cumulative ACK.
    for k in 0..300u32 {
        let mut o = TcpOptions::default();
        for b in 0..4 {
            let off = base + 2 * (4 * k + b) + 1;
            o.push_sack(Seq(off), Seq(off + 1));
        }
        s.inject(0, seg(1001, base, TcpFlags::ACK, o));
        s.run_now();
        s.take_sent();
        let conn = s.tcp.pcbs.all().pop().expect("the connection");
        let held = conn.lock().tcb.sb().ranges().len();
        assert!(held <= max_holes, "{held} ranges after {k} ACKs");
    }
    let refused = s.counter("tcp.sack_refused_conn_limit");
    assert_eq!(refused, 1200 - max_holes as u64);
    // The receiver behaves from now on: it takes every byte and ACKs cumulatively.
    drop(stream);
    let (got, fin) = receive_all(&mut s, base);
    assert_eq!(got, TOTAL as u32);
    assert!(fin, "the stack closed after the transfer");
}

/// Plays a well-behaved receiver until the stack's FIN (or a time limit): returns how
/// many bytes arrived in order and whether the FIN did.
fn receive_all(s: &mut SimStack, base: u32) -> (u32, bool) {
    let mut held: BTreeMap<u32, usize> = BTreeMap::new();
    let (mut nxt, mut fin_at) = (base, None);
    let deadline = s.now() + Duration::from_secs(600);
    while s.now() < deadline {
        s.run_now();
        let sent = s.take_sent();
        for (seq, flags, len) in sent.iter().filter_map(|f| sent_tcp(f)) {
            if len > 0 {
                held.insert(seq, len);
            }
            if flags & 0x01 != 0 {
                fin_at = Some(seq + len as u32);
            }
        }
        while let Some((&seq, &len)) = held.first_key_value() {
            held.remove(&seq);
            if seq <= nxt {
                nxt = nxt.max(seq + len as u32);
            } else {
                held.insert(seq, len);
                break;
            }
        }
        if fin_at == Some(nxt) {
            s.inject(0, seg(1001, nxt + 1, TcpFlags::ACK, TcpOptions::default()));
            s.run_now();
            return (nxt - base, true);
        }
        if sent.is_empty() {
            match s.next_deadline() {
                Some(t) => s.advance_to(t),
                None => break,
            }
        } else {
            s.inject(0, seg(1001, nxt, TcpFlags::ACK, TcpOptions::default()));
        }
    }
    (nxt - base, false)
}
