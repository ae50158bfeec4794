//! The C side: `struct packetdrill_interface` (as packetdrill declares it) and the
//! functions it points to. Each converts pointers and flags, calls the [`Shim`], and
//! returns -1 with `errno` set on failure; a panic becomes `EIO`, never an abort
//! across the C boundary.

use std::ffi::{c_char, c_int, c_long, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use libc::{
    iovec, msghdr, nfds_t, pollfd, size_t, sockaddr, socklen_t, ssize_t, timeval, useconds_t,
};

use crate::posix::{read_sockaddr, write_sockaddr};
use crate::shim::{parse_flags, Shim};
use crate::sockets::Sock;

type Ud = *mut c_void;

/// `struct packetdrill_interface`, field for field. `fcntl` and `ioctl` are variadic
/// in C; they are declared with one `int` argument after the fixed ones, which is how
/// packetdrill calls them and how the x86-64 and AArch64 Linux ABIs pass it.
#[repr(C)]
pub struct PacketdrillInterface {
    pub userdata: Ud,
    pub free: Option<unsafe extern "C" fn(Ud)>,
    pub socket: Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int) -> c_int>,
    pub bind: Option<unsafe extern "C" fn(Ud, c_int, *const sockaddr, socklen_t) -> c_int>,
    pub listen: Option<unsafe extern "C" fn(Ud, c_int, c_int) -> c_int>,
    pub accept: Option<unsafe extern "C" fn(Ud, c_int, *mut sockaddr, *mut socklen_t) -> c_int>,
    pub connect: Option<unsafe extern "C" fn(Ud, c_int, *const sockaddr, socklen_t) -> c_int>,
    pub read: Option<unsafe extern "C" fn(Ud, c_int, *mut c_void, size_t) -> ssize_t>,
    pub readv: Option<unsafe extern "C" fn(Ud, c_int, *const iovec, c_int) -> ssize_t>,
    pub recv: Option<unsafe extern "C" fn(Ud, c_int, *mut c_void, size_t, c_int) -> ssize_t>,
    pub recvfrom: Option<
        unsafe extern "C" fn(
            Ud,
            c_int,
            *mut c_void,
            size_t,
            c_int,
            *mut sockaddr,
            *mut socklen_t,
        ) -> ssize_t,
    >,
    pub recvmsg: Option<unsafe extern "C" fn(Ud, c_int, *mut msghdr, c_int) -> ssize_t>,
    pub write: Option<unsafe extern "C" fn(Ud, c_int, *const c_void, size_t) -> ssize_t>,
    pub writev: Option<unsafe extern "C" fn(Ud, c_int, *const iovec, c_int) -> ssize_t>,
    pub send: Option<unsafe extern "C" fn(Ud, c_int, *const c_void, size_t, c_int) -> ssize_t>,
    pub sendto: Option<
        unsafe extern "C" fn(
            Ud,
            c_int,
            *const c_void,
            size_t,
            c_int,
            *const sockaddr,
            socklen_t,
        ) -> ssize_t,
    >,
    pub sendmsg: Option<unsafe extern "C" fn(Ud, c_int, *const msghdr, c_int) -> ssize_t>,
    pub fcntl: Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int) -> c_int>,
    pub ioctl: Option<unsafe extern "C" fn(Ud, c_int, c_long, c_long) -> c_int>,
    pub close: Option<unsafe extern "C" fn(Ud, c_int) -> c_int>,
    pub shutdown: Option<unsafe extern "C" fn(Ud, c_int, c_int) -> c_int>,
    pub getsockopt:
        Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int, *mut c_void, *mut socklen_t) -> c_int>,
    pub setsockopt:
        Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int, *const c_void, socklen_t) -> c_int>,
    pub poll: Option<unsafe extern "C" fn(Ud, *mut pollfd, nfds_t, c_int) -> c_int>,
    pub netdev_send: Option<unsafe extern "C" fn(Ud, *const c_void, size_t) -> c_int>,
    pub netdev_receive:
        Option<unsafe extern "C" fn(Ud, *mut c_void, *mut size_t, *mut i64) -> c_int>,
    pub usleep: Option<unsafe extern "C" fn(Ud, useconds_t) -> c_int>,
    pub gettimeofday: Option<unsafe extern "C" fn(Ud, *mut timeval, *mut c_void) -> c_int>,
    pub epoll_create: Option<unsafe extern "C" fn(Ud, c_int) -> c_int>,
    pub epoll_ctl: Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int, *mut c_void) -> c_int>,
    pub epoll_wait: Option<unsafe extern "C" fn(Ud, c_int, *mut c_void, c_int, c_int) -> c_int>,
    pub pipe: Option<unsafe extern "C" fn(Ud, *mut c_int) -> c_int>,
    pub splice:
        Option<unsafe extern "C" fn(Ud, c_int, *mut i64, c_int, *mut i64, size_t, u32) -> ssize_t>,
}

