//! Kernel sockets (`mio::net`) as the event server's transport: the tests, and the
//! kernel side of comparisons.

use std::io;
use std::net::Shutdown;

use mio::net::{TcpListener, TcpStream};

use super::super::{kernel_congestion_error, kernel_info, ConnControl};
use super::{EventConn, EventListener};

impl EventListener for TcpListener {
    type Stream = TcpStream;

    fn accept(&mut self) -> io::Result<TcpStream> {
        // mio's accepted sockets are nonblocking already.
        let (stream, _) = TcpListener::accept(self)?;
        // Responses are written as whole heads and large body pieces, so Nagle only adds
        // delay. A failure here is about this connection (it may be gone already), not
        // the listener: serve it anyway.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl ConnControl for TcpStream {
    fn info_json(&self) -> serde_json::Value {
        kernel_info(self.local_addr(), self.peer_addr())
    }

    fn set_congestion(&self, name: &str) -> io::Result<()> {
        Err(kernel_congestion_error(name, "mio::net::TcpStream"))
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl EventConn for TcpStream {}
