//! Socket calls on the simulated stack, each one attempt that never blocks: `EAGAIN`
//! means "would block" and [`crate::shim::Shim::blocking`] decides whether to wait.
//! xstack handles are always non-blocking; `O_NONBLOCK` is the descriptor's flag here.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4};
use std::time::Instant;

use libc::c_int;
use xstack::{Interest, Poller, TcpListener, TcpStream};

use crate::posix::errno_of;
use crate::shim::Inner;

/// Per-descriptor flags and options.
#[derive(Clone, Copy, Debug, Default)]
pub struct Opts {
    /// `O_NONBLOCK`.
    pub nonblocking: bool,
    /// The address `bind` gave.
    pub bound: Option<SocketAddrV4>,
    /// SO_REUSEADDR (stored; the stack has no TIME_WAIT reuse switch).
    pub reuseaddr: bool,
    /// TCP_NODELAY.
    pub nodelay: bool,
    /// SO_SNDBUF / SO_RCVBUF.
    pub sndbuf: Option<usize>,
    pub rcvbuf: Option<usize>,
    /// The connection's error was reported by SO_ERROR or a call (reported once).
    pub error_reported: bool,
    /// Writing was shut down.
    pub wr_shut: bool,
    /// SO_SNDBUF or SO_RCVBUF was set on this socket (an accepted connection inherits
    /// them; otherwise it starts from the stack-wide sizes the sysctls set, which the
    /// stack rounds to the MSS in the handshake as FreeBSD does).
    pub bufs_set: bool,
    /// SO_KEEPALIVE.
    pub keepalive: bool,
    /// TCP_KEEPIDLE, TCP_KEEPINTVL (seconds) and TCP_KEEPCNT; `None`: the stack-wide
    /// default (the sysctls', else FreeBSD's 7200 s, 75 s, 8).
    pub keep: (Option<u32>, Option<u32>, Option<u32>),
    /// SO_LINGER: `Some(seconds)` when on.
    pub linger: Option<c_int>,
    /// FreeBSD's TCP_KEEPINIT (seconds): the connect timeout of a later `connect`.
    pub keepinit: Option<u32>,
    /// FreeBSD's TCP_NOOPT: a later `connect` or `listen` sends no TCP options.
    pub noopt: bool,
    /// TCP_CONGESTION set before the connection existed (NUL-padded name).
    pub cc: Option<[u8; 16]>,
}

impl Opts {
    /// The congestion-control module set with TCP_CONGESTION, if any.
    pub fn congestion(&self) -> Option<&str> {
        let b = self.cc.as_ref()?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        std::str::from_utf8(&b[..end]).ok()
    }

    /// Records a TCP_CONGESTION name; `EINVAL` past 15 bytes (Linux's
    /// `TCP_CA_NAME_MAX` with its NUL).
    pub fn set_congestion(&mut self, name: &str) -> Result<(), c_int> {
        let mut b = [0u8; 16];
        b.get_mut(..name.len())
            .filter(|_| name.len() < 16)
            .ok_or(libc::EINVAL)?
            .copy_from_slice(name.as_bytes());
        self.cc = Some(b);
        Ok(())
    }

    /// The keepalive parameters in effect (seconds, seconds, probes).
    pub fn keep_params(&self, d: &crate::sysctl::Defaults) -> (u32, u32, u32) {
        let ms = |v: Option<u64>, def: u32| v.map_or(def, |ms| (ms / 1000) as u32);
        (
            self.keep.0.unwrap_or(ms(d.keepidle_ms, 7200)),
            self.keep.1.unwrap_or(ms(d.keepintvl_ms, 75)),
            self.keep.2.or(d.keepcnt).unwrap_or(8),
        )
    }
}

/// What a descriptor is.
pub enum Sock {
    /// `socket()`, maybe bound, not yet listening or connected.
    Fresh(Opts),
    /// A listening socket.
    Listener(TcpListener, Opts),
    /// A connection (connecting, connected or closing).
    Stream(TcpStream, Opts),
    /// An epoll instance and its registrations (see [`crate::epoll`]).
    Epoll(Vec<crate::epoll::Entry>, Opts),
}

impl Sock {
    pub fn opts(&self) -> &Opts {
        match self {
            Sock::Fresh(o) | Sock::Listener(_, o) | Sock::Stream(_, o) | Sock::Epoll(_, o) => o,
        }
    }

