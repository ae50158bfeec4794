//! The sender's SACK scoreboard (RFC 2018, RFC 2883, RFC 6675): which bytes above
//! SND.UNA the peer has selectively acknowledged, and the RFC 6675 queries built on it
//! (IsLost, SetPipe, NextSeg).
//!
//! The scoreboard is a small sorted `Vec` of disjoint, non-adjacent `[left, right)`
//! ranges, all within `[snd_una, snd_max]`. A receiver reports at most 3 or 4 blocks per
//! ACK and holds a bounded number of out-of-order ranges (ours: 32), so the vector stays
//! short and linear scans beat any tree.
//!
//! A hostile receiver can SACK every other byte (CVE-2019-11478), so the number of
//! ranges is bounded, per connection (`TcpConfig::sack_max_holes`, FreeBSD's
//! `net.inet.tcp.sack.maxholes`) and over all connections
//! (`TcpConfig::sack_global_max_holes`, a gauge in `tcp/bounds.rs`). A block that would
//! make a range beyond either bound is ignored whole: its bytes stay "not SACKed", which
//! is conservative (they may be retransmitted needlessly, never skipped). Blocks that
//! extend or join ranges are always taken. Every query is linear in the ranges, so the
//! work per ACK is bounded by the per-connection limit.
//!
//! Lost retransmissions. RFC 6675 has no way to see that a retransmission was itself
//! lost: HighRxt only moves up, so NextSeg() never returns a range twice in one recovery
//! phase, and the sender waits for the RTO (at 1% random loss against Linux this was
//! most of the transfer time). Linux, before RACK, detected it in `tcp_mark_lost_retrans`:
//! each retransmitted segment remembers `snd_nxt` at the time it went out, and once the
//! receiver SACKs data beyond that point -- data sent *after* the retransmission, which
//! overtook it -- while the retransmitted range is still a hole, the retransmission is
//! lost. RFC 8985 §6 states the idea generally ("if a segment was not delivered but a
//! segment sent after it was, the first segment is likely lost"); this is the
//! sequence-space form of it, without RACK's reordering window. The scoreboard keeps the
//! retransmissions of the current phase in send order ([`Scoreboard::note_rexmit`]) and
//! moves the ones found lost to a list NextSeg() serves first
//! ([`Scoreboard::next_relost`]); their octets leave SetPipe()'s retransmitted share.
//! A range resent again gets a new mark, so it again needs fresh evidence: no loop.
//! With RACK-TLP on (`tcp/rack.rs`) this detection is not used: RACK's send log times
//! each retransmission and marks it lost the same way as a first transmission.
//!
//! RFC 6675 speaks of octets and inclusive "highest sequence number"s; here ends are
//! exclusive, as everywhere else in the engine: RFC 6675's `HighRxt` (the highest octet
//! retransmitted) is `high_rxt - 1`, and "S > HighRxt" reads `S >= high_rxt`.

use std::collections::VecDeque;

use super::bounds::{Gauge, Slot, TcpBounds};
use super::seq::Seq;

/// RFC 6675 §2: "DupThresh: The number of duplicate acknowledgments required to trigger a
/// retransmission. Per \[RFC5681\], this threshold is defined to be 3 duplicate
/// acknowledgments."
pub const DUP_THRESH: u32 = 3;

/// What one ACK's SACK blocks did to the scoreboard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SackUpdate {
    /// Bytes SACKed by this ACK that were neither SACKed nor cumulatively acknowledged
    /// before (RFC 6675's test for a duplicate ACK).
    pub newly_sacked: u32,
    /// The first block was a D-SACK block (RFC 2883): `(left, right)` of the duplicate.
    pub dsack: Option<(Seq, Seq)>,
    /// Blocks ignored as bogus (outside `[snd_una, snd_max]` or empty).
    pub bogus: u32,
    /// Blocks ignored because a new range would have passed a bound (module doc).
    pub refused: u32,
}

/// At most this many retransmissions of one recovery phase are watched for loss. A
/// phase retransmits about one window's losses; beyond the bound a retransmission is
/// simply not watched (its loss falls back to the RTO, as in plain RFC 6675), which keeps
/// the memory per connection fixed (16 bytes an entry).
pub const MAX_WATCHED_REXMITS: usize = 512;

/// A retransmission of the current recovery phase, not yet known delivered or lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Watched {
    /// The retransmitted range `[left, right)`.
    left: Seq,
    right: Seq,
    /// `snd_max` when it was sent: SACKed data at or beyond this was sent after it
    /// (Linux's `TCP_SKB_CB(skb)->ack_seq` in `tcp_mark_lost_retrans`).
    mark: Seq,
}

/// A segment RFC 6675's NextSeg() chose for (re)transmission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rexmit {
    /// First sequence number.
    pub seq: Seq,
    /// Most sequence space to send (up to one SMSS, never into SACKed data).
    pub len: u32,
}

/// The bounds on a scoreboard's ranges (module doc).
#[derive(Debug)]
struct RangeLimit {
    /// Most ranges this scoreboard holds.
    max: usize,
    /// The stack-wide gauge and its limit.
    bounds: TcpBounds,
    global_max: usize,
    /// This scoreboard's units in the stack-wide gauge: as many as it has ranges.
    slot: Option<Slot>,
}

