//! Server and client end to end over `std::net` on 127.0.0.1 (ephemeral ports).
//!
//! Server tests speak raw bytes on the socket and parse the answers here, so a bug shared by
//! our client and server cannot hide; the client tests run against our server and against
//! hand-written replies.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::buf::{BufConn, MAX_HEAD};
use super::*;

/// Which server a test runs against. The server tests run against both (see
/// [`both_servers!`]): they must answer alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// [`serve_with`]: a thread per connection, blocking `std::net` sockets.
    Threads,
    /// [`serve_event`]: one mio event loop, nonblocking `mio::net` sockets.
    Event,
}

impl Kind {
    /// The default configuration of this kind of server.
    fn config(self) -> ServerConfig {
        match self {
            Kind::Threads => ServerConfig::default(),
            Kind::Event => ServerConfig::event(),
        }
    }
}

/// Runs each named `fn name(kind: Kind)` as two tests, `threads::name` and `event::name`.
macro_rules! both_servers {
    ($($name:ident),* $(,)?) => {
        mod threads {
            $(#[test] fn $name() { super::$name(super::Kind::Threads) })*
        }
        mod event {
            $(#[test] fn $name() { super::$name(super::Kind::Event) })*
        }
    };
}

both_servers!(
    bytes_endpoint_serves_exact_lengths_and_pattern,
    keep_alive_serves_several_requests_on_one_connection,
    http10_closes_unless_keep_alive,
    pipelined_requests_in_one_write_are_answered_in_order,
    sha256_of_content_length_and_chunked_bodies,
    sha256_honours_expect_100_continue,
    malformed_requests_get_400_and_close_without_hurting_the_server,
    client_still_sending_reads_its_400_not_a_reset,
    garbage_after_a_good_request_answers_both,
    not_found_method_not_allowed_and_bad_length,
    info_stats_and_congestion_errors,
    connections_over_the_limit_get_503_and_freed_slots_are_reused,
    idle_connections_are_closed_after_the_timeout,
    a_client_that_stops_reading_is_dropped_after_the_write_timeout,
    serve_returns_ok_when_stopped,
    client_get_round_trips,
    client_post_round_trips,
    curl_agrees,
    absolute_form_is_served_and_other_targets_get_400,
    many_concurrent_keep_alive_connections,
    deep_pipelining_with_a_large_body_in_the_middle,
    slow_reader_gets_the_whole_body_while_others_are_served,
    trickled_chunked_upload_is_hashed,
    idle_inside_a_request_is_closed_too,
    close_after_response_delivers_it_whole_despite_unread_bytes,
    connections_over_the_limit_do_not_hold_up_the_ones_served,
    info_switches_congestion_control_through_the_conn,
);

/// A server on an ephemeral loopback port, stopped and joined on drop.
struct TestServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    fn start(kind: Kind) -> Self {
        Self::start_with(kind, kind.config())
    }

    fn start_with(kind: Kind, config: ServerConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stats: StatsFn = Arc::new(|| json!({"test": true, "counters": [1, 2, 3]}));
        let s = Arc::clone(&stop);
        let handle = match kind {
            Kind::Threads => thread::spawn(move || serve_with(listener, stats, s, config)),
            Kind::Event => {
                listener.set_nonblocking(true).unwrap();
                let listener = mio::net::TcpListener::from_std(listener);
                thread::spawn(move || serve_event(listener, stats, s, config))
            }
        };
        Self {
            addr,
            stop,
            handle: Some(handle),
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// Sends `request` on a fresh connection and returns everything until the server closes.
    fn exchange(&self, request: &[u8]) -> Vec<u8> {
        let mut s = self.connect();
        s.write_all(request).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out)
            .expect("server should close the connection");
        out
    }

    /// Stops the server and returns what `serve_with` returned.
    fn shutdown(mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
        self.handle
            .take()
            .unwrap()
            .join()
            .expect("server thread panicked")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = TcpStream::connect(self.addr);
            let _ = h.join();
        }
    }
}

/// A response as the tests see it.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one Content-Length-framed response (the server never sends another kind).
/// `head_only` for the answer to HEAD, which has Content-Length but no body.
fn read_resp<R: Read>(bc: &mut BufConn<R>, head_only: bool) -> Resp {
    let (status, headers) = bc
        .read_head(|buf| {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            Ok(match r.parse(buf)? {
                httparse::Status::Partial => None,
                httparse::Status::Complete(n) => {
                    let headers = r
                        .headers
                        .iter()
                        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into()))
                        .collect::<Vec<(String, String)>>();
                    Some((n, (r.code.unwrap(), headers)))
                }
            })
        })
        .expect("response head")
        .expect("a response, not EOF");
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = resp
        .header("content-length")
        .expect("Content-Length")
        .parse()
        .unwrap();
    if !head_only {
        resp.body = vec![0; len];
        bc.read_exact(&mut resp.body).expect("body");
    }
    resp
}

