//! RACK-TLP loss detection (RFC 8985): time-based loss marking with a reordering
//! window, and tail loss probes.
//!
//! RFC 6675 decides loss by counting: a hole is lost once DupThresh segments above it
//! were SACKed. That misses a lost tail (nothing above it can be SACKed, so the sender
//! waits for the RTO) and a lost retransmission (HighRxt only moves up). RACK decides by
//! time instead (RFC 8985 §6: "if a segment was not delivered but a segment sent after it
//! was, the first segment is likely lost"), and TLP (§7) makes the receiver produce the
//! ACK RACK needs when the tail of a flight is lost.
//!
//! Pieces, all per connection:
//!
//! - The send log ([`SentLog`]): one entry per MSS-sized piece of sequence space sent
//!   and not yet cumulatively acknowledged, in sequence order, with its last
//!   transmission time and TSval, and whether it was retransmitted, SACKed or is
//!   deemed lost. A TSO burst is logged as the MSS pieces the device cuts it into, so
//!   a receiver's SACK blocks (which name the pieces) cover whole entries. A block
//!   that covers only part of an entry leaves it un-SACKed: conservative, as the
//!   scoreboard's bound in `tcp/sack.rs`, and never a reason to split (a hostile
//!   receiver cannot make the log grow). Only the sender splits entries, when it
//!   retransmits part of one.
//! - [`Rack`]: RFC 8985's RACK.xmit_ts, end_seq, rtt, fack, reordering_seen, the
//!   DSACK-driven reo_wnd_mult / reo_wnd_persist, and the TLP episode (TLP.end_seq).
//! - The glue in the control block (the `impl Tcb` below): the ACK path calls
//!   [`Tcb::rack_on_ack`] after the scoreboard update, output logs every data segment
//!   ([`Tcb::rack_on_send`]), the RACK reordering timer and the PTO are `TimerKind`s.
//!
//! With RACK on, a lost segment is one the log marks lost: SetPipe() becomes the bytes
//! outstanding, less SACKed and lost ones ([`SentLog::pipe`]; a lost segment resent is in
//! flight again), NextSeg() returns the lowest lost range (then new data), recovery
//! starts when RACK marks a loss rather than on the third duplicate ACK, and the
//! lost-retransmission detection of `tcp/sack.rs` is not used (a retransmission is logged
//! with its own time, so RACK finds its loss the same way). The scoreboard still holds
//! the SACKed ranges, HighRxt and the D-SACK test; RTO recovery is unchanged.
//!
//! Cost: the log is O(segments in flight) in memory, and every query is linear in it
//! at worst, as the scoreboard's are in its ranges. Marking a SACK block is a binary
//! search and a pass over the entries it covers (a flag test for those already
//! SACKed); the pipe is a difference of running sums; loss detection walks the log
//! from SND.UNA and stops at the first original transmission sent after RACK's segment
//! (original transmissions are in sequence order in time, and a retransmission is
//! later than its original), so without loss it stops at once, and in recovery it
//! covers what was sent before the most recently delivered segment. Linux keeps a
//! time-sorted list for the same walk.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use xstack_cc::{CcSignal, Recovery};

use super::cwnd_trace::CcEvent;
use super::rate::{RateEstimator, RateSnap};
use super::sack::DUP_THRESH;
use super::seq::Seq;
use super::tcb::Tcb;
use super::timer::TimerKind;

/// RFC 8985 §7.2: "WCDelAckT stands for worst case delayed ACK timer ... 200 ms".
pub const WC_DEL_ACK: Duration = Duration::from_millis(200);

/// RFC 8985 §6.2 step 4: "RACK.reo_wnd_persist = 16" rounds of recovery before a
/// DSACK-grown window shrinks back.
const REO_WND_PERSIST: u32 = 16;

/// One logged piece of sequence space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sent {
    start: Seq,
    end: Seq,
    /// RFC 8985's Segment.xmit_ts: when it was last sent.
    xmit: Instant,
    /// The TSval it was last sent with (0 without timestamps).
    tsval: u32,
    /// RFC 8985's Segment.retransmitted.
    retrans: bool,
    /// Covered by the peer's SACK blocks.
    sacked: bool,
    /// Deemed lost and not sent again since (RFC 8985's Segment.lost).
    lost: bool,
    /// The delivery-rate snapshot of its last transmission (`tcp/rate.rs`).
    snap: RateSnap,
}

impl Sent {
    fn len(&self) -> u32 {
        self.end.dist(self.start)
    }
}

/// The sender's log of what is in flight (module doc).
#[derive(Debug, Default)]
pub struct SentLog {
    q: VecDeque<Sent>,
    /// Bytes of SACKed entries.
    sacked_bytes: u32,
    /// SACKed entries (RFC 8985's RACK.segs_sacked).
    sacked_segs: u32,
    /// Bytes of entries deemed lost.
    lost_bytes: u32,
    /// Entries deemed lost.
    lost_segs: u32,
}

thread_local! {
    /// [`Rack::update`]'s list of delivered entries, kept between calls.
    static DELIVERED: std::cell::RefCell<Vec<Delivered>> = const {
        std::cell::RefCell::new(Vec::new())
    };
}

/// A newly delivered entry, as RACK's update steps see it.
#[derive(Clone, Copy, Debug)]
struct Delivered {
    end: Seq,
    xmit: Instant,
    tsval: u32,
    retrans: bool,
    /// Delivered by a SACK block (else by the cumulative acknowledgment).
    by_sack: bool,
    /// Its length and delivery-rate snapshot.
    len: u32,
    snap: RateSnap,
}

impl SentLog {
    /// Nothing logged.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Entries logged.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// Heap bytes the log holds (capacity, used or not).
    pub fn allocated(&self) -> usize {
        self.q.capacity() * std::mem::size_of::<Sent>()
    }

    /// Gives back the log's memory when nothing is in flight (an idle connection's).
    pub fn shrink_empty(&mut self) {
        if self.q.is_empty() {
            self.q = VecDeque::new();
        }
    }

    /// Entries currently deemed lost (Linux's `tcpi_lost`).
    pub fn lost_segs(&self) -> u32 {
        self.lost_segs
    }

    /// Index of the first entry whose end is beyond `seq`.
    fn first_ending_after(&self, seq: Seq) -> usize {
        self.q.partition_point(|e| e.end <= seq)
    }

