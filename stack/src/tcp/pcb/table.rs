//! The connection and listener table: lookup, insertion, listeners and ephemeral
//! ports.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use crossbeam::utils::CachePadded;

use super::group::PcbGroup;
use super::ports::PortSelector;
use super::{Conn, ConnInner, FourTuple, GroupMap, Listener, PcbError, EPHEMERAL};
use crate::rss::Toeplitz;
use crate::tcp::tcb::Tcb;

/// The listeners bound to one address: one shared listener, or one per worker.
type ListenSet = Vec<Arc<Listener>>;

/// The connection and listener tables of one stack, partitioned into pcbgroups by the
/// RSS hash of the 4-tuple (as received: the peer is the source), plus a reservation
/// table that keeps 4-tuples unique across groups and serves port allocation.
pub struct PcbTable {
    pub(super) groups: Box<[CachePadded<PcbGroup>]>,
    pub(super) map: GroupMap,
    pub(super) rss: Arc<Toeplitz>,
    /// Every 4-tuple in use, for uniqueness and ephemeral-port choice.
    reservations: Mutex<HashSet<FourTuple>>,
    /// The listeners by address (the groups hold replicas: for a per-worker set, each
    /// group holds the member its owner accepts on).
    listeners: RwLock<HashMap<SocketAddrV4, ListenSet>>,
    next_id: AtomicU64,
    /// Where ephemeral port searches start (RFC 6056 algorithm 4).
    ports: PortSelector,
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
            ports: PortSelector::new(),
        }
    }

    /// Replaces the ephemeral-port secret with `key` (a reproducible simulation).
    pub fn set_port_key(&mut self, key: [u8; 16]) {
        self.ports = PortSelector::with_key(key);
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

    /// The addresses listened on (by an open listener).
    pub fn listening(&self) -> Vec<SocketAddrV4> {
        let l = self.listeners.read().unwrap_or_else(|e| e.into_inner());
        l.iter()
            .filter(|(_, set)| set.iter().any(|x| !x.closed.load(Ordering::Relaxed)))
            .map(|(a, _)| *a)
            .collect()
    }

    /// An open listener on exactly `local` (the first open member of a per-worker set).
    pub fn open_listener(&self, local: SocketAddrV4) -> Option<Arc<Listener>> {
        let l = self.listeners.read().unwrap_or_else(|e| e.into_inner());
        l.get(&local)?
            .iter()
            .find(|x| !x.closed.load(Ordering::Relaxed))
            .cloned()
    }

    /// Connections held (4-tuples reserved), what `max_connections` bounds.
    pub fn held(&self) -> usize {
        self.reservations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Inserts a connection; fails if its 4-tuple is taken, or if the table holds the
    /// connection's `max_connections` (counted in `tcp.conns_refused_limit`: an active
    /// open reports it, a passive one drops the SYN).
    pub fn insert(&self, tuple: FourTuple, owner: usize, tcb: Tcb) -> Result<Arc<Conn>, PcbError> {
        {
            let mut reserved = self.reservations.lock().unwrap_or_else(|e| e.into_inner());
            if reserved.contains(&tuple) {
                return Err(PcbError::AddrInUse);
            }
            let cfg = tcb.config();
            if reserved.len() >= cfg.max_connections {
                cfg.bounds.count(|c| &c.conns_refused);
                return Err(PcbError::ConnLimit(cfg.max_connections));
            }
            reserved.insert(tuple);
        }
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            tuple,
            owner,
            inner: Mutex::new(ConnInner {
                tcb,
                scheduled: None,
                sinks: Vec::new(),
                readiness: None,
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
    #[cfg(test)]
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
                    waiters: std::sync::atomic::AtomicUsize::new(0),
                    embryonic: AtomicU64::new(0),
                    closed: AtomicBool::new(false),
                    sinks: Mutex::new(Vec::new()),
                    readiness: Mutex::new(None),
                    ecn: AtomicU8::new(0),
                    no_options: AtomicBool::new(false),
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
    /// whose old incarnation may still have segments in the network. The search
    /// starts where RFC 6056's algorithm 4 says (`tcp/pcb/ports.rs`): a secret
    /// offset per destination plus that destination's increment. `accept` lets the
    /// caller add a constraint (e.g. the reply must hash to a given worker); if no
    /// port satisfies it, any free port is taken.
    pub fn pick_port(
        &self,
        local_ip: Ipv4Addr,
        remote: SocketAddrV4,
        accept: &dyn Fn(u16) -> bool,
    ) -> Result<u16, PcbError> {
        let reserved = self.reservations.lock().unwrap_or_else(|e| e.into_inner());
        let listeners = self.listeners.read().unwrap_or_else(|e| e.into_inner());
        let span = (*EPHEMERAL.end() - *EPHEMERAL.start()) as u32 + 1;
        let (slot, start) = self.ports.start(local_ip, remote, span);
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
                self.ports.advance(slot, i + 1);
                return Ok(p);
            }
            if fallback.is_none() {
                fallback = Some((p, i));
            }
            // Do not scan the whole range for an aligned port.
            if i > 4096 && fallback.is_some() {
                break;
            }
        }
        let (p, i) = fallback.ok_or(PcbError::NoPorts)?;
        self.ports.advance(slot, i + 1);
        Ok(p)
    }
}
