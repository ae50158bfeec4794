//! `TcpStream`: a connected TCP socket, `std::net::TcpStream`-like.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{pcb_error, tcp_error, user_error, NetStack};
use crate::tcp::cwnd_trace::{CcEvent, CwndTrace, DEFAULT_TRACE_LIMIT};
use crate::tcp::pcb::Conn;
use crate::tcp::{Keepalive, State, Tcb, TcpInfo};

/// A TCP connection. `Send + Sync`: it may be shared between threads (e.g. one
/// reading, one writing), like `std::net::TcpStream`.
pub struct TcpStream {
    pub(crate) conn: Arc<Conn>,
    pub(crate) net: NetStack,
    nonblocking: AtomicBool,
    read_timeout: Mutex<Option<Duration>>,
    write_timeout: Mutex<Option<Duration>>,
    read_shut: AtomicBool,
    /// SO_LINGER: `Some(0)` makes dropping the handle abort the connection.
    linger: Mutex<Option<Duration>>,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.conn.tuple.local)
            .field("peer", &self.conn.tuple.remote)
            .finish()
    }
}

/// Settings an active open fixes at its SYN, for [`TcpStream::connect_with`]. They
/// cannot change once the handshake has started, so they are given here rather than
/// set on the stream afterwards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// How long to wait for the handshake; the stack's connect timeout (75 s by
    /// default) when `None`.
    pub timeout: Option<Duration>,
    /// Ask for ECN (RFC 3168) with an ECN-setup SYN; the stack-wide setting
    /// ([`NetStack::ecn`]) when `None`. Whether the peer agreed is [`TcpStream::ecn`].
    pub ecn: Option<bool>,
    /// Return at once, as [`TcpStream::connect_nonblocking`]: the stream is non-blocking
    /// and becomes writable once connected.
    pub nonblocking: bool,
    /// Send no TCP options, not even MSS, and take up none (FreeBSD's TCP_NOOPT; see
    /// `TcpConfig::no_options`).
    pub no_options: bool,
}

fn v4(addr: SocketAddr) -> io::Result<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "xstack speaks IPv4 only",
        )),
    }
}

impl TcpStream {
    pub(crate) fn from_conn(net: NetStack, conn: Arc<Conn>) -> TcpStream {
        TcpStream {
            conn,
            net,
            nonblocking: AtomicBool::new(false),
            read_timeout: Mutex::new(None),
            write_timeout: Mutex::new(None),
            read_shut: AtomicBool::new(false),
            linger: Mutex::new(None),
        }
    }

    /// Opens a connection, waiting up to the stack's connect timeout (75 s default).
    pub fn connect(
        net: impl AsRef<NetStack>,
        addr: impl Into<SocketAddr>,
    ) -> io::Result<TcpStream> {
        let net = net.as_ref();
        let timeout = net.tcp.conn_config().connect_timeout;
        Self::connect_timeout(net, addr, timeout)
    }

