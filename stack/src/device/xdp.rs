//! The XDP steering program (`ebpf/xdp_steer.c`): loading, filling its maps, attaching,
//! reading its counters and detaching.
//!
//! The program is attached through a BPF link where the kernel has them (5.9+), so the
//! kernel itself detaches it when the last link fd closes: if the process dies for any
//! reason -- panic, error exit, SIGKILL -- no XDP program is left on the interface.
//! `Drop` detaches explicitly as well.

use std::net::Ipv4Addr;
use std::os::fd::RawFd;

use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, XskMap};
use aya::programs::tc::{SchedClassifierLinkId, TcAttachOptions};
use aya::programs::{LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode};
use aya::Ebpf;

use crate::tcp::syncache::{CookieParams, SynOffload, SynTemplate};

use super::{BpfError, DeviceError};

/// The compiled steering program, committed beside its source and rebuilt by
/// `cargo xtask build-ebpf`.
pub static XDP_STEER_OBJ: &[u8] = include_bytes!("../../../ebpf/xdp_steer.o");

const PROG_NAME: &str = "xstack_steer";
/// The tc ingress program that sends the XDP program's SYN,ACKs back out.
const TC_PROG_NAME: &str = "xstack_synack_out";
/// Must match MAX_QUEUES in the C program.
pub const MAX_QUEUES: u32 = 64;

/// `struct queue_stats` of the C program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Frames redirected to this queue's AF_XDP socket.
    pub redirected: u64,
    /// Frames that were not the stack's, passed to the kernel.
    pub passed: u64,
    /// The stack's frames on a queue without a socket, passed to the kernel.
    pub no_socket: u64,
    /// SYNs answered in the program with a cookie SYN,ACK (never reach the stack).
    pub syn_answered: u64,
}

/// `struct syn_listen_key`: a listening address, in network byte order (0.0.0.0 for a
/// wildcard).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SynListenKey {
    addr: u32,
    port: u16,
    pad: u16,
}

/// `struct syn_listen`: what the listener's SYN,ACKs carry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SynListen {
    mss: u16,
    window: u16,
    wscale: u8,
    flags: u8,
    pad: u16,
}

const SYN_SACK: u8 = 1;
const SYN_ECN: u8 = 2;

/// `struct syn_config`: the stack's cookie key and time base.
#[repr(C)]
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct SynConfig {
    k0: u64,
    k1: u64,
    epoch_ns: u64,
    ts_off: u32,
    enabled: u32,
}

// SAFETY: repr(C) structs of integers laid out without padding (checked by the sizes
// the C program's maps declare at load): every bit pattern is valid.
unsafe impl aya::Pod for SynListenKey {}
unsafe impl aya::Pod for SynListen {}
unsafe impl aya::Pod for SynConfig {}

/// The XDP program's listener map, as the TCP layer's [`SynOffload`]: the layer
/// publishes every listener and what its SYN,ACKs carry.
pub struct SynListenMap {
    map: Mutex<BpfHashMap<MapData, SynListenKey, SynListen>>,
}

impl std::fmt::Debug for SynListenMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SynListenMap").finish_non_exhaustive()
    }
}

impl SynOffload for SynListenMap {
    fn publish(&self, local: SocketAddrV4, t: Option<SynTemplate>) {
        let key = SynListenKey {
            addr: u32::from_ne_bytes(local.ip().octets()),
            port: local.port().to_be(),
            pad: 0,
        };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        // A failed update leaves SYNs to the stack (the map is full: 1,024 listening
        // addresses), which answers them itself.
        let _ = match t {
            Some(t) => map.insert(
                key,
                SynListen {
                    mss: t.mss,
                    window: t.window,
                    wscale: t.wscale,
                    flags: if t.sack { SYN_SACK } else { 0 } | if t.ecn { SYN_ECN } else { 0 },
                    pad: 0,
                },
                0,
            ),
            None => map.remove(&key),
        };
    }
}

// SAFETY: QueueStats is repr(C), all fields are u64: every bit pattern is valid and
// there is no padding.
unsafe impl aya::Pod for QueueStats {}

/// Which XDP attach mode to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`).
    #[default]
    Native,
    /// In the kernel's generic path (`XDP_FLAGS_SKB_MODE`), for drivers without XDP.
    Generic,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "native" | "drv" => Ok(Mode::Native),
            "generic" | "skb" => Ok(Mode::Generic),
            _ => Err(format!(
                "unknown XDP mode '{s}' (expected native or generic)"
            )),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Native => "native",
            Mode::Generic => "generic",
        })
    }
}

