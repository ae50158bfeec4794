//! netisr: the dispatch service between the driver and the protocols, after FreeBSD's
//! netisr(9) (sys/net/netisr.c).
//!
//! # What netisr is here
//!
//! Each worker thread owns one AF_XDP queue and is pinned to one CPU; for netisr it is a
//! *workstream* (FreeBSD has one per CPU), numbered `0..nworkers`. Protocols register a
//! handler under a number ([`NETISR_IP`], [`NETISR_ARP`], [`NETISR_ETHER`], as in FreeBSD)
//! with a work-placement policy and a queue limit. Worker `w`'s input path calls
//! [`Netisr::dispatch`]`(w, ctx, proto, pkt)`; netisr works out which workstream must
//! process the packet and either runs the handler at once on the caller (*direct
//! dispatch*) or copies the frame onto the owner's queue for the protocol (*queued*), to be
//! handled when the owner calls [`Netisr::drain`]. `ctx` is the per-worker context (the
//! worker's tx ring and so on): a handler always runs with the context of the worker it
//! runs on, never with another worker's.
//!
//! # The three policies, and how each keeps packet order
//!
//! The promise, as in FreeBSD, is order *per source per flow*: the packets one source (a
//! worker, i.e. one rx queue) hands to `dispatch` for one flow reach the handler in that
//! order. Packets of a flow arriving on two rx queues were not ordered against each other
//! on the wire either, so nothing is lost by leaving them unordered. Each policy keeps the
//! promise because it always sends one (source, flow)'s packets down the same FIFO path:
//!
//! - [`Policy::Source`] (`NETISR_POLICY_SOURCE`): processed on the worker it arrived on,
//!   always directly. No queue, so each source's packets are handled in arrival order.
//!   Right for protocols without flow affinity (ARP).
//! - [`Policy::Flow`] (`NETISR_POLICY_FLOW`): the flow id (the RSS hash from the device or
//!   the XDP program, [`PktMeta::flowid`]) is mapped onto a worker by `flow2cpu`, which is
//!   `flowid % nworkers` ([`Netisr::default_flow2cpu`], FreeBSD's `netisr_default_flow2cpu`)
//!   unless a pcbgroup layer installed its own with [`Netisr::set_flow2cpu`]. So all of a
//!   flow's packets are processed by one worker, the owner of its connection state. The
//!   mapping is a pure function of the flow id, so one source's packets of one flow are
//!   always handled directly (the source owns the flow) or always go through the same
//!   `(target, protocol)` queue, a FIFO whose single consumer pops in the order each
//!   producer pushed. Without a flow id the protocol's `m2flow` is asked for one (from the
//!   4-tuple, say); without `m2flow`, or if it returns `None`, the packet falls back to
//!   SOURCE, which keeps order as above. (This needs a flow to carry a flow id always or
//!   never; a device hashes a given flow the same way every time.)
//! - [`Policy::Cpu`] (`NETISR_POLICY_CPU`): the protocol's `m2cpuid(pkt, source)` names the
//!   worker. The FLOW argument holds as long as `m2cpuid` names the same worker for all of
//!   a flow's packets from one source, which is its contract.
//!
//! An out-of-range target (a buggy `m2cpuid` or `flow2cpu`) is dropped and counted in the
//! source worker's `bad_target`, not clamped: clamping would pile flows onto one worker
//! and hide the bug. [`Netisr::queue`] (`netisr_queue(9)`) defers a packet to a named
//! worker; order between packets passed to `queue` and packets of the same flow dispatched
//! directly is not kept, so a protocol should use one or the other.
//!
//! # Direct dispatch and queueing, qlimit and qdrops
//!
//! Direct dispatch runs the handler on the caller's stack with the borrowed frame, zero
//! copy out of the UMEM: the cheap and, once RSS and pcbgroups agree, the common path.
//! Queueing copies the frame into a `Box<[u8]>` (the UMEM frame must go back to the fill
//! ring) and pushes it onto the target's multi-producer single-consumer queue for the
//! protocol: a `crossbeam::queue::SegQueue` plus a length counter. The bound is ours, not
//! the queue's, so that [`Netisr::setqlimit`] works at run time (an `ArrayQueue` fixes its
//! capacity when built): a producer reserves a slot by compare-and-swap on the length,
//! which fails once the length has reached the qlimit, so the bound is exact with any
//! number of producers. A refused packet is dropped and counted in the target's `qdrops`
//! for the protocol: as in FreeBSD a full queue is back-pressure, not an error. Lowering
//! the qlimit below the current length drops nothing already queued. `drain` handles
//! packets FIFO per queue and, when its budget runs out, starts the next call at the
//! following protocol, so one busy protocol cannot starve the others.
//!
//! # Counting handoffs
//!
//! A packet handed from one worker to another is counted at both ends: in the source's
//! `handed_off` and in the target's `queued` (or `qdrops` when the target's queue was
//! full), so per worker the handoffs out and in add up to the same total. A pcbgroup
//! layer that wants the same split per group installs a [`FlowObserver`]: it is told,
//! for every FLOW packet with a flow id, whether it went direct, was handed off, or was
//! dropped at a full queue, and maps the flow id to its group itself.
//!
//! # Sleeping and waking
//!
//! An idle worker sleeps in poll(2) until its waker (an eventfd write, say) is called. A
//! syscall per queued packet would be ruinous while the target is busy, so a workstream
//! has a `sleeping` flag: the worker sets it in [`Netisr::prepare_sleep`], which then
//! checks the queues and, if anything is pending, clears it and says "don't sleep";
//! [`Netisr::woke`] clears it when the worker runs again. A producer, after reserving its
//! slot, calls the waker only if it swaps the flag from true to false: one wakeup per sleep.
//!
//! No wakeup is lost. The producer's length update and flag read and the worker's flag
//! write and length reads are all `SeqCst`, so they sit in one total order (Dekker's
//! argument). If the producer's length update comes first, the worker's later length read
//! sees the packet (or it was already consumed) and the worker does not sleep. Otherwise
//! the worker's flag write precedes the producer's flag read, which sees `true` (or a
//! `false` written by a producer that already called the waker, or by `woke`), and the
//! waker is called. Slots are reserved before the push, so a worker may briefly see work
//! that `drain` cannot pop yet; it then stays awake and polls again.
//!
//! # Registration and the hot path
//!
//! The protocol table is one `OnceLock` per number: registering writes a slot once (a
//! second registration fails, even when racing), and the hot path reads it with one atomic
//! load, no lock. Handlers run with no netisr lock held, so a handler may call `dispatch`
//! again (ether input handing a packet to IP). The flow mapping is set with `&mut self`,
//! i.e. before the `Netisr` is shared in an `Arc` with the workers: no synchronization.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, OnceLock, RwLock};

