//! Protocol control blocks (FreeBSD `in_pcb`): the shared connection object that
//! worker and application threads both touch, listening sockets with their accept
//! queues, and the table that finds a connection for a segment and hands out
//! ephemeral ports.
//!
//! Locking: the table's maps are behind `RwLock`s (lookups take the read side); each
//! connection has its own `Mutex` around its control block, taken by the worker that
//! owns the connection while it processes a segment or a timer, and by application
//! threads for the short time it takes to copy data in or out. No lock is held while
//! another is taken, except table -> connection in that order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::time::Instant;

use crossbeam::utils::CachePadded;

use super::tcb::{State, Tcb};
use crate::rss::FlowEvent;
use crate::rss::{Toeplitz, INDIRECTION_SIZE};

/// A connection's addresses, local first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FourTuple {
    /// Our address and port.
    pub local: SocketAddrV4,
    /// The peer's.
    pub remote: SocketAddrV4,
}

/// Something interested in a connection's readiness (a poller registration).
pub trait ReadinessSink: Send + Sync {
    /// Called (without the connection lock held) when readiness may have changed.
    fn notify(&self, token: usize);
}

/// The mutable part of a connection.
pub struct ConnInner {
    /// The control block.
    pub tcb: Tcb,
    /// When the owner's timer heap last scheduled this connection.
    pub scheduled: Option<Instant>,
    /// Poller registrations.
    pub sinks: Vec<(Weak<dyn ReadinessSink>, usize)>,
    /// The application dropped its handle (the connection lingers only to finish).
    pub orphaned: bool,
}

/// One connection, shared by its owner worker and the application.
pub struct Conn {
    /// Unique id (for timer heaps and logs).
    pub id: u64,
    /// Its addresses.
    pub tuple: FourTuple,
    /// The worker that processes its segments, timers and output.
    pub owner: usize,
    /// The control block and friends.
    pub inner: Mutex<ConnInner>,
    /// Signalled when readiness changes (blocking reads, writes, connects).
    pub cond: Condvar,
    /// Application threads blocked on `cond` (so the worker skips the futex call when
    /// nobody waits).
    pub waiters: std::sync::atomic::AtomicUsize,
    /// Already on its owner's output queue.
    pub output_queued: AtomicBool,
    /// The listener it came from (for the accept queue), until accepted.
    pub listener: Mutex<Option<Weak<Listener>>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id)
            .field("tuple", &self.tuple)
            .field("owner", &self.owner)
            .finish()
    }
}

impl Conn {
    /// Locks the control block (a poisoned lock is taken anyway: the state is still
    /// consistent enough to report errors and close).
    pub fn lock(&self) -> MutexGuard<'_, ConnInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks on the condition variable (up to `timeout`), counted in `waiters`. The
    /// count is raised while the lock is held, so a worker that changes state under the
    /// lock afterwards sees it and notifies.
    pub fn wait<'a>(
        &self,
        guard: MutexGuard<'a, ConnInner>,
        timeout: Option<std::time::Duration>,
    ) -> MutexGuard<'a, ConnInner> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let g = match timeout {
            None => self.cond.wait(guard).unwrap_or_else(|e| e.into_inner()),
            Some(t) => {
                self.cond
                    .wait_timeout(guard, t)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        g
    }

    /// Wakes blocked application threads and pollers. Call without the lock held.
    /// Returns true when a thread was blocked on the connection.
    pub fn wake(&self, sinks: Vec<(Arc<dyn ReadinessSink>, usize)>) -> bool {
        let blocked = self.waiters.load(Ordering::SeqCst) > 0;
        if blocked {
            self.cond.notify_all();
        }
        let polled = !sinks.is_empty();
        for (s, token) in sinks {
            s.notify(token);
        }
        blocked || polled
    }
}

