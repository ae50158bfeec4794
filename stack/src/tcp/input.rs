//! Segment arrival on a connection (RFC 9293 §3.10.7.3 and §3.10.7.4, with RFC 5961's
//! blind-attack mitigations and RFC 7323's PAWS), after FreeBSD's `tcp_input.c`.
//!
//! Listening sockets and segments for no connection are handled by the demultiplexer
//! in `layer.rs` ([`TcpLayer::input`](super::layer::TcpLayer::input)); this file is the
//! per-connection part.

use std::time::Instant;

use xstack_cc::{window, AckInfo, CcSignal, CongInfo, RateSample, Recovery, RttSample};

use super::config::{TcpError, TimeWaitInput};
use super::cwnd_trace::CcEvent;
use super::rate::SampleCtx;
use super::recvbuf::OooLimit;
use super::sack::DUP_THRESH;
use super::segment::{Segment, TcpFlags};
use super::seq::Seq;
use super::tcb::{State, Tcb};
use super::timer::TimerKind;

/// What the caller should do after [`Tcb::input`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputOutcome {
    /// Processed (or dropped as unacceptable); run output.
    Ok,
    /// SYN-RECEIVED -> ESTABLISHED: hand the connection to its listener's accept queue.
    Established,
    /// The segment is not for this connection's incarnation: answer with a RST built
    /// from it (RFC 9293 "send a reset" cases), as for a closed port.
    SendReset,
}

impl Tcb {
    /// Processes one segment addressed to this connection.
    pub fn input(&mut self, seg: &Segment<'_>, now: Instant) -> InputOutcome {
        self.stats.segs_in += 1;
        self.last_rx = now;
        self.keep_probes = 0;
        if let Some(ka) = self.cfg.keepalive {
            if self.state.is_synchronized() {
                self.timers.set(TimerKind::Keepalive, now + ka.idle);
            }
        }
        match self.state {
            State::Closed => InputOutcome::SendReset,
            State::SynSent => self.input_syn_sent(seg, now),
            State::TimeWait if self.cfg.time_wait_input == TimeWaitInput::FreeBsd => {
                self.input_twcheck(seg, now)
            }
            _ => self.input_synchronized(seg, now),
        }
    }

    /// RFC 9293 §3.10.7.3: SYN-SENT.
    fn input_syn_sent(&mut self, seg: &Segment<'_>, now: Instant) -> InputOutcome {
        let f = seg.flags;
        // "If the ACK bit is set: If SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset
        // (unless the RST bit is set, if so drop the segment and return)."
        let ack_ok = f.contains(TcpFlags::ACK) && seg.ack > self.iss && seg.ack <= self.snd_max;
        if f.contains(TcpFlags::ACK) && !ack_ok {
            return if f.contains(TcpFlags::RST) {
                InputOutcome::Ok
            } else {
                InputOutcome::SendReset
            };
        }
        if f.contains(TcpFlags::RST) {
            // "If the ACK was acceptable, then signal to the user 'error: connection
            // reset', drop the segment, enter CLOSED state". (RFC 5961 §3.2 allows the
            // RST only with an acceptable ACK, which is what we require.)
            if ack_ok {
                self.drop_with(TcpError::Refused);
            }
            return InputOutcome::Ok;
        }
        if !f.contains(TcpFlags::SYN) {
            return InputOutcome::Ok;
        }
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq + 1;
        self.rcv_adv = self.rcv_nxt;
        self.last_ack_sent = self.rcv_nxt;
        self.negotiate(seg);
        self.cc_init();
        self.ecn_input_syn_sent(f, ack_ok);
        if ack_ok {
            // Our SYN is acknowledged: ESTABLISHED.
            self.snd_una = seg.ack;
            self.rtt_sample_from(seg, now);
            // RFC 6298 (5.2): "When all outstanding data has been acknowledged, turn off
            // the retransmission timer." Left running, the SYN's timer fired a spurious
            // RTO (cwnd cut to one segment) one RTO after every active open.
            if self.snd_una == self.snd_max {
                self.timers.stop(TimerKind::Rexmt);
            }
            self.snd_wnd = seg.window as u32; // never scaled in a SYN (RFC 7323 §2.2)
            self.max_sndwnd = self.snd_wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            self.established(now);
            self.ack_now = true;
            // Data on the SYN,ACK is unusual but legal.
            self.process_data_and_fin(seg, now);
        } else {
            // Simultaneous open: "enter SYN-RECEIVED, form a SYN,ACK segment".
            self.state = State::SynReceived;
            self.snd_wnd = seg.window as u32;
            self.max_sndwnd = self.snd_wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = self.iss;
            // Resend our SYN, now with an ACK. It answers the peer's SYN rather than
            // repairing a loss: not a retransmission (RFC 5681 §3.1's one-segment IW and
            // RFC 6298 (5.7) are for lost SYNs), and timed afresh, since an ACK of ISS+1
            // no longer tells which of the two it answers (Karn).
            self.snd_nxt = self.iss;
            self.snd_max = self.iss;
            self.rtt_timing = None;
            // RFC 9293 §3.10.7.3: "If there are other controls or text in the segment,
            // queue them for processing after the ESTABLISHED state has been reached".
            // The text is kept (unacknowledged) until then; a FIN is not.
            if !seg.payload.is_empty() {
                self.syn_data = Some(seg.payload.to_vec());
            }
        }
        self.events = true;
        InputOutcome::Ok
    }

    fn established(&mut self, now: Instant) {
        self.state = State::Established;
        self.rxtshift = 0;
        self.rtt.reset_backoff();
        // RFC 6298 (5.7): "If the timer expires awaiting the ACK of a SYN segment and the
        // TCP implementation is using an RTO less than 3 seconds, the RTO MUST be
        // re-initialized to 3 seconds when data transmission begins". Only without a
        // sample: a timestamp echo on the handshake (RFC 7323 §4.1) measured the path.
        let fallback = std::time::Duration::from_secs(3);
        if self.stats.retransmits > 0 && self.rtt.srtt().is_none() && self.rto() < fallback {
            self.rtt.reinit(fallback);
        }
        self.timers.stop(TimerKind::ConnEstab);
        if let Some(ka) = self.cfg.keepalive {
            self.timers.set(TimerKind::Keepalive, now + ka.idle);
        }
        self.round_end = self.snd_max;
        self.events = true;
        self.hook_established(now);
    }

