//! What a connection reports about itself: the `tcp_info`-like snapshot (FreeBSD's
//! `tcp_fill_info`) and the per-connection counters.

use super::Tcb;

/// A `tcp_info`-like snapshot.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TcpInfo {
    /// State name.
    pub state: &'static str,
    /// Congestion-control module name.
    pub cc: &'static str,
    /// The module's own state (e.g. CUBIC's W_max, K).
    pub cc_state: Vec<(&'static str, String)>,
    /// Congestion window, bytes.
    pub cwnd: u32,
    /// Slow-start threshold, bytes.
    pub ssthresh: u32,
    /// Smoothed RTT, microseconds.
    pub srtt_us: u64,
    /// RTT variance, microseconds.
    pub rttvar_us: u64,
    /// Current RTO, microseconds.
    pub rto_us: u64,
    /// Send MSS (payload bytes per segment).
    pub mss: u32,
    /// The peer's advertised window, bytes.
    pub snd_wnd: u32,
    /// Our advertised window, bytes.
    pub rcv_wnd: u32,
    /// Segments retransmitted.
    pub retransmits: u64,
    /// Payload bytes sent (first transmissions and retransmissions).
    pub bytes_sent: u64,
    /// Payload bytes retransmitted.
    pub bytes_retrans: u64,
    /// Retransmission timer expiries.
    pub rtos: u64,
    /// Retransmissions found lost again in SACK recovery and resent without an RTO.
    pub lost_rexmits: u64,
    /// Fast-recovery episodes.
    pub fast_recoveries: u64,
    /// RACK-TLP (RFC 8985) is in use (on, and SACK negotiated).
    pub rack: bool,
    /// RACK's reordering window at its last loss detection, microseconds.
    pub rack_reo_wnd_us: u64,
    /// RACK's DSACK multiplier of the reordering window (RACK.reo_wnd_mult).
    pub rack_reo_wnd_mult: u32,
    /// RACK has seen reordering on this connection (RACK.reordering_seen).
    pub rack_reordering_seen: bool,
    /// Segments RACK marked lost.
    pub rack_lost: u64,
    /// Times RACK's reordering timer expired and marked losses.
    pub rack_reo_timeouts: u64,
    /// Tail loss probes sent.
    pub tlp_probes: u64,
    /// Recovery probes sent: fast recovery gone silent (see `TcpConfig::recovery_probe`).
    pub recovery_probes: u64,
    /// Losses a tail loss probe repaired (each reduced cwnd).
    pub tlp_recoveries: u64,
    /// Segments currently deemed lost and not yet resent (Linux's `tcpi_lost`).
    pub lost: u32,
    /// Payload bytes acknowledged by the peer.
    pub bytes_acked: u64,
    /// Payload bytes received in order.
    pub bytes_received: u64,
    /// Window scale shifts (ours, theirs), if negotiated.
    pub wscale: Option<(u8, u8)>,
    /// Timestamps negotiated.
    pub timestamps: bool,
    /// SACK negotiated.
    pub sack: bool,
    /// ECN (RFC 3168) negotiated on the handshake.
    pub ecn: bool,
    /// Data segments received with CE in the IP header.
    pub ecn_ce_received: u64,
    /// Segments sent with ECN-Echo (our echo of CE marks until the peer's CWR).
    pub ecn_ece_sent: u64,
    /// ACKs received with ECN-Echo.
    pub ecn_ece_received: u64,
    /// Segments sent with CWR (after each window reduction).
    pub ecn_cwr_sent: u64,
    /// Segments received with CWR.
    pub ecn_cwr_received: u64,
    /// Congestion-window reductions triggered by ECN-Echo (at most one per window).
    pub ecn_reductions: u64,
    /// While the peer's window is zero and data waits: when it closed, in milliseconds
    /// after the connection was created. `None` while the window is open.
    pub snd_zero_window_since_ms: Option<u64>,
    /// Zero-window probes sent since the peer's window closed (Linux's
    /// `tcpi_probes`).
    pub zero_window_probes: u32,
}

