//! What a connection sends next (FreeBSD `tcp_output.c`): SYN and SYN,ACK with their
//! options, data limited by the peer's window and cwnd with Nagle and sender-side SWS
//! avoidance, FIN, retransmissions, zero-window probes, keepalive probes, pure ACKs
//! and window updates, and RST on abort.
//!
//! [`Tcb::poll_output`] returns one segment at a time as a header plus a range of the
//! send buffer; the caller copies the payload straight into its transmit frame with
//! [`Tcb::copy_payload`].

use std::time::Instant;

use xstack_cc::Recovery;

use super::sack::{Rexmit, DUP_THRESH};
use super::segment::{Ecn, SegmentOut, TcpFlags, TcpOptions};
use super::seq::Seq;
use super::tcb::{State, Tcb};
use super::timer::TimerKind;

/// How [`Tcb::output_from`] sizes a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Send {
    /// What the windows allow: new data, or go-back-N after an RTO; Nagle and SWS
    /// avoidance apply.
    Window,
    /// A retransmission of at most `max_len` sequence numbers (and one SMSS), whatever
    /// the windows say: fast retransmit, NewReno's partial ACK, RFC 6675 NextSeg().
    Rexmit { max_len: u32 },
}

/// Which NextSeg() rule chose a SACK-recovery retransmission: it decides what happens to
/// HighRxt and RescueRxt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RexmitKind {
    /// Rules (1) and (3): HighRxt moves past it.
    NextSeg,
    /// Rule (4), the rescue retransmission: RescueRxt is set, HighRxt is not.
    Rescue,
    /// A retransmission found lost again, resent: neither moves.
    Relost,
}

/// The sequence space `seg` covers ends here.
fn seg_end(seg: &OutSegment) -> Seq {
    seg.hdr.seq + seg.payload_len as u32 + seg.hdr.flags.contains(TcpFlags::FIN) as u32
}

/// One segment to send: its header and which bytes of the send buffer it carries.
#[derive(Clone, Debug)]
pub struct OutSegment {
    /// Header fields and options.
    pub hdr: SegmentOut,
    /// Offset of the payload in the send buffer (from snd_una's byte).
    pub payload_offset: usize,
    /// Payload length.
    pub payload_len: usize,
    /// A retransmission (counted stack-wide as `tcp.retransmits`).
    pub retransmit: bool,
    /// TSO: the payload is longer than one MSS and the device cuts it into pieces of
    /// this many bytes (`tso_segsz`); 0 for an ordinary segment.
    pub tso_segsz: u16,
    /// The ECN codepoint for the IP header: ECT(0) on new data of an ECN connection,
    /// Not-ECT on everything else (RFC 3168 §6.1.1, §6.1.4-§6.1.6).
    pub ecn: Ecn,
}

impl OutSegment {
    /// A segment without payload (SYN, SYN,ACK, pure ACK, keepalive probe, RST): Not-ECT
    /// (RFC 3168 §6.1.1, §6.1.4), never cut by TSO.
    fn control(hdr: SegmentOut, retransmit: bool) -> OutSegment {
        OutSegment {
            hdr,
            payload_offset: 0,
            payload_len: 0,
            retransmit,
            tso_segsz: 0,
            ecn: Ecn::NotEct,
        }
    }
}

impl Tcb {
    /// The next segment to send, if any. Call until it returns `None`.
    pub fn poll_output(&mut self, now: Instant) -> Option<OutSegment> {
        // Whatever limited ACK the TCP layer did not settle goes out under the
        // connection's own limit only (a control block driven on its own).
        self.settle_limited_ack(now, || true);
        self.arm_buffer_check(now);
        let Some(mut seg) = self.next_segment(now) else {
            // Output is done: (re)arm the tail loss probe (RFC 8985 §7.2).
            self.tlp_schedule(now);
            return None;
        };
        self.ecn_output_echo(&mut seg.hdr.flags);
        self.hook_output(&seg, now);
        Some(seg)
    }

