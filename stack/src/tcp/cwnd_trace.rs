//! An opt-in, per-connection trace of the congestion window: one [`CwndSample`] each time
//! the transport has called a congestion-control hook (and done its own part of the step,
//! e.g. the fast-recovery inflation), so the trace shows what the connection actually ran
//! with. It is what `xstack http --cwnd-trace DIR` writes as CSV and what `cargo xtask
//! cc-plot` draws.
//!
//! Cost: a connection without a trace pays one `Option` test per hook call
//! (`Tcb::cwnd_trace` is `None`). With one, a sample is 48 bytes appended to a `Vec`;
//! the trace keeps at most [`CwndTrace::limit`] samples and then only counts what it
//! missed ([`CwndTrace::dropped`]). It keeps the *first* samples rather than the latest:
//! a trace is for studying a transfer from its start (slow start, the first loss, the
//! epochs after it), and [`crate::tcp::Tcb::take_cwnd_trace`] lets a long-lived
//! connection drain it periodically instead.

use std::fmt::Write as _;
use std::time::Instant;

use super::rtt::RttEstimator;

/// The default bound on samples per connection ([`CwndTrace::limit`]): 1 Mi samples,
/// 48 MiB at most. At one sample per ACK of two 1448-byte segments that covers 3 GB:
/// about 4 minutes at 100 Mbit/s, 25 s at 1 Gbit/s.
pub const DEFAULT_TRACE_LIMIT: usize = 1 << 20;

/// Which congestion-control step a sample follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CcEvent {
    /// `conn_init` at establishment (cwnd = IW).
    Init,
    /// `ack_received(Ack)`: an ACK of new data outside a recovery episode's end
    /// (partial ACKs during recovery included).
    Ack,
    /// `ack_received(DupAck)`, after the transport's RFC 5681 §3.2 inflation if any.
    DupAck,
    /// `cong_signal(NDupAck)`: loss detected by duplicate ACKs or SACK, after the module's
    /// reduction and the transport's fast-retransmit inflation.
    Loss,
    /// `post_recovery`: the ACK that ended a recovery episode, after the deflation.
    PostRecovery,
    /// `cong_signal(Rto)`: a retransmission timeout.
    Rto,
    /// `cong_signal(RtoErr)`: an RTO found spurious and undone.
    RtoErr,
    /// `cong_signal(Ecn)`: an ECN-Echo.
    Ecn,
    /// `after_idle`: sending resumed after a pause.
    Idle,
    /// The socket switched module (TCP_CONGESTION); the new module's `conn_init` ran.
    Switch,
}

impl CcEvent {
    /// The name used in the CSV's `event` column.
    pub fn as_str(self) -> &'static str {
        match self {
            CcEvent::Init => "init",
            CcEvent::Ack => "ack",
            CcEvent::DupAck => "dupack",
            CcEvent::Loss => "loss",
            CcEvent::PostRecovery => "post-recovery",
            CcEvent::Rto => "rto",
            CcEvent::RtoErr => "rto-err",
            CcEvent::Ecn => "ecn",
            CcEvent::Idle => "idle",
            CcEvent::Switch => "switch",
        }
    }

    /// The event named `s` in a CSV (the inverse of [`CcEvent::as_str`]).
    pub fn parse(s: &str) -> Option<CcEvent> {
        [
            CcEvent::Init,
            CcEvent::Ack,
            CcEvent::DupAck,
            CcEvent::Loss,
            CcEvent::PostRecovery,
            CcEvent::Rto,
            CcEvent::RtoErr,
            CcEvent::Ecn,
            CcEvent::Idle,
            CcEvent::Switch,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }
}

/// One point of the trace: the connection's congestion state right after a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CwndSample {
    /// Microseconds since the connection was created (its SYN sent or received).
    pub t_us: u64,
    /// Congestion window, bytes.
    pub cwnd: u32,
    /// Slow-start threshold, bytes (`u32::MAX` while "arbitrarily high").
    pub ssthresh: u32,
    /// FlightSize, bytes (snd_max - snd_una).
    pub in_flight: u32,
    /// Smoothed RTT, microseconds (0 before the first sample).
    pub srtt_us: u32,
    /// The module's pacing rate, bytes per second (0: not pacing; `u32::MAX`: at least
    /// that, about 34 Gbit/s).
    pub pacing_rate: u32,
    /// What happened.
    pub event: CcEvent,
    /// The module that handled it.
    pub cc: &'static str,
    /// For an ACK (`Ack`, `PostRecovery`): the transport told the module the connection
    /// was cwnd-limited (FreeBSD `CCF_CWND_LIMITED`), so it may grow cwnd (RFC 7661); an
    /// application- or receiver-limited ACK must not. False for other events.
    pub cwnd_limited: bool,
}

