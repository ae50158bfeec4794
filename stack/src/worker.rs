//! A worker: one thread per receive queue, pinned to a CPU, owning that queue's AF_XDP
//! socket. It takes frames off the rx ring, classifies them by ethertype and hands them
//! to netisr (directly, or to the owner's queue), drains its own netisr queue, runs
//! the periodic timers it owns, and pushes its transmit batch to the kernel.
//!
//! When idle it either spins (busy polling: lowest latency, one core per worker) or
//! sleeps in poll(2) on the socket and an eventfd that netisr and `Stack::stop` use to
//! wake it.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::device::xsk::{TxError, XskRx, XskTx};
use crate::net::ether::{self, EtherProto};
use crate::net::lro::LroBatch;
use crate::net::{arp, Interface, NetCtx};
use crate::netisr::{Netisr, NETISR_ARP, NETISR_IP};
use crate::stats::Counters;
use crate::tcp::layer::{TcpLayer, TimerHeap};

/// What a worker does when there is nothing to receive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdleMode {
    /// Keep polling the rings (needs a core per worker).
    #[default]
    Busy,
    /// Sleep in poll() until a frame, a handoff or a timer.
    Sleep,
}

impl std::str::FromStr for IdleMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "busy" => Ok(IdleMode::Busy),
            "sleep" => Ok(IdleMode::Sleep),
            _ => Err(format!("unknown idle mode '{s}' (expected busy or sleep)")),
        }
    }
}

/// The per-worker context handed to protocol handlers: the clock, the worker's
/// counters and its transmit half.
pub struct WorkerCtx {
    /// This worker's index (= its queue).
    pub id: usize,
    /// Time of the current loop iteration.
    pub now: Instant,
    /// This worker's counters.
    pub counters: Arc<Counters>,
    /// The transmit half of this worker's socket.
    pub tx: XskTx,
    /// Deadlines of the TCP connections this worker owns.
    pub heap: TimerHeap,
}

impl WorkerCtx {
    /// Counts what became of one frame handed to the transmit ring.
    fn account(&self, r: Result<(), TxError>) -> bool {
        let c = &self.counters;
        match r {
            Ok(()) => Counters::inc(&c.tx_frames),
            Err(TxError::NoRoom) => Counters::inc(&c.tx_drop_no_room),
            Err(TxError::TooBig) => Counters::inc(&c.tx_drop_too_big),
        }
        r.is_ok()
    }
}

