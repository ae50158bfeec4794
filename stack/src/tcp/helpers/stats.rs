//! The per-connection statistics helper: histograms of the RTT and of the delivery rate
//! from the connection's delivery-rate samples (`tcp/rate.rs`, one per ACK that delivers
//! data), in log2 buckets, exported in the connection's `/info` (the tools' HTTP
//! server, `xstack http --helper stats`).
//!
//! Samples come only where the connection keeps its send log: RACK-TLP in use (the
//! default, with SACK) or a module that wants rate samples (BBR). A sample's RTT is
//! absent for a retransmission (Karn), and a sample from an application-limited phase
//! still counts: the histogram is of what the connection saw, not of the path's
//! capacity.

use std::fmt::Write as _;

use crate::tcp::hhook::{AckDoneCtx, Helper, HookPoint, HookPoints};

/// The helper: register it with `NetStack::register_helper(StatsHelper)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct StatsHelper;

impl StatsHelper {
    /// The name it registers under.
    pub const NAME: &'static str = "stats";
}

/// Counts in power-of-two buckets: bucket `i` holds values in `[2^i, 2^(i+1))`, bucket 0
/// also 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log2Histogram {
    buckets: [u64; 64],
    count: u64,
    min: u64,
    max: u64,
}

impl Default for Log2Histogram {
    fn default() -> Self {
        Log2Histogram {
            buckets: [0; 64],
            count: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl Log2Histogram {
    /// The bucket of `v`.
    pub fn bucket_of(v: u64) -> usize {
        (63 - v.max(1).leading_zeros()) as usize
    }

    /// Counts `v`.
    pub fn add(&mut self, v: u64) {
        self.buckets[Self::bucket_of(v)] += 1;
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The count in bucket `i`.
    pub fn bucket(&self, i: usize) -> u64 {
        self.buckets.get(i).copied().unwrap_or(0)
    }

    /// The smallest and largest values counted.
    pub fn range(&self) -> Option<(u64, u64)> {
        (self.count > 0).then_some((self.min, self.max))
    }

    /// As a JSON object: `count`, `min`, `max` and the non-empty buckets as
    /// `[{"ge": low, "lt": high, "count": n}, ...]`.
    pub fn to_json(&self) -> String {
        let mut o = format!("{{\"count\":{}", self.count);
        if let Some((lo, hi)) = self.range() {
            let _ = write!(o, ",\"min\":{lo},\"max\":{hi}");
        }
        o.push_str(",\"buckets\":[");
        let mut first = true;
        for (i, &n) in self.buckets.iter().enumerate().filter(|(_, n)| **n > 0) {
            if !first {
                o.push(',');
            }
            first = false;
            let lo = if i == 0 { 0 } else { 1u64 << i };
            let hi = 1u128 << (i + 1);
            let _ = write!(o, "{{\"ge\":{lo},\"lt\":{hi},\"count\":{n}}}");
        }
        o.push_str("]}");
        o
    }
}

/// One connection's statistics.
#[derive(Clone, Debug, Default)]
pub struct StatsData {
    /// RTTs of the rate samples, in microseconds.
    pub rtt_us: Log2Histogram,
    /// Delivery rates of the rate samples, in bytes per second (valid samples only).
    pub delivery_rate: Log2Histogram,
    /// Rate samples seen.
    pub samples: u64,
    /// Of them, taken in an application-limited phase.
    pub app_limited: u64,
}

impl Helper for StatsHelper {
    type Data = StatsData;

    fn name(&self) -> &str {
        Self::NAME
    }

    fn hook_points(&self) -> HookPoints {
        HookPoints::of(&[HookPoint::AckDone])
    }

    fn new_conn_data(&self) -> StatsData {
        StatsData::default()
    }

    fn ack_done(&self, d: &mut StatsData, ctx: &AckDoneCtx) {
        let Some(rs) = ctx.rate else { return };
        d.samples += 1;
        d.app_limited += rs.is_app_limited as u64;
        if let Some(rtt) = rs.rtt {
            d.rtt_us.add(rtt.as_micros() as u64);
        }
        if rs.delivery_rate > 0 {
            d.delivery_rate.add(rs.delivery_rate);
        }
    }

    fn info_json(&self, d: &StatsData) -> Option<String> {
        Some(format!(
            "{{\"samples\":{},\"app_limited\":{},\"rtt_us\":{},\"delivery_rate_bytes_per_sec\":{}}}",
            d.samples,
            d.app_limited,
            d.rtt_us.to_json(),
            d.delivery_rate.to_json()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_buckets() {
        assert_eq!(Log2Histogram::bucket_of(0), 0);
        assert_eq!(Log2Histogram::bucket_of(1), 0);
        assert_eq!(Log2Histogram::bucket_of(2), 1);
        assert_eq!(Log2Histogram::bucket_of(1023), 9);
        assert_eq!(Log2Histogram::bucket_of(1024), 10);
        assert_eq!(Log2Histogram::bucket_of(u64::MAX), 63);
        let mut h = Log2Histogram::default();
        assert_eq!(h.to_json(), "{\"count\":0,\"buckets\":[]}");
        for v in [1500, 1600, 10_000] {
            h.add(v);
        }
        assert_eq!((h.bucket(10), h.bucket(13), h.count()), (2, 1, 3));
        assert_eq!(
            h.to_json(),
            "{\"count\":3,\"min\":1500,\"max\":10000,\"buckets\":[{\"ge\":1024,\"lt\":2048,\"count\":2},{\"ge\":8192,\"lt\":16384,\"count\":1}]}"
        );
    }
}
