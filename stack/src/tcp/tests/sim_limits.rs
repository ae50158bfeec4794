//! Floods on a whole simulated stack, on its virtual clock: SYNs to a closed port, echo
//! requests, out-of-window ACKs and in-window RSTs. What the stack sends back is held
//! to its per-second budgets (`RateLimits`), and everything it holds back is counted.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use smoltcp::wire::EthernetAddress;

use crate::checksum;
use crate::ratelimit::RateLimits;
use crate::sim::{host_addr, SimStack, SimStackConfig};

const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 9];
const PEER_IP: [u8; 4] = [198, 18, 0, 9];

const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// A stack owning host 0, listening on port 80, that has heard the peer's ARP request.
fn stack(limits: RateLimits) -> SimStack {
    let mut c = SimStackConfig::new(EthernetAddress(OUR_MAC), host_addr(0), Instant::now());
    c.rate_limits = limits;
    c.workers = 2;
    let mut s = SimStack::new(c);
    s.tcp
        .pcbs
        .listen(SocketAddrV4::new(host_addr(0), 80), 64)
        .expect("listen");
    s.inject(0, arp_request());
    s.run_now();
    s.take_sent();
    s
}

fn arp_request() -> Vec<u8> {
    let mut f = vec![0xffu8; 6];
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&PEER_IP);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&host_addr(0).octets());
    f
}

/// An Ethernet/IPv4 frame from the peer to host 0 carrying `l4` (protocol `proto`,
/// checksum already in place).
fn ip_frame(proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 34];
    f[..6].copy_from_slice(&OUR_MAC);
    f[6..12].copy_from_slice(&PEER_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(20 + l4.len() as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&PEER_IP);
    ip[16..20].copy_from_slice(&host_addr(0).octets());
    let c = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(l4);
    f
}

/// A TCP segment without options or payload from the peer's `sport` to `dport`.
fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    tcp_data(sport, dport, seq, ack, flags, b"")
}

/// A TCP segment without options from the peer's `sport` to `dport`.
fn tcp_data(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(data);
    let pseudo = checksum::pseudo_header_v4(PEER_IP, host_addr(0).octets(), 6, t.len() as u16);
    let c = !checksum::fold(checksum::add(pseudo, &t));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ip_frame(6, &t)
}

fn echo_request(seq: u16) -> Vec<u8> {
    let mut m = vec![8u8, 0, 0, 0, 0, 1, 0, 0];
    m[6..8].copy_from_slice(&seq.to_be_bytes());
    let c = checksum::checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ip_frame(1, &m)
}

/// TCP flags of a frame the stack sent (0 for anything else).
fn flags_of(f: &[u8]) -> u8 {
    if f.len() >= 54 && f[12..14] == [0x08, 0x00] && f[23] == 6 {
        f[47]
    } else {
        0
    }
}

/// Injects `frame(i)` every `every` for `span` of virtual time (on alternating
/// queues); returns how many frames matching `wanted` came out in each second.
fn flood(
    s: &mut SimStack,
    span: Duration,
    every: Duration,
    mut frame: impl FnMut(u32) -> Vec<u8>,
    wanted: impl Fn(&[u8]) -> bool,
) -> Vec<usize> {
    let t0 = s.now();
    let mut per_second = vec![0; span.as_secs() as usize];
    let mut i = 0;
    while s.now() < t0 + span {
        s.inject(i as usize % 2, frame(i));
        s.run_now();
        let second = (s.now() - t0).as_secs() as usize;
        per_second[second] += s.take_sent().iter().filter(|f| wanted(f)).count();
        i += 1;
        let next = s.now() + every;
        s.advance_to(next);
    }
    per_second
}

/// The budget's shape: a full bucket in the first second, then the rate.
fn assert_rate(per_second: &[usize], rate: usize) {
    assert!(
        (2 * rate - 1..=2 * rate).contains(&per_second[0]),
        "{per_second:?}"
    );
    for &n in &per_second[1..] {
        assert!(n.abs_diff(rate) <= 1, "{per_second:?}");
    }
}

#[test]
fn a_closed_port_syn_flood_gets_rsts_at_the_configured_rate() {
    let limits = RateLimits {
        rst_per_sec: Some(50),
        ..RateLimits::default()
    };
    let mut s = stack(limits);
    // 1,000 SYNs a second to a closed port, from ever-changing source ports.
    let per_second = flood(
        &mut s,
        Duration::from_secs(3),
        Duration::from_millis(1),
        |i| tcp(1024 + (i % 60000) as u16, 81, i, 0, SYN),
        |f| flags_of(f) & RST != 0,
    );
    assert_rate(&per_second, 50);
    let sent: usize = per_second.iter().sum();
    assert_eq!(s.counter("tcp.rst_tx"), sent as u64);
    assert_eq!(s.counter("tcp.rst_suppressed"), 3000 - sent as u64);
    assert_eq!(s.counter("tcp.rx_no_connection"), 3000);
}

#[test]
fn an_echo_flood_gets_replies_at_the_configured_rate() {
    let limits = RateLimits {
        icmp_echo_per_sec: Some(20),
        ..RateLimits::default()
    };
    let mut s = stack(limits);
    let per_second = flood(
        &mut s,
        Duration::from_secs(3),
        Duration::from_millis(2),
        |i| echo_request(i as u16),
        |f| f.len() > 34 && f[23] == 1 && f[34] == 0,
    );
    assert_rate(&per_second, 20);
    let sent: usize = per_second.iter().sum();
    assert_eq!(s.counter("icmp.echo_replies_tx"), sent as u64);
    assert_eq!(
        s.counter("icmp.echo_replies_suppressed"),
        1500 - sent as u64
    );
}

