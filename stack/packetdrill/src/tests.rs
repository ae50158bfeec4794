//! The interface driven as packetdrill drives it: through the function pointers
//! `packetdrill_interface_init` fills.

use std::ffi::{c_int, c_void};
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::ffi::PacketdrillInterface;
use crate::posix::sockaddr_in;

const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);

fn init() -> PacketdrillInterface {
    init_with(None)
}

/// An instance with these `--so_flags`.
fn init_with(flags: Option<&std::ffi::CStr>) -> PacketdrillInterface {
    let mut ifc = MaybeUninit::<PacketdrillInterface>::uninit();
    let flags = flags.map_or(std::ptr::null(), |f| f.as_ptr());
    // SAFETY: null or a C string for the flags; `ifc` is writable and filled by the call.
    unsafe {
        crate::packetdrill_interface_init(flags, ifc.as_mut_ptr());
        ifc.assume_init()
    }
}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn csum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from(c[0]) << 8
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 TCP segment from the remote peer to the stack (no options, no payload).
fn segment(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    segment_with(sport, dport, seq, ack, flags, &[])
}

/// As [`segment`], with these option bytes (a multiple of 4).
fn segment_with(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, opts: &[u8]) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp.extend_from_slice(opts);
    let len = tcp.len() as u8;
    tcp[12] = (len / 4) << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&REMOTE.octets());
    pseudo.extend_from_slice(&LOCAL.octets());
    pseudo.extend_from_slice(&[0, 6, 0, len]);
    pseudo.extend_from_slice(&tcp);
    let c = csum(&pseudo, 0);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 20 + len, 0, 1, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&REMOTE.octets());
    ip.extend_from_slice(&LOCAL.octets());
    let c = csum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&tcp);
    ip
}

struct Seen {
    flags: u8,
    options: Vec<u8>,
    seq: u32,
    ack: u32,
    sport: u16,
    dport: u16,
    time_us: i64,
}

/// The next packet the stack sends. A packet another thread's call is about to cause
/// may not exist yet when a loaded machine has not run that thread: `netdev_receive`
/// then returns nothing, and this asks again (for up to 10 s of real time).
fn receive(ifc: &PacketdrillInterface) -> Seen {
    let mut buf = [0u8; 2048];
    let (mut n, mut t) = (0usize, 0i64);
    let began = std::time::Instant::now();
    while n == 0 {
        n = buf.len();
        // SAFETY: valid buffer, length and time pointers; userdata from init.
        let r = unsafe {
            (ifc.netdev_receive.unwrap())(ifc.userdata, buf.as_mut_ptr().cast(), &mut n, &mut t)
        };
        assert_eq!(r, 0);
        if n == 0 && began.elapsed() > std::time::Duration::from_secs(10) {
            break;
        }
    }
    assert!(n >= 40, "a TCP/IPv4 packet, got {n} bytes");
    assert_eq!(buf[0] >> 4, 4);
    assert_eq!(&buf[12..16], &LOCAL.octets());
    assert_eq!(&buf[16..20], &REMOTE.octets());
    let tcp = &buf[(buf[0] & 0xf) as usize * 4..n];
    Seen {
        sport: u16::from_be_bytes([tcp[0], tcp[1]]),
        dport: u16::from_be_bytes([tcp[2], tcp[3]]),
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        ack: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
        flags: tcp[13],
        options: tcp[20..(tcp[12] >> 4) as usize * 4].to_vec(),
        time_us: t,
    }
}

fn send(ifc: &PacketdrillInterface, ip: &[u8]) {
    // SAFETY: `ip` is a valid buffer; userdata from init.
    let r = unsafe { (ifc.netdev_send.unwrap())(ifc.userdata, ip.as_ptr().cast(), ip.len()) };
    assert_eq!(r, 0);
}

fn now_us(ifc: &PacketdrillInterface) -> i64 {
    let mut tv = MaybeUninit::<libc::timeval>::uninit();
    // SAFETY: `tv` is writable; userdata from init.
    let r =
        unsafe { (ifc.gettimeofday.unwrap())(ifc.userdata, tv.as_mut_ptr(), std::ptr::null_mut()) };
    assert_eq!(r, 0);
    // SAFETY: filled by the successful call.
    let tv = unsafe { tv.assume_init() };
    tv.tv_sec * 1_000_000 + tv.tv_usec
}

