//! The HTTP/1.1 server: one thread per connection, keep-alive and pipelining, the `/bytes`,
//! `/sha256`, `/info` and `/stats` endpoints.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::buf::{BufConn, HeadError, MAX_HEADERS};
use super::chunked::{BodyReader, Framing};
use super::{for_each_pattern_chunk, hex, Conn, Listener};

/// The closure `GET /stats` serves: stack-wide counters as JSON.
pub type StatsFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Server settings. `ServerConfig::default()` is what [`serve`] uses.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Connections served at once (one thread each). Beyond it a connection gets
    /// `503 Service Unavailable` and is closed. Default 4096.
    pub max_connections: usize,
    /// How long a connection may sit without sending a byte, between requests or inside
    /// one, before the server closes it. `None` waits forever. Default 60 s.
    pub idle_timeout: Option<Duration>,
    /// How long a response write may wait for room (the client not reading) before the
    /// server closes the connection, so a client that stops reading cannot hold a thread
    /// forever. `None` waits forever. Default 10 s.
    pub write_timeout: Option<Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            idle_timeout: Some(Duration::from_secs(60)),
            write_timeout: Some(Duration::from_secs(10)),
        }
    }
}

/// Serves HTTP on `listener` with [`ServerConfig::default()`] until `stop` is set; see
/// [`serve_with`].
pub fn serve<L: Listener>(listener: L, stats: StatsFn, stop: Arc<AtomicBool>) -> io::Result<()> {
    serve_with(listener, stats, stop, ServerConfig::default())
}

/// Serves HTTP on `listener` until `stop` is set, one thread per connection.
///
/// `stop` is checked whenever `accept` returns, so after setting it either make one more
/// connection to wake a blocking listener or use a non-blocking one (the server polls it
/// every millisecond). Connections already open finish the request in progress and close;
/// an idle keep-alive connection closes at its next request or its idle timeout.
///
/// Returns `Err` only when `accept` fails with an error that is not about one connection
/// (an aborted or reset connection, or running out of descriptors, is waited out).
pub fn serve_with<L: Listener>(
    listener: L,
    stats: StatsFn,
    stop: Arc<AtomicBool>,
    config: ServerConfig,
) -> io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    let reject = spawn_rejecter::<L::Stream>()?;
    let mut next_id = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let conn = match listener.accept() {
            Ok(conn) => conn,
            Err(e) => match accept_error_action(&e) {
                AcceptAction::Retry(pause) => {
                    thread::sleep(pause);
                    continue;
                }
                AcceptAction::Fail => return Err(e),
            },
        };
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if active.load(Ordering::Acquire) >= config.max_connections {
            // A full queue means the rejecter is itself overwhelmed: just close.
            if let Err(TrySendError::Disconnected(_)) = reject.try_send(conn) {
                return Err(io::Error::other("http: the 503 thread exited"));
            }
            continue;
        }
        active.fetch_add(1, Ordering::AcqRel);
        let guard = ActiveGuard(Arc::clone(&active));
        let (stats, stop, config) = (Arc::clone(&stats), Arc::clone(&stop), config.clone());
        next_id += 1;
        let spawned = thread::Builder::new()
            .name(format!("http-conn-{next_id}"))
            .stack_size(512 * 1024)
            .spawn(move || {
                let _guard = guard;
                serve_conn(conn, &*stats, &stop, &config);
            });
        // On failure the closure (connection and guard) is dropped: the peer sees a close.
        if spawned.is_err() {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Decrements the active-connection count when a connection thread ends, however it ends.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

enum AcceptAction {
    Retry(Duration),
    Fail,
}

fn accept_error_action(e: &io::Error) -> AcceptAction {
    use io::ErrorKind::*;
    match e.kind() {
        WouldBlock => AcceptAction::Retry(Duration::from_millis(1)),
        Interrupted | ConnectionAborted | ConnectionReset | TimedOut => {
            AcceptAction::Retry(Duration::ZERO)
        }
        _ => match e.raw_os_error() {
            // Out of descriptors or memory: connections closing will free some.
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                AcceptAction::Retry(Duration::from_millis(10))
            }
            Some(libc::EPROTO | libc::EPERM) => AcceptAction::Retry(Duration::ZERO),
            _ => AcceptAction::Fail,
        },
    }
}

