//! The TCP layer of one stack: where IPv4 hands TCP segments over (`tcp_input`), where
//! connections' segments leave (`tcp_output` -> `ip_output`), and the per-worker
//! machinery around the sans-IO control blocks: timer heaps, the queue of connections
//! whose application wrote data (kicks), and listener handoff.
//!
//! Every connection is owned by one worker (its flow's netisr owner): that worker runs
//! its input, output and timers. Application threads only copy data in and out under
//! the connection's lock and then "kick" the owner.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::BuildHasherDefault;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::rss::Toeplitz;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use crossbeam::queue::SegQueue;
use smoltcp::wire::{EthernetAddress, IpProtocol};

use super::ack_limit::Settled;
use super::config::TcpConfig;
use super::input::{reset_for, InputOutcome};
use super::isn::IsnGenerator;
use super::output::OutSegment;
use super::pcb::{Conn, ConnInner, FourTuple, GroupMap, PcbTable, ReadinessSink};
use super::pmtu::PmtuVerdict;
use super::segment::{self, ChecksumMode, SegmentError, SegmentOut, TcpFlags, TcpOptions};
use super::tcb::{State, Tcb};
use crate::net::ipv4::{self, Ipv4In};
use crate::net::{Interface, NetCtx, TxHold};
use crate::socket::ReadinessFd;
use crate::stats::Counters;

/// Offset of the checksum field in the TCP header (RFC 9293 §3.1): `csum_offset`.
const TCP_CSUM_OFFSET: u16 = 16;

/// Wakes a worker (its eventfd, or a no-op in simulations).
pub type WorkerWaker = Arc<dyn Fn() + Send + Sync>;

/// The TCP state of one stack.
pub struct TcpLayer {
    /// Connections and listeners.
    pub pcbs: PcbTable,
    /// RFC 6528 initial sequence numbers.
    pub isn: IsnGenerator,
    /// SYN cookies' key and time base.
    pub cookies: super::syncache::Cookies,
    /// Congestion-control modules by name.
    pub cc: xstack_cc::Registry,
    /// Settings for new connections.
    pub config: RwLock<Arc<TcpConfig>>,
    /// The RSS hash placing connections on workers (the device's, or the emulation's).
    pub rss: Arc<Toeplitz>,
    /// The stack's clock, for the calls applications make (the workers pass their
    /// iteration's time down in their context instead).
    pub clock: crate::clock::Clock,
    next_worker: AtomicUsize,
    nworkers: usize,
    kicks: Vec<SegQueue<Arc<Conn>>>,
    wakers: OnceLock<Vec<WorkerWaker>>,
    /// Application tasks waiting for their worker (`crate::task`).
    pub(crate) tasks: Box<[crate::task::TaskInbox]>,
    /// Where SYNs are answered with cookies before they reach a worker (the XDP
    /// program), told of every listener ([`TcpLayer::sync_syn_offload`]).
    /// Set once, at start-up: read lock-free wherever a segment may need it.
    syn_offload: OnceLock<Arc<dyn super::syncache::SynOffload>>,
}

/// One connection whose readiness changed: the poller registrations to notify, and its
/// readiness fd when an operation waits on it (already disarmed: it must be written).
struct Wakeup {
    conn: Arc<Conn>,
    sinks: Vec<(Arc<dyn ReadinessSink>, usize)>,
    fd: Option<Arc<ReadinessFd>>,
}

/// The hasher of [`TimerHeap`]'s map, whose keys are connection ids: the stack's own
/// sequence numbers, not something a peer chooses, so a multiplication (Fibonacci
/// hashing, which puts the entropy in the high bits the map's probing uses) does
/// in place of SipHash, several times its cost, twice per connection.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A worker's timer heap: connections by next deadline (lazy deletion: an entry is
/// acted on only if it is still the connection's scheduled time).
///
/// Connections in TIME-WAIT wait in a queue of their own, as FreeBSD's `tcp_tw` list:
/// they all wait the same 2*MSL, so their deadlines arrive nearly in order and go in at
/// or near the back, and a server closing tens of thousands of connections a second
/// (up to `max_time_wait` of them waiting) keeps them out of the heap the active
/// connections' timers go through.
#[derive(Default)]
pub struct TimerHeap {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    /// TIME-WAIT deadlines, sorted (see above).
    time_wait: std::collections::VecDeque<(Instant, u64)>,
    conns: std::collections::HashMap<u64, Arc<Conn>, BuildHasherDefault<IdHasher>>,
    /// Connections whose readiness changed during this worker iteration: the
    /// application is woken once per iteration, not once per segment.
    wakes: Vec<Wakeup>,
    /// This worker's SYN cache (its SYN,ACK retransmissions are deadlines too).
    pub(super) syncache: super::syncache::SynCache,
}

