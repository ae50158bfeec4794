//! The receive buffer: in-order bytes waiting for the application, and out-of-order data
//! held for reassembly.
//!
//! Layout, in stream order: `[readable bytes][window ...)`. The readable bytes are
//! contiguous data up to `rcv_nxt` the application has not read; the window starts at
//! `rcv_nxt` and is what we advertise (`RCV.WND`). Segments that arrive ahead of
//! `rcv_nxt` are stored at their place in the window and remembered as ranges; when the
//! hole before them fills, they become readable in the same write.
//!
//! RFC 9293 §3.10.7.4: "Segments with higher beginning sequence numbers SHOULD be held
//! for later processing." and, for what lies outside the window: "One could tailor
//! actual segments to fit this assumption by trimming off any portions that lie outside
//! the window (including SYN and FIN)": bytes beyond the window are clipped here.
//!
//! All offsets in this API are relative to `rcv_nxt` (0 = the next in-order byte); the
//! TCB trims the part of a segment before `rcv_nxt` (a retransmission overlapping data we
//! already have) before calling [`RecvBuffer::write`].
//!
//! The number of out-of-order ranges is bounded (`TcpConfig::max_ooo_ranges`,
//! [`MAX_OOO_RANGES`] by default): each one costs bookkeeping per write and is a SACK
//! block candidate, and a peer sending every other byte would otherwise make us track
//! thousands. So are the out-of-order bytes held (`TcpConfig::max_ooo_bytes`; the window
//! bounds them too). A write that would create one range too many, or hold more bytes
//! than the bound, is refused (reported by [`RecvBuffer::write`]); the caller counts the
//! drop, and the peer retransmits. Writes that extend, join or duplicate existing ranges
//! without passing the byte bound, and in-order writes, are never refused.
//!
//! Memory: like the send buffer, the ring is allocated lazily and grows by doubling up to
//! the capacity; [`RecvBuffer::shrink_to_fit`] gives it back when the connection idles.

use super::memtrim::Storage;

/// Default bound on the number of out-of-order ranges held.
pub const MAX_OOO_RANGES: usize = 32;

/// Smallest allocation once the first byte arrives.
const MIN_ALLOC: usize = 4096;

/// An out-of-order block, in absolute stream offsets (bytes since the buffer was created),
/// so that it does not move when `rcv_nxt` advances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    start: u64,
    end: u64,
}

/// What one [`RecvBuffer::write`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteResult {
    /// How far `rcv_nxt` advanced: the bytes that became contiguous, this write's and
    /// previously held out-of-order bytes it joined.
    pub advanced: usize,
    /// Bytes of the write that lay inside the window and were stored (duplicates
    /// included); the rest was beyond the window and clipped. 0 when refused.
    pub accepted: usize,
    /// The write was dropped whole, and which bound it would have passed.
    pub refused: Option<OooLimit>,
}

/// The bound on out-of-order data a refused write would have passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OooLimit {
    /// One range more than `max_ranges`.
    Ranges,
    /// More bytes held out of order than `max_bytes`.
    Bytes,
}

/// The receive buffer of one connection.
#[derive(Clone, Debug)]
pub struct RecvBuffer {
    /// The physical ring; its length is the allocated size (0 until data arrives).
    storage: Storage,
    /// Index in `storage` of the first unread byte.
    head: usize,
    /// Contiguous bytes not yet read by the application.
    readable: usize,
    /// The most bytes the buffer may hold, readable plus window (`SO_RCVBUF`).
    capacity: usize,
    /// Absolute stream offset of `rcv_nxt` (how many bytes ever became contiguous).
    nxt: u64,
    /// Out-of-order blocks, disjoint and not adjacent, all starting after `nxt`; the most
    /// recently written first (RFC 2018's order for SACK blocks).
    ooo: Vec<Block>,
    /// Bound on `ooo.len()`.
    max_ranges: usize,
    /// Bound on the bytes in `ooo`.
    max_bytes: usize,
}

impl RecvBuffer {
    /// An empty buffer with `capacity` bytes of window. Allocates nothing.
    pub fn new(capacity: usize) -> Self {
        RecvBuffer {
            storage: Storage::default(),
            head: 0,
            readable: 0,
            capacity,
            nxt: 0,
            ooo: Vec::new(),
            max_ranges: MAX_OOO_RANGES,
            max_bytes: usize::MAX,
        }
    }

