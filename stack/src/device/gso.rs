//! Segmentation offload through the kernel (`CSUM_TSO` handed to the device).
//!
//! AF_XDP has no way to ask the kernel to segment a frame: every transmit descriptor is
//! one wire packet, and in copy mode (veth, generic XDP) each costs a socket buffer, a
//! copy and a trip through the driver. A packet socket with `PACKET_VNET_HDR` does take
//! a large TCP frame with a virtio-net header saying "segment this at `gso_size`,
//! finish the checksums" (`VIRTIO_NET_HDR_GSO_TCPV4`): the kernel builds one socket
//! buffer, and a device with TSO (or veth, which passes GSO buffers on whole) carries
//! it as one; a device without it is given the segments the kernel's GSO cuts
//! (`tcp_gso_segment`). [`GsoTx`] is that socket, bound to the stack's interface with
//! protocol 0 (it receives nothing); its frames take `dev_queue_xmit` (the device's
//! qdisc, none on veth), which segments where the device cannot.
//!
//! What the kernel does to each segment, and [`segment`] does the same in software for
//! the simulator's link: the Ethernet, IP and TCP headers are copied; the IP total
//! length and checksum are rewritten and the IP ID advances by one per segment; the TCP
//! sequence number advances by `mss` per segment, FIN and PSH stay only on the last,
//! CWR only on the first, and each TCP checksum is finished (the frame's field holds
//! the pseudo-header sum over the whole frame's TCP length, as for checksum offload).
//!
//! The stack uses it only where the kernel would segment for its own TCP: when the
//! interface has generic segmentation offload on (`ethtool -k IFACE`, GSO), and
//! `--no-offload tso` is not given. A frame the kernel refuses is dropped and counted
//! (`device.tx_gso_refused`; TCP sends it again) and the worker stops using the socket.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use super::xsk::TxError;
#[cfg(any(test, feature = "sim"))]
use crate::checksum;
use crate::stats::Counters;

/// `struct virtio_net_hdr` (without `num_buffers`): what `PACKET_VNET_HDR` prefixes.
const VNET_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;

/// Ethernet + IPv4 header bytes in front of the TCP header (no IP options: the stack
/// writes none).
const L4_START: usize = 14 + 20;

/// The largest frame the device takes: a 65,535-byte IP datagram behind its Ethernet
/// header.
pub const MAX_FRAME: usize = 14 + 65_535;

/// Frames held before [`GsoTx::send`] hands them over itself.
const BATCH: usize = 8;

/// Where a frame's TCP header is and how its payload is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GsoParams {
    /// Bytes of headers (Ethernet + IP + TCP with options) before the payload.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub mss: u16,
}

impl GsoParams {
    /// The wire segments a frame of `len` bytes becomes.
    pub fn segments(&self, len: usize) -> usize {
        len.saturating_sub(self.hdr_len as usize)
            .div_ceil(usize::from(self.mss).max(1))
    }
}

/// One frame waiting in [`GsoTx`]'s arena.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    /// Where it starts in the arena (its virtio-net header first).
    start: usize,
    /// Its length, header included.
    len: usize,
    /// The wire segments it becomes.
    segments: usize,
}

/// A packet socket that sends TCP frames for the kernel to segment.
pub struct GsoTx {
    fd: OwnedFd,
    /// Frames waiting for [`GsoTx::flush`], back to back, each behind its virtio-net
    /// header, in `arena[..used]`. The vector keeps its length (only growing) so a
    /// frame is written over old bytes, not over freshly zeroed ones.
    arena: Vec<u8>,
    used: usize,
    /// The waiting frames, oldest first.
    frames: Vec<Waiting>,
    /// Wire segments the waiting frames become (their sum, kept for `queued`).
    segments: usize,
    /// The worker's counters (`device.tx_gso_refused`).
    counters: Arc<Counters>,
    /// The kernel refused a frame: the path is given up and TSO segments are cut in
    /// software from then on (a kernel or device that takes no virtio-net GSO header
    /// would otherwise drop every large frame).
    refused: bool,
}

impl std::fmt::Debug for GsoTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GsoTx")
            .field("fd", &self.fd.as_raw_fd())
            .field("frames", &self.frames.len())
            .finish()
    }
}