/// Starts the thread that answers connections over the limit with 503, so the acceptor never
/// blocks on a slow peer. Its queue is bounded; past that, connections are closed unanswered.
fn spawn_rejecter<C: Conn>() -> io::Result<SyncSender<C>> {
    let (tx, rx) = sync_channel::<C>(64);
    thread::Builder::new()
        .name("http-503".into())
        .spawn(move || {
            for mut conn in rx {
                let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
                // Read the request (or what has arrived of it) first: closing with unread
                // bytes makes the kernel send RST, and the peer may lose the 503.
                let mut scratch = [0u8; 4096];
                let _ = conn.read(&mut scratch);
                let body = b"too many connections\n";
                let head = response_head(503, "text/plain", body.len() as u64, false, &[]);
                let _ = write_parts(&mut conn, &head, body);
                linger_close(&mut conn, Duration::from_millis(100));
            }
        })?;
    Ok(tx)
}

/// What the request asks for, after routing on the path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// `/bytes/N`: `Err` carries the unparsable `N`.
    Bytes(Result<u64, String>),
    Sha256,
    /// `/info`, with the `cc` query parameter if present.
    Info(Option<String>),
    Stats,
    NotFound,
}

impl Route {
    fn parse(target: &str) -> Route {
        let (path, query) = split_target(target);
        if let Some(n) = path.strip_prefix("/bytes/") {
            return Route::Bytes(parse_u64(n).ok_or_else(|| n.to_string()));
        }
        match path {
            "/sha256" => Route::Sha256,
            "/info" => Route::Info(
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("cc="))
                    .map(str::to_string),
            ),
            "/stats" => Route::Stats,
            _ => Route::NotFound,
        }
    }

    /// The methods this route accepts (for 405 and `Allow`); empty for unknown paths.
    fn allowed(&self) -> &'static [&'static str] {
        match self {
            Route::Bytes(_) | Route::Info(_) | Route::Stats => &["GET", "HEAD"],
            Route::Sha256 => &["POST"],
            Route::NotFound => &[],
        }
    }
}

/// Splits a request target into path and query. RFC 9112 §3.2.2: "A server MUST accept the
/// absolute-form in requests", so `http://host/path` routes like `/path`.
fn split_target(target: &str) -> (&str, &str) {
    let mut t = target;
    for scheme in ["http://", "https://"] {
        if t.len() >= scheme.len() && t[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let after = &t[scheme.len()..];
            t = after.find('/').map_or("/", |i| &after[i..]);
            break;
        }
    }
    let t = t.split('#').next().unwrap_or(t);
    t.split_once('?').unwrap_or((t, ""))
}

/// `1*DIGIT` as u64; unlike `str::parse`, no sign and no empty string.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A request head that parsed and passed the framing checks.
#[derive(Debug)]
struct RequestHead {
    method: String,
    target: String,
    framing: Framing,
    /// Close the connection after this response.
    close: bool,
    /// `Expect: 100-continue`: the client waits for an interim response before the body.
    expect_continue: bool,
}

/// Why a request was refused before routing. Each answers its status with
/// `Connection: close`, because the connection's framing can no longer be trusted.
#[derive(Debug, thiserror::Error)]
enum BadRequest {
    #[error("{0}")]
    Head(HeadError),
    #[error("invalid Content-Length")]
    ContentLength,
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    #[error("Transfer-Encoding must end with chunked")]
    NotChunked,
    #[error("Transfer-Encoding in an HTTP/1.0 request")]
    TransferEncoding10,
    #[error("unsupported transfer coding (only chunked is)")]
    UnsupportedCoding,
    #[error("HTTP/1.1 request without exactly one Host")]
    Host,
}

impl BadRequest {
    fn status(&self) -> u16 {
        match self {
            // RFC 9112 §6.1: "A server that receives a request message with a transfer
            // coding it does not understand SHOULD respond with 501 (Not Implemented)."
            BadRequest::UnsupportedCoding => 501,
            _ => 400,
        }
    }
}

/// Parses a request head with httparse and checks its framing fields. The outer `Result` is
/// httparse's (syntax); the inner is ours (semantics), returned only for a complete head.
#[allow(clippy::type_complexity)]
fn parse_request(
    buf: &[u8],
) -> Result<Option<(usize, Result<RequestHead, BadRequest>)>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    Ok(Some((len, check_request(&req))))
}

