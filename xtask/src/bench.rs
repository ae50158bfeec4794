//! `cargo xtask bench`: xstack beside Linux on the same veth pair, in the same run.
//!
//! Today: ICMP echo round-trip time. The stack's side of the pair carries both the
//! stack (198.18.0.1, through AF_XDP) and a kernel address (198.18.0.3) on the same
//! interface with the same XDP program attached, so both are measured under the same
//! conditions; Linux pings each in turn, alternating, several rounds. Every figure is
//! printed with its ratio xstack/Linux and written as JSON to `target/bench/bench.json`.

use crate::demo::{build_release, install_signal_handlers, interrupted, spawn_cmd, spawn_stack, stop, wait_up, NsPair};
use crate::sys::{ensure_packages, is_root, must};
use anyhow::{bail, Context, Result};
use std::process::Command;

const NS_STACK: &str = "xsbench-a";
const NS_PEER: &str = "xsbench-b";
const KERNEL_ADDR: &str = "198.18.0.3";
const STACK_ADDR: &str = "198.18.0.1";

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Rounds per measurement (the median over rounds is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Echo requests per round.
    #[arg(long, default_value_t = 1000)]
    pings: usize,
    /// The stack's idle mode (busy = dedicated polling core).
    #[arg(long, default_value = "busy")]
    idle: String,
    /// CPU for the stack's worker (and the kernel baseline's server); Linux's client
    /// is pinned to the other one.
    #[arg(long, default_value_t = 1)]
    stack_cpu: usize,
    /// Bytes per bulk transfer.
    #[arg(long, default_value_t = 1_000_000_000)]
    bytes: u64,
    /// Round trips per request/response round.
    #[arg(long, default_value_t = 50_000)]
    rr_count: usize,
}

/// One percentile summary of RTT samples, in microseconds.
#[derive(Clone, Copy, Debug, serde::Serialize)]
struct Rtt {
    p50_us: f64,
    p99_us: f64,
    samples: usize,
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
    must(&["ip", "-n", net.a, "addr", "add", &format!("{KERNEL_ADDR}/24"), "dev", "vstk"])?;
    let cpu = args.stack_cpu.to_string();
    let peer_cpu = if args.stack_cpu == 0 { "1" } else { "0" }.to_string();
    let stack_args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["--iface", "vstk", "--addr", "198.18.0.1/24", "--cpus", &cpu, "--idle", &args.idle]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // Kernel baselines: the same server code on kernel sockets, on the same CPU as
    // the stack's worker, at the kernel's address on the same interface.
    let _k_http = Bg::spawn(&["ip", "netns", "exec", net.a, "taskset", "-c", &cpu, &binstr, "kernel-http", "--listen", "198.18.0.3:80"])?;
    let _k_echo = Bg::spawn(&["ip", "netns", "exec", net.a, "taskset", "-c", &cpu, &binstr, "kernel-echo", "--listen", "198.18.0.3:7"])?;
    let _p_http = Bg::spawn(&["ip", "netns", "exec", net.b, "taskset", "-c", &peer_cpu, &binstr, "kernel-http", "--listen", "198.18.0.2:80"])?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut report = serde_json::Map::new();

    // --- ICMP echo RTT ---
    {
        let sa = stack_args(&[]);
        let sa: Vec<&str> = sa.iter().map(|s| s.as_str()).collect();
        let (mut stack, up_rx, out) = spawn_stack(&bin, net.a, &sa)?;
        let result = wait_up(&mut stack, &up_rx).and_then(|()| {
            ping(net.b, &peer_cpu, STACK_ADDR, 5)?;
            ping(net.b, &peer_cpu, KERNEL_ADDR, 5)?;
            let (mut s_r, mut k_r) = (Vec::new(), Vec::new());
            for _ in 0..args.rounds {
                check_interrupt()?;
                s_r.push(summarize(&ping(net.b, &peer_cpu, STACK_ADDR, args.pings)?));
                k_r.push(summarize(&ping(net.b, &peer_cpu, KERNEL_ADDR, args.pings)?));
            }
            Ok((s_r, k_r))
        });
        let counters = stop(&mut stack, out);
        let (s_r, k_r) = result?;
        counters?;
        let s50 = median(s_r.iter().map(|r| r.p50_us).collect());
        let s99 = median(s_r.iter().map(|r| r.p99_us).collect());
        let k50 = median(k_r.iter().map(|r| r.p50_us).collect());
        let k99 = median(k_r.iter().map(|r| r.p99_us).collect());
        line("icmp echo RTT p50 (us)", s50, k50, false);
        line("icmp echo RTT p99 (us)", s99, k99, false);
        report.insert("icmp_rtt".into(), serde_json::json!({
            "pings_per_round": args.pings,
            "xstack": {"p50_us": s50, "p99_us": s99}, "linux": {"p50_us": k50, "p99_us": k99},
            "ratio_p50": s50 / k50, "ratio_p99": s99 / k99,
        }));
    }

