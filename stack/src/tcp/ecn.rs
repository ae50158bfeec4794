//! Explicit Congestion Notification (RFC 3168; FreeBSD's `tcp_ecn.c`): negotiation on
//! the handshake, the receiver's echo of CE marks, the sender's reaction to ECE and its
//! CWR answer, the ECT codepoint on new data, and the stack-wide `tcp.ecn_*` counters.

use std::sync::atomic::Ordering;
use std::time::Instant;

use xstack_cc::{CcSignal, Recovery};

use super::cwnd_trace::CcEvent;
use super::output::OutSegment;
use super::segment::{Ecn, Segment, TcpFlags};
use super::tcb::{EcnStats, Tcb};
use crate::stats::Counters;

impl Tcb {
    /// A passive open's SYN (RFC 3168 §6.1.1): "If a host has received an ECN-setup SYN
    /// packet, then it MAY send an ECN-setup SYN-ACK packet. Otherwise, it MUST NOT send
    /// an ECN-setup SYN-ACK packet." An ECN-setup SYN has both ECE and CWR.
    pub(super) fn ecn_input_syn(&mut self, f: TcpFlags) {
        self.ecn_ok = self.cfg.ecn && f.contains(TcpFlags::ECE | TcpFlags::CWR);
        self.ecn_setup_sent = self.ecn_ok;
    }

    /// The answer to our SYN in SYN-SENT (RFC 3168 §6.1.1): ECN is on when we sent an
    /// ECN-setup SYN and the answer is an ECN-setup SYN-ACK ("with the ECE flag set but
    /// the CWR flag not set"; one with both set is a reflecting middlebox, and "the host
    /// should not set ECT"). In a simultaneous open (`ack_ok` false) the peer's SYN must
    /// be an ECN-setup SYN (Linux's tcp_ecn_rcv_syn), and our SYN,ACK then says so.
    pub(super) fn ecn_input_syn_sent(&mut self, f: TcpFlags, ack_ok: bool) {
        let f_ecn = f & (TcpFlags::ECE | TcpFlags::CWR);
        self.ecn_ok = self.ecn_setup_sent
            && if ack_ok {
                f_ecn == TcpFlags::ECE
            } else {
                f_ecn == TcpFlags::ECE | TcpFlags::CWR
            };
    }

    /// A retransmitted SYN in SYN-RECEIVED. A peer that fell back to a non-ECN-setup SYN
    /// (RFC 3168 §6.1.1.1, as Linux does on its first SYN retransmission) will ignore our
    /// ECE and never echo CE: answer with a plain SYN,ACK and leave ECN off.
    pub(super) fn ecn_input_resent_syn(&mut self, f: TcpFlags) {
        if !f.contains(TcpFlags::ECE | TcpFlags::CWR) {
            self.ecn_ok = false;
            self.ecn_setup_sent = false;
        }
    }

    /// An ACK with ECN-Echo on an ECN connection (RFC 3168 §6.1.2, sender side).
    ///
    /// "If the sender receives an ECN-Echo (ECE) ACK packet ... then the sender knows
    /// that congestion was encountered in the network on the path from the sender to the
    /// receiver." The module hears `cong_signal(Ecn)` for every such ACK while data is
    /// outstanding, with the recovery state the connection is in, and reduces only from
    /// `Open`; the transport then enters `Cwr` until `recover` (snd_max now) is
    /// acknowledged: "the TCP sender's congestion window should be reduced only once in
    /// response to a series of dropped and/or CE packets from a single window of data".
    /// In fast recovery or after an RTO the window is already reduced for this window:
    /// no second reaction.
    pub(super) fn ecn_echo_received(&mut self, now: Instant) {
        self.stats.ecn.ece_received += 1;
        if !self.cc_started || self.snd_max == self.snd_una {
            // Nothing of ours was in flight: the echo is about data already accounted for.
            return;
        }
        let info = self.cong_info(now);
        self.cc.cong_signal(&mut self.ccv, CcSignal::Ecn, &info);
        if self.recovery == Recovery::Open {
            self.recovery = Recovery::Cwr;
            self.recover = self.snd_max;
            self.stats.ecn.reductions += 1;
            self.ecn_window_reduced();
        }
        self.trace_cc(CcEvent::Ecn, now);
    }

