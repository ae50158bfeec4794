//! ERTT, the enhanced RTT helper (after FreeBSD's `h_ertt`, the estimate its delay-based
//! modules read): every data segment is timed, not one per RTT as the transport's Karn
//! timer does, and the estimate goes to the congestion-control module
//! ([`xstack_cc::CongestionControl::ertt_sample`]) before the ACK that produced it.
//!
//! - **Output** records each new-data segment (a TSO burst as one record: its pieces
//!   leave together) with its send time; a retransmission (or a probe resending data
//!   already sent) marks the records it overlaps.
//! - **Input**, for an ACK that advances SND.UNA: the segment that made the receiver
//!   send it is the one holding the highest byte acknowledged; its RTT is the ACK's
//!   arrival less its send time. Not measured (Karn, RFC 6298 §3): an ACK covering any
//!   retransmitted byte, and one carrying SACK blocks (the receiver holds data above a
//!   hole, so the arrival that triggered it is unknown).
//! - **Delayed ACKs** (RFC 1122 §4.2.3.2, RFC 5681 §4.2: an ACK at least every second
//!   full segment, else within a timer): once an ACK has covered two or more segments,
//!   the receiver is known to delay, and an ACK covering less than two segments may
//!   have waited for its timer (the end of a flight, an odd segment). Its measurement
//!   is set aside, counted in `delayed`, and used for nothing. So is one carrying data
//!   (the receiver held it for its reply). h_ertt makes the same distinction; it is
//!   what keeps a 40 ms delayed-ACK timer out of a 10 ms path's estimate.
//! - **TSO**: a burst's pieces share the burst's send time, so a piece's measurement
//!   includes the serialization of the pieces ahead of it, which is time the network
//!   held it.
//!
//! The record queue is bounded ([`MAX_RECORDS`]): beyond it the oldest are dropped
//! (their ACKs then measure nothing), so a peer cannot make it grow.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use xstack_cc::Ertt;

use crate::tcp::hhook::{Helper, HookPoint, HookPoints, InputCtx, OutputCtx};

/// Records kept at most per connection.
pub const MAX_RECORDS: usize = 4096;

/// The helper: register it with `NetStack::register_helper(ErttHelper)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErttHelper;

impl ErttHelper {
    /// The name it registers under.
    pub const NAME: &'static str = "ertt";
}

/// One transmission of new data.
#[derive(Clone, Copy, Debug)]
struct Sent {
    start: u32,
    end: u32,
    at: Instant,
    rexmit: bool,
}

/// `a < b` in sequence space.
fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// One connection's ERTT state.
#[derive(Debug, Default)]
pub struct ErttData {
    sent: VecDeque<Sent>,
    /// The receiver delays ACKs: an ACK covered two segments or more.
    dlyack_rx: bool,
    est: Option<Ertt>,
    /// A measurement not yet handed to congestion control.
    fresh: bool,
    /// The last measurement set aside as possibly delayed.
    last_delayed: Option<Duration>,
    /// ACKs not measured by Karn's rule or ambiguity (retransmitted bytes, SACK blocks).
    excluded: u64,
    /// Measurements set aside as possibly delayed.
    delayed: u64,
    /// Records dropped at the bound.
    dropped: u64,
}

impl ErttData {
    /// The estimate, once there is a measurement.
    pub fn estimate(&self) -> Option<Ertt> {
        self.est
    }

    /// The last measurement set aside as possibly held by the receiver's delayed-ACK
    /// timer.
    pub fn last_delayed(&self) -> Option<Duration> {
        self.last_delayed
    }

    /// ACKs not measured because they covered retransmitted bytes or carried SACK
    /// blocks.
    pub fn excluded(&self) -> u64 {
        self.excluded
    }

    /// A copy without the send records (tests read it after the connection's lock).
    #[cfg(test)]
    pub(crate) fn clone_for_test(&self) -> ErttData {
        ErttData {
            sent: VecDeque::new(),
            dlyack_rx: self.dlyack_rx,
            est: self.est,
            fresh: self.fresh,
            last_delayed: self.last_delayed,
            excluded: self.excluded,
            delayed: self.delayed,
            dropped: self.dropped,
        }
    }

    /// Whether the receiver is known to delay ACKs.
    pub fn receiver_delays_acks(&self) -> bool {
        self.dlyack_rx
    }

    fn on_output(&mut self, c: &OutputCtx) {
        if c.len == 0 {
            return;
        }
        let (start, end) = (c.seq, c.seq.wrapping_add(c.len as u32));
        // Data sent before goes out again unflagged as a tail loss probe of the last
        // segment or a repeated zero-window probe: a retransmission all the same.
        let resent = self.sent.back().is_some_and(|last| lt(start, last.end));
        if c.retransmit || resent {
            for s in self.sent.iter_mut() {
                if lt(start, s.end) && lt(s.start, end) {
                    s.rexmit = true;
                }
            }
            return;
        }
        if self.sent.len() == MAX_RECORDS {
            self.sent.pop_front();
            self.dropped += 1;
        }
        self.sent.push_back(Sent {
            start,
            end,
            at: c.now,
            rexmit: false,
        });
    }

