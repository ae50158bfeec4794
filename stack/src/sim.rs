//! A deterministic simulation of stacks joined by a lossy link, for tests.
//!
//! Each [`SimHost`] is a full stack above the device: an [`Interface`] (ARP, IPv4,
//! ICMP) and a [`TcpLayer`] with `workers` workers, each with its own timer heap and
//! counters. Frames travel through a [`LinkConfig`] link (seeded loss, bursts,
//! duplication, reordering, delay, a rate limit). Time is simulated: [`Sim::step`] jumps
//! to the next event (a frame's arrival or a timer), so a transfer that would take
//! minutes of retransmission timeouts runs in milliseconds, and a seed reproduces a run
//! exactly. Segments are processed on the worker netisr's FLOW policy picks for them;
//! handing a segment to another worker is counted, never silent.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use smoltcp::wire::EthernetAddress;

use crate::mbuf::{Pkt, PktMeta};
use crate::net::ether::{self, EtherProto};
use crate::net::{arp, ipv4, ArpConfig, Interface, Ipv4Cidr, NetCtx};
use crate::stats::Counters;
use crate::tcp::layer::{TcpLayer, TimerHeap};
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
        }
    }
}

/// What a host's workers share with the simulation loop.
pub struct SimHost {
    /// The interface (address, ARP cache).
    pub ifp: Arc<Interface>,
    /// The TCP layer.
    pub tcp: Arc<TcpLayer>,
    workers: Vec<SimWorker>,
    /// Segments handed from the worker they arrived on to their owner.
    pub handoffs: u64,
}

struct SimWorker {
    counters: Counters,
    heap: TimerHeap,
}

/// The per-call context: one worker of one host.
struct Ctx<'a> {
    now: Instant,
    counters: &'a Counters,
    out: &'a mut Vec<Vec<u8>>,
}