    /// The window was reduced (ECE, or a loss on an ECN connection): the next new data
    /// segment carries CWR (RFC 3168 §6.1.2), which tells the receiver to stop echoing.
    /// Linux queues CWR after every reduction (tcp_init_cwnd_reduction, tcp_enter_loss):
    /// a loss-driven reduction answers the pending echo just as well.
    pub(crate) fn ecn_window_reduced(&mut self) {
        if self.ecn_ok {
            self.ecn_cwr_due = true;
        }
    }

    /// Receiver side of ECN for an acceptable segment (RFC 3168 §6.1.3).
    ///
    /// CWR first: "After the receipt of the CWR packet, acknowledgments for subsequent
    /// non-CE data packets do not have the ECN-Echo flag set." Then CE on data: "When TCP
    /// receives a CE data packet at the destination end-system, the TCP data receiver
    /// sets the ECN-Echo flag in the TCP header of the subsequent ACK packet", and keeps
    /// it on every ACK until CWR arrives (`poll_output`). Segments outside the window
    /// never get here: "the TCP data receiver SHOULD ignore the ECN field on arriving
    /// data packets that are outside of the receiver's current window" (§6.1.5).
    ///
    /// Delayed ACKs: the first CE mark (echo off -> on) is acknowledged at once, as
    /// Linux's quick-ACK mode does, so the sender reacts a delayed-ACK timeout sooner;
    /// later marks ride on the normal ACK schedule, since every ACK carries ECE anyway.
    /// The module's `ecn_pkt` hook sees every data segment and may ask for an immediate
    /// ACK too (DCTCP-style receivers).
    pub(super) fn ecn_input(&mut self, seg: &Segment<'_>, now: Instant) {
        if !self.ecn_ok {
            return;
        }
        let cwr = seg.flags.contains(TcpFlags::CWR);
        if cwr {
            self.stats.ecn.cwr_received += 1;
            self.ecn_echo = false;
        }
        if seg.payload.is_empty() {
            return;
        }
        let ce = seg.ecn == Ecn::Ce;
        if ce {
            self.stats.ecn.ce_received += 1;
            if !self.ecn_echo {
                self.ecn_echo = true;
                self.ack_now = true;
            }
        }
        let pkt = xstack_cc::EcnPacket { ce, cwr, now };
        if self.cc.ecn_pkt(&mut self.ccv, &pkt) == xstack_cc::AckPolicy::Immediate {
            self.ack_now = true;
        }
    }

    /// ECE on an outgoing segment with flags `f`. RFC 3168 §6.1.3: "the TCP receiver
    /// continues to set the ECE flag in all subsequent ACK packets until it receives a
    /// CWR packet" -- every segment that carries an ACK, data segments included (as Linux
    /// does). Not on a RST, and not on a SYN,ACK, where ECE means the ECN-setup answer
    /// ([`Tcb::ecn_output_syn`]).
    pub(super) fn ecn_output_echo(&mut self, f: &mut TcpFlags) {
        if self.ecn_ok
            && self.ecn_echo
            && f.contains(TcpFlags::ACK)
            && !f.intersects(TcpFlags::SYN | TcpFlags::RST)
        {
            *f |= TcpFlags::ECE;
            self.stats.ecn.ece_sent += 1;
        }
    }