/// getsockopt of an int option: its value, or the errno.
fn getsockopt_int(
    ifc: &PacketdrillInterface,
    fd: c_int,
    level: c_int,
    name: c_int,
) -> Result<c_int, c_int> {
    let mut v: c_int = -1;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: userdata from init; `v` and `len` are valid for the call.
    let r = unsafe {
        (ifc.getsockopt.unwrap())(
            ifc.userdata,
            fd,
            level,
            name,
            (&mut v as *mut c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(v)
    } else {
        Err(errno())
    }
}

/// socket + bind + listen on 8080; returns the listening descriptor.
fn listen_8080(ifc: &PacketdrillInterface) -> c_int {
    let u = ifc.userdata;
    // SAFETY: userdata from init; the sockaddr is a valid `sockaddr_in`.
    unsafe {
        let fd = (ifc.socket.unwrap())(u, libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP);
        assert_eq!(fd, 3);
        let sin = sockaddr_in(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080));
        let len = std::mem::size_of_val(&sin) as libc::socklen_t;
        assert_eq!(
            (ifc.bind.unwrap())(u, fd, (&sin as *const libc::sockaddr_in).cast(), len),
            0
        );
        assert_eq!((ifc.listen.unwrap())(u, fd, 16), 0);
        fd
    }
}

#[test]
fn a_syn_to_a_listener_is_answered_with_syn_ack_and_accept_blocks_until_the_ack() {
    let ifc = init();
    let fd = listen_8080(&ifc);
    let t0 = now_us(&ifc);
    send(&ifc, &segment(40000, 8080, 1000, 0, 0x02));
    let synack = receive(&ifc);
    assert_eq!(synack.flags, 0x12, "SYN,ACK");
    assert_eq!((synack.sport, synack.dport), (8080, 40000));
    assert_eq!(synack.ack, 1001);
    assert!(
        synack.time_us >= t0 && synack.time_us < t0 + 1000,
        "sent at once, on the virtual clock"
    );

    // A blocking accept in another thread (as packetdrill's syscall thread) returns once
    // the handshake's ACK is injected.
    let ud = ifc.userdata as usize;
    let accept = ifc.accept.unwrap();
    let th = std::thread::spawn(move || {
        let mut sin = MaybeUninit::<libc::sockaddr_in>::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: userdata from init (alive until `free` below, after the join);
        // `sin`/`len` valid.
        let nfd = unsafe { accept(ud as *mut c_void, fd, sin.as_mut_ptr().cast(), &mut len) };
        // SAFETY: filled by accept.
        let sin = unsafe { sin.assume_init() };
        (nfd, u16::from_be(sin.sin_port))
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(!th.is_finished(), "accept waits for the handshake");
    send(
        &ifc,
        &segment(40000, 8080, 1001, synack.seq.wrapping_add(1), 0x10),
    );
    let (nfd, port) = th.join().unwrap();
    assert_eq!((nfd, port), (4, 40000));

    // Data written goes out as one segment.
    // SAFETY: userdata from init; the buffer is valid.
    let n = unsafe { (ifc.write.unwrap())(ifc.userdata, nfd, b"hello".as_ptr().cast(), 5) };
    assert_eq!(n, 5);
    let data = receive(&ifc);
    assert_eq!(data.flags & 0x08, 0x08, "PSH");
    assert_eq!(data.seq, synack.seq.wrapping_add(1));
    // SAFETY: userdata from init, freed once.
    unsafe { (ifc.free.unwrap())(ifc.userdata) };
}

#[test]
fn time_is_virtual_and_netdev_receive_waits_for_the_retransmission_timer() {
    let ifc = init();
    let u = ifc.userdata;
    // SAFETY: userdata from init; valid sockaddr; F_SETFL takes an int.
    let fd = unsafe {
        let fd = (ifc.socket.unwrap())(u, libc::AF_INET, libc::SOCK_STREAM, 0);
        assert_eq!((ifc.fcntl.unwrap())(u, fd, libc::F_GETFL, 0), libc::O_RDWR);
        assert_eq!(
            (ifc.fcntl.unwrap())(u, fd, libc::F_SETFL, libc::O_RDWR | libc::O_NONBLOCK),
            0
        );
        let sin = sockaddr_in(SocketAddrV4::new(REMOTE, 80));
        let len = std::mem::size_of_val(&sin) as libc::socklen_t;
        assert_eq!(
            (ifc.connect.unwrap())(u, fd, (&sin as *const libc::sockaddr_in).cast(), len),
            -1
        );
        assert_eq!(errno(), libc::EINPROGRESS);
        fd
    };
    let syn = receive(&ifc);
    assert_eq!(syn.flags, 0x02);
    assert_eq!(syn.dport, 80);
    // Nothing is injected: the next packet is the SYN again, one RTO later on the
    // virtual clock, returned at once in real time.
    let real = std::time::Instant::now();
    let again = receive(&ifc);
    assert_eq!((again.flags, again.seq), (0x02, syn.seq));
    let rto = again.time_us - syn.time_us;
    assert!((500_000..=3_100_000).contains(&rto), "RTO {rto} µs");
    assert!(real.elapsed() < std::time::Duration::from_secs(2));
    // usleep moves the clock by what it is asked.
    let before = now_us(&ifc);
    // SAFETY: userdata from init.
    assert_eq!(unsafe { (ifc.usleep.unwrap())(u, 10_000) }, 0);
    let after = now_us(&ifc);
    assert!(
        (10_000..10_100).contains(&(after - before)),
        "{}",
        after - before
    );
    // A RST refuses the connection; SO_ERROR reports it once.
    send(
        &ifc,
        &segment(80, again.sport, 0, syn.seq.wrapping_add(1), 0x14),
    );
    // SO_ERROR reports the refusal once, then 0.
    assert_eq!(
        getsockopt_int(&ifc, fd, libc::SOL_SOCKET, libc::SO_ERROR),
        Ok(libc::ECONNREFUSED)
    );
    assert_eq!(
        getsockopt_int(&ifc, fd, libc::SOL_SOCKET, libc::SO_ERROR),
        Ok(0)
    );
    // Unsupported options fail cleanly.
    assert_eq!(
        getsockopt_int(&ifc, fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF),
        Err(libc::ENOPROTOOPT)
    );
    // SAFETY: userdata from init.
    unsafe {
        assert_eq!((ifc.pipe.unwrap())(u, [0 as c_int; 2].as_mut_ptr()), -1);
        assert_eq!(errno(), libc::EOPNOTSUPP);
        assert_eq!((ifc.close.unwrap())(u, fd), 0);
        assert_eq!((ifc.close.unwrap())(u, fd), -1);
        assert_eq!(errno(), libc::EBADF);
        (ifc.free.unwrap())(u);
    }
}

/// The FreeBSD profile answers a SYN offering MSS and SACK as FreeBSD does:
/// `<mss 1460,sackOK,eol,eol>`; xstack's own (Linux's) layout is `<mss,nop,nop,sackOK>`.
#[test]
fn the_freebsd_profile_lays_options_out_as_freebsd() {
    for (flags, want) in [
        (Some(c"profile=freebsd"), [2, 4, 0x05, 0xb4, 4, 2, 0, 0]),
        (None, [2, 4, 0x05, 0xb4, 1, 1, 4, 2]),
    ] {
        let ifc = init_with(flags);
        listen_8080(&ifc);
        send(
            &ifc,
            &segment_with(40000, 8080, 1, 0, 0x02, &[2, 4, 0x05, 0xb4, 4, 2, 1, 1]),
        );
        let synack = receive(&ifc);
        assert_eq!(synack.flags, 0x12);
        assert_eq!(synack.options, want, "{flags:?}");
        // SAFETY: userdata from init, freed once.
        unsafe { (ifc.free.unwrap())(ifc.userdata) };
    }
}

#[test]
fn so_flags_set_the_local_address_and_profile() {
    use crate::shim::{parse_flags, Flags, Profile};
    let f = |local, profile| {
        Ok(Flags {
            local,
            profile,
            mtu: None,
        })
    };
    assert_eq!(parse_flags(""), f(LOCAL, Profile::Linux));
    assert_eq!(
        parse_flags("local=10.0.0.2"),
        f(Ipv4Addr::new(10, 0, 0, 2), Profile::Linux)
    );
    assert_eq!(
        parse_flags("profile=freebsd, local=10.0.0.3"),
        f(Ipv4Addr::new(10, 0, 0, 3), Profile::FreeBsd)
    );
    assert!(parse_flags("local=x").is_err());
    assert_eq!(parse_flags("mtu=9000").map(|f| f.mtu), Ok(Some(9000)));
    assert!(parse_flags("mtu=20").is_err());
    assert!(parse_flags("mtux=1").is_err());
    assert!(parse_flags("profile=openbsd").is_err());
}

#[test]
fn a_syn_to_a_closed_port_is_answered_with_rst() {
    let ifc = init();
    send(&ifc, &segment(40000, 9999, 1000, 0, 0x02));
    let rst = receive(&ifc);
    assert_eq!(rst.flags, 0x14, "RST,ACK");
    assert_eq!(rst.ack, 1001);
    // SAFETY: userdata from init, freed once.
    unsafe { (ifc.free.unwrap())(ifc.userdata) };
}

#[test]
fn a_blocking_connect_returns_once_the_syn_ack_is_injected_and_poll_reports_readiness() {
    let ifc = init();
    let u = ifc.userdata;
    // SAFETY: userdata from init.
    let fd = unsafe { (ifc.socket.unwrap())(u, libc::AF_INET, libc::SOCK_STREAM, 0) };
    let (ud, connect) = (u as usize, ifc.connect.unwrap());
    let th = std::thread::spawn(move || {
        let sin = sockaddr_in(SocketAddrV4::new(REMOTE, 80));
        let len = std::mem::size_of_val(&sin) as libc::socklen_t;
        // SAFETY: userdata from init (freed after the join); valid sockaddr.
        unsafe {
            connect(
                ud as *mut c_void,
                fd,
                (&sin as *const libc::sockaddr_in).cast(),
                len,
            )
        }
    });
    let syn = receive(&ifc);
    assert_eq!(syn.flags, 0x02);
    assert!(!th.is_finished(), "connect waits for the handshake");
    // SYN,ACK without options.
    send(
        &ifc,
        &segment(80, syn.sport, 5000, syn.seq.wrapping_add(1), 0x12),
    );
    assert_eq!(th.join().unwrap(), 0);
    let ack = receive(&ifc);
    assert_eq!((ack.flags, ack.ack), (0x10, 5001));

    let mut fds = [
        libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLOUT,
            revents: 0,
        },
        libc::pollfd {
            fd: 99,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: userdata from init; `fds` holds 2 pollfds.
    let n = unsafe { (ifc.poll.unwrap())(u, fds.as_mut_ptr(), 2, 0) };
    assert_eq!(n, 2);
    assert_eq!(fds[0].revents, libc::POLLOUT, "writable, nothing to read");
    assert_eq!(fds[1].revents, libc::POLLNVAL);
    // Data from the peer makes it readable.
    let mut data = segment(80, syn.sport, 5001, syn.seq.wrapping_add(1), 0x18);
    data.extend_from_slice(b"abc");
    data[3] = 43; // IP total length
    fix_checksums(&mut data);
    send(&ifc, &data);
    let mut fds = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    let mut buf = [0u8; 8];
    // SAFETY: userdata from init; valid pollfd and buffer.
    unsafe {
        assert_eq!((ifc.poll.unwrap())(u, fds.as_mut_ptr(), 1, 1000), 1);
        assert_eq!(fds[0].revents, libc::POLLIN);
        assert_eq!((ifc.read.unwrap())(u, fd, buf.as_mut_ptr().cast(), 8), 3);
        (ifc.free.unwrap())(u);
    }
    assert_eq!(&buf[..3], b"abc");
}

/// Recomputes the IP and TCP checksums of a packet from [`segment`] grown by payload.
fn fix_checksums(ip: &mut [u8]) {
    ip[10] = 0;
    ip[11] = 0;
    let c = csum(&ip[..20], 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[36] = 0;
    ip[37] = 0;
    let tcp_len = ip.len() - 20;
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip[12..20]);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(tcp_len as u16).to_be_bytes());
    pseudo.extend_from_slice(&ip[20..]);
    let c = csum(&pseudo, 0);
    ip[36..38].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn keepalive_options_read_back_freebsd_defaults_and_what_was_set() {
    let ifc = init();
    let u = ifc.userdata;
    // SAFETY: userdata from init; option buffers are valid ints.
    unsafe {
        let fd = (ifc.socket.unwrap())(u, libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP);
        let get = |level, name| {
            let (mut v, mut len): (c_int, libc::socklen_t) = (-1, 4);
            let r = (ifc.getsockopt.unwrap())(
                u,
                fd,
                level,
                name,
                (&mut v as *mut c_int).cast(),
                &mut len,
            );
            assert_eq!(r, 0, "getsockopt({level}, {name})");
            v
        };
        let set = |level, name, v: c_int| {
            (ifc.setsockopt.unwrap())(u, fd, level, name, (&v as *const c_int).cast(), 4)
        };
        assert_eq!(get(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), 7200);
        assert_eq!(get(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL), 75);
        assert_eq!(get(libc::IPPROTO_TCP, libc::TCP_KEEPCNT), 8);
        assert_eq!(get(libc::SOL_SOCKET, libc::SO_KEEPALIVE), 0);
        assert_eq!(set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 15), 0);
        assert_eq!(set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1), 0);
        assert_eq!(set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 0), -1);
        assert_eq!(get(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), 15);
        assert_eq!(get(libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        (ifc.free.unwrap())(u);
    }
}

/// getsockopt into a buffer of `room` bytes: the bytes written, or the errno.
fn getsockopt_bytes(
    ifc: &PacketdrillInterface,
    fd: c_int,
    level: c_int,
    name: c_int,
    room: usize,
) -> Result<Vec<u8>, c_int> {
    let mut buf = vec![0xaau8; room];
    let mut len = room as libc::socklen_t;
    // SAFETY: userdata from init; `buf` has `len` writable bytes.
    let r = unsafe {
        (ifc.getsockopt.unwrap())(
            ifc.userdata,
            fd,
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(errno());
    }
    buf.truncate(len as usize);
    Ok(buf)
}

#[test]
fn tcp_info_congestion_linger_and_maxseg() {
    let ifc = init();
    let u = ifc.userdata;
    let fd = listen_8080(&ifc);
    // A listener's TCP_INFO: Linux's layout, filled to the caller's size, TCP_LISTEN.
    let info = getsockopt_bytes(&ifc, fd, libc::IPPROTO_TCP, libc::TCP_INFO, 300).unwrap();
    assert_eq!((info.len(), info[0]), (300, 10));
    let cc = getsockopt_bytes(&ifc, fd, libc::IPPROTO_TCP, libc::TCP_CONGESTION, 16).unwrap();
    assert!(
        cc.starts_with(b"cubic") || cc.starts_with(b"newreno"),
        "{cc:?}"
    );
    assert_eq!(
        getsockopt_int(&ifc, fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG),
        Ok(536)
    );
    // An unknown module is ENOENT, as in Linux; a known one is taken.
    // SAFETY: userdata from init; the buffers are valid for their lengths.
    unsafe {
        let set = ifc.setsockopt.unwrap();
        assert_eq!(
            set(
                u,
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_CONGESTION,
                b"nope".as_ptr().cast(),
                4
            ),
            -1
        );
        assert_eq!(errno(), libc::ENOENT);
        assert_eq!(
            set(
                u,
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_CONGESTION,
                b"newreno".as_ptr().cast(),
                7
            ),
            0
        );
        let linger = [1 as c_int, 0];
        assert_eq!(
            set(
                u,
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                linger.as_ptr().cast(),
                8
            ),
            0
        );
    }
    let cc = getsockopt_bytes(&ifc, fd, libc::IPPROTO_TCP, libc::TCP_CONGESTION, 16).unwrap();
    assert!(cc.starts_with(b"newreno\0"), "{cc:?}");
    let l = getsockopt_bytes(&ifc, fd, libc::SOL_SOCKET, libc::SO_LINGER, 8).unwrap();
    assert_eq!(l, [1, 0, 0, 0, 0, 0, 0, 0]);

    // The accepted connection inherits them: ESTABLISHED with MSS 1460 in TCP_INFO,
    // and a close with linger 0 aborts with a RST.
    send(
        &ifc,
        &segment_with(40000, 8080, 1000, 0, 0x02, &[2, 4, 5, 0xb4]),
    );
    let synack = receive(&ifc);
    send(
        &ifc,
        &segment(40000, 8080, 1001, synack.seq.wrapping_add(1), 0x10),
    );
    let mut len = 0 as libc::socklen_t;
    // SAFETY: userdata from init; null address is allowed by accept.
    let nfd = unsafe { (ifc.accept.unwrap())(u, fd, std::ptr::null_mut(), &mut len) };
    assert!(nfd > fd);
    let info = getsockopt_bytes(&ifc, nfd, libc::IPPROTO_TCP, libc::TCP_INFO, 104).unwrap();
    assert_eq!(info[0], 1, "TCP_ESTABLISHED");
    assert_eq!(
        u32::from_ne_bytes(info[16..20].try_into().unwrap()),
        1460,
        "snd_mss"
    );
    let cc = getsockopt_bytes(&ifc, nfd, libc::IPPROTO_TCP, libc::TCP_CONGESTION, 16).unwrap();
    assert!(cc.starts_with(b"newreno\0"), "{cc:?}");
    // SAFETY: userdata from init.
    assert_eq!(unsafe { (ifc.close.unwrap())(u, nfd) }, 0);
    assert_eq!(receive(&ifc).flags & 0x04, 0x04, "RST on an abortive close");
    // SAFETY: userdata from init, freed once.
    unsafe { (ifc.free.unwrap())(u) };
}

#[test]
fn epoll_reports_a_pending_connection_and_follows_ctl() {
    let ifc = init();
    let u = ifc.userdata;
    let fd = listen_8080(&ifc);
    // SAFETY: userdata from init; events are valid `epoll_event`s.
    unsafe {
        let ep = (ifc.epoll_create.unwrap())(u, 1);
        assert!(ep > fd);
        let ctl = ifc.epoll_ctl.unwrap();
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 77,
        };
        assert_eq!(
            ctl(
                u,
                ep,
                libc::EPOLL_CTL_ADD,
                fd,
                (&mut ev as *mut libc::epoll_event).cast()
            ),
            0
        );
        assert_eq!(
            ctl(
                u,
                ep,
                libc::EPOLL_CTL_ADD,
                fd,
                (&mut ev as *mut libc::epoll_event).cast()
            ),
            -1
        );
        assert_eq!(errno(), libc::EEXIST);
        let wait = ifc.epoll_wait.unwrap();
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        assert_eq!(
            wait(u, ep, out.as_mut_ptr().cast(), 4, 0),
            0,
            "nothing pending"
        );
        send(&ifc, &segment(40000, 8080, 1000, 0, 0x02));
        let synack = receive(&ifc);
        send(
            &ifc,
            &segment(40000, 8080, 1001, synack.seq.wrapping_add(1), 0x10),
        );
        assert_eq!(wait(u, ep, out.as_mut_ptr().cast(), 4, 0), 1);
        let (events, data) = (out[0].events, out[0].u64);
        assert_eq!(
            (events & libc::EPOLLIN as u32, data),
            (libc::EPOLLIN as u32, 77)
        );
        assert_eq!(ctl(u, ep, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()), 0);
        assert_eq!(
            wait(u, ep, out.as_mut_ptr().cast(), 4, 0),
            0,
            "deregistered"
        );
        assert_eq!(
            ctl(u, ep, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()),
            -1
        );
        assert_eq!(errno(), libc::ENOENT);
        (ifc.free.unwrap())(u);
    }
}
