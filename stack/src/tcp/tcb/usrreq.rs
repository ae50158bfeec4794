//! The user calls on a connection (RFC 9293 §3.10, FreeBSD's `tcp_usrreq.c`): open,
//! send, receive, close, abort, and the socket options the socket layer sets.

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Instant;

use xstack_cc::CongestionControl;

use super::{ConnStats, State, Tcb};
use crate::tcp::config::{Keepalive, TcpConfig, TcpError, UserError};
use crate::tcp::seq::Seq;
use crate::tcp::timer::TimerKind;

impl Tcb {
    /// An active open (RFC 9293 §3.10.1 OPEN, active): SYN-SENT, the SYN goes out on
    /// the next [`Tcb::poll_output`].
    pub fn connect(
        cfg: impl Into<Arc<TcpConfig>>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: Seq,
        cc: Box<dyn CongestionControl>,
        now: Instant,
    ) -> Tcb {
        let mut tcb = Tcb::new(cfg.into(), local, remote, iss, cc, now);
        tcb.attach_helpers();
        tcb.state = State::SynSent;
        tcb.timers
            .set(TimerKind::ConnEstab, now + tcb.cfg.connect_timeout);
        tcb
    }

    /// Queues data for sending (RFC 9293 §3.10.2 SEND). Returns how many bytes fit.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, UserError> {
        if let Some(e) = self.error {
            return Err(UserError::Failed(e));
        }
        if self.fin_queued() {
            return Err(UserError::SendClosed);
        }
        match self.state {
            State::Closed | State::TimeWait | State::Closing | State::LastAck => {
                Err(UserError::SendClosed)
            }
            // Data queued before the handshake completes goes out after it.
            _ => Ok(self.sndbuf.push(data)),
        }
    }

    /// Reads in-order data (RFC 9293 §3.10.3 RECEIVE). `Ok(0)` with a non-empty buffer
    /// means end of stream.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, UserError> {
        let n = self.rcvbuf.read(buf);
        if n > 0 {
            return Ok(n);
        }
        if let Some(e) = self.error {
            return Err(UserError::Failed(e));
        }
        Ok(0)
    }

    /// Bytes ready to read.
    pub fn readable(&self) -> usize {
        self.rcvbuf.readable()
    }

    /// True when a read would not block: data, EOF, or an error.
    pub fn read_ready(&self) -> bool {
        self.rcvbuf.readable() > 0
            || self.fin_received
            || self.error.is_some()
            || self.state == State::Closed
    }

    /// Free space in the send buffer (0 once sending is closed).
    pub fn send_space(&self) -> usize {
        if self.fin_queued()
            || !matches!(
                self.state,
                State::SynSent | State::SynReceived | State::Established | State::CloseWait
            )
        {
            0
        } else {
            self.sndbuf.free()
        }
    }

    /// True when a write would not block: space, or an error to report.
    pub fn write_ready(&self) -> bool {
        self.error.is_some()
            || (self.state.is_synchronized() && self.send_space() > 0)
            || self.state == State::Closed
    }

    /// Closes our sending side (RFC 9293 §3.10.4 CLOSE; `shutdown(SHUT_WR)`): a FIN
    /// follows the queued data.
    pub fn close(&mut self, now: Instant) {
        match self.state {
            State::Closed | State::TimeWait => {}
            // RFC 9293: "SYN-SENT STATE: Delete the TCB".
            State::SynSent => self.enter_closed(),
            // RFC 9293: "SYN-RECEIVED STATE: ... otherwise, queue for processing after
            // entering ESTABLISHED state." We always queue: in FIN-WAIT-1 the SYN,ACK
            // would no longer be retransmitted, nor the handshake's ACK recognised (the
            // input path moves to FIN-WAIT-1 when the handshake completes).
            State::SynReceived => self.queue_fin(),
            State::Established => {
                self.queue_fin();
                self.state = State::FinWait1;
            }
            State::CloseWait => {
                self.queue_fin();
                self.state = State::LastAck;
            }
            State::FinWait1 | State::FinWait2 | State::Closing | State::LastAck => {}
        }
        let _ = now;
        self.events = true;
    }

    fn queue_fin(&mut self) {
        if self.snd_fin.is_none() {
            self.snd_fin = Some(self.data_end());
        }
    }

    /// Marks the connection as no longer held by the application (the handle was
    /// dropped after `close`): FIN-WAIT-2 then ends after `orphan_fin_timeout`. Beyond
    /// `max_orphans` orphans in the stack it is reset instead.
    pub fn set_orphaned(&mut self, now: Instant) {
        self.orphaned = true;
        if self.take_orphan_slot() {
            self.arm_orphan_timer(now);
        }
    }

    /// Aborts (RFC 9293 §3.10.5 ABORT): a RST if synchronized, then CLOSED.
    pub fn abort(&mut self) {
        if matches!(
            self.state,
            State::SynReceived
                | State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
        ) {
            self.send_rst = true;
        }
        self.error.get_or_insert(TcpError::Aborted);
        self.enter_closed();
    }

    /// Switches the congestion-control module at run time (TCP_CONGESTION semantics:
    /// the new module starts from the current cwnd and ssthresh).
    pub fn set_congestion(&mut self, cc: Box<dyn CongestionControl>) {
        if self.cc_started {
            self.cc = xstack_cc::switch(&mut self.ccv, cc);
        } else {
            // Before establishment: `conn_init` runs when congestion control starts.
            self.cc = cc;
        }
    }

    /// The congestion-control module's name.
    pub fn congestion(&self) -> &'static str {
        self.cc.name()
    }

    /// Whether RACK-TLP (RFC 8985) is switched on for this connection (it is used
    /// once SACK is negotiated).
    pub fn rack_enabled(&self) -> bool {
        self.cfg.rack
    }

    /// Sets TCP_NODELAY.
    pub fn set_nodelay(&mut self, on: bool) {
        self.nodelay = on;
    }

    /// Enables or disables keepalive.
    pub fn set_keepalive(&mut self, ka: Option<Keepalive>, now: Instant) {
        if self.cfg.keepalive != ka {
            Arc::make_mut(&mut self.cfg).keepalive = ka;
        }
        match ka {
            Some(k) if self.state.is_synchronized() => {
                self.timers.set(TimerKind::Keepalive, now + k.idle)
            }
            _ => self.timers.stop(TimerKind::Keepalive),
        }
    }

    /// Resizes the buffers (grow at any time; shrink down to what they hold).
    pub fn set_buffer_sizes(&mut self, sndbuf: Option<usize>, rcvbuf: Option<usize>) {
        if let Some(n) = sndbuf {
            self.sndbuf.set_capacity(n);
            if self.cfg.sndbuf != n {
                Arc::make_mut(&mut self.cfg).sndbuf = n;
            }
        }
        if let Some(n) = rcvbuf {
            self.rcvbuf.set_capacity(n);
            if self.cfg.rcvbuf != n {
                Arc::make_mut(&mut self.cfg).rcvbuf = n;
            }
        }
    }

    /// TCP_NODELAY.
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }

    /// The configuration in force (but for TCP_NODELAY: [`Tcb::nodelay`]).
    pub fn config(&self) -> &TcpConfig {
        &self.cfg
    }

    /// ECN (RFC 3168) was negotiated on this connection.
    pub fn ecn(&self) -> bool {
        self.ecn_ok
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Local address and port.
    pub fn local(&self) -> SocketAddrV4 {
        self.local
    }

    /// Remote address and port.
    pub fn remote(&self) -> SocketAddrV4 {
        self.remote
    }

    /// The error that ended the connection, if any.
    pub fn error(&self) -> Option<TcpError> {
        self.error
    }

    /// The peer sent FIN (and everything before it was received).
    pub fn fin_received(&self) -> bool {
        self.fin_received
    }

    /// Takes the "readiness changed" flag.
    pub fn take_events(&mut self) -> bool {
        std::mem::take(&mut self.events)
    }

    /// Counters.
    pub fn stats(&self) -> &ConnStats {
        &self.stats
    }

    /// True once nothing remains to do: CLOSED and nothing left to send (a pending RST
    /// still has to go out).
    pub fn is_dead(&self) -> bool {
        self.state == State::Closed && !self.send_rst
    }
}
