//! A deterministic simulation of stacks joined by a lossy link, for tests.
//!
//! A [`SimStack`] is a whole stack (interface, netisr, TCP layer, `workers` workers)
//! built by the same constructor as a running [`crate::Stack`] ([`Layers::build`]) and
//! run by the same worker code ([`WorkerCore::step`]: classify, LRO, netisr dispatch
//! and handoffs, drain, kicks, timers, ARP), over in-memory links and on a virtual
//! clock, every worker stepped in turn in one thread. Raw frames can be injected on any
//! receive queue and everything the stack sends is captured: the base for the protocol
//! tests here, conformance runners and fuzzers.
//!
//! A [`Sim`] joins two of them through a [`LinkConfig`] link (seeded loss, bursts,
//! duplication, reordering, delay, a rate limit). Time is simulated: [`Sim::step`]
//! jumps to the next event (a frame's arrival or a timer), so a transfer that would
//! take minutes of retransmission timeouts runs in milliseconds, and a seed reproduces
//! a run exactly. Frames land on a receive queue by a hash that knows nothing of TCP
//! (as on plain veth), so netisr's FLOW policy hands segments to their owner as it does
//! on a real interface, and counts it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use smoltcp::wire::EthernetAddress;

use crate::clock::{Clock, VirtualClock};
use crate::link::{MemRx, MemTx};
use crate::net::ether;
use crate::net::{ipv4, ArpConfig, Interface, Ipv4Cidr};
use crate::pipeline::{LayerSpec, Layers, WorkerCore};
use crate::ratelimit::RateLimits;
use crate::socket::NetStack;
use crate::stats::Counters;
use crate::tcp::isn::IsnGenerator;
use crate::tcp::layer::TcpLayer;
use crate::tcp::pcb::{Conn, FourTuple, Listener};
use crate::tcp::{Tcb, TcpConfig};

/// Link impairments, applied per frame in each direction.
#[derive(Clone, Copy, Debug)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Extra random delay, uniform in [0, jitter] (reorders frames).
    pub jitter: Duration,
    /// Probability a frame is lost.
    pub loss: f64,
    /// Probability that a loss starts a burst; a burst drops this many more frames.
    pub burst: Option<(f64, u32)>,
    /// Probability a frame is delivered twice.
    pub duplicate: f64,
    /// Link rate in bits per second (serialization delay and queueing); `None` = infinite.
    pub rate_bps: Option<u64>,
    /// Probability that an ECN-capable (ECT) IPv4 frame that survives the loss draw is
    /// marked CE instead, as an AQM router would (RFC 3168 §5); Not-ECT frames are never
    /// marked.
    pub ce_mark: f64,
    /// The MTU of a hop in the middle (a router): an IPv4 datagram longer than this
    /// with DF set is dropped there and answered with ICMP "fragmentation needed"
    /// carrying this MTU (RFC 1191 §4), sent back to its source; `None`: no limit.
    pub mtu: Option<usize>,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            delay: Duration::from_millis(5),
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            duplicate: 0.0,
            rate_bps: None,
            ce_mark: 0.0,
            mtu: None,
        }
    }
}

/// How to build a [`SimStack`].
#[derive(Clone, Debug)]
pub struct SimStackConfig {
    /// The link-layer address.
    pub mac: EthernetAddress,
    /// IP MTU.
    pub mtu: usize,
    /// Addresses the stack owns.
    pub addrs: Vec<Ipv4Cidr>,
    /// Default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Workers (= receive queues).
    pub workers: usize,
    /// Settings for new connections.
    pub tcp: TcpConfig,
    /// ARP timers and limits.
    pub arp: ArpConfig,
    /// Per-second limits on answers to unsolicited traffic.
    pub rate_limits: RateLimits,
    /// Key of the ISN generator and of the ephemeral port choice: a fixed key makes
    /// sequence numbers and ports reproducible.
    pub isn_key: [u8; 16],
    /// Software LRO on receive.
    pub lro: bool,
    /// The in-memory device finishes TCP checksums (as AF_XDP TX metadata does).
    pub tx_csum_offload: bool,
    /// The in-memory device segments TSO frames itself, as the kernel does for a
    /// packet socket (`device/gso.rs`); the stack then hands them over whole.
    pub tso_device: bool,
    /// The virtual clock's origin.
    pub start: Instant,
}

impl SimStackConfig {
    /// One address on a /24, default settings, one worker.
    pub fn new(mac: EthernetAddress, addr: Ipv4Addr, start: Instant) -> Self {
        SimStackConfig {
            mac,
            mtu: 1500,
            addrs: vec![Ipv4Cidr {
                addr,
                prefix_len: 24,
            }],
            gateway: None,
            workers: 1,
            tcp: TcpConfig::default(),
            arp: ArpConfig::default(),
            rate_limits: RateLimits::default(),
            isn_key: [0; 16],
            lro: false,
            tx_csum_offload: false,
            tso_device: false,
            start,
        }
    }
}

/// What one connection's buffers hold ([`SimStack::buffer_use`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferUse {
    /// Bytes queued for sending (unsent and unacknowledged).
    pub send_len: usize,
    /// The send buffer's bound.
    pub send_capacity: usize,
    /// In-order bytes waiting for the application.
    pub recv_readable: usize,
    /// Bytes of memory the receive ring has allocated.
    pub recv_allocated: usize,
    /// The receive buffer's bound.
    pub recv_capacity: usize,
    /// Out-of-order ranges held.
    pub ooo_ranges: usize,
}

