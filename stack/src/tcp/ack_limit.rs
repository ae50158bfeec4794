//! ACKs that a flood of forged or looping segments could make a connection send over
//! and over: challenge ACKs (RFC 5961 §7) and ACKs for unacceptable segments without
//! data (RFC 9293 §3.10.7.4, first check). Each is limited per connection (10 challenge
//! ACKs a second; one out-of-window ACK per [`OOW_ACK_INTERVAL`], Linux's
//! `tcp_invalid_ratelimit`) and, by the TCP layer, stack-wide
//! ([`crate::RateLimits::ack_per_sec`]).
//!
//! Input only notes that such an ACK is owed ([`Tcb::owe_limited_ack`]); the layer
//! settles it before output ([`Tcb::settle_limited_ack`]). Output settles what is left
//! without a stack-wide limit, for a control block driven on its own.

use std::time::{Duration, Instant};

use super::segment::Segment;
use super::Tcb;

/// Per connection, the least time between two ACKs for unacceptable segments without
/// data (Linux's `tcp_invalid_ratelimit` default).
pub const OOW_ACK_INTERVAL: Duration = Duration::from_millis(500);

/// Why an ACK is owed that is subject to the limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitedAck {
    /// An RFC 5961 challenge ACK (within the connection's 10 a second).
    Challenge,
    /// An ACK for an unacceptable segment without data.
    OutOfWindow,
}

/// What became of an owed limited ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// None was owed, or an ACK goes out anyway.
    Nothing,
    /// It goes out.
    Sent,
    /// Suppressed by the connection's own limit.
    ConnLimited,
    /// Suppressed by the stack-wide limit.
    StackLimited,
}

impl Tcb {
    /// Notes a limited ACK owed (the first of a step counts; more add nothing).
    pub(super) fn owe_limited_ack(&mut self, kind: LimitedAck) {
        self.limited_ack.get_or_insert(kind);
    }

    /// Notes the ACK owed to an unacceptable segment. One occupying sequence space (data,
    /// SYN or FIN) is acknowledged at once: it may be a retransmission whose ACK was
    /// lost, and its sender needs the answer. One without is what an ACK war or a blind
    /// probe sends, and is limited.
    pub(super) fn owe_unacceptable_ack(&mut self, seg: &Segment<'_>) {
        if seg.seg_len() > 0 {
            self.ack_now = true;
        } else {
            self.owe_limited_ack(LimitedAck::OutOfWindow);
        }
    }

    /// Decides an owed limited ACK at `now`: the connection's limit first, then
    /// `stack_allows` (which takes a stack-wide token). An ACK already owed for another
    /// reason carries it for free.
    pub(crate) fn settle_limited_ack(
        &mut self,
        now: Instant,
        stack_allows: impl FnOnce() -> bool,
    ) -> Settled {
        let Some(kind) = self.limited_ack.take() else {
            return Settled::Nothing;
        };
        if self.ack_now {
            return Settled::Nothing;
        }
        if kind == LimitedAck::OutOfWindow {
            if self
                .last_oow_ack
                .is_some_and(|t| now.saturating_duration_since(t) < OOW_ACK_INTERVAL)
            {
                self.challenge_now = false;
                return Settled::ConnLimited;
            }
            self.last_oow_ack = Some(now);
        }
        if !stack_allows() {
            self.challenge_now = false;
            return Settled::StackLimited;
        }
        self.ack_now = true;
        Settled::Sent
    }
}
