//! Rate limits on what hostile traffic can make the stack send, after FreeBSD's
//! `badport_bandlim` / `net.inet.icmp.icmplim`: RSTs for closed ports, ICMP echo replies,
//! ACKs for out-of-window segments (and challenge ACKs), ARP requests.
//!
//! Each kind has one token bucket shared by all workers of a stack: `limit` tokens a
//! second, at most `limit` saved up (a second's worth), one spent per packet. Time is
//! the caller's `now` (the worker's, virtual in the simulator), never the system clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use crate::stats::Counters;

/// Per-second limits on answers to unsolicited traffic, shared by all workers (`None`:
/// no limit). FreeBSD's default is 200 a second for RSTs and ICMP alike
/// (`net.inet.icmp.icmplim`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// RSTs sent for segments that belong to no connection (closed ports).
    pub rst_per_sec: Option<u32>,
    /// ICMP echo replies. The default, 1000, lets a ping every 2 ms (the echo
    /// benchmark) or 16 pingers at 100 a second through; Linux does not limit echo
    /// replies at all, FreeBSD to 200 a second.
    pub icmp_echo_per_sec: Option<u32>,
    /// ACKs sent for unacceptable segments without data (out of window, RFC 9293
    /// §3.10.7.4) and RFC 5961 challenge ACKs, all connections together. Each
    /// connection has its own limits too (10 challenge ACKs a second, RFC 5961 §7; one
    /// out-of-window ACK per 500 ms, Linux's `tcp_invalid_ratelimit`).
    pub ack_per_sec: Option<u32>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            rst_per_sec: Some(200),
            icmp_echo_per_sec: Some(1000),
            // Linux's `tcp_challenge_ack_limit`.
            ack_per_sec: Some(1000),
        }
    }
}

/// A token bucket that several threads may draw from (a generic cell rate algorithm:
/// the state is the time at which the bucket would be full again).
#[derive(Debug)]
pub struct RateLimit {
    /// Nanoseconds a token takes to come back (0: no limit).
    cost_ns: u64,
    /// The time origin for `tat_ns`: the first `now` seen.
    origin: OnceLock<Instant>,
    /// "Theoretical arrival time": nanoseconds after `origin` at which the bucket is
    /// full again.
    tat_ns: AtomicU64,
}

/// A second in nanoseconds: the bucket's depth in time.
const SECOND_NS: u64 = 1_000_000_000;

impl RateLimit {
    /// A bucket of `per_sec` tokens a second; `None` or `Some(0)` lets everything pass.
    pub fn new(per_sec: Option<u32>) -> Self {
        RateLimit {
            cost_ns: per_sec
                .filter(|&n| n > 0)
                .map_or(0, |n| SECOND_NS / u64::from(n)),
            origin: OnceLock::new(),
            tat_ns: AtomicU64::new(0),
        }
    }

    /// Takes a token at `now`; false when none is left (the packet must not be sent).
    pub fn allow(&self, now: Instant) -> bool {
        if self.cost_ns == 0 {
            return true;
        }
        let origin = *self.origin.get_or_init(|| now);
        // A worker's `now` may be a little behind another's: it then counts as the origin
        // or as the latest time seen, which only makes the bucket stricter.
        let t = now.saturating_duration_since(origin).as_nanos() as u64 + SECOND_NS;
        let mut tat = self.tat_ns.load(Ordering::Relaxed);
        loop {
            let new_tat = tat.max(t) + self.cost_ns;
            if new_tat > t + SECOND_NS {
                return false;
            }
            match self.tat_ns.compare_exchange_weak(
                tat,
                new_tat,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => tat = seen,
            }
        }
    }

    /// [`allow`](Self::allow), counting a refusal in `suppressed`.
    pub fn allow_or_count(&self, now: Instant, suppressed: &AtomicU64) -> bool {
        let ok = self.allow(now);
        if !ok {
            Counters::inc(suppressed);
        }
        ok
    }
}

/// The buckets of one stack, one per kind of [`RateLimits`].
#[derive(Debug)]
pub struct Limiters {
    /// RSTs for closed ports.
    pub rst: RateLimit,
    /// ICMP echo replies.
    pub icmp_echo: RateLimit,
    /// Out-of-window and challenge ACKs.
    pub ack: RateLimit,
}

impl Limiters {
    /// Full buckets for `limits`.
    pub fn new(limits: RateLimits) -> Self {
        Limiters {
            rst: RateLimit::new(limits.rst_per_sec),
            icmp_echo: RateLimit::new(limits.icmp_echo_per_sec),
            ack: RateLimit::new(limits.ack_per_sec),
        }
    }
}

impl Default for Limiters {
    fn default() -> Self {
        Limiters::new(RateLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn passed(l: &RateLimit, start: Instant, span: Duration, step: Duration) -> usize {
        let mut n = 0;
        let mut t = start;
        while t < start + span {
            n += l.allow(t) as usize;
            t += step;
        }
        n
    }

    #[test]
    fn a_burst_of_one_second_then_the_rate() {
        let l = RateLimit::new(Some(200));
        let t0 = Instant::now();
        // All at once: a full bucket, no more.
        assert_eq!((0..1000).filter(|_| l.allow(t0)).count(), 200);
        // Then 10,000 attempts a second for 3 s: 200 a second get through.
        let n = passed(&l, t0, Duration::from_secs(3), Duration::from_micros(100));
        assert!((599..=601).contains(&n), "{n}");
    }

    #[test]
    fn refills_while_idle_up_to_one_second() {
        let l = RateLimit::new(Some(10));
        let t0 = Instant::now();
        assert_eq!((0..50).filter(|_| l.allow(t0)).count(), 10);
        let later = t0 + Duration::from_millis(500);
        assert_eq!((0..50).filter(|_| l.allow(later)).count(), 5);
        let much_later = t0 + Duration::from_secs(60);
        assert_eq!((0..50).filter(|_| l.allow(much_later)).count(), 10);
    }

    #[test]
    fn none_and_zero_do_not_limit_and_refusals_are_counted() {
        let t0 = Instant::now();
        for l in [RateLimit::new(None), RateLimit::new(Some(0))] {
            assert_eq!((0..10_000).filter(|_| l.allow(t0)).count(), 10_000);
        }
        let l = RateLimit::new(Some(1));
        let c = AtomicU64::new(0);
        assert!(l.allow_or_count(t0, &c));
        assert!(!l.allow_or_count(t0, &c));
        assert_eq!(c.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_earlier_now_from_another_worker_is_no_free_token() {
        let l = RateLimit::new(Some(2));
        let t0 = Instant::now() + Duration::from_secs(1);
        assert!(l.allow(t0));
        assert!(l.allow(t0));
        assert!(!l.allow(t0 - Duration::from_millis(300)));
    }
}
