//! The POSIX side of a socket shim, independent of packetdrill: a file-descriptor
//! table, `io::Error` to errno mapping, and `sockaddr_in` parsing and filling. Kept
//! apart so an `LD_PRELOAD` shim can reuse it.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use libc::c_int;

/// The lowest descriptor handed out (0-2 are stdin, stdout and stderr, as in a process).
pub const FIRST_FD: c_int = 3;

/// Descriptors to objects: each new entry takes the lowest free number, as `open(2)`.
#[derive(Debug)]
pub struct FdTable<T> {
    map: BTreeMap<c_int, T>,
}

impl<T> Default for FdTable<T> {
    fn default() -> Self {
        FdTable {
            map: BTreeMap::new(),
        }
    }
}

impl<T> FdTable<T> {
    /// Stores `v` under the lowest free descriptor and returns it.
    pub fn insert(&mut self, v: T) -> c_int {
        let mut fd = FIRST_FD;
        for &k in self.map.keys() {
            if k != fd {
                break;
            }
            fd += 1;
        }
        self.map.insert(fd, v);
        fd
    }

    /// The object behind `fd`, or `EBADF`.
    pub fn get(&self, fd: c_int) -> Result<&T, c_int> {
        self.map.get(&fd).ok_or(libc::EBADF)
    }

    /// The object behind `fd`, mutably, or `EBADF`.
    pub fn get_mut(&mut self, fd: c_int) -> Result<&mut T, c_int> {
        self.map.get_mut(&fd).ok_or(libc::EBADF)
    }

    /// Replaces the object behind an open `fd` (`EBADF` if it is not open).
    pub fn replace(&mut self, fd: c_int, v: T) -> Result<T, c_int> {
        match self.map.get_mut(&fd) {
            Some(slot) => Ok(std::mem::replace(slot, v)),
            None => Err(libc::EBADF),
        }
    }

    /// Closes `fd`, returning its object, or `EBADF`.
    pub fn remove(&mut self, fd: c_int) -> Result<T, c_int> {
        self.map.remove(&fd).ok_or(libc::EBADF)
    }

    /// Open descriptors.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No descriptor is open.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The open descriptors and their objects, in descriptor order.
    pub fn iter(&self) -> impl Iterator<Item = (c_int, &T)> {
        self.map.iter().map(|(k, v)| (*k, v))
    }

    /// Closes every descriptor, returning the objects in descriptor order.
    /// Every entry, mutably.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.map.values_mut()
    }

    pub fn drain(&mut self) -> Vec<T> {
        std::mem::take(&mut self.map).into_values().collect()
    }
}

/// The errno an `io::Error` stands for: its raw OS error if it has one, else the
/// Linux value of its kind (what `std::net` would have returned).
pub fn errno_of(e: &io::Error) -> c_int {
    if let Some(n) = e.raw_os_error() {
        return n;
    }
    use io::ErrorKind as K;
    match e.kind() {
        K::WouldBlock => libc::EAGAIN,
        K::ConnectionRefused => libc::ECONNREFUSED,
        K::ConnectionReset => libc::ECONNRESET,
        K::ConnectionAborted => libc::ECONNABORTED,
        K::TimedOut => libc::ETIMEDOUT,
        K::NotConnected => libc::ENOTCONN,
        K::AddrInUse => libc::EADDRINUSE,
        K::AddrNotAvailable => libc::EADDRNOTAVAIL,
        K::BrokenPipe => libc::EPIPE,
        K::InvalidInput => libc::EINVAL,
        K::NetworkUnreachable => libc::ENETUNREACH,
        K::HostUnreachable => libc::EHOSTUNREACH,
        K::Interrupted => libc::EINTR,
        K::Unsupported => libc::EOPNOTSUPP,
        K::OutOfMemory => libc::ENOMEM,
        K::PermissionDenied => libc::EACCES,
        K::AlreadyExists => libc::EEXIST,
        K::NotFound => libc::ENOENT,
        _ => libc::EIO,
    }
}

/// Parses a `struct sockaddr` given as its bytes: an IPv4 `sockaddr_in`, or
/// `EAFNOSUPPORT` for another family, `EINVAL` if it is too short.
pub fn parse_sockaddr(bytes: &[u8]) -> Result<SocketAddrV4, c_int> {
    if bytes.len() < 2 {
        return Err(libc::EINVAL);
    }
    let family = u16::from_ne_bytes([bytes[0], bytes[1]]);
    if c_int::from(family) != libc::AF_INET {
        return Err(libc::EAFNOSUPPORT);
    }
    if bytes.len() < std::mem::size_of::<libc::sockaddr_in>() {
        return Err(libc::EINVAL);
    }
    let port = u16::from_be_bytes([bytes[2], bytes[3]]);
    let ip = Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]);
    Ok(SocketAddrV4::new(ip, port))
}