fn check_request(req: &httparse::Request<'_, '_>) -> Result<RequestHead, BadRequest> {
    // httparse fills all three for a complete head.
    let method = req.method.unwrap_or("").to_string();
    let target = req.path.unwrap_or("").to_string();
    let http11 = req.version == Some(1);
    let mut content_length: Option<u64> = None;
    let mut codings: Vec<String> = Vec::new();
    let (mut close, mut keep_alive, mut expect_continue) = (false, false, false);
    let mut hosts = 0;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).map(str::trim);
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            // RFC 9112 §6.3: "If a message is received without Transfer-Encoding and with an
            // invalid Content-Length header field, then the message framing is invalid and
            // the recipient MUST treat it as an unrecoverable error." Repeats must agree.
            let n = value
                .ok()
                .and_then(parse_u64)
                .ok_or(BadRequest::ContentLength)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(BadRequest::ContentLength);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let v = value.map_err(|_| BadRequest::NotChunked)?;
            codings.extend(
                v.split(',')
                    .map(|c| c.trim().to_ascii_lowercase())
                    .filter(|c| !c.is_empty()),
            );
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.unwrap_or("").split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= value.is_ok_and(|v| v.eq_ignore_ascii_case("100-continue"));
        }
    }
    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    // HTTP/1.1 request message that lacks a Host header field and to any request message
    // that contains more than one Host header field line or a Host header field with an
    // invalid field value."
    if (http11 && hosts == 0) || hosts > 1 {
        return Err(BadRequest::Host);
    }
    let framing = if codings.is_empty() {
        Framing::Length(content_length.unwrap_or(0))
    } else if !http11 {
        // RFC 9112 §6.1: "A server or client that receives an HTTP/1.0 message containing a
        // Transfer-Encoding header field MUST treat the message as if the framing is faulty".
        return Err(BadRequest::TransferEncoding10);
    } else if content_length.is_some() {
        // RFC 9112 §6.1: "A server MAY reject a request that contains both Content-Length
        // and Transfer-Encoding". Rejecting closes the classic smuggling hole.
        return Err(BadRequest::LengthAndChunked);
    } else if codings.last().map(String::as_str) != Some("chunked") {
        // RFC 9112 §6.3: "If a Transfer-Encoding header field is present in a request and
        // the chunked transfer coding is not the final encoding, ... the server MUST respond
        // with the 400 (Bad Request) status code and then close the connection."
        return Err(BadRequest::NotChunked);
    } else if codings.len() > 1 {
        return Err(BadRequest::UnsupportedCoding);
    } else {
        Framing::Chunked
    };
    Ok(RequestHead {
        method,
        target,
        framing,
        // HTTP/1.1 is persistent unless "close"; HTTP/1.0 only with "keep-alive".
        close: close || (!http11 && !keep_alive),
        expect_continue,
    })
}

/// Serves requests on one connection until it closes, errs, times out, or asks to close.
fn serve_conn<C: Conn>(
    conn: C,
    stats: &(dyn Fn() -> serde_json::Value + Send + Sync),
    stop: &AtomicBool,
    config: &ServerConfig,
) {
    if conn.set_read_timeout(config.idle_timeout).is_err()
        || conn.set_write_timeout(config.write_timeout).is_err()
    {
        return;
    }
    let mut bc = BufConn::new(conn);
    loop {
        let head = match bc.read_head(parse_request) {
            Ok(None) => return,
            Ok(Some(Ok(head))) => head,
            Ok(Some(Err(bad))) => return refuse(bc.get_mut(), &bad),
            Err(HeadError::Io(_)) => return,
            Err(e) => return refuse(bc.get_mut(), &BadRequest::Head(e)),
        };
        let close = match respond(&mut bc, &head, stats) {
            Ok(Outcome::KeepAlive) => head.close,
            Ok(Outcome::Close) => true,
            Err(_) => return,
        };
        if close || stop.load(Ordering::Relaxed) {
            return linger_close(bc.get_mut(), Duration::from_secs(2));
        }
    }
}

/// Whether the connection can carry another request after a response.
enum Outcome {
    KeepAlive,
    Close,
}

