//! Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation): per connection
//! the count of bytes delivered and when, per transmission a snapshot of those, and per
//! ACK a [`RateSample`] for the congestion-control module
//! ([`xstack_cc::CongestionControl::rate_sample`]).
//!
//! The snapshots live in the RACK send log's entries (`tcp/rack.rs`), which already have
//! one entry per MSS piece in flight with its transmission time and learn which ones an
//! ACK delivers, cumulatively or by SACK. The log is kept while RACK-TLP is active or the
//! module wants samples (`wants_rate_samples`), so a rate-based module gets them without
//! SACK or with RACK off too; losses then show only after an RTO (RACK marks the others).
//!
//! "Delivered" counts each byte once: cumulatively acknowledged bytes that were SACKed
//! before are not counted again (the log reports an entry delivered once).

use std::time::{Duration, Instant};

use xstack_cc::{RateSample, Recovery};

/// What a transmission remembers of the connection's delivery state (the draft's
/// `P.delivered`, `P.delivered_time`, `P.first_send_time`, `P.is_app_limited`, plus BBR's
/// `tx_in_flight` and the lost count for `rs.lost`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSnap {
    /// `C.delivered` when it was sent.
    pub delivered: u64,
    /// `C.delivered_time` when it was sent.
    pub delivered_time: Instant,
    /// `C.first_send_time` when it was sent.
    pub first_send_time: Instant,
    /// The sender was application-limited when it was sent.
    pub is_app_limited: bool,
    /// Bytes in flight just after it was sent.
    pub tx_in_flight: u32,
    /// `C.lost` when it was sent.
    pub lost: u64,
}

/// The most recently sent segment an ACK delivered so far (the draft's `P` for `rs`).
#[derive(Clone, Copy, Debug)]
struct Prior {
    snap: RateSnap,
    xmit: Instant,
    retrans: bool,
}

/// One connection's estimator (the draft's `C.*` variables and the sample being built).
#[derive(Debug, Default)]
pub struct RateEstimator {
    /// `C.delivered`: bytes delivered over the connection's life.
    delivered: u64,
    /// `C.delivered_time`.
    delivered_time: Option<Instant>,
    /// `C.first_send_time`.
    first_send_time: Option<Instant>,
    /// `C.app_limited`: the delivered count that ends the application-limited phase;
    /// 0 when not application-limited.
    app_limited: u64,
    /// `C.lost`: bytes marked lost over the connection's life.
    lost: u64,
    /// The sample of the ACK being processed.
    prior: Option<Prior>,
    newly_acked: u32,
    newly_lost: u32,
}

/// What the transport adds to a sample when it hands it out.
#[derive(Clone, Copy, Debug)]
pub struct SampleCtx {
    /// Bytes in flight before the ACK.
    pub prior_in_flight: u32,
    /// Bytes in flight after it.
    pub in_flight: u32,
    /// The connection's minimum RTT: a shorter interval is ACK compression, not a rate.
    pub min_rtt: Option<Duration>,
    /// The sender is cwnd-limited.
    pub cwnd_limited: bool,
    /// The recovery state for this ACK.
    pub recovery: Recovery,
}

impl RateEstimator {
    /// `C.delivered`.
    #[cfg(test)]
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// `C.lost`.
    #[cfg(test)]
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Draft §3.2, at each transmission: the snapshot to store with the segment.
    /// `in_flight` is what was in flight before it, `len` its length.
    pub fn on_send(&mut self, now: Instant, in_flight: u32, len: u32) -> RateSnap {
        // "If there are no packets in flight yet, then we can start the delivery rate
        // interval at the current time, since we know that any ACKs after now indicate
        // that the network was able to deliver those packets completely".
        if in_flight == 0 || self.first_send_time.is_none() {
            self.first_send_time = Some(now);
            self.delivered_time = Some(now);
        }
        RateSnap {
            delivered: self.delivered,
            delivered_time: self.delivered_time.unwrap_or(now),
            first_send_time: self.first_send_time.unwrap_or(now),
            is_app_limited: self.app_limited != 0,
            tx_in_flight: in_flight.saturating_add(len),
            lost: self.lost,
        }
    }

