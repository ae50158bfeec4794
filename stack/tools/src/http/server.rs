//! The HTTP/1.1 server: one thread per connection, keep-alive and pipelining, the `/bytes`,
//! `/sha256`, `/info` and `/stats` endpoints.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::buf::{BufConn, HeadError};
use super::chunked::{BodyReader, Framing};
use super::request::{
    answer, bad_body_response, overloaded, parse_request, plan, refusal, sha256_response,
    BadRequest, Body, BodyPlan, RequestHead, Response, StatsFn, CONTINUE,
};
use super::{for_each_pattern_chunk, hex, Conn, Listener};

/// Server settings. `ServerConfig::default()` is what [`serve`] uses.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Connections served at once (by [`serve_with`]: one thread each; by
    /// [`serve_event`](super::serve_event): per event loop). Beyond it a connection gets
    /// `503 Service Unavailable` and is closed. Default 4096; [`ServerConfig::event`]:
    /// 1,000,000.
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

impl ServerConfig {
    /// The event server's usual settings: the default timeouts and no connection limit
    /// but the stack's own ([`ServerConfig::max_connections`] of 1,000,000: a connection
    /// costs the loop a few hundred bytes while idle, not a thread).
    pub fn event() -> Self {
        Self {
            max_connections: 1_000_000,
            ..Self::default()
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

pub(crate) enum AcceptAction {
    Retry(Duration),
    Fail,
}

pub(crate) fn accept_error_action(e: &io::Error) -> AcceptAction {
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
                let _ = write_response(&mut conn, &overloaded());
                linger_close(&mut conn, Duration::from_millis(100));
            }
        })?;
    Ok(tx)
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
    let plan = plan(head);
    let response = match plan.body {
        BodyPlan::Hash { continue_first } => {
            if continue_first {
                write_parts(bc.get_mut(), CONTINUE, b"")?;
            }
            match hash_body(bc, plan.framing) {
                Ok(digest) => sha256_response(&digest, plan.keep),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => bad_body_response(&e),
                Err(e) => return Err(e),
            }
        }
        BodyPlan::Drain => match BodyReader::new(bc, plan.framing).drain() {
            Ok(_) => answer(&plan, bc.get_mut(), stats),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => bad_body_response(&e),
            Err(e) => return Err(e),
        },
        BodyPlan::None | BodyPlan::Skip => answer(&plan, bc.get_mut(), stats),
    };
    write_response(bc.get_mut(), &response)?;
    Ok(if response.keep {
        Outcome::KeepAlive
    } else {
        Outcome::Close
    })
}

/// Streams a request body through SHA-256; returns its hex digest.
fn hash_body<C: Conn>(bc: &mut BufConn<C>, framing: Framing) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 256 * 1024];
    let mut body = BodyReader::new(bc, framing);
    loop {
        match body.read(&mut chunk) {
            Ok(0) => return Ok(hex(&hasher.finalize())),
            Ok(n) => hasher.update(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes a response: a small one in one write (one segment), a generated body streamed
/// from the pattern buffer after its head.
fn write_response(w: &mut impl Write, response: &Response) -> io::Result<()> {
    match &response.body {
        Body::Bytes(body) => write_parts(w, &response.head, body),
        Body::Pattern(n) => {
            w.write_all(&response.head)?;
            for_each_pattern_chunk(*n, |chunk| w.write_all(chunk))?;
            w.flush()
        }
    }
}

/// Answers a refused request with its status and `Connection: close`, then closes.
fn refuse<C: Conn>(conn: &mut C, bad: &BadRequest) {
    if write_response(conn, &refusal(bad)).is_ok() {
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

/// Writes head and body in one write, so a small response is one segment.
fn write_parts(w: &mut impl Write, head: &[u8], body: &[u8]) -> io::Result<()> {
    let mut all = Vec::with_capacity(head.len() + body.len());
    all.extend_from_slice(head);
    all.extend_from_slice(body);
    w.write_all(&all)?;
    w.flush()
}