/// The most out-of-order ranges a receive buffer holds.
pub const MAX_OOO_RANGES: usize = crate::tcp::recvbuf::MAX_OOO_RANGES;

type SimWorker = WorkerCore<MemRx, MemTx>;

/// A whole stack on in-memory links and a virtual clock (see the module docs).
pub struct SimStack {
    /// The interface (address, ARP cache).
    pub ifp: Arc<Interface>,
    /// The TCP layer.
    pub tcp: Arc<TcpLayer>,
    layers: Layers<MemTx>,
    clock: Arc<VirtualClock>,
    workers: Vec<SimWorker>,
}

/// Steps one [`SimStack::run_now`] may take before it is declared a livelock.
const MAX_ROUNDS: usize = 1_000_000;

impl SimStack {
    /// Builds the stack with [`Layers::build`], as [`crate::Stack::start`] does.
    pub fn new(cfg: SimStackConfig) -> SimStack {
        let clock = Arc::new(VirtualClock::new(cfg.start));
        let nworkers = cfg.workers.max(1);
        let layers = Layers::<MemTx>::build(LayerSpec {
            ifp: Interface::new(cfg.mac, cfg.mtu, cfg.addrs, cfg.gateway, cfg.arp)
                .with_limits(cfg.rate_limits),
            nworkers,
            tcp: cfg.tcp,
            default_cc: None,
            qlimit: 4096,
            clock: Clock::Virtual(clock.clone()),
            isn: Some(IsnGenerator::with_key_at(cfg.isn_key, cfg.start)),
            // Ports as reproducible as the ISNs (a separate PRF input, the same key).
            port_key: Some(cfg.isn_key),
        })
        .expect("simulated stack layers");
        let max_frame = cfg.mtu + ether::HEADER_LEN;
        let workers = (0..nworkers)
            .map(|w| {
                let mut tx = MemTx::new(max_frame);
                tx.csum_offload = cfg.tx_csum_offload;
                tx.tso = cfg.tso_device;
                let rx = MemRx::new(w as u16);
                let counters = Arc::new(Counters::default());
                WorkerCore::new(w, layers.clone(), rx, tx, counters, cfg.lro, cfg.start)
            })
            .collect();
        SimStack {
            ifp: layers.ifp.clone(),
            tcp: layers.tcp.clone(),
            layers,
            clock,
            workers,
        }
    }

    /// The current simulated time.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// What the socket API needs to open sockets on this stack.
    pub fn net(&self) -> NetStack {
        NetStack {
            tcp: self.tcp.clone(),
            ifp: self.ifp.clone(),
        }
    }

    /// Number of workers.
    pub fn nworkers(&self) -> usize {
        self.workers.len()
    }

    /// Switches software LRO on or off.
    pub fn set_lro(&mut self, on: bool) {
        for w in &mut self.workers {
            w.lro = on;
        }
    }

    /// Puts a raw frame (Ethernet header first) on receive queue `rxq`.
    pub fn inject(&mut self, rxq: usize, frame: Vec<u8>) {
        let n = self.workers.len();
        self.workers[rxq % n].rx.queue.push_back(frame);
    }

    /// Puts a raw frame on the queue a NIC without RSS for TCP would choose (a hash of
    /// the frame's length and last byte, as good as any fixed spread): netisr then hands
    /// it to the owner of its flow, as on a real interface.
    pub fn inject_any(&mut self, frame: Vec<u8>) {
        let rxq = (frame.len() + frame.last().copied().unwrap_or(0) as usize) % self.workers.len();
        self.inject(rxq, frame);
    }

    /// The frames the stack has sent since the last call, worker by worker.
    pub fn take_sent(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for w in &mut self.workers {
            out.append(&mut w.ctx.tx.sent);
        }
        out
    }

    /// Steps every worker, in order, until none has anything left to do at the current
    /// time (frames, handoffs, kicks, due timers); returns the rounds taken.
    pub fn run_now(&mut self) -> usize {
        let now = self.clock.now();
        for round in 0..MAX_ROUNDS {
            let mut busy = false;
            for w in &mut self.workers {
                busy |= w.step(now, true).busy();
            }
            let pending = self
                .workers
                .iter()
                .any(|w| !w.rx.queue.is_empty() || w.has_pending());
            if !busy && !pending {
                return round + 1;
            }
        }
        panic!("simulated stack still busy after {MAX_ROUNDS} rounds at one instant (livelock)");
    }

