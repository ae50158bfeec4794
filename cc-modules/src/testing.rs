//! A model-based test harness for any [`CongestionControl`]: a small model of the transport
//! drives the controller through a sequence of [`Op`]s, following the calling protocol in the
//! crate docs (including the transport's fast-recovery inflation), and checks after every
//! step the invariants every standard module keeps.
//!
//! It has no test-only dependencies, so CUBIC, out-of-tree modules and the stack's own tests
//! can reuse it; random sequences come from the caller (this crate's `tests/model.rs` uses
//! proptest). Checked, with the rule each comes from:
//!
//! - always: `cwnd >= maxseg`, `ssthresh >= 2*maxseg`; `state()` does not panic; arithmetic
//!   does not overflow (a panic in debug builds, a shrinking cwnd in release);
//! - an ACK outside recovery never shrinks cwnd, grows it by at most [`window::ABC_LIMIT_SEGS`]
//!   segments (RFC 3465 §2.3), and not at all if the sender was not cwnd-limited;
//! - a duplicate ACK never grows cwnd; during fast recovery or CWR, `ack_received` leaves
//!   cwnd and ssthresh to the transport;
//! - `NDupAck`/`Ecn` from [`Recovery::Open`] reduce (ssthresh at most max(FlightSize, cwnd,
//!   2*SMSS), cwnd not raised); from any other state they change nothing (RFC 3168 §6.1.2);
//! - `Rto` sets cwnd to the loss window; a backed-off `Rto` holds ssthresh (RFC 5681 §3.1);
//! - `RtoErr` right after an RTO (or a run of them) restores the pre-RTO cwnd and ssthresh
//!   (raised to one and two segments if the MSS grew in between), unless the module was
//!   switched in after the first RTO and so never saw it;
//! - the end of fast recovery leaves cwnd at most max(ssthresh, max(FlightSize, SMSS) + SMSS);
//!   the end of CWR does not raise cwnd;
//! - after an idle period longer than the RTO, cwnd is at most the restart window
//!   (RFC 5681 §4.1);
//! - [`switch`]ing to a fresh controller keeps cwnd and ssthresh.

use std::fmt;
use std::time::{Duration, Instant};

use crate::{
    switch, window, AckInfo, CcSignal, CcVars, CongInfo, CongestionControl, IdleInfo, Recovery,
    RttSample,
};

/// One event of the transport model. Ops that make no sense in the current state (an ACK
/// with nothing in flight, an `RtoErr` with no RTO to undo) are no-ops, so any random
/// sequence is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// The application offers `bytes`; the transport sends what cwnd leaves room for. The
    /// sender counts as cwnd-limited until the next `Send` if the offer filled the room.
    /// Before sending with nothing in flight, the transport calls `after_idle`.
    Send {
        /// Bytes the application wants to send.
        bytes: u32,
    },
    /// A cumulative ACK for up to `bytes` of the flight: `ack_received(Ack)`, or
    /// `post_recovery` if it ends a recovery episode (after partial-ACK deflation in fast
    /// recovery).
    Ack {
        /// Bytes acknowledged, capped at what is in flight.
        bytes: u32,
    },
    /// A duplicate ACK below or above the threshold: inflation in fast recovery, then
    /// `ack_received(DupAck)`.
    DupAck,
    /// The threshold duplicate ACK: `cong_signal(NDupAck)`, then fast recovery with
    /// `cwnd += 3*SMSS`. Ignored in fast recovery and after an RTO (RFC 6582 §3.2 step 1).
    FastRetransmit,
    /// An ACK with ECN-Echo: `cong_signal(Ecn)`; from [`Recovery::Open`], CWR for one window.
    Ecn,
    /// The retransmission timer fires: `cong_signal(Rto)` with the backoff count.
    Rto,
    /// The last RTO was spurious: `cong_signal(RtoErr)`, then the transport restores its
    /// pre-RTO recovery state. Only while still recovering from the RTO.
    RtoErr,
    /// Nothing happens for `millis` (the next `Send` with nothing in flight sees the pause).
    Idle {
        /// Length of the pause.
        millis: u32,
    },
    /// An RTT measurement: the model updates SRTT, min RTT and RTO, then `rtt_sample`.
    RttSample {
        /// The sample, µs (0 counts as 1).
        micros: u32,
    },
    /// The sender MSS changes ([`CcVars::set_maxseg`]).
    MssChange {
        /// The new MSS.
        maxseg: u32,
    },
    /// The socket switches to a fresh controller from the same factory ([`switch`]).
    Switch,
}