/// How far from the back of the TIME-WAIT queue a deadline may go in; one that would go
/// further (a TIME-WAIT connection with an earlier timer of another kind) goes to the
/// heap instead.
const TIME_WAIT_INSERT_SPAN: usize = 32;

impl TimerHeap {
    /// The earliest deadline: a connection's or the SYN cache's.
    pub fn next(&self) -> Option<Instant> {
        let conns = self.peek().map(|(t, _)| t);
        [conns, self.syncache.next()].into_iter().flatten().min()
    }

    /// Schedules connection `id` at `t`, in the TIME-WAIT queue if `time_wait` and it fits
    /// near the back, else in the heap.
    fn push(&mut self, t: Instant, id: u64, time_wait: bool) {
        if time_wait {
            let q = &mut self.time_wait;
            let mut i = q.len();
            while i > 0 && q[i - 1].0 > t && q.len() - i < TIME_WAIT_INSERT_SPAN {
                i -= 1;
            }
            if i == 0 || q[i - 1].0 <= t {
                q.insert(i, (t, id));
                return;
            }
        }
        self.heap.push(Reverse((t, id)));
    }

    /// The earliest connection deadline (stale or not).
    fn peek(&self) -> Option<(Instant, u64)> {
        let h = self.heap.peek().map(|Reverse(e)| *e);
        match (h, self.time_wait.front().copied()) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Removes the entry [`TimerHeap::peek`] returned.
    fn pop(&mut self) {
        let h = self.heap.peek().map(|Reverse((t, _))| *t);
        match (h, self.time_wait.front()) {
            (Some(a), Some(b)) if b.0 < a => {
                self.time_wait.pop_front();
            }
            (None, Some(_)) => {
                self.time_wait.pop_front();
            }
            _ => {
                self.heap.pop();
            }
        }
    }

    /// SYN cache entries held by this worker.
    #[cfg(any(test, feature = "sim"))]
    pub fn syncache_len(&self) -> usize {
        self.syncache.len()
    }

    /// The 4-tuples of this worker's SYN cache entries.
    #[cfg(any(test, feature = "sim"))]
    pub fn syncache_tuples(&self) -> impl Iterator<Item = FourTuple> + '_ {
        self.syncache.tuples()
    }

    /// Connections scheduled.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// True when nothing is scheduled.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Wakes the applications of the connections whose readiness changed. The worker
    /// calls it before its tasks run and at the end of each iteration.
    /// Returns how many connections had an application thread waiting on them (not
    /// counting the worker's own tasks).
    pub fn deliver_wakes(&mut self) -> usize {
        let mut woken = 0;
        for w in self.wakes.drain(..) {
            let blocked = w.conn.wake(w.sinks);
            let signalled = w.fd.as_ref().is_some_and(|fd| fd.signal());
            woken += (blocked || signalled) as usize;
        }
        woken
    }
}

impl TcpLayer {
    /// A TCP layer for `nworkers` workers with the built-in congestion controls.
    pub fn new(nworkers: usize, config: TcpConfig) -> TcpLayer {
        Self::with_rss(nworkers, config, Arc::new(Toeplitz::default()))
    }

    /// As [`TcpLayer::new`], placing connections with `rss` (the device's hash).
    pub fn with_rss(nworkers: usize, mut config: TcpConfig, rss: Arc<Toeplitz>) -> TcpLayer {
        // This stack's own gauges, whatever settings it was given (`tcp/bounds.rs`).
        config.bounds = super::bounds::TcpBounds::default();
        TcpLayer {
            rss: rss.clone(),
            clock: crate::clock::Clock::Real,
            next_worker: AtomicUsize::new(0),
            pcbs: PcbTable::with_groups(GroupMap::new(nworkers, nworkers * 4), rss.clone()),
            isn: IsnGenerator::new(),
            cookies: super::syncache::Cookies::new(),
            cc: xstack_cc::Registry::with_builtins(),
            config: RwLock::new(Arc::new(config)),
            nworkers: nworkers.max(1),
            kicks: (0..nworkers.max(1)).map(|_| SegQueue::new()).collect(),
            wakers: OnceLock::new(),
            tasks: (0..nworkers.max(1)).map(|_| Default::default()).collect(),
            syn_offload: OnceLock::new(),
        }
    }

    /// Hands listeners' SYNs to `o` (SYN cookies answered in the XDP program): every
    /// listener now and to come is published to it, with what its SYN,ACKs carry. Only
    /// the first call takes effect (a stack has one XDP program).
    pub fn set_syn_offload(&self, o: Arc<dyn super::syncache::SynOffload>) {
        if self.syn_offload.set(o).is_ok() {
            for local in self.pcbs.listening() {
                self.sync_syn_offload(local);
            }
        }
    }

