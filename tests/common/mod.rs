//! Shared harness for the veth integration tests: one namespace pair per test, Linux as
//! the peer, the `xstack` binary as the stack under test.
//!
//! Layout (the crate `xstack-testnet` sets it up; see docs/ARCHITECTURE.md for AF_XDP on
//! veth):
//!
//! ```text
//!   netns <..>-a                          netns <..>-b
//!   vstk  (no kernel address; the stack   vpeer 198.18.0.2/24, tx checksum offload off,
//!          owns 198.18.0.1/24)              tcpdump -w <pcap> for the whole test
//! ```
//!
//! Everything is torn down on drop, also when the test panics; a failing test keeps its
//! pcap under `target/veth-pcaps/<test>.pcap`. Only addresses in 198.18.0.0/15 inside
//! the namespaces made here are ever sent to.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

/// The `xstack` binary cargo built for these tests.
pub const XSTACK_BIN: &str = env!("CARGO_BIN_EXE_xstack");
/// Addresses and interface names (each end lives alone in its namespace, so the names can
/// repeat across tests running in parallel).
// Not every test uses every name.
#[allow(unused_imports)]
pub use xstack_testnet::{PEER_ADDR, PEER_IF, STACK_ADDR, STACK_CIDR, STACK_IF};
/// How long `xstack up` may take to print its ready line.
pub const UP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the stack may take to exit after a signal.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Prefix of every namespace this harness creates; the pid follows, so leftovers of a
/// crashed run can be recognised and removed.
const NS_PREFIX: &str = "xst-";

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static CLEAN_LEFTOVERS: Once = Once::new();

/// True when this process may create namespaces and load XDP programs. Otherwise prints
/// why the test is skipped and returns false (the test then returns early and passes).
pub fn require_root() -> bool {
    if !has_net_caps() {
        println!("skipping veth test: needs root (CAP_NET_ADMIN, CAP_BPF)");
        return false;
    }
    for tool in ["ip", "ping", "ethtool"] {
        if !have_tool(tool) {
            println!("skipping veth test: `{tool}` not found in PATH (apt-get install iproute2 iputils-ping ethtool)");
            return false;
        }
    }
    true
}

/// Like [`require_root`] for an extra tool a single test needs.
pub fn require_tool(tool: &str) -> bool {
    if have_tool(tool) {
        return true;
    }
    println!("skipping: `{tool}` not found in PATH");
    false
}

/// CapEff holds CAP_NET_ADMIN (12) and CAP_BPF (39) or CAP_SYS_ADMIN (21).
fn has_net_caps() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let Some(hex) = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(str::trim)
    else {
        return false;
    };
    let Ok(caps) = u64::from_str_radix(hex, 16) else {
        return false;
    };
    let bit = |n: u32| caps & (1u64 << n) != 0;
    bit(12) && (bit(39) || bit(21))
}

/// `tool` is an executable somewhere in PATH.
pub fn have_tool(tool: &str) -> bool {
    find_in_path(tool).is_some()
}

fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The cargo target directory (parent of `target/tmp`).
pub fn target_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(Path::to_path_buf).unwrap_or(tmp)
}

/// Name of the running test (libtest names the test thread after it).
pub fn test_name(fallback: &str) -> String {
    match thread::current().name() {
        Some(n) if n != "main" => n.replace("::", "-"),
        _ => fallback.to_string(),
    }
}

