//! tokio sockets on xstack: [`TcpListener`] and [`TcpStream`] with tokio's
//! `AsyncRead`/`AsyncWrite`, usable from any task of a multi-thread runtime while the
//! stack keeps running on its own pinned workers.
//!
//! Each socket wraps a non-blocking xstack socket and registers its readiness fd (an
//! eventfd, see `xstack::ReadinessFd` and "Readiness for mio and tokio" in
//! docs/ARCHITECTURE.md) with tokio's reactor through `tokio::io::unix::AsyncFd`. An
//! operation is tried when tokio reports the fd ready; a `WouldBlock` arms the fd under
//! the connection's own lock and clears tokio's readiness, and the worker that next
//! changes the connection's readiness writes the fd. Nothing is shared between
//! connections on this path: no stack-wide lock, no extra thread.
//!
//! ```no_run
//! # async fn f(stack: &xstack::Stack) -> std::io::Result<()> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let listener = xstack_tokio::TcpListener::bind(stack, ([0, 0, 0, 0], 7)).await?;
//! loop {
//!     let (mut conn, _peer) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let mut buf = [0; 4096];
//!         while let Ok(n @ 1..) = conn.read(&mut buf).await {
//!             if conn.write_all(&buf[..n]).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//! }
//! # }
//! ```
//!
//! Sockets must be made inside a tokio runtime (with I/O enabled), as tokio's own.

#![deny(clippy::undocumented_unsafe_blocks)]

mod listener;
mod split;
mod stream;

pub use listener::TcpListener;
pub use split::{OwnedReadHalf, OwnedWriteHalf, ReuniteError};
pub use stream::{StreamHandle, TcpStream};

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use xstack::ReadinessFd;

/// The readiness fd as tokio's `AsyncFd` holds it.
struct Fd(Arc<ReadinessFd>);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Fd {
    /// Registers the fd with the current runtime's reactor.
    fn register(fd: Arc<ReadinessFd>, interest: Interest) -> io::Result<AsyncFd<Fd>> {
        // SAFETY: `Fd` owns an `Arc` of the `ReadinessFd`, which owns the eventfd and
        // closes it only when dropped, so the fd stays open and the same for as long as
        // the `AsyncFd` holds the `Fd`; `as_raw_fd` always returns that one fd.
        unsafe { AsyncFd::register_with_interest(Fd(fd), interest) }.map_err(|e| e.into_parts().1)
    }
}
