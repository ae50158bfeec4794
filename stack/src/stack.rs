//! A `Stack` is one instance of the network stack on one interface (FreeBSD's vnet):
//! the XDP program, one worker per receive queue, netisr and the protocol state. There
//! is no global state: two stacks can live in one process.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::device::gso::{self, GsoTx};
use crate::device::xsk::XskTx;
use crate::link::XskLinkRx;
use crate::pipeline::{LayerError, LayerSpec, Layers, WorkerCore, WorkerCtx};

use crate::device::xdp::{Mode, QueueStats, XdpSteer};
use crate::device::xsk::{self, XskConfig};
use crate::device::{self, Channels, DeviceError, LinkInfo, Offload, Offloads};
use crate::net::{ArpConfig, Interface, Ipv4Cidr};
use crate::netisr::Netisr;
use crate::ratelimit::RateLimits;
use crate::socket::NetStack;
use crate::stats::{self, Counters};
use crate::tcp::bounds::Gauge;
use crate::tcp::pcb::GroupStats;
use crate::tcp::syncache::SynCookies;
use crate::tcp::TcpConfig;
use crate::worker::{IdleMode, WakeFd, Worker};

/// How to bring a stack up.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// The interface to take over.
    pub iface: String,
    /// Addresses the stack owns.
    pub addrs: Vec<Ipv4Cidr>,
    /// Default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Use this many receive queues (shrinking the channel count); all when `None`.
    pub queues: Option<u32>,
    /// CPUs to pin workers to, round-robin; all allowed CPUs when `None`.
    pub cpus: Option<Vec<usize>>,
    /// XDP attach mode.
    pub xdp_mode: Mode,
    /// What idle workers do.
    pub idle: IdleMode,
    /// How long a worker may hold its transmit flush (a `sendto` on AF_XDP) while input
    /// keeps arriving, so that one call carries several turns' replies. A turn that
    /// receives nothing flushes, unless it holds only pure ACKs or input is dense (then
    /// up to 50 µs, bounded by the connections' round trips; see `pipeline.rs`,
    /// `tx_may_wait`). Zero: flush every turn.
    pub tx_coalesce: Duration,
    /// ARP timers and limits.
    pub arp: ArpConfig,
    /// Per-second limits on RSTs for closed ports, ICMP echo replies and ACKs for
    /// unacceptable segments (FreeBSD's `badport_bandlim`).
    pub rate_limits: RateLimits,
    /// UMEM and ring sizes per queue.
    pub xsk: XskConfig,
    /// netisr queue limit per protocol and worker.
    pub netisr_qlimit: usize,
    /// Settings for new TCP connections (the MSS is capped by the interface MTU).
    pub tcp: TcpConfig,
    /// The default congestion-control module (`--cc`); NewReno when `None`.
    pub default_cc: Option<String>,
    /// Offloads switched off even where the device has them (`--no-offload`).
    pub offloads_off: Vec<Offload>,
    /// Offloads that are off unless asked for (`--offload`): `syncookie`, SYNs answered
    /// in the XDP program.
    pub offloads_on: Vec<Offload>,
}

impl StackConfig {
    /// A configuration with defaults for everything but the interface and addresses.
    pub fn new(iface: &str, addrs: Vec<Ipv4Cidr>) -> Self {
        StackConfig {
            iface: iface.to_string(),
            addrs,
            gateway: None,
            queues: None,
            cpus: None,
            xdp_mode: Mode::Native,
            idle: IdleMode::Busy,
            tx_coalesce: Duration::from_micros(10),
            arp: ArpConfig::default(),
            rate_limits: RateLimits::default(),
            xsk: XskConfig::default(),
            netisr_qlimit: 1024,
            tcp: TcpConfig::default(),
            default_cc: None,
            offloads_off: Vec::new(),
            offloads_on: Vec::new(),
        }
    }
}

/// The largest TSO segment's payload: 65,535 bytes less 20 of IPv4 and 60 of TCP header.
const TSO_MAX: usize = 65_535 - 20 - 60;