    fn next_segment(&mut self, now: Instant) -> Option<OutSegment> {
        if self.send_rst {
            self.send_rst = false;
            // RFC 9293 §3.10.5 ABORT: "Send a reset segment: <SEQ=SND.NXT><CTL=RST>".
            let mut hdr = self.header(self.snd_max, TcpFlags::RST | TcpFlags::ACK, now);
            hdr.window = 0;
            return Some(OutSegment::control(hdr, false));
        }
        match self.state {
            State::Closed => return None,
            State::SynSent | State::SynReceived if self.snd_nxt == self.iss => {
                return Some(self.output_syn(now))
            }
            State::SynSent => return None,
            _ => {}
        }
        if self.state == State::SynReceived {
            // Waiting for the handshake's ACK: only ACKs (e.g. to a duplicate SYN).
            return self.output_pure_ack(now);
        }
        if self.keep_probe_due {
            self.keep_probe_due = false;
            // RFC 1122 §4.2.3.6 / BSD: a probe is a segment with SEG.SEQ = SND.UNA - 1
            // and no data, which the peer must answer with an ACK.
            let hdr = self.header(self.snd_una - 1, TcpFlags::ACK, now);
            self.note_ack_sent(&hdr);
            return Some(OutSegment::control(hdr, false));
        }
        if self.rack.tlp_due {
            // RFC 8985 §7.3: the PTO fired.
            if let Some(seg) = self.output_tlp(now) {
                return Some(seg);
            }
        }
        if let Some(seg) = self.output_tlp_pair(now) {
            return Some(seg);
        }
        if self.rexmit_one {
            self.rexmit_one = false;
            // Never into data the peer SACKed.
            let max_len = self
                .sb
                .next_sacked_start(self.snd_una)
                .map_or(u32::MAX, |l| l.dist(self.snd_una));
            if let Some(seg) = self.output_from(self.snd_una, now, Send::Rexmit { max_len }) {
                if self.in_sack_recovery() {
                    // RFC 6675 §5 step (4.3): "To prevent repeated retransmission of the
                    // same data or a premature rescue retransmission, set both HighRxt and
                    // RescueRxt to the highest sequence number in the retransmitted
                    // segment."
                    let end = seg_end(&seg);
                    self.sb.high_rxt = self.sb.high_rxt.max(end);
                    self.sb.rescue_rxt = Some(end);
                    self.watch_rexmit(&seg);
                }
                return Some(seg);
            }
        }
        if self.in_sack_recovery() {
            if let Some(seg) = self.output_sack_recovery(now) {
                return Some(seg);
            }
            return self.output_pure_ack(now);
        }
        if self.sack_ok && self.snd_nxt < self.snd_max {
            // Go-back-N after an RTO skips what the peer SACKed (the scoreboard survives
            // the first expiry; see `handle_timeout`). SACKed ranges never touch, so one
            // jump lands on unSACKed data.
            if let Some(end) = self.sb.sacked_end(self.snd_nxt) {
                self.snd_nxt = end;
            }
        }
        if self.pace_hold(now) {
            return self.output_pure_ack(now);
        }
        if let Some(seg) = self.output_from(self.snd_nxt, now, Send::Window) {
            self.pace_sent(&seg, now);
            return Some(seg);
        }
        self.output_pure_ack(now)
    }

    /// Pacing, before new data goes out: with a rate from the module
    /// ([`xstack_cc::CongestionControl::pacing_rate`]), true while the previous burst's
    /// time slot lasts (the [`TimerKind::Pace`] timer then wakes the output); also sizes
    /// the burst to about 1 ms at the rate, at least two segments. Without a rate, never
    /// holds and leaves bursts alone: the behaviour of window-based modules.
    /// Retransmissions (fast retransmit, recovery, probes) are not paced.
    fn pace_hold(&mut self, now: Instant) -> bool {
        let rate = self.cc.pacing_rate().unwrap_or(0);
        if rate == 0 {
            self.pace_burst = 0;
            self.pace_next = None;
            self.timers.stop(TimerKind::Pace);
            return false;
        }
        let mss = self.t_maxseg as usize;
        let per_ms = usize::try_from(rate / 1000).unwrap_or(usize::MAX);
        self.pace_burst = per_ms.max(2 * mss);
        match self.pace_next {
            Some(t) if t > now => {
                self.timers.set(TimerKind::Pace, t);
                true
            }
            _ => false,
        }
    }

    /// Pacing, after new data went out: its slot is `len / rate` from the later of now and
    /// the end of the previous slot (so an idle gap does not bank credit).
    fn pace_sent(&mut self, seg: &OutSegment, now: Instant) {
        let rate = self.cc.pacing_rate().unwrap_or(0);
        if rate == 0 || seg.payload_len == 0 {
            return;
        }
        let slot = std::time::Duration::from_nanos(
            u64::try_from(seg.payload_len as u128 * 1_000_000_000 / u128::from(rate))
                .unwrap_or(u64::MAX),
        );
        let from = self.pace_next.map_or(now, |t| t.max(now));
        self.pace_next = Some(from + slot);
    }