    pub fn opts_mut(&mut self) -> &mut Opts {
        match self {
            Sock::Fresh(o) | Sock::Listener(_, o) | Sock::Stream(_, o) | Sock::Epoll(_, o) => o,
        }
    }
}

fn io_err(e: std::io::Error) -> c_int {
    errno_of(&e)
}

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => SocketAddrV4::new([0, 0, 0, 0].into(), 0),
    }
}

impl Inner {
    /// Whether descriptor `fd` is in non-blocking mode (an unknown descriptor is: its
    /// call fails at once).
    pub fn nonblocking(&self, fd: c_int) -> bool {
        self.fds.get(fd).map_or(true, |s| s.opts().nonblocking)
    }

    pub fn socket(&mut self, domain: c_int, ty: c_int, protocol: c_int) -> Result<c_int, c_int> {
        if domain != libc::AF_INET {
            self.unsupported(format!("socket(domain {domain})"));
            return Err(libc::EAFNOSUPPORT);
        }
        let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
        if base != libc::SOCK_STREAM || !(protocol == 0 || protocol == libc::IPPROTO_TCP) {
            self.unsupported(format!("socket(type {base}, protocol {protocol})"));
            return Err(libc::EPROTONOSUPPORT);
        }
        let mut d = crate::sysctl::Defaults::default();
        for k in crate::sysctl::load(&mut d) {
            self.sysctls.insert(k);
        }
        if let Some(e) = d.ecn {
            self.net.set_ecn(e == 1);
        }
        self.ecn_sysctl = d.ecn;
        let base = self.profile_tcp.clone();
        self.sim.update_tcp_config(|c| d.apply_to(&base, c));
        let opts = Opts {
            nonblocking: ty & libc::SOCK_NONBLOCK != 0,
            sndbuf: d.sndbuf,
            rcvbuf: d.rcvbuf,
            ..Opts::default()
        };
        let (idle, intvl, cnt) = opts.keep_params(&d);
        let opts = Opts {
            keep: (Some(idle), Some(intvl), Some(cnt)),
            keepinit: Some(d.keepinit_ms.map_or(75, |ms| (ms / 1000) as u32)),
            ..opts
        };
        Ok(self.fds.insert(Sock::Fresh(opts)))
    }

    pub fn bind(&mut self, fd: c_int, addr: SocketAddrV4) -> Result<(), c_int> {
        let local = self.local;
        match self.fds.get_mut(fd)? {
            Sock::Fresh(o) if o.bound.is_none() => {
                if !addr.ip().is_unspecified() && *addr.ip() != local {
                    return Err(libc::EADDRNOTAVAIL);
                }
                o.bound = Some(addr);
                Ok(())
            }
            _ => Err(libc::EINVAL),
        }
    }

    pub fn listen(&mut self, fd: c_int, backlog: c_int) -> Result<(), c_int> {
        let o = match self.fds.get(fd)? {
            Sock::Fresh(o) => *o,
            Sock::Listener(..) => return Ok(()),
            Sock::Stream(..) | Sock::Epoll(..) => return Err(libc::EINVAL),
        };
        let Some(addr) = o.bound else {
            self.unsupported("listen without bind");
            return Err(libc::EDESTADDRREQ);
        };
        let backlog = usize::try_from(backlog).unwrap_or(0).max(1);
        let l = TcpListener::bind_with_backlog(&self.net, addr, backlog).map_err(io_err)?;
        l.set_nonblocking(true).map_err(io_err)?;
        if let Some(e) = self.ecn_sysctl {
            l.set_ecn(e != 0).map_err(io_err)?;
        }
        l.set_no_options(o.noopt).map_err(io_err)?;
        self.fds.replace(fd, Sock::Listener(l, o))?;
        Ok(())
    }

    /// One accept attempt: the new descriptor and the peer's address.
    pub fn accept(&mut self, fd: c_int) -> Result<(c_int, SocketAddrV4), c_int> {
        let (s, peer) = match self.fds.get(fd)? {
            Sock::Listener(l, _) => l.accept().map_err(io_err)?,
            _ => return Err(libc::EINVAL),
        };
        s.set_nonblocking(true).map_err(io_err)?;
        let o = self.fds.get(fd)?.opts();
        let explicit = |v: Option<usize>| v.filter(|_| o.bufs_set);
        let opts = Opts {
            nodelay: o.nodelay,
            sndbuf: explicit(o.sndbuf),
            rcvbuf: explicit(o.rcvbuf),
            bufs_set: o.bufs_set,
            keepalive: o.keepalive,
            keep: o.keep,
            linger: o.linger,
            cc: o.cc,
            ..Opts::default()
        };
        apply_opts(&s, &opts);
        Ok((self.fds.insert(Sock::Stream(s, opts)), v4(peer)))
    }

