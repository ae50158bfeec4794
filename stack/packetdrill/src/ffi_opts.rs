//! `getsockopt` and `setsockopt`: SO_ERROR, SO_REUSEADDR, SO_TYPE, SO_SNDBUF,
//! SO_RCVBUF, SO_KEEPALIVE, TCP_NODELAY and TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT
//! (seconds and probes, as on FreeBSD and Linux; the stack's `set_keepalive`); anything else is counted and fails with `ENOPROTOOPT`.

use std::ffi::{c_int, c_void};

use libc::socklen_t;

use crate::ffi::{guard, shim};
use crate::shim::Inner;
use crate::sockets::{apply_opts, Sock};

type Ud = *mut c_void;

fn get(g: &mut Inner, fd: c_int, level: c_int, name: c_int) -> Result<c_int, c_int> {
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

fn set(g: &mut Inner, fd: c_int, level: c_int, name: c_int, v: c_int) -> Result<(), c_int> {
    let sock = g.fds.get_mut(fd)?;
    let o = sock.opts_mut();
    match (level, name) {
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
        if (unsafe { *len } as usize) < std::mem::size_of::<c_int>() {
            return Err(libc::EINVAL);
        }
        let v = s.with(|g| get(g, fd, level, name))?;
        // SAFETY: `val` has at least `*len` >= 4 writable bytes.
        unsafe {
            val.cast::<c_int>().write_unaligned(v);
            *len = std::mem::size_of::<c_int>() as socklen_t;
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