    /// RFC 6675 §5 step (C), one segment per call: "If cwnd - pipe >= 1 SMSS, the sender
    /// SHOULD transmit one or more segments as follows: (C.1) The scoreboard MUST be
    /// queried via NextSeg () for the sequence number range of the next segment to
    /// transmit (if any), and the given segment sent. If NextSeg () returns failure (no
    /// data to send), return without sending anything". Pipe is recomputed each time
    /// ((C.4) "incrementing pipe by the number of octets transmitted" falls out of it:
    /// new data extends the unSACKed tail, a retransmission raises HighRxt).
    fn output_sack_recovery(&mut self, now: Instant) -> Option<OutSegment> {
        let mss = self.t_maxseg;
        if self.ccv.cwnd.saturating_sub(self.pipe()) < mss {
            return None;
        }
        if self.rack_active() {
            // NextSeg() with RACK (RFC 8985 §6.2): the lowest range RACK marked lost,
            // then new data. No rules (3) and (4): a lost tail is TLP's business.
            if let Some((seq, len)) = self.rack.log.next_lost(mss) {
                return self.sack_rexmit(Rexmit { seq, len }, RexmitKind::NextSeg, now);
            }
            return self.output_from(self.snd_nxt, now, Send::Window);
        }
        let (una, max) = (self.snd_una, self.snd_max);
        // A retransmission found lost again (`sack.rs`, Linux's lost-retransmit
        // detection) is the lowest lost range: it goes first.
        if let Some(r) = self.sb.next_relost(mss) {
            return self.sack_rexmit(r, RexmitKind::Relost, now);
        }
        if let Some(r) = self.sb.next_lost(una, max, mss) {
            return self.sack_rexmit(r, RexmitKind::NextSeg, now);
        }
        // NextSeg() rule (2): "If no sequence number 'S2' per rule (1) exists but there
        // exists available unsent data and the receiver's advertised window allows, the
        // sequence range of one segment of up to SMSS octets of previously unsent data
        // starting with sequence number HighData+1 MUST be returned."
        if let Some(seg) = self.output_from(self.snd_nxt, now, Send::Window) {
            return Some(seg);
        }
        if let Some(r) = self.sb.next_unsacked(una, max, mss) {
            return self.sack_rexmit(r, RexmitKind::NextSeg, now);
        }
        if let Some(r) = self.sb.rescue(una, max, mss) {
            return self.sack_rexmit(r, RexmitKind::Rescue, now);
        }
        None
    }

    /// Sends a retransmission NextSeg() chose and records it.
    fn sack_rexmit(&mut self, r: Rexmit, kind: RexmitKind, now: Instant) -> Option<OutSegment> {
        let seg = self.output_from(r.seq, now, Send::Rexmit { max_len: r.len })?;
        match kind {
            RexmitKind::Rescue => {
                // Rule (4): "RescueRxt set to RecoveryPoint. HighRxt MUST NOT be updated."
                self.sb.rescue_rxt = Some(self.recover);
            }
            RexmitKind::NextSeg => {
                // (C.2): "If any of the data octets sent in (C.1) are below HighData,
                // HighRxt MUST be set to the highest sequence number of the retransmitted
                // segment unless NextSeg () rule (4) was invoked for this retransmission."
                self.sb.high_rxt = self.sb.high_rxt.max(seg_end(&seg));
            }
            // A second retransmission of a range NextSeg() already returned: HighRxt
            // already covers it, or (a lost rescue) must not be moved by it.
            RexmitKind::Relost => {}
        }
        self.watch_rexmit(&seg);
        Some(seg)
    }

    /// Watches a retransmission of SACK recovery for loss (`sack.rs`): it is declared
    /// lost once data sent after it -- beyond today's `snd_max` -- is SACKed first.
    fn watch_rexmit(&mut self, seg: &OutSegment) {
        if self.cfg.lost_retransmit && !self.rack_active() {
            let end = seg_end(seg);
            if end > seg.hdr.seq {
                self.sb.note_rexmit(seg.hdr.seq, end, self.snd_max);
            }
        }
    }

    /// A tail loss probe (`tcp/rack.rs`): up to `max_len` from `seq`, whatever cwnd says.
    pub(super) fn output_probe(
        &mut self,
        seq: Seq,
        max_len: u32,
        now: Instant,
    ) -> Option<OutSegment> {
        self.output_from(seq, now, Send::Rexmit { max_len })
    }

    /// Bytes the windows let `output_from` send starting at `seq` (before Nagle).
    fn usable_window(&self, seq: Seq) -> usize {
        let outstanding = seq.dist(self.snd_una);
        let rwnd_room = self.snd_wnd.saturating_sub(outstanding);
        if self.in_sack_recovery() {
            // RFC 6675 §5 (C): cwnd - pipe, not cwnd - FlightSize; the peer's window still
            // bounds the sequence space.
            return rwnd_room.min(self.ccv.cwnd.saturating_sub(self.pipe())) as usize;
        }
        let mut cwnd = self.ccv.cwnd;
        if self.limited_transmit_allowed(seq) {
            // RFC 3042 §2: "(b) The amount of outstanding data would remain less than or
            // equal to the congestion window plus 2 segments. In other words, the sender
            // can only send two segments beyond the congestion window (cwnd)." One more
            // segment per duplicate ACK; cwnd itself is not changed ("The congestion
            // window (cwnd) MUST NOT be changed when these new segments are transmitted").
            cwnd = cwnd.saturating_add(self.dupacks * self.t_maxseg);
        }
        let mut in_net = outstanding;
        if self.sack_ok && self.recovery == Recovery::Rto {
            // Go-back-N over a scoreboard: SACKed data has left the network.
            in_net -= self.sb.sacked_between(self.snd_una, seq);
        }
        rwnd_room.min(cwnd.saturating_sub(in_net)) as usize
    }

