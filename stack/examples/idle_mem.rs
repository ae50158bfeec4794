//! Where an idle connection's memory goes: N connections between two simulated stacks,
//! each served as `xstack http --server event` serves one (accepted non-blocking,
//! registered with a `ReadyQueue`, one small request read and one small response
//! written, then kept open and idle), and the server side's heap counted by allocation
//! size once the connections have been idle long enough to give their buffers back.
//!
//! A counting global allocator keeps, per requested size, how many of the server's
//! allocations are live (the server's stack and application calls; the client's and the
//! harness's are left out). It prints the live bytes per connection and every size with
//! at least 0.05 live allocations per connection, largest share first. The sizes are
//! what was asked for: the allocator adds its own header and rounding (glibc: 8 bytes,
//! then up to a multiple of 16).
//!
//! ```text
//! cargo run --release -p xstack --features sim --example idle_mem -- [CONNECTIONS]
//! ```
//!
//! With `--trace SIZE` first, the call stack of each server allocation of SIZE bytes
//! during the last connection is printed to stderr (to tell what a size is).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::wire::EthernetAddress;
use xstack::sim::{SimStack, SimStackConfig};
use xstack::{ReadyQueue, TcpListener, TcpStream};

/// Who is running: only the server's allocations are counted.
static SIDE: AtomicUsize = AtomicUsize::new(HARNESS);
const SERVER: usize = 0;
const CLIENT: usize = 1;
const HARNESS: usize = 2;

/// Sizes up to this are counted one by one; larger ones share the last slot.
const EXACT: usize = 1 << 16;
/// Live server allocations by requested size.
static LIVE: [AtomicI64; EXACT + 1] = [const { AtomicI64::new(0) }; EXACT + 1];
/// Live bytes of the larger ones.
static LARGE_BYTES: AtomicI64 = AtomicI64::new(0);
/// Print the call stack of server allocations of this size (`--trace`).
static TRACE: AtomicUsize = AtomicUsize::new(usize::MAX);

thread_local! {
    /// Inside a traced allocation (capturing the stack allocates too).
    static TRACING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

struct Counting;

impl Counting {
    /// Counts an allocation of `size` (`delta` 1) or its release (`delta` -1) when it
    /// is the server's.
    fn count(size: usize, delta: i64) {
        if SIDE.load(Ordering::Relaxed) != SERVER {
            return;
        }
        LIVE[size.min(EXACT)].fetch_add(delta, Ordering::Relaxed);
        if size >= EXACT {
            LARGE_BYTES.fetch_add(delta * size as i64, Ordering::Relaxed);
        }
        if delta > 0 && TRACE.load(Ordering::Relaxed) == size && !TRACING.with(|t| t.replace(true))
        {
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
        Self::count(layout.size(), 1);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size(), 1);
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count(layout.size(), -1);
        Self::count(new_size, 1);
        // SAFETY: as `alloc`; `ptr` was allocated by `System` through this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::count(layout.size(), -1);
        // SAFETY: as `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PORT: u16 = 80;
const REQUEST: &[u8] = b"GET /bytes/1 HTTP/1.1\r\nHost: 198.18.0.1\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n\x00";

/// The two stacks and the virtual clock.
struct Bench {
    hosts: [SimStack; 2],
    now: Instant,
}

impl Bench {
    /// Runs `f` as `side`: its allocations are counted if that is the server.
    fn on<T>(&mut self, side: usize, f: impl FnOnce(&mut Self) -> T) -> T {
        let prev = SIDE.swap(side, Ordering::Relaxed);
        let r = f(self);
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
                moved += sent.len();
                for f in sent {
                    // A frame is the link's, not the server's: the server allocated the
                    // ones it sent and frees the ones it receives.
                    let slot = &LIVE[f.capacity().min(EXACT)];
                    if h == SERVER {
                        slot.fetch_sub(1, Ordering::Relaxed);
                    } else {
                        slot.fetch_add(1, Ordering::Relaxed);
                    }
                    self.hosts[1 - h].inject_any(f);
                }
            }
            if moved == 0 {
                return;
            }
        }
    }

    /// Moves the clock on by `d` in 10 ms steps, so timers run when due.
    fn idle(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(10);
            self.pump();
        }
    }
}

fn stack(addr: Ipv4Addr, mac: u8, start: Instant) -> SimStack {
    let mut c = SimStackConfig::new(EthernetAddress([2, 0, 0, 0, 0, mac]), addr, start);
    c.isn_key[0] = mac;
    SimStack::new(c)
}

