//! Shared harness for the veth integration tests: one namespace pair per test, Linux as
//! the peer, the `xstack` binary as the stack under test.
//!
//! Layout (DESIGN.md, "Facts about AF_XDP on veth"):
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
/// Address the stack owns in every test.
pub const STACK_ADDR: &str = "198.18.0.1";
/// The stack's address with its prefix, as passed to `xstack up --addr`.
pub const STACK_CIDR: &str = "198.18.0.1/24";
/// The Linux peer's address.
pub const PEER_ADDR: &str = "198.18.0.2";
/// Interface names inside the namespaces (each end lives alone in its namespace, so the
/// names can repeat across tests running in parallel).
pub const STACK_IF: &str = "vstk";
pub const PEER_IF: &str = "vpeer";
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
    let argv: Vec<_> = argv.into_iter().map(|a| a.as_ref().to_owned()).collect();
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"))
}

/// Runs a command and panics with its output unless it succeeds.
pub fn run_ok<I, S>(argv: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let argv: Vec<_> = argv.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = run(&argv);
    if !out.status.success() {
        panic!(
            "command failed ({}): {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            argv,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Deletes namespaces that a previous, crashed test process left behind (its pid is gone).
fn clean_leftovers() {
    let out = run(["ip", "netns", "list"]);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run(["ip", "netns", "del", name]);
        }
    }
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
    tcpdump: Option<Child>,
}

impl VethPair {
    /// Creates the namespaces and the pair with `queues` rx and tx queues per end, brings
    /// both ends up, configures the peer and starts capturing on it.
    pub fn new(hint: &str, queues: u32) -> VethPair {
        CLEAN_LEFTOVERS.call_once(clean_leftovers);
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
        let mut pair = VethPair {
            ns_stack: format!("{base}-a"),
            ns_peer: format!("{base}-b"),
            pcap: pcap_dir.join(format!("{base}.pcap")),
            test,
            queues,
            tcpdump: None,
        };
        // From here on, Drop removes whatever was created, even if a step below panics.
        run_ok(["ip", "netns", "add", &pair.ns_stack]);
        run_ok(["ip", "netns", "add", &pair.ns_peer]);
        let q = queues.to_string();
        run_ok([
            "ip",
            "link",
            "add",
            STACK_IF,
            "netns",
            &pair.ns_stack,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            PEER_IF,
            "netns",
            &pair.ns_peer,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
        ]);
        run_ok(["ip", "-n", &pair.ns_stack, "link", "set", "lo", "up"]);
        run_ok(["ip", "-n", &pair.ns_peer, "link", "set", "lo", "up"]);
        run_ok(["ip", "-n", &pair.ns_stack, "link", "set", STACK_IF, "up"]);
        run_ok(["ip", "-n", &pair.ns_peer, "link", "set", PEER_IF, "up"]);
        run_ok([
            "ip",
            "-n",
            &pair.ns_peer,
            "addr",
            "add",
            "198.18.0.2/24",
            "dev",
            PEER_IF,
        ]);
        // Without this the peer's frames carry only a partial checksum (DESIGN.md).
        pair.exec_peer_ok(["ethtool", "-K", PEER_IF, "tx", "off"]);
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
                "-w",
            ])
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
        run_ok([
            "ip",
            "-n",
            &self.ns_stack,
            "addr",
            "add",
            cidr,
            "dev",
            STACK_IF,
        ]);
    }

    /// Adds another address to the peer's `vpeer`.
    pub fn add_peer_addr(&self, cidr: &str) {
        run_ok([
            "ip",
            "-n",
            &self.ns_peer,
            "addr",
            "add",
            cidr,
            "dev",
            PEER_IF,
        ]);
    }

    /// Runs `cmd` inside the peer's namespace.
    pub fn exec_peer<I, S>(&self, cmd: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(ns_argv(&self.ns_peer, cmd))
    }

    /// Runs `cmd` inside the peer's namespace; panics with its output unless it succeeds.
    pub fn exec_peer_ok<I, S>(&self, cmd: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_ok(ns_argv(&self.ns_peer, cmd))
    }

    /// Runs `cmd` inside the stack's namespace.
    pub fn exec_stack_ns<I, S>(&self, cmd: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(ns_argv(&self.ns_stack, cmd))
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
        let _ = run(["ip", "netns", "del", &self.ns_stack]);
        let _ = run(["ip", "netns", "del", &self.ns_peer]);
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

fn ns_argv<I, S>(ns: &str, cmd: I) -> Vec<std::ffi::OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut v: Vec<std::ffi::OsString> =
        vec!["ip".into(), "netns".into(), "exec".into(), ns.into()];
    v.extend(cmd.into_iter().map(|a| a.as_ref().to_owned()));
    v
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