    /// Splits the entry at `i` at `seq` (strictly inside it); the counters do not change
    /// (both halves keep the flags).
    fn split(&mut self, i: usize, seq: Seq) {
        let e = self.q[i];
        debug_assert!(e.start < seq && seq < e.end);
        let (mut a, mut b) = (e, e);
        a.end = seq;
        b.start = seq;
        self.q[i] = a;
        self.q.insert(i + 1, b);
        if e.sacked {
            self.sacked_segs += 1;
        }
        if e.lost {
            self.lost_segs += 1;
        }
    }

    fn unflag(&mut self, i: usize) {
        let e = &mut self.q[i];
        if e.sacked {
            e.sacked = false;
            self.sacked_bytes -= e.end.dist(e.start);
            self.sacked_segs -= 1;
        }
        if e.lost {
            e.lost = false;
            self.lost_bytes -= e.end.dist(e.start);
            self.lost_segs -= 1;
        }
    }

    /// Logs the transmission of `[start, end)` at `now`: new data (beyond what is
    /// logged) in pieces of at most `mss`, or a retransmission, which gives the entries
    /// it covers a new time and takes them out of the lost set.
    #[cfg(test)]
    pub fn on_send(&mut self, start: Seq, end: Seq, now: Instant, tsval: u32, mss: u32) {
        let snap = RateEstimator::default().on_send(now, 0, 0);
        self.on_send_snap(start, end, now, tsval, mss, snap);
    }

    /// [`Self::on_send`] with the transmission's delivery-rate snapshot.
    pub fn on_send_snap(
        &mut self,
        start: Seq,
        end: Seq,
        now: Instant,
        tsval: u32,
        mss: u32,
        snap: RateSnap,
    ) {
        if end <= start {
            return;
        }
        let logged_end = self.q.back().map(|e| e.end);
        let mut new_from = start;
        if let Some(le) = logged_end.filter(|&le| start < le) {
            // A retransmission of (part of) the log.
            let rend = end.min(le);
            let mut i = self.first_ending_after(start);
            if i < self.q.len() && self.q[i].start < start {
                self.split(i, start);
                i += 1;
            }
            while i < self.q.len() && self.q[i].start < rend {
                if self.q[i].end > rend {
                    self.split(i, rend);
                }
                self.unflag(i);
                let e = &mut self.q[i];
                e.xmit = now;
                e.tsval = tsval;
                e.retrans = true;
                e.snap = snap;
                i += 1;
            }
            new_from = le;
        }
        // New data; the log stays contiguous (what is below it was acknowledged).
        let mut s = match logged_end {
            Some(le) => new_from.max(le),
            None => start,
        };
        while s < end {
            // Within one window of sequence space, so `dist` is the length left (adding
            // a huge `mss` to a `Seq` would wrap).
            let e = if end.dist(s) <= mss.max(1) {
                end
            } else {
                s + mss.max(1)
            };
            self.q.push_back(Sent {
                start: s,
                end: e,
                xmit: now,
                tsval,
                retrans: false,
                sacked: false,
                lost: false,
                snap,
            });
            s = e;
        }
    }

    /// The cumulative ACK moved to `una`: drops what it covers and returns the entries
    /// it newly delivered (not SACKed before) whole.
    fn on_cum_ack(&mut self, una: Seq, out: &mut Vec<Delivered>) {
        while let Some(e) = self.q.front().copied() {
            if e.end > una {
                if e.start < una {
                    let i = 0;
                    let cut = una.dist(e.start);
                    let f = &mut self.q[i];
                    f.start = una;
                    if f.sacked {
                        self.sacked_bytes -= cut;
                    }
                    if f.lost {
                        self.lost_bytes -= cut;
                    }
                }
                break;
            }
            self.q.pop_front();
            if e.sacked {
                self.sacked_bytes -= e.len();
                self.sacked_segs -= 1;
            } else {
                out.push(Delivered {
                    end: e.end,
                    xmit: e.xmit,
                    tsval: e.tsval,
                    retrans: e.retrans,
                    by_sack: false,
                    len: e.len(),
                    snap: e.snap,
                });
            }
            if e.lost {
                self.lost_bytes -= e.len();
                self.lost_segs -= 1;
            }
        }
    }

    /// Marks the entries `[l, r)` covers whole as SACKed; returns those newly SACKed.
    fn on_sack(&mut self, l: Seq, r: Seq, out: &mut Vec<Delivered>) {
        let mut i = self.first_ending_after(l);
        while i < self.q.len() && self.q[i].start < r {
            let e = self.q[i];
            if !e.sacked && e.start >= l && e.end <= r {
                if e.lost {
                    self.lost_bytes -= e.len();
                    self.lost_segs -= 1;
                }
                let f = &mut self.q[i];
                f.lost = false;
                f.sacked = true;
                self.sacked_bytes += e.len();
                self.sacked_segs += 1;
                out.push(Delivered {
                    end: e.end,
                    xmit: e.xmit,
                    tsval: e.tsval,
                    retrans: e.retrans,
                    by_sack: true,
                    len: e.len(),
                    snap: e.snap,
                });
            }
            i += 1;
        }
    }

    /// RFC 6675's SetPipe() with RACK's notion of loss: the bytes outstanding in
    /// `[snd_una, snd_max)`, less SACKed and lost ones (Linux's `packets_out -
    /// (sacked_out + lost_out) + retrans_out`: a lost segment sent again is no longer
    /// lost here, so it counts once).
    pub fn pipe(&self, snd_una: Seq, snd_max: Seq) -> u32 {
        snd_max
            .dist(snd_una)
            .saturating_sub(self.sacked_bytes)
            .saturating_sub(self.lost_bytes)
    }

    /// The lowest range deemed lost, up to `mss` (NextSeg() with RACK).
    pub fn next_lost(&self, mss: u32) -> Option<(Seq, u32)> {
        let i = self.q.iter().position(|e| e.lost)?;
        let start = self.q[i].start;
        let mut end = self.q[i].end;
        // Adjacent lost pieces (a split retransmission) go out together, within one MSS.
        for e in self.q.iter().skip(i + 1) {
            if !e.lost || e.start != end || e.end.dist(start) > mss {
                break;
            }
            end = e.end;
        }
        Some((start, end.dist(start).min(mss)))
    }

