//! Path MTU discovery (RFC 1191 §6.1, with RFC 5927's checks against forged ICMP), after
//! FreeBSD's `tcp_mtudisc`: an ICMP "fragmentation needed" about a segment still in
//! flight lowers the connection's MSS to what the reported MTU leaves (never below
//! `TcpConfig::pmtu_min_mss`, never up), and the connection goes back to SND.UNA to
//! resend in the smaller size what the path dropped. We always send with DF set, so
//! this is the only way a path narrower than our MTU is learned.

use super::seq::Seq;
use super::Tcb;

/// IPv4 and TCP headers without options: what an MTU holds besides the MSS.
const HEADERS: u32 = 40;

/// What a "fragmentation needed" error did to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmtuVerdict {
    /// The MSS was lowered; output resends from SND.UNA.
    Lowered,
    /// The quoted sequence number is not in flight (RFC 5927 §4.1): forged, or about
    /// a segment long acknowledged.
    Bogus,
    /// The reported MTU would not lower the MSS.
    Ignored,
}

impl Tcb {
    /// `tcp_mtudisc`: the path cannot carry a datagram of our size; `mtu` is what it
    /// can (`seq` is the quoted segment's sequence number).
    pub(crate) fn icmp_frag_needed(&mut self, seq: Seq, mtu: u16) -> PmtuVerdict {
        if seq < self.snd_una || seq >= self.snd_max {
            return PmtuVerdict::Bogus;
        }
        let floor = u32::from(self.cfg.pmtu_min_mss);
        let mss = u32::from(mtu).saturating_sub(HEADERS).max(floor);
        // As `set_maxseg`: the timestamp option every segment carries counts against it.
        let opt = if self.ts_enabled { 12 } else { 0 };
        let maxseg = mss.saturating_sub(opt).max(64);
        if maxseg >= self.t_maxseg {
            return PmtuVerdict::Ignored;
        }
        self.t_maxseg = maxseg;
        if self.cc_started {
            self.ccv.set_maxseg(maxseg);
        }
        if self.state.is_synchronized() {
            // What was sent in the old size beyond the path's MTU was dropped: send it
            // again, as after a timeout but without a congestion signal (the loss says
            // nothing about congestion). Duplicate ACKs the resent data provokes must
            // not start a fast retransmit (RFC 6582's `recover`).
            self.sb.begin_phase(self.snd_una);
            self.dupacks = 0;
            self.recover = self.snd_max;
            self.snd_nxt = self.snd_una;
            self.rtt_timing = None;
            self.rexmit_one = false;
        }
        PmtuVerdict::Lowered
    }
}
