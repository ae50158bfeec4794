//! Window arithmetic shared by every congestion-control module, plus the RFC 5681/6582
//! fast-recovery inflation the transport applies, so no module or transport copies it.
//!
//! Everything is in bytes and saturating: a window never wraps, whatever the inputs.

use crate::{AckInfo, CcSignal, CcVars, Recovery};

/// Largest useful cwnd: the largest window a peer can advertise (65535 << 14, RFC 7323 §2.3's
/// maximum shift). Growth stops here, which also leaves the transport headroom for fast
/// recovery inflation without saturating. A larger cwnd handed over by another module is
/// kept, not cut.
pub const MAX_CWND: u32 = 65_535 << 14;

/// ABC's limit L in segments (RFC 3465): the most one ACK may grow cwnd in slow start
/// (and, a bound every module keeps, in congestion avoidance; there the credit toward
/// growth is every byte the ACK covers, see [`growth_credit`]). RFC 3465 permits L = 2*SMSS
/// (and no more); RFC 5681 §3.1 notes that "\[RFC3465\] allows for cwnd increases of more than
/// SMSS bytes for incoming acknowledgments during slow start on an experimental basis;
/// however, such behavior is not allowed as part of the standard." We follow FreeBSD's
/// default (`net.inet.tcp.abc_l_var = 2`), which lets slow start double per RTT even when
/// the receiver delays its ACKs.
pub const ABC_LIMIT_SEGS: u32 = 2;

/// ABC's limit while slow-starting after an RTO: RFC 3465 asks for L = 1*SMSS there, because
/// ACKs for data that had already reached the receiver before the timeout can cover large
/// ranges. FreeBSD's `newreno_ack_received`: "Must not use abc_l_var > 1 if slow starting
/// after an RTO" (it tests snd_nxt < snd_max; here the transport says [`crate::Recovery::Rto`]).
pub const ABC_LIMIT_SEGS_AFTER_RTO: u32 = 1;

/// The initial window for a sender MSS of `maxseg`.
pub fn initial_window(maxseg: u32) -> u32 {
    let mss = maxseg.max(1);
    // RFC 6928 §2: "More precisely, the upper bound for the initial window will be
    // min (10*MSS, max (2*MSS, 14600))".
    mss.saturating_mul(10)
        .min(mss.saturating_mul(2).max(14_600))
}

/// The loss window: cwnd right after an RTO.
pub fn loss_window(maxseg: u32) -> u32 {
    // RFC 5681 §3.1: "upon a timeout ... cwnd MUST be set to no more than the loss window,
    // LW, which equals 1 full-sized segment (regardless of the value of IW)."
    maxseg.max(1)
}

/// The floor of ssthresh after any reduction: two segments (RFC 5681 eq. (4)).
pub fn min_ssthresh(maxseg: u32) -> u32 {
    maxseg.max(1).saturating_mul(2)
}

/// Reno's ssthresh after a loss, from the flight at the time it was detected.
pub fn reno_ssthresh(in_flight: u32, maxseg: u32) -> u32 {
    // RFC 5681 §3.1, equation (4): "ssthresh = max (FlightSize / 2, 2*SMSS)".
    (in_flight / 2).max(min_ssthresh(maxseg))
}

/// Apply a multiplicative decrease: ssthresh becomes `ssthresh` (floored at two segments) and
/// cwnd drops to it. RFC 5681 §3.2 and RFC 3168 §6.1.2 set cwnd to ssthresh; when cwnd is
/// already below the new ssthresh (cwnd under two segments, or a flight larger than twice
/// cwnd) it is kept, because a congestion signal must never open the window. The sender then
/// slow-starts back up to ssthresh. CUBIC passes its own beta-scaled ssthresh here.
pub fn reduce(v: &mut CcVars, ssthresh: u32) {
    v.ssthresh = ssthresh.max(min_ssthresh(v.maxseg));
    v.cwnd = v.cwnd.min(v.ssthresh).max(loss_window(v.maxseg));
}

