//! xstack's sockets as the event server's transport (feature `xstack-mio`).
//!
//! All it needs from the `xstack` crate: `TcpListener::set_nonblocking`, a nonblocking
//! `TcpListener::accept` that answers `WouldBlock` when the accept queue is empty,
//! `TcpStream::set_nonblocking` with `Read`/`Write` that answer `WouldBlock`, and
//! `mio::event::Source` for both, edge-triggered like mio's own sockets (a readiness
//! event after each `WouldBlock`, once the condition it waited for changes). The
//! per-connection calls `GET /info` makes (`ConnControl`) are shared with the blocking
//! server (`xstack_impl.rs`).

use std::io;

use xstack::{TcpListener, TcpStream};

use super::{EventConn, EventListener};

impl EventListener for TcpListener {
    type Stream = TcpStream;

    fn prepare(&mut self) -> io::Result<()> {
        self.set_nonblocking(true)
    }

    fn accept(&mut self) -> io::Result<TcpStream> {
        let (stream, _) = TcpListener::accept(self)?;
        // A blocking connection would stall the whole loop: drop it, as an aborted one (the
        // server goes on accepting), rather than serve it.
        if stream.set_nonblocking(true).is_err() {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        // Responses go out in large writes; Nagle would only delay the tail. A failure is
        // about this connection only: serve it anyway.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl EventConn for TcpStream {}
