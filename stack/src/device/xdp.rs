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

// SAFETY: repr(C), integers only, no padding (8 bytes: 4+2+2): every bit pattern is
// valid. The kernel checks the size against the map's at every access.
unsafe impl aya::Pod for SynListenKey {}
// SAFETY: repr(C), integers only, no padding (8 bytes: 2+2+1+1+2).
unsafe impl aya::Pod for SynListen {}
// SAFETY: repr(C), integers only, no padding (32 bytes: 8+8+8+4+4).
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

/// The object's program `name` as a `T` (`Xdp`, `SchedClassifier`).
fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, DeviceError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| lacks(format!("program {name}")))?
        .try_into()
        .map_err(|e| bpf_err(&format!("program {name}: type"), e))
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
        let prog: &mut Xdp = program(&mut ebpf, PROG_NAME)?;
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
        let prog: &mut SchedClassifier = program(&mut self.ebpf, TC_PROG_NAME)?;
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
        self.arm_syn_cookies(params)
    }

    /// Fills `syn_config` with the stack's cookie key and time base and turns the
    /// program's SYN answering on; returns the listener map.
    fn arm_syn_cookies(&mut self, params: CookieParams) -> Result<Arc<SynListenMap>, DeviceError> {
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
        config
            .set(
                0,
                SynConfig {
                    k0: params.k0,
                    k1: params.k1,
                    epoch_ns: params.epoch_ns,
                    ts_off: params.ts_off,
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
        let prog: &mut Xdp = program(&mut self.ebpf, PROG_NAME)?;
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

#[cfg(test)]
mod tests {
    //! The program itself, run by the kernel on frames the test makes
    //! (`BPF_PROG_TEST_RUN`): root only.
    use super::*;
    use crate::checksum;
    use crate::tcp::pcb::FourTuple;
    use crate::tcp::segment::{Segment, TcpFlags, TcpOptions};
    use crate::tcp::seq::Seq;
    use crate::tcp::syncache::{CookieSyn, Cookies};
    use std::os::fd::{AsFd, AsRawFd};
    use std::time::Instant;

    const XDP_PASS: u32 = 2;
    const STACK: [u8; 4] = [198, 18, 0, 1];
    const PEER: [u8; 4] = [198, 19, 3, 4];

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// `union bpf_attr`'s `test` member.
    #[repr(C)]
    #[derive(Default)]
    struct TestRunAttr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        _pad: u32,
    }

    /// Runs the steering program once on `frame`: its verdict and the frame after it,
    /// with the XDP metadata in front (as `BPF_PROG_TEST_RUN` returns it).
    fn run(steer: &mut XdpSteer, frame: &[u8]) -> (u32, Vec<u8>) {
        let prog: &mut Xdp = program(&mut steer.ebpf, PROG_NAME).unwrap();
        let fd = prog.fd().unwrap().as_fd().as_raw_fd();
        let mut out = vec![0u8; 512];
        let mut attr = TestRunAttr {
            prog_fd: fd as u32,
            data_size_in: frame.len() as u32,
            data_size_out: out.len() as u32,
            data_in: frame.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat: 1,
            ..Default::default()
        };
        // SAFETY: BPF_PROG_TEST_RUN (10) reads the frame and writes at most
        // data_size_out bytes to `out`, both live for the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                10,
                &mut attr as *mut TestRunAttr,
                std::mem::size_of::<TestRunAttr>(),
            )
        };
        assert_eq!(
            r,
            0,
            "BPF_PROG_TEST_RUN: {}",
            std::io::Error::last_os_error()
        );
        out.truncate(attr.data_size_out as usize);
        (attr.retval, out)
    }

    /// A Linux-style SYN from PEER:40000 to STACK:`dport`: MSS 1460, SACK-permitted,
    /// timestamps (unless `ts` is false), NOP, window scale 7; and `payload`.
    fn syn(dport: u16, ts: bool, payload: &[u8]) -> Vec<u8> {
        let mut opts = vec![2, 4, 0x05, 0xb4, 4, 2];
        if ts {
            opts.extend([8, 10, 0, 0, 0x30, 0x39, 0, 0, 0, 0]);
        } else {
            opts.extend([1; 10]);
        }
        opts.extend([1, 3, 3, 7]);
        let tcp_len = 20 + opts.len() + payload.len();
        let mut f = vec![0u8; 14 + 20 + tcp_len];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&PEER);
        ip[16..20].copy_from_slice(&STACK);
        let c = checksum::checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let tcp = &mut f[34..];
        tcp[0..2].copy_from_slice(&40_000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&dport.to_be_bytes());
        tcp[4..8].copy_from_slice(&1_000u32.to_be_bytes());
        tcp[12] = (((20 + opts.len()) / 4) << 4) as u8;
        tcp[13] = 0x02;
        tcp[14..16].copy_from_slice(&64_240u16.to_be_bytes());
        tcp[20..20 + opts.len()].copy_from_slice(&opts);
        tcp[20 + opts.len()..].copy_from_slice(payload);
        let sum = checksum::pseudo_header_v4(PEER, STACK, 6, tcp_len as u16);
        let c = !checksum::fold(checksum::add(sum, tcp));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        f
    }

    fn armed() -> Option<(XdpSteer, Cookies)> {
        if !is_root() {
            eprintln!("skipped: loading BPF programs needs root");
            return None;
        }
        let mut steer = XdpSteer::load("lo", &[Ipv4Addr::from(STACK)]).unwrap();
        let cookies = Cookies::new();
        let map = steer.arm_syn_cookies(cookies.export()).unwrap();
        map.publish(
            SocketAddrV4::new(Ipv4Addr::from(STACK), 80),
            Some(SynTemplate {
                mss: 1460,
                window: 64_000,
                wscale: 9,
                sack: true,
                ecn: false,
            }),
        );
        Some((steer, cookies))
    }

    #[test]
    fn a_syn_is_answered_with_the_stacks_own_cookie() {
        let Some((mut steer, cookies)) = armed() else {
            return;
        };
        let (verdict, out) = run(&mut steer, &syn(80, true, &[]));
        assert_eq!(verdict, XDP_PASS);
        // The mark for the tc program, then a 74-byte SYN,ACK.
        assert_eq!(out.len(), 4 + 74, "{out:?}");
        assert_eq!(
            u32::from_ne_bytes(out[..4].try_into().unwrap()),
            0x7873_5341
        );
        let f = &out[4..];
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 2], "MACs swapped");
        assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 1]);
        let (ip, tcp) = (&f[14..34], &f[34..]);
        assert!(checksum::verify(ip), "IP header checksum");
        assert_eq!((&ip[12..16], &ip[16..20]), (&STACK[..], &PEER[..]));
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 60);
        let sum = checksum::pseudo_header_v4(STACK, PEER, 6, 40);
        assert_eq!(
            checksum::fold(checksum::add(sum, tcp)),
            0xffff,
            "TCP checksum"
        );
        assert_eq!(u16::from_be_bytes([tcp[0], tcp[1]]), 80);
        assert_eq!(u16::from_be_bytes([tcp[2], tcp[3]]), 40_000);
        assert_eq!(u32::from_be_bytes(tcp[8..12].try_into().unwrap()), 1_001);
        assert_eq!(tcp[13], 0x12, "SYN,ACK");
        assert_eq!(u16::from_be_bytes([tcp[14], tcp[15]]), 64_000);
        let opts = &tcp[20..40];
        assert_eq!(
            &opts[0..6],
            &[2, 4, 0x05, 0xb4, 4, 2],
            "MSS, SACK-permitted"
        );
        assert_eq!(&opts[6..8], &[8, 10]);
        assert_eq!(
            &opts[12..16],
            &[0, 0, 0x30, 0x39],
            "TSecr echoes the SYN's TSval"
        );
        assert_eq!(&opts[16..20], &[1, 3, 3, 9], "our window scale");
        let iss = Seq(u32::from_be_bytes(tcp[4..8].try_into().unwrap()));
        let tsval = u32::from_be_bytes(opts[8..12].try_into().unwrap());
        // The peer's ACK: the stack's own check takes it, with the SYN's options.
        let t = FourTuple {
            local: SocketAddrV4::new(Ipv4Addr::from(STACK), 80),
            remote: SocketAddrV4::new(Ipv4Addr::from(PEER), 40_000),
        };
        let ack = Segment {
            src_port: 40_000,
            dst_port: 80,
            seq: Seq(1_001),
            ack: iss + 1,
            flags: TcpFlags::ACK,
            window: 502,
            urgent: 0,
            options: TcpOptions {
                timestamps: Some((12_346, tsval)),
                ..TcpOptions::default()
            },
            payload: &[],
            ecn: Default::default(),
        };
        assert_eq!(
            cookies.check(&t, &ack, Instant::now()),
            Some(CookieSyn {
                mss: 1460,
                wscale: Some(7),
                sack: true,
                ecn: false,
            })
        );
        // The echo dates the SYN,ACK: microseconds ago, not a millisecond.
        let rtt = cookies.handshake_rtt(tsval, Instant::now()).unwrap();
        assert!(rtt < std::time::Duration::from_millis(100), "{rtt:?}");
        // Another stack's key does not.
        assert_eq!(Cookies::new().check(&t, &ack, Instant::now()), None);
        assert_eq!(steer.queue_stats(1)[0].syn_answered, 1);
    }

    #[test]
    fn syns_a_cookie_cannot_answer_whole_go_to_the_stack() {
        let Some((mut steer, _)) = armed() else {
            return;
        };
        for (what, frame) in [
            ("no timestamps", syn(80, false, &[])),
            ("data on the SYN", syn(80, true, b"GET /")),
            ("a port nobody listens on", syn(81, true, &[])),
        ] {
            let (verdict, out) = run(&mut steer, &frame);
            // Not rewritten: the redirect to the (absent) socket falls back to the kernel.
            assert_eq!((verdict, &out[..]), (XDP_PASS, &frame[..]), "{what}");
        }
        assert_eq!(steer.queue_stats(1)[0].syn_answered, 0);
        assert_eq!(steer.queue_stats(1)[0].no_socket, 3);
    }
}