/// packetdrill's entry point: a new stack in `ifc.userdata` and every function.
/// `flags` is `--so_flags` (see [`parse_flags`]); bad flags end the process with a
/// message, as packetdrill does for bad options.
///
/// # Safety
/// `flags` is null or a C string; `ifc` points to a writable interface struct.
#[no_mangle]
pub unsafe extern "C" fn packetdrill_interface_init(
    flags: *const c_char,
    ifc: *mut PacketdrillInterface,
) {
    let flags = if flags.is_null() {
        String::new()
    } else {
        // SAFETY: non-null and a C string by the caller's contract.
        unsafe { CStr::from_ptr(flags) }
            .to_string_lossy()
            .into_owned()
    };
    let flags = match parse_flags(&flags) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("xstack-packetdrill: --so_flags: {e}");
            std::process::exit(1);
        }
    };
    let shim = Box::into_raw(Box::new(Shim::new(flags))).cast::<c_void>();
    // SAFETY: `ifc` is writable by the caller's contract; we fill every field.
    unsafe { ifc.write(interface(shim)) };
}

/// The interface with `userdata` and every function.
pub fn interface(userdata: Ud) -> PacketdrillInterface {
    PacketdrillInterface {
        userdata,
        free: Some(pd_free),
        socket: Some(pd_socket),
        bind: Some(pd_bind),
        listen: Some(pd_listen),
        accept: Some(pd_accept),
        connect: Some(pd_connect),
        read: Some(pd_read),
        readv: Some(pd_readv),
        recv: Some(pd_recv),
        recvfrom: Some(pd_recvfrom),
        recvmsg: Some(pd_recvmsg),
        write: Some(pd_write),
        writev: Some(pd_writev),
        send: Some(pd_send),
        sendto: Some(pd_sendto),
        sendmsg: Some(pd_sendmsg),
        fcntl: Some(pd_fcntl),
        ioctl: Some(pd_ioctl),
        close: Some(pd_close),
        shutdown: Some(pd_shutdown),
        getsockopt: Some(crate::ffi_opts::pd_getsockopt),
        setsockopt: Some(crate::ffi_opts::pd_setsockopt),
        poll: Some(pd_poll),
        netdev_send: Some(pd_netdev_send),
        netdev_receive: Some(pd_netdev_receive),
        usleep: Some(pd_usleep),
        gettimeofday: Some(pd_gettimeofday),
        epoll_create: Some(pd_epoll_create),
        epoll_ctl: Some(pd_epoll_ctl),
        epoll_wait: Some(pd_epoll_wait),
        pipe: Some(pd_pipe),
        splice: Some(pd_splice),
    }
}

/// The instance behind `userdata`.
///
/// # Safety
/// `u` came from [`packetdrill_interface_init`] and was not freed.
pub(crate) unsafe fn shim<'a>(u: Ud) -> &'a Shim {
    // SAFETY: by the caller's contract `u` is a live `Box<Shim>` pointer.
    unsafe { &*u.cast::<Shim>() }
}

/// Sets `errno`.
pub(crate) fn set_errno(e: c_int) {
    // SAFETY: `__errno_location` returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

/// Runs `f` and turns `Err(errno)` (or a panic: `EIO`) into -1 with `errno` set.
pub(crate) fn guard<T: TryFrom<i64> + Copy>(f: impl FnOnce() -> Result<T, c_int>) -> T {
    let minus_one = T::try_from(-1).ok().expect("-1 fits a C return type");
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_errno(e);
            minus_one
        }
        Err(_) => {
            eprintln!("xstack-packetdrill: panic in a call (returned EIO)");
            set_errno(libc::EIO);
            minus_one
        }
    }
}

