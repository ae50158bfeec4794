//! Readiness through a file descriptor, for event loops that wait on fds (mio, tokio's
//! `AsyncFd`): one eventfd per registered socket, written when the socket's readiness
//! changes after an operation on it found it not ready (edge-triggered, as mio expects).
//!
//! The protocol, per socket:
//!
//! - An operation that returns `WouldBlock` (read, write, accept, finish_connect) sets
//!   the fd's `armed` flag while it still holds the lock the stack changes readiness
//!   under: the connection's lock, or the listener's accept-queue lock.
//! - The stack, after changing readiness under that lock (data, ACKed send space, FIN,
//!   RST, handshake done, a connection queued for accept), swaps `armed` from true to
//!   false and, only if it was true, writes the eventfd. Either the operation saw the new
//!   state, or the swap sees `armed` (both happen under the same lock), so no wakeup is
//!   lost; and a socket nobody waits on costs no syscall.
//! - Registering (or reregistering) arms the fd and signals at once if the socket is
//!   already ready, so a registration never waits for a change that already happened.
//!
//! With many sockets in one event loop, an fd each is costly (a descriptor, and kernel
//! memory for the file and its epoll item, per socket; the open-file limit caps the
//! sockets). A [`ReadyQueue`] is the alternative: one eventfd for any number of sockets,
//! each registered under a token (`TcpStream::register_ready_queue`). The same protocol
//! arms and disarms each socket, but a change pushes the socket's token onto the queue's
//! list instead of writing an fd of its own, and the queue's eventfd is written only when
//! the list goes from empty to not empty. The event loop registers the queue's fd once
//! and, on each edge, takes the tokens with [`ReadyQueue::drain`].
//!
//! The eventfd counter is never read: epoll reports an edge for every write to it (the
//! write wakes its wait queue), and the counter cannot reach its limit in practice (a
//! full counter is reset by [`ReadinessFd::signal`] anyway). Readable or writable is not
//! told apart: the fd carries "something changed", the event loop reports what it was
//! registered for, and the socket's next operation tells (spurious events are allowed
//! in mio and tokio).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::listener::TcpListener;
use super::stream::TcpStream;

/// A socket's readiness as a pollable file descriptor (an eventfd). Get one with
/// [`TcpStream::readiness_fd`] or [`TcpListener::readiness_fd`] and register it with an
/// event loop, edge-triggered, for reading (the fd becomes readable on each change).
///
/// A socket registered with a [`ReadyQueue`] has one of these too, which signals by
/// pushing the socket's token onto the queue; its raw fd is then the queue's.
#[derive(Debug)]
pub struct ReadinessFd {
    target: Target,
    /// Someone saw `WouldBlock` (or registered) and waits for a change.
    armed: AtomicBool,
    /// Signals given (eventfd writes or queue pushes), for tests and diagnostics.
    signals: AtomicU64,
}

/// Where a socket's readiness changes go.
#[derive(Debug)]
enum Target {
    /// Its own eventfd.
    Own(EventFd),
    /// Its token, onto a shared queue.
    Queue {
        queue: Arc<ReadyQueue>,
        token: usize,
    },
}

/// A fresh eventfd, non-blocking and close-on-exec.
fn new_eventfd() -> io::Result<EventFd> {
    Ok(EventFd::from_flags(
        EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
    )?)
}

/// Writes `fd` once: every epoll instance it is registered with gets an edge.
fn write_eventfd(fd: &EventFd) {
    match fd.write(1) {
        Ok(_) => {}
        Err(Errno::EAGAIN) => {
            // The counter is full (2^64 - 2 writes unread): empty it and write again.
            let _ = fd.read();
            let _ = fd.write(1);
        }
        // Nothing else can fail on an eventfd we own; a waiter would time out or
        // retry, which is all it could do with an error here anyway.
        Err(_) => {}
    }
}

impl ReadinessFd {
    /// A fresh, unarmed eventfd (non-blocking, close-on-exec).
    pub(crate) fn new() -> io::Result<Arc<ReadinessFd>> {
        Ok(Self::with_target(Target::Own(new_eventfd()?)))
    }

    fn with_target(target: Target) -> Arc<ReadinessFd> {
        Arc::new(ReadinessFd {
            target,
            armed: AtomicBool::new(false),
            signals: AtomicU64::new(0),
        })
    }