impl ConnInner {
    /// Live poller registrations, for [`Conn::wake`].
    pub fn live_sinks(&mut self) -> Vec<(Arc<dyn ReadinessSink>, usize)> {
        self.sinks.retain(|(w, _)| w.strong_count() > 0);
        self.sinks
            .iter()
            .filter_map(|(w, t)| w.upgrade().map(|s| (s, *t)))
            .collect()
    }
}

/// A listening socket.
pub struct Listener {
    /// The address it listens on (0.0.0.0 for any of ours).
    pub local: SocketAddrV4,
    /// For a per-worker listener ([`PcbTable::listen_per_worker`]): the worker whose
    /// groups' new connections it accepts. `None` for a listener shared by all workers.
    pub worker: Option<usize>,
    /// Most connections waiting for accept() plus those still in SYN-RECEIVED.
    pub backlog: usize,
    /// Established connections not yet accepted.
    pub queue: Mutex<VecDeque<Arc<Conn>>>,
    /// Signalled when a connection is queued or the listener closes.
    pub cond: Condvar,
    /// Connections in SYN-RECEIVED for this listener.
    pub embryonic: AtomicU64,
    /// Closed by the application.
    pub closed: AtomicBool,
    /// Poller registrations.
    pub sinks: Mutex<Vec<(Weak<dyn ReadinessSink>, usize)>>,
    /// SYNs dropped because the backlog was full.
    pub overflows: AtomicU64,
    /// ECN for connections accepted from now on: 0 = the stack's setting, 1 = off,
    /// 2 = on (see [`Listener::ecn`]).
    ecn: AtomicU8,
}

impl Listener {
    /// This listener's ECN (RFC 3168) setting for connections whose SYN arrives from
    /// now on; `None` follows the stack-wide `TcpConfig::ecn`.
    pub fn ecn(&self) -> Option<bool> {
        match self.ecn.load(Ordering::Relaxed) {
            1 => Some(false),
            2 => Some(true),
            _ => None,
        }
    }

    /// Sets [`Listener::ecn`]. Connections already past their SYN keep what they
    /// negotiated.
    pub fn set_ecn(&self, on: Option<bool>) {
        let v = match on {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        };
        self.ecn.store(v, Ordering::Relaxed);
    }

    /// Wakes accept() callers and pollers.
    pub fn wake(&self) {
        self.cond.notify_all();
        let sinks: Vec<_> = {
            let mut s = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
            s.retain(|(w, _)| w.strong_count() > 0);
            s.iter()
                .filter_map(|(w, t)| w.upgrade().map(|x| (x, *t)))
                .collect()
        };
        for (s, t) in sinks {
            s.notify(t);
        }
    }

    /// True when the backlog has room for one more connection.
    pub fn has_room(&self) -> bool {
        let queued = self.queue.lock().map(|q| q.len()).unwrap_or(usize::MAX);
        queued + (self.embryonic.load(Ordering::Relaxed) as usize) < self.backlog
    }
}

/// Why a bind or connect could not get its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PcbError {
    /// The address/port is taken.
    #[error("address in use")]
    AddrInUse,
    /// No ephemeral port is free for this destination.
    #[error("no free ephemeral port")]
    NoPorts,
    /// The address is not one of the stack's.
    #[error("address not available")]
    AddrNotAvailable,
}

/// Ephemeral port range (Linux's default `ip_local_port_range`).
pub const EPHEMERAL: std::ops::RangeInclusive<u16> = 32768..=60999;

/// One pcbgroup (FreeBSD `in_pcbgroup`): the connections whose RSS hash maps to it,
/// and a replica of every listener (wildcard members of every group), behind the
/// group's own lock. A worker owns a set of groups; its hot path takes only their locks.
#[derive(Default)]
struct PcbGroup {
    conns: RwLock<HashMap<FourTuple, Arc<Conn>>>,
    listeners: RwLock<HashMap<SocketAddrV4, Arc<Listener>>>,
    /// IP packets of the group's flows placed on its owner (directly or handed off).
    packets: AtomicU64,
    /// Of those, packets that arrived on another worker's queue and were handed off.
    handoffs_in: AtomicU64,
    /// Packets of the group's flows dropped because the owner's netisr queue was full.
    qdrops: AtomicU64,
}