use crossbeam::queue::SegQueue;
use crossbeam::utils::CachePadded;
use thiserror::Error;

use crate::mbuf::{Pkt, PktMeta};
use crate::rss::FlowEvent;

/// Netisr protocol number of IPv4 (FreeBSD `NETISR_IP`).
pub const NETISR_IP: u16 = 1;
/// Netisr protocol number of ARP (FreeBSD `NETISR_ARP`).
pub const NETISR_ARP: u16 = 4;
/// Netisr protocol number of Ethernet input (FreeBSD `NETISR_ETHER`); unused while
/// the worker classifies by ethertype itself.
#[allow(dead_code)]
pub const NETISR_ETHER: u16 = 9;
/// Protocol numbers must be below this (FreeBSD `NETISR_MAXPROT`).
pub const NETISR_MAXPROT: u16 = 32;
/// The largest qlimit accepted by [`Netisr::register`] and [`Netisr::setqlimit`].
pub const NETISR_QLIMIT_MAX: usize = 65536;

const MAXPROT: usize = NETISR_MAXPROT as usize;

/// A protocol's input routine (`netisr_handler_t`): runs with the context of the worker
/// processing the packet.
pub type Handler<C> = Box<dyn Fn(&mut C, Pkt<'_>) + Send + Sync>;
/// Computes a flow id for a packet that came without one (`netisr_m2flow_t`).
pub type M2Flow = Box<dyn Fn(&Pkt<'_>) -> Option<u32> + Send + Sync>;
/// Picks the worker for a packet under [`Policy::Cpu`], given the source worker
/// (`netisr_m2cpuid_t`).
pub type M2Cpuid = Box<dyn Fn(&Pkt<'_>, usize) -> usize + Send + Sync>;
/// Maps a flow id onto a worker (FreeBSD's `netisr_default_flow2cpu` or a pcbgroup's owner).
pub type Flow2Cpu = Box<dyn Fn(u32) -> usize + Send + Sync>;
/// Wakes a sleeping worker; see [`Netisr::set_waker`].
pub type Waker = Arc<dyn Fn() + Send + Sync>;
/// Told where each FLOW-policy packet with a flow id went (see
/// [`Netisr::set_flow_observer`]): a pcbgroup layer counts packets, handoffs and qdrops
/// per group with it.
pub type FlowObserver = Box<dyn Fn(u32, FlowEvent) + Send + Sync>;

/// Where a protocol's packets are processed; the module docs say how each keeps order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Policy {
    /// On the worker they arrived on (`NETISR_POLICY_SOURCE`).
    #[default]
    Source,
    /// On the worker that owns their flow id (`NETISR_POLICY_FLOW`).
    Flow,
    /// On the worker the protocol's `m2cpuid` names (`NETISR_POLICY_CPU`).
    Cpu,
}

/// A protocol registration (FreeBSD's `struct netisr_handler`).
pub struct ProtoSpec<C> {
    /// The netisr protocol number, below [`NETISR_MAXPROT`] (e.g. [`NETISR_IP`]).
    pub proto: u16,
    /// A name for statistics ("ip", "arp", ...).
    pub name: &'static str,
    /// The input routine.
    pub handler: Handler<C>,
    /// The work-placement policy.
    pub policy: Policy,
    /// Per-worker queue limit, 1..=[`NETISR_QLIMIT_MAX`].
    pub qlimit: usize,
    /// Flow id for packets without one; only with [`Policy::Flow`].
    pub m2flow: Option<M2Flow>,
    /// Worker choice; required with [`Policy::Cpu`] and only allowed there.
    pub m2cpuid: Option<M2Cpuid>,
}

/// What [`Netisr::dispatch`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// The handler ran on the calling worker.
    Direct,
    /// The packet was copied onto another worker's queue.
    Queued,
    /// The packet was dropped (queue full, unknown protocol, bad worker); a counter says why.
    Dropped,
}

/// Why a registration or a qlimit change was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NetisrError {
    /// The protocol number is not below [`NETISR_MAXPROT`].
    #[error("netisr protocol {0} is out of range (must be < {NETISR_MAXPROT})")]
    ProtoOutOfRange(u16),
    /// The protocol number is already registered.
    #[error("netisr protocol {0} is already registered")]
    Duplicate(u16),
    /// The protocol number is not registered.
    #[error("netisr protocol {0} is not registered")]
    NotRegistered(u16),
    /// [`Policy::Cpu`] without an `m2cpuid`.
    #[error("netisr protocol {0}: CPU policy needs m2cpuid")]
    MissingM2Cpuid(u16),
    /// A hook given for a policy that never calls it (`m2cpuid` without CPU policy,
    /// `m2flow` without FLOW policy): almost certainly a mistake, as in FreeBSD.
    #[error("netisr protocol {0}: hook given for a policy that does not use it")]
    UnusedHook(u16),
    /// The qlimit is 0 or above [`NETISR_QLIMIT_MAX`].
    #[error("netisr qlimit {0} is out of range (1..={NETISR_QLIMIT_MAX})")]
    QlimitOutOfRange(usize),
}

/// Counters of one protocol on one workstream (FreeBSD's `sysctl_netisr_work`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WorkStats {
    /// Protocol number.
    pub proto: u16,
    /// Protocol name.
    pub name: &'static str,
    /// Packets waiting in this worker's queue now.
    pub qlen: usize,
    /// Packets this worker handled directly as their source.
    pub dispatched: u64,
    /// Packets put on this worker's queue.
    pub queued: u64,
    /// Packets this worker handled from its queue.
    pub handled: u64,
    /// Packets dropped because this worker's queue was full.
    pub qdrops: u64,
    /// Packets this worker received and passed towards another worker's queue (queued
    /// there, or counted in that worker's `qdrops` when it was full).
    pub handed_off: u64,
}

