//! The HTTP/1.1 client: one request per connection, the response body streamed through
//! SHA-256 and counted, never stored (beyond a short prefix).

use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::buf::{BufConn, HeadError, MAX_HEADERS};
use super::chunked::{write_chunk, write_last_chunk, BodyReader, Framing};
use super::{for_each_pattern_chunk, hex, Conn};

/// How many leading body bytes a [`Response`] keeps (enough for `/info` or `/stats` JSON).
pub const BODY_PREFIX_LEN: usize = 4096;

/// What a request got back: status, body size and digest, and timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The final status code (interim 1xx responses are skipped).
    pub status: u16,
    /// Response body bytes received (after removing chunked coding).
    pub bytes: u64,
    /// Request body bytes sent (0 for GET).
    pub sent: u64,
    /// Lowercase hex SHA-256 of the response body.
    pub sha256: String,
    /// From just before the request was written until the last body byte arrived.
    pub elapsed: Duration,
    /// The first [`BODY_PREFIX_LEN`] bytes of the body.
    pub body_prefix: Vec<u8>,
}

impl Response {
    /// Body throughput in Gbit/s: request plus response body bytes over [`Response::elapsed`]
    /// (so a GET counts the download, a POST the upload). 0 when no time was measured.
    pub fn gbit_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            (self.bytes + self.sent) as f64 * 8.0 / secs / 1e9
        } else {
            0.0
        }
    }

    /// One JSON object on one line, keys in this order:
    /// `{"status":200,"bytes":N,"sent":M,"sha256":"…","seconds":S,"gbit_per_s":G}`.
    pub fn to_json_line(&self) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            status: u16,
            bytes: u64,
            sent: u64,
            sha256: &'a str,
            seconds: f64,
            gbit_per_s: f64,
        }
        let line = Line {
            status: self.status,
            bytes: self.bytes,
            sent: self.sent,
            sha256: &self.sha256,
            seconds: self.elapsed.as_secs_f64(),
            gbit_per_s: self.gbit_per_s(),
        };
        // Serializing plain numbers and a string cannot fail.
        serde_json::to_string(&line).unwrap_or_default()
    }
}

/// Sends `GET path` with `Host: host` and `Connection: close` on `conn`, and reads the
/// response. `host` is sent as is (include `:port` when not 80).
///
/// The client sets no timeout: call [`Conn::set_read_timeout`] first to bound the wait.
/// Errors: `InvalidInput` for a `host` or `path` that cannot go on a request line,
/// `InvalidData` for a malformed response, `UnexpectedEof` for a truncated one.
pub fn get<C: Conn>(mut conn: C, host: &str, path: &str) -> io::Result<Response> {
    check_request_parts(host, path)?;
    let start = Instant::now();
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xstack\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes())?;
    conn.flush()?;
    read_response(conn, start, 0)
}