/// Splits a byte stream into responses; asserts nothing is left over.
fn parse_all(bytes: &[u8]) -> Vec<Resp> {
    let mut bc = BufConn::new(bytes);
    let mut out = Vec::new();
    while !bc.buffered().is_empty() || bc.fill_more().unwrap() > 0 {
        out.push(read_resp(&mut bc, false));
    }
    out
}

fn one(bytes: &[u8]) -> Resp {
    let mut all = parse_all(bytes);
    assert_eq!(
        all.len(),
        1,
        "expected one response in {:?}",
        String::from_utf8_lossy(bytes)
    );
    all.pop().unwrap()
}

fn sha_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// The generated body built the slow, obvious way.
fn pattern_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Bytes that are not the pattern (an LCG), so a server hashing the wrong thing shows.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

/// `body` in chunked coding with uneven chunks, extensions on every size line and trailers.
fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    for size in [1usize, 7, 4096, 65_536].iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let take = (*size).min(rest.len());
        out.extend_from_slice(format!("{take:X};ext=1;q=\"v\"\r\n").as_bytes());
        out.extend_from_slice(&rest[..take]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[take..];
    }
    out.extend_from_slice(b"0;end\r\nX-Trailer: yes\r\nX-Other: 2\r\n\r\n");
    out
}

fn post_cl(body: &[u8], close: bool) -> Vec<u8> {
    let mut r = format!(
        "POST /sha256 HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn post_chunked(body: &[u8], close: bool) -> Vec<u8> {
    let mut r = format!(
        "POST /sha256 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    r.extend_from_slice(&chunked(body));
    r
}

fn get_close(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").into_bytes()
}

#[test]
fn pattern_sha256_matches_independent_digests() {
    // Golden values from Python: hashlib.sha256(bytes(i % 251 for i in range(n))).
    let golden = [
        (
            0,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            1,
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        ),
        (
            251,
            "ef67e0723230f6c535ff556e45ca2174e1e97deed306e9e87f1b65579076ec06",
        ),
        (
            1_000_000,
            "2c030d49ec131bfbbb446ad21e7a2f12cdb4f2f4f3fda3ac709dd2e68a4646c7",
        ),
    ];
    for (n, want) in golden {
        assert_eq!(pattern_sha256(n), want, "n = {n}");
    }
    // Across the pattern buffer's boundary (251 KiB) and not a multiple of it.
    for n in [257_023, 257_024, 257_025, 10_000_019] {
        assert_eq!(
            pattern_sha256(n as u64),
            sha_hex(&pattern_bytes(n)),
            "n = {n}"
        );
    }
}

#[test]
fn pattern_sha256_matches_sha256sum() {
    let n = 1 << 20;
    let child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        println!("skipped: sha256sum is not installed");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&pattern_bytes(n))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.split_whitespace().next(),
        Some(pattern_sha256(n as u64).as_str())
    );
}

fn bytes_endpoint_serves_exact_lengths_and_pattern(kind: Kind) {
    let server = TestServer::start(kind);
    for n in [0u64, 1, 250, 251, 252, 1 << 20, 10_000_019] {
        let r = one(&server.exchange(&get_close(&format!("/bytes/{n}"))));
        assert_eq!(r.status, 200, "n = {n}");
        assert_eq!(r.header("content-length"), Some(n.to_string().as_str()));
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(r.body.len() as u64, n);
        assert_eq!(sha_hex(&r.body), pattern_sha256(n), "n = {n}");
        if n == 1 << 20 {
            assert!(
                r.body == pattern_bytes(n as usize),
                "byte i must be i % 251"
            );
        }
    }
}

