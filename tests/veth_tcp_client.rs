//! `xstack get` (the HTTP client on the stack) against Linux over a veth pair: a download
//! from `python3 -m http.server`, and the refused / timed-out / reset / truncated paths,
//! each of which must end in one `xstack: error: ...` line and exit 1.

mod common;

use std::time::Duration;

use common::*;

/// `xstack get URL` with the standard stack options (`--idle sleep`).
fn get(pair: &VethPair, url: &str, timeout: Duration) -> ClientRun {
    pair.run_xstack_client(
        &[
            "get", url, "--iface", STACK_IF, "--addr", STACK_CIDR, "--idle", "sleep",
        ],
        timeout,
    )
}

/// A python3 server on 198.18.0.2:PORT that misbehaves after accept, per `mode`:
/// `rst-accept` (SO_LINGER 0 + close right after accept: RST), `rst-request` (the same
/// after reading the request), `truncate` (a response promising 1000 bytes, 10 sent, FIN).
const BAD_SERVER: &str = r#"
import socket, struct, sys
port, mode = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.18.0.2", port))
s.listen(16)
print("ready", flush=True)
while True:
    c, a = s.accept()
    print("accepted", a, flush=True)
    if mode != "rst-accept":
        c.settimeout(5)
        try:
            print("request", repr(c.recv(65536)), flush=True)
        except Exception as e:
            print("recv failed", repr(e), flush=True)
    if mode == "truncate":
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
        c.close()
        print("truncated", flush=True)
    else:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        print("reset", flush=True)
"#;

fn spawn_bad_server(pair: &VethPair, port: u16, mode: &str) -> PeerProc {
    let py = python3_path();
    let port = port.to_string();
    let mut p = pair.spawn_peer(
        &format!("py-{mode}"),
        &[&py, "-u", "-c", BAD_SERVER, &port, mode],
    );
    p.wait_for("ready", Duration::from_secs(10));
    p
}

/// `xstack get` downloads a 20 MB random file from `python3 -m http.server` in the peer's
/// namespace; the JSON line reports 200, the size and the file's sha256.
#[test]
fn get_from_python_http_server() {
    if !require_root() || !require_tool("python3") {
        return;
    }
    let dir = TestDir::new("pyget");
    let www = dir.path.join("www");
    std::fs::create_dir_all(&www).expect("mkdir www");
    let file = dir.random_file("www/file", 20_000_000);
    let want = file_sha256(&file);
    let pair = VethPair::new_headers_only("pyget", 1, 128);
    let py = python3_path();
    let www_s = www.display().to_string();
    let mut server = pair.spawn_peer(
        "http.server",
        &[
            &py,
            "-u",
            "-m",
            "http.server",
            "8000",
            "--bind",
            PEER_ADDR,
            "--directory",
            &www_s,
        ],
    );
    server.wait_for("Serving HTTP", Duration::from_secs(10));
    let run = get(
        &pair,
        &format!("http://{PEER_ADDR}:8000/file"),
        Duration::from_secs(120),
    );
    eprintln!("{}", run.context());
    let ctx = format!(
        "{}\npython http.server output:\n{}",
        run.context(),
        server.output()
    );
    let json = run.json();
    assert_eq!(json["status"], 200, "status: {ctx}");
    assert_eq!(json["bytes"], 20_000_000, "bytes: {ctx}");
    assert_eq!(json["sha256"], want, "sha256: {ctx}");
    eprintln!("xstack get: {} Gbit/s", json["gbit_per_s"]);
}

/// Nothing listens on 198.18.0.2:9: Linux answers the SYN with an RST, and `xstack get`
/// fails at once with one line saying the connection was refused.
#[test]
fn get_refused() {
    if !require_root() {
        return;
    }
    let pair = VethPair::new("getrefused", 1);
    let run = get(
        &pair,
        &format!("http://{PEER_ADDR}:9/"),
        Duration::from_secs(30),
    );
    eprintln!("{}", run.context());
    let line = run.assert_error(1, &["refused"]);
    assert!(
        run.elapsed < Duration::from_secs(5),
        "refusal should be prompt (took {:.2?}): {line}",
        run.elapsed
    );
}

/// Nobody answers ARP for 198.18.0.99: `xstack get` gives up within ~15 s with one line
/// saying it timed out (or the host is unreachable).
#[test]
fn get_timeout_unanswered_arp() {
    if !require_root() {
        return;
    }
    let pair = VethPair::new("gettimeout", 1);
    let run = get(
        &pair,
        "http://198.18.0.99/bytes/10",
        Duration::from_secs(40),
    );
    eprintln!("{}", run.context());
    let line = run.assert_error(1, &["timed out", "unreachable"]);
    assert!(
        run.elapsed < Duration::from_secs(16),
        "should give up within ~15 s (took {:.2?}): {line}",
        run.elapsed
    );
}

/// The Linux server accepts and resets at once (SO_LINGER 0 + close): `xstack get` exits 1
/// with one line saying the connection was reset.
#[test]
fn get_reset_after_accept() {
    if !require_root() || !require_tool("python3") {
        return;
    }
    let pair = VethPair::new("getrstacc", 1);
    let server = spawn_bad_server(&pair, 7001, "rst-accept");
    let run = get(
        &pair,
        &format!("http://{PEER_ADDR}:7001/"),
        Duration::from_secs(30),
    );
    eprintln!("{}\nserver output:\n{}", run.context(), server.output());
    assert!(
        server.output().contains("reset"),
        "the server never reset a connection:\n{}",
        server.output()
    );
    let line = run.assert_error(1, &["reset"]);
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:.2?}: {line}",
        run.elapsed
    );
}

/// The Linux server reads the request, then resets: `xstack get` exits 1 with "reset".
#[test]
fn get_reset_after_request() {
    if !require_root() || !require_tool("python3") {
        return;
    }
    let pair = VethPair::new("getrstreq", 1);
    let server = spawn_bad_server(&pair, 7002, "rst-request");
    let run = get(
        &pair,
        &format!("http://{PEER_ADDR}:7002/"),
        Duration::from_secs(30),
    );
    eprintln!("{}\nserver output:\n{}", run.context(), server.output());
    let out = server.output();
    assert!(
        out.contains("request b'GET / HTTP/1.1"),
        "the server should have received the GET before resetting:\n{out}"
    );
    let line = run.assert_error(1, &["reset"]);
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:.2?}: {line}",
        run.elapsed
    );
}

/// The Linux server promises 1000 bytes, sends 10 and closes (FIN): `xstack get` exits 1
/// with one line saying the body was cut short, instead of reporting a 10-byte success.
#[test]
fn get_truncated_response() {
    if !require_root() || !require_tool("python3") {
        return;
    }
    let pair = VethPair::new("gettrunc", 1);
    let server = spawn_bad_server(&pair, 7003, "truncate");
    let run = get(
        &pair,
        &format!("http://{PEER_ADDR}:7003/"),
        Duration::from_secs(30),
    );
    eprintln!("{}\nserver output:\n{}", run.context(), server.output());
    let line = run.assert_error(1, &["closed", "truncated", "incomplete", "eof"]);
    assert!(
        run.elapsed < Duration::from_secs(10),
        "took {:.2?}: {line}",
        run.elapsed
    );
}