/// Counters of one workstream.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WorkstreamStats {
    /// Worker index.
    pub worker: usize,
    /// Packets dispatched by this worker (or queued to it) for an unregistered protocol.
    pub unknown_proto: u64,
    /// Packets from this worker dropped because `m2cpuid`/`flow2cpu` named no worker.
    pub bad_target: u64,
    /// Per registered protocol, by protocol number.
    pub protos: Vec<WorkStats>,
}

/// A registered protocol and its totals over all workers (FreeBSD's `sysctl_netisr_proto`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProtoStats {
    /// Protocol number.
    pub proto: u16,
    /// Protocol name.
    pub name: &'static str,
    /// Work-placement policy.
    pub policy: Policy,
    /// Current per-worker queue limit.
    pub qlimit: usize,
    /// Sum of [`WorkStats::dispatched`].
    pub dispatched: u64,
    /// Sum of [`WorkStats::queued`].
    pub queued: u64,
    /// Sum of [`WorkStats::handled`].
    pub handled: u64,
    /// Sum of [`WorkStats::qdrops`].
    pub qdrops: u64,
    /// Sum of [`WorkStats::handed_off`].
    pub handed_off: u64,
}

/// A snapshot of all netisr counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NetisrStats {
    /// Registered protocols, by number.
    pub protos: Vec<ProtoStats>,
    /// One entry per worker.
    pub workstreams: Vec<WorkstreamStats>,
    /// Calls naming a worker index that does not exist (as source or as `queue` target).
    pub bad_worker: u64,
}

/// A registered protocol.
struct Proto<C> {
    name: &'static str,
    handler: Handler<C>,
    policy: Policy,
    qlimit: AtomicUsize,
    m2flow: Option<M2Flow>,
    m2cpuid: Option<M2Cpuid>,
}

/// A frame copied out of the UMEM to wait on a queue.
struct QueuedPkt {
    data: Box<[u8]>,
    meta: PktMeta,
}

/// One protocol's queue and counters on one workstream (FreeBSD's `struct netisr_work`).
/// `SegQueue` keeps its head and tail on separate cache lines already.
#[derive(Default)]
struct Work {
    queue: SegQueue<QueuedPkt>,
    /// Reserved slots: incremented before a push, decremented after a pop.
    len: AtomicUsize,
    dispatched: AtomicU64,
    queued: AtomicU64,
    handled: AtomicU64,
    qdrops: AtomicU64,
    /// Counted on the source's workstream: packets it sent to another worker's queue.
    handed_off: AtomicU64,
}

/// One worker (FreeBSD's `struct netisr_workstream`).
#[derive(Default)]
struct Workstream {
    work: [Work; MAXPROT],
    unknown_proto: AtomicU64,
    bad_target: AtomicU64,
    sleeping: AtomicBool,
    waker: RwLock<Option<Waker>>,
    /// Protocol `drain` starts at; only the owning worker touches it.
    cursor: AtomicUsize,
}

impl Workstream {
    /// Packets reserved on any queue. `SeqCst`: the worker's half of the wakeup protocol.
    fn pending(&self) -> usize {
        self.work.iter().map(|w| w.len.load(SeqCst)).sum()
    }
}

/// The netisr dispatch service, shared by the workers as `Arc<Netisr<C>>`; `C` is the
/// per-worker context handed to handlers.
pub struct Netisr<C> {
    protos: [OnceLock<Proto<C>>; MAXPROT],
    ws: Box<[CachePadded<Workstream>]>,
    flow2cpu: Option<Flow2Cpu>,
    flow_observer: Option<FlowObserver>,
    bad_worker: AtomicU64,
}

impl<C> Netisr<C> {
    /// A netisr with `nworkers` workstreams (0 is taken as 1) and no protocols.
    pub fn new(nworkers: usize) -> Self {
        Netisr {
            protos: Default::default(),
            ws: (0..nworkers.max(1)).map(|_| Default::default()).collect(),
            flow2cpu: None,
            flow_observer: None,
            bad_worker: AtomicU64::new(0),
        }
    }

    /// The number of workstreams.
    #[allow(dead_code)] // netisr(9)'s KPI, kept whole and tested here; not called by the stack yet
    pub fn nworkers(&self) -> usize {
        self.ws.len()
    }

    /// Registers a protocol (`netisr_register(9)`). Safe to call concurrently with dispatch,
    /// but meant to be done before the workers start.
    pub fn register(&self, spec: ProtoSpec<C>) -> Result<(), NetisrError> {
        let proto = spec.proto;
        let slot = self
            .protos
            .get(usize::from(proto))
            .ok_or(NetisrError::ProtoOutOfRange(proto))?;
        check_qlimit(spec.qlimit)?;
        match (spec.policy, &spec.m2flow, &spec.m2cpuid) {
            (Policy::Cpu, _, None) => return Err(NetisrError::MissingM2Cpuid(proto)),
            (Policy::Cpu | Policy::Source, Some(_), _)
            | (Policy::Flow | Policy::Source, _, Some(_)) => {
                return Err(NetisrError::UnusedHook(proto))
            }
            _ => {}
        }
        slot.set(Proto {
            name: spec.name,
            handler: spec.handler,
            policy: spec.policy,
            qlimit: AtomicUsize::new(spec.qlimit),
            m2flow: spec.m2flow,
            m2cpuid: spec.m2cpuid,
        })
        .map_err(|_| NetisrError::Duplicate(proto))
    }

    /// Replaces the flow-id-to-worker mapping used by [`Policy::Flow`] (a pcbgroup layer
    /// routes each flow to its group's owner). Takes `&mut self`, so it can only happen
    /// before the netisr is shared with the workers. A mapping that returns an index
    /// `>= nworkers` gets its packets dropped and counted in `bad_target`.
    pub fn set_flow2cpu(&mut self, f: Flow2Cpu) {
        self.flow2cpu = Some(f);
    }

    /// Installs a function told, for every FLOW-policy packet that has a flow id, whether
    /// it was handled directly, handed off or dropped at a full queue (not called for
    /// packets dropped as `bad_target`). It runs on the source worker's hot path, so it
    /// must be cheap (a relaxed counter bump). Like [`Netisr::set_flow2cpu`], only before
    /// the netisr is shared.
    pub fn set_flow_observer(&mut self, f: FlowObserver) {
        self.flow_observer = Some(f);
    }

