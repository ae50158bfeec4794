//! Stack-wide TCP bounds against hostile traffic: the gauges that count what all
//! connections hold together (SACK scoreboard ranges, orphaned connections, TIME-WAIT
//! connections) and the counters of what the bounds refused.
//!
//! The control blocks are sans-IO and owned by different workers, so the gauges are
//! shared atomics: a connection takes a [`Slot`] (one unit, or several) with a
//! compare-and-swap against the limit and gives it back when the slot is dropped. The
//! refusal counters are stack-wide too (they move only when a bound is hit) and are
//! reported beside the per-worker counters (`/stats`, the simulator's `counter`).
//!
//! Each connection finds the gauges through its settings ([`TcpConfig::bounds`]); a
//! TCP layer gives its settings a fresh set, so two stacks in one process count apart.
//!
//! [`TcpConfig::bounds`]: super::TcpConfig::bounds

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

macro_rules! bound_counters {
    ($( $(#[doc = $doc:literal])* $field:ident => $name:literal, )*) => {
        /// What the stack-wide and per-connection TCP bounds refused.
        #[derive(Debug, Default)]
        pub struct BoundCounters {
            $( $(#[doc = $doc])* pub $field: AtomicU64, )*
        }

        impl BoundCounters {
            /// `(name, value)` for every counter.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$( ($name, self.$field.load(Ordering::Relaxed)), )*]
            }
        }
    };
}

bound_counters! {
    /// SACK blocks ignored because the connection's scoreboard held
    /// `sack_max_holes` ranges.
    sack_conn_limit => "tcp.sack_refused_conn_limit",
    /// SACK blocks ignored because all scoreboards together held
    /// `sack_global_max_holes` ranges.
    sack_global_limit => "tcp.sack_refused_global_limit",
    /// Out-of-order segments dropped because the connection held `max_ooo_ranges`
    /// ranges.
    ooo_ranges => "tcp.drop_ooo_ranges",
    /// Out-of-order segments dropped because the connection held `max_ooo_bytes` bytes
    /// out of order.
    ooo_bytes => "tcp.drop_ooo_bytes",
    /// Connections reset when their application let go of them because `max_orphans`
    /// orphaned connections existed.
    orphans_reset => "tcp.orphans_reset_limit",
    /// Orphaned connections dropped after `orphan_persist_probes` unanswered
    /// zero-window probes.
    orphan_persist_dropped => "tcp.orphan_persist_dropped",
    /// Connections closed at once instead of entering TIME-WAIT because
    /// `max_time_wait` connections were in it.
    time_wait_refused => "tcp.time_wait_refused_limit",
    /// Connections refused (active: an error from `connect`; passive: the SYN dropped)
    /// because the stack held `max_connections`.
    conns_refused => "tcp.conns_refused_limit",
    /// Times the stack asked the allocator to give freed buffer memory back
    /// (`memory_trim_after`).
    memory_trims => "tcp.memory_trims",
}

/// Which stack-wide gauge a slot counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gauge {
    /// Ranges in all SACK scoreboards.
    SackHoles,
    /// Orphaned connections (no handle, not yet closed).
    Orphans,
    /// Connections in TIME-WAIT.
    TimeWait,
}

#[derive(Debug, Default)]
struct Shared {
    sack_holes: AtomicUsize,
    orphans: AtomicUsize,
    time_wait: AtomicUsize,
    counters: BoundCounters,
}

impl Shared {
    fn gauge(&self, g: Gauge) -> &AtomicUsize {
        match g {
            Gauge::SackHoles => &self.sack_holes,
            Gauge::Orphans => &self.orphans,
            Gauge::TimeWait => &self.time_wait,
        }
    }
}

/// The gauges and counters one stack's connections share (cheap to clone: one `Arc`).
#[derive(Clone, Debug, Default)]
pub struct TcpBounds(Arc<Shared>);

impl TcpBounds {
    /// Takes `n` units of `gauge` if that keeps it at or below `max`.
    pub fn try_take(&self, gauge: Gauge, n: usize, max: usize) -> Option<Slot> {
        self.0
            .gauge(gauge)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                v.checked_add(n).filter(|&t| t <= max)
            })
            .ok()?;
        Some(Slot {
            bounds: self.clone(),
            gauge,
            n,
        })
    }

    /// The current value of a gauge.
    pub fn load(&self, gauge: Gauge) -> usize {
        self.0.gauge(gauge).load(Ordering::Relaxed)
    }

    /// The refusal counters.
    pub fn counters(&self) -> &BoundCounters {
        &self.0.counters
    }

    /// Adds one to a refusal counter.
    pub fn count(&self, f: impl Fn(&BoundCounters) -> &AtomicU64) {
        f(&self.0.counters).fetch_add(1, Ordering::Relaxed);
    }
}

/// Units held in a stack-wide gauge, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    bounds: TcpBounds,
    gauge: Gauge,
    n: usize,
}

impl Slot {
    /// Units held.
    pub fn units(&self) -> usize {
        self.n
    }

    /// Gives back `k` of the units held (at most all of them).
    pub fn give_back(&mut self, k: usize) {
        let k = k.min(self.n);
        self.bounds
            .0
            .gauge(self.gauge)
            .fetch_sub(k, Ordering::AcqRel);
        self.n -= k;
    }

    /// Takes `k` more units if the gauge stays at or below `max`; false otherwise.
    pub fn take_more(&mut self, k: usize, max: usize) -> bool {
        match self.bounds.try_take(self.gauge, k, max) {
            Some(mut more) => {
                self.n += k;
                more.n = 0;
                true
            }
            None => false,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.n > 0 {
            self.bounds
                .0
                .gauge(self.gauge)
                .fetch_sub(self.n, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stop_at_the_limit_and_give_back_on_drop() {
        let b = TcpBounds::default();
        let mut a = b.try_take(Gauge::TimeWait, 2, 3).expect("room");
        assert!(b.try_take(Gauge::TimeWait, 2, 3).is_none());
        let one = b.try_take(Gauge::TimeWait, 1, 3).expect("room for one");
        assert_eq!(b.load(Gauge::TimeWait), 3);
        assert!(!a.take_more(1, 3));
        drop(one);
        assert!(a.take_more(1, 3));
        assert_eq!((a.units(), b.load(Gauge::TimeWait)), (3, 3));
        a.give_back(5);
        assert_eq!((a.units(), b.load(Gauge::TimeWait)), (0, 0));
        assert_eq!(b.load(Gauge::Orphans), 0, "gauges are separate");
        b.count(|c| &c.conns_refused);
        assert!(b
            .counters()
            .snapshot()
            .contains(&("tcp.conns_refused_limit", 1)));
    }
}
