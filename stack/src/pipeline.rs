//! The one data path: how the layers of a stack are wired together, and what a worker
//! does with each batch of frames. [`crate::Stack`] runs it over AF_XDP sockets on
//! pinned threads ([`crate::worker`]); the simulator (`crate::sim`) runs the very same
//! code over in-memory links on a virtual clock, stepping every worker in one thread.
//!
//! One iteration of a worker ([`WorkerCore::step`]):
//!
//! 1. **receive**: up to [`RX_BATCH`] frames off the link;
//! 2. **classify** each by ethertype ([`ether::classify`]);
//! 3. **LRO** (when on): in-order TCP segments of a flow are coalesced
//!    ([`crate::net::lro`]);
//! 4. **netisr**: ARP is dispatched where it arrived (SOURCE), IPv4 to the worker owning
//!    its flow (FLOW): handled at once if that is this worker, else queued there;
//! 5. **drain** this worker's netisr queues (packets other workers handed over);
//! 6. **kicks**: output of connections whose application wrote, read or closed;
//! 7. **timers** of this worker's connections that are due;
//! 8. **ARP** (worker 0): the start-up announcement and the cache's retries/expiry;
//! 9. **flush** the transmit queue to the link, then wake the application threads whose
//!    sockets changed readiness.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::device::xsk::TxError;
use crate::link::{LinkRx, LinkTx};
use crate::net::ether::{self, EtherProto};
use crate::net::ipv4::ToTcp;
use crate::net::lro::LroBatch;
use crate::net::{arp, Interface, NetCtx, TxHold};
use crate::netisr::{Netisr, NetisrError, Policy, ProtoSpec, NETISR_ARP, NETISR_IP};
use crate::rss::Toeplitz;
use crate::stats::Counters;
use crate::tcp::isn::IsnGenerator;
use crate::tcp::layer::{TcpLayer, TimerHeap, WorkerWaker};
use crate::tcp::TcpConfig;

/// Frames taken off the link per iteration.
pub(crate) const RX_BATCH: u32 = 64;
/// Packets handled from the netisr queues per iteration.
const NETISR_BUDGET: usize = 256;
/// Transmit coalescing ([`WorkerCore::tx_coalesce`]): frames a worker may hold back
/// while input keeps arriving.
const TX_COALESCE_FRAMES: usize = 32;
/// Input counts as dense (see [`tx_may_wait`]) while the mean gap between received
/// frames is at most this: 40,000 frames a second or more.
const TX_DENSE_GAP: Duration = Duration::from_micros(25);
/// The longest a flush waits for dense input.
const TX_DENSE_MAX: Duration = Duration::from_micros(50);
/// The longest lazy frames ([`TxHold::Lazy`]) wait for company when they are all a
/// batch holds.
const TX_LAZY_MAX: Duration = Duration::from_millis(1);
/// Gaps longer than this count as this much in the mean (one idle second must not take
/// a thousand turns to forget).
const TX_GAP_CLAMP: Duration = Duration::from_millis(1);

/// What [`tx_may_wait`] knows of the frames a worker has queued.
#[derive(Clone, Copy, Debug)]
struct TxBatch {
    /// Frames queued.
    queued: usize,
    /// Those that are not pure ACKs (data, SYN, FIN, RST).
    urgent: usize,
    /// Those that are [`TxHold::Lazy`].
    lazy: usize,
    /// How long the batch has been held already.
    held_for: Duration,
    /// The smallest [`TxHold::Dense`] allowance among them (zero if one is
    /// [`TxHold::Plain`]).
    hold_limit: Duration,
}