    fn on_input(&mut self, c: &InputCtx<'_>) {
        if c.acked == 0 {
            return;
        }
        let ack = c.ack;
        // The records this ACK covers; the last of them holds the highest byte acked.
        let mut newest = None;
        let mut rexmit = false;
        while let Some(s) = self.sent.front_mut() {
            if !lt(s.start, ack) {
                break;
            }
            rexmit |= s.rexmit;
            newest = Some(*s);
            if lt(ack, s.end) {
                // Partly acknowledged (a TSO burst): the rest keeps its send time.
                s.start = ack;
                break;
            }
            self.sent.pop_front();
        }
        let Some(seg) = newest else { return };
        if rexmit || !c.sack.is_empty() {
            self.excluded += 1;
            return;
        }
        let rtt = c.now.saturating_duration_since(seg.at);
        let mss = c.vars.maxseg.max(1);
        if c.acked >= 2 * mss {
            self.dlyack_rx = true;
        }
        if c.payload_len > 0 || (self.dlyack_rx && c.acked < 2 * mss) {
            self.last_delayed = Some(rtt);
            self.delayed += 1;
            if let Some(e) = &mut self.est {
                e.delayed = self.delayed;
            }
            return;
        }
        let e = self.est.get_or_insert(Ertt {
            rtt,
            min_rtt: rtt,
            max_rtt: rtt,
            srtt: rtt,
            samples: 0,
            delayed: 0,
            round: c.vars.round,
            now: c.now,
        });
        e.rtt = rtt;
        e.min_rtt = e.min_rtt.min(rtt);
        e.max_rtt = e.max_rtt.max(rtt);
        if e.samples > 0 {
            // SRTT <- 7/8 SRTT + 1/8 R (RFC 6298 §2.3's gain).
            e.srtt = (e.srtt * 7 + rtt) / 8;
        }
        e.samples += 1;
        e.delayed = self.delayed;
        e.round = c.vars.round;
        e.now = c.now;
        self.fresh = true;
    }
}

impl Helper for ErttHelper {
    type Data = ErttData;

    fn name(&self) -> &str {
        Self::NAME
    }

    fn hook_points(&self) -> HookPoints {
        HookPoints::of(&[HookPoint::Input, HookPoint::Output])
    }

    fn new_conn_data(&self) -> ErttData {
        ErttData::default()
    }

    fn input(&self, data: &mut ErttData, ctx: &InputCtx<'_>) {
        data.on_input(ctx);
    }

    fn output(&self, data: &mut ErttData, ctx: &OutputCtx) {
        data.on_output(ctx);
    }

    fn take_ertt(&self, data: &mut ErttData) -> Option<Ertt> {
        if std::mem::take(&mut data.fresh) {
            data.est
        } else {
            None
        }
    }