/// An unsupported call: counted, `EOPNOTSUPP`.
fn unsupported<T: TryFrom<i64> + Copy>(u: Ud, what: &str) -> T {
    // SAFETY: `u` is packetdrill's userdata from init.
    unsafe { shim(u) }.unsupported(what);
    guard(|| Err(libc::EOPNOTSUPP))
}

unsafe extern "C" fn pd_free(u: Ud) {
    if u.is_null() {
        return;
    }
    // SAFETY: `u` is the `Box<Shim>` from init, freed once by packetdrill.
    let shim = unsafe { Box::from_raw(u.cast::<Shim>()) };
    let (counts, sysctls) = shim.shutdown_all();
    if !counts.is_empty() {
        let list: Vec<String> = counts.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        eprintln!("xstack-packetdrill: unsupported: {}", list.join("; "));
    }
    if !sysctls.is_empty() {
        let list: Vec<&str> = sysctls.iter().map(String::as_str).collect();
        eprintln!(
            "xstack-packetdrill: untranslated sysctls: {}",
            list.join(" ")
        );
    }
}

unsafe extern "C" fn pd_socket(u: Ud, domain: c_int, ty: c_int, proto: c_int) -> c_int {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| s.with(|g| g.socket(domain, ty, proto)))
}

unsafe extern "C" fn pd_bind(u: Ud, fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: `u` is packetdrill's userdata; `addr` has `len` bytes (bind's contract).
    let (s, a) = unsafe { (shim(u), read_sockaddr(addr, len)) };
    guard(|| s.with(|g| g.bind(fd, a?)).map(|()| 0))
}

unsafe extern "C" fn pd_listen(u: Ud, fd: c_int, backlog: c_int) -> c_int {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| s.with(|g| g.listen(fd, backlog)).map(|()| 0))
}

unsafe extern "C" fn pd_accept(
    u: Ud,
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| {
        let (nfd, peer) = s.blocking(|g| g.nonblocking(fd), |g| g.accept(fd))?;
        // SAFETY: `addr`/`len` are null or valid (accept's contract).
        unsafe { write_sockaddr(peer, addr, len) };
        Ok(nfd)
    })
}

unsafe extern "C" fn pd_connect(u: Ud, fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: `u` is packetdrill's userdata; `addr` has `len` bytes.
    let (s, a) = unsafe { (shim(u), read_sockaddr(addr, len)) };
    guard(|| {
        let a = a?;
        let started = s.with(|g| (g.connect(fd, a), g.nonblocking(fd)));
        match started {
            (Err(libc::EINPROGRESS), false) => {
                s.blocking(|_| false, |g| g.connect_done(fd))?;
                Ok(0)
            }
            (r, _) => r.map(|()| 0),
        }
    })
}

/// One read of up to `len` bytes, waiting unless non-blocking (or `dontwait`).
fn read_into(s: &Shim, fd: c_int, buf: &mut [u8], dontwait: bool) -> Result<usize, c_int> {
    s.blocking(|g| dontwait || g.nonblocking(fd), |g| g.read(fd, buf))
}

/// Writes `data`: everything (waiting for room) unless non-blocking.
fn write_all(s: &Shim, fd: c_int, data: &[u8], dontwait: bool) -> Result<usize, c_int> {
    let mut done = 0;
    loop {
        let r = s.blocking(
            |g| dontwait || g.nonblocking(fd),
            |g| g.write(fd, &data[done..]),
        );
        match r {
            Ok(n) => done += n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => return Ok(done),
        }
        if done >= data.len() || dontwait || s.lock().nonblocking(fd) {
            return Ok(done);
        }
    }
}

/// `flags` of recv/send: MSG_DONTWAIT and MSG_NOSIGNAL are understood; others are
/// unsupported.
fn msg_flags(s: &Shim, flags: c_int, what: &str) -> Result<bool, c_int> {
    let known = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    if flags & !known != 0 {
        s.unsupported(&format!("{what} flags {:#x}", flags & !known));
        return Err(libc::EOPNOTSUPP);
    }
    Ok(flags & libc::MSG_DONTWAIT != 0)
}