    /// An unarmed registration that pushes `token` onto `queue`.
    fn on_queue(queue: &Arc<ReadyQueue>, token: usize) -> Arc<ReadinessFd> {
        Self::with_target(Target::Queue {
            queue: queue.clone(),
            token,
        })
    }

    /// True when it pushes onto a [`ReadyQueue`] rather than owning an fd.
    fn is_queued(&self) -> bool {
        matches!(self.target, Target::Queue { .. })
    }

    /// Marks the fd as awaited. Call with the socket's lock held, right after finding
    /// the socket not ready.
    pub(crate) fn arm(&self) {
        // SeqCst: pairs with the swap in `disarm`; the socket's lock already orders the
        // two, this keeps the argument local.
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Takes the armed flag: true when someone waits and the eventfd must be written.
    pub(crate) fn disarm(&self) -> bool {
        self.armed.swap(false, Ordering::SeqCst)
    }

    /// Writes the eventfd (every registered epoll instance gets an edge), or pushes the
    /// token onto the queue. True when that is news for an application thread (false
    /// for a worker's own queue, [`ReadyQueue::for_worker`], read by a task).
    pub(crate) fn signal(&self) -> bool {
        self.signals.fetch_add(1, Ordering::Relaxed);
        match &self.target {
            Target::Own(fd) => {
                write_eventfd(fd);
                true
            }
            Target::Queue { queue, token } => {
                queue.push(*token);
                queue.wake.is_none()
            }
        }
    }

    /// Writes the eventfd if someone waits ([`ReadinessFd::disarm`] then
    /// [`ReadinessFd::signal`]).
    pub(crate) fn notify(&self) {
        if self.disarm() {
            let _ = self.signal();
        }
    }

    /// True while a `WouldBlock` (or a registration) waits for a readiness change.
    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::SeqCst)
    }

    /// How many times the eventfd was written: once per readiness change that found
    /// the fd armed.
    pub fn signals(&self) -> u64 {
        self.signals.load(Ordering::Relaxed)
    }
}

impl AsRawFd for ReadinessFd {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl AsFd for ReadinessFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.target {
            Target::Own(fd) => fd.as_fd(),
            Target::Queue { queue, .. } => queue.fd.as_fd(),
        }
    }
}

/// One readiness fd for many sockets: each socket registered with the queue
/// ([`TcpStream::register_ready_queue`], [`TcpListener::register_ready_queue`]) pushes
/// its token when its readiness changes after a `WouldBlock` (or at registration, if it
/// is ready then), at most once per `WouldBlock`, and the queue's eventfd gets an edge
/// when its list goes from empty to not empty. Register the fd with an event loop,
/// edge-triggered, for reading; on each edge, [`ReadyQueue::drain`] the tokens and treat
/// each as an event for both directions (spurious ones included, as in mio).
///
/// What it saves over an fd per socket: a descriptor (so the open-file limit does not
/// cap the sockets), the kernel's file and epoll item, and a syscall per change while the
/// list already holds tokens.
pub struct ReadyQueue {
    fd: EventFd,
    ready: Mutex<Vec<usize>>,
    /// For a queue made by [`ReadyQueue::for_worker`]: wakes that worker instead of
    /// writing `fd`.
    wake: Option<crate::tcp::layer::WorkerWaker>,
}

impl std::fmt::Debug for ReadyQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadyQueue")
            .field("fd", &self.fd)
            .field("for_worker", &self.wake.is_some())
            .finish_non_exhaustive()
    }
}

impl ReadyQueue {
    /// An empty queue with its own eventfd (non-blocking, close-on-exec).
    pub fn new() -> io::Result<Arc<ReadyQueue>> {
        Ok(Arc::new(ReadyQueue {
            fd: new_eventfd()?,
            ready: Mutex::new(Vec::new()),
            wake: None,
        }))
    }