    /// When a worker next has something to do without new input (a connection timer
    /// or ARP work), if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.workers.iter().filter_map(|w| w.next_deadline()).min()
    }

    /// Moves the clock to `t` (never backwards) and runs what is due.
    pub fn advance_to(&mut self, t: Instant) {
        self.clock.set(t);
        self.run_now();
    }

    /// Every connection in the pcb table, as `(local, remote, state, orphaned)`: the
    /// state by its RFC 9293 name in upper case with underscores (`SYN_RECEIVED`,
    /// `TIME_WAIT`, ...), `orphaned` when the application dropped its handle. SYN cache
    /// entries are listed too, as `SYN_RECEIVED` (as FreeBSD's `tcp_pcblist` lists its
    /// syncache). Read-only, for tools that list sockets (the packetdrill shim's
    /// `sockstat`).
    pub fn connections(&self) -> Vec<(SocketAddrV4, SocketAddrV4, &'static str, bool)> {
        let mut v: Vec<_> = self
            .tcp
            .pcbs
            .all()
            .into_iter()
            .map(|c| {
                let g = c.lock();
                (
                    c.tuple.local,
                    c.tuple.remote,
                    g.tcb.state().name(),
                    g.orphaned,
                )
            })
            .collect();
        for w in &self.workers {
            let cached = w.ctx.heap.syncache_tuples();
            v.extend(cached.map(|t| (t.local, t.remote, "SYN_RECEIVED", false)));
        }
        v.sort();
        v
    }

    /// SYN cache entries held, over all workers.
    pub fn syncache_len(&self) -> usize {
        self.workers.iter().map(|w| w.ctx.heap.syncache_len()).sum()
    }

    /// Entries in the ARP cache (resolved, stale and pending): bounded by the owned
    /// subnets, whatever arrives.
    pub fn arp_entries(&self) -> usize {
        self.ifp.arp.len()
    }

    /// The memory each connection in the pcb table holds, in [`connections`] order: what
    /// a fuzzer checks stays within the configured bounds.
    ///
    /// [`connections`]: SimStack::connections
    pub fn buffer_use(&self) -> Vec<BufferUse> {
        let mut v: Vec<_> = self
            .tcp
            .pcbs
            .all()
            .into_iter()
            .map(|c| {
                let g = c.lock();
                let (snd, rcv) = g.tcb.buffers();
                let key = (c.tuple.local, c.tuple.remote);
                let use_ = BufferUse {
                    send_len: snd.len(),
                    send_capacity: snd.capacity(),
                    recv_readable: rcv.readable(),
                    recv_allocated: rcv.allocated(),
                    recv_capacity: rcv.capacity(),
                    ooo_ranges: rcv.ooo_count(),
                };
                (key, use_)
            })
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v.into_iter().map(|(_, u)| u).collect()
    }

    /// Changes the stack-wide TCP configuration that connections opened afterwards
    /// start from (open connections keep theirs): for settings a test sets once the
    /// stack runs, as a FreeBSD `sysctl` does.
    pub fn update_tcp_config(&self, f: impl FnOnce(&mut TcpConfig)) {
        let mut cfg = self.tcp.config.write().unwrap_or_else(|e| e.into_inner());
        f(Arc::make_mut(&mut cfg));
    }

    /// Every counter, summed over workers, in a stable order.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        crate::stats::sum(self.workers.iter().map(|w| &*w.ctx.counters))
    }

    /// A named counter, summed over workers.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters()
            .into_iter()
            .chain(self.tcp.bounds().counters().snapshot())
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .unwrap_or(0)
    }

    /// Packets netisr handed from the worker they arrived on to their flow's owner.
    pub fn handoffs(&self) -> u64 {
        let stats = self.layers.netisr.stats();
        stats
            .workstreams
            .iter()
            .flat_map(|w| w.protos.iter())
            .map(|p| p.handed_off)
            .sum()
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    to: usize,
    frame: Vec<u8>,
}

/// Two hosts and the link between them.
pub struct Sim {
    /// The simulated clock.
    pub now: Instant,
    /// Host 0 (198.18.0.1) and host 1 (198.18.0.2).
    pub hosts: [SimStack; 2],
    link: LinkConfig,
    rng: SmallRng,
    queue: BinaryHeap<Reverse<InFlight>>,
    next_seq: u64,
    /// When each direction's link is next free (rate limiting).
    busy_until: [Instant; 2],
    burst_left: u32,
    /// Frames dropped by the link.
    pub dropped: u64,
    /// Frames delivered.
    pub delivered: u64,
    /// When set, every frame each host sends (before the link's impairments), as
    /// `(host, frame)`: a capture point for comparing what two configurations send.
    pub tap: Option<Vec<(usize, Vec<u8>)>>,
    /// Receive offload: frames reaching a host at the same instant form one receive
    /// batch and go through LRO ([`crate::net::lro`]) as on a worker.
    pub lro: bool,
    /// Arrivals rounded up to multiples of this (a receiver that polls its ring every
    /// so often, or a NIC's interrupt coalescing), so jittered frames still arrive in
    /// batches; `None` delivers each at its exact time.
    pub rx_batch: Option<Duration>,
    start: Instant,
    /// ECT frames the link marked CE.
    pub ce_marked: u64,
    /// A chosen-frame dropper: called with `(host, frame)` for every frame a host sends;
    /// true drops it (counted in `dropped`), for tests that lose exactly the segments
    /// they mean to.
    pub drop_if: Option<DropFn>,
}

/// [`Sim::drop_if`]'s selector.
pub type DropFn = Box<dyn FnMut(usize, &[u8]) -> bool + Send>;

/// The address of host `i`.
pub fn host_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 1 + i as u8)
}

impl Sim {
    /// Two hosts with `workers` workers each, default TCP settings.
    pub fn new(seed: u64, link: LinkConfig, workers: usize) -> Sim {
        Self::with_config(seed, link, workers, TcpConfig::default())
    }

    /// Two hosts with the given TCP settings.
    pub fn with_config(seed: u64, link: LinkConfig, workers: usize, cfg: TcpConfig) -> Sim {
        Sim::with_setup(seed, link, workers, cfg, |_| {})
    }