/// The bytes of `iov` (`cnt` entries) as slices.
///
/// # Safety
/// `iov` points to `cnt` iovecs, each valid for its length.
unsafe fn iovecs<'a>(iov: *const iovec, cnt: usize) -> Vec<&'a mut [u8]> {
    if iov.is_null() {
        return Vec::new();
    }
    // SAFETY: `cnt` iovecs at `iov` (caller's contract).
    let v = unsafe { std::slice::from_raw_parts(iov, cnt) };
    v.iter()
        .filter(|e| !e.iov_base.is_null() && e.iov_len > 0)
        // SAFETY: each iovec is valid for `iov_len` bytes.
        .map(|e| unsafe { std::slice::from_raw_parts_mut(e.iov_base.cast::<u8>(), e.iov_len) })
        .collect()
}

fn readv_impl(
    s: &Shim,
    fd: c_int,
    mut bufs: Vec<&mut [u8]>,
    dontwait: bool,
) -> Result<usize, c_int> {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let mut tmp = vec![0u8; total];
    let n = read_into(s, fd, &mut tmp, dontwait)?;
    let mut off = 0;
    for b in bufs.iter_mut() {
        let k = b.len().min(n - off);
        b[..k].copy_from_slice(&tmp[off..off + k]);
        off += k;
    }
    Ok(n)
}

fn writev_impl(s: &Shim, fd: c_int, bufs: Vec<&mut [u8]>, dontwait: bool) -> Result<usize, c_int> {
    let data: Vec<u8> = bufs.concat();
    write_all(s, fd, &data, dontwait)
}

fn isize_of(r: Result<usize, c_int>) -> Result<ssize_t, c_int> {
    r.map(|n| n as ssize_t)
}

unsafe extern "C" fn pd_read(u: Ud, fd: c_int, buf: *mut c_void, n: size_t) -> ssize_t {
    // SAFETY: `u` is packetdrill's userdata; `buf` holds `n` writable bytes.
    unsafe { pd_recv(u, fd, buf, n, 0) }
}

unsafe extern "C" fn pd_recv(
    u: Ud,
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
) -> ssize_t {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| {
        let dontwait = msg_flags(s, flags, "recv")?;
        if buf.is_null() && n > 0 {
            return Err(libc::EFAULT);
        }
        let mut empty = [];
        let b = if n == 0 {
            &mut empty[..]
        } else {
            // SAFETY: `buf` holds `n` writable bytes (read's contract).
            unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), n) }
        };
        isize_of(read_into(s, fd, b, dontwait))
    })
}

unsafe extern "C" fn pd_readv(u: Ud, fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    // SAFETY: `u` is packetdrill's userdata; `iov` has `cnt` valid entries.
    let (s, bufs) = unsafe { (shim(u), iovecs(iov, cnt.max(0) as usize)) };
    guard(|| isize_of(readv_impl(s, fd, bufs, false)))
}

unsafe extern "C" fn pd_recvfrom(
    u: Ud,
    fd: c_int,
    buf: *mut c_void,
    n: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> ssize_t {
    // SAFETY: forwarded under recv's contract.
    let r = unsafe { pd_recv(u, fd, buf, n, flags) };
    if r >= 0 && !addr.is_null() {
        // SAFETY: `u` is packetdrill's userdata from init.
        let peer = unsafe { shim(u) }.with(|g| peer_of(g, fd));
        if let Some(p) = peer {
            // SAFETY: `addr`/`len` valid (recvfrom's contract).
            unsafe { write_sockaddr(p, addr, len) };
        }
    }
    r
}

fn peer_of(g: &crate::shim::Inner, fd: c_int) -> Option<std::net::SocketAddrV4> {
    match g.fds.get(fd) {
        Ok(Sock::Stream(st, _)) => match st.peer_addr() {
            Ok(std::net::SocketAddr::V4(a)) => Some(a),
            _ => None,
        },
        _ => None,
    }
}

unsafe extern "C" fn pd_recvmsg(u: Ud, fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    if msg.is_null() {
        return guard(|| Err(libc::EFAULT));
    }
    // SAFETY: `msg` is a valid msghdr (recvmsg's contract), its iovecs valid.
    let (s, m, bufs) = unsafe {
        (
            shim(u),
            &mut *msg,
            iovecs((*msg).msg_iov, (*msg).msg_iovlen),
        )
    };
    guard(|| {
        let dontwait = msg_flags(s, flags, "recvmsg")?;
        let n = readv_impl(s, fd, bufs, dontwait)?;
        m.msg_controllen = 0;
        m.msg_flags = 0;
        if !m.msg_name.is_null() {
            if let Some(p) = s.with(|g| peer_of(g, fd)) {
                // SAFETY: `msg_name` holds `msg_namelen` bytes.
                unsafe { write_sockaddr(p, m.msg_name.cast(), &mut m.msg_namelen) };
            }
        }
        Ok(n as ssize_t)
    })
}

unsafe extern "C" fn pd_write(u: Ud, fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    // SAFETY: forwarded under write's contract.
    unsafe { pd_send(u, fd, buf, n, 0) }
}

unsafe extern "C" fn pd_send(
    u: Ud,
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
) -> ssize_t {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| {
        let dontwait = msg_flags(s, flags, "send")?;
        if buf.is_null() && n > 0 {
            return Err(libc::EFAULT);
        }
        let data = if n == 0 {
            &[][..]
        } else {
            // SAFETY: `buf` holds `n` readable bytes (write's contract).
            unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), n) }
        };
        isize_of(write_all(s, fd, data, dontwait))
    })
}