/// How RSS hashes map to groups and groups to workers: the device's indirection entry
/// `e` (of [`INDIRECTION_SIZE`]) sends a flow to queue `e mod nworkers`; entry `e` maps to
/// one of the groups that queue's worker owns (group `g` is owned by worker
/// `g mod nworkers`), so a group's connections always arrive on its owner's queue.
#[derive(Clone, Debug)]
pub struct GroupMap {
    entry_group: Vec<u16>,
    nworkers: usize,
    ngroups: usize,
}

impl GroupMap {
    /// `ngroups` is rounded up to a power of two of at least `nworkers`.
    pub fn new(nworkers: usize, ngroups: usize) -> GroupMap {
        let nworkers = nworkers.max(1);
        let ngroups = ngroups.max(nworkers).next_power_of_two();
        let entry_group = (0..INDIRECTION_SIZE)
            .map(|e| {
                let w = e % nworkers;
                let owned: Vec<usize> = (0..ngroups).filter(|g| g % nworkers == w).collect();
                owned[(e / nworkers) % owned.len()] as u16
            })
            .collect();
        GroupMap {
            entry_group,
            nworkers,
            ngroups,
        }
    }

    /// The group of an RSS hash.
    pub fn group(&self, hash: u32) -> usize {
        self.entry_group[hash as usize & (INDIRECTION_SIZE - 1)] as usize
    }

    /// The worker that owns a group.
    pub fn owner(&self, group: usize) -> usize {
        group % self.nworkers
    }

    /// Number of groups.
    pub fn ngroups(&self) -> usize {
        self.ngroups
    }

    /// Number of workers the groups are spread over.
    pub fn nworkers(&self) -> usize {
        self.nworkers
    }
}

/// One group's counters and owner (for `/stats` and the exit counters).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GroupStats {
    /// Group index.
    pub group: usize,
    /// Owning worker.
    pub worker: usize,
    /// Connections in the group.
    pub connections: usize,
    /// IP packets of the group's flows placed on its owner, directly or handed off.
    pub packets: u64,
    /// Of `packets`, those handed to the owner from another worker's queue.
    pub handoffs_in: u64,
    /// Packets of the group's flows dropped at the owner's full netisr queue.
    pub qdrops: u64,
}

impl GroupStats {
    /// Nothing happened in this group (left out of compact output).
    pub fn is_empty(&self) -> bool {
        self.connections == 0 && self.packets == 0 && self.qdrops == 0
    }
}

/// The listeners bound to one address: one shared listener, or one per worker.
type ListenSet = Vec<Arc<Listener>>;

/// The connection and listener tables of one stack, partitioned into pcbgroups by the
/// RSS hash of the 4-tuple (as received: the peer is the source), plus a reservation
/// table that keeps 4-tuples unique across groups and serves port allocation.
pub struct PcbTable {
    groups: Box<[CachePadded<PcbGroup>]>,
    map: GroupMap,
    rss: Arc<Toeplitz>,
    /// Every 4-tuple in use, for uniqueness and ephemeral-port choice.
    reservations: Mutex<HashSet<FourTuple>>,
    /// The listeners by address (the groups hold replicas: for a per-worker set, each
    /// group holds the member its owner accepts on).
    listeners: RwLock<HashMap<SocketAddrV4, ListenSet>>,
    next_id: AtomicU64,
    next_port: AtomicU64,
}

impl Default for PcbTable {
    fn default() -> Self {
        PcbTable::new()
    }
}

impl PcbTable {
    /// A one-worker table with one group and the default RSS key.
    pub fn new() -> Self {
        Self::with_groups(GroupMap::new(1, 1), Arc::new(Toeplitz::default()))
    }