    /// The default mapping, `flowid % nworkers` (FreeBSD's `netisr_default_flow2cpu`).
    pub fn default_flow2cpu(&self, flowid: u32) -> usize {
        // u32 -> usize is lossless on every target xstack runs on (Linux, 32/64 bit).
        flowid as usize % self.ws.len()
    }

    fn flow2cpu(&self, flowid: u32) -> usize {
        match &self.flow2cpu {
            Some(f) => f(flowid),
            None => self.default_flow2cpu(flowid),
        }
    }

    fn proto(&self, proto: u16) -> Option<&Proto<C>> {
        self.protos.get(usize::from(proto))?.get()
    }

    /// Hands a packet received by `worker` (the caller) to protocol `proto`
    /// (`netisr_dispatch_src(9)`): runs the handler now with `ctx` if the policy places the
    /// packet on `worker`, otherwise copies it onto the target worker's queue. Never panics
    /// on bad input: an unknown protocol, an out-of-range worker or target, or a full queue
    /// drops the packet and counts it.
    pub fn dispatch(&self, worker: usize, ctx: &mut C, proto: u16, pkt: Pkt<'_>) -> Dispatch {
        let Some(ws) = self.ws.get(worker) else {
            self.bad_worker.fetch_add(1, Relaxed);
            return Dispatch::Dropped;
        };
        let Some(p) = self.proto(proto) else {
            ws.unknown_proto.fetch_add(1, Relaxed);
            return Dispatch::Dropped;
        };
        let mut flow = None;
        let target = match (p.policy, &p.m2cpuid) {
            (Policy::Source, _) => worker,
            (Policy::Flow, _) => {
                flow = pkt
                    .meta
                    .flowid()
                    .or_else(|| p.m2flow.as_ref().and_then(|m2flow| m2flow(&pkt)));
                // No flow id at all: fall back to SOURCE.
                flow.map_or(worker, |f| self.flow2cpu(f))
            }
            (Policy::Cpu, Some(m2cpuid)) => m2cpuid(&pkt, worker),
            // register() refuses CPU policy without m2cpuid; SOURCE is the safe answer.
            (Policy::Cpu, None) => worker,
        };
        let observe = |event| {
            if let (Some(f), Some(obs)) = (flow, &self.flow_observer) {
                obs(f, event);
            }
        };
        if target == worker {
            ws.work[usize::from(proto)].dispatched.fetch_add(1, Relaxed);
            observe(FlowEvent::Direct);
            (p.handler)(ctx, pkt);
            return Dispatch::Direct;
        }
        let Some(tws) = self.ws.get(target) else {
            ws.bad_target.fetch_add(1, Relaxed);
            return Dispatch::Dropped;
        };
        ws.work[usize::from(proto)].handed_off.fetch_add(1, Relaxed);
        if enqueue(tws, proto, p, pkt) {
            observe(FlowEvent::HandedOff);
            Dispatch::Queued
        } else {
            observe(FlowEvent::QDropped);
            Dispatch::Dropped
        }
    }

    /// Puts a packet on worker `worker_target`'s queue for `proto` regardless of policy
    /// (`netisr_queue(9)`). Returns false if it was dropped: unknown protocol (counted in
    /// the target's `unknown_proto`), no such worker (`bad_worker`), or queue full (`qdrops`).
    #[allow(dead_code)] // netisr(9)'s KPI, kept whole and tested here; not called by the stack yet
    pub fn queue(&self, worker_target: usize, proto: u16, pkt: Pkt<'_>) -> bool {
        let Some(ws) = self.ws.get(worker_target) else {
            self.bad_worker.fetch_add(1, Relaxed);
            return false;
        };
        let Some(p) = self.proto(proto) else {
            ws.unknown_proto.fetch_add(1, Relaxed);
            return false;
        };
        enqueue(ws, proto, p, pkt)
    }

    /// Handles up to `budget` packets from `worker`'s own queues, FIFO per queue, with the
    /// worker's context. Returns how many were handled. Only worker `worker` may call it.
    pub fn drain(&self, worker: usize, ctx: &mut C, budget: usize) -> usize {
        let Some(ws) = self.ws.get(worker) else {
            return 0;
        };
        let start = ws.cursor.load(Relaxed);
        let mut done = 0;
        for i in 0..MAXPROT {
            if done == budget {
                break;
            }
            let n = (start + i) % MAXPROT;
            let w = &ws.work[n];
            if w.len.load(Relaxed) == 0 {
                continue;
            }
            // A queue only ever holds packets of a registered protocol.
            let Some(p) = self.protos[n].get() else {
                continue;
            };
            while done < budget {
                let Some(q) = w.queue.pop() else { break };
                w.len.fetch_sub(1, Relaxed);
                w.handled.fetch_add(1, Relaxed);
                done += 1;
                (p.handler)(
                    ctx,
                    Pkt {
                        data: &q.data,
                        meta: q.meta,
                    },
                );
            }
            if done == budget {
                // This protocol used up the budget: the next one goes first next time.
                ws.cursor.store((n + 1) % MAXPROT, Relaxed);
            }
        }
        done
    }

    /// Packets waiting on `worker`'s queues (0 for a worker that does not exist).
    pub fn pending(&self, worker: usize) -> usize {
        self.ws.get(worker).map_or(0, |ws| ws.pending())
    }

    /// Sets the function that wakes `worker` from its sleep (an eventfd write, say).
    /// Ignored for a worker that does not exist.
    pub fn set_waker(&self, worker: usize, waker: Waker) {
        if let Some(ws) = self.ws.get(worker) {
            *ws.waker.write().unwrap_or_else(|e| e.into_inner()) = Some(waker);
        }
    }

    /// Called by `worker` just before it sleeps: marks it sleeping so the next enqueue
    /// wakes it. Returns false, and leaves it marked awake, if work is already pending (or
    /// the worker does not exist): then it must not sleep but drain.
    pub fn prepare_sleep(&self, worker: usize) -> bool {
        let Some(ws) = self.ws.get(worker) else {
            return false;
        };
        // SeqCst store, then SeqCst length loads: the module docs give the argument.
        ws.sleeping.store(true, SeqCst);
        if ws.pending() > 0 {
            ws.sleeping.store(false, SeqCst);
            return false;
        }
        true
    }