/// [`WorkerCore::hold_tx`]'s rule: a flush may wait (switched off by a zero `window`)
/// while fewer than [`TX_COALESCE_FRAMES`] are queued, and either
/// - the oldest has waited under `window` and this turn received frames or every queued
///   frame is a pure ACK (`urgent` counts the others), which nobody waits on long: an
///   ACK of data the application has not answered yet, which then leaves with the next
///   turn's frames; or
/// - input is dense (`rx_gap`, the mean gap between received frames, is at most
///   [`TX_DENSE_GAP`]) and the oldest has waited under twice that gap, under
///   [`TX_DENSE_MAX`] and under `hold_limit` (for TCP a sixteenth of the connections'
///   smoothed RTTs): the next frame in will most likely come, and its answer go out
///   with these, before then. This makes one batch of the answers to many connections
///   whose requests arrive one at a time: each `sendto` costs the worker a system call
///   and, on veth, the peer's CPU an inter-processor interrupt. A lone request/response
///   exchange is rarely dense (its next request waits for this answer); when it is,
///   like a few clients each waiting on its answer, its round trip is short and it
///   loses at most a sixteenth of it. A SYN,ACK (no RTT yet) is never held this way.
///   Linux's dynamic interrupt moderation (`lib/dim`) adapts a NIC's coalescing to the
///   packet rate in the same spirit; or
/// - every queued frame is lazy (the ACK of a peer's FIN: the peer only stops
///   retransmitting its FIN on it) and has waited under [`TX_LAZY_MAX`]. Lazy frames
///   otherwise change nothing: they ride with whatever goes next. With one connection
///   per request the last ACK of each connection then shares the next connection's
///   `sendto` instead of costing one, and an interrupt on the client's CPU, of its own.
fn tx_may_wait(window: Duration, received: usize, b: TxBatch, rx_gap: Duration) -> bool {
    if window.is_zero() || b.queued == 0 || b.queued >= TX_COALESCE_FRAMES {
        return false;
    }
    if b.lazy == b.queued {
        return b.held_for < TX_LAZY_MAX;
    }
    let dense_wait = if rx_gap <= TX_DENSE_GAP {
        (rx_gap * 2).min(TX_DENSE_MAX).min(b.hold_limit)
    } else {
        Duration::ZERO
    };
    ((received > 0 || b.urgent == 0) && b.held_for < window) || b.held_for < dense_wait
}

/// Period of the interface timers (ARP) on worker 0.
pub(crate) const TIMER_TICK: Duration = Duration::from_millis(100);

/// The per-worker context handed to protocol handlers: the clock, the worker's
/// counters, its transmit half and its connections' deadlines.
pub struct WorkerCtx<T> {
    /// This worker's index (= its queue).
    pub id: usize,
    /// Time of the current iteration (from the driver: system or virtual clock).
    pub now: Instant,
    /// This worker's counters.
    pub counters: Arc<Counters>,
    /// The transmit half of this worker's link.
    pub(crate) tx: T,
    /// Deadlines of the TCP connections this worker owns.
    pub heap: TimerHeap,
    /// The hint for frames queued now ([`NetCtx::tx_hold_hint`]).
    hold_hint: TxHold,
    /// The longest the queued frames may wait for dense input: the smallest
    /// [`TxHold::Dense`] among them (zero for a [`TxHold::Plain`] frame; lazy frames do
    /// not count; `Duration::MAX` with nothing queued).
    hold_limit: Duration,
    /// Queued frames that are [`TxHold::Lazy`].
    lazy_queued: usize,
    /// `tx.queued()` after the last frame was counted: a link that sends on its own
    /// (a full batch, a full ring) leaves fewer, and the two figures above are redone.
    queued_seen: usize,
}

impl<T: LinkTx> WorkerCtx<T> {
    pub(crate) fn new(id: usize, counters: Arc<Counters>, tx: T, now: Instant) -> Self {
        WorkerCtx {
            id,
            now,
            counters,
            tx,
            heap: TimerHeap::default(),
            hold_hint: TxHold::Plain,
            hold_limit: Duration::MAX,
            lazy_queued: 0,
            queued_seen: 0,
        }
    }

