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
//! The eventfd counter is never read: epoll reports an edge for every write to it (the
//! write wakes its wait queue), and the counter cannot reach its limit in practice (a
//! full counter is reset by [`ReadinessFd::signal`] anyway). Readable or writable is not
//! told apart: the fd carries "something changed", the event loop reports what it was
//! registered for, and the socket's next operation tells (spurious events are allowed
//! in mio and tokio).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::listener::TcpListener;
use super::stream::TcpStream;

/// A socket's readiness as a pollable file descriptor (an eventfd). Get one with
/// [`TcpStream::readiness_fd`] or [`TcpListener::readiness_fd`] and register it with an
/// event loop, edge-triggered, for reading (the fd becomes readable on each change).
#[derive(Debug)]
pub struct ReadinessFd {
    fd: EventFd,
    /// Someone saw `WouldBlock` (or registered) and waits for a change.
    armed: AtomicBool,
    /// Writes to the eventfd, for tests and diagnostics.
    signals: AtomicU64,
}

impl ReadinessFd {
    /// A fresh, unarmed eventfd (non-blocking, close-on-exec).
    pub(crate) fn new() -> io::Result<Arc<ReadinessFd>> {
        let fd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        Ok(Arc::new(ReadinessFd {
            fd,
            armed: AtomicBool::new(false),
            signals: AtomicU64::new(0),
        }))
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

    /// Writes the eventfd: every registered epoll instance gets an edge.
    pub(crate) fn signal(&self) {
        self.signals.fetch_add(1, Ordering::Relaxed);
        match self.fd.write(1) {
            Ok(_) => {}
            Err(Errno::EAGAIN) => {
                // The counter is full (2^64 - 2 writes unread): empty it and write again.
                let _ = self.fd.read();
                let _ = self.fd.write(1);
            }
            // Nothing else can fail on an eventfd we own; a waiter would time out or
            // retry, which is all it could do with an error here anyway.
            Err(_) => {}
        }
    }

    /// Writes the eventfd if someone waits ([`ReadinessFd::disarm`] then
    /// [`ReadinessFd::signal`]).
    pub(crate) fn notify(&self) {
        if self.disarm() {
            self.signal();
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
        self.fd.as_raw_fd()
    }
}

impl AsFd for ReadinessFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl TcpStream {
    /// The stream's readiness fd, made on first use and kept until the handle is
    /// dropped (one per stream: a second call returns the same fd). The call arms it
    /// and writes it at once if the stream is already readable, writable or failed, so
    /// an event loop that registers the fd next sees the current state. Use it with a
    /// non-blocking stream: its `WouldBlock`s arm the fd.
    pub fn readiness_fd(&self) -> io::Result<Arc<ReadinessFd>> {
        let existing = self.conn.lock().readiness.clone();
        let fd = match existing {
            Some(fd) => fd,
            None => {
                let fresh = ReadinessFd::new()?;
                self.conn.lock().readiness.get_or_insert(fresh).clone()
            }
        };
        self.arm_readiness(&fd);
        Ok(fd)
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
        Ok(fd)
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
                        Some(fd) => SourceFd(&fd.as_raw_fd()).deregister(registry),
                        None => Err(not_registered()),
                    }
                }
            }
        };
    }

    readiness_source!(TcpStream);
    readiness_source!(TcpListener);
}
