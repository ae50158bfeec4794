//! `getsockopt` and `setsockopt`: SO_ERROR, SO_REUSEADDR, SO_TYPE, SO_SNDBUF,
//! SO_RCVBUF, SO_KEEPALIVE, SO_LINGER, TCP_NODELAY, TCP_MAXSEG (read only),
//! TCP_CONGESTION, TCP_INFO (Linux's layout, see [`crate::tcpinfo`]), TCP_CC_INFO
//! (empty, as Linux for modules without one), SO_MEMINFO (the buffer sizes), and
//! TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT (seconds and probes, as on FreeBSD and Linux;
//! the stack's `set_keepalive`), FreeBSD's TCP_KEEPINIT by its FreeBSD number (the
//! connect timeout, seconds) and TCP_NOOPT (by [`FREEBSD_TCP_NOOPT`]); anything else is counted and fails with `ENOPROTOOPT`.

use std::ffi::{c_int, c_void};

use libc::socklen_t;

use crate::ffi::{guard, shim};
use crate::shim::Inner;
use crate::sockets::{apply_opts, Sock};
use crate::tcpinfo;

/// FreeBSD's `TCP_KEEPINIT` (`netinet/tcp.h`): Linux has no such option, so its number
/// is free; the runner writes it as a number in the scripts.
pub const FREEBSD_TCP_KEEPINIT: c_int = 128;

/// FreeBSD's `TCP_NOOPT`, 8 there, which is Linux's `TCP_WINDOW_CLAMP`: the shim takes
/// it under this number instead, which the runner writes in the scripts.
pub const FREEBSD_TCP_NOOPT: c_int = 0x1_0008;

/// Linux's `SO_MEMINFO` vector: `SK_MEMINFO_VARS` u32s.
const SK_MEMINFO_VARS: usize = 9;

/// An option's value: an `int`, or bytes (a struct or a string).
enum Val {
    Int(c_int),
    Bytes(Vec<u8>),
}

type Ud = *mut c_void;

fn get(g: &mut Inner, fd: c_int, level: c_int, name: c_int) -> Result<Val, c_int> {
    if let Some(v) = get_bytes(g, fd, level, name)? {
        return Ok(Val::Bytes(v));
    }
    get_int(g, fd, level, name).map(Val::Int)
}

/// The options whose value is not an `int`.
fn get_bytes(
    g: &mut Inner,
    fd: c_int,
    level: c_int,
    name: c_int,
) -> Result<Option<Vec<u8>>, c_int> {
    let sock = g.fds.get(fd)?;
    let o = *sock.opts();
    let v = match (level, name) {
        (libc::IPPROTO_TCP, libc::TCP_INFO) => match sock {
            Sock::Stream(s, _) => {
                let i = s.info();
                tcpinfo::encode(tcpinfo::linux_state(i.state), Some(&i))
            }
            Sock::Listener(..) => tcpinfo::encode(tcpinfo::linux_state("LISTEN"), None),
            Sock::Fresh(_) => tcpinfo::encode(tcpinfo::linux_state("CLOSED"), None),
            Sock::Epoll(..) => return Err(libc::ENOTSOCK),
        },
        (libc::IPPROTO_TCP, libc::TCP_CC_INFO) => Vec::new(),
        (libc::IPPROTO_TCP, libc::TCP_CONGESTION) => {
            let name = match sock {
                Sock::Stream(s, _) => s.congestion(),
                _ => o
                    .congestion()
                    .unwrap_or(g.net.congestion_control().default_name())
                    .to_string(),
            };
            let mut b = name.into_bytes();
            b.resize(16, 0);
            b
        }
        (libc::SOL_SOCKET, libc::SO_LINGER) => {
            let (on, secs) = o.linger.map_or((0, 0), |s| (1, s));
            [on, secs]
                .iter()
                .flat_map(|v: &c_int| v.to_ne_bytes())
                .collect()
        }
        (libc::SOL_SOCKET, libc::SO_MEMINFO) => {
            let (snd, rcv) = match sock {
                Sock::Stream(s, _) => (s.send_buffer_size(), s.recv_buffer_size()),
                _ => (o.sndbuf.unwrap_or(g.bufs.0), o.rcvbuf.unwrap_or(g.bufs.1)),
            };
            let mut m = [0u32; SK_MEMINFO_VARS];
            // SK_MEMINFO_RCVBUF and SK_MEMINFO_SNDBUF.
            (m[1], m[3]) = (rcv as u32, snd as u32);
            m.iter().flat_map(|v| v.to_ne_bytes()).collect()
        }
        _ => return Ok(None),
    };
    Ok(Some(v))
}