/// The sender's SACK state of one connection.
#[derive(Debug, Default)]
pub struct Scoreboard {
    /// Bounds on `ranges` (none for a default scoreboard).
    limit: Option<RangeLimit>,
    /// SACKed ranges, sorted, disjoint and not adjacent.
    ranges: Vec<(Seq, Seq)>,
    /// One past RFC 6675's `HighRxt`: "The highest sequence number which has been
    /// retransmitted during the current loss recovery phase."
    pub high_rxt: Seq,
    /// RFC 6675's `RescueRxt`: "The highest sequence number which has been optimistically
    /// retransmitted to prevent stalling of the ACK clock when there is loss at the end
    /// of the window and no new data is available for transmission." `None` = undefined.
    pub rescue_rxt: Option<Seq>,
    /// Retransmissions of this phase in send order; their marks never decrease, since
    /// `snd_max` only grows.
    watched: VecDeque<Watched>,
    /// Retransmitted ranges found lost again, still unSACKed, sorted and disjoint: sent
    /// again before anything else (see [`Scoreboard::next_relost`]).
    relost: Vec<(Seq, Seq)>,
}

impl Scoreboard {
    /// An empty scoreboard holding at most `max` ranges, and taking each from the
    /// stack-wide gauge of `bounds`, which stops at `global_max`.
    pub fn with_limits(max: usize, bounds: TcpBounds, global_max: usize) -> Self {
        Scoreboard {
            limit: Some(RangeLimit {
                max,
                bounds,
                global_max,
                slot: None,
            }),
            ..Scoreboard::default()
        }
    }

    /// Room for one more range, taken from the stack-wide gauge; false (and counted)
    /// when a bound says no.
    fn reserve_range(&mut self) -> bool {
        let Some(lim) = self.limit.as_mut() else {
            return true;
        };
        if self.ranges.len() >= lim.max {
            lim.bounds.count(|c| &c.sack_conn_limit);
            return false;
        }
        let ok = match lim.slot.as_mut() {
            Some(slot) => slot.take_more(1, lim.global_max),
            None => {
                lim.slot = lim.bounds.try_take(Gauge::SackHoles, 1, lim.global_max);
                lim.slot.is_some()
            }
        };
        if !ok {
            lim.bounds.count(|c| &c.sack_global_limit);
        }
        ok
    }

    /// Gives back the stack-wide units of ranges that went away (merged or acknowledged).
    fn release_ranges(&mut self) {
        let held = self.ranges.len();
        if let Some(slot) = self.limit.as_mut().and_then(|l| l.slot.as_mut()) {
            let extra = slot.units().saturating_sub(held);
            slot.give_back(extra);
        }
    }

    /// Nothing SACKed.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The SACKed ranges, lowest first.
    pub fn ranges(&self) -> &[(Seq, Seq)] {
        &self.ranges
    }

    /// Heap bytes its lists hold (capacity, used or not).
    pub fn allocated(&self) -> usize {
        use std::mem::size_of;
        (self.ranges.capacity() + self.relost.capacity()) * size_of::<(Seq, Seq)>()
            + self.watched.capacity() * size_of::<Watched>()
    }

    /// Gives back the memory of the lists that are empty (an idle connection's).
    pub fn shrink_empty(&mut self) {
        if self.ranges.is_empty() {
            self.ranges = Vec::new();
        }
        if self.relost.is_empty() {
            self.relost = Vec::new();
        }
        if self.watched.is_empty() {
            self.watched = VecDeque::new();
        }
    }

    /// Forgets everything SACKed (RFC 2018 §8, after a timeout that may mean reneging).
    pub fn clear(&mut self) {
        self.ranges.clear();
        self.relost.clear();
        self.release_ranges();
    }

    /// A new loss recovery phase (or an RTO) begins at `snd_una`: nothing retransmitted
    /// in it yet (RFC 6675 §5 step (4.3) then sets HighRxt and RescueRxt as the first
    /// retransmission goes out), nothing watched, nothing to resend.
    pub fn begin_phase(&mut self, snd_una: Seq) {
        self.high_rxt = snd_una;
        self.rescue_rxt = None;
        self.watched.clear();
        self.relost.clear();
    }

    /// Records a retransmission of `[left, right)` sent while `snd_max` was `snd_max`,
    /// to be declared lost if data sent after it is SACKed first. A range found lost
    /// before and now resent leaves the to-resend list; its new mark means it needs new
    /// evidence before it can be declared lost again.
    pub fn note_rexmit(&mut self, left: Seq, right: Seq, snd_max: Seq) {
        self.remove_relost(left, right);
        if self.watched.len() < MAX_WATCHED_REXMITS {
            self.watched.push_back(Watched {
                left,
                right,
                mark: snd_max,
            });
        }
    }

