//! Runs cases over seeds on worker threads, catches panics, writes a failing case's
//! trace, and replays traces.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::case;
use crate::target::{Event, Sent, Setup, SharedTrace, Target, Trace};

/// Frames per case: a case is one seed, a fresh pair of stacks.
pub const CASE_FRAMES: u64 = 2000;

/// A run's settings.
#[derive(Clone, Debug)]
pub struct Options {
    pub frames: u64,
    pub seed: u64,
    pub jobs: usize,
    /// Where failing traces go.
    pub out_dir: PathBuf,
}

/// A failing case.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub message: String,
    pub trace: PathBuf,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    pub frames: u64,
    pub cases: u64,
    pub secs: f64,
    pub failures: Vec<Failure>,
    /// The fuzzed stacks' counters, summed over the cases that passed: which paths the
    /// frames reached.
    pub counters: Vec<(&'static str, u64)>,
}

thread_local! {
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records panic messages (with their location) for the thread that panicked,
/// instead of printing them.
pub fn quiet_panics() {
    panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info.location().map(|l| l.to_string()).unwrap_or_default();
        PANIC.with(|p| *p.borrow_mut() = Some(format!("panic at {at}: {msg}")));
    }));
}

fn take_panic() -> String {
    PANIC
        .with(|p| p.borrow_mut().take())
        .unwrap_or_else(|| "panic".into())
}

/// Runs one case, a panic turned into an error; the events stay in `log`.
pub fn run_case(
    seed: u64,
    frames: u64,
    log: &SharedTrace,
) -> Result<Vec<(&'static str, u64)>, String> {
    let l = log.clone();
    panic::catch_unwind(AssertUnwindSafe(|| case::run(seed, frames, l)))
        .unwrap_or_else(|_| Err(take_panic()))
}

/// Runs `opts.frames` frames in cases of [`CASE_FRAMES`] (seeds `seed`, `seed + 1`, ...)
/// on `opts.jobs` threads; stops scheduling cases at the first failure.
pub fn run(opts: &Options) -> Report {
    quiet_panics();
    let cases = opts.frames.div_ceil(CASE_FRAMES).max(1);
    let per_case = opts.frames.min(CASE_FRAMES);
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let report = Mutex::new(Report::default());
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1) {
            s.spawn(|| {
                let log = SharedTrace::default();
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= cases {
                        break;
                    }
                    let seed = opts.seed.wrapping_add(i);
                    let result = run_case(seed, per_case, &log);
                    let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
                    r.cases += 1;
                    r.frames += log
                        .borrow()
                        .events
                        .iter()
                        .map(|e| match e {
                            Event::Rx(fs) => fs.len() as u64,
                            _ => 0,
                        })
                        .sum::<u64>();
                    match result {
                        Ok(c) if r.counters.is_empty() => r.counters = c,
                        Ok(c) => r
                            .counters
                            .iter_mut()
                            .zip(c)
                            .for_each(|(t, (_, v))| t.1 += v),
                        Err(message) => {
                            stop.store(true, Ordering::Relaxed);
                            let trace =
                                write_trace(&opts.out_dir, seed, per_case, &message, &log.borrow());
                            r.failures.push(Failure {
                                seed,
                                message,
                                trace,
                            });
                        }
                    }
                }
            });
        }
    });
    let mut r = report.into_inner().unwrap_or_else(|e| e.into_inner());
    r.secs = t0.elapsed().as_secs_f64();
    r
}

/// Writes a case's events as a trace file; returns its path.
fn write_trace(dir: &Path, seed: u64, frames: u64, msg: &str, log: &Trace) -> PathBuf {
    let path = dir.join(format!("seed-{seed}.trace"));
    let mut text = format!(
        "# xstack-fuzz trace: seed {seed}, {frames} frames (reproduce: --seed {seed} --frames {frames})\n\
         # failure: {}\n{}\n",
        msg.replace('\n', " "),
        log.setup.line()
    );
    for e in &log.events {
        text.push_str(&e.line());
        text.push('\n');
    }
    let _ = std::fs::create_dir_all(dir);
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("xstack-fuzz: cannot write {}: {e}", path.display());
    }
    path
}

/// Parses a trace file.
pub fn read_trace(path: &Path) -> Result<Trace, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut t = Trace::default();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        match line.strip_prefix("setup ") {
            Some(w) => t.setup = Setup::parse(w)?,
            None => t.events.push(Event::parse(line)?),
        }
    }
    Ok(t)
}

/// Applies a trace's events to a fresh stack, checking after each as the fuzzer does;
/// returns the stack's counters at the end, or the failure (a panic included).
pub fn replay(trace: &Trace, verbose: bool) -> Result<Vec<(&'static str, u64)>, String> {
    quiet_panics();
    let n = trace.events.len();
    let run = || -> Result<Vec<(&'static str, u64)>, String> {
        let mut t = Target::new(trace.setup, Instant::now(), SharedTrace::default());
        for (i, e) in trace.events.iter().enumerate() {
            if verbose && i + 1 == n {
                // A failing trace ends with the event that failed: the table before it.
                for c in t.stack.connections() {
                    println!(
                        "         connection {} > {} {} orphaned {}",
                        c.0, c.1, c.2, c.3
                    );
                }
            }
            let sent = t
                .apply(e.clone())
                .map_err(|m| format!("event {} of {n}: {m}", i + 1))?;
            if verbose {
                print_step(i + 1, e, &sent);
            }
        }
        Ok(t.stack.counters())
    };
    panic::catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|_| Err(take_panic()))
}

/// One replayed event and the TCP segments the stack sent for it (`--verbose`).
fn print_step(i: usize, e: &Event, sent: &[Sent]) {
    let mut line = e.line();
    line.truncate(100);
    println!("{i:6} {line}");
    for s in sent.iter().filter_map(|(_, s)| s.as_ref()) {
        println!(
            "         sent {}:{} > {}:{} flags {:#04x} seq {} ack {} win {} len {}",
            s.src, s.sport, s.dst, s.dport, s.flags, s.seq, s.ack, s.win, s.len
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A case's trace, written and read back, replays to the same end state: the
    // recorded events are all that reaches the stack, and the stack is deterministic.
    #[test]
    fn a_trace_replays_to_the_same_state() {
        let log = SharedTrace::default();
        let counters = run_case(42, 600, &log).expect("case");
        let dir = std::env::temp_dir().join(format!("xstack-fuzz-test-{}", std::process::id()));
        let path = write_trace(&dir, 42, 600, "none", &log.borrow());
        let back = read_trace(&path).expect("read");
        assert_eq!(back.setup, log.borrow().setup);
        assert_eq!(back.events, log.borrow().events);
        assert_eq!(replay(&back, false).expect("replay"), counters);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_panic_is_reported_with_its_place() {
        quiet_panics();
        let r = panic::catch_unwind(|| panic!("boom")).map_err(|_| take_panic());
        let e = r.expect_err("panicked");
        assert!(e.contains("boom") && e.contains("runner.rs"), "{e}");
    }
}
