//! Build and test automation for xstack: `cargo xtask <command>`.
//!
//! - `build-ebpf [--check]`: rebuild (or check) every `ebpf/*.o` from its `.c`.
//! - `test [-- ARGS]`: install missing system tools (root, Debian), check the committed
//!   eBPF objects, run `cargo test --workspace` (unit + veth integration tests), a short
//!   fuzz run (`fuzz` with 10^5 frames), then the conformance suite against `tests/conformance/expected.json` (skipped, with a line saying
//!   why, when packetdrill or the scripts are not available).
//! - `demo`: run the stack in a namespace pair and ping it from Linux.
//! - `bench`: xstack beside Linux on the same veth pair, reported as ratios.
//! - `cc-plot`: cwnd over time for each congestion-control module through a bottleneck.
//! - `conformance`: packetdrill scripts against xstack's simulator, in-process.
//! - `fuzz`: random and mutated frames into a simulated stack with live connections.

mod bench;
mod ccplot;
mod conformance;
mod demo;
mod ebpf;
mod fuzz;
mod sys;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "xstack build and test automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Rebuild ebpf/*.o from ebpf/*.c with clang (reproducible flags).
    BuildEbpf {
        /// Build to a temporary file and fail if it differs from the committed object.
        #[arg(long)]
        check: bool,
    },
    /// Unit and veth integration tests (the veth tests need root; they skip otherwise),
    /// a short fuzz run, then the conformance suite against tests/conformance/expected.json.
    Test {
        /// Extra arguments passed to `cargo test` (after `--`).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Start the stack on a veth pair in two namespaces, ping it, print its counters.
    Demo,
    /// xstack beside Linux on the same veth pair, as ratios (writes target/bench/bench.json).
    Bench(bench::BenchArgs),
    /// One download per congestion-control module through a 100 Mbit/s tbf bottleneck;
    /// writes the cwnd traces (target/cc-plot/cwnd-MODULE.csv) and target/cc-plot/cwnd.svg.
    CcPlot(ccplot::CcPlotArgs),
    /// Run packetdrill scripts (default: the FreeBSD tcp-testsuite) against xstack's
    /// simulator in-process (packetdrill --so_filename); one line per script, a table per
    /// folder, then a comparison with the expected results (non-zero exit on a regression).
    Conformance(conformance::ConformanceArgs),
    /// Random and mutated frames (Ethernet, ARP, IPv4, TCP, ICMP) into a simulated stack
    /// with connections in every TCP state, checking after every frame; a failure writes
    /// a replayable trace to target/fuzz/traces/.
    Fuzz(fuzz::FuzzArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::BuildEbpf { check } => ebpf::build_all(check),
        Cmd::Test { cargo_args } => test(&cargo_args),
        Cmd::Demo => demo::run(),
        Cmd::Bench(a) => bench::run(a),
        Cmd::CcPlot(a) => ccplot::run(a),
        Cmd::Conformance(a) => conformance::run(a),
        Cmd::Fuzz(a) => fuzz::run(a),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// The cargo binary that runs us.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

fn test(cargo_args: &[String]) -> Result<()> {
    sys::ensure_packages()?;
    if sys::have_tool("clang") {
        ebpf::build_all(true)?;
    } else {
        println!("xtask: build-ebpf --check skipped (clang not found)");
    }
    if !sys::is_root() {
        println!("xtask: not root: the veth integration tests will skip (they need CAP_NET_ADMIN, CAP_BPF)");
    }
    let status = Command::new(cargo())
        .current_dir(workspace_root())
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(cargo_args)
        .status()?;
    if !status.success() {
        bail!("cargo test --workspace failed ({status})");
    }
    fuzz::short()?;
    conformance::expect::gate()
}
