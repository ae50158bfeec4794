//! `cargo xtask demo`: the stack on one end of a veth pair, Linux pinging it from the
//! other, then the stack's counters.
//!
//! Same layout as the integration tests, with fixed names:
//! `xsdemo-a` holds `vstk` (the stack, 198.18.0.1/24, no kernel address),
//! `xsdemo-b` holds `vpeer` (Linux, 198.18.0.2/24). The namespaces are removed on exit,
//! on Ctrl-C, and before starting if a previous run left them.

use crate::sys::{ensure_packages, is_root};
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
const PINGS: &str = "10";

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
/// 198.18.0.2/24; [`xstack_testnet::NsPair`]); deleted on drop, and deleted first if a
/// previous run left it.
pub struct NsPair {
    /// The stack's namespace.
    pub a: &'static str,
    /// The Linux peer's namespace.
    pub b: &'static str,
    net: Option<xstack_testnet::NsPair>,
}

impl NsPair {
    pub fn create(a: &'static str, b: &'static str) -> Result<NsPair> {
        Self::create_with_queues(a, b, 1)
    }

    /// As [`NsPair::create`], with `queues` rx and tx queues on each end.
    pub fn create_with_queues(a: &'static str, b: &'static str, queues: u32) -> Result<NsPair> {
        let net = xstack_testnet::NsPair::create(a, b, queues)?;
        Ok(NsPair {
            a,
            b,
            net: Some(net),
        })
    }

    /// The namespaces and the pair.
    pub fn net(&self) -> &xstack_testnet::NsPair {
        self.net.as_ref().expect("present until drop")
    }
}

impl Drop for NsPair {
    fn drop(&mut self) {
        drop(self.net.take());
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
    let binstr = bin.to_string_lossy().to_string();
    let net = NsPair::create(NS_STACK, NS_PEER)?;
    // A kernel address on the same interface, for the side-by-side download.
    net.net().add_stack_kernel_addr("198.18.0.3/24")?;
    crate::sys::must(&[
        "ip",
        "netns",
        "exec",
        NS_PEER,
        "sh",
        "-c",
        "echo 1 > /sys/class/net/vpeer/queues/rx-0/rps_cpus",
    ])?;
    println!(
        "xtask: {NS_STACK}/vstk (xstack {STACK_CIDR}; kernel 198.18.0.3) <-> {NS_PEER}/vpeer (Linux, 198.18.0.2/24)"
    );
    let stack_argv = |cmd: &str, idle: &str| -> Vec<String> {
        [
            "taskset", "-c", "1", &binstr, cmd, "--iface", "vstk", "--addr", STACK_CIDR, "--cpus",
            "1", "--idle", idle,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    // 1. xstack http, pinged and then downloaded from by Linux.
    let (mut stack, up_rx, out_thread) = spawn_argv(NS_STACK, &stack_argv("http", "busy"))?;
    let result = wait_up(&mut stack, &up_rx).and_then(|()| {
        thread::sleep(Duration::from_millis(200));
        ping()?;
        println!("xtask: curl downloads 1 GB from xstack (http://{STACK_ADDR}/bytes/1000000000), then GET /info on the same connection");
        curl_with_info(&format!("http://{STACK_ADDR}"))
    });
    let counters = stop(&mut stack, out_thread);
    let (xstack_gbps, info) = result?;
    let json = counters?;

    // 2. The same download from the kernel's TCP on the same veth pair (the XDP
    //    program stays attached through an idle xstack, so conditions match).
    let mut khttp = Command::new("ip")
        .args([
            "netns",
            "exec",
            NS_STACK,
            "taskset",
            "-c",
            "1",
            &binstr,
            "kernel-http",
            "--listen",
            "198.18.0.3:80",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the kernel HTTP server")?;
    let (mut idle, up_rx, idle_out) = spawn_argv(NS_STACK, &stack_argv("up", "sleep"))?;
    let kernel = wait_up(&mut idle, &up_rx).and_then(|()| {
        thread::sleep(Duration::from_millis(200));
        println!("xtask: curl downloads 1 GB from the kernel (http://198.18.0.3/bytes/1000000000)");
        curl_with_info("http://198.18.0.3")
    });
    let _ = stop(&mut idle, idle_out);
    let _ = khttp.kill();
    let _ = khttp.wait();
    let (kernel_gbps, _) = kernel?;

    println!();
    println!("xstack connection /info after the download:");
    println!("{}", serde_json::to_string_pretty(&info)?);
    println!();
    println!("1 GB download over the same veth pair, Linux curl as the client:");
    println!("  xstack (AF_XDP, 1 busy-polling worker)  {xstack_gbps:6.2} Gbit/s");
    println!("  Linux kernel TCP                        {kernel_gbps:6.2} Gbit/s");
    println!(
        "  ratio xstack/linux                      {:6.2}",
        xstack_gbps / kernel_gbps
    );
    println!();
    println!("xstack counters (tcp, ip, arp, icmp, device):");
    println!("{}", serde_json::to_string_pretty(&json["counters"])?);
    drop(net);
    Ok(())
}

/// curl downloads `BASE/bytes/1000000000` to /dev/null and then `BASE/info` on the
/// same keep-alive connection; returns (Gbit/s of the download, the /info JSON).
fn curl_with_info(base: &str) -> Result<(f64, serde_json::Value)> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            NS_PEER,
            "taskset",
            "-c",
            "0",
            "curl",
            "-s",
            "-w",
            "\n%{http_code} %{size_download} %{speed_download}\n",
        ])
        .args(["-o", "/dev/null", &format!("{base}/bytes/1000000000")])
        .arg(format!("{base}/info"))
        .output()
        .context("running curl")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    // Output: "<write-out of 1st>", "<info json>", "<write-out of 2nd>".
    let first: Vec<&str> = lines
        .first()
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    if first.len() != 3 || first[0] != "200" || first[1] != "1000000000" {
        bail!(
            "curl download from {base} failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let gbps = first[2].parse::<f64>().context("curl speed")? * 8.0 / 1e9;
    let info = lines
        .get(1)
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    Ok((gbps, info))
}

/// Builds the release `xstack` binary and returns its path.
pub fn build_release() -> Result<PathBuf> {
    println!("xtask: building xstack (release)");
    let status = Command::new(crate::cargo())
        .current_dir(crate::workspace_root())
        .args([
            "build",
            "--release",
            "-p",
            "xstack-tools",
            "--bin",
            "xstack",
        ])
        .status()?;
    if !status.success() {
        bail!("cargo build --release -p xstack-tools failed ({status})");
    }
    Ok(target_dir().join("release").join("xstack"))
}

/// Starts `argv` (an xstack command line, possibly behind `taskset`) in namespace `ns`;
/// returns the child, a channel that fires on its `xstack: up` line, and a thread
/// collecting its stdout.
pub fn spawn_argv(
    ns: &str,
    argv: &[String],
) -> Result<(Child, mpsc::Receiver<()>, thread::JoinHandle<String>)> {
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
            "netns", "exec", NS_PEER, "ping", "-n", "-c", PINGS, "-i", "0.1", "-W", "1",
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
    // Under `perf record` (the bench's XSTACK_BENCH_PERF), perf dies of the SIGINT it
    // passed on; what xstack printed is what counts.
    let profiled = std::env::var_os("XSTACK_BENCH_PERF").is_some()
        && std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGINT);
    if !status.success() && !profiled {
        bail!("xstack exited with {status}");
    }
    serde_json::from_str(text.trim())
        .with_context(|| format!("xstack printed no JSON counters on stdout: {text:?}"))
}
