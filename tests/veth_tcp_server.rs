//! `xstack http` with Linux as the client (curl, python3 sockets) over a veth pair:
//! bulk download and upload with sha256 checks, `/info` and `/stats`, a malformed request,
//! and a SYN to a closed port.

mod common;

use common::*;

/// Splits a `curl -i` response into (status code, body), ignoring any 1xx interim heads.
fn split_response(raw: &str) -> (u32, String) {
    let mut rest = raw;
    loop {
        let Some((head, body)) = rest.split_once("\r\n\r\n") else {
            panic!("no end of head in response:\n{raw}");
        };
        let code: u32 = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line in response:\n{raw}"));
        if (100..200).contains(&code) {
            rest = body;
            continue;
        }
        return (code, body.to_string());
    }
}

fn parse_json(what: &str, text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{what}: not JSON ({e}):\n{text}"))
}

/// `curl` downloads 100 MiB of `GET /bytes/N` and the sha256 matches the pattern's.
#[test]
fn curl_downloads_100mib() {
    if !require_root() || !require_tool("curl") {
        return;
    }
    // Headers only in the pcap: a 100 MiB capture would be useless and slow.
    let pair = VethPair::new_headers_only("dl100", 1, 128);
    let stack = pair.spawn_http(&[]);
    const N: u64 = 100 * 1024 * 1024;
    let want = xstack_tools::http::pattern_sha256(N);
    let dl = pair.curl_sha256(&format!("http://{STACK_ADDR}/bytes/{N}"), 180);
    eprintln!("{}", dl.context());
    eprintln!("download: {:.3} Gbit/s", dl.gbit_per_s());
    let stats = pair.curl(&["--max-time", "10", &format!("http://{STACK_ADDR}/stats")]);
    eprintln!("/stats after the download: {}", stats.stdout_text());
    eprintln!("vstk receive drops:\n{}", pair.stack_rx_drops());
    let (_, json) = stack.stop(libc::SIGTERM);
    let ctx = format!("{}\nstack exit counters: {json}", dl.context());
    assert!(dl.status.success(), "curl failed: {ctx}");
    assert_eq!(dl.http_code, Some(200), "status: {ctx}");
    assert_eq!(dl.bytes, N, "byte count: {ctx}");
    assert_eq!(dl.sha256, want, "sha256 of the body: {ctx}");
}

/// `curl --data-binary @file` of 20 MB of random bytes to `POST /sha256` answers the
/// file's sha256; the same file sent chunked (Transfer-Encoding: chunked) too.
#[test]
fn curl_upload_20mb_sha256() {
    if !require_root() || !require_tool("curl") {
        return;
    }
    let dir = TestDir::new("upload");
    let file = dir.random_file("upload.bin", 20_000_000);
    let want = file_sha256(&file);
    let pair = VethPair::new_headers_only("upload", 1, 128);
    let stack = pair.spawn_http(&[]);
    let url = format!("http://{STACK_ADDR}/sha256");
    let data = format!("@{}", file.display());
    let plain = pair.curl(&[
        "--max-time",
        "120",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &data,
        "-w",
        "%{stderr}curl: http_code=%{http_code} size_upload=%{size_upload} speed_upload=%{speed_upload}\\n",
        &url,
    ]);
    eprintln!("{}", plain.context());
    let chunked = pair.curl(&[
        "--max-time",
        "120",
        "-H",
        "Content-Type: application/octet-stream",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &data,
        "-w",
        "%{stderr}curl: http_code=%{http_code} size_upload=%{size_upload} speed_upload=%{speed_upload}\\n",
        &url,
    ]);
    eprintln!("{}", chunked.context());
    let (_, json) = stack.stop(libc::SIGTERM);
    for (what, run) in [("Content-Length", &plain), ("chunked", &chunked)] {
        let ctx = format!(
            "{what} upload: {}\nstack exit counters: {json}",
            run.context()
        );
        let body = run.ok_text();
        assert!(
            run.stderr.contains("http_code=200"),
            "{what} upload: expected 200: {ctx}"
        );
        assert_eq!(
            body, want,
            "{what} upload: sha256 answered vs file's: {ctx}"
        );
    }
}

