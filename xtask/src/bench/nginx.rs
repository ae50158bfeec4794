//! The "nginx" rows: `xstack http` against nginx on Linux's TCP, with wrk and curl on the
//! peer, in the same run.
//!
//! nginx is what a user would run instead: one worker process pinned to the stack's CPU
//! (`taskset`, `master_process off`), `sendfile on`, access log off, keep-alive without a
//! request limit, serving static files of the sizes `xstack http` generates
//! (`/bytes/N`, the same bytes). It listens on the kernel's address of the stack's
//! interface (198.18.0.3:8080) with an idle xstack attached, as the other kernel
//! baselines do. wrk runs in the peer namespace on the other CPU, one thread.

use super::{alternate, line, median, Env, KERNEL_ADDR, STACK_ADDR};
use crate::sys::must;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// nginx's port (the kernel's port 80 is the bench's own kernel HTTP server).
const NGINX_PORT: u16 = 8080;

/// Seconds per wrk measurement.
const WRK_SECONDS: &str = "5";

/// The small response of the request-rate rows: `GET /bytes/1`.
const SMALL: u64 = 1;

/// One figure of a round.
type Figure = fn(&Round) -> f64;

/// One wrk run's result.
#[derive(Clone, Copy, Debug, serde::Serialize)]
struct Wrk {
    req_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    /// Non-2xx responses and socket errors (connect, read, write, timeout).
    errors: u64,
}

/// The measurements of one server in one round.
#[derive(Clone, Copy, Debug, serde::Serialize)]
struct Round {
    c50: Wrk,
    c1: Wrk,
    close4: Wrk,
    close50: Wrk,
    download_gbps: f64,
}

/// Installs nginx and wrk when missing (as root on Debian), without letting the package
/// start nginx as a system service: a `policy-rc.d` that denies service starts is in
/// place for the install and removed afterwards.
fn ensure_nginx_wrk() -> Result<()> {
    let missing: Vec<&str> = [("nginx", "nginx"), ("wrk", "wrk")]
        .into_iter()
        .filter(|(tool, _)| !crate::sys::have_tool(tool))
        .map(|(_, pkg)| pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let ours = !policy.exists();
    if ours {
        std::fs::write(
            policy,
            "#!/bin/sh\n# xtask bench: no service starts\nexit 101\n",
        )?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755))?;
    }
    println!("xtask: installing {}", missing.join(" "));
    let r = crate::sys::apt(&["update", "-q"]).and_then(|_| {
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend(&missing);
        crate::sys::apt(&args)
    });
    if ours {
        let _ = std::fs::remove_file(policy);
    }
    r
}

/// Writes the document root (`html/bytes/N` for each size, the generated pattern: byte
/// `i` is `i % 251`) and the configuration; returns the configuration's path.
fn prepare(dir: &Path, sizes: &[u64], cpu: &str) -> Result<PathBuf> {
    let bytes_dir = dir.join("html/bytes");
    std::fs::create_dir_all(&bytes_dir)?;
    let pattern: Vec<u8> = (0..251 * 4096).map(|i| (i % 251) as u8).collect();
    for &n in sizes {
        let path = bytes_dir.join(n.to_string());
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == n) {
            continue;
        }
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut left = n;
        while left > 0 {
            let take = left.min(pattern.len() as u64) as usize;
            f.write_all(&pattern[..take])?;
            left -= take as u64;
        }
        f.flush()?;
    }
    for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.join("tmp").join(t))?;
    }
    let d = dir.display();
    let conf = format!(
        "# written by cargo xtask bench\n\
         daemon off;\nmaster_process off;\nworker_processes 1;\nworker_rlimit_nofile 65536;\n\
         pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         # CPU {cpu} (taskset)\n\
         events {{ worker_connections 65536; multi_accept on; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  tcp_nodelay on;\n\
           keepalive_requests 100000000;\n  keepalive_timeout 65;\n\
           default_type application/octet-stream;\n\
           client_body_temp_path {d}/tmp/client_body;\n  proxy_temp_path {d}/tmp/proxy;\n\
           fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n\
           scgi_temp_path {d}/tmp/scgi;\n\
           server {{\n    listen {KERNEL_ADDR}:{NGINX_PORT} backlog=4096;\n\
             root {d}/html;\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}

/// A latency as wrk prints it (`28.00us`, `1.20ms`, `2.00s`), in microseconds.
fn wrk_latency_us(s: &str) -> Option<f64> {
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|x| x * mult)
}