    /// RFC 3042 §2: "a TCP sender SHOULD send a segment of previously unsent data in
    /// response to each of the first two duplicate acknowledgments that arrive at the
    /// sender" -- new data only, and not once recovery has begun.
    fn limited_transmit_allowed(&self, seq: Seq) -> bool {
        self.cfg.limited_transmit
            && self.recovery == Recovery::Open
            && (1..DUP_THRESH).contains(&self.dupacks)
            && seq == self.snd_max
    }

    /// Copies the payload of `seg` into `dst` (exactly `seg.payload_len` bytes).
    pub fn copy_payload(&self, seg: &OutSegment, dst: &mut [u8]) -> usize {
        self.sndbuf
            .copy_out(seg.payload_offset, &mut dst[..seg.payload_len])
    }

    /// The earliest timer deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// When [`Tcb::handle_timeout`] next has something to do: the earliest timer, or
    /// the check whether idle buffers can give their memory back. What the TCP layer
    /// schedules the connection by.
    pub fn poll_deadline(&self) -> Option<Instant> {
        match (self.timers.next(), self.buffer_check_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn output_syn(&mut self, now: Instant) -> OutSegment {
        let resend = self.snd_max > self.iss;
        let passive = self.state == State::SynReceived;
        let mut flags = TcpFlags::SYN;
        if passive {
            flags |= TcpFlags::ACK;
        }
        flags |= self.ecn_output_syn(passive, resend);
        let mut hdr = self.header(self.iss, flags, now);
        let mut o = TcpOptions {
            layout: self.cfg.option_layout,
            mss: Some(self.cfg.mss),
            ..Default::default()
        };
        // Offer an option actively if configured; answer one only if the peer offered
        // it (RFC 7323 §2.2, §3.2; RFC 2018 §2).
        if (!passive && self.cfg.window_scaling) || (passive && self.wscale_ok) {
            o.wscale = Some(self.rcv_wscale);
        }
        if (!passive && self.cfg.sack) || (passive && self.sack_ok) {
            o.sack_permitted = true;
        }
        if (!passive && self.cfg.timestamps) || (passive && self.ts_enabled) {
            o.timestamps = Some((self.ts_now(now), if passive { self.ts_recent } else { 0 }));
        }
        if self.cfg.no_options {
            o = TcpOptions {
                layout: self.cfg.option_layout,
                ..Default::default()
            };
        }
        hdr.options = o;
        // RFC 7323 §2.2: "The window field in a segment where the SYN bit is set
        // (i.e., a <SYN> or <SYN,ACK>) MUST NOT be scaled."
        hdr.window = self.rcvbuf.window().min(65535) as u16;
        self.snd_nxt = self.iss + 1;
        if self.snd_max < self.snd_nxt {
            self.snd_max = self.snd_nxt;
        }
        if resend {
            self.stats.retransmits += 1;
        } else if self.rtt_timing.is_none() {
            self.rtt_timing = Some((self.iss, now));
        }
        if !self.timers.is_set(TimerKind::Rexmt) {
            self.timers.set(TimerKind::Rexmt, now + self.rto());
        }
        if passive {
            self.note_ack_sent(&hdr);
            // The window this SYN,ACK grants is the buffer's, as scaling will carry it
            // (FreeBSD's syncache_socket: `rcv_adv += rcv_wnd`, the unclamped window):
            // the field's 64 KB cap is RFC 7323's rule for SYNs, not a smaller promise
            // to correct with a window update once the handshake completes (Linux sends
            // none either). The first segment we send carries the scaled window.
            let full = (self.rcvbuf.window() as u32).min(65535u32 << self.rcv_wscale);
            self.rcv_adv = self.rcv_nxt + (full >> self.rcv_wscale << self.rcv_wscale);
        }
        self.stats.segs_out += 1;
        // RFC 3168 §6.1.1: "A host MUST NOT set ECT on SYN or SYN-ACK packets."
        OutSegment::control(hdr, resend)
    }

    /// A data and/or FIN segment starting at `seq`, if one should be sent now (FreeBSD
    /// `tcp_output`: decide the length, then the flags and header, then the send-side
    /// bookkeeping).
    fn output_from(&mut self, seq: Seq, now: Instant, mode: Send) -> Option<OutSegment> {
        let retransmit_one = matches!(mode, Send::Rexmit { .. });
        let base = self.data_base();
        if seq < base {
            return None;
        }
        let off = seq.dist(base) as usize;
        let buffered = self.sndbuf.len();
        let avail = buffered.saturating_sub(off);

        let mss = self.t_maxseg as usize;
        // A zero-window probe (persist timer): it neither arms the retransmission timer
        // nor counts as a retransmission (BSD: the persist and retransmit timers are
        // exclusive), so a window kept closed never times the connection out (RFC 1122
        // §4.2.2.17: "the sending TCP MUST allow the connection to stay open").
        let probe = !retransmit_one && self.force_one && self.snd_wnd == 0;
        let len = match mode {
            Send::Rexmit { max_len } => avail.min(mss).min(max_len as usize),
            Send::Window => self.window_send_len(seq, avail),
        };
        let fin = self.fin_goes_with(seq + len as u32, len, avail, retransmit_one);
        if len == 0 && !fin {
            self.maybe_arm_persist(now, avail);
            return None;
        }

        let mut flags = TcpFlags::ACK;
        if fin {
            flags |= TcpFlags::FIN;
        }
        if len > 0 && len == avail {
            flags |= TcpFlags::PSH;
        }
        let retransmission = seq < self.snd_max;
        let new_data = len > 0 && !retransmission && !probe;
        let ecn = self.ecn_output_data(new_data, len, mss, &mut flags);
        let mut hdr = self.header(seq, flags, now);
        if len > 0 {
            // SACK blocks share the segment with the payload: only as many as the MSS
            // leaves room for (t_maxseg already has the timestamps deducted); a TSO
            // segment's options repeat in every piece, each a full MSS.
            let room = (self.t_maxseg as usize).saturating_sub(len.min(mss));
            let fit = if room >= 12 { (room - 4) / 8 } else { 0 };
            hdr.options.n_sack = hdr.options.n_sack.min(fit as u8);
        }
        let seg_len = len as u32 + fin as u32;
        let new_end = seq + seg_len;
        if seg_len > 0 {
            let tsval = hdr.options.timestamps.map_or(0, |(v, _)| v);
            self.rack_on_send(seq, new_end, tsval, now);
            self.prr_on_send(seg_len);
        }

        self.account_data_sent(seq, len, new_end, probe, now);
        self.advance_snd_nxt(new_end, retransmit_one, !probe && seg_len > 0, now);
        self.note_ack_sent(&hdr);
        if self.sack_ok
            && hdr.options.n_sack == 0
            && (self.dsack.is_some() || self.rcvbuf.has_ooo())
        {
            // No room for the SACK blocks beside the payload: a pure ACK carries them.
            self.ack_now = true;
        }
        self.stats.segs_out += len.div_ceil(mss).max(1) as u64;
        Some(OutSegment {
            hdr,
            payload_offset: off,
            payload_len: len,
            retransmit: retransmission && !probe,
            tso_segsz: if len > mss { mss as u16 } else { 0 },
            ecn,
        })
    }

    /// How many of the `avail` bytes buffered from `seq` the windows, TSO, Nagle and
    /// sender-side SWS avoidance let go now (`Send::Window`); a zero-window probe sends
    /// one byte. Notes whether the connection is cwnd-limited.
    fn window_send_len(&mut self, seq: Seq, avail: usize) -> usize {
        let mss = self.t_maxseg as usize;
        let usable = self.usable_window(seq);
        // TSO (FreeBSD tcp_output's `tso` case): new data only -- a retransmission
        // or a probe goes out one MSS at a time -- cut to whole segments unless it
        // is the tail of what is buffered.
        let max = if self.cfg.tso_max > mss && seq >= self.snd_max && !self.force_one {
            self.cfg.tso_max
        } else {
            mss
        };
        let max = if self.pace_burst > 0 {
            max.min(self.pace_burst.max(mss))
        } else {
            max
        };
        let mut len = avail.min(usable).min(max);
        if len > mss && len % mss != 0 {
            // A fractional last piece goes only where it would on its own, after
            // the full ones: the tail of the buffer that Nagle lets through with
            // data in flight, or half the peer's largest window (the checks below).
            // So TSO puts on the wire exactly what MSS-at-a-time output would.
            let tail = len % mss;
            let tail_ok = len == avail
                && (self.nodelay
                    || self.fin_queued()
                    || (self.max_sndwnd > 0 && tail >= self.max_sndwnd as usize / 2));
            if !tail_ok {
                len -= tail;
            }
        }
        // cwnd-limited: more was ready than cwnd let through (FreeBSD
        // CCF_CWND_LIMITED), as opposed to app- or rwnd-limited.
        if avail > 0 {
            self.cwnd_limited = (self.ccv.cwnd as usize) < self.snd_wnd as usize
                && avail > len
                && usable < mss.min(avail);
        }
        if seq >= self.snd_max && avail < mss && self.send_log_active() {
            // Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation §3.4):
            // less than a segment left to send while cwnd has room is an
            // application-limited phase; its samples may understate the path.
            let pipe = self.pipe();
            if pipe < self.ccv.cwnd {
                self.rack.rate.on_app_limited(pipe);
            }
        }
        if self.force_one && self.snd_wnd == 0 && avail > 0 && len == 0 {
            // Zero-window probe: one byte beyond the window (RFC 9293 §3.8.6.1).
            len = 1;
        }
        if self.sack_ok && seq < self.snd_max {
            // A go-back-N retransmission stops where SACKed data begins.
            if let Some(l) = self.sb.next_sacked_start(seq) {
                len = len.min(l.dist(seq) as usize);
            }
        }
        if len > 0 && !self.force_one {
            let in_flight = self.snd_max > self.snd_una;
            let retransmitting = seq < self.snd_max;
            // Send now if: a full segment; or all the data we have and (Nagle off
            // or nothing in flight) (RFC 9293 §3.7.4, RFC 896); or at least half
            // the largest window the peer offered (§3.8.6.2.1); or a
            // retransmission after an RTO.
            let full = len >= mss;
            let last = len == avail;
            let nagle_ok = self.nodelay || !in_flight || self.fin_queued();
            let half_window = self.max_sndwnd > 0 && len >= (self.max_sndwnd as usize) / 2;
            if !(full || (last && nagle_ok) || half_window || retransmitting) {
                len = 0;
            }
        }
        len
    }

    /// Whether our FIN goes on the segment of `len` of the `avail` bytes that ends at
    /// `end`: after the last byte, in a state that sends one, and within the window.
    fn fin_goes_with(&self, end: Seq, len: usize, avail: usize, retransmit_one: bool) -> bool {
        let can_fin = matches!(
            self.state,
            State::FinWait1 | State::Closing | State::LastAck
        );
        let fin = can_fin && self.fin_seq() == Some(end) && len == avail;
        fin && (retransmit_one || {
            // The FIN takes a sequence number too: it must fit the window, except it
            // may always follow the last data segment we are sending.
            let wnd = self.snd_wnd.min(self.ccv.cwnd);
            end.dist(self.snd_una) < wnd.max(1) || len > 0
        })
    }

    /// Send-side bookkeeping for `len` bytes from `seq` (the segment ends at `new_end`):
    /// restart after idle, limited transmit, retransmission counters and Karn, RTT timing.
    fn account_data_sent(&mut self, seq: Seq, len: usize, new_end: Seq, probe: bool, now: Instant) {
        let retransmission = seq < self.snd_max;
        if len > 0 && !retransmission && self.snd_una == self.snd_max {
            // Sending after an idle period (RFC 5681 §4.1).
            if let Some(last) = self.last_data_sent {
                let idle = now.saturating_duration_since(last);
                let info = xstack_cc::IdleInfo {
                    idle,
                    rto: self.rto(),
                    now,
                };
                self.cc.after_idle(&mut self.ccv, &info);
                self.trace_cc(super::cwnd_trace::CcEvent::Idle, now);
            }
        }
        if len > 0 {
            self.last_data_sent = Some(now);
        }
        if !retransmission
            && self.limited_transmit_allowed(seq)
            && new_end.dist(self.snd_una) > self.ccv.cwnd
        {
            self.stats.limited_transmits += 1;
        }
        if retransmission && !probe {
            self.stats.retransmits += 1;
            self.stats.bytes_retrans += len as u64;
            // Karn: a retransmitted segment must not be timed.
            if let Some((timed, _)) = self.rtt_timing {
                if timed >= seq && timed < new_end {
                    self.rtt_timing = None;
                }
            }
        } else if self.rtt_timing.is_none() && self.recovery == Recovery::Open && self.dupacks == 0
        {
            // Time a segment only when no loss is pending before it: one sent during
            // recovery (or on limited transmit) is acknowledged only once the holes below
            // it are repaired, and timing it would measure the repair -- seconds after an
            // RTO -- as the path's RTT (seen in the simulator as SRTT 4.6 s, RTO 32 s on a
            // 10 ms path). Entering recovery and an RTO already stop the running timing.
            self.rtt_timing = Some((seq, now));
        }
        self.stats.bytes_sent += len as u64;
    }

    /// Moves snd_nxt and snd_max past a segment ending at `new_end`, and arms the
    /// retransmission timer for one that takes sequence space (`arm_rexmt`).
    fn advance_snd_nxt(
        &mut self,
        new_end: Seq,
        retransmit_one: bool,
        arm_rexmt: bool,
        now: Instant,
    ) {
        // A fast retransmission leaves snd_nxt alone unless it reaches past it.
        if !retransmit_one || new_end > self.snd_nxt {
            self.snd_nxt = new_end;
        }
        if self.snd_max < new_end {
            self.snd_max = new_end;
        }
        if arm_rexmt && !self.timers.is_set(TimerKind::Rexmt) {
            self.timers.set(TimerKind::Rexmt, now + self.rto());
            self.timers.stop(TimerKind::Persist);
        }
        if self.force_one {
            self.force_one = false;
        }
    }

    /// Data waits but nothing may be sent: arm the persist timer.
    ///
    /// Zero window: RFC 9293 §3.8.6.1 "The sending TCP must regularly transmit at least
    /// one octet of new data (if available), even if the send window is zero". As
    /// FreeBSD's tcp_output: "If window shrank to 0, cancel pending retransmit, pull
    /// snd_nxt back to (closed) window, and set the persist timer if it isn't already
    /// going" -- the probes then start at SND.UNA, and the retransmission timer, which
    /// would otherwise expire into the closed window until the connection timed out,
    /// stays off.
    ///
    /// Window too small to send into (sender SWS avoidance) with nothing in flight: no
    /// ACK will come to re-run output, so the same timer is RFC 9293 §3.8.6.2.1's
    /// "override timeout" (a forced send of what fits).
    fn maybe_arm_persist(&mut self, now: Instant, avail: usize) {
        if avail == 0 {
            // Nothing new to send, but data may be in flight with neither timer running
            // (a zero-window probe's byte once the window opened: a probe arms no
            // retransmission timer). FreeBSD's tcp_output arms the retransmission timer
            // for outstanding data whenever the persist timer is off.
            let idle =
                !self.timers.is_set(TimerKind::Rexmt) && !self.timers.is_set(TimerKind::Persist);
            if idle && self.snd_max > self.snd_una && self.state.is_synchronized() {
                self.timers.set(TimerKind::Rexmt, now + self.rto());
            }
            return;
        }
        if self.snd_wnd == 0 {
            self.timers.stop(TimerKind::Rexmt);
            self.rxtshift = 0;
            self.snd_nxt = self.snd_una;
            self.zero_window_since.get_or_insert(now);
        } else if self.snd_una != self.snd_max || self.timers.is_set(TimerKind::Rexmt) {
            // An ACK is due and will run output again.
            return;
        }
        if !self.timers.is_set(TimerKind::Persist) {
            let t = self.persist_interval();
            self.timers.set(TimerKind::Persist, now + t);
        }
    }

    /// Persist interval: RTO-based with exponential backoff, clamped to [5 s, 60 s]
    /// as BSD's tcp_persmin/tcp_persmax, but never below the RTO minimum.
    pub(crate) fn persist_interval(&self) -> std::time::Duration {
        use std::time::Duration;
        let base = self
            .rto()
            .saturating_mul(1u32 << self.persist_shift.min(10));
        base.clamp(
            Duration::from_millis(200).max(self.cfg.rto.min),
            Duration::from_secs(60),
        )
    }

    /// A pure ACK if one is owed: `ack_now`, or a window update worth sending
    /// (RFC 9293 §3.8.6.2.2 receiver SWS avoidance).
    fn output_pure_ack(&mut self, now: Instant) -> Option<OutSegment> {
        let update = self.state.can_receive() && self.window_update_due();
        if !self.ack_now && !update {
            return None;
        }
        // BSD: "If we are sending a pure ack, use snd_max" as the sequence number.
        let challenge = std::mem::take(&mut self.challenge_now);
        let hdr = match self.unacked_fin() {
            // FreeBSD's tcp_output with `fin_with_every_ack`: "If we are doing a
            // retransmission of FIN, back up snd_nxt" -- the ACK carries the FIN again.
            Some(fin) if self.cfg.fin_with_every_ack && !challenge => {
                self.header(fin, TcpFlags::ACK | TcpFlags::FIN, now)
            }
            _ => self.header(self.snd_max, TcpFlags::ACK, now),
        };
        self.note_ack_sent(&hdr);
        self.stats.segs_out += 1;
        // RFC 3168 §6.1.4: pure ACKs are sent Not-ECT.
        Some(OutSegment::control(hdr, false))
    }

    /// Our FIN's sequence number while it is sent and unacknowledged.
    fn unacked_fin(&self) -> Option<Seq> {
        let fin = self.fin_seq()?;
        let sent = matches!(
            self.state,
            State::FinWait1 | State::Closing | State::LastAck
        ) && self.snd_max == fin + 1;
        (sent && self.snd_una <= fin).then_some(fin)
    }

    /// True when a window update is worth sending now (the application's read opened
    /// the window by two segments or half the buffer).
    pub fn window_update_wanted(&self) -> bool {
        self.state.can_receive() && self.window_update_due()
    }

    /// Whether the window grew enough since we last advertised it: by two segments or
    /// by half the buffer (BSD's rule).
    fn window_update_due(&self) -> bool {
        let promised = if self.rcv_adv > self.rcv_nxt {
            self.rcv_adv.dist(self.rcv_nxt)
        } else {
            0
        };
        // What the scaled window field can carry: less than one unit of the scale
        // cannot move the advertised edge.
        let win = self.rcv_window() >> self.rcv_wscale << self.rcv_wscale;
        let adv = win.saturating_sub(promised);
        // An update that opens nothing is never due (with a zero capacity, "half the
        // buffer" would be 0 and every poll would send one).
        adv > 0 && (adv >= 2 * self.cfg.mss as u32 || (adv as usize) * 2 >= self.rcvbuf.capacity())
    }

    /// The window to advertise, bytes (unscaled): free receive space, rounded down to
    /// zero when tiny (receiver SWS avoidance), never shrinking what was promised.
    pub(crate) fn rcv_window(&self) -> u32 {
        let mut win = self.rcvbuf.window() as u32;
        if (win as usize) < self.rcvbuf.capacity() / 4 && win < self.cfg.mss as u32 {
            win = 0;
        }
        let promised = if self.rcv_adv > self.rcv_nxt {
            self.rcv_adv.dist(self.rcv_nxt)
        } else {
            0
        };
        win.max(promised).min(65535u32 << self.rcv_wscale)
    }

    /// A header for a non-SYN segment: ACK of rcv_nxt, our window, timestamps.
    fn header(&self, seq: Seq, flags: TcpFlags, now: Instant) -> SegmentOut {
        let mut options = TcpOptions {
            layout: self.cfg.option_layout,
            ..TcpOptions::default()
        };
        if self.ts_enabled {
            options.timestamps = Some((self.ts_now(now), self.ts_recent));
        }
        if self.sack_ok && flags.contains(TcpFlags::ACK) && !flags.contains(TcpFlags::RST) {
            self.sack_blocks(&mut options);
        }
        SegmentOut {
            src_port: self.local().port(),
            dst_port: self.remote().port(),
            seq,
            ack: self.rcv_nxt,
            flags,
            window: (self.rcv_window() >> self.rcv_wscale).min(65535) as u16,
            options,
        }
    }

    /// The SACK blocks of our next ACK (receiver side).
    ///
    /// RFC 2883 §4: "when D-SACK is used, the first block of the SACK option should be a
    /// D-SACK block specifying the sequence numbers for the duplicate segment that
    /// triggers the acknowledgement". Then the
    /// out-of-order blocks, most recently changed first. RFC 2018 §4: "The first SACK
    /// block (i.e., the one immediately following the kind and length fields in the
    /// option) MUST specify the contiguous block of data containing the segment which
    /// triggered this ACK, unless that segment advanced the Acknowledgment Number field
    /// in the header"; "The SACK option SHOULD be filled out by repeating the most
    /// recently reported SACK blocks (based on first SACK blocks in previous SACK
    /// options) that are not subsets of a SACK block already included". The receive
    /// buffer keeps its blocks in that order. As many as fit beside the other options:
    /// RFC 2018 §3, 4 blocks, or 3 with timestamps.
    fn sack_blocks(&self, o: &mut TcpOptions) {
        let room = if o.timestamps.is_some() { 3 } else { 4 };
        if let Some((l, r)) = self.dsack {
            o.push_sack(l, r);
        }
        for (s, e) in self.rcvbuf.ooo_ranges() {
            if o.sack().len() >= room {
                break;
            }
            o.push_sack(self.rcv_nxt + s as u32, self.rcv_nxt + e as u32);
        }
    }

    /// Bookkeeping once a segment carrying an ACK goes out.
    fn note_ack_sent(&mut self, hdr: &SegmentOut) {
        if !hdr.flags.contains(TcpFlags::ACK) {
            return;
        }
        if hdr.options.n_sack > 0 {
            // RFC 2883 §4: a duplicate is reported once ("each duplicate contiguous
            // sequence of data received is reported in at most one D-SACK block").
            self.dsack = None;
        }
        self.ack_now = false;
        self.challenge_now = false;
        self.unacked_bytes = 0;
        self.timers.stop(TimerKind::Delack);
        self.last_ack_sent = hdr.ack;
        let adv = hdr.ack + ((hdr.window as u32) << self.rcv_wscale);
        if adv > self.rcv_adv {
            self.rcv_adv = adv;
        }
    }
}
