//! The TCP timers of one connection (FreeBSD `tcp_timer.c`): a small table indexed by
//! kind; the connection's next deadline is the earliest armed one.

use std::time::{Duration, Instant};

use super::config::TcpError;
use super::tcb::State;

/// The timers a connection may have armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum TimerKind {
    /// Retransmission (RFC 6298); also paces SYN retries.
    Rexmt = 0,
    /// Zero-window probe (RFC 9293 §3.8.6.1).
    Persist = 1,
    /// Delayed ACK (RFC 9293 §3.8.6.3, RFC 5681 §4.2).
    Delack = 2,
    /// Keepalive probes (RFC 1122 §4.2.3.6).
    Keepalive = 3,
    /// TIME-WAIT's 2*MSL (RFC 9293 §3.6).
    TwoMsl = 4,
    /// The whole connection attempt (connect timeout).
    ConnEstab = 5,
    /// RACK's reordering timer (RFC 8985 §6.3): segments sent before a delivered one,
    /// within the reordering window, are looked at again when it expires.
    RackReo = 6,
    /// The tail loss probe's PTO (RFC 8985 §7.2).
    Tlp = 7,
    /// Pacing: the next burst of new data may go out (the module's pacing rate,
    /// `tcp/output.rs`).
    Pace = 8,
}

const N: usize = 9;

impl TimerKind {
    /// Every kind, in table order.
    pub const ALL: [TimerKind; N] = [
        TimerKind::Rexmt,
        TimerKind::Persist,
        TimerKind::Delack,
        TimerKind::Keepalive,
        TimerKind::TwoMsl,
        TimerKind::ConnEstab,
        TimerKind::RackReo,
        TimerKind::Tlp,
        TimerKind::Pace,
    ];
}

/// The timer table: each deadline as nanoseconds after `base` (the connection's
/// creation), plus one, 0 for disarmed: 88 bytes where nine `Option<Instant>` took 144,
/// in every connection. A deadline before `base` is kept as `base` (already due).
#[derive(Clone, Debug)]
pub struct Timers {
    base: Instant,
    at: [u64; N],
}

impl Timers {
    /// A table with nothing armed, its deadlines counted from `base`.
    pub fn new(base: Instant) -> Self {
        Timers { base, at: [0; N] }
    }

    fn encode(&self, when: Instant) -> u64 {
        let ns = when.saturating_duration_since(self.base).as_nanos();
        u64::try_from(ns).unwrap_or(u64::MAX - 1).saturating_add(1)
    }

    fn decode(&self, v: u64) -> Option<Instant> {
        (v != 0).then(|| self.base + Duration::from_nanos(v - 1))
    }

    /// Arms `k` to fire at `when` (replacing any earlier setting).
    pub fn set(&mut self, k: TimerKind, when: Instant) {
        self.at[k as usize] = self.encode(when);
    }

    /// Disarms `k`.
    pub fn stop(&mut self, k: TimerKind) {
        self.at[k as usize] = 0;
    }

    /// When `k` fires, if armed.
    #[cfg(test)]
    pub fn get(&self, k: TimerKind) -> Option<Instant> {
        self.deadline(k)
    }

    /// When `k` fires, if armed.
    pub fn deadline(&self, k: TimerKind) -> Option<Instant> {
        self.decode(self.at[k as usize])
    }

    /// True when `k` is armed.
    pub fn is_set(&self, k: TimerKind) -> bool {
        self.at[k as usize] != 0
    }

    /// Disarms everything.
    pub fn clear(&mut self) {
        self.at = [0; N];
    }

    /// The earliest deadline of any armed timer.
    pub fn next(&self) -> Option<Instant> {
        let min = self.at.iter().copied().filter(|&v| v != 0).min()?;
        self.decode(min)
    }