    /// The most bytes the buffer may hold (readable + window).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the capacity. Shrinking stops at what is stored (readable bytes plus the
    /// far end of the out-of-order data), so nothing accepted is lost. Note RFC 9293
    /// §3.8.6.2.2 discourages shrinking the window's right edge once advertised; keeping
    /// the advertised edge is the TCB's job.
    pub fn set_capacity(&mut self, n: usize) {
        self.capacity = n.max(self.used());
        if self.storage.len() > self.capacity {
            self.relinearize(self.capacity);
        }
    }

    /// Sets the bounds on out-of-order ranges (default [`MAX_OOO_RANGES`]) and bytes
    /// (default: none but the window). Data already held above lowered bounds is kept;
    /// only writes that would add to it are refused.
    pub fn set_ooo_limits(&mut self, ranges: usize, bytes: usize) {
        self.max_ranges = ranges;
        self.max_bytes = bytes;
    }

    /// In-order bytes the application can read.
    pub fn readable(&self) -> usize {
        self.readable
    }

    /// Free space from `rcv_nxt` on: `capacity - readable`, the window to advertise.
    /// Out-of-order data inside it does not shrink it (it is where that data belongs).
    pub fn window(&self) -> usize {
        self.capacity.saturating_sub(self.readable)
    }

    /// Bytes of memory the ring currently has allocated.
    pub fn allocated(&self) -> usize {
        self.storage.capacity()
    }

