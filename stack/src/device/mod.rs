//! The device layer: the interface as the kernel describes it (index, link address,
//! MTU, channels), the XDP steering program ([`xdp`]) and one AF_XDP socket per receive
//! queue ([`xsk`]).

pub mod gso;
pub mod rss_emu;
pub mod xdp;
pub mod xsk;

use std::net::Ipv4Addr;

use smoltcp::wire::EthernetAddress;

/// Errors bringing a device (and the stack on it) up. Each message is one line a user
/// can act on; the underlying error, when there is one, is the [`std::error::Error::source`]
/// (so `{:#}` with anyhow prints `context: cause`).
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The process lacks a capability it needs.
    #[error(
        "permission denied: {0} (run as root, or with CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF)"
    )]
    Permission(String),
    /// No interface of that name in this network namespace.
    #[error("no such interface: {0}")]
    NoSuchInterface(String),
    /// The interface's link-layer address cannot be read from sysfs.
    #[error("{iface}: cannot read its link-layer address (not an Ethernet interface?)")]
    NoLinkAddress {
        /// The interface.
        iface: String,
    },
    /// The interface's MTU cannot be read from sysfs.
    #[error("{iface}: cannot read its MTU")]
    NoMtu {
        /// The interface.
        iface: String,
    },
    /// `getifaddrs(3)` failed.
    #[error("cannot list the kernel's addresses")]
    ListAddresses(#[source] nix::errno::Errno),
    /// The kernel already holds the address on an interface.
    #[error("the kernel already holds {addr} on {iface}: remove it (ip addr del {addr}/.. dev {iface}) or pick another address for the stack")]
    AddressInUse {
        /// The address.
        addr: Ipv4Addr,
        /// The interface where the kernel holds it.
        iface: String,
    },
    /// No address was given for the stack to own.
    #[error("no address to own")]
    NoAddress,
    /// Another XDP program is attached.
    #[error("another XDP program is already attached to {0} (see `ip link show {0}`; detach it with `ip link set dev {0} xdp off`)")]
    XdpBusy(String),
    /// The interface's driver cannot run XDP in this mode.
    #[error("{iface} does not support {mode} XDP; try --xdp-mode generic")]
    XdpUnsupported {
        /// The interface.
        iface: String,
        /// The attach mode asked for.
        mode: xdp::Mode,
        /// What the kernel said (boxed: aya's errors are large).
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// Attaching the XDP program failed otherwise.
    #[error("attaching XDP to {iface} ({mode} mode)")]
    XdpAttach {
        /// The interface.
        iface: String,
        /// The attach mode asked for.
        mode: xdp::Mode,
        /// What the kernel said (boxed: aya's errors are large).
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// A BPF object (XDP steering or tc RSS emulation) lacks a map or program it must have.
    #[error("{object} object lacks {item}")]
    BpfObjectIncomplete {
        /// Which object: `XDP` or `tc`.
        object: &'static str,
        /// What is missing, e.g. `map xsks`.
        item: String,
    },
    /// Loading a BPF object, using one of its maps or loading/attaching one of its
    /// programs failed.
    #[error("{what}")]
    Bpf {
        /// The step that failed.
        what: String,
        /// The aya error (boxed: aya's errors are large).
        #[source]
        source: Box<BpfError>,
    },
    /// The kernel cannot do AF_XDP.
    #[error("AF_XDP sockets are not supported by this kernel (needs Linux >= 5.4 with CONFIG_XDP_SOCKETS=y): {0}")]
    AfXdpUnsupported(String),
    /// The anonymous mapping for a queue's UMEM cannot be made.
    #[error("mmap of {len} bytes for the UMEM")]
    UmemMmap {
        /// Bytes asked for.
        len: usize,
        /// Why mmap(2) failed.
        #[source]
        source: nix::errno::Errno,
    },
    /// Another AF_XDP socket is bound to the queue (bind(2) said EBUSY; the message
    /// says it all, so there is no source).
    #[error("{iface} queue {queue} is busy: another AF_XDP socket is bound to it")]
    QueueBusy {
        /// The interface.
        iface: String,
        /// The receive queue.
        queue: u32,
    },
    /// Setting up a queue's AF_XDP socket failed at one step.
    #[error("{what}")]
    Xsk {
        /// The step that failed, with its context.
        what: String,
        /// The interface.
        iface: String,
        /// The receive queue.
        queue: u32,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
    /// The requested queue count cannot be had.
    #[error("{0}")]
    Queues(String),
    /// Selecting the default congestion control module failed (unknown name).
    #[error(transparent)]
    UnknownCc(xstack_cc::CcError),
    /// Registering a protocol with netisr failed.
    #[error("netisr")]
    Netisr(#[source] crate::netisr::NetisrError),
    /// eventfd(2) failed for a worker's wakeup fd.
    #[error("eventfd")]
    Eventfd(#[source] std::io::Error),
    /// A worker thread cannot be spawned.
    #[error("spawning worker {worker}")]
    SpawnWorker {
        /// The worker (queue) index.
        worker: usize,
        /// Why the thread was not created.
        #[source]
        source: std::io::Error,
    },
    /// A worker thread ended before reporting its socket.
    #[error("worker {0} died during start-up")]
    WorkerDied(usize),
    /// The process's CPU affinity cannot be read.
    #[error("sched_getaffinity")]
    CpuAffinity(#[source] nix::errno::Errno),
    /// `--cpus` was given an empty list.
    #[error("--cpus is empty")]
    CpusEmpty,
    /// A CPU in `--cpus` is outside this process's affinity mask.
    #[error("CPU {cpu} is not available to this process (allowed: {allowed:?})")]
    CpuNotAllowed {
        /// The CPU asked for.
        cpu: usize,
        /// The CPUs this process may run on.
        allowed: Vec<usize>,
    },
    /// A CPU number cannot be put in a CPU set (beyond `CpuSet::count()`).
    #[error("CPU {cpu}")]
    CpuOutOfRange {
        /// The CPU asked for.
        cpu: usize,
        /// What `CpuSet::set` said.
        #[source]
        source: nix::errno::Errno,
    },
    /// Pinning a worker thread to its CPU failed.
    #[error("pinning to CPU {cpu}")]
    Pin {
        /// The CPU.
        cpu: usize,
        /// What sched_setaffinity(2) said.
        #[source]
        source: nix::errno::Errno,
    },
}

/// The aya error behind [`DeviceError::Bpf`].
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// Parsing or loading the object.
    #[error(transparent)]
    Object(#[from] aya::EbpfError),
    /// Opening or updating a map.
    #[error(transparent)]
    Map(#[from] aya::maps::MapError),
    /// Converting, loading or attaching a program.
    #[error(transparent)]
    Program(#[from] aya::programs::ProgramError),
}

/// An offload that can be switched off (`ifconfig -txcsum` and friends).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Offload {
    /// Transmit checksum: the device finishes TCP checksums (`IFCAP_TXCSUM`).
    TxCsum,
    /// TCP segmentation offload (`IFCAP_TSO4`): tcp_output hands over up to 64 KB.
    Tso,
    /// Large receive offload (`IFCAP_LRO`): coalesce a flow's segments before input.
    Lro,
    /// SYN cookies answered in the XDP program, before the stack (`device/xdp.rs`).
    SynCookie,
}

impl Offload {
    /// Every switchable offload, with its `ifconfig` name. (Receive checksum is not
    /// here: no AF_XDP device reports a checksum verdict, see [`Offloads::rx_csum`].)
    pub const ALL: [(Offload, &'static str); 4] = [
        (Offload::TxCsum, "txcsum"),
        (Offload::Tso, "tso"),
        (Offload::Lro, "lro"),
        (Offload::SynCookie, "syncookie"),
    ];
}

impl std::str::FromStr for Offload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Offload::ALL
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(o, _)| *o)
            .ok_or_else(|| {
                let names: Vec<&str> = Offload::ALL.iter().map(|(_, n)| *n).collect();
                format!("unknown offload '{s}' (known: {})", names.join(", "))
            })
    }
}

/// What the device does for the stack on this interface and kernel, after the
/// switches (FreeBSD's `if_capenable`). Reported in `/stats` and at start-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Offloads {
    /// Received frames may arrive with `CSUM_DATA_VALID`. AF_XDP has no way to pass
    /// the driver's checksum verdict (no XDP RX metadata kfunc for it), so this is
    /// false on every device today and receive checksums are verified in software.
    pub rx_csum: bool,
    /// TCP checksums are left to the device (AF_XDP TX metadata,
    /// `XDP_TXMD_FLAGS_CHECKSUM`, Linux 6.8+; copy mode passes them on as
    /// `CHECKSUM_PARTIAL`).
    pub tx_csum: bool,
    /// TCP segmentation offload: tcp_output sends up to 64 KB per segment. No AF_XDP
    /// path carries a segment larger than the MTU (there is no TSO request in the TX
    /// metadata): the kernel segments it when [`Offloads::tso_kernel`], otherwise the
    /// device layer cuts it up in software; either way it saves the per-segment work
    /// of tcp_output.
    pub tso: bool,
    /// TSO segments go to the kernel whole, through a packet socket with a virtio-net
    /// header (`device/gso.rs`), and leave as one socket buffer: on a device with TSO
    /// (or veth) as one, otherwise cut by the kernel's GSO. On when the interface has
    /// generic segmentation offload on (as the kernel's own TCP would use it).
    pub tso_kernel: bool,
    /// The largest TSO segment's payload in bytes (0 when TSO is off).
    pub tso_max: u32,
    /// Large receive offload, in software (`net/lro.rs`): AF_XDP delivers the
    /// frames as they were on the wire, and the worker coalesces them.
    pub lro: bool,
    /// Received frames carry the device's RSS hash. The kernel hands it to XDP through
    /// the `bpf_xdp_metadata_rx_hash` kfunc, which needs a device-bound program; aya
    /// 0.14 (pinned for the toolchain) can load neither, so this is false and the
    /// stack computes the same Toeplitz hash in software (`rss::ip_flow_hash`).
    pub rx_hash: bool,
    /// A bare SYN with timestamps to a listening port is answered in the XDP program
    /// with the stack's SYN cookie, on the CPU it arrived on, and never reaches a worker
    /// (`device/xdp.rs`); the stack takes the handshake's ACK as a cookie ACK. Needs
    /// tcx links (Linux 6.6+) and the stack's cookies not `off`.
    pub syn_cookies: bool,
}

impl std::fmt::Display for Offloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = |b: bool| if b { "on" } else { "off" };
        write!(
            f,
            "rxcsum {}, txcsum {}, tso {} ({}), lro {} (software), rxhash {}, syncookie {} (XDP)",
            on(self.rx_csum),
            on(self.tx_csum),
            on(self.tso),
            if self.tso_kernel {
                "kernel segments"
            } else {
                "software"
            },
            on(self.lro),
            on(self.rx_hash),
            on(self.syn_cookies)
        )
    }
}

/// What the kernel says about an interface.
#[derive(Clone, Debug)]
pub struct LinkInfo {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub ifindex: u32,
    /// Link-layer address.
    pub mac: EthernetAddress,
    /// IP MTU.
    pub mtu: usize,
    /// Receive queues currently in use (the channel count).
    pub rx_queues: u32,
}

impl LinkInfo {
    /// Reads the interface's index, MAC, MTU and receive-queue count.
    pub fn query(name: &str) -> Result<LinkInfo, DeviceError> {
        let ifindex = match nix::net::if_::if_nametoindex(name) {
            Ok(i) if i != 0 => i,
            _ => return Err(DeviceError::NoSuchInterface(name.to_string())),
        };
        let sys = |f: &str| std::fs::read_to_string(format!("/sys/class/net/{name}/{f}"));
        let mac = sys("address")
            .ok()
            .and_then(|s| parse_mac(s.trim()))
            .ok_or_else(|| DeviceError::NoLinkAddress {
                iface: name.to_string(),
            })?;
        let mtu = sys("mtu")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| DeviceError::NoMtu {
                iface: name.to_string(),
            })?;
        let rx_queues = match channels(name) {
            Ok(ch) => ch.rx_count + ch.combined_count,
            Err(_) => count_sysfs_rx_queues(name),
        }
        .max(1);
        Ok(LinkInfo {
            name: name.to_string(),
            ifindex,
            mac,
            mtu,
            rx_queues,
        })
    }
}

fn parse_mac(s: &str) -> Option<EthernetAddress> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(EthernetAddress(out))
}