/// The bytes one ACK may add in slow start (and credit toward congestion avoidance) under
/// Appropriate Byte Counting: `min(N, acks * L * SMSS)` where N is `bytes_acked`, L is
/// `limit_segs` ([`ABC_LIMIT_SEGS`] or [`ABC_LIMIT_SEGS_AFTER_RTO`]) and `acks` the number of
/// ACK segments the call stands for (0 counts as 1).
pub fn slow_start_increment(bytes_acked: u32, acks: u32, limit_segs: u32, maxseg: u32) -> u32 {
    // RFC 3465 §2.3: "The limit, L, chosen for the cwnd increase during slow start, controls
    // the aggressiveness of the algorithm." RFC 9406 §4.2 writes the same rule as
    // "cwnd = cwnd + min(N, L*SMSS)".
    let limit = acks
        .max(1)
        .saturating_mul(limit_segs)
        .saturating_mul(maxseg.max(1));
    bytes_acked.min(limit)
}

/// The growth credit one ACK earns, or `None` when the ACK may not grow cwnd at all: it is
/// not an ACK of new data, the transport owns cwnd (fast recovery) or just cut it (CWR), or
/// the sender was not cwnd-limited. In slow start the credit is ABC's `min(N, L*SMSS)` (see
/// [`slow_start_increment`]); in congestion avoidance it is every byte the ACK covers
/// (RFC 5681 §3.1: "count the number of bytes that have been acknowledged by ACKs for new
/// data"; RFC 3465 §2.1 caps slow start only: "bytes_acked is incremented by the number of
/// previously unacknowledged bytes ACKed by each incoming acknowledgment"). The one-SMSS-
/// per-round bound of congestion avoidance comes from counting against cwnd, not from
/// the credit of one ACK: a receiver that acknowledges many segments at once (GRO, SACK
/// compression, stretch ACKs) would otherwise slow the growth by the stretch factor. This
/// is how Linux counts (`tcp_cong_avoid_ai` with the segments acked); FreeBSD caps the
/// credit at L*SMSS per ACK it coalesced. Every module's `ack_received`
/// starts here, so the rules on when a window may grow live in one place.
pub fn growth_credit(sig: CcSignal, ack: &AckInfo, v: &CcVars) -> Option<u32> {
    // A duplicate ACK acknowledges nothing; its inflation is the transport's.
    if sig != CcSignal::Ack || ack.bytes_acked == 0 {
        return None;
    }
    let limit = match ack.recovery {
        Recovery::Open => ABC_LIMIT_SEGS,
        Recovery::Rto => ABC_LIMIT_SEGS_AFTER_RTO,
        // The transport owns cwnd until post_recovery; in CWR the window was just cut.
        Recovery::Fast | Recovery::Cwr => return None,
    };
    // Growth is earned only when cwnd was what limited the sender (FreeBSD's
    // CCF_CWND_LIMITED; RFC 7661's point that an unused window has not been validated).
    if !ack.cwnd_limited {
        return None;
    }
    if !v.in_slow_start() {
        return Some(ack.bytes_acked);
    }
    Some(slow_start_increment(
        ack.bytes_acked,
        ack.acks,
        limit,
        v.maxseg,
    ))
}

/// Restore the invariants every module relies on (cwnd at least one segment, ssthresh at
/// least two) without otherwise touching the window: what `conn_init` does with the vars a
/// new connection or a previous module (TCP_CONGESTION switch) hands over.
pub fn repair(v: &mut CcVars) {
    v.cwnd = v.cwnd.max(loss_window(v.maxseg));
    v.ssthresh = v.ssthresh.max(min_ssthresh(v.maxseg));
}

/// `cwnd + incr`, saturating and capped at [`MAX_CWND`]; never smaller than `cwnd`.
pub fn grow(cwnd: u32, incr: u32) -> u32 {
    cwnd.max(cwnd.saturating_add(incr).min(MAX_CWND))
}

/// The restart window after an idle period.
pub fn restart_window(cwnd: u32, maxseg: u32) -> u32 {
    // RFC 5681 §4.1: "For the purposes of this standard, we define RW = min(IW,cwnd)."
    cwnd.min(initial_window(maxseg))
}