impl NetCtx for Ctx<'_> {
    fn now(&self) -> Instant {
        self.now
    }
    fn counters(&self) -> &Counters {
        self.counters
    }
    fn transmit(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        let mut f = vec![0u8; len];
        fill(&mut f);
        self.out.push(f);
        true
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
    pub hosts: [SimHost; 2],
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
}

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
        let now = Instant::now();
        let mk = |i: usize| {
            let mac = EthernetAddress([0x02, 0, 0, 0, 0, 1 + i as u8]);
            let ifp = Arc::new(Interface::new(
                mac,
                1500,
                vec![Ipv4Cidr {
                    addr: host_addr(i),
                    prefix_len: 24,
                }],
                None,
                ArpConfig::default(),
            ));
            let mut layer = TcpLayer::new(workers, cfg.clone());
            // Deterministic ISNs: the seed fixes the whole run, sequence numbers included.
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&seed.to_le_bytes());
            key[8] = i as u8;
            layer.isn = crate::tcp::isn::IsnGenerator::with_key_at(key, now);
            let tcp = Arc::new(layer);
            SimHost {
                ifp,
                tcp,
                workers: (0..workers.max(1))
                    .map(|_| SimWorker {
                        counters: Counters::default(),
                        heap: TimerHeap::default(),
                    })
                    .collect(),
                handoffs: 0,
            }
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
        for h in 0..2 {
            self.run_host(h, None);
        }
        let next_frame = self.queue.peek().map(|Reverse(f)| f.at);
        let next_timer = self
            .hosts
            .iter()
            .flat_map(|h| h.workers.iter().filter_map(|w| w.heap.next()))
            .min();
        let Some(mut next) = [next_frame, next_timer].into_iter().flatten().min() else {
            return false;
        };
        if let Some(end) = end {
            if next > end {
                next = end;
            }
        }
        if next > self.now {
            self.now = next;
        }
        if self.lro {
            // One receive batch per host: everything that has arrived by now.
            let mut batches: [Vec<Vec<u8>>; 2] = Default::default();
            while self.queue.peek().is_some_and(|Reverse(f)| f.at <= self.now) {
                let Reverse(f) = self.queue.pop().expect("peeked");
                self.delivered += 1;
                batches[f.to].push(f.frame);
            }
            for (h, batch) in batches.into_iter().enumerate() {
                if !batch.is_empty() {
                    self.run_host_lro(h, batch);
                }
            }
        }
        while self.queue.peek().is_some_and(|Reverse(f)| f.at <= self.now) {
            let Reverse(f) = self.queue.pop().expect("peeked");
            self.delivered += 1;
            self.run_host(f.to, Some(f.frame));
        }
        for h in 0..2 {
            self.run_host(h, None);
        }
        true
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
        crate::stats::sum(self.hosts[h].workers.iter().map(|w| &w.counters))
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .unwrap_or(0)
    }

    /// Processes one batch of frames that reached host `h` through LRO, then runs the
    /// host's kicks and timers once, as a worker's loop iteration does.
    fn run_host_lro(&mut self, h: usize, batch: Vec<Vec<u8>>) {
        let mut out = Vec::new();
        let now = self.now;
        let host = &mut self.hosts[h];
        let counters = Counters::default();
        let mut buf = Vec::new();
        {
            let mut lro = crate::net::lro::LroBatch::new(&mut buf);
            for frame in &batch {
                let meta = PktMeta::rx(frame.len(), 0);
                let kept = lro.offer(frame, meta, &counters, &mut |p| {
                    Self::input_frame(host, now, p, &mut out)
                });
                if !kept {
                    Self::input_frame(host, now, Pkt { data: frame, meta }, &mut out);
                }
            }
            lro.flush(&counters, &mut |p| {
                Self::input_frame(host, now, p, &mut out)
            });
        }
        // LRO's counters, credited to worker 0.
        let w0 = &host.workers[0].counters;
        for (src, dst) in [
            (&counters.lro_merged, &w0.lro_merged),
            (&counters.lro_aggregates, &w0.lro_aggregates),
        ] {
            dst.fetch_add(
                src.load(std::sync::atomic::Ordering::Relaxed),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        for f in out {
            self.transmit(h, f);
        }
        self.run_host(h, None);
    }

    /// Delivers one received packet to host `host` on the worker that owns its flow.
    fn input_frame(host: &mut SimHost, now: Instant, pkt: Pkt<'_>, out: &mut Vec<Vec<u8>>) {
        let frame = pkt.data;
        let nworkers = host.workers.len();
        // The "NIC" puts the frame on a queue by a hash that does not know TCP (like
        // plain veth); netisr then moves it to the flow's owner.
        let rxq = (frame.len() + frame.last().copied().unwrap_or(0) as usize) % nworkers;
        let hash = crate::rss::ip_flow_hash(&host.tcp.rss, frame);
        let owner = hash
            .map(|h| crate::rss::Toeplitz::queue_of(h, nworkers))
            .unwrap_or(rxq);
        if owner != rxq {
            host.handoffs += 1;
        }
        let w = &mut host.workers[owner];
        let mut ctx = Ctx {
            now,
            counters: &w.counters,
            out,
        };
        let pkt = Pkt {
            data: frame,
            meta: PktMeta {
                rxq: owner as u16,
                ..pkt.meta
            },
        };
        match ether::classify(&host.ifp, &ctx, frame) {
            Some(EtherProto::Arp) => arp::input(&host.ifp, &mut ctx, pkt),
            Some(EtherProto::Ipv4) => {
                if let Some(hash) = hash {
                    // As a stack's netisr FLOW observer: per-group packets, handoffs.
                    let ev = if owner == rxq {
                        crate::rss::FlowEvent::Direct
                    } else {
                        crate::rss::FlowEvent::HandedOff
                    };
                    host.tcp.pcbs.note_flow(hash, ev);
                }
                let (ifp, tcp, heap) = (&host.ifp, &host.tcp, &mut w.heap);
                ipv4::input_with(ifp, &mut ctx, pkt, |ctx, ip| tcp.input(ifp, ctx, heap, ip));
            }
            None => {}
        }
    }

    fn run_host(&mut self, h: usize, frame: Option<Vec<u8>>) {
        let mut out = Vec::new();
        let now = self.now;
        let host = &mut self.hosts[h];
        if let Some(frame) = frame {
            let meta = PktMeta::rx(frame.len(), 0);
            Self::input_frame(host, now, Pkt { data: &frame, meta }, &mut out);
        }
        for (i, w) in host.workers.iter_mut().enumerate() {
            let mut ctx = Ctx {
                now,
                counters: &w.counters,
                out: &mut out,
            };
            host.tcp.run_kicks(i, &host.ifp, &mut ctx, &mut w.heap);
            host.tcp.run_timers(&host.ifp, &mut ctx, &mut w.heap);
            if i == 0 {
                arp::timer(&host.ifp, &mut ctx);
            }
        }
        for w in host.workers.iter_mut() {
            w.heap.deliver_wakes();
        }
        for f in out {
            self.transmit(h, f);
        }
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
        let l = self.link;
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