    /// Reads up to `dst.len()` in-order bytes; returns how many were copied.
    pub fn read(&mut self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.readable);
        if n == 0 {
            return 0;
        }
        let phys = self.storage.len();
        let first = n.min(phys - self.head);
        dst[..first].copy_from_slice(&self.storage[self.head..self.head + first]);
        dst[first..n].copy_from_slice(&self.storage[..n - first]);
        self.readable -= n;
        self.head = if self.readable == 0 && self.ooo.is_empty() {
            // Restart at 0 so the next segments land contiguously.
            0
        } else {
            (self.head + n) % phys
        };
        n
    }

    /// Stores `data` at `offset` bytes after `rcv_nxt`; returns how far `rcv_nxt`
    /// advances (0 for out-of-order data, and 0 when refused: use [`write`](Self::write)
    /// to tell those apart). See [`write`](Self::write).
    #[cfg(test)]
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> usize {
        self.write(offset, data).advanced
    }

    /// Stores `data` at `offset` bytes after `rcv_nxt` (0 = in order).
    ///
    /// Bytes beyond the window are clipped. Overlapping and duplicate data is fine: the
    /// later copy overwrites bytes that, from a correct peer, are identical (RFC 9293
    /// §3.10.7.4 leaves the choice open for overlapping data). The touched out-of-order
    /// range becomes the most recent one (RFC 2018 §4: "The first SACK block [...] MUST
    /// specify the contiguous block of data containing the segment which triggered this
    /// ACK, unless that segment advanced the Acknowledgment Number field in the header.").
    pub fn write(&mut self, offset: usize, data: &[u8]) -> WriteResult {
        let window = self.window();
        if data.is_empty() || offset >= window {
            return WriteResult::default();
        }
        let n = data.len().min(window - offset);
        let start = self.nxt + offset as u64;
        let end = start + n as u64;
        // Blocks overlapping or adjacent to [start, end) merge with it.
        let touches = |b: &Block| b.start <= end && b.end >= start;
        if offset > 0 {
            if let Some(limit) = self.ooo_refusal(start, end) {
                return WriteResult {
                    refused: Some(limit),
                    ..WriteResult::default()
                };
            }
        }

        let needed = self.readable + offset + n;
        if needed > self.storage.len() {
            let size = needed
                .max(self.storage.len().saturating_mul(2))
                .max(MIN_ALLOC)
                .min(self.capacity);
            self.relinearize(size);
        }
        let phys = self.storage.len();
        let pos = (self.head + self.readable + offset) % phys;
        let first = n.min(phys - pos);
        self.storage[pos..pos + first].copy_from_slice(&data[..first]);
        self.storage[..n - first].copy_from_slice(&data[first..n]);

        let (mut ms, mut me) = (start, end);
        self.ooo.retain(|b| {
            if touches(b) {
                ms = ms.min(b.start);
                me = me.max(b.end);
                false
            } else {
                true
            }
        });
        let advanced = if ms == self.nxt {
            // Every held block starts after `nxt` and does not touch the others, so the
            // merged block is all of what just became contiguous.
            let adv = (me - self.nxt) as usize;
            self.nxt = me;
            self.readable += adv;
            adv
        } else {
            self.ooo.insert(0, Block { start: ms, end: me });
            0
        };
        WriteResult {
            advanced,
            accepted: n,
            refused: None,
        }
    }

    /// The bound an out-of-order write of `[start, end)` (absolute offsets, `start`
    /// after `nxt`) would pass, if any: a new range beyond `max_ranges`, or more held
    /// bytes than `max_bytes` (a write that adds no byte passes neither).
    fn ooo_refusal(&self, start: u64, end: u64) -> Option<OooLimit> {
        let (mut ms, mut me) = (start, end);
        let (mut held, mut touched, mut any) = (0u64, 0u64, false);
        for b in &self.ooo {
            held += b.end - b.start;
            if b.start <= end && b.end >= start {
                any = true;
                touched += b.end - b.start;
                ms = ms.min(b.start);
                me = me.max(b.end);
            }
        }
        if !any && self.ooo.len() >= self.max_ranges {
            return Some(OooLimit::Ranges);
        }
        let after = held - touched + (me - ms);
        (after > held && after > self.max_bytes as u64).then_some(OooLimit::Bytes)
    }

    /// The out-of-order blocks as `(start, end)` offsets relative to `rcv_nxt` (end
    /// exclusive), most recently written first: the order RFC 2018 §4 wants for SACK
    /// blocks ("The SACK option SHOULD be filled out by repeating the most recently
    /// reported SACK blocks").
    pub fn ooo_ranges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let nxt = self.nxt;
        self.ooo
            .iter()
            .map(move |b| ((b.start - nxt) as usize, (b.end - nxt) as usize))
    }

    /// The most recently written out-of-order block (relative to `rcv_nxt`), the first
    /// SACK block.
    #[cfg(test)]
    pub fn last_ooo_range(&self) -> Option<(usize, usize)> {
        self.ooo_ranges().next()
    }

    /// True when out-of-order data is held.
    pub fn has_ooo(&self) -> bool {
        !self.ooo.is_empty()
    }

    /// How many out-of-order blocks are held.
    #[cfg(any(test, feature = "sim"))]
    pub fn ooo_count(&self) -> usize {
        self.ooo.len()
    }

    /// True when nothing is stored: no readable and no out-of-order bytes.
    pub fn is_empty(&self) -> bool {
        self.readable == 0 && self.ooo.is_empty()
    }

    /// Releases allocated memory beyond what the stored bytes need: all of it when
    /// nothing is stored. For idle connections.
    pub fn shrink_to_fit(&mut self) {
        let used = self.used();
        if used == 0 {
            self.storage = Storage::default();
            self.head = 0;
            self.ooo = Vec::new();
        } else if self.storage.len() > used {
            self.relinearize(used);
        }
    }

    /// Bytes of the ring in use from `head`: the readable bytes and out to the end of the
    /// farthest out-of-order block (holes included).
    fn used(&self) -> usize {
        let ooo_end = self.ooo.iter().map(|b| b.end - self.nxt).max().unwrap_or(0);
        self.readable + ooo_end as usize
    }

    /// Moves the used part of the ring to a fresh ring of `size >= used` bytes starting
    /// at index 0.
    fn relinearize(&mut self, size: usize) {
        let used = self.used();
        debug_assert!(size >= used);
        let mut v = Storage::zeroed(size);
        if used > 0 {
            let phys = self.storage.len();
            let first = used.min(phys - self.head);
            v[..first].copy_from_slice(&self.storage[self.head..self.head + first]);
            v[first..used].copy_from_slice(&self.storage[..used - first]);
        }
        self.storage = v;
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(range: std::ops::Range<usize>) -> Vec<u8> {
        range.map(|i| i as u8).collect()
    }

    fn read_all(b: &mut RecvBuffer) -> Vec<u8> {
        let mut out = vec![0u8; b.readable()];
        let n = b.read(&mut out);
        out.truncate(n);
        out
    }

    #[test]
    fn new_allocates_nothing() {
        let b = RecvBuffer::new(256 * 1024);
        assert_eq!(b.allocated(), 0);
        assert_eq!(b.window(), 256 * 1024);
        assert!(!b.has_ooo());
    }

    #[test]
    fn in_order() {
        let mut b = RecvBuffer::new(100);
        assert_eq!(b.write_at(0, &bytes(0..10)), 10);
        assert_eq!(b.readable(), 10);
        assert_eq!(b.window(), 90);
        assert_eq!(b.write_at(0, &bytes(10..15)), 5);
        let mut out = [0u8; 4];
        assert_eq!(b.read(&mut out), 4);
        assert_eq!(out, [0, 1, 2, 3]);
        assert_eq!(b.window(), 89);
        assert_eq!(read_all(&mut b), bytes(4..15));
        assert_eq!(b.read(&mut out), 0);
        assert_eq!(b.allocated(), 100); // capped at the capacity
    }

    #[test]
    fn reorder_joins_held_data() {
        let mut b = RecvBuffer::new(100);
        // Segments 3, 2, then 1 (10 bytes each).
        assert_eq!(b.write_at(20, &bytes(20..30)), 0);
        assert_eq!(b.last_ooo_range(), Some((20, 30)));
        assert_eq!(b.write_at(10, &bytes(10..20)), 0);
        // Adjacent blocks merge into one.
        assert_eq!(b.ooo_ranges().collect::<Vec<_>>(), vec![(10, 30)]);
        assert_eq!(b.readable(), 0);
        assert_eq!(b.window(), 100);
        assert_eq!(b.write_at(0, &bytes(0..10)), 30);
        assert!(!b.has_ooo());
        assert_eq!(read_all(&mut b), bytes(0..30));
    }

    #[test]
    fn ranges_are_relative_to_rcv_nxt_and_most_recent_first() {
        let mut b = RecvBuffer::new(1000);
        b.write_at(100, &[1; 10]);
        b.write_at(300, &[1; 10]);
        b.write_at(200, &[1; 10]);
        assert_eq!(
            b.ooo_ranges().collect::<Vec<_>>(),
            vec![(200, 210), (300, 310), (100, 110)]
        );
        // A duplicate of the oldest block makes it the most recent (RFC 2018 §4).
        b.write_at(102, &[1; 3]);
        assert_eq!(b.last_ooo_range(), Some((100, 110)));
        // rcv_nxt advances by 50: offsets shift.
        assert_eq!(b.write_at(0, &[0; 50]), 50);
        assert_eq!(
            b.ooo_ranges().collect::<Vec<_>>(),
            vec![(50, 60), (150, 160), (250, 260)]
        );
        assert_eq!(b.ooo_count(), 3);
    }

    #[test]
    fn duplicates_and_overlaps() {
        let mut b = RecvBuffer::new(100);
        b.write_at(10, &bytes(10..20));
        b.write_at(15, &bytes(15..25)); // overlaps the end
        b.write_at(5, &bytes(5..12)); // overlaps the start
        b.write_at(12, &bytes(12..14)); // inside
        assert_eq!(b.ooo_ranges().collect::<Vec<_>>(), vec![(5, 25)]);
        b.write_at(30, &bytes(30..35));
        // One write spanning two blocks and the gap between them.
        b.write_at(20, &bytes(20..32));
        assert_eq!(b.ooo_ranges().collect::<Vec<_>>(), vec![(5, 35)]);
        // In-order write overlapping held data advances through all of it.
        assert_eq!(b.write_at(0, &bytes(0..8)), 35);
        assert_eq!(read_all(&mut b), bytes(0..35));
    }

    #[test]
    fn window_clipping() {
        let mut b = RecvBuffer::new(20);
        let r = b.write(15, &bytes(15..30));
        assert_eq!(
            r,
            WriteResult {
                advanced: 0,
                accepted: 5,
                refused: None
            }
        );
        assert_eq!(b.last_ooo_range(), Some((15, 20)));
        assert_eq!(b.write(20, &[1, 2, 3]), WriteResult::default()); // entirely beyond
        assert_eq!(b.write(1000, &[1]), WriteResult::default());
        assert_eq!(b.write_at(0, &bytes(0..40)), 20);
        assert_eq!(b.window(), 0);
        assert_eq!(b.write(0, &[9]), WriteResult::default()); // zero window
        assert_eq!(read_all(&mut b), bytes(0..20));
        assert_eq!(b.write(0, &[]), WriteResult::default());
    }

    #[test]
    fn range_limit_refuses_new_ranges_only() {
        let mut b = RecvBuffer::new(10_000);
        for i in 0..MAX_OOO_RANGES {
            let r = b.write(10 + 20 * i, &[1; 5]);
            assert!(r.refused.is_none(), "{i}");
        }
        assert_eq!(b.ooo_count(), MAX_OOO_RANGES);
        // A new, separate range is refused, whole.
        let r = b.write(5000, &[1; 5]);
        assert_eq!(
            r,
            WriteResult {
                advanced: 0,
                accepted: 0,
                refused: Some(OooLimit::Ranges)
            }
        );
        assert_eq!(b.ooo_count(), MAX_OOO_RANGES);
        assert!(b.ooo_ranges().all(|(s, _)| s != 5000));
        // Extending an existing range is fine...
        assert!(b.write(15, &[1; 3]).refused.is_none());
        // ...and so is joining two (which frees a slot).
        assert!(b.write(15, &[1; 20]).refused.is_none());
        assert_eq!(b.ooo_count(), MAX_OOO_RANGES - 1);
        assert!(b.write(5000, &[1; 5]).refused.is_none());
        // In-order data is never refused.
        assert_eq!(b.write_at(0, &[0; 10]), 35); // joins [10, 35)
        let mut small = RecvBuffer::new(100);
        small.set_ooo_limits(1, usize::MAX);
        assert!(small.write(10, &[1]).refused.is_none());
        assert!(small.write(20, &[1]).refused.is_some());
        assert!(small.write(11, &[1]).refused.is_none()); // adjacent: merges
    }

    #[test]
    fn byte_limit_refuses_writes_that_hold_more() {
        let mut b = RecvBuffer::new(10_000);
        b.set_ooo_limits(MAX_OOO_RANGES, 100);
        assert!(b.write(100, &[1; 60]).refused.is_none());
        assert!(b.write(300, &[1; 40]).refused.is_none());
        // 101 bytes held would pass the bound: refused whole, as a new range or not.
        assert_eq!(b.write(500, &[1]).refused, Some(OooLimit::Bytes));
        assert_eq!(b.write(340, &[1]).refused, Some(OooLimit::Bytes));
        // A duplicate adds nothing and is taken; so is in-order data, which frees room.
        assert!(b.write(110, &[1; 10]).refused.is_none());
        assert_eq!(b.write_at(0, &[0; 100]), 160);
        assert!(b.write(500 - 160, &[1; 60]).refused.is_none());
        assert_eq!(b.ooo_count(), 2);
    }

    #[test]
    fn wraps_around_the_ring() {
        let mut b = RecvBuffer::new(8);
        assert_eq!(b.write_at(0, &bytes(0..6)), 6);
        let mut out = [0u8; 5];
        assert_eq!(b.read(&mut out), 5); // head = 5, one byte left
        assert_eq!(b.window(), 7);
        // Out of order first, wrapping past the end of the ring.
        assert_eq!(b.write_at(3, &bytes(9..13)), 0);
        assert_eq!(b.write_at(0, &bytes(6..9)), 7);
        assert_eq!(b.readable(), 8);
        assert_eq!(b.window(), 0);
        assert_eq!(b.allocated(), 8);
        assert_eq!(read_all(&mut b), bytes(5..13));
    }

    #[test]
    fn grows_while_wrapped_with_ooo_data() {
        let mut b = RecvBuffer::new(100_000);
        b.write_at(0, &vec![0; MIN_ALLOC]);
        let mut sink = vec![0u8; MIN_ALLOC - 10];
        b.read(&mut sink); // head near the end of the 4 KB ring, 10 readable
        b.write_at(20, &bytes(20..40)); // held, wraps
        b.write_at(5000, &[7; 10]); // forces a grow while wrapped
        assert_eq!(b.allocated(), 2 * MIN_ALLOC);
        assert_eq!(b.write_at(0, &bytes(0..20)), 40);
        let got = read_all(&mut b);
        assert_eq!(&got[..10], &[0; 10]);
        assert_eq!(&got[10..], &bytes(0..40)[..]);
        assert_eq!(b.ooo_ranges().collect::<Vec<_>>(), vec![(4960, 4970)]);
    }

    #[test]
    fn capacity_and_shrink() {
        let mut b = RecvBuffer::new(100);
        b.write_at(0, &[1; 10]);
        b.write_at(40, &[2; 10]);
        b.set_capacity(20); // cannot drop stored data: readable 10 + ooo end 50
        assert_eq!(b.capacity(), 60);
        b.shrink_to_fit();
        assert_eq!(b.allocated(), 60);
        assert_eq!(b.write_at(0, &[3; 40]), 50);
        let got = read_all(&mut b);
        assert_eq!(got.len(), 60);
        assert_eq!(&got[50..], &[2; 10]);
        b.shrink_to_fit();
        assert_eq!(b.allocated(), 0);
        b.set_capacity(1000);
        assert_eq!(b.window(), 1000);
        assert_eq!(b.write_at(0, &[5; 3]), 3);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write(usize, Vec<u8>),
        Read(usize),
        SetCapacity(usize),
        Shrink,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0usize..300, proptest::collection::vec(any::<u8>(), 0..60))
                .prop_map(|(o, d)| Op::Write(o, d)),
            2 => (0usize..200).prop_map(Op::Read),
            1 => (0usize..400).prop_map(Op::SetCapacity),
            1 => Just(Op::Shrink),
        ]
    }

    /// The model: every stream byte ever received, by absolute offset.
    struct Model {
        bytes: Vec<Option<u8>>,
        read_pos: usize,
        nxt: usize,
        cap: usize,
    }

    impl Model {
        fn get(&self, i: usize) -> Option<u8> {
            self.bytes.get(i).copied().flatten()
        }
        /// Maximal runs of held bytes after `nxt`, as absolute (start, end).
        fn runs(&self) -> Vec<(usize, usize)> {
            let mut runs = Vec::new();
            let mut i = self.nxt;
            while i < self.bytes.len() {
                if self.get(i).is_some() {
                    let s = i;
                    while self.get(i).is_some() {
                        i += 1;
                    }
                    runs.push((s, i));
                } else {
                    i += 1;
                }
            }
            runs
        }
    }

    proptest! {
        #[test]
        fn matches_model(
            cap in 1usize..300,
            max_ranges in 1usize..6,
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let mut b = RecvBuffer::new(cap);
            b.set_ooo_limits(max_ranges, usize::MAX);
            let mut m = Model { bytes: Vec::new(), read_pos: 0, nxt: 0, cap };
            for op in ops {
                match op {
                    Op::Write(off, d) => {
                        let readable = m.nxt - m.read_pos;
                        let window = m.cap - readable;
                        let n = if off >= window { 0 } else { d.len().min(window - off) };
                        let (s, e) = (m.nxt + off, m.nxt + off + n);
                        let runs = m.runs();
                        let touches = runs.iter().any(|&(rs, re)| rs <= e && re >= s);
                        let refused = n > 0 && off > 0 && !touches && runs.len() >= max_ranges;
                        let r = b.write(off, &d);
                        prop_assert_eq!(r.refused.is_some(), refused);
                        if !refused && n > 0 {
                            if m.bytes.len() < e {
                                m.bytes.resize(e, None);
                            }
                            for (slot, &byte) in m.bytes[s..e].iter_mut().zip(&d) {
                                *slot = Some(byte);
                            }
                        }
                        let old = m.nxt;
                        while m.get(m.nxt).is_some() {
                            m.nxt += 1;
                        }
                        prop_assert_eq!(r.advanced, m.nxt - old);
                        prop_assert_eq!(r.accepted, if refused { 0 } else { n });
                        if n > 0 && !refused && r.advanced == 0 {
                            // RFC 2018 §4: the block holding this write comes first.
                            let (ls, le) = b.last_ooo_range().unwrap();
                            prop_assert!(ls <= off && off + n <= le);
                        }
                    }
                    Op::Read(k) => {
                        let mut out = vec![0u8; k];
                        let got = b.read(&mut out);
                        let want = k.min(m.nxt - m.read_pos);
                        prop_assert_eq!(got, want);
                        for (i, &byte) in out[..got].iter().enumerate() {
                            prop_assert_eq!(Some(byte), m.get(m.read_pos + i));
                        }
                        m.read_pos += got;
                    }
                    Op::SetCapacity(c) => {
                        b.set_capacity(c);
                        let used = m.runs().last().map_or(m.nxt, |r| r.1) - m.read_pos;
                        m.cap = c.max(used);
                    }
                    Op::Shrink => b.shrink_to_fit(),
                }
                prop_assert_eq!(b.capacity(), m.cap);
                prop_assert_eq!(b.readable(), m.nxt - m.read_pos);
                prop_assert_eq!(b.window(), m.cap - (m.nxt - m.read_pos));
                prop_assert!(b.allocated() <= b.capacity());
                let mut got: Vec<(usize, usize)> = b.ooo_ranges().collect();
                got.sort();
                let want: Vec<(usize, usize)> =
                    m.runs().iter().map(|&(s, e)| (s - m.nxt, e - m.nxt)).collect();
                prop_assert_eq!(got, want);
            }
            // Whatever is readable at the end matches the model byte for byte.
            let rest = read_all(&mut b);
            for (i, &byte) in rest.iter().enumerate() {
                prop_assert_eq!(Some(byte), m.get(m.read_pos + i));
            }
        }
    }
}