/// What a sample is taken from: the connection's state right after a hook.
pub(crate) struct TracedState<'a> {
    /// cwnd and ssthresh.
    pub ccv: &'a xstack_cc::CcVars,
    /// FlightSize, bytes.
    pub in_flight: u32,
    /// The RTT estimator (for SRTT).
    pub rtt: &'a RttEstimator,
    /// The module's pacing rate, bytes/s.
    pub pacing_rate: Option<u64>,
    /// The module's name.
    pub cc: &'static str,
    /// See [`CwndSample::cwnd_limited`].
    pub cwnd_limited: bool,
}

/// A bounded list of [`CwndSample`]s for one connection.
#[derive(Clone, Debug)]
pub struct CwndTrace {
    origin: Instant,
    samples: Vec<CwndSample>,
    limit: usize,
    dropped: u64,
}

impl CwndTrace {
    /// An empty trace whose times count from `origin`, keeping at most `limit` samples.
    pub fn new(origin: Instant, limit: usize) -> CwndTrace {
        CwndTrace {
            origin,
            samples: Vec::new(),
            limit,
            dropped: 0,
        }
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> &[CwndSample] {
        &self.samples
    }

    /// The most samples this trace keeps.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Samples not recorded because the trace was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The instant `t_us` counts from.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Appends a sample of `state` after `event`, or counts it as dropped when full.
    pub(crate) fn record(&mut self, now: Instant, event: CcEvent, state: &TracedState<'_>) {
        if self.samples.len() >= self.limit {
            self.dropped += 1;
            return;
        }
        let t_us = now.saturating_duration_since(self.origin).as_micros();
        let srtt_us = state.rtt.srtt().map_or(0, |d| d.as_micros());
        self.samples.push(CwndSample {
            t_us: u64::try_from(t_us).unwrap_or(u64::MAX),
            cwnd: state.ccv.cwnd,
            ssthresh: state.ccv.ssthresh,
            in_flight: state.in_flight,
            srtt_us: u32::try_from(srtt_us).unwrap_or(u32::MAX),
            pacing_rate: state
                .pacing_rate
                .map_or(0, |r| u32::try_from(r).unwrap_or(u32::MAX)),
            event,
            cc: state.cc,
            cwnd_limited: state.cwnd_limited,
        });
    }

    /// Takes the samples recorded so far (and the dropped count), leaving an empty trace
    /// with the same origin and limit that keeps recording.
    pub fn take(&mut self) -> CwndTrace {
        let taken = CwndTrace {
            origin: self.origin,
            samples: std::mem::take(&mut self.samples),
            limit: self.limit,
            dropped: self.dropped,
        };
        self.dropped = 0;
        taken
    }

    /// The CSV header line [`CwndTrace::to_csv`] writes.
    pub const CSV_HEADER: &'static str =
        "t_us,cwnd,ssthresh,in_flight,srtt_us,pacing_rate,event,cc,cwnd_limited";

    /// The trace as CSV: [`CwndTrace::CSV_HEADER`], then one line per sample.
    pub fn to_csv(&self) -> String {
        let mut s = String::with_capacity(48 * (self.samples.len() + 1));
        s.push_str(Self::CSV_HEADER);
        s.push('\n');
        for x in &self.samples {
            // Writing to a String cannot fail.
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{}",
                x.t_us,
                x.cwnd,
                x.ssthresh,
                x.in_flight,
                x.srtt_us,
                x.pacing_rate,
                x.event.as_str(),
                x.cc,
                u8::from(x.cwnd_limited)
            );
        }
        s
    }

    /// Parses what [`CwndTrace::to_csv`] wrote (for tests and tools). Lines that do not
    /// parse are errors, reported with their line number.
    pub fn parse_csv(text: &str) -> Result<Vec<CwndSample>, String> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if i == 0 && line == Self::CSV_HEADER || line.is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').collect();
            let bad = || format!("line {}: {line:?}", i + 1);
            if f.len() != 9 {
                return Err(bad());
            }
            let cc: &'static str = match f[7] {
                "newreno" => "newreno",
                "newreno-hs" => "newreno-hs",
                "cubic" => "cubic",
                "cubic-hs" => "cubic-hs",
                "bbr" => "bbr",
                _ => "other",
            };
            out.push(CwndSample {
                t_us: f[0].parse().map_err(|_| bad())?,
                cwnd: f[1].parse().map_err(|_| bad())?,
                ssthresh: f[2].parse().map_err(|_| bad())?,
                in_flight: f[3].parse().map_err(|_| bad())?,
                srtt_us: f[4].parse().map_err(|_| bad())?,
                pacing_rate: f[5].parse().map_err(|_| bad())?,
                event: CcEvent::parse(f[6]).ok_or_else(bad)?,
                cc,
                cwnd_limited: match f[8] {
                    "0" => false,
                    "1" => true,
                    _ => return Err(bad()),
                },
            });
        }
        Ok(out)
    }
}

impl super::tcb::Tcb {
    /// Records a trace sample after a congestion-control step, if tracing is on. The
    /// one call the engine makes per hook; cheap when off.
    #[inline]
    pub(crate) fn trace_cc(&mut self, event: CcEvent, now: Instant) {
        self.trace_ack(event, now, false);
    }

