//! LISTEN (RFC 9293 §3.10.7.2) through the SYN cache ([`super::syncache`]): a SYN gets
//! a SYN,ACK and a cache entry (or a cookie); the peer's next segment for that 4-tuple
//! turns the entry into a control block in SYN-RECEIVED, which processes it as if it
//! had been there since the SYN (FreeBSD's `syncache_expand` and `tcp_do_segment`).
//! The SYN,ACKs are made by a control block built for the moment from the entry, so
//! they are the bytes the connection itself would send.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::layer::{TcpLayer, TimerHeap};
use super::pcb::{FourTuple, Listener};
use super::segment::{Segment, TcpFlags};
use super::seq::Seq;
use super::syncache::{Cookies, SynCookies, SynEntry, SynTemplate};
use super::tcb::Tcb;
use crate::net::ipv4::Ipv4In;
use crate::net::{Interface, NetCtx};
use crate::stats::Counters;

impl TcpLayer {
    /// A segment for a listener and no connection: the SYN cache's entry for the
    /// 4-tuple if there is one, else a new SYN, a cookie ACK, or a RST for anything
    /// else with an ACK ("Any acknowledgment is bad if it arrives on a connection still
    /// in the LISTEN state"). A new SYN's ISN is above `iss_floor` when it reopens a
    /// connection from TIME-WAIT.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn input_listen(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        heap: &mut TimerHeap,
        listener: &Arc<Listener>,
        tuple: &FourTuple,
        ip: &Ipv4In<'_>,
        seg: &Segment<'_>,
        iss_floor: Option<Seq>,
        now: Instant,
    ) {
        let f = seg.flags;
        let bare_syn = f.contains(TcpFlags::SYN) && !f.intersects(TcpFlags::ACK | TcpFlags::RST);
        if let Some(e) = heap.syncache.get(tuple) {
            if bare_syn && seg.seq == e.syn.seq {
                // The SYN again: our SYN,ACK was lost. Answer it again.
                let (syn, iss, created, ts) = (e.syn, e.iss, e.created, e.ts_at(now));
                Counters::inc(&ctx.counters().tcp_syncache_dupsyn);
                self.send_synack(ifp, ctx, listener, tuple, &syn, iss, created, ts, now);
                return;
            }
            if let Some(e) = heap.syncache.remove(tuple).filter(|_| !bare_syn) {
                let ts = e.ts_at(now);
                self.expand(ifp, ctx, heap, listener, tuple, ip, seg, &e, ts, now);
                return;
            }
            // A SYN with another sequence number: a new attempt replaces the entry.
        }
        if f.contains(TcpFlags::RST) {
            return;
        }
        if f.contains(TcpFlags::ACK) {
            if f.contains(TcpFlags::SYN)
                || !self.cookie_ack(ifp, ctx, heap, listener, tuple, ip, seg, now)
            {
                self.send_reset(ifp, ctx, tuple, seg, ip.src_mac);
            }
            return;
        }
        if !f.contains(TcpFlags::SYN) {
            return;
        }
        if !listener.has_room() {
            // A full accept queue: drop the SYN (the client retries) and count.
            Counters::inc(&ctx.counters().tcp_listen_overflow);
            listener.overflows.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.syncache_add(ifp, ctx, heap, listener, tuple, seg, iss_floor, now);
    }

    /// A new SYN: a cache entry and a SYN,ACK, or a cookie SYN,ACK when the worker's
    /// cache is full (or always, `SynCookies::Always`), or nothing when it is full and
    /// cookies are off.
    #[allow(clippy::too_many_arguments)]
    fn syncache_add(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        heap: &mut TimerHeap,
        listener: &Arc<Listener>,
        tuple: &FourTuple,
        seg: &Segment<'_>,
        iss_floor: Option<Seq>,
        now: Instant,
    ) {
        let (limit, cookies, rto) = {
            let c = self.config.read().unwrap_or_else(|e| e.into_inner());
            if self.pcbs.held() >= c.max_connections {
                // No room for the connection the handshake would make: drop the SYN.
                c.bounds.count(|b| &b.conns_refused);
                return;
            }
            (c.syncache_limit, c.syncookies, c.rto.initial)
        };
        let syn = Segment {
            payload: &[],
            ..*seg
        };
        let full = heap.syncache.len() >= limit;
        if cookies == SynCookies::Always || (full && cookies == SynCookies::WhenFull) {
            self.send_cookie(ifp, ctx, listener, tuple, &syn, now);
            return;
        }
        if full {
            Counters::inc(&ctx.counters().tcp_syncache_overflow);
            return;
        }
        let mut iss = self.isn.isn(tuple.local, tuple.remote, now);
        if let Some(floor) = iss_floor {
            // RFC 1122 §4.2.2.13 (1): the new ISN must be larger than any sequence
            // number the old incarnation used.
            if iss <= floor {
                iss = floor + 1;
            }
        }
        let e = SynEntry {
            syn,
            iss,
            listener: Arc::downgrade(listener),
            created: now,
            sent: 1,
            last_sent: now,
            due: now + rto,
            ts_base: None,
            acked_at: None,
        };
        heap.syncache.insert(*tuple, e);
        Counters::inc(&ctx.counters().tcp_syncache_added);
        self.send_synack(ifp, ctx, listener, tuple, &syn, iss, now, None, now);
    }

    /// A SYN,ACK with a SYN cookie: the MSS in the ISS, the other options in our TSval
    /// when the peer sent timestamps.
    fn send_cookie(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        listener: &Arc<Listener>,
        tuple: &FourTuple,
        syn: &Segment<'static>,
        now: Instant,
    ) {
        let o = &syn.options;
        let iss = self.cookies.iss(tuple, syn.seq, o.mss.unwrap_or(536), now);
        let ecn = syn.flags.contains(TcpFlags::ECE | TcpFlags::CWR)
            && listener
                .ecn()
                .unwrap_or_else(|| self.config.read().unwrap_or_else(|e| e.into_inner()).ecn);
        let bits = o
            .timestamps
            .map(|_| Cookies::ts_bits(o.wscale, o.sack_permitted, ecn));
        Counters::inc(&ctx.counters().tcp_syncookies_sent);
        let tsval = bits.map(|b| self.cookies.tsval(b, now));
        self.send_synack(ifp, ctx, listener, tuple, syn, iss, now, tsval, now);
    }

    /// An ACK to a listener with no cache entry: if it carries a valid cookie, the
    /// connection its SYN asked for. False when it does not (the caller resets).
    #[allow(clippy::too_many_arguments)]
    fn cookie_ack(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        heap: &mut TimerHeap,
        listener: &Arc<Listener>,
        tuple: &FourTuple,
        ip: &Ipv4In<'_>,
        seg: &Segment<'_>,
        now: Instant,
    ) -> bool {
        if self
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .syncookies
            == SynCookies::Off
        {
            return false;
        }
        let Some(cookie) = self.cookies.check(tuple, seg, now) else {
            Counters::inc(&ctx.counters().tcp_syncookies_bad);
            return false;
        };
        Counters::inc(&ctx.counters().tcp_syncookies_ok);
        if self.syn_offloaded() && ifp.is_neighbour(ip.src) {
            // The XDP program answered the SYN to its link source and this ACK proves
            // the peer got it: its address is known without asking (`ArpCache::
            // learn_from_handshake`).
            ifp.arp
                .learn_from_handshake(ip.src, ip.src_mac, now, ctx.counters());
        }
        // Our clock goes on from the TSval the cookie SYN,ACK carried, whose microsecond
        // part dates the SYN,ACK: the control block takes it as sent then, and the ACK
        // gives the handshake's RTT sample as a cached SYN's would.
        let ts = seg.options.timestamps.map(|(_, ecr)| ecr);
        let sent = ts
            .and_then(|ecr| self.cookies.handshake_rtt(ecr, now))
            .and_then(|rtt| now.checked_sub(rtt));
        let e = SynEntry {
            syn: cookie.syn(seg),
            iss: seg.ack - 1,
            listener: Arc::downgrade(listener),
            created: sent.unwrap_or(now),
            sent: 1,
            last_sent: sent.unwrap_or(now),
            due: now,
            ts_base: None,
            acked_at: None,
        };
        self.expand(ifp, ctx, heap, listener, tuple, ip, seg, &e, ts, now);
        true
    }

    /// The control block for a passive open of `syn`, as the listener's settings make
    /// it, its clock started at `created`.
    fn passive_tcb(
        &self,
        listener: &Listener,
        tuple: &FourTuple,
        syn: &Segment<'_>,
        iss: Seq,
        created: Instant,
    ) -> Tcb {
        let mut cfg = self.conn_config();
        let ecn = listener.ecn().unwrap_or(cfg.ecn);
        let no_options = cfg.no_options || listener.no_options.load(Ordering::Relaxed);
        if (ecn, no_options) != (cfg.ecn, cfg.no_options) {
            let c = Arc::make_mut(&mut cfg);
            c.ecn = ecn;
            c.no_options = no_options;
        }
        let cc = self.cc.create_default();
        Tcb::accept_syn(cfg, tuple.local, tuple.remote, iss, cc, syn, created)
    }

    /// What `listener`'s SYN,ACKs carry, for a program answering its SYNs with cookies
    /// (`device/xdp.rs`): the SYN,ACK this stack makes for a SYN with every option
    /// (MSS, window scale, SACK-permitted, timestamps, ECN setup). `None` when the
    /// listener sends no options (a cookie answer needs timestamps).
    pub(crate) fn synack_template(&self, listener: &Listener) -> Option<SynTemplate> {
        use std::net::{Ipv4Addr, SocketAddrV4};
        let local = listener.local;
        // Any peer: nothing in a SYN,ACK depends on who it goes to.
        let tuple = FourTuple {
            local,
            remote: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 1),
        };
        let syn = Segment {
            src_port: tuple.remote.port(),
            dst_port: tuple.local.port(),
            seq: Seq(1),
            ack: Seq(0),
            flags: TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR,
            window: 65_535,
            urgent: 0,
            options: super::segment::TcpOptions {
                mss: Some(1460),
                wscale: Some(7),
                sack_permitted: true,
                timestamps: Some((1, 0)),
                ..Default::default()
            },
            payload: &[],
            ecn: Default::default(),
        };
        let now = self.clock.now();
        let mut tcb = self.passive_tcb(listener, &tuple, &syn, Seq(0), now);
        let out = tcb.poll_output(now)?;
        let o = &out.hdr.options;
        o.timestamps?;
        Some(SynTemplate {
            mss: o.mss?,
            window: out.hdr.window,
            wscale: o.wscale?,
            sack: o.sack_permitted,
            ecn: out.hdr.flags.contains(TcpFlags::ECE),
        })
    }

    /// Sends the SYN,ACK for `syn` (with `tsval` as its TSval: a cookie's, or a clock
    /// that goes on from one).
    #[allow(clippy::too_many_arguments)]
    fn send_synack(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        listener: &Listener,
        tuple: &FourTuple,
        syn: &Segment<'_>,
        iss: Seq,
        created: Instant,
        tsval: Option<u32>,
        now: Instant,
    ) {
        let mut tcb = self.passive_tcb(listener, tuple, syn, iss, created);
        if let Some(ts) = tsval {
            tcb.set_ts_clock(ts, now);
        }
        if let Some(out) = tcb.poll_output(now) {
            self.emit(ifp, ctx, tuple, &tcb, &out);
        }
    }

    /// The peer's next segment for a cached SYN: the control block it would have had
    /// (SYN-RECEIVED, the cache's SYN,ACKs taken as its own) joins the table and
    /// processes the segment. An ACK that finds the accept queue full is dropped, the
    /// entry kept, and the peer retries.
    #[allow(clippy::too_many_arguments)]
    fn expand(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        heap: &mut TimerHeap,
        listener: &Arc<Listener>,
        tuple: &FourTuple,
        ip: &Ipv4In<'_>,
        seg: &Segment<'_>,
        e: &SynEntry,
        ts_clock: Option<u32>,
        now: Instant,
    ) {
        if seg.flags.contains(TcpFlags::ACK) && !listener.has_room() {
            Counters::inc(&ctx.counters().tcp_listen_overflow);
            listener.overflows.fetch_add(1, Ordering::Relaxed);
            let (limit, rto) = {
                let c = self.config.read().unwrap_or_else(|e| e.into_inner());
                (c.syncache_limit, c.rto.initial)
            };
            if ts_clock.is_none() || e.ts_base.is_some() {
                let mut keep = e.clone();
                if keep.acked_at.is_none() {
                    // From now on resent at a steady pace (`ACKED_RESENDS`).
                    keep.acked_at = Some(e.sent);
                    keep.due = now + rto;
                }
                heap.syncache.insert(*tuple, keep);
                return;
            }
            // A cookie ACK. The peer thinks it is connected and may send nothing more
            // (an idle client would then hang for ever), so the cookie becomes a cache
            // entry, dated and with the cookie's clock: its SYN,ACK is retransmitted, the
            // peer answers (a challenge ACK from an established socket) and the answer
            // expands the entry once the queue has room, as for a cached SYN.
            if heap.syncache.len() < limit {
                let mut keep = e.clone();
                keep.ts_base = ts_clock.map(|ts| (ts, now));
                keep.acked_at = Some(e.sent);
                keep.due = now + rto;
                heap.syncache.insert(*tuple, keep);
            }
            return;
        }
        let mut tcb = self.passive_tcb(listener, tuple, &e.syn, e.iss, e.created);
        // A connection now (the SYN,ACKs' control blocks were throwaway): helper data.
        tcb.attach_helpers();
        if let Some(ts) = ts_clock {
            tcb.set_ts_clock(ts, now);
        }
        // The SYN,ACK the cache sent: the control block takes it as sent.
        let _ = tcb.poll_output(e.last_sent);
        // Resends before the peer's ACK are the path's (a backed-off timer, Karn); those
        // after it waited for room in our queue and say nothing about the path.
        tcb.synack_resent(e.acked_at.unwrap_or(e.sent).saturating_sub(1));
        // No RTT sample from a SYN,ACK that was sent more than once (Karn), nor from a
        // cookie SYN,ACK without a date.
        if e.sent > 1 || (ts_clock.is_some() && e.last_sent == now) {
            tcb.forget_rtt_timing(e.iss);
        }
        let owner = self.owner_of(tuple.local, tuple.remote);
        let Ok(conn) = self.pcbs.insert(*tuple, owner, tcb) else {
            // No connection can be made (`max_connections`): the peer, which thinks
            // it has one, is told (FreeBSD's `tcp_sc_rst_sock_fail`).
            self.send_reset(ifp, ctx, tuple, seg, ip.src_mac);
            return;
        };
        Counters::inc(&ctx.counters().tcp_conns_opened);
        Counters::inc(&ctx.counters().tcp_syncache_completed);
        listener.embryonic.fetch_add(1, Ordering::Relaxed);
        *conn.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(listener));
        // Schedule its SYN,ACK timer now: a segment answered with a RST below leaves it
        // in SYN-RECEIVED without going through output (found by the fuzzer: such a
        // connection was never retransmitted nor timed out).
        self.flush(ifp, ctx, heap, &conn, conn.lock());
        let inner = conn.lock();
        if e.acked_at.is_some() && e.sent > 1 {
            // An entry kept at a full accept queue, its SYN,ACK sent again: the peer,
            // established since the first, echoes that one's TSval (a challenge ACK does
            // not move its TS.Recent), so the echo would time the wait for room, not a
            // round trip. It is no sample (TSecr 0, "not valid", RFC 7323 §3.2).
            let mut unechoed = *seg;
            unechoed.options.timestamps = seg.options.timestamps.map(|(val, _)| (val, 0));
            self.input_conn(ifp, ctx, heap, &conn, inner, ip, &unechoed, now);
            return;
        }
        self.input_conn(ifp, ctx, heap, &conn, inner, ip, seg, now);
    }

    /// The SYN cache's deadlines: retransmit SYN,ACKs (the RTO doubling from the
    /// initial one), drop entries whose last went unanswered or whose listener closed.
    pub(super) fn syncache_timers(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        heap: &mut TimerHeap,
        now: Instant,
    ) {
        if heap.syncache.next().is_none_or(|t| t > now) {
            return;
        }
        let (retries, rto) = {
            let c = self.config.read().unwrap_or_else(|e| e.into_inner());
            (c.synack_retries, c.rto)
        };
        for (tuple, mut e) in heap.syncache.take_due(now) {
            let listener = e
                .listener
                .upgrade()
                .filter(|l| !l.closed.load(Ordering::Relaxed));
            let max = if e.acked_at.is_some() {
                retries.max(super::syncache::ACKED_RESENDS)
            } else {
                retries
            };
            let Some(listener) = listener.filter(|_| e.sent <= max) else {
                Counters::inc(&ctx.counters().tcp_syncache_expired);
                continue;
            };
            let ts = e.ts_at(now);
            self.send_synack(
                ifp, ctx, &listener, &tuple, &e.syn, e.iss, e.created, ts, now,
            );
            Counters::inc(&ctx.counters().tcp_syncache_retransmitted);
            e.sent += 1;
            e.last_sent = now;
            let backoff = if e.acked_at.is_some() {
                rto.initial
            } else {
                rto.initial.saturating_mul(1 << e.sent.min(16)) / 2
            };
            e.due = now + backoff.min(rto.max).max(Duration::from_millis(1));
            heap.syncache.insert(tuple, e);
        }
    }
}