    // --- bulk throughput, stack -> Linux: Linux downloads from xstack http / kernel ---
    {
        let sa = stack_args(&[]);
        let mut sa: Vec<&str> = sa.iter().map(|s| s.as_str()).collect();
        sa.insert(0, "--port");
        sa.insert(1, "80");
        let (mut stack, up_rx, out) = spawn_cmd(&bin, net.a, "http", &sa)?;
        let bytes = args.bytes.to_string();
        let result = wait_up(&mut stack, &up_rx).and_then(|()| {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let (mut s_r, mut k_r) = (Vec::new(), Vec::new());
            for _ in 0..args.rounds {
                check_interrupt()?;
                s_r.push(gbps(&["ip", "netns", "exec", net.b, "taskset", "-c", &peer_cpu, &binstr, "kernel-get", &format!("http://{STACK_ADDR}/bytes/{bytes}")])?);
                k_r.push(gbps(&["ip", "netns", "exec", net.b, "taskset", "-c", &peer_cpu, &binstr, "kernel-get", &format!("http://{KERNEL_ADDR}/bytes/{bytes}")])?);
                println!("  stack->linux round: xstack {:.2} Gbit/s, linux {:.2} Gbit/s", s_r.last().copied().unwrap_or(0.0), k_r.last().copied().unwrap_or(0.0));
            }
            Ok((s_r, k_r))
        });
        let counters = stop(&mut stack, out);
        let (s_r, k_r) = result?;
        counters?;
        let (s, k) = (median(s_r.clone()), median(k_r.clone()));
        line("throughput stack->linux (Gbit/s)", s, k, true);
        report.insert("throughput_stack_to_linux".into(), serde_json::json!({
            "bytes": args.bytes, "xstack_gbps": s, "linux_gbps": k, "ratio": s / k,
            "xstack_rounds": s_r, "linux_rounds": k_r,
        }));
    }

    // --- bulk throughput, Linux -> stack: xstack get / kernel get from the peer ---
    {
        let bytes = args.bytes.to_string();
        let url = format!("http://198.18.0.2/bytes/{bytes}");
        let (mut s_r, mut k_r) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds {
            check_interrupt()?;
            let sa = stack_args(&[]);
            let mut argv: Vec<&str> = vec!["ip", "netns", "exec", net.a, &binstr, "get", &url];
            argv.extend(sa.iter().map(|s| s.as_str()));
            s_r.push(gbps(&argv)?);
            k_r.push(gbps(&["ip", "netns", "exec", net.a, "taskset", "-c", &cpu, &binstr, "kernel-get", &url, "--bind", KERNEL_ADDR])?);
            println!("  linux->stack round: xstack {:.2} Gbit/s, linux {:.2} Gbit/s", s_r.last().copied().unwrap_or(0.0), k_r.last().copied().unwrap_or(0.0));
        }
        let (s, k) = (median(s_r.clone()), median(k_r.clone()));
        line("throughput linux->stack (Gbit/s)", s, k, true);
        report.insert("throughput_linux_to_stack".into(), serde_json::json!({
            "bytes": args.bytes, "xstack_gbps": s, "linux_gbps": k, "ratio": s / k,
            "xstack_rounds": s_r, "linux_rounds": k_r,
        }));
    }