/// Reno's cwnd when fast recovery ends (the full ACK), RFC 6582 §3.2 step 3 option (1).
/// `in_flight` is what is still outstanding after that ACK.
pub fn reno_post_recovery_cwnd(ssthresh: u32, in_flight: u32, maxseg: u32) -> u32 {
    // RFC 6582 §3.2 step 3: "Set cwnd to either (1) min (ssthresh, max(FlightSize, SMSS) +
    // SMSS) or (2) ssthresh, where ssthresh is the value set when fast retransmit was
    // entered, and where FlightSize in (1) is the amount of data presently outstanding."
    // Option (1), as FreeBSD does: option (2) would need burst protection (the RFC: "the
    // implementation is encouraged to take measures to avoid a possible burst of data"),
    // and xstack does not pace.
    let mss = maxseg.max(1);
    ssthresh.min(in_flight.max(mss).saturating_add(mss))
}

/// For the transport: cwnd on entering fast recovery, after the module's `NDupAck` reduction.
pub fn fast_retransmit_inflate(cwnd: u32, maxseg: u32) -> u32 {
    // RFC 5681 §3.2 step 3: "The lost segment starting at SND.UNA MUST be retransmitted and
    // cwnd set to ssthresh plus 3*SMSS. This artificially "inflates" the congestion window
    // by the number of segments (three) that have left the network and which the receiver
    // has buffered." The module already set cwnd (to ssthresh, or less if it was below).
    cwnd.saturating_add(maxseg.saturating_mul(3))
}

/// For the transport: cwnd after each further duplicate ACK during fast recovery.
pub fn dupack_inflate(cwnd: u32, maxseg: u32) -> u32 {
    // RFC 5681 §3.2 step 4: "For each additional duplicate ACK received (after the third),
    // cwnd MUST be incremented by SMSS."
    cwnd.saturating_add(maxseg)
}

/// What Proportional Rate Reduction (RFC 6937) is told on each ACK of a fast-recovery
/// episode. Bytes throughout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrrAck {
    /// `prr_delivered`: data delivered to the receiver since recovery began, this ACK's
    /// included.
    pub prr_delivered: u32,
    /// `prr_out`: data sent (retransmitted or new) since recovery began.
    pub prr_out: u32,
    /// `RecoverFS`: FlightSize when recovery began.
    pub recover_fs: u32,
    /// The target the episode reduces to (the module's ssthresh).
    pub ssthresh: u32,
    /// The pipe estimate after this ACK (RFC 6675 SetPipe()).
    pub pipe: u32,
    /// `DeliveredData` of this ACK: bytes newly acknowledged cumulatively or selectively.
    pub delivered: u32,
    /// SMSS.
    pub maxseg: u32,
}

/// For the transport: RFC 6937 §3.1 with the Slow Start Reduction Bound, the bytes this
/// ACK lets the sender send (`sndcnt`); the transport sets `cwnd = pipe + sndcnt`.
///
/// "if (pipe > ssthresh) { // Proportional Rate Reduction: sndcnt =
/// CEIL(prr_delivered * ssthresh / RecoverFS) - prr_out } else { // Two versions of the
/// Reduction Bound ... // PRR-SSRB: limit = MAX(prr_delivered - prr_out, DeliveredData) +
/// MSS; // Attempt to catch up, as permitted by limit: sndcnt = MIN(ssthresh - pipe,
/// limit) }". "sndcnt = MAX(sndcnt, 0)" is the saturation.
pub fn prr_sndcnt(p: &PrrAck) -> u32 {
    if p.pipe > p.ssthresh {
        let fs = u64::from(p.recover_fs.max(1));
        let share = (u64::from(p.prr_delivered) * u64::from(p.ssthresh)).div_ceil(fs);
        (share.min(u64::from(u32::MAX)) as u32).saturating_sub(p.prr_out)
    } else {
        let limit = p
            .prr_delivered
            .saturating_sub(p.prr_out)
            .max(p.delivered)
            .saturating_add(p.maxseg);
        (p.ssthresh - p.pipe).min(limit)
    }
}