    /// The ECN flags of our SYN or SYN,ACK (`passive`), and whether this connection has
    /// sent an ECN-setup SYN.
    pub(super) fn ecn_output_syn(&mut self, passive: bool, resend: bool) -> TcpFlags {
        if passive {
            // RFC 3168 §6.1.1: "An 'ECN-setup SYN-ACK packet' is a SYN-ACK packet with the
            // ECE flag set but the CWR flag not set" -- sent only in answer to an
            // ECN-setup SYN (`ecn_ok` is decided when the SYN arrives).
            if self.ecn_ok {
                TcpFlags::ECE
            } else {
                TcpFlags::empty()
            }
        } else if self.cfg.ecn && (!resend || self.rxtshift <= self.cfg.ecn_syn_retries) {
            // RFC 3168 §6.1.1: "An 'ECN-setup SYN packet' is a SYN packet with the ECE and
            // CWR flags set." §6.1.1.1: "A host that receives no reply to an ECN-setup SYN
            // within the normal SYN retransmission timeout interval MAY resend the SYN and
            // any subsequent SYN retransmissions with CWR and ECE cleared" -- in case a
            // middlebox drops ECN-setup SYNs. We do, after `ecn_syn_retries` resends (0:
            // at once, as Linux's tcp_ecn_fallback; FreeBSD's `ecn.maxretries`), and then
            // the connection never uses ECN: "A host MUST NOT set ECT on data packets
            // unless it has sent at least one ECN-setup SYN or ECN-setup SYN-ACK packet
            // ... and has sent no non-ECN-setup SYN or non-ECN-setup SYN-ACK packet."
            self.ecn_setup_sent = true;
            TcpFlags::ECE | TcpFlags::CWR
        } else {
            self.ecn_setup_sent = false;
            TcpFlags::empty()
        }
    }

    /// The IP codepoint of a data segment of `len` bytes cut into `mss`-sized pieces, and
    /// its CWR flag. ECT(0) only on new data -- RFC 3168 §6.1.5: "ECN-capable TCP
    /// implementations MUST NOT set either ECT codepoint (ECT(0) or ECT(1)) in the IP
    /// header for retransmitted data packets"; §6.1.6: nor on window probes. §6.1.2: "The
    /// TCP sender sets the CWR flag in the TCP header of the first new data packet sent
    /// after the window reduction".
    pub(super) fn ecn_output_data(
        &mut self,
        new_data: bool,
        len: usize,
        mss: usize,
        flags: &mut TcpFlags,
    ) -> Ecn {
        if !(self.ecn_ok && new_data) {
            return Ecn::NotEct;
        }
        // Every piece of a TSO segment is ECT(0); CWR stays on the first piece.
        self.stats.ecn.ect_sent += len.div_ceil(mss).max(1) as u64;
        if self.ecn_cwr_due {
            self.ecn_cwr_due = false;
            *flags |= TcpFlags::CWR;
            self.stats.ecn.cwr_sent += 1;
        }
        Ecn::Ect0
    }
}

/// Adds what one segment's input changed in a connection's ECN counters to the
/// stack-wide `tcp.ecn_*` counters (the control block does the RFC 3168 bookkeeping;
/// the stack only sums it).
pub(super) fn count_input(c: &Counters, before: &EcnStats, tcb: &Tcb, was_open: bool) {
    let after = tcb.stats().ecn;
    let add = |ctr: &std::sync::atomic::AtomicU64, a: u64, b: u64| {
        if a > b {
            ctr.fetch_add(a - b, Ordering::Relaxed);
        }
    };
    add(&c.tcp_ecn_ce_rx, after.ce_received, before.ce_received);
    add(&c.tcp_ecn_ece_rx, after.ece_received, before.ece_received);
    add(&c.tcp_ecn_cwr_rx, after.cwr_received, before.cwr_received);
    add(&c.tcp_ecn_reductions, after.reductions, before.reductions);
    // Counted when the handshake completes: an active open learns the answer from the
    // SYN,ACK; a passive one can still fall back on a retransmitted SYN until then.
    if tcb.ecn() && !was_open && tcb.state().is_synchronized() {
        Counters::inc(&c.tcp_ecn_negotiated);
    }
}

/// Adds the ECN marks of one sent segment to the stack-wide `tcp.ecn_*` counters (a
/// SYN's ECE and CWR are negotiation, not congestion signals).
pub(super) fn count_output(c: &Counters, seg: &OutSegment, wire_segments: u64) {
    let f = seg.hdr.flags;
    if f.contains(TcpFlags::ECE) && !f.contains(TcpFlags::SYN) {
        Counters::add(&c.tcp_ecn_ece_tx, wire_segments);
    }
    if f.contains(TcpFlags::CWR) && !f.contains(TcpFlags::SYN) {
        // Only the first wire segment of a TSO frame keeps CWR.
        Counters::inc(&c.tcp_ecn_cwr_tx);
    }
    if seg.ecn.is_ect() {
        Counters::add(&c.tcp_ecn_ect_tx, wire_segments);
    }
}