fn keep_alive_serves_several_requests_on_one_connection(kind: Kind) {
    let server = TestServer::start(kind);
    let mut s = server.connect();
    let mut bc = BufConn::new(s.try_clone().unwrap());
    for n in [3u64, 1000, 0] {
        s.write_all(format!("GET /bytes/{n} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_resp(&mut bc, false);
        assert_eq!((r.status, r.body.len() as u64), (200, n));
        assert_eq!(r.header("connection"), Some("keep-alive"));
    }
    s.write_all(&post_cl(b"abc", false)).unwrap();
    assert_eq!(read_resp(&mut bc, false).text(), sha_hex(b"abc"));
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_resp(&mut bc, false);
    assert_eq!(r.header("connection"), Some("close"));
    let mut rest = Vec::new();
    bc.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "nothing after the close response: {rest:?}"
    );
}

fn http10_closes_unless_keep_alive(kind: Kind) {
    let server = TestServer::start(kind);
    let r = one(&server.exchange(b"GET /bytes/4 HTTP/1.0\r\n\r\n"));
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    let mut s = server.connect();
    let mut bc = BufConn::new(s.try_clone().unwrap());
    for _ in 0..2 {
        s.write_all(b"GET /bytes/4 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let r = read_resp(&mut bc, false);
        assert_eq!(
            (r.status, r.header("connection")),
            (200, Some("keep-alive"))
        );
    }
}

fn pipelined_requests_in_one_write_are_answered_in_order(kind: Kind) {
    let server = TestServer::start(kind);
    let big = noise(100_000);
    let mut req = b"\r\nGET /bytes/5 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    req.extend(post_cl(&big, false));
    req.extend(post_chunked(b"hello", false));
    req.extend(b"HEAD /bytes/100 HTTP/1.1\r\nHost: t\r\n\r\n");
    req.extend(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    req.extend(get_close("/bytes/0"));
    let out = server.exchange(&req);
    let mut bc = BufConn::new(&out[..]);
    let r = read_resp(&mut bc, false);
    assert_eq!((r.status, r.body.clone()), (200, vec![0, 1, 2, 3, 4]));
    assert_eq!(read_resp(&mut bc, false).text(), sha_hex(&big));
    assert_eq!(read_resp(&mut bc, false).text(), sha_hex(b"hello"));
    let head = read_resp(&mut bc, true);
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("100"))
    );
    assert_eq!(read_resp(&mut bc, false).status, 404);
    let last = read_resp(&mut bc, false);
    assert_eq!((last.status, last.body.len()), (200, 0));
    assert!(bc.buffered().is_empty(), "HEAD must not send a body");
}

fn sha256_of_content_length_and_chunked_bodies(kind: Kind) {
    let server = TestServer::start(kind);
    for n in [0usize, 1, 100_000] {
        let body = noise(n);
        for (how, req) in [
            ("cl", post_cl(&body, true)),
            ("chunked", post_chunked(&body, true)),
        ] {
            let r = one(&server.exchange(&req));
            assert_eq!(r.status, 200, "{how} {n}: {}", r.text());
            assert_eq!(r.header("content-type"), Some("text/plain"));
            assert_eq!(r.body.len(), 64, "exactly 64 hex digits, no newline");
            assert!(r
                .body
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)));
            assert_eq!(r.text(), sha_hex(&body), "{how} {n}");
        }
    }
}

fn sha256_honours_expect_100_continue(kind: Kind) {
    let server = TestServer::start(kind);
    let mut s = server.connect();
    s.write_all(
        b"POST /sha256 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"xyz").unwrap();
    let mut bc = BufConn::new(s);
    assert_eq!(read_resp(&mut bc, false).text(), sha_hex(b"xyz"));
}

/// Each malformed request gets its status with `Connection: close`, then the server closes
/// that connection, and a fresh connection is still served.
fn malformed_requests_get_400_and_close_without_hurting_the_server(kind: Kind) {
    let server = TestServer::start(kind);
    let mut overflow = b"GET /bytes/1 HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
    overflow.extend(std::iter::repeat_n(b'a', MAX_HEAD + 100));
    overflow.extend(b"\r\n\r\n");
    let mut many = b"GET /bytes/1 HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..70 {
        many.extend(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend(b"\r\n");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "garbage request line",
            b"\x01\x02 garbage\r\n\r\n".to_vec(),
            400,
        ),
        ("no version", b"GET /bytes/1\r\n\r\n".to_vec(), 400),
        (
            "bad version",
            b"GET /bytes/1 HTTP/2.0\r\nHost: t\r\n\r\n".to_vec(),
            400,
        ),
        ("header overflow", overflow, 400),
        ("too many headers", many, 400),
        (
            "bad header name",
            b"GET / HTTP/1.1\r\nHost: t\r\nBad Name: v\r\n\r\n".to_vec(),
            400,
        ),
        (
            "target not in origin-form",
            b"GET garbage HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            400,
        ),
        (
            "missing host",
            b"GET /bytes/1 HTTP/1.1\r\n\r\n".to_vec(),
            400,
        ),
        (
            "bad content-length",
            b"POST /sha256 HTTP/1.1\r\nHost: t\r\nContent-Length: 12abc\r\n\r\n".to_vec(),
            400,
        ),
        (
            "negative content-length",
            b"POST /sha256 HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n".to_vec(),
            400,
        ),
        (
            "content-length and transfer-encoding",
            b"POST /sha256 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\
              Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            "unknown transfer coding",
            b"POST /sha256 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                .to_vec(),
            501,
        ),
        (
            "malformed chunk size",
            b"POST /sha256 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
              5x\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            "chunk without CRLF",
            b"POST /sha256 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhelloXX0\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            "malformed chunk on a drained body",
            b"POST /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            400,
        ),
    ];
    for (what, req, status) in cases {
        let r = one(&server.exchange(&req));
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert_eq!(r.header("connection"), Some("close"), "{what}");
        // And the server is still there for everyone else.
        let ok = one(&server.exchange(&get_close("/bytes/3")));
        assert_eq!(
            (ok.status, ok.body.as_slice()),
            (200, &[0u8, 1, 2][..]),
            "after {what}"
        );
    }
}