    /// A queue for a [`WorkerTask`](crate::WorkerTask) on worker `worker` of `net`
    /// ([`NetStack::run_on_worker`](crate::NetStack::run_on_worker)): when its list goes
    /// from empty to not empty it wakes that worker if it sleeps (nothing at all if it is
    /// running, as it is when the push comes from its own thread), and its fd is never
    /// written. The task drains it on each call. `InvalidInput` when the stack has no
    /// such worker.
    pub fn for_worker(net: &crate::NetStack, worker: usize) -> io::Result<Arc<ReadyQueue>> {
        if worker >= net.tcp.tasks.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no worker {worker} (the stack has {})", net.tcp.tasks.len()),
            ));
        }
        let tcp = Arc::downgrade(&net.tcp);
        Ok(Arc::new(ReadyQueue {
            fd: new_eventfd()?,
            ready: Mutex::new(Vec::new()),
            // Weak: the queue lives in the stack's connections, which the layer owns.
            wake: Some(Arc::new(move || {
                if let Some(t) = tcp.upgrade() {
                    t.tasks[worker].signal();
                    t.wake(worker);
                }
            })),
        }))
    }

    /// Moves the tokens pushed since the last drain onto the end of `out`, oldest
    /// first. A token can appear more than once, and for a socket since deregistered.
    pub fn drain(&self, out: &mut Vec<usize>) {
        out.append(&mut self.ready.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn push(&self, token: usize) {
        let first = {
            let mut r = self.ready.lock().unwrap_or_else(|e| e.into_inner());
            r.push(token);
            r.len() == 1
        };
        // Written after the lock: a drain in between takes the token and this edge is
        // spurious; a drain that found the list empty is followed by this write.
        if first {
            match &self.wake {
                Some(wake) => wake(),
                None => write_eventfd(&self.fd),
            }
        }
    }
}

impl AsRawFd for ReadyQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for ReadyQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The error for asking a socket registered with a [`ReadyQueue`] for an fd of its own,
/// or the other way round.
fn other_readiness() -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        "the socket signals readiness elsewhere (its own fd, or a ReadyQueue)",
    )
}

impl TcpStream {
    /// The stream's readiness fd, made on first use and kept until the handle is
    /// dropped (one per stream: a second call returns the same fd). The call arms it
    /// and writes it at once if the stream is already readable, writable or failed, so
    /// an event loop that registers the fd next sees the current state. Use it with a
    /// non-blocking stream: its `WouldBlock`s arm the fd.
    ///
    /// Fails with `AlreadyExists` while the stream is registered with a [`ReadyQueue`].
    pub fn readiness_fd(&self) -> io::Result<Arc<ReadinessFd>> {
        let existing = self.conn.lock().readiness.clone();
        let fd = match existing {
            Some(fd) => fd,
            None => {
                let fresh = ReadinessFd::new()?;
                self.conn.lock().readiness.get_or_insert(fresh).clone()
            }
        };
        if fd.is_queued() {
            return Err(other_readiness());
        }
        self.arm_readiness(&fd);
        Ok(fd)
    }

    /// Signals the stream's readiness changes through `queue` as `token` (see
    /// [`ReadyQueue`]) instead of an fd of its own; registering again replaces the
    /// queue and token. Pushes the token at once if the stream is readable, writable or
    /// failed now. Use it with a non-blocking stream: its `WouldBlock`s arm it.
    ///
    /// Fails with `AlreadyExists` if the stream already has its own readiness fd
    /// ([`TcpStream::readiness_fd`], or registered with mio).
    pub fn register_ready_queue(&self, queue: &Arc<ReadyQueue>, token: usize) -> io::Result<()> {
        let fd = ReadinessFd::on_queue(queue, token);
        {
            let mut inner = self.conn.lock();
            if inner.readiness.as_ref().is_some_and(|r| !r.is_queued()) {
                return Err(other_readiness());
            }
            inner.readiness = Some(fd.clone());
        }
        self.arm_readiness(&fd);
        Ok(())
    }

    /// Stops signalling through a [`ReadyQueue`] (a token already pushed stays in the
    /// queue). Nothing happens if the stream was not registered with one.
    pub fn deregister_ready_queue(&self) {
        let mut inner = self.conn.lock();
        if inner.readiness.as_ref().is_some_and(|r| r.is_queued()) {
            inner.readiness = None;
        }
    }

    /// The readiness fd if one was made, without arming it.
    #[cfg(any(test, feature = "mio"))]
    fn made_readiness_fd(&self) -> Option<Arc<ReadinessFd>> {
        self.conn.lock().readiness.clone()
    }