impl GsoTx {
    /// Opens the socket on interface `ifindex`.
    pub fn open(ifindex: u32, counters: Arc<Counters>) -> io::Result<GsoTx> {
        // SAFETY: plain socket(2); the result is checked before it is owned.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        set_int(&fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
        // Not PACKET_QDISC_BYPASS: its direct transmit drops a frame the kernel has to
        // segment itself (a device without TSO: `__dev_direct_xmit` takes no list), where
        // `dev_queue_xmit` cuts it (on veth, with no qdisc, at about the same cost).
        // Room for a batch of 64 KB frames in flight inside the kernel; as root the
        // limit may exceed `wmem_max`. Not fatal: sends then wait for room sooner.
        let _ = set_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 4 << 20);
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = 0; // receive nothing
        sa.sll_ifindex = ifindex as i32;
        // SAFETY: `sa` is a valid sockaddr_ll and the length is its size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(GsoTx {
            fd,
            arena: Vec::new(),
            used: 0,
            frames: Vec::with_capacity(BATCH),
            segments: 0,
            counters,
            refused: false,
        })
    }

    /// Writes a frame of `len` bytes with `fill` and queues it for the kernel to cut into
    /// segments as `params` says. The TCP checksum field must hold the pseudo-header sum
    /// over the whole frame's TCP length.
    pub fn send(
        &mut self,
        len: usize,
        params: GsoParams,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), TxError> {
        if len > MAX_FRAME || params.mss == 0 || (params.hdr_len as usize) >= len {
            return Err(TxError::TooBig);
        }
        if self.frames.len() >= BATCH {
            self.flush();
            if self.frames.len() >= BATCH {
                return Err(TxError::NoRoom);
            }
        }
        let start = self.used;
        let end = start + VNET_HDR_LEN + len;
        if self.arena.len() < end {
            self.arena.resize(end, 0);
        }
        self.arena[start..start + VNET_HDR_LEN].copy_from_slice(&vnet_header(params));
        fill(&mut self.arena[start + VNET_HDR_LEN..end]);
        self.used = end;
        let segments = params.segments(len);
        self.frames.push(Waiting {
            start,
            len: VNET_HDR_LEN + len,
            segments,
        });
        self.segments += segments;
        Ok(())
    }

    /// Hands the waiting frames to the kernel (one `sendmmsg`, its headers on the
    /// stack: no allocation). Frames the kernel has no room for yet stay for the next
    /// call; a frame it refuses is dropped and counted. Returns how many it took.
    pub fn flush(&mut self) -> usize {
        let mut done = 0;
        while done < self.frames.len() {
            let batch = &self.frames[done..];
            // SAFETY: iovec is plain data; all-zero (a null, empty buffer) is valid.
            let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            // SAFETY: mmsghdr is plain data; all-zero is valid (no name, no control).
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            let base = self.arena.as_mut_ptr();
            for (i, w) in batch.iter().enumerate() {
                // `start + len <= used <= arena.len()`, so the range is inside the arena.
                iov[i] = libc::iovec {
                    iov_base: base.wrapping_add(w.start).cast(),
                    iov_len: w.len,
                };
                msgs[i].msg_hdr.msg_iov = &mut iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the first `batch.len()` (<= BATCH) headers each point at one iovec
            // into `arena`, alive and unchanged for the call.
            let n = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    batch.len() as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                done += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // No room in the socket's send buffer yet: the frames wait.
                Some(libc::EAGAIN) => break,
                Some(libc::EINTR) => continue,
                // The first waiting frame is refused: drop it (counted), go on, and
                // send no more this way.
                _ => {
                    Counters::inc(&self.counters.tx_gso_refused);
                    self.refused = true;
                    done += 1;
                }
            }
        }
        if done == self.frames.len() {
            self.frames.clear();
            self.used = 0;
            self.segments = 0;
        } else if done > 0 {
            let keep_from = self.frames[done].start;
            self.arena.copy_within(keep_from..self.used, 0);
            self.used -= keep_from;
            for w in self.frames.drain(..done) {
                self.segments -= w.segments;
            }
            for w in &mut self.frames {
                w.start -= keep_from;
            }
        }
        done
    }

    /// Whether the kernel refused a frame (the caller should stop using this path).
    pub fn refused(&self) -> bool {
        self.refused
    }

    /// Wire segments queued and not yet handed to the kernel.
    pub fn queued(&self) -> usize {
        self.segments
    }
}

/// The virtio-net header asking for TCPv4 segmentation and checksums.
fn vnet_header(p: GsoParams) -> [u8; VNET_HDR_LEN] {
    // struct virtio_net_hdr { u8 flags; u8 gso_type; u16 hdr_len; u16 gso_size;
    //   u16 csum_start; u16 csum_offset; }, little-endian on x86 (native order for a
    //   legacy header without PACKET_VNET_HDR_SZ).
    let mut h = [0u8; VNET_HDR_LEN];
    h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h[1] = VIRTIO_NET_HDR_GSO_TCPV4;
    h[2..4].copy_from_slice(&p.hdr_len.to_ne_bytes());
    h[4..6].copy_from_slice(&p.mss.to_ne_bytes());
    h[6..8].copy_from_slice(&(L4_START as u16).to_ne_bytes());
    h[8..10].copy_from_slice(&16u16.to_ne_bytes());
    h
}

