//! `cargo xtask cc-plot`: one download per congestion-control module through a real
//! 100 Mbit/s bottleneck, with the server's cwnd trace (`xstack http --cwnd-trace`), drawn
//! side by side.
//!
//! Topology (as in `tests/veth_bottleneck.rs`, which explains why the queue cannot be on
//! the stack's own veth: AF_XDP bypasses its qdisc, and ingress shaping leaves the frames
//! charged to the AF_XDP socket so the queue moves into the stack's tx ring):
//!
//! ```text
//!   xsccplot-a            xsccplot-b (router)                 xsccplot-c
//!   vstk 198.18.0.1 ----- vpeer 198.18.0.2   vfwd 198.18.1.1 ----- vcli 198.18.1.2  curl
//!   xstack http                              root tbf 100mbit, 650 KB queue
//! ```
//!
//! Output in `target/cc-plot/`: `cwnd-<module>.csv` (the raw traces:
//! `t_us,cwnd,ssthresh,in_flight,srtt_us,pacing_rate,event,cc,cwnd_limited`) and `cwnd.svg`: one panel
//! per module, cwnd and ssthresh in segments, and for a module that paces (BBR) its pacing
//! rate in Mbit/s on a second axis.

use crate::demo::{
    build_release, install_signal_handlers, interrupted, spawn_argv, stop, target_dir, wait_up,
    NsPair,
};
use crate::sys::{ensure_packages, is_root};
use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

const NS_STACK: &str = "xsccplot-a";
const NS_ROUTER: &str = "xsccplot-b";
const NS_CLIENT: &str = "xsccplot-c";
const STACK_ADDR: &str = "198.18.0.1";
/// Payload bytes per segment on a 1500-byte MTU with timestamps.
const MSS: f64 = 1448.0;

/// Options of `cargo xtask cc-plot`.
#[derive(clap::Args, Debug)]
pub struct CcPlotArgs {
    /// Modules to run, in panel order.
    #[arg(long, value_delimiter = ',', default_value = "newreno,cubic,bbr")]
    modules: Vec<String>,
    /// Bytes per download (240 MB is about 21 s at the bottleneck's rate: a few loss
    /// cycles of each module).
    #[arg(long, default_value_t = 240_000_000)]
    bytes: u64,
    /// tbf queue limit (tc syntax).
    #[arg(long, default_value = "650kb")]
    limit: String,
    /// The server's send buffer per connection, bytes.
    #[arg(long, default_value_t = 1 << 20)]
    sndbuf: usize,
    /// The stack's idle mode. `busy` as in `tests/veth_bottleneck.rs`: with `sleep`, late
    /// wakeups of the worker on a busy 2-core VM stretch the RTT, which a small window
    /// (BBR's, on this path with a microsecond base RTT) cannot cover.
    #[arg(long, default_value = "busy")]
    idle: String,
}

/// The client namespace and the routed, shaped hop ([`xstack_testnet::SecondHop`]);
/// removed on drop.
struct SecondHop(Option<xstack_testnet::SecondHop>);

impl SecondHop {
    fn create(limit: &str) -> Result<SecondHop> {
        let hop = xstack_testnet::SecondHop::create(NS_ROUTER, NS_CLIENT, limit)?;
        Ok(SecondHop(Some(hop)))
    }
}

impl Drop for SecondHop {
    fn drop(&mut self) {
        drop(self.0.take());
        println!("xtask: removed namespace {NS_CLIENT}");
    }
}

/// One sample of a trace CSV (the columns the plot uses).
#[derive(Clone, Copy, Debug)]
struct Sample {
    t_s: f64,
    cwnd: u32,
    ssthresh: u32,
    /// Pacing rate, bytes/s (0: not pacing).
    pacing: u32,
    loss: bool,
}

/// Parses the CSV `xstack http --cwnd-trace` writes.
fn parse_trace(text: &str) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 8 {
            bail!("trace line {}: {line:?}", i + 1);
        }
        let num = |k: usize| -> Result<u64> {
            f[k].parse()
                .with_context(|| format!("trace line {}: {line:?}", i + 1))
        };
        out.push(Sample {
            t_s: num(0)? as f64 / 1e6,
            cwnd: num(1)? as u32,
            ssthresh: num(2)?.min(u64::from(u32::MAX)) as u32,
            pacing: num(5)?.min(u64::from(u32::MAX)) as u32,
            loss: matches!(f[6], "loss" | "rto"),
        });
    }
    Ok(out)
}