    /// Lost-retransmission detection (see the module doc): every watched retransmission
    /// that enough data sent after it overtook is decided -- delivered if nothing of it
    /// is a hole any more, otherwise lost, and its holes go to the to-resend list.
    /// Returns how many retransmissions were found lost. Amortised O(1) per
    /// retransmission: marks are in send order, so the decided ones are a prefix of the
    /// queue.
    ///
    /// "Enough" is RFC 6675's own reordering allowance, IsLost() applied to the data
    /// sent after the retransmission: DupThresh discontiguous SACKed ranges, or more than
    /// (DupThresh - 1) * SMSS bytes, at or above the mark (SACKed octets there were all
    /// first sent after the retransmission). Linux's tcp_mark_lost_retrans took a single
    /// SACKed octet beyond the mark; on a path that reorders by a few segments (the
    /// simulator's jitter) that resent delivered retransmissions, which RFC 8985 answers
    /// with its reordering window and this with DupThresh, as for first transmissions.
    pub fn detect_lost_rexmits(&mut self, snd_una: Seq, mss: u32) -> u32 {
        let mut lost = 0;
        while let Some(w) = self.watched.front().copied() {
            if !self.is_lost(w.mark - 1, mss) {
                break;
            }
            self.watched.pop_front();
            let left = w.left.max(snd_una);
            let holes: Vec<(Seq, Seq)> =
                self.holes(left, w.right).filter(|&(l, r)| l < r).collect();
            if !holes.is_empty() {
                lost += 1;
                for (l, r) in holes {
                    self.add_relost(l, r);
                }
            }
        }
        lost
    }

    /// The lowest range found lost again, up to one SMSS (sent before NextSeg()'s rule
    /// (1): it is below HighRxt, so it is the "smallest unSACKed sequence number" that is
    /// lost, and HighRxt, which only records how far the phase got, stays where it is).
    pub fn next_relost(&self, mss: u32) -> Option<Rexmit> {
        self.relost.first().map(|&(l, r)| Rexmit {
            seq: l,
            len: r.dist(l).min(mss),
        })
    }

    /// Octets found lost again that are below HighRxt: SetPipe() counts them as
    /// retransmitted and in flight, but that retransmission left the network.
    fn relost_below_high_rxt(&self, snd_una: Seq) -> u32 {
        let high_rxt = self.high_rxt.max(snd_una);
        self.relost
            .iter()
            .filter(|&&(l, _)| l < high_rxt)
            .map(|&(l, r)| r.min(high_rxt).dist(l.max(snd_una)))
            .sum()
    }

    fn add_relost(&mut self, l: Seq, r: Seq) {
        self.remove_relost(l, r);
        let at = self
            .relost
            .iter()
            .position(|&(a, _)| a > l)
            .unwrap_or(self.relost.len());
        self.relost.insert(at, (l, r));
    }

    /// Takes `[l, r)` out of the to-resend list (resent, SACKed or cumulatively ACKed).
    fn remove_relost(&mut self, l: Seq, r: Seq) {
        if self.relost.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(self.relost.len() + 1);
        for &(a, b) in &self.relost {
            if b <= l || a >= r {
                out.push((a, b));
                continue;
            }
            if a < l {
                out.push((a, l));
            }
            if b > r {
                out.push((r, b));
            }
        }
        self.relost = out;
    }

    /// RFC 6675 §4 Update(): records the blocks of one ACK whose cumulative
    /// acknowledgment is `ack`, for a sender whose outstanding data is `[snd_una,
    /// snd_max)` (`snd_una` already moved to `ack` if the ACK advanced it).
    pub fn update(
        &mut self,
        ack: Seq,
        snd_una: Seq,
        snd_max: Seq,
        blocks: &[(Seq, Seq)],
    ) -> SackUpdate {
        let mut up = SackUpdate::default();
        let mut blocks = blocks;
        if let Some(&(l0, r0)) = blocks.first() {
            // RFC 2883 §4: the receiver puts the duplicate in the first block, and a
            // duplicate inside a larger out-of-order block is followed by that block. So
            // the sender reads a first block below the cumulative ACK, or inside the
            // second block, as a D-SACK (the test Linux's tcp_check_dsack makes).
            let below_ack = l0 < ack && l0 < r0;
            let inside_second = blocks
                .get(1)
                .is_some_and(|&(l1, r1)| l1 <= l0 && r0 <= r1 && l0 < r0);
            if below_ack || inside_second {
                up.dsack = Some((l0, r0));
                // A D-SACK reports data the receiver got twice, not new data: it does not
                // go into the scoreboard (RFC 2883's abstract: it lets the sender "infer
                // when it has unnecessarily retransmitted a packet").
                blocks = &blocks[1..];
            }
        }
        for &(l, r) in blocks {
            // Validate: a block must be non-empty and lie within what is outstanding.
            // Anything else is bogus (a confused or malicious peer) and ignored whole,
            // rather than clipped, so it cannot shrink the pipe estimate.
            let nonempty = matches!(l.partial_cmp(&r), Some(std::cmp::Ordering::Less));
            if !nonempty || l < snd_una || r > snd_max {
                up.bogus += 1;
                continue;
            }
            match self.insert(l, r) {
                Some(new) => up.newly_sacked += new,
                None => {
                    up.refused += 1;
                    continue;
                }
            }
            self.remove_relost(l, r);
        }
        up
    }

