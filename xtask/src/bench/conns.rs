//! The "conns100k" row: 100,000 concurrent connections from Linux to the event-driven
//! `xstack http` on one worker, each answered once and then held open and idle; the
//! time to open them all, the stack process's memory per idle connection, and whether
//! all of them close cleanly.
//!
//! There is no Linux side in this row. A kernel-socket server needs a descriptor per
//! connection, and the test machines cap a process at 20,000 open files, which only
//! `CAP_SYS_RESOURCE` can raise. The xstack server needs no descriptor per connection
//! (its event loop hears from all of them through one `ReadyQueue`). The clients run as
//! several Python processes on the peer, each under that cap, from four addresses so the
//! 4-tuples fit in the ephemeral ports. The script is `tests/scripts/conns_client.py`,
//! shared with `tests/veth_100k_conns.rs`.

use super::{Env, STACK_ADDR};
use crate::sys::must;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CONNS: usize = 100_000;
const PER_CLIENT: usize = 15_000;
const SOURCES: [&str; 4] = ["198.18.0.20", "198.18.0.21", "198.18.0.22", "198.18.0.23"];
const CLIENT: &str = include_str!("../../../tests/scripts/conns_client.py");

/// One client process and its output lines.
struct Client {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Client {
    /// Waits for a line starting with `prefix`; fails after `timeout` or on exit.
    fn wait_line(&self, prefix: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return Ok(l),
                Ok(_) => {}
                Err(_) => bail!("conns100k: no `{prefix}` line from a client within {timeout:?}"),
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS of `pid` in bytes.
fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |k| k * 1024)
}

/// `/stats{query}` of the server, fetched from the peer.
fn stats(env: &Env, query: &str) -> Result<serde_json::Value> {
    let url = format!("http://{STACK_ADDR}/stats{query}");
    let argv = env.peer(&["curl", "-s", "--max-time", "10", &url]);
    let out = Command::new(&argv[0]).args(&argv[1..]).output()?;
    serde_json::from_slice(&out.stdout).with_context(|| format!("conns100k: GET {url}"))
}

fn connections(v: &serde_json::Value) -> u64 {
    v["workers"].as_array().map_or(0, |w| {
        w.iter().filter_map(|w| w["connections"].as_u64()).sum()
    })
}

fn counter(v: &serde_json::Value, name: &str) -> u64 {
    v["counters"][name].as_u64().unwrap_or(0)
}

pub(super) fn conns_row(
    env: &Env,
    report: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    for src in SOURCES {
        must(&[
            "ip",
            "netns",
            "exec",
            env.b,
            "ip",
            "addr",
            "replace",
            &format!("{src}/24"),
            "dev",
            "vpeer",
        ])?;
    }
    must(&[
        "ip",
        "netns",
        "exec",
        env.b,
        "sysctl",
        "-qw",
        "net.ipv4.ip_local_port_range=10000 65000",
    ])?;
    let server = env.stack("http", &["--port", "80", "--idle-timeout", "90"])?;
    let pid = server.child.id();
    std::thread::sleep(Duration::from_millis(300));
    let rss0 = rss_bytes(pid);
    let heap0 = stats(env, "?heap")?["memory"]["heap_in_use"]
        .as_u64()
        .unwrap_or(0);
    let started = Instant::now();
    let mut clients = Vec::new();
    let mut left = CONNS;
    while left > 0 {
        let k = left.min(PER_CLIENT);
        left -= k;
        let argv = env.peer(&[
            "python3",
            "-c",
            CLIENT,
            &k.to_string(),
            &SOURCES.join(","),
            STACK_ADDR,
        ]);
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("conns100k: starting a client")?;
        let out = child.stdout.take().context("client stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(|l| l.ok()) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        clients.push((k, Client { child, lines }));
    }
    let mut failed = 0u64;
    for (k, c) in &clients {
        let l = c.wait_line("open ", Duration::from_secs(900))?;
        if !l.starts_with(&format!("open {k} failed 0")) {
            failed += 1;
            println!("conns100k: a client reported: {l}");
        }
    }
    let open_secs = started.elapsed().as_secs_f64();
    // Idle past buffer_idle_release and the allocator's trim.
    std::thread::sleep(Duration::from_secs(4));
    let rss1 = rss_bytes(pid);
    let held_stats = stats(env, "?heap")?;
    let heap1 = held_stats["memory"]["heap_in_use"].as_u64().unwrap_or(0);
    let held = connections(&held_stats);
    for (_, c) in &clients {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(c.child.id() as i32, libc::SIGUSR1);
        }
    }
    for (_, c) in &clients {
        c.wait_line("closed ", Duration::from_secs(300))?;
    }
    let closing = Instant::now();
    let mut open_after = connections(&stats(env, "")?);
    while open_after > 1 && closing.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(500));
        open_after = connections(&stats(env, "")?);
    }
    let close_secs = closing.elapsed().as_secs_f64();
    drop(clients);
    let end = server.stop_json()?;
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / CONNS as f64;
    let rss_per = per(rss0, rss1);
    let heap_per = per(heap0, heap1);
    println!(
        "conns100k: {CONNS} connections open in {open_secs:.1} s ({:.0}/s), server holds \
         {held}; per idle connection: {rss_per:.0} bytes resident, {heap_per:.0} bytes of \
         heap; after close: {} left in {close_secs:.1} s, RSTs sent {}",
        CONNS as f64 / open_secs,
        open_after.saturating_sub(1),
        counter(&end, "tcp.rst_tx")
    );
    if failed > 0 || held < CONNS as u64 {
        println!("conns100k: not all connections were open at once ({failed} clients failed)");
    }
    report.insert(
        "conns100k".into(),
        serde_json::json!({
            "setup": format!(
                "{CONNS} connections from {} Python clients on the peer (sources {:?}, 64 \
                 connects in flight each), one GET /bytes/1 each, to xstack http on CPU {} \
                 (event server, 1 worker); no Linux side: kernel sockets need a descriptor \
                 each and the open-file limit here is 20,000",
                CONNS.div_ceil(PER_CLIENT), SOURCES, env.cpu
            ),
            "open_seconds": open_secs,
            "server_connections_held": held,
            "rss_bytes_per_conn": rss_per,
            "heap_bytes_per_conn": heap_per,
            "left_after_close": open_after.saturating_sub(1),
            "close_seconds": close_secs,
            "rst_tx": counter(&end, "tcp.rst_tx"),
        }),
    );
    for src in SOURCES {
        let _ = must(&[
            "ip",
            "netns",
            "exec",
            env.b,
            "ip",
            "addr",
            "del",
            &format!("{src}/24"),
            "dev",
            "vpeer",
        ]);
    }
    Ok(())
}