/// Counters of one connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnStats {
    /// Segments retransmitted.
    pub retransmits: u64,
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// Payload bytes retransmitted.
    pub bytes_retrans: u64,
    /// Payload bytes acknowledged.
    pub bytes_acked: u64,
    /// Payload bytes received in order.
    pub bytes_received: u64,
    /// Segments received.
    pub segs_in: u64,
    /// Segments sent.
    pub segs_out: u64,
    /// Segments dropped as unacceptable (out of window, PAWS, ...).
    pub drops: u64,
    /// Challenge ACKs sent (RFC 5961).
    pub challenge_acks: u64,
    /// D-SACK blocks received (RFC 2883): segments the peer got twice.
    pub dsacks: u64,
    /// SACK blocks ignored as bogus (outside the outstanding data).
    pub bad_sacks: u64,
    /// Fast-recovery episodes entered (RFC 6675 with SACK, RFC 6582 without).
    pub fast_recoveries: u64,
    /// Retransmission timeouts found spurious and undone (Eifel, RFC 3522).
    pub spurious_rtos: u64,
    /// Segments sent by limited transmit (RFC 3042).
    pub limited_transmits: u64,
    /// Retransmission timer expiries (each backed-off expiry counts too).
    pub rtos: u64,
    /// Retransmissions deemed lost again in SACK recovery because the peer SACKed data
    /// sent after them (see [`crate::tcp::sack`]); each was then resent without an RTO.
    pub lost_rexmits: u64,
    /// Segments RACK (RFC 8985) marked lost.
    pub rack_lost: u64,
    /// RACK reordering-timer expiries that marked losses.
    pub rack_reo_timeouts: u64,
    /// Tail loss probes sent (RFC 8985 §7). (This and `recovery_probes` are 32-bit: the
    /// pair takes one word of every control block.)
    pub tlp_probes: u32,
    /// Probes sent in fast recovery after a PTO with no ACK and nothing to send
    /// (`TcpConfig::recovery_probe`).
    pub recovery_probes: u32,
    /// Tail loss probes that repaired a loss (RFC 8985 §7.4).
    pub tlp_recoveries: u64,
    /// ECN (RFC 3168) counters.
    pub ecn: EcnStats,
}

/// ECN counters of one connection (RFC 3168 signals, each direction).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EcnStats {
    /// Data segments received with CE.
    pub ce_received: u64,
    /// Segments sent with ECE.
    pub ece_sent: u64,
    /// ACKs received with ECE.
    pub ece_received: u64,
    /// Segments sent with CWR.
    pub cwr_sent: u64,
    /// Segments received with CWR.
    pub cwr_received: u64,
    /// Window reductions in response to ECE.
    pub reductions: u64,
    /// Data segments sent ECT(0).
    pub ect_sent: u64,
}

impl Tcb {
    /// The `tcp_info`-like snapshot.
    pub fn info(&self) -> TcpInfo {
        TcpInfo {
            state: self.state.name(),
            cc: self.cc.name(),
            cc_state: self.cc.state(),
            cwnd: self.ccv.cwnd,
            ssthresh: self.ccv.ssthresh,
            srtt_us: self.rtt.srtt().map(|d| d.as_micros() as u64).unwrap_or(0),
            rttvar_us: self.rtt.rttvar().as_micros() as u64,
            rto_us: self.rtt.rto().as_micros() as u64,
            mss: self.t_maxseg,
            snd_wnd: self.snd_wnd,
            rcv_wnd: self.rcvbuf.window() as u32,
            retransmits: self.stats.retransmits,
            bytes_sent: self.stats.bytes_sent,
            bytes_retrans: self.stats.bytes_retrans,
            rtos: self.stats.rtos,
            lost_rexmits: self.stats.lost_rexmits,
            fast_recoveries: self.stats.fast_recoveries,
            rack: self.rack_active(),
            rack_reo_wnd_us: self.rack.reo_wnd.as_micros() as u64,
            rack_reo_wnd_mult: self.rack.reo_wnd_mult(),
            rack_reordering_seen: self.rack.reordering_seen,
            rack_lost: self.stats.rack_lost,
            rack_reo_timeouts: self.stats.rack_reo_timeouts,
            tlp_probes: self.stats.tlp_probes.into(),
            recovery_probes: self.stats.recovery_probes.into(),
            tlp_recoveries: self.stats.tlp_recoveries,
            lost: self.rack.log.lost_segs(),
            bytes_acked: self.stats.bytes_acked,
            bytes_received: self.stats.bytes_received,
            wscale: self.wscale_ok.then_some((self.rcv_wscale, self.snd_wscale)),
            timestamps: self.ts_enabled,
            sack: self.sack_ok,
            ecn: self.ecn_ok,
            ecn_ce_received: self.stats.ecn.ce_received,
            ecn_ece_sent: self.stats.ecn.ece_sent,
            ecn_ece_received: self.stats.ecn.ece_received,
            ecn_cwr_sent: self.stats.ecn.cwr_sent,
            ecn_cwr_received: self.stats.ecn.cwr_received,
            ecn_reductions: self.stats.ecn.reductions,
            snd_zero_window_since_ms: self
                .zero_window_since
                .map(|t| t.saturating_duration_since(self.created).as_millis() as u64),
            zero_window_probes: if self.zero_window_since.is_some() {
                self.persist_shift
            } else {
                0
            },
        }
    }
}
