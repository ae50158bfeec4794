//! The connection object worker and application threads share, and listening sockets
//! with their accept queues.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Instant;

use crate::socket::ReadinessFd;
use crate::tcp::tcb::Tcb;

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
    /// The handle's readiness fd (mio, tokio), written by the worker when readiness
    /// changes while it is armed (`socket/readiness.rs`).
    pub readiness: Option<Arc<ReadinessFd>>,
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
    /// For a per-worker listener ([`PcbTable::listen_per_worker`](super::PcbTable::listen_per_worker)): the worker whose
    /// groups' new connections it accepts. `None` for a listener shared by all workers.
    pub worker: Option<usize>,
    /// Most connections waiting for accept() plus those still in SYN-RECEIVED.
    pub backlog: usize,
    /// Established connections not yet accepted.
    pub queue: Mutex<VecDeque<Arc<Conn>>>,
    /// Signalled when a connection is queued or the listener closes.
    pub cond: Condvar,
    /// Threads blocked in accept on `cond`, raised under the `queue` lock (so a worker
    /// queueing a connection afterwards sees it): with none, queueing a connection
    /// makes no futex call.
    pub waiters: AtomicUsize,
    /// Connections in SYN-RECEIVED for this listener.
    pub embryonic: AtomicU64,
    /// Closed by the application.
    pub closed: AtomicBool,
    /// Poller registrations.
    pub sinks: Mutex<Vec<(Weak<dyn ReadinessSink>, usize)>>,
    /// The handle's readiness fd (mio, tokio), armed under the `queue` lock by an
    /// accept that found nothing (`socket/readiness.rs`).
    pub readiness: Mutex<Option<Arc<ReadinessFd>>>,
    /// SYNs dropped because the backlog was full.
    pub overflows: AtomicU64,
    /// ECN for connections accepted from now on: 0 = the stack's setting, 1 = off,
    /// 2 = on (see [`Listener::ecn`]).
    pub(super) ecn: AtomicU8,
    /// Connections accepted from now on send and take up no TCP options
    /// (`TcpConfig::no_options`).
    pub no_options: AtomicBool,
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

    /// Wakes accept() callers and pollers. Call after changing the queue (or `closed`)
    /// under the queue lock.
    pub fn wake(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 || self.closed.load(Ordering::SeqCst) {
            self.cond.notify_all();
        }
        let fd = self
            .readiness
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(fd) = fd {
            fd.notify();
        }
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
