//! The `xstack` command: runs the stack on an interface.
//!
//! Every failure prints one line, `xstack: error: ...`, and exits non-zero (2 for
//! usage errors, 1 for everything else). No panic reaches the user: a panic is caught,
//! reported in one line, and the XDP program is detached on the way out (and the kernel
//! detaches it anyway when the process exits, since it is attached through a BPF link).

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use xstack::device::xdp::Mode;
use xstack::net::Ipv4Cidr;
use xstack::worker::IdleMode;
use xstack::{Stack, StackConfig};

#[derive(Parser, Debug)]
#[command(name = "xstack", version, about = "A userspace TCP/IP stack on AF_XDP")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the stack on an interface until SIGINT/SIGTERM, then print its counters as JSON.
    Up(UpArgs),
}

#[derive(clap::Args, Debug)]
struct UpArgs {
    /// The interface to take over (its kernel must not hold --addr).
    #[arg(long)]
    iface: String,
    /// The address the stack owns, A.B.C.D/NN.
    #[arg(long)]
    addr: Ipv4Cidr,
    /// Default gateway for destinations off the subnet.
    #[arg(long)]
    gateway: Option<Ipv4Addr>,
    /// Use the first N receive queues (changes the channel count; restored at exit).
    #[arg(long)]
    queues: Option<u32>,
    /// CPUs to pin workers to, e.g. 0,1 or 0-3 (default: all allowed, round-robin).
    #[arg(long, value_parser = parse_cpus)]
    cpus: Option<CpuList>,
    /// XDP attach mode.
    #[arg(long, default_value = "native")]
    xdp_mode: Mode,
    /// What idle workers do: busy (poll the rings) or sleep (in poll(2)).
    #[arg(long, default_value = "busy")]
    idle: IdleMode,
}

#[derive(Clone, Debug)]
struct CpuList(Vec<usize>);

fn parse_cpus(s: &str) -> Result<CpuList, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let bad = || format!("'{s}' is not a CPU list like 0,1 or 0-3");
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if a > b {
                return Err(bad());
            }
            out.extend(a..=b);
        } else {
            out.push(part.parse().map_err(|_| bad())?);
        }
    }
    Ok(CpuList(out))
}

fn main() -> ExitCode {
    // A panic is reported as one line (by `run`'s catch_unwind on the main thread, or
    // when the main loop sees a worker die); the hook only records where it happened
    // instead of printing the default multi-line message and backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let thread = std::thread::current().name().unwrap_or("main").to_string();
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("{thread}: {msg}{at}"));
        }
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's message is several lines (usage, hint); keep the first.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("xstack: error: {first}");
            return ExitCode::from(2);
        }
    };
    match std::panic::catch_unwind(|| run(cli)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("xstack: error: {}", one_line(&format!("{e:#}")));
            ExitCode::from(1)
        }
        Err(_) => {
            let msg = last_panic();
            eprintln!("xstack: error: internal error (panic: {}); the XDP program was detached", one_line(&msg));
            ExitCode::from(1)
        }
    }
}

static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn last_panic() -> String {
    LAST_PANIC.lock().ok().and_then(|mut p| p.take()).unwrap_or_else(|| "unknown".into())
}

fn mac_str(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn one_line(s: &str) -> String {
    s.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Up(a) => up(a),
    }
}

fn up(a: UpArgs) -> anyhow::Result<()> {
    // Block the stop signals in every thread (workers inherit the mask) and take them
    // through a signalfd, so a signal can never interrupt a worker mid-batch.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block()?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;

    let mut cfg = StackConfig::new(&a.iface, vec![a.addr]);
    cfg.gateway = a.gateway;
    cfg.queues = a.queues;
    cfg.cpus = a.cpus.map(|c| c.0);
    cfg.xdp_mode = a.xdp_mode;
    cfg.idle = a.idle;
    let stack = Stack::start(cfg)?;
    eprintln!(
        "xstack: up on {}: {} queue{}, {} XDP, {}{}, mac {}, mtu {}",
        stack.link().name,
        stack.link().rx_queues,
        if stack.link().rx_queues == 1 { "" } else { "s" },
        a.xdp_mode,
        a.addr,
        a.gateway.map(|g| format!(" via {g}")).unwrap_or_default(),
        mac_str(&stack.link().mac.0),
        stack.link().mtu,
    );
    loop {
        let mut fds = [libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&sfd),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, Duration::from_millis(200).as_millis() as i32) };
        if let Ok(Some(sig)) = sfd.read_signal() {
            let name = Signal::try_from(sig.ssi_signo as i32).map(|s| s.as_str()).unwrap_or("signal");
            eprintln!("xstack: {name}: stopping");
            break;
        }
        if !stack.healthy() {
            let snap = stack.stop();
            println!("{}", serde_json::to_string(&snap.to_json())?);
            anyhow::bail!(
                "a worker thread died ({}); stack stopped and XDP program detached",
                one_line(&last_panic())
            );
        }
    }
    let snap = stack.stop();
    println!("{}", serde_json::to_string(&snap.to_json())?);
    Ok(())
}