unsafe extern "C" fn pd_writev(u: Ud, fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    // SAFETY: `u` is packetdrill's userdata; `iov` has `cnt` valid entries.
    let (s, bufs) = unsafe { (shim(u), iovecs(iov, cnt.max(0) as usize)) };
    guard(|| isize_of(writev_impl(s, fd, bufs, false)))
}

unsafe extern "C" fn pd_sendto(
    u: Ud,
    fd: c_int,
    buf: *const c_void,
    n: size_t,
    flags: c_int,
    _addr: *const sockaddr,
    _len: socklen_t,
) -> ssize_t {
    // A connected TCP socket ignores the destination, as Linux does.
    // SAFETY: forwarded under send's contract.
    unsafe { pd_send(u, fd, buf, n, flags) }
}

unsafe extern "C" fn pd_sendmsg(u: Ud, fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    if msg.is_null() {
        return guard(|| Err(libc::EFAULT));
    }
    // SAFETY: `msg` is a valid msghdr (sendmsg's contract), its iovecs valid.
    let (s, m, bufs) = unsafe { (shim(u), &*msg, iovecs((*msg).msg_iov, (*msg).msg_iovlen)) };
    guard(|| {
        let dontwait = msg_flags(s, flags, "sendmsg")?;
        if m.msg_controllen > 0 {
            s.unsupported("sendmsg control data");
            return Err(libc::EOPNOTSUPP);
        }
        isize_of(writev_impl(s, fd, bufs, dontwait))
    })
}

unsafe extern "C" fn pd_fcntl(u: Ud, fd: c_int, cmd: c_int, arg: c_int) -> c_int {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| {
        s.with(|g| {
            let o = g.fds.get_mut(fd)?.opts_mut();
            match cmd {
                libc::F_GETFL => {
                    Ok(libc::O_RDWR | if o.nonblocking { libc::O_NONBLOCK } else { 0 })
                }
                libc::F_SETFL => {
                    o.nonblocking = arg & libc::O_NONBLOCK != 0;
                    Ok(0)
                }
                libc::F_GETFD | libc::F_SETFD => Ok(0),
                _ => {
                    g.unsupported(format!("fcntl cmd {cmd}"));
                    Err(libc::EINVAL)
                }
            }
        })
    })
}

unsafe extern "C" fn pd_ioctl(u: Ud, _fd: c_int, req: c_long, _arg: c_long) -> c_int {
    unsupported(u, &format!("ioctl {req:#x}"))
}

unsafe extern "C" fn pd_close(u: Ud, fd: c_int) -> c_int {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| s.with(|g| g.close(fd)).map(|()| 0))
}

unsafe extern "C" fn pd_shutdown(u: Ud, fd: c_int, how: c_int) -> c_int {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| s.with(|g| g.shutdown(fd, how)).map(|()| 0))
}

unsafe extern "C" fn pd_poll(u: Ud, fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| {
        if fds.is_null() && n > 0 {
            return Err(libc::EFAULT);
        }
        let fds = if n == 0 {
            &mut [][..]
        } else {
            // SAFETY: `fds` holds `n` pollfds (poll's contract).
            unsafe { std::slice::from_raw_parts_mut(fds, n as usize) }
        };
        let began = s.lock().now();
        let r = s.blocking(|_| timeout == 0, |g| g.poll(fds, timeout, began));
        r.map(|k| k as c_int)
    })
}