impl NetCtx for WorkerCtx {
    fn now(&self) -> Instant {
        self.now
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn transmit(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> bool {
        let r = self.tx.send(len, fill);
        self.account(r)
    }

    fn tx_csum_offload(&self) -> bool {
        self.tx.tx_csum()
    }

    fn transmit_partial(
        &mut self,
        len: usize,
        csum_start: u16,
        csum_offset: u16,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        let offloaded = self.tx.tx_csum();
        let r = self.tx.send_partial(len, csum_start, csum_offset, fill);
        let sent = self.account(r);
        if sent {
            Counters::inc(if offloaded {
                &self.counters.tx_csum_offloaded
            } else {
                &self.counters.tx_csum_software
            });
        }
        sent
    }
}

/// Registers the protocols of this layer with netisr: ARP where it arrives (SOURCE:
/// no flow to keep together), IPv4 by flow (FLOW: a flow's packets are processed on
/// one worker, which is where its connection state will live).
pub fn register_protocols(
    netisr: &Netisr<WorkerCtx>,
    ifp: &Arc<Interface>,
    tcp: &Arc<TcpLayer>,
    qlimit: usize,
) -> Result<(), crate::netisr::NetisrError> {
    use crate::netisr::{Policy, ProtoSpec};
    let i = ifp.clone();
    netisr.register(ProtoSpec {
        proto: NETISR_ARP,
        name: "arp",
        handler: Box::new(move |ctx, pkt| arp::input(&i, ctx, pkt)),
        policy: Policy::Source,
        qlimit,
        m2flow: None,
        m2cpuid: None,
    })?;
    let i = ifp.clone();
    let t = tcp.clone();
    netisr.register(ProtoSpec {
        proto: NETISR_IP,
        name: "ip",
        handler: Box::new(move |ctx, pkt| {
            crate::net::ipv4::input_with(&i, ctx, pkt, |ctx: &mut WorkerCtx, ip| {
                let mut heap = std::mem::take(&mut ctx.heap);
                t.input(&i, ctx, &mut heap, ip);
                ctx.heap = heap;
            })
        }),
        policy: Policy::Flow,
        qlimit,
        m2flow: Some({
            let rss = tcp.rss.clone();
            Box::new(move |pkt| crate::rss::ip_flow_hash(&rss, pkt.data))
        }),
        m2cpuid: None,
    })?;
    Ok(())
}

/// Everything a worker thread owns.
pub(crate) struct Worker {
    pub id: usize,
    pub rx: XskRx,
    pub ctx: WorkerCtx,
    pub ifp: Arc<Interface>,
    pub netisr: Arc<Netisr<WorkerCtx>>,
    pub tcp: Arc<TcpLayer>,
    pub stop: Arc<AtomicBool>,
    pub running: Arc<AtomicBool>,
    pub idle: IdleMode,
    /// Another worker is pinned to the same CPU: spinning must yield to it.
    pub shares_cpu: bool,
    pub wake_fd: Arc<OwnedFd>,
    /// Coalesce TCP segments before input ([`crate::net::lro`]).
    pub lro: bool,
}

const RX_BATCH: u32 = 64;
const NETISR_BUDGET: usize = 256;
const TIMER_TICK: Duration = Duration::from_millis(100);

impl Worker {
    /// The worker's loop; returns when `stop` is set.
    pub fn run(mut self) {
        let mut batch = Vec::with_capacity(RX_BATCH as usize);
        let mut next_tick = Instant::now();
        let mut announced = false;
        let mut idle_spins: u32 = 0;
        let mut lro_buf = Vec::with_capacity(65_536 + 14);
        // Its own handle on the counters, so the batch loop can count while `ctx` is
        // lent to netisr (cloned once, not per iteration).
        let counters = self.ctx.counters.clone();
        while !self.stop.load(Ordering::Relaxed) {
            self.ctx.now = Instant::now();
            self.rx.receive(&mut batch, RX_BATCH);
            {
                let (id, rx, netisr, ctx) = (self.id, &self.rx, &self.netisr, &mut self.ctx);
                let counters = &*counters;
                let mut lro = LroBatch::new(&mut lro_buf);
                for d in &batch {
                    let Some((data, meta)) = rx.frame(d) else {
                        Counters::inc(&counters.ether_truncated);
                        continue;
                    };
                    Counters::inc(&counters.rx_frames);
                    let pkt = crate::mbuf::Pkt { data, meta };
                    match ether::classify(&self.ifp, ctx, data) {
                        Some(EtherProto::Arp) => {
                            netisr.dispatch(id, ctx, NETISR_ARP, pkt);
                        }
                        Some(EtherProto::Ipv4) => {
                            let kept = self.lro
                                && lro.offer(data, meta, counters, &mut |p| {
                                    netisr.dispatch(id, ctx, NETISR_IP, p);
                                });
                            if !kept {
                                netisr.dispatch(id, ctx, NETISR_IP, pkt);
                            }
                        }
                        None => {}
                    }
                }
                lro.flush(counters, &mut |p| {
                    netisr.dispatch(id, ctx, NETISR_IP, p);
                });
            }
            self.rx.recycle(&batch);
            let drained = self.netisr.drain(self.id, &mut self.ctx, NETISR_BUDGET);
            let mut heap = std::mem::take(&mut self.ctx.heap);
            let kicked = self
                .tcp
                .run_kicks(self.id, &self.ifp, &mut self.ctx, &mut heap);
            if heap.next().is_some_and(|t| t <= self.ctx.now) {
                self.tcp.run_timers(&self.ifp, &mut self.ctx, &mut heap);
            }
            self.ctx.heap = heap;

            // Worker 0 owns the interface-wide timers (ARP retries and expiry) and the
            // start-up announcement.
            if self.id == 0 && self.running.load(Ordering::Relaxed) {
                if !announced {
                    arp::announce(&self.ifp, &mut self.ctx);
                    announced = true;
                }
                if self.ctx.now >= next_tick {
                    arp::timer(&self.ifp, &mut self.ctx);
                    next_tick = self.ctx.now + TIMER_TICK;
                }
            }
            if self.ctx.tx.outstanding() > 0 {
                self.ctx.tx.flush();
            }
            let woken = self.ctx.heap.deliver_wakes();
            if woken > 0 && self.idle == IdleMode::Busy {
                // Let the threads we just woke run now if they share our CPU: they
                // consume what we received and produce the next thing to send. On a
                // dedicated core this is a cheap no-op.
                std::thread::yield_now();
            }
            if !batch.is_empty() || drained > 0 || kicked > 0 {
                idle_spins = 0;
                continue;
            }
            idle_spins = idle_spins.saturating_add(1);
            match self.idle {
                IdleMode::Busy => {
                    self.rx.wake_if_needed();
                    // Yield now and then: a no-op on a dedicated core, but it lets other
                    // workers or application threads pinned to this CPU run (they are
                    // what produces the next reply).
                    if self.shares_cpu || idle_spins % 16 == 0 {
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
                IdleMode::Sleep => {
                    // Spin briefly before sleeping: a reply often follows within
                    // microseconds, and a poll() round trip costs more than that.
                    if idle_spins < 64 {
                        std::hint::spin_loop();
                        continue;
                    }
                    self.sleep();
                }
            }
        }
        // Push out anything still queued (e.g. replies produced by the last batch).
        self.ctx.tx.flush();
    }

    fn sleep(&mut self) {
        if !self.netisr.prepare_sleep(self.id) {
            return;
        }
        // Pairs with the fence in `Netisr::notify`: a kick published before it is seen
        // here; one published after it finds us sleeping and writes the eventfd.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.tcp.pending_kicks(self.id) > 0 {
            self.netisr.woke(self.id);
            return;
        }
        let mut timeout = if self.id == 0 {
            TIMER_TICK
        } else {
            Duration::from_secs(1)
        };
        if let Some(t) = self.ctx.heap.next() {
            // Round up to the next millisecond: poll() cannot sleep less.
            timeout = timeout
                .min(t.saturating_duration_since(Instant::now()) + Duration::from_micros(999));
        }
        let mut fds = [
            libc::pollfd {
                fd: self.rx.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake_fd.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfds for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout.as_millis() as libc::c_int) };
        self.netisr.woke(self.id);
        if fds[1].revents & libc::POLLIN != 0 {
            let mut v = [0u8; 8];
            // SAFETY: reading 8 bytes from our eventfd into an 8-byte buffer.
            unsafe { libc::read(fds[1].fd, v.as_mut_ptr().cast(), 8) };
        }
    }
}

/// Wakes a worker sleeping in poll() through its eventfd.
pub(crate) fn wake(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writing 8 bytes to an eventfd we own.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}
