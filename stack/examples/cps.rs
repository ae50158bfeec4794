//! Connection-rate microbenchmark on the simulator: N short connections between two
//! simulated stacks, each as an HTTP/1.0 client makes them (connect, a small request, a
//! small response, the server closes first, the client closes on EOF), through the real
//! data path on a virtual clock with a lossless, zero-delay link. It reports wall time and
//! heap allocations per connection for the server stack, the client stack and in total.
//!
//! A counting global allocator charges every allocation to the side that is running:
//! the server's stack and application calls, the client's, or the harness (the link).
//! The simulated device allocates one `Vec` per frame sent (a real one writes into its
//! UMEM), so those are reported apart and left out of the per-side figures.
//!
//! ```text
//! cargo run --release -p xstack --features sim --example cps -- [CONNECTIONS] [WORKERS]
//! ```
//!
//! With `--trace-server` (or `--trace-client`) first, one more connection is made after
//! the measurement, printing the call stack of each of that side's allocations to
//! stderr.
//!
//! Deterministic: the same arguments give the same allocation counts on every run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use smoltcp::wire::EthernetAddress;
use xstack::sim::{SimStack, SimStackConfig};
use xstack::{TcpListener, TcpStream};

/// Who is running: the allocator charges allocations to this side.
static SIDE: AtomicUsize = AtomicUsize::new(HARNESS);
const SERVER: usize = 0;
const CLIENT: usize = 1;
const HARNESS: usize = 2;
static ALLOCS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
static BYTES: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

struct Counting;

/// While set, each allocation charged to this side prints its call stack (`--trace`).
static TRACE: AtomicUsize = AtomicUsize::new(usize::MAX);