/// A client still sending when the server refuses its request reads the 400 rather than a
/// reset: the server drains what arrives after its response before closing.
fn client_still_sending_reads_its_400_not_a_reset(kind: Kind) {
    let server = TestServer::start(kind);
    let mut s = server.connect();
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let mut head = b"GET /bytes/1 HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', MAX_HEAD + 1000));
        let _ = w.write_all(&head);
        for _ in 0..64 {
            if w.write_all(&[b'z'; 8192]).is_err() {
                return;
            }
        }
        let _ = w.shutdown(std::net::Shutdown::Write);
    });
    let mut out = Vec::new();
    let read = s.read_to_end(&mut out);
    writer.join().unwrap();
    read.expect("the server should close with FIN after its answer, not RST");
    let r = one(&out);
    assert_eq!((r.status, r.header("connection")), (400, Some("close")));
}

fn garbage_after_a_good_request_answers_both(kind: Kind) {
    let server = TestServer::start(kind);
    let mut req = b"GET /bytes/2 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    req.extend(b"NOT HTTP AT ALL\r\n\r\n");
    let all = parse_all(&server.exchange(&req));
    assert_eq!(
        all.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![200, 400]
    );
    assert_eq!(all[1].header("connection"), Some("close"));
}

fn not_found_method_not_allowed_and_bad_length(kind: Kind) {
    let server = TestServer::start(kind);
    let mut s = server.connect();
    let mut bc = BufConn::new(s.try_clone().unwrap());
    let mut ask = |req: &str| {
        s.write_all(req.as_bytes()).unwrap();
        read_resp(&mut bc, false)
    };
    let r = ask("GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 404);
    let r = ask("GET /bytes HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 404);
    let r = ask("POST /bytes/5 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    // The unread body ("ab") must have been skipped, not taken as the next request.
    let r = ask("GET /bytes/2 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.body), (200, vec![0, 1]));
    let r = ask(
        "PUT /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 404);
    let r = ask("GET /bytes/2 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.body), (200, vec![0, 1]));
    let r = ask("GET /sha256 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let r = ask("DELETE /stats HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 405);
    for bad in ["abc", "-1", "+5", "18446744073709551616", "1.5", ""] {
        let r = ask(&format!("GET /bytes/{bad} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(r.status, 400, "/bytes/{bad}");
        assert_eq!(
            r.header("connection"),
            Some("keep-alive"),
            "a bad N is not a bad request"
        );
    }
    // All of the above left the connection usable.
    let r = ask("GET /bytes/2 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.body), (200, vec![0, 1]));
}

fn info_stats_and_congestion_errors(kind: Kind) {
    let server = TestServer::start(kind);
    let mut s = server.connect();
    let local = s.local_addr().unwrap().to_string();
    let mut bc = BufConn::new(s.try_clone().unwrap());
    let mut ask = |path: &str| {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        read_resp(&mut bc, false)
    };
    let r = ask("/info");
    assert_eq!(
        (r.status, r.header("content-type")),
        (200, Some("application/json"))
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["kernel"], json!(true));
    assert_eq!(v["peer"], json!(local), "info describes this connection");

    let r = ask("/info?cc=cubic");
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .contains("cannot select congestion control \"cubic\""),
        "{}",
        r.text()
    );
    assert_eq!(r.header("connection"), Some("keep-alive"));

    let r = ask("/stats");
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v, json!({"test": true, "counters": [1, 2, 3]}));
}

/// A connection whose `set_congestion` succeeds, to check `/info?cc=` reports afterwards:
/// over a blocking `std::net` stream or a nonblocking `mio::net` one.
struct CcConn<S> {
    inner: S,
    cc: Arc<std::sync::Mutex<String>>,
}

impl<S> CcConn<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            cc: Arc::new(std::sync::Mutex::new("newreno".into())),
        }
    }
}

impl<S: Read> Read for CcConn<S> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.inner.read(b)
    }
}

impl<S: Write> Write for CcConn<S> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.inner.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Conn for CcConn<TcpStream> {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.inner.set_read_timeout(t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.inner.set_write_timeout(t)
    }
}

impl<S: ConnControl> ConnControl for CcConn<S> {
    fn info_json(&self) -> serde_json::Value {
        json!({"cc": *self.cc.lock().unwrap()})
    }
    fn set_congestion(&self, name: &str) -> io::Result<()> {
        if name != "cubic" && name != "newreno" {
            return Err(io::Error::other(format!(
                "unknown {name:?}; available: newreno, cubic"
            )));
        }
        *self.cc.lock().unwrap() = name.to_string();
        Ok(())
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.inner.shutdown_write()
    }
}

/// Registration goes to the wrapped socket (`$t` is the wrapper, `$f` its field).
macro_rules! delegate_source {
    ($t:ty, $f:tt) => {
        impl mio::event::Source for $t {
            fn register(
                &mut self,
                r: &mio::Registry,
                t: mio::Token,
                i: mio::Interest,
            ) -> io::Result<()> {
                self.$f.register(r, t, i)
            }
            fn reregister(
                &mut self,
                r: &mio::Registry,
                t: mio::Token,
                i: mio::Interest,
            ) -> io::Result<()> {
                self.$f.reregister(r, t, i)
            }
            fn deregister(&mut self, r: &mio::Registry) -> io::Result<()> {
                self.$f.deregister(r)
            }
        }
    };
}

delegate_source!(CcConn<mio::net::TcpStream>, inner);
delegate_source!(CcListener<mio::net::TcpListener>, 0);

impl EventConn for CcConn<mio::net::TcpStream> {}

struct CcListener<L>(L);

impl Listener for CcListener<TcpListener> {
    type Stream = CcConn<TcpStream>;
    fn accept(&self) -> io::Result<CcConn<TcpStream>> {
        let (inner, _) = self.0.accept()?;
        Ok(CcConn::new(inner))
    }
}

impl EventListener for CcListener<mio::net::TcpListener> {
    type Stream = CcConn<mio::net::TcpStream>;
    fn accept(&mut self) -> io::Result<CcConn<mio::net::TcpStream>> {
        EventListener::accept(&mut self.0).map(CcConn::new)
    }
}

fn info_switches_congestion_control_through_the_conn(kind: Kind) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let stats: StatsFn = Arc::new(|| json!({}));
    let h = match kind {
        Kind::Threads => thread::spawn(move || serve(CcListener(listener), stats, s2)),
        Kind::Event => {
            listener.set_nonblocking(true).unwrap();
            let listener = CcListener(mio::net::TcpListener::from_std(listener));
            thread::spawn(move || serve_event(listener, stats, s2, ServerConfig::event()))
        }
    };
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut bc = BufConn::new(s.try_clone().unwrap());
    s.write_all(b"GET /info?cc=cubic HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_resp(&mut bc, false).text(), "{\"cc\":\"cubic\"}\n");
    s.write_all(b"GET /info?cc=vegas HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = read_resp(&mut bc, false);
    assert_eq!(
        (r.status, r.text()),
        (400, "unknown \"vegas\"; available: newreno, cubic\n".into())
    );
    s.write_all(b"GET /info HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_resp(&mut bc, false).text(), "{\"cc\":\"cubic\"}\n");
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(addr);
    h.join().unwrap().unwrap();
}

/// Stopping the event server: a connection between requests is closed at once, a
/// download in progress is finished, and `serve_event` returns `Ok`.
#[test]
fn event_stop_finishes_the_request_in_progress_and_closes_idle_connections() {
    const N: u64 = 5_000_000;
    let server = TestServer::start(Kind::Event);
    let mut idle = server.connect();
    let mut ibc = BufConn::new(idle.try_clone().unwrap());
    idle.write_all(b"GET /bytes/1 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_resp(&mut ibc, false).status, 200);
    let mut busy = server.connect();
    busy.write_all(format!("GET /bytes/{N} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut bc = BufConn::new(busy);
    assert_eq!(read_head_only(&mut bc), 200);
    server.stop.store(true, Ordering::Relaxed);
    let mut rest = Vec::new();
    ibc.read_to_end(&mut rest)
        .expect("the idle connection closes cleanly");
    assert!(rest.is_empty(), "{rest:?}");
    let (mut got, mut last) = (0u64, 0u8);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = bc.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got += n as u64;
        last = buf[n - 1];
    }
    assert_eq!((got, u64::from(last)), (N, (N - 1) % PATTERN_PERIOD));
    server
        .shutdown()
        .expect("serve_event returns Ok once stopped");
}

fn connections_over_the_limit_get_503_and_freed_slots_are_reused(kind: Kind) {
    let config = ServerConfig {
        max_connections: 1,
        ..kind.config()
    };
    let server = TestServer::start_with(kind, config);
    let mut first = server.connect();
    let mut bc = BufConn::new(first.try_clone().unwrap());
    first
        .write_all(b"GET /bytes/1 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_resp(&mut bc, false).status, 200);

    let r = one(&server.exchange(&get_close("/bytes/1")));
    assert_eq!((r.status, r.header("connection")), (503, Some("close")));

    drop((first, bc));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = one(&server.exchange(&get_close("/bytes/1")));
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slot never freed: still {}",
            r.status
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn idle_connections_are_closed_after_the_timeout(kind: Kind) {
    let config = ServerConfig {
        idle_timeout: Some(Duration::from_millis(200)),
        ..kind.config()
    };
    let server = TestServer::start_with(kind, config);
    let mut s = server.connect();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(
        s.read(&mut buf).unwrap(),
        0,
        "server should close the idle connection"
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

// A client that asks for a large body and then stops reading: once the socket buffers
// are full the response write waits, and after `write_timeout` the server gives up on
// it, so the connection's thread (and its slot) is freed while the client still idles.
fn a_client_that_stops_reading_is_dropped_after_the_write_timeout(kind: Kind) {
    let config = ServerConfig {
        max_connections: 1,
        write_timeout: Some(Duration::from_millis(200)),
        ..kind.config()
    };
    let server = TestServer::start_with(kind, config);
    let mut stalled = server.connect();
    stalled
        .write_all(b"GET /bytes/1000000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(15);
    loop {
        let r = one(&server.exchange(&get_close("/bytes/1")));
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "the stalled client holds the only slot");
        assert!(
            Instant::now() < deadline,
            "the stalled write never timed out"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert!(start.elapsed() >= Duration::from_millis(150));
    drop(stalled);
}

fn serve_returns_ok_when_stopped(kind: Kind) {
    let server = TestServer::start(kind);
    assert_eq!(one(&server.exchange(&get_close("/bytes/1"))).status, 200);
    server
        .shutdown()
        .expect("serve should return Ok(()) after stop");
}

fn client_get_round_trips(kind: Kind) {
    let server = TestServer::start(kind);
    let host = server.addr.to_string();
    for n in [0u64, 1, 1_000_003] {
        let r = get(server.connect(), &host, &format!("/bytes/{n}")).unwrap();
        assert_eq!((r.status, r.bytes, r.sent), (200, n, 0));
        assert_eq!(r.sha256, pattern_sha256(n));
        assert_eq!(r.body_prefix, pattern_bytes(n.min(4096) as usize));
        assert!(r.elapsed > Duration::ZERO);
    }
    let r = get(server.connect(), &host, "/stats").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body_prefix).unwrap();
    assert_eq!(v["test"], json!(true));
    assert_eq!(get(server.connect(), &host, "/nope").unwrap().status, 404);

    let r = get(server.connect(), &host, "/bytes/2000000").unwrap();
    let line: serde_json::Value = serde_json::from_str(&r.to_json_line()).unwrap();
    assert_eq!(line["status"], json!(200));
    assert_eq!(line["bytes"], json!(2_000_000));
    assert_eq!(line["sha256"], json!(pattern_sha256(2_000_000)));
    assert!(line["seconds"].as_f64().unwrap() > 0.0);
    assert!(line["gbit_per_s"].as_f64().unwrap() > 0.0);
    assert!(!r.to_json_line().contains('\n'));
}

fn client_post_round_trips(kind: Kind) {
    let server = TestServer::start(kind);
    let host = server.addr.to_string();
    for n in [0u64, 1, 100_000, 600_000] {
        for chunked in [false, true] {
            let r = post(server.connect(), &host, "/sha256", n, chunked).unwrap();
            assert_eq!(
                (r.status, r.bytes, r.sent),
                (200, 64, n),
                "n {n} chunked {chunked}"
            );
            // The server hashed exactly the generated pattern we sent.
            assert_eq!(
                r.body_prefix,
                pattern_sha256(n).into_bytes(),
                "n {n} chunked {chunked}"
            );
            assert_eq!(r.sha256, sha_hex(pattern_sha256(n).as_bytes()));
        }
    }
    // The server answers 405 after reading the body; the client still reports it.
    let r = post(server.connect(), &host, "/bytes/1", 10, false).unwrap();
    assert_eq!(r.status, 405);
}

/// Serves one connection with a canned reply, returning what the client sent.
fn canned(reply: &'static [u8]) -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut got = vec![0u8; 64 * 1024];
        let n = s.read(&mut got).unwrap_or(0);
        got.truncate(n);
        s.write_all(reply).unwrap();
        got
    });
    (addr, h)
}

fn client_get_canned(reply: &'static [u8]) -> io::Result<Response> {
    let (addr, h) = canned(reply);
    let conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let r = get(conn, "h", "/p");
    let sent = h.join().unwrap();
    let sent = String::from_utf8(sent).unwrap();
    assert!(
        sent.starts_with("GET /p HTTP/1.1\r\nHost: h\r\n"),
        "{sent:?}"
    );
    assert!(
        sent.contains("Connection: close\r\n") && sent.ends_with("\r\n\r\n"),
        "{sent:?}"
    );
    r
}

#[test]
fn client_decodes_chunked_eof_and_interim_responses() {
    let r = client_get_canned(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n\
          3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        (r.status, r.bytes, r.sha256.as_str()),
        (201, 5, sha_hex(b"abcde").as_str())
    );
    assert_eq!(r.body_prefix, b"abcde");

    let r = client_get_canned(b"HTTP/1.0 200 OK\r\n\r\nuntil the end").unwrap();
    assert_eq!(
        (r.bytes, r.body_prefix.as_slice()),
        (13, &b"until the end"[..])
    );

    let r = client_get_canned(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
    assert_eq!((r.status, r.bytes), (204, 0));
}

#[test]
fn client_rejects_broken_responses() {
    let cases: [(&'static [u8], io::ErrorKind); 6] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            io::ErrorKind::UnexpectedEof,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            io::ErrorKind::UnexpectedEof,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nq\r\n",
            io::ErrorKind::InvalidData,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            io::ErrorKind::InvalidData,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            io::ErrorKind::InvalidData,
        ),
        (b"SMTP ready\r\n\r\n", io::ErrorKind::InvalidData),
    ];
    for (reply, kind) in cases {
        let e = client_get_canned(reply).expect_err("should fail");
        assert_eq!(e.kind(), kind, "{:?}: {e}", String::from_utf8_lossy(reply));
    }
    let (addr, h) = canned(b"");
    let e = get(TcpStream::connect(addr).unwrap(), "h", "/").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    h.join().unwrap();
}

/// curl as an independent client: `curl -s URL | sha256sum`, and uploads (plain, chunked,
/// and large enough that curl sends `Expect: 100-continue`).
fn curl_agrees(kind: Kind) {
    if Command::new("curl").arg("--version").output().is_err() {
        println!("skipped: curl is not installed");
        return;
    }
    let server = TestServer::start(kind);
    let base = format!("http://{}", server.addr);
    let sh = |script: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let got = sh(&format!(
        "curl -sS --max-time 30 {base}/bytes/1000000 | sha256sum"
    ));
    assert_eq!(
        got.split_whitespace().next(),
        Some(pattern_sha256(1_000_000).as_str())
    );

    let file = std::env::temp_dir().join(format!("xstack-http-curl-{}.bin", std::process::id()));
    std::fs::write(&file, pattern_bytes(2_000_000)).unwrap();
    let want = pattern_sha256(2_000_000);
    let path = file.display();
    let plain = sh(&format!(
        "curl -sS --max-time 30 --data-binary @{path} {base}/sha256"
    ));
    let chunked = sh(&format!(
        "curl -sS --max-time 30 -H 'Transfer-Encoding: chunked' --data-binary @{path} {base}/sha256"
    ));
    let _ = std::fs::remove_file(&file);
    assert_eq!(plain, want);
    assert_eq!(chunked, want);
    let code = sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' {base}/info?cc=cubic"
    ));
    assert_eq!(code, "400");
}

/// RFC 9112 §3.2: absolute-form is served like origin-form, `*` only with OPTIONS (which
/// no route has); anything else is 400 and closes, as nginx answers.
fn absolute_form_is_served_and_other_targets_get_400(kind: Kind) {
    let server = TestServer::start(kind);
    let r = one(&server.exchange(&get_close("http://t/bytes/3")));
    assert_eq!((r.status, r.body.as_slice()), (200, &[0u8, 1, 2][..]));
    let r = one(&server.exchange(b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
    assert_eq!(r.status, 404);
    for bad in ["garbage", "*", "t:80", "bytes/1", "ftp://t/bytes/1"] {
        let req = format!("GET {bad} HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = one(&server.exchange(req.as_bytes()));
        assert_eq!(
            (r.status, r.header("connection")),
            (400, Some("close")),
            "{bad}"
        );
    }
}

/// Hundreds of keep-alive connections open at once, each asked in turn, three rounds.
fn many_concurrent_keep_alive_connections(kind: Kind) {
    const N: usize = 300;
    let server = TestServer::start(kind);
    let mut conns: Vec<(TcpStream, BufConn<TcpStream>)> = (0..N)
        .map(|_| {
            let s = server.connect();
            let bc = BufConn::new(s.try_clone().unwrap());
            (s, bc)
        })
        .collect();
    let len = |i: usize, round: usize| (i * 7 + round * 131) % 1000;
    for round in 0..3 {
        for (i, (s, _)) in conns.iter_mut().enumerate() {
            let req = format!("GET /bytes/{} HTTP/1.1\r\nHost: t\r\n\r\n", len(i, round));
            s.write_all(req.as_bytes()).unwrap();
        }
        for (i, (_, bc)) in conns.iter_mut().enumerate() {
            let r = read_resp(bc, false);
            assert_eq!(r.status, 200, "connection {i} round {round}");
            assert_eq!(r.header("connection"), Some("keep-alive"));
            assert!(
                r.body == pattern_bytes(len(i, round)),
                "connection {i} round {round}"
            );
        }
    }
}

/// Hundreds of pipelined requests in one write with a large download in the middle: the
/// answers come in order, nothing is lost behind the large body.
fn deep_pipelining_with_a_large_body_in_the_middle(kind: Kind) {
    const N: usize = 500;
    const BIG: usize = 3_000_000;
    let server = TestServer::start(kind);
    let size = |i: usize| if i == N / 2 { BIG } else { i % 10 };
    let mut req = Vec::new();
    for i in 0..N {
        req.extend(format!("GET /bytes/{} HTTP/1.1\r\nHost: t\r\n\r\n", size(i)).as_bytes());
    }
    let upload = noise(10_000);
    req.extend(post_chunked(&upload, false));
    req.extend(get_close("/bytes/1"));
    let mut s = server.connect();
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || w.write_all(&req));
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    writer.join().unwrap().unwrap();
    let all = parse_all(&out);
    assert_eq!(all.len(), N + 2);
    for (i, r) in all[..N].iter().enumerate() {
        assert_eq!(r.status, 200, "response {i}");
        assert_eq!(r.body.len(), size(i), "response {i}");
    }
    assert!(all[N / 2].body == pattern_bytes(BIG));
    assert_eq!(all[N].text(), sha_hex(&upload));
    assert_eq!(all[N + 1].header("connection"), Some("close"));
}

/// Reads one response head (for tests that read the body their own way).
fn read_head_only<R: Read>(bc: &mut BufConn<R>) -> u16 {
    bc.read_head(|buf| {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        Ok(match r.parse(buf)? {
            httparse::Status::Partial => None,
            httparse::Status::Complete(n) => Some((n, r.code.unwrap())),
        })
    })
    .expect("response head")
    .expect("a response, not EOF")
}

/// A large download read slowly: the server writes only what the socket takes (for the
/// event server, without holding up its loop: another connection is answered while the
/// download waits), and the body arrives whole.
fn slow_reader_gets_the_whole_body_while_others_are_served(kind: Kind) {
    const N: u64 = 30_000_000;
    let server = TestServer::start(kind);
    let mut slow = server.connect();
    slow.write_all(&get_close(&format!("/bytes/{N}"))).unwrap();
    let mut bc = BufConn::new(slow);
    assert_eq!(read_head_only(&mut bc), 200);
    // Far more than the socket buffers hold: the server's write is waiting now.
    thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let r = one(&server.exchange(&get_close("/bytes/10")));
    assert_eq!(r.status, 200);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "another connection waited {:?} behind the slow one",
        start.elapsed()
    );
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut got, mut next_pause) = (0u64, 2_000_000u64);
    loop {
        let n = bc.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        got += n as u64;
        if got >= next_pause {
            thread::sleep(Duration::from_millis(20));
            next_pause += 2_000_000;
        }
    }
    assert_eq!(got, N);
    assert_eq!(hex(&hasher.finalize()), pattern_sha256(N));
}

/// A chunked upload that arrives a few bytes at a time, head included: size lines, CRLFs
/// and trailers split anywhere.
fn trickled_chunked_upload_is_hashed(kind: Kind) {
    let server = TestServer::start(kind);
    let body = noise(5000);
    let wire = post_chunked(&body, true);
    let mut s = server.connect();
    s.set_nodelay(true).unwrap();
    let mut at = 0;
    for step in [1usize, 2, 5, 13, 97].iter().cycle() {
        if at == wire.len() {
            break;
        }
        let end = (at + step).min(wire.len());
        s.write_all(&wire[at..end]).unwrap();
        at = end;
        thread::sleep(Duration::from_micros(500));
    }
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let r = one(&out);
    assert_eq!((r.status, r.text()), (200, sha_hex(&body)));
}

/// The idle timeout also ends a request the client stops sending halfway: in its head or
/// in its body.
fn idle_inside_a_request_is_closed_too(kind: Kind) {
    let config = ServerConfig {
        idle_timeout: Some(Duration::from_millis(200)),
        ..kind.config()
    };
    let server = TestServer::start_with(kind, config);
    for partial in [
        &b"GET /bytes/1 HTTP/1.1\r\nHo"[..],
        b"POST /sha256 HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc",
        b"POST /sha256 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ] {
        let mut s = server.connect();
        s.write_all(partial).unwrap();
        let start = Instant::now();
        let mut rest = Vec::new();
        // A close with nothing unread is a FIN; whatever it is, nothing is answered.
        let _ = s.read_to_end(&mut rest);
        let waited = start.elapsed();
        assert!(rest.is_empty(), "{rest:?}");
        assert!(
            waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
            "{:?}: {waited:?}",
            String::from_utf8_lossy(partial)
        );
    }
}

/// `Connection: close` with more bytes behind the request that the server never reads as
/// requests: it still closes gracefully (FIN after the response, the extra bytes read
/// and dropped), so the client gets the whole response and no reset.
fn close_after_response_delivers_it_whole_despite_unread_bytes(kind: Kind) {
    const N: u64 = 5_000_000;
    let server = TestServer::start(kind);
    let mut s = server.connect();
    let mut req = get_close(&format!("/bytes/{N}"));
    req.extend(std::iter::repeat_n(b'j', 200_000));
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let _ = w.write_all(&req);
    });
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("the server should close with FIN after its answer, not RST");
    writer.join().unwrap();
    let r = one(&out);
    assert_eq!((r.status, r.body.len() as u64), (200, N));
    assert_eq!(sha_hex(&r.body), pattern_sha256(N));
}

/// Connections over the limit that send nothing and read nothing get their 503 without
/// holding up the connection being served (the event server answers them from its loop).
fn connections_over_the_limit_do_not_hold_up_the_ones_served(kind: Kind) {
    let config = ServerConfig {
        max_connections: 1,
        ..kind.config()
    };
    let server = TestServer::start_with(kind, config);
    let mut served = server.connect();
    let mut bc = BufConn::new(served.try_clone().unwrap());
    served
        .write_all(b"GET /bytes/1 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_resp(&mut bc, false).status, 200);
    let mut silent: Vec<TcpStream> = (0..20).map(|_| server.connect()).collect();
    for n in 0..5u64 {
        let start = Instant::now();
        served
            .write_all(format!("GET /bytes/{n} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_resp(&mut bc, false);
        assert_eq!((r.status, r.body.len() as u64), (200, n));
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "request {n} waited {:?}",
            start.elapsed()
        );
    }
    for s in &mut silent {
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let r = one(&out);
        assert_eq!((r.status, r.header("connection")), (503, Some("close")));
    }
}