    /// Folds the frame just queued into what the batch may wait for ([`TxHold`]). When
    /// the link sent frames on its own meanwhile, the batch is what is left: nothing,
    /// just this frame, or (the ring took part of a batch) frames of unknown kinds, which
    /// then may not wait beyond the plain rules.
    fn note_queued(&mut self) {
        let queued = self.tx.queued();
        if queued != self.queued_seen + 1 {
            self.lazy_queued = 0;
            self.hold_limit = if queued <= 1 {
                Duration::MAX
            } else {
                Duration::ZERO
            };
        }
        self.queued_seen = queued;
        if queued == 0 {
            return;
        }
        match self.hold_hint {
            TxHold::Plain => self.hold_limit = Duration::ZERO,
            TxHold::Dense(d) => self.hold_limit = self.hold_limit.min(d),
            TxHold::Lazy => self.lazy_queued += 1,
        }
    }

    /// Counts what became of one frame handed to the transmit queue.
    fn account(&mut self, r: Result<(), TxError>) -> bool {
        let c = &self.counters;
        match r {
            Ok(()) => {
                Counters::inc(&c.tx_frames);
                self.note_queued();
            }
            Err(TxError::NoRoom) => Counters::inc(&c.tx_drop_no_room),
            Err(TxError::TooBig) => Counters::inc(&c.tx_drop_too_big),
        }
        r.is_ok()
    }
}