    /// True when SYNs may be answered before the stack sees them: an ACK may then
    /// carry a cookie the stack never sent itself.
    pub(crate) fn syn_offloaded(&self) -> bool {
        self.syn_offload.get().is_some()
    }

    /// Tells the SYN offload (if any) what `local`'s SYNs get now: its open listener's
    /// SYN,ACK template, or nothing (closed, or a listener without options, which a
    /// cookie cannot answer as the stack would). Called whenever a listener opens,
    /// closes or changes its options.
    pub(crate) fn sync_syn_offload(&self, local: SocketAddrV4) {
        let Some(o) = self.syn_offload.get() else {
            return;
        };
        let t = self
            .pcbs
            .open_listener(local)
            .and_then(|l| self.synack_template(&l));
        o.publish(local, t);
    }

    /// Wakes worker `w` if it sleeps (a no-op in simulations).
    pub(crate) fn wake(&self, w: usize) {
        if let Some(wake) = self.wakers.get().and_then(|v| v.get(w)) {
            wake();
        }
    }

    /// Installs the workers' wakers (once, at start-up).
    pub fn set_wakers(&self, wakers: Vec<WorkerWaker>) {
        let _ = self.wakers.set(wakers);
    }

    /// Number of workers.
    #[cfg(any(test, feature = "sim"))]
    pub fn nworkers(&self) -> usize {
        self.nworkers
    }

    /// The worker owning a connection with these ends: the receive queue an RSS
    /// device puts the connection's incoming segments on (hash of the tuple as
    /// received: the peer is the source).
    pub fn owner_of(&self, local: SocketAddrV4, remote: SocketAddrV4) -> usize {
        let g = self.pcbs.group_of(&FourTuple { local, remote });
        self.pcbs.group_map().owner(g)
    }

    /// The worker the next active open should land on (round robin), so outgoing
    /// connections spread over the workers; `connect` picks an ephemeral port whose
    /// reply hash lands there (FreeBSD RSS's and Seastar's trick).
    pub fn next_connect_worker(&self) -> usize {
        self.next_worker.fetch_add(1, Ordering::Relaxed) % self.nworkers
    }

    /// A copy of the settings for a new connection.
    pub fn conn_config(&self) -> Arc<TcpConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The stack-wide gauges and counters of the TCP bounds (`tcp/bounds.rs`).
    pub fn bounds(&self) -> super::bounds::TcpBounds {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .bounds
            .clone()
    }

    /// Asks a connection's owner to run its output (after the application queued data,
    /// closed, or changed a setting).
    pub fn kick(&self, conn: &Arc<Conn>) {
        if conn.output_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let w = conn.owner.min(self.nworkers - 1);
        self.kicks[w].push(conn.clone());
        self.wake(w);
    }

    /// Kicks waiting for `worker`.
    pub fn pending_kicks(&self, worker: usize) -> usize {
        self.kicks.get(worker).map(|q| q.len()).unwrap_or(0)
    }

    /// `tcp_ctlinput`: an ICMP error about a segment we sent. The connection it names
    /// decides what it means (`Tcb::icmp_error`; "fragmentation needed" goes to path
    /// MTU discovery, `Tcb::icmp_frag_needed`); a connection it ends is released and its
    /// application told, as after any input.
    pub fn ctlinput(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        heap: &mut TimerHeap,
        err: &crate::net::icmp::IcmpError,
    ) {
        let tuple = FourTuple {
            local: err.local,
            remote: err.remote,
        };
        let c = ctx.counters();
        let Some(conn) = self.lookup_here(ctx, &tuple) else {
            Counters::inc(if err.is_frag_needed() {
                &c.tcp_pmtu_bogus
            } else {
                &c.tcp_icmp_ignored
            });
            return;
        };
        let mut inner = conn.lock();
        if err.is_frag_needed() {
            Counters::inc(match inner.tcb.icmp_frag_needed(err.seq, err.mtu) {
                PmtuVerdict::Lowered => &c.tcp_pmtu_lowered,
                PmtuVerdict::Bogus => &c.tcp_pmtu_bogus,
                PmtuVerdict::Ignored => &c.tcp_icmp_ignored,
            });
            self.flush(ifp, ctx, heap, &conn, inner);
            return;
        }
        let dropped = inner.tcb.icmp_error(err);
        Counters::inc(if dropped {
            &ctx.counters().tcp_icmp_dropped
        } else {
            &ctx.counters().tcp_icmp_ignored
        });
        self.flush(ifp, ctx, heap, &conn, inner);
    }