/// A broken invariant: which step, what, and the vars around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Index of the op in the sequence.
    pub step: usize,
    /// The op.
    pub op: Op,
    /// The controller's name.
    pub module: &'static str,
    /// Vars before the op.
    pub before: CcVars,
    /// Vars after the op.
    pub after: CcVars,
    /// The rule that broke.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} ({:?}) on '{}': {}; vars before {:?}, after {:?}",
            self.step, self.op, self.module, self.what, self.before, self.after
        )
    }
}

impl std::error::Error for Violation {}

/// The transport model plus the controller under test.
pub struct Harness {
    make: Box<dyn Fn() -> Box<dyn CongestionControl>>,
    cc: Box<dyn CongestionControl>,
    vars: CcVars,
    steps: usize,
    // Transport state, in the transport's vocabulary.
    /// FlightSize: snd_max - snd_una.
    flight: u32,
    cwnd_limited: bool,
    recovery: Recovery,
    /// Bytes still to be acknowledged before the current episode's `recover` is covered.
    recover_left: u32,
    /// t_rxtshift.
    rto_count: u32,
    /// State before the first RTO of the current RTO recovery, for the spurious-RTO undo.
    before_rto: Option<Snapshot>,
    /// The previous op was an RTO that fired.
    rto_just_fired: bool,
    /// The controller saw the first RTO of the current run (no switch since), so it can undo.
    undo_possible: bool,
    round: u64,
    /// Bytes still to be acknowledged before the current round ends.
    round_left: u32,
    // Clock and RTT estimator.
    start: Instant,
    elapsed: Duration,
    last_send: Option<Duration>,
    rto: Duration,
    srtt: Option<Duration>,
    min_rtt: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct Snapshot {
    vars: CcVars,
    recovery: Recovery,
    recover_left: u32,
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

impl Harness {
    /// A connection whose controllers come from `make` (called again for [`Op::Switch`]),
    /// starting from `start` (which should satisfy the invariants: cwnd >= maxseg, ssthresh
    /// >= 2*maxseg). Calls `conn_init` as the transport does at establishment.
    pub fn new(make: impl Fn() -> Box<dyn CongestionControl> + 'static, start: CcVars) -> Self {
        let mut vars = start;
        let mut cc = make();
        cc.conn_init(&mut vars);
        Self {
            make: Box::new(make),
            cc,
            vars,
            steps: 0,
            flight: 0,
            cwnd_limited: false,
            recovery: Recovery::Open,
            recover_left: 0,
            rto_count: 0,
            before_rto: None,
            rto_just_fired: false,
            undo_possible: false,
            round: 0,
            round_left: 0,
            start: Instant::now(),
            elapsed: Duration::ZERO,
            last_send: None,
            rto: Duration::from_secs(1),
            srtt: None,
            min_rtt: None,
        }
    }

    /// Run `ops` on a new harness; the first broken invariant stops the run.
    pub fn run(
        make: impl Fn() -> Box<dyn CongestionControl> + 'static,
        start: CcVars,
        ops: &[Op],
    ) -> Result<Self, Violation> {
        let mut h = Self::new(make, start);
        for &op in ops {
            h.apply(op)?;
        }
        Ok(h)
    }

    /// Apply one op and check the invariants.
    pub fn apply(&mut self, op: Op) -> Result<(), Violation> {
        let before = self.vars;
        let rto_just_fired = std::mem::take(&mut self.rto_just_fired);
        let result = self
            .step(op, before, rto_just_fired)
            .and_then(|()| self.check_always());
        let step = self.steps;
        self.steps += 1;
        result.map_err(|what| Violation {
            step,
            op,
            module: self.cc.name(),
            before,
            after: self.vars,
            what,
        })
    }

    /// The connection's current vars.
    pub fn vars(&self) -> CcVars {
        self.vars
    }

    /// The controller under test.
    pub fn controller(&self) -> &dyn CongestionControl {
        &*self.cc
    }

    /// The model's FlightSize.
    pub fn flight(&self) -> u32 {
        self.flight
    }

    /// The model's recovery state.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    fn now(&self) -> Instant {
        self.start + self.elapsed
    }

    fn ack_info(&self, bytes_acked: u32) -> AckInfo {
        AckInfo {
            bytes_acked,
            acks: 1,
            in_flight: self.flight,
            cwnd_limited: self.cwnd_limited,
            recovery: self.recovery,
            now: self.now(),
            srtt: self.srtt,
            min_rtt: self.min_rtt,
            round: self.round,
        }
    }

    fn cong_info(&self) -> CongInfo {
        CongInfo {
            in_flight: self.flight,
            recovery: self.recovery,
            rto_count: self.rto_count,
            now: self.now(),
        }
    }

    fn step(&mut self, op: Op, before: CcVars, rto_just_fired: bool) -> Result<(), String> {
        self.elapsed += Duration::from_millis(1);
        match op {
            Op::Send { bytes } => self.send(bytes, before),
            Op::Ack { bytes } => self.ack(bytes, before),
            Op::DupAck => self.dup_ack(),
            Op::FastRetransmit => self.fast_retransmit(before),
            Op::Ecn => self.ecn(before),
            Op::Rto => self.rto(before),
            Op::RtoErr => self.rto_err(rto_just_fired),
            Op::Idle { millis } => {
                self.elapsed += Duration::from_millis(millis.into());
                Ok(())
            }
            Op::RttSample { micros } => {
                self.rtt_sample(micros);
                Ok(())
            }
            Op::MssChange { maxseg } => {
                self.vars.set_maxseg(maxseg);
                Ok(())
            }
            Op::Switch => {
                self.cc = switch(&mut self.vars, (self.make)());
                // A module switched in mid-RTO never saw the RTO it would have to undo.
                self.undo_possible = false;
                ensure(self.vars == before, || {
                    "switching modules changed the vars (TCP_CONGESTION keeps them)".into()
                })
            }
        }
    }

    fn send(&mut self, bytes: u32, before: CcVars) -> Result<(), String> {
        if bytes == 0 {
            return Ok(());
        }
        if let (0, Some(last)) = (self.flight, self.last_send) {
            let idle = IdleInfo {
                idle: self.elapsed - last,
                rto: self.rto,
                now: self.now(),
            };
            self.cc.after_idle(&mut self.vars, &idle);
            if idle.exceeds_rto() {
                let rw = window::restart_window(before.cwnd, before.maxseg);
                ensure(self.vars.cwnd <= rw, || {
                    format!(
                        "after {:?} idle (RTO {:?}) cwnd {} is above the restart window {rw} (RFC 5681 §4.1)",
                        idle.idle, idle.rto, self.vars.cwnd
                    )
                })?;
            }
        }
        let room = self.vars.cwnd.saturating_sub(self.flight);
        let sent = bytes.min(room);
        self.cwnd_limited = bytes >= room;
        if sent > 0 {
            self.flight = self.flight.saturating_add(sent);
            self.last_send = Some(self.elapsed);
            if self.round_left == 0 {
                self.round_left = self.flight;
            }
        }
        Ok(())
    }

    fn ack(&mut self, bytes: u32, before: CcVars) -> Result<(), String> {
        if self.flight == 0 || bytes == 0 {
            return Ok(());
        }
        let acked = bytes.min(self.flight);
        self.flight -= acked;
        self.rto_count = 0;
        if acked >= self.round_left {
            self.round += 1;
            self.round_left = self.flight;
        } else {
            self.round_left -= acked;
        }
        let info = self.ack_info(acked);
        match self.recovery {
            Recovery::Fast | Recovery::Cwr => {
                self.recover_left = self.recover_left.saturating_sub(acked);
                if self.recover_left == 0 {
                    self.recovery = Recovery::Open;
                    self.cc.post_recovery(&mut self.vars, &info);
                    let v = self.vars;
                    if info.recovery == Recovery::Cwr {
                        // Nothing was inflated during CWR: there is nothing to deflate either.
                        return ensure(v.cwnd <= before.cwnd, || {
                            format!(
                                "the end of Cwr raised cwnd from {} to {}",
                                before.cwnd, v.cwnd
                            )
                        });
                    }
                    let most = v
                        .ssthresh
                        .max(info.in_flight.max(v.maxseg).saturating_add(v.maxseg));
                    ensure(v.cwnd <= most, || {
                        format!(
                            "the end of fast recovery left cwnd {} above max(ssthresh, max(FlightSize, SMSS) + SMSS) = {most}",
                            v.cwnd
                        )
                    })
                } else {
                    if self.recovery == Recovery::Fast {
                        self.vars.cwnd =
                            window::partial_ack_deflate(self.vars.cwnd, acked, self.vars.maxseg);
                    }
                    let mid = self.vars;
                    self.cc.ack_received(&mut self.vars, CcSignal::Ack, &info);
                    ensure(self.vars == mid, || {
                        format!(
                            "ack_received during {:?} changed {mid:?} to {:?}: the transport owns cwnd until post_recovery",
                            info.recovery, self.vars
                        )
                    })
                }
            }
            Recovery::Open | Recovery::Rto => {
                if self.recovery == Recovery::Rto {
                    self.recover_left = self.recover_left.saturating_sub(acked);
                    if self.recover_left == 0 {
                        self.recovery = Recovery::Open;
                        self.before_rto = None;
                    }
                }
                self.cc.ack_received(&mut self.vars, CcSignal::Ack, &info);
                let v = self.vars;
                ensure(v.cwnd >= before.cwnd, || {
                    format!(
                        "an ACK shrank cwnd from {} to {} (wrapped?)",
                        before.cwnd, v.cwnd
                    )
                })?;
                let growth = v.cwnd - before.cwnd;
                let cap = before.maxseg.saturating_mul(window::ABC_LIMIT_SEGS);
                ensure(growth <= cap, || {
                    format!(
                        "one ACK grew cwnd by {growth}, more than L*SMSS = {cap} (RFC 3465 §2.3)"
                    )
                })?;
                ensure(info.cwnd_limited || growth == 0, || {
                    format!("an ACK grew cwnd by {growth} although the sender was not cwnd-limited")
                })
            }
        }
    }

    fn dup_ack(&mut self) -> Result<(), String> {
        if self.flight == 0 {
            return Ok(());
        }
        if self.recovery == Recovery::Fast {
            self.vars.cwnd = window::dupack_inflate(self.vars.cwnd, self.vars.maxseg);
        }
        let mid = self.vars.cwnd;
        let info = self.ack_info(0);
        self.cc
            .ack_received(&mut self.vars, CcSignal::DupAck, &info);
        ensure(self.vars.cwnd <= mid, || {
            format!("a duplicate ACK grew cwnd from {mid} to {}", self.vars.cwnd)
        })
    }

    fn fast_retransmit(&mut self, before: CcVars) -> Result<(), String> {
        if self.flight == 0 || matches!(self.recovery, Recovery::Fast | Recovery::Rto) {
            return Ok(());
        }
        let info = self.cong_info();
        self.cc
            .cong_signal(&mut self.vars, CcSignal::NDupAck, &info);
        self.check_reduction(CcSignal::NDupAck, info.recovery, before)?;
        self.recovery = Recovery::Fast;
        self.recover_left = self.flight;
        self.vars.cwnd = window::fast_retransmit_inflate(self.vars.cwnd, self.vars.maxseg);
        Ok(())
    }

    fn ecn(&mut self, before: CcVars) -> Result<(), String> {
        let info = self.cong_info();
        self.cc.cong_signal(&mut self.vars, CcSignal::Ecn, &info);
        self.check_reduction(CcSignal::Ecn, info.recovery, before)?;
        if info.recovery == Recovery::Open && self.flight > 0 {
            self.recovery = Recovery::Cwr;
            self.recover_left = self.flight;
        }
        Ok(())
    }

    fn check_reduction(&self, sig: CcSignal, was: Recovery, before: CcVars) -> Result<(), String> {
        let v = self.vars;
        if was != Recovery::Open {
            return ensure(v == before, || {
                format!("{sig:?} during {was:?} changed the vars: one reduction per episode (RFC 3168 §6.1.2)")
            });
        }
        ensure(v.cwnd <= before.cwnd, || {
            format!("{sig:?} raised cwnd from {} to {}", before.cwnd, v.cwnd)
        })?;
        let most = self
            .flight
            .max(before.cwnd)
            .max(window::min_ssthresh(v.maxseg));
        ensure(v.ssthresh <= most, || {
            format!("{sig:?} left ssthresh at {}, above max(FlightSize, cwnd, 2*SMSS) = {most}: no reduction", v.ssthresh)
        })
    }

    fn rto(&mut self, before: CcVars) -> Result<(), String> {
        if self.flight == 0 {
            return Ok(());
        }
        self.rto_count = self.rto_count.saturating_add(1);
        if self.rto_count == 1 {
            self.before_rto = Some(Snapshot {
                vars: before,
                recovery: self.recovery,
                recover_left: self.recover_left,
            });
            self.undo_possible = true;
        }
        let info = self.cong_info();
        self.cc.cong_signal(&mut self.vars, CcSignal::Rto, &info);
        self.recovery = Recovery::Rto;
        self.recover_left = self.flight;
        self.rto_just_fired = true;
        let v = self.vars;
        let lw = window::loss_window(v.maxseg);
        ensure(v.cwnd == lw, || {
            format!(
                "after an RTO cwnd is {}, not the loss window {lw} (RFC 5681 §3.1)",
                v.cwnd
            )
        })?;
        if info.rto_count == 1 {
            let most = info
                .in_flight
                .max(before.cwnd)
                .max(window::min_ssthresh(v.maxseg));
            ensure(v.ssthresh <= most, || {
                format!(
                    "an RTO left ssthresh at {}, above max(FlightSize, cwnd, 2*SMSS) = {most}",
                    v.ssthresh
                )
            })
        } else {
            ensure(v.ssthresh == before.ssthresh, || {
                format!(
                    "backed-off RTO #{} changed ssthresh from {} to {} (RFC 5681 §3.1: held constant)",
                    info.rto_count, before.ssthresh, v.ssthresh
                )
            })
        }
    }

    fn rto_err(&mut self, rto_just_fired: bool) -> Result<(), String> {
        if self.recovery != Recovery::Rto {
            return Ok(());
        }
        let Some(snap) = self.before_rto.take() else {
            return Ok(());
        };
        let info = self.cong_info();
        self.cc.cong_signal(&mut self.vars, CcSignal::RtoErr, &info);
        // The transport's own undo (FreeBSD restores snd_recover and the recovery flags).
        self.recover_left = snap.recover_left.min(self.flight);
        self.recovery = if self.recover_left == 0 {
            Recovery::Open
        } else {
            snap.recovery
        };
        self.rto_count = 0;
        let v = self.vars;
        // The pre-RTO state as an MSS change since then (set_maxseg) would have left it.
        let mut pre = snap.vars;
        pre.set_maxseg(v.maxseg);
        let want = (pre.cwnd, pre.ssthresh);
        ensure(
            !(rto_just_fired && self.undo_possible) || (v.cwnd, v.ssthresh) == want,
            || {
                format!("RtoErr right after the RTO left cwnd/ssthresh at {:?}, not the pre-RTO {want:?}", (v.cwnd, v.ssthresh))
            },
        )
    }

    fn rtt_sample(&mut self, micros: u32) {
        let rtt = Duration::from_micros(micros.max(1).into());
        // RFC 6298 §2: SRTT <- 7/8 SRTT + 1/8 R', and RTO's 1 s floor (2.4). A rough RTO is
        // enough here: the model only needs one that moves with the samples.
        let srtt = self.srtt.map_or(rtt, |s| (s * 7 + rtt) / 8);
        let min_rtt = self.min_rtt.map_or(rtt, |m| m.min(rtt));
        self.srtt = Some(srtt);
        self.min_rtt = Some(min_rtt);
        self.rto = (srtt * 3).max(Duration::from_secs(1));
        let sample = RttSample {
            rtt,
            srtt,
            min_rtt,
            round: self.round,
            now: self.now(),
        };
        self.cc.rtt_sample(&mut self.vars, &sample);
    }

    fn check_always(&self) -> Result<(), String> {
        let v = self.vars;
        ensure(v.cwnd >= v.maxseg, || {
            format!("cwnd {} is below one segment ({})", v.cwnd, v.maxseg)
        })?;
        let floor = window::min_ssthresh(v.maxseg);
        ensure(v.ssthresh >= floor, || {
            format!("ssthresh {} is below two segments ({floor})", v.ssthresh)
        })?;
        // state() feeds GET /info at any moment: it must not panic whatever the state.
        let _ = self.cc.state();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewReno;

    const MSS: u32 = 1460;

    fn newreno() -> Box<dyn CongestionControl> {
        Box::new(NewReno::default())
    }

    // RFC 5681 §3.2 + RFC 6582 §3.2: a whole fast-recovery episode with the transport's
    // inflation and the module's reduction and deflation, in closed form.
    #[test]
    fn fast_recovery_episode_end_to_end() {
        let ops = [Op::Send { bytes: u32::MAX }, Op::FastRetransmit];
        let mut h = Harness::run(newreno, CcVars::new(MSS), &ops).unwrap();
        // FlightSize 10 MSS: ssthresh = cwnd = 5 MSS, then +3 MSS inflation.
        assert_eq!((h.vars().cwnd, h.vars().ssthresh), (8 * MSS, 5 * MSS));
        for _ in 0..4 {
            h.apply(Op::DupAck).unwrap();
        }
        assert_eq!(h.vars().cwnd, 12 * MSS, "+1 SMSS per further dup ACK");
        // Inflation lets 2 new segments out beyond `recover`.
        h.apply(Op::Send { bytes: u32::MAX }).unwrap();
        assert_eq!(h.flight(), 12 * MSS);
        h.apply(Op::Ack { bytes: 2 * MSS }).unwrap();
        assert_eq!(
            (h.vars().cwnd, h.recovery()),
            (11 * MSS, Recovery::Fast),
            "partial ACK: -2 +1 SMSS"
        );
        h.apply(Op::Ack { bytes: 8 * MSS }).unwrap();
        // Full ACK, 2 MSS still out: min(ssthresh, max(FlightSize, SMSS) + SMSS) = 3 MSS.
        assert_eq!(
            (h.vars().cwnd, h.vars().ssthresh, h.recovery()),
            (3 * MSS, 5 * MSS, Recovery::Open)
        );
        // Then slow start again.
        h.apply(Op::Send { bytes: u32::MAX }).unwrap();
        h.apply(Op::Ack { bytes: MSS }).unwrap();
        assert_eq!(h.vars().cwnd, 4 * MSS);
    }

    #[test]
    fn rounds_are_counted_by_the_model() {
        let mut h = Harness::new(newreno, CcVars::new(MSS));
        for _ in 0..3 {
            h.apply(Op::Send { bytes: u32::MAX }).unwrap();
            let flight = h.flight();
            h.apply(Op::Ack { bytes: flight }).unwrap();
        }
        assert_eq!(h.round, 3);
        assert_eq!(
            h.vars().cwnd,
            16 * MSS,
            "three ACKs of +2 SMSS each (ABC L = 2)"
        );
    }

    /// NewReno with one deliberate bug, to show each check can fail.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Fault {
        IgnoresRto,
        GrowsWhenAppLimited,
        WrapsOnGrowth,
        NoAbcLimit,
        GrowsInRecovery,
        ResetsOnInit,
        NoUndo,
        ReducesTwice,
        IgnoresLoss,
        HalvesOnBackoff,
        NoRestart,
    }

    #[derive(Debug)]
    struct Faulty {
        inner: NewReno,
        fault: Fault,
    }

    impl CongestionControl for Faulty {
        fn name(&self) -> &'static str {
            "faulty"
        }

        fn conn_init(&mut self, v: &mut CcVars) {
            if self.fault == Fault::ResetsOnInit {
                v.cwnd = window::initial_window(v.maxseg);
            }
            self.inner.conn_init(v);
        }

        fn ack_received(&mut self, v: &mut CcVars, sig: CcSignal, ack: &AckInfo) {
            match self.fault {
                Fault::GrowsWhenAppLimited => self.inner.ack_received(
                    v,
                    sig,
                    &AckInfo {
                        cwnd_limited: true,
                        ..*ack
                    },
                ),
                Fault::GrowsInRecovery if sig == CcSignal::Ack && ack.recovery.in_recovery() => {
                    v.cwnd = window::grow(v.cwnd, v.maxseg)
                }
                Fault::WrapsOnGrowth if sig == CcSignal::Ack => {
                    v.cwnd = v.cwnd.wrapping_add(ack.bytes_acked.min(v.maxseg))
                }
                Fault::NoAbcLimit if sig == CcSignal::Ack => {
                    v.cwnd = v.cwnd.saturating_add(ack.bytes_acked)
                }
                _ => self.inner.ack_received(v, sig, ack),
            }
        }

        fn cong_signal(&mut self, v: &mut CcVars, sig: CcSignal, info: &CongInfo) {
            match (self.fault, sig) {
                (Fault::IgnoresRto, CcSignal::Rto)
                | (Fault::NoUndo, CcSignal::RtoErr)
                | (Fault::IgnoresLoss, CcSignal::NDupAck) => {}
                (Fault::ReducesTwice, _) => self.inner.cong_signal(
                    v,
                    sig,
                    &CongInfo {
                        recovery: Recovery::Open,
                        ..*info
                    },
                ),
                (Fault::HalvesOnBackoff, CcSignal::Rto) => {
                    self.inner.cong_signal(v, sig, info);
                    if info.rto_count > 1 {
                        v.ssthresh = (v.ssthresh / 2).max(window::min_ssthresh(v.maxseg));
                    }
                }
                _ => self.inner.cong_signal(v, sig, info),
            }
        }

        fn post_recovery(&mut self, v: &mut CcVars, ack: &AckInfo) {
            self.inner.post_recovery(v, ack);
        }

        fn after_idle(&mut self, v: &mut CcVars, idle: &IdleInfo) {
            if self.fault != Fault::NoRestart {
                self.inner.after_idle(v, idle);
            }
        }
    }