impl<T: LinkTx> NetCtx for WorkerCtx<T> {
    fn now(&self) -> Instant {
        self.now
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn worker(&self) -> usize {
        self.id
    }

    fn tx_hold_hint(&mut self, hint: TxHold) {
        self.hold_hint = hint;
    }

    fn transmit(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        let r = self.tx.send(len, fill);
        self.account(r)
    }

    fn tx_csum_offload(&self) -> bool {
        self.tx.tx_csum()
    }

    fn tso_frame_max(&self) -> usize {
        self.tx.tso_frame_max()
    }

    fn transmit_tso(
        &mut self,
        len: usize,
        params: crate::device::gso::GsoParams,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        let r = self.tx.send_tso(len, params, fill);
        let sent = self.account(r);
        if sent {
            let c = &self.counters;
            Counters::inc(&c.tx_gso_frames);
            Counters::add(&c.tx_gso_segments, params.segments(len) as u64);
        }
        sent
    }

    fn transmit_partial(
        &mut self,
        len: usize,
        csum_start: u16,
        csum_offset: u16,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        let offloaded = self.tx.tx_csum();
        let r = self.tx.send_partial(len, csum_start, csum_offset, fill);
        let sent = self.account(r);
        if sent {
            Counters::inc(if offloaded {
                &self.counters.tx_csum_offloaded
            } else {
                &self.counters.tx_csum_software
            });
        }
        sent
    }
}

/// What the layers are built from.
pub(crate) struct LayerSpec {
    /// The interface: link address, MTU, addresses, gateway, ARP cache.
    pub ifp: Interface,
    /// Workers (= receive queues).
    pub nworkers: usize,
    /// Settings for new connections.
    pub tcp: TcpConfig,
    /// The default congestion-control module; the registry's default when `None`.
    pub default_cc: Option<String>,
    /// netisr queue limit per protocol and worker.
    pub qlimit: usize,
    /// Where the protocol code's time comes from.
    pub clock: Clock,
    /// ISN generator (a keyed one makes a simulation reproducible); a random key when
    /// `None`.
    pub isn: Option<IsnGenerator>,
    /// Secret of the ephemeral port choice (a fixed one makes a simulation
    /// reproducible); a random one when `None`.
    pub port_key: Option<[u8; 16]>,
}

/// Why the layers could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The default congestion-control module is not registered.
    #[error(transparent)]
    Cc(#[from] xstack_cc::CcError),
    /// A netisr registration failed.
    #[error("netisr: {0}")]
    Netisr(#[from] NetisrError),
}

/// The protocol layers of one stack, shared by its workers: the interface, the TCP
/// layer (pcbgroups, placement) and netisr with ARP and IPv4 registered.
pub(crate) struct Layers<T> {
    pub ifp: Arc<Interface>,
    pub tcp: Arc<TcpLayer>,
    pub netisr: Arc<Netisr<WorkerCtx<T>>>,
}

impl<T> Clone for Layers<T> {
    fn clone(&self) -> Self {
        Layers {
            ifp: self.ifp.clone(),
            tcp: self.tcp.clone(),
            netisr: self.netisr.clone(),
        }
    }
}

impl<T: LinkTx + 'static> Layers<T> {
    /// Builds and wires the layers: the TCP layer with its pcbgroups, netisr with FLOW
    /// placement by the RSS indirection table (a flow is processed on the queue an RSS
    /// device puts it on), per-group flow accounting, the TCP layer's wakers (a kick
    /// wakes the owner through netisr), and the ARP and IPv4 protocols.
    pub(crate) fn build(spec: LayerSpec) -> Result<Self, LayerError> {
        let nworkers = spec.nworkers.max(1);
        let mut tcp = TcpLayer::new(nworkers, spec.tcp);
        tcp.clock = spec.clock;
        if let Some(isn) = spec.isn {
            tcp.isn = isn;
        }
        if let Some(key) = spec.port_key {
            tcp.pcbs.set_port_key(key);
        }
        if let Some(name) = &spec.default_cc {
            tcp.cc.set_default(name)?;
        }
        let tcp = Arc::new(tcp);
        let ifp = Arc::new(spec.ifp);
        let mut netisr = Netisr::new(nworkers);
        netisr.set_flow2cpu(Box::new(move |h| Toeplitz::queue_of(h, nworkers)));
        let t = tcp.clone();
        netisr.set_flow_observer(Box::new(move |h, ev| t.pcbs.note_flow(h, ev)));
        let netisr = Arc::new(netisr);
        // Weak: netisr's handlers hold the TCP layer, so a strong handle back would be a
        // cycle and a stopped stack would never be freed.
        tcp.set_wakers(
            (0..nworkers)
                .map(|w| {
                    let n = Arc::downgrade(&netisr);
                    Arc::new(move || {
                        if let Some(n) = n.upgrade() {
                            n.notify(w)
                        }
                    }) as WorkerWaker
                })
                .collect(),
        );
        let layers = Layers { ifp, tcp, netisr };
        layers.register_protocols(spec.qlimit)?;
        Ok(layers)
    }

    /// Registers this stack's protocols with netisr: ARP where it arrives (SOURCE: no
    /// flow to keep together), IPv4 by flow (FLOW: a flow's packets are processed on
    /// one worker, which is where its connection state lives).
    fn register_protocols(&self, qlimit: usize) -> Result<(), NetisrError> {
        let i = self.ifp.clone();
        self.netisr.register(ProtoSpec {
            proto: NETISR_ARP,
            name: "arp",
            handler: Box::new(move |ctx, pkt| arp::input(&i, ctx, pkt)),
            policy: Policy::Source,
            qlimit,
            m2flow: None,
            m2cpuid: None,
        })?;
        let (i, t) = (self.ifp.clone(), self.tcp.clone());
        let rss = self.tcp.rss.clone();
        self.netisr.register(ProtoSpec {
            proto: NETISR_IP,
            name: "ip",
            handler: Box::new(move |ctx: &mut WorkerCtx<T>, pkt| {
                crate::net::ipv4::input_with(&i, ctx, pkt, |ctx: &mut WorkerCtx<T>, to| {
                    let mut heap = std::mem::take(&mut ctx.heap);
                    match to {
                        ToTcp::Segment(ip) => t.input(&i, ctx, &mut heap, ip),
                        ToTcp::Error(e) => t.ctlinput(&i, ctx, &mut heap, &e),
                    }
                    ctx.heap = heap;
                })
            }),
            policy: Policy::Flow,
            qlimit,
            m2flow: Some(Box::new(move |pkt| {
                crate::rss::ip_flow_hash(&rss, pkt.data)
            })),
            m2cpuid: None,
        })
    }
}

/// What one [`WorkerCore::step`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StepReport {
    /// Frames taken off the link.
    pub received: usize,
    /// Packets handled from this worker's netisr queues.
    pub drained: usize,
    /// Connections whose output ran because their application kicked them.
    pub kicked: usize,
    /// Connections with a thread waiting on them that were woken.
    pub woken: usize,
    /// An application task said it has more to do (`crate::task`).
    pub tasks_busy: bool,
}

