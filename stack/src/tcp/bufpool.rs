//! A cache of the smallest connection buffers, so short connections do not go through
//! the allocator for them.
//!
//! A connection's send and receive rings start at 4 KiB on their first byte
//! (`sendbuf.rs`, `recvbuf.rs`). That is above what glibc's per-thread cache (tcache)
//! holds, so every short connection took two trips through the allocator's locked bins
//! to get them and two more, with chunk consolidation, to free them: with the `Conn`
//! (also above the cache's limit), most of the 11% of a worker's time that malloc and
//! free took under a connection-per-request load (`docs/ARCHITECTURE.md`, "Connection
//! setup cost"). Freed rings of exactly [`POOLED`] bytes wait here instead, in a bounded
//! lock-free queue shared by every thread (a ring is often allocated on an application
//! thread and freed on a worker), and are zeroed when taken again, so a connection sees
//! exactly what a fresh allocation would give it. The queue is process-wide, as the
//! allocator it stands in front of is, and holds at most [`POOL_MAX`] rings (1 MiB).

use std::sync::LazyLock;

use crossbeam::queue::ArrayQueue;

/// The size of the rings kept: the buffers' first allocation.
pub const POOLED: usize = 4096;

/// The most rings kept.
pub const POOL_MAX: usize = 256;

static POOL: LazyLock<ArrayQueue<Vec<u8>>> = LazyLock::new(|| ArrayQueue::new(POOL_MAX));

/// `size` zeroed bytes: a pooled ring when `size` is [`POOLED`] and one is free.
pub fn zeroed(size: usize) -> Vec<u8> {
    if size == POOLED {
        if let Some(mut v) = POOL.pop() {
            v.fill(0);
            return v;
        }
    }
    vec![0u8; size]
}

/// Lets go of a ring: kept if it is a [`POOLED`]-byte one and there is room.
pub fn give_back(v: Vec<u8>) {
    if v.len() == POOLED && v.capacity() == POOLED {
        // A full pool drops the ring (back to the allocator).
        let _ = POOL.push(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_given_back_comes_back_zeroed() {
        // The pool is process-wide and other tests use it: fill it with our rings first,
        // so what we take next is one of them (or a fresh one, which is zeroed too).
        for _ in 0..POOL_MAX {
            give_back(vec![0xaa; POOLED]);
        }
        let v = zeroed(POOLED);
        assert_eq!(v.len(), POOLED);
        assert!(v.iter().all(|&b| b == 0));
        assert_eq!(zeroed(100), vec![0u8; 100]);
    }

    #[test]
    fn only_pooled_sizes_are_kept() {
        // Draining the pool, then giving back rings of other sizes, leaves it empty.
        while POOL.pop().is_some() {}
        give_back(vec![1; POOLED + 1]);
        give_back(Vec::with_capacity(POOLED));
        let mut odd = Vec::with_capacity(2 * POOLED);
        odd.resize(POOLED, 0);
        give_back(odd);
        // Other tests running at the same time may give back rings of their own; none
        // of ours may be there, and ours are the only ones not of POOLED capacity.
        while let Some(v) = POOL.pop() {
            assert_eq!((v.len(), v.capacity()), (POOLED, POOLED));
        }
    }
}