/// `GET /info` is the serving connection's tcp_info (ESTABLISHED, newreno, our addresses);
/// `?cc=newreno` switches (to the same module); `?cc=nonexistent` is a 400 listing the
/// available modules; `GET /stats` is JSON with the TCP counters.
#[test]
fn info_and_stats_json() {
    if !require_root() || !require_tool("curl") {
        return;
    }
    let pair = VethPair::new("info", 1);
    let stack = pair.spawn_http(&[]);
    let base = format!("http://{STACK_ADDR}");

    let info_run = pair.curl(&["--max-time", "10", &format!("{base}/info")]);
    eprintln!("{}", info_run.context());
    let info = parse_json("/info", &info_run.ok_text());
    let switched_run = pair.curl(&["--max-time", "10", "-i", &format!("{base}/info?cc=newreno")]);
    eprintln!("{}", switched_run.context());
    let bad_run = pair.curl(&[
        "--max-time",
        "10",
        "-i",
        &format!("{base}/info?cc=nonexistent"),
    ]);
    eprintln!("{}", bad_run.context());
    let cubic_run = pair.curl(&["--max-time", "10", &format!("{base}/info?cc=cubic")]);
    eprintln!("{}", cubic_run.context());
    let cubic = parse_json("/info?cc=cubic", &cubic_run.ok_text());
    let stats_run = pair.curl(&["--max-time", "10", &format!("{base}/stats")]);
    eprintln!("{}", stats_run.context());
    let stats = parse_json("/stats", &stats_run.ok_text());
    let (_, exit_json) = stack.stop(libc::SIGTERM);

    let ctx = format!("/info: {info}\nstack exit counters: {exit_json}");
    check_info(&info, &cubic, &ctx);
    check_cc_switch(&switched_run, &bad_run, &stats);
    check_stats(&stats);
}

