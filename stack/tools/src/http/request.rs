//! What both HTTP servers answer: request heads parsed and checked, routed, and turned
//! into responses. The servers differ only in how they move bytes (a thread per
//! connection in `server.rs`, an event loop in `event/`), so they answer byte for byte
//! alike.

use std::io;
use std::sync::Arc;

use super::buf::{HeadError, MAX_HEADERS};
use super::chunked::Framing;
use super::ConnControl;

/// The closure `GET /stats` serves: stack-wide counters as JSON.
pub type StatsFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What the request asks for, after routing on the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/bytes/N`: `Err` carries the unparsable `N`.
    Bytes(Result<u64, String>),
    Sha256,
    /// `/info`, with the `cc` query parameter if present.
    Info(Option<String>),
    /// `/stats`; true with the `heap` query parameter: the process's heap too
    /// ([`xstack::heap_json`], under `memory`).
    Stats(bool),
    NotFound,
}

impl Route {
    /// Routes a request-target (origin-form or absolute-form).
    pub(crate) fn parse(target: &str) -> Route {
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
            "/stats" => Route::Stats(query.split('&').any(|kv| kv == "heap" || kv == "heap=1")),
            _ => Route::NotFound,
        }
    }

    /// The methods this route accepts (for 405 and `Allow`); empty for unknown paths.
    pub(crate) fn allowed(&self) -> &'static [&'static str] {
        match self {
            Route::Bytes(_) | Route::Info(_) | Route::Stats(_) => &["GET", "HEAD"],
            Route::Sha256 => &["POST"],
            Route::NotFound => &[],
        }
    }
}

/// Splits a request target into path and query. RFC 9112 §3.2.2: "A server MUST accept the
/// absolute-form in requests", so `http://host/path` routes like `/path`.
fn split_target(target: &str) -> (&str, &str) {
    let t = match strip_scheme(target) {
        Some(after) => after.find('/').map_or("/", |i| &after[i..]),
        None => target,
    };
    let t = t.split('#').next().unwrap_or(t);
    t.split_once('?').unwrap_or((t, ""))
}

/// The rest of an absolute-form target after its `http://` or `https://` (any case).
fn strip_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

/// Whether `target` has a form this server accepts. RFC 9112 §3.2: origin-form
/// (`/path?query`) is what a client sends to an origin server; absolute-form must be
/// accepted (§3.2.2); "The asterisk-form of request-target is only used for a server-wide
/// OPTIONS request" (§3.2.4). Anything else (authority-form, `GET garbage`) answers 400,
/// as nginx does.
fn target_form_ok(method: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return true;
    }
    if target == "*" {
        return method == "OPTIONS";
    }
    strip_scheme(target).is_some()
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
pub(crate) struct RequestHead {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) framing: Framing,
    /// Close the connection after this response.
    pub(crate) close: bool,
    /// `Expect: 100-continue`: the client waits for an interim response before the body.
    pub(crate) expect_continue: bool,
}

/// Why a request was refused before routing. Each answers its status with
/// `Connection: close`, because the connection's framing can no longer be trusted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BadRequest {
    #[error("{0}")]
    Head(HeadError),
    #[error("request-target must be /path, http://host/path, or * (OPTIONS only)")]
    Target,
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
    /// The status this refusal answers.
    pub(crate) fn status(&self) -> u16 {
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
pub(crate) fn parse_request(
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
    if !target_form_ok(&method, &target) {
        return Err(BadRequest::Target);
    }
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

/// What to do with a request's body before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyPlan {
    /// There is none (no Content-Length or Transfer-Encoding, or a length of 0).
    None,
    /// `POST /sha256`: hash it, after `100 Continue` when the client waits for one.
    Hash { continue_first: bool },
    /// Read and drop it, so the next request starts in the right place.
    Drain,
    /// Leave it unsent: the client waits for `100 Continue`, so answer without it and close
    /// (RFC 9110 §10.1.1 lets a server skip the body that way).
    Skip,
}

/// A request as the servers act on it.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) route: Route,
    pub(crate) method: String,
    /// `HEAD`: the response keeps its Content-Length but has no body (RFC 9110 §9.3.2).
    pub(crate) head_only: bool,
    /// The connection stays open after the response.
    pub(crate) keep: bool,
    pub(crate) body: BodyPlan,
    pub(crate) framing: Framing,
}

/// Decides how to answer a request head.
pub(crate) fn plan(head: &RequestHead) -> Plan {
    let route = Route::parse(&head.target);
    let method_ok = route.allowed().contains(&head.method.as_str());
    let mut keep = !head.close;
    let body = if route == Route::Sha256 && method_ok {
        BodyPlan::Hash {
            continue_first: head.expect_continue,
        }
    } else if head.framing == Framing::Length(0) {
        BodyPlan::None
    } else if head.expect_continue {
        keep = false;
        BodyPlan::Skip
    } else {
        BodyPlan::Drain
    };
    Plan {
        route,
        method: head.method.clone(),
        head_only: head.method == "HEAD",
        keep,
        body,
        framing: head.framing,
    }
}

/// The interim response `Expect: 100-continue` waits for.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A response ready to be written: head, then body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) head: Vec<u8>,
    pub(crate) body: Body,
    /// The connection stays open after it (the head says `Connection: keep-alive`).
    pub(crate) keep: bool,
}