/// For the transport: cwnd after a partial ACK during fast recovery. Never below one
/// segment, as in FreeBSD's `tcp_newreno_partial_ack`.
pub fn partial_ack_deflate(cwnd: u32, bytes_acked: u32, maxseg: u32) -> u32 {
    // RFC 6582 §3.2 step 3, partial acknowledgments: "Deflate the congestion window by the
    // amount of new data acknowledged by the Cumulative Acknowledgment field. If the partial
    // ACK acknowledges at least one SMSS of new data, then add back SMSS bytes to the
    // congestion window."
    let deflated = cwnd.saturating_sub(bytes_acked);
    let mss = maxseg.max(1);
    let back = if bytes_acked >= mss {
        deflated.saturating_add(mss)
    } else {
        deflated
    };
    back.max(mss)
}

/// The undo of a spurious RTO (`CcSignal::RtoErr`: F-RTO RFC 5682, Eifel RFC 3522,
/// DSACK), shared by the modules: cwnd and ssthresh, plus the module's own state `S`,
/// saved at the first expiry of an RTO run and put back if that RTO proves spurious.
/// A real congestion signal (fast retransmit, ECN) forgets it: no undoing past one.
///
/// What it saves is boxed: an RTO is rare and the undo is rarer, while every connection
/// carries a module (a NewReno whose undo held its HyStart state inline was 160 bytes,
/// more than half of it this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtoUndo<S> {
    saved: Option<Box<(u32, u32, S)>>,
}

impl<S> Default for RtoUndo<S> {
    fn default() -> Self {
        Self { saved: None }
    }
}

impl<S> RtoUndo<S> {
    /// Records cwnd, ssthresh and `state` as they are before the first expiry of an RTO
    /// run reduces them.
    pub fn save(&mut self, v: &CcVars, state: S) {
        self.saved = Some(Box::new((v.cwnd, v.ssthresh, state)));
    }

    /// Drops what was saved (a real congestion signal).
    pub fn forget(&mut self) {
        self.saved = None;
    }

    /// On `RtoErr`: puts cwnd and ssthresh back, re-floored to the loss window and the
    /// minimum ssthresh in case the MSS grew meanwhile, and returns the module state to
    /// restore. `None` (and nothing changed) when there is nothing to undo: one undo per
    /// RTO run.
    pub fn restore(&mut self, v: &mut CcVars) -> Option<S> {
        let (cwnd, ssthresh, state) = *self.saved.take()?;
        v.cwnd = cwnd.max(loss_window(v.maxseg));
        v.ssthresh = ssthresh.max(min_ssthresh(v.maxseg));
        Some(state)
    }