unsafe extern "C" fn pd_netdev_send(u: Ud, buf: *const c_void, n: size_t) -> c_int {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| {
        if buf.is_null() {
            return Err(libc::EFAULT);
        }
        // SAFETY: `buf` holds `n` bytes of an IP packet.
        let ip = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), n) };
        s.netdev_send(ip).map(|()| 0)
    })
}

unsafe extern "C" fn pd_netdev_receive(
    u: Ud,
    buf: *mut c_void,
    n: *mut size_t,
    t: *mut i64,
) -> c_int {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| {
        if buf.is_null() || n.is_null() || t.is_null() {
            return Err(libc::EFAULT);
        }
        // SAFETY: `n` and `t` are valid (checked non-null; netdev_receive's contract),
        // `buf` holds `*n` writable bytes.
        unsafe {
            match s.netdev_receive() {
                Some((at, p)) => {
                    let k = p.len().min(*n);
                    std::ptr::copy_nonoverlapping(p.as_ptr(), buf.cast::<u8>(), k);
                    *n = k;
                    *t = at;
                }
                None => {
                    *n = 0;
                    *t = s.lock().now_us();
                }
            }
        }
        Ok(0)
    })
}

unsafe extern "C" fn pd_usleep(u: Ud, us: useconds_t) -> c_int {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| {
        s.sleep(Duration::from_micros(u64::from(us)));
        Ok(0)
    })
}

unsafe extern "C" fn pd_gettimeofday(u: Ud, tv: *mut timeval, _tz: *mut c_void) -> c_int {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| {
        if tv.is_null() {
            return Err(libc::EFAULT);
        }
        let us = s.gettimeofday();
        // SAFETY: `tv` is valid (checked non-null; gettimeofday's contract).
        unsafe {
            (*tv).tv_sec = us.div_euclid(1_000_000) as libc::time_t;
            (*tv).tv_usec = us.rem_euclid(1_000_000) as libc::suseconds_t;
        }
        Ok(0)
    })
}

unsafe extern "C" fn pd_epoll_create(u: Ud, size: c_int) -> c_int {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| {
        if size <= 0 {
            return Err(libc::EINVAL);
        }
        Ok(s.with(|g| g.epoll_create()))
    })
}

unsafe extern "C" fn pd_epoll_ctl(
    u: Ud,
    ep: c_int,
    op: c_int,
    fd: c_int,
    ev: *mut c_void,
) -> c_int {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| {
        let ev = (!ev.is_null()).then(|| {
            // SAFETY: a non-null `ev` points to an `epoll_event` (epoll_ctl's contract).
            let e = unsafe { ev.cast::<libc::epoll_event>().read_unaligned() };
            (e.events, e.u64)
        });
        s.with(|g| g.epoll_ctl(ep, op, fd, ev)).map(|()| 0)
    })
}

unsafe extern "C" fn pd_epoll_wait(
    u: Ud,
    ep: c_int,
    ev: *mut c_void,
    max: c_int,
    timeout: c_int,
) -> c_int {
    // SAFETY: `u` is packetdrill's userdata from init.
    let s = unsafe { shim(u) };
    guard(|| {
        if max <= 0 {
            return Err(libc::EINVAL);
        }
        if ev.is_null() {
            return Err(libc::EFAULT);
        }
        let began = s.lock().now();
        let ready = s.blocking(
            |_| timeout == 0,
            |g| g.epoll_wait(ep, max as usize, timeout, began),
        )?;
        let out = ev.cast::<libc::epoll_event>();
        for (i, (events, data)) in ready.iter().enumerate() {
            // SAFETY: `ev` has room for `max` >= ready.len() events (epoll_wait's
            // contract).
            unsafe {
                out.add(i).write_unaligned(libc::epoll_event {
                    events: *events,
                    u64: *data,
                })
            };
        }
        Ok(ready.len() as c_int)
    })
}

unsafe extern "C" fn pd_pipe(u: Ud, _fds: *mut c_int) -> c_int {
    unsupported(u, "pipe")
}

unsafe extern "C" fn pd_splice(
    u: Ud,
    _in: c_int,
    _off_in: *mut i64,
    _out: c_int,
    _off_out: *mut i64,
    _len: size_t,
    _flags: u32,
) -> ssize_t {
    unsupported(u, "splice")
}
