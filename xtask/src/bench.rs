//! `cargo xtask bench`: xstack beside Linux on the same veth pair, in the same run.
//!
//! Today: ICMP echo round-trip time. The stack's side of the pair carries both the
//! stack (198.18.0.1, through AF_XDP) and a kernel address (198.18.0.3) on the same
//! interface with the same XDP program attached, so both are measured under the same
//! conditions; Linux pings each in turn, alternating, several rounds. Every figure is
//! printed with its ratio xstack/Linux and written as JSON to `target/bench/bench.json`.

use crate::demo::{build_release, install_signal_handlers, interrupted, spawn_stack, stop, wait_up, NsPair};
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
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Echo requests per round.
    #[arg(long, default_value_t = 1000)]
    pings: usize,
    /// The stack's idle mode (busy = dedicated polling core).
    #[arg(long, default_value = "busy")]
    idle: String,
    /// CPU for the stack's worker; Linux's ping is pinned to the other one.
    #[arg(long, default_value_t = 1)]
    stack_cpu: usize,
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
    let net = NsPair::create(NS_STACK, NS_PEER)?;
    must(&["ip", "-n", net.a, "addr", "add", &format!("{KERNEL_ADDR}/24"), "dev", "vstk"])?;
    let cpu = args.stack_cpu.to_string();
    let (mut stack, up_rx, out) = spawn_stack(
        &bin,
        net.a,
        &["--iface", "vstk", "--addr", "198.18.0.1/24", "--cpus", &cpu, "--idle", &args.idle],
    )?;
    let peer_cpu = if args.stack_cpu == 0 { "1" } else { "0" };
    let result = wait_up(&mut stack, &up_rx).and_then(|()| {
        // Warm up ARP on both sides.
        ping(net.b, peer_cpu, STACK_ADDR, 5)?;
        ping(net.b, peer_cpu, KERNEL_ADDR, 5)?;
        let mut stack_rounds = Vec::new();
        let mut kernel_rounds = Vec::new();
        for r in 0..args.rounds {
            if interrupted() {
                bail!("interrupted");
            }
            let s = summarize(&ping(net.b, peer_cpu, STACK_ADDR, args.pings)?);
            let k = summarize(&ping(net.b, peer_cpu, KERNEL_ADDR, args.pings)?);
            println!(
                "round {}: xstack p50 {:.1} us p99 {:.1} us | linux p50 {:.1} us p99 {:.1} us",
                r + 1,
                s.p50_us,
                s.p99_us,
                k.p50_us,
                k.p99_us
            );
            stack_rounds.push(s);
            kernel_rounds.push(k);
        }
        Ok((stack_rounds, kernel_rounds))
    });
    let counters = stop(&mut stack, out);
    let (stack_rounds, kernel_rounds) = result?;
    counters?;
    let med = |v: &[Rtt], f: fn(&Rtt) -> f64| median(v.iter().map(f).collect());
    let s50 = med(&stack_rounds, |r| r.p50_us);
    let s99 = med(&stack_rounds, |r| r.p99_us);
    let k50 = med(&kernel_rounds, |r| r.p50_us);
    let k99 = med(&kernel_rounds, |r| r.p99_us);
    println!();
    println!("ICMP echo RTT, Linux -> {{xstack, Linux}} on one veth pair, median of {} rounds x {} pings", args.rounds, args.pings);
    println!("  xstack ({} idle, worker on CPU {}): p50 {:.1} us  p99 {:.1} us", args.idle, args.stack_cpu, s50, s99);
    println!("  linux  (kernel address, same interface): p50 {:.1} us  p99 {:.1} us", k50, k99);
    println!("  ratio xstack/linux: p50 {:.2}  p99 {:.2}", s50 / k50, s99 / k99);
    let json = serde_json::json!({
        "icmp_rtt": {
            "rounds": args.rounds, "pings_per_round": args.pings, "idle": args.idle,
            "xstack": { "p50_us": s50, "p99_us": s99, "rounds": stack_rounds },
            "linux": { "p50_us": k50, "p99_us": k99, "rounds": kernel_rounds },
            "ratio_p50": s50 / k50, "ratio_p99": s99 / k99,
        }
    });
    let dir = crate::demo::target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    println!("xtask: wrote {}", path.display());
    Ok(())
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