/// The loaded steering program and its maps.
pub struct XdpSteer {
    ebpf: Ebpf,
    xsks: XskMap<MapData>,
    stats: PerCpuArray<MapData, QueueStats>,
    attached: Option<aya::programs::xdp::XdpLinkId>,
    /// The tc program's link, while SYNs are answered in the program.
    tc_attached: Option<SchedClassifierLinkId>,
    iface: String,
}

impl std::fmt::Debug for XdpSteer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpSteer")
            .field("iface", &self.iface)
            .field("attached", &self.attached.is_some())
            .finish()
    }
}

/// A failed aya call as [`DeviceError::Permission`] when the kernel said EPERM, else as
/// [`DeviceError::Bpf`] with the aya error as its source.
fn bpf_err(what: &str, e: impl Into<BpfError>) -> DeviceError {
    let e = e.into();
    let msg = e.to_string();
    if msg.contains("Operation not permitted")
        || msg.contains("EPERM")
        || msg.contains("os error 1)")
    {
        DeviceError::Permission(format!("{what}: {msg}"))
    } else {
        DeviceError::Bpf {
            what: what.to_string(),
            source: Box::new(e),
        }
    }
}

fn lacks(item: String) -> DeviceError {
    DeviceError::BpfObjectIncomplete {
        object: "XDP",
        item,
    }
}

impl XdpSteer {
    /// Loads the program into the kernel (not attached yet) and records `addrs` as the
    /// stack's.
    pub fn load(iface: &str, addrs: &[Ipv4Addr]) -> Result<XdpSteer, DeviceError> {
        let mut ebpf =
            Ebpf::load(XDP_STEER_OBJ).map_err(|e| bpf_err("loading the XDP program", e))?;
        let mut owned: BpfHashMap<_, u32, u8> = BpfHashMap::try_from(
            ebpf.map_mut("owned_addrs")
                .ok_or_else(|| lacks("map owned_addrs".into()))?,
        )
        .map_err(|e| bpf_err("owned_addrs map", e))?;
        for a in addrs {
            // The program compares against the header field, which is network order.
            let key = u32::from_ne_bytes(a.octets());
            owned
                .insert(key, 1, 0)
                .map_err(|e| bpf_err("filling owned_addrs", e))?;
        }
        let xsks = XskMap::try_from(
            ebpf.take_map("xsks")
                .ok_or_else(|| lacks("map xsks".into()))?,
        )
        .map_err(|e| bpf_err("xsks map", e))?;
        let stats = PerCpuArray::try_from(
            ebpf.take_map("queue_stats")
                .ok_or_else(|| lacks("map queue_stats".into()))?,
        )
        .map_err(|e| bpf_err("queue_stats map", e))?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROG_NAME)
            .ok_or_else(|| lacks(format!("program {PROG_NAME}")))?
            .try_into()
            .map_err(|e| bpf_err("XDP program type", e))?;
        prog.load()
            .map_err(|e| bpf_err("loading the XDP program", e))?;
        Ok(XdpSteer {
            ebpf,
            xsks,
            stats,
            attached: None,
            tc_attached: None,
            iface: iface.to_string(),
        })
    }

    /// Answers SYNs in the program from now on, with the stack's cookies (`params`):
    /// attaches the tc ingress program that sends the SYN,ACKs out (a BPF link, so the
    /// kernel detaches it with the process, as the XDP program) and arms the program.
    /// Returns the listener map the TCP layer publishes its listeners to. Fails on a
    /// kernel without tcx links (before 6.6), leaving SYNs to the stack.
    pub fn enable_syn_cookies(
        &mut self,
        params: CookieParams,
    ) -> Result<Arc<SynListenMap>, DeviceError> {
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(TC_PROG_NAME)
            .ok_or_else(|| lacks(format!("program {TC_PROG_NAME}")))?
            .try_into()
            .map_err(|e| bpf_err("tc program type", e))?;
        prog.load()
            .map_err(|e| bpf_err("loading the tc program", e))?;
        let link = prog
            .attach_with_options(
                &self.iface,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(|e| bpf_err("attaching the tc program (tcx, Linux 6.6+)", e))?;
        self.tc_attached = Some(link);
        let listen = BpfHashMap::try_from(
            self.ebpf
                .take_map("syn_listen")
                .ok_or_else(|| lacks("map syn_listen".into()))?,
        )
        .map_err(|e| bpf_err("syn_listen map", e))?;
        let mut config: Array<_, SynConfig> = Array::try_from(
            self.ebpf
                .map_mut("syn_config")
                .ok_or_else(|| lacks("map syn_config".into()))?,
        )
        .map_err(|e| bpf_err("syn_config map", e))?;
        let mut r = [0u8; 4];
        let _ = getrandom::fill(&mut r);
        config
            .set(
                0,
                SynConfig {
                    k0: params.k0,
                    k1: params.k1,
                    epoch_ns: params.epoch_ns,
                    ts_off: u32::from_ne_bytes(r),
                    enabled: 1,
                },
                0,
            )
            .map_err(|e| bpf_err("filling syn_config", e))?;
        Ok(Arc::new(SynListenMap {
            map: Mutex::new(listen),
        }))
    }

    /// Points queue `queue`'s redirect slot at an AF_XDP socket.
    pub fn register_socket(&mut self, queue: u32, fd: RawFd) -> Result<(), DeviceError> {
        if queue >= MAX_QUEUES {
            return Err(DeviceError::Queues(format!(
                "queue {queue} beyond the XDP program's {MAX_QUEUES}"
            )));
        }
        // SAFETY: the fd is a live AF_XDP socket owned by a worker that outlives the
        // program's attachment (workers stop after detach).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        self.xsks
            .set(queue, fd, 0)
            .map_err(|e| bpf_err("registering an AF_XDP socket in xsks", e))
    }

    /// Attaches the program to the interface.
    pub fn attach(&mut self, ifindex: u32, mode: Mode) -> Result<(), DeviceError> {
        let iface = self.iface.clone();
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(PROG_NAME)
            .ok_or_else(|| lacks(format!("program {PROG_NAME}")))?
            .try_into()
            .map_err(|e| bpf_err("XDP program type", e))?;
        let aya_mode = match mode {
            Mode::Native => XdpMode::Driver,
            Mode::Generic => XdpMode::Skb,
        };
        match prog.attach_to_if_index(ifindex, aya_mode) {
            Ok(id) => {
                self.attached = Some(id);
                Ok(())
            }
            Err(e) => Err(classify_attach_error(&iface, mode, e)),
        }
    }

    /// Detaches the program (idempotent).
    pub fn detach(&mut self) {
        if let Some(id) = self.attached.take() {
            if let Some(Ok(prog)) = self.ebpf.program_mut(PROG_NAME).map(<&mut Xdp>::try_from) {
                let _ = prog.detach(id);
            }
        }
        // Then the tc program: no SYN,ACK is made any more.
        if let Some(id) = self.tc_attached.take() {
            if let Some(Ok(prog)) = self
                .ebpf
                .program_mut(TC_PROG_NAME)
                .map(<&mut SchedClassifier>::try_from)
            {
                let _ = prog.detach(id);
            }
        }
    }

    /// Per-queue counters, summed over CPUs, for queues `0..n`.
    pub fn queue_stats(&self, n: u32) -> Vec<QueueStats> {
        (0..n.min(MAX_QUEUES))
            .map(|q| match self.stats.get(&q, 0) {
                Ok(per_cpu) => per_cpu
                    .iter()
                    .fold(QueueStats::default(), |a, s| QueueStats {
                        redirected: a.redirected + s.redirected,
                        passed: a.passed + s.passed,
                        no_socket: a.no_socket + s.no_socket,
                        syn_answered: a.syn_answered + s.syn_answered,
                    }),
                Err(_) => QueueStats::default(),
            })
            .collect()
    }
}

