//! The send buffer: bytes the application wrote that the peer has not acknowledged yet.
//!
//! Position 0 is the byte at `snd_una`; the bytes from `snd_nxt - snd_una` onward are the
//! ones not sent yet. The TCB copies segments out by offset (first transmissions and
//! retransmissions alike) and drops bytes from the front as ACKs arrive. RFC 9293 §3.10.7.4:
//! "Any segments on the retransmission queue that are thereby entirely acknowledged are
//! removed."
//!
//! Memory: the ring is allocated lazily and grows by doubling up to the configured
//! capacity, so an idle connection that never sent anything holds no buffer at all, and
//! one that sent a little holds a little. [`SendBuffer::shrink_to_fit`] gives memory back
//! (the TCB calls it when everything is acknowledged and the connection has been idle
//! for `TcpConfig::buffer_idle_release`); it is not automatic because freeing on every
//! "all acked" would reallocate a busy connection's buffer once per flight.

use super::memtrim::Storage;

/// Smallest allocation once the first byte is pushed, so a trickle of small writes does
/// not reallocate every time.
const MIN_ALLOC: usize = 4096;

/// A byte ring holding the unacknowledged and unsent data of one connection.
#[derive(Clone, Debug, Default)]
pub struct SendBuffer {
    /// The physical ring; its length is the allocated size (0 until the first push).
    storage: Storage,
    /// Index in `storage` of the byte at `snd_una`.
    head: usize,
    /// Bytes held (unacknowledged + unsent).
    len: usize,
    /// The most the buffer may hold (`SO_SNDBUF`).
    capacity: usize,
}

impl SendBuffer {
    /// An empty buffer that may hold up to `capacity` bytes. Allocates nothing.
    pub fn new(capacity: usize) -> Self {
        SendBuffer {
            storage: Storage::default(),
            head: 0,
            len: 0,
            capacity,
        }
    }

    /// The most bytes the buffer may hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Changes the capacity. Growing is always allowed; shrinking stops at the bytes
    /// currently held (data already accepted from the application is never dropped).
    /// Allocated memory above the new capacity is released.
    pub fn set_capacity(&mut self, n: usize) {
        self.capacity = n.max(self.len);
        if self.storage.len() > self.capacity {
            self.relinearize(self.capacity);
        }
    }