/// Answers one request. `Err` means the connection failed (nothing more can be sent).
fn respond<C: Conn>(
    bc: &mut BufConn<C>,
    head: &RequestHead,
    stats: &(dyn Fn() -> serde_json::Value + Send + Sync),
) -> io::Result<Outcome> {
    let route = Route::parse(&head.target);
    let keep = !head.close;
    let allowed = route.allowed();
    let method_ok = allowed.contains(&head.method.as_str());
    let head_only = head.method == "HEAD";

    if route == Route::Sha256 && method_ok {
        return respond_sha256(bc, head, keep);
    }

    // Every other request's body is read and dropped, so the next request starts in the
    // right place. Under `Expect: 100-continue` the client has not sent it yet: answer
    // without it and close (RFC 9110 §10.1.1 lets a server skip the body that way).
    let mut keep = keep;
    if head.framing != Framing::Length(0) {
        if head.expect_continue {
            keep = false;
        } else if let Err(e) = BodyReader::new(bc, head.framing).drain() {
            if e.kind() != io::ErrorKind::InvalidData {
                return Err(e);
            }
            return bad_body(bc.get_mut(), &e);
        }
    }
    let outcome = if keep {
        Outcome::KeepAlive
    } else {
        Outcome::Close
    };
    let w = bc.get_mut();

    if !method_ok {
        if allowed.is_empty() {
            send(w, 404, "text/plain", b"not found\n", keep, head_only, &[])?;
        } else {
            let allow = allowed.join(", ");
            let body = format!("method {} not allowed; use {allow}\n", head.method);
            send(
                w,
                405,
                "text/plain",
                body.as_bytes(),
                keep,
                head_only,
                &[("Allow", &allow)],
            )?;
        }
        return Ok(outcome);
    }
    answer(w, route, head_only, keep, stats)?;
    Ok(outcome)
}

/// `POST /sha256`: streams the body through SHA-256 and answers its hex digest.
fn respond_sha256<C: Conn>(
    bc: &mut BufConn<C>,
    head: &RequestHead,
    keep: bool,
) -> io::Result<Outcome> {
    if head.expect_continue {
        write_parts(bc.get_mut(), b"HTTP/1.1 100 Continue\r\n\r\n", b"")?;
    }
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 256 * 1024];
    let mut body = BodyReader::new(bc, head.framing);
    loop {
        match body.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => hasher.update(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return bad_body(bc.get_mut(), &e);
            }
            Err(e) => return Err(e),
        }
    }
    let digest = hex(&hasher.finalize());
    send(
        bc.get_mut(),
        200,
        "text/plain",
        digest.as_bytes(),
        keep,
        false,
        &[],
    )?;
    Ok(Outcome::KeepAlive)
}

/// Answers a request for a known route with an allowed method (its body already read).
fn answer<C: Conn>(
    w: &mut C,
    route: Route,
    head_only: bool,
    keep: bool,
    stats: &(dyn Fn() -> serde_json::Value + Send + Sync),
) -> io::Result<()> {
    match route {
        Route::Bytes(Ok(n)) => {
            let head_bytes = response_head(200, "application/octet-stream", n, keep, &[]);
            w.write_all(&head_bytes)?;
            if !head_only {
                for_each_pattern_chunk(n, |chunk| w.write_all(chunk))?;
            }
            w.flush()?;
        }
        Route::Bytes(Err(bad)) => {
            let body = format!("bad length {bad:?}: /bytes/N takes N as a decimal u64\n");
            send(w, 400, "text/plain", body.as_bytes(), keep, head_only, &[])?;
        }
        Route::Info(cc) => {
            if let Some(name) = cc {
                if let Err(e) = w.set_congestion(&name) {
                    let body = format!("{e}\n");
                    send(w, 400, "text/plain", body.as_bytes(), keep, head_only, &[])?;
                    return Ok(());
                }
            }
            let body = json_body(&w.info_json());
            send(w, 200, "application/json", &body, keep, head_only, &[])?;
        }
        Route::Stats => {
            let body = json_body(&stats());
            send(w, 200, "application/json", &body, keep, head_only, &[])?;
        }
        Route::Sha256 | Route::NotFound => unreachable!("handled above"),
    }
    Ok(())
}

fn json_body(v: &serde_json::Value) -> Vec<u8> {
    let mut body = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    body.push(b'\n');
    body
}

/// Answers a refused request with its status and `Connection: close`, then closes.
fn refuse<C: Conn>(conn: &mut C, bad: &BadRequest) {
    let body = format!("{bad}\n");
    if send(
        conn,
        bad.status(),
        "text/plain",
        body.as_bytes(),
        false,
        false,
        &[],
    )
    .is_ok()
    {
        linger_close(conn, Duration::from_secs(2));
    }
}