/// Runs a command to completion, capturing its output.
pub fn run<I, S>(argv: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    xstack_testnet::run(argv).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a command and panics with its output unless it succeeds.
pub fn run_ok<I, S>(argv: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    xstack_testnet::run_ok(argv).unwrap_or_else(|e| panic!("{e}"))
}

/// A veth pair across two fresh network namespaces: `vstk` (the stack's side, namespace
/// `ns_stack`) and `vpeer` (Linux, namespace `ns_peer`, 198.18.0.2/24).
pub struct VethPair {
    /// Namespace holding `vstk`, where `xstack up` runs.
    pub ns_stack: String,
    /// Namespace holding `vpeer`, the Linux peer.
    pub ns_peer: String,
    /// Test name, used for the pcap's name.
    pub test: String,
    /// Number of rx/tx queues on each end.
    pub queues: u32,
    pcap: PathBuf,
    /// `tcpdump -s` for the capture (None: whole frames).
    snaplen: Option<u32>,
    tcpdump: Option<Child>,
    /// The namespaces and the pair; deleted after the capture is stopped.
    net: xstack_testnet::NsPair,
}

impl VethPair {
    /// Creates the namespaces and the pair with `queues` rx and tx queues per end, brings
    /// both ends up, configures the peer and starts capturing on it.
    pub fn new(hint: &str, queues: u32) -> VethPair {
        VethPair::new_with_snaplen(hint, queues, None)
    }

    /// Like [`VethPair::new`], but the capture keeps only the first `snaplen` bytes of
    /// each frame (`tcpdump -s`): enough for the headers of a bulk transfer, without a
    /// pcap as large as the transfer itself.
    pub fn new_headers_only(hint: &str, queues: u32, snaplen: u32) -> VethPair {
        VethPair::new_with_snaplen(hint, queues, Some(snaplen))
    }

    fn new_with_snaplen(hint: &str, queues: u32, snaplen: Option<u32>) -> VethPair {
        CLEAN_LEFTOVERS.call_once(|| xstack_testnet::remove_stale(NS_PREFIX));
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let hint: String = hint
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(16)
            .collect();
        let base = format!("{NS_PREFIX}{}-{n}-{hint}", std::process::id());
        let test = test_name(&hint);
        let pcap_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("veth-pcaps-running");
        let _ = std::fs::create_dir_all(&pcap_dir);
        let net =
            xstack_testnet::NsPair::create(&format!("{base}-a"), &format!("{base}-b"), queues)
                .unwrap_or_else(|e| panic!("{e}"));
        let mut pair = VethPair {
            ns_stack: net.stack.name().to_string(),
            ns_peer: net.peer.name().to_string(),
            pcap: pcap_dir.join(format!("{base}.pcap")),
            test,
            queues,
            snaplen,
            tcpdump: None,
            net,
        };
        pair.start_tcpdump();
        pair
    }

    fn start_tcpdump(&mut self) {
        if !have_tool("tcpdump") {
            println!("note: tcpdump not found, no pcap for this test");
            return;
        }
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns_peer,
                "tcpdump",
                "-n",
                "-U",
                "--immediate-mode",
                "-Z",
                "root",
                "-i",
                PEER_IF,
            ])
            .args(
                self.snaplen
                    .map(|s| ["-s".to_string(), s.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .arg("-w")
            .arg(&self.pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                println!("note: cannot start tcpdump: {e}");
                return;
            }
        };
        // Wait for "listening on vpeer" so the capture covers the whole test.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut lines = BufReader::new(stderr).lines();
            let mut sent = false;
            while let Some(Ok(line)) = lines.next() {
                if !sent && line.contains("listening on") {
                    let _ = tx.send(());
                    sent = true;
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(5)).is_err() {
            println!("note: tcpdump did not report listening within 5 s");
        }
        self.tcpdump = Some(child);
    }

    /// Gives the stack side's kernel an address of its own (e.g. 198.18.0.3/24).
    pub fn add_stack_kernel_addr(&self, cidr: &str) {
        self.net
            .add_stack_kernel_addr(cidr)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Adds another address to the peer's `vpeer`.
    pub fn add_peer_addr(&self, cidr: &str) {
        self.net
            .add_peer_addr(cidr)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `cmd` inside the peer's namespace.
    pub fn exec_peer<I, S>(&self, cmd: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(xstack_testnet::ns_argv(&self.ns_peer, cmd))
    }

    /// Runs `cmd` inside the peer's namespace; panics with its output unless it succeeds.
    pub fn exec_peer_ok<I, S>(&self, cmd: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_ok(xstack_testnet::ns_argv(&self.ns_peer, cmd))
    }

    /// Runs `cmd` inside the stack's namespace.
    pub fn exec_stack_ns<I, S>(&self, cmd: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(xstack_testnet::ns_argv(&self.ns_stack, cmd))
    }

    /// `ip link show vstk` in the stack's namespace.
    pub fn stack_link(&self) -> String {
        let out = run_ok(["ip", "-n", &self.ns_stack, "link", "show", STACK_IF]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The id of the XDP program attached to `vstk`, if any (`prog/xdp id N` in `ip link`).
    pub fn xdp_prog_id(&self) -> Option<u32> {
        let link = self.stack_link();
        let rest = &link[link.find("prog/xdp")?..];
        let mut words = rest.split_whitespace();
        while let Some(w) = words.next() {
            if w == "id" {
                return words.next().and_then(|id| id.parse().ok());
            }
        }
        // Attached, id not shown: report it as id 0 rather than "not attached".
        Some(0)
    }

    /// `ethtool -S vstk` lines mentioning xdp (per-queue packet counts), for diagnostics.
    pub fn stack_xdp_ethtool_stats(&self) -> String {
        let out = self.exec_stack_ns(["ethtool", "-S", STACK_IF]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("xdp_packets"))
            .map(|l| format!("{}\n", l.trim()))
            .collect()
    }

    /// Per-queue `rx_queue_N_xdp_packets` of `vstk`.
    pub fn stack_xdp_packets_per_queue(&self) -> Vec<u64> {
        let mut v = Vec::new();
        for line in self.stack_xdp_ethtool_stats().lines() {
            let Some((key, val)) = line.split_once(':') else {
                continue;
            };
            let Some(q) = key
                .trim()
                .strip_prefix("rx_queue_")
                .and_then(|r| r.strip_suffix("_xdp_packets"))
                .and_then(|q| q.parse::<usize>().ok())
            else {
                continue;
            };
            if v.len() <= q {
                v.resize(q + 1, 0);
            }
            v[q] = val.trim().parse().unwrap_or(0);
        }
        v
    }

    /// Pings `dst` from the peer: `ping -c count -i interval -W 1 [-I src] dst`.
    pub fn ping(&self, dst: &str, count: u32, interval: &str, src: Option<&str>) -> PingResult {
        let count_s = count.to_string();
        let mut cmd = vec![
            "ping", "-n", "-q", "-c", &count_s, "-i", interval, "-W", "1",
        ];
        if let Some(src) = src {
            cmd.extend(["-I", src]);
        }
        cmd.push(dst);
        let out = self.exec_peer(&cmd);
        PingResult::parse(&cmd.join(" "), &out)
    }

    /// Starts the stack in the stack's namespace on `vstk` with address 198.18.0.1/24 and
    /// `extra` arguments (`--idle sleep` is added unless `extra` sets `--idle`), and waits
    /// for its `xstack: up` line.
    pub fn spawn_stack(&self, extra: &[&str]) -> StackProc {
        let mut args = vec!["up", "--iface", STACK_IF, "--addr", STACK_CIDR];
        args.extend_from_slice(extra);
        if !extra.contains(&"--idle") {
            args.extend(["--idle", "sleep"]);
        }
        self.spawn_stack_raw(&args)
    }

    /// Starts `xstack ARGS` in the stack's namespace and waits for `xstack: up`. Panics
    /// (with everything the stack printed) if it exits or stays silent instead.
    pub fn spawn_stack_raw(&self, args: &[&str]) -> StackProc {
        let mut proc = StackProc::start(&self.ns_stack, &[], XSTACK_BIN, args);
        match proc.wait_up(UP_TIMEOUT) {
            UpOutcome::Up(line) => {
                eprintln!("stack is up: {line}");
                proc
            }
            UpOutcome::Exited(status) => panic!(
                "xstack {} exited before `xstack: up` ({status})\nstderr:\n{}\nstdout:\n{}",
                args.join(" "),
                proc.stderr_text(),
                proc.stdout_text()
            ),
            UpOutcome::Timeout => panic!(
                "xstack {} printed no `xstack: up` within {UP_TIMEOUT:?}\nstderr so far:\n{}",
                args.join(" "),
                proc.stderr_text()
            ),
        }
    }

    /// Runs `[prefix...] BIN ARGS` in the stack's namespace, expecting it to fail on its
    /// own. If it comes up instead, it is stopped and the outcome says so.
    pub fn run_stack_expect_exit(&self, prefix: &[&str], bin: &str, args: &[&str]) -> OneShot {
        let mut proc = StackProc::start(&self.ns_stack, prefix, bin, args);
        let outcome = proc.wait_up(UP_TIMEOUT);
        let came_up = matches!(outcome, UpOutcome::Up(_));
        let status = match outcome {
            UpOutcome::Exited(s) => Some(s),
            _ => {
                proc.kill();
                None
            }
        };
        // Let the drain threads see EOF.
        let _ = proc.wait_timeout(Duration::from_secs(2));
        OneShot {
            argv: format!("{} {} {}", prefix.join(" "), bin, args.join(" ")),
            status,
            came_up,
            stderr: proc.stderr_text(),
            stdout: proc.stdout_text(),
        }
    }

    /// Where the pcap of this test is being written.
    pub fn pcap_path(&self) -> &Path {
        &self.pcap
    }

    /// Namespace names, for messages.
    pub fn describe(&self) -> String {
        format!("{} (vstk) <-> {} (vpeer)", self.ns_stack, self.ns_peer)
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        if let Some(mut td) = self.tcpdump.take() {
            // Let the last frames of the test reach the capture before stopping it.
            thread::sleep(Duration::from_millis(100));
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child
            // (`ip netns exec` execs tcpdump, so it is tcpdump's).
            unsafe {
                libc::kill(td.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                match td.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = td.kill();
                        let _ = td.wait();
                        break;
                    }
                }
            }
        }
        // The namespaces go when `self.net` drops, after this.
        if self.pcap.exists() {
            if thread::panicking() {
                let dir = target_dir().join("veth-pcaps");
                let _ = std::fs::create_dir_all(&dir);
                let keep = dir.join(format!("{}.pcap", self.test));
                if std::fs::rename(&self.pcap, &keep).is_ok() {
                    eprintln!(
                        "veth test failed; packet capture kept at {}",
                        keep.display()
                    );
                } else {
                    eprintln!(
                        "veth test failed; packet capture at {}",
                        self.pcap.display()
                    );
                }
            } else {
                let _ = std::fs::remove_file(&self.pcap);
            }
        }
    }
}

/// The outcome of one `ping` run.
#[derive(Debug)]
pub struct PingResult {
    /// The command, for messages.
    pub cmd: String,
    pub transmitted: u32,
    pub received: u32,
    /// Everything ping printed.
    pub output: String,
}

impl PingResult {
    fn parse(cmd: &str, out: &Output) -> PingResult {
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut transmitted = 0;
        let mut received = 0;
        // "200 packets transmitted, 200 received, 0% packet loss, time 1123ms"
        if let Some(line) = output.lines().find(|l| l.contains("packets transmitted")) {
            for part in line.split(',') {
                let mut w = part.split_whitespace();
                let n = w.next().and_then(|n| n.parse().ok());
                match (n, w.next()) {
                    (Some(n), Some("packets")) => transmitted = n,
                    (Some(n), Some("received")) => received = n,
                    _ => {}
                }
            }
        }
        PingResult {
            cmd: cmd.to_string(),
            transmitted,
            received,
            output,
        }
    }

    /// Panics with ping's output unless every one of `count` echoes was answered.
    pub fn assert_all(&self, count: u32) {
        assert!(
            self.transmitted == count && self.received == count,
            "`{}`: {}/{} answered (expected {count}/{count})\n{}",
            self.cmd,
            self.received,
            self.transmitted,
            self.output
        );
    }
}

/// What `xstack up` did while we waited for it.
pub enum UpOutcome {
    /// Printed its ready line (given).
    Up(String),
    /// Exited first.
    Exited(ExitStatus),
    /// Neither, within the timeout.
    Timeout,
}

/// Result of [`VethPair::run_stack_expect_exit`].
#[derive(Debug)]
pub struct OneShot {
    pub argv: String,
    /// None if it had to be killed.
    pub status: Option<ExitStatus>,
    /// It printed `xstack: up` (so it did not fail as expected).
    pub came_up: bool,
    pub stderr: String,
    pub stdout: String,
}

impl OneShot {
    /// Asserts the error contract: exits on its own with `code`, stderr is exactly one
    /// line starting with `xstack: error: `, nothing panicked.
    pub fn assert_error(&self, code: i32) {
        let ctx = format!(
            "`{}`\nexit: {:?}\nstderr:\n{}\nstdout:\n{}",
            self.argv, self.status, self.stderr, self.stdout
        );
        assert!(
            !self.came_up,
            "expected a start-up error, but the stack came up: {ctx}"
        );
        let status = self.status.unwrap_or_else(|| panic!("did not exit: {ctx}"));
        assert!(
            !self.stderr.contains("panicked"),
            "panic text on stderr: {ctx}"
        );
        assert!(
            !self.stderr.contains("RUST_BACKTRACE"),
            "backtrace hint on stderr: {ctx}"
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("xstack: error: "),
            "expected exactly one stderr line starting with `xstack: error: `: {ctx}"
        );
        assert_eq!(status.code(), Some(code), "exit code: {ctx}");
    }
}

/// A running `xstack` (inside `ip netns exec`, which execs it, so the pid is the stack's).
/// Its stderr is drained by a thread and echoed to the test output; killed on drop.
pub struct StackProc {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    up_rx: mpsc::Receiver<Option<String>>,
    stdout_thread: Option<thread::JoinHandle<()>>,
    stderr_thread: Option<thread::JoinHandle<()>>,
}

impl StackProc {
    fn start(ns: &str, prefix: &[&str], bin: &str, args: &[&str]) -> StackProc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(prefix)
            .arg(bin)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let (up_tx, up_rx) = mpsc::channel();
        let err_pipe = child.stderr.take().expect("piped stderr");
        let err_buf = stderr.clone();
        let stderr_thread = thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(err_pipe).lines() {
                let Ok(line) = line else { break };
                eprintln!("[xstack stderr] {line}");
                {
                    let mut buf = err_buf.lock().unwrap_or_else(|p| p.into_inner());
                    buf.push_str(&line);
                    buf.push('\n');
                }
                if !sent && line.starts_with("xstack: up ") {
                    let _ = up_tx.send(Some(line));
                    sent = true;
                }
            }
            if !sent {
                let _ = up_tx.send(None);
            }
        });
        let mut out_pipe = child.stdout.take().expect("piped stdout");
        let out_buf = stdout.clone();
        let stdout_thread = thread::spawn(move || {
            let mut s = String::new();
            let _ = out_pipe.read_to_string(&mut s);
            out_buf
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&s);
        });
        StackProc {
            child,
            stderr,
            stdout,
            up_rx,
            stdout_thread: Some(stdout_thread),
            stderr_thread: Some(stderr_thread),
        }
    }

    fn wait_up(&mut self, timeout: Duration) -> UpOutcome {
        match self.up_rx.recv_timeout(timeout) {
            Ok(Some(line)) => UpOutcome::Up(line),
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stderr closed: the process is exiting.
                match self.wait_timeout(Duration::from_secs(5)) {
                    Some(s) => UpOutcome::Exited(s),
                    None => UpOutcome::Timeout,
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => UpOutcome::Timeout,
        }
    }

    /// The stack's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the stack wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Everything the stack wrote to stdout (complete once it has exited).
    pub fn stdout_text(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    self.join_drains();
                    return Some(s);
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => return None,
            }
        }
    }

    fn join_drains(&mut self) {
        for t in [self.stdout_thread.take(), self.stderr_thread.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
    }

    fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.join_drains();
    }

    /// Sends `signal` (libc::SIGINT / SIGTERM), waits for the exit and parses the JSON
    /// counters from stdout. Panics with the stack's output if it does not exit in time,
    /// exits non-zero, or prints no JSON object.
    pub fn stop(mut self, signal: i32) -> (ExitStatus, serde_json::Value) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
        let Some(status) = self.wait_timeout(STOP_TIMEOUT) else {
            let err = self.stderr_text();
            self.kill();
            panic!(
                "xstack did not exit within {STOP_TIMEOUT:?} of signal {signal}\nstderr:\n{err}"
            );
        };
        let out = self.stdout_text();
        let err = self.stderr_text();
        assert!(
            status.success(),
            "xstack exited with {status} after signal {signal}\nstderr:\n{err}\nstdout:\n{out}"
        );
        assert!(!err.contains("panicked"), "panic on stderr:\n{err}");
        let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| {
            panic!("stdout is not one JSON object ({e})\nstdout:\n{out}\nstderr:\n{err}")
        });
        eprintln!("xstack counters: {json}");
        (status, json)
    }
}