    /// RFC 9293 §3.10.7.4: every state after SYN-SENT.
    fn input_synchronized(&mut self, seg: &Segment<'_>, now: Instant) -> InputOutcome {
        let f = seg.flags;

        if self.paws_reject(seg) {
            return InputOutcome::Ok;
        }

        // SYN-RECEIVED and the peer's SYN again (its sequence number is irs, before
        // rcv_nxt, so the acceptability test below would only answer it with a bare ACK).
        let stripped;
        let seg =
            if self.state == State::SynReceived && f.contains(TcpFlags::SYN) && seg.seq == self.irs
            {
                let Some(s) = self.syn_received_syn_again(seg) else {
                    return InputOutcome::Ok;
                };
                stripped = s;
                &stripped
            } else {
                seg
            };
        let f = seg.flags;

        // First: the sequence number check (the four acceptability cases).
        let trimmed;
        let seg = if !self.acceptable(seg) && seg.seq == self.rcv_nxt && self.rcv_wnd() == 0 {
            trimmed = self.zero_window_trim(seg);
            &trimmed
        } else {
            seg
        };
        if !self.acceptable(seg) {
            self.reject_unacceptable(seg, now);
            if self.is_duplicate_fin(seg) {
                // The peer's FIN again (our ACK of it was lost) with an ACK that may be
                // new, e.g. of our own FIN in CLOSING: the ACK still counts, as FreeBSD
                // (tcp_do_segment trims the duplicate and goes on) and Linux
                // (tcp_sequence accepts a segment ending at RCV.NXT) process it.
                self.process_ack(seg, now);
            }
            return InputOutcome::Ok;
        }

        // Second: RST (RFC 5961 §3.2).
        if f.contains(TcpFlags::RST) {
            self.input_rst(seg, now);
            return InputOutcome::Ok;
        }

        // Fourth: SYN in a synchronized state (RFC 5961 §4.2): "the TCP MUST send an
        // ACK (challenge ACK) to the remote peer", whatever its sequence number. Without
        // RFC 5961, RFC 793's rule: "If the SYN is in the window it is an error, send a
        // reset ... enter the CLOSED state" (it is in the window: it passed the test above).
        if f.contains(TcpFlags::SYN) {
            if self.cfg.challenge_syn {
                self.challenge_ack(now);
            } else {
                self.send_rst = true;
                self.drop_with(TcpError::Reset);
            }
            return InputOutcome::Ok;
        }

        // Fifth: the ACK field. "If the ACK bit is off, drop the segment and return."
        if !f.contains(TcpFlags::ACK) {
            self.stats.drops += 1;
            return InputOutcome::Ok;
        }

        self.update_ts_recent(seg);

        let mut outcome = InputOutcome::Ok;
        if self.state == State::SynReceived {
            if !self.syn_received_ack(seg, now) {
                // "If the segment acknowledgment is not acceptable, form a reset".
                return InputOutcome::SendReset;
            }
            outcome = InputOutcome::Established;
            if let Some(data) = self.syn_data.take() {
                // The text of a simultaneous open's SYN, queued until now.
                let queued = Segment {
                    seq: self.irs + 1,
                    payload: &data,
                    flags: TcpFlags::ACK,
                    ..*seg
                };
                self.process_data_and_fin(&queued, now);
            }
        }

        if !self.process_ack(seg, now) {
            return outcome;
        }

        // RFC 3168 §6.1.3: CE marks and CWR on an acceptable segment.
        self.ecn_input(seg, now);

        // Sixth: URG is not supported (RFC 6093 recommends against its use): ignored.

        // Seventh and eighth: the text and the FIN.
        self.process_data_and_fin(seg, now);
        outcome
    }

