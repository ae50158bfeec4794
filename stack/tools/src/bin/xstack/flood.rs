//! `xstack syn-flood`: a SYN flood for the attack tests and the bench's "SYN flood" row,
//! from random source addresses and ports in a given block, through a raw socket; and
//! `xstack arp-flood`: ARP requests from random senders, through a packet socket.
//!
//! It refuses any source block or destination outside 198.18.0.0/15 (RFC 2544's
//! benchmarking range): forged traffic stays inside the test's own namespaces.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};

/// RFC 2544's benchmarking block, the only addresses the flood may use.
pub(crate) const BENCH_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 18, 0, 0), 15);

pub(crate) fn inside(addr: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(addr) & mask == u32::from(net) & mask
}

/// Parses `A.B.C.D/NN`, refusing a block not inside 198.18.0.0/15.
pub fn parse_sources(s: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    let (a, l) = s.split_once('/').context("sources: expected A.B.C.D/NN")?;
    let addr: Ipv4Addr = a.parse().context("sources: bad address")?;
    let len: u8 = l.parse().context("sources: bad prefix length")?;
    if !(15..=32).contains(&len) || !inside(addr, BENCH_NET) {
        bail!("sources must be a block inside 198.18.0.0/15 (got {s})");
    }
    Ok((addr, len))
}

/// sendto(2) of `buf` to the socket address `to` (a `sockaddr_in` or `sockaddr_ll`);
/// true when it was sent.
pub(crate) fn send_to<A>(fd: i32, buf: &[u8], to: &A) -> bool {
    let len = std::mem::size_of::<A>() as libc::socklen_t;
    // SAFETY: `buf` is valid for its length and `to` for `len` bytes.
    unsafe {
        libc::sendto(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            0,
            (to as *const A).cast(),
            len,
        ) >= 0
    }
}

/// Closes `fd` and prints the run's JSON line (sent, seconds, rate).
fn finish(fd: i32, sent: u64, start: Instant) {
    // SAFETY: closing a descriptor the caller opened, once.
    unsafe { libc::close(fd) };
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"sent": sent, "seconds": secs, "rate": sent as f64 / secs})
    );
}

