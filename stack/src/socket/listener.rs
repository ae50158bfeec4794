//! `TcpListener`: a listening socket with an accept queue, `std::net`-like.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::stream::TcpStream;
use super::{pcb_error, NetStack};
use crate::tcp::pcb::Listener;

/// Default backlog (Linux's SOMAXCONN).
pub const DEFAULT_BACKLOG: usize = 4096;

/// A listening TCP socket. `accept` may be called from several threads at once.
pub struct TcpListener {
    pub(crate) listener: Arc<Listener>,
    pub(crate) net: NetStack,
    nonblocking: AtomicBool,
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.listener.local)
            .finish()
    }
}

impl TcpListener {
    /// Listens on `addr` (0.0.0.0 for every address of the stack) with the default
    /// backlog.
    pub fn bind(net: impl AsRef<NetStack>, addr: impl Into<SocketAddr>) -> io::Result<TcpListener> {
        Self::bind_with_backlog(net, addr, DEFAULT_BACKLOG)
    }

    /// Listens with an explicit backlog: established connections waiting for accept
    /// plus handshakes in progress; SYNs beyond it are dropped and counted.
    pub fn bind_with_backlog(
        net: impl AsRef<NetStack>,
        addr: impl Into<SocketAddr>,
        backlog: usize,
    ) -> io::Result<TcpListener> {
        let net = net.as_ref();
        let local = check_bind_addr(net, addr.into())?;
        let listener = net.tcp.pcbs.listen(local, backlog).map_err(pcb_error)?;
        net.tcp.sync_syn_offload(local);
        Ok(TcpListener::new(net, listener))
    }

    /// One listener per worker on `addr` (the `SO_REUSEPORT` pattern, with the default
    /// backlog each), in worker order: element `w` accepts exactly the new connections
    /// that worker `w` owns (their pcbgroup is `w`'s), so an application thread per
    /// worker serves the connections of "its" core and an accept queue is never shared
    /// between threads.
    ///
    /// Semantics, after FreeBSD's `SO_REUSEPORT_LB` and Linux's `SO_REUSEPORT`:
    /// - the set takes the address as a whole: binding it again (shared or per worker)
    ///   fails with `AddrInUse` while any member is open;
    /// - dropping one member closes it alone: connections waiting in its accept queue
    ///   are reset (as for any closed listener), and its workers' new connections go to
    ///   the next open member in worker order (wrapping round), so the others keep
    ///   serving and no SYN is refused while one member is open;
    /// - once every member is dropped the address is free again.
    ///
    /// A connection accepted on another worker's listener (after a member closed) works
    /// like any other: handles are usable from any thread.
    pub fn bind_per_worker(
        net: impl AsRef<NetStack>,
        addr: impl Into<SocketAddr>,
    ) -> io::Result<Vec<TcpListener>> {
        Self::bind_per_worker_with_backlog(net, addr, DEFAULT_BACKLOG)
    }

    /// As [`TcpListener::bind_per_worker`], with `backlog` for each member.
    pub fn bind_per_worker_with_backlog(
        net: impl AsRef<NetStack>,
        addr: impl Into<SocketAddr>,
        backlog: usize,
    ) -> io::Result<Vec<TcpListener>> {
        let net = net.as_ref();
        let local = check_bind_addr(net, addr.into())?;
        let set = net
            .tcp
            .pcbs
            .listen_per_worker(local, backlog)
            .map_err(pcb_error)?;
        net.tcp.sync_syn_offload(local);
        Ok(set.into_iter().map(|l| TcpListener::new(net, l)).collect())
    }

    fn new(net: &NetStack, listener: Arc<Listener>) -> TcpListener {
        TcpListener {
            listener,
            net: net.clone(),
            nonblocking: AtomicBool::new(false),
        }
    }