    /// SYN-RECEIVED and the peer's SYN (sequence number IRS) again. A retransmitted SYN
    /// is consumed (`None`); the SYN,ACK of a simultaneous open goes on without its SYN.
    fn syn_received_syn_again<'a>(&mut self, seg: &Segment<'a>) -> Option<Segment<'a>> {
        let f = seg.flags;
        if !f.contains(TcpFlags::ACK) {
            // A retransmitted SYN: our SYN,ACK was lost. Resend it (Linux's
            // tcp_check_req, FreeBSD's syncache_add do the same); a bare ACK would be
            // dropped by the peer in SYN-SENT ("If neither of the SYN or RST bits is
            // set, then drop the segment").
            self.snd_nxt = self.iss;
            self.ecn_input_resent_syn(f);
            return None;
        }
        // Simultaneous open (RFC 9293 Figure 8, line 6): the peer's SYN,ACK. Its SYN
        // was already processed; its ACK completes our half. Take it as the same
        // segment without the SYN (as Linux's tcp_validate_incoming lets it pass).
        Some(Segment {
            seq: seg.seq + 1,
            flags: f - TcpFlags::SYN,
            ..*seg
        })
    }

    /// A retransmission of the peer's FIN, without data, ending exactly at RCV.NXT,
    /// with an ACK (TIME-WAIT has its own rule for it).
    fn is_duplicate_fin(&self, seg: &Segment<'_>) -> bool {
        let f = seg.flags;
        f.contains(TcpFlags::FIN | TcpFlags::ACK)
            && !f.intersects(TcpFlags::SYN | TcpFlags::RST)
            && seg.payload.is_empty()
            && seg.seq + 1 == self.rcv_nxt
            && self.fin_received
            && self.state != State::TimeWait
    }

    /// A zero-window probe (or any segment at RCV.NXT while our window is closed).
    /// RFC 9293: "If the RCV.WND is zero, no segments will be acceptable, but special
    /// allowance should be made to accept valid ACKs, URGs, and RSTs", and §3.8.6.1: "the
    /// receiving TCP MUST answer with the current window". As FreeBSD does, drop the
    /// text (and FIN), keep processing the ACK, and answer.
    fn zero_window_trim<'a>(&mut self, seg: &Segment<'a>) -> Segment<'a> {
        self.stats.drops += 1;
        self.ack_now = true;
        Segment {
            payload: &[],
            flags: seg.flags - TcpFlags::FIN,
            ..*seg
        }
    }

    /// RFC 7323 §5.3 PAWS: "If the RST bit is not set and TSval is less than TS.Recent,
    /// the segment is not acceptable ... send an acknowledgment in reply". True when the
    /// segment is dropped.
    fn paws_reject(&mut self, seg: &Segment<'_>) -> bool {
        if self.ts_enabled && !seg.flags.contains(TcpFlags::RST) {
            if let Some((tsval, _)) = seg.options.timestamps {
                if (tsval.wrapping_sub(self.ts_recent) as i32) < 0 {
                    self.stats.drops += 1;
                    self.ack_now = true;
                    return true;
                }
            }
        }
        false
    }

    /// A segment that failed the sequence-number test (RFC 9293 §3.10.7.4, first): drop
    /// it, ACK unless it is a RST, and note a duplicate for D-SACK.
    fn reject_unacceptable(&mut self, seg: &Segment<'_>, now: Instant) {
        let f = seg.flags;
        self.stats.drops += 1;
        if !f.contains(TcpFlags::RST) {
            self.owe_unacceptable_ack(seg);
            // RFC 5961 §4.2 answers a SYN "whatever its sequence number" with a
            // challenge ACK: a bare one, as for a SYN in the window.
            self.challenge_now |= f.contains(TcpFlags::SYN);
        }
        let end = seg.seq + seg.payload.len() as u32;
        if self.sack_ok
            && !seg.payload.is_empty()
            && end <= self.rcv_nxt
            && !f.contains(TcpFlags::RST)
        {
            // RFC 2883 §4: "A D-SACK block is only used to report a duplicate
            // contiguous sequence of data received by the receiver in the most recent
            // packet": data we had already acknowledged arrived again.
            self.dsack = Some((seg.seq, end));
        }
        if self.state == State::TimeWait
            && f.contains(TcpFlags::FIN)
            && seg.seq + seg.seg_len() == self.rcv_nxt
        {
            // RFC 9293 (fifth, TIME-WAIT): "The only thing that can arrive in this
            // state is a retransmission of the remote FIN. Acknowledge it, and restart
            // the 2 MSL timeout." That FIN lies before RCV.NXT, so it fails the
            // sequence test and never reaches the ACK step: restart the timer here
            // (as FreeBSD's tcp_twcheck and Linux's tcp_timewait_state_process do).
            self.timers.set(TimerKind::TwoMsl, now + self.cfg.time_wait);
        }
    }

    /// A RST that passed the sequence test (RFC 5961 §3.2): exactly at RCV.NXT it ends
    /// the connection, elsewhere in the window it gets a challenge ACK.
    fn input_rst(&mut self, seg: &Segment<'_>, now: Instant) {
        if self.state == State::TimeWait && self.cfg.rfc1337 {
            // RFC 1337 §3 (TIME-WAIT assassination), fix "(1) Ignore RST segments in
            // TIME-WAIT state".
            return;
        }
        if seg.seq != self.rcv_nxt && self.cfg.challenge_rst {
            // In the window but not exact: a challenge ACK.
            self.challenge_ack(now);
            return;
        }
        match self.state {
            // "If this connection was initiated with a passive OPEN ... return
            // this connection to LISTEN state": for us, just discard it.
            State::SynReceived if self.passive => self.enter_closed(),
            State::SynReceived => self.drop_with(TcpError::Refused),
            // RFC 9293: "enter the CLOSED state, delete the TCB, and return". An
            // application still holding the socket learns of the reset, as Linux
            // (`tcp_reset`) and FreeBSD report ECONNRESET there.
            State::Closing | State::LastAck => self.drop_with(TcpError::Reset),
            State::TimeWait => self.enter_closed(),
            _ => self.drop_with(TcpError::Reset),
        }
    }

    /// Timestamps: RFC 7323 §4.3 "If SEG.TSval >= TS.Recent and SEG.SEQ =<
    /// Last.ACK.sent, then TS.Recent = SEG.TSval".
    fn update_ts_recent(&mut self, seg: &Segment<'_>) {
        if self.ts_enabled {
            if let Some((tsval, _)) = seg.options.timestamps {
                if seg.seq <= self.last_ack_sent && (tsval.wrapping_sub(self.ts_recent) as i32) >= 0
                {
                    self.ts_recent = tsval;
                }
            }
        }
    }

    /// The ACK that completes a passive (or simultaneous) open: "If SND.UNA < SEG.ACK =<
    /// SND.NXT, then enter ESTABLISHED state". False if the ACK is not acceptable.
    fn syn_received_ack(&mut self, seg: &Segment<'_>, now: Instant) -> bool {
        let acceptable = seg.ack > self.snd_una && seg.ack <= self.snd_max;
        if !acceptable {
            return false;
        }
        self.cc_init();
        self.snd_wnd = (seg.window as u32) << self.snd_wscale;
        self.max_sndwnd = self.max_sndwnd.max(self.snd_wnd);
        self.snd_wl1 = seg.seq;
        self.snd_wl2 = seg.ack;
        self.established(now);
        if self.fin_queued() {
            // The application closed before the handshake finished.
            self.state = State::FinWait1;
        }
        true
    }

    /// RCV.WND for the acceptability test: what we promised (up to the right edge we
    /// advertised, `rcv_adv`) or, if more, the free buffer space. `rcv_adv` behind
    /// `rcv_nxt` (data accepted past the advertised edge) promises nothing; taken as a
    /// wrapping distance it would accept any sequence number.
    fn rcv_wnd(&self) -> u32 {
        let promised = if self.rcv_adv > self.rcv_nxt {
            self.rcv_adv.dist(self.rcv_nxt)
        } else {
            0
        };
        promised.max(self.rcvbuf.window() as u32)
    }

    /// RFC 9293's four acceptability cases for a segment against the receive window.
    fn acceptable(&self, seg: &Segment<'_>) -> bool {
        let len = seg.payload.len() as u32
            + seg.flags.contains(TcpFlags::SYN) as u32
            + seg.flags.contains(TcpFlags::FIN) as u32;
        let mut wnd = self.rcv_wnd();
        if self.state == State::SynReceived && self.passive {
            // A passive open's peer knows only our SYN,ACK's window, never scaled (RFC
            // 7323 §2.2: "The window field in a segment where the SYN bit is set ...
            // MUST NOT be scaled"), so at most 65,535 even when the buffer is larger:
            // the window FreeBSD's syncache checks against. (A simultaneous open keeps
            // the buffer's window, as FreeBSD's full control block does there.)
            wnd = wnd.min(u16::MAX as u32);
        }
        match (len, wnd) {
            (0, 0) => seg.seq == self.rcv_nxt,
            (0, _) => seg.seq.in_window(self.rcv_nxt, wnd),
            (_, 0) => false,
            (_, _) => {
                seg.seq.in_window(self.rcv_nxt, wnd)
                    || (seg.seq + (len - 1)).in_window(self.rcv_nxt, wnd)
            }
        }
    }

    /// An ICMP error about a segment of this connection (FreeBSD's `tcp_ctlinput` with
    /// `tcp_drop_syn_sent`). It counts only if it quotes a sequence number in flight,
    /// `SND.UNA <= seq < SND.MAX` (RFC 5927 §4.1: otherwise it may be forged). A hard
    /// error ends a connection attempt (SYN-SENT) with "connection refused", as FreeBSD
    /// and Linux do; soft errors are recorded as the reason of a later timeout; they, and
    /// hard ones on a synchronized connection, leave it
    /// alone (RFC 5461 §4: TCP's retransmissions are its answer to a transient path
    /// problem). Returns true when the connection was dropped.
    pub(crate) fn icmp_error(&mut self, err: &crate::net::icmp::IcmpError) -> bool {
        let in_flight = err.seq >= self.snd_una && err.seq < self.snd_max;
        if !in_flight {
            return false;
        }
        if let Some(soft) = err.soft_error() {
            self.soft_error = Some(soft);
            return false;
        }
        if !err.is_hard() || !self.cfg.icmp_hard_errors {
            return false;
        }
        if self.state != State::SynSent {
            return false;
        }
        self.drop_with(TcpError::Refused);
        true
    }

    /// RFC 5961 §7: at most 10 challenge ACKs per second per connection.
    fn challenge_ack(&mut self, now: Instant) {
        self.rate_limited_ack(now, true);
    }

    /// An ACK within RFC 5961 §7's limits (10 a second per connection, then the
    /// stack-wide budget); `bare`: a challenge ACK proper, never carrying a FIN again.
    fn rate_limited_ack(&mut self, now: Instant, bare: bool) {
        let (start, count) = self.challenge_window;
        if now.saturating_duration_since(start).as_secs() >= 1 {
            self.challenge_window = (now, 1);
        } else if count >= 10 {
            return;
        } else {
            self.challenge_window.1 += 1;
        }
        self.stats.challenge_acks += 1;
        self.owe_limited_ack(super::ack_limit::LimitedAck::Challenge);
        self.challenge_now |= bare;
    }

    /// The ACK field (RFC 9293 "fifth, check the ACK field" for ESTABLISHED and the
    /// closing states). Returns false when the segment must be dropped.
    fn process_ack(&mut self, seg: &Segment<'_>, now: Instant) -> bool {
        let ack = seg.ack;
        // RFC 5961 §5.2: acceptable ACKs are in [SND.UNA - MAX.SND.WND, SND.NXT].
        if ack > self.snd_max {
            // "If the ACK acks something not yet sent (SEG.ACK > SND.NXT) then send an
            // ACK, drop the segment, and return." RFC 5961 §5.2 limits these ACKs as
            // challenge ACKs: forged data must not make us answer every segment.
            self.rate_limited_ack(now, false);
            self.stats.drops += 1;
            return false;
        }
        if ack < self.snd_una - self.max_sndwnd {
            self.challenge_ack(now);
            self.stats.drops += 1;
            return false;
        }

        let acked = if ack > self.snd_una {
            ack.dist(self.snd_una)
        } else {
            0
        };
        let window = (seg.window as u32) << self.snd_wscale;
        // Helpers see the acceptable ACK before anything acts on it (FreeBSD runs
        // HHOOK_TCP_EST_IN before cc_ack_received).
        self.hook_input(seg, acked, now);
        let prior_in_flight = self.pipe();

        // RFC 6675 §4 Update(): "Given the information provided in an ACK, each octet
        // that is cumulatively ACKed or SACKed should be marked accordingly in the
        // scoreboard data structure".
        let mut newly_sacked = 0;
        let mut dsack = None;
        if self.sack_ok && !seg.options.sack().is_empty() {
            let una = if acked > 0 { ack } else { self.snd_una };
            let up = self.sb.update(ack, una, self.snd_max, seg.options.sack());
            newly_sacked = up.newly_sacked;
            dsack = up.dsack;
            self.stats.dsacks += up.dsack.is_some() as u64;
            self.stats.bad_sacks += up.bogus as u64;
        }
        let tsecr = seg
            .options
            .timestamps
            .filter(|_| self.ts_enabled)
            .map(|(_, ecr)| ecr);
        let rack = self.rack_active();
        // The log also serves rate samples without RACK, and what it holds is acknowledged
        // even after its module was switched away (so it empties).
        let log = rack || self.send_log_active() || !self.rack.log.is_empty();
        if log {
            // RFC 8985 §6.2 steps 1-4, before SND.UNA moves. The D-SACK block (always the
            // first) reports a duplicate, not a delivery.
            let blocks = if self.sack_ok {
                seg.options.sack()
            } else {
                &[]
            };
            let blocks = &blocks[dsack.is_some() as usize..];
            self.rack_update(ack, blocks, dsack, tsecr, now);
        }

        // Duplicate ACK per RFC 5681 §2: no data, no SYN/FIN, same ACK, same window,
        // and outstanding data.
        // Not with a zero window: answers to zero-window probes match the rule too, but
        // they report a full receive buffer, not a loss (FreeBSD counts duplicates only
        // while the retransmission timer runs, which it never does while probing).
        let is_dup_5681 = acked == 0
            && seg.payload.is_empty()
            && !seg.flags.intersects(TcpFlags::SYN | TcpFlags::FIN)
            && window == self.snd_wnd
            && window > 0
            && self.snd_max > self.snd_una;
        // RFC 6675 §2: with SACK, a duplicate acknowledgment is also "a segment that
        // arrives carrying a SACK block that identifies previously unacknowledged and
        // un-SACKed octets between HighACK and HighData" (whatever its window or data).
        let is_dup = is_dup_5681 || (acked == 0 && newly_sacked > 0 && self.snd_max > self.snd_una);

        // The contract (cc-modules lib.rs, "Each arriving ACK" step 1): ECN-Echo first.
        if self.ecn_ok && seg.flags.contains(TcpFlags::ECE) {
            self.ecn_echo_received(now);
        }
        if acked > 0 {
            self.eifel_detect(seg, now);
            self.new_ack(seg, acked, now);
        } else if is_dup {
            self.dup_ack(now);
        }
        if rack {
            // RFC 8985 §7.4 (did a probe repair a loss?) and §6.2 step 5 (mark losses by
            // time; a loss starts recovery).
            self.tlp_process_ack(ack, acked, newly_sacked, dsack, tsecr, now);
            if self.snd_max > self.snd_una {
                self.rack_detect_and_recover(now, false);
            } else {
                self.timers.stop(TimerKind::RackReo);
            }
        } else if self.in_sack_recovery() && self.cfg.lost_retransmit {
            // Lost retransmissions (`sack.rs`): resent by NextSeg() at once, with no new
            // congestion signal -- the window was already reduced for this episode (RFC
            // 6675 §5: one reduction per recovery phase; Linux's tcp_mark_lost_retrans
            // only marks segments lost, too).
            self.stats.lost_rexmits +=
                self.sb.detect_lost_rexmits(self.snd_una, self.t_maxseg) as u64;
        }
        if self.in_sack_recovery() {
            // RFC 6937: "DeliveredData = change in snd.una + change in SACKed".
            self.prr_on_ack(acked.saturating_add(newly_sacked), now);
        }
        let rate = if log {
            self.rate_sample(prior_in_flight, now)
        } else {
            None
        };

        self.update_snd_wnd(seg, window);
        self.hook_ack_done(rate, now);
        // State changes when our FIN is acknowledged.
        self.after_fin_acked(now)
    }

    /// Window update (RFC 9293 §3.10.7.4, fifth): "If SND.WL1 < SEG.SEQ or (SND.WL1 =
    /// SEG.SEQ and SND.WL2 =< SEG.ACK), set SND.WND <- SEG.WND, set SND.WL1 <- SEG.SEQ,
    /// and set SND.WL2 <- SEG.ACK." `window` is SEG.WND scaled.
    fn update_snd_wnd(&mut self, seg: &Segment<'_>, window: u32) {
        let ack = seg.ack;
        if self.snd_wl1 < seg.seq || (self.snd_wl1 == seg.seq && self.snd_wl2 <= ack) {
            let opened = window > self.snd_wnd;
            self.snd_wnd = window;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
            self.max_sndwnd = self.max_sndwnd.max(window);
            if window > 0 {
                self.timers.stop(TimerKind::Persist);
                self.persist_shift = 0;
                self.zero_window_since = None;
                self.force_one = false;
            }
            if opened {
                self.events = true;
            }
        }
    }

    /// Once our FIN is acknowledged: FIN-WAIT-1 -> FIN-WAIT-2, CLOSING -> TIME-WAIT,
    /// LAST-ACK -> CLOSED (false: nothing more to process).
    fn after_fin_acked(&mut self, now: Instant) -> bool {
        if self.fin_acked() {
            match self.state {
                State::FinWait1 => {
                    self.state = State::FinWait2;
                    self.arm_orphan_timer(now);
                    self.events = true;
                }
                State::Closing => self.enter_time_wait(now),
                State::LastAck => {
                    self.enter_closed();
                    return false;
                }
                _ => {}
            }
        }
        true
    }

    /// An ACK that acknowledges new data (BSD `tcp_do_segment`'s "process ACK" path).
    fn new_ack(&mut self, seg: &Segment<'_>, acked: u32, now: Instant) {
        let ack = seg.ack;
        let flight_before = self.in_flight();
        let syn_acked = self.snd_una == self.iss && ack > self.iss;
        let fin_acked_now = self.fin_seq().is_some_and(|f| self.snd_una <= f && ack > f);
        let data_acked = acked - syn_acked as u32 - fin_acked_now as u32;
        // What congestion control counts: the SYN occupies a sequence number but is not
        // data (without this, a passive open started with cwnd = IW + 1 byte).
        let cc_acked = acked - syn_acked as u32;
        self.rtt_sample_from(seg, now);
        self.sndbuf.ack(data_acked as usize);
        self.stats.bytes_acked += data_acked as u64;
        self.snd_una = ack;
        self.sb.advance(ack);
        if self.snd_nxt < self.snd_una {
            self.snd_nxt = self.snd_una;
        }
        self.rxtshift = 0;
        // The backed-off RTO stays until a valid sample collapses it (RFC 6298 §5: "once
        // a new RTT measurement is obtained ... which may result in "collapsing" RTO back
        // down"; Karn's algorithm). `rtt.sample` clears the backoff; an ACK for a
        // retransmission must not, or a path that lost a segment to a long RTT gets the
        // short timer back at once.
        self.dupacks = 0;
        // Wake a blocked writer only when the send buffer has real room again (a third
        // of it, as the kernel's sk_stream_write_space does) or drained completely:
        // waking it for every ACK costs a context switch per two segments.
        let cap = self.sndbuf.capacity();
        let free = self.sndbuf.free();
        let free_before = free.saturating_sub(data_acked as usize);
        if (free >= cap / 3 && free_before < cap / 3) || self.sndbuf.is_empty() || self.fin_acked()
        {
            self.events = true;
        }

        // Round counting for the modules: a round ends when the data that was
        // outstanding at its start is acknowledged.
        if self.snd_una >= self.round_end {
            self.rounds += 1;
            self.round_end = self.snd_max;
        }

        // cwnd-limited (FreeBSD CCF_CWND_LIMITED): the flight before this ACK was
        // within a segment of cwnd, or output held data back for cwnd.
        let cwnd_limited =
            self.cwnd_limited || flight_before.saturating_add(self.t_maxseg) >= self.ccv.cwnd;
        if self.recovery == Recovery::Rto && self.snd_nxt >= self.recover {
            self.recovery = Recovery::Open;
            self.rack.on_recovery_exit();
        }
        if cc_acked == 0 {
            // Only our SYN was acknowledged: nothing for congestion control.
        } else if self.recovery.in_recovery() && ack >= self.recover {
            // RFC 6582 §3.2 step 3 (full acknowledgment): the episode ends; the module
            // deflates the window in post_recovery.
            let info = AckInfo {
                cwnd_limited,
                ..self.ack_info(cc_acked, now)
            };
            self.cc.post_recovery(&mut self.ccv, &info);
            if self.recovery == Recovery::Fast {
                self.rack.on_recovery_exit();
            }
            self.recovery = Recovery::Open;
            self.prr_end();
            self.trace_ack(CcEvent::PostRecovery, now, cwnd_limited);
        } else if self.recovery == Recovery::Fast && !self.sack_ok {
            // Partial acknowledgment (RFC 6582 §3.2 step 3): "retransmit the first
            // unacknowledged segment ... deflate the congestion window by the amount
            // of new data acknowledged by the cumulative acknowledgment field ... add
            // back SMSS bytes".
            self.rexmit_one = true;
            self.ccv.cwnd = window::partial_ack_deflate(self.ccv.cwnd, cc_acked, self.t_maxseg);
            let info = AckInfo {
                cwnd_limited,
                ..self.ack_info(cc_acked, now)
            };
            self.cc.ack_received(&mut self.ccv, CcSignal::Ack, &info);
            self.trace_ack(CcEvent::Ack, now, cwnd_limited);
        } else {
            // Includes partial ACKs in SACK recovery: RFC 6675 neither retransmits per
            // partial ACK (NextSeg() picks what to send, §5 step (C)) nor deflates cwnd
            // (it stays at ssthresh; pipe accounts for what left the network). The module
            // sees `recovery: Fast` and leaves cwnd alone, as for NewReno's partial ACKs.
            let info = AckInfo {
                cwnd_limited,
                ..self.ack_info(cc_acked, now)
            };
            self.cc.ack_received(&mut self.ccv, CcSignal::Ack, &info);
            self.trace_ack(CcEvent::Ack, now, cwnd_limited);
        }

        // RFC 6298 §5.2/5.3: "When all outstanding data has been acknowledged, turn
        // off the retransmission timer"; "When an ACK is received that acknowledges
        // new data, restart the retransmission timer".
        if self.snd_una == self.snd_max {
            self.timers.stop(TimerKind::Rexmt);
        } else {
            self.timers.set(TimerKind::Rexmt, now + self.rto());
        }
    }

    /// A duplicate ACK: fast retransmit on the third (RFC 5681 §3.2), then NewReno
    /// fast recovery (RFC 6582) or, with SACK, RFC 6675 loss recovery. The first two
    /// may release new data by limited transmit (RFC 3042, in `output_from`).
    fn dup_ack(&mut self, now: Instant) {
        self.dupacks += 1;
        // RFC 6582 §3.2 step 1: enter fast retransmit only if the cumulative ACK
        // covers more than `recover` (a new loss episode; `recover` is one past the
        // highest sequence sent when the last episode began). RFC 6675 §5: "If no
        // previous loss event has occurred on the connection or the cumulative
        // acknowledgment point is beyond the last value of RecoveryPoint, a loss
        // recovery phase SHOULD be initiated".
        // A loss in a window already reduced for ECN (Recovery::Cwr) is still repaired by
        // fast retransmit, with no second reduction (RFC 3168 §6.1.2: "reduced only once
        // in response to a series of dropped and/or CE packets from a single window of
        // data"; the module sees `recovery: Cwr` and leaves cwnd alone). As Linux, which
        // moves from CWR to Recovery; FreeBSD instead waits for the RTO there.
        let new_episode = (self.recovery == Recovery::Open && self.snd_una >= self.recover)
            || self.recovery == Recovery::Cwr;
        if self.rack_active() {
            // RFC 8985: RACK marks losses by time (`rack_detect_and_recover`, on this
            // same ACK), which replaces the DupThresh trigger (Linux's
            // tcp_time_to_recover with RACK on); RACK's reordering window is zero once
            // DupThresh segments are SACKed, so the classic case is still immediate.
        } else if self.sack_ok {
            // RFC 6675 §5: "(1) If DupAcks >= DupThresh, go to step (4). ... (2) If
            // DupAcks < DupThresh but IsLost (HighACK + 1) returns true -- indicating at
            // least three segments have arrived above the current cumulative
            // acknowledgment point, which is taken to indicate loss -- go to step (4)."
            let lost = self.dupacks >= DUP_THRESH || self.sb.is_lost(self.snd_una, self.t_maxseg);
            if new_episode && lost {
                self.enter_fast_recovery(now);
                return;
            }
            // No RFC 5681 §3.2 step 4 inflation: in SACK recovery pipe, not an inflated
            // cwnd, decides what may be sent.
        } else {
            if self.dupacks == DUP_THRESH && new_episode {
                self.enter_fast_recovery(now);
                return;
            }
            if self.recovery == Recovery::Fast {
                // RFC 5681 §3.2 step 4: "For each additional duplicate ACK received
                // (after the third), cwnd MUST be incremented by SMSS."
                self.ccv.cwnd = window::dupack_inflate(self.ccv.cwnd, self.t_maxseg);
            }
        }
        let info = self.ack_info(0, now);
        self.cc.ack_received(&mut self.ccv, CcSignal::DupAck, &info);
        self.trace_cc(CcEvent::DupAck, now);
    }

    /// Fast retransmit and entry into fast recovery: the module reduces on
    /// `cong_signal(NDupAck)` (once per episode), then the transport takes over.
    ///
    /// Split against the congestion-control contract (cc-modules lib.rs, "Fast recovery:
    /// who does what"): the module calls are the same with and without SACK
    /// (`cong_signal(NDupAck)` here, `ack_received` during, `post_recovery` at the full
    /// ACK). The contract's inflation helpers (`window::fast_retransmit_inflate`,
    /// `dupack_inflate`, `partial_ack_deflate`) are for NewReno-style recovery only. In
    /// RFC 6675 SACK recovery the transport must not inflate: cwnd stays at what the
    /// module set (ssthresh, RFC 6675 §5 step (4.2) "ssthresh = cwnd = (FlightSize /
    /// 2)") and the pipe estimate replaces the inflation.
    pub(super) fn enter_fast_recovery(&mut self, now: Instant) {
        let info = self.cong_info(now);
        self.cc.cong_signal(&mut self.ccv, CcSignal::NDupAck, &info);
        if self.recovery == Recovery::Open {
            self.ecn_window_reduced();
        }
        // RFC 6582 §3.2 step 2 `recover`; RFC 6675 §5 step (4.1): "RecoveryPoint =
        // HighData. When the TCP sender receives a cumulative ACK for this data octet,
        // the loss recovery phase is terminated."
        self.recover = self.snd_max;
        self.recovery = Recovery::Fast;
        self.stats.fast_recoveries += 1;
        self.prr_begin();
        // The episode's reduction covers whatever a tail loss probe in flight would
        // have found (Linux's tcp_init_cwnd_reduction clears tlp_high_seq).
        self.rack.tlp = None;
        if self.sack_ok {
            // Nothing retransmitted yet in this phase. Step (4.3) ("set both HighRxt and
            // RescueRxt to the highest sequence number in the retransmitted segment") is
            // done when the retransmission goes out (`poll_output`).
            self.sb.begin_phase(self.snd_una);
        } else {
            // RFC 5681 §3.2 step 3: "set cwnd to ssthresh plus 3*SMSS" -- the three
            // segments that left the network; the transport's share of the work.
            self.ccv.cwnd = window::fast_retransmit_inflate(self.ccv.cwnd, self.t_maxseg);
        }
        // RFC 5681 §3.2 step 3: "The lost segment starting at SND.UNA MUST be
        // retransmitted"; RFC 6675 §5 step (4.3): "Retransmit the first data segment
        // presumed dropped -- the segment starting with sequence number HighACK + 1."
        self.rexmit_one = true;
        self.rtt_timing = None;
        self.trace_cc(CcEvent::Loss, now);
    }

    /// Eifel detection (RFC 3522) on the first acceptable ACK after an RTO: if it echoes
    /// a timestamp older than the retransmission's, the original transmission arrived and
    /// the RTO was spurious. Runs before the ACK is processed (the contract: RtoErr
    /// "before processing the ACK that revealed it").
    fn eifel_detect(&mut self, seg: &Segment<'_>, now: Instant) {
        // RFC 3522 §2 step (3): "Wait for the arrival of an acceptable ACK." Only the
        // first one decides: take the state whatever the outcome.
        let Some(u) = self.eifel.take() else { return };
        let Some((_, tsecr)) = seg.options.timestamps else {
            return;
        };
        if self.recovery != Recovery::Rto {
            return;
        }
        // Step (4): "If the value of the Timestamp Echo Reply field of the acceptable
        // ACK's Timestamps option is smaller than the value of RetransmitTS, then proceed
        // to step (5)"; step (5): "Set SpuriousRecovery to TRUE." (Modular comparison,
        // as for PAWS.)
        if (tsecr.wrapping_sub(u.retransmit_ts) as i32) >= 0 {
            return;
        }
        self.stats.spurious_rtos += 1;
        let info = self.cong_info(now);
        self.cc.cong_signal(&mut self.ccv, CcSignal::RtoErr, &info);
        // The transport's own undo: the recovery state and `recover` from before the RTO,
        // and RFC 4015 §2 (the Eifel response) step (6): "Resume the transmission with
        // previously unsent data: Set SND.NXT <- SND.MAX" -- go-back-N would only resend
        // what the peer already has.
        self.recovery = u.recovery;
        self.recover = u.recover;
        self.snd_nxt = self.snd_max;
        self.trace_cc(CcEvent::RtoErr, now);
    }

    /// The ACK's delivery-rate sample (`tcp/rate.rs`) to the module, the last hook of the
    /// ACK (cc-modules lib.rs, "Delivery-rate samples").
    fn rate_sample(&mut self, prior_in_flight: u32, now: Instant) -> Option<RateSample> {
        let ctx = SampleCtx {
            prior_in_flight,
            in_flight: self.pipe(),
            min_rtt: self.rtt.min_rtt(),
            cwnd_limited: self.cwnd_limited
                || prior_in_flight.saturating_add(self.t_maxseg) >= self.ccv.cwnd,
            recovery: self.recovery,
        };
        let rs = self.rack.rate.take_sample(&ctx, now)?;
        if self.cc_started {
            self.cc.rate_sample(&mut self.ccv, &rs);
        }
        Some(rs)
    }

    /// A congestion-control ACK event, after the transport's bookkeeping.
    pub(crate) fn ack_info(&self, bytes_acked: u32, now: Instant) -> AckInfo {
        AckInfo {
            bytes_acked,
            acks: 1,
            in_flight: self.in_flight(),
            cwnd_limited: self.cwnd_limited,
            recovery: self.recovery,
            now,
            srtt: self.rtt.srtt(),
            min_rtt: self.rtt.min_rtt(),
            round: self.rounds,
        }
    }

    /// A congestion-control signal event.
    pub(crate) fn cong_info(&self, now: Instant) -> CongInfo {
        CongInfo {
            in_flight: self.in_flight(),
            recovery: self.recovery,
            rto_count: self.rxtshift,
            now,
        }
    }

    /// Takes an RTT sample: from the echoed timestamp (RFC 7323 §4.1), else from the
    /// timed segment if it was not retransmitted (Karn's algorithm, RFC 6298 §3).
    fn rtt_sample_from(&mut self, seg: &Segment<'_>, now: Instant) {
        // A timed segment gives a precise sample (the clock has nanoseconds, our
        // timestamps only milliseconds, which on a LAN would round every RTT up to
        // 1 ms). Karn's rule: `rtt_timing` is cleared when the timed segment is
        // retransmitted, and then the echoed timestamp, which names the transmission
        // it answers, provides the sample (RFC 7323 §4.1, RTTM).
        let karn = match self.rtt_timing {
            Some((timed, sent)) if seg.ack > timed => Some(now.saturating_duration_since(sent)),
            _ => None,
        };
        let mut sample = karn;
        if sample.is_none() && self.rtt_timing.is_none() && self.ts_enabled {
            if let Some((_, tsecr)) = seg.options.timestamps {
                if tsecr != 0 {
                    let ms = self.ts_now(now).wrapping_sub(tsecr);
                    // Ignore nonsense echoes (older than a minute or from the future).
                    if ms < 60_000 {
                        sample = Some(std::time::Duration::from_millis(ms.max(1) as u64));
                    }
                }
            }
        }
        if let Some((timed, _)) = self.rtt_timing {
            if seg.ack > timed {
                self.rtt_timing = None;
            }
        }
        if let Some(rtt) = sample {
            self.rtt.sample(rtt);
            if self.cc_started {
                let s = RttSample {
                    rtt,
                    srtt: self.rtt.srtt().unwrap_or(rtt),
                    min_rtt: self.rtt.min_rtt().unwrap_or(rtt),
                    round: self.rounds,
                    now,
                };
                self.cc.rtt_sample(&mut self.ccv, &s);
            }
        }
    }

    /// Seventh (segment text) and eighth (FIN) of RFC 9293 §3.10.7.4.
    fn process_data_and_fin(&mut self, seg: &Segment<'_>, now: Instant) {
        let mut seq = seg.seq + seg.flags.contains(TcpFlags::SYN) as u32;
        let mut data = seg.payload;
        if !data.is_empty() && self.state.can_receive() {
            // Trim what we already have.
            if seq < self.rcv_nxt {
                let dup = self.rcv_nxt.dist(seq) as usize;
                if self.sack_ok {
                    // RFC 2883 §4: "The left edge of the D-SACK block specifies the first
                    // sequence number of the duplicate contiguous sequence, and the right
                    // edge of the D-SACK block specifies the sequence number immediately
                    // following the last sequence in the duplicate contiguous sequence"
                    // (for a partial duplicate, only its old part).
                    self.dsack = Some((seq, seq + dup.min(data.len()) as u32));
                }
                data = &data[dup.min(data.len())..];
                seq = self.rcv_nxt;
            }
            if !data.is_empty() {
                let offset = seq.dist(self.rcv_nxt) as usize;
                if self.sack_ok {
                    // RFC 2883 §4: "If the D-SACK block reports a duplicate contiguous
                    // sequence from a (possibly larger) block of data in the receiver's
                    // data queue above the cumulative acknowledgement, then the second
                    // SACK block in that SACK option should specify that (possibly larger)
                    // block of data." The write below makes that block the most recent, so
                    // it follows the D-SACK block.
                    let end = offset + data.len();
                    let dup = self
                        .rcvbuf
                        .ooo_ranges()
                        .find(|&(s, e)| s < end && e > offset);
                    if let Some((s, e)) = dup {
                        let (l, r) = (s.max(offset), e.min(end));
                        self.dsack = Some((self.rcv_nxt + l as u32, self.rcv_nxt + r as u32));
                    }
                }
                let had_ooo = self.rcvbuf.has_ooo();
                let written = self.rcvbuf.write(offset, data);
                match written.refused {
                    Some(OooLimit::Ranges) => self.cfg.bounds.count(|c| &c.ooo_ranges),
                    Some(OooLimit::Bytes) => self.cfg.bounds.count(|c| &c.ooo_bytes),
                    None => {}
                }
                let advanced = written.advanced;
                self.rcv_nxt += advanced as u32;
                self.stats.bytes_received += advanced as u64;
                if advanced > 0 {
                    self.events = true;
                }
                if offset > 0 || had_ooo {
                    // RFC 5681 §4.2: "an immediate ACK SHOULD be generated when an
                    // out-of-order segment arrives" and when it fills a gap.
                    self.ack_now = true;
                } else {
                    // "an ACK SHOULD be generated for at least every second
                    // full-sized segment, and MUST be generated within 500 ms".
                    self.unacked_bytes += advanced as u32;
                    if self.unacked_bytes >= 2 * self.t_maxseg
                        || seg.flags.contains(TcpFlags::PSH) && self.unacked_bytes >= self.t_maxseg
                    {
                        self.ack_now = true;
                    } else if !self.timers.is_set(TimerKind::Delack) {
                        self.timers.set(TimerKind::Delack, now + self.cfg.delack);
                    }
                }
            } else {
                // Entirely old data: a duplicate, ACK it at once so the peer stops.
                self.ack_now = true;
            }
        } else if !data.is_empty() {
            // Text in CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: "This should not occur,
            // since a FIN has been received from the remote side. Ignore the segment
            // text."
            self.ack_now = true;
        }

        if seg.flags.contains(TcpFlags::FIN) {
            let fin = seq + data.len() as u32;
            if fin >= self.rcv_nxt {
                self.rcv_fin = Some(fin);
            }
            self.ack_now = true;
        }
        if let Some(fin) = self.rcv_fin {
            if fin == self.rcv_nxt && !self.fin_received && self.state != State::TimeWait {
                self.rcv_fin = None;
                self.fin_received = true;
                self.rcv_nxt += 1;
                self.ack_now = true;
                self.events = true;
                match self.state {
                    State::SynReceived | State::Established => self.state = State::CloseWait,
                    State::FinWait1 => {
                        if self.fin_acked() {
                            self.enter_time_wait(now);
                        } else {
                            self.state = State::Closing;
                        }
                    }
                    State::FinWait2 => self.enter_time_wait(now),
                    _ => {}
                }
            }
        }
    }

    /// TIME-WAIT as FreeBSD's `tcp_twcheck` ([`TimeWaitInput::FreeBsd`]); a SYN that
    /// reopens the connection never gets here (`time_wait_reopen`).
    fn input_twcheck(&mut self, seg: &Segment<'_>, now: Instant) -> InputOutcome {
        let f = seg.flags;
        // RSTs are ignored (RFC 1337), and so is a segment without ACK.
        if f.contains(TcpFlags::RST) || !f.contains(TcpFlags::ACK) {
            self.stats.drops += 1;
            return InputOutcome::Ok;
        }
        // A retransmitted FIN restarts the 2 MSL timer.
        if f.contains(TcpFlags::FIN) && seg.seq + seg.seg_len() == self.rcv_nxt {
            self.timers.set(TimerKind::TwoMsl, now + self.cfg.time_wait);
        }
        // "Acknowledge the segment if it has data or is not a duplicate ACK."
        let dup_ack = f == TcpFlags::ACK
            && seg.payload.is_empty()
            && seg.seq == self.rcv_nxt
            && seg.ack == self.snd_max;
        if !dup_ack {
            self.ack_now = true;
        }
        InputOutcome::Ok
    }
}

