//! `cargo xtask bench`: xstack beside Linux's TCP on the same veth pair, in the same run.
//!
//! The stack's side of the pair carries both the stack (198.18.0.1, through AF_XDP) and a
//! kernel address (198.18.0.3) on the same interface with the same XDP program attached,
//! so both see the same MTU/GSO conditions. Each measurement alternates xstack and Linux
//! for `--rounds` rounds and reports medians, with the ratio xstack/Linux:
//! ICMP echo RTT (p50/p99), bulk throughput stack->Linux (curl on the peer) and
//! Linux->stack (`xstack get` vs the same client on kernel sockets), and a 1-byte
//! request/response latency (p50/p99), and throughput through a router that drops 1% of
//! the packets each way, per congestion-control module (`bench/loss.rs`). Results go to
//! `target/bench/bench.json`.

use crate::demo::{
    build_release, install_signal_handlers, interrupted, spawn_argv, stop, wait_up, NsPair,
};
use crate::sys::{ensure_packages, is_root, must};
use anyhow::{bail, Context, Result};
use std::process::Command;

mod conns;
mod loss;
mod nginx;

const NS_STACK: &str = "xsbench-a";
const NS_PEER: &str = "xsbench-b";
const KERNEL_ADDR: &str = "198.18.0.3";
const STACK_ADDR: &str = "198.18.0.1";
/// Namespaces of the multi-worker row's own veth pair (created with 1, then 2 queues).
const NS_MW_STACK: &str = "xsbench-mw-a";
const NS_MW_PEER: &str = "xsbench-mw-b";
/// Parallel downloads in the multi-worker row.
const MW_PARALLEL: usize = 4;

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Rounds per measurement (the median over rounds is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Echo requests per round.
    #[arg(long, default_value_t = 1000)]
    pings: usize,
    /// The measured stack's idle mode. `sleep` lets the worker share its CPU with the
    /// application threads (2-core machines); `busy` needs a core of its own.
    #[arg(long, default_value = "sleep")]
    idle: String,
    /// CPU for the stack's worker (and the kernel baseline's server); Linux's client
    /// is pinned to the other one.
    #[arg(long, default_value_t = 1)]
    stack_cpu: usize,
    /// MTU of both ends of the veth pair (native XDP on veth allows up to 3506 with
    /// 4 KiB pages).
    #[arg(long, default_value_t = 1500)]
    mtu: u32,
    /// Bytes per bulk transfer.
    #[arg(long, default_value_t = 1_000_000_000)]
    bytes: u64,
    /// SYNs per second of the "SYN flood" row (a rate the sender cannot reach, e.g.
    /// 10000000, floods as fast as it can; the row reports the rate reached).
    #[arg(long, default_value_t = 50_000)]
    flood_rate: u64,
    /// Round trips per request/response round.
    #[arg(long, default_value_t = 50_000)]
    rr_count: usize,
    /// The HTTP server of the nginx rows (`xstack http --server`): `worker` (inside the
    /// stack's worker thread, the default) or `event` (a thread of its own).
    #[arg(long, default_value = "worker", value_parser = ["event", "worker"])]
    http_server: String,
    /// Percent of the TCP packets the loss row's router drops each way, 0 to 100 (0
    /// measures each sender's loss-free ceiling on the same routed path).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=100))]
    loss_percent: u8,
    /// Run only these measurements (comma separated): icmp, stack-to-linux, offloads,
    /// linux-to-stack, lro, rr, cps, syn-flood, loss, multiworker, nginx, conns100k.
    /// Default: all.
    #[arg(long, value_delimiter = ',', value_parser = [
        "icmp", "stack-to-linux", "offloads", "linux-to-stack", "lro", "rr", "cps",
        "syn-flood", "loss", "multiworker", "nginx", "conns100k",
    ])]
    only: Vec<String>,
}

impl BenchArgs {
    /// Whether measurement `name` is to run (`--only`).
    fn runs(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

/// One percentile summary of RTT samples, in microseconds.
#[derive(Clone, Copy, Debug, serde::Serialize)]
struct Rtt {
    p50_us: f64,
    p99_us: f64,
    samples: usize,
}

/// The bench's fixed setup: the namespace pair, CPUs, the binary.
struct Env<'a> {
    args: &'a BenchArgs,
    bin: String,
    a: &'static str,
    b: &'static str,
    cpu: String,
    peer_cpu: String,
}

/// A running `xstack` command (stopped with SIGINT on [`Running::stop`]).
struct Running {
    child: std::process::Child,
    out: std::thread::JoinHandle<String>,
}

impl Running {
    /// CPU seconds (user + system, all threads, exited ones included) the stack's
    /// process has used so far, from /proc/PID/stat.
    fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (utime, stime): (u64, u64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Some((utime + stime) as f64 / hz)
    }

    fn stop(self) -> Result<()> {
        self.stop_json().map(|_| ())
    }