    /// The connection with this tuple, counting it in `tcp.rx_misplaced` when the
    /// calling worker is not its owner (netisr placement and the pcbgroups disagree).
    fn lookup_here(&self, ctx: &impl NetCtx, tuple: &FourTuple) -> Option<Arc<Conn>> {
        let conn = self.pcbs.lookup(tuple)?;
        if conn.owner != ctx.worker() {
            Counters::inc(&ctx.counters().tcp_misplaced);
        }
        Some(conn)
    }

    /// `tcp_input`: a validated IPv4 packet carrying TCP, on the worker that owns it.
    pub fn input(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        heap: &mut TimerHeap,
        ip: &Ipv4In<'_>,
    ) {
        Counters::inc(&ctx.counters().tcp_rx);
        let mut seg = match segment::parse(ip.src, ip.dst, ip.payload, ip.csum) {
            Ok(s) => s,
            Err(e) => {
                let c = ctx.counters();
                Counters::inc(match e {
                    SegmentError::BadChecksum => &c.tcp_bad_checksum,
                    SegmentError::BadOptions => &c.tcp_bad_options,
                    SegmentError::ImpossibleFlags | SegmentError::ZeroPort => &c.tcp_bad_flags,
                    SegmentError::Truncated | SegmentError::BadDataOffset => &c.tcp_malformed,
                });
                return;
            }
        };
        let flags = seg.flags;
        if seg.flags.contains(TcpFlags::SYN | TcpFlags::FIN) {
            // A SYN+FIN: dropped (`drop_synfin`, the default), or handled as the SYN it
            // also is, its FIN ignored (FreeBSD's `drop_synfin=0`).
            if self
                .config
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .drop_synfin
            {
                Counters::inc(&ctx.counters().tcp_bad_flags);
                return;
            }
            seg.flags.remove(TcpFlags::FIN);
        }
        seg.ecn = ip.ecn;
        let now = ctx.now();
        let tuple = FourTuple {
            local: SocketAddrV4::new(ip.dst, seg.dst_port),
            remote: SocketAddrV4::new(ip.src, seg.src_port),
        };
        let mut iss_floor = None;
        if let Some(conn) = self.lookup_here(ctx, &tuple) {
            let mut inner = conn.lock();
            if let Some(floor) = inner.tcb.time_wait_reopen(&seg) {
                // The old incarnation gives way; the SYN goes on to the listener below.
                inner.tcb.enter_closed();
                inner.tcb.hook_closed(now);
                drop(inner);
                self.release(ctx, heap, &conn);
                Counters::inc(&ctx.counters().tcp_tw_reopened);
                iss_floor = Some(floor);
            } else if inner.tcb.time_wait_cookie_reopen(&seg)
                && self.syn_offloaded()
                && self.cookies.check(&tuple, &seg, now).is_some()
            {
                // The handshake of a new incarnation whose SYN the XDP program answered
                // with a cookie: the old one gives way, the listener takes the ACK.
                inner.tcb.enter_closed();
                inner.tcb.hook_closed(now);
                drop(inner);
                self.release(ctx, heap, &conn);
                Counters::inc(&ctx.counters().tcp_tw_reopened);
            } else {
                self.input_conn(ifp, ctx, heap, &conn, inner, ip, &seg, now);
                return;
            }
        }
        // No connection: a listener takes a SYN (RFC 9293 §3.10.7.2, LISTEN).
        if let Some(listener) = self.pcbs.lookup_listener(&tuple) {
            self.input_listen(ifp, ctx, heap, &listener, &tuple, ip, &seg, iss_floor, now);
            return;
        }
        Counters::inc(&ctx.counters().tcp_no_conn);
        // RFC 9293 §3.10.7.1 CLOSED: "An incoming segment not containing a RST causes
        // a RST to be sent in response", acknowledging SEG.LEN (a SYN+FIN's FIN too).
        seg.flags = flags;
        self.send_reset(ifp, ctx, &tuple, &seg, ip.src_mac);
    }