/// One connection served and left open: the server's stream, the client's.
fn one(b: &mut Bench, l: &TcpListener, q: &Arc<ReadyQueue>, token: usize) -> [TcpStream; 2] {
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
        s.set_nodelay(true).expect("nodelay");
        s.register_ready_queue(q, token).expect("register");
        let mut req = [0u8; 512];
        let n = (&s).read(&mut req).expect("request read");
        assert_eq!(&req[..n], REQUEST);
        (&s).write_all(RESPONSE).expect("response");
        // Read to WouldBlock, as the event loop does before it waits.
        assert_eq!(
            (&s).read(&mut req).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
        s
    });
    b.pump();
    b.on(CLIENT, |_| {
        let mut resp = [0u8; 512];
        let n = (&c).read(&mut resp).expect("response");
        assert_eq!(&resp[..n], RESPONSE);
    });
    b.now += Duration::from_micros(100);
    b.pump();
    [s, c]
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let trace = if args.peek().map(String::as_str) == Some("--trace") {
        args.next();
        Some(
            args.next()
                .and_then(|s| s.parse::<usize>().ok())
                .expect("--trace SIZE"),
        )
    } else {
        None
    };
    let n: usize = args
        .next()
        .map_or(20_000, |a| a.parse().expect("CONNECTIONS"));

    let start = Instant::now();
    let mut b = Bench {
        hosts: [stack(SERVER_IP, 1, start), stack(CLIENT_IP, 2, start)],
        now: start,
    };
    let server_net = b.hosts[SERVER].net();
    let (l, q) = b.on(SERVER, |_| {
        let l = TcpListener::bind(&server_net, SocketAddrV4::new(SERVER_IP, PORT)).expect("listen");
        l.set_nonblocking(true).expect("nonblocking");
        (l, ReadyQueue::new().expect("ready queue"))
    });
    // Warm up (first-use allocations of the stack), then count from zero.
    let warm: Vec<[TcpStream; 2]> = (0..64).map(|i| one(&mut b, &l, &q, i)).collect();
    b.idle(Duration::from_secs(3));
    for c in &LIVE {
        c.store(0, Ordering::Relaxed);
    }
    LARGE_BYTES.store(0, Ordering::Relaxed);
    let mut held: Vec<TcpStream> = Vec::with_capacity(n);
    // The server application's handles, in a table made before counting starts: each
    // handle's own size is reported apart.
    let mut app: Vec<TcpStream> = Vec::with_capacity(n);
    for i in 0..n {
        if i + 1 == n {
            if let Some(size) = trace {
                TRACE.store(size, Ordering::Relaxed);
            }
        }
        let [s, c] = one(&mut b, &l, &q, 64 + i);
        b.on(SERVER, |_| app.push(s));
        held.push(c);
        TRACE.store(usize::MAX, Ordering::Relaxed);
    }
    // Idle past `buffer_idle_release` (1 s by default), and drain the ready queue as the
    // event loop would.
    b.idle(Duration::from_secs(3));
    b.on(SERVER, |_| {
        let mut tokens = Vec::new();
        q.drain(&mut tokens);
    });

    let mut sizes: Vec<(usize, i64)> = LIVE
        .iter()
        .enumerate()
        .map(|(size, c)| (size, c.load(Ordering::Relaxed)))
        .filter(|&(_, c)| c != 0)
        .collect();
    let total: i64 = sizes
        .iter()
        .map(|&(size, c)| if size < EXACT { size as i64 * c } else { 0 })
        .sum::<i64>()
        + LARGE_BYTES.load(Ordering::Relaxed);
    let per = |x: i64| x as f64 / n as f64;
    println!(
        "idle_mem: {n} idle server connections (one request and response each, then 3 s \
         idle): {:.0} bytes of live server allocations per connection",
        per(total)
    );
    sizes.sort_by_key(|&(size, c)| std::cmp::Reverse(size as i64 * c));
    println!("{:>8} {:>12} {:>12}", "size", "live/conn", "bytes/conn");
    for (size, c) in sizes {
        if per(c).abs() < 0.05 {
            continue;
        }
        let label = if size >= EXACT {
            format!(">={EXACT}")
        } else {
            size.to_string()
        };
        println!("{label:>8} {:>12.2} {:>12.1}", per(c), per(size as i64 * c));
    }
    println!(
        "plus the application's handle (TcpStream) in its own table: {} bytes",
        std::mem::size_of::<TcpStream>()
    );
    drop(app);
    drop(held);
    drop(warm);
}
