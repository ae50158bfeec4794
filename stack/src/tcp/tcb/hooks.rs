//! The control block's side of the helper hooks (`tcp/hhook.rs`): building each point's
//! context and running the connection's helpers. Every entry point is one test of the
//! slot (`None` on a connection made while no helper was registered) before anything
//! else; the work is in out-of-line functions so the engine's hot paths stay as they were.

use std::time::Instant;

use super::Tcb;
use crate::tcp::hhook::{AckDoneCtx, ConnCtx, ConnVars, HookPoint, InputCtx, OutputCtx};
use crate::tcp::output::OutSegment;
use crate::tcp::segment::{Segment, MAX_SACK_BLOCKS};

impl Tcb {
    /// Gives a new connection data for the helpers registered on its stack, as its
    /// settings list them. Only for control blocks that become connections: the SYN
    /// cache's throwaway ones (one per SYN,ACK sent) get none, so a SYN flood allocates
    /// nothing for helpers and runs no hook.
    pub(crate) fn attach_helpers(&mut self) {
        self.helpers = self.cfg.helpers.new_slot();
    }

    /// The connection's variables, as the hook contexts carry them.
    pub(crate) fn conn_vars(&self) -> ConnVars {
        ConnVars {
            state: self.state,
            local: self.local,
            remote: self.remote,
            snd_una: self.snd_una.0,
            snd_nxt: self.snd_nxt.0,
            snd_max: self.snd_max.0,
            snd_wnd: self.snd_wnd,
            rcv_nxt: self.rcv_nxt.0,
            maxseg: self.t_maxseg,
            cwnd: self.ccv.cwnd,
            ssthresh: self.ccv.ssthresh,
            in_flight: self.in_flight(),
            srtt: self.rtt.srtt(),
            min_rtt: self.rtt.min_rtt(),
            recovery: self.recovery,
            round: self.rounds,
        }
    }

    /// [`HookPoint::Input`]: an acceptable ACK, before it is processed; a new ERTT
    /// measurement goes to the congestion-control module before the ACK does.
    #[inline]
    pub(crate) fn hook_input(&mut self, seg: &Segment<'_>, acked: u32, now: Instant) {
        if self.helpers.is_some() {
            self.run_input_hooks(seg, acked, now);
        }
    }

    #[inline(never)]
    fn run_input_hooks(&mut self, seg: &Segment<'_>, acked: u32, now: Instant) {
        let Some(mut slot) = self.helpers.take() else {
            return;
        };
        if !slot.uses(HookPoint::Input) {
            self.helpers = Some(slot);
            return;
        }
        let mut sack = [(0u32, 0u32); MAX_SACK_BLOCKS];
        let blocks = if self.sack_ok {
            seg.options.sack()
        } else {
            &[]
        };
        for (d, s) in sack.iter_mut().zip(blocks) {
            *d = (s.0 .0, s.1 .0);
        }
        let ctx = InputCtx {
            now,
            vars: self.conn_vars(),
            seq: seg.seq.0,
            ack: seg.ack.0,
            flags: seg.flags,
            window: (seg.window as u32) << self.snd_wscale,
            payload_len: seg.payload.len(),
            timestamps: seg.options.timestamps.filter(|_| self.ts_enabled),
            sack: &sack[..blocks.len()],
            acked,
        };
        let (alive, ertt) = slot.input(&ctx);
        if alive {
            self.helpers = Some(slot);
        }
        if let (Some(e), true) = (ertt, self.cc_started) {
            self.cc.ertt_sample(&mut self.ccv, &e);
        }
    }

    /// [`HookPoint::AckDone`]: the ACK was processed; `rate` is its delivery-rate sample.
    #[inline]
    pub(crate) fn hook_ack_done(&mut self, rate: Option<xstack_cc::RateSample>, now: Instant) {
        if self.helpers.is_some() {
            self.run_ack_done_hooks(rate, now);
        }
    }

    #[inline(never)]
    fn run_ack_done_hooks(&mut self, rate: Option<xstack_cc::RateSample>, now: Instant) {
        let Some(mut slot) = self.helpers.take() else {
            return;
        };
        let alive = !slot.uses(HookPoint::AckDone)
            || slot.ack_done(&AckDoneCtx {
                now,
                vars: self.conn_vars(),
                rate,
            });
        if alive {
            self.helpers = Some(slot);
        }
    }

    /// [`HookPoint::Output`]: `seg` is going out.
    #[inline]
    pub(crate) fn hook_output(&mut self, seg: &OutSegment, now: Instant) {
        if self.helpers.is_some() {
            self.run_output_hooks(seg, now);
        }
    }

    #[inline(never)]
    fn run_output_hooks(&mut self, seg: &OutSegment, now: Instant) {
        let Some(mut slot) = self.helpers.take() else {
            return;
        };
        let alive = !slot.uses(HookPoint::Output)
            || slot.output(&OutputCtx {
                now,
                vars: self.conn_vars(),
                seq: seg.hdr.seq.0,
                len: seg.payload_len,
                flags: seg.hdr.flags,
                retransmit: seg.retransmit,
                tso_segsz: seg.tso_segsz,
                tsval: seg.hdr.options.timestamps.map(|(v, _)| v),
            });
        if alive {
            self.helpers = Some(slot);
        }
    }

    /// [`HookPoint::Established`].
    #[inline]
    pub(crate) fn hook_established(&mut self, now: Instant) {
        let Some(mut slot) = self.helpers.take() else {
            return;
        };
        let ctx = ConnCtx {
            now,
            vars: self.conn_vars(),
        };
        if slot.established(&ctx) {
            self.helpers = Some(slot);
        }
    }

    /// [`HookPoint::Closed`], once: the owner worker discards the connection. The helper
    /// data is freed here, not when the last handle to the connection goes.
    pub(crate) fn hook_closed(&mut self, now: Instant) {
        let Some(mut slot) = self.helpers.take() else {
            return;
        };
        slot.closed(&ConnCtx {
            now,
            vars: self.conn_vars(),
        });
    }

    /// The names of the helpers with data on this connection.
    pub(crate) fn helper_names(&self) -> Vec<String> {
        self.helpers.as_ref().map_or_else(Vec::new, |s| s.names())
    }

    /// `(helper, JSON)` for each helper reporting its data on this connection.
    pub(crate) fn helper_info(&self) -> Vec<(String, String)> {
        self.helpers
            .as_ref()
            .map_or_else(Vec::new, |s| s.info_json())
    }

    /// The data of the helper called `name` on this connection, if it is a `T`.
    pub(crate) fn helper_data<T: 'static>(&self, name: &str) -> Option<&T> {
        self.helpers.as_ref()?.data(name)
    }
}