    const FILL: Op = Op::Send { bytes: u32::MAX };

    /// Each fault, a sequence that exposes it, and the words the violation must contain.
    fn cases() -> Vec<(Fault, CcVars, Vec<Op>, &'static str)> {
        let iw = CcVars::new(MSS);
        let near_max = CcVars {
            cwnd: u32::MAX - 100,
            ..iw
        };
        vec![
            (Fault::IgnoresRto, iw, vec![FILL, Op::Rto], "loss window"),
            (
                Fault::GrowsWhenAppLimited,
                iw,
                vec![Op::Send { bytes: 1000 }, Op::Ack { bytes: 1000 }],
                "not cwnd-limited",
            ),
            (
                Fault::WrapsOnGrowth,
                near_max,
                vec![FILL, Op::Ack { bytes: MSS }],
                "shrank",
            ),
            (
                Fault::NoAbcLimit,
                iw,
                vec![FILL, Op::Ack { bytes: 10 * MSS }],
                "L*SMSS",
            ),
            (
                Fault::GrowsInRecovery,
                iw,
                vec![FILL, Op::FastRetransmit, Op::Ack { bytes: MSS }],
                "owns cwnd",
            ),
            (
                Fault::ResetsOnInit,
                iw,
                vec![FILL, Op::Ack { bytes: MSS }, Op::Switch],
                "switching",
            ),
            (
                Fault::NoUndo,
                iw,
                vec![FILL, Op::Rto, Op::RtoErr],
                "pre-RTO",
            ),
            // The ACK shrinks the flight, so a second reduction would land elsewhere.
            (
                Fault::ReducesTwice,
                iw,
                vec![FILL, Op::Ecn, Op::Ack { bytes: 2 * MSS }, Op::Ecn],
                "one reduction per episode",
            ),
            (
                Fault::IgnoresLoss,
                iw,
                vec![FILL, Op::FastRetransmit],
                "no reduction",
            ),
            (
                Fault::HalvesOnBackoff,
                iw,
                vec![FILL, Op::Rto, Op::Rto],
                "held constant",
            ),
            (
                Fault::NoRestart,
                iw,
                vec![
                    FILL,
                    Op::Ack { bytes: 10 * MSS },
                    Op::Idle { millis: 5000 },
                    Op::Send { bytes: 1 },
                ],
                "restart window",
            ),
        ]
    }