    /// For a module's `state()`: `cwnd=C ssthresh=S`, or `-` when nothing is saved.
    pub fn describe(&self) -> String {
        match self.saved.as_deref() {
            Some((cwnd, ssthresh, _)) => format!("cwnd={cwnd} ssthresh={ssthresh}"),
            None => "-".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6937 §3.1: while pipe > ssthresh the sender sends ssthresh/RecoverFS of what is
    // delivered (half, for Reno); once pipe falls to ssthresh, PRR-SSRB lets it catch
    // up by at most what was delivered plus one MSS, never beyond ssthresh.
    #[test]
    fn prr_sends_in_proportion_then_catches_up_by_ssrb() {
        let m = 1000;
        let base = PrrAck {
            prr_delivered: 0,
            prr_out: 0,
            recover_fs: 20 * m,
            ssthresh: 10 * m,
            pipe: 19 * m,
            delivered: m,
            maxseg: m,
        };
        let a = |d, o, pipe| {
            prr_sndcnt(&PrrAck {
                prr_delivered: d,
                prr_out: o,
                pipe,
                ..base
            })
        };
        assert_eq!(a(m, 0, 19 * m), m / 2);
        assert_eq!(a(2 * m, m, 18 * m), 0, "half of 2 MSS already sent");
        assert_eq!(a(4 * m, m, 16 * m), m);
        // Over a whole window of deliveries the proportional part sends ssthresh.
        assert_eq!(a(20 * m, 0, 11 * m), 10 * m);
        // PRR-SSRB: pipe below ssthresh (a burst of losses): catch up by at most
        // delivered + MSS per ACK.
        assert_eq!(a(10 * m, 5 * m, 2 * m), 6 * m);
        assert_eq!(a(10 * m, 10 * m, 2 * m), 2 * m, "DeliveredData + MSS");
        assert_eq!(a(30 * m, 0, 9 * m), m, "never beyond ssthresh");
    }

    // RFC 6928 §2: min (10*MSS, max (2*MSS, 14600)).
    #[test]
    fn initial_window_rfc6928() {
        assert_eq!(initial_window(1460), 14_600);
        assert_eq!(initial_window(536), 5_360); // 10 segments
        assert_eq!(initial_window(1000), 10_000);
        assert_eq!(initial_window(1461), 14_600); // the 14600-byte cap bites above 1460
        assert_eq!(initial_window(8960), 17_920); // jumbo: 2 segments
        assert_eq!(initial_window(65_535), 131_070);
        assert_eq!(initial_window(0), 10);
        assert_eq!(initial_window(u32::MAX), u32::MAX, "saturates, no overflow");
    }

    // RFC 5681 §3.1: LW = 1 segment; eq. (4) floor of 2*SMSS.
    #[test]
    fn loss_window_and_ssthresh_floor() {
        assert_eq!(loss_window(1460), 1460);
        assert_eq!(min_ssthresh(1460), 2920);
        assert_eq!(min_ssthresh(u32::MAX), u32::MAX);
    }

    // RFC 5681 §3.1 eq. (4): ssthresh = max (FlightSize / 2, 2*SMSS).
    #[test]
    fn reno_ssthresh_eq4() {
        assert_eq!(reno_ssthresh(40 * 1460, 1460), 20 * 1460);
        assert_eq!(reno_ssthresh(3 * 1460, 1460), 2 * 1460);
        assert_eq!(reno_ssthresh(0, 1460), 2 * 1460);
        assert_eq!(reno_ssthresh(u32::MAX, 1460), u32::MAX / 2);
    }

    #[test]
    fn rto_undo_restores_once_and_refloors() {
        let mut undo = RtoUndo::default();
        let mut v = CcVars {
            cwnd: 40 * 1460,
            ssthresh: 30 * 1460,
            maxseg: 1460,
        };
        assert_eq!(undo.describe(), "-");
        assert_eq!(undo.restore(&mut v), None::<u8>);
        undo.save(&v, 7u8);
        assert_eq!(
            undo.describe(),
            format!("cwnd={} ssthresh={}", 40 * 1460, 30 * 1460)
        );
        v = CcVars {
            cwnd: 1460,
            ssthresh: 20 * 1460,
            maxseg: 1460,
        };
        assert_eq!(undo.restore(&mut v), Some(7));
        assert_eq!((v.cwnd, v.ssthresh), (40 * 1460, 30 * 1460));
        // One undo per RTO run.
        assert_eq!(undo.restore(&mut v), None);
        // Forgotten after a real congestion signal; re-floored when the MSS grew.
        undo.save(&v, 1);
        undo.forget();
        assert_eq!(undo.restore(&mut v), None);
        undo.save(
            &CcVars {
                cwnd: 1000,
                ssthresh: 1000,
                maxseg: 1000,
            },
            2,
        );
        v.maxseg = 9000;
        assert_eq!(undo.restore(&mut v), Some(2));
        assert_eq!(
            (v.cwnd, v.ssthresh),
            (loss_window(9000), min_ssthresh(9000))
        );
    }

    #[test]
    fn reduce_sets_ssthresh_and_never_opens_cwnd() {
        let mut v = CcVars {
            cwnd: 40 * 1460,
            ssthresh: u32::MAX,
            maxseg: 1460,
        };
        reduce(&mut v, 20 * 1460);
        assert_eq!((v.cwnd, v.ssthresh), (20 * 1460, 20 * 1460));
        // cwnd below the new ssthresh stays where it is.
        let mut v = CcVars {
            cwnd: 1460,
            ssthresh: u32::MAX,
            maxseg: 1460,
        };
        reduce(&mut v, 1000);
        assert_eq!((v.cwnd, v.ssthresh), (1460, 2920));
    }

    // RFC 3465 §2.3 / RFC 9406 §4.2: cwnd += min(N, L*SMSS).
    #[test]
    fn abc_increment_caps_at_l_segments_per_ack() {
        assert_eq!(slow_start_increment(1460, 1, ABC_LIMIT_SEGS, 1460), 1460);
        assert_eq!(
            slow_start_increment(10 * 1460, 1, ABC_LIMIT_SEGS, 1460),
            2 * 1460
        );
        assert_eq!(
            slow_start_increment(10 * 1460, 1, ABC_LIMIT_SEGS_AFTER_RTO, 1460),
            1460
        );
        assert_eq!(
            slow_start_increment(10 * 1460, 3, ABC_LIMIT_SEGS, 1460),
            6 * 1460
        );
        assert_eq!(
            slow_start_increment(10 * 1460, 0, ABC_LIMIT_SEGS, 1460),
            2 * 1460
        );
        assert_eq!(
            slow_start_increment(u32::MAX, u32::MAX, u32::MAX, u32::MAX),
            u32::MAX
        );
    }

    // RFC 3465 §2.1 / RFC 5681 §3.1: in congestion avoidance a (stretch) ACK credits every
    // byte it covers; in slow start ABC's min(N, L*SMSS).
    #[test]
    fn growth_credit_is_capped_in_slow_start_only() {
        let mut v = CcVars::new(1460);
        v.cwnd = 10 * 1460;
        let ack = AckInfo {
            bytes_acked: 8 * 1460,
            cwnd_limited: true,
            ..AckInfo::new(std::time::Instant::now())
        };
        v.ssthresh = 20 * 1460;
        assert_eq!(growth_credit(CcSignal::Ack, &ack, &v), Some(2 * 1460));
        v.ssthresh = 10 * 1460;
        assert_eq!(growth_credit(CcSignal::Ack, &ack, &v), Some(8 * 1460));
        let fast = AckInfo {
            recovery: Recovery::Fast,
            ..ack
        };
        assert_eq!(growth_credit(CcSignal::Ack, &fast, &v), None);
    }

    #[test]
    fn grow_saturates_and_caps() {
        assert_eq!(grow(1000, 460), 1460);
        assert_eq!(grow(MAX_CWND - 10, 1460), MAX_CWND);
        assert_eq!(
            grow(u32::MAX - 1, 1460),
            u32::MAX - 1,
            "above the cap: kept, not cut"
        );
    }

    // RFC 5681 §4.1: RW = min(IW, cwnd).
    #[test]
    fn restart_window_rfc5681_4_1() {
        assert_eq!(restart_window(100 * 1460, 1460), 14_600);
        assert_eq!(restart_window(4 * 1460, 1460), 4 * 1460);
    }

    // RFC 6582 §3.2 step 3, option (1).
    #[test]
    fn post_recovery_cwnd_option_1() {
        let mss = 1460;
        assert_eq!(reno_post_recovery_cwnd(20 * mss, 5 * mss, mss), 6 * mss);
        assert_eq!(reno_post_recovery_cwnd(20 * mss, 30 * mss, mss), 20 * mss);
        assert_eq!(reno_post_recovery_cwnd(20 * mss, 0, mss), 2 * mss);
        assert_eq!(reno_post_recovery_cwnd(u32::MAX, u32::MAX, mss), u32::MAX);
    }

    // RFC 5681 §3.2 steps 3-4 and RFC 6582 §3.2 step 3 (partial ACK).
    #[test]
    fn transport_inflation_and_deflation() {
        let mss = 1460;
        assert_eq!(fast_retransmit_inflate(20 * mss, mss), 23 * mss);
        assert_eq!(dupack_inflate(23 * mss, mss), 24 * mss);
        assert_eq!(partial_ack_deflate(24 * mss, 3 * mss, mss), 22 * mss);
        assert_eq!(partial_ack_deflate(24 * mss, 100, mss), 24 * mss - 100);
        assert_eq!(
            partial_ack_deflate(2 * mss, 10 * mss, mss),
            mss,
            "floor of one segment"
        );
        assert_eq!(fast_retransmit_inflate(u32::MAX, mss), u32::MAX);
    }
}