fn get_int(g: &mut Inner, fd: c_int, level: c_int, name: c_int) -> Result<c_int, c_int> {
    let sock = g.fds.get(fd)?;
    let o = *sock.opts();
    // A connection reports its buffers as they are (the stack may have rounded them).
    let live = match sock {
        Sock::Stream(s, _) => Some((s.send_buffer_size(), s.recv_buffer_size())),
        _ => None,
    };
    match (level, name) {
        (libc::SOL_SOCKET, libc::SO_ERROR) => g.so_error(fd),
        (libc::SOL_SOCKET, libc::SO_REUSEADDR) => Ok(o.reuseaddr as c_int),
        (libc::SOL_SOCKET, libc::SO_TYPE) => Ok(libc::SOCK_STREAM),
        (libc::SOL_SOCKET, libc::SO_SNDBUF) => {
            Ok(live.map_or(o.sndbuf.unwrap_or(g.bufs.0), |l| l.0) as c_int)
        }
        (libc::SOL_SOCKET, libc::SO_RCVBUF) => {
            Ok(live.map_or(o.rcvbuf.unwrap_or(g.bufs.1), |l| l.1) as c_int)
        }
        (libc::IPPROTO_TCP, libc::TCP_NODELAY) => Ok(o.nodelay as c_int),
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => Ok(o.keepalive as c_int),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE) => Ok(keep(&o).0 as c_int),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL) => Ok(keep(&o).1 as c_int),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT) => Ok(keep(&o).2 as c_int),
        (libc::IPPROTO_TCP, libc::TCP_MAXSEG) => Ok(match sock {
            Sock::Stream(s, _) => s.info().mss as c_int,
            // RFC 9293 §3.7.1's default send MSS, what Linux and FreeBSD report before
            // a connection exists.
            _ => 536,
        }),
        (libc::IPPROTO_TCP, FREEBSD_TCP_KEEPINIT) => Ok(o.keepinit.unwrap_or(75) as c_int),
        (libc::IPPROTO_TCP, FREEBSD_TCP_NOOPT) => Ok(o.noopt as c_int),
        _ => {
            g.unsupported(format!("getsockopt(level {level}, option {name})"));
            Err(libc::ENOPROTOOPT)
        }
    }
}

/// The keepalive parameters a socket reports (set at `socket()` from the sysctls).
fn keep(o: &crate::sockets::Opts) -> (u32, u32, u32) {
    o.keep_params(&crate::sysctl::Defaults::default())
}