thread_local! {
    /// Inside a traced allocation (capturing the stack allocates too).
    static TRACING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Counting {
    fn count(size: usize) {
        let side = SIDE.load(Ordering::Relaxed);
        ALLOCS[side].fetch_add(1, Ordering::Relaxed);
        BYTES[side].fetch_add(size as u64, Ordering::Relaxed);
        if TRACE.load(Ordering::Relaxed) == side && !TRACING.with(|t| t.replace(true)) {
            let prev = SIDE.swap(HARNESS, Ordering::Relaxed);
            eprintln!(
                "--- {size} bytes\n{}",
                std::backtrace::Backtrace::force_capture()
            );
            SIDE.store(prev, Ordering::Relaxed);
            TRACING.with(|t| t.set(false));
        }
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are
// atomics and allocate nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count(new_size);
        // SAFETY: as `alloc`; `ptr` was allocated by `System` through this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PORT: u16 = 80;
const REQUEST: &[u8] = b"GET /index.html HTTP/1.0\r\nHost: 198.18.0.1\r\n\r\n";
const RESPONSE: &[u8] =
    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world!";
/// Virtual time between the starts of two connections: a steady 1000 connections per
/// second, so delayed ACKs and TIME-WAIT expiries run interleaved with new connections.
const GAP: Duration = Duration::from_millis(1);
/// TIME-WAIT is shortened so that the table reaches its steady state (opens and
/// expiries balanced) during the warm-up.
const TIME_WAIT: Duration = Duration::from_secs(2);

/// The two stacks, the virtual clock and the per-side timing.
struct Bench {
    hosts: [SimStack; 2],
    now: Instant,
    /// Wall time spent on each side.
    busy: [Duration; 3],
    /// Frames each side sent.
    frames: [u64; 2],
}

impl Bench {
    /// Runs `f` as `side`, charging its allocations and wall time there.
    fn on<T>(&mut self, side: usize, f: impl FnOnce(&mut Self) -> T) -> T {
        let prev = SIDE.swap(side, Ordering::Relaxed);
        let t = Instant::now();
        let r = f(self);
        self.busy[side] += t.elapsed();
        SIDE.store(prev, Ordering::Relaxed);
        r
    }

    /// Runs both stacks at the current time, passing frames across until neither sends.
    fn pump(&mut self) {
        loop {
            let mut moved = 0;
            for h in [SERVER, CLIENT] {
                let now = self.now;
                self.on(h, |b| b.hosts[h].advance_to(now));
                let sent = self.hosts[h].take_sent();
                self.frames[h] += sent.len() as u64;
                moved += sent.len();
                for f in sent {
                    self.hosts[1 - h].inject_any(f);
                }
            }
            if moved == 0 {
                return;
            }
        }
    }
}

fn stack(addr: Ipv4Addr, mac: u8, workers: usize, start: Instant) -> SimStack {
    let mut c = SimStackConfig::new(EthernetAddress([2, 0, 0, 0, 0, mac]), addr, start);
    c.workers = workers;
    c.tcp.time_wait = TIME_WAIT;
    c.isn_key[0] = mac;
    SimStack::new(c)
}

/// One connection, start to finish; the clock then moves on by [`GAP`].
fn one(b: &mut Bench, l: &TcpListener) {
    let client_net = b.hosts[CLIENT].net();
    let c = b.on(CLIENT, |_| {
        TcpStream::connect_nonblocking(&client_net, SocketAddrV4::new(SERVER_IP, PORT))
            .expect("connect")
    });
    b.pump();
    b.on(CLIENT, |_| {
        c.finish_connect().expect("connected");
        (&c).write_all(REQUEST).expect("request");
    });
    b.pump();
    let s = b.on(SERVER, |_| {
        let (s, _) = l.accept().expect("accepted");
        s.set_nonblocking(true).expect("nonblocking");
        let mut req = [0u8; 512];
        let n = (&s).read(&mut req).expect("request read");
        assert_eq!(&req[..n], REQUEST);
        (&s).write_all(RESPONSE).expect("response");
        s
    });
    // The server closes first, as an HTTP/1.0 server does: it holds the TIME-WAIT.
    b.on(SERVER, |_| drop(s));
    b.pump();
    b.on(CLIENT, |_| {
        let mut resp = [0u8; 512];
        let mut got = 0;
        loop {
            match (&c).read(&mut resp[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => panic!("response incomplete"),
                Err(e) => panic!("response: {e}"),
            }
        }
        assert_eq!(&resp[..got], RESPONSE);
        drop(c);
    });
    b.pump();
    b.now += GAP;
    b.pump();
}

fn main() {
    run(std::env::args().skip(1));
}

/// What [`run`] measured, per connection, for the test that holds the figures down
/// (`stack/tests/cps_allocs.rs`).
pub struct Figures {
    /// Heap allocations of the server's stack and application.
    pub server_allocs: f64,
    /// Heap allocations of the client's.
    pub client_allocs: f64,
    /// Server connections in TIME-WAIT at the end.
    pub time_wait: usize,
}

/// Runs the benchmark with the command-line arguments `args` and prints the figures.
pub fn run(args: impl Iterator<Item = String>) -> Figures {
    let mut args = args.peekable();
    let trace = match args.peek().map(String::as_str) {
        Some("--trace-server") => Some(SERVER),
        Some("--trace-client") => Some(CLIENT),
        _ => None,
    };
    if trace.is_some() {
        args.next();
    }
    let n: usize = args
        .next()
        .map_or(20_000, |a| a.parse().expect("CONNECTIONS"));
    let workers: usize = args.next().map_or(1, |a| a.parse().expect("WORKERS"));
    let warmup = 3 * (TIME_WAIT.as_millis() as usize / GAP.as_millis() as usize) / 2;

    let start = Instant::now();
    let mut b = Bench {
        hosts: [
            stack(SERVER_IP, 1, workers, start),
            stack(CLIENT_IP, 2, workers, start),
        ],
        now: start,
        busy: [Duration::ZERO; 3],
        frames: [0; 2],
    };
    let server_net = b.hosts[SERVER].net();
    let l = TcpListener::bind_with_backlog(&server_net, SocketAddrV4::new(SERVER_IP, PORT), 128)
        .expect("listen");
    l.set_nonblocking(true).expect("nonblocking");

    for _ in 0..warmup {
        one(&mut b, &l);
    }
    let allocs0: Vec<u64> = ALLOCS.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    let bytes0: Vec<u64> = BYTES.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    let frames0 = b.frames;
    b.busy = [Duration::ZERO; 3];
    let t = Instant::now();
    for _ in 0..n {
        one(&mut b, &l);
    }
    let wall = t.elapsed();
    if let Some(side) = trace {
        // One more connection with every allocation of `side` shown.
        TRACE.store(side, Ordering::Relaxed);
        one(&mut b, &l);
        TRACE.store(usize::MAX, Ordering::Relaxed);
    }

    let per = |x: u64| x as f64 / n as f64;
    let allocs: Vec<f64> = (0..3)
        .map(|i| per(ALLOCS[i].load(Ordering::Relaxed) - allocs0[i]))
        .collect();
    let bytes: Vec<f64> = (0..3)
        .map(|i| per(BYTES[i].load(Ordering::Relaxed) - bytes0[i]))
        .collect();
    let frames = [
        per(b.frames[SERVER] - frames0[SERVER]),
        per(b.frames[CLIENT] - frames0[CLIENT]),
    ];
    let us = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "cps: {n} connections after {warmup} warm-up, {workers} worker(s) per stack, \
         TIME-WAIT {} s, one connection per {} ms of virtual time",
        TIME_WAIT.as_secs(),
        GAP.as_millis()
    );
    let time_wait = b.hosts[SERVER]
        .connections()
        .iter()
        .filter(|c| c.2 == "TIME_WAIT")
        .count();
    println!("in TIME-WAIT at the end: {time_wait}");
    println!(
        "{:<8} {:>10} {:>14} {:>12} {:>12}",
        "side", "us/conn", "allocs/conn", "bytes/conn", "frames/conn"
    );
    for (name, side) in [("server", SERVER), ("client", CLIENT)] {
        // Each frame sent is one allocation of the simulated device, not the stack's.
        println!(
            "{:<8} {:>10.2} {:>14.2} {:>12.0} {:>12.2}",
            name,
            us(b.busy[side]),
            allocs[side] - frames[side],
            bytes[side],
            frames[side]
        );
    }
    println!(
        "{:<8} {:>10.2} {:>14.2} {:>12.0}",
        "harness",
        us(b.busy[HARNESS] + wall - b.busy.iter().sum::<Duration>()),
        allocs[HARNESS] + frames[0] + frames[1],
        bytes[HARNESS]
    );
    println!(
        "{:<8} {:>10.2} {:>14.2} {:>12.0}",
        "total",
        us(wall),
        allocs.iter().sum::<f64>(),
        bytes.iter().sum::<f64>()
    );
    Figures {
        server_allocs: allocs[SERVER] - frames[SERVER],
        client_allocs: allocs[CLIENT] - frames[CLIENT],
        time_wait,
    }
}