    /// Adds `[l, r)`; returns how many of its bytes were not SACKed before, or `None`
    /// when it would have been a new range beyond a bound (nothing changed).
    fn insert(&mut self, l: Seq, r: Seq) -> Option<u32> {
        let touches = self.ranges.iter().any(|&(a, b)| a <= r && b >= l);
        if !touches && !self.reserve_range() {
            return None;
        }
        let mut new = r.dist(l);
        let (mut nl, mut nr) = (l, r);
        self.ranges.retain(|&(a, b)| {
            if a <= r && b >= l {
                // Overlapping or adjacent: merge. The overlaps with the (disjoint) old
                // ranges are disjoint too, so subtracting each counts no byte twice.
                let (ol, or) = (a.max(l), b.min(r));
                if or > ol {
                    new -= or.dist(ol);
                }
                nl = nl.min(a);
                nr = nr.max(b);
                false
            } else {
                true
            }
        });
        let at = self
            .ranges
            .iter()
            .position(|&(a, _)| a > nl)
            .unwrap_or(self.ranges.len());
        self.ranges.insert(at, (nl, nr));
        self.release_ranges();
        Some(new)
    }

    /// The cumulative ACK moved to `snd_una`: drop what it covers.
    pub fn advance(&mut self, snd_una: Seq) {
        let before = self.ranges.len();
        self.ranges.retain(|&(_, r)| r > snd_una);
        if self.ranges.len() < before {
            self.release_ranges();
        }
        if let Some(first) = self.ranges.first_mut() {
            if first.0 < snd_una {
                first.0 = snd_una;
            }
        }
        if self.high_rxt < snd_una {
            self.high_rxt = snd_una;
        }
        self.relost.retain(|&(_, r)| r > snd_una);
        if let Some(first) = self.relost.first_mut() {
            if first.0 < snd_una {
                first.0 = snd_una;
            }
        }
    }

    /// The right edge of the highest SACKed range (RFC 6675: "the highest octet covered
    /// by any received SACK", plus one).
    pub fn high_sacked(&self) -> Option<Seq> {
        self.ranges.last().map(|&(_, r)| r)
    }

    /// The end of the SACKed range containing `seq`, if `seq` is SACKed.
    pub fn sacked_end(&self, seq: Seq) -> Option<Seq> {
        self.ranges
            .iter()
            .find(|&&(l, r)| seq.in_range(l, r))
            .map(|&(_, r)| r)
    }

    /// The start of the first SACKed range above `seq`.
    pub fn next_sacked_start(&self, seq: Seq) -> Option<Seq> {
        self.ranges.iter().find(|&&(l, _)| l > seq).map(|&(l, _)| l)
    }

    /// SACKed bytes in `[from, to)`.
    pub fn sacked_between(&self, from: Seq, to: Seq) -> u32 {
        self.ranges
            .iter()
            .filter(|&&(l, r)| r > from && l < to)
            .map(|&(l, r)| r.min(to).dist(l.max(from)))
            .sum()
    }

    /// SACKed ranges and bytes above `seq` (sequence numbers greater than it).
    fn sacked_above(&self, seq: Seq) -> (u32, u32) {
        let mut n = 0;
        let mut bytes = 0;
        for &(l, r) in &self.ranges {
            if r > seq + 1 {
                n += 1;
                bytes += r.dist(l.max(seq + 1));
            }
        }
        (n, bytes)
    }

    /// RFC 6675 §4 IsLost(SeqNum): "This routine returns whether the given sequence
    /// number is considered to be lost. The routine returns true when either DupThresh
    /// discontiguous SACKed sequences have arrived above 'SeqNum' or more than
    /// (DupThresh - 1) * SMSS bytes with sequence numbers greater than 'SeqNum' have
    /// been SACKed." Discontiguous sequences are counted as SACKed ranges, which also
    /// covers runs of segments smaller than SMSS that the byte rule would miss.
    pub fn is_lost(&self, seq: Seq, mss: u32) -> bool {
        let (n, bytes) = self.sacked_above(seq);
        n >= DUP_THRESH || bytes > (DUP_THRESH - 1) * mss
    }