/// The options whose value is not an `int`; `false` when `name` is not one of them.
fn set_bytes(g: &mut Inner, fd: c_int, level: c_int, name: c_int, v: &[u8]) -> Result<bool, c_int> {
    match (level, name) {
        (libc::IPPROTO_TCP, libc::TCP_CONGESTION) => {
            let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
            let cc = std::str::from_utf8(&v[..end]).map_err(|_| libc::ENOENT)?;
            // Linux answers ENOENT for a module it does not know.
            g.net
                .congestion_control()
                .create(cc)
                .map_err(|_| libc::ENOENT)?;
            match g.fds.get_mut(fd)? {
                Sock::Stream(s, _) => s.set_congestion(cc).map_err(|_| libc::ENOENT)?,
                sock => sock.opts_mut().set_congestion(cc)?,
            }
        }
        (libc::SOL_SOCKET, libc::SO_LINGER) => {
            let int = |i: usize| {
                v.get(i * 4..i * 4 + 4)
                    .map(|b| c_int::from_ne_bytes(b.try_into().unwrap_or_default()))
            };
            let (Some(on), Some(secs)) = (int(0), int(1)) else {
                return Err(libc::EINVAL);
            };
            let linger = (on != 0).then_some(secs.max(0));
            let sock = g.fds.get_mut(fd)?;
            sock.opts_mut().linger = linger;
            if let Sock::Stream(s, _) = sock {
                s.set_linger(linger.map(|s| std::time::Duration::from_secs(s as u64)))
                    .map_err(|e| crate::posix::errno_of(&e))?;
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn set(g: &mut Inner, fd: c_int, level: c_int, name: c_int, v: c_int) -> Result<(), c_int> {
    let sock = g.fds.get_mut(fd)?;
    let o = sock.opts_mut();
    match (level, name) {
        (libc::IPPROTO_TCP, FREEBSD_TCP_KEEPINIT) if v < 1 => return Err(libc::EINVAL),
        (libc::IPPROTO_TCP, FREEBSD_TCP_KEEPINIT) => {
            // Fixed at the SYN: applies to a connect made afterwards.
            o.keepinit = Some(v as u32);
            return Ok(());
        }
        (libc::IPPROTO_TCP, FREEBSD_TCP_NOOPT) => {
            // Fixed at the SYN: applies to a later connect or listen.
            o.noopt = v != 0;
            return Ok(());
        }
        (libc::SOL_SOCKET, libc::SO_REUSEADDR) => o.reuseaddr = v != 0,
        (libc::IPPROTO_TCP, libc::TCP_NODELAY) => o.nodelay = v != 0,
        (libc::SOL_SOCKET, libc::SO_SNDBUF) => {
            o.sndbuf = Some(v.max(0) as usize);
            o.bufs_set = true;
        }
        (libc::SOL_SOCKET, libc::SO_RCVBUF) => {
            o.rcvbuf = Some(v.max(0) as usize);
            o.bufs_set = true;
        }
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => o.keepalive = v != 0,
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE | libc::TCP_KEEPINTVL | libc::TCP_KEEPCNT)
            if v < 1 =>
        {
            return Err(libc::EINVAL)
        }
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE) => o.keep.0 = Some(v as u32),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL) => o.keep.1 = Some(v as u32),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT) => o.keep.2 = Some(v as u32),
        _ => {
            g.unsupported(format!("setsockopt(level {level}, option {name})"));
            return Err(libc::ENOPROTOOPT);
        }
    }
    if let Sock::Stream(s, o) = sock {
        let keepalive = name == libc::SO_KEEPALIVE && level == libc::SOL_SOCKET
            || level == libc::IPPROTO_TCP && name != libc::TCP_NODELAY;
        if keepalive {
            s.set_keepalive(o.keepalive.then(|| crate::sockets::keepalive_of(o)))
                .map_err(|e| crate::posix::errno_of(&e))?;
        } else if level == libc::IPPROTO_TCP {
            s.set_nodelay(o.nodelay)
                .map_err(|e| crate::posix::errno_of(&e))?;
        } else {
            apply_opts(
                s,
                &crate::sockets::Opts {
                    nodelay: false,
                    ..*o
                },
            );
        }
    }
    Ok(())
}

pub(crate) unsafe extern "C" fn pd_getsockopt(
    u: Ud,
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| {
        if val.is_null() || len.is_null() {
            return Err(libc::EFAULT);
        }
        // SAFETY: `len` is valid (checked non-null; getsockopt's contract).
        let room = unsafe { *len } as usize;
        let bytes = match s.with(|g| get(g, fd, level, name))? {
            Val::Int(_) if room < std::mem::size_of::<c_int>() => return Err(libc::EINVAL),
            Val::Int(v) => v.to_ne_bytes().to_vec(),
            // A struct: the caller's size, zero-filled past what the stack knows, as
            // the kernel copies out min(len, sizeof) of a zeroed struct.
            Val::Bytes(mut b) if level == libc::IPPROTO_TCP && name == libc::TCP_INFO => {
                let want = room.min(1024);
                if b.len() < want {
                    b.resize(want, 0);
                }
                b
            }
            Val::Bytes(b) => b,
        };
        let n = bytes.len().min(room);
        // SAFETY: `val` has `*len` >= n writable bytes (getsockopt's contract).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), val.cast::<u8>(), n);
            *len = n as socklen_t;
        }
        Ok(0)
    })
}

pub(crate) unsafe extern "C" fn pd_setsockopt(
    u: Ud,
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| {
        if val.is_null() {
            return Err(libc::EFAULT);
        }
        // SAFETY: `val` has `len` readable bytes (setsockopt's contract).
        let bytes = unsafe { std::slice::from_raw_parts(val.cast::<u8>(), len as usize) };
        if s.with(|g| set_bytes(g, fd, level, name, bytes))? {
            return Ok(0);
        }
        if (len as usize) < std::mem::size_of::<c_int>() {
            s.unsupported(&format!(
                "setsockopt(level {level}, option {name}, {len} bytes)"
            ));
            return Err(libc::EINVAL);
        }
        // SAFETY: `val` has `len` >= 4 readable bytes.
        let v = unsafe { val.cast::<c_int>().read_unaligned() };
        s.with(|g| set(g, fd, level, name, v)).map(|()| 0)
    })
}