    /// Opens a connection, waiting at most `timeout`.
    pub fn connect_timeout(
        net: impl AsRef<NetStack>,
        addr: impl Into<SocketAddr>,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "connect timeout must be non-zero",
            ));
        }
        let opts = ConnectOptions {
            timeout: Some(timeout),
            ..ConnectOptions::default()
        };
        Self::connect_with(net, addr, &opts)
    }

    /// Opens a connection with per-connection settings fixed at the SYN (see
    /// [`ConnectOptions`]), waiting for the handshake as [`TcpStream::connect`].
    pub fn connect_with(
        net: impl AsRef<NetStack>,
        addr: impl Into<SocketAddr>,
        opts: &ConnectOptions,
    ) -> io::Result<TcpStream> {
        let net = net.as_ref();
        let timeout = opts
            .timeout
            .unwrap_or_else(|| net.tcp.conn_config().connect_timeout);
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "connect timeout must be non-zero",
            ));
        }
        let stream = Self::start_connect(net, v4(addr.into())?, timeout, opts)?;
        // On a worker thread (a task) the handshake cannot complete while we wait: the
        // socket is returned connecting, as a nonblocking connect's is.
        if opts.nonblocking || crate::task::in_task() {
            stream.nonblocking.store(true, Ordering::Relaxed);
            return Ok(stream);
        }
        let deadline = Instant::now() + timeout;
        let mut inner = stream.conn.lock();
        loop {
            let tcb = &inner.tcb;
            if let Some(e) = tcb.error() {
                return Err(tcp_error(e));
            }
            if tcb.state().is_synchronized() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                inner.tcb.abort();
                drop(inner);
                stream.net.tcp.kick(&stream.conn);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ));
            }
            inner = stream.conn.wait(inner, Some(deadline - now));
        }
        drop(inner);
        Ok(stream)
    }

    /// Starts an active open and returns at once (the socket is non-blocking until
    /// the caller changes it); readiness for writing means connected.
    pub fn connect_nonblocking(
        net: impl AsRef<NetStack>,
        addr: impl Into<SocketAddr>,
    ) -> io::Result<TcpStream> {
        let net = net.as_ref();
        let timeout = net.tcp.conn_config().connect_timeout;
        let s = Self::start_connect(net, v4(addr.into())?, timeout, &ConnectOptions::default())?;
        s.nonblocking.store(true, Ordering::Relaxed);
        Ok(s)
    }

    fn start_connect(
        net: &NetStack,
        remote: SocketAddrV4,
        timeout: Duration,
        opts: &ConnectOptions,
    ) -> io::Result<TcpStream> {
        if remote.port() == 0
            || remote.ip().is_unspecified()
            || remote.ip().is_broadcast()
            || remote.ip().is_multicast()
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid destination address",
            ));
        }
        let tcp = &net.tcp;
        let local_ip = net.ifp.source_for(*remote.ip()).ok_or_else(|| {
            io::Error::new(io::ErrorKind::AddrNotAvailable, "the stack has no address")
        })?;
        if net.ifp.next_hop(*remote.ip()).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NetworkUnreachable,
                "no route to host (no gateway)",
            ));
        }
        // Pick a port whose reply hash lands on the next worker in turn (falling back
        // to any free port), so active opens spread over the workers without handoffs.
        let target = tcp.next_connect_worker();
        let aligned = |p: u16| tcp.owner_of(SocketAddrV4::new(local_ip, p), remote) == target;
        let port = tcp
            .pcbs
            .pick_port(local_ip, remote, &aligned)
            .map_err(pcb_error)?;
        let local = SocketAddrV4::new(local_ip, port);
        let now = tcp.clock.now();
        let mut cfg = tcp.conn_config();
        if cfg.connect_timeout != timeout
            || opts.ecn.is_some_and(|on| on != cfg.ecn)
            || (opts.no_options && !cfg.no_options)
        {
            let c = Arc::make_mut(&mut cfg);
            c.connect_timeout = timeout;
            c.ecn = opts.ecn.unwrap_or(c.ecn);
            c.no_options |= opts.no_options;
        }
        let cc = tcp.cc.create_default();
        let iss = tcp.isn.isn(local, remote, now);
        let tcb = Tcb::connect(cfg, local, remote, iss, cc, now);
        let owner = tcp.owner_of(local, remote);
        let tuple = crate::tcp::pcb::FourTuple { local, remote };
        let conn = tcp.pcbs.insert(tuple, owner, tcb).map_err(pcb_error)?;
        tcp.kick(&conn);
        Ok(TcpStream::from_conn(net.clone(), conn))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.conn.tuple.local))
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.conn.tuple.remote))
    }

    /// Shuts down reading, writing or both (`Shutdown::Write` sends FIN after the
    /// queued data).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.read_shut.store(true, Ordering::Relaxed);
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            let mut inner = self.conn.lock();
            if inner.tcb.state() == State::Closed && inner.tcb.error().is_none() {
                return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
            }
            inner.tcb.close(self.net.tcp.clock.now());
            drop(inner);
            self.net.tcp.kick(&self.conn);
        }
        Ok(())
    }

    /// TCP_NODELAY.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.conn.lock().tcb.set_nodelay(on);
        self.net.tcp.kick(&self.conn);
        Ok(())
    }

    /// Switches RACK-TLP loss detection (RFC 8985) on or off for this connection; the
    /// stack-wide default is `TcpConfig::rack` (on). Off gives RFC 6675's DupThresh loss
    /// detection and no tail loss probes.
    pub fn set_rack(&self, on: bool) -> io::Result<()> {
        let now = self.net.tcp.clock.now();
        self.conn.lock().tcb.set_rack(on, now);
        self.net.tcp.kick(&self.conn);
        Ok(())
    }

    /// Whether RACK-TLP is switched on for this connection ([`TcpStream::set_rack`]).
    pub fn rack(&self) -> io::Result<bool> {
        Ok(self.conn.lock().tcb.rack_enabled())
    }

    /// TCP_NODELAY's current value.
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(self.conn.lock().tcb.nodelay())
    }

    /// Whether ECN (RFC 3168) is in use: both sides agreed on the handshake. False
    /// until the handshake completes. To ask for it, see [`ConnectOptions::ecn`],
    /// [`TcpListener::set_ecn`](super::TcpListener::set_ecn) or [`NetStack::set_ecn`].
    pub fn ecn(&self) -> bool {
        self.conn.lock().tcb.ecn()
    }

    /// Switches the connection's congestion control at any time (TCP_CONGESTION).
    /// An unknown name is an `InvalidInput` error listing the available modules.
    pub fn set_congestion(&self, name: &str) -> io::Result<()> {
        let cc = self
            .net
            .tcp
            .cc
            .create(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let mut inner = self.conn.lock();
        inner.tcb.set_congestion(cc);
        inner
            .tcb
            .trace_cc(CcEvent::Switch, self.net.tcp.clock.now());
        Ok(())
    }

    /// The connection's congestion-control module.
    pub fn congestion(&self) -> String {
        self.conn.lock().tcb.congestion().to_string()
    }

    /// SO_LINGER. `Some(Duration::ZERO)`: dropping the handle aborts the connection
    /// with a RST and discards unsent data (an abortive close, RFC 9293 §3.10.5 ABORT).
    /// `None` or any other duration: dropping it closes gracefully in the background,
    /// queued data then FIN, without blocking (a non-zero linger does not make the drop
    /// wait).
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        *self.linger.lock().unwrap_or_else(|e| e.into_inner()) = linger;
        Ok(())
    }

    /// The SO_LINGER setting ([`TcpStream::set_linger`]).
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        Ok(*self.linger.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Read timeout for blocking reads (`None`: wait forever). Zero is invalid, as in std.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        if t == Some(Duration::ZERO) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "zero timeout"));
        }
        *self.read_timeout.lock().unwrap_or_else(|e| e.into_inner()) = t;
        Ok(())
    }

    /// Write timeout for blocking writes.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        if t == Some(Duration::ZERO) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "zero timeout"));
        }
        *self.write_timeout.lock().unwrap_or_else(|e| e.into_inner()) = t;
        Ok(())
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(*self.read_timeout.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Non-blocking mode: reads and writes return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.nonblocking.store(on, Ordering::Relaxed);
        Ok(())
    }

    /// Keepalive (SO_KEEPALIVE with TCP_KEEPIDLE/INTVL/CNT); `None` disables it.
    pub fn set_keepalive(&self, ka: Option<Keepalive>) -> io::Result<()> {
        self.conn
            .lock()
            .tcb
            .set_keepalive(ka, self.net.tcp.clock.now());
        self.net.tcp.kick(&self.conn);
        Ok(())
    }

    /// SO_SNDBUF.
    pub fn set_send_buffer_size(&self, n: usize) -> io::Result<()> {
        self.conn.lock().tcb.set_buffer_sizes(Some(n), None);
        Ok(())
    }

    /// The send buffer's size (SO_SNDBUF as getsockopt reads it).
    pub fn send_buffer_size(&self) -> usize {
        self.conn.lock().tcb.config().sndbuf
    }

    /// The receive buffer's size (SO_RCVBUF as getsockopt reads it).
    pub fn recv_buffer_size(&self) -> usize {
        self.conn.lock().tcb.config().rcvbuf
    }

    /// SO_RCVBUF (the window scale was fixed at the handshake, so very large growth
    /// after connecting is limited by it).
    pub fn set_recv_buffer_size(&self, n: usize) -> io::Result<()> {
        self.conn.lock().tcb.set_buffer_sizes(None, Some(n));
        self.net.tcp.kick(&self.conn);
        Ok(())
    }

    /// Starts (`true`) or stops (`false`, discarding it) recording this connection's cwnd
    /// trace: one sample per congestion-control step, at most
    /// [`DEFAULT_TRACE_LIMIT`] samples, times from the connection's start. Starting
    /// a running trace (e.g. one the stack's `TcpConfig::cwnd_trace` started) keeps it.
    pub fn set_cwnd_trace(&self, on: bool) -> io::Result<()> {
        let mut inner = self.conn.lock();
        let running = inner.tcb.cwnd_tracing();
        match (on, running) {
            (true, true) => {}
            (true, false) => inner.tcb.set_cwnd_trace(Some(DEFAULT_TRACE_LIMIT)),
            (false, _) => inner.tcb.set_cwnd_trace(None),
        }
        Ok(())
    }

    /// Takes the cwnd trace recorded so far (recording continues); `None` when tracing is
    /// off. Works after the connection closed, until the handle is dropped.
    pub fn take_cwnd_trace(&self) -> Option<CwndTrace> {
        self.conn.lock().tcb.take_cwnd_trace()
    }

    /// A `tcp_info`-like snapshot of the connection.
    pub fn info(&self) -> TcpInfo {
        self.conn.lock().tcb.info()
    }

    /// The helper modules with data on this connection (those registered on the stack
    /// when it was made, less any unregistered since).
    pub fn helpers(&self) -> Vec<String> {
        self.conn.lock().tcb.helper_names()
    }

    /// `(helper, JSON value)` for each helper that reports this connection's data
    /// ([`Helper::info_json`](crate::hhook::Helper::info_json)): the stats helper's
    /// histograms, the ERTT helper's estimate.
    pub fn helper_info(&self) -> Vec<(String, String)> {
        self.conn.lock().tcb.helper_info()
    }

    /// Calls `f` with the data of the helper called `name` on this connection, if it has
    /// data of type `T` there (e.g. `with_helper_data("ertt", |e: &ErttData| e.estimate())`,
    /// [`crate::helpers::ErttData`]), under the connection's lock.
    pub fn with_helper_data<T: 'static, R>(
        &self,
        name: &str,
        f: impl FnOnce(&T) -> R,
    ) -> Option<R> {
        self.conn.lock().tcb.helper_data(name).map(f)
    }

    /// The pending error, if the connection failed (SO_ERROR). A soft error ICMP
    /// reported is not one (the connection goes on): it becomes the error if the
    /// connection then times out, as FreeBSD's `t_softerror`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(self.conn.lock().tcb.error().map(tcp_error))
    }

    /// Completes a non-blocking connect ([`TcpStream::connect_nonblocking`]): `Ok` once
    /// the handshake is done (also if the connection has since closed cleanly), the
    /// connection's error if it failed (`ConnectionRefused`, `TimedOut`, ...), and
    /// `WouldBlock` while the handshake is in progress, which arms the readiness fd
    /// ([`TcpStream::readiness_fd`]) so an event loop hears when to call again.
    pub fn finish_connect(&self) -> io::Result<()> {
        let inner = self.conn.lock();
        if let Some(e) = inner.tcb.error() {
            return Err(tcp_error(e));
        }
        let state = inner.tcb.state();
        if state.is_synchronized() || state == State::Closed {
            return Ok(());
        }
        if let Some(fd) = &inner.readiness {
            fd.arm();
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// The connection's shared object (for the poller).
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    fn read_impl(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.read_shut.load(Ordering::Relaxed) {
            return Ok(0);
        }
        let timeout = *self.read_timeout.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut inner = self.conn.lock();
        loop {
            let before_update = inner.tcb.window_update_wanted();
            let n = inner.tcb.recv(buf).map_err(user_error)?;
            if n > 0 {
                // Reading opened the window: let the owner advertise it if that is
                // worth a segment (receiver SWS avoidance decides).
                let kick = !before_update && inner.tcb.window_update_wanted();
                drop(inner);
                if kick {
                    self.net.tcp.kick(&self.conn);
                }
                return Ok(n);
            }
            if inner.tcb.fin_received() || inner.tcb.state() == State::Closed {
                return Ok(0);
            }
            inner = self.block(inner, deadline, "read timed out")?;
        }
    }

    /// Waits for the connection's readiness to change: `WouldBlock` at once in
    /// non-blocking mode, or once `deadline` passes (what std reports for SO_RCVTIMEO /
    /// SO_SNDTIMEO expiry).
    fn block<'a>(
        &'a self,
        inner: std::sync::MutexGuard<'a, crate::tcp::pcb::ConnInner>,
        deadline: Option<Instant>,
        what: &'static str,
    ) -> io::Result<std::sync::MutexGuard<'a, crate::tcp::pcb::ConnInner>> {
        // On a worker thread (a task) waiting would stall the worker itself.
        if self.nonblocking.load(Ordering::Relaxed) || crate::task::in_task() {
            // Armed under the lock the worker changes readiness under: a change after
            // this is seen by the worker's disarm (socket/readiness.rs).
            if let Some(fd) = &inner.readiness {
                fd.arm();
            }
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match deadline {
            None => Ok(self.conn.wait(inner, None)),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Err(io::Error::new(io::ErrorKind::WouldBlock, what));
                }
                Ok(self.conn.wait(inner, Some(d - now)))
            }
        }
    }

    fn write_impl(&self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let timeout = *self.write_timeout.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut inner = self.conn.lock();
        loop {
            let n = inner.tcb.send(data).map_err(user_error)?;
            if n > 0 {
                drop(inner);
                self.net.tcp.kick(&self.conn);
                return Ok(n);
            }
            inner = self.block(inner, deadline, "write timed out")?;
        }
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_impl(buf)
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_impl(buf)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_impl(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_impl(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TcpStream {
    /// Closing the handle closes the connection: a FIN after the queued data, or a RST
    /// if received data was left unread (as Linux does, RFC 2525 §2.17) or the linger
    /// time is zero ([`TcpStream::set_linger`]).
    fn drop(&mut self) {
        let abortive =
            *self.linger.get_mut().unwrap_or_else(|e| e.into_inner()) == Some(Duration::ZERO);
        let mut inner = self.conn.lock();
        inner.orphaned = true;
        // The fd closes once the event loop lets go of it too; the worker no longer
        // writes it.
        inner.readiness = None;
        let now = self.net.tcp.clock.now();
        if abortive || inner.tcb.readable() > 0 {
            inner.tcb.abort();
        } else {
            inner.tcb.close(now);
            inner.tcb.set_orphaned(now);
        }
        drop(inner);
        self.net.tcp.kick(&self.conn);
    }
}