/// Downloads `bytes` from `xstack http --cc module` through the bottleneck; returns the
/// body rate (bit/s) and the trace CSV.
fn one_module(bin: &str, module: &str, a: &CcPlotArgs, dir: &Path) -> Result<(f64, String)> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let dirs = dir.display().to_string();
    let argv: Vec<String> = [
        bin,
        "http",
        "--iface",
        "vstk",
        "--addr",
        "198.18.0.1/24",
        "--gateway",
        "198.18.0.2",
        "--idle",
        &a.idle,
        "--cc",
        module,
        "--server",
        "threads",
        "--cwnd-trace",
        &dirs,
        "--sndbuf",
        &a.sndbuf.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut stack, up_rx, out) = spawn_argv(NS_STACK, &argv)?;
    let result = wait_up(&mut stack, &up_rx).and_then(|()| {
        thread::sleep(Duration::from_millis(300));
        println!(
            "xtask: {module}: curl in {NS_CLIENT} downloads {} bytes from xstack through the bottleneck",
            a.bytes
        );
        let o = Command::new("ip")
            .args(["netns", "exec", NS_CLIENT, "curl", "-sS", "-o", "/dev/null"])
            .args(["-w", "%{http_code} %{size_download} %{time_pretransfer} %{time_total}"])
            .arg(format!("http://{STACK_ADDR}/bytes/{}", a.bytes))
            .output()
            .context("running curl")?;
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let f: Vec<&str> = text.split_whitespace().collect();
        if !o.status.success() || f.len() != 4 || f[0] != "200" || f[1] != a.bytes.to_string() {
            bail!(
                "curl failed: {text} {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        let secs = f[3].parse::<f64>()? - f[2].parse::<f64>()?;
        Ok(a.bytes as f64 * 8.0 / secs)
    });
    // The server writes the trace once it is done with the connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    let csv = loop {
        let found = std::fs::read_dir(dir)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "csv"));
        if found.is_some() || result.is_err() || Instant::now() > deadline || interrupted() {
            break found;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let stopped = stop(&mut stack, out);
    let rate = result?;
    stopped?;
    let csv = csv.context("the server wrote no trace")?;
    Ok((rate, std::fs::read_to_string(csv)?))
}

pub fn run(a: CcPlotArgs) -> Result<()> {
    if !is_root() {
        eprintln!("xtask: cc-plot needs root (network namespaces, XDP); run it as root");
        std::process::exit(1);
    }
    ensure_packages()?;
    install_signal_handlers();
    let bin = build_release()?;
    let bin = bin.to_string_lossy().to_string();
    let out_dir = target_dir().join("cc-plot");
    std::fs::create_dir_all(&out_dir)?;

    let mut runs = Vec::new();
    {
        let _net = NsPair::create(NS_STACK, NS_ROUTER)?;
        let _hop = SecondHop::create(&a.limit)?;
        for m in &a.modules {
            if interrupted() {
                bail!("interrupted");
            }
            let (rate, csv) = one_module(&bin, m, &a, &out_dir.join(format!("raw-{m}")))?;
            let path = out_dir.join(format!("cwnd-{m}.csv"));
            std::fs::write(&path, &csv)?;
            let trace = parse_trace(&csv)?;
            let losses = trace.iter().filter(|s| s.loss).count();
            println!(
                "xtask: {m}: {:.1} Mbit/s of body, {} trace samples, {losses} loss signals -> {}",
                rate / 1e6,
                trace.len(),
                path.display()
            );
            runs.push((m.clone(), rate, trace));
        }
    }
    let svg = out_dir.join("cwnd.svg");
    draw(&svg, &runs, &a)?;
    println!("xtask: wrote {}", svg.display());
    Ok(())
}

/// Reduces a trace to at most ~2 points per pixel column: each time bucket keeps its
/// minimum and maximum `value` in time order, so the sawtooth's edges survive.
fn thin(trace: &[Sample], buckets: usize, value: impl Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
    let Some(end) = trace.last().map(|s| s.t_s) else {
        return Vec::new();
    };
    let width = (end / buckets as f64).max(1e-6);
    let bucket = |t: f64| ((t / width) as usize).min(buckets.saturating_sub(1));
    let mut out = Vec::new();
    let mut i = 0;
    while i < trace.len() {
        let b = bucket(trace[i].t_s);
        let mut j = i;
        let (mut lo, mut hi) = (i, i);
        while j < trace.len() && bucket(trace[j].t_s) == b {
            if value(&trace[j]) < value(&trace[lo]) {
                lo = j;
            }
            if value(&trace[j]) > value(&trace[hi]) {
                hi = j;
            }
            j += 1;
        }
        let mut keep = if lo <= hi { vec![lo, hi] } else { vec![hi, lo] };
        keep.dedup();
        for k in keep {
            out.push((trace[k].t_s, value(&trace[k])));
        }
        i = j;
    }
    out
}