fn set_int(fd: &OwnedFd, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: `v` is a valid int for the duration of the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the kernel segments large frames for its own sockets on `ifname` (generic
/// segmentation offload on: `ethtool -k IFNAME`). The stack follows the same switch.
pub fn kernel_gso_on(ifname: &str) -> io::Result<bool> {
    const ETHTOOL_GGSO: u32 = 0x23;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut v = EthtoolValue {
        cmd: ETHTOOL_GGSO,
        data: 0,
    };
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = ifname.as_bytes();
    if name.len() >= ifr.ifr_name.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut v as *mut EthtoolValue).cast();
    // SAFETY: plain socket(2), closed when `sock` drops.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: SIOCETHTOOL with an ifreq whose data points at a live ethtool_value.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v.data != 0)
}

/// Cuts `frame` (Ethernet + IPv4 + TCP, the TCP checksum field holding the pseudo-header
/// sum over the whole TCP length) into the segments the kernel's GSO would put on the
/// wire. The simulator's link does this for a device with segmentation offload.
///
/// # Panics
/// If the frame is shorter than its headers say.
#[cfg(any(test, feature = "sim"))]
pub fn segment(frame: &[u8], params: GsoParams) -> Vec<Vec<u8>> {
    let hdr_len = params.hdr_len as usize;
    let mss = params.mss as usize;
    let tcp_hlen = hdr_len - L4_START;
    let payload = &frame[hdr_len..];
    let ip_id0 = u16::from_be_bytes([frame[18], frame[19]]);
    let seq0 = u32::from_be_bytes([
        frame[L4_START + 4],
        frame[L4_START + 5],
        frame[L4_START + 6],
        frame[L4_START + 7],
    ]);
    let flags0 = frame[L4_START + 13];
    let n = payload.len().div_ceil(mss).max(1);
    let (src, dst) = (
        [frame[26], frame[27], frame[28], frame[29]],
        [frame[30], frame[31], frame[32], frame[33]],
    );
    (0..n)
        .map(|i| {
            let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
            let mut s = Vec::with_capacity(hdr_len + chunk.len());
            s.extend_from_slice(&frame[..hdr_len]);
            s.extend_from_slice(chunk);
            // IP: total length, ID, header checksum.
            let ip_len = (20 + tcp_hlen + chunk.len()) as u16;
            s[16..18].copy_from_slice(&ip_len.to_be_bytes());
            s[18..20].copy_from_slice(&ip_id0.wrapping_add(i as u16).to_be_bytes());
            s[24..26].copy_from_slice(&[0, 0]);
            let ipc = checksum::checksum(&s[14..34]);
            s[24..26].copy_from_slice(&ipc.to_be_bytes());
            // TCP: sequence number, flags, checksum.
            let seq = seq0.wrapping_add((i * mss) as u32);
            s[L4_START + 4..L4_START + 8].copy_from_slice(&seq.to_be_bytes());
            let mut flags = flags0;
            if i + 1 < n {
                flags &= !(0x01 | 0x08); // FIN, PSH
            }
            if i > 0 {
                flags &= !0x80; // CWR
            }
            s[L4_START + 13] = flags;
            let l4_len = (tcp_hlen + chunk.len()) as u16;
            let pseudo = checksum::fold(checksum::pseudo_header_v4(src, dst, 6, l4_len));
            s[L4_START + 16..L4_START + 18].copy_from_slice(&pseudo.to_be_bytes());
            checksum::finish_partial(&mut s, L4_START, 16);
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + 20-byte TCP frame with `payload` bytes, flags `flags`, the
    /// TCP checksum field holding the pseudo-header sum over the whole TCP length.
    fn frame(payload: usize, flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 54 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
        f[18..20].copy_from_slice(&7u16.to_be_bytes());
        f[20] = 0x40; // DF
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[198, 18, 0, 1]);
        f[30..34].copy_from_slice(&[198, 18, 0, 2]);
        f[34..36].copy_from_slice(&80u16.to_be_bytes());
        f[36..38].copy_from_slice(&40000u16.to_be_bytes());
        f[38..42].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        f[46] = 5 << 4;
        f[47] = flags;
        for (i, b) in f[54..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let pseudo =
            checksum::pseudo_header_v4([198, 18, 0, 1], [198, 18, 0, 2], 6, (20 + payload) as u16);
        f[50..52].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        f
    }

    /// What the kernel's GSO does, segment by segment: lengths, IP IDs counting up,
    /// sequence numbers (wrapping), FIN/PSH on the last only, CWR on the first only,
    /// and every checksum finished.
    #[test]
    fn segments_follow_the_kernels_gso_rules() {
        let flags = 0x80 | 0x10 | 0x08 | 0x01; // CWR ACK PSH FIN
        let f = frame(1000 * 2 + 300, flags);
        let segs = segment(
            &f,
            GsoParams {
                hdr_len: 54,
                mss: 1000,
            },
        );
        assert_eq!(segs.len(), 3);
        let mut payload = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let len = if i < 2 { 1000 } else { 300 };
            assert_eq!(s.len(), 54 + len, "segment {i}");
            assert_eq!(u16::from_be_bytes([s[16], s[17]]) as usize, 40 + len);
            assert_eq!(u16::from_be_bytes([s[18], s[19]]), 7 + i as u16, "IP ID");
            assert!(checksum::verify(&s[14..34]), "IP checksum of {i}");
            let seq = u32::from_be_bytes([s[38], s[39], s[40], s[41]]);
            assert_eq!(seq, 0xffff_fff0u32.wrapping_add(1000 * i as u32));
            let want = match i {
                0 => 0x80 | 0x10,
                1 => 0x10,
                _ => 0x10 | 0x08 | 0x01,
            };
            assert_eq!(s[47], want, "flags of {i}");
            let pseudo =
                checksum::pseudo_header_v4([198, 18, 0, 1], [198, 18, 0, 2], 6, (20 + len) as u16);
            assert_eq!(
                checksum::fold(checksum::add(pseudo, &s[34..])),
                0xffff,
                "TCP {i}"
            );
            payload.extend_from_slice(&s[54..]);
        }
        assert_eq!(payload, f[54..].to_vec(), "the payload, in order");
    }

    /// The virtio-net header asks for TCPv4 segmentation at the MSS and a checksum from
    /// the TCP header's start, the field 16 bytes in.
    #[test]
    fn vnet_header_layout() {
        let h = vnet_header(GsoParams {
            hdr_len: 66,
            mss: 1448,
        });
        assert_eq!(h[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!(h[1], VIRTIO_NET_HDR_GSO_TCPV4);
        assert_eq!(u16::from_ne_bytes([h[2], h[3]]), 66);
        assert_eq!(u16::from_ne_bytes([h[4], h[5]]), 1448);
        assert_eq!(u16::from_ne_bytes([h[6], h[7]]), 34);
        assert_eq!(u16::from_ne_bytes([h[8], h[9]]), 16);
        let p = GsoParams {
            hdr_len: 66,
            mss: 1448,
        };
        assert_eq!(p.segments(66 + 1448 * 2 + 1), 3);
        assert_eq!(p.segments(66 + 1448 * 2), 2);
        assert_eq!(p.segments(66 + 1), 1);
    }

    /// A frame the kernel refuses (its checksum field would lie beyond the frame:
    /// `virtio_net_hdr_to_skb` answers EINVAL before anything is sent) is dropped and
    /// counted, the frames behind it are still tried, and the path is given up. Opens a
    /// packet socket on `lo` (needs CAP_NET_RAW); only refused frames are queued, so
    /// nothing leaves.
    #[test]
    fn a_refused_frame_is_dropped_counted_and_gives_the_path_up() {
        // SAFETY: if_nametoindex reads a NUL-terminated string.
        let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        let counters = Arc::new(Counters::default());
        let mut tx = match GsoTx::open(lo, counters.clone()) {
            Ok(tx) => tx,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                println!("skipping: a packet socket needs CAP_NET_RAW ({e})");
                return;
            }
            Err(e) => panic!("packet socket on lo: {e}"),
        };
        assert!(!tx.refused());
        // 40 bytes: shorter than the checksum field at 34 + 16.
        let bad = GsoParams {
            hdr_len: 39,
            mss: 1,
        };
        for _ in 0..2 {
            tx.send(40, bad, &mut |b| b.copy_from_slice(&frame(0, 0x10)[..40]))
                .unwrap();
        }
        assert_eq!(tx.queued(), 2);
        assert_eq!(tx.flush(), 2, "both taken off the queue");
        assert!(tx.refused());
        assert_eq!(tx.queued(), 0);
        assert_eq!(
            counters
                .tx_gso_refused
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }
}