/// The `sockaddr_in` for `a`.
pub fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// Reads the IPv4 address at `addr` (`len` bytes), as `bind`/`connect` take it.
///
/// # Safety
/// `addr` must be null or point to `len` readable bytes.
pub unsafe fn read_sockaddr(
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> Result<SocketAddrV4, c_int> {
    if addr.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: the caller guarantees `len` readable bytes at `addr`.
    let bytes = unsafe { std::slice::from_raw_parts(addr.cast::<u8>(), len as usize) };
    parse_sockaddr(bytes)
}

/// Stores `a` at `addr` as `accept`/`getsockname` do: at most `*len` bytes are
/// written and `*len` becomes the full size. Null pointers are skipped.
///
/// # Safety
/// `addr` and `len` must be null or valid, `addr` for `*len` writable bytes.
pub unsafe fn write_sockaddr(
    a: SocketAddrV4,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) {
    if addr.is_null() || len.is_null() {
        return;
    }
    let sin = sockaddr_in(a);
    let full = std::mem::size_of::<libc::sockaddr_in>();
    // SAFETY: `len` is valid (checked non-null, caller's contract).
    let room = unsafe { *len } as usize;
    // SAFETY: `sin` is a plain C struct of `full` bytes; `addr` has `room` writable
    // bytes and we copy at most that many.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&sin as *const libc::sockaddr_in).cast::<u8>(),
            addr.cast::<u8>(),
            full.min(room),
        );
        *len = full as libc::socklen_t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_take_the_lowest_free_number() {
        let mut t = FdTable::default();
        assert_eq!(t.insert("a"), 3);
        assert_eq!(t.insert("b"), 4);
        assert_eq!(t.insert("c"), 5);
        assert_eq!(t.remove(4), Ok("b"));
        assert_eq!(t.remove(4), Err(libc::EBADF));
        assert_eq!(t.insert("d"), 4);
        assert_eq!(t.get(4), Ok(&"d"));
        assert_eq!(t.get(9), Err(libc::EBADF));
        assert_eq!(t.replace(3, "e"), Ok("a"));
        assert_eq!(t.replace(7, "x"), Err(libc::EBADF));
        assert_eq!(t.len(), 3);
        assert_eq!(t.drain(), vec!["e", "d", "c"]);
        assert!(t.is_empty());
        assert_eq!(t.insert("f"), 3);
    }

    #[test]
    fn errors_map_to_linux_errno() {
        use io::ErrorKind as K;
        let cases = [
            (K::WouldBlock, libc::EAGAIN),
            (K::ConnectionRefused, libc::ECONNREFUSED),
            (K::ConnectionReset, libc::ECONNRESET),
            (K::TimedOut, libc::ETIMEDOUT),
            (K::NotConnected, libc::ENOTCONN),
            (K::AddrInUse, libc::EADDRINUSE),
            (K::BrokenPipe, libc::EPIPE),
            (K::InvalidInput, libc::EINVAL),
            (K::NetworkUnreachable, libc::ENETUNREACH),
            (K::Other, libc::EIO),
        ];
        for (kind, errno) in cases {
            assert_eq!(errno_of(&io::Error::from(kind)), errno, "{kind:?}");
        }
        assert_eq!(
            errno_of(&io::Error::from_raw_os_error(libc::EISCONN)),
            libc::EISCONN
        );
    }

    #[test]
    fn sockaddr_in_round_trips_and_bad_ones_are_refused() {
        let a = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 8080);
        let sin = sockaddr_in(a);
        let n = std::mem::size_of::<libc::sockaddr_in>();
        // SAFETY: `sin` is `n` bytes of plain data.
        let bytes = unsafe { std::slice::from_raw_parts(&sin as *const _ as *const u8, n) };
        assert_eq!(&bytes[2..4], &8080u16.to_be_bytes());
        assert_eq!(&bytes[4..8], &[192, 0, 2, 1]);
        assert_eq!(parse_sockaddr(bytes), Ok(a));
        assert_eq!(parse_sockaddr(&bytes[..6]), Err(libc::EINVAL));
        assert_eq!(parse_sockaddr(&[]), Err(libc::EINVAL));
        let mut v6 = bytes.to_vec();
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        assert_eq!(parse_sockaddr(&v6), Err(libc::EAFNOSUPPORT));

        // Written back with truncation to the caller's room and the full length.
        let mut out = [0u8; 32];
        let mut len: libc::socklen_t = 4;
        // SAFETY: `out` has 32 writable bytes, more than `len`.
        unsafe { write_sockaddr(a, out.as_mut_ptr().cast(), &mut len) };
        assert_eq!(len as usize, n);
        assert_eq!(&out[2..4], &8080u16.to_be_bytes());
        assert_eq!(&out[4..8], &[0; 4], "only `len` bytes written");
        let mut len = 32 as libc::socklen_t;
        // SAFETY: as above.
        unsafe { write_sockaddr(a, out.as_mut_ptr().cast(), &mut len) };
        // SAFETY: `out` holds `len` bytes of a sockaddr.
        assert_eq!(unsafe { read_sockaddr(out.as_ptr().cast(), len) }, Ok(a));
        // SAFETY: a null pointer is refused before any read.
        assert_eq!(
            unsafe { read_sockaddr(std::ptr::null(), 16) },
            Err(libc::EFAULT)
        );
    }
}
