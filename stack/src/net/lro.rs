//! Large receive offload in software, after FreeBSD's `tcp_lro`: within one receive
//! batch, consecutive in-order TCP segments of one flow are coalesced into a single
//! packet before IP and TCP input, so the connection lookup, its lock, the netisr
//! dispatch, IP input and the application wakeup happen once per run instead of once
//! per segment.
//!
//! Segments merge only when nothing but the sequence number tells them apart, as
//! Linux's GRO requires: same 4-tuple, next in sequence, flags ACK (PSH allowed on the
//! last one), the same acknowledgment number, window and option bytes (so the same
//! timestamps), and the same payload size (the last may be shorter). Each segment's
//! checksums are verified here; the aggregate carries `CSUM_DATA_VALID` and records
//! how many segments it holds and their size ([`PktMeta::lro_nsegs`],
//! [`PktMeta::tso_segsz`]). TCP input takes it apart again at those boundaries, so the
//! connection sees exactly the segments that arrived and ACKs exactly as it would
//! have without LRO (every second full-sized segment, RFC 5681 §4.2): what is saved is
//! the per-packet work around it, not any of TCP's behaviour.

use crate::checksum;
use crate::mbuf::{CsumFlags, Pkt, PktMeta};
use crate::stats::Counters;

const ETH: usize = 14;
const IP: usize = 20;
/// The largest aggregate: an IPv4 datagram's limit.
const MAX_IP_LEN: usize = 65_535;

/// A TCP segment that may be coalesced: where its parts are.
struct Candidate {
    /// Source/destination address and ports, as on the wire.
    key: [u8; 12],
    seq: u32,
    /// Offset of the payload in the frame (Ethernet header included).
    payload_at: usize,
    payload_len: usize,
    psh: bool,
}

/// Parses `frame` as an IPv4 TCP segment LRO may merge (ACK or ACK|PSH, data, no IP
/// options or fragments) and verifies both checksums; `None` for anything else, which
/// goes through the normal path (and its counters) untouched.
fn candidate(frame: &[u8]) -> Option<Candidate> {
    if frame.len() < ETH + IP + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH..];
    // Version 4, no options; not a fragment (MF clear, offset 0); TCP.
    if ip[0] != 0x45 || ip[6] & 0x3f != 0 || ip[7] != 0 || ip[9] != 6 {
        return None;
    }
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    if total < IP + 20 || total > ip.len() {
        return None;
    }
    let tcp = &ip[IP..total];
    let doff = (tcp[12] >> 4) as usize * 4;
    let flags = tcp[13];
    // ACK, optionally PSH; nothing else (no SYN/FIN/RST/URG, no ECN signals).
    if doff < 20 || doff > tcp.len() || (flags != 0x10 && flags != 0x18) || tcp[12] & 0x0f != 0 {
        return None;
    }
    let payload_len = tcp.len() - doff;
    if payload_len == 0 {
        return None;
    }
    // Checksums last: a pure ACK (most of what a sender receives) is turned away by the
    // checks above without summing anything here, and IP input verifies it once.
    if !checksum::verify(&ip[..IP]) {
        return None;
    }
    let pseudo = checksum::pseudo_header_v4(
        [ip[12], ip[13], ip[14], ip[15]],
        [ip[16], ip[17], ip[18], ip[19]],
        6,
        tcp.len() as u16,
    );
    if checksum::fold(checksum::add(pseudo, tcp)) != 0xffff {
        return None;
    }
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&ip[12..20]);
    key[8..].copy_from_slice(&tcp[..4]);
    Some(Candidate {
        key,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        payload_at: ETH + IP + doff,
        payload_len,
        psh: flags & 0x08 != 0,
    })
}

/// The run being built: its first frame, borrowed from the receive batch until a
/// second segment joins and it is copied into the scratch buffer.
struct Run<'a> {
    first: &'a [u8],
    meta: PktMeta,
    cand: Candidate,
    /// Copied into `buf` (more than one segment).
    merged: bool,
    nsegs: u16,
    next_seq: u32,
    /// The last segment was shorter than the first, or had PSH: nothing may follow.
    closed: bool,
    /// Ethernet + IP + TCP header length.
    hdr_len: usize,
}

/// LRO over one receive batch. Offer each received IPv4 frame with
/// [`LroBatch::offer`]; frames it does not keep must be dispatched by the caller as
/// usual, and [`LroBatch::flush`] dispatches what it holds. Per-flow order is kept:
/// a frame it refuses flushes the run first when it belongs to the same flow.
pub struct LroBatch<'a> {
    buf: &'a mut Vec<u8>,
    run: Option<Run<'a>>,
}