    /// [`Sim::with_config`], with `setup` applied to each host's stack settings last.
    pub fn with_setup(
        seed: u64,
        link: LinkConfig,
        workers: usize,
        cfg: TcpConfig,
        setup: impl Fn(&mut SimStackConfig),
    ) -> Sim {
        let now = Instant::now();
        let mk = |i: usize| {
            let mut c = SimStackConfig::new(
                EthernetAddress([0x02, 0, 0, 0, 0, 1 + i as u8]),
                host_addr(i),
                now,
            );
            c.workers = workers;
            c.tcp = cfg.clone();
            // Deterministic ISNs: the seed fixes the whole run, sequence numbers included.
            c.isn_key[..8].copy_from_slice(&seed.to_le_bytes());
            c.isn_key[8] = i as u8;
            setup(&mut c);
            SimStack::new(c)
        };
        Sim {
            now,
            hosts: [mk(0), mk(1)],
            link,
            rng: SmallRng::seed_from_u64(seed),
            queue: BinaryHeap::new(),
            next_seq: 0,
            busy_until: [now; 2],
            burst_left: 0,
            dropped: 0,
            delivered: 0,
            tap: None,
            lro: false,
            rx_batch: None,
            start: now,
            ce_marked: 0,
            drop_if: None,
        }
    }

    /// Changes the link's impairments.
    pub fn set_link(&mut self, link: LinkConfig) {
        self.link = link;
    }

    /// Listens on `port` on host `h`.
    pub fn listen(&mut self, h: usize, port: u16, backlog: usize) -> Arc<Listener> {
        let local = SocketAddrV4::new(host_addr(h), port);
        self.hosts[h]
            .tcp
            .pcbs
            .listen(local, backlog)
            .expect("listen")
    }

    /// Opens a connection from host `h` to the other host's `port`.
    pub fn connect(&mut self, h: usize, port: u16) -> Arc<Conn> {
        let host = &self.hosts[h];
        let remote = SocketAddrV4::new(host_addr(1 - h), port);
        let local_ip = host_addr(h);
        let tcp = &host.tcp;
        // As `TcpStream::connect`: a port whose reply lands on the next worker in turn.
        let target = tcp.next_connect_worker();
        let aligned = |p: u16| tcp.owner_of(SocketAddrV4::new(local_ip, p), remote) == target;
        let p = tcp
            .pcbs
            .pick_port(local_ip, remote, &aligned)
            .expect("port");
        self.connect_from(h, p, port)
    }

    /// Opens a connection from host `h`'s port `local_port` to the other host's `port`
    /// (panics if the 4-tuple is taken on host `h`).
    pub fn connect_from(&mut self, h: usize, local_port: u16, port: u16) -> Arc<Conn> {
        let host = &self.hosts[h];
        let remote = SocketAddrV4::new(host_addr(1 - h), port);
        let tcp = &host.tcp;
        let local = SocketAddrV4::new(host_addr(h), local_port);
        let cc = tcp.cc.create_default();
        let iss = tcp.isn.isn(local, remote, self.now);
        let tcb = Tcb::connect(tcp.conn_config(), local, remote, iss, cc, self.now);
        let owner = tcp.owner_of(local, remote);
        let conn = tcp
            .pcbs
            .insert(FourTuple { local, remote }, owner, tcb)
            .expect("insert");
        tcp.kick(&conn);
        conn
    }

    /// Queues `data` on a connection (as much as fits); returns how much.
    pub fn send(&mut self, h: usize, conn: &Arc<Conn>, data: &[u8]) -> usize {
        let n = conn.lock().tcb.send(data).unwrap_or(0);
        if n > 0 {
            self.hosts[h].tcp.kick(conn);
        }
        n
    }

    /// Reads what is available from a connection.
    pub fn recv(&mut self, h: usize, conn: &Arc<Conn>, buf: &mut [u8]) -> usize {
        let mut inner = conn.lock();
        let n = inner.tcb.recv(buf).unwrap_or(0);
        let kick = n > 0 && inner.tcb.window_update_wanted();
        drop(inner);
        if kick {
            self.hosts[h].tcp.kick(conn);
        }
        n
    }

    /// Closes our sending side.
    pub fn close(&mut self, h: usize, conn: &Arc<Conn>) {
        conn.lock().tcb.close(self.now);
        self.hosts[h].tcp.kick(conn);
    }

    /// The next accepted connection on a listener, if any.
    pub fn accept(&mut self, l: &Listener) -> Option<Arc<Conn>> {
        l.queue.lock().ok()?.pop_front()
    }

    /// Runs everything due now, then advances the clock to the next event; returns
    /// false when nothing at all is pending.
    pub fn step(&mut self) -> bool {
        self.step_until(None)
    }

    /// As [`Sim::step`], never moving the clock past `end`.
    fn step_until(&mut self, end: Option<Instant>) -> bool {
        // Work that is due right now: kicks (application writes) and timers.
        self.run_hosts();
        let next_frame = self.queue.peek().map(|Reverse(f)| f.at);
        let next_timer = self.hosts.iter().filter_map(|h| h.next_deadline()).min();
        let Some(mut next) = [next_frame, next_timer].into_iter().flatten().min() else {
            return false;
        };
        if let Some(end) = end {
            next = next.min(end);
        }
        if next > self.now {
            self.now = next;
        }
        // Everything that has arrived by now is on the receive queues: one receive
        // batch per worker (up to the batch size), as a worker finds its ring.
        while self.queue.peek().is_some_and(|Reverse(f)| f.at <= self.now) {
            let Reverse(f) = self.queue.pop().expect("peeked");
            self.delivered += 1;
            self.hosts[f.to].inject_any(f.frame);
        }
        self.run_hosts();
        true
    }

    /// Runs both hosts at the current time and puts what they send on the link.
    fn run_hosts(&mut self) {
        for h in 0..2 {
            let host = &mut self.hosts[h];
            host.set_lro(self.lro);
            host.advance_to(self.now);
            for f in host.take_sent() {
                self.transmit(h, f);
            }
        }
    }