/// The RST to send in answer to `seg` when it belongs to no connection (RFC 9293
/// §3.10.7.1): "If the ACK bit is off, sequence number zero is used,
/// <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>; If the ACK bit is on,
/// <SEQ=SEG.ACK><CTL=RST>". Returns `(seq, ack, flags)`; `None` for an incoming RST.
pub fn reset_for(seg: &Segment<'_>) -> Option<(Seq, Seq, TcpFlags)> {
    if seg.flags.contains(TcpFlags::RST) {
        return None;
    }
    if seg.flags.contains(TcpFlags::ACK) {
        Some((seg.ack, Seq(0), TcpFlags::RST))
    } else {
        Some((
            Seq(0),
            seg.seq + seg.seg_len(),
            TcpFlags::RST | TcpFlags::ACK,
        ))
    }
}

impl Tcb {
    /// A SYN for a connection in TIME-WAIT that may reopen it: RFC 1122 §4.2.2.13 "it MAY
    /// accept a new SYN from the remote TCP to reopen the connection directly from TIME-WAIT
    /// state, if it: (1) assigns its initial sequence number for the new connection to be
    /// larger than the largest sequence number it used on the previous connection
    /// incarnation, and (2) returns to TIME-WAIT state if the SYN turns out to be an old
    /// duplicate". As Linux's `tcp_timewait_state_process` (and RFC 6191 with timestamps):
    /// the SYN is new if its sequence number is beyond RCV.NXT or its timestamp is newer than
    /// TS.Recent, and a timestamp older than TS.Recent (PAWS) refuses it. Returns the largest
    /// sequence number the old incarnation sent, for (1). Like Linux, (2) is left to those
    /// checks: the old incarnation is freed, not kept aside in case the SYN was stale.
    ///
    /// Without this a client that reuses a port the server still holds in TIME-WAIT (a
    /// busy client cycles through its ephemeral ports in seconds) is answered with an ACK,
    /// resets, and retries its SYN later: short-connection rates collapse after the first
    /// few thousand connections.
    pub(crate) fn time_wait_reopen(&self, seg: &Segment<'_>) -> Option<Seq> {
        let f = seg.flags;
        if self.state != State::TimeWait
            || !f.contains(TcpFlags::SYN)
            || f.intersects(TcpFlags::ACK | TcpFlags::RST | TcpFlags::FIN)
        {
            return None;
        }
        let ts = seg.options.timestamps.filter(|_| self.ts_enabled);
        if let Some((tsval, _)) = ts {
            if (tsval.wrapping_sub(self.ts_recent) as i32) < 0 {
                return None; // PAWS: an old duplicate.
            }
        }
        let newer_seq = seg.seq > self.rcv_nxt;
        let newer_ts = ts.is_some_and(|(tsval, _)| (tsval.wrapping_sub(self.ts_recent) as i32) > 0);
        (newer_seq || newer_ts).then_some(self.snd_max)
    }

    /// A TIME-WAIT connection meets an ACK (no SYN, RST or FIN) that may close the
    /// handshake of a new incarnation whose SYN was answered before it reached the
    /// stack (a SYN cookie from the XDP program, which cannot see TIME-WAIT): true when
    /// the SYN it stands for (one before its sequence number, its timestamp) would have
    /// reopened the connection ([`Tcb::time_wait_reopen`]). The caller still checks the
    /// cookie.
    pub(crate) fn time_wait_cookie_reopen(&self, seg: &Segment<'_>) -> bool {
        let f = seg.flags;
        if self.state != State::TimeWait
            || !f.contains(TcpFlags::ACK)
            || f.intersects(TcpFlags::SYN | TcpFlags::RST | TcpFlags::FIN)
        {
            return false;
        }
        let syn = Segment {
            seq: seg.seq - 1,
            flags: TcpFlags::SYN,
            payload: &[],
            ..*seg
        };
        self.time_wait_reopen(&syn).is_some()
    }
}
