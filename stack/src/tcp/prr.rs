//! Proportional Rate Reduction (RFC 6937) for SACK fast recovery.
//!
//! RFC 6675 alone sets cwnd to ssthresh when recovery begins and then sends whenever
//! `cwnd - pipe` allows: after a burst of losses pipe drops far below ssthresh and the
//! sender fills the gap in one burst; with few losses it sends nothing for half a round
//! trip and then everything. PRR spreads the reduction over the round trip instead: while
//! pipe is above ssthresh, each ACK lets out `ssthresh / RecoverFS` of what it delivered;
//! once pipe is at or below ssthresh, the Slow Start Reduction Bound (PRR-SSRB) lets the
//! sender catch up by at most what was delivered plus one MSS per ACK. The arithmetic is
//! `xstack_cc::window::prr_sndcnt`, shared by every module.
//!
//! Split against the congestion-control contract: the module still decides ssthresh on
//! `cong_signal(NDupAck)` and the final window in `post_recovery`; between the two the
//! transport owns cwnd (cc-modules lib.rs, "Fast recovery: who does what"), and PRR is how
//! it sets it: `cwnd = pipe + sndcnt` on every ACK of the episode (as Linux's
//! `tcp_cwnd_reduction`). NewReno recovery without SACK keeps RFC 6582's inflation (it
//! has no pipe estimate to work from).

use std::time::Instant;

use xstack_cc::window::{prr_sndcnt, PrrAck};

use super::tcb::Tcb;

/// RFC 6937's per-episode variables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prr {
    /// `prr_delivered`: bytes delivered to the receiver since the episode began.
    pub delivered: u32,
    /// `prr_out`: bytes sent since the episode began.
    pub out: u32,
    /// `RecoverFS`: "the FlightSize (pipe) at the start of recovery".
    pub recover_fs: u32,
}

impl Tcb {
    /// PRR runs for this episode: on in the settings, SACK recovery, and a module that
    /// leaves the recovery window to the transport
    /// ([`xstack_cc::CongestionControl::owns_recovery_window`]).
    fn prr_applies(&self) -> bool {
        self.cfg.prr && self.in_sack_recovery() && !self.cc.owns_recovery_window()
    }

    /// A fast-recovery episode began (RFC 6937 §3.1: "On entering Fast Recovery:
    /// ssthresh = CongCtrlAlg() ... prr_delivered = 0, prr_out = 0, RecoverFS = snd.nxt -
    /// snd.una").
    pub(crate) fn prr_begin(&mut self) {
        self.prr = self.prr_applies().then(|| Prr {
            delivered: 0,
            out: 0,
            recover_fs: self.in_flight(),
        });
    }

    /// The episode ended (full ACK, RTO, or RACK/PRR switched off).
    pub(crate) fn prr_end(&mut self) {
        self.prr = None;
    }

    /// RFC 6937 §3.1: "On every ACK during recovery compute: DeliveredData = change in
    /// snd.una + change in SACKed; prr_delivered += DeliveredData; pipe = (RFC 6675
    /// pipe algorithm)", then `sndcnt`; cwnd becomes what lets exactly that out.
    pub(crate) fn prr_on_ack(&mut self, delivered: u32, now: Instant) {
        if !self.prr_applies() {
            self.prr = None;
            return;
        }
        let Some(p) = self.prr.as_mut() else { return };
        p.delivered = p.delivered.saturating_add(delivered);
        let p = *p;
        let pipe = self.pipe();
        let mut sndcnt = prr_sndcnt(&PrrAck {
            prr_delivered: p.delivered,
            prr_out: p.out,
            recover_fs: p.recover_fs,
            ssthresh: self.ccv.ssthresh,
            pipe,
            delivered,
            maxseg: self.t_maxseg,
        });
        if p.out == 0 {
            // The first retransmission of the episode goes out whatever the proportion
            // says (RFC 6937 §3.1 leaves the fast retransmit to RFC 6675 step (4.3);
            // Linux forces one segment while prr_out is 0).
            sndcnt = sndcnt.max(self.t_maxseg);
        }
        // Never below one segment (the module's invariant); with `sndcnt` 0 this still
        // sends nothing while pipe is at least a segment.
        self.ccv.cwnd = pipe.saturating_add(sndcnt).max(self.t_maxseg);
        let _ = now;
    }

    /// RFC 6937 §3.1: "On any data transmission or retransmission: prr_out += (data
    /// sent)".
    pub(crate) fn prr_on_send(&mut self, len: u32) {
        if let Some(p) = self.prr.as_mut() {
            p.out = p.out.saturating_add(len);
        }
    }
}