    #[test]
    fn every_check_catches_its_fault() {
        for (fault, start, ops, words) in cases() {
            let make = move || -> Box<dyn CongestionControl> {
                Box::new(Faulty {
                    inner: NewReno::default(),
                    fault,
                })
            };
            let err = match Harness::run(make, start, &ops) {
                Ok(_) => panic!("{fault:?} went unnoticed by {ops:?}"),
                Err(e) => e,
            };
            assert!(err.to_string().contains(words), "{fault:?}: {err}");
            assert_eq!(
                err.step,
                ops.len() - 1,
                "{fault:?} caught at the op that shows it: {err}"
            );
        }
    }

    #[test]
    fn newreno_passes_the_same_sequences() {
        for (fault, start, ops, _) in cases() {
            if let Err(e) = Harness::run(newreno, start, &ops) {
                panic!("false positive on the {fault:?} sequence: {e}");
            }
        }
    }

    #[test]
    fn violation_display_names_step_op_and_module() {
        let make = || -> Box<dyn CongestionControl> {
            Box::new(Faulty {
                inner: NewReno::default(),
                fault: Fault::IgnoresRto,
            })
        };
        let err = Harness::run(make, CcVars::new(MSS), &[FILL, Op::Rto])
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "step 1 (Rto) on 'faulty': after an RTO cwnd is 14600, not the loss window 1460 (RFC 5681 §3.1); \
             vars before CcVars { cwnd: 14600, ssthresh: 4294967295, maxseg: 1460 }, \
             after CcVars { cwnd: 14600, ssthresh: 4294967295, maxseg: 1460 }"
        );
    }
}