    /// Draft §3.4: the sender has nothing more to send although cwnd would allow it;
    /// samples of what is in flight now may understate the path. "C.app_limited =
    /// (C.delivered + C.inflight) ? : 1".
    pub fn on_app_limited(&mut self, in_flight: u32) {
        self.app_limited = (self.delivered + u64::from(in_flight)).max(1);
    }

    /// Whether the connection is in an application-limited phase.
    #[cfg(test)]
    pub fn is_app_limited(&self) -> bool {
        self.app_limited != 0
    }

    /// Draft §3.3 UpdateRateSample(P), for each segment an ACK newly delivers (by the
    /// cumulative acknowledgment or SACK), `len` bytes sent at `xmit`.
    pub fn on_delivered(
        &mut self,
        snap: RateSnap,
        xmit: Instant,
        retrans: bool,
        len: u32,
        now: Instant,
    ) {
        self.delivered += u64::from(len);
        self.delivered_time = Some(now);
        self.newly_acked = self.newly_acked.saturating_add(len);
        // "Update info using the newest packet": the one with the highest P.delivered,
        // ties to the later transmission.
        let newer = self.prior.is_none_or(|p| {
            snap.delivered > p.snap.delivered
                || (snap.delivered == p.snap.delivered && xmit > p.xmit)
        });
        if newer {
            self.prior = Some(Prior {
                snap,
                xmit,
                retrans,
            });
            // "C.first_send_time = P.send_time": the next interval starts where this
            // flight started.
            self.first_send_time = Some(xmit);
        }
    }

    /// `len` bytes were marked lost (RACK, or everything after an RTO).
    pub fn on_lost(&mut self, len: u32) {
        self.lost += u64::from(len);
        self.newly_lost = self.newly_lost.saturating_add(len);
    }