/// A running stack.
pub struct Stack {
    link: LinkInfo,
    config: StackConfig,
    // Declared before the workers' handles: on drop the program is detached first.
    xdp: XdpSteer,
    netisr: Arc<Netisr<WorkerCtx<XskTx>>>,
    counters: Vec<Arc<Counters>>,
    stop: Arc<AtomicBool>,
    wake_fds: Vec<Arc<WakeFd>>,
    workers: Vec<JoinHandle<()>>,
    restore_channels: RestoreChannels,
    net: NetStack,
    /// The AF_XDP sockets' fds, per queue (for their kernel counters).
    xsk_fds: Vec<std::os::fd::RawFd>,
    offloads: Offloads,
    /// The CPU each worker is pinned to.
    worker_cpus: Vec<usize>,
}

/// Errors from [`Stack::start`].
pub type StartError = DeviceError;

/// What a worker thread reports once its socket is open: the socket's fd and whether
/// it got TX metadata (checksum offload).
type WorkerReady = mpsc::Receiver<Result<WorkerOpened, DeviceError>>;

/// What a worker got when it opened its sockets.
struct WorkerOpened {
    /// The AF_XDP socket.
    fd: std::os::fd::RawFd,
    /// TX metadata, so checksums are left to the device.
    tx_csum: bool,
    /// A packet socket for the kernel to segment large frames (`device/gso.rs`).
    gso: bool,
}

