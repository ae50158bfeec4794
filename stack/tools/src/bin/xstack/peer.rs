//! Measurement tools for `cargo xtask bench`: the same workloads on xstack and on
//! the kernel's TCP, built into the same release binary so both sides run the same
//! code (the HTTP server/client of `xstack_tools::http`, a 1-byte echo).
//!
//! - `xstack echo` — a 1-byte echo server on the stack (one thread per connection).
//! - `xstack kernel-echo --listen A:P` — the same server on kernel sockets.
//! - `xstack kernel-http --listen A:P [--server event]` — `xstack http`'s server on
//!   kernel sockets.
//! - `xstack kernel-get URL [--bind A]` — `xstack get` on kernel sockets.
//! - `xstack rr A:P --count N` — kernel client: N 1-byte round trips, prints p50/p99.

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener as KTcpListener, TcpStream as KTcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Echo one byte back for every byte read, until EOF.
fn echo_loop(mut s: impl Read + Write) {
    let mut b = [0u8; 1];
    while let Ok(1) = s.read(&mut b) {
        if s.write_all(&b).is_err() {
            break;
        }
    }
}

/// The 1-byte echo server on the stack; returns when the listener fails.
pub fn stack_echo(listener: xstack::TcpListener) -> std::io::Result<()> {
    loop {
        let (s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        std::thread::spawn(move || echo_loop(s));
    }
}

/// The 1-byte echo server on kernel sockets.
pub fn kernel_echo(addr: SocketAddrV4) -> anyhow::Result<()> {
    let l = KTcpListener::bind(addr)?;
    eprintln!("xstack: kernel echo listening on {addr}");
    for s in l.incoming() {
        let s = s?;
        s.set_nodelay(true)?;
        std::thread::spawn(move || echo_loop(s));
    }
    Ok(())
}

/// `xstack http`'s server on kernel sockets (for the Linux baseline): a thread per
/// connection, or with `event` one mio event loop on this thread.
pub fn kernel_http(addr: SocketAddrV4, cc: Option<&str>, event: bool) -> anyhow::Result<()> {
    let l = KTcpListener::bind(addr)?;
    if let Some(cc) = cc {
        use nix::sys::socket::{setsockopt, sockopt::TcpCongestion};
        setsockopt(&l, TcpCongestion, &std::ffi::OsString::from(cc))
            .map_err(|e| anyhow::anyhow!("TCP_CONGESTION {cc:?}: {e}"))?;
    }
    eprintln!("xstack: kernel http listening on {addr}");
    let stats: xstack_tools::http::StatsFn = Arc::new(|| serde_json::json!({"kernel": true}));
    let stop = Arc::new(AtomicBool::new(false));
    if event {
        l.set_nonblocking(true)?;
        let l = mio::net::TcpListener::from_std(l);
        xstack_tools::http::serve_event(l, stats, stop, xstack_tools::http::ServerConfig::event())?;
    } else {
        xstack_tools::http::serve(l, stats, stop)?;
    }
    Ok(())
}

/// `xstack get` on kernel sockets, optionally bound to a source address.
pub fn kernel_get(url: &str, bind: Option<std::net::Ipv4Addr>) -> anyhow::Result<()> {
    let (ip, port, path) =
        xstack_tools::http::parse_url(url).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dst = SocketAddr::V4(SocketAddrV4::new(ip, port));
    let s = match bind {
        None => KTcpStream::connect_timeout(&dst, Duration::from_secs(10))?,
        Some(src) => {
            // std cannot bind before connect; nix can.
            use nix::sys::socket::{
                bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn,
            };
            use std::os::fd::{FromRawFd, IntoRawFd};
            let fd = socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )?;
            bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &SockaddrIn::from(SocketAddrV4::new(src, 0)),
            )?;
            connect(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &SockaddrIn::from(SocketAddrV4::new(ip, port)),
            )?;
            // SAFETY: the fd is a connected TCP socket we own; ownership moves to std.
            unsafe { KTcpStream::from_raw_fd(fd.into_raw_fd()) }
        }
    };
    let res = xstack_tools::http::get(s, &format!("{ip}:{port}"), &path)?;
    println!("{}", res.to_json_line());
    Ok(())
}

/// Kernel client: `count` 1-byte round trips after a short warm-up; prints one JSON
/// line with the percentiles in microseconds.
pub fn rr(addr: SocketAddrV4, count: usize) -> anyhow::Result<()> {
    let mut s = KTcpStream::connect_timeout(&SocketAddr::V4(addr), Duration::from_secs(10))?;
    s.set_nodelay(true)?;
    let mut b = [7u8; 1];
    for _ in 0..1000 {
        s.write_all(&b)?;
        s.read_exact(&mut b)?;
    }
    let mut rtts = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        s.write_all(&b)?;
        s.read_exact(&mut b)?;
        rtts.push(t.elapsed().as_nanos() as f64 / 1000.0);
    }
    rtts.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| rtts[((rtts.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{}",
        serde_json::json!({"count": count, "p50_us": pct(0.5), "p99_us": pct(0.99), "min_us": rtts[0]})
    );
    Ok(())
}

/// Kernel client: `threads` threads open short connections to `addr` for `secs`
/// seconds, each doing one `GET /bytes/1` with `Connection: close`; prints one JSON line
/// with the connections per second.
pub fn cps(addr: SocketAddrV4, secs: f64, threads: usize) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (done, failed) = (done.clone(), failed.clone());
            std::thread::spawn(move || {
                let req =
                    format!("GET /bytes/1 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
                let mut buf = [0u8; 512];
                while Instant::now() < end {
                    let ok = (|| -> std::io::Result<()> {
                        let mut s = KTcpStream::connect_timeout(
                            &SocketAddr::V4(addr),
                            Duration::from_secs(5),
                        )?;
                        s.set_read_timeout(Some(Duration::from_secs(5)))?;
                        s.write_all(req.as_bytes())?;
                        let mut got = Vec::new();
                        loop {
                            let n = s.read(&mut buf)?;
                            if n == 0 {
                                break;
                            }
                            got.extend_from_slice(&buf[..n]);
                        }
                        if got.starts_with(b"HTTP/1.1 200") {
                            Ok(())
                        } else {
                            Err(std::io::Error::other("bad response"))
                        }
                    })();
                    match ok {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({"connections": n, "failed": failed.load(Ordering::Relaxed), "seconds": elapsed, "cps": n as f64 / elapsed})
    );
    Ok(())
}