    /// Draft §3.3 GenerateRateSample, once per ACK after its deliveries and loss marks:
    /// the sample, or `None` if the ACK delivered nothing. Resets the per-ACK state.
    pub fn take_sample(&mut self, ctx: &SampleCtx, now: Instant) -> Option<RateSample> {
        let newly_acked = std::mem::take(&mut self.newly_acked);
        let newly_lost = std::mem::take(&mut self.newly_lost);
        // "Clear app-limited field if bubble is ACKed and gone".
        if self.app_limited != 0 && self.delivered > self.app_limited {
            self.app_limited = 0;
        }
        let p = self.prior.take()?;
        let send_elapsed = p.xmit.saturating_duration_since(p.snap.first_send_time);
        let ack_elapsed = self
            .delivered_time
            .unwrap_or(now)
            .saturating_duration_since(p.snap.delivered_time);
        // "Use the longer of the send_elapsed and ack_elapsed": a shorter interval would
        // overestimate the rate (ACK compression, a send burst).
        let interval = send_elapsed.max(ack_elapsed);
        let delivered = self.delivered - p.snap.delivered;
        // "Normally we expect interval >= MinRTT. Note that rate may still be
        // overestimated when a spuriously retransmitted skb was first (s)acked because
        // interval is under-estimated (up to an RTT). However, continuously measuring the
        // delivery rate during loss recovery is crucial for connections that suffer heavy
        // or prolonged losses."
        let valid = !interval.is_zero() && ctx.min_rtt.is_none_or(|m| interval >= m);
        let delivery_rate = if valid {
            let us = interval.as_micros().max(1);
            u64::try_from(u128::from(delivered) * 1_000_000 / us).unwrap_or(u64::MAX)
        } else {
            0
        };
        Some(RateSample {
            delivery_rate,
            delivered,
            interval,
            rtt: (!p.retrans).then(|| now.saturating_duration_since(p.xmit)),
            is_app_limited: p.snap.is_app_limited,
            prior_delivered: p.snap.delivered,
            total_delivered: self.delivered,
            newly_acked,
            newly_lost,
            lost: self.lost - p.snap.lost,
            tx_in_flight: p.snap.tx_in_flight,
            prior_in_flight: ctx.prior_in_flight,
            in_flight: ctx.in_flight,
            cwnd_limited: ctx.cwnd_limited,
            recovery: ctx.recovery,
            now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1000;

    fn ctx() -> SampleCtx {
        SampleCtx {
            prior_in_flight: 0,
            in_flight: 0,
            min_rtt: None,
            cwnd_limited: false,
            recovery: Recovery::Open,
        }
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    /// Sends `n` segments back to back at `at`, returns their snapshots.
    fn burst(e: &mut RateEstimator, at: Instant, in_flight: u32, n: u32) -> Vec<RateSnap> {
        (0..n)
            .map(|i| e.on_send(at, in_flight + i * MSS, MSS))
            .collect()
    }

    // Draft §2: a flight of 10 segments sent at once and acknowledged one per ms over 10 ms
    // after a 100 ms RTT delivers 10 kB per 10 ms (the ACK rate), not 10 kB per 0 ms.
    #[test]
    fn rate_is_delivered_over_the_longer_of_send_and_ack_phases() {
        let t0 = Instant::now();
        let mut e = RateEstimator::default();
        let snaps = burst(&mut e, t0, 0, 10);
        let mut last = None;
        for (i, s) in snaps.iter().enumerate() {
            let now = ms(t0, 100 + i as u64);
            e.on_delivered(*s, t0, false, MSS, now);
            last = e.take_sample(&ctx(), now);
        }
        let rs = last.unwrap();
        // The last ACK: 10 segments since the flight's start, ack phase 9 ms (the first
        // ACK at 100 ms set delivered_time for... the snapshot at send time, t0).
        assert_eq!(rs.delivered, 10 * u64::from(MSS));
        assert_eq!(rs.interval, Duration::from_millis(109));
        assert_eq!(rs.rtt, Some(Duration::from_millis(109)));
        assert_eq!(rs.total_delivered, 10_000);
        assert_eq!(rs.prior_delivered, 0);
        assert_eq!(rs.tx_in_flight, 10 * MSS);
        // Second flight, sent when the first was delivered: the rate is now the ACK
        // rate of the previous round, one segment per ms.
        let now = ms(t0, 110);
        let snaps = burst(&mut e, now, 0, 10);
        for (i, s) in snaps.iter().enumerate() {
            let at = ms(t0, 210 + i as u64);
            e.on_delivered(*s, now, false, MSS, at);
            last = e.take_sample(&ctx(), at);
        }
        let rs = last.unwrap();
        assert_eq!(rs.prior_delivered, 10_000);
        assert_eq!(rs.delivered, 10_000);
        assert_eq!(rs.interval, Duration::from_millis(109));
        assert_eq!(rs.delivery_rate, 10_000 * 1000 / 109);
    }

    // Draft §3.3: the sample's P is the most recently sent delivered segment; a SACK of a
    // later segment before the cumulative ACK of an earlier one counts each byte once.
    #[test]
    fn sacked_segments_count_once_and_the_newest_is_p() {
        let t0 = Instant::now();
        let mut e = RateEstimator::default();
        let s: Vec<RateSnap> = (0..4)
            .map(|i| e.on_send(ms(t0, i), i as u32 * MSS, MSS))
            .collect();
        // SACK of segments 2 and 3 (segment 0 and 1 outstanding).
        e.on_delivered(s[2], ms(t0, 2), false, MSS, ms(t0, 50));
        e.on_delivered(s[3], ms(t0, 3), false, MSS, ms(t0, 50));
        let rs = e.take_sample(&ctx(), ms(t0, 50)).unwrap();
        assert_eq!(rs.newly_acked, 2 * MSS);
        assert_eq!(rs.tx_in_flight, 4 * MSS, "P is segment 3");
        assert_eq!(rs.rtt, Some(Duration::from_millis(47)));
        // The cumulative ACK then delivers 0 and 1 only (the log reports 2 and 3 once).
        e.on_delivered(s[0], ms(t0, 0), false, MSS, ms(t0, 60));
        e.on_delivered(s[1], ms(t0, 1), false, MSS, ms(t0, 60));
        let rs = e.take_sample(&ctx(), ms(t0, 60)).unwrap();
        assert_eq!(e.delivered(), 4 * u64::from(MSS));
        assert_eq!(rs.newly_acked, 2 * MSS);
        assert_eq!(rs.total_delivered, 4000);
        // Nothing delivered: no sample.
        assert!(e.take_sample(&ctx(), ms(t0, 61)).is_none());
    }

    // Karn's rule for the sample's RTT; the rate still counts (draft §3.3: "continuously
    // measuring the delivery rate during loss recovery is crucial"), and losses between
    // the send and the ACK show in rs.lost.
    #[test]
    fn retransmissions_give_a_rate_but_no_rtt_and_losses_are_counted() {
        let t0 = Instant::now();
        let mut e = RateEstimator::default();
        let _lost = e.on_send(t0, 0, MSS);
        e.on_lost(MSS);
        let again = e.on_send(ms(t0, 30), 0, MSS);
        assert_eq!(again.lost, u64::from(MSS));
        e.on_delivered(again, ms(t0, 30), true, MSS, ms(t0, 60));
        let rs = e.take_sample(&ctx(), ms(t0, 60)).unwrap();
        assert_eq!(rs.rtt, None);
        assert_eq!(
            rs.newly_lost, MSS,
            "the loss was marked during this ACK's window"
        );
        assert_eq!(rs.lost, 0, "no loss since the retransmission was sent");
        assert!(rs.delivery_rate > 0);
        assert_eq!(e.lost(), u64::from(MSS));
    }

    // Draft §3.4: segments sent in an application-limited phase carry the mark until the
    // phase's data is delivered.
    #[test]
    fn application_limited_phase_marks_samples_until_its_data_is_delivered() {
        let t0 = Instant::now();
        let mut e = RateEstimator::default();
        let a = e.on_send(t0, 0, MSS);
        // The application has nothing more: two segments' worth of delivery ends it.
        e.on_app_limited(MSS);
        assert!(e.is_app_limited());
        let b = e.on_send(ms(t0, 1), MSS, MSS);
        assert!(!a.is_app_limited && b.is_app_limited);
        e.on_delivered(a, t0, false, MSS, ms(t0, 40));
        let rs = e.take_sample(&ctx(), ms(t0, 40)).unwrap();
        assert!(!rs.is_app_limited);
        assert!(e.is_app_limited(), "the bubble is not yet delivered");
        e.on_delivered(b, ms(t0, 1), false, MSS, ms(t0, 41));
        let rs = e.take_sample(&ctx(), ms(t0, 41)).unwrap();
        assert!(rs.is_app_limited);
        assert!(!e.is_app_limited(), "bubble ACKed and gone");
        let c = e.on_send(ms(t0, 42), 0, MSS);
        assert!(!c.is_app_limited);
    }

    // Draft §3.3: an interval shorter than min_RTT is ACK compression, not a rate.
    #[test]
    fn intervals_below_min_rtt_give_no_rate() {
        let t0 = Instant::now();
        let mut e = RateEstimator::default();
        let s = e.on_send(t0, 0, MSS);
        e.on_delivered(s, t0, false, MSS, ms(t0, 5));
        let c = SampleCtx {
            min_rtt: Some(Duration::from_millis(10)),
            ..ctx()
        };
        let rs = e.take_sample(&c, ms(t0, 5)).unwrap();
        assert_eq!(rs.delivery_rate, 0);
        assert_eq!(rs.delivered, u64::from(MSS));
    }
}