    /// The worker whose connections this listener accepts, for one made by
    /// [`TcpListener::bind_per_worker`]; `None` for a listener shared by all workers.
    pub fn worker(&self) -> Option<usize> {
        self.listener.worker
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.listener.local))
    }

    /// Non-blocking mode: `accept` returns `WouldBlock` when nothing is queued.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.nonblocking.store(on, Ordering::Relaxed);
        Ok(())
    }

    /// Waits for a connection.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.accept_timeout(None)
    }

    /// Waits at most `timeout` for a connection (`TimedOut` after it).
    pub fn accept_timeout(&self, timeout: Option<Duration>) -> io::Result<(TcpStream, SocketAddr)> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut q = self
            .listener
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(conn) = q.pop_front() {
                let peer = SocketAddr::V4(conn.tuple.remote);
                return Ok((TcpStream::from_conn(self.net.clone(), conn), peer));
            }
            if self.listener.closed.load(Ordering::Relaxed) {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "listener closed",
                ));
            }
            // On a worker thread (a task) waiting would stall the worker itself.
            if self.nonblocking.load(Ordering::Relaxed) || crate::task::in_task() {
                // Armed under the queue lock: a connection queued after this finds the
                // fd armed (socket/readiness.rs).
                if let Some(fd) = &*self
                    .listener
                    .readiness
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                {
                    fd.arm();
                }
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let wait = match deadline {
                None => None,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "accept timed out"));
                    }
                    Some(d - now)
                }
            };
            // Counted under the queue lock: a worker that queues a connection after we
            // let go of the lock sees the count and notifies (`Listener::wake`).
            let waiters = &self.listener.waiters;
            waiters.fetch_add(1, Ordering::SeqCst);
            q = match wait {
                None => self
                    .listener
                    .cond
                    .wait(q)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(t) => {
                    self.listener
                        .cond
                        .wait_timeout(q, t)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Turns ECN (RFC 3168) on or off for connections this listener accepts from now
    /// on, whatever the stack-wide setting. It takes effect with the next SYN: a
    /// connection whose SYN already arrived keeps what its handshake negotiated. Only
    /// a client's ECN-setup SYN can turn it on.
    pub fn set_ecn(&self, on: bool) -> io::Result<()> {
        self.listener.set_ecn(Some(on));
        self.net.tcp.sync_syn_offload(self.listener.local);
        Ok(())
    }

    /// Whether connections accepted from now on answer ECN: this listener's
    /// [`set_ecn`](Self::set_ecn), else the stack-wide setting ([`NetStack::ecn`]).
    pub fn ecn(&self) -> bool {
        self.listener.ecn().unwrap_or_else(|| self.net.ecn())
    }

    /// Connections this listener accepts from now on send no TCP options at all and
    /// take up none (FreeBSD's TCP_NOOPT; see `TcpConfig::no_options`).
    pub fn set_no_options(&self, on: bool) -> io::Result<()> {
        self.listener.no_options.store(on, Ordering::Relaxed);
        self.net.tcp.sync_syn_offload(self.listener.local);
        Ok(())
    }

    /// SYNs dropped because the backlog was full.
    pub fn overflows(&self) -> u64 {
        self.listener.overflows.load(Ordering::Relaxed)
    }
}

impl Drop for TcpListener {
    /// Stops listening; connections still in the accept queue are reset.
    fn drop(&mut self) {
        self.net.tcp.pcbs.unlisten(&self.listener);
        self.net.tcp.sync_syn_offload(self.listener.local);
        let queued: Vec<_> = self
            .listener
            .queue
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default();
        for conn in queued {
            conn.lock().tcb.abort();
            self.net.tcp.kick(&conn);
        }
    }
}

/// The IPv4 address to listen on, checked: a port, and an address of the stack (or the
/// wildcard).
fn check_bind_addr(net: &NetStack, addr: SocketAddr) -> io::Result<SocketAddrV4> {
    let SocketAddr::V4(local) = addr else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "xstack speaks IPv4 only",
        ));
    };
    if local.port() == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "listening needs a port",
        ));
    }
    if !local.ip().is_unspecified() && !net.ifp.owns(*local.ip()) {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{} is not an address of this stack", local.ip()),
        ));
    }
    Ok(local)
}