    /// A segment (or an LRO aggregate, `ip.lro_nsegs` of them) for an existing
    /// connection, whose lock the caller holds.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn input_conn(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        heap: &mut TimerHeap,
        conn: &Arc<Conn>,
        mut inner: std::sync::MutexGuard<'_, ConnInner>,
        ip: &Ipv4In<'_>,
        seg: &segment::Segment<'_>,
        now: Instant,
    ) {
        let (before, was_open) = (inner.tcb.stats().ecn, inner.tcb.state().is_synchronized());
        let (outcome, reset_for_seg) = if ip.lro_nsegs > 1 {
            self.input_lro(ifp, ctx, conn, &mut inner, ip.lro_segsz, seg, now)
        } else {
            (inner.tcb.input(seg, now), *seg)
        };
        super::ecn::count_input(ctx.counters(), &before, &inner.tcb, was_open);
        if outcome == InputOutcome::SendReset {
            drop(inner);
            self.send_reset(ifp, ctx, &conn.tuple, &reset_for_seg, ip.src_mac);
            return;
        }
        self.flush(ifp, ctx, heap, conn, inner);
        if outcome == InputOutcome::Established {
            self.hand_to_listener(conn);
        }
    }

    /// An LRO aggregate: the connection takes its segments (of `segsz` bytes) one by
    /// one, as they arrived, and sends what each calls for (an ACK for every second
    /// one), under one lookup and one lock. Returns the outcome and the segment a RST
    /// would answer.
    #[allow(clippy::too_many_arguments)]
    fn input_lro<'a>(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        conn: &Conn,
        inner: &mut ConnInner,
        segsz: u16,
        seg: &segment::Segment<'a>,
        now: Instant,
    ) -> (InputOutcome, segment::Segment<'a>) {
        let mut outcome = InputOutcome::Ok;
        let size = segsz.max(1) as usize;
        let mut pieces = seg.payload.chunks(size).peekable();
        let mut seq = seg.seq;
        while let Some(payload) = pieces.next() {
            let mut piece = *seg;
            piece.seq = seq;
            piece.payload = payload;
            if pieces.peek().is_some() {
                piece.flags.remove(TcpFlags::PSH);
            }
            seq += payload.len() as u32;
            match inner.tcb.input(&piece, now) {
                InputOutcome::Ok => {}
                InputOutcome::Established => outcome = InputOutcome::Established,
                InputOutcome::SendReset => return (InputOutcome::SendReset, piece),
            }
            if pieces.peek().is_some() {
                self.output(ifp, ctx, &conn.tuple, &mut inner.tcb);
            }
        }
        (outcome, *seg)
    }

    /// An established passive connection joins its listener's accept queue.
    pub(super) fn hand_to_listener(&self, conn: &Arc<Conn>) {
        let listener = conn
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(l) = listener.and_then(|w| w.upgrade()) {
            l.embryonic.fetch_sub(1, Ordering::Relaxed);
            if l.closed.load(Ordering::Relaxed) {
                conn.lock().tcb.abort();
                return;
            }
            l.queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(conn.clone());
            l.wake();
        }
    }

    /// Runs output for a connection, reschedules its timers, wakes the application if
    /// readiness changed, and frees it once dead. Consumes the lock guard.
    pub fn flush(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        heap: &mut TimerHeap,
        conn: &Arc<Conn>,
        mut inner: std::sync::MutexGuard<'_, ConnInner>,
    ) {
        self.output(ifp, ctx, &conn.tuple, &mut inner.tcb);
        super::rack::count(ctx.counters(), &mut inner.tcb);
        let dead = inner.tcb.is_dead();
        if dead {
            // The connection is discarded: its helpers' last call, and their data goes.
            inner.tcb.hook_closed(ctx.now());
        } else {
            if let Some(t) = inner.tcb.poll_deadline() {
                if inner.scheduled.is_none_or(|s| t < s) {
                    inner.scheduled = Some(t);
                    let time_wait = inner.tcb.state() == super::State::TimeWait;
                    heap.push(t, conn.id, time_wait);
                    heap.conns.insert(conn.id, conn.clone());
                }
            }
        }
        // The readiness fd is disarmed here, under the lock its `WouldBlock` armed it
        // under (socket/readiness.rs), and written once per step in `deliver_wakes`.
        let wake = if inner.tcb.take_events() {
            Some(Wakeup {
                conn: conn.clone(),
                sinks: inner.live_sinks(),
                fd: inner.readiness.as_ref().filter(|fd| fd.disarm()).cloned(),
            })
        } else {
            None
        };
        drop(inner);
        if dead {
            self.release(ctx, heap, conn);
        }
        if let Some(w) = wake {
            heap.wakes.push(w);
        }
    }

    /// Sends everything a connection has to send, after settling a challenge or
    /// out-of-window ACK it owes against the stack-wide limit (`tcp/ack_limit.rs`).
    fn output(&self, ifp: &Interface, ctx: &mut impl NetCtx, tuple: &FourTuple, tcb: &mut Tcb) {
        let now = ctx.now();
        let c = ctx.counters();
        match tcb.settle_limited_ack(now, || ifp.limits.ack.allow(now)) {
            Settled::ConnLimited => Counters::inc(&c.tcp_ack_conn_limited),
            Settled::StackLimited => Counters::inc(&c.tcp_ack_suppressed),
            Settled::Nothing | Settled::Sent => {}
        }
        while let Some(seg) = tcb.poll_output(now) {
            self.emit(ifp, ctx, tuple, tcb, &seg);
        }
    }

    fn release(&self, ctx: &impl NetCtx, heap: &mut TimerHeap, conn: &Arc<Conn>) {
        heap.conns.remove(&conn.id);
        if self
            .pcbs
            .lookup(&conn.tuple)
            .is_some_and(|c| c.id == conn.id)
        {
            self.pcbs.remove(conn);
            Counters::inc(&ctx.counters().tcp_conns_closed);
        }
        // Died before it was accepted: it no longer counts against the backlog.
        if let Some(l) = conn
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .and_then(|w| w.upgrade())
        {
            l.embryonic.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Runs the timers due at `now` on this worker.
    pub fn run_timers(&self, ifp: &Interface, ctx: &mut impl NetCtx, heap: &mut TimerHeap) {
        let now = ctx.now();
        while let Some((t, id)) = heap.peek() {
            if t > now {
                break;
            }
            heap.pop();
            let Some(conn) = heap.conns.get(&id).cloned() else {
                continue;
            };
            let mut inner = conn.lock();
            if inner.scheduled != Some(t) {
                continue; // stale entry
            }
            inner.scheduled = None;
            heap.conns.remove(&id);
            inner.tcb.handle_timeout(now);
            self.flush(ifp, ctx, heap, &conn, inner);
        }
        self.syncache_timers(ifp, ctx, heap, now);
    }

    /// Runs output for the connections whose application kicked this worker.
    pub fn run_kicks(
        &self,
        worker: usize,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        heap: &mut TimerHeap,
    ) -> usize {
        let Some(q) = self.kicks.get(worker) else {
            return 0;
        };
        let mut n = 0;
        while let Some(conn) = q.pop() {
            conn.output_queued.store(false, Ordering::Release);
            let inner = conn.lock();
            self.flush(ifp, ctx, heap, &conn, inner);
            n += 1;
        }
        n
    }

    /// Sends one segment of a connection through IPv4, leaving the checksum to the
    /// device when it offers to finish it. A TSO segment (`tso_segsz` set) goes to the
    /// device whole when it segments ([`Self::emit_offloaded`]); otherwise it is cut
    /// into MSS pieces here, in software, as a device without TSO support would need
    /// (Linux's GSO, done at the last moment): each piece gets its own sequence number
    /// and IP id; CWR stays on the first piece only and PSH/FIN on the last only
    /// (RFC 3168 §6.1.2 / Linux `tcp_gso_segment`); the payload is copied once,
    /// straight from the send buffer into each frame.
    pub(super) fn emit(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        tuple: &FourTuple,
        tcb: &Tcb,
        seg: &OutSegment,
    ) {
        ctx.tx_hold_hint(tx_hold(tcb, seg));
        if seg.tso_segsz == 0 || seg.payload_len <= seg.tso_segsz as usize {
            self.emit_one(ifp, ctx, tuple, tcb, seg);
        } else if ctx.tso_frame_max() == 0
            || seg.hdr.flags.contains(TcpFlags::CWR)
            || !self.emit_offloaded(ifp, ctx, tuple, tcb, seg)
        {
            Counters::inc(&ctx.counters().tcp_tso_bursts);
            let mss = seg.tso_segsz as usize;
            let mut off = 0;
            while off < seg.payload_len {
                let len = mss.min(seg.payload_len - off);
                let last = off + len == seg.payload_len;
                let mut hdr = seg.hdr;
                hdr.seq = seg.hdr.seq + off as u32;
                if off > 0 {
                    hdr.flags.remove(TcpFlags::CWR);
                }
                if !last {
                    hdr.flags.remove(TcpFlags::FIN | TcpFlags::PSH);
                }
                let piece = OutSegment {
                    hdr,
                    payload_offset: seg.payload_offset + off,
                    payload_len: len,
                    retransmit: seg.retransmit,
                    tso_segsz: 0,
                    ecn: seg.ecn,
                };
                self.emit_one(ifp, ctx, tuple, tcb, &piece);
                Counters::inc(&ctx.counters().tcp_tso_segments);
                off += len;
            }
        }
        ctx.tx_hold_hint(TxHold::Plain);
    }

    /// Hands a TSO segment to a device that segments it (`CSUM_TSO`, see
    /// [`crate::device::gso`]): the wire sees what the loop in [`Self::emit`] would
    /// send, but for the IP ID, which the kernel's GSO counts up from 0. A segment with
    /// CWR stays in software (the kernel wants its ECN flag then). Returns false when
    /// the device did not take it (no room, next hop not resolved): nothing was sent.
    fn emit_offloaded(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        tuple: &FourTuple,
        tcb: &Tcb,
        seg: &OutSegment,
    ) -> bool {
        let hlen = seg.hdr.header_len();
        let (src, dst) = (*tuple.local.ip(), *tuple.remote.ip());
        let r = ipv4::output_tso(
            ifp,
            ctx,
            src,
            dst,
            seg.ecn,
            hlen + seg.payload_len,
            hlen,
            seg.tso_segsz,
            &mut |buf| {
                tcb.copy_payload(seg, &mut buf[hlen..]);
                seg.hdr.emit(src, dst, buf, ChecksumMode::PseudoHeaderOnly);
            },
        );
        if r.is_err() {
            return false;
        }
        let n = seg.payload_len.div_ceil(seg.tso_segsz as usize) as u64;
        let c = ctx.counters();
        Counters::inc(&c.tcp_tso_offloaded);
        Counters::add(&c.tcp_tx, n);
        if seg.retransmit {
            Counters::add(&c.tcp_retransmits, n);
        }
        super::ecn::count_output(c, seg, n);
        true
    }

    /// Sends one wire segment.
    fn emit_one(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        tuple: &FourTuple,
        tcb: &Tcb,
        seg: &OutSegment,
    ) {
        let hlen = seg.hdr.header_len();
        let total = hlen + seg.payload_len;
        let (src, dst) = (*tuple.local.ip(), *tuple.remote.ip());
        // CSUM_TCP: with transmit checksum offload only the pseudo-header sum is
        // written and the device sums the segment (FreeBSD's tcp_output does the same
        // when the interface has IFCAP_TXCSUM).
        let offload = ctx.tx_csum_offload();
        let mode = if offload {
            ChecksumMode::PseudoHeaderOnly
        } else {
            ChecksumMode::Full
        };
        let r = ipv4::output_full(
            ifp,
            ctx,
            src,
            dst,
            IpProtocol::Tcp,
            seg.ecn,
            total,
            offload.then_some(TCP_CSUM_OFFSET),
            &mut |buf| {
                tcb.copy_payload(seg, &mut buf[hlen..]);
                seg.hdr.emit(src, dst, buf, mode);
            },
        );
        let c = ctx.counters();
        Counters::inc(if r.is_ok() { &c.tcp_tx } else { &c.tcp_tx_fail });
        if seg.retransmit {
            Counters::inc(&c.tcp_retransmits);
        }
        super::ecn::count_output(c, seg, 1);
    }

    /// Answers a segment that belongs to no connection (or that a listener or a
    /// connection refuses) with a RST, within the stack-wide RST budget
    /// (`RateLimits::rst_per_sec`, FreeBSD's `badport_bandlim`); `reply_mac` is the
    /// segment's link-layer source (`ipv4::output_answer`).
    pub(super) fn send_reset(
        &self,
        ifp: &Interface,
        ctx: &mut impl NetCtx,
        tuple: &FourTuple,
        seg: &segment::Segment<'_>,
        reply_mac: EthernetAddress,
    ) {
        let Some((seq, ack, flags)) = reset_for(seg) else {
            return;
        };
        if !ifp
            .limits
            .rst
            .allow_or_count(ctx.now(), &ctx.counters().tcp_rst_suppressed)
        {
            return;
        }
        let hdr = SegmentOut {
            src_port: tuple.local.port(),
            dst_port: tuple.remote.port(),
            seq,
            ack,
            flags,
            window: 0,
            options: TcpOptions::default(),
        };
        let (src, dst) = (*tuple.local.ip(), *tuple.remote.ip());
        let len = hdr.header_len();
        let mut fill = |buf: &mut [u8]| hdr.emit(src, dst, buf, ChecksumMode::Full);
        let tcp = IpProtocol::Tcp;
        if ipv4::output_answer(ifp, ctx, src, dst, reply_mac, tcp, len, &mut fill).is_ok() {
            Counters::inc(&ctx.counters().tcp_rst_tx);
        }
    }
}

/// How a segment may wait in the worker's transmit batch: a pure ACK once the peer's FIN
/// is in (CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT) is lazy, since the peer has nothing
/// left to send and only stops retransmitting its FIN on it; anything else of a
/// connection with an RTT sample may wait a sixteenth of it under dense input; before a
/// sample (a SYN,ACK) nothing.
fn tx_hold(tcb: &Tcb, seg: &OutSegment) -> TxHold {
    let pure_ack = seg.payload_len == 0
        && !seg
            .hdr
            .flags
            .intersects(TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST | TcpFlags::PSH);
    let fin_in = matches!(
        tcb.state(),
        State::CloseWait | State::Closing | State::LastAck | State::TimeWait
    );
    if pure_ack && fin_in {
        return TxHold::Lazy;
    }
    tcb.rtt
        .srtt()
        .map_or(TxHold::Plain, |srtt| TxHold::Dense(srtt / 16))
}

#[cfg(test)]
mod timer_heap_tests {
    use super::TimerHeap;
    use std::time::{Duration, Instant};

    /// Entries come out in deadline order whichever structure holds them: TIME-WAIT ones
    /// out of order near the back of their queue, one too far back for the queue (which
    /// goes to the heap), and ordinary ones in the heap.
    #[test]
    fn deadlines_come_out_in_order_from_heap_and_time_wait_queue() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut h = TimerHeap::default();
        let mut want = Vec::new();
        for i in 0..100u64 {
            let t = 60_000 + i * 10 - if i % 7 == 0 { 15 } else { 0 };
            h.push(at(t), i, true);
            want.push((t, i));
        }
        assert!(h.heap.is_empty(), "all fit near the back of the queue");
        // Far earlier than 32 entries from the back: the heap takes it.
        h.push(at(100), 1000, true);
        want.push((100, 1000));
        assert_eq!(h.heap.len(), 1);
        for (i, t) in [(2000u64, 5u64), (2001, 60_005), (2002, 90_000)] {
            h.push(at(t), i, false);
            want.push((t, i));
        }
        want.sort();
        assert_eq!(h.next(), Some(at(5)));
        let mut got = Vec::new();
        while let Some((t, id)) = h.peek() {
            h.pop();
            got.push(((t - t0).as_millis() as u64, id));
        }
        let times = |v: &[(u64, u64)]| v.iter().map(|e| e.0).collect::<Vec<_>>();
        assert_eq!(times(&got), times(&want));
        let mut ids: Vec<u64> = got.iter().map(|e| e.1).collect();
        ids.sort();
        let mut want_ids: Vec<u64> = want.iter().map(|e| e.1).collect();
        want_ids.sort();
        assert_eq!(ids, want_ids);
        assert!(h.time_wait.is_empty() && h.heap.is_empty());
    }
}

