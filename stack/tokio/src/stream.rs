//! `TcpStream`: a connection with tokio's `AsyncRead` and `AsyncWrite`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use xstack::NetStack;

use crate::split::{OwnedReadHalf, OwnedWriteHalf};
use crate::Fd;

/// What a stream and its halves share: the xstack stream and its registration.
pub(crate) struct Shared {
    // Dropped first: the fd leaves the reactor before the connection closes.
    fd: AsyncFd<Fd>,
    pub(crate) stream: xstack::TcpStream,
}

/// A TCP connection on an xstack stack, for tokio. Reads and writes may run in
/// different tasks after [`TcpStream::into_split`].
pub struct TcpStream {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shared.stream.fmt(f)
    }
}

impl TcpStream {
    /// Opens a connection to `addr`, waiting for the handshake (up to the stack's
    /// connect timeout). A refused connection is `ConnectionRefused`.
    pub async fn connect(
        net: impl AsRef<NetStack>,
        addr: impl Into<SocketAddr>,
    ) -> io::Result<TcpStream> {
        let stream = TcpStream::from_xstack(xstack::TcpStream::connect_nonblocking(net, addr)?)?;
        std::future::poll_fn(|cx| {
            stream
                .shared
                .poll_io(cx, Interest::WRITABLE, |s| s.finish_connect())
        })
        .await?;
        Ok(stream)
    }

    /// Wraps an xstack stream (made non-blocking here). Call inside a tokio runtime.
    pub fn from_xstack(stream: xstack::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        let fd = Fd::register(
            stream.readiness_fd()?,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(TcpStream {
            shared: Arc::new(Shared { fd, stream }),
        })
    }

    /// The xstack stream: options (`set_congestion`, `set_linger`, ...) and `info()`.
    pub fn get_ref(&self) -> &xstack::TcpStream {
        &self.shared.stream
    }

    /// A handle on the xstack stream that can live apart from this one (e.g. in an
    /// HTTP service that reports the connection's `info()` while hyper owns the
    /// stream). The connection closes when the stream, its halves and every handle are
    /// gone.
    pub fn handle(&self) -> StreamHandle {
        StreamHandle {
            shared: self.shared.clone(),
        }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.stream.local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.shared.stream.peer_addr()
    }

    /// TCP_NODELAY.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.shared.stream.set_nodelay(on)
    }

    /// Splits the stream into a read half and a write half that can move to different
    /// tasks. Dropping the write half shuts down writing (sends FIN), as tokio's.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        crate::split::split(self)
    }
}

/// A shared handle on a [`TcpStream`]'s xstack stream ([`TcpStream::handle`]).
#[derive(Clone, Debug)]
pub struct StreamHandle {
    shared: Arc<Shared>,
}

impl std::ops::Deref for StreamHandle {
    type Target = xstack::TcpStream;

    fn deref(&self) -> &xstack::TcpStream {
        &self.shared.stream
    }
}

impl Shared {
    /// Tries `op` when tokio reports the fd ready for `interest`; a `WouldBlock` from it
    /// (which armed the fd) clears tokio's readiness and waits for the next edge.
    pub(crate) fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
        mut op: impl FnMut(&xstack::TcpStream) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let mut guard = if interest.is_readable() {
                ready!(self.fd.poll_read_ready(cx))?
            } else {
                ready!(self.fd.poll_write_ready(cx))?
            };
            match guard.try_io(|_| op(&self.stream)) {
                Ok(res) => return Poll::Ready(res),
                Err(_would_block) => continue,
            }
        }
    }

    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let unfilled = buf.initialize_unfilled();
        let n = ready!(self.poll_io(cx, Interest::READABLE, |mut s| s.read(unfilled)))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }

    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_io(cx, Interest::WRITABLE, |mut s| s.write(data))
    }

    /// Sends FIN after the queued data; never waits.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        match self.stream.shutdown(Shutdown::Write) {
            // Already closed (e.g. reset): nothing left to shut down.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            r => r,
        }
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.shared.poll_read(cx, buf)
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.shared.poll_write(cx, data)
    }

    /// Nothing to flush: a write hands its bytes to the connection's send buffer.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Shuts down writing: FIN after the queued data.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shared.shutdown_write())
    }
}