impl StepReport {
    /// True when the step found work (so another may find more right away).
    pub fn busy(&self) -> bool {
        self.received > 0 || self.drained > 0 || self.kicked > 0 || self.tasks_busy
    }
}

/// A worker's data path over any link: everything but its thread, its idle policy and
/// its clock, which the driver supplies.
pub(crate) struct WorkerCore<R, T> {
    pub id: usize,
    pub rx: R,
    pub ctx: WorkerCtx<T>,
    pub layers: Layers<T>,
    /// Coalesce TCP segments before input ([`crate::net::lro`]).
    pub lro: bool,
    lro_buf: Vec<u8>,
    /// The worker's own handle on its counters, so a batch can count while `ctx` is
    /// lent to netisr.
    counters: Arc<Counters>,
    announced: bool,
    next_tick: Instant,
    /// Worker 0's: when to give freed buffer memory back.
    trimmer: crate::tcp::memtrim::Trimmer,
    /// The application's tasks on this worker (`crate::task`).
    pub tasks: crate::task::Tasks,
    /// How long the transmit flush may be held back while input keeps arriving (see
    /// [`WorkerCore::hold_tx`]; zero: never): on AF_XDP each flush is a `sendto`.
    pub tx_coalesce: Duration,
    /// Since when frames have been held back (None: nothing held).
    tx_held_since: Option<Instant>,
    /// The mean gap between received frames (an exponentially weighted moving average,
    /// 1/8 per turn with input; [`tx_may_wait`]'s `rx_gap`), and when the last came.
    rx_gap: Duration,
    last_rx: Option<Instant>,
}

impl<R: LinkRx, T: LinkTx> WorkerCore<R, T> {
    /// Worker `id` of `layers`, receiving from `rx` and sending through `tx`.
    pub(crate) fn new(
        id: usize,
        layers: Layers<T>,
        rx: R,
        tx: T,
        counters: Arc<Counters>,
        lro: bool,
        now: Instant,
    ) -> Self {
        WorkerCore {
            id,
            rx,
            ctx: WorkerCtx::new(id, counters.clone(), tx, now),
            counters,
            layers,
            lro,
            lro_buf: Vec::with_capacity(65_536 + ether::HEADER_LEN),
            announced: false,
            next_tick: now,
            trimmer: Default::default(),
            tasks: Default::default(),
            tx_coalesce: Duration::ZERO,
            tx_held_since: None,
            rx_gap: TX_GAP_CLAMP,
            last_rx: None,
        }
    }

    /// One iteration at time `now` (see the module docs). `running` says the stack is
    /// up (worker 0 announces its addresses once it is).
    pub(crate) fn step(&mut self, now: Instant, running: bool) -> StepReport {
        self.ctx.now = now;
        let received = self.receive();
        if received > 0 {
            self.note_rx(now, received);
        }
        let drained = self
            .layers
            .netisr
            .drain(self.id, &mut self.ctx, NETISR_BUDGET);
        let (ifp, tcp) = (&self.layers.ifp, &self.layers.tcp);
        let mut heap = std::mem::take(&mut self.ctx.heap);
        let kicked = tcp.run_kicks(self.id, ifp, &mut self.ctx, &mut heap);
        if heap.next().is_some_and(|t| t <= now) {
            tcp.run_timers(ifp, &mut self.ctx, &mut heap);
        }
        // The application's tasks, after the input they answer and before the flush:
        // what they write goes out in this turn (their kicks run right away).
        let mut tasks_busy = false;
        let mut woken = 0;
        if let Some(inbox) = tcp.tasks.get(self.id) {
            if self.tasks.active() || inbox.pending() {
                // Readiness from this turn's input first: the tasks answer it now.
                woken = heap.deliver_wakes();
                tasks_busy = self.tasks.run(inbox, now, self.id);
                tcp.run_kicks(self.id, ifp, &mut self.ctx, &mut heap);
            }
        }
        self.ctx.heap = heap;
        // Worker 0 owns the interface-wide timers (ARP retries and expiry) and the
        // start-up announcement.
        if self.id == 0 && running {
            if !self.announced {
                arp::announce(ifp, &mut self.ctx);
                self.announced = true;
            }
            if now >= self.next_tick {
                arp::timer(ifp, &mut self.ctx);
                self.trim_memory(now);
                self.next_tick = now + TIMER_TICK;
            }
        }
        if self.ctx.tx.outstanding() > 0 && !self.hold_tx(received, now) {
            self.flush_tx();
        }
        woken += self.ctx.heap.deliver_wakes();
        StepReport {
            received,
            drained,
            kicked,
            woken,
            tasks_busy,
        }
    }