    /// Wakes `worker` if it is sleeping, for work that arrived outside netisr's queues
    /// (e.g. a connection's application queued data). The caller must have published
    /// that work before calling, and the worker must re-check it after
    /// [`Netisr::prepare_sleep`]: the SeqCst fence here pairs with the one there.
    pub fn notify(&self, worker: usize) {
        std::sync::atomic::fence(SeqCst);
        if let Some(ws) = self.ws.get(worker) {
            if ws.sleeping.load(SeqCst) && ws.sleeping.swap(false, SeqCst) {
                let waker = ws.waker.read().unwrap_or_else(|e| e.into_inner()).clone();
                if let Some(wake) = waker {
                    wake();
                }
            }
        }
    }

    /// Called by `worker` when it runs again after sleeping, so producers stop waking it.
    pub fn woke(&self, worker: usize) {
        if let Some(ws) = self.ws.get(worker) {
            ws.sleeping.store(false, SeqCst);
        }
    }

    /// The per-worker queue limit of `proto` (`netisr_getqlimit(9)`).
    #[allow(dead_code)] // netisr(9)'s KPI, kept whole and tested here; not called by the stack yet
    pub fn getqlimit(&self, proto: u16) -> Result<usize, NetisrError> {
        let p = self.proto(proto).ok_or(NetisrError::NotRegistered(proto))?;
        Ok(p.qlimit.load(Relaxed))
    }

    /// Changes the per-worker queue limit of `proto` at run time (`netisr_setqlimit(9)`).
    #[allow(dead_code)] // netisr(9)'s KPI, kept whole and tested here; not called by the stack yet
    pub fn setqlimit(&self, proto: u16, qlimit: usize) -> Result<(), NetisrError> {
        check_qlimit(qlimit)?;
        let p = self.proto(proto).ok_or(NetisrError::NotRegistered(proto))?;
        p.qlimit.store(qlimit, Relaxed);
        Ok(())
    }

    /// Packets of `proto` dropped on full queues, summed over workers (`netisr_getqdrops(9)`);
    /// 0 for a protocol number out of range.
    #[allow(dead_code)] // netisr(9)'s KPI, kept whole and tested here; not called by the stack yet
    pub fn getqdrops(&self, proto: u16) -> u64 {
        let n = usize::from(proto);
        if n >= MAXPROT {
            return 0;
        }
        self.ws
            .iter()
            .map(|ws| ws.work[n].qdrops.load(Relaxed))
            .sum()
    }

    /// Zeroes the qdrops counters of `proto` on every worker (`netisr_clearqdrops(9)`).
    #[allow(dead_code)] // netisr(9)'s KPI, kept whole and tested here; not called by the stack yet
    pub fn clearqdrops(&self, proto: u16) {
        let n = usize::from(proto);
        if n < MAXPROT {
            for ws in self.ws.iter() {
                ws.work[n].qdrops.store(0, Relaxed);
            }
        }
    }

    /// A snapshot of every counter, per worker and per registered protocol.
    pub fn stats(&self) -> NetisrStats {
        let registered: Vec<(u16, &Proto<C>)> = (0..NETISR_MAXPROT)
            .filter_map(|n| self.proto(n).map(|p| (n, p)))
            .collect();
        let mut protos: Vec<ProtoStats> = registered
            .iter()
            .map(|&(proto, p)| ProtoStats {
                proto,
                name: p.name,
                policy: p.policy,
                qlimit: p.qlimit.load(Relaxed),
                ..Default::default()
            })
            .collect();
        let workstreams = self
            .ws
            .iter()
            .enumerate()
            .map(|(worker, ws)| WorkstreamStats {
                worker,
                unknown_proto: ws.unknown_proto.load(Relaxed),
                bad_target: ws.bad_target.load(Relaxed),
                protos: registered
                    .iter()
                    .zip(protos.iter_mut())
                    .map(|(&(proto, p), total)| {
                        let w = &ws.work[usize::from(proto)];
                        let s = WorkStats {
                            proto,
                            name: p.name,
                            qlen: w.len.load(Relaxed),
                            dispatched: w.dispatched.load(Relaxed),
                            queued: w.queued.load(Relaxed),
                            handled: w.handled.load(Relaxed),
                            qdrops: w.qdrops.load(Relaxed),
                            handed_off: w.handed_off.load(Relaxed),
                        };
                        total.handed_off += s.handed_off;
                        total.dispatched += s.dispatched;
                        total.queued += s.queued;
                        total.handled += s.handled;
                        total.qdrops += s.qdrops;
                        s
                    })
                    .collect(),
            })
            .collect();
        NetisrStats {
            protos,
            workstreams,
            bad_worker: self.bad_worker.load(Relaxed),
        }
    }
}

fn check_qlimit(qlimit: usize) -> Result<(), NetisrError> {
    if qlimit == 0 || qlimit > NETISR_QLIMIT_MAX {
        return Err(NetisrError::QlimitOutOfRange(qlimit));
    }
    Ok(())
}