    /// Disarms and returns the timers due at `now`, earliest first (ties in table
    /// order).
    pub fn expired(&mut self, now: Instant) -> Due {
        let mut due = Due {
            kinds: [TimerKind::Rexmt; N],
            len: 0,
        };
        let now = self.encode(now);
        let mut at = [now; N];
        for k in TimerKind::ALL {
            let t = self.at[k as usize];
            if t == 0 || t > now {
                continue;
            }
            self.stop(k);
            // Insertion after every earlier-or-equal deadline: a stable sort of at most
            // eight entries, without allocating (this runs for every timer that fires).
            let mut i = due.len;
            while i > 0 && at[i - 1] > t {
                at[i] = at[i - 1];
                due.kinds[i] = due.kinds[i - 1];
                i -= 1;
            }
            at[i] = t;
            due.kinds[i] = k;
            due.len += 1;
        }
        due
    }
}

/// The timers [`Timers::expired`] found due, in firing order.
#[derive(Clone, Copy, Debug)]
pub struct Due {
    kinds: [TimerKind; N],
    len: usize,
}

impl Due {
    /// The due timers, earliest first.
    pub fn as_mut_slice(&mut self) -> &mut [TimerKind] {
        &mut self.kinds[..self.len]
    }
}

/// How long a closed connection probes a zero window without hearing from the peer
/// (FreeBSD `TCPTV_PERSMAX`; also the longest probe interval, so a peer answering each
/// probe keeps the connection).
pub const PERSIST_MAX_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

