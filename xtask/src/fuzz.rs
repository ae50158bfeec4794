//! `cargo xtask fuzz`: builds the in-process fuzzer (`stack/fuzz/`, package
//! `xstack-fuzz`) with the `fuzz` profile (optimized, debug assertions and overflow
//! checks on) and runs it.

use anyhow::{bail, Result};
use std::path::PathBuf;
use std::process::Command;

use crate::{cargo, workspace_root};

/// Frames `cargo xtask test` runs (one seed; well under a minute).
pub const TEST_FRAMES: u64 = 100_000;

#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// Frames to feed the fuzzed stack, in cases of 2000 frames (one seed each).
    #[arg(long, default_value_t = 1_000_000)]
    pub frames: u64,
    /// The first case's seed (case i uses seed + i).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Threads running cases.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Replay a trace written by a failing run (target/fuzz/traces/seed-N.trace).
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// Print the fuzzed stacks' counters summed over the run (which paths were reached).
    #[arg(long)]
    pub stats: bool,
    /// With --replay: print each event and the segments the stack sent for it.
    #[arg(long, requires = "replay")]
    pub verbose: bool,
}

/// Runs the fuzzer as `args` say; fails when it finds a failure.
pub fn run(args: FuzzArgs) -> Result<()> {
    let root = workspace_root();
    let mut cmd = Command::new(cargo());
    cmd.current_dir(&root)
        .args([
            "run",
            "--quiet",
            "-p",
            "xstack-fuzz",
            "--profile",
            "fuzz",
            "--",
        ])
        .args(["--frames", &args.frames.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .args(["--jobs", &args.jobs.to_string()])
        .arg("--out")
        .arg(root.join("target/fuzz/traces"));
    if let Some(r) = &args.replay {
        cmd.arg("--replay").arg(std::path::absolute(r)?);
    }
    if args.stats {
        cmd.arg("--stats");
    }
    if args.verbose {
        cmd.arg("--verbose");
    }
    let status = cmd.status()?;
    if !status.success() {
        bail!("xstack-fuzz failed ({status})");
    }
    Ok(())
}

/// The short run `cargo xtask test` includes: a fixed seed, so it is reproducible.
pub fn short() -> Result<()> {
    run(FuzzArgs {
        frames: TEST_FRAMES,
        seed: 1,
        jobs: 2,
        replay: None,
        stats: false,
        verbose: false,
    })
}