/// `GET /info` of a fresh connection (NewReno) and after `?cc=cubic`.
fn check_info(info: &serde_json::Value, cubic: &serde_json::Value, ctx: &str) {
    assert_eq!(info["state"], "ESTABLISHED", "state: {ctx}");
    assert_eq!(info["cc"], "newreno", "cc: {ctx}");
    // The module's own state, typed: NewReno's congestion-avoidance byte count; CUBIC's
    // RFC 9438 variables (W_max is 0 until a congestion event; K is null outside an epoch).
    assert!(
        info["cc_state"]["ca_bytes_acked"].is_number(),
        "cc_state: {ctx}"
    );
    assert_eq!(cubic["cc"], "cubic", "/info?cc=cubic: {cubic}");
    for key in ["w_max", "cwnd_prior"] {
        assert!(cubic["cc_state"][key].is_number(), "{key}: {cubic}");
    }
    assert!(
        cubic["cc_state"]["k_ms"].is_number() || cubic["cc_state"]["k_ms"].is_null(),
        "k_ms: {cubic}"
    );
    // No data sent yet: no growth rule has applied ("-", null in JSON).
    assert!(cubic["cc_state"]["region"].is_null(), "region: {cubic}");
    assert_eq!(info["local"], format!("{STACK_ADDR}:80"), "local: {ctx}");
    assert!(
        info["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with(&format!("{PEER_ADDR}:"))),
        "peer: {ctx}"
    );
    for key in ["cwnd", "mss", "srtt_us", "rto_us"] {
        assert!(
            info[key].as_u64().is_some_and(|v| v > 0),
            "`{key}` should be a positive number: {ctx}"
        );
    }
    for key in [
        "ssthresh",
        "rttvar_us",
        "retransmits",
        "bytes_acked",
        "bytes_received",
    ] {
        assert!(info[key].is_u64(), "`{key}` should be a number: {ctx}");
    }
}

/// `?cc=newreno` switches (200, still ESTABLISHED); `?cc=nonexistent` is a 400 naming it
/// and listing the modules `/stats` reports as available.
fn check_cc_switch(switched_run: &CurlRun, bad_run: &CurlRun, stats: &serde_json::Value) {
    let (code, body) = split_response(&switched_run.ok_text());
    assert_eq!(code, 200, "/info?cc=newreno: {}", switched_run.context());
    let switched = parse_json("/info?cc=newreno", &body);
    assert_eq!(switched["cc"], "newreno", "/info?cc=newreno: {switched}");
    assert_eq!(
        switched["state"], "ESTABLISHED",
        "/info?cc=newreno: {switched}"
    );

    let available: Vec<String> = stats["tcp"]["cc_available"]
        .as_array()
        .unwrap_or_else(|| panic!("/stats lacks tcp.cc_available: {stats}"))
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert!(
        available.iter().any(|n| n == "newreno"),
        "newreno not among the available modules: {stats}"
    );
    let (code, body) = split_response(&bad_run.ok_text());
    assert_eq!(code, 400, "/info?cc=nonexistent: {}", bad_run.context());
    for name in &available {
        assert!(
            body.contains(name.as_str()),
            "400 body should list the available module {name:?}: {body:?}"
        );
    }
    assert!(
        body.contains("nonexistent"),
        "400 body should name the rejected module: {body:?}"
    );
}

/// `GET /stats`: the TCP counters, numeric and counting the test's connections.
fn check_stats(stats: &serde_json::Value) {
    let counters = stats["counters"]
        .as_object()
        .unwrap_or_else(|| panic!("/stats lacks a `counters` object: {stats}"));
    for key in [
        "tcp.rx",
        "tcp.tx",
        "tcp.conns_opened",
        "tcp.conns_closed",
        "tcp.rst_tx",
        "tcp.drop_bad_checksum",
    ] {
        assert!(
            counters.get(key).is_some_and(|v| v.is_u64()),
            "/stats counters lack numeric `{key}`: {stats}"
        );
    }
    assert!(json_counter(stats, "tcp.rx") > 0, "tcp.rx: {stats}");
    assert!(json_counter(stats, "tcp.tx") > 0, "tcp.tx: {stats}");
    assert!(
        json_counter(stats, "tcp.conns_opened") >= 4,
        "four connections were opened before /stats (info, info?cc x2, stats): {stats}"
    );
    assert_eq!(stats["tcp"]["cc_default"], "newreno", "cc_default: {stats}");
}

/// Malformed requests get a 400 and `Connection: close` (only that connection ends); the
/// server keeps serving: a request after a good one on the same connection, then curl.
#[test]
fn malformed_request_gets_400_and_server_keeps_serving() {
    if !require_root() || !require_tool("curl") || !require_tool("python3") {
        return;
    }
    let pair = VethPair::new("badreq", 1);
    let stack = pair.spawn_http(&[]);
    const SCRIPT: &str = r#"
import json, socket, sys
reqs = [
    b"GARBAGE\r\n\r\n",
    b"GET /bytes/10 HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"\x00\x01\x02\xff\xfe\r\n\r\n",
    b"GET /bytes/5 HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n",
]
out = []
for r in reqs:
    s = socket.create_connection((sys.argv[1], 80), timeout=5)
    s.sendall(r)
    d, err = b"", None
    try:
        while True:
            x = s.recv(65536)
            if not x:
                break
            d += x
    except Exception as e:
        err = repr(e)
    s.close()
    out.append({"request": r.decode("latin1"), "response": d.decode("latin1"), "error": err})
print(json.dumps(out))
"#;
    let out = pair.peer_python(SCRIPT, &[STACK_ADDR]);
    let py_out = String::from_utf8_lossy(&out.stdout).into_owned();
    let py_err = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("python stdout:\n{py_out}\npython stderr:\n{py_err}");
    let after = pair.curl_sha256(&format!("http://{STACK_ADDR}/bytes/100000"), 20);
    eprintln!("{}", after.context());
    let (_, json) = stack.stop(libc::SIGTERM);
    assert!(
        out.status.success(),
        "python client failed ({}):\n{py_out}\n{py_err}\nstack exit counters: {json}",
        out.status
    );
    let results = parse_json("python output", &py_out);
    for r in results.as_array().expect("array") {
        let resp = r["response"].as_str().unwrap_or("");
        let ctx = format!("{r}\nstack exit counters: {json}");
        assert!(
            r["error"].is_null(),
            "the server should answer and close (EOF within 5 s): {ctx}"
        );
        let req = r["request"].as_str().unwrap_or("");
        if req.starts_with("GET /bytes/5 ") {
            assert!(
                resp.starts_with("HTTP/1.1 200"),
                "the good request before the garbage gets 200: {ctx}"
            );
            assert!(
                resp.contains("\x00\x01\x02\x03\x04HTTP/1.1 400"),
                "then the garbage on the same connection gets 400: {ctx}"
            );
        } else {
            assert!(resp.starts_with("HTTP/1.1 400 "), "expected 400: {ctx}");
        }
        assert!(
            resp.to_ascii_lowercase().contains("connection: close"),
            "a 400 closes the connection: {ctx}"
        );
    }
    let ctx = format!("{}\nstack exit counters: {json}", after.context());
    assert!(
        after.status.success(),
        "curl after the bad requests failed: {ctx}"
    );
    assert_eq!(after.http_code, Some(200), "{ctx}");
    assert_eq!(after.bytes, 100_000, "{ctx}");
    assert_eq!(
        after.sha256,
        xstack_tools::http::pattern_sha256(100_000),
        "{ctx}"
    );
}

/// curl to a port nobody listens on gets "connection refused" at once: the stack answers
/// the SYN with an RST (counted in tcp.rst_tx), the server keeps serving port 80.
#[test]
fn curl_to_closed_port_is_refused() {
    if !require_root() || !require_tool("curl") {
        return;
    }
    let pair = VethPair::new("closed", 1);
    let stack = pair.spawn_http(&[]);
    // Let the ARP entry exist first so the timing below measures only the SYN -> RST.
    let warm = pair.curl(&[
        "--max-time",
        "10",
        "-o",
        "/dev/null",
        &format!("http://{STACK_ADDR}/bytes/1"),
    ]);
    eprintln!("{}", warm.context());
    let refused = pair.curl(&[
        "--connect-timeout",
        "10",
        "--max-time",
        "10",
        &format!("http://{STACK_ADDR}:81/"),
    ]);
    eprintln!("{}", refused.context());
    let after = pair.curl(&["--max-time", "10", &format!("http://{STACK_ADDR}/bytes/3")]);
    let (_, json) = stack.stop(libc::SIGTERM);
    let ctx = format!("{}\nstack exit counters: {json}", refused.context());
    // curl exit 7: CURLE_COULDNT_CONNECT ("Failed to connect ... Couldn't connect to server";
    // older curls say "Connection refused").
    assert_eq!(
        refused.status.code(),
        Some(7),
        "expected curl exit 7 (couldn't connect): {ctx}"
    );
    assert!(
        refused.elapsed < std::time::Duration::from_secs(2),
        "refusal should be immediate (an RST, not SYN retries): {ctx}"
    );
    assert!(
        json_counter(&json, "tcp.rst_tx") >= 1,
        "the stack should count the RST it sent: {ctx}"
    );
    assert_eq!(
        after.ok_text().as_bytes(),
        &[0u8, 1, 2],
        "port 80 still serves: {}",
        after.context()
    );
}
