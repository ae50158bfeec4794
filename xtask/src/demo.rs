//! `cargo xtask demo`: the stack on one end of a veth pair, Linux pinging it from the
//! other, then the stack's counters.
//!
//! Same layout as the integration tests, with fixed names:
//! `xsdemo-a` holds `vstk` (the stack, 198.18.0.1/24, no kernel address),
//! `xsdemo-b` holds `vpeer` (Linux, 198.18.0.2/24). The namespaces are removed on exit,
//! on Ctrl-C, and before starting if a previous run left them.

use crate::sys::{ensure_packages, is_root, must, quiet};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const NS_STACK: &str = "xsdemo-a";
const NS_PEER: &str = "xsdemo-b";
const STACK_CIDR: &str = "198.18.0.1/24";
const STACK_ADDR: &str = "198.18.0.1";
const PINGS: &str = "20";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Ctrl-C / SIGTERM set a flag instead of killing us, so the namespaces get removed.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// A namespace pair joined by a veth pair (`vstk` in `a`, `vpeer` in `b` with
/// 198.18.0.2/24); deleted on drop, and deleted first if a previous run left it.
pub struct NsPair {
    /// The stack's namespace.
    pub a: &'static str,
    /// The Linux peer's namespace.
    pub b: &'static str,
}

impl NsPair {
    pub fn create(a: &'static str, b: &'static str) -> Result<NsPair> {
        let net = NsPair { a, b };
        net.remove();
        must(&["ip", "netns", "add", a])?;
        must(&["ip", "netns", "add", b])?;
        must(&[
            "ip", "link", "add", "vstk", "netns", a, "type", "veth", "peer", "name", "vpeer",
            "netns", b,
        ])?;
        for (ns, dev) in [(a, "lo"), (a, "vstk"), (b, "lo"), (b, "vpeer")] {
            must(&["ip", "-n", ns, "link", "set", dev, "up"])?;
        }
        must(&["ip", "-n", b, "addr", "add", "198.18.0.2/24", "dev", "vpeer"])?;
        // Full checksums from the kernel peer (DESIGN.md: veth facts).
        must(&["ip", "netns", "exec", b, "ethtool", "-K", "vpeer", "tx", "off"])?;
        Ok(net)
    }

    fn remove(&self) {
        for ns in [self.a, self.b] {
            if std::path::Path::new("/run/netns").join(ns).exists() {
                quiet(&["ip", "netns", "del", ns]);
            }
        }
    }
}

impl Drop for NsPair {
    fn drop(&mut self) {
        self.remove();
        println!("xtask: removed namespaces {} and {}", self.a, self.b);
    }
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"))
}

pub fn run() -> Result<()> {
    if !is_root() {
        eprintln!("xtask: demo needs root (it creates network namespaces and attaches an XDP program); run it as root");
        std::process::exit(1);
    }
    ensure_packages()?;
    install_signal_handlers();

    let bin = build_release()?;
    let _net = NsPair::create(NS_STACK, NS_PEER)?;
    println!(
        "xtask: {NS_STACK}/vstk (xstack, {STACK_CIDR}) <-> {NS_PEER}/vpeer (Linux, 198.18.0.2/24)"
    );
    let (mut stack, up_rx, out_thread) =
        spawn_stack(&bin, NS_STACK, &["--iface", "vstk", "--addr", STACK_CIDR])?;
    let result = wait_up(&mut stack, &up_rx).and_then(|()| ping());
    let counters = stop(&mut stack, out_thread);
    result?;
    let json = counters?;
    println!("xstack counters:");
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

/// Builds the release `xstack` binary and returns its path.
pub fn build_release() -> Result<PathBuf> {
    println!("xtask: building xstack (release)");
    let status = Command::new(crate::cargo())
        .current_dir(crate::workspace_root())
        .args(["build", "--release", "-p", "xstack", "--bin", "xstack"])
        .status()?;
    if !status.success() {
        bail!("cargo build --release -p xstack failed ({status})");
    }
    Ok(target_dir().join("release").join("xstack"))
}

/// Starts `xstack up ARGS` in namespace `ns`: returns the child, a channel that fires
/// when it printed its `xstack: up` line, and a thread collecting its stdout.
pub fn spawn_stack(
    bin: &std::path::Path,
    ns: &str,
    args: &[&str],
) -> Result<(Child, mpsc::Receiver<()>, thread::JoinHandle<String>)> {
    spawn_cmd(bin, ns, "up", args)
}

/// Starts `xstack CMD ARGS` (up, http, echo) in namespace `ns`; as [`spawn_stack`].
pub fn spawn_cmd(
    bin: &std::path::Path,
    ns: &str,
    cmd: &str,
    args: &[&str],
) -> Result<(Child, mpsc::Receiver<()>, thread::JoinHandle<String>)> {
    let mut argv: Vec<String> = vec![bin.to_string_lossy().into_owned(), cmd.to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    spawn_argv(ns, &argv)
}

/// Starts `argv` (an xstack command line, possibly behind `taskset`) in namespace `ns`;
/// as [`spawn_stack`].
pub fn spawn_argv(ns: &str, argv: &[String]) -> Result<(Child, mpsc::Receiver<()>, thread::JoinHandle<String>)> {
    let mut stack = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", argv.join(" ")))?;
    let (up_tx, up_rx) = mpsc::channel();
    let stderr = stack.stderr.take().context("stack stderr")?;
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            eprintln!("{line}");
            if line.starts_with("xstack: up ") {
                let _ = up_tx.send(());
            }
        }
    });
    let mut stdout = stack.stdout.take().context("stack stdout")?;
    let out_thread = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    Ok((stack, up_rx, out_thread))
}

pub fn wait_up(stack: &mut Child, up_rx: &mpsc::Receiver<()>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if up_rx.recv_timeout(Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        if let Some(status) = stack.try_wait()? {
            bail!("xstack exited before it was up ({status})");
        }
        if interrupted() {
            bail!("interrupted");
        }
        if Instant::now() > deadline {
            bail!("xstack printed no `xstack: up` line within 20 s");
        }
    }
}

fn ping() -> Result<()> {
    println!("xtask: ping -c {PINGS} {STACK_ADDR} from {NS_PEER}");
    let mut child = Command::new("ip")
        .args([
            "netns", "exec", NS_PEER, "ping", "-n", "-c", PINGS, "-i", "0.2", "-W", "1",
        ])
        .arg(STACK_ADDR)
        .stdin(Stdio::null())
        .spawn()
        .context("starting ping")?;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() && !interrupted() {
                println!("xtask: ping reported loss ({status})");
            }
            return Ok(());
        }
        if interrupted() {
            // A terminal's Ctrl-C reaches ping too; a SIGTERM to us alone does not.
            thread::sleep(Duration::from_millis(200));
            if child.try_wait()?.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

pub fn stop(stack: &mut Child, out: thread::JoinHandle<String>) -> Result<serde_json::Value> {
    if stack.try_wait()?.is_none() {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child
        // (`ip netns exec` execs xstack), not yet reaped.
        unsafe {
            libc::kill(stack.id() as libc::pid_t, libc::SIGINT);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = stack.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = stack.kill();
            let _ = stack.wait();
            bail!("xstack did not exit within 10 s of SIGINT; killed");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let text = out.join().unwrap_or_default();
    if !status.success() {
        bail!("xstack exited with {status}");
    }
    serde_json::from_str(text.trim())
        .with_context(|| format!("xstack printed no JSON counters on stdout: {text:?}"))
}