    /// Arms `fd` and signals it if the stream is ready now.
    fn arm_readiness(&self, fd: &ReadinessFd) {
        let inner = self.conn.lock();
        fd.arm();
        let t = &inner.tcb;
        let ready = t.read_ready() || t.write_ready() || t.error().is_some();
        drop(inner);
        if ready {
            fd.notify();
        }
    }
}

impl TcpListener {
    /// The readiness fd if one was made, without arming it.
    #[cfg(any(test, feature = "mio"))]
    fn made_readiness_fd(&self) -> Option<Arc<ReadinessFd>> {
        self.listener
            .readiness
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The listener's readiness fd (see [`TcpStream::readiness_fd`]): written when a
    /// connection is queued for accept (or the listener closes) after an `accept`
    /// returned `WouldBlock`. Arms it, and writes it at once if a connection waits.
    ///
    /// Fails with `AlreadyExists` while the listener is registered with a [`ReadyQueue`].
    pub fn readiness_fd(&self) -> io::Result<Arc<ReadinessFd>> {
        let fd = {
            let mut slot = self
                .listener
                .readiness
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Some(fd) => fd.clone(),
                None => slot.insert(ReadinessFd::new()?).clone(),
            }
        };
        if fd.is_queued() {
            return Err(other_readiness());
        }
        self.arm_readiness(&fd);
        Ok(fd)
    }

    /// Signals through `queue` as `token` when a connection is queued for accept (or the
    /// listener closes), as [`TcpStream::register_ready_queue`] does for a stream.
    pub fn register_ready_queue(&self, queue: &Arc<ReadyQueue>, token: usize) -> io::Result<()> {
        let fd = ReadinessFd::on_queue(queue, token);
        {
            let mut slot = self
                .listener
                .readiness
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if slot.as_ref().is_some_and(|r| !r.is_queued()) {
                return Err(other_readiness());
            }
            *slot = Some(fd.clone());
        }
        self.arm_readiness(&fd);
        Ok(())
    }

    /// Stops signalling through a [`ReadyQueue`].
    pub fn deregister_ready_queue(&self) {
        let mut slot = self
            .listener
            .readiness
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|r| r.is_queued()) {
            *slot = None;
        }
    }

    /// Arms `fd` and signals it if a connection waits (or the listener closed).
    fn arm_readiness(&self, fd: &ReadinessFd) {
        let q = self
            .listener
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        fd.arm();
        let ready = !q.is_empty() || self.listener.closed.load(Ordering::Relaxed);
        drop(q);
        if ready {
            fd.notify();
        }
    }
}

#[cfg(any(test, feature = "mio"))]
mod mio_source {
    //! `mio::event::Source` for the sockets: the readiness fd, registered for reading
    //! whatever the interest (a write to an eventfd wakes only EPOLLIN waiters), and
    //! for writing too when asked (an eventfd is always writable, so each edge then
    //! reports both).

    use std::io;
    use std::os::fd::AsRawFd;

    use mio::unix::SourceFd;
    use mio::{Interest, Registry, Token};

    use super::{TcpListener, TcpStream};

    fn not_registered() -> io::Error {
        io::Error::new(io::ErrorKind::NotFound, "the socket was never registered")
    }

    fn fd_interest(interests: Interest) -> Interest {
        interests.add(Interest::READABLE)
    }

    /// The same registration for both socket types: their readiness fd.
    macro_rules! readiness_source {
        ($t:ty) => {
            impl mio::event::Source for $t {
                fn register(
                    &mut self,
                    registry: &Registry,
                    token: Token,
                    interests: Interest,
                ) -> io::Result<()> {
                    let fd = self.readiness_fd()?;
                    SourceFd(&fd.as_raw_fd()).register(registry, token, fd_interest(interests))
                }

                fn reregister(
                    &mut self,
                    registry: &Registry,
                    token: Token,
                    interests: Interest,
                ) -> io::Result<()> {
                    let fd = self.readiness_fd()?;
                    SourceFd(&fd.as_raw_fd()).reregister(registry, token, fd_interest(interests))
                }

                fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
                    match self.made_readiness_fd() {
                        // A ready-queue registration's fd is the queue's, not to touch.
                        Some(fd) if !fd.is_queued() => {
                            SourceFd(&fd.as_raw_fd()).deregister(registry)
                        }
                        _ => Err(not_registered()),
                    }
                }
            }
        };
    }

    readiness_source!(TcpStream);
    readiness_source!(TcpListener);
}
