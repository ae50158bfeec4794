//! `xstack-fuzz [--frames N] [--seed S] [--jobs J] [--out DIR] [--stats] [--replay FILE [--verbose]]`:
//! see the
//! library's documentation. Exits non-zero on a failure, after printing its seed and
//! the trace written.

use std::path::PathBuf;
use std::process::ExitCode;

use xstack_fuzz::runner::{self, Options};

struct Args {
    opts: Options,
    replay: Option<PathBuf>,
    stats: bool,
    verbose: bool,
}

fn parse() -> Result<Args, String> {
    let mut o = Options {
        frames: 100_000,
        seed: 1,
        jobs: 1,
        out_dir: PathBuf::from("target/fuzz/traces"),
    };
    let mut replay = None;
    let mut stats = false;
    let mut verbose = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{a}: {e}"));
        match a.as_str() {
            "--frames" => o.frames = num(val()?)?,
            "--seed" => o.seed = num(val()?)?,
            "--jobs" => o.jobs = num(val()?)? as usize,
            "--out" => o.out_dir = PathBuf::from(val()?),
            "--replay" => replay = Some(PathBuf::from(val()?)),
            "--stats" => stats = true,
            "--verbose" => verbose = true,
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    Ok(Args {
        opts: o,
        replay,
        stats,
        verbose,
    })
}

fn main() -> ExitCode {
    let Args {
        opts,
        replay,
        stats,
        verbose,
    } = match parse() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("xstack-fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = replay {
        let result = runner::read_trace(&path)
            .and_then(|t| runner::replay(&t, verbose).map(|_| t.events.len()));
        return match result {
            Ok(n) => {
                println!(
                    "fuzz: replayed {n} events from {}: no failure",
                    path.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("fuzz: replay of {} fails: {e}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    let r = runner::run(&opts);
    println!(
        "fuzz: {} frames in {} cases (seeds {}..), {:.1} s, {:.0} frames/s, {} job(s)",
        r.frames,
        r.cases,
        opts.seed,
        r.secs,
        r.frames as f64 / r.secs.max(1e-9),
        opts.jobs
    );
    if stats {
        for (name, v) in r.counters.iter().filter(|(_, v)| *v > 0) {
            println!("  {name:32} {v}");
        }
    }
    for f in &r.failures {
        println!("fuzz: FAILED seed {}: {}", f.seed, f.message);
        println!(
            "fuzz: trace {} (replay: cargo xtask fuzz --replay {}; or --seed {} --frames {})",
            f.trace.display(),
            f.trace.display(),
            f.seed,
            opts.frames.min(runner::CASE_FRAMES)
        );
    }
    if r.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