/// One SYN (IPv4 header + 20-byte TCP header, checksums filled in).
fn syn_packet(src: SocketAddrV4, dst: SocketAddrV4, seq: u32) -> [u8; 40] {
    let mut p = [0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.ip().octets());
    p[16..20].copy_from_slice(&dst.ip().octets());
    let c = csum(&p[..20], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&src.port().to_be_bytes());
    t[2..4].copy_from_slice(&dst.port().to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let mut pseudo = 0u32;
    for w in src
        .ip()
        .octets()
        .chunks(2)
        .chain(dst.ip().octets().chunks(2))
    {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    pseudo += 6 + 20;
    let c = csum(&p[20..], pseudo);
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

/// The Internet checksum of `data`, starting from the partial sum `sum`.
pub(crate) fn csum(data: &[u8], mut sum: u32) -> u16 {
    for w in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends SYNs to `dst` at `rate` per second for `seconds`, each from a random address
/// in `sources` and a random port; prints one JSON line (sent, seconds, rate reached).
pub fn syn_flood(dst: SocketAddrV4, sources: &str, rate: u64, seconds: f64) -> anyhow::Result<()> {
    let (net, len) = parse_sources(sources)?;
    if !inside(*dst.ip(), BENCH_NET) {
        bail!("destination must be inside 198.18.0.0/15 (got {dst})");
    }
    // SAFETY: a plain socket(2) call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("raw socket (needs CAP_NET_RAW)");
    }
    let host_bits = 32 - u32::from(len);
    let base = u32::from(net) & !(((1u64 << host_bits) - 1) as u32);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5eed);
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(*dst.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    while Instant::now() < end {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        if sent >= due {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let batch = due.min(sent + 256) - sent;
        for _ in 0..batch {
            let host = if host_bits == 0 {
                0
            } else {
                rng.random::<u32>() & (((1u64 << host_bits) - 1) as u32)
            };
            let src = SocketAddrV4::new(Ipv4Addr::from(base | host), rng.random_range(1024..65535));
            let p = syn_packet(src, dst, rng.random());
            sent += u64::from(send_to(fd, &p, &to));
        }
    }
    finish(fd, sent, start);
    Ok(())
}

/// One ARP request (Ethernet frame) from `mac`/`ip` asking for `target`.
fn arp_request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// Sends `count` ARP requests for `target` out of `iface`, each from a random sender
/// address in `sources` (inside 198.18.0.0/15 only) and a random locally administered
/// MAC; prints one JSON line (sent, seconds, rate).
pub fn arp_flood(iface: &str, target: Ipv4Addr, sources: &str, count: u64) -> anyhow::Result<()> {
    let (net, len) = parse_sources(sources)?;
    if !inside(target, BENCH_NET) {
        bail!("target must be inside 198.18.0.0/15 (got {target})");
    }
    let (fd, mut to) = packet_socket(iface, libc::ETH_P_ARP)?;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let host_bits = 32 - u32::from(len);
    let base = u32::from(net) & !(((1u64 << host_bits) - 1) as u32);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0xa9);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < count {
        let host = rng.random::<u32>() & (((1u64 << host_bits) - 1) as u32);
        let mut mac: [u8; 6] = rng.random();
        mac[0] = (mac[0] & 0xfe) | 0x02;
        let f = arp_request(mac, Ipv4Addr::from(base | host), target);
        sent += u64::from(send_to(fd, &f, &to));
    }
    finish(fd, sent, start);
    Ok(())
}

/// The flow to attack, learned from one of its packets leaving `fd`'s interface: the
/// Ethernet header to reuse, the 4-tuple and the sequence and acknowledgment numbers.
struct Observed {
    eth: [u8; 14],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: u32,
}

/// Waits (at most 10 s) for a TCP packet to `dst` on the packet socket `fd`.
fn observe(fd: i32, dst: SocketAddrV4) -> anyhow::Result<Observed> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n < 54 {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let f = &buf[..n as usize];
        let ihl = usize::from(f[14] & 0x0f) * 4;
        if f[12..14] != [0x08, 0x00] || f[23] != 6 || f.len() < 14 + ihl + 20 {
            continue;
        }
        let ip = |at: usize| Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3]);
        let t = &f[14 + ihl..];
        let port = |at: usize| u16::from_be_bytes([t[at], t[at + 1]]);
        let (src, to) = (
            SocketAddrV4::new(ip(26), port(0)),
            SocketAddrV4::new(ip(30), port(2)),
        );
        if to == dst && t[13] & 0x10 != 0 {
            let word = |at: usize| u32::from_be_bytes([t[at], t[at + 1], t[at + 2], t[at + 3]]);
            let mut eth = [0u8; 14];
            eth.copy_from_slice(&f[..14]);
            return Ok(Observed {
                eth,
                src,
                dst,
                seq: word(4),
                ack: word(8),
            });
        }
    }
    bail!("no packet of a connection to {dst} seen in 10 s")
}

/// A forged segment of the observed flow: `flags`, sequence number `seq`, ACK `ack`,
/// `payload` bytes of data, checksums valid.
fn forged(o: &Observed, seq: u32, ack: u32, flags: u8, payload: usize) -> Vec<u8> {
    let mut p = syn_packet(o.src, o.dst, seq).to_vec();
    p[2..4].copy_from_slice(&(40 + payload as u16).to_be_bytes());
    p[10..12].copy_from_slice(&[0, 0]);
    let c = csum(&p[..20], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[28..32].copy_from_slice(&ack.to_be_bytes());
    p[33] = flags;
    p.resize(40 + payload, b'x');
    p[36..38].copy_from_slice(&[0, 0]);
    let mut pseudo = 0u32;
    for w in o
        .src
        .ip()
        .octets()
        .chunks(2)
        .chain(o.dst.ip().octets().chunks(2))
    {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    pseudo += 6 + 20 + payload as u32;
    let c = csum(&p[20..], pseudo);
    p[36..38].copy_from_slice(&c.to_be_bytes());
    let mut frame = o.eth.to_vec();
    frame.extend_from_slice(&p);
    frame
}

/// A packet socket bound to `iface` that sees its frames of `eth_proto` (`ETH_P_ALL`:
/// every frame), and the address to
/// send frames out of it with [`send_to`].
pub(crate) fn packet_socket(
    iface: &str,
    eth_proto: i32,
) -> anyhow::Result<(i32, libc::sockaddr_ll)> {
    let name = std::ffi::CString::new(iface).context("interface name")?;
    // SAFETY: `name` is a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        bail!("no interface {iface}");
    }
    let proto = (eth_proto as u16).to_be();
    // SAFETY: a plain socket(2) call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("packet socket (needs CAP_NET_RAW)");
    }
    // SAFETY: all-zero is a valid sockaddr_ll; the fields that matter are set below.
    let mut at: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    at.sll_family = libc::AF_PACKET as u16;
    at.sll_protocol = proto;
    at.sll_ifindex = ifindex as i32;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `at` is a valid sockaddr_ll of `len` bytes.
    if unsafe { libc::bind(fd, (&at as *const libc::sockaddr_ll).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error()).context("bind the packet socket");
    }
    Ok((fd, at))
}