    /// Starts a connection (`EINPROGRESS`), or reports how one started earlier is
    /// doing: `Ok` once established, `EALREADY` while in progress, its error if it
    /// failed.
    pub fn connect(&mut self, fd: c_int, addr: SocketAddrV4) -> Result<(), c_int> {
        match self.fds.get_mut(fd)? {
            Sock::Fresh(o) => {
                let o = *o;
                if o.bound.is_some_and(|b| b.port() != 0) {
                    self.unsupported("connect from a bound port (an ephemeral port is used)");
                }
                let co = xstack::ConnectOptions {
                    timeout: o
                        .keepinit
                        .map(|s| std::time::Duration::from_secs(s.max(1).into())),
                    nonblocking: true,
                    no_options: o.noopt,
                    ..Default::default()
                };
                let s = TcpStream::connect_with(&self.net, addr, &co).map_err(io_err)?;
                apply_opts(&s, &o);
                self.fds.replace(fd, Sock::Stream(s, o))?;
                Err(libc::EINPROGRESS)
            }
            Sock::Listener(..) => Err(libc::EISCONN),
            Sock::Epoll(..) => Err(libc::ENOTSOCK),
            Sock::Stream(s, o) => match stream_state(s, o)? {
                "SYN_SENT" | "SYN_RECEIVED" => Err(libc::EALREADY),
                _ => Err(libc::EISCONN),
            },
        }
    }

    /// Whether a connection started by `connect` is established (`EAGAIN` while not,
    /// its error if it failed): what a blocking connect waits for.
    pub fn connect_done(&mut self, fd: c_int) -> Result<(), c_int> {
        match self.fds.get_mut(fd)? {
            Sock::Stream(s, o) => match stream_state(s, o)? {
                "SYN_SENT" | "SYN_RECEIVED" => Err(libc::EAGAIN),
                _ => Ok(()),
            },
            _ => Err(libc::EINVAL),
        }
    }

    fn stream(&mut self, fd: c_int) -> Result<(&TcpStream, &mut Opts), c_int> {
        match self.fds.get_mut(fd)? {
            Sock::Stream(s, o) => Ok((s, o)),
            Sock::Fresh(_) | Sock::Listener(..) => Err(libc::ENOTCONN),
            Sock::Epoll(..) => Err(libc::ENOTSOCK),
        }
    }