    /// [`Tcb::trace_cc`] for an ACK, with what the module was told of `cwnd_limited`.
    #[inline]
    pub(crate) fn trace_ack(&mut self, event: CcEvent, now: Instant, cwnd_limited: bool) {
        if let Some(t) = &mut self.cwnd_trace {
            let in_flight = self.snd_max.dist(self.snd_una);
            let state = TracedState {
                ccv: &self.ccv,
                in_flight,
                rtt: &self.rtt,
                pacing_rate: self.cc.pacing_rate(),
                cc: self.cc.name(),
                cwnd_limited,
            };
            t.record(now, event, &state);
        }
    }

    /// Starts (`Some(limit)`, at most `limit` samples) or stops (`None`, discarding what
    /// was recorded) the cwnd trace. Starting an already running trace only changes its
    /// limit. Times count from the connection's creation.
    pub fn set_cwnd_trace(&mut self, limit: Option<usize>) {
        match (limit, &mut self.cwnd_trace) {
            (None, t) => *t = None,
            (Some(n), Some(t)) => t.limit = n,
            (Some(n), t @ None) => *t = Some(Box::new(CwndTrace::new(self.created, n))),
        }
    }

    /// True while a cwnd trace is recording.
    pub fn cwnd_tracing(&self) -> bool {
        self.cwnd_trace.is_some()
    }

    /// Takes what the trace recorded so far (it keeps recording); `None` when tracing
    /// is off.
    pub fn take_cwnd_trace(&mut self) -> Option<CwndTrace> {
        self.cwnd_trace.as_mut().map(|t| t.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rec(t: &mut CwndTrace, at: Instant, ev: CcEvent, cwnd: u32) {
        let ccv = xstack_cc::CcVars {
            cwnd,
            ssthresh: u32::MAX,
            maxseg: 1448,
        };
        let state = TracedState {
            ccv: &ccv,
            in_flight: 7,
            rtt: &RttEstimator::new(Default::default()),
            pacing_rate: Some(u64::from(cwnd) * 1000),
            cc: "x",
            cwnd_limited: ev == CcEvent::Ack,
        };
        t.record(at, ev, &state);
    }

    #[test]
    fn bounded_keeps_the_first_samples_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut t = CwndTrace::new(t0, 2);
        for i in 0..5 {
            rec(
                &mut t,
                t0 + Duration::from_micros(i),
                CcEvent::Ack,
                i as u32,
            );
        }
        assert_eq!(t.samples().len(), 2);
        assert_eq!(t.dropped(), 3);
        assert_eq!(t.samples()[1].t_us, 1);
        let taken = t.take();
        assert_eq!((taken.samples().len(), taken.dropped()), (2, 3));
        assert_eq!((t.samples().len(), t.dropped()), (0, 0));
        rec(&mut t, t0, CcEvent::Rto, 1);
        assert_eq!(t.samples().len(), 1, "keeps recording after take");
    }

    #[test]
    fn a_sample_is_as_small_as_the_docs_say() {
        // The pacing rate is a saturating u32 so that it fits in the padding.
        assert!(std::mem::size_of::<CwndSample>() <= 48);
        assert_eq!(
            std::mem::size_of::<Option<Box<CwndTrace>>>(),
            8,
            "one pointer when off"
        );
    }

    #[test]
    fn csv_round_trip_and_bad_lines() {
        let t0 = Instant::now();
        let mut t = CwndTrace::new(t0, 10);
        rec(&mut t, t0 + Duration::from_millis(3), CcEvent::Loss, 14480);
        rec(
            &mut t,
            t0 + Duration::from_millis(4),
            CcEvent::PostRecovery,
            7240,
        );
        rec(&mut t, t0 + Duration::from_millis(5), CcEvent::Ack, 8688);
        let csv = t.to_csv();
        assert!(csv.starts_with(
            "t_us,cwnd,ssthresh,in_flight,srtt_us,pacing_rate,event,cc,cwnd_limited\n3000,14480,"
        ));
        let back = CwndTrace::parse_csv(&csv).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(
            back.iter().map(|x| x.cwnd_limited).collect::<Vec<_>>(),
            [false, false, true]
        );
        assert_eq!(back[1].event, CcEvent::PostRecovery);
        assert_eq!(back[1].cwnd, 7240);
        assert_eq!(back[1].pacing_rate, 7_240_000);
        assert_eq!(back[0].cc, "other");
        assert!(CwndTrace::parse_csv("1,2,3\n").is_err());
        assert!(CwndTrace::parse_csv("1,2,3,4,5,6,bogus,cubic,0\n").is_err());
        assert!(CwndTrace::parse_csv("1,2,3,4,5,x,ack,cubic,0\n").is_err());
        assert!(CwndTrace::parse_csv("1,2,3,4,5,6,ack,cubic,2\n").is_err());
        assert!(CwndTrace::parse_csv("1,2,3,4,5,6,ack,cubic\n").is_err());
    }
}