impl<'a> LroBatch<'a> {
    /// An empty batch using `buf` as the aggregate's storage.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        LroBatch { buf, run: None }
    }

    /// Offers one frame. Returns true if LRO kept it (it reaches `dispatch` later, in
    /// an aggregate or alone); false if the caller must dispatch it now, which it may
    /// do only after this call (a run of the same flow was flushed first).
    pub fn offer(
        &mut self,
        frame: &'a [u8],
        meta: PktMeta,
        counters: &Counters,
        dispatch: &mut dyn FnMut(Pkt<'_>),
    ) -> bool {
        let Some(c) = candidate(frame) else {
            // Not mergeable; a segment of the running flow (a FIN, say) must not
            // overtake the data before it.
            if self.run.is_some() {
                self.flush(counters, dispatch);
            }
            return false;
        };
        let mut flush = false;
        if let Some(run) = &mut self.run {
            let hdr = run.hdr_len;
            let agg_len = if run.merged {
                self.buf.len()
            } else {
                ETH + ip_total(run.first)
            };
            let same = run.cand.key == c.key
                && !run.closed
                // TOS (DSCP + ECN: a CE mark must reach TCP on its own segment), TTL,
                // and DF, as Linux's GRO requires.
                && frame[ETH + 1] == run.first[ETH + 1]
                && frame[ETH + 6] == run.first[ETH + 6]
                && frame[ETH + 8] == run.first[ETH + 8]
                && c.seq == run.next_seq
                && c.payload_at == hdr
                && c.payload_len <= run.cand.payload_len
                // ack, flags-less header tail (window), options: identical bytes.
                && frame[ETH + IP + 8..ETH + IP + 12] == run.first[ETH + IP + 8..ETH + IP + 12]
                && frame[ETH + IP + 14..ETH + IP + 16] == run.first[ETH + IP + 14..ETH + IP + 16]
                && frame[ETH + IP + 20..hdr] == run.first[ETH + IP + 20..hdr]
                && agg_len + c.payload_len <= MAX_IP_LEN + ETH;
            if same {
                if !run.merged {
                    self.buf.clear();
                    self.buf
                        .extend_from_slice(&run.first[..ETH + ip_total(run.first)]);
                    run.merged = true;
                }
                self.buf
                    .extend_from_slice(&frame[c.payload_at..c.payload_at + c.payload_len]);
                run.nsegs += 1;
                run.next_seq = c.seq.wrapping_add(c.payload_len as u32);
                if c.psh || c.payload_len < run.cand.payload_len {
                    run.closed = true;
                }
                if c.psh {
                    self.buf[ETH + IP + 13] |= 0x08;
                }
                Counters::inc(&counters.lro_merged);
                return true;
            }
            flush = true;
        }
        if flush {
            self.flush(counters, dispatch);
        }
        self.run = Some(Run {
            first: frame,
            meta,
            next_seq: c.seq.wrapping_add(c.payload_len as u32),
            closed: c.psh,
            hdr_len: c.payload_at,
            cand: c,
            merged: false,
            nsegs: 1,
        });
        true
    }

    /// Dispatches the run being built, if any.
    pub fn flush(&mut self, counters: &Counters, dispatch: &mut dyn FnMut(Pkt<'_>)) {
        let Some(run) = self.run.take() else {
            return;
        };
        // Both checksums were verified segment by segment.
        let mut meta = run.meta;
        meta.csum |= CsumFlags::IP_CHECKED | CsumFlags::IP_VALID | CsumFlags::DATA_VALID;
        if !run.merged {
            dispatch(Pkt {
                data: run.first,
                meta,
            });
            return;
        }
        let ip_len = self.buf.len() - ETH;
        self.buf[ETH + 2..ETH + 4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        self.buf[ETH + 10..ETH + 12].fill(0);
        let c = checksum::checksum(&self.buf[ETH..ETH + IP]);
        self.buf[ETH + 10..ETH + 12].copy_from_slice(&c.to_be_bytes());
        meta.len = self.buf.len() as u32;
        meta.lro_nsegs = run.nsegs;
        meta.tso_segsz = run.cand.payload_len as u16;
        Counters::inc(&counters.lro_aggregates);
        dispatch(Pkt {
            data: &self.buf[..],
            meta,
        });
    }
}

/// The IPv4 total length of a frame `candidate` accepted.
fn ip_total(frame: &[u8]) -> usize {
    u16::from_be_bytes([frame[ETH + 2], frame[ETH + 3]]) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet/IPv4/TCP frame from 198.18.0.2:5000 to 198.18.0.1:80 with valid
    /// checksums and the timestamp option.
    pub(crate) fn seg(seq: u32, ack: u32, flags: u8, tsval: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; ETH + IP + 32];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let total = (IP + 32 + payload.len()) as u16;
        {
            let ip = &mut f[ETH..];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[6] = 0x40;
            ip[8] = 64;
            ip[9] = 6;
            ip[12..16].copy_from_slice(&[198, 18, 0, 2]);
            ip[16..20].copy_from_slice(&[198, 18, 0, 1]);
            let c = checksum::checksum(&ip[..IP]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let t = &mut ip[IP..];
            t[0..2].copy_from_slice(&5000u16.to_be_bytes());
            t[2..4].copy_from_slice(&80u16.to_be_bytes());
            t[4..8].copy_from_slice(&seq.to_be_bytes());
            t[8..12].copy_from_slice(&ack.to_be_bytes());
            t[12] = 8 << 4;
            t[13] = flags;
            t[14..16].copy_from_slice(&1000u16.to_be_bytes());
            t[20..24].copy_from_slice(&[1, 1, 8, 10]);
            t[24..28].copy_from_slice(&tsval.to_be_bytes());
            t[28..32].copy_from_slice(&7u32.to_be_bytes());
        }
        f.extend_from_slice(payload);
        let pseudo = checksum::pseudo_header_v4([198, 18, 0, 2], [198, 18, 0, 1], 6, total - 20);
        let c = !checksum::fold(checksum::add(pseudo, &f[ETH + IP..]));
        f[ETH + IP + 16..ETH + IP + 18].copy_from_slice(&c.to_be_bytes());
        f
    }

    fn run(frames: &[Vec<u8>]) -> (Vec<(Vec<u8>, PktMeta)>, Counters) {
        let counters = Counters::default();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        {
            let mut d = |p: Pkt<'_>| out.push((p.data.to_vec(), p.meta));
            let mut lro = LroBatch::new(&mut buf);
            for f in frames {
                if !lro.offer(f, PktMeta::rx(f.len(), 0), &counters, &mut d) {
                    d(Pkt {
                        data: f,
                        meta: PktMeta::rx(f.len(), 0),
                    });
                }
            }
            lro.flush(&counters, &mut d);
        }
        (out, counters)
    }

    #[test]
    fn consecutive_segments_become_one_valid_aggregate() {
        let data: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        let frames = [
            seg(100, 1, 0x10, 9, &data[..1448]),
            seg(1548, 1, 0x10, 9, &data[1448..2896]),
            seg(2996, 1, 0x18, 9, &data[2896..3500]),
        ];
        let (out, c) = run(&frames);
        assert_eq!(out.len(), 1);
        let (agg, meta) = &out[0];
        assert_eq!(meta.lro_nsegs, 3);
        assert_eq!(meta.tso_segsz, 1448);
        assert!(meta
            .csum
            .contains(CsumFlags::DATA_VALID | CsumFlags::IP_VALID));
        assert!(checksum::verify(&agg[ETH..ETH + IP]), "IP header checksum");
        assert_eq!(&agg[ETH + IP + 32..], &data[..3500]);
        assert_eq!(agg[ETH + IP + 13], 0x18, "PSH of the last segment");
        assert_eq!(c.lro_merged.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[test]
    fn anything_that_differs_starts_a_new_run_in_order() {
        let p = [7u8; 100];
        let frames = [
            seg(0, 1, 0x10, 9, &p),
            seg(100, 2, 0x10, 9, &p),   // new ack: not merged
            seg(200, 2, 0x10, 10, &p),  // new TSval: not merged
            seg(300, 2, 0x10, 10, &p),  // merges with the previous
            seg(500, 2, 0x10, 10, &p),  // a gap: not merged
            seg(600, 2, 0x11, 10, &p),  // FIN: not a candidate, flushes first
            seg(700, 2, 0x10, 10, &[]), // pure ACK: not a candidate
        ];
        let (out, _) = run(&frames);
        let seqs: Vec<(u32, u16)> = out
            .iter()
            .map(|(f, m)| {
                (
                    u32::from_be_bytes([f[38], f[39], f[40], f[41]]),
                    m.lro_nsegs,
                )
            })
            .collect();
        assert_eq!(
            seqs,
            vec![(0, 0), (100, 0), (200, 2), (500, 0), (600, 0), (700, 0)]
        );
    }

    #[test]
    fn a_bad_checksum_is_left_to_the_normal_path() {
        let mut f = seg(0, 1, 0x10, 9, &[1u8; 100]);
        let last = f.len() - 1;
        f[last] ^= 0xff;
        let (out, _) = run(&[f]);
        assert_eq!(out.len(), 1);
        assert!(
            !out[0].1.csum.contains(CsumFlags::DATA_VALID),
            "not vouched for: TCP input verifies (and drops) it"
        );
    }
}