    fn info_json(&self, d: &ErttData) -> Option<String> {
        let us = |x: Duration| x.as_micros() as u64;
        let mut o = String::from("{");
        if let Some(e) = d.est {
            let _ = write!(
                o,
                "\"rtt_us\":{},\"min_rtt_us\":{},\"max_rtt_us\":{},\"srtt_us\":{},\"samples\":{},\"delayed\":{},",
                us(e.rtt),
                us(e.min_rtt),
                us(e.max_rtt),
                us(e.srtt),
                e.samples,
                e.delayed
            );
        }
        let _ = write!(
            o,
            "\"excluded\":{},\"records_dropped\":{},\"receiver_delays_acks\":{},\"records\":{}}}",
            d.excluded,
            d.dropped,
            d.dlyack_rx,
            d.sent.len()
        );
        Some(o)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use xstack_cc::Recovery;

    use super::*;
    use crate::tcp::hhook::ConnVars;
    use crate::tcp::segment::TcpFlags;
    use crate::tcp::tcb::State;

    const MSS: u32 = 1000;

    fn vars() -> ConnVars {
        let a = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
        ConnVars {
            state: State::Established,
            local: a,
            remote: a,
            snd_una: 0,
            snd_nxt: 0,
            snd_max: 0,
            snd_wnd: 0,
            rcv_nxt: 0,
            maxseg: MSS,
            cwnd: 0,
            ssthresh: 0,
            in_flight: 0,
            srtt: None,
            min_rtt: None,
            recovery: Recovery::Open,
            round: 0,
        }
    }

    fn sent(d: &mut ErttData, t: Instant, seq: u32, len: usize, retransmit: bool) {
        d.on_output(&OutputCtx {
            now: t,
            vars: vars(),
            seq,
            len,
            flags: TcpFlags::ACK,
            retransmit,
            tso_segsz: 0,
            tsval: None,
        });
    }

    fn acked(d: &mut ErttData, t: Instant, una: u32, ack: u32) -> Option<Ertt> {
        d.on_input(&InputCtx {
            now: t,
            vars: vars(),
            seq: 0,
            ack,
            flags: TcpFlags::ACK,
            window: 65535,
            payload_len: 0,
            timestamps: None,
            sack: &[],
            acked: ack.wrapping_sub(una),
        });
        ErttHelper.take_ertt(d)
    }

    #[test]
    fn each_ack_measures_the_segment_that_triggered_it_across_the_wrap() {
        let (t0, ms) = (Instant::now(), Duration::from_millis(1));
        let mut d = ErttData::default();
        let base = u32::MAX - 1500;
        for i in 0..4 {
            sent(
                &mut d,
                t0 + ms * i,
                base.wrapping_add(i * MSS),
                MSS as usize,
                false,
            );
        }
        // Segments 0-1 acknowledged 10 ms after segment 1 left, 2-3 12 ms after 3 did.
        let e = acked(&mut d, t0 + ms * 11, base, base.wrapping_add(2 * MSS)).unwrap();
        assert_eq!((e.rtt, e.samples), (ms * 10, 1));
        let e = acked(
            &mut d,
            t0 + ms * 15,
            base.wrapping_add(2 * MSS),
            base.wrapping_add(4 * MSS),
        )
        .unwrap();
        assert_eq!(
            (e.rtt, e.min_rtt, e.max_rtt, e.samples),
            (ms * 12, ms * 10, ms * 12, 2)
        );
        assert_eq!(e.srtt, (ms * 10 * 7 + ms * 12) / 8);
        assert!(d.sent.is_empty());
        // Nothing new: nothing for congestion control.
        assert_eq!(ErttHelper.take_ertt(&mut d), None);
    }

    #[test]
    fn a_burst_partly_acknowledged_keeps_its_send_time() {
        let (t0, ms) = (Instant::now(), Duration::from_millis(1));
        let mut d = ErttData::default();
        sent(&mut d, t0, 0, 8 * MSS as usize, false);
        let e = acked(&mut d, t0 + ms * 10, 0, 2 * MSS).unwrap();
        assert_eq!(e.rtt, ms * 10);
        let e = acked(&mut d, t0 + ms * 11, 2 * MSS, 4 * MSS).unwrap();
        assert_eq!(e.rtt, ms * 11);
        assert_eq!(d.sent.len(), 1);
        assert_eq!(d.sent[0].start, 4 * MSS);
    }

    #[test]
    fn resent_data_is_never_measured() {
        let (t0, ms) = (Instant::now(), Duration::from_millis(1));
        let mut d = ErttData::default();
        for i in 0..3 {
            sent(&mut d, t0, i * MSS, MSS as usize, false);
        }
        // A retransmission of the first, and a tail loss probe resending the last without
        // the retransmission flag.
        sent(&mut d, t0 + ms * 30, 0, MSS as usize, true);
        sent(&mut d, t0 + ms * 30, 2 * MSS, MSS as usize, false);
        assert_eq!(d.sent.len(), 3);
        assert_eq!(acked(&mut d, t0 + ms * 31, 0, 2 * MSS), None);
        assert_eq!(acked(&mut d, t0 + ms * 32, 2 * MSS, 3 * MSS), None);
        assert_eq!(d.excluded(), 2);
        assert!(d.estimate().is_none());
    }

    #[test]
    fn short_acks_from_a_delaying_receiver_are_set_aside() {
        let (t0, ms) = (Instant::now(), Duration::from_millis(1));
        let mut d = ErttData::default();
        // Before the receiver is known to delay, a one-segment ACK is measured.
        sent(&mut d, t0, 0, MSS as usize, false);
        assert!(acked(&mut d, t0 + ms * 10, 0, MSS).is_some());
        for i in 1..4 {
            sent(&mut d, t0 + ms * 20, i * MSS, MSS as usize, false);
        }
        assert!(acked(&mut d, t0 + ms * 30, MSS, 3 * MSS).is_some());
        assert!(d.receiver_delays_acks());
        // The odd segment's ACK came after the delayed-ACK timer.
        assert_eq!(acked(&mut d, t0 + ms * 70, 3 * MSS, 4 * MSS), None);
        assert_eq!(d.last_delayed(), Some(ms * 50));
        let e = d.estimate().unwrap();
        assert_eq!((e.max_rtt, e.samples, e.delayed), (ms * 10, 2, 1));
    }

    #[test]
    fn the_record_queue_is_bounded() {
        let t0 = Instant::now();
        let mut d = ErttData::default();
        for i in 0..(MAX_RECORDS as u32 + 10) {
            sent(&mut d, t0, i, 1, false);
        }
        assert_eq!(d.sent.len(), MAX_RECORDS);
        assert_eq!(d.dropped, 10);
    }
}
