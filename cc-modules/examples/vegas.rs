//! A delay-based congestion-control module written outside the crate that reads the
//! enhanced RTT estimate ([`Ertt`]) a stack's ERTT helper provides, as FreeBSD's
//! `cc_vegas` reads `h_ertt`: TCP Vegas (Brakmo and Peterson, 1995).
//!
//! Once per round it compares the window with what the path holds: the bytes it keeps
//! queued at the bottleneck are `cwnd * (RTT - BaseRTT) / RTT` (Vegas' `Diff` times
//! BaseRTT), BaseRTT being ERTT's smallest measurement. Below `ALPHA` segments the window
//! grows one segment, above `BETA` it shrinks one, in between it holds; slow start ends
//! once more than `GAMMA` segments are queued. Losses are handled as NewReno does. Until
//! the first ERTT measurement (a stack without the helper never sends one) it grows as
//! Reno: the hook is optional, and the module says so rather than stalling.
//!
//! `main` registers it by name, then drives it through a model bottleneck (100 segments
//! per 10 ms round trip) where the RTT grows with the queue the window builds, and
//! checks that Vegas settles with between `ALPHA` and `BETA` segments queued.
//!
//! Run with `cargo run -p xstack-cc --example vegas`. On an xstack stack:
//! `xstack http --helper ertt` with this module registered in the stack's registry.

use std::error::Error;
use std::time::{Duration, Instant};

use xstack_cc::{
    from_fn, window, AckInfo, CcSignal, CcVars, CongInfo, CongestionControl, Ertt, Recovery,
    Registry,
};

/// Fewer queued segments than this: the path has room, grow.
const ALPHA: u32 = 1;
/// More than this: the window only builds a queue, shrink.
const BETA: u32 = 3;
/// Slow start ends with more than this many segments queued.
const GAMMA: u32 = 1;

/// One connection's Vegas state.
#[derive(Debug, Default)]
struct Vegas {
    /// The round of the last adjustment: one per round trip.
    last_round: Option<u64>,
    /// ERTT measurements arrive on this connection.
    ertt_seen: bool,
    /// The last ACK found the connection outside loss recovery.
    open: bool,
    /// Reno's congestion-avoidance byte count (before ERTT arrives).
    ca_bytes: u32,
    /// cwnd and ssthresh before the last RTO, for a spurious one.
    before_rto: Option<(u32, u32)>,
    /// Adjustments made: grown, held, shrunk.
    moves: [u64; 3],
}

impl Vegas {
    const NAME: &'static str = "vegas";
}

impl CongestionControl for Vegas {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn conn_init(&mut self, v: &mut CcVars) {
        window::repair(v);
        self.open = true;
    }

    fn ack_received(&mut self, v: &mut CcVars, sig: CcSignal, ack: &AckInfo) {
        self.open = ack.recovery == Recovery::Open;
        let Some(credit) = window::growth_credit(sig, ack, v) else {
            return;
        };
        if v.cwnd < v.ssthresh {
            v.cwnd = window::grow(v.cwnd, credit);
        } else if !self.ertt_seen {
            // Reno's congestion avoidance: one segment per window acknowledged.
            self.ca_bytes = self.ca_bytes.saturating_add(credit);
            if self.ca_bytes >= v.cwnd {
                self.ca_bytes -= v.cwnd;
                v.cwnd = window::grow(v.cwnd, v.maxseg);
            }
        }
    }

    fn ertt_sample(&mut self, v: &mut CcVars, e: &Ertt) {
        self.ertt_seen = true;
        if !self.open || self.last_round == Some(e.round) {
            return;
        }
        self.last_round = Some(e.round);
        let (rtt, base) = (e.rtt.max(e.min_rtt), e.min_rtt);
        if rtt.is_zero() {
            return;
        }
        let queued = (v.cwnd as u128 * (rtt - base).as_nanos() / rtt.as_nanos()) as u32;
        let segs = queued / v.maxseg.max(1);
        if v.cwnd < v.ssthresh {
            if segs > GAMMA {
                // Leave slow start where the queue began to build.
                v.ssthresh = v.cwnd.max(window::min_ssthresh(v.maxseg));
            }
            return;
        }
        let i = if segs < ALPHA {
            v.cwnd = window::grow(v.cwnd, v.maxseg);
            0
        } else if segs > BETA {
            v.cwnd = v
                .cwnd
                .saturating_sub(v.maxseg)
                .max(window::min_ssthresh(v.maxseg));
            // Stay in congestion avoidance: slow start would take the segment back.
            v.ssthresh = v.ssthresh.min(v.cwnd).max(window::min_ssthresh(v.maxseg));
            2
        } else {
            1
        };
        self.moves[i] += 1;
    }