    /// Whether this turn's transmit flush may wait for the next turn: only while frames
    /// keep arriving (this turn received some: the next turn comes at once and will
    /// likely add replies), fewer than [`TX_COALESCE_FRAMES`] are queued, and the
    /// oldest has waited under [`WorkerCore::tx_coalesce`]. A turn that receives nothing
    /// flushes, so a lone request/response exchange is never delayed; under load, one
    /// `sendto` (and, on veth, one softirq and inter-processor interrupt to the peer's
    /// CPU) carries several turns' frames -- Linux's NAPI flushes GRO and xmit_more
    /// batches at the end of a poll the same way.
    fn hold_tx(&mut self, received: usize, now: Instant) -> bool {
        let held_for = self
            .tx_held_since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let ctx = &self.ctx;
        let batch = TxBatch {
            queued: ctx.tx.queued(),
            urgent: ctx.tx.queued_urgent(),
            lazy: ctx.lazy_queued,
            held_for,
            hold_limit: ctx.hold_limit,
        };
        let wait = tx_may_wait(self.tx_coalesce, received, batch, self.rx_gap);
        if wait {
            self.tx_held_since.get_or_insert(now);
        }
        wait
    }

    /// Folds `n` frames received at `now` into the mean gap between frames.
    fn note_rx(&mut self, now: Instant, n: usize) {
        if let Some(last) = self.last_rx {
            let gap = now.saturating_duration_since(last).min(TX_GAP_CLAMP) / n as u32;
            self.rx_gap = if gap >= self.rx_gap {
                self.rx_gap + (gap - self.rx_gap) / 8
            } else {
                self.rx_gap - (self.rx_gap - gap) / 8
            };
        }
        self.last_rx = Some(now);
    }

    /// Worker 0's memory housekeeping (see `tcp::memtrim`).
    fn trim_memory(&mut self, now: Instant) {
        let tcp = &self.layers.tcp;
        let (after, bounds) = {
            let cfg = tcp.config.read().unwrap_or_else(|e| e.into_inner());
            (cfg.memory_trim_after, cfg.bounds.clone())
        };
        if self.trimmer.tick(now, after) {
            bounds.count(|c| &c.memory_trims);
        }
    }

    /// Takes a batch off the link, classifies it and hands it to netisr (through LRO
    /// when on); returns the number of frames.
    fn receive(&mut self) -> usize {
        let n = self.rx.receive(RX_BATCH);
        if n == 0 {
            return 0;
        }
        let (id, rx, ctx) = (self.id, &self.rx, &mut self.ctx);
        let (ifp, netisr) = (&*self.layers.ifp, &*self.layers.netisr);
        let counters = &*self.counters;
        let mut lro = LroBatch::new(&mut self.lro_buf);
        for i in 0..n {
            let Some(pkt) = rx.frame(i) else {
                Counters::inc(&counters.ether_truncated);
                continue;
            };
            Counters::inc(&counters.rx_frames);
            match ether::classify(ifp, ctx, pkt.data) {
                Some(EtherProto::Arp) => {
                    netisr.dispatch(id, ctx, NETISR_ARP, pkt);
                }
                Some(EtherProto::Ipv4) => {
                    let kept = self.lro
                        && lro.offer(pkt.data, pkt.meta, counters, &mut |p| {
                            netisr.dispatch(id, ctx, NETISR_IP, p);
                        });
                    if !kept {
                        netisr.dispatch(id, ctx, NETISR_IP, pkt);
                    }
                }
                None => {}
            }
        }
        lro.flush(counters, &mut |p| {
            netisr.dispatch(id, ctx, NETISR_IP, p);
        });
        self.rx.release();
        n
    }

