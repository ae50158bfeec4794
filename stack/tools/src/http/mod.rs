//! HTTP/1.1 server and client for the `xstack http`, `xstack get` and `xstack post` commands.
//!
//! Both sides are written against two small traits, [`Listener`] and [`Conn`], so they run
//! unchanged on xstack's own sockets and on `std::net` (which is how the tests here run: on
//! loopback, with ephemeral ports).
//!
//! There are two servers, which answer byte for byte alike (both build their responses in
//! `request.rs`): [`serve`]/[`serve_with`] run a thread per connection on blocking sockets;
//! [`serve_event`] runs one mio event loop per thread for all of that thread's connections,
//! on nonblocking sockets that are mio sources ([`EventListener`], [`EventConn`]).
//!
//! Both answer:
//!
//! | request | response |
//! | --- | --- |
//! | `GET /bytes/N` | `N` bytes where byte `i` is `(i % 251) as u8` (see [`pattern_sha256`]) |
//! | `POST /sha256` | the lowercase hex SHA-256 of the request body: exactly 64 characters, no newline |
//! | `GET /info[?cc=NAME]` | [`ConnControl::info_json`] of this connection as JSON, after [`ConnControl::set_congestion`] when `cc` is given |
//! | `GET /stats[?heap]` | the JSON the server's stats closure returns; with `heap`, also the process's heap (`memory`: bytes in use and held free, glibc's `mallinfo2`) |
//!
//! `HEAD` is accepted wherever `GET` is. Other paths answer 404; a known path with the wrong
//! method answers 405 with `Allow`. A malformed request answers 400 with `Connection: close`
//! and ends only that connection.
//!
//! The client ([`get`], [`post`]) sends one request per connection, streams the response body
//! through SHA-256 without storing it, and reports a [`Response`]. [`parse_url`] splits an
//! `http://A.B.C.D[:port]/path` URL (IPv4 literals only: the stack has no DNS resolver).
//!
//! Parsing of request/response heads, chunk-size lines and trailers is `httparse`'s; framing
//! rules follow RFC 9112 (HTTP/1.1 message syntax), quoted where they are implemented.

mod buf;
mod chunked;
mod client;
mod event;
mod request;
mod server;
#[cfg(test)]
mod tests;
mod xstack_impl;

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};

pub use chunked::ChunkError;
pub use client::{get, parse_url, post, Response, UrlError};
pub use event::{serve_event, serve_event_on_worker, EventConn, EventListener};
pub use request::StatsFn;
pub use server::{serve, serve_with, ServerConfig};

/// A listening socket the server can accept connections from.
///
/// Implemented by xstack's listener and, for tests and comparisons, `std::net::TcpListener`.
pub trait Listener: Send + Sync + 'static {
    /// The connection type [`Listener::accept`] returns.
    type Stream: Conn;

    /// Blocks until a connection arrives. `WouldBlock` is tolerated by the server (it retries
    /// after a millisecond), so a non-blocking listener also works.
    fn accept(&self) -> io::Result<Self::Stream>;
}

/// What the server asks of a connection beyond its bytes: shared by the blocking
/// server's [`Conn`] and the event server's [`EventConn`].
pub trait ConnControl {
    /// A `tcp_info`-like snapshot of this connection, served by `GET /info`.
    fn info_json(&self) -> serde_json::Value {
        json!({})
    }

    /// Switches this connection's congestion-control module (TCP_CONGESTION semantics).
    /// The error text is shown to the HTTP client, so it should list the available names.
    fn set_congestion(&self, name: &str) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("cannot select congestion control {name:?}: not supported on this connection"),
        ))
    }

    /// Sends FIN: no more writes on this connection, reads continue.
    fn shutdown_write(&self) -> io::Result<()>;
}