impl Stack {
    /// Brings the stack up on `config.iface`: checks privileges and addresses, sizes
    /// the queues, loads the XDP program, builds the layers (`Layers::build`, as the
    /// simulator does), opens one AF_XDP socket per queue on a pinned worker each, and
    /// attaches the program.
    pub fn start(config: StackConfig) -> Result<Stack, StartError> {
        let (link, restore) = prepare_link(&config)?;
        let cpus = pick_cpus(config.cpus.as_deref())?;
        let owned: Vec<Ipv4Addr> = config.addrs.iter().map(|c| c.addr).collect();
        let xdp = XdpSteer::load(&link.name, &owned)?;
        let nworkers = link.rx_queues as usize;
        let on = |o: Offload| !config.offloads_off.contains(&o);
        let offloads = Offloads {
            tso: on(Offload::Tso),
            tso_max: if on(Offload::Tso) { TSO_MAX as u32 } else { 0 },
            // The kernel segments for the stack where it would for its own TCP: with
            // generic segmentation offload on. Settled in `await_sockets`.
            tso_kernel: on(Offload::Tso) && gso::kernel_gso_on(&link.name).unwrap_or(false),
            lro: on(Offload::Lro),
            // Settled once every worker's socket is open (`await_sockets`).
            tx_csum: false,
            ..Offloads::default()
        };
        let layers = Layers::<XskTx>::build(LayerSpec {
            ifp: Interface::new(
                link.mac,
                link.mtu,
                config.addrs.clone(),
                config.gateway,
                config.arp,
            )
            .with_limits(config.rate_limits),
            nworkers,
            tcp: tcp_config(&config, &link, offloads.tso),
            default_cc: config.default_cc.clone(),
            qlimit: config.netisr_qlimit,
            clock: Clock::Real,
            isn: None,
            port_key: None,
        })
        .map_err(|e| match e {
            LayerError::Cc(e) => DeviceError::UnknownCc(e),
            LayerError::Netisr(e) => DeviceError::Netisr(e),
        })?;

        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicBool::new(false));
        let mut stack = Stack {
            link,
            config,
            xdp,
            netisr: layers.netisr.clone(),
            counters: Vec::new(),
            stop: stop.clone(),
            wake_fds: Vec::new(),
            workers: Vec::new(),
            restore_channels: restore,
            net: NetStack {
                tcp: layers.tcp.clone(),
                ifp: layers.ifp.clone(),
            },
            xsk_fds: Vec::new(),
            offloads,
            worker_cpus: (0..nworkers).map(|q| cpus[q % cpus.len()]).collect(),
        };
        // On error from here on, dropping `stack` stops the workers and restores the
        // channels.
        let mut ready = Vec::new();
        for q in 0..nworkers {
            ready.push(stack.spawn_worker(q, &layers, &running)?);
        }
        stack.await_sockets(ready)?;
        stack
            .xdp
            .attach(stack.link.ifindex, stack.config.xdp_mode)?;
        let cookies_on = layers.tcp.conn_config().syncookies != SynCookies::Off;
        let want = stack.config.offloads_on.contains(&Offload::SynCookie)
            && !stack.config.offloads_off.contains(&Offload::SynCookie);
        if want && cookies_on {
            // Without tcx links (or with a program the kernel refuses) the stack answers
            // SYNs itself, as before: not a reason to refuse to start.
            if let Ok(map) = stack.xdp.enable_syn_cookies(layers.tcp.cookies.export()) {
                layers.tcp.set_syn_offload(map);
                stack.offloads.syn_cookies = true;
            }
        }
        running.store(true, Ordering::Relaxed);
        Ok(stack)
    }

    /// Starts worker `q` on its CPU: it opens the queue's AF_XDP socket, reports on the
    /// returned channel, then runs the data path until the stack stops.
    fn spawn_worker(
        &mut self,
        q: usize,
        layers: &Layers<XskTx>,
        running: &Arc<AtomicBool>,
    ) -> Result<WorkerReady, DeviceError> {
        let counters = Arc::new(Counters::default());
        self.counters.push(counters.clone());
        let wake_fd = Arc::new(WakeFd::new().map_err(DeviceError::Eventfd)?);
        self.wake_fds.push(wake_fd.clone());
        let wf = wake_fd.clone();
        layers.netisr.set_waker(q, Arc::new(move || wf.wake()));

        let (tx, rx) = mpsc::channel();
        let cpu = self.worker_cpus[q];
        let shares_cpu = self.worker_cpus.iter().filter(|&&c| c == cpu).count() > 1;
        let ifname = self.link.name.clone();
        let (ifindex, want_gso) = (self.link.ifindex, self.offloads.tso_kernel);
        let xsk_cfg = XskConfig {
            tx_metadata: self.config.xsk.tx_metadata
                && !self.config.offloads_off.contains(&Offload::TxCsum),
            ..self.config.xsk
        };
        let (layers, stop, running) = (layers.clone(), self.stop.clone(), running.clone());
        let tx_coalesce = self.config.tx_coalesce;
        let (idle, lro) = (self.config.idle, self.offloads.lro);
        let handle = std::thread::Builder::new()
            .name(format!("xstack-q{q}"))
            .spawn(move || {
                if let Err(e) = pin_to_cpu(cpu) {
                    let _ = tx.send(Err(e));
                    return;
                }
                let (xrx, mut xtx) = match xsk::open(&ifname, q as u32, xsk_cfg) {
                    Ok(halves) => halves,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                // Without the packet socket TSO segments are cut in software, as before.
                let gso = want_gso
                    && match GsoTx::open(ifindex, counters.clone()) {
                        Ok(g) => {
                            xtx.enable_gso(g);
                            true
                        }
                        Err(_) => false,
                    };
                let _ = tx.send(Ok(WorkerOpened {
                    fd: xrx.fd(),
                    tx_csum: xtx.tx_csum(),
                    gso,
                }));
                let rx = XskLinkRx::new(xrx);
                let mut core = WorkerCore::new(q, layers, rx, xtx, counters, lro, Instant::now());
                core.tx_coalesce = tx_coalesce;
                Worker {
                    core,
                    stop,
                    running,
                    idle,
                    shares_cpu,
                    wake_fd,
                }
                .run()
            })
            .map_err(|source| DeviceError::SpawnWorker { worker: q, source })?;
        self.workers.push(handle);
        Ok(rx)
    }

    /// Waits for every worker's socket, registers it with the XDP program, and settles
    /// whether transmit checksums are offloaded (only when every queue got TX metadata).
    fn await_sockets(&mut self, ready: Vec<WorkerReady>) -> Result<(), DeviceError> {
        let (mut tx_csum_all, mut gso_all) = (true, true);
        for (q, r) in ready.into_iter().enumerate() {
            let opened = match r.recv() {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(DeviceError::WorkerDied(q)),
            };
            tx_csum_all &= opened.tx_csum;
            gso_all &= opened.gso;
            self.xdp.register_socket(q as u32, opened.fd)?;
            self.xsk_fds.push(opened.fd);
        }
        self.offloads.tx_csum = tx_csum_all;
        self.offloads.tso_kernel &= gso_all;
        Ok(())
    }

    /// What the device does for the stack (after `--no-offload`).
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// The interface as the stack found it.
    pub fn link(&self) -> &LinkInfo {
        &self.link
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    /// What the socket API needs: `TcpListener::bind(&stack, ...)` works because a
    /// `Stack` is `AsRef<NetStack>`.
    pub fn net(&self) -> &NetStack {
        &self.net
    }

    /// The CPU worker `w` is pinned to.
    pub fn worker_cpu(&self, w: usize) -> Option<usize> {
        self.worker_cpus.get(w).copied()
    }

    /// True while every worker thread is alive.
    pub fn healthy(&self) -> bool {
        self.workers.iter().all(|w| !w.is_finished())
    }

    /// A snapshot of every counter.
    pub fn snapshot(&self) -> Snapshot {
        let xdp = self.xdp.queue_stats(self.link.rx_queues);
        let queues = self
            .counters
            .iter()
            .enumerate()
            .map(|(q, c)| QueueSnapshot {
                queue: q as u32,
                xdp: xdp.get(q).copied().unwrap_or_default(),
                rx_frames: c.rx_frames.load(Ordering::Relaxed),
                tx_frames: c.tx_frames.load(Ordering::Relaxed),
                xsk: self
                    .xsk_fds
                    .get(q)
                    .and_then(|&fd| xsk::read_stats(fd))
                    .unwrap_or_default(),
            })
            .collect();
        let netisr = self.netisr.stats();
        let groups = self.net.tcp.pcbs.group_stats();
        let workers = worker_snapshots(&self.counters, &self.worker_cpus, &netisr, &groups);
        let mut counters = stats::sum(self.counters.iter().map(|c| &**c));
        counters.extend(self.net.tcp.bounds().counters().snapshot());
        Snapshot {
            queues,
            counters,
            netisr,
            workers,
            groups,
        }
    }

    /// Counters plus TCP state as JSON (`GET /stats`).
    pub fn stats_json(&self) -> serde_json::Value {
        let mut v = self.snapshot().to_json();
        let tcp = &self.net.tcp;
        let states: serde_json::Map<String, serde_json::Value> = tcp
            .pcbs
            .states()
            .into_iter()
            .map(|(k, n)| (k.to_string(), n.into()))
            .collect();
        let bounds = tcp.bounds();
        v["tcp"] = serde_json::json!({
            "connections": tcp.pcbs.len(),
            "states": states,
            "orphans": bounds.load(Gauge::Orphans),
            "time_wait_held": bounds.load(Gauge::TimeWait),
            "sack_ranges": bounds.load(Gauge::SackHoles),
            "cc_available": tcp.cc.available(),
            "cc_default": tcp.cc.default_name(),
        });
        v["arp"] = serde_json::json!({ "entries": self.net.ifp.arp.len() });
        v["offloads"] = serde_json::to_value(self.offloads).unwrap_or_default();
        v
    }

    /// Detaches the XDP program, stops the workers and restores the channel count.
    /// Returns the final counters.
    pub fn stop(mut self) -> Snapshot {
        // Read the XDP counters while the program is still loaded.
        let snap = self.snapshot();
        self.shutdown();
        snap
    }

    fn shutdown(&mut self) {
        self.xdp.detach();
        self.stop.store(true, Ordering::Relaxed);
        for fd in &self.wake_fds {
            fd.wake();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.restore_channels.restore();
    }
}

impl AsRef<NetStack> for Stack {
    fn as_ref(&self) -> &NetStack {
        &self.net
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Checks privileges and addresses, reads the interface and sizes its queues. The
/// returned guard puts the channel count back when dropped.
fn prepare_link(config: &StackConfig) -> Result<(LinkInfo, RestoreChannels), DeviceError> {
    device::check_privileges()?;
    if config.addrs.is_empty() {
        return Err(DeviceError::NoAddress);
    }
    let mut link = LinkInfo::query(&config.iface)?;
    let owned: Vec<Ipv4Addr> = config.addrs.iter().map(|c| c.addr).collect();
    device::check_addresses_free(&owned)?;
    if link.rx_queues > crate::device::xdp::MAX_QUEUES {
        return Err(DeviceError::Queues(format!(
            "{} has {} rx queues; use --queues N (at most {})",
            link.name,
            link.rx_queues,
            crate::device::xdp::MAX_QUEUES
        )));
    }
    let restore_channels = match config.queues {
        Some(n) => device::use_queues(&mut link, n)?,
        None => None,
    };
    let restore = RestoreChannels(link.name.clone(), restore_channels);
    Ok((link, restore))
}

/// The settings for new connections on this link: the configured ones with the MSS the
/// MTU allows and the TSO limit.
fn tcp_config(config: &StackConfig, link: &LinkInfo, tso: bool) -> TcpConfig {
    let mut tcp = config.tcp.clone();
    // RFC 9293 §3.7.1: the MSS we announce is the MTU less the IP and TCP headers
    // (capped by the UMEM frame, which must hold a whole Ethernet frame after the TX
    // metadata).
    let frame_room = (config.xsk.frame_size as usize).saturating_sub(14 + 40 + 24);
    tcp.mss = link.mtu.saturating_sub(40).min(frame_room).min(65535) as u16;
    // Software TSO: tcp_output hands over up to 64 KB (an IPv4 datagram's limit, less
    // the largest headers) and the device layer cuts it into MSS pieces.
    tcp.tso_max = if tso { TSO_MAX } else { 0 };
    tcp
}

/// Puts an interface's channel count back as it was (`ethtool -L`), once.
struct RestoreChannels(String, Option<Channels>);

impl RestoreChannels {
    fn restore(&mut self) {
        if let Some(ch) = self.1.take() {
            if let Err(e) = device::set_channels(&self.0, ch) {
                eprintln!(
                    "xstack: warning: could not restore the channel count of {}: {e}",
                    self.0
                );
            }
        }
    }
}

impl Drop for RestoreChannels {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Counters of one queue.
#[derive(Clone, Debug)]
pub struct QueueSnapshot {
    /// The queue (= worker) index.
    pub queue: u32,
    /// The XDP program's counters for it.
    pub xdp: QueueStats,
    /// Frames the worker took off the rx ring.
    pub rx_frames: u64,
    /// Frames the worker sent.
    pub tx_frames: u64,
    /// The kernel's counters for the queue's AF_XDP socket.
    pub xsk: xsk::XskStats,
}

/// Every counter of a stack at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Per queue.
    pub queues: Vec<QueueSnapshot>,
    /// Named protocol counters summed over workers.
    pub counters: Vec<(&'static str, u64)>,
    /// netisr's per-protocol, per-worker counters.
    pub netisr: crate::netisr::NetisrStats,
    /// Per worker: its CPU, connections, packets, handoffs, qdrops.
    pub workers: Vec<WorkerSnapshot>,
    /// Per pcbgroup (all of them; the JSON keeps only the non-empty ones).
    pub groups: Vec<GroupStats>,
}

/// One worker's share of the work.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkerSnapshot {
    /// Worker (= queue) index.
    pub worker: usize,
    /// The CPU it is pinned to.
    pub cpu: usize,
    /// Connections in the groups it owns.
    pub connections: usize,
    /// Frames it took off its queue's rx ring.
    pub rx_frames: u64,
    /// Packets it processed through netisr: dispatched directly plus handled from its
    /// queues (every protocol).
    pub packets: u64,
    /// Packets other workers received and handed to it (queued on its netisr queues).
    pub handoffs_in: u64,
    /// Packets it received and handed towards another worker (queued there, or a qdrop
    /// there).
    pub handoffs_out: u64,
    /// Packets handed to it that its full queues refused.
    pub qdrops: u64,
}

/// Per-worker figures out of the per-queue counters, netisr's workstreams and the groups
/// each worker owns.
fn worker_snapshots(
    counters: &[Arc<Counters>],
    cpus: &[usize],
    netisr: &crate::netisr::NetisrStats,
    groups: &[GroupStats],
) -> Vec<WorkerSnapshot> {
    netisr
        .workstreams
        .iter()
        .map(|ws| {
            let w = ws.worker;
            let sum = |f: fn(&crate::netisr::WorkStats) -> u64| ws.protos.iter().map(f).sum();
            WorkerSnapshot {
                worker: w,
                cpu: cpus.get(w).copied().unwrap_or_default(),
                connections: groups
                    .iter()
                    .filter(|g| g.worker == w)
                    .map(|g| g.connections)
                    .sum(),
                rx_frames: counters
                    .get(w)
                    .map_or(0, |c| c.rx_frames.load(Ordering::Relaxed)),
                packets: sum(|p| p.dispatched + p.handled),
                handoffs_in: sum(|p| p.queued),
                handoffs_out: sum(|p| p.handed_off),
                qdrops: sum(|p| p.qdrops),
            }
        })
        .collect()
}

impl Snapshot {
    /// The value of a named counter.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// As one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let queues: Vec<Value> = self
            .queues
            .iter()
            .map(|q| {
                json!({
                    "queue": q.queue,
                    "xdp_redirected": q.xdp.redirected,
                    "xdp_passed": q.xdp.passed,
                    "xdp_no_socket": q.xdp.no_socket,
                    "xdp_syn_answered": q.xdp.syn_answered,
                    "rx_frames": q.rx_frames,
                    "tx_frames": q.tx_frames,
                    "xsk_rx_dropped": q.xsk.rx_dropped,
                    "xsk_rx_ring_full": q.xsk.rx_ring_full,
                    "xsk_fill_ring_empty": q.xsk.rx_fill_ring_empty_descs,
                    "xsk_tx_invalid": q.xsk.tx_invalid_descs,
                })
            })
            .collect();
        let mut counters = Map::new();
        for (n, v) in &self.counters {
            counters.insert(n.to_string(), json!(v));
        }
        let n = &self.netisr;
        let protos: Vec<Value> = n
            .protos
            .iter()
            .map(|p| {
                json!({
                    "proto": p.proto, "name": p.name, "policy": format!("{:?}", p.policy),
                    "qlimit": p.qlimit, "dispatched": p.dispatched, "queued": p.queued,
                    "handled": p.handled, "qdrops": p.qdrops, "handed_off": p.handed_off,
                })
            })
            .collect();
        let workstreams: Vec<Value> = n
            .workstreams
            .iter()
            .map(|w| {
                json!({
                    "worker": w.worker,
                    "unknown_proto": w.unknown_proto,
                    "bad_target": w.bad_target,
                    "protos": w.protos.iter().map(|p| json!({
                        "name": p.name, "qlen": p.qlen, "dispatched": p.dispatched,
                        "queued": p.queued, "handled": p.handled, "qdrops": p.qdrops,
                        "handed_off": p.handed_off,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        // Compact: only groups that saw a connection or a packet.
        let groups: Vec<&GroupStats> = self.groups.iter().filter(|g| !g.is_empty()).collect();
        json!({
            "queues": queues,
            "counters": Value::Object(counters),
            "netisr": { "protos": protos, "workstreams": workstreams, "bad_worker": n.bad_worker },
            "workers": self.workers,
            "ngroups": self.groups.len(),
            "groups": groups,
        })
    }
}

/// The CPUs workers are pinned to, round-robin: the given list (each must be allowed)
/// or every CPU this process may run on.
fn pick_cpus(list: Option<&[usize]>) -> Result<Vec<usize>, DeviceError> {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    let allowed = sched_getaffinity(Pid::from_raw(0)).map_err(DeviceError::CpuAffinity)?;
    let allowed: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect();
    match list {
        None => Ok(allowed),
        Some([]) => Err(DeviceError::CpusEmpty),
        Some(list) => {
            for c in list {
                if !allowed.contains(c) {
                    return Err(DeviceError::CpuNotAllowed { cpu: *c, allowed });
                }
            }
            Ok(list.to_vec())
        }
    }
}

fn pin_to_cpu(cpu: usize) -> Result<(), DeviceError> {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    set.set(cpu)
        .map_err(|source| DeviceError::CpuOutOfRange { cpu, source })?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|source| DeviceError::Pin { cpu, source })
}

/// The process's heap as the allocator sees it (glibc's `mallinfo2`): bytes in use by
/// live allocations, and free bytes it holds without giving them back. Resident memory
/// is roughly the sum plus code and stacks. Empty where the allocator cannot say.
///
/// Not cheap: glibc walks every free chunk of every arena under the arena's lock, so a
/// worker that allocates meanwhile waits (with a large fragmented heap, long enough for
/// its receive ring to overflow). Ask for it now and then, not in a polling loop.
pub fn heap_json() -> serde_json::Value {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 has no preconditions; it takes the heaps' locks.
        let m = unsafe { libc::mallinfo2() };
        serde_json::json!({
            "heap_in_use": m.uordblks + m.hblkhd,
            "heap_free_held": m.fordblks,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    serde_json::json!({})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netisr::{NetisrStats, WorkStats, WorkstreamStats};

    #[test]
    fn per_worker_figures_add_up_to_the_totals() {
        let ws = |worker, ip: (u64, u64, u64, u64, u64), arp_dispatched| WorkstreamStats {
            worker,
            protos: vec![
                WorkStats {
                    name: "ip",
                    dispatched: ip.0,
                    queued: ip.1,
                    handled: ip.2,
                    qdrops: ip.3,
                    handed_off: ip.4,
                    ..Default::default()
                },
                WorkStats {
                    name: "arp",
                    dispatched: arp_dispatched,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        // Worker 0 handed 7 to worker 1 (5 queued, 2 dropped); worker 1 handed 3 to 0.
        let netisr = NetisrStats {
            workstreams: vec![ws(0, (10, 3, 3, 0, 7), 2), ws(1, (20, 5, 5, 2, 3), 0)],
            ..Default::default()
        };
        let group = |group, worker, connections| GroupStats {
            group,
            worker,
            connections,
            ..Default::default()
        };
        let groups = [
            group(0, 0, 4),
            group(1, 1, 1),
            group(2, 0, 2),
            group(3, 1, 0),
        ];
        let counters: Vec<Arc<Counters>> = (0..2).map(|_| Arc::default()).collect();
        counters[0].rx_frames.store(22, Ordering::Relaxed);
        counters[1].rx_frames.store(23, Ordering::Relaxed);
        let w = worker_snapshots(&counters, &[1, 0], &netisr, &groups);
        assert_eq!(
            w.iter()
                .map(|w| (w.worker, w.cpu, w.connections, w.rx_frames, w.packets))
                .collect::<Vec<_>>(),
            [(0, 1, 6, 22, 15), (1, 0, 1, 23, 25)]
        );
        let sum = |f: fn(&WorkerSnapshot) -> u64| w.iter().map(f).sum::<u64>();
        assert_eq!(sum(|w| w.handoffs_out), 10);
        assert_eq!(sum(|w| w.handoffs_in) + sum(|w| w.qdrops), 10);
        assert_eq!(sum(|w| w.connections as u64), 7);
    }
}