    /// Tells the link the worker found nothing to do (busy polling).
    pub(crate) fn rx_idle(&mut self) {
        self.rx.idle();
    }

    /// Before a worker sleeps: sends what [`WorkerCore::hold_tx`] held back, which no
    /// later turn would send before the worker wakes.
    pub(crate) fn flush_held(&mut self) {
        if self.ctx.tx.outstanding() > 0 {
            self.flush_tx();
        }
    }

    /// Hands everything queued for transmission to the link, held frames included.
    pub(crate) fn flush_tx(&mut self) {
        self.ctx.tx.flush();
        self.tx_held_since = None;
        self.ctx.hold_limit = Duration::MAX;
        self.ctx.lazy_queued = 0;
        self.ctx.queued_seen = 0;
    }

    /// True when this worker has work it can do right now: queued handoffs or kicks.
    /// (Frames on the link are the driver's to know about.)
    pub(crate) fn has_pending(&self) -> bool {
        self.layers.netisr.pending(self.id) > 0
            || self.layers.tcp.pending_kicks(self.id) > 0
            || self
                .layers
                .tcp
                .tasks
                .get(self.id)
                .is_some_and(|t| t.pending())
    }

    /// The earliest deadline of the worker's own: its connections' timers and its
    /// tasks' wake-ups.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        [self.ctx.heap.next(), self.tasks.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    #[cfg(any(test, feature = "sim"))]
    /// The earliest time a step has something to do without new input: the next
    /// connection deadline and, on worker 0 with ARP work outstanding, the next
    /// interface tick that will do it.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let arp = if self.id == 0 {
            self.layers
                .ifp
                .arp
                .next_deadline()
                .map(|t| t.max(self.next_tick))
        } else {
            None
        };
        [self.next_wake(), arp].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link that sends every third frame's batch on its own, as `XskTx` does at a
    /// full batch or ring.
    #[derive(Default)]
    struct SelfFlushing {
        queued: usize,
    }

    impl LinkTx for SelfFlushing {
        fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> Result<(), TxError> {
            fill(&mut vec![0; len]);
            self.queued = (self.queued + 1) % 3;
            Ok(())
        }
        fn send_partial(
            &mut self,
            len: usize,
            _: u16,
            _: u16,
            fill: &mut dyn FnMut(&mut [u8]),
        ) -> Result<(), TxError> {
            self.send(len, fill)
        }
        fn tx_csum(&self) -> bool {
            false
        }
        fn outstanding(&self) -> usize {
            self.queued
        }
        fn flush(&mut self) {
            self.queued = 0;
        }
    }

    #[test]
    fn frames_the_link_sent_on_its_own_no_longer_count() {
        let mut ctx = WorkerCtx::new(
            0,
            Arc::new(Counters::default()),
            SelfFlushing::default(),
            Instant::now(),
        );
        let us = Duration::from_micros;
        let send = |ctx: &mut WorkerCtx<SelfFlushing>, hint| {
            ctx.tx_hold_hint(hint);
            assert!(ctx.transmit(60, &mut |_| {}));
        };
        send(&mut ctx, TxHold::Lazy);
        send(&mut ctx, TxHold::Lazy);
        assert_eq!((ctx.lazy_queued, ctx.hold_limit), (2, Duration::MAX));
        // The third frame makes the link send all three.
        send(&mut ctx, TxHold::Dense(us(7)));
        assert_eq!(ctx.tx.queued(), 0);
        // Two data frames after it: not "all lazy", and only their own limit counts.
        send(&mut ctx, TxHold::Dense(us(9)));
        send(&mut ctx, TxHold::Dense(us(8)));
        assert_eq!(ctx.tx.queued(), 2);
        assert_eq!((ctx.lazy_queued, ctx.hold_limit), (0, us(8)));
    }

    #[test]
    fn transmit_waits_only_while_input_keeps_coming() {
        let w = Duration::from_micros(10);
        let us = Duration::from_micros;
        let sparse = TX_GAP_CLAMP;
        // `queued` frames, `urgent` of them not pure ACKs, held `held` already, each
        // allowed to wait for dense input without bound.
        let b = |queued, urgent, held| TxBatch {
            queued,
            urgent,
            lazy: 0,
            held_for: held,
            hold_limit: Duration::MAX,
        };
        // Input this turn, a few replies queued, held briefly: wait for the next turn.
        assert!(tx_may_wait(w, 3, b(2, 2, us(0)), sparse));
        assert!(tx_may_wait(
            w,
            1,
            b(TX_COALESCE_FRAMES - 1, 1, us(9)),
            sparse
        ));
        // A turn with no input flushes (a lone request/response is never delayed)...
        assert!(!tx_may_wait(w, 0, b(2, 1, us(0)), sparse));
        assert!(!tx_may_wait(w, 0, b(2, 1, us(0)), us(26)));
        // ...unless all it holds is pure ACKs, which wait for company within the window.
        assert!(tx_may_wait(w, 0, b(2, 0, us(3)), sparse));
        assert!(!tx_may_wait(w, 0, b(2, 0, us(10)), sparse));
        // ...or input is dense: then up to twice the mean gap, at most TX_DENSE_MAX.
        assert!(tx_may_wait(w, 0, b(2, 1, us(19)), us(10)));
        assert!(!tx_may_wait(w, 0, b(2, 1, us(20)), us(10)));
        assert!(tx_may_wait(w, 0, b(2, 1, us(49)), us(25)));
        assert!(!tx_may_wait(w, 0, b(2, 1, us(50)), us(25)));
        // ...and within the queued frames' own limit (a plain frame: no such wait).
        let limited = |held, limit| TxBatch {
            hold_limit: limit,
            ..b(2, 1, held)
        };
        assert!(tx_may_wait(w, 0, limited(us(4), us(5)), us(10)));
        assert!(!tx_may_wait(w, 0, limited(us(5), us(5)), us(10)));
        assert!(!tx_may_wait(w, 0, limited(us(0), Duration::ZERO), us(10)));
        // Only lazy frames (ACKs of FINs): they wait for company up to TX_LAZY_MAX,
        // dense input or not; beside others they change nothing.
        let lazy = |queued, lazy, urgent, held| TxBatch {
            lazy,
            ..b(queued, urgent, held)
        };
        assert!(tx_may_wait(w, 0, lazy(1, 1, 0, us(999)), sparse));
        assert!(!tx_may_wait(w, 0, lazy(1, 1, 0, us(1000)), sparse));
        assert!(!tx_may_wait(w, 0, lazy(2, 1, 1, us(0)), sparse));
        assert!(tx_may_wait(w, 3, lazy(2, 1, 1, us(0)), sparse));
        assert!(!tx_may_wait(w, 0, lazy(2, 1, 0, us(10)), sparse));
        // Nothing queued: nothing to hold.
        assert!(!tx_may_wait(w, 3, b(0, 0, us(0)), us(5)));
        assert!(!tx_may_wait(w, 0, b(0, 0, us(0)), us(5)));
        // A full batch, or held for the whole window: flush.
        assert!(!tx_may_wait(w, 3, b(TX_COALESCE_FRAMES, 1, us(0)), us(5)));
        assert!(!tx_may_wait(w, 3, b(2, 1, us(10)), sparse));
        // Switched off.
        assert!(!tx_may_wait(Duration::ZERO, 3, b(2, 1, us(0)), us(5)));
        assert!(!tx_may_wait(Duration::ZERO, 0, b(2, 0, us(0)), us(5)));
        assert!(!tx_may_wait(Duration::ZERO, 0, lazy(1, 1, 0, us(0)), us(5)));
    }
}