impl super::tcb::Tcb {
    /// Runs the timers due at `now` (BSD `tcp_timer_*`).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.buffer_check_at.is_some_and(|t| t <= now) {
            self.release_idle_buffers(now);
        }
        let mut due = self.timers.expired(now);
        let due = due.as_mut_slice();
        if let Some(i) = due.iter().position(|&k| k == TimerKind::Tlp) {
            // A PTO capped at the RTO's expiry (RFC 8985 §7.2) fires first: the probe
            // takes the RTO's place and restarts it (Linux's one timer slot for both).
            due[..=i].rotate_right(1);
        }
        for &mut k in due {
            let dropped = match k {
                TimerKind::Rexmt if self.rack.tlp_due => {
                    self.timers.set(TimerKind::Rexmt, now + self.rto());
                    false
                }
                TimerKind::Rexmt => self.timer_rexmt(now),
                TimerKind::Persist => self.timer_persist(now),
                TimerKind::Delack => {
                    self.ack_now = true;
                    false
                }
                TimerKind::Keepalive => self.timer_keep(now),
                // TIME-WAIT's 2*MSL, or an orphaned FIN-WAIT-2 giving up on the peer.
                TimerKind::TwoMsl => {
                    self.enter_closed();
                    false
                }
                TimerKind::ConnEstab => {
                    let timed_out = !self.state.is_synchronized();
                    if timed_out {
                        self.drop_with(TcpError::TimedOut);
                    }
                    timed_out
                }
                TimerKind::RackReo => {
                    self.timer_rack_reo(now);
                    false
                }
                TimerKind::Tlp => {
                    self.timer_tlp(now);
                    false
                }
                // Nothing to do here: the output that follows every timer run sends the
                // burst the pacer held back.
                TimerKind::Pace => false,
            };
            if dropped {
                return;
            }
        }
    }

    /// Schedules the idle-buffer check while a buffer holds memory (once: the check
    /// itself looks at how long the connection has been idle).
    pub(crate) fn arm_buffer_check(&mut self, now: Instant) {
        if self.buffer_check_at.is_none()
            && self.state != State::Closed
            && (self.sndbuf.allocated() > 0
                || self.rcvbuf.allocated() > 0
                || self.rack.log.allocated() > 0
                || self.sb.allocated() > 0)
        {
            self.buffer_check_at = Some(now + self.cfg.buffer_idle_release);
        }
    }

    /// The idle-buffer check (`TcpConfig::buffer_idle_release`): once no data went
    /// either way for that long, an empty buffer gives its memory back. Not idle long
    /// enough yet: the check comes again when it can be. Idle but holding data: the
    /// next output (an ACK, a read that opens the window) schedules it again.
    fn release_idle_buffers(&mut self, now: Instant) {
        self.buffer_check_at = None;
        let idle = self.cfg.buffer_idle_release;
        let last = self
            .last_data_sent
            .map_or(self.last_rx, |t| t.max(self.last_rx));
        if now < last + idle {
            self.buffer_check_at = Some(last + idle);
            return;
        }
        let held = self.sndbuf.allocated()
            + self.rcvbuf.allocated()
            + self.rack.log.allocated()
            + self.sb.allocated();
        if self.sndbuf.is_empty() {
            self.sndbuf.shrink_to_fit();
        }
        if self.rcvbuf.is_empty() {
            self.rcvbuf.shrink_to_fit();
        }
        // The send log and the SACK lists keep their capacity between bursts; an idle
        // connection has nothing in them.
        self.rack.log.shrink_empty();
        self.sb.shrink_empty();
        let kept = self.sndbuf.allocated()
            + self.rcvbuf.allocated()
            + self.rack.log.allocated()
            + self.sb.allocated();
        // Small, but many idle connections add up: let the allocator give it back.
        super::memtrim::released_idle(held.saturating_sub(kept));
    }

    /// The retransmission timer (FreeBSD `tcp_timer_rexmt`): back off and go back to
    /// SND.UNA, or drop the connection once the retries ran out (true).
    fn timer_rexmt(&mut self, now: Instant) -> bool {
        let limit = if self.state.is_synchronized() {
            self.cfg.max_retransmits
        } else {
            self.cfg.syn_retries
        };
        if self.rxtshift >= limit {
            if self.state.is_synchronized() {
                self.send_rst = true;
            }
            self.drop_with(TcpError::TimedOut);
            return true;
        }
        self.rxtshift += 1;
        self.stats.rtos += 1;
        if self.state == State::SynSent && self.rxtshift == self.cfg.syn_drop_options_after {
            // FreeBSD's tcp_timer_rexmt with `rexmit_drop_options`: from now on the
            // SYN offers MSS only (and the SYN,ACK's options are not taken up).
            let cfg = std::sync::Arc::make_mut(&mut self.cfg);
            cfg.window_scaling = false;
            cfg.timestamps = false;
            cfg.sack = false;
        }
        // RFC 6298 §5.5: "The host MUST set RTO <- RTO * 2 ("back off the
        // timer")"; §5.4: retransmit the earliest unacknowledged segment.
        self.rtt.backoff();
        // Eifel detection (RFC 3522), for the first expiry of a run only: a
        // backed-off expiry means the first retransmission got no answer
        // either, and the module keeps its undo state from the first one.
        self.eifel = None;
        if self.cc_started && self.ts_enabled && self.rxtshift == 1 && self.snd_max > self.snd_una {
            // RFC 3522 §2 step (1) (SpuriousRecovery = FALSE) and (2): remember
            // the TSval of the retransmission about to go out (it goes out at
            // this `now`; a later send only makes the test more conservative).
            self.eifel = Some(super::tcb::RtoUndo {
                retransmit_ts: self.ts_now(now),
                recovery: self.recovery,
                recover: self.recover,
            });
        }
        if self.cc_started {
            // rto_count (t_rxtshift) tells the module a first expiry from a
            // backed-off one.
            let info = self.cong_info(now);
            self.cc
                .cong_signal(&mut self.ccv, xstack_cc::CcSignal::Rto, &info);
            self.recovery = xstack_cc::Recovery::Rto;
            self.ecn_window_reduced();
            self.trace_cc(super::cwnd_trace::CcEvent::Rto, now);
        }
        // SACK information across a timeout. RFC 2018 §8: "After a retransmit
        // timeout the data sender SHOULD turn off all of the SACKed bits, since
        // the timeout might indicate that the data receiver has reneged." We
        // keep them over the first expiry (as Linux does: reneging is rare, and
        // go-back-N would resend everything the peer holds) and drop them on a
        // backed-off one, so a receiver that did renege gets its data on the
        // second timeout. RFC 6675 §5.1: "If an RTO occurs during loss recovery
        // as specified in this document, RecoveryPoint MUST be set to HighData"
        // (`recover` below) and no new recovery begins before it is covered.
        if self.rxtshift > 1 {
            self.sb.clear();
        }
        self.sb.begin_phase(self.snd_una);
        self.rack_on_rto();
        self.prr_end();
        self.dupacks = 0;
        self.recover = self.snd_max;
        self.snd_nxt = self.snd_una;
        self.rtt_timing = None;
        self.rexmit_one = false;
        self.timers.set(TimerKind::Rexmt, now + self.rto());
        false
    }

    /// The persist timer (FreeBSD `tcp_timer_persist`): one more zero-window probe, or
    /// the end of the connection (true, with a RST): for an orphan whose peer kept its
    /// window closed through `orphan_persist_probes` probes (Linux's `tcp_probe_timer`
    /// with `tcp_orphan_retries`), and for a connection the application has closed once
    /// the peer has sent nothing for longer than [`PERSIST_MAX_IDLE`] (FreeBSD: "If the
    /// user has closed the socket then drop a persisting connection after a much reduced
    /// timeout").
    fn timer_persist(&mut self, now: Instant) -> bool {
        let orphan_done = self.orphaned
            && self.snd_wnd == 0
            && self.persist_shift >= self.cfg.orphan_persist_probes;
        let silent =
            self.fin_queued() && now.saturating_duration_since(self.last_rx) > PERSIST_MAX_IDLE;
        if orphan_done || silent {
            if orphan_done {
                self.cfg.bounds.count(|c| &c.orphan_persist_dropped);
            }
            self.send_rst = true;
            self.drop_with(TcpError::TimedOut);
            return true;
        }
        self.force_one = true;
        self.persist_shift = self.persist_shift.saturating_add(1);
        let t = self.persist_interval();
        self.timers.set(TimerKind::Persist, now + t);
        false
    }

    /// The keepalive timer (FreeBSD `tcp_timer_keep`): one more probe, or drop the
    /// connection once `count` went unanswered (true).
    fn timer_keep(&mut self, now: Instant) -> bool {
        let Some(ka) = self.cfg.keepalive else {
            return false;
        };
        if !matches!(
            self.state,
            State::Established | State::CloseWait | State::FinWait2
        ) {
            return false;
        }
        if self.keep_probes >= ka.count {
            self.send_rst = true;
            self.drop_with(TcpError::TimedOut);
            return true;
        }
        self.keep_probes += 1;
        self.keep_probe_due = true;
        self.timers.set(TimerKind::Keepalive, now + ka.interval);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn next_is_earliest_and_expired_disarms() {
        let t0 = Instant::now();
        let mut t = Timers::new(t0);
        assert_eq!(t.next(), None);
        t.set(TimerKind::Delack, t0 + Duration::from_millis(40));
        t.set(TimerKind::Rexmt, t0 + Duration::from_millis(200));
        t.set(TimerKind::Keepalive, t0 + Duration::from_millis(10));
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(10)));
        let mut due = t.expired(t0 + Duration::from_millis(50));
        assert_eq!(
            due.as_mut_slice(),
            &[TimerKind::Keepalive, TimerKind::Delack]
        );
        assert!(t.is_set(TimerKind::Rexmt));
        assert!(!t.is_set(TimerKind::Delack));
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(200)));
    }

    #[test]
    fn expired_orders_by_deadline_then_table_order() {
        let t0 = Instant::now();
        let mut t = Timers::new(t0);
        let ms = |n| t0 + Duration::from_millis(n);
        t.set(TimerKind::Tlp, ms(5));
        t.set(TimerKind::TwoMsl, ms(30));
        t.set(TimerKind::Rexmt, ms(30));
        t.set(TimerKind::Persist, ms(1));
        t.set(TimerKind::Delack, ms(90));
        let mut due = t.expired(ms(30));
        assert_eq!(
            due.as_mut_slice(),
            &[
                TimerKind::Persist,
                TimerKind::Tlp,
                TimerKind::Rexmt,
                TimerKind::TwoMsl
            ]
        );
        assert_eq!(t.next(), Some(ms(90)));
        assert_eq!(t.expired(ms(30)).as_mut_slice(), &[]);
    }
}