/// Opens a connection from the peer's `sport` to port 80 by hand; returns the
/// stack's next sequence number and the peer's.
fn handshake(s: &mut SimStack, sport: u16) -> (u32, u32) {
    s.inject(0, tcp(sport, 80, 1000, 0, SYN));
    s.run_now();
    let synack = s
        .take_sent()
        .into_iter()
        .find(|f| flags_of(f) == SYN | ACK)
        .expect("SYN,ACK");
    let iss = u32::from_be_bytes([synack[38], synack[39], synack[40], synack[41]]);
    s.inject(0, tcp(sport, 80, 1001, iss + 1, ACK));
    s.run_now();
    assert!(s.take_sent().is_empty());
    (iss + 1, 1001)
}

#[test]
fn out_of_window_acks_are_answered_twice_a_second_per_connection() {
    let mut s = stack(RateLimits::default());
    let (snd, rcv) = handshake(&mut s, 40000);
    // Pure ACKs far beyond the window, 100 a second for 3 s.
    let per_second = flood(
        &mut s,
        Duration::from_secs(3),
        Duration::from_millis(10),
        |_| tcp(40000, 80, rcv.wrapping_add(1 << 30), snd, ACK),
        |f| flags_of(f) == ACK,
    );
    assert_eq!(per_second, vec![2, 2, 2]);
    assert_eq!(s.counter("tcp.acks_suppressed_per_conn"), 300 - 6);
    assert_eq!(s.counter("tcp.acks_suppressed"), 0);
}

#[test]
fn challenge_and_out_of_window_acks_share_a_stack_wide_budget() {
    let limits = RateLimits {
        ack_per_sec: Some(5),
        ..RateLimits::default()
    };
    let mut s = stack(limits);
    let conns: Vec<(u16, u32, u32)> = (0..8)
        .map(|i| {
            let port = 41000 + i;
            let (snd, rcv) = handshake(&mut s, port);
            (port, snd, rcv)
        })
        .collect();
    // Out-of-window ACKs to half of them, in-window RSTs to the other half.
    let per_second = flood(
        &mut s,
        Duration::from_secs(3),
        Duration::from_millis(1),
        |i| {
            let (port, snd, rcv) = conns[i as usize % conns.len()];
            if i % 2 == 0 {
                tcp(port, 80, rcv.wrapping_add(1 << 30), snd, ACK)
            } else {
                // In the window, not at RCV.NXT: a challenge ACK (RFC 5961 §3.2).
                tcp(port, 80, rcv + 100, 0, RST)
            }
        },
        |f| flags_of(f) == ACK,
    );
    // Demand comes in bursts (a connection's 10 challenge ACKs early in each second),
    // so the bucket is not always full: no second gets more than its budget.
    assert!(per_second[0] <= 10 && per_second[1..].iter().all(|&n| n <= 6));
    // Four connections owe 2 out-of-window ACKs a second, four owe 10 challenge ACKs:
    // what the stack-wide budget did not let out is counted.
    let sent: usize = per_second.iter().sum();
    let owed = (4 * 2 + 4 * 10) * 3;
    assert_eq!(s.counter("tcp.acks_suppressed"), (owed - sent) as u64);
    assert!(sent <= 20, "{per_second:?}");
    assert_eq!(s.connections().len(), 8, "no connection was reset");
}

#[test]
fn data_out_of_window_is_always_acknowledged() {
    let limits = RateLimits {
        ack_per_sec: Some(1),
        ..RateLimits::default()
    };
    let mut s = stack(limits);
    let (snd, rcv) = handshake(&mut s, 42000);
    // A retransmission of data already received (its ACK was lost) needs its answer,
    // however often it comes.
    let data = tcp_data(42000, 80, rcv, snd, ACK, b"x");
    s.inject(0, data.clone());
    s.run_now();
    s.take_sent();
    let peer = SocketAddrV4::new(Ipv4Addr::from(PEER_IP), 42000);
    assert!(s.connections().iter().any(|c| c.1 == peer));
    let per_second = flood(
        &mut s,
        Duration::from_secs(2),
        Duration::from_millis(100),
        |_| data.clone(),
        |f| flags_of(f) & ACK != 0,
    );
    assert_eq!(per_second, vec![10, 10]);
    assert_eq!(s.counter("tcp.acks_suppressed"), 0);
}

#[test]
fn a_rst_to_an_unknown_neighbour_makes_no_arp_entry() {
    let mut c = SimStackConfig::new(EthernetAddress(OUR_MAC), host_addr(0), Instant::now());
    c.workers = 1;
    let mut s = SimStack::new(c);
    s.run_now();
    s.take_sent(); // the start-up announcement
                   // No ARP request first: a forged source, or a host with several addresses that
                   // asked for ours from another one.
    s.inject(0, tcp(40000, 81, 1, 0, SYN));
    s.run_now();
    let sent = s.take_sent();
    assert_eq!(sent.len(), 1, "the RST and no ARP request: {sent:?}");
    assert_eq!(flags_of(&sent[0]), RST | ACK);
    assert_eq!(
        &sent[0][..6],
        &PEER_MAC,
        "back to the frame's link-layer source"
    );
    assert_eq!(s.ifp.arp.len(), 0);
    assert_eq!(s.counter("arp.answers_to_link_source"), 1);
}