    /// Stops it and returns the counters it printed.
    fn stop_json(mut self) -> Result<serde_json::Value> {
        stop(&mut self.child, self.out)
    }
}

impl Env<'_> {
    /// `taskset -c CPU xstack CMD --iface vstk ... --cpus CPU --idle MODE EXTRA`, in the
    /// stack's namespace: the stack's worker and its application threads share one
    /// CPU, as the kernel baseline's server and its softirq processing do.
    fn start(&self, cmd: &str, idle: &str, extra: &[&str]) -> Result<Running> {
        let mut argv: Vec<String> = Vec::new();
        // A profile of the measured stack: XSTACK_BENCH_PERF=DIR records each start as
        // DIR/CMD-<pid>.data (`perf report -i` it afterwards).
        if let (Ok(dir), false) = (std::env::var("XSTACK_BENCH_PERF"), cmd == "up") {
            std::fs::create_dir_all(&dir)?;
            let n = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            let out = format!("{dir}/{cmd}-{n}.data");
            argv.extend(["perf", "record", "-g", "-q", "-o", &out, "--"].map(String::from));
        }
        argv.extend(
            ["taskset", "-c", &self.cpu, &self.bin, cmd]
                .iter()
                .map(|s| s.to_string()),
        );
        argv.extend(
            [
                "--iface",
                "vstk",
                "--addr",
                "198.18.0.1/24",
                "--cpus",
                &self.cpu,
                "--idle",
                idle,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        argv.extend(extra.iter().map(|s| s.to_string()));
        let (mut child, up_rx, out) = spawn_argv(self.a, &argv)?;
        wait_up(&mut child, &up_rx)?;
        // Servers print their listening line right after "up".
        std::thread::sleep(std::time::Duration::from_millis(150));
        Ok(Running { child, out })
    }

    /// The measured stack.
    fn stack(&self, cmd: &str, extra: &[&str]) -> Result<Running> {
        self.start(cmd, &self.args.idle, extra)
    }

    /// An idle stack that keeps the XDP program attached (same MTU/GSO conditions)
    /// while the kernel baseline runs, without spending CPU.
    fn idle_stack(&self) -> Result<Running> {
        self.start("up", "sleep", &[])
    }

    /// `ip netns exec NS taskset -c CPUS BIN ARGS...`, running in the background.
    fn kernel_server(&self, ns: &str, cpus: &str, cmd: &str, listen: &str) -> Result<Bg> {
        Bg::spawn(&[
            "ip", "netns", "exec", ns, "taskset", "-c", cpus, &self.bin, cmd, "--listen", listen,
        ])
    }

    /// `ip netns exec A taskset -c CPU BIN ARGS...`: the binary on the stack's side.
    fn in_stack_ns(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = ["ip", "netns", "exec", self.a, "taskset", "-c", &self.cpu]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push(self.bin.clone());
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// `xstack get URL` on the stack's side, with the measured stack's options.
    fn stack_get(&self, url: &str) -> Vec<String> {
        self.in_stack_ns(&[
            "get",
            url,
            "--iface",
            "vstk",
            "--addr",
            "198.18.0.1/24",
            "--cpus",
            &self.cpu,
            "--idle",
            &self.args.idle,
        ])
    }

    /// curl on the peer downloads `url` (`--bytes` of it) to /dev/null; Gbit/s.
    fn curl_download(&self, url: &str) -> Result<f64> {
        curl_gbps(
            &self.peer(&[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download} %{speed_download}",
                url,
            ]),
            self.args.bytes,
        )
    }

    fn peer(&self, argv: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = [
            "ip",
            "netns",
            "exec",
            self.b,
            "taskset",
            "-c",
            &self.peer_cpu,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(argv.iter().map(|s| s.to_string()));
        v
    }
}

/// Aggregate throughput with 1 worker and with 2 workers, each beside the kernel with
/// the same CPUs and the same parallel downloads: `MW_PARALLEL` curl downloads at once
/// (`--bytes` in total) from the peer, on a veth pair of its own with as many queues as
/// workers (and the RSS emulation on the peer for 2, so flows spread over the queues as
/// an RSS NIC would place them).
///
/// CPU placement (2-core machine): 1 worker: the stack (worker + application threads)
/// or the kernel's server on CPU 1, the curls on CPU 0, peer RPS to CPU 0 (as the other
/// rows). 2 workers: workers on CPUs 0 and 1, stack, kernel server and curls all free to
/// use both (there is no third core for the client).
fn multiworker_throughput(
    args: &BenchArgs,
    bin: &str,
    report: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let mut rows = serde_json::Map::new();
    let each = (args.bytes / MW_PARALLEL as u64).max(1);
    for (workers, cpus, peer_cpus) in [(1u32, "1", "0"), (2, "0,1", "0,1")] {
        check_interrupt()?;
        let row = multiworker_row(args, bin, workers, cpus, peer_cpus, each)?;
        rows.insert(format!("workers_{workers}"), row);
    }
    let ratio = |who: &str| {
        let g = |w: &str| rows[w][who].as_f64().unwrap_or(f64::NAN);
        g("workers_2") / g("workers_1")
    };
    let (xs, lx) = (ratio("xstack_gbps"), ratio("linux_gbps"));
    println!(
        "{:<36} xstack {xs:>9.2}  linux {lx:>9.2}",
        "  scaling, 2 workers / 1 (x)"
    );
    rows.insert(
        "scaling_2_over_1".into(),
        serde_json::json!({ "xstack": xs, "linux": lx }),
    );
    rows.insert("conditions".into(), serde_json::json!({
        "parallel_downloads": MW_PARALLEL, "bytes_per_download": each,
        "client": "one curl --parallel on the peer, -o /dev/null; aggregate = all bytes / wall time of the curl run",
        "placement_1_worker": "xstack http --queues 1 --cpus 1 under taskset -c 1 (kernel server: taskset -c 1); curl taskset -c 0; peer RPS to CPU 0; 1-queue veth",
        "placement_2_workers": "xstack http --queues 2 --cpus 0,1 under taskset -c 0,1 (kernel server: taskset -c 0,1); curl taskset -c 0,1; 2-queue veth with the tc RSS emulation on the peer",
        "idle": args.idle,
        "linux_baseline": "kernel TCP at 198.18.0.3 on the same interface with an idle xstack attached (same queues), same server code",
    }));
    report.insert(
        "multiworker_throughput".into(),
        serde_json::Value::Object(rows),
    );
    Ok(())
}

/// One row of [`multiworker_throughput`]: `workers` workers on `cpus`, the curls on
/// `peer_cpus`, `MW_PARALLEL` downloads of `each` bytes, on a pair of its own.
fn multiworker_row(
    args: &BenchArgs,
    bin: &str,
    workers: u32,
    cpus: &str,
    peer_cpus: &str,
    each: u64,
) -> Result<serde_json::Value> {
    let net = NsPair::create_with_queues(NS_MW_STACK, NS_MW_PEER, workers)?;
    net.net()
        .add_stack_kernel_addr(&format!("{KERNEL_ADDR}/24"))?;
    if workers == 1 {
        set_rps(net.b, "1")?;
    }
    let _emu = if workers > 1 {
        let emu = Bg::spawn(&[
            "ip",
            "netns",
            "exec",
            net.b,
            bin,
            "rss-emulate",
            "--iface",
            "vpeer",
            "--queues",
            &workers.to_string(),
        ])?;
        std::thread::sleep(std::time::Duration::from_millis(500));
        Some(emu)
    } else {
        None
    };
    let env = Env {
        args,
        bin: bin.to_string(),
        a: net.a,
        b: net.b,
        cpu: cpus.to_string(),
        peer_cpu: peer_cpus.to_string(),
    };
    let _k_http = env.kernel_server(net.a, cpus, "kernel-http", "198.18.0.3:80")?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let downloads = |addr: &str| {
        let url = format!("http://{addr}/bytes/{each}");
        let mut argv: Vec<&str> = vec![
            "curl",
            "-s",
            "--parallel",
            "--parallel-immediate",
            "--parallel-max",
            "16",
            "-w",
            "%{http_code} %{size_download}\n",
        ];
        for _ in 0..MW_PARALLEL {
            argv.extend(["-o", "/dev/null", url.as_str()]);
        }
        parallel_gbps(&env.peer(&argv), each, MW_PARALLEL)
    };
    let queues = workers.to_string();
    let (mut s_r, mut k_r, mut split) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        check_interrupt()?;
        let running = env.stack("http", &["--port", "80", "--queues", &queues])?;
        let r = downloads(STACK_ADDR);
        let counters = running.stop_json()?;
        s_r.push(r?);
        // How the flows' packets fell on the workers (RSS placement of 4 flows).
        let per_worker: Vec<u64> = counters["workers"]
            .as_array()
            .map(|w| {
                w.iter()
                    .map(|x| x["packets"].as_u64().unwrap_or(0))
                    .collect()
            })
            .unwrap_or_default();
        split.push(per_worker);
        let idle = env.idle_stack()?;
        let r = downloads(KERNEL_ADDR);
        idle.stop()?;
        k_r.push(r?);
    }
    let (s, k) = (median(s_r.clone()), median(k_r.clone()));
    line(&format!("aggregate, {workers} worker(s) (Gbit/s)"), s, k);
    drop(net);
    Ok(serde_json::json!({
        "xstack_gbps": s, "linux_gbps": k, "ratio": s / k,
        "xstack_rounds": s_r, "linux_rounds": k_r,
        "stack_cpus": cpus, "client_cpus": peer_cpus, "veth_queues": workers,
        "rss_emulation": workers > 1, "xstack_packets_per_worker": split,
    }))
}

/// Steers the peer's receive processing (RPS of `vpeer` queue 0) to the CPUs of `mask`.
fn set_rps(peer_ns: &str, mask: &str) -> Result<()> {
    must(&[
        "ip",
        "netns",
        "exec",
        peer_ns,
        "sh",
        "-c",
        &format!("echo {mask} > /sys/class/net/vpeer/queues/rx-0/rps_cpus"),
    ])
}

/// Runs a `curl --parallel` that prints `%{http_code} %{size_download}` per transfer;
/// checks all `n` got `each` bytes and returns the aggregate Gbit/s over the wall time.
fn parallel_gbps(argv: &[String], each: u64, n: usize) -> Result<f64> {
    let started = std::time::Instant::now();
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .with_context(|| argv.join(" "))?;
    let secs = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let want = format!("200 {each}");
    let ok = text.lines().filter(|l| l.trim() == want).count();
    if ok != n || !out.status.success() {
        bail!(
            "`{}`: {ok} of {n} complete: {text} {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((each * n as u64) as f64 * 8.0 / secs / 1e9)
}

/// Runs `measure` on the stack (started with `cmd`) and on the kernel (with an idle
/// stack attached), alternating for `rounds`; returns the per-round results.
fn alternate<T>(
    env: &Env,
    cmd: Option<(&str, &[&str])>,
    mut stack_measure: impl FnMut() -> Result<T>,
    mut kernel_measure: impl FnMut() -> Result<T>,
) -> Result<(Vec<T>, Vec<T>)> {
    let (mut s, mut k) = (Vec::new(), Vec::new());
    for _ in 0..env.args.rounds {
        check_interrupt()?;
        let running = match cmd {
            Some((c, extra)) => Some(env.stack(c, extra)?),
            None => None,
        };
        let r = stack_measure();
        if let Some(run) = running {
            run.stop()?;
        }
        s.push(r?);
        let idle = env.idle_stack()?;
        let r = kernel_measure();
        idle.stop()?;
        k.push(r?);
    }
    Ok((s, k))
}

pub fn run(args: BenchArgs) -> Result<()> {
    if !is_root() {
        eprintln!("xtask: bench needs root (network namespaces, XDP); run it as root");
        std::process::exit(1);
    }
    ensure_packages()?;
    install_signal_handlers();
    let bin = build_release()?;
    let binstr = bin.to_string_lossy().to_string();
    let net = NsPair::create(NS_STACK, NS_PEER)?;
    net.net()
        .add_stack_kernel_addr(&format!("{KERNEL_ADDR}/24"))?;
    if args.mtu != 1500 {
        net.net().set_mtu(args.mtu)?;
    }
    let cpu = args.stack_cpu.to_string();
    let peer_cpu = if args.stack_cpu == 0 { "1" } else { "0" }.to_string();
    // The peer's receive processing runs on the peer's CPU (RPS), as it would on a
    // separate host; without it veth runs it on whichever CPU transmitted.
    let mask = format!("{:x}", 1u32 << peer_cpu.parse::<u32>().unwrap_or(0));
    set_rps(net.b, &mask)?;
    let env = Env {
        args: &args,
        bin: binstr.clone(),
        a: net.a,
        b: net.b,
        cpu,
        peer_cpu,
    };
    // Kernel baselines: the same server code on kernel sockets, on the stack's CPU, at
    // the kernel's address on the same interface; and a kernel HTTP server on the peer.
    let _k_http = env.kernel_server(env.a, &env.cpu, "kernel-http", "198.18.0.3:80")?;
    let _k_echo = env.kernel_server(env.a, &env.cpu, "kernel-echo", "198.18.0.3:7")?;
    let _p_http = env.kernel_server(env.b, &env.peer_cpu, "kernel-http", "198.18.0.2:80")?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut report = serde_json::Map::new();
    let url_s = format!("http://{STACK_ADDR}/bytes/{}", args.bytes);
    if args.runs("icmp") {
        icmp_row(&env, &mut report)?;
    }
    if args.runs("stack-to-linux") {
        stack_to_linux_rows(&env, &url_s, &mut report)?;
    }
    if args.runs("offloads") {
        offload_rows(&env, &url_s, &mut report)?;
    }
    if args.runs("linux-to-stack") {
        linux_to_stack_row(&env, &mut report)?;
    }
    if args.runs("lro") {
        lro_rows(&env, &mut report)?;
    }
    if args.runs("rr") {
        rr_row(&env, &mut report)?;
    }
    if args.runs("cps") {
        cps_row(&env, &mut report)?;
    }
    if args.runs("syn-flood") {
        syn_flood_row(&env, &mut report)?;
    }
    if args.runs("nginx") {
        // --- xstack http against nginx on Linux's TCP: wrk and curl on the peer ---
        nginx::nginx_rows(
            &env,
            &["--port", "80", "--server", &args.http_server],
            &mut report,
        )?;
    }
    if args.runs("conns100k") {
        // --- 100,000 idle connections on one worker: memory per connection ---
        conns::conns_row(&env, &mut report)?;
    }
    if args.runs("loss") {
        // --- throughput stack -> Linux under 1% random loss, per congestion-control module ---
        loss::loss_case(&env, &mut report)?;
    }
    if args.runs("multiworker") {
        multiworker_throughput(&args, &binstr, &mut report)?;
    }
    write_report(&env, report)?;
    drop(net);
    Ok(())
}

/// The run's conditions, then everything to `target/bench/bench.json`.
fn write_report(env: &Env, mut report: serde_json::Map<String, serde_json::Value>) -> Result<()> {
    let args = env.args;
    report.insert("conditions".into(), serde_json::json!({
        "rounds": args.rounds, "idle": args.idle, "stack_cpu": args.stack_cpu, "peer_cpu": env.peer_cpu,
        "veth": format!("one rx/tx queue each end, MTU {}, native XDP on the stack side, peer tx checksum offload off, peer RPS to the peer CPU", args.mtu),
        "xstack": "taskset to the stack CPU (worker + application threads)",
        "linux_baseline": "kernel TCP at 198.18.0.3 on the same interface with the XDP program attached (an idle xstack), same server/client code, same CPU",
        "clients": "stack->linux: curl -o /dev/null on the peer; linux->stack: xstack get / kernel get (both sha256 the body); rr: kernel client on the peer",
    }));
    let dir = crate::demo::target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&serde_json::Value::Object(report))?,
    )?;
    println!("xtask: wrote {}", path.display());
    Ok(())
}

/// ICMP echo RTT, from the peer to the stack and to the kernel.
fn icmp_row(env: &Env, report: &mut serde_json::Map<String, serde_json::Value>) -> Result<()> {
    let pings = |dst: &str| -> Result<Rtt> {
        ping(env.b, &env.peer_cpu, dst, 5)?;
        Ok(summarize(&ping(env.b, &env.peer_cpu, dst, env.args.pings)?))
    };
    let (s_r, k_r) = alternate(
        env,
        Some(("up", &[])),
        || pings(STACK_ADDR),
        || pings(KERNEL_ADDR),
    )?;
    report.insert(
        "icmp_rtt".into(),
        latency_report("icmp echo RTT", &s_r, &k_r, env.args.pings),
    );
    Ok(())
}

/// Bulk throughput, stack -> Linux: curl on the peer downloads `url_s` (xstack) or the
/// same from the kernel to /dev/null; then the kernel alone without GSO/TSO.
fn stack_to_linux_rows(
    env: &Env,
    url_s: &str,
    report: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let bytes = env.args.bytes;
    let url_k = format!("http://{KERNEL_ADDR}/bytes/{bytes}");
    let (s_r, k_r) = alternate(
        env,
        Some(("http", &["--port", "80"])),
        || env.curl_download(url_s),
        || env.curl_download(&url_k),
    )?;
    report.insert(
        "throughput_stack_to_linux".into(),
        throughput_report("throughput stack->linux", &s_r, &k_r, bytes),
    );
    // Both hand veth 64 KB GSO packets above (the stack through its packet socket,
    // `device/gso.rs`). For reference, both with GSO/TSO off on the sending interface:
    // one segment per packet (the stack's AF_XDP frames, the kernel's per-segment work).
    must(&[
        "ip", "netns", "exec", env.a, "ethtool", "-K", "vstk", "gso", "off", "tso", "off",
    ])?;
    let nogso = alternate(
        env,
        Some(("http", &["--port", "80"])),
        || env.curl_download(url_s),
        || env.curl_download(&url_k),
    );
    must(&[
        "ip", "netns", "exec", env.a, "ethtool", "-K", "vstk", "gso", "on", "tso", "on",
    ])?;
    let (s_nogso, k_nogso) = nogso?;
    let (s_med, k_med) = (median(s_nogso.clone()), median(k_nogso.clone()));
    line("  both without GSO/TSO (Gbit/s)", s_med, k_med);
    report.insert(
        "throughput_stack_to_linux_no_gso".into(),
        serde_json::json!({
            "xstack_gbps": s_med, "linux_gbps": k_med, "ratio": s_med / k_med,
            "xstack_rounds": s_nogso, "linux_rounds": k_nogso,
        }),
    );
    Ok(())
}

/// Bulk throughput, Linux -> stack: `xstack get` / `xstack kernel-get` from the peer's
/// kernel HTTP server (both hash the body).
fn linux_to_stack_row(
    env: &Env,
    report: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let url = format!("http://198.18.0.2/bytes/{}", env.args.bytes);
    let (s_r, k_r) = alternate(
        env,
        None,
        || gbps(&env.stack_get(&url)),
        || gbps(&env.in_stack_ns(&["kernel-get", &url, "--bind", KERNEL_ADDR])),
    )?;
    report.insert(
        "throughput_linux_to_stack".into(),
        throughput_report("throughput linux->stack", &s_r, &k_r, env.args.bytes),
    );
    Ok(())
}

/// 1-byte request/response latency: the kernel RR client on the peer.
fn rr_row(env: &Env, report: &mut serde_json::Map<String, serde_json::Value>) -> Result<()> {
    let count = env.args.rr_count.to_string();
    let client = |dst: &str| rr(&env.peer(&[&env.bin, "rr", dst, "--count", &count]));
    let (s_r, k_r) = alternate(
        env,
        Some(("echo", &["--port", "7"])),
        || client("198.18.0.1:7"),
        || client("198.18.0.3:7"),
    )?;
    report.insert(
        "rr_latency".into(),
        latency_report("1-byte request/response", &s_r, &k_r, env.args.rr_count),
    );
    Ok(())
}

/// Connections per second: short connections, one GET /bytes/1 each, 4 client threads.
fn cps_row(env: &Env, report: &mut serde_json::Map<String, serde_json::Value>) -> Result<()> {
    let client =
        |dst: &str| cps(&env.peer(&[&env.bin, "cps", dst, "--threads", "4", "--seconds", "3"]));
    let (s_r, k_r) = alternate(
        env,
        Some(("http", &["--port", "80"])),
        || client("198.18.0.1:80"),
        || client("198.18.0.3:80"),
    )?;
    let (s, k) = (median(s_r.clone()), median(k_r.clone()));
    line("connections/s (4 client threads)", s, k);
    report.insert(
        "cps".into(),
        serde_json::json!({
            "client_threads": 4, "xstack_cps": s, "linux_cps": k, "ratio": s / k,
            "xstack_rounds": s_r, "linux_rounds": k_r,
        }),
    );
    Ok(())
}

/// Bytes of the download timed with and without the flood.
const FLOOD_BYTES: u64 = 200_000_000;

/// What one side did under the flood.
#[derive(Clone, Copy, Debug, serde::Serialize)]
struct FloodRound {
    /// New connections (of 20) that completed a request during the flood.
    connected: usize,
    /// Their connect times (SYN to SYN,ACK seen by curl), median and max, ms.
    connect_p50_ms: f64,
    connect_max_ms: f64,
    /// A download without the flood and one during it, Gbit/s.
    gbps_unloaded: f64,
    gbps_flood: f64,
    /// Growth of the server's resident memory over the flood (xstack only), MiB.
    rss_growth_mib: f64,
    /// Packets per second the peer sent while the connections were made (the flood and
    /// those connections' few packets).
    flood_pps: f64,
}

/// Packets the peer's interface has sent.
fn peer_tx_packets(env: &Env) -> Result<f64> {
    let argv = env.peer(&["cat", "/sys/class/net/vpeer/statistics/tx_packets"]);
    let out = Command::new(&argv[0]).args(&argv[1..]).output()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("the peer's tx_packets")
}

/// A server's resident memory, MiB (from /proc/PID/status).
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// One side under a SYN flood from random sources in 198.19.0.0/16 (replies routed to
/// the peer, which drops them): 20 new connections' connect times and a download,
/// beside the same download without the flood.
fn flood_round(env: &Env, ip: &str, pid: Option<u32>) -> Result<FloodRound> {
    let url = format!("http://{ip}/bytes/{FLOOD_BYTES}");
    let curl = |u: &str| {
        env.peer(&[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "30",
            "-w",
            "%{http_code} %{size_download} %{speed_download}",
            u,
        ])
    };
    let gbps_unloaded = curl_gbps(&curl(&url), FLOOD_BYTES)?;
    let rss_before = pid.map_or(f64::NAN, rss_mib);
    let dst = format!("{ip}:80");
    let rate = env.args.flood_rate.to_string();
    let flood = env.peer(&[
        &env.bin,
        "syn-flood",
        &dst,
        "--rate",
        &rate,
        "--seconds",
        "15",
    ]);
    let flood: Vec<&str> = flood.iter().map(String::as_str).collect();
    let _flood = Bg::spawn(&flood)?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (tx0, t0) = (peer_tx_packets(env)?, std::time::Instant::now());
    let mut times = Vec::new();
    for _ in 0..20 {
        let argv = env.peer(&[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "3",
            "-w",
            "%{time_connect}",
            &format!("http://{ip}/bytes/1"),
        ]);
        let out = Command::new(&argv[0]).args(&argv[1..]).output()?;
        let t: Option<f64> = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
        if let Some(t) = t.filter(|_| out.status.success()) {
            times.push(t * 1000.0);
        }
    }
    let flood_pps = (peer_tx_packets(env)? - tx0) / t0.elapsed().as_secs_f64();
    let gbps_flood = curl_gbps(&curl(&url), FLOOD_BYTES).unwrap_or(0.0);
    let rss_growth_mib = pid.map_or(f64::NAN, rss_mib) - rss_before;
    let connected = times.len();
    let max = times.iter().copied().fold(f64::NAN, f64::max);
    Ok(FloodRound {
        connected,
        connect_p50_ms: median(times),
        connect_max_ms: max,
        gbps_unloaded,
        gbps_flood,
        rss_growth_mib,
        flood_pps,
    })
}

/// "SYN flood": `--flood-rate` SYNs a second (50k by default) from random sources at
/// `xstack http` (SYN cache and cookies) and at the kernel's HTTP server (Linux's
/// syncookies at their default), same run.
fn syn_flood_row(env: &Env, report: &mut serde_json::Map<String, serde_json::Value>) -> Result<()> {
    // The kernel's answers to the forged sources go to the peer, as the stack's do.
    must(&[
        "ip",
        "-n",
        env.a,
        "route",
        "replace",
        "198.19.0.0/16",
        "via",
        "198.18.0.2",
    ])?;
    let (mut s_r, mut k_r) = (Vec::new(), Vec::new());
    for _ in 0..env.args.rounds {
        check_interrupt()?;
        let run = env.stack("http", &["--port", "80", "--gateway", "198.18.0.2"])?;
        let r = flood_round(env, "198.18.0.1", Some(run.child.id()));
        run.stop()?;
        s_r.push(r?);
        let idle = env.idle_stack()?;
        let r = flood_round(env, "198.18.0.3", None);
        idle.stop()?;
        k_r.push(r?);
    }
    let m = |v: &[FloodRound], f: fn(&FloodRound) -> f64| median(v.iter().map(f).collect());
    let keep = |r: &FloodRound| r.gbps_flood / r.gbps_unloaded;
    line(
        "SYN flood: connected of 20",
        m(&s_r, |r| r.connected as f64),
        m(&k_r, |r| r.connected as f64),
    );
    line(
        "SYN flood: connect p50 ms",
        m(&s_r, |r| r.connect_p50_ms),
        m(&k_r, |r| r.connect_p50_ms),
    );
    line(
        "SYN flood: download kept (x unloaded)",
        m(&s_r, keep),
        m(&k_r, keep),
    );
    line(
        "SYN flood: connect max ms",
        m(&s_r, |r| r.connect_max_ms),
        m(&k_r, |r| r.connect_max_ms),
    );
    line(
        "SYN flood: packets/s sent at the server",
        m(&s_r, |r| r.flood_pps),
        m(&k_r, |r| r.flood_pps),
    );
    println!(
        "SYN flood: xstack resident memory growth {:.1} MiB",
        m(&s_r, |r| r.rss_growth_mib)
    );
    report.insert(
        "syn_flood".into(),
        serde_json::json!({
            "rate_per_s": env.args.flood_rate,
            "sources": "198.19.0.0/16",
            "xstack_rounds": s_r, "linux_rounds": k_r,
            "xstack_download_kept": m(&s_r, keep), "linux_download_kept": m(&k_r, keep),
            "xstack_connect_p50_ms": m(&s_r, |r| r.connect_p50_ms),
            "linux_connect_p50_ms": m(&k_r, |r| r.connect_p50_ms),
            "xstack_rss_growth_mib": m(&s_r, |r| r.rss_growth_mib),
        }),
    );
    Ok(())
}

/// Each offload on and off, alternating per round, on the stack->Linux download: the
/// effect of the offload alone (ratio on/off), beside Linux's figure from the main row.
fn offload_rows(
    env: &Env,
    url: &str,
    report: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let download = || env.curl_download(url);
    // NaN when `--only` skipped the row it compares with.
    let linux = report
        .get("throughput_stack_to_linux")
        .and_then(|r| r["linux_gbps"].as_f64())
        .unwrap_or(f64::NAN);
    let bytes = env.args.bytes as f64;
    // Throughput, and the stack process's CPU time per byte sent (ns/B: user + system
    // of all its threads, the copy-mode transmit path in the kernel included).
    let measure = |extra: &[&str]| -> Result<(f64, f64)> {
        let mut argv = vec!["--port", "80"];
        argv.extend_from_slice(extra);
        let run = env.stack("http", &argv)?;
        let before = run.cpu_seconds();
        let r = download();
        let after = run.cpu_seconds();
        run.stop()?;
        let ns_per_byte = match (before, after) {
            (Some(b), Some(a)) => (a - b) * 1e9 / bytes,
            _ => f64::NAN,
        };
        Ok((r?, ns_per_byte))
    };
    let mut rows = serde_json::Map::new();
    for (name, flag) in [
        ("txcsum", "txcsum"),
        ("tso", "tso"),
        ("all", "txcsum,tso,lro"),
    ] {
        let mut row = on_off_row(
            env.args.rounds,
            &format!("stack->linux, {name} (Gbit/s)"),
            "stack",
            linux,
            |on| {
                let off = ["--no-offload", flag];
                measure(if on { &[] } else { &off })
            },
        )?;
        row["switched_off"] = flag.into();
        rows.insert(name.into(), row);
    }
    report.insert("offloads_stack_to_linux".into(), rows.into());
    Ok(())
}

/// LRO on and off, alternating per round, on the Linux->stack download (`xstack get`
/// from the peer's kernel HTTP server, which hashes the body).
fn lro_rows(env: &Env, report: &mut serde_json::Map<String, serde_json::Value>) -> Result<()> {
    let url = format!("http://198.18.0.2/bytes/{}", env.args.bytes);
    // With perf, the client's CPU time too (`perf stat -e task-clock`: all its threads,
    // over its whole life), as ns per byte received.
    let perf = Command::new("perf")
        .args(["stat", "-x,", "-e", "task-clock", "--", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    let dir = crate::demo::target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let perf_out = dir.join("perf-stat.txt").display().to_string();
    let get = |extra: &[&str]| -> Result<(f64, f64)> {
        let mut argv: Vec<&str> = Vec::new();
        if perf {
            argv.extend([
                "perf",
                "stat",
                "-x,",
                "-e",
                "task-clock",
                "-o",
                &perf_out,
                "--",
            ]);
        }
        let get = env.stack_get(&url);
        argv.extend(get.iter().map(String::as_str));
        argv.extend_from_slice(extra);
        let g = gbps(&argv)?;
        let cpu = std::fs::read_to_string(&perf_out)
            .ok()
            .filter(|_| perf)
            .and_then(|t| {
                t.lines()
                    .find(|l| l.contains("task-clock"))
                    .and_then(|l| l.split(',').next()?.parse::<f64>().ok())
            })
            .map(|ms| ms * 1e6 / env.args.bytes as f64)
            .unwrap_or(f64::NAN);
        Ok((g, cpu))
    };
    // NaN when `--only` skipped the row it compares with.
    let linux = report
        .get("throughput_linux_to_stack")
        .and_then(|r| r["linux_gbps"].as_f64())
        .unwrap_or(f64::NAN);
    let row = on_off_row(
        env.args.rounds,
        "linux->stack, lro (Gbit/s)",
        "client",
        linux,
        |on| get(if on { &[] } else { &["--no-offload", "lro"] }),
    )?;
    report.insert(
        "offloads_linux_to_stack".into(),
        serde_json::json!({ "lro": row }),
    );
    Ok(())
}

/// Alternates `measure(true)` (offload on) and `measure(false)` for `rounds`, each giving
/// (Gbit/s, CPU ns per byte of `whose` process); prints a line and returns the medians and
/// every round as JSON, with ratios on/off and against `linux` Gbit/s.
fn on_off_row(
    rounds: usize,
    label: &str,
    whose: &str,
    linux: f64,
    mut measure: impl FnMut(bool) -> Result<(f64, f64)>,
) -> Result<serde_json::Value> {
    let (mut on, mut off, mut cpu_on, mut cpu_off) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        check_interrupt()?;
        let (g, c) = measure(true)?;
        on.push(g);
        cpu_on.push(c);
        let (g, c) = measure(false)?;
        off.push(g);
        cpu_off.push(c);
    }
    let (m_on, m_off) = (median(on.clone()), median(off.clone()));
    let (c_on, c_off) = (median(cpu_on.clone()), median(cpu_off.clone()));
    println!(
        "{label:<36} on {m_on:>9.2}  off {m_off:>9.2}  ratio on/off {:.2}  (on/linux {:.2}, off/linux {:.2}); {whose} CPU {c_on:.2} vs {c_off:.2} ns/B",
        m_on / m_off,
        m_on / linux,
        m_off / linux,
    );
    Ok(serde_json::json!({
        "on_gbps": m_on, "off_gbps": m_off, "ratio_on_off": m_on / m_off,
        "ratio_on_linux": m_on / linux, "ratio_off_linux": m_off / linux,
        "on_rounds": on, "off_rounds": off,
        format!("{whose}_cpu_ns_per_byte_on"): c_on, format!("{whose}_cpu_ns_per_byte_off"): c_off,
        "cpu_on_rounds": cpu_on, "cpu_off_rounds": cpu_off,
    }))
}

fn latency_report(what: &str, s_r: &[Rtt], k_r: &[Rtt], per_round: usize) -> serde_json::Value {
    let s50 = median(s_r.iter().map(|r| r.p50_us).collect());
    let s99 = median(s_r.iter().map(|r| r.p99_us).collect());
    let k50 = median(k_r.iter().map(|r| r.p50_us).collect());
    let k99 = median(k_r.iter().map(|r| r.p99_us).collect());
    line(&format!("{what} p50 (us)"), s50, k50);
    line(&format!("{what} p99 (us)"), s99, k99);
    serde_json::json!({
        "samples_per_round": per_round,
        "xstack": {"p50_us": s50, "p99_us": s99, "rounds": s_r},
        "linux": {"p50_us": k50, "p99_us": k99, "rounds": k_r},
        "ratio_p50": s50 / k50, "ratio_p99": s99 / k99,
    })
}

fn throughput_report(what: &str, s_r: &[f64], k_r: &[f64], bytes: u64) -> serde_json::Value {
    let (s, k) = (median(s_r.to_vec()), median(k_r.to_vec()));
    line(&format!("{what} (Gbit/s)"), s, k);
    serde_json::json!({
        "bytes": bytes, "xstack_gbps": s, "linux_gbps": k, "ratio": s / k,
        "xstack_rounds": s_r, "linux_rounds": k_r,
    })
}

/// Runs curl with `-w '%{http_code} %{size_download} %{speed_download}'`.
fn curl_gbps(argv: &[String], bytes: u64) -> Result<f64> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .with_context(|| argv.join(" "))?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let parts: Vec<&str> = text.split_whitespace().collect();
    if parts.len() != 3 || parts[0] != "200" || parts[1] != bytes.to_string() {
        bail!(
            "`{}`: {text} {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bps: f64 = parts[2].parse().context("curl speed")?;
    Ok(bps * 8.0 / 1e9)
}

fn check_interrupt() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Prints one figure with its ratio.
fn line(what: &str, xstack: f64, linux: f64) {
    println!(
        "{what:<36} xstack {xstack:>9.2}  linux {linux:>9.2}  ratio xstack/linux {:.2}",
        xstack / linux
    );
}

/// A background process, killed on drop.
struct Bg(std::process::Child);

impl Bg {
    fn spawn(argv: &[&str]) -> Result<Bg> {
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", argv.join(" ")))?;
        Ok(Bg(child))
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command that prints a JSON line (the last line starting with `{` counts) and
/// returns it parsed; fails with the command's output if there is none.
fn run_json<S: AsRef<str>>(argv: &[S]) -> Result<serde_json::Value> {
    let argv: Vec<&str> = argv.iter().map(AsRef::as_ref).collect();
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .with_context(|| argv.join(" "))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line.trim()).with_context(|| {
        format!(
            "`{}` printed no JSON: {text} {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Runs an HTTP client that prints one JSON line with `gbit_per_s`.
fn gbps<S: AsRef<str>>(argv: &[S]) -> Result<f64> {
    let v = run_json(argv)?;
    if v["status"] != 200 {
        bail!("`{}`: {v}", join(argv));
    }
    v["gbit_per_s"].as_f64().context("no gbit_per_s")
}

/// Runs the kernel CPS client; returns connections per second.
fn cps(argv: &[String]) -> Result<f64> {
    let v = run_json(argv)?;
    if v["failed"].as_u64().unwrap_or(1) != 0 {
        bail!("`{}`: {v}", join(argv));
    }
    v["cps"].as_f64().context("cps")
}

/// Runs the kernel RR client; returns its percentiles.
fn rr(argv: &[String]) -> Result<Rtt> {
    let v = run_json(argv)?;
    Ok(Rtt {
        p50_us: v["p50_us"].as_f64().context("p50")?,
        p99_us: v["p99_us"].as_f64().context("p99")?,
        samples: v["count"].as_u64().unwrap_or(0) as usize,
    })
}

fn join<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ")
}

/// Runs ping from the peer namespace, pinned to `cpu`; returns the RTTs in microseconds.
fn ping(ns: &str, cpu: &str, dst: &str, count: usize) -> Result<Vec<f64>> {
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "taskset", "-c", cpu, "ping", "-n", "-c",
        ])
        .arg(count.to_string())
        .args(["-i", "0.002", "-W", "1", dst])
        .output()
        .context("running ping")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rtts: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next())
        .filter_map(|t| t.parse::<f64>().ok())
        .map(|ms| ms * 1000.0)
        .collect();
    if rtts.len() < count {
        bail!(
            "ping {dst}: only {} of {count} answered\n{text}",
            rtts.len()
        );
    }
    Ok(rtts)
}

fn summarize(samples: &[f64]) -> Rtt {
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    Rtt {
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        samples: v.len(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}