/// One connected byte stream: what the server reads requests from and the client sends on.
pub trait Conn: ConnControl + io::Read + io::Write + Send + 'static {
    /// Sets (or with `None` clears) the timeout after which a blocked read fails with
    /// `WouldBlock`/`TimedOut`. The server uses it to drop idle keep-alive connections.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;

    /// Sets (or with `None` clears) the timeout after which a blocked write (no room in
    /// the send buffer: the peer stopped reading) fails with `WouldBlock`/`TimedOut`. The
    /// server uses it so a client that stops reading cannot hold a thread forever.
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Listener for TcpListener {
    type Stream = TcpStream;

    fn accept(&self) -> io::Result<TcpStream> {
        let (stream, _) = TcpListener::accept(self)?;
        // Linux does not pass O_NONBLOCK from the listener to accepted sockets, but other
        // systems do; the server's threads expect blocking reads.
        stream.set_nonblocking(false)?;
        // Responses are written as one head+body write or in large chunks, so Nagle only adds
        // delay (a small response waiting on the ACK of the previous one under keep-alive).
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

impl Conn for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
}

impl ConnControl for TcpStream {
    fn info_json(&self) -> serde_json::Value {
        kernel_info(self.local_addr(), self.peer_addr())
    }

    fn set_congestion(&self, name: &str) -> io::Result<()> {
        Err(kernel_congestion_error(name, "std::net::TcpStream"))
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// `GET /info` on a kernel socket: its addresses only.
pub(crate) fn kernel_info(
    local: io::Result<std::net::SocketAddr>,
    peer: io::Result<std::net::SocketAddr>,
) -> serde_json::Value {
    json!({
        "kernel": true,
        "local": local.map(|a| a.to_string()).unwrap_or_default(),
        "peer": peer.map(|a| a.to_string()).unwrap_or_default(),
    })
}

/// `GET /info?cc=NAME` on a kernel socket (of type `what`): xstack's modules are not there.
pub(crate) fn kernel_congestion_error(name: &str, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "cannot select congestion control {name:?}: this is a kernel socket \
             ({what}); xstack's modules are available only on xstack sockets"
        ),
    )
}

/// The period of the generated body: byte `i` is `(i % PATTERN_PERIOD) as u8`. 251 is prime,
/// so the pattern does not line up with any power-of-two segment or buffer size and a dropped,
/// duplicated or reordered block changes the digest.
pub const PATTERN_PERIOD: u64 = 251;

/// The pattern buffer holds this many periods: 251 * 1024 bytes (251 KiB). Every write of a
/// generated body starts at a multiple of the period, so slices from offset 0 tile exactly.
const PATTERN_PERIODS: usize = 1024;

/// The generated-body pattern, `PATTERN_PERIOD * PATTERN_PERIODS` bytes (251 KiB), built
/// once. A body of `n` bytes is its slices from offset 0, repeated: the length is a
/// multiple of the period.
pub fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Box<[u8]>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        (0..PATTERN_PERIOD as usize * PATTERN_PERIODS)
            .map(|i| (i % PATTERN_PERIOD as usize) as u8)
            .collect()
    })
}

/// Calls `sink` with consecutive slices of the generated body of `n` bytes (byte `i` =
/// `(i % 251) as u8`), each at most one pattern buffer long. Stops at the first error.
pub(crate) fn for_each_pattern_chunk<E>(
    n: u64,
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let pat = pattern();
    let mut left = n;
    while left > 0 {
        // The buffer length is a multiple of the period, so restarting at offset 0 after a
        // full buffer continues the sequence.
        let take = left.min(pat.len() as u64) as usize;
        sink(&pat[..take])?;
        left -= take as u64;
    }
    Ok(())
}

/// The lowercase hex SHA-256 of the `GET /bytes/N` body (byte `i` = `(i % 251) as u8`), for
/// checking a download without storing it.
pub fn pattern_sha256(n: u64) -> String {
    let mut hasher = Sha256::new();
    let _ = for_each_pattern_chunk(n, |chunk| {
        hasher.update(chunk);
        Ok::<(), ()>(())
    });
    hex(&hasher.finalize())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}