#[cfg(test)]
mod tx_hold_tests {
    use super::*;
    use crate::tcp::seq::Seq;
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::time::Duration;

    fn segment(flags: TcpFlags, payload_len: usize) -> OutSegment {
        OutSegment {
            hdr: segment::SegmentOut {
                flags,
                ..Default::default()
            },
            payload_offset: 0,
            payload_len,
            retransmit: false,
            tso_segsz: 0,
            ecn: Default::default(),
        }
    }

    #[test]
    fn only_the_ack_of_a_peers_fin_is_lazy() {
        let mut tcb = Tcb::connect(
            TcpConfig::default(),
            SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 80),
            SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 40000),
            Seq(1),
            xstack_cc::Registry::with_builtins().create_default(),
            Instant::now(),
        );
        let ack = segment(TcpFlags::ACK, 0);
        let data = segment(TcpFlags::ACK | TcpFlags::PSH, 100);
        let fin = segment(TcpFlags::ACK | TcpFlags::FIN, 0);
        // Before an RTT sample (a SYN, a SYN,ACK): nothing.
        assert_eq!(tx_hold(&tcb, &ack), TxHold::Plain);
        tcb.rtt.sample(Duration::from_micros(800));
        tcb.state = State::Established;
        assert_eq!(
            tx_hold(&tcb, &data),
            TxHold::Dense(Duration::from_micros(50))
        );
        assert_eq!(
            tx_hold(&tcb, &ack),
            TxHold::Dense(Duration::from_micros(50))
        );
        // FIN-WAIT-2 still expects the peer's data: its ACKs are not lazy.
        tcb.state = State::FinWait2;
        assert_eq!(
            tx_hold(&tcb, &ack),
            TxHold::Dense(Duration::from_micros(50))
        );
        for state in [
            State::CloseWait,
            State::Closing,
            State::LastAck,
            State::TimeWait,
        ] {
            tcb.state = state;
            assert_eq!(tx_hold(&tcb, &ack), TxHold::Lazy, "{state:?}");
            // Our own data or FIN is waited on.
            assert_ne!(tx_hold(&tcb, &data), TxHold::Lazy, "{state:?}");
            assert_ne!(tx_hold(&tcb, &fin), TxHold::Lazy, "{state:?}");
        }
    }
}