    /// A table with the given group map, hashing with `rss`.
    pub fn with_groups(map: GroupMap, rss: Arc<Toeplitz>) -> Self {
        PcbTable {
            groups: (0..map.ngroups())
                .map(|_| CachePadded::new(PcbGroup::default()))
                .collect(),
            map,
            rss,
            reservations: Mutex::new(HashSet::new()),
            listeners: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            next_port: AtomicU64::new(0),
        }
    }

    /// The group map.
    pub fn group_map(&self) -> &GroupMap {
        &self.map
    }

    /// The group of a connection's tuple.
    pub fn group_of(&self, tuple: &FourTuple) -> usize {
        let (l, r) = (tuple.local, tuple.remote);
        self.map
            .group(self.rss.ipv4_ports(*r.ip(), *l.ip(), r.port(), l.port()))
    }

    fn group(&self, tuple: &FourTuple) -> &PcbGroup {
        &self.groups[self.group_of(tuple)]
    }

    /// The connection for a segment's addresses (takes only its group's lock).
    pub fn lookup(&self, tuple: &FourTuple) -> Option<Arc<Conn>> {
        self.group(tuple)
            .conns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tuple)
            .cloned()
    }

    /// The listener for a segment that matched no connection: exact local address
    /// first, then the wildcard (from the group's replica).
    pub fn lookup_listener(&self, tuple: &FourTuple) -> Option<Arc<Listener>> {
        let local = tuple.local;
        let l = self
            .group(tuple)
            .listeners
            .read()
            .unwrap_or_else(|e| e.into_inner());
        l.get(&local)
            .or_else(|| l.get(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, local.port())))
            .filter(|l| !l.closed.load(Ordering::Relaxed))
            .cloned()
    }

    /// Inserts a connection; fails if its 4-tuple is taken.
    pub fn insert(&self, tuple: FourTuple, owner: usize, tcb: Tcb) -> Result<Arc<Conn>, PcbError> {
        if !self
            .reservations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tuple)
        {
            return Err(PcbError::AddrInUse);
        }
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            tuple,
            owner,
            inner: Mutex::new(ConnInner {
                tcb,
                scheduled: None,
                sinks: Vec::new(),
                orphaned: false,
            }),
            cond: Condvar::new(),
            waiters: std::sync::atomic::AtomicUsize::new(0),
            output_queued: AtomicBool::new(false),
            listener: Mutex::new(None),
        });
        self.group(&tuple)
            .conns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tuple, conn.clone());
        Ok(conn)
    }

    /// Removes a connection (when its control block is dead).
    pub fn remove(&self, conn: &Conn) {
        let removed = {
            let mut conns = self
                .group(&conn.tuple)
                .conns
                .write()
                .unwrap_or_else(|e| e.into_inner());
            if conns.get(&conn.tuple).is_some_and(|c| c.id == conn.id) {
                conns.remove(&conn.tuple);
                true
            } else {
                false
            }
        };
        if removed {
            self.reservations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&conn.tuple);
        }
    }

    /// Number of connections (any state).
    pub fn len(&self) -> usize {
        self.reservations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// True when there are no connections.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All connections (for statistics and shutdown).
    pub fn all(&self) -> Vec<Arc<Conn>> {
        self.groups
            .iter()
            .flat_map(|g| {
                g.conns
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Counts connections per state.
    pub fn states(&self) -> Vec<(&'static str, usize)> {
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for c in self.all() {
            *counts.entry(c.lock().tcb.state().name()).or_default() += 1;
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort();
        v
    }

    /// Connections per group.
    pub fn group_stats(&self) -> Vec<GroupStats> {
        self.groups
            .iter()
            .enumerate()
            .map(|(g, grp)| GroupStats {
                group: g,
                worker: self.map.owner(g),
                connections: grp.conns.read().unwrap_or_else(|e| e.into_inner()).len(),
                packets: grp.packets.load(Ordering::Relaxed),
                handoffs_in: grp.handoffs_in.load(Ordering::Relaxed),
                qdrops: grp.qdrops.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Counts one IP packet of the flow with RSS hash `hash` in its group: where netisr
    /// placed it (the FLOW observer of a stack, or the simulator).
    pub fn note_flow(&self, hash: u32, event: FlowEvent) {
        let g = &self.groups[self.map.group(hash)];
        match event {
            FlowEvent::Direct => {
                g.packets.fetch_add(1, Ordering::Relaxed);
            }
            FlowEvent::HandedOff => {
                g.packets.fetch_add(1, Ordering::Relaxed);
                g.handoffs_in.fetch_add(1, Ordering::Relaxed);
            }
            FlowEvent::QDropped => {
                g.qdrops.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Adds a listener. Fails if the address (or, for a wildcard, the port on any
    /// address) is already listened on.
    pub fn listen(&self, local: SocketAddrV4, backlog: usize) -> Result<Arc<Listener>, PcbError> {
        let mut set = self.listen_set(local, backlog, &[None])?;
        Ok(set.remove(0))
    }

    /// Adds one listener per worker on the same address, like a socket per worker with
    /// Linux's `SO_REUSEPORT` or FreeBSD's `SO_REUSEPORT_LB`, except that the choice among
    /// them is not a separate hash: a new connection goes to the listener of the worker
    /// that owns its pcbgroup, so the worker's own application thread accepts the
    /// connections that worker serves. Returns the listeners in worker order.
    ///
    /// Closing one member ([`PcbTable::unlisten`]) takes it out of the set, as closing
    /// one socket of a reuseport group does: its groups' new connections go to the next
    /// open member (in worker order, wrapping), the others carry on untouched. The
    /// address is free again once every member is closed. Fails like
    /// [`PcbTable::listen`] if the address is taken (a per-worker set cannot be joined
    /// later, unlike `SO_REUSEPORT`: its size is the worker count).
    pub fn listen_per_worker(
        &self,
        local: SocketAddrV4,
        backlog: usize,
    ) -> Result<Vec<Arc<Listener>>, PcbError> {
        let workers: Vec<Option<usize>> = (0..self.map.nworkers()).map(Some).collect();
        self.listen_set(local, backlog, &workers)
    }

    fn listen_set(
        &self,
        local: SocketAddrV4,
        backlog: usize,
        workers: &[Option<usize>],
    ) -> Result<Vec<Arc<Listener>>, PcbError> {
        let mut l = self.listeners.write().unwrap_or_else(|e| e.into_inner());
        l.retain(|_, set| set.iter().any(|x| !x.closed.load(Ordering::Relaxed)));
        let clash = l.keys().any(|k| {
            k.port() == local.port()
                && (k.ip() == local.ip() || k.ip().is_unspecified() || local.ip().is_unspecified())
        });
        if clash {
            return Err(PcbError::AddrInUse);
        }
        let set: ListenSet = workers
            .iter()
            .map(|&worker| {
                Arc::new(Listener {
                    local,
                    worker,
                    backlog: backlog.max(1),
                    queue: Mutex::new(VecDeque::new()),
                    cond: Condvar::new(),
                    embryonic: AtomicU64::new(0),
                    closed: AtomicBool::new(false),
                    sinks: Mutex::new(Vec::new()),
                    ecn: AtomicU8::new(0),
                    overflows: AtomicU64::new(0),
                })
            })
            .collect();
        self.place_replicas(local, &set);
        l.insert(local, set.clone());
        Ok(set)
    }

    /// Puts into every group the member of `set` that takes the group's new
    /// connections (a wildcard member of every group): a shared listener everywhere; for
    /// a per-worker set the owner's listener, or the next open one after it. Removes the
    /// address from the groups when no member is open. Called with the listeners lock
    /// held, so replicas change in one piece with the set.
    fn place_replicas(&self, local: SocketAddrV4, set: &ListenSet) {
        let open = |x: &&Arc<Listener>| !x.closed.load(Ordering::Relaxed);
        for (g, grp) in self.groups.iter().enumerate() {
            let owner = self.map.owner(g);
            let n = set.len().max(1);
            let pick = (0..set.len())
                .map(|k| &set[(owner % n + k) % n])
                .find(open)
                .cloned();
            let mut gl = grp.listeners.write().unwrap_or_else(|e| e.into_inner());
            match pick {
                Some(x) => gl.insert(local, x),
                None => gl.remove(&local),
            };
        }
    }

    /// Closes a listener: it takes no new connections. If it belongs to a per-worker set
    /// with open members left, its groups move to another member; otherwise the address
    /// is free.
    pub fn unlisten(&self, listener: &Listener) {
        listener.closed.store(true, Ordering::Relaxed);
        let mut l = self.listeners.write().unwrap_or_else(|e| e.into_inner());
        let ours = l
            .get(&listener.local)
            .is_some_and(|set| set.iter().any(|x| std::ptr::eq(&**x, listener)));
        if ours {
            let set = l.get(&listener.local).cloned().unwrap_or_default();
            self.place_replicas(listener.local, &set);
            if set.iter().all(|x| x.closed.load(Ordering::Relaxed)) {
                l.remove(&listener.local);
            }
        }
        drop(l);
        listener.wake();
    }

    /// Picks an ephemeral port for `local_ip` -> `remote` whose 4-tuple is free --
    /// including connections in TIME-WAIT, so a new connection never reuses a tuple
    /// whose old incarnation may still have segments in the network. `accept` lets
    /// the caller add a constraint (e.g. the reply must hash to a given worker); if no
    /// port satisfies it, any free port is taken.
    pub fn pick_port(
        &self,
        local_ip: Ipv4Addr,
        remote: SocketAddrV4,
        accept: &dyn Fn(u16) -> bool,
    ) -> Result<u16, PcbError> {
        let reserved = self.reservations.lock().unwrap_or_else(|e| e.into_inner());
        let listeners = self.listeners.read().unwrap_or_else(|e| e.into_inner());
        let span = (*EPHEMERAL.end() - *EPHEMERAL.start()) as u64 + 1;
        let start = self.next_port.fetch_add(1, Ordering::Relaxed);
        let free = |p: u16| {
            let tuple = FourTuple {
                local: SocketAddrV4::new(local_ip, p),
                remote,
            };
            !reserved.contains(&tuple)
                && !listeners
                    .keys()
                    .any(|k| k.port() == p && (k.ip() == &local_ip || k.ip().is_unspecified()))
        };
        let mut fallback = None;
        for i in 0..span {
            let p = *EPHEMERAL.start() + ((start + i) % span) as u16;
            if !free(p) {
                continue;
            }
            if accept(p) {
                self.next_port.store(start + i + 1, Ordering::Relaxed);
                return Ok(p);
            }
            if fallback.is_none() {
                fallback = Some(p);
            }
            // Do not scan the whole range for an aligned port.
            if i > 4096 && fallback.is_some() {
                break;
            }
        }
        fallback.ok_or(PcbError::NoPorts)
    }
}

/// True when a connection in this state still owns its 4-tuple.
pub fn holds_tuple(state: State) -> bool {
    state != State::Closed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::seq::Seq;
    use std::time::Instant;

    fn tcb(local: SocketAddrV4, remote: SocketAddrV4) -> Tcb {
        let cc = xstack_cc::Registry::with_builtins().create_default();
        Tcb::connect(
            Default::default(),
            local,
            remote,
            Seq(1),
            cc,
            Instant::now(),
        )
    }

    #[test]
    fn group_owner_is_the_rss_queue_for_any_worker_count() {
        for nworkers in 1..=6 {
            for ngroups in [1, 2, 4, 8, 16, 64] {
                let map = GroupMap::new(nworkers, ngroups);
                assert!(map.ngroups().is_power_of_two() && map.ngroups() >= nworkers);
                for h in (0u32..4096).map(|x| x.wrapping_mul(0x9e37_79b9)) {
                    assert_eq!(
                        map.owner(map.group(h)),
                        Toeplitz::queue_of(h, nworkers),
                        "{nworkers} workers {ngroups} groups"
                    );
                }
                // Every group is reachable from the indirection table.
                let mut seen = vec![false; map.ngroups()];
                for e in 0..INDIRECTION_SIZE as u32 {
                    seen[map.group(e)] = true;
                }
                assert!(
                    seen.iter().all(|&s| s),
                    "{nworkers} workers {ngroups} groups: {seen:?}"
                );
            }
        }
    }

    #[test]
    fn concurrent_connects_never_share_a_tuple() {
        let table = Arc::new(PcbTable::with_groups(
            GroupMap::new(4, 16),
            Arc::new(Toeplitz::default()),
        ));
        let local_ip = Ipv4Addr::new(198, 18, 0, 1);
        let remote = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 80);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let t = table.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for _ in 0..500 {
                        // pick_port and insert race with the other threads: a lost race
                        // must show up as AddrInUse, never as a shared tuple.
                        let Ok(p) = t.pick_port(local_ip, remote, &|_| true) else {
                            continue;
                        };
                        let local = SocketAddrV4::new(local_ip, p);
                        if let Ok(c) = t.insert(FourTuple { local, remote }, 0, tcb(local, remote))
                        {
                            mine.push(c.tuple);
                        }
                    }
                    mine
                })
            })
            .collect();
        let all: Vec<FourTuple> = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let unique: HashSet<_> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len());
        assert_eq!(table.len(), all.len());
        assert_eq!(table.all().len(), all.len());
        // Each connection sits in the group its hash names.
        for c in table.all() {
            assert!(table.lookup(&c.tuple).is_some_and(|x| x.id == c.id));
        }
        let per_group: usize = table.group_stats().iter().map(|g| g.connections).sum();
        assert_eq!(per_group, all.len());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// The reservation table keeps 4-tuples unique under any interleaving of
        /// concurrent connects and closes: threads pick ports towards a few remotes
        /// (aligned to a random worker, falling back to any port) and close a random
        /// share of their connections as they go; at the end every live tuple is
        /// distinct, findable, and counted once.
        #[test]
        fn reservations_stay_unique_under_concurrent_connects_and_closes(
            nthreads in 2usize..6,
            ops in 20usize..200,
            nremotes in 1u16..4,
            close_every in 2usize..7,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let table = Arc::new(PcbTable::with_groups(
                GroupMap::new(4, 16),
                Arc::new(Toeplitz::default()),
            ));
            let local_ip = Ipv4Addr::new(198, 18, 0, 1);
            let threads: Vec<_> = (0..nthreads)
                .map(|t| {
                    let table = table.clone();
                    std::thread::spawn(move || {
                        let mut live: Vec<Arc<Conn>> = Vec::new();
                        let mut x = seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                        for i in 0..ops {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let remote = SocketAddrV4::new(
                                Ipv4Addr::new(198, 18, 0, 2),
                                80 + (x % nremotes as u64) as u16,
                            );
                            let want = (x >> 8) as usize % 4;
                            let rss = table.rss.clone();
                            let aligned = move |p: u16| {
                                let h = rss.ipv4_ports(*remote.ip(), local_ip, remote.port(), p);
                                Toeplitz::queue_of(h, 4) == want
                            };
                            if let Ok(p) = table.pick_port(local_ip, remote, &aligned) {
                                let local = SocketAddrV4::new(local_ip, p);
                                if let Ok(c) =
                                    table.insert(FourTuple { local, remote }, 0, tcb(local, remote))
                                {
                                    live.push(c);
                                }
                            }
                            if i % close_every == 0 && !live.is_empty() {
                                let c = live.swap_remove((x >> 16) as usize % live.len());
                                table.remove(&c);
                            }
                        }
                        live.into_iter().map(|c| c.tuple).collect::<Vec<_>>()
                    })
                })
                .collect();
            let all: Vec<FourTuple> = threads
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            let unique: HashSet<_> = all.iter().copied().collect();
            proptest::prop_assert_eq!(unique.len(), all.len());
            proptest::prop_assert_eq!(table.len(), all.len());
            for t in &all {
                proptest::prop_assert!(table.lookup(t).is_some());
            }
        }
    }

    #[test]
    fn listeners_are_members_of_every_group_and_leave_all() {
        let table = PcbTable::with_groups(GroupMap::new(2, 8), Arc::new(Toeplitz::default()));
        let l = table
            .listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 16)
            .unwrap();
        let local = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 80);
        for p in 1000..1100 {
            let tuple = FourTuple {
                local,
                remote: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), p),
            };
            assert!(table.lookup_listener(&tuple).is_some());
        }
        table.unlisten(&l);
        let tuple = FourTuple {
            local,
            remote: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 1000),
        };
        assert!(table.lookup_listener(&tuple).is_none());
        assert!(table
            .listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), 16)
            .is_ok());
    }

    fn tuple_from(port: u16) -> FourTuple {
        FourTuple {
            local: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 80),
            remote: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), port),
        }
    }

    #[test]
    fn per_worker_listeners_take_their_own_groups_and_survive_a_sibling_closing() {
        let table = PcbTable::with_groups(GroupMap::new(4, 16), Arc::new(Toeplitz::default()));
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80);
        let set = table.listen_per_worker(any, 16).unwrap();
        assert_eq!(set.len(), 4);
        // The address is taken, for a shared listener and for another set alike.
        assert_eq!(table.listen(any, 16).err(), Some(PcbError::AddrInUse));
        assert_eq!(
            table.listen_per_worker(any, 16).err(),
            Some(PcbError::AddrInUse)
        );
        let owner = |t: &FourTuple| table.group_map().owner(table.group_of(t));
        let taker = |t: &FourTuple| table.lookup_listener(t).and_then(|l| l.worker);
        for p in 1000..1400 {
            let t = tuple_from(p);
            assert_eq!(taker(&t), Some(owner(&t)), "port {p}");
        }
        // Worker 1's listener closes: its groups go to worker 2's, the rest stay.
        table.unlisten(&set[1]);
        for p in 1000..1400 {
            let t = tuple_from(p);
            let want = if owner(&t) == 1 { 2 } else { owner(&t) };
            assert_eq!(taker(&t), Some(want), "port {p}");
        }
        // Closing 2 and 3 too: everything wraps round to worker 0's.
        table.unlisten(&set[2]);
        table.unlisten(&set[3]);
        assert!((1000..1100).all(|p| taker(&tuple_from(p)) == Some(0)));
        assert_eq!(table.listen(any, 16).err(), Some(PcbError::AddrInUse));
        // The last one closes: the port is free again.
        table.unlisten(&set[0]);
        assert!(table.lookup_listener(&tuple_from(1000)).is_none());
        let shared = table.listen(any, 16).unwrap();
        assert_eq!(shared.worker, None);
        assert!(table
            .lookup_listener(&tuple_from(1000))
            .is_some_and(|l| Arc::ptr_eq(&l, &shared)));
    }

    #[test]
    fn group_counters_follow_the_flow_hash() {
        let table = PcbTable::with_groups(GroupMap::new(2, 4), Arc::new(Toeplitz::default()));
        let t = tuple_from(4242);
        let (l, r) = (t.local, t.remote);
        let hash = Toeplitz::default().ipv4_ports(*r.ip(), *l.ip(), r.port(), l.port());
        table.note_flow(hash, FlowEvent::Direct);
        table.note_flow(hash, FlowEvent::HandedOff);
        table.note_flow(hash, FlowEvent::QDropped);
        let g = table.group_of(&t);
        let stats = table.group_stats();
        assert_eq!(
            (stats[g].packets, stats[g].handoffs_in, stats[g].qdrops),
            (2, 1, 1)
        );
        assert_eq!(stats.iter().filter(|s| !s.is_empty()).count(), 1);
    }
}