impl Drop for StackProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Per-queue figures out of the exit JSON: `(queue, xdp_redirected, xdp_passed)`.
pub fn json_queues(json: &serde_json::Value) -> Vec<(u64, u64, u64)> {
    let Some(qs) = json.get("queues").and_then(|q| q.as_array()) else {
        panic!("exit JSON has no `queues` array: {json}");
    };
    qs.iter()
        .map(|q| {
            let f = |k: &str| {
                q.get(k)
                    .and_then(|v| v.as_u64())
                    .unwrap_or_else(|| panic!("queue entry lacks numeric `{k}`: {q}"))
            };
            (f("queue"), f("xdp_redirected"), f("xdp_passed"))
        })
        .collect()
}

/// Copies the xstack binary into a fresh 0755 directory under /tmp with mode 0755, so an
/// unprivileged user can execute it whatever the permissions on the target directory.
/// The directory is removed when the returned guard drops.
pub fn world_executable_copy() -> TempBin {
    use std::os::unix::fs::PermissionsExt;
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("xstack-bin-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let bin = dir.join("xstack");
    std::fs::copy(XSTACK_BIN, &bin).expect("copy xstack binary");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod bin");
    TempBin { dir, bin }
}

/// A copy of the binary; its directory is deleted on drop.
pub struct TempBin {
    dir: PathBuf,
    /// Path of the copy.
    pub bin: PathBuf,
}

impl Drop for TempBin {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------
// TCP / HTTP helpers (tests/veth_tcp_*.rs): `xstack http` as the server, `xstack get/post`
// as one-shot clients, Linux tools (curl, python3, nft) as the peer.
// ---------------------------------------------------------------------------------------

/// How long `xstack http` may take from `xstack: up` to `xstack: http listening`.
pub const HTTP_LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

impl VethPair {
    /// Starts `xstack http --iface vstk --addr 198.18.0.1/24 EXTRA` in the stack's
    /// namespace (`--idle sleep` is added unless `extra` sets `--idle`) and waits for both
    /// `xstack: up` and `xstack: http listening on port`. Panics with the server's output
    /// if it exits or stays silent instead.
    pub fn spawn_http(&self, extra: &[&str]) -> StackProc {
        let mut args = vec!["http", "--iface", STACK_IF, "--addr", STACK_CIDR];
        args.extend_from_slice(extra);
        if !extra.contains(&"--idle") {
            args.extend(["--idle", "sleep"]);
        }
        let mut proc = self.spawn_stack_raw(&args);
        let deadline = Instant::now() + HTTP_LISTEN_TIMEOUT;
        loop {
            let err = proc.stderr_text();
            if let Some(line) = err
                .lines()
                .find(|l| l.starts_with("xstack: http listening on port"))
            {
                eprintln!("http server is up: {line}");
                return proc;
            }
            if !proc.is_running() {
                let _ = proc.wait_timeout(Duration::from_secs(2));
                panic!(
                    "xstack {} exited before `http listening`\nstderr:\n{}\nstdout:\n{}",
                    args.join(" "),
                    proc.stderr_text(),
                    proc.stdout_text()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "xstack {} printed no `http listening` within {HTTP_LISTEN_TIMEOUT:?}\nstderr so far:\n{err}",
                    args.join(" ")
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the one-shot `xstack ARGS` (e.g. `get URL --iface vstk ...`) in the stack's
    /// namespace to completion; kills it if it is still running after `timeout`.
    pub fn run_xstack_client(&self, args: &[&str], timeout: Duration) -> ClientRun {
        let started = Instant::now();
        let mut proc = StackProc::start(&self.ns_stack, &[], XSTACK_BIN, args);
        let status = proc.wait_timeout(timeout);
        let elapsed = started.elapsed();
        if status.is_none() {
            proc.kill();
        }
        ClientRun {
            argv: format!("xstack {}", args.join(" ")),
            status,
            elapsed,
            stdout: proc.stdout_text(),
            stderr: proc.stderr_text(),
        }
    }

    /// Starts `argv` in the peer's namespace in the background (see [`PeerProc`]).
    pub fn spawn_peer(&self, label: &str, argv: &[&str]) -> PeerProc {
        PeerProc::start(&self.ns_peer, label, argv)
    }

    /// Runs `curl -sS ARGS` in the peer's namespace; `--max-time` bounds it.
    pub fn curl(&self, args: &[&str]) -> CurlRun {
        let mut argv = vec!["curl", "-sS"];
        argv.extend_from_slice(args);
        let started = Instant::now();
        let out = self.exec_peer(&argv);
        CurlRun {
            argv: argv.join(" "),
            status: out.status,
            elapsed: started.elapsed(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Downloads `url` with curl in the peer's namespace (at most `max_secs` seconds) and
    /// hashes the body as it streams in, without storing it.
    pub fn curl_sha256(&self, url: &str, max_secs: u32) -> CurlDigest {
        self.curl_sha256_with(url, max_secs, &[])
    }

    /// [`VethPair::curl_sha256`] with more curl options (e.g. `--limit-rate`).
    pub fn curl_sha256_with(&self, url: &str, max_secs: u32, extra: &[&str]) -> CurlDigest {
        use sha2::{Digest, Sha256};
        let max = max_secs.to_string();
        let mut argv = vec![
            "curl",
            "-sS",
            "--max-time",
            &max,
            "-w",
            "%{stderr}curl: http_code=%{http_code} size_download=%{size_download} speed_download=%{speed_download} local_port=%{local_port}\\n",
        ];
        argv.extend_from_slice(extra);
        argv.push(url);
        let started = Instant::now();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns_peer])
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start curl: {e}"));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let err_thread = thread::spawn(move || {
            let mut s = String::new();
            let _ = err_pipe.read_to_string(&mut s);
            s
        });
        let mut out = child.stdout.take().expect("piped stdout");
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match out.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    bytes += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("reading curl's output: {e}"),
            }
        }
        let status = child.wait().expect("wait for curl");
        let elapsed = started.elapsed();
        let stderr = err_thread.join().unwrap_or_default();
        let http_code = stderr
            .split("http_code=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|c| c.parse().ok());
        CurlDigest {
            argv: argv.join(" "),
            status,
            http_code,
            bytes,
            sha256: hex_lower(&hasher.finalize()),
            elapsed,
            stderr,
        }
    }

    /// Loads `rules` with `nft -f` in the peer's namespace (the file is written to `dir`).
    pub fn nft_apply(&self, dir: &TestDir, rules: &str) {
        let file = dir.path.join("rules.nft");
        std::fs::write(&file, rules).expect("write nft rules");
        let out = self.exec_peer([OsStr::new("nft"), OsStr::new("-f"), file.as_os_str()]);
        assert!(
            out.status.success(),
            "nft -f failed ({}):\n{rules}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `nft list ruleset` in the peer's namespace (with the rules' counters).
    pub fn nft_ruleset(&self) -> String {
        let out = self.exec_peer(["nft", "list", "ruleset"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ethtool -S vstk` counters of frames the stack side's veth dropped on receive
    /// (`rx_queue_N_drops`: among them frames XDP redirected to an AF_XDP socket whose rx
    /// ring was full or whose fill ring was empty). The stack's own counters cannot see
    /// these; its `xdp_redirected` counts them, its `rx_frames` does not.
    pub fn stack_rx_drops(&self) -> String {
        let out = self.exec_stack_ns(["ethtool", "-S", STACK_IF]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("drops") || l.contains("xdp_redirect"))
            .map(|l| format!("{}\n", l.trim()))
            .collect()
    }

    /// Runs `python3 -c SCRIPT ARGS` in the peer's namespace.
    pub fn peer_python(&self, script: &str, args: &[&str]) -> Output {
        let py = python3_path();
        let mut argv = vec![py.as_str(), "-c", script];
        argv.extend_from_slice(args);
        self.exec_peer(&argv)
    }
}

/// The real python3 executable (not a pyenv-style shim), so a background python is the
/// very process we started and can be stopped by its pid.
pub fn python3_path() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let out = run(["python3", "-c", "import sys; print(sys.executable)"]);
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !p.is_empty() {
            p
        } else {
            "python3".to_string()
        }
    })
    .clone()
}

/// Lowercase hex.
pub fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex sha256 of a file.
pub fn file_sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut f =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read file");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex_lower(&hasher.finalize())
}

/// A scratch directory under the cargo target tmp dir, removed on drop (kept when the test
/// fails, for inspection).
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(hint: &str) -> TestDir {
        use std::os::unix::fs::PermissionsExt;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("veth-tcp-{}-{n}-{hint}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create test dir");
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
        TestDir { path }
    }

    /// Writes `len` random bytes (from /dev/urandom) to `name`; returns the path.
    pub fn random_file(&self, name: &str, len: usize) -> PathBuf {
        let mut data = vec![0u8; len];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut data))
            .expect("read /dev/urandom");
        let p = self.path.join(name);
        std::fs::write(&p, &data).expect("write random file");
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("test files kept at {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// One run of a one-shot `xstack get/post`.
#[derive(Debug)]
pub struct ClientRun {
    pub argv: String,
    /// None: still running at the timeout, killed.
    pub status: Option<ExitStatus>,
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl ClientRun {
    /// Everything about the run, for failure messages.
    pub fn context(&self) -> String {
        format!(
            "`{}`\nexit: {:?} after {:.2?}\nstdout:\n{}\nstderr:\n{}",
            self.argv, self.status, self.elapsed, self.stdout, self.stderr
        )
    }

    /// Asserts success (exit 0, no panic) and returns the one JSON line on stdout.
    pub fn json(&self) -> serde_json::Value {
        let ctx = self.context();
        let status = self
            .status
            .unwrap_or_else(|| panic!("client did not finish in time (killed): {ctx}"));
        assert!(status.success(), "client failed: {ctx}");
        assert!(!self.stderr.contains("panicked"), "panic on stderr: {ctx}");
        let lines: Vec<&str> = self
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "expected one JSON line on stdout: {ctx}");
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {ctx}"))
    }

    /// Asserts the client's error contract: exits on its own with `code`, no panic, nothing
    /// on stdout, exactly one `xstack: error: ` line on stderr (besides the informational
    /// `xstack: up` line) that mentions one of `any_of` (case-insensitive). Returns it.
    pub fn assert_error(&self, code: i32, any_of: &[&str]) -> String {
        let ctx = self.context();
        let status = self
            .status
            .unwrap_or_else(|| panic!("client did not exit in time (killed): {ctx}"));
        assert!(
            !self.stderr.contains("panicked"),
            "panic text on stderr: {ctx}"
        );
        assert!(
            !self.stderr.contains("RUST_BACKTRACE"),
            "backtrace hint on stderr: {ctx}"
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        let errors: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("xstack: error: "))
            .collect();
        let others: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| !l.starts_with("xstack: error: ") && !l.starts_with("xstack: up "))
            .collect();
        assert!(
            errors.len() == 1 && others.is_empty(),
            "expected exactly one `xstack: error: ` line (and at most the `xstack: up` line): {ctx}"
        );
        assert!(
            self.stdout.trim().is_empty(),
            "expected nothing on stdout: {ctx}"
        );
        assert_eq!(status.code(), Some(code), "exit code: {ctx}");
        let lower = errors[0].to_lowercase();
        assert!(
            any_of.iter().any(|w| lower.contains(&w.to_lowercase())),
            "error line should mention one of {any_of:?}: {ctx}"
        );
        errors[0].to_string()
    }
}

/// One curl run.
#[derive(Debug)]
pub struct CurlRun {
    pub argv: String,
    pub status: ExitStatus,
    pub elapsed: Duration,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl CurlRun {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn context(&self) -> String {
        let mut out = self.stdout_text();
        if out.len() > 4000 {
            out.truncate(4000);
            out.push_str("...(truncated)");
        }
        format!(
            "`{}`\nexit: {} after {:.2?}\nstdout:\n{out}\nstderr:\n{}",
            self.argv, self.status, self.elapsed, self.stderr
        )
    }

    /// Asserts curl succeeded; returns stdout as text.
    pub fn ok_text(&self) -> String {
        assert!(self.status.success(), "curl failed: {}", self.context());
        self.stdout_text()
    }
}

/// The outcome of [`VethPair::curl_sha256`].
#[derive(Debug)]
pub struct CurlDigest {
    pub argv: String,
    pub status: ExitStatus,
    /// From curl's `-w` line.
    pub http_code: Option<u32>,
    pub bytes: u64,
    pub sha256: String,
    pub elapsed: Duration,
    pub stderr: String,
}

impl CurlDigest {
    pub fn context(&self) -> String {
        format!(
            "`{}`\nexit: {} after {:.2?}, {} bytes, sha256 {}\nstderr:\n{}",
            self.argv, self.status, self.elapsed, self.bytes, self.sha256, self.stderr
        )
    }

    /// Gbit/s of the body over the whole curl run.
    pub fn gbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }
}

/// A background process in the peer's namespace (a Linux server: python3 http.server, a
/// resetting socket server). Its stdout and stderr are collected (and echoed to the test
/// output with `label`); it is stopped by its pid (SIGTERM, then SIGKILL) on drop.
pub struct PeerProc {
    pub label: String,
    child: Child,
    output: Arc<Mutex<String>>,
    drains: Vec<thread::JoinHandle<()>>,
}

impl PeerProc {
    fn start(ns: &str, label: &str, argv: &[&str]) -> PeerProc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {argv:?} in {ns}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let mut drains = Vec::new();
        let pipes: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().expect("piped stdout")),
            Box::new(child.stderr.take().expect("piped stderr")),
        ];
        for pipe in pipes {
            let buf = output.clone();
            let label = label.to_string();
            drains.push(thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[{label}] {line}");
                    let mut b = buf.lock().unwrap_or_else(|p| p.into_inner());
                    b.push_str(&line);
                    b.push('\n');
                }
            }));
        }
        PeerProc {
            label: label.to_string(),
            child,
            output,
            drains,
        }
    }

    /// Everything it printed so far (stdout and stderr, interleaved by line).
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sends it `signal` (its pid: `ip netns exec` execs the program).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits until its output contains `needle`; panics with the output if it exits or
    /// `timeout` passes first.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output().contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "{} exited ({status}) before printing {needle:?}\noutput:\n{}",
                    self.label,
                    self.output()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not print {needle:?} within {timeout:?}\noutput:\n{}",
                    self.label,
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PeerProc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child
            // (`ip netns exec` execs the program).
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        for d in self.drains.drain(..) {
            let _ = d.join();
        }
    }
}

/// A counter out of the `counters` object of `xstack`'s stats/exit JSON (0 if absent).
pub fn json_counter(json: &serde_json::Value, name: &str) -> u64 {
    json.get("counters")
        .and_then(|c| c.get(name))
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

/// VmRSS of process `pid` in KiB (0 if it cannot be read).
pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Python peer (`python3 -c IDLE_OPENER N`): opens N connections to the stack's port
/// 9000 one after another, prints "open N", then holds them, idle, until killed.
pub const IDLE_OPENER: &str = r#"
import resource, socket, sys, time
n = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1024, n + 1024))
socks = []
for i in range(n):
    s = socket.socket()
    s.settimeout(10)
    s.connect(("198.18.0.1", 9000))
    socks.append(s)
print("open", len(socks), flush=True)
time.sleep(600)
"#;

/// Python peer (`python3 -c STALL_CLIENT N`): opens N connections to the stack's port
/// 80, asks each for 100 MB with a 4 KiB receive buffer, never reads, prints "opened N"
/// and holds them until killed (the zero-window stall).
pub const STALL_CLIENT: &str = r#"
import resource, socket, sys, time
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks = []
for i in range(int(sys.argv[1])):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("198.18.0.1", 80))
    s.sendall(b"GET /bytes/100000000 HTTP/1.1\r\nHost: x\r\n\r\n")
    socks.append(s)
print("opened", len(socks), flush=True)
time.sleep(600)
"#;