fn count_sysfs_rx_queues(name: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
}

/// The kernel's `struct ethtool_channels` (ethtool UAPI, `ETHTOOL_GCHANNELS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Channels {
    cmd: u32,
    /// Maximum receive-only channels.
    pub max_rx: u32,
    /// Maximum transmit-only channels.
    pub max_tx: u32,
    /// Maximum other channels.
    pub max_other: u32,
    /// Maximum combined channels.
    pub max_combined: u32,
    /// Receive-only channels in use.
    pub rx_count: u32,
    /// Transmit-only channels in use.
    pub tx_count: u32,
    /// Other channels in use.
    pub other_count: u32,
    /// Combined channels in use.
    pub combined_count: u32,
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_SCHANNELS: u32 = 0x3d;

mod ethtool_sys {
    /// `struct ifreq` as SIOCETHTOOL reads it: the name, then a pointer to the command.
    #[repr(C)]
    pub struct IfReq {
        pub name: [u8; libc::IFNAMSIZ],
        pub data: *mut libc::c_void,
        pub _pad: [u8; 16],
    }

    // SIOCETHTOOL is a "bad" ioctl (its number does not encode the argument's size).
    nix::ioctl_readwrite_bad!(siocethtool, libc::SIOCETHTOOL, IfReq);
}