/// RFC 5961's blind attacks on a live connection to `dst` seen on `iface` (the tests
/// learn its sequence numbers by looking, as an on-path attacker would; a blind one
/// guesses them): `count` segments at `rate` per second, in turn a RST inside the
/// window but not at its left edge, a SYN inside it, and data whose ACK acknowledges
/// nothing ever sent. All stay inside 198.18.0.0/15. Prints one JSON line.
pub fn inject(iface: &str, dst: SocketAddrV4, count: u64, rate: u64) -> anyhow::Result<()> {
    if !inside(*dst.ip(), BENCH_NET) {
        bail!("destination must be inside 198.18.0.0/15 (got {dst})");
    }
    let (fd, at) = packet_socket(iface, libc::ETH_P_ALL)?;
    let o = observe(fd, dst)?;
    if !inside(*o.src.ip(), BENCH_NET) {
        bail!(
            "the observed flow's source {} is outside 198.18.0.0/15",
            o.src
        );
    }
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < count {
        if sent > (start.elapsed().as_secs_f64() * rate as f64) as u64 {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let off = 1000 + (sent as u32 % 16) * 997;
        let f = match sent % 3 {
            0 => forged(&o, o.seq.wrapping_add(off), 0, 0x04, 0),
            1 => forged(&o, o.seq.wrapping_add(off), 0, 0x02, 0),
            _ => forged(
                &o,
                o.seq.wrapping_add(off),
                o.ack.wrapping_add(1 << 30),
                0x18,
                100,
            ),
        };
        sent += u64::from(send_to(fd, &f, &at));
    }
    // SAFETY: closing the descriptor opened above, once.
    unsafe { libc::close(fd) };
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"sent": sent, "seconds": secs, "flow": format!("{} -> {}", o.src, o.dst)})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_outside_the_benchmark_block_are_refused() {
        assert!(parse_sources("198.19.0.0/16").is_ok());
        assert!(parse_sources("198.18.0.0/15").is_ok());
        assert!(parse_sources("10.0.0.0/8").is_err());
        assert!(parse_sources("0.0.0.0/0").is_err());
        assert!(parse_sources("198.18.0.0/14").is_err());
        assert!(parse_sources("198.19.0.1").is_err());
    }

    #[test]
    fn syn_packets_have_valid_checksums() {
        let p = syn_packet(
            "198.19.1.2:1234".parse().unwrap(),
            "198.18.0.1:80".parse().unwrap(),
            7,
        );
        assert_eq!(csum(&p[..20], 0), 0, "IP header");
        let mut pseudo = 0u32;
        for w in [198u8, 19, 1, 2, 198, 18, 0, 1].chunks(2) {
            pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        assert_eq!(csum(&p[20..], pseudo + 6 + 20), 0, "TCP");
        assert_eq!(p[33], 0x02, "SYN");
    }

    #[test]
    fn arp_requests_ask_for_the_target() {
        let f = arp_request(
            [2, 1, 2, 3, 4, 5],
            Ipv4Addr::new(198, 18, 0, 77),
            Ipv4Addr::new(198, 18, 0, 1),
        );
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "request");
        assert_eq!(&f[28..32], &[198, 18, 0, 77]);
        assert_eq!(&f[38..42], &[198, 18, 0, 1]);
    }
}