    /// Steps until `done` holds, or fails after `limit` of simulated time (livelock
    /// guard).
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Sim) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            if !self.step_until(Some(end)) {
                return done(self);
            }
        }
        done(self)
    }

    /// Host `h`'s counters, summed over workers.
    pub fn counter(&self, h: usize, name: &str) -> u64 {
        self.hosts[h].counter(name)
    }

    /// Runs the simulation on a background thread, its clock paced by the wall clock
    /// (the virtual time never runs ahead of the real time elapsed since the call), so
    /// blocking sockets, mio and tokio can run against it from other threads. The
    /// returned handle stops the thread when dropped.
    pub fn spawn(self) -> SimThread {
        let nets = [self.hosts[0].net(), self.hosts[1].net()];
        let sim = Arc::new(Mutex::new(self));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let sim = sim.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sim".into())
                .spawn(move || {
                    let real = Instant::now();
                    let virt = sim.lock().unwrap_or_else(|e| e.into_inner()).now;
                    while !stop.load(Ordering::Relaxed) {
                        sim.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .pump(virt + real.elapsed());
                        std::thread::sleep(SimThread::TICK);
                    }
                })
                .expect("spawn the sim thread")
        };
        SimThread {
            sim,
            stop,
            thread: Some(thread),
            nets,
        }
    }

    /// Runs everything up to `end` (and what is due at `end`), without moving the clock
    /// past it.
    fn pump(&mut self, end: Instant) {
        while self.now < end {
            if !self.step_until(Some(end)) {
                self.now = end;
                break;
            }
        }
        // Work the application queued since (kicks) and frames due at `end`.
        self.step_until(Some(end));
    }

    /// Marks an ECT IPv4 frame CE with probability `p` (only the random draw for ECT
    /// frames, so Not-ECT traffic leaves the random sequence as without marking).
    fn maybe_mark_ce(&mut self, frame: &mut [u8], p: f64) {
        let ipv4 = frame.get(12..14) == Some(&[0x08, 0x00][..]);
        let Some(ip) = frame.get_mut(ether::HEADER_LEN..) else {
            return;
        };
        if !ipv4 || ip.len() < ipv4::HEADER_LEN {
            return;
        }
        let ecn = ipv4::Ecn::from_bits(ip[1]);
        if ecn.is_ect() && ecn != ipv4::Ecn::Ce && self.rng.random_bool(p.min(1.0)) {
            ipv4::set_ecn(ip, ipv4::Ecn::Ce);
            self.ce_marked += 1;
        }
    }

    fn transmit(&mut self, from: usize, mut frame: Vec<u8>) {
        if let Some(tap) = &mut self.tap {
            tap.push((from, frame.clone()));
        }
        if let Some(f) = self.drop_if.as_mut() {
            if f(from, &frame) {
                self.dropped += 1;
                return;
            }
        }
        let l = self.link;
        if let Some(icmp) = l.mtu.and_then(|mtu| frag_needed(&frame, mtu)) {
            self.dropped += 1;
            self.next_seq += 1;
            self.queue.push(Reverse(InFlight {
                at: self.now + l.delay,
                seq: self.next_seq,
                to: from,
                frame: icmp,
            }));
            return;
        }
        if self.burst_left > 0 {
            self.burst_left -= 1;
            self.dropped += 1;
            return;
        }
        if l.loss > 0.0 && self.rng.random_bool(l.loss.min(1.0)) {
            self.dropped += 1;
            if let Some((p, n)) = l.burst {
                if self.rng.random_bool(p.min(1.0)) {
                    self.burst_left = n;
                }
            }
            return;
        }
        if l.ce_mark > 0.0 {
            self.maybe_mark_ce(&mut frame, l.ce_mark);
        }
        let mut at = self.now;
        if let Some(bps) = l.rate_bps {
            let start = self.busy_until[from].max(self.now);
            let ser = Duration::from_nanos((frame.len() as u64 * 8 * 1_000_000_000) / bps.max(1));
            self.busy_until[from] = start + ser;
            at = start + ser;
        }
        at += l.delay;
        if !l.jitter.is_zero() {
            at += l.jitter.mul_f64(self.rng.random::<f64>());
        }
        if let Some(q) = self.rx_batch {
            let q = q.as_nanos().max(1);
            let t = (at - self.start).as_nanos();
            at = self.start + Duration::from_nanos(t.div_ceil(q).saturating_mul(q) as u64);
        }
        let copies = if l.duplicate > 0.0 && self.rng.random_bool(l.duplicate.min(1.0)) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            self.next_seq += 1;
            self.queue.push(Reverse(InFlight {
                at,
                seq: self.next_seq,
                to: 1 - from,
                frame: frame.clone(),
            }));
        }
    }
}

/// A [`Sim`] running on its own thread ([`Sim::spawn`]).
pub struct SimThread {
    sim: Arc<Mutex<Sim>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    nets: [NetStack; 2],
}

impl SimThread {
    /// How long the thread sleeps between rounds: the simulation's reaction time.
    const TICK: Duration = Duration::from_micros(200);

    /// Host `h`'s sockets' view of its stack.
    pub fn net(&self, h: usize) -> NetStack {
        self.nets[h].clone()
    }