fn ethtool_ioctl(name: &str, ch: &mut Channels) -> std::io::Result<()> {
    use ethtool_sys::{siocethtool, IfReq};
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsRawFd;
    if name.len() >= libc::IFNAMSIZ {
        return Err(nix::errno::Errno::ENODEV.into());
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: ch as *mut Channels as *mut libc::c_void,
        _pad: [0; 16],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: SIOCETHTOOL reads the ifreq (a valid name and a pointer to a live, properly
    // sized `ethtool_channels`) and writes only into that struct; `sock` is open for
    // the whole call.
    unsafe { siocethtool(sock.as_raw_fd(), &mut req) }?;
    Ok(())
}

/// Reads the interface's channel counts (`ethtool -l`).
pub fn channels(name: &str) -> std::io::Result<Channels> {
    let mut ch = Channels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    ethtool_ioctl(name, &mut ch)?;
    Ok(ch)
}

/// Sets the interface's channel counts (`ethtool -L`).
pub fn set_channels(name: &str, mut ch: Channels) -> std::io::Result<()> {
    ch.cmd = ETHTOOL_SCHANNELS;
    ethtool_ioctl(name, &mut ch)
}

/// Shrinks (or grows) the interface to `n` receive queues, returning the channel
/// setting to restore at exit (`None` when nothing had to change).
pub fn use_queues(info: &mut LinkInfo, n: u32) -> Result<Option<Channels>, DeviceError> {
    if n == 0 {
        return Err(DeviceError::Queues("--queues must be at least 1".into()));
    }
    if n == info.rx_queues {
        return Ok(None);
    }
    let name = &info.name;
    let old = channels(name).map_err(|e| {
        DeviceError::Queues(format!(
            "{name} has {} rx queues and its channel count cannot be read to change it to {n} ({e}); run without --queues",
            info.rx_queues
        ))
    })?;
    let mut new = old;
    if old.combined_count > 0 {
        new.combined_count = n;
        if n > old.max_combined {
            return Err(DeviceError::Queues(format!(
                "{name} supports at most {} combined channels, asked for {n}",
                old.max_combined
            )));
        }
    } else {
        if n > old.max_rx {
            return Err(DeviceError::Queues(format!(
                "{name} supports at most {} rx queues, asked for {n}",
                old.max_rx
            )));
        }
        new.rx_count = n;
        if old.tx_count > 0 {
            new.tx_count = n.min(old.max_tx.max(1));
        }
    }
    set_channels(name, new).map_err(|e| {
        DeviceError::Queues(format!(
            "cannot set {name} to {n} rx queues (ethtool -L): {e}"
        ))
    })?;
    info.rx_queues = n;
    Ok(Some(old))
}

/// Fails when the kernel holds any of `addrs` on some interface of this namespace:
/// the stack and the kernel would both answer for it.
pub fn check_addresses_free(addrs: &[Ipv4Addr]) -> Result<(), DeviceError> {
    let ifaddrs = nix::ifaddrs::getifaddrs().map_err(DeviceError::ListAddresses)?;
    for ifa in ifaddrs {
        let Some(sin) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) else {
            continue;
        };
        let held = sin.ip();
        if addrs.contains(&held) {
            return Err(DeviceError::AddressInUse {
                addr: held,
                iface: ifa.interface_name,
            });
        }
    }
    Ok(())
}

/// Checks the effective capabilities the stack needs, so a missing one is reported up
/// front in one line instead of as a failed syscall deep in start-up.
pub fn check_privileges() -> Result<(), DeviceError> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_NET_RAW: u32 = 13;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_BPF: u32 = 39;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(eff) = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
    else {
        // Cannot tell: let the syscalls speak.
        return Ok(());
    };
    let has = |c: u32| eff & (1u64 << c) != 0;
    let mut missing = Vec::new();
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_NET_RAW) {
        missing.push("CAP_NET_RAW");
    }
    // CAP_SYS_ADMIN covers BPF on kernels before 5.8.
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(DeviceError::Permission(format!(
            "missing {}",
            missing.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("02:00:0a:ff:00:01"),
            Some(EthernetAddress([2, 0, 10, 255, 0, 1]))
        );
        assert_eq!(parse_mac("02:00:0a:ff:00"), None);
        assert_eq!(parse_mac("02:00:0a:ff:00:01:02"), None);
        assert_eq!(parse_mac("zz:00:0a:ff:00:01"), None);
    }

    #[test]
    fn channels_struct_matches_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<Channels>(), 36);
    }

    /// What the CLI prints (`{:#}` of an anyhow error): each message in the source
    /// chain, joined by ": ".
    fn chain(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut cur = e.source();
        while let Some(s) = cur {
            out.push_str(": ");
            out.push_str(&s.to_string());
            cur = s.source();
        }
        out
    }

    #[test]
    fn typed_errors_keep_their_context_and_cause() {
        use nix::errno::Errno;
        let e = DeviceError::Pin {
            cpu: 3,
            source: Errno::EINVAL,
        };
        assert_eq!(chain(&e), "pinning to CPU 3: EINVAL: Invalid argument");
        let e = DeviceError::UmemMmap {
            len: 4096,
            source: Errno::ENOMEM,
        };
        assert!(chain(&e).starts_with("mmap of 4096 bytes for the UMEM: ENOMEM: "));
        let e = DeviceError::SpawnWorker {
            worker: 2,
            source: std::io::Error::from_raw_os_error(libc::EAGAIN),
        };
        assert!(
            chain(&e).starts_with("spawning worker 2: "),
            "{}",
            chain(&e)
        );
        let e = DeviceError::QueueBusy {
            iface: "veth0".into(),
            queue: 1,
        };
        assert!(
            matches!(&e, DeviceError::QueueBusy { queue: 1, .. }),
            "callers can match"
        );
        assert_eq!(
            chain(&e),
            "veth0 queue 1 is busy: another AF_XDP socket is bound to it"
        );
        assert_eq!(
            DeviceError::CpuNotAllowed {
                cpu: 5,
                allowed: vec![0, 1]
            }
            .to_string(),
            "CPU 5 is not available to this process (allowed: [0, 1])"
        );
        assert_eq!(
            DeviceError::WorkerDied(1).to_string(),
            "worker 1 died during start-up"
        );
        assert_eq!(DeviceError::NoAddress.to_string(), "no address to own");
        assert_eq!(DeviceError::CpusEmpty.to_string(), "--cpus is empty");
        let e = DeviceError::Netisr(crate::netisr::NetisrError::Duplicate(1));
        assert_eq!(chain(&e), "netisr: netisr protocol 1 is already registered");
        let cc = xstack_cc::Registry::with_builtins()
            .set_default("vegas")
            .unwrap_err();
        let text = cc.to_string();
        let e = DeviceError::UnknownCc(cc);
        assert_eq!(chain(&e), text, "transparent: the registry's message as is");
        let e = DeviceError::BpfObjectIncomplete {
            object: "XDP",
            item: "map xsks".into(),
        };
        assert_eq!(e.to_string(), "XDP object lacks map xsks");
    }

    #[test]
    fn missing_interface_is_reported() {
        match LinkInfo::query("xs-no-such0") {
            Err(DeviceError::NoSuchInterface(n)) => assert_eq!(n, "xs-no-such0"),
            other => panic!("{other:?}"),
        }
    }
}