    /// Marks every entry not SACKed as lost (after an RTO: Linux's `tcp_enter_loss`),
    /// without counting them as RACK's finds. Returns the bytes newly marked.
    fn mark_all_lost(&mut self) -> u32 {
        let mut newly = 0u32;
        for e in self.q.iter_mut() {
            if !e.sacked && !e.lost {
                e.lost = true;
                self.lost_bytes += e.end.dist(e.start);
                self.lost_segs += 1;
                newly = newly.saturating_add(e.end.dist(e.start));
            }
        }
        newly
    }
}

/// RFC 8985 §6.2 step 2: "RACK_sent_after(t1, seq1, t2, seq2): If t1 > t2: Return true.
/// Else if t1 == t2 AND seq1 > seq2: Return true. Else: Return false".
fn sent_after(t1: Instant, seq1: Seq, t2: Instant, seq2: Seq) -> bool {
    t1 > t2 || (t1 == t2 && seq1 > seq2)
}

/// A tail loss probe in flight (RFC 8985 §7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlpEpisode {
    /// TLP.end_seq: "the value of SND.NXT at the time of sending a TLP".
    pub end_seq: Seq,
    /// TLP.is_retrans: the probe resent the last segment (rather than new data).
    pub is_retrans: bool,
    /// The probe's TSval: an ACK echoing it was triggered by the probe.
    pub tsval: Option<u32>,
    /// The range the probe resent (to match a D-SACK).
    pub range: (Seq, Seq),
    /// The window the lost tail was sent in, for the reduction if the probe repaired a
    /// loss: FlightSize when the probe went out, or cwnd if larger (a tail probe goes
    /// out when most of the flight is acknowledged, and RFC 5681's FlightSize of one
    /// segment would floor ssthresh; Linux's Reno halves cwnd here).
    pub flight: u32,
    /// A recovery probe (`TcpConfig::recovery_probe`), sent in fast recovery: the
    /// episode already reduced the window, so what it repairs changes nothing more.
    pub in_recovery: bool,
}

/// RFC 8985's per-connection RACK and TLP state.
#[derive(Debug)]
pub struct Rack {
    /// The send log.
    pub log: SentLog,
    /// RACK.xmit_ts and RACK.end_seq: the most recently sent segment delivered.
    seg: Option<(Instant, Seq)>,
    /// RACK.rtt: the RTT of that segment's delivery.
    rtt: Duration,
    /// RACK.fack: the highest end of a delivered segment.
    fack: Option<Seq>,
    /// RACK.reordering_seen.
    pub reordering_seen: bool,
    /// RACK.reo_wnd_mult.
    reo_wnd_mult: u32,
    /// RACK.reo_wnd_persist.
    reo_wnd_persist: u32,
    /// RACK.dsack_round: the window grows at most once per round trip.
    dsack_round: Option<Seq>,
    /// The reordering window of the last loss detection.
    pub reo_wnd: Duration,
    /// The TLP episode in progress (TLP.end_seq is not None).
    pub tlp: Option<TlpEpisode>,
    /// The PTO fired: the next output sends a probe.
    pub tlp_due: bool,
    /// A probe of new data went out and a second new segment is to follow it at once
    /// (see [`Tcb::output_tlp`]).
    pub tlp_pair: bool,
    /// New data went out or SND.UNA advanced: the PTO is (re)armed after output.
    pub rearm: bool,
    /// The delivery-rate estimator, fed by the log (`tcp/rate.rs`).
    pub rate: RateEstimator,
    /// The time the last transmission was logged with ([`Tcb::rack_on_send`]).
    last_xmit: Option<Instant>,
    /// The connection's counters (`rack_lost`, `rack_reo_timeouts`, `tlp_probes`,
    /// `recovery_probes`, `tlp_recoveries`, `rtos`, `dsacks`) as last added to the stack-wide ones
    /// ([`count`]), their low 32 bits.
    reported: [u32; 7],
}

impl Default for Rack {
    fn default() -> Self {
        Rack {
            log: SentLog::default(),
            rate: RateEstimator::default(),
            seg: None,
            rtt: Duration::ZERO,
            fack: None,
            reordering_seen: false,
            reo_wnd_mult: 1,
            reo_wnd_persist: REO_WND_PERSIST,
            dsack_round: None,
            reo_wnd: Duration::ZERO,
            tlp: None,
            tlp_due: false,
            tlp_pair: false,
            rearm: false,
            last_xmit: None,
            reported: [0; 7],
        }
    }
}

/// What the ACK path tells RACK about one ACK.
#[derive(Clone, Copy, Debug)]
pub struct RackAck<'a> {
    /// SND.UNA after the ACK (the cumulative acknowledgment, if it advanced).
    pub snd_una: Seq,
    /// SND.NXT (RFC 8985 names SND.NXT where BSD means snd_max).
    pub snd_max: Seq,
    /// The ACK's SACK blocks that are not a D-SACK, validated by the scoreboard.
    pub blocks: &'a [(Seq, Seq)],
    /// The ACK carried a D-SACK block.
    pub dsack: Option<(Seq, Seq)>,
    /// The ACK's TSecr, if timestamps are on.
    pub tsecr: Option<u32>,
    /// The connection's minimum RTT (RACK.min_RTT).
    pub min_rtt: Option<Duration>,
}