/// A response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    /// Small and built in memory (possibly empty).
    Bytes(Vec<u8>),
    /// `GET /bytes/N`: this many bytes of the generated pattern, streamed from the pattern
    /// buffer (`super::pattern`) and never built.
    Pattern(u64),
}

/// Answers a request whose body (if any) has been dealt with as its plan says; every
/// request except a well-formed `POST /sha256` ends here.
pub(crate) fn answer(
    plan: &Plan,
    conn: &dyn ConnControl,
    stats: &(dyn Fn() -> serde_json::Value + Send + Sync),
) -> Response {
    let (keep, head_only) = (plan.keep, plan.head_only);
    let allowed = plan.route.allowed();
    if !allowed.contains(&plan.method.as_str()) {
        if allowed.is_empty() {
            return small(404, "text/plain", b"not found\n", keep, head_only, &[]);
        }
        let allow = allowed.join(", ");
        let body = format!("method {} not allowed; use {allow}\n", plan.method);
        return small(
            405,
            "text/plain",
            body.as_bytes(),
            keep,
            head_only,
            &[("Allow", &allow)],
        );
    }
    match &plan.route {
        Route::Bytes(Ok(n)) => Response {
            head: response_head(200, "application/octet-stream", *n, keep, &[]),
            body: Body::Pattern(if head_only { 0 } else { *n }),
            keep,
        },
        Route::Bytes(Err(bad)) => {
            let body = format!("bad length {bad:?}: /bytes/N takes N as a decimal u64\n");
            small(400, "text/plain", body.as_bytes(), keep, head_only, &[])
        }
        Route::Info(cc) => {
            if let Some(name) = cc {
                if let Err(e) = conn.set_congestion(name) {
                    let body = format!("{e}\n");
                    return small(400, "text/plain", body.as_bytes(), keep, head_only, &[]);
                }
            }
            let body = json_body(&conn.info_json());
            small(200, "application/json", &body, keep, head_only, &[])
        }
        Route::Stats(heap) => {
            let mut v = stats();
            if *heap {
                v["memory"] = xstack::heap_json();
            }
            let body = json_body(&v);
            small(200, "application/json", &body, keep, head_only, &[])
        }
        // `plan` sends a POST here to hashing; any other method was answered 405 above.
        Route::Sha256 | Route::NotFound => {
            small(404, "text/plain", b"not found\n", keep, head_only, &[])
        }
    }
}

/// `POST /sha256`'s answer: the body's hex digest, exactly 64 characters.
pub(crate) fn sha256_response(digest: &str, keep: bool) -> Response {
    small(200, "text/plain", digest.as_bytes(), keep, false, &[])
}

/// A request body that does not parse (bad chunk framing): 400 with the reason, and the
/// connection closes (its framing is lost).
pub(crate) fn bad_body_response(e: &io::Error) -> Response {
    small(
        400,
        "text/plain",
        format!("{e}\n").as_bytes(),
        false,
        false,
        &[],
    )
}

/// A refused request: its status and `Connection: close`.
pub(crate) fn refusal(bad: &BadRequest) -> Response {
    small(
        bad.status(),
        "text/plain",
        format!("{bad}\n").as_bytes(),
        false,
        false,
        &[],
    )
}

/// The answer to a connection over the server's limit.
pub(crate) fn overloaded() -> Response {
    small(
        503,
        "text/plain",
        b"too many connections\n",
        false,
        false,
        &[],
    )
}

fn json_body(v: &serde_json::Value) -> Vec<u8> {
    let mut body = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    body.push(b'\n');
    body
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

/// A complete small response. `head_only` (a HEAD request) keeps the Content-Length of the
/// body but leaves the body out (RFC 9110 §9.3.2).
fn small(
    status: u16,
    content_type: &str,
    body: &[u8],
    keep: bool,
    head_only: bool,
    extra: &[(&str, &str)],
) -> Response {
    Response {
        head: response_head(status, content_type, body.len() as u64, keep, extra),
        body: Body::Bytes(if head_only { Vec::new() } else { body.to_vec() }),
        keep,
    }
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
        assert_eq!(Route::parse("/stats"), Route::Stats(false));
        assert_eq!(Route::parse("/stats?heap"), Route::Stats(true));
        assert_eq!(Route::parse("*"), Route::NotFound);
    }

    /// RFC 9112 §3.2: origin-form and absolute-form are served; `*` only with OPTIONS;
    /// anything else is 400 (nginx: `GET garbage HTTP/1.1` is 400, not 404).
    #[test]
    fn request_target_forms() {
        for ok in [
            "GET /bytes/1 HTTP/1.1",
            "GET http://h/bytes/1 HTTP/1.1",
            "GET HTTP://h:80 HTTP/1.1",
            "GET https://h/x?y HTTP/1.1",
            "OPTIONS * HTTP/1.1",
        ] {
            let raw = format!("{ok}\r\nHost: a\r\n\r\n");
            assert!(check(&raw).is_ok(), "{ok:?} refused");
        }
        for bad in [
            "GET garbage HTTP/1.1",
            "GET * HTTP/1.1",
            "CONNECT h:443 HTTP/1.1",
            "GET h/bytes/1 HTTP/1.1",
            "GET ftp://h/x HTTP/1.1",
            "GET http:/h HTTP/1.1",
        ] {
            let raw = format!("{bad}\r\nHost: a\r\n\r\n");
            match check(&raw) {
                Err(e @ BadRequest::Target) => assert_eq!(e.status(), 400),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