    /// The simulation, paused while the guard is held (counters, link changes).
    pub fn lock(&self) -> MutexGuard<'_, Sim> {
        self.sim.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for SimThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The address of the router in the middle of a [`Sim`] link (the source of its ICMP
/// errors).
pub const ROUTER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);

/// The ICMP "fragmentation needed" a router with next-hop MTU `mtu` sends back for
/// `frame` (an Ethernet frame), if the frame carries an IPv4 datagram with DF set that
/// is longer than `mtu`: the router's reply quotes its IP header and the first 8 bytes
/// of its payload (RFC 792).
pub(crate) fn frag_needed(frame: &[u8], mtu: usize) -> Option<Vec<u8>> {
    let ip = frame.get(ether::HEADER_LEN..)?;
    if frame[12..14] != [0x08, 0x00] || ip.len() < ipv4::HEADER_LEN {
        return None;
    }
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    if total <= mtu || ip[6] & 0x40 == 0 {
        return None;
    }
    let hlen = (ip[0] & 0x0f) as usize * 4;
    let quoted = ip.get(..hlen + 8)?;
    let mut icmp = vec![3u8, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&(mtu.min(0xffff) as u16).to_be_bytes());
    icmp.extend_from_slice(quoted);
    let sum = crate::checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::with_capacity(ether::HEADER_LEN + ipv4::HEADER_LEN + icmp.len());
    f.extend_from_slice(&frame[6..12]);
    f.extend_from_slice(&frame[..6]);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    f.extend_from_slice(&((ipv4::HEADER_LEN + icmp.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 64, 1, 0, 0]);
    f.extend_from_slice(&ROUTER_ADDR.octets());
    f.extend_from_slice(&ip[12..16]);
    let sum = crate::checksum::checksum(&f[ether::HEADER_LEN..]);
    f[ether::HEADER_LEN + 10..ether::HEADER_LEN + 12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&icmp);
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum;

    const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 9];
    const PEER_IP: [u8; 4] = [198, 18, 0, 9];

    /// Host 0's stack with `workers` workers, listening on port 80.
    fn listening(workers: usize, tx_csum_offload: bool) -> SimStack {
        let mut c = SimStackConfig::new(
            EthernetAddress([0x02, 0, 0, 0, 0, 1]),
            host_addr(0),
            Instant::now(),
        );
        c.workers = workers;
        c.tx_csum_offload = tx_csum_offload;
        let s = SimStack::new(c);
        s.tcp
            .pcbs
            .listen(SocketAddrV4::new(host_addr(0), 80), 8)
            .expect("listen");
        s
    }

    /// A bare SYN (no options) from the peer to `port` of host 0, checksums valid.
    fn syn(sport: u16, port: u16, seq: u32) -> Vec<u8> {
        segment(sport, port, seq, 0x02)
    }

    /// A segment without options or payload from the peer to `port` of host 0, with
    /// these TCP flags, checksums valid.
    fn segment(sport: u16, port: u16, seq: u32, flags: u8) -> Vec<u8> {
        segment_ack(sport, port, seq, 0, flags)
    }

    /// As [`segment`], with an acknowledgment number.
    fn segment_ack(sport: u16, port: u16, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&PEER_MAC);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&PEER_IP);
        ip[16..20].copy_from_slice(&host_addr(0).octets());
        let c = checksum::checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let tcp = &mut f[34..];
        tcp[..2].copy_from_slice(&sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&port.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&ack.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
        let pseudo = checksum::pseudo_header_v4(PEER_IP, host_addr(0).octets(), 6, 20);
        let c = !checksum::fold(checksum::add(pseudo, tcp));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// An ARP request from the peer for host 0's address.
    fn arp_request() -> Vec<u8> {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&PEER_MAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
        f.extend_from_slice(&PEER_MAC);
        f.extend_from_slice(&PEER_IP);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&host_addr(0).octets());
        f
    }