impl Rack {
    /// RFC 8985 §6.2 steps 1-3 for one ACK: marks what it delivered in the log, then
    /// RACK_update() (the most recently sent delivered segment and its RTT) and
    /// RACK_detect_reordering().
    pub fn update(&mut self, ack: &RackAck<'_>, now: Instant) {
        // The list is per-thread scratch space, so an ACK allocates nothing once the
        // worker has seen its first few (every ACK of data delivers something).
        let mut delivered = DELIVERED.with(|d| std::mem::take(&mut *d.borrow_mut()));
        delivered.clear();
        self.log.on_cum_ack(ack.snd_una, &mut delivered);
        for &(l, r) in ack.blocks {
            self.log.on_sack(l, r, &mut delivered);
        }
        for d in &delivered {
            self.rate
                .on_delivered(d.snap, d.xmit, d.retrans, d.len, now);
        }
        let min_rtt = ack.min_rtt.unwrap_or(Duration::ZERO);
        for d in &delivered {
            let rtt = now.saturating_duration_since(d.xmit);
            if d.retrans {
                // RFC 8985 §6.2 step 2: "If Segment.retransmitted is TRUE: If
                // ACK.ts_option.echo_reply < Segment.tsval: Return. If rtt <
                // RACK.min_RTT: Return" -- the ACK may answer the original transmission,
                // and then this sample says nothing about the retransmission.
                // The echo names the transmission only for what the cumulative ACK
                // delivered: a receiver echoes TS.Recent, which an out-of-order segment
                // does not update (RFC 7323 §4.3), so the ACK carrying the SACK of a
                // retransmission that arrived out of order (a tail loss probe above a
                // hole) echoes an older segment. For SACKed segments the min_RTT test
                // alone decides: an ACK of the original would come less than an RTT
                // after the retransmission.
                if let Some(ecr) = ack.tsecr.filter(|_| !d.by_sack) {
                    if (ecr.wrapping_sub(d.tsval) as i32) < 0 {
                        continue;
                    }
                }
                if rtt < min_rtt {
                    continue;
                }
            }
            let newer = match self.seg {
                None => true,
                Some((t, s)) => sent_after(d.xmit, d.end, t, s),
            };
            if newer {
                // "RACK.rtt = rtt": the samples come in ascending xmit order in the RFC,
                // so the last one kept is the newest segment's.
                self.rtt = rtt;
                self.seg = Some((d.xmit, d.end));
            }
        }
        // RFC 8985 §6.2 step 3: "If Segment.end_seq > RACK.fack: RACK.fack =
        // Segment.end_seq. Else if Segment.end_seq < RACK.fack AND
        // Segment.retransmitted is FALSE: RACK.reordering_seen = TRUE" (in ascending
        // end_seq order).
        delivered.sort_by(|a, b| {
            a.end
                .partial_cmp(&b.end)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        for d in &delivered {
            match self.fack {
                Some(f) if d.end <= f => {
                    if d.end < f && !d.retrans {
                        self.reordering_seen = true;
                    }
                }
                _ => self.fack = Some(d.end),
            }
        }
        // Step 4, the DSACK half of RACK_update_reo_wnd().
        if self.dsack_round.is_some_and(|r| ack.snd_una >= r) {
            self.dsack_round = None;
        }
        if self.dsack_round.is_none() && ack.dsack.is_some() {
            // "RACK.dsack_round = SND.NXT; RACK.reo_wnd_mult += 1; RACK.reo_wnd_persist
            // = 16".
            self.dsack_round = Some(ack.snd_max);
            self.reo_wnd_mult = self.reo_wnd_mult.saturating_add(1);
            self.reo_wnd_persist = REO_WND_PERSIST;
        }
        DELIVERED.with(|d| *d.borrow_mut() = delivered);
    }

    /// RFC 8985 §6.2 step 4: "Else if exiting Fast or RTO recovery: RACK.reo_wnd_persist
    /// -= 1; If RACK.reo_wnd_persist <= 0: RACK.reo_wnd_mult = 1".
    pub fn on_recovery_exit(&mut self) {
        self.reo_wnd_persist = self.reo_wnd_persist.saturating_sub(1);
        if self.reo_wnd_persist == 0 {
            self.reo_wnd_mult = 1;
        }
    }

    /// The DSACK multiplier of the reordering window (RACK.reo_wnd_mult).
    pub fn reo_wnd_mult(&self) -> u32 {
        self.reo_wnd_mult
    }

    /// RFC 8985 §6.2 step 4, RACK_update_reo_wnd()'s result: "If RACK.reordering_seen is
    /// FALSE: If in Fast or RTO recovery: Return 0. Else if RACK.segs_sacked >=
    /// DupThresh: Return 0. Return min(RACK.reo_wnd_mult * RACK.min_RTT / 4, SRTT)".
    pub fn reo_wnd(
        &self,
        in_recovery: bool,
        min_rtt: Option<Duration>,
        srtt: Option<Duration>,
    ) -> Duration {
        if !self.reordering_seen && (in_recovery || self.log.sacked_segs >= DUP_THRESH) {
            return Duration::ZERO;
        }
        let Some(min_rtt) = min_rtt else {
            return Duration::ZERO;
        };
        let w = (min_rtt / 4).saturating_mul(self.reo_wnd_mult);
        srtt.map_or(w, |s| w.min(s))
    }

    /// RFC 8985 §6.2 step 5, RACK_detect_loss(): marks lost every segment sent before
    /// RACK's segment whose time (its RTT plus the reordering window) has passed.
    /// Returns how many were marked and when the next one would be (the RACK
    /// reordering timer), if any.
    pub fn detect_loss(&mut self, now: Instant, reo_wnd: Duration) -> (u32, Option<Instant>) {
        self.reo_wnd = reo_wnd;
        let Some((rack_t, rack_end)) = self.seg else {
            return (0, None);
        };
        let mut marked = 0;
        let mut next: Option<Instant> = None;
        for i in 0..self.log.q.len() {
            let e = self.log.q[i];
            if !sent_after(rack_t, rack_end, e.xmit, e.end) {
                if !e.retrans {
                    // Original transmissions are in time order: none after this one was
                    // sent before RACK's segment (module doc).
                    break;
                }
                continue;
            }
            if e.sacked || e.lost {
                continue;
            }
            // "remaining = Segment.xmit_ts + RACK.rtt + RACK.reo_wnd - Now(); If
            // remaining <= 0: Segment.lost = TRUE ... Else: timeout = max(remaining,
            // timeout)". The timer waits for the last one; any one due then is marked by
            // the same pass.
            let due = e.xmit + self.rtt + reo_wnd;
            if due <= now {
                let f = &mut self.log.q[i];
                f.lost = true;
                self.log.lost_bytes += e.len();
                self.log.lost_segs += 1;
                self.rate.on_lost(e.len());
                marked += 1;
            } else {
                next = Some(next.map_or(due, |n: Instant| n.max(due)));
            }
        }
        (marked, next)
    }
}

/// Adds what a connection's loss-recovery counters gained since the last call to the
/// stack-wide `tcp.rack_*`, `tcp.tlp_*`, `tcp.rtos` and `tcp.dsacks_rx` counters (after
/// each input, timer or kick, in `TcpLayer::flush`).
pub(super) fn count(c: &crate::stats::Counters, tcb: &mut Tcb) {
    use std::sync::atomic::Ordering;
    let st = tcb.stats();
    let now = [
        st.rack_lost,
        st.rack_reo_timeouts,
        st.tlp_probes.into(),
        st.recovery_probes.into(),
        st.tlp_recoveries,
        st.rtos,
        st.dsacks,
    ];
    let ctrs = [
        &c.tcp_rack_lost,
        &c.tcp_rack_reo_timeouts,
        &c.tcp_tlp_probes,
        &c.tcp_recovery_probes,
        &c.tcp_tlp_recoveries,
        &c.tcp_rtos,
        &c.tcp_dsacks_rx,
    ];
    for ((ctr, n), r) in ctrs.iter().zip(now).zip(tcb.rack.reported.iter_mut()) {
        // The low 32 bits are enough: a counter never moves 2^32 between two reports.
        let low = n as u32;
        let delta = low.wrapping_sub(*r);
        if delta != 0 {
            ctr.fetch_add(u64::from(delta), Ordering::Relaxed);
            *r = low;
        }
    }
}

impl Tcb {
    /// RACK-TLP is in use on this connection: on in the settings and SACK negotiated
    /// (RFC 8985 §2: RACK "requires the SACK option").
    pub(crate) fn rack_active(&self) -> bool {
        self.cfg.rack && self.sack_ok && self.state.is_synchronized()
    }

    /// Switches RACK-TLP on or off for this connection. Switched on with data in
    /// flight, the log starts with that data as one transmission at `now`; switched off,
    /// the log, the episode and the timers go.
    pub fn set_rack(&mut self, on: bool, now: Instant) {
        if on == self.cfg.rack {
            return;
        }
        std::sync::Arc::make_mut(&mut self.cfg).rack = on;
        let reported = self.rack.reported;
        *self.rack = Rack::default();
        self.rack.reported = reported;
        self.prr_end();
        self.timers.stop(TimerKind::RackReo);
        self.timers.stop(TimerKind::Tlp);
        if on && self.snd_max > self.data_base() {
            let start = self.snd_una.max(self.data_base());
            let snap = self.rack.rate.on_send(now, 0, self.snd_max.dist(start));
            self.rack
                .log
                .on_send_snap(start, self.snd_max, now, 0, self.t_maxseg, snap);
        }
    }

    /// The send log is kept: for RACK-TLP, or for the delivery-rate samples of a module
    /// that wants them (`tcp/rate.rs`), on a synchronized connection.
    pub(crate) fn send_log_active(&self) -> bool {
        self.rack_active() || (self.state.is_synchronized() && self.cc.wants_rate_samples())
    }

    /// Logs a data or FIN segment `[seq, end)` sent at `now` (`tcp/output.rs`).
    /// Called before `snd_max` moves past it.
    pub(crate) fn rack_on_send(&mut self, seq: Seq, end: Seq, tsval: u32, now: Instant) {
        if !self.send_log_active() || seq < self.data_base() {
            return;
        }
        if (end > self.snd_max || self.recovery == Recovery::Fast) && self.rack_active() {
            // RFC 8985 §7.2: the PTO restarts "after transmitting new data"; a recovery
            // probe waits for silence, so in recovery any transmission restarts it.
            self.rack.rearm = true;
        }
        // The log keeps send order, not the clock of the batch being handled: everything
        // sent while one batch of input is handled shares `now`, and RACK_sent_after
        // (RFC 8985 §6.2) breaks equal times by sequence number, which ranks a
        // retransmission sent after new data of the same instant before that data, so
        // the retransmission was marked lost as soon as the new data was SACKed (a
        // spurious retransmission, seen with BBR as D-SACKs for a third of them). Each
        // transmission gets a time at least a nanosecond after the previous one; the
        // pieces of one TSO segment share it and stay ranked by sequence.
        let xmit = match self.rack.last_xmit {
            Some(t) if t >= now => t + Duration::from_nanos(1),
            _ => now,
        };
        self.rack.last_xmit = Some(xmit);
        let in_flight = self.rack.log.pipe(self.snd_una, self.snd_max);
        let snap = self.rack.rate.on_send(now, in_flight, end.dist(seq));
        self.rack
            .log
            .on_send_snap(seq, end, xmit, tsval, self.t_maxseg, snap);
    }

    /// RACK-TLP's part of one ACK (RFC 8985 §6.2 steps 1-5 and §7.4), after the
    /// scoreboard update and before the congestion-control bookkeeping moves SND.UNA.
    /// `ack` is the ACK's cumulative acknowledgment, `blocks` its SACK blocks without
    /// the D-SACK one.
    pub(crate) fn rack_update(
        &mut self,
        ack: Seq,
        blocks: &[(Seq, Seq)],
        dsack: Option<(Seq, Seq)>,
        tsecr: Option<u32>,
        now: Instant,
    ) {
        let una = if ack > self.snd_una {
            ack
        } else {
            self.snd_una
        };
        let blocks: Vec<(Seq, Seq)> = blocks
            .iter()
            .copied()
            .filter(|&(l, r)| l < r && l >= una && r <= self.snd_max)
            .collect();
        let a = RackAck {
            snd_una: una,
            snd_max: self.snd_max,
            blocks: &blocks,
            dsack,
            tsecr,
            min_rtt: self.rtt.min_rtt(),
        };
        self.rack.update(&a, now);
        // RFC 8985 §7.2: "upon receiving an ACK that cumulatively acknowledges new data";
        // in recovery any ACK (a recovery probe waits for silence).
        if ack > self.snd_una || self.recovery == Recovery::Fast {
            self.rack.rearm = true;
        }
    }

    /// RFC 8985 §7.4, TLP_process_ack(): did the probe repair a loss? Called with the
    /// ACK's facts once SND.UNA moved. `acked` is how far it moved.
    pub(crate) fn tlp_process_ack(
        &mut self,
        ack: Seq,
        acked: u32,
        newly_sacked: u32,
        dsack: Option<(Seq, Seq)>,
        tsecr: Option<u32>,
        now: Instant,
    ) {
        let Some(t) = self.rack.tlp else { return };
        if ack < t.end_seq {
            return;
        }
        // "If TLP.is_retrans is FALSE: TLP.end_seq = None": a probe of new data tells
        // nothing about a loss (RACK finds any from the ACKs it produced).
        if !t.is_retrans {
            self.rack.tlp = None;
            return;
        }
        // A D-SACK of the probe: the original arrived too, nothing was lost.
        if dsack.is_some_and(|(l, r)| l <= t.range.0 && t.range.1 <= r) {
            self.rack.tlp = None;
            return;
        }
        // Which transmission does the ACK answer? With timestamps the echo says: the
        // probe's TSval or later means the probe filled the hole (the original was lost);
        // an older echo means the original arrived first (the probe will be a D-SACK).
        // Without them, as Linux's tcp_process_tlp_ack: an ACK beyond the probe means a
        // loss was repaired; a pure duplicate means both arrived; an ACK that just
        // reaches the probe's end is ambiguous, and the episode waits for the next one.
        let repaired = match (tsecr, t.tsval) {
            (Some(ecr), Some(ts)) if acked > 0 => Some((ecr.wrapping_sub(ts) as i32) >= 0),
            (Some(_), Some(_)) => Some(false),
            _ if ack > t.end_seq => Some(true),
            _ if acked == 0 && newly_sacked == 0 => Some(false),
            _ => None,
        };
        let Some(repaired) = repaired else { return };
        self.rack.tlp = None;
        if repaired && self.cc_started && !t.in_recovery {
            // RFC 8985 §7.4.2: "the TLP retransmission repaired a loss ... the sender
            // MUST invoke a congestion control response equivalent to a fast recovery".
            // The window that lost the segment is the one the probe was sent in.
            self.stats.tlp_recoveries += 1;
            if self.recovery == Recovery::Open {
                let info = xstack_cc::CongInfo {
                    in_flight: self.in_flight().max(t.flight),
                    ..self.cong_info(now)
                };
                self.cc.cong_signal(&mut self.ccv, CcSignal::NDupAck, &info);
                self.ecn_window_reduced();
                self.trace_cc(CcEvent::Loss, now);
            }
        }
    }

    /// RFC 8985 §6.2 step 5 and §6.3: marks losses, starts recovery if this is a new
    /// episode, arms or stops the RACK reordering timer. `from_timer`: the reordering
    /// timer fired.
    pub(crate) fn rack_detect_and_recover(&mut self, now: Instant, from_timer: bool) {
        let in_recovery = self.recovery.in_recovery();
        let reo_wnd = self
            .rack
            .reo_wnd(in_recovery, self.rtt.min_rtt(), self.rtt.srtt());
        let (marked, next) = self.rack.detect_loss(now, reo_wnd);
        self.stats.rack_lost += u64::from(marked);
        if from_timer && marked > 0 {
            self.stats.rack_reo_timeouts += 1;
        }
        match next {
            Some(t) => self.timers.set(TimerKind::RackReo, t),
            None => self.timers.stop(TimerKind::RackReo),
        }
        // A range marked lost earlier and not resent yet needs recovery as much as a new
        // mark: an episode can end (its recovery point covered) while the window still
        // held back a loss found during it, and in the open state nothing resends that
        // range but the RTO. Linux enters recovery whenever packets are marked lost
        // (`tcp_time_to_recover`: `lost_out`).
        let unsent_lost = self.recovery == Recovery::Open && self.rack.log.lost_segs > 0;
        if marked > 0 || unsent_lost {
            // A loss ends any TLP episode's claim on the tail and starts recovery (RFC
            // 8985 §6.2: RACK marks, the sender then runs RFC 6675 recovery with these
            // marks). Once per episode, as RFC 6675 §5 and RFC 6582 say.
            let new_episode = (self.recovery == Recovery::Open && self.snd_una >= self.recover)
                || self.recovery == Recovery::Cwr;
            if new_episode {
                self.enter_fast_recovery(now);
                // RFC 6675 step (4.3)'s fast retransmit goes out whatever the window
                // says, when the lowest lost range starts at SND.UNA (as it does unless
                // that segment was resent recently); otherwise NextSeg() with RACK takes
                // the lowest lost range under the window. PRR's first sndcnt is taken
                // here, for an entry by the RACK timer (no ACK follows).
                self.rexmit_one = self
                    .rack
                    .log
                    .next_lost(self.t_maxseg)
                    .is_some_and(|(s, _)| s == self.snd_una);
                self.prr_on_ack(0, now);
            }
            self.timers.stop(TimerKind::Tlp);
        }
    }

    /// The RACK reordering timer fired (RFC 8985 §6.3, RACK_detect_loss_and_arm_timer).
    pub(crate) fn timer_rack_reo(&mut self, now: Instant) {
        if self.rack_active() && self.snd_max > self.snd_una {
            self.rack_detect_and_recover(now, true);
        }
    }

    /// After an RTO: everything not SACKed is lost (go-back-N resends it).
    pub(crate) fn rack_on_rto(&mut self) {
        let newly = self.rack.log.mark_all_lost();
        self.rack.rate.on_lost(newly);
        self.rack.tlp = None;
        self.rack.tlp_due = false;
        self.timers.stop(TimerKind::RackReo);
        self.timers.stop(TimerKind::Tlp);
    }

    /// RFC 8985 §7.2, TLP_calc_PTO(): "If SRTT is available: PTO = 2 * SRTT. If
    /// FlightSize is equal to one segment: PTO += WCDelAckT ... Else: PTO = 1 sec. If
    /// Now() + PTO > TCP_RTO_expire(): PTO = TCP_RTO_expire() - Now()". At the same
    /// instant the probe goes first (`handle_timeout`) and the RTO waits another RTO.
    fn tlp_deadline(&self, now: Instant) -> Instant {
        let mut pto = match self.rtt.srtt() {
            Some(srtt) => {
                let mut p = srtt * 2;
                if self.in_flight() <= self.t_maxseg {
                    p += WC_DEL_ACK;
                }
                p
            }
            None => Duration::from_secs(1),
        };
        // Never below a millisecond: a LAN's microsecond SRTT would fire before the ACK
        // clock had a chance.
        pto = pto.max(Duration::from_millis(1));
        let at = now + pto;
        match self.timers.deadline(TimerKind::Rexmt) {
            Some(rto) if at > rto => rto.max(now),
            _ => at,
        }
    }

    /// RFC 8985 §7.2: arms the PTO "after transmitting new data or upon receiving an ACK
    /// that cumulatively acknowledges new data", when a probe may be sent: not in
    /// recovery (or in fast recovery, a recovery probe: [`Tcb::probe_allowed`]), data
    /// outstanding, no probe in flight, the window open, and no RACK
    /// reordering timer pending (RACK will decide first). Called once output is done.
    pub(crate) fn tlp_schedule(&mut self, now: Instant) {
        if !self.rack_active() {
            return;
        }
        let eligible = self.probe_allowed()
            && self.snd_max > self.snd_una
            && self.rack.tlp.is_none()
            && self.snd_wnd > 0
            && !self.timers.is_set(TimerKind::RackReo)
            && !self.timers.is_set(TimerKind::Persist);
        if !eligible {
            self.rack.rearm = false;
            self.timers.stop(TimerKind::Tlp);
            return;
        }
        if std::mem::take(&mut self.rack.rearm) || !self.timers.is_set(TimerKind::Tlp) {
            let t = self.tlp_deadline(now);
            self.timers.set(TimerKind::Tlp, t);
        }
    }

    /// The PTO fired: a probe goes out with the next output if one still may.
    pub(crate) fn timer_tlp(&mut self, _now: Instant) {
        if self.rack_active()
            && self.probe_allowed()
            && self.snd_max > self.snd_una
            && self.rack.tlp.is_none()
        {
            self.rack.tlp_due = true;
        }
    }

    /// The highest outstanding range the peer has not SACKed, `[start, end)` (`None`
    /// if it SACKed everything above SND.UNA).
    fn highest_unsacked(&self) -> Option<(Seq, Seq)> {
        let mut end = self.snd_max;
        let mut start = self.snd_una;
        for &(l, r) in self.sb.ranges().iter().rev() {
            if r < end {
                start = r.max(self.snd_una);
                break;
            }
            end = end.min(l);
        }
        (end > start).then_some((start, end))
    }

    /// A probe may be sent in this recovery state: a tail loss probe when open (RFC 8985
    /// §7.2), a recovery probe in fast recovery if `TcpConfig::recovery_probe` says so.
    /// Never after an RTO, whose own timer and go-back-N run that recovery.
    fn probe_allowed(&self) -> bool {
        match self.recovery {
            Recovery::Open => true,
            Recovery::Fast => self.cfg.recovery_probe,
            _ => false,
        }
    }

    /// The second segment of a probe of new data (see [`Tcb::output_tlp`]): the next
    /// new segment, whatever cwnd says; the episode then ends after it.
    pub(crate) fn output_tlp_pair(&mut self, now: Instant) -> Option<super::output::OutSegment> {
        if !std::mem::take(&mut self.rack.tlp_pair) || self.rack.tlp.is_none() {
            return None;
        }
        let seg = self.output_probe(self.snd_max, self.t_maxseg, now)?;
        if let Some(t) = self.rack.tlp.as_mut() {
            t.end_seq = self.snd_max;
        }
        Some(seg)
    }

    /// RFC 8985 §7.3, TLP_send_probe(): "If an unsent segment exists AND the receive
    /// window allows new data to be sent: Transmit the lowest-sequence unsent segment of
    /// up to SMSS ... Else: Retransmit the highest-sequence segment sent so far", whatever
    /// cwnd says; then TLP.end_seq = SND.NXT and the RTO restarts.
    pub(crate) fn output_tlp(&mut self, now: Instant) -> Option<super::output::OutSegment> {
        self.rack.tlp_due = false;
        if !(self.rack_active() && self.probe_allowed() && self.snd_max > self.snd_una) {
            return None;
        }
        let in_recovery = self.recovery != Recovery::Open;
        let mss = self.t_maxseg;
        let flight = self.in_flight();
        let window = flight.max(self.ccv.cwnd);
        let unsent = if self.data_end() > self.snd_max {
            self.data_end().dist(self.snd_max)
        } else {
            0
        };
        let room = self.snd_wnd.saturating_sub(flight);
        let new_data = unsent > 0 && room >= unsent.min(mss);
        // A probe of new data goes out as two segments when two are ready and the peer's
        // window takes them (a deviation from §7.3's one): the usual reason for a silent
        // open connection on a clean path is that the ACK of the whole flight was lost,
        // and a receiver that delays ACKs answers a lone in-order segment only when its
        // delayed-ACK timer fires (40 ms on Linux), but two at once (RFC 9293 §3.8.6.3:
        // "an ACK SHOULD be generated for at least every second full-sized segment").
        self.rack.tlp_pair = new_data && !in_recovery && unsent >= 2 * mss && room >= 2 * mss;
        // The last segment: the last SMSS of what was sent (its FIN goes with it). In
        // recovery, of what was sent and not SACKed: the peer holds the SACKed data, and
        // a resent copy would count as delivered twice in the rate samples (`rate.rs`).
        let (seq, len) = if new_data {
            (self.snd_max, mss)
        } else if in_recovery {
            let (start, end) = self.highest_unsacked()?;
            let len = mss.min(end.dist(start));
            (end - len, len)
        } else {
            (self.snd_max - mss.min(flight), mss)
        };
        let seg = self.output_probe(seq, len, now)?;
        let end = seq
            + seg.payload_len as u32
            + seg.hdr.flags.contains(super::segment::TcpFlags::FIN) as u32;
        self.rack.tlp = Some(TlpEpisode {
            end_seq: self.snd_max,
            is_retrans: !new_data,
            tsval: seg.hdr.options.timestamps.map(|(v, _)| v),
            range: (seq, end),
            flight: window,
            in_recovery,
        });
        if in_recovery {
            self.stats.recovery_probes += 1;
        } else {
            self.stats.tlp_probes += 1;
        }
        // RFC 8985 §7.3: "Upon sending a TLP ... the sender MUST arm the RTO timer".
        self.timers.set(TimerKind::Rexmt, now + self.rto());
        self.timers.stop(TimerKind::Tlp);
        Some(seg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u32 = 1000;

    fn s(n: u32) -> Seq {
        Seq(10_000 + n)
    }

    fn ack<'a>(una: Seq, max: Seq, blocks: &'a [(Seq, Seq)]) -> RackAck<'a> {
        RackAck {
            snd_una: una,
            snd_max: max,
            blocks,
            dsack: None,
            tsecr: None,
            min_rtt: Some(Duration::from_millis(40)),
        }
    }

    // The delivery-rate snapshot's cost, measured: an entry with it is this size, paid per
    // MSS in flight only; an emptied log gives its capacity back (`shrink_empty`, and the
    // idle-release sim test), so an idle connection pays nothing for it.
    #[test]
    fn entry_size_with_the_rate_snapshot_and_release_when_empty() {
        assert_eq!(std::mem::size_of::<RateSnap>(), 56);
        assert_eq!(
            std::mem::size_of::<Sent>(),
            88,
            "32 bytes before the snapshot"
        );
        let mut log = SentLog::default();
        let t = Instant::now();
        log.on_send(s(0), s(10 * M), t, 1, M);
        assert_eq!(log.len(), 10);
        assert!(log.allocated() >= 10 * std::mem::size_of::<Sent>());
        let mut out = Vec::new();
        log.on_cum_ack(s(10 * M), &mut out);
        assert_eq!(out.len(), 10);
        log.shrink_empty();
        assert_eq!(log.allocated(), 0);
    }

    // A piece size beyond the sequence space left must not wrap (found by the fuzzer:
    // `set_rack(true)` with data in flight once logged it with an MSS of u32::MAX).
    #[test]
    fn huge_piece_size_logs_one_entry() {
        let mut log = SentLog::default();
        log.on_send(s(0), s(3 * M), Instant::now(), 0, u32::MAX);
        assert_eq!(log.len(), 1);
        assert_eq!(log.pipe(s(0), s(3 * M)), 3 * M);
    }

    #[test]
    fn log_cuts_bursts_into_mss_pieces_and_resends_update_them() {
        let t0 = Instant::now();
        let mut log = SentLog::default();
        log.on_send(s(0), s(4 * M), t0, 1, M);
        assert_eq!(log.len(), 4);
        let t1 = t0 + Duration::from_millis(5);
        // A retransmission of half of piece 1 splits it.
        log.on_send(s(M), s(M + 500), t1, 2, M);
        assert_eq!(log.len(), 5);
        assert_eq!(log.q[1].xmit, t1);
        assert!(log.q[1].retrans && !log.q[2].retrans);
        assert_eq!(log.pipe(s(0), s(4 * M)), 4 * M);
        let mut d = Vec::new();
        // A block that covers piece 3 and half of piece 2 SACKs piece 3 only.
        log.on_sack(s(2 * M + 500), s(4 * M), &mut d);
        assert_eq!(d.len(), 1);
        assert_eq!(log.pipe(s(0), s(4 * M)), 3 * M);
        d.clear();
        log.on_cum_ack(s(2 * M), &mut d);
        assert_eq!(d.len(), 3, "pieces 0, 1a, 1b");
        assert_eq!(log.pipe(s(2 * M), s(4 * M)), M);
        log.on_cum_ack(s(4 * M), &mut d);
        assert!(log.is_empty());
        assert_eq!((log.sacked_bytes, log.sacked_segs), (0, 0));
    }

    // RFC 8985 §6.2: a segment sent before a delivered one is lost once RACK.rtt plus
    // the reordering window has passed since it was sent.
    #[test]
    fn detect_loss_waits_for_the_reordering_window() {
        let t0 = Instant::now();
        let mut r = Rack::default();
        for k in 0..4 {
            r.log.on_send(
                s(k * M),
                s((k + 1) * M),
                t0 + Duration::from_millis(k as u64),
                0,
                M,
            );
        }
        let now = t0 + Duration::from_millis(43);
        let blocks = [(s(3 * M), s(4 * M))];
        r.update(&ack(s(0), s(4 * M), &blocks), now);
        assert_eq!(r.rtt, Duration::from_millis(40));
        let wnd = r.reo_wnd(
            false,
            Some(Duration::from_millis(40)),
            Some(Duration::from_millis(40)),
        );
        // No reordering seen, fewer than DupThresh SACKed, not in recovery: min_RTT/4.
        assert_eq!(wnd, Duration::from_millis(10));
        let (n, next) = r.detect_loss(now, wnd);
        assert_eq!(n, 0);
        // Segment 2 (sent at 2 ms) is due last: 2 + 40 + 10.
        assert_eq!(next, Some(t0 + Duration::from_millis(52)));
        let (n, next) = r.detect_loss(t0 + Duration::from_millis(52), wnd);
        assert_eq!((n, next), (3, None));
        assert_eq!(r.log.pipe(s(0), s(4 * M)), 0);
        assert_eq!(r.log.next_lost(M), Some((s(0), M)));
    }

    #[test]
    fn reordering_and_dsack_widen_the_window() {
        let t0 = Instant::now();
        let mut r = Rack::default();
        r.log.on_send(s(0), s(4 * M), t0, 0, M);
        let now = t0 + Duration::from_millis(40);
        r.update(&ack(s(0), s(4 * M), &[(s(2 * M), s(3 * M))]), now);
        assert!(!r.reordering_seen);
        // Segment 1 delivered after segment 2 (below RACK.fack), never retransmitted.
        r.update(&ack(s(0), s(4 * M), &[(s(M), s(3 * M))]), now);
        assert!(r.reordering_seen);
        let min = Some(Duration::from_millis(40));
        assert_eq!(r.reo_wnd(true, min, min), Duration::from_millis(10));
        let mut a = ack(s(0), s(4 * M), &[]);
        a.dsack = Some((s(M), s(2 * M)));
        r.update(&a, now);
        assert_eq!(r.reo_wnd_mult(), 2);
        assert_eq!(r.reo_wnd(true, min, min), Duration::from_millis(20));
        // One increase per round trip.
        r.update(&a, now);
        assert_eq!(r.reo_wnd_mult(), 2);
        // Capped by SRTT.
        r.reo_wnd_mult = 100;
        assert_eq!(r.reo_wnd(true, min, min), Duration::from_millis(40));
        // Sixteen recoveries later it is back to 1.
        for _ in 0..REO_WND_PERSIST {
            r.on_recovery_exit();
        }
        assert_eq!(r.reo_wnd_mult(), 1);
    }

    // RFC 8985 §6.2 step 2: an ACK echoing a TSval older than the retransmission answers
    // the original; it must not make RACK think the retransmission was delivered.
    #[test]
    fn ambiguous_retransmission_acks_are_ignored() {
        let t0 = Instant::now();
        let mut r = Rack::default();
        r.log.on_send(s(0), s(2 * M), t0, 100, M);
        let t1 = t0 + Duration::from_millis(50);
        r.log.on_send(s(0), s(M), t1, 150, M);
        let mut a = ack(s(M), s(2 * M), &[]);
        a.tsecr = Some(100);
        r.update(&a, t1 + Duration::from_millis(1));
        assert_eq!(r.seg, None, "the echo names the original transmission");
    }
}