impl Drop for XdpSteer {
    fn drop(&mut self) {
        self.detach();
    }
}

fn classify_attach_error(iface: &str, mode: Mode, e: ProgramError) -> DeviceError {
    let (text, detail) = match &e {
        ProgramError::SyscallError(s) => (
            format!("{}: {}", s.call, s.io_error),
            s.io_error.raw_os_error(),
        ),
        _ => (format!("{e}"), None),
    };
    match detail {
        Some(libc::EBUSY) | Some(libc::EEXIST) => DeviceError::XdpBusy(iface.to_string()),
        Some(libc::EPERM) | Some(libc::EACCES) => DeviceError::Permission(format!("attaching XDP to {iface}: {text}")),
        // veth refuses native XDP when it has fewer rx queues than its peer has tx
        // queues (the veth driver: "XDP expects number of rx queues not less than
        // peer tx queues").
        Some(libc::ENOSPC) => DeviceError::Queues(format!(
            "{iface} refuses {mode} XDP: it has fewer rx queues than its peer has tx queues (veth); \
             shrink the peer too (ethtool -L PEER tx N) or use --xdp-mode generic"
        )),
        Some(libc::EOPNOTSUPP) => DeviceError::XdpUnsupported {
            iface: iface.to_string(),
            mode,
            source: Box::new(e),
        },
        _ if text.contains("busy") || text.contains("exists") => DeviceError::XdpBusy(iface.to_string()),
        _ => DeviceError::XdpAttach {
            iface: iface.to_string(),
            mode,
            source: Box::new(e),
        },
    }
}