/// Parses wrk's report (`--latency`).
fn parse_wrk(text: &str) -> Result<Wrk> {
    let mut req_per_s = None;
    let (mut p50, mut p99) = (None, None);
    let mut errors = 0u64;
    for line in text.lines() {
        let t = line.trim();
        let f: Vec<&str> = t.split_whitespace().collect();
        match f.as_slice() {
            ["Requests/sec:", v] => req_per_s = v.parse::<f64>().ok(),
            ["50%", v] => p50 = wrk_latency_us(v),
            ["99%", v] => p99 = wrk_latency_us(v),
            ["Non-2xx", "or", "3xx", "responses:", n] => errors += n.parse::<u64>().unwrap_or(0),
            _ if t.starts_with("Socket errors:") => {
                errors += t
                    .split(',')
                    .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    Ok(Wrk {
        req_per_s: req_per_s.context("wrk printed no Requests/sec")?,
        p50_us: p50.context("wrk printed no 50% latency")?,
        p99_us: p99.context("wrk printed no 99% latency")?,
        errors,
    })
}

/// One wrk run from the peer: `conns` connections on one thread, optionally with
/// `Connection: close` (one connection per request).
fn wrk(env: &Env, url: &str, conns: usize, close: bool) -> Result<Wrk> {
    let c = conns.to_string();
    let mut args = vec!["wrk", "-t1", "-c", &c, "-d", WRK_SECONDS, "--latency"];
    if close {
        args.extend(["-H", "Connection: close"]);
    }
    args.push(url);
    let argv = env.peer(&args);
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .with_context(|| argv.join(" "))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_wrk(&text).with_context(|| {
        format!(
            "`{}`: {text} {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// All measurements against one server (`base`: `http://ADDR:PORT`).
fn round(env: &Env, base: &str) -> Result<Round> {
    let small = format!("{base}/bytes/{SMALL}");
    // A short warm-up: first connections, page cache, ARP.
    let _ = wrk(env, &small, 4, false);
    Ok(Round {
        c50: wrk(env, &small, 50, false)?,
        c1: wrk(env, &small, 1, false)?,
        close4: wrk(env, &small, 4, true)?,
        close50: wrk(env, &small, 50, true)?,
        download_gbps: env.curl_download(&format!("{base}/bytes/{}", env.args.bytes))?,
    })
}

/// The rows: `xstack http` (started with `http_args`) and nginx, alternating per round.
pub(super) fn nginx_rows(
    env: &Env,
    http_args: &[&str],
    report: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    ensure_nginx_wrk()?;
    let dir = crate::demo::target_dir().join("bench/nginx");
    let conf = prepare(&dir, &[SMALL, env.args.bytes], &env.cpu)?;
    let conf_s = conf.to_string_lossy().to_string();
    // The configuration is checked before it runs, so a bad one fails here, clearly.
    must(&[
        "ip", "netns", "exec", env.a, "nginx", "-t", "-q", "-c", &conf_s,
    ])?;
    let nginx = super::Bg::spawn(&[
        "ip", "netns", "exec", env.a, "taskset", "-c", &env.cpu, "nginx", "-c", &conf_s,
    ])?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let s_base = format!("http://{STACK_ADDR}:80");
    let k_base = format!("http://{KERNEL_ADDR}:{NGINX_PORT}");
    let (s_r, k_r) = alternate(
        env,
        Some(("http", http_args)),
        || round(env, &s_base),
        || round(env, &k_base),
    )?;
    drop(nginx);
    let m = |v: &[Round], f: Figure| median(v.iter().map(f).collect());
    let rows: [(&str, Figure); 8] = [
        ("nginx: wrk -c50 req/s", |r| r.c50.req_per_s),
        ("nginx: wrk -c50 p50 us", |r| r.c50.p50_us),
        ("nginx: wrk -c1 req/s", |r| r.c1.req_per_s),
        ("nginx: wrk -c1 p50 us", |r| r.c1.p50_us),
        ("nginx: wrk -c4 close req/s", |r| r.close4.req_per_s),
        ("nginx: wrk -c50 close req/s", |r| r.close50.req_per_s),
        ("nginx: wrk -c50 close p50 us", |r| r.close50.p50_us),
        ("nginx: 1 GB download Gbit/s", |r| r.download_gbps),
    ];
    let mut medians = serde_json::Map::new();
    for (what, f) in rows {
        let (s, k) = (m(&s_r, f), m(&k_r, f));
        line(what, s, k);
        medians.insert(
            what.to_string(),
            serde_json::json!({"xstack": s, "nginx": k, "ratio": s / k}),
        );
    }
    let errors: u64 = s_r
        .iter()
        .chain(&k_r)
        .map(|r| r.c50.errors + r.c1.errors + r.close4.errors + r.close50.errors)
        .sum();
    if errors > 0 {
        println!("nginx rows: {errors} wrk errors (non-2xx or socket errors) in all rounds");
    }
    report.insert(
        "nginx".into(),
        serde_json::json!({
            "setup": format!(
                "nginx 1 worker (master_process off) pinned to CPU {}, sendfile on, access_log off, \
                 static files; xstack http {:?} on the same CPU; wrk -t1 -d{WRK_SECONDS}s on the \
                 peer's CPU {}; GET /bytes/{SMALL}; download: curl of {} bytes",
                env.cpu, http_args, env.peer_cpu, env.args.bytes
            ),
            "medians": medians,
            "wrk_errors": errors,
            "xstack_rounds": s_r,
            "nginx_rounds": k_r,
        }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_report_parses() {
        let text = "Running 5s test @ http://198.18.0.1:80/bytes/1
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   590.12us  100.00us   2.00ms   90.00%
    Req/Sec    84.00k     1.00k   86.00k    70.00%
  Latency Distribution
     50%  580.00us
     75%  620.00us
     90%  700.00us
     99%    1.20ms
  420000 requests in 5.00s, 50.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  84000.50
Transfer/sec:     10.00MB
";
        let w = parse_wrk(text).unwrap();
        assert_eq!(w.req_per_s, 84000.5);
        assert_eq!(w.p50_us, 580.0);
        assert_eq!(w.p99_us, 1200.0);
        assert_eq!(w.errors, 7);
        assert!(parse_wrk("Requests/sec: 1\n").is_err(), "no latency");
        assert_eq!(wrk_latency_us("2.00s"), Some(2e6));
        assert_eq!(wrk_latency_us("28us"), Some(28.0));
        assert_eq!(wrk_latency_us("x"), None);
    }
}