    #[test]
    fn raw_frames_in_and_captured_frames_out() {
        let mut s = listening(2, false);
        // Worker 0 owns the interface timers: it announces our address once up.
        s.run_now();
        let announce = s.take_sent();
        assert_eq!(announce.len(), 1, "one gratuitous ARP");
        assert_eq!(&announce[0][12..14], &[0x08, 0x06]);

        s.inject(1, arp_request());
        s.run_now();
        let reply = s.take_sent();
        assert_eq!(reply.len(), 1);
        assert_eq!(&reply[0][..6], &PEER_MAC, "an ARP reply to the asker");
        assert_eq!(&reply[0][20..22], &[0, 2]);

        // A SYN on both queues: whichever it arrives on, the SYN,ACK comes from the
        // flow's owner, and the arrival on the other queue was handed over by netisr.
        let owner = s.tcp.owner_of(
            SocketAddrV4::new(host_addr(0), 80),
            SocketAddrV4::new(PEER_IP.into(), 40000),
        );
        s.inject(1 - owner, syn(40000, 80, 1000));
        s.run_now();
        let out = s.take_sent();
        assert_eq!(out.len(), 1, "one SYN,ACK");
        let tcp = &out[0][34..];
        assert_eq!(tcp[13], 0x12, "SYN,ACK");
        assert_eq!(u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]), 1001);
        assert_eq!(s.handoffs(), 1);
        assert_eq!(s.counter("tcp.rx_misplaced"), 0);
        assert_eq!(s.counter("device.rx_frames"), 2);
    }

    /// The TCP flags and ACK number of the one TCP segment `s` sent, if any.
    fn sent_tcp(s: &mut SimStack) -> Option<(u8, u32)> {
        let out = s.take_sent();
        let f = out.iter().find(|f| f.len() >= 54 && f[23] == 6)?;
        Some((f[47], u32::from_be_bytes([f[42], f[43], f[44], f[45]])))
    }

    // SYN+FIN: dropped and counted by default (`drop_synfin`); off, handled as a SYN
    // (FIN ignored) at a listener, and answered with a RST acknowledging both at a
    // closed port (RFC 9293 §3.10.7.1: ACK = SEG.SEQ + SEG.LEN).
    #[test]
    fn syn_fin_is_dropped_unless_drop_synfin_is_off() {
        let mut s = listening(1, false);
        s.inject(0, arp_request());
        s.run_now();
        let _ = s.take_sent();
        s.inject(0, segment(40010, 80, 100, 0x03));
        s.run_now();
        assert_eq!(sent_tcp(&mut s), None);
        assert_eq!(s.counter("tcp.drop_bad_flags"), 1);

        s.update_tcp_config(|c| c.drop_synfin = false);
        s.inject(0, segment(40011, 80, 100, 0x03));
        s.run_now();
        assert_eq!(
            sent_tcp(&mut s),
            Some((0x12, 101)),
            "SYN,ACK for the SYN only"
        );
        s.inject(0, segment(40012, 81, 100, 0x03));
        s.run_now();
        assert_eq!(
            sent_tcp(&mut s),
            Some((0x14, 102)),
            "RST,ACK for SYN and FIN"
        );
    }

    /// The SYN,ACKs among `frames`, as (destination port, ISS).
    fn synacks(frames: &[Vec<u8>]) -> Vec<(u16, u32)> {
        frames
            .iter()
            .filter(|f| f.len() >= 54 && f[23] == 6 && f[47] == 0x12)
            .map(|f| {
                let port = u16::from_be_bytes([f[36], f[37]]);
                (port, u32::from_be_bytes([f[38], f[39], f[40], f[41]]))
            })
            .collect()
    }

    // A SYN flood (here from 100 ports of one address) fills the worker's SYN cache to
    // its limit and is answered with cookies beyond it: no connection exists until an
    // ACK completes a handshake, and a cookie's ACK does.
    #[test]
    fn a_syn_flood_fills_the_cache_then_gets_cookies_and_a_cookie_ack_connects() {
        let mut s = listening(1, false);
        s.update_tcp_config(|c| c.syncache_limit = 16);
        s.inject(0, arp_request());
        s.run_now();
        let _ = s.take_sent();
        for p in 0..100u16 {
            s.inject(0, syn(20000 + p, 80, 5000 + u32::from(p)));
        }
        s.run_now();
        let answered = synacks(&s.take_sent());
        assert_eq!(answered.len(), 100, "every SYN is answered");
        assert_eq!(s.tcp.pcbs.all().len(), 0, "no control block for a SYN");
        assert_eq!(s.syncache_len(), 16);
        assert_eq!(s.counter("tcp.syncache_added"), 16);
        assert_eq!(s.counter("tcp.syncookies_sent"), 84);

        // The last SYN got a cookie; its ACK makes the connection.
        let (port, iss) = answered[99];
        assert_eq!(port, 20099);
        s.inject(
            0,
            segment_ack(port, 80, 5000 + 99 + 1, iss.wrapping_add(1), 0x10),
        );
        s.run_now();
        assert_eq!(s.counter("tcp.syncookies_ok"), 1);
        let conns = s.connections();
        assert!(
            conns
                .iter()
                .any(|c| c.1.port() == port && c.2 == "ESTABLISHED"),
            "{conns:?}"
        );
        // A forged ACK (wrong cookie) gets a RST and no connection.
        s.inject(0, segment_ack(20098, 80, 5000 + 98 + 1, 12345, 0x10));
        s.run_now();
        assert_eq!(s.counter("tcp.syncookies_bad"), 1);
        assert_eq!(s.tcp.pcbs.all().len(), 1);

        // A cached SYN completes too (without cookies).
        let (port, iss) = answered[0];
        s.inject(
            0,
            segment_ack(port, 80, 5000 + 1, iss.wrapping_add(1), 0x10),
        );
        s.run_now();
        assert_eq!(s.counter("tcp.syncache_completed"), 2);
        assert_eq!(s.syncache_len(), 15);
        assert_eq!(s.tcp.pcbs.all().len(), 2);
    }

    // An entry expanded by a segment the SYN-RECEIVED connection answers with a RST (a
    // bad ACK) still has its timer: it retransmits and times out (found by the fuzzer:
    // such a connection stayed forever).
    #[test]
    fn an_expanded_entry_answered_with_a_reset_still_times_out() {
        let mut s = listening(1, false);
        s.inject(0, arp_request());
        s.inject(0, syn(31000, 80, 500));
        s.run_now();
        let (_, iss) = synacks(&s.take_sent())[0];
        s.inject(0, segment_ack(31000, 80, 501, iss.wrapping_add(99), 0x10));
        s.run_now();
        assert_eq!(s.tcp.pcbs.all().len(), 1, "expanded, still SYN-RECEIVED");
        let limit = s.now() + Duration::from_secs(600);
        while let Some(t) = s.next_deadline().filter(|&t| t < limit) {
            s.advance_to(t);
        }
        assert_eq!(s.tcp.pcbs.all().len(), 0, "timed out");
    }

    // Unanswered entries retransmit their SYN,ACK `synack_retries` times, then go.
    #[test]
    fn syn_cache_entries_retransmit_then_expire() {
        let mut s = listening(1, false);
        s.update_tcp_config(|c| c.synack_retries = 2);
        s.inject(0, arp_request());
        s.inject(0, syn(30000, 80, 77));
        s.run_now();
        assert_eq!(synacks(&s.take_sent()).len(), 1);
        let mut resent = 0;
        while let Some(t) = s.next_deadline() {
            if s.syncache_len() == 0 || t > s.now() + Duration::from_secs(60) {
                break;
            }
            s.advance_to(t);
            resent += synacks(&s.take_sent()).len();
        }
        assert_eq!(resent, 2);
        assert_eq!(s.syncache_len(), 0);
        assert_eq!(s.counter("tcp.syncache_retransmitted"), 2);
        assert_eq!(s.counter("tcp.syncache_expired"), 1);
        assert_eq!(s.tcp.pcbs.all().len(), 0);
    }

    #[test]
    fn time_is_virtual_and_moves_to_the_next_deadline() {
        let mut s = listening(1, false);
        let t0 = s.now();
        s.inject(0, arp_request()); // so the SYN,ACK needs no resolution
        s.inject(0, syn(40001, 80, 7));
        s.run_now();
        let first = s.take_sent();
        assert!(first.iter().any(|f| f.len() >= 48 && f[47] == 0x12));
        // Nothing answers: the SYN,ACK is retransmitted at the RTO, which the clock
        // reaches in one jump, with no real time spent.
        let wall = Instant::now();
        let due = s.next_deadline().expect("SYN,ACK retransmission timer");
        assert!(due > t0);
        s.advance_to(due);
        let again = s.take_sent();
        assert!(
            again.iter().any(|f| f.len() >= 48 && f[47] == 0x12),
            "retransmitted"
        );
        assert!(s.now() - t0 >= Duration::from_millis(200));
        assert!(wall.elapsed() < Duration::from_millis(200));
    }

    #[test]
    fn a_device_that_finishes_checksums_is_asked_to() {
        let mut s = listening(1, true);
        s.inject(0, arp_request());
        s.inject(0, syn(40002, 80, 1));
        s.run_now();
        let synack = s
            .take_sent()
            .into_iter()
            .find(|f| f.len() >= 48 && f[47] == 0x12)
            .expect("SYN,ACK");
        // Handed over partial (the offload path), finished by the in-memory device:
        // valid on the wire.
        assert_eq!(s.counter("device.tx_csum_offloaded"), 1);
        assert_eq!(s.counter("device.tx_csum_software"), 0);
        let tcp = &synack[34..];
        let pseudo =
            checksum::pseudo_header_v4(host_addr(0).octets(), PEER_IP, 6, tcp.len() as u16);
        assert_eq!(checksum::fold(checksum::add(pseudo, tcp)), 0xffff);
    }

    #[test]
    fn a_dropped_stack_is_freed() {
        let s = listening(2, false);
        let (tcp, netisr) = (Arc::downgrade(&s.tcp), Arc::downgrade(&s.layers.netisr));
        drop(s);
        assert!(tcp.upgrade().is_none(), "the TCP layer outlived its stack");
        assert!(netisr.upgrade().is_none(), "netisr outlived its stack");
    }

    /// An ICMP error from a router on the path, quoting `quoted` (our IP packet: its
    /// header and the first 8 bytes of its payload).
    fn icmp_error(ty: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
        let router = [198, 18, 0, 254];
        let mut icmp = vec![ty, code, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&quoted[..28]);
        let c = checksum::checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut f = vec![0u8; 14 + 20];
        f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&PEER_MAC);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 1;
        ip[12..16].copy_from_slice(&router);
        ip[16..20].copy_from_slice(&host_addr(0).octets());
        let c = checksum::checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&icmp);
        f
    }

    // RFC 1122 §4.2.3.9 and RFC 5927 §4.1: a port unreachable quoting our SYN's sequence
    // number ends the attempt with "connection refused"; one quoting a sequence number
    // not in flight, or a soft error, changes nothing. The error is processed on the
    // connection's owner (its hash is the quoted flow's).
    #[test]
    fn icmp_hard_errors_end_a_connection_attempt() {
        use std::io::ErrorKind;
        let mut s = listening(2, false);
        s.inject(0, arp_request()); // the peer's address is known: the SYN leaves at once
        s.run_now();
        s.take_sent();
        let peer = SocketAddrV4::new(PEER_IP.into(), 9);
        let c = crate::TcpStream::connect_nonblocking(s.net(), peer).expect("connect");
        s.run_now();
        let syn = s.take_sent().remove(0);
        let ip = &syn[14..];
        assert_eq!(ip[33], 0x02, "a SYN");
        let iss = u32::from_be_bytes([ip[24], ip[25], ip[26], ip[27]]);
        let with_seq = |seq: u32| {
            let mut q = ip[..28].to_vec();
            q[24..28].copy_from_slice(&seq.to_be_bytes());
            q
        };
        for (ty, code, seq) in [
            (3, 3, iss.wrapping_sub(1)),
            (3, 3, iss + 1),
            (3, 1, iss),
            (11, 0, iss),
        ] {
            s.inject_any(icmp_error(ty, code, &with_seq(seq)));
            s.run_now();
            assert!(
                c.take_error().expect("take_error").is_none(),
                "{ty}/{code} seq {seq}"
            );
        }
        assert_eq!(s.counter("tcp.icmp_ignored"), 4);
        s.inject_any(icmp_error(3, 3, &with_seq(iss)));
        s.run_now();
        let e = c.take_error().expect("take_error").expect("an error");
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        assert_eq!(s.counter("tcp.icmp_dropped"), 1);
        assert_eq!(s.counter("tcp.rx_misplaced"), 0);
        assert_eq!(s.counter("icmp.tcp_errors_rx"), 5);
    }
}