/// Reserves a slot under the qlimit, copies the frame in, and wakes the worker if it sleeps.
fn enqueue<C>(ws: &Workstream, proto: u16, p: &Proto<C>, pkt: Pkt<'_>) -> bool {
    let w = &ws.work[usize::from(proto)];
    let qlimit = p.qlimit.load(Relaxed);
    // SeqCst: the producer's half of the wakeup protocol (module docs). A CAS loop rather
    // than fetch_add-and-roll-back, so a racing producer never sees a phantom full queue.
    let reserved = w
        .len
        .fetch_update(SeqCst, SeqCst, |len| (len < qlimit).then_some(len + 1));
    if reserved.is_err() {
        w.qdrops.fetch_add(1, Relaxed);
        return false;
    }
    w.queue.push(QueuedPkt {
        data: pkt.data.into(),
        meta: pkt.meta,
    });
    w.queued.fetch_add(1, Relaxed);
    // The plain load keeps the cache line shared while the worker is busy; only a producer
    // that sees it sleeping pays for the swap, and only the one that wins it calls the waker.
    if ws.sleeping.load(SeqCst) && ws.sleeping.swap(false, SeqCst) {
        let waker = ws.waker.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(wake) = waker {
            wake();
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::{HashType, RssHash};
    use std::collections::HashMap;
    use std::thread;
    use std::time::Duration;
    use Dispatch::{Direct, Dropped, Queued};
    use NetisrError as E;
    use Policy::{Cpu, Flow, Source};

    const IP: u16 = NETISR_IP;

    /// Per-worker context: the worker and what its handlers saw, as
    /// (worker run on, source, seq, flowid).
    struct Ctx {
        worker: usize,
        seen: Vec<(usize, u8, u32, Option<u32>)>,
    }

    fn ctx(worker: usize) -> Ctx {
        let seen = Vec::new();
        Ctx { worker, seen }
    }

    impl Ctx {
        fn seqs(&self) -> Vec<u32> {
            self.seen.iter().map(|s| s.2).collect()
        }
    }

    /// A test frame: the source byte, then a sequence number.
    fn frame(src: u8, seq: u32) -> [u8; 5] {
        let s = seq.to_le_bytes();
        [src, s[0], s[1], s[2], s[3]]
    }

    fn pkt(data: &[u8], flowid: Option<u32>) -> Pkt<'_> {
        let mut meta = PktMeta::rx(data.len(), 0);
        let kind = HashType::TcpIpv4;
        meta.rss_hash = flowid.map(|value| RssHash { value, kind });
        Pkt { data, meta }
    }

    type N = Netisr<Ctx>;

    /// Worker `c.worker` dispatches frame(src, seq) with flow id `f`.
    fn disp(ni: &N, c: &mut Ctx, proto: u16, src: u8, seq: u32, f: Option<u32>) -> Dispatch {
        ni.dispatch(c.worker, c, proto, pkt(&frame(src, seq), f))
    }

    /// Queues frame(0, seq) without flow id onto worker `w`.
    fn q(ni: &N, w: usize, proto: u16, seq: u32) -> bool {
        ni.queue(w, proto, pkt(&frame(0, seq), None))
    }

    fn spec(proto: u16, policy: Policy, qlimit: usize) -> ProtoSpec<Ctx> {
        ProtoSpec {
            proto,
            name: "test",
            policy,
            qlimit,
            m2flow: None,
            m2cpuid: None,
            handler: Box::new(|c: &mut Ctx, p: Pkt<'_>| {
                let seq = u32::from_le_bytes([p.data[1], p.data[2], p.data[3], p.data[4]]);
                c.seen.push((c.worker, p.data[0], seq, p.meta.flowid()));
            }),
        }
    }

    #[test]
    fn shareable_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Arc<Netisr<std::cell::RefCell<Vec<u8>>>>>();
    }

    /// FLOW policy, 4 workers, each both a producer and the drainer of its own queues:
    /// every packet is handled on default_flow2cpu(flowid), in per-source order, none lost.
    #[test]
    fn flow_policy_keeps_per_source_per_flow_order() {
        const NW: usize = 4;
        const N: u32 = 3000;
        const FLOWS: [u32; 8] = [7, 100, 1001, 0xdead_beef, 42, 5, 6, 13];
        let ni = Arc::new(Netisr::<Ctx>::new(NW));
        ni.register(spec(IP, Flow, NETISR_QLIMIT_MAX)).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..NW)
            .map(|w| {
                let (ni, done) = (ni.clone(), done.clone());
                thread::spawn(move || {
                    let mut c = ctx(w);
                    for seq in 0..N {
                        for f in FLOWS {
                            disp(&ni, &mut c, IP, w as u8, seq, Some(f));
                        }
                        if seq % 64 == 0 {
                            ni.drain(w, &mut c, 32);
                        }
                    }
                    done.fetch_add(1, SeqCst);
                    loop {
                        let all_done = done.load(SeqCst) == NW;
                        let n = ni.drain(w, &mut c, 256);
                        if all_done && n == 0 && ni.pending(w) == 0 {
                            break c;
                        }
                    }
                })
            })
            .collect();
        let mut per_src_flow: HashMap<(u8, u32), Vec<u32>> = HashMap::new();
        for t in threads {
            let c = t.join().unwrap();
            for &(on, src, seq, flowid) in &c.seen {
                let f = flowid.unwrap();
                assert_eq!((on, ni.default_flow2cpu(f)), (c.worker, c.worker));
                per_src_flow.entry((src, f)).or_default().push(seq);
            }
        }
        let want: Vec<u32> = (0..N).collect();
        assert_eq!(per_src_flow.len(), NW * FLOWS.len());
        for (key, seqs) in &per_src_flow {
            assert!(seqs == &want, "{key:?} out of order or lossy");
        }
        let s = &ni.stats().protos[0];
        let total = u64::from(N) * (NW * FLOWS.len()) as u64;
        // Each worker owns 2 of the 8 flows (flowid % 4), so a quarter goes direct.
        let (direct, queued) = (total / 4, total * 3 / 4);
        assert_eq!(
            (s.dispatched, s.queued, s.handled, s.qdrops),
            (direct, queued, queued, 0)
        );
    }

    #[test]
    fn qlimit_and_qdrops() {
        let ni = Netisr::<Ctx>::new(2);
        ni.register(spec(IP, Flow, 4)).unwrap();
        let mut c0 = ctx(0);
        // Flow 1 belongs to worker 1; worker 0 dispatches 10, nobody drains.
        let r: Vec<Dispatch> = (0..10)
            .map(|i| disp(&ni, &mut c0, IP, 0, i, Some(1)))
            .collect();
        assert_eq!(r, [[Queued; 4].as_slice(), &[Dropped; 6]].concat());
        // 7 through queue() onto worker 0: 4 fit, 3 drop.
        let r: Vec<bool> = (0..7).map(|i| q(&ni, 0, IP, i)).collect();
        assert_eq!(r, [true, true, true, true, false, false, false]);
        assert_eq!(ni.getqdrops(IP), 6 + 3);
        assert_eq!((ni.pending(0), ni.pending(1)), (4, 4));
        ni.clearqdrops(IP);
        assert_eq!(ni.getqdrops(IP), 0);
        assert_eq!(ni.getqlimit(IP), Ok(4));
        ni.setqlimit(IP, 6).unwrap();
        assert_eq!(ni.getqlimit(IP), Ok(6));
        let r: Vec<bool> = (10..13).map(|i| q(&ni, 1, IP, i)).collect();
        assert_eq!(r, [true, true, false]);
        assert_eq!((ni.pending(1), ni.getqdrops(IP)), (6, 1));
        // FIFO: the 4 from before, then 10 and 11; 12 was dropped.
        let mut c1 = ctx(1);
        assert_eq!((ni.drain(1, &mut c1, 5), ni.drain(1, &mut c1, 100)), (5, 1));
        assert_eq!(c1.seqs(), [0, 1, 2, 3, 10, 11]);
        assert_eq!(ni.setqlimit(IP, 0), Err(E::QlimitOutOfRange(0)));
        assert_eq!(ni.setqlimit(IP, 65537), Err(E::QlimitOutOfRange(65537)));
        assert_eq!(ni.setqlimit(NETISR_ARP, 10), Err(E::NotRegistered(4)));
        assert_eq!(ni.getqlimit(NETISR_ARP), Err(E::NotRegistered(4)));
        let w1 = &ni.stats().workstreams[1].protos[0];
        assert_eq!((w1.queued, w1.handled, w1.qdrops, w1.qlen), (6, 6, 1, 0));
        let json = serde_json::to_string(&ni.stats().protos).unwrap();
        assert!(json.contains(r#""policy":"Flow","qlimit":6,"dispatched":0,"queued":10,"#));
    }

    /// Every packet a worker passes to another is counted once at the source
    /// (`handed_off`) and once at the target (`queued` or `qdrops`), and the flow
    /// observer sees the same split per flow id.
    #[test]
    fn handoffs_counted_at_both_ends_and_observed_per_flow() {
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut ni = Netisr::<Ctx>::new(2);
        let ev = events.clone();
        ni.set_flow_observer(Box::new(move |f, e| ev.lock().unwrap().push((f, e))));
        ni.register(spec(IP, Flow, 2)).unwrap();
        ni.register(spec(NETISR_ARP, Source, 2)).unwrap();
        let mut c0 = ctx(0);
        // Flow 1 is worker 1's: two fit its queue, the third is a qdrop; flow 2 is ours.
        for seq in 0..3 {
            disp(&ni, &mut c0, IP, 0, seq, Some(1));
        }
        disp(&ni, &mut c0, IP, 0, 9, Some(2));
        // No flow id (falls back to SOURCE) and SOURCE policy: nothing to observe.
        disp(&ni, &mut c0, IP, 0, 10, None);
        disp(&ni, &mut c0, NETISR_ARP, 0, 11, Some(1));
        let st = ni.stats();
        let (w0, w1) = (&st.workstreams[0].protos[0], &st.workstreams[1].protos[0]);
        assert_eq!((w0.handed_off, w0.dispatched), (3, 2));
        assert_eq!((w1.queued, w1.qdrops, w1.handed_off), (2, 1, 0));
        assert_eq!(st.protos[0].handed_off, w1.queued + w1.qdrops);
        use FlowEvent::{Direct as D, HandedOff as H, QDropped as Q};
        assert_eq!(*events.lock().unwrap(), [(1, H), (1, H), (1, Q), (2, D)]);
    }

    #[test]
    fn policy_placement() {
        const ARP: u16 = NETISR_ARP;
        const ETHER: u16 = NETISR_ETHER;
        let ni = Netisr::<Ctx>::new(4);
        ni.register(spec(ARP, Source, 8)).unwrap();
        let mut cpu = spec(IP, Cpu, 8);
        cpu.m2cpuid = Some(Box::new(|p, _src| usize::from(p.data[0])));
        ni.register(cpu).unwrap();
        ni.register(spec(ETHER, Flow, 8)).unwrap();
        let mut m2f = spec(2, Flow, 8);
        m2f.m2flow = Some(Box::new(|p| Some(u32::from(p.data[1]))));
        ni.register(m2f).unwrap();
        let mut c2 = ctx(2);

        // SOURCE: direct on the caller whatever the flow id says.
        for f in 0..4 {
            assert_eq!(disp(&ni, &mut c2, ARP, 2, 0, Some(f)), Direct);
        }
        // CPU: where m2cpuid says (data[0]); out of range is dropped and counted.
        assert_eq!(disp(&ni, &mut c2, IP, 3, 0, None), Queued);
        assert_eq!(disp(&ni, &mut c2, IP, 2, 0, None), Direct);
        assert_eq!(disp(&ni, &mut c2, IP, 9, 0, None), Dropped);
        assert_eq!(ni.stats().workstreams[2].bad_target, 1);
        assert_eq!(ni.pending(3), 1);
        // FLOW without flow id or m2flow: SOURCE.
        assert_eq!(disp(&ni, &mut c2, ETHER, 0, 0, None), Direct);
        // FLOW with m2flow: frame(0, 5) has data[1] = 5, 5 % 4 = worker 1...
        assert_eq!(disp(&ni, &mut c2, 2, 0, 5, None), Queued);
        assert_eq!(ni.pending(1), 1);
        // ... but the packet's own flow id wins over m2flow: 6 % 4 = 2, direct.
        assert_eq!(disp(&ni, &mut c2, 2, 0, 5, Some(6)), Direct);
        assert_eq!(c2.seen.len(), 4 + 1 + 1 + 1);
        assert!(c2.seen.iter().all(|s| s.0 == 2));
        let mut c3 = ctx(3);
        assert_eq!(ni.drain(3, &mut c3, 10), 1);
        assert_eq!(c3.seen, [(3, 3, 0, None)]);
        let st = ni.stats();
        let d: Vec<_> = st
            .protos
            .iter()
            .map(|p| (p.proto, p.dispatched, p.queued))
            .collect();
        assert_eq!(d, [(IP, 1, 1), (2, 1, 1), (ARP, 4, 0), (ETHER, 1, 0)]);
    }

    #[test]
    fn set_flow2cpu_routes_flows() {
        let mut ni = Netisr::<Ctx>::new(3);
        ni.set_flow2cpu(Box::new(|f| if f < 100 { 2 } else { 7 }));
        ni.register(spec(IP, Flow, 8)).unwrap();
        let mut c0 = ctx(0);
        assert_eq!(disp(&ni, &mut c0, IP, 0, 0, Some(3)), Queued);
        assert_eq!(disp(&ni, &mut c0, IP, 0, 0, Some(300)), Dropped);
        let bad = ni.stats().workstreams[0].bad_target;
        assert_eq!((ni.pending(2), bad, ni.default_flow2cpu(3)), (1, 1, 0));
    }

    #[test]
    fn wakes_a_sleeping_worker_once_and_a_busy_one_never() {
        let ni = Netisr::<Ctx>::new(2);
        ni.register(spec(IP, Flow, 64)).unwrap();
        let wakes = Arc::new(AtomicUsize::new(0));
        let w2 = wakes.clone();
        ni.set_waker(1, Arc::new(move || _ = w2.fetch_add(1, SeqCst)));
        let wakes = || wakes.load(SeqCst);
        // Busy (never slept): no wakeups.
        q(&ni, 1, IP, 0);
        assert_eq!(wakes(), 0);
        // Work pending: may not sleep, and stays marked awake.
        assert!(!ni.prepare_sleep(1));
        q(&ni, 1, IP, 1);
        assert_eq!(wakes(), 0);
        ni.drain(1, &mut ctx(1), 10);
        // Asleep: three enqueues (dispatch and queue) wake it exactly once.
        assert!(ni.prepare_sleep(1));
        assert_eq!(disp(&ni, &mut ctx(0), IP, 0, 2, Some(1)), Queued);
        assert!(q(&ni, 1, IP, 3) && q(&ni, 1, IP, 4));
        assert_eq!(wakes(), 1);
        ni.drain(1, &mut ctx(1), 10);
        // Slept and woke by itself (timeout): no wakeup.
        assert!(ni.prepare_sleep(1));
        ni.woke(1);
        q(&ni, 1, IP, 5);
        assert_eq!(wakes(), 1);
        // A sleeping worker without a waker: nothing to call, nothing breaks.
        assert!(ni.prepare_sleep(0));
        assert!(q(&ni, 0, IP, 6));
        assert!(!ni.prepare_sleep(0));
    }

    /// A real sleeper blocked on a channel: a lost wakeup fails the test (after 10 s)
    /// instead of being rescued by a poll timeout.
    #[test]
    fn no_lost_wakeups_under_concurrency() {
        const M: u32 = 20_000;
        let ni = Arc::new(Netisr::<Ctx>::new(2));
        ni.register(spec(IP, Source, NETISR_QLIMIT_MAX)).unwrap();
        let (wake_tx, wake_rx) = crossbeam::channel::unbounded::<()>();
        let (asleep_tx, asleep_rx) = crossbeam::channel::unbounded::<()>();
        ni.set_waker(1, Arc::new(move || _ = wake_tx.send(())));
        let ni2 = ni.clone();
        let ten_s = Duration::from_secs(10);
        let sleeper = thread::spawn(move || {
            let (mut c, mut handled) = (ctx(1), 0);
            while handled < M as usize {
                handled += ni2.drain(1, &mut c, 64);
                if handled < M as usize && ni2.prepare_sleep(1) {
                    _ = asleep_tx.send(());
                    let woken = wake_rx.recv_timeout(ten_s);
                    assert!(woken.is_ok(), "lost wakeup after {handled} packets");
                    ni2.woke(1);
                }
            }
            c
        });
        for i in 0..M {
            // Every 1000 packets wait until the worker has gone to sleep at least once
            // more, so sleeping is exercised 20 times however the threads are scheduled.
            if i % 1000 == 999 {
                asleep_rx.recv_timeout(ten_s).expect("worker never slept");
            }
            assert!(q(&ni, 1, IP, i));
            if i % 97 == 0 {
                thread::sleep(Duration::from_micros(50));
            }
        }
        let c = sleeper.join().unwrap();
        assert!(c.seqs().into_iter().eq(0..M));
    }

    #[test]
    fn registration_errors_and_bad_input() {
        let ni = Netisr::<Ctx>::new(2);
        ni.register(spec(IP, Source, 8)).unwrap();
        let with_m2cpuid = |mut s: ProtoSpec<Ctx>| {
            s.m2cpuid = Some(Box::new(|_, w| w));
            s
        };
        let mut m2flow_on_source = spec(5, Source, 8);
        m2flow_on_source.m2flow = Some(Box::new(|_| None));
        for (s, e) in [
            (spec(IP, Flow, 8), E::Duplicate(1)),
            (spec(32, Source, 8), E::ProtoOutOfRange(32)),
            (spec(u16::MAX, Source, 8), E::ProtoOutOfRange(u16::MAX)),
            (spec(5, Cpu, 8), E::MissingM2Cpuid(5)),
            (with_m2cpuid(spec(5, Cpu, 0)), E::QlimitOutOfRange(0)),
            (spec(5, Source, 65537), E::QlimitOutOfRange(65537)),
            (with_m2cpuid(spec(5, Flow, 8)), E::UnusedHook(5)),
            (m2flow_on_source, E::UnusedHook(5)),
        ] {
            assert_eq!(ni.register(s), Err(e));
        }
        // None of the failures registered anything; the edge values are fine.
        assert_eq!(ni.stats().protos.len(), 1);
        ni.register(spec(31, Source, NETISR_QLIMIT_MAX)).unwrap();

        let (mut c0, mut c2) = (ctx(0), ctx(2));
        assert_eq!(disp(&ni, &mut c0, 7, 0, 0, None), Dropped);
        assert_eq!(disp(&ni, &mut c0, 999, 0, 0, None), Dropped);
        assert!(!q(&ni, 1, 7, 0));
        assert_eq!(disp(&ni, &mut c2, IP, 0, 0, None), Dropped);
        assert!(!q(&ni, 2, IP, 0));
        let no_worker = (ni.drain(9, &mut c0, 10), ni.pending(9), ni.prepare_sleep(9));
        assert_eq!(no_worker, (0, 0, false));
        let s = ni.stats();
        let unknown = (
            s.workstreams[0].unknown_proto,
            s.workstreams[1].unknown_proto,
        );
        assert_eq!((unknown, s.bad_worker, ni.getqdrops(999)), ((2, 1), 2, 0));
        assert!(c0.seen.is_empty() && c2.seen.is_empty());
        assert_eq!(Netisr::<Ctx>::new(0).nworkers(), 1);
    }
}
