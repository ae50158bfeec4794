//! `TcpListener`: accepts connections as tokio's does.

use std::io;
use std::net::SocketAddr;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use xstack::NetStack;

use crate::{Fd, TcpStream};

/// A listening socket on an xstack stack, for tokio.
pub struct TcpListener {
    fd: AsyncFd<Fd>,
    inner: xstack::TcpListener,
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl TcpListener {
    /// Listens on `addr` (0.0.0.0 for every address of the stack), as
    /// `xstack::TcpListener::bind`.
    pub async fn bind(
        net: impl AsRef<NetStack>,
        addr: impl Into<SocketAddr>,
    ) -> io::Result<TcpListener> {
        TcpListener::from_xstack(xstack::TcpListener::bind(net, addr)?)
    }

    /// Wraps an xstack listener (made non-blocking here). Call inside a tokio runtime.
    pub fn from_xstack(inner: xstack::TcpListener) -> io::Result<TcpListener> {
        inner.set_nonblocking(true)?;
        let fd = Fd::register(inner.readiness_fd()?, Interest::READABLE)?;
        Ok(TcpListener { fd, inner })
    }

    /// Waits for a connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for a connection; registers `cx`'s waker when none is queued.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            match guard.try_io(|_| self.inner.accept()) {
                Ok(Ok((stream, peer))) => {
                    return Poll::Ready(TcpStream::from_xstack(stream).map(|s| (s, peer)))
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // WouldBlock: the accept armed the fd and tokio's readiness is cleared.
                Err(_would_block) => continue,
            }
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The xstack listener (backlog overflows, ECN, ...).
    pub fn get_ref(&self) -> &xstack::TcpListener {
        &self.inner
    }
}