    /// The unSACKed holes of `[snd_una, snd_max)`, lowest first.
    fn holes(&self, snd_una: Seq, snd_max: Seq) -> impl Iterator<Item = (Seq, Seq)> + '_ {
        // The MSS only matters to IsLost(), which is dropped here.
        self.holes_lost(snd_una, snd_max, 0).map(|(l, r, _)| (l, r))
    }

    /// The unSACKed holes of `[snd_una, snd_max)`, lowest first, each with IsLost() of
    /// its octets. Within one hole the SACKed data above every octet is the same: the
    /// ranges after it, whose count and bytes are kept as a running suffix. One pass,
    /// O(ranges) for all holes: calling [`Scoreboard::is_lost`] per hole is
    /// O(ranges) each, and with the hundreds of holes of a slow-start overshoot the
    /// quadratic cost per pipe/NextSeg query, paid for every ACK and every segment sent,
    /// stalled the worker for tens of milliseconds per batch (measured in
    /// `veth_bottleneck`'s cwnd trace: ACKs handled in bursts 45-150 ms apart, whose RTT
    /// samples pushed SRTT from ~50 ms to 250 ms).
    fn holes_lost(
        &self,
        snd_una: Seq,
        snd_max: Seq,
        mss: u32,
    ) -> impl Iterator<Item = (Seq, Seq, bool)> + '_ {
        let mut n_above = self.ranges.len() as u32;
        let mut bytes_above: u32 = self.ranges.iter().map(|&(l, r)| r.dist(l)).sum();
        let lost = move |n: u32, bytes: u32| n >= DUP_THRESH || bytes > (DUP_THRESH - 1) * mss;
        let mut cur = snd_una;
        let mut i = 0;
        std::iter::from_fn(move || loop {
            if cur >= snd_max {
                return None;
            }
            match self.ranges.get(i) {
                Some(&(l, r)) => {
                    i += 1;
                    let hole = (cur, l.min(snd_max));
                    // SACKed above the hole: this range and those after it (the hole is
                    // non-empty, so all of this range lies above its first octet).
                    let is_lost = lost(n_above, bytes_above);
                    n_above -= 1;
                    bytes_above -= r.dist(l);
                    cur = cur.max(r);
                    if hole.1 > hole.0 {
                        return Some((hole.0, hole.1, is_lost));
                    }
                }
                None => {
                    let hole = (cur, snd_max);
                    cur = snd_max;
                    return Some((hole.0, hole.1, false));
                }
            }
        })
    }

    /// RFC 6675 §4 SetPipe(): "for each octet in the sequence space between HighACK and
    /// HighData that has not been SACKed: (a) If IsLost (S1) returns false: pipe += 1
    /// octet. (b) If S1 <= HighRxt: pipe += 1 octet." Within one hole the SACKed bytes
    /// above every octet are the same, so IsLost is evaluated once per hole.
    pub fn pipe(&self, snd_una: Seq, snd_max: Seq, mss: u32) -> u32 {
        let high_rxt = self.high_rxt.max(snd_una);
        let mut pipe = 0u32;
        for (hs, he, lost) in self.holes_lost(snd_una, snd_max, mss) {
            if !lost {
                pipe = pipe.saturating_add(he.dist(hs));
            }
            if high_rxt > hs {
                pipe = pipe.saturating_add(high_rxt.min(he).dist(hs));
            }
        }
        // A retransmission found lost is no longer in the network: its octets keep only
        // term (a) (the hole is lost, so usually nothing).
        pipe.saturating_sub(self.relost_below_high_rxt(snd_una))
    }

    /// The lowest segment of a hole at or above `high_rxt` and below the highest SACK
    /// (and lost, if `need_lost`).
    fn first_hole_segment(
        &self,
        snd_una: Seq,
        snd_max: Seq,
        mss: u32,
        need_lost: bool,
    ) -> Option<Rexmit> {
        let high_sacked = self.high_sacked()?;
        let high_rxt = self.high_rxt.max(snd_una);
        for (hs, he, lost) in self.holes_lost(snd_una, snd_max, mss) {
            if hs >= high_sacked {
                break;
            }
            // IsLost of any octet of the hole is the hole's (`holes_lost`).
            let s = hs.max(high_rxt);
            if s < he && (lost || !need_lost) {
                return Some(Rexmit {
                    seq: s,
                    len: he.dist(s).min(mss),
                });
            }
        }
        None
    }

    /// RFC 6675 §4 NextSeg() rule (1): "If there exists a smallest unSACKed sequence
    /// number 'S2' that meets the following three criteria for determining loss, the
    /// sequence range of one segment of up to SMSS octets starting with S2 MUST be
    /// returned. (1.a) S2 is greater than HighRxt. (1.b) S2 is less than the highest
    /// octet covered by any received SACK. (1.c) IsLost (S2) returns true."
    pub fn next_lost(&self, snd_una: Seq, snd_max: Seq, mss: u32) -> Option<Rexmit> {
        self.first_hole_segment(snd_una, snd_max, mss, true)
    }

    /// NextSeg() rule (3): "If the conditions for rules (1) and (2) fail, but there
    /// exists an unSACKed sequence number 'S3' that meets the criteria for detecting loss
    /// given in steps (1.a) and (1.b) above (specifically excluding step (1.c)), then one
    /// segment of up to SMSS octets starting with S3 SHOULD be returned."
    pub fn next_unsacked(&self, snd_una: Seq, snd_max: Seq, mss: u32) -> Option<Rexmit> {
        self.first_hole_segment(snd_una, snd_max, mss, false)
    }

    /// NextSeg() rule (4): "If the conditions for (1), (2), and (3) fail, but there
    /// exists outstanding unSACKed data, we provide the opportunity for a single "rescue"
    /// retransmission per entry into loss recovery. If HighACK is greater than RescueRxt
    /// (or RescueRxt is undefined), then one segment of up to SMSS octets that MUST
    /// include the highest outstanding unSACKed sequence number SHOULD be returned, and
    /// RescueRxt set to RecoveryPoint. HighRxt MUST NOT be updated." The caller sets
    /// RescueRxt.
    pub fn rescue(&self, snd_una: Seq, snd_max: Seq, mss: u32) -> Option<Rexmit> {
        if self.rescue_rxt.is_some_and(|r| snd_una <= r) {
            return None;
        }
        let (hs, he) = self.holes(snd_una, snd_max).last()?;
        let len = he.dist(hs).min(mss);
        Some(Rexmit { seq: he - len, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u32 = 1000;

    fn s(n: u32) -> Seq {
        Seq(10_000 + n)
    }

    /// Segment k is [k*M, (k+1)*M) above base 10000.
    fn seg(k: u32) -> (Seq, Seq) {
        (s(k * M), s((k + 1) * M))
    }

    #[test]
    fn update_merges_counts_new_bytes_and_rejects_bogus_blocks() {
        let mut sb = Scoreboard::default();
        let (una, max) = (s(0), s(10 * M));
        let up = sb.update(una, una, max, &[seg(2)]);
        assert_eq!(
            up,
            SackUpdate {
                newly_sacked: M,
                dsack: None,
                bogus: 0,
                refused: 0,
            }
        );
        // Adjacent blocks merge; a repeat adds nothing new.
        let up = sb.update(una, una, max, &[seg(3), seg(2)]);
        assert_eq!(up.newly_sacked, M);
        assert_eq!(sb.ranges(), &[(s(2 * M), s(4 * M))]);
        // A block beyond snd_max, one below snd_una, and an empty one are ignored.
        let up = sb.update(
            una,
            una,
            max,
            &[(s(9 * M), s(11 * M)), (s(6 * M), s(6 * M)), seg(6)],
        );
        assert_eq!(up.bogus, 2);
        assert_eq!(up.newly_sacked, M);
        assert_eq!(sb.ranges(), &[(s(2 * M), s(4 * M)), seg(6)]);
        // Overlapping a gap: only the bytes not SACKed before count.
        let up = sb.update(una, una, max, &[(s(3 * M), s(7 * M))]);
        assert_eq!(up.newly_sacked, 2 * M);
        assert_eq!(sb.ranges(), &[(s(2 * M), s(7 * M))]);
        sb.advance(s(5 * M));
        assert_eq!(sb.ranges(), &[(s(5 * M), s(7 * M))]);
        sb.advance(s(7 * M));
        assert!(sb.is_empty());
    }

    // RFC 2883 §4: a first block below the cumulative ACK or inside the second block.
    #[test]
    fn dsack_blocks_are_recognised_and_kept_out() {
        let mut sb = Scoreboard::default();
        let up = sb.update(s(4 * M), s(4 * M), s(10 * M), &[seg(1)]);
        assert_eq!(up.dsack, Some(seg(1)));
        assert_eq!((up.newly_sacked, up.bogus), (0, 0));
        let up = sb.update(
            s(4 * M),
            s(4 * M),
            s(10 * M),
            &[seg(6), (s(5 * M), s(8 * M))],
        );
        assert_eq!(up.dsack, Some(seg(6)));
        assert_eq!(up.newly_sacked, 3 * M);
        assert_eq!(sb.ranges(), &[(s(5 * M), s(8 * M))]);
    }

    // RFC 6675 §4 IsLost: 3 discontiguous SACKed sequences or more than 2*SMSS above.
    #[test]
    fn is_lost_needs_dupthresh_segments_above() {
        let mut sb = Scoreboard::default();
        let (una, max) = (s(0), s(10 * M));
        sb.update(una, una, max, &[seg(1), seg(2)]);
        assert!(
            !sb.is_lost(s(0), M),
            "2*SMSS is not more than (DupThresh-1)*SMSS"
        );
        sb.update(una, una, max, &[seg(3)]);
        assert!(sb.is_lost(s(0), M));
        assert!(!sb.is_lost(s(4 * M), M));
        // Three small discontiguous blocks count as three sequences.
        let mut sb = Scoreboard::default();
        sb.update(
            una,
            una,
            max,
            &[(s(100), s(110)), (s(200), s(210)), (s(300), s(310))],
        );
        assert!(sb.is_lost(s(0), M));
    }

    // RFC 6675 §4 SetPipe with a lost hole, a retransmitted hole, and the tail.
    #[test]
    fn pipe_counts_unlost_and_retransmitted_octets() {
        let mut sb = Scoreboard::default();
        let (una, max) = (s(0), s(10 * M));
        // Segment 0 lost; 1-3 SACKed; 4-9 outstanding.
        sb.update(una, una, max, &[seg(1), seg(2), seg(3)]);
        assert_eq!(sb.pipe(una, max, M), 6 * M);
        sb.high_rxt = s(M);
        assert_eq!(sb.pipe(una, max, M), 7 * M);
        // NextSeg rule 1 skips the retransmitted hole; rule 3 has nothing below the
        // highest SACK; the rescue takes the last segment.
        assert_eq!(sb.next_lost(una, max, M), None);
        assert_eq!(sb.next_unsacked(una, max, M), None);
        assert_eq!(
            sb.rescue(una, max, M),
            Some(Rexmit {
                seq: s(9 * M),
                len: M
            })
        );
        sb.rescue_rxt = Some(max);
        assert_eq!(sb.rescue(una, max, M), None);
    }

    #[test]
    fn next_seg_takes_the_lowest_lost_hole_then_unlost_ones() {
        let mut sb = Scoreboard::default();
        let (una, max) = (s(0), s(10 * M));
        // Holes: 0, 2, 6 (+ the tail 8-9); SACKed: 1, 3-5, 7.
        sb.update(una, una, max, &[seg(1), (s(3 * M), s(6 * M)), seg(7)]);
        assert_eq!(
            sb.next_lost(una, max, M),
            Some(Rexmit { seq: s(0), len: M })
        );
        sb.high_rxt = s(M);
        assert_eq!(
            sb.next_lost(una, max, M),
            Some(Rexmit {
                seq: s(2 * M),
                len: M
            })
        );
        sb.high_rxt = s(3 * M);
        // Hole 6 has only one SACKed segment above it: not lost, but rule 3 takes it.
        assert_eq!(sb.next_lost(una, max, M), None);
        assert_eq!(
            sb.next_unsacked(una, max, M),
            Some(Rexmit {
                seq: s(6 * M),
                len: M
            })
        );
    }
    // Lost-retransmission detection (module doc; Linux's tcp_mark_lost_retrans): lost
    // once enough data sent after the retransmission is SACKed (IsLost() above its mark),
    // resent first, out of the pipe, and resent only once per new evidence.
    #[test]
    fn retransmission_is_lost_when_later_data_is_sacked_first() {
        let mut sb = Scoreboard::default();
        let (una, max) = (s(0), s(10 * M));
        sb.update(una, una, max, &[(s(M), s(4 * M))]);
        sb.begin_phase(una);
        // Segment 0 retransmitted while snd_max was segment 10.
        sb.high_rxt = s(M);
        sb.note_rexmit(s(0), s(M), max);
        let max = s(14 * M);
        // SACKs up to the mark: data sent before the retransmission; nothing decided.
        sb.update(una, una, max, &[(s(M), s(10 * M))]);
        assert_eq!(sb.detect_lost_rexmits(una, M), 0);
        assert_eq!(
            sb.pipe(una, max, M),
            5 * M,
            "retransmission + segments 10..14"
        );
        // Two segments sent after it: within the reordering allowance (DupThresh).
        sb.update(una, una, max, &[(s(M), s(12 * M))]);
        assert_eq!(sb.detect_lost_rexmits(una, M), 0);
        assert_eq!(sb.next_relost(M), None);
        // The third: the retransmission is lost.
        sb.update(una, una, max, &[(s(M), s(13 * M))]);
        assert_eq!(sb.detect_lost_rexmits(una, M), 1);
        assert_eq!(sb.next_relost(M), Some(Rexmit { seq: s(0), len: M }));
        assert_eq!(sb.pipe(una, max, M), M, "only segment 13");
        assert_eq!(sb.high_rxt, s(M), "HighRxt untouched");
        // Resent while snd_max is segment 14: out of the to-resend list, and a SACK of
        // segment 13 (sent before the new copy) decides nothing.
        sb.note_rexmit(s(0), s(M), max);
        assert_eq!(sb.next_relost(M), None);
        assert_eq!(sb.pipe(una, max, M), 2 * M);
        sb.update(una, una, max, &[(s(M), s(14 * M))]);
        assert_eq!(sb.detect_lost_rexmits(una, M), 0);
        assert_eq!(sb.next_relost(M), None);
    }

    #[test]
    fn delivered_or_acked_retransmissions_are_not_lost() {
        let mut sb = Scoreboard::default();
        let (una, max) = (s(0), s(10 * M));
        sb.update(una, una, max, &[seg(1), (s(3 * M), s(6 * M))]);
        sb.begin_phase(una);
        sb.note_rexmit(s(0), s(M), max);
        sb.note_rexmit(s(2 * M), s(3 * M), max);
        sb.high_rxt = s(3 * M);
        let max = s(14 * M);
        // Segment 2's copy arrived (SACKed), segment 0's was ACKed; then 10..13.
        sb.update(
            s(M),
            s(M),
            max,
            &[(s(2 * M), s(6 * M)), (s(10 * M), s(13 * M))],
        );
        sb.advance(s(M));
        assert_eq!(sb.detect_lost_rexmits(s(M), M), 0);
        assert_eq!(sb.next_relost(M), None);
        // A relost range that the peer then SACKs or ACKs leaves the list.
        sb.begin_phase(s(M));
        sb.note_rexmit(s(6 * M), s(7 * M), s(10 * M));
        assert_eq!(sb.detect_lost_rexmits(s(M), M), 1);
        assert_eq!(
            sb.next_relost(M),
            Some(Rexmit {
                seq: s(6 * M),
                len: M
            })
        );
        sb.update(s(M), s(M), max, &[seg(6)]);
        assert_eq!(sb.next_relost(M), None);
    }

    #[test]
    fn watched_retransmissions_are_bounded() {
        let mut sb = Scoreboard::default();
        for i in 0..(MAX_WATCHED_REXMITS as u32 + 10) {
            sb.note_rexmit(s(i), s(i + 1), s(100_000));
        }
        assert_eq!(sb.watched.len(), MAX_WATCHED_REXMITS);
        sb.begin_phase(s(0));
        assert!(sb.watched.is_empty());
    }
    // CVE-2019-11478: a receiver SACKing 1-byte blocks with 1-byte gaps. The scoreboard
    // stops at its bound, the extra blocks are refused (not SACKed), blocks that extend
    // a range still count, and the cumulative ACK frees the room again.
    #[test]
    fn one_byte_blocks_stop_at_the_per_connection_bound() {
        let bounds = TcpBounds::default();
        let mut sb = Scoreboard::with_limits(16, bounds.clone(), 1000);
        let (una, max) = (s(0), s(10 * M));
        let mut refused = 0;
        for k in 0..100u32 {
            let up = sb.update(una, una, max, &[(s(2 * k + 1), s(2 * k + 2))]);
            refused += up.refused;
        }
        assert_eq!(sb.ranges().len(), 16);
        assert_eq!(refused, 100 - 16);
        assert_eq!(bounds.load(Gauge::SackHoles), 16);
        let c = bounds.counters().snapshot();
        assert!(c.contains(&("tcp.sack_refused_conn_limit", 84)), "{c:?}");
        // Refused bytes are not SACKed: a hole there stays a hole.
        assert_eq!(sb.sacked_between(s(33), s(200)), 0);
        // Extending a held range is never refused.
        let up = sb.update(una, una, max, &[(s(1), s(3))]);
        assert_eq!((up.refused, up.newly_sacked), (0, 1));
        assert_eq!(sb.ranges().len(), 15, "the extension joined two ranges");
        assert_eq!(bounds.load(Gauge::SackHoles), 15);
        sb.advance(s(20));
        assert_eq!(bounds.load(Gauge::SackHoles), sb.ranges().len());
        sb.clear();
        assert_eq!(bounds.load(Gauge::SackHoles), 0);
    }

    #[test]
    fn scoreboards_share_the_stack_wide_bound() {
        let bounds = TcpBounds::default();
        let mut a = Scoreboard::with_limits(128, bounds.clone(), 10);
        let mut b = Scoreboard::with_limits(128, bounds.clone(), 10);
        let (una, max) = (s(0), s(10 * M));
        for k in 0..8u32 {
            a.update(una, una, max, &[(s(2 * k + 1), s(2 * k + 2))]);
        }
        let mut refused = 0;
        for k in 0..8u32 {
            refused += b
                .update(una, una, max, &[(s(2 * k + 1), s(2 * k + 2))])
                .refused;
        }
        assert_eq!((b.ranges().len(), refused), (2, 6));
        let c = bounds.counters().snapshot();
        assert!(c.contains(&("tcp.sack_refused_global_limit", 6)), "{c:?}");
        // A connection that goes away gives its ranges back.
        drop(a);
        assert_eq!(bounds.load(Gauge::SackHoles), 2);
        let up = b.update(una, una, max, &[(s(101), s(102))]);
        assert_eq!(up.refused, 0);
    }

    /// The per-hole IsLost() of RFC 6675's text, for comparison with `holes_lost`.
    fn naive_pipe(sb: &Scoreboard, una: Seq, max: Seq, mss: u32) -> u32 {
        let high_rxt = sb.high_rxt.max(una);
        let mut pipe = 0;
        for (hs, he) in sb.holes(una, max) {
            if !sb.is_lost(hs, mss) {
                pipe += he.dist(hs);
            }
            if high_rxt > hs {
                pipe += high_rxt.min(he).dist(hs);
            }
        }
        pipe
    }

    fn naive_next_lost(sb: &Scoreboard, una: Seq, max: Seq, mss: u32) -> Option<Rexmit> {
        let high_sacked = sb.high_sacked()?;
        let high_rxt = sb.high_rxt.max(una);
        sb.holes(una, max)
            .take_while(|&(hs, _)| hs < high_sacked)
            .map(|(hs, he)| (hs.max(high_rxt), he))
            .find(|&(s, he)| s < he && sb.is_lost(s, mss))
            .map(|(s, he)| Rexmit {
                seq: s,
                len: he.dist(s).min(mss),
            })
    }

    // The one-pass IsLost (`holes_lost`) agrees with RFC 6675's per-octet definition on
    // random scoreboards, odd-sized blocks included.
    #[test]
    fn one_pass_is_lost_matches_the_definition() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |n: u32| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as u32
        };
        for _ in 0..500 {
            let mut sb = Scoreboard::default();
            let (una, max) = (s(0), s(60 * M));
            for _ in 0..rnd(25) {
                let l = rnd(60 * M - 1);
                let len = if rnd(2) == 0 { M } else { 1 + rnd(3 * M) };
                let r = (l + len).min(60 * M);
                sb.update(una, una, max, &[(s(l), s(r))]);
            }
            sb.high_rxt = s(rnd(60 * M));
            assert_eq!(sb.pipe(una, max, M), naive_pipe(&sb, una, max, M), "{sb:?}");
            assert_eq!(
                sb.next_lost(una, max, M),
                naive_next_lost(&sb, una, max, M),
                "{sb:?}"
            );
        }
    }

    // Linear, not quadratic, in the number of holes: 2000 holes and 2000 SACKed ranges
    // (a large window's slow-start overshoot), queried 2000 times -- ~10^7 steps for one
    // pass per query, ~10^10 (minutes, even optimised) for IsLost per hole. The bound is
    // generous for a loaded machine and a debug build.
    #[test]
    fn pipe_and_next_seg_are_linear_in_the_holes() {
        let n = 2000u32;
        let mut sb = Scoreboard::default();
        let (una, max) = (s(0), s(2 * n * M));
        for k in 0..n {
            sb.update(una, una, max, &[seg(2 * k + 1)]);
        }
        assert_eq!(sb.ranges().len(), n as usize);
        sb.high_rxt = s(n * M);
        let t = std::time::Instant::now();
        let mut acc = 0u64;
        for _ in 0..n {
            acc += sb.pipe(una, max, M) as u64;
            acc += sb.next_lost(una, max, M).map_or(0, |r| r.len as u64);
        }
        let took = t.elapsed();
        assert!(acc > 0);
        assert!(
            took < std::time::Duration::from_secs(10),
            "{n} pipe + NextSeg queries over {n} holes took {took:?}"
        );
    }
}