    /// One read attempt (`EAGAIN`: nothing yet).
    pub fn read(&mut self, fd: c_int, buf: &mut [u8]) -> Result<usize, c_int> {
        let (s, o) = self.stream(fd)?;
        let mut r: &TcpStream = s;
        match r.read(buf) {
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                if o.error_reported {
                    Ok(0)
                } else {
                    o.error_reported = true;
                    Err(io_err(e))
                }
            }
            r => r.map_err(io_err),
        }
    }

    /// One write attempt: how much the send buffer took (`EAGAIN`: nothing).
    pub fn write(&mut self, fd: c_int, data: &[u8]) -> Result<usize, c_int> {
        let (s, o) = self.stream(fd)?;
        if o.wr_shut {
            return Err(libc::EPIPE);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let mut w: &TcpStream = s;
        match w.write(data) {
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                o.error_reported = true;
                Err(io_err(e))
            }
            r => r.map_err(io_err),
        }
    }

    pub fn shutdown(&mut self, fd: c_int, how: c_int) -> Result<(), c_int> {
        let how = match how {
            libc::SHUT_RD => Shutdown::Read,
            libc::SHUT_WR => Shutdown::Write,
            libc::SHUT_RDWR => Shutdown::Both,
            _ => return Err(libc::EINVAL),
        };
        let (s, o) = self.stream(fd)?;
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            o.wr_shut = true;
        }
        s.shutdown(how).map_err(io_err)
    }

    pub fn close(&mut self, fd: c_int) -> Result<(), c_int> {
        drop(self.fds.remove(fd)?);
        self.epoll_forget(fd);
        Ok(())
    }

    /// `poll` once: fills `revents`, returns how many descriptors have events.
    pub fn poll_once(&mut self, fds: &mut [libc::pollfd]) -> usize {
        let poller = Poller::new();
        for (i, p) in fds.iter_mut().enumerate() {
            p.revents = 0;
            let interest = Interest {
                readable: p.events & (libc::POLLIN | libc::POLLRDNORM) != 0,
                writable: p.events & (libc::POLLOUT | libc::POLLWRNORM) != 0,
            };
            let r = match self.fds.get(p.fd) {
                Err(_) => {
                    p.revents = libc::POLLNVAL;
                    continue;
                }
                Ok(Sock::Fresh(_)) => {
                    p.revents = (libc::POLLOUT & p.events) | libc::POLLHUP;
                    continue;
                }
                Ok(Sock::Listener(l, _)) => poller.register(l, i, interest),
                Ok(Sock::Stream(s, _)) => poller.register(s, i, interest),
                // An epoll descriptor inside poll: never ready here.
                Ok(Sock::Epoll(..)) => continue,
            };
            if r.is_err() {
                p.revents = libc::POLLERR;
            }
        }
        let mut events = Vec::new();
        let _ = poller.wait(&mut events, Some(std::time::Duration::ZERO));
        for e in events {
            let p = &mut fds[e.token];
            if e.readable {
                p.revents |= p.events & (libc::POLLIN | libc::POLLRDNORM);
            }
            if e.writable {
                p.revents |= p.events & (libc::POLLOUT | libc::POLLWRNORM);
            }
            if e.error {
                p.revents |= libc::POLLERR;
            }
        }
        fds.iter().filter(|p| p.revents != 0).count()
    }

    /// `poll` as one attempt: `EAGAIN` while nothing is ready and `timeout_ms` of
    /// virtual time has not passed since `began`.
    pub fn poll(
        &mut self,
        fds: &mut [libc::pollfd],
        timeout_ms: c_int,
        began: Instant,
    ) -> Result<usize, c_int> {
        let n = self.poll_once(fds);
        if n > 0 || timeout_ms == 0 {
            return Ok(n);
        }
        let waited = self.now().saturating_duration_since(began);
        if timeout_ms > 0 && waited.as_millis() >= timeout_ms as u128 {
            return Ok(0);
        }
        Err(libc::EAGAIN)
    }

    /// SO_ERROR: the connection's pending error (once), else 0.
    pub fn so_error(&mut self, fd: c_int) -> Result<c_int, c_int> {
        match self.fds.get_mut(fd)? {
            Sock::Stream(s, o) => match s.take_error().map_err(io_err)? {
                Some(e) if !o.error_reported => {
                    o.error_reported = true;
                    Ok(errno_of(&e))
                }
                _ => Ok(0),
            },
            _ => Ok(0),
        }
    }
}

/// Options set before the connection existed.
pub fn apply_opts(s: &TcpStream, o: &Opts) {
    if o.nodelay {
        let _ = s.set_nodelay(true);
    }
    if let Some(n) = o.sndbuf {
        let _ = s.set_send_buffer_size(n);
    }
    if let Some(n) = o.rcvbuf {
        let _ = s.set_recv_buffer_size(n);
    }
    if o.keepalive {
        let _ = s.set_keepalive(Some(keepalive_of(o)));
    }
    if let Some(secs) = o.linger {
        let _ = s.set_linger(Some(std::time::Duration::from_secs(secs.max(0) as u64)));
    }
    if let Some(cc) = o.congestion() {
        let _ = s.set_congestion(cc);
    }
}

/// The stack's keepalive for SO_KEEPALIVE with the socket's TCP_KEEP* values.
pub fn keepalive_of(o: &Opts) -> xstack::Keepalive {
    let (idle, intvl, cnt) = o.keep_params(&crate::sysctl::Defaults::default());
    xstack::Keepalive {
        idle: std::time::Duration::from_secs(idle.into()),
        interval: std::time::Duration::from_secs(intvl.into()),
        count: cnt,
    }
}

/// The connection's state name, or its error (reported once).
fn stream_state(s: &TcpStream, o: &mut Opts) -> Result<&'static str, c_int> {
    if let Some(e) = s.take_error().map_err(io_err)? {
        if !o.error_reported {
            o.error_reported = true;
            return Err(errno_of(&e));
        }
    }
    Ok(s.info().state)
}