    // --- 1-byte request/response latency ---
    {
        let sa = stack_args(&[]);
        let mut sa: Vec<&str> = sa.iter().map(|s| s.as_str()).collect();
        sa.insert(0, "--port");
        sa.insert(1, "7");
        let (mut stack, up_rx, out) = spawn_cmd(&bin, net.a, "echo", &sa)?;
        let count = args.rr_count.to_string();
        let result = wait_up(&mut stack, &up_rx).and_then(|()| {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let (mut s_r, mut k_r) = (Vec::new(), Vec::new());
            for _ in 0..args.rounds {
                check_interrupt()?;
                s_r.push(rr(&["ip", "netns", "exec", net.b, "taskset", "-c", &peer_cpu, &binstr, "rr", "198.18.0.1:7", "--count", &count])?);
                k_r.push(rr(&["ip", "netns", "exec", net.b, "taskset", "-c", &peer_cpu, &binstr, "rr", "198.18.0.3:7", "--count", &count])?);
            }
            Ok((s_r, k_r))
        });
        let counters = stop(&mut stack, out);
        let (s_r, k_r) = result?;
        counters?;
        let s50 = median(s_r.iter().map(|r| r.p50_us).collect());
        let s99 = median(s_r.iter().map(|r| r.p99_us).collect());
        let k50 = median(k_r.iter().map(|r| r.p50_us).collect());
        let k99 = median(k_r.iter().map(|r| r.p99_us).collect());
        line("1-byte request/response p50 (us)", s50, k50, false);
        line("1-byte request/response p99 (us)", s99, k99, false);
        report.insert("rr_latency".into(), serde_json::json!({
            "round_trips_per_round": args.rr_count,
            "xstack": {"p50_us": s50, "p99_us": s99}, "linux": {"p50_us": k50, "p99_us": k99},
            "ratio_p50": s50 / k50, "ratio_p99": s99 / k99,
        }));
    }

    report.insert("conditions".into(), serde_json::json!({
        "rounds": args.rounds, "idle": args.idle, "stack_cpu": args.stack_cpu,
        "veth": "one rx/tx queue, MTU 1500, native XDP on the stack side, peer tx checksum offload off",
        "linux_baseline": "kernel TCP at 198.18.0.3 on the same interface (same XDP program attached), same server/client code, same CPU",
    }));
    let dir = crate::demo::target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(&serde_json::Value::Object(report))?)?;
    println!("xtask: wrote {}", path.display());
    drop(net);
    Ok(())
}

fn check_interrupt() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Prints one figure with its ratio. `higher_better` only affects the wording.
fn line(what: &str, xstack: f64, linux: f64, higher_better: bool) {
    let _ = higher_better;
    println!("{what:<36} xstack {xstack:>9.2}  linux {linux:>9.2}  ratio xstack/linux {:.2}", xstack / linux);
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

/// Runs a command that prints one JSON line with `gbit_per_s`.
fn gbps(argv: &[&str]) -> Result<f64> {
    let out = Command::new(argv[0]).args(&argv[1..]).output().with_context(|| argv.join(" "))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{')).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line)
        .with_context(|| format!("`{}` printed no JSON: {text} {}", argv.join(" "), String::from_utf8_lossy(&out.stderr)))?;
    if v["status"] != 200 {
        bail!("`{}`: {v}", argv.join(" "));
    }
    v["gbit_per_s"].as_f64().context("no gbit_per_s")
}

/// Runs the kernel RR client; returns its percentiles.
fn rr(argv: &[&str]) -> Result<Rtt> {
    let out = Command::new(argv[0]).args(&argv[1..]).output().with_context(|| argv.join(" "))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .with_context(|| format!("`{}` printed no JSON: {text} {}", argv.join(" "), String::from_utf8_lossy(&out.stderr)))?;
    Ok(Rtt {
        p50_us: v["p50_us"].as_f64().context("p50")?,
        p99_us: v["p99_us"].as_f64().context("p99")?,
        samples: v["count"].as_u64().unwrap_or(0) as usize,
    })
}

/// Runs ping from the peer namespace, pinned to `cpu`; returns the RTTs in microseconds.
fn ping(ns: &str, cpu: &str, dst: &str, count: usize) -> Result<Vec<f64>> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "taskset", "-c", cpu, "ping", "-n", "-c"])
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
        bail!("ping {dst}: only {} of {count} answered\n{text}", rtts.len());
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