/// Two (or more) panels side by side: cwnd and ssthresh in segments over time.
fn draw(path: &PathBuf, runs: &[(String, f64, Vec<Sample>)], a: &CcPlotArgs) -> Result<()> {
    let n = runs.len().max(1);
    let root = SVGBackend::new(path, (560 * n as u32, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, n));
    let t_max = runs
        .iter()
        .filter_map(|r| r.2.last().map(|s| s.t_s))
        .fold(1.0, f64::max);
    let p_max = runs
        .iter()
        .flat_map(|r| r.2.iter().map(pacing_mbps))
        .fold(10.0, f64::max);
    for ((name, rate, trace), panel) in runs.iter().zip(panels.iter()) {
        // Each panel its own cwnd scale: BBR's window is a few segments where the
        // loss-based modules' are hundreds.
        let w_max = trace.iter().map(cwnd_segments).fold(10.0, f64::max);
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!(
                    "{name}: {:.1} Mbit/s, tbf 100mbit limit {}",
                    rate / 1e6,
                    a.limit
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .right_y_label_area_size(if paces(trace) { 52 } else { 0 })
            .build_cartesian_2d(0.0..t_max, 0.0..w_max * 1.05)?
            // Log scale: the rate BBR cruises at and its brief excursions both show.
            .set_secondary_coord(0.0..t_max, (1.0..p_max * 1.5).log_scale());
        chart
            .configure_mesh()
            .x_desc("time since connection start (s)")
            .y_desc("segments (1448 B)")
            .light_line_style(WHITE)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                thin(trace, 1200, cwnd_segments),
                BLUE.stroke_width(1),
            ))?
            .label("cwnd")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        let ss: Vec<(f64, f64)> = trace
            .iter()
            .filter(|s| s.ssthresh != u32::MAX)
            .map(|s| (s.t_s, f64::from(s.ssthresh) / MSS))
            .collect();
        chart
            .draw_series(LineSeries::new(thin_pairs(&ss, 600), RED.stroke_width(1)))?
            .label("ssthresh")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        if paces(trace) {
            chart
                .configure_secondary_axes()
                .y_desc("pacing rate (Mbit/s, log scale)")
                .y_label_formatter(&|v| format!("{v:.0}"))
                .draw()?;
            let green = RGBColor(0, 140, 60);
            chart
                .draw_secondary_series(LineSeries::new(
                    thin(trace, 1200, pacing_mbps)
                        .into_iter()
                        .filter(|&(_, r)| r >= 1.0),
                    green.stroke_width(1),
                ))?
                .label("pacing rate (right axis)")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], green));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// A sample's cwnd in segments.
fn cwnd_segments(s: &Sample) -> f64 {
    f64::from(s.cwnd) / MSS
}

/// A sample's pacing rate in Mbit/s.
fn pacing_mbps(s: &Sample) -> f64 {
    f64::from(s.pacing) * 8.0 / 1e6
}

/// The module paced (some sample has a pacing rate).
fn paces(trace: &[Sample]) -> bool {
    trace.iter().any(|s| s.pacing > 0)
}

/// Keeps the points of a step line where its value changes (ssthresh is constant between
/// losses), at most `max` of them.
fn thin_pairs(v: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for &(t, y) in v {
        match out.last().copied() {
            None => out.push((t, y)),
            // Hold the previous level until this change: a step, not a ramp.
            Some((_, py)) if py != y => {
                out.push((t, py));
                out.push((t, y));
            }
            Some(_) => {}
        }
    }
    if let Some(&last) = v.last() {
        if out.last() != Some(&last) {
            out.push(last);
        }
    }
    if out.len() > max {
        let step = out.len().div_ceil(max);
        out = out.into_iter().step_by(step).collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_trace_csv_and_thins_it() {
        let csv = "t_us,cwnd,ssthresh,in_flight,srtt_us,pacing_rate,event,cc,cwnd_limited\n\
                   0,14480,4294967295,0,0,0,init,cubic,0\n\
                   1000,28960,4294967295,1448,300,0,ack,cubic,1\n\
                   2000,20272,20272,28960,300,12500000,loss,cubic,0\n";
        let t = parse_trace(csv).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(pacing_mbps(&t[2]), 100.0);
        assert!(!paces(&t[..2]) && paces(&t));
        assert!(t[2].loss && !t[1].loss);
        assert_eq!(t[0].ssthresh, u32::MAX);
        let pts = thin(&t, 1, cwnd_segments);
        assert_eq!(pts.len(), 2, "one bucket keeps its min and max: {pts:?}");
        assert!(parse_trace("h\n1,2,3\n").is_err());
        let steps = thin_pairs(&[(0.0, 5.0), (1.0, 5.0), (2.0, 3.0), (3.0, 3.0)], 100);
        assert_eq!(steps, vec![(0.0, 5.0), (2.0, 5.0), (2.0, 3.0), (3.0, 3.0)]);
    }
}
