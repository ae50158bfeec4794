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

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::time::Instant;

use super::tcb::{State, Tcb};

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
            Some(t) => self.cond.wait_timeout(guard, t).unwrap_or_else(|e| e.into_inner()).0,
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
}

impl Listener {
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

/// The connection and listener tables of one stack.
#[derive(Default)]
pub struct PcbTable {
    conns: RwLock<HashMap<FourTuple, Arc<Conn>>>,
    listeners: RwLock<HashMap<SocketAddrV4, Arc<Listener>>>,
    next_id: AtomicU64,
    next_port: AtomicU64,
}

impl PcbTable {
    /// An empty table.
    pub fn new() -> Self {
        PcbTable::default()
    }

    /// The connection for a segment's addresses.
    pub fn lookup(&self, tuple: &FourTuple) -> Option<Arc<Conn>> {
        self.conns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tuple)
            .cloned()
    }

    /// The listener for a local address: exact match first, then the wildcard.
    pub fn lookup_listener(&self, local: SocketAddrV4) -> Option<Arc<Listener>> {
        let l = self.listeners.read().unwrap_or_else(|e| e.into_inner());
        l.get(&local)
            .or_else(|| l.get(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, local.port())))
            .filter(|l| !l.closed.load(Ordering::Relaxed))
            .cloned()
    }

    /// Inserts a connection; fails if its 4-tuple is taken.
    pub fn insert(&self, tuple: FourTuple, owner: usize, tcb: Tcb) -> Result<Arc<Conn>, PcbError> {
        let mut conns = self.conns.write().unwrap_or_else(|e| e.into_inner());
        if conns.contains_key(&tuple) {
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
        conns.insert(tuple, conn.clone());
        Ok(conn)
    }

    /// Removes a connection (when its control block is dead).
    pub fn remove(&self, conn: &Conn) {
        let mut conns = self.conns.write().unwrap_or_else(|e| e.into_inner());
        if conns.get(&conn.tuple).is_some_and(|c| c.id == conn.id) {
            conns.remove(&conn.tuple);
        }
    }

    /// Number of connections (any state).
    pub fn len(&self) -> usize {
        self.conns.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when there are no connections.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts connections per state.
    pub fn states(&self) -> Vec<(&'static str, usize)> {
        let conns: Vec<Arc<Conn>> = self
            .conns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for c in conns {
            *counts.entry(c.lock().tcb.state().name()).or_default() += 1;
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort();
        v
    }

    /// All connections (for timers sweeps and shutdown).
    pub fn all(&self) -> Vec<Arc<Conn>> {
        self.conns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Adds a listener. Fails if the address (or, for a wildcard, the port on any
    /// address) is already listened on.
    pub fn listen(&self, local: SocketAddrV4, backlog: usize) -> Result<Arc<Listener>, PcbError> {
        let mut l = self.listeners.write().unwrap_or_else(|e| e.into_inner());
        l.retain(|_, x| !x.closed.load(Ordering::Relaxed));
        let clash = l.keys().any(|k| {
            k.port() == local.port()
                && (k.ip() == local.ip() || k.ip().is_unspecified() || local.ip().is_unspecified())
        });
        if clash {
            return Err(PcbError::AddrInUse);
        }
        let listener = Arc::new(Listener {
            local,
            backlog: backlog.max(1),
            queue: Mutex::new(VecDeque::new()),
            cond: Condvar::new(),
            embryonic: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            sinks: Mutex::new(Vec::new()),
            overflows: AtomicU64::new(0),
        });
        l.insert(local, listener.clone());
        Ok(listener)
    }

    /// Removes a listener.
    pub fn unlisten(&self, listener: &Listener) {
        listener.closed.store(true, Ordering::Relaxed);
        let mut l = self.listeners.write().unwrap_or_else(|e| e.into_inner());
        if l.get(&listener.local)
            .is_some_and(|x| std::ptr::eq(&**x, listener))
        {
            l.remove(&listener.local);
        }
        listener.wake();
    }

    /// Picks an ephemeral port for `local_ip` -> `remote` whose 4-tuple is free --
    /// including connections in TIME-WAIT, so a new connection never reuses a tuple
    /// whose old incarnation may still have segments in the network. `accept` lets
    /// the caller add a constraint (e.g. the port must hash to a given worker); if no
    /// port satisfies it, any free port is taken.
    pub fn pick_port(
        &self,
        local_ip: Ipv4Addr,
        remote: SocketAddrV4,
        accept: &dyn Fn(u16) -> bool,
    ) -> Result<u16, PcbError> {
        let conns = self.conns.read().unwrap_or_else(|e| e.into_inner());
        let listeners = self.listeners.read().unwrap_or_else(|e| e.into_inner());
        let span = (*EPHEMERAL.end() - *EPHEMERAL.start()) as u64 + 1;
        let start = self.next_port.fetch_add(1, Ordering::Relaxed);
        let free = |p: u16| {
            let tuple = FourTuple {
                local: SocketAddrV4::new(local_ip, p),
                remote,
            };
            !conns.contains_key(&tuple)
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

    /// True when some connection or listener uses this local address and port.
    pub fn local_in_use(&self, local: SocketAddrV4) -> bool {
        self.conns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .any(|t| t.local == local && !matches!(local.port(), 0))
    }
}

/// True when a connection in this state still owns its 4-tuple.
pub fn holds_tuple(state: State) -> bool {
    state != State::Closed
}
