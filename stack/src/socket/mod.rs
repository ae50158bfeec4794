//! The socket API applications link: `TcpListener`, `TcpStream` and a readiness
//! `Poller`, usable from any application thread.
//!
//! Handles are thin: a connection lives in the stack (owned by one worker); a handle
//! copies bytes in and out of its buffers under the connection's lock, then asks the
//! owner worker to transmit. Blocking calls wait on the connection's condition
//! variable; non-blocking calls return `WouldBlock`, and event loops wait on the
//! `Poller` or on a socket's readiness fd (`readiness.rs`: mio and tokio). Errors map to
//! `std::io::ErrorKind` as `std::net` does.

mod listener;
mod poller;
mod readiness;
mod stream;

pub use listener::TcpListener;
pub use poller::{Event, Interest, Poller, Source};
pub use readiness::{ReadinessFd, ReadyQueue};
pub use stream::{ConnectOptions, TcpStream};

use std::io;
use std::sync::Arc;

use crate::net::Interface;
use crate::task::WorkerTask;
use crate::tcp::layer::TcpLayer;
use crate::tcp::pcb::PcbError;
use crate::tcp::{TcpError, UserError};

/// What sockets need of a stack: its TCP layer and its interface. Cheap to clone;
/// [`crate::Stack`] hands one out, and simulations build their own.
#[derive(Clone)]
pub struct NetStack {
    /// The TCP layer.
    pub(crate) tcp: Arc<TcpLayer>,
    /// The interface (addresses, routes).
    pub(crate) ifp: Arc<Interface>,
}

impl NetStack {
    /// Turns ECN (RFC 3168) on or off stack-wide (`--ecn` sets it at start-up). It takes
    /// effect for connections opened afterwards (active opens and SYNs arriving at
    /// listeners without their own [`TcpListener::set_ecn`]); open connections keep what
    /// their handshake negotiated.
    pub fn set_ecn(&self, on: bool) {
        {
            let mut cfg = self.tcp.config.write().unwrap_or_else(|e| e.into_inner());
            Arc::make_mut(&mut cfg).ecn = on;
        }
        // SYNs answered before they reach the stack take the new setting too.
        if self.tcp.syn_offloaded() {
            for local in self.tcp.pcbs.listening() {
                self.tcp.sync_syn_offload(local);
            }
        }
    }

    /// The stack's congestion-control registry: the modules sockets can select by name
    /// ([`TcpStream::set_congestion`]), the default for new connections, and where an
    /// application registers a module of its own.
    pub fn congestion_control(&self) -> &xstack_cc::Registry {
        &self.tcp.cc
    }

    /// Registers a helper module (`tcp/hhook.rs`, FreeBSD's khelp) on this stack:
    /// connections created from now on get its per-connection data and run its hooks on
    /// their owner worker. Connections already open do not (khelp's rule). Fails if a
    /// helper of the same name is registered.
    pub fn register_helper<H: crate::hhook::Helper>(
        &self,
        helper: H,
    ) -> Result<(), crate::hhook::HelperError> {
        let mut cfg = self.tcp.config.write().unwrap_or_else(|e| e.into_inner());
        let set = cfg.helpers.with(helper)?;
        Arc::make_mut(&mut cfg).helpers = set;
        Ok(())
    }

    /// Unregisters the helper called `name`: no connection calls it again (a hook already
    /// running on a worker finishes), new ones get no data for it, and open ones free
    /// theirs at their next hook point (or when they are discarded). False if no helper
    /// has that name.
    pub fn unregister_helper(&self, name: &str) -> bool {
        let mut cfg = self.tcp.config.write().unwrap_or_else(|e| e.into_inner());
        let Some(set) = cfg.helpers.without(name) else {
            return false;
        };
        Arc::make_mut(&mut cfg).helpers = set;
        true
    }

    /// The names of the registered helpers, in registration (and calling) order.
    pub fn helpers(&self) -> Vec<String> {
        self.tcp.conn_config().helpers.names()
    }

    /// The stack-wide ECN setting for new connections.
    pub fn ecn(&self) -> bool {
        self.tcp.conn_config().ecn
    }

    /// Turns RACK-TLP loss detection (RFC 8985, `TcpConfig::rack`, on by default) on or
    /// off stack-wide, for connections opened afterwards; an open connection keeps its
    /// own setting ([`TcpStream::set_rack`]).
    pub fn set_rack(&self, on: bool) {
        let mut cfg = self.tcp.config.write().unwrap_or_else(|e| e.into_inner());
        Arc::make_mut(&mut cfg).rack = on;
    }

    /// The stack-wide RACK-TLP setting for new connections.
    pub fn rack(&self) -> bool {
        self.tcp.conn_config().rack
    }

    /// Gives `task` to worker `worker`, which calls it on every turn of its loop from now
    /// on, on its own thread, until it says [`TaskStatus::Done`](crate::TaskStatus) or the
    /// stack stops (run-to-completion; the rules are in [`WorkerTask`]'s module docs:
    /// no blocking, readiness through [`ReadyQueue::for_worker`]). `InvalidInput` when
    /// the stack has no such worker.
    pub fn run_on_worker(&self, worker: usize, task: impl WorkerTask) -> io::Result<()> {
        let Some(inbox) = self.tcp.tasks.get(worker) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "no worker {worker} (the stack has {})",
                    self.tcp.tasks.len()
                ),
            ));
        };
        inbox.push(Box::new(task));
        self.tcp.wake(worker);
        Ok(())
    }
}

impl AsRef<NetStack> for NetStack {
    fn as_ref(&self) -> &NetStack {
        self
    }
}

pub(crate) fn tcp_error(e: TcpError) -> io::Error {
    match e {
        TcpError::Refused => io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused"),
        TcpError::Reset => {
            io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by peer")
        }
        TcpError::TimedOut => io::Error::new(io::ErrorKind::TimedOut, "connection timed out"),
        TcpError::Aborted => io::Error::new(io::ErrorKind::ConnectionAborted, "connection aborted"),
        TcpError::HostUnreachable => {
            io::Error::new(io::ErrorKind::HostUnreachable, "no route to host")
        }
        TcpError::NetUnreachable => {
            io::Error::new(io::ErrorKind::NetworkUnreachable, "network is unreachable")
        }
    }
}

pub(crate) fn user_error(e: UserError) -> io::Error {
    match e {
        UserError::SendClosed => io::Error::new(
            io::ErrorKind::BrokenPipe,
            "broken pipe: sending side closed",
        ),
        UserError::NotConnected => io::Error::new(io::ErrorKind::NotConnected, "not connected"),
        UserError::Failed(e) => tcp_error(e),
    }
}

pub(crate) fn pcb_error(e: PcbError) -> io::Error {
    match e {
        PcbError::AddrInUse => io::Error::new(io::ErrorKind::AddrInUse, "address in use"),
        PcbError::NoPorts => io::Error::new(io::ErrorKind::AddrInUse, "no free ephemeral port"),
        PcbError::ConnLimit(_) => io::Error::new(io::ErrorKind::OutOfMemory, e.to_string()),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod mio_tests;
#[cfg(test)]
mod task_tests;
