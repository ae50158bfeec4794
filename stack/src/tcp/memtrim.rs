//! Giving freed buffer memory back to the operating system.
//!
//! Connection buffers are large (hundreds of KiB for a bulk sender) and the allocator
//! keeps what they free: after 5,000 stalled connections with full send buffers are
//! dropped, glibc's heaps still hold most of the 1.6 GB they peaked at (measured:
//! resident memory 36 MiB before, 1,647 MiB at the peak, 148 MiB an idle minute after
//! the last one went; 25 MiB after one `malloc_trim`). An attacker who can make the
//! stack fill buffers once would otherwise pin that memory for the life of the process.
//!
//! So the buffers count the large allocations they let go of ([`Storage`]'s `Drop`),
//! and once `TcpConfig::memory_trim_after` bytes were freed, worker 0's housekeeping
//! asks the allocator to return its free pages (`malloc_trim` on glibc), at most once
//! per [`MIN_INTERVAL`] and on a thread of its own, so no worker waits for the heaps'
//! locks. Only allocations of [`TRACKED_MIN`] bytes or more are counted: small ones are
//! recycled by the allocator anyway, and not counting them keeps the shared counter off
//! the path of short connections. What an idle connection releases is counted whatever
//! its size ([`released_idle`]): that happens once per connection going idle, not per
//! short connection. The counter is process-wide, as the allocator is.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The smallest freed allocation that counts towards a trim.
pub const TRACKED_MIN: usize = 64 * 1024;

/// The least time between two trims.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes of large buffers freed since the process started, all stacks together (it only
/// grows; each [`Trimmer`] remembers where it stood at its last trim).
static RELEASED: AtomicUsize = AtomicUsize::new(0);

/// Notes in `counter` that an allocation of `bytes` was freed.
fn released(counter: &AtomicUsize, bytes: usize) {
    if bytes >= TRACKED_MIN {
        counter.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Notes memory an idle connection gave back (its empty buffers, send log and SACK
/// lists: `buffer_idle_release`). Counted whatever the size: a few KiB each, but a
/// server with 100k keep-alive connections going idle frees hundreds of MiB this way.
pub fn released_idle(bytes: usize) {
    RELEASED.fetch_add(bytes, Ordering::Relaxed);
}

/// A buffer's backing bytes: a `Vec<u8>` whose allocation is counted when freed.
#[derive(Clone, Debug, Default)]
pub struct Storage(Vec<u8>);

impl Storage {
    /// Takes over `v`'s allocation.
    #[cfg(test)]
    pub fn new(v: Vec<u8>) -> Self {
        Storage(v)
    }

    /// `size` zeroed bytes, from the small-ring pool when it has one (`bufpool.rs`).
    pub fn zeroed(size: usize) -> Self {
        Storage(super::bufpool::zeroed(size))
    }
}

impl Deref for Storage {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Storage {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        released(&RELEASED, self.0.capacity());
        super::bufpool::give_back(std::mem::take(&mut self.0));
    }
}

/// Decides when to trim: owned by the worker that runs the housekeeping.
#[derive(Debug, Default)]
pub struct Trimmer {
    /// When the last trim started.
    last: Option<Instant>,
    /// The freed-bytes count then.
    mark: usize,
    /// The freed-bytes count at the last tick, and since when it has had that value.
    seen: (usize, Option<Instant>),
}

impl Trimmer {
    /// Called periodically: starts a trim when at least `after` bytes were freed since
    /// the last one, or when some were and then nothing more for [`MIN_INTERVAL`] (the
    /// end of a burst of closes, which may not reach `after`); never sooner than
    /// [`MIN_INTERVAL`] after the last trim. Returns whether it started one.
    pub fn tick(&mut self, now: Instant, after: Option<usize>) -> bool {
        let due = self.due(now, after, &RELEASED);
        if due {
            trim_in_background();
        }
        due
    }

    /// Whether a trim is due given the freed-bytes `counter`; restarts the count if so.
    fn due(&mut self, now: Instant, after: Option<usize>, counter: &AtomicUsize) -> bool {
        let Some(after) = after else {
            return false;
        };
        let freed = counter.load(Ordering::Relaxed);
        if self.seen.0 != freed || self.seen.1.is_none() {
            self.seen = (freed, Some(now));
        }
        let pending = freed.wrapping_sub(self.mark);
        let quiet = self.seen.1.is_some_and(|t| now >= t + MIN_INTERVAL);
        if self.last.is_some_and(|t| now < t + MIN_INTERVAL)
            || pending == 0
            || (pending < after && !quiet)
        {
            return false;
        }
        self.mark = freed;
        self.last = Some(now);
        true
    }
}

/// Asks the allocator to give free memory back, on a short-lived thread.
fn trim_in_background() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("xstack-trim".into())
            .spawn(|| {
                // SAFETY: malloc_trim has no preconditions; it takes the heaps' locks.
                unsafe { libc::malloc_trim(0) };
            });
        // No thread, no trim: the memory stays with the allocator, nothing else fails.
        drop(spawned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_after_enough_large_frees_and_not_more_than_once_a_second() {
        let (t0, freed) = (Instant::now(), AtomicUsize::new(0));
        let mut t = Trimmer::default();
        released(&freed, TRACKED_MIN - 1);
        assert_eq!(freed.load(Ordering::Relaxed), 0, "small frees do not count");
        for _ in 0..4 {
            released(&freed, TRACKED_MIN);
        }
        assert!(!t.due(t0, None, &freed), "off");
        assert!(
            !t.due(t0, Some(5 * TRACKED_MIN), &freed),
            "not enough freed"
        );
        assert!(t.due(t0, Some(4 * TRACKED_MIN), &freed));
        assert!(
            !t.due(t0 + MIN_INTERVAL, Some(TRACKED_MIN), &freed),
            "the count restarts"
        );
        freed.fetch_add(8 * TRACKED_MIN, Ordering::Relaxed);
        assert!(
            !t.due(t0 + MIN_INTERVAL / 2, Some(TRACKED_MIN), &freed),
            "too soon"
        );
        assert!(t.due(t0 + MIN_INTERVAL, Some(TRACKED_MIN), &freed));
    }

    #[test]
    fn trims_what_is_left_once_frees_stop() {
        let (t0, freed) = (Instant::now(), AtomicUsize::new(0));
        let mut t = Trimmer::default();
        let after = Some(100 * TRACKED_MIN);
        assert!(!t.due(t0, after, &freed), "nothing freed");
        let mut now = t0;
        for _ in 0..20 {
            released(&freed, TRACKED_MIN);
            now += MIN_INTERVAL / 4;
            assert!(
                !t.due(now, after, &freed),
                "frees still coming, below the threshold"
            );
        }
        assert!(
            !t.due(now + MIN_INTERVAL / 2, after, &freed),
            "not quiet for long enough"
        );
        assert!(
            t.due(now + MIN_INTERVAL, after, &freed),
            "quiet: trim the rest"
        );
        assert!(
            !t.due(now + 3 * MIN_INTERVAL, after, &freed),
            "nothing new since"
        );
    }

    #[test]
    fn storage_counts_its_allocation_when_dropped() {
        // The counter is process-wide and other tests free buffers too, but it only
        // grows: dropping a large buffer raises it by at least the buffer's size.
        let before = RELEASED.load(Ordering::Relaxed);
        drop(Storage::new(Vec::with_capacity(4 * TRACKED_MIN)));
        assert!(RELEASED.load(Ordering::Relaxed) >= before + 4 * TRACKED_MIN);
    }
}