/// Sends `POST path` with a generated body of `body_len` bytes (byte `i` = `(i % 251) as u8`,
/// the same pattern `GET /bytes/N` serves), framed by `Content-Length` or, when `chunked`,
/// `Transfer-Encoding: chunked` (chunks of up to 251 KiB); then reads the response.
///
/// If the server stops reading and closes early (say, a 404 before the body), the response it
/// sent is still returned when it can be read. Errors as for [`get`].
pub fn post<C: Conn>(
    mut conn: C,
    host: &str,
    path: &str,
    body_len: u64,
    chunked: bool,
) -> io::Result<Response> {
    check_request_parts(host, path)?;
    let start = Instant::now();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {body_len}")
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xstack\r\nAccept: */*\r\n\
         Content-Type: application/octet-stream\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    let sent = (|| {
        conn.write_all(head.as_bytes())?;
        if chunked {
            for_each_pattern_chunk(body_len, |c| write_chunk(&mut conn, c))?;
            write_last_chunk(&mut conn)?;
        } else {
            for_each_pattern_chunk(body_len, |c| conn.write_all(c))?;
        }
        conn.flush()
    })();
    match sent {
        Ok(()) => read_response(conn, start, body_len),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            // The server answered early and closed; its answer may be waiting.
            read_response(conn, start, 0).map_err(|_| e)
        }
        Err(e) => Err(e),
    }
}

/// Refuses what would break the request line or header block (CR/LF injection, spaces).
fn check_request_parts(host: &str, path: &str) -> io::Result<()> {
    let visible = |s: &str| s.bytes().all(|b| (0x21..0x7f).contains(&b));
    if host.is_empty() || !visible(host) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid Host {host:?}: must be non-empty visible ASCII"),
        ));
    }
    if !path.starts_with('/') || !visible(path) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid path {path:?}: must start with '/' and be visible ASCII (percent-encode the rest)"),
        ));
    }
    Ok(())
}

/// The parts of a response head the client needs.
struct ResponseHead {
    status: u16,
    content_length: Option<Result<u64, ()>>,
    /// Transfer codings, lowercased, in order.
    codings: Vec<String>,
}

fn parse_response(buf: &[u8]) -> Result<Option<(usize, ResponseHead)>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let mut head = ResponseHead {
        status: resp.code.unwrap_or(0),
        content_length: None,
        codings: Vec::new(),
    };
    for h in resp.headers.iter() {
        let value = std::str::from_utf8(h.value).map(str::trim);
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(());
            head.content_length = match head.content_length {
                None => Some(n),
                Some(prev) if prev == n => Some(n),
                Some(_) => Some(Err(())),
            };
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.codings.extend(
                value
                    .unwrap_or("")
                    .split(',')
                    .map(|c| c.trim().to_ascii_lowercase())
                    .filter(|c| !c.is_empty()),
            );
        }
    }
    Ok(Some((len, head)))
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads the response to the request just sent and digests its body.
fn read_response<C: Conn>(conn: C, start: Instant, sent: u64) -> io::Result<Response> {
    let mut bc = BufConn::new(conn);
    let head = loop {
        let head = match bc.read_head(parse_response) {
            Ok(Some(head)) => head,
            Ok(None) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a response arrived",
                ))
            }
            Err(HeadError::Io(e)) => return Err(e),
            Err(e) => return Err(invalid(format!("bad response: {e}"))),
        };
        // RFC 9110 §15.2: "A client MUST be able to parse one or more 1xx responses received
        // prior to a final response". 101 would switch protocols; we never ask for it.
        if (100..200).contains(&head.status) && head.status != 101 {
            continue;
        }
        break head;
    };
    let framing = response_framing(&head)?;
    let mut hasher = Sha256::new();
    let mut prefix = Vec::new();
    let mut bytes = 0u64;
    let mut chunk = vec![0u8; 256 * 1024];
    let mut body = BodyReader::new(&mut bc, framing);
    loop {
        let n = match body.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&chunk[..n]);
        if prefix.len() < BODY_PREFIX_LEN {
            let take = n.min(BODY_PREFIX_LEN - prefix.len());
            prefix.extend_from_slice(&chunk[..take]);
        }
        bytes += n as u64;
    }
    Ok(Response {
        status: head.status,
        bytes,
        sent,
        sha256: hex(&hasher.finalize()),
        elapsed: start.elapsed(),
        body_prefix: prefix,
    })
}

/// RFC 9112 §6.3, for responses to GET and POST.
fn response_framing(head: &ResponseHead) -> io::Result<Framing> {
    // "Any response to a HEAD request and any response with a 1xx (Informational), 204 (No
    // Content), or 304 (Not Modified) status code is always terminated by the first empty
    // line after the header fields".
    if head.status == 204 || head.status == 304 || head.status < 200 {
        return Ok(Framing::Length(0));
    }
    if !head.codings.is_empty() {
        // "If a message is received with both a Transfer-Encoding and a Content-Length header
        // field, ... [it] ought to be handled as an error."
        if head.content_length.is_some() {
            return Err(invalid(
                "response has both Content-Length and Transfer-Encoding",
            ));
        }
        // "If a Transfer-Encoding header field is present in a response and the chunked
        // transfer coding is not the final encoding, the message body length is determined
        // by reading the connection until it is closed by the server."
        if head.codings.last().map(String::as_str) == Some("chunked") {
            return Ok(Framing::Chunked);
        }
        return Ok(Framing::UntilEof);
    }
    match head.content_length {
        Some(Ok(n)) => Ok(Framing::Length(n)),
        Some(Err(())) => Err(invalid("response has an invalid Content-Length")),
        None => Ok(Framing::UntilEof),
    }
}

/// Why [`parse_url`] refused a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not an `http://` URL.
    #[error("unsupported URL {0:?}: expected http://A.B.C.D[:port]/path")]
    Scheme(String),
    /// `https://`: there is no TLS.
    #[error("https is not supported: the client speaks plain HTTP/1.1 (use http://)")]
    Https,
    /// The host is not a dotted-quad IPv4 address.
    #[error("host {0:?} is not an IPv4 address (A.B.C.D): xstack has no DNS resolver")]
    NotIpv4(String),
    /// The port is not a number in 1..=65535.
    #[error("invalid port {0:?}: expected 1-65535")]
    Port(String),
    /// `user@host` is not supported.
    #[error("user information in URLs (user@host) is not supported")]
    UserInfo,
    /// Spaces or control characters in the URL.
    #[error("URL contains spaces or control characters (percent-encode them)")]
    BadChar,
}

/// Splits `http://A.B.C.D[:port][/path][?query]` into address, port (default 80) and the
/// request target (`/path?query`, `/` when empty; any `#fragment` dropped).
pub fn parse_url(url: &str) -> Result<(Ipv4Addr, u16, String), UrlError> {
    if url.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err(UrlError::BadChar);
    }
    let scheme_end = url
        .find("://")
        .ok_or_else(|| UrlError::Scheme(url.to_string()))?;
    let scheme = &url[..scheme_end];
    if scheme.eq_ignore_ascii_case("https") {
        return Err(UrlError::Https);
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(UrlError::Scheme(url.to_string()));
    }
    let rest = &url[scheme_end + 3..];
    let rest = rest.split('#').next().unwrap_or(rest);
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(split);
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal ("[::1]:80") has colons too; it fails as a host below.
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (authority, None),
    };
    let addr: Ipv4Addr = host
        .parse()
        .map_err(|_| UrlError::NotIpv4(host.to_string()))?;
    let port = match port {
        // RFC 3986 §3.2.3: an empty port means the scheme's default.
        None | Some("") => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&n| n != 0 && p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| UrlError::Port(p.to_string()))?,
    };
    let target = match target {
        "" => "/".to_string(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_string(),
    };
    Ok((addr, port, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ip = Ipv4Addr::new(198, 18, 0, 1);
        assert_eq!(
            parse_url("http://198.18.0.1/x/y?z=1"),
            Ok((ip, 80, "/x/y?z=1".into()))
        );
        assert_eq!(
            parse_url("HTTP://198.18.0.1:8080"),
            Ok((ip, 8080, "/".into()))
        );
        assert_eq!(
            parse_url("http://198.18.0.1:/a#frag"),
            Ok((ip, 80, "/a".into()))
        );
        assert_eq!(parse_url("http://198.18.0.1?q"), Ok((ip, 80, "/?q".into())));
        assert_eq!(parse_url("https://198.18.0.1/"), Err(UrlError::Https));
        assert_eq!(
            parse_url("ftp://198.18.0.1/"),
            Err(UrlError::Scheme("ftp://198.18.0.1/".into()))
        );
        assert_eq!(
            parse_url("198.18.0.1/"),
            Err(UrlError::Scheme("198.18.0.1/".into()))
        );
        assert_eq!(
            parse_url("http://example.com/"),
            Err(UrlError::NotIpv4("example.com".into()))
        );
        assert_eq!(
            parse_url("http://[::1]:80/"),
            Err(UrlError::NotIpv4("[::1]:80".into()))
        );
        assert_eq!(
            parse_url("http://1.2.3/"),
            Err(UrlError::NotIpv4("1.2.3".into()))
        );
        assert_eq!(
            parse_url("http://1.2.3.4:0/"),
            Err(UrlError::Port("0".into()))
        );
        assert_eq!(
            parse_url("http://1.2.3.4:65536/"),
            Err(UrlError::Port("65536".into()))
        );
        assert_eq!(
            parse_url("http://1.2.3.4:+80/"),
            Err(UrlError::Port("+80".into()))
        );
        assert_eq!(parse_url("http://u@1.2.3.4/"), Err(UrlError::UserInfo));
        assert_eq!(parse_url("http://1.2.3.4/a b"), Err(UrlError::BadChar));
        let msg = parse_url("http://example.com/").unwrap_err().to_string();
        assert!(msg.contains("no DNS"), "{msg}");
    }

    #[test]
    fn json_line_has_the_documented_keys_in_order() {
        let r = Response {
            status: 200,
            bytes: 1_000_000_000,
            sent: 0,
            sha256: "ab".repeat(32),
            elapsed: Duration::from_secs(2),
            body_prefix: vec![],
        };
        assert_eq!(r.gbit_per_s(), 4.0);
        assert_eq!(
            r.to_json_line(),
            format!(
                "{{\"status\":200,\"bytes\":1000000000,\"sent\":0,\"sha256\":\"{}\",\
                 \"seconds\":2.0,\"gbit_per_s\":4.0}}",
                "ab".repeat(32)
            )
        );
        let zero = Response {
            elapsed: Duration::ZERO,
            ..r
        };
        assert_eq!(zero.gbit_per_s(), 0.0);
    }

    #[test]
    fn request_parts_cannot_inject_headers() {
        assert!(check_request_parts("1.2.3.4", "/ok?x=1").is_ok());
        for (host, path) in [
            ("a\r\nX: y", "/"),
            ("", "/"),
            ("a", "/x\r\nX: y"),
            ("a", "x"),
            ("a", "/a b"),
        ] {
            let e = check_request_parts(host, path).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{host:?} {path:?}");
        }
    }
}