/// Closes gracefully: FIN first, then read and drop what the peer still sends (up to 1 MiB
/// or `wait` of silence) so that unread bytes do not turn our close into a RST that could
/// destroy the response before the peer reads it.
fn linger_close<C: Conn>(conn: &mut C, wait: Duration) {
    if conn.shutdown_write().is_err() || conn.set_read_timeout(Some(wait)).is_err() {
        return;
    }
    let mut scratch = [0u8; 16 * 1024];
    let mut total = 0usize;
    while total < 1 << 20 {
        match conn.read(&mut scratch) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// A response head with the headers every response carries.
fn response_head(
    status: u16,
    content_type: &str,
    content_length: u64,
    keep_alive: bool,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let mut h = format!(
        "HTTP/1.1 {status} {}\r\nServer: xstack\r\nContent-Type: {content_type}\r\n\
         Content-Length: {content_length}\r\nConnection: {}\r\n",
        reason(status),
        if keep_alive { "keep-alive" } else { "close" },
    );
    for (name, value) in extra {
        h.push_str(&format!("{name}: {value}\r\n"));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// Writes head and body in one write, so a small response is one segment.
fn write_parts(w: &mut impl Write, head: &[u8], body: &[u8]) -> io::Result<()> {
    let mut all = Vec::with_capacity(head.len() + body.len());
    all.extend_from_slice(head);
    all.extend_from_slice(body);
    w.write_all(&all)?;
    w.flush()
}

/// Sends a complete small response. `head_only` (a HEAD request) keeps the Content-Length
/// of the body but leaves the body out (RFC 9110 §9.3.2).
/// A request body that does not parse (bad chunk framing): 400 with the reason, and
/// the connection closes (its framing is lost).
fn bad_body(w: &mut impl Write, e: &io::Error) -> io::Result<Outcome> {
    send(
        w,
        400,
        "text/plain",
        format!("{e}\n").as_bytes(),
        false,
        false,
        &[],
    )?;
    Ok(Outcome::Close)
}

fn send(
    w: &mut impl Write,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
    extra: &[(&str, &str)],
) -> io::Result<()> {
    let head = response_head(status, content_type, body.len() as u64, keep_alive, extra);
    write_parts(w, &head, if head_only { b"" } else { body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str) -> Result<RequestHead, BadRequest> {
        match parse_request(raw.as_bytes()) {
            Ok(Some((len, r))) => {
                assert_eq!(len, raw.len());
                r
            }
            other => panic!("{raw:?} did not parse as a complete head: {other:?}"),
        }
    }

    #[test]
    fn framing_rules() {
        let h = check("POST /sha256 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        assert!(!h.close);
        let h = check("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let h =
            check("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(
            h.unwrap().framing,
            Framing::Length(5),
            "identical repeats are fine"
        );
        let h = check("GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(h.close, "HTTP/1.0 closes by default");
        let h = check("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(!h.close);
        let h = check("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n").unwrap();
        assert!(h.close);
    }

    #[test]
    fn framing_errors() {
        let cases = [
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ];
        for (raw, status) in cases {
            match check(raw) {
                Err(bad) => assert_eq!(bad.status(), status, "{raw:?}: {bad}"),
                Ok(h) => panic!("{raw:?} accepted: {h:?}"),
            }
        }
    }

    #[test]
    fn routes() {
        assert_eq!(Route::parse("/bytes/10"), Route::Bytes(Ok(10)));
        assert_eq!(Route::parse("/bytes/10?x=1"), Route::Bytes(Ok(10)));
        assert_eq!(Route::parse("http://h:1/bytes/7"), Route::Bytes(Ok(7)));
        assert_eq!(Route::parse("/bytes/"), Route::Bytes(Err(String::new())));
        assert_eq!(Route::parse("/bytes/+1"), Route::Bytes(Err("+1".into())));
        assert_eq!(
            Route::parse("/bytes/18446744073709551616"),
            Route::Bytes(Err("18446744073709551616".into()))
        );
        assert_eq!(Route::parse("/bytes"), Route::NotFound);
        assert_eq!(
            Route::parse("/info?a=b&cc=cubic"),
            Route::Info(Some("cubic".into()))
        );
        assert_eq!(Route::parse("/info"), Route::Info(None));
        assert_eq!(Route::parse("/sha256"), Route::Sha256);
        assert_eq!(Route::parse("/stats"), Route::Stats);
        assert_eq!(Route::parse("*"), Route::NotFound);
    }
}
