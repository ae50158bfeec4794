//! The hyper example (`examples/hyper_http.rs`, hyper on xstack-tokio) with Linux's curl
//! as the client over a veth pair: a download checked against the pattern's sha256, an
//! upload answered with its sha256, `/info` of the serving connection, `/stats`, and
//! several requests on one keep-alive connection.
//!
//! Like the veth tests in the repository's `tests/`: it needs root (it skips with a
//! printed reason otherwise), works in two namespaces it creates (`xstack-testnet`),
//! sends only to 198.18.0.0/15 inside them, and tears them down on drop, also when it
//! fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use xstack_testnet::{NsPair, STACK_ADDR, STACK_CIDR, STACK_IF};

/// Namespace names start like the other veth tests' so `remove_stale` finds leftovers.
const NS_PREFIX: &str = "xst-";
/// How long the example may take to print its listening line.
const UP_TIMEOUT: Duration = Duration::from_secs(30);

/// True when this process may create namespaces and load XDP programs and has the tools;
/// otherwise prints why the test is skipped.
fn require_root() -> bool {
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        })
        .unwrap_or(0);
    let bit = |n: u32| caps & (1u64 << n) != 0;
    if !(bit(12) && (bit(39) || bit(21))) {
        println!("skipping veth test: needs root (CAP_NET_ADMIN, CAP_BPF)");
        return false;
    }
    for tool in ["ip", "ethtool", "curl"] {
        let found = Command::new(tool)
            .arg(if tool == "ip" { "-V" } else { "--version" })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            println!("skipping veth test: `{tool}` not found in PATH");
            return false;
        }
    }
    true
}

/// The example binary cargo built beside this test (`cargo test` builds examples; when
/// only this test was selected, it is built here).
fn example_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/veth_hyper-HASH -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let bin = profile_dir.join("examples").join("hyper_http");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "xstack-tokio", "--example", "hyper_http"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        if let Some(target) = profile_dir.parent() {
            cmd.arg("--target-dir").arg(target);
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the hyper_http example failed");
    }
    bin
}

/// The example running in the stack's namespace; killed on drop.
struct Server {
    child: Child,
    stderr: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Server {
    fn start(ns: &str) -> Server {
        let bin = example_bin();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&bin)
            .args([STACK_IF, STACK_CIDR, "80"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let err = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            stderr: rx,
            log: Vec::new(),
        };
        loop {
            match server.stderr.recv_timeout(UP_TIMEOUT) {
                Ok(line) => {
                    eprintln!("hyper_http: {line}");
                    let up = line.starts_with("hyper_http: listening on port");
                    server.log.push(line);
                    if up {
                        return server;
                    }
                }
                Err(_) => panic!(
                    "hyper_http printed no listening line within {UP_TIMEOUT:?}:\n{}",
                    server.log.join("\n")
                ),
            }
        }
    }

    /// Everything it printed so far.
    fn log(&mut self) -> String {
        self.log.extend(self.stderr.try_iter());
        self.log.join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // `ip netns exec` execs the example, so this is its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(pair: &NsPair, args: &[&str]) -> Output {
    let mut argv = vec!["curl", "-sS", "--max-time", "60"];
    argv.extend_from_slice(args);
    let out = pair.peer.exec(&argv).expect("run curl");
    assert!(
        out.status.success(),
        "curl {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(what: &str, out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    xstack_tools::http::hex(&Sha256::digest(bytes))
}

#[test]
fn curl_against_hyper_on_xstack_tokio() {
    if !require_root() {
        return;
    }
    xstack_testnet::remove_stale(NS_PREFIX);
    let base = format!("{NS_PREFIX}{}-hyper", std::process::id());
    let pair = NsPair::create(&format!("{base}-a"), &format!("{base}-b"), 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut server = Server::start(pair.stack.name());
    let url = |path: &str| format!("http://{STACK_ADDR}{path}");

    // A download of 8 MiB of the pattern.
    const N: u64 = 8 << 20;
    let dl = curl(&pair, &[&url(&format!("/bytes/{N}"))]);
    assert_eq!(dl.stdout.len() as u64, N, "download length");
    assert_eq!(
        sha256_hex(&dl.stdout),
        xstack_tools::http::pattern_sha256(N),
        "download sha256"
    );

    // An upload of 3 MB: the answer is its sha256.
    let dir = std::env::temp_dir().join(format!("{base}-upload"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("upload.bin");
    let body: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &body).expect("write upload file");
    let up = curl(
        &pair,
        &[
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", file.display()),
            &url("/sha256"),
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        String::from_utf8_lossy(&up.stdout),
        sha256_hex(&body),
        "upload sha256"
    );

    // `/info` of the serving connection, after switching it to CUBIC.
    let info = json("/info?cc=cubic", &curl(&pair, &[&url("/info?cc=cubic")]));
    assert_eq!(info["state"], "ESTABLISHED", "/info: {info}");
    assert_eq!(info["cc"], "cubic", "/info: {info}");
    assert_eq!(info["local"], format!("{STACK_ADDR}:80"), "/info: {info}");
    let bad = curl(
        &pair,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url("/info?cc=nonexistent"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&bad.stdout), "400", "unknown cc");

    // Three requests on one keep-alive connection, then `/stats`.
    let keep = curl(
        &pair,
        &[
            "-w",
            "%{num_connects}:%{size_download} ",
            "-o",
            "/dev/null",
            &url("/bytes/10"),
            "-o",
            "/dev/null",
            &url("/bytes/20"),
            "-o",
            "/dev/null",
            &url("/bytes/30"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&keep.stdout),
        "1:10 0:20 0:30 ",
        "one connection (num_connects 1, then 0) serves all three"
    );
    let stats = json("/stats", &curl(&pair, &[&url("/stats")]));
    let opened = stats["counters"]["tcp.conns_opened"].as_u64().unwrap_or(0);
    assert!(opened >= 5, "connections opened: {stats}");
    let missing = curl(
        &pair,
        &["-o", "/dev/null", "-w", "%{http_code}", &url("/nowhere")],
    );
    assert_eq!(String::from_utf8_lossy(&missing.stdout), "404");
    eprintln!("server log:\n{}", server.log());
}
