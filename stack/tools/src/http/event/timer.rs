//! A hashed timer wheel for the event server's per-connection deadlines (idle, write,
//! linger), so that no connection needs an OS timer and the loop never scans them all.
//!
//! Entries are lazy: a connection has at most one live entry, placed at the tick of its
//! deadline as it was when scheduled. Progress (bytes read or written) only moves a
//! deadline later and does not touch the wheel; when the entry fires, the server
//! recomputes the deadline and either acts or schedules again. Only a deadline that moves
//! earlier (a response starts waiting for the client to read: the write timeout is
//! shorter than the idle timeout) needs a new entry, and the old one is recognised as
//! stale when it fires because its tick is no longer the connection's.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The wheel's resolution (10 ms): deadlines fire up to one tick late.
const TICK_NANOS: u64 = 10_000_000;

/// Slots, so the wheel spans 1024 ticks (10.24 s). A later deadline waits in the
/// farthest slot and is scheduled again when that fires.
const SLOTS: u64 = 1024;

/// Connection keys by the tick their deadline falls in.
pub(super) struct TimerWheel {
    start: Instant,
    /// The next tick to fire: every tick before it has fired.
    next: u64,
    /// `(key, tick)` pairs; slot `tick % SLOTS`.
    slots: Vec<Vec<(usize, u64)>>,
    /// Entries in all slots.
    len: usize,
    /// No entry's tick is below this (a lower bound, raised by `next_deadline`'s search):
    /// the search for the earliest entry starts here, not at `next`, so a loop asking on
    /// every turn does not walk 1,024 empty slots each time (it did: with one far idle
    /// deadline that walk was 30% of a downloading worker's time).
    low: Cell<u64>,
}

impl TimerWheel {
    /// An empty wheel whose tick 0 is `start`.
    pub(super) fn new(start: Instant) -> Self {
        Self {
            start,
            next: 0,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            len: 0,
            low: Cell::new(0),
        }
    }

    /// The first tick at or after `t`.
    fn tick_at_or_after(&self, t: Instant) -> u64 {
        let since = t.saturating_duration_since(self.start).as_nanos();
        u64::try_from(since.div_ceil(u128::from(TICK_NANOS))).unwrap_or(u64::MAX)
    }

    /// The tick an entry for `deadline` would go in: its own, or the nearest the wheel
    /// can hold (not before the next tick to fire, not beyond the wheel's span).
    pub(super) fn tick_for(&self, deadline: Instant) -> u64 {
        self.tick_at_or_after(deadline)
            .clamp(self.next, self.next + SLOTS - 1)
    }

    /// Adds an entry for `key` at the tick for `deadline`; returns that tick.
    pub(super) fn schedule(&mut self, key: usize, deadline: Instant) -> u64 {
        let tick = self.tick_for(deadline);
        self.slots[(tick % SLOTS) as usize].push((key, tick));
        self.len += 1;
        if tick < self.low.get() {
            self.low.set(tick);
        }
        tick
    }

    /// Moves every entry whose tick has come by `now` into `due` as `(key, tick)`.
    pub(super) fn expire(&mut self, now: Instant, due: &mut Vec<(usize, u64)>) {
        let since = now.saturating_duration_since(self.start).as_nanos();
        let Ok(now_tick) = u64::try_from(since / u128::from(TICK_NANOS)) else {
            return;
        };
        if now_tick < self.next {
            return;
        }
        // After a long sleep every slot may be due; each is visited once.
        let ticks = (now_tick - self.next + 1).min(SLOTS);
        for tick in self.next..self.next + ticks {
            let slot = &mut self.slots[(tick % SLOTS) as usize];
            self.len -= slot.len();
            due.append(slot);
        }
        self.next = now_tick + 1;
    }

    /// When the earliest entry fires, if there is one.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        // Every entry's tick is in [next, next + SLOTS), so a slot holds one tick's.
        let from = self.low.get().max(self.next);
        let t = (from..self.next + SLOTS).find(|t| !self.slots[(t % SLOTS) as usize].is_empty())?;
        self.low.set(t);
        Some(self.start + Duration::from_nanos(t.saturating_mul(TICK_NANOS)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fires_at_or_after_the_deadline_and_not_before() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let tick = w.schedule(7, t0 + ms(25));
        assert_eq!(tick, 3, "25 ms rounds up to the third 10 ms tick");
        assert_eq!(w.next_deadline(), Some(t0 + ms(30)));
        let mut due = Vec::new();
        w.expire(t0 + ms(29), &mut due);
        assert!(due.is_empty(), "fired early: {due:?}");
        w.expire(t0 + ms(30), &mut due);
        assert_eq!(due, vec![(7, 3)]);
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn far_deadlines_wait_in_the_last_slot_and_past_ones_fire_next() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        let far = w.schedule(1, t0 + Duration::from_secs(60));
        assert_eq!(far, SLOTS - 1);
        let mut due = Vec::new();
        w.expire(t0 + ms(5), &mut due);
        let past = w.schedule(2, t0);
        assert_eq!(past, 1, "a deadline already passed fires at the next tick");
        w.expire(t0 + ms(10), &mut due);
        assert_eq!(due, vec![(2, 1)]);
        due.clear();
        // A long sleep: everything due comes out once.
        w.expire(t0 + Duration::from_secs(3600), &mut due);
        assert_eq!(due, vec![(1, SLOTS - 1)]);
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn the_earliest_entry_is_found_after_later_and_earlier_schedules() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0);
        assert_eq!(w.next_deadline(), None);
        w.schedule(1, t0 + ms(500));
        assert_eq!(w.next_deadline(), Some(t0 + ms(500)));
        // Asked again (the cached start of the search) and after an earlier entry.
        assert_eq!(w.next_deadline(), Some(t0 + ms(500)));
        w.schedule(2, t0 + ms(100));
        assert_eq!(w.next_deadline(), Some(t0 + ms(100)));
        let mut due = Vec::new();
        w.expire(t0 + ms(100), &mut due);
        assert_eq!(due, vec![(2, 10)]);
        assert_eq!(w.next_deadline(), Some(t0 + ms(500)));
        w.schedule(3, t0 + ms(200));
        assert_eq!(w.next_deadline(), Some(t0 + ms(200)));
        due.clear();
        w.expire(t0 + ms(500), &mut due);
        assert_eq!(due, vec![(3, 20), (1, 50)]);
        assert_eq!(w.next_deadline(), None);
    }
}