    /// Bytes held: unacknowledged plus not yet sent.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Room left for the application to write.
    pub fn free(&self) -> usize {
        self.capacity - self.len
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of memory the ring currently has allocated (for per-connection accounting).
    pub fn allocated(&self) -> usize {
        self.storage.capacity()
    }

    /// Appends as much of `data` as fits; returns how many bytes were taken.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if n == 0 {
            return 0;
        }
        let needed = self.len + n;
        if needed > self.storage.len() {
            let size = needed
                .max(self.storage.len().saturating_mul(2))
                .max(MIN_ALLOC)
                .min(self.capacity);
            self.relinearize(size);
        }
        let phys = self.storage.len();
        let tail = (self.head + self.len) % phys;
        let first = n.min(phys - tail);
        self.storage[tail..tail + first].copy_from_slice(&data[..first]);
        self.storage[..n - first].copy_from_slice(&data[first..n]);
        self.len += n;
        n
    }

    /// The held bytes from `offset` (bytes after `snd_una`) on, at most `max_len` of them,
    /// as two slices (the second non-empty only when the range wraps around the ring).
    /// Lets the output path copy straight into a transmit frame.
    pub fn slices(&self, offset: usize, max_len: usize) -> (&[u8], &[u8]) {
        if offset >= self.len {
            return (&[], &[]);
        }
        let n = max_len.min(self.len - offset);
        let phys = self.storage.len();
        let start = (self.head + offset) % phys;
        let first = n.min(phys - start);
        (
            &self.storage[start..start + first],
            &self.storage[..n - first],
        )
    }

    /// Copies held bytes starting `offset` bytes after `snd_una` into `dst`, up to
    /// `dst.len()` or the end of the data; returns how many were copied (0 when `offset`
    /// is at or past the end).
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> usize {
        let (a, b) = self.slices(offset, dst.len());
        dst[..a.len()].copy_from_slice(a);
        dst[a.len()..a.len() + b.len()].copy_from_slice(b);
        a.len() + b.len()
    }

    /// Drops `n` acknowledged bytes from the front (`snd_una` advanced by `n`). More than
    /// [`len`](Self::len) is clamped: the TCB never acknowledges unsent data, but a bug
    /// there must not panic here.
    pub fn ack(&mut self, n: usize) {
        let n = n.min(self.len);
        if n == 0 {
            return;
        }
        self.len -= n;
        self.head = if self.len == 0 {
            // Restarting at 0 keeps the next writes contiguous (one memcpy per segment).
            0
        } else {
            (self.head + n) % self.storage.len()
        };
    }

    /// Releases allocated memory beyond what the held bytes need: all of it when the
    /// buffer is empty. For idle connections (see the module doc).
    pub fn shrink_to_fit(&mut self) {
        if self.len == 0 {
            self.storage = Storage::default();
            self.head = 0;
        } else if self.storage.len() > self.len {
            self.relinearize(self.len);
        }
    }

    /// Moves the held bytes to a fresh ring of `size >= len` bytes, starting at index 0.
    fn relinearize(&mut self, size: usize) {
        debug_assert!(size >= self.len);
        let mut v = Storage::zeroed(size);
        let n = self.copy_out(0, &mut v[..self.len]);
        debug_assert_eq!(n, self.len);
        self.storage = v;
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    fn bytes(range: std::ops::Range<usize>) -> Vec<u8> {
        range.map(|i| i as u8).collect()
    }

    #[test]
    fn new_allocates_nothing() {
        // 10,000 idle connections with 256 KB configured must not commit 2.5 GB.
        let bufs: Vec<SendBuffer> = (0..10_000).map(|_| SendBuffer::new(256 * 1024)).collect();
        assert!(bufs.iter().all(|b| b.allocated() == 0));
    }

    #[test]
    fn grows_lazily() {
        let mut b = SendBuffer::new(256 * 1024);
        assert_eq!(b.push(&[1; 100]), 100);
        assert_eq!(b.allocated(), MIN_ALLOC);
        assert_eq!(b.push(&vec![2; 5000]), 5000);
        assert_eq!(b.allocated(), 2 * MIN_ALLOC);
        assert_eq!(b.push(&vec![3; 300_000]), 256 * 1024 - 5100);
        assert_eq!(b.allocated(), 256 * 1024);
        assert_eq!(b.free(), 0);
    }

    #[test]
    fn push_ack_copy_out() {
        let mut b = SendBuffer::new(10);
        assert!(b.is_empty());
        assert_eq!(b.push(&bytes(0..6)), 6);
        assert_eq!(b.len(), 6);
        assert_eq!(b.free(), 4);
        let mut out = [0u8; 4];
        assert_eq!(b.copy_out(2, &mut out), 4);
        assert_eq!(out, [2, 3, 4, 5]);
        assert_eq!(b.copy_out(5, &mut out), 1);
        assert_eq!(out[0], 5);
        assert_eq!(b.copy_out(6, &mut out), 0);
        assert_eq!(b.copy_out(100, &mut out), 0);
        b.ack(4);
        assert_eq!(b.len(), 2);
        assert_eq!(b.copy_out(0, &mut out), 2);
        assert_eq!(&out[..2], &[4, 5]);
    }

    #[test]
    fn wraps_around_the_ring() {
        let mut b = SendBuffer::new(8);
        b.push(&bytes(0..8)); // the allocation is capped at the capacity: 8
        assert_eq!(b.allocated(), 8);
        b.ack(5);
        assert_eq!(b.push(&bytes(8..14)), 5); // only 5 free; the tail wraps to index 0
        assert_eq!(b.allocated(), 8);
        let mut out = [0u8; 8];
        assert_eq!(b.copy_out(0, &mut out), 8);
        assert_eq!(out, [5, 6, 7, 8, 9, 10, 11, 12]);
        let (x, y) = b.slices(1, 100);
        assert_eq!(x, &[6, 7]);
        assert_eq!(y, &[8, 9, 10, 11, 12]);
        assert_eq!(b.copy_out(3, &mut out[..2]), 2);
        assert_eq!(&out[..2], &[8, 9]);
    }

    #[test]
    fn grow_while_wrapped_keeps_order() {
        let mut b = SendBuffer::new(100_000);
        b.push(&vec![0; MIN_ALLOC]);
        b.ack(MIN_ALLOC - 10);
        b.push(&bytes(0..20)); // wraps inside the 4 KB ring
        b.push(&bytes(20..5000)); // forces a grow while wrapped
        let mut out = vec![0u8; 5010];
        assert_eq!(b.copy_out(0, &mut out), 5010);
        assert_eq!(&out[..10], &[0; 10]);
        assert_eq!(&out[10..], &bytes(0..5000)[..]);
    }

    #[test]
    fn ack_clamps_and_empty_restarts() {
        let mut b = SendBuffer::new(16);
        b.ack(3); // nothing held: no panic
        b.push(&[1, 2, 3]);
        b.ack(10);
        assert!(b.is_empty());
        assert_eq!(b.head, 0);
    }

    #[test]
    fn capacity_changes() {
        let mut b = SendBuffer::new(8);
        b.push(&bytes(0..6));
        b.set_capacity(2); // shrink only to len
        assert_eq!(b.capacity(), 6);
        assert_eq!(b.free(), 0);
        assert_eq!(b.allocated(), 6);
        b.set_capacity(20);
        assert_eq!(b.push(&bytes(6..20)), 14);
        let mut out = [0u8; 20];
        assert_eq!(b.copy_out(0, &mut out), 20);
        assert_eq!(&out[..], &bytes(0..20)[..]);
        let mut z = SendBuffer::new(0);
        assert_eq!(z.push(&[1]), 0);
        assert_eq!(z.allocated(), 0);
    }

    #[test]
    fn shrink_to_fit_releases() {
        let mut b = SendBuffer::new(1 << 20);
        b.push(&vec![7; 100_000]);
        b.ack(99_990);
        b.shrink_to_fit();
        assert_eq!(b.allocated(), 10);
        let mut out = [0u8; 10];
        assert_eq!(b.copy_out(0, &mut out), 10);
        assert_eq!(out, [7; 10]);
        b.ack(10);
        b.shrink_to_fit();
        assert_eq!(b.allocated(), 0);
        assert_eq!(b.push(&[1, 2]), 2);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(Vec<u8>),
        Ack(usize),
        CopyOut(usize, usize),
        SetCapacity(usize),
        Shrink,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Op::Push),
            3 => (0usize..4000).prop_map(Op::Ack),
            3 => (0usize..6000, 0usize..3000).prop_map(|(o, l)| Op::CopyOut(o, l)),
            1 => (0usize..12_000).prop_map(Op::SetCapacity),
            1 => Just(Op::Shrink),
        ]
    }

    proptest! {
        #[test]
        fn matches_vecdeque_model(
            cap in 0usize..10_000,
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let mut b = SendBuffer::new(cap);
            let mut model: VecDeque<u8> = VecDeque::new();
            let mut model_cap = cap;
            for op in ops {
                match op {
                    Op::Push(d) => {
                        let n = b.push(&d);
                        let want = d.len().min(model_cap - model.len());
                        prop_assert_eq!(n, want);
                        model.extend(&d[..want]);
                    }
                    Op::Ack(n) => {
                        b.ack(n);
                        model.drain(..n.min(model.len()));
                    }
                    Op::CopyOut(off, l) => {
                        let mut out = vec![0u8; l];
                        let n = b.copy_out(off, &mut out);
                        let want: Vec<u8> = model.iter().skip(off).take(l).copied().collect();
                        prop_assert_eq!(&out[..n], &want[..]);
                    }
                    Op::SetCapacity(c) => {
                        b.set_capacity(c);
                        model_cap = c.max(model.len());
                    }
                    Op::Shrink => b.shrink_to_fit(),
                }
                prop_assert_eq!(b.len(), model.len());
                prop_assert_eq!(b.capacity(), model_cap);
                prop_assert!(b.allocated() <= b.capacity().max(MIN_ALLOC).max(b.len()));
                let mut all = vec![0u8; model.len()];
                prop_assert_eq!(b.copy_out(0, &mut all), model.len());
                prop_assert!(all.iter().eq(model.iter()));
            }
        }
    }
}