    fn cong_signal(&mut self, v: &mut CcVars, sig: CcSignal, info: &CongInfo) {
        match sig {
            CcSignal::NDupAck | CcSignal::Ecn if info.recovery == Recovery::Open => {
                window::reduce(v, window::reno_ssthresh(info.in_flight, v.maxseg));
                self.open = false;
            }
            CcSignal::Rto => {
                self.before_rto = Some((v.cwnd, v.ssthresh));
                v.ssthresh = window::reno_ssthresh(info.in_flight, v.maxseg);
                v.cwnd = window::loss_window(v.maxseg);
                self.open = false;
            }
            CcSignal::RtoErr => {
                if let Some((cwnd, ssthresh)) = self.before_rto.take() {
                    (v.cwnd, v.ssthresh) = (cwnd, ssthresh);
                }
            }
            _ => {}
        }
    }

    fn post_recovery(&mut self, v: &mut CcVars, ack: &AckInfo) {
        v.cwnd = window::reno_post_recovery_cwnd(v.ssthresh, ack.in_flight, v.maxseg);
    }

    fn state(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ertt", self.ertt_seen.to_string()),
            ("grown", self.moves[0].to_string()),
            ("held", self.moves[1].to_string()),
            ("shrunk", self.moves[2].to_string()),
        ]
    }
}

/// A bottleneck of `bdp` segments per `base` round trip: the RTT is the base plus the
/// queue the window builds beyond the BDP. Runs `rounds` round trips, each with one ERTT
/// measurement (when `ertt`) and one ACK per segment; returns cwnd in segments per round.
fn drive(cc: &mut dyn CongestionControl, ertt: bool, rounds: u64) -> Vec<u32> {
    const MSS: u32 = 1460;
    let (bdp, base) = (100u32, Duration::from_millis(10));
    let start = Instant::now();
    let mut v = CcVars::new(MSS);
    cc.conn_init(&mut v);
    let mut est: Option<Ertt> = None;
    let mut trace = Vec::new();
    for round in 0..rounds {
        let segs = v.cwnd / MSS;
        let queue = segs.saturating_sub(bdp);
        let rtt = base * (bdp + queue) / bdp;
        let now = start + base * round as u32;
        if ertt {
            let e = est.get_or_insert(Ertt {
                rtt,
                min_rtt: rtt,
                max_rtt: rtt,
                srtt: rtt,
                samples: 0,
                delayed: 0,
                round,
                now,
            });
            e.rtt = rtt;
            e.min_rtt = e.min_rtt.min(rtt);
            e.max_rtt = e.max_rtt.max(rtt);
            e.srtt = (e.srtt * 7 + rtt) / 8;
            e.samples += 1;
            (e.round, e.now) = (round, now);
            cc.ertt_sample(&mut v, e);
        }
        for _ in 0..segs.max(1) {
            let ack = AckInfo {
                bytes_acked: MSS,
                acks: 1,
                in_flight: v.cwnd,
                cwnd_limited: true,
                recovery: Recovery::Open,
                now,
                srtt: Some(rtt),
                min_rtt: Some(base),
                round,
            };
            cc.ack_received(&mut v, CcSignal::Ack, &ack);
        }
        trace.push(v.cwnd / MSS);
    }
    trace
}

fn main() -> Result<(), Box<dyn Error>> {
    let registry = Registry::with_builtins();
    registry.register(from_fn(Vegas::NAME, || Box::new(Vegas::default())))?;

    let mut cc = registry.create(Vegas::NAME)?;
    let trace = drive(cc.as_mut(), true, 300);
    println!(
        "vegas with ERTT: cwnd/MSS {:?} ... {:?}",
        &trace[..12],
        &trace[290..]
    );
    println!("    state {:?}", cc.state());
    // Settled: the window holds the BDP (100 segments) plus ALPHA..=BETA queued.
    let last = *trace.last().ok_or("no rounds")?;
    assert!(
        (100 + ALPHA..=100 + BETA + 1).contains(&last),
        "cwnd {last}"
    );
    assert!(trace[250..].iter().all(|&c| c.abs_diff(last) <= 1));

    let mut cc = registry.create(Vegas::NAME)?;
    let trace = drive(cc.as_mut(), false, 300);
    println!(
        "vegas without ERTT (Reno: slow start, the model never drops): cwnd/MSS ... {:?}",
        &trace[290..]
    );
    // Without measurements nothing holds the window at the BDP.
    assert!(*trace.last().ok_or("no rounds")? > 150);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fed ERTT, Vegas holds the bottleneck's 100 segments plus ALPHA..=BETA queued.
    #[test]
    fn settles_with_a_small_queue_on_ertt() {
        let mut cc = Vegas::default();
        let trace = drive(&mut cc, true, 300);
        let last = *trace.last().unwrap();
        assert!((100 + ALPHA..=100 + BETA + 1).contains(&last), "{trace:?}");
        assert!(
            cc.moves[2] > 0,
            "it had to shrink after slow start's overshoot"
        );
    }

    /// Without the helper no `ertt_sample` comes: Reno growth, no stall.
    #[test]
    fn grows_as_reno_without_ertt() {
        let mut cc = Vegas::default();
        let trace = drive(&mut cc, false, 50);
        assert!(trace.windows(2).all(|w| w[1] >= w[0]));
        assert!(*trace.last().unwrap() > 150);
        assert_eq!(cc.moves, [0; 3]);
    }
}
