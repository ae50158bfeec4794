//! Where the stack's time comes from.
//!
//! The protocol code never reads the system clock: a worker passes the time of its loop
//! iteration down in its context ([`crate::net::NetCtx::now`]), and the calls an
//! application makes (close, keepalive, a connect's ISN) read [`Clock::now`] of their
//! stack. A running [`crate::Stack`] uses the monotonic system clock; the simulator
//! (`crate::sim`) uses a [`Clock::Virtual`] it moves forward itself, so a run is
//! deterministic and a 3 s retransmission timeout costs no real time.

#[cfg(any(test, feature = "sim"))]
use std::sync::Arc;
use std::time::Instant;

/// A stack's clock.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The monotonic system clock (`Instant::now`).
    #[default]
    Real,
    /// Simulated time, moved by whoever drives the stack.
    #[cfg(any(test, feature = "sim"))]
    Virtual(Arc<VirtualClock>),
}

impl Clock {
    /// The current time.
    pub fn now(&self) -> Instant {
        match self {
            Clock::Real => Instant::now(),
            #[cfg(any(test, feature = "sim"))]
            Clock::Virtual(v) => v.now(),
        }
    }
}

#[cfg(any(test, feature = "sim"))]
pub use virt::VirtualClock;

#[cfg(any(test, feature = "sim"))]
mod virt {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    /// Simulated time: a fixed origin plus an offset that only moves forward. Shared by the
    /// driver (which advances it) and every reader.
    #[derive(Debug)]
    pub struct VirtualClock {
        origin: Instant,
        elapsed_ns: AtomicU64,
    }

    impl VirtualClock {
        /// A clock that reads `origin` until advanced.
        pub fn new(origin: Instant) -> Self {
            VirtualClock {
                origin,
                elapsed_ns: AtomicU64::new(0),
            }
        }

        /// The current simulated time.
        pub fn now(&self) -> Instant {
            self.origin + Duration::from_nanos(self.elapsed_ns.load(Ordering::Acquire))
        }

        /// Moves the clock to `t`; a `t` earlier than the current time is ignored (time
        /// never goes backwards).
        pub fn set(&self, t: Instant) {
            let ns = t.saturating_duration_since(self.origin).as_nanos();
            let ns = u64::try_from(ns).unwrap_or(u64::MAX);
            self.elapsed_ns.fetch_max(ns, Ordering::AcqRel);
        }

        /// Moves the clock forward by `d`.
        pub fn advance(&self, d: Duration) {
            self.set(self.now() + d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn virtual_time_moves_only_forward() {
        let t0 = Instant::now();
        let v = Arc::new(VirtualClock::new(t0));
        let c = Clock::Virtual(v.clone());
        assert_eq!(c.now(), t0);
        v.advance(Duration::from_secs(3));
        assert_eq!(c.now(), t0 + Duration::from_secs(3));
        v.set(t0 + Duration::from_secs(1));
        assert_eq!(c.now(), t0 + Duration::from_secs(3), "never backwards");
        v.set(t0 + Duration::from_millis(3500));
        assert_eq!(c.now() - t0, Duration::from_millis(3500));
    }

    #[test]
    fn real_clock_follows_the_system() {
        let before = Instant::now();
        let now = Clock::Real.now();
        assert!(now >= before && now <= Instant::now());
    }
}
