//! `xstack http --server event` (one mio event loop per accept thread, on xstack's
//! sockets) and `--server worker` (the same loop inside the worker thread, as a task)
//! with Linux as the client over a veth pair, the workers sleeping when idle: a download
//! and a chunked upload checked by sha256, hundreds of pipelined keep-alive connections
//! at once on two per-worker loops (and, for `worker`, on one loop whose connections are
//! spread over two workers), and a request-target that is not origin-form answered 400.

mod common;

use common::*;

/// curl downloads 20 MiB and uploads 5 MB chunked; both digests match.
#[test]
fn event_server_download_and_chunked_upload() {
    download_and_upload("event", "evdl");
}

#[test]
fn worker_server_download_and_chunked_upload() {
    download_and_upload("worker", "wkdl");
}

fn download_and_upload(server: &str, name: &str) {
    if !require_root() || !require_tool("curl") {
        return;
    }
    let dir = TestDir::new(name);
    let file = dir.random_file("upload.bin", 5_000_000);
    let want_up = file_sha256(&file);
    let pair = VethPair::new_headers_only(name, 1, 128);
    let stack = pair.spawn_http(&["--server", server]);
    const N: u64 = 20 * 1024 * 1024;
    let dl = pair.curl_sha256(&format!("http://{STACK_ADDR}/bytes/{N}"), 120);
    eprintln!("{}", dl.context());
    let data = format!("@{}", file.display());
    let up = pair.curl(&[
        "--max-time",
        "120",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &data,
        &format!("http://{STACK_ADDR}/sha256"),
    ]);
    eprintln!("{}", up.context());
    let (_, json) = stack.stop(libc::SIGTERM);
    let ctx = format!(
        "{}\n{}\nstack exit counters: {json}",
        dl.context(),
        up.context()
    );
    assert_eq!((dl.http_code, dl.bytes), (Some(200), N), "download: {ctx}");
    assert_eq!(
        dl.sha256,
        xstack_tools::http::pattern_sha256(N),
        "download: {ctx}"
    );
    assert_eq!(up.ok_text(), want_up, "upload: {ctx}");
}

/// 300 connections open at once, each sending two pipelined requests (keep-alive, then
/// close), served by two event loops (`--accept per-worker` on two queues); then
/// `GET garbage` is answered 400.
#[test]
fn event_server_many_pipelined_connections_and_400_for_garbage() {
    pipelined("event", "per-worker", "evconns");
}

#[test]
fn worker_server_many_pipelined_connections_and_400_for_garbage() {
    pipelined("worker", "per-worker", "wkconns");
}

/// One loop inside worker 0 serves connections owned by both workers: readiness on
/// worker 1 must wake worker 0 when it sleeps.
#[test]
fn worker_server_on_a_shared_listener_serves_both_workers() {
    pipelined("worker", "shared", "wkshare");
}

fn pipelined(server: &str, accept: &str, name: &str) {
    if !require_root() || !require_tool("python3") {
        return;
    }
    let pair = VethPair::new(name, 2);
    let stack = pair.spawn_http(&["--server", server, "--accept", accept]);
    const SCRIPT: &str = r#"
import json, socket, sys
host, n = sys.argv[1], 300
socks = [socket.create_connection((host, 80), timeout=10) for _ in range(n)]
for s in socks:
    s.sendall(b"GET /bytes/100 HTTP/1.1\r\nHost: t\r\n\r\n"
              b"GET /bytes/7 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
def drain(s):
    d = b""
    while True:
        x = s.recv(65536)
        if not x:
            return d
        d += x
ok = 0
for s in socks:
    d = drain(s)
    s.close()
    ok += d.count(b"HTTP/1.1 200 OK\r\n") == 2 and d.endswith(bytes(range(7)))
g = socket.create_connection((host, 80), timeout=10)
g.sendall(b"GET garbage HTTP/1.1\r\nHost: t\r\n\r\n")
print(json.dumps({"n": n, "ok": ok, "garbage": drain(g).decode("latin1")}))
"#;
    let out = pair.peer_python(SCRIPT, &[STACK_ADDR]);
    let py_out = String::from_utf8_lossy(&out.stdout).into_owned();
    let py_err = String::from_utf8_lossy(&out.stderr).into_owned();
    let (_, json) = stack.stop(libc::SIGTERM);
    let ctx = format!("python:\n{py_out}\n{py_err}\nstack exit counters: {json}");
    assert!(out.status.success(), "python client failed: {ctx}");
    let v: serde_json::Value = serde_json::from_str(py_out.trim())
        .unwrap_or_else(|e| panic!("python output is not JSON ({e}): {ctx}"));
    assert_eq!(v["ok"], v["n"], "every connection got both answers: {ctx}");
    let garbage = v["garbage"].as_str().unwrap_or("");
    assert!(garbage.starts_with("HTTP/1.1 400 "), "GET garbage: {ctx}");
    // The connections were spread over both queues (so with one shared loop, worker 1's
    // readiness reached the loop on worker 0).
    let queues = json["queues"].as_array().cloned().unwrap_or_default();
    assert_eq!(queues.len(), 2, "{ctx}");
    for q in &queues {
        assert!(
            q["rx_frames"].as_u64().unwrap_or(0) > 100,
            "queue idle: {ctx}"
        );
    }
}
