//! One connection of the event server: a state machine driven by readiness, never
//! blocking. It reads a request head, then the body if there is one (hashed or dropped as
//! it arrives, chunked coding decoded incrementally), queues the response, and writes it
//! as the socket takes it; a generated `/bytes/N` body is written straight from the
//! pattern buffer, never built. Then the next request, or a graceful close.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::super::buf::{HeadError, MAX_HEAD};
use super::super::chunked::{BodyDecoder, ChunkError};
use super::super::request::{
    answer, bad_body_response, overloaded, parse_request, plan, refusal, sha256_response,
    BadRequest, Body, BodyPlan, Plan, RequestHead, Response, CONTINUE,
};
use super::super::{hex, pattern};
use super::EventConn;

/// Rounds of (answer, write, read) per call to [`Connection::drive`] before the loop turns
/// to other connections: a fast client on loopback could otherwise keep one busy forever.
const ROUNDS: usize = 32;

/// Buffered responses beyond this many bytes stop the answering of further pipelined
/// requests until the client reads (it may pipeline faster than it reads).
const OUT_HIGH: usize = 64 * 1024;

/// A graceful close reads and drops at most this much after the FIN (as the blocking
/// server's `linger_close`).
const LINGER_MAX: usize = 1 << 20;

/// How long a graceful close waits for the peer's next bytes (or its FIN).
const LINGER: Duration = Duration::from_secs(2);

/// The same for a connection answered 503: it has taken nothing, so it gets less.
const LINGER_REJECTED: Duration = Duration::from_millis(100);

/// Buffers grown beyond these are given back once empty, so a connection between two
/// large transfers holds no more than this; when it waits with nothing buffered they go
/// back whatever their size ([`Connection::shed_buffers`]).
const KEEP_RBUF: usize = 16 * 1024;
const KEEP_OUT: usize = 64 * 1024;

/// What the event loop shares with a connection while driving it.
pub(super) struct Ctx<'a> {
    pub(super) now: Instant,
    /// Where reads land (one buffer for the whole loop).
    pub(super) scratch: &'a mut [u8],
    pub(super) stats: &'a (dyn Fn() -> serde_json::Value + Send + Sync),
    pub(super) idle_timeout: Option<Duration>,
    pub(super) write_timeout: Option<Duration>,
    /// The server is stopping: no keep-alive after the response in progress.
    pub(super) stopping: bool,
}

/// What the loop should do with a connection after driving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Drive {
    /// Nothing more to do until the socket is ready again or a deadline passes.
    Wait,
    /// Its rounds ran out with work left: drive it again on the next turn of the loop.
    Again,
    /// Finished (or failed): deregister and drop it.
    Close,
}

/// Where a connection is between requests and responses.
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Reading a request body.
    Body {
        decoder: BodyDecoder,
        /// `POST /sha256`'s digest so far; `None` when the body is only dropped.
        hasher: Option<Box<Sha256>>,
        plan: Plan,
    },
    /// The last response is queued; FIN once it is written.
    Closing,
    /// FIN sent: reading and dropping what the peer still sends, so that unread bytes do
    /// not turn the close into a RST that could destroy the response before the peer
    /// reads it.
    Linger { drained: usize, wait: Duration },
}

/// Bytes read and not yet used: `buf[pos..]`. Using them only moves `pos`, so answering
/// many pipelined requests from one read copies nothing.
#[derive(Default)]
struct Input {
    buf: Vec<u8>,
    pos: usize,
}

impl Input {
    fn bytes(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        if self.is_empty() {
            self.clear();
        }
    }

    /// Appends after what is left, moving that to the front first.
    fn append(&mut self, data: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Drops everything, and the allocation too if it grew large.
    fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
        if self.buf.capacity() > KEEP_RBUF {
            self.buf = Vec::new();
        }
    }
}

/// Response bytes waiting for the socket: `buf[pos..]`, then `pattern_left` bytes of the
/// generated body from offset `pattern_at` of the pattern buffer.
#[derive(Default)]
struct Output {
    buf: Vec<u8>,
    pos: usize,
    pattern_left: u64,
    pattern_at: usize,
}

impl Output {
    fn is_empty(&self) -> bool {
        self.pos == self.buf.len() && self.pattern_left == 0
    }

    /// Whether another response may be queued behind what is here.
    fn has_room(&self) -> bool {
        self.pattern_left == 0 && self.buf.len() - self.pos < OUT_HIGH
    }

    fn push(&mut self, response: &Response) {
        self.buf.extend_from_slice(&response.head);
        match &response.body {
            Body::Bytes(body) => self.buf.extend_from_slice(body),
            Body::Pattern(n) => {
                self.pattern_left = *n;
                self.pattern_at = 0;
            }
        }
    }

    /// One write of what comes next. `Ok(0)` only when there is nothing to write.
    fn write_to(&mut self, w: &mut impl Write) -> io::Result<usize> {
        if self.pos < self.buf.len() {
            let n = w.write(&self.buf[self.pos..])?;
            self.pos += n;
            if self.pos == self.buf.len() {
                self.pos = 0;
                self.buf.clear();
                if self.buf.capacity() > KEEP_OUT {
                    self.buf = Vec::new();
                }
            }
            return nonzero(n);
        }
        if self.pattern_left == 0 {
            return Ok(0);
        }
        let pat = pattern();
        let end = pat.len().min(
            self.pattern_at
                .saturating_add(usize::try_from(self.pattern_left).unwrap_or(usize::MAX)),
        );
        let n = w.write(&pat[self.pattern_at..end])?;
        self.pattern_left -= n as u64;
        // The buffer is a whole number of periods, so its start continues the sequence.
        self.pattern_at = (self.pattern_at + n) % pat.len();
        nonzero(n)
    }
}

/// A write that took nothing from a non-empty buffer: the connection cannot go on.
fn nonzero(n: usize) -> io::Result<usize> {
    if n == 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    Ok(n)
}

/// One connection and everything the server knows about it.
pub(super) struct Connection<S> {
    pub(super) stream: S,
    /// Edge-triggered readiness as last reported and not yet used up: reading (writing)
    /// continues until `WouldBlock` clears it, so no edge is missed.
    pub(super) readable: bool,
    pub(super) writable: bool,
    /// On the loop's list of connections to drive again.
    pub(super) queued: bool,
    /// The tick of this connection's live entry in the timer wheel.
    pub(super) timer: Option<u64>,
    /// Answered 503: counted apart from the connections served.
    pub(super) rejected: bool,
    /// Bytes read and not yet used: a partial head, a partial chunk-size line, or the
    /// next pipelined requests.
    rbuf: Input,
    out: Output,
    phase: Phase,
    /// The idle (or linger) clock: the last byte from the peer, or when the server last
    /// started waiting for one.
    read_since: Instant,
    /// The write clock: the last progress writing, or when a response was queued.
    write_since: Instant,
}

impl<S: EventConn> Connection<S> {
    /// Gives back the input and output buffers if both are empty: a connection waiting
    /// for its next request then costs only its state (with 100k idle keep-alive
    /// connections, a few hundred bytes each add up). The next request allocates again,
    /// a small allocation that the allocator's thread cache serves.
    pub(super) fn shed_buffers(&mut self) {
        if self.rbuf.is_empty() && self.out.is_empty() {
            self.rbuf = Input::default();
            self.out.buf = Vec::new();
            self.out.pos = 0;
        }
    }

    /// A connection just accepted, to be served.
    pub(super) fn new(stream: S, now: Instant) -> Self {
        Self {
            stream,
            // Bytes may have arrived before registration: try both once.
            readable: true,
            writable: true,
            queued: false,
            timer: None,
            rejected: false,
            rbuf: Input::default(),
            out: Output::default(),
            phase: Phase::Head,
            read_since: now,
            write_since: now,
        }
    }

    /// A connection over the server's limit: it gets 503 and a short graceful close.
    pub(super) fn new_rejected(stream: S, now: Instant) -> Self {
        let mut c = Self::new(stream, now);
        c.rejected = true;
        c.out.push(&overloaded());
        c.phase = Phase::Closing;
        c
    }

    /// Between requests with nothing buffered either way: a stopping server may close it.
    pub(super) fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Head) && self.rbuf.is_empty() && self.out.is_empty()
    }

    /// When this connection times out as things stand: the write timeout while a response
    /// waits for the client, the idle timeout while the server waits for the client, the
    /// linger time after a FIN.
    pub(super) fn deadline(
        &self,
        idle: Option<Duration>,
        write: Option<Duration>,
    ) -> Option<Instant> {
        if !self.out.is_empty() {
            return write.map(|t| self.write_since + t);
        }
        match self.phase {
            Phase::Head | Phase::Body { .. } => idle.map(|t| self.read_since + t),
            Phase::Linger { wait, .. } => Some(self.read_since + wait),
            // Left at once when the output is written.
            Phase::Closing => None,
        }
    }

    /// Makes all the progress the socket allows (within [`ROUNDS`]): answer what is
    /// buffered, write, read.
    pub(super) fn drive(&mut self, ctx: &mut Ctx<'_>) -> Drive {
        if ctx.stopping && self.is_idle() {
            return Drive::Close;
        }
        for _ in 0..ROUNDS {
            let mut progress = self.process(ctx);

            if !self.out.is_empty() && self.writable {
                match self.out.write_to(&mut self.stream) {
                    Ok(_) => {
                        progress = true;
                        self.write_since = ctx.now;
                        if self.out.is_empty() {
                            // The server waits for the client again from now on.
                            self.read_since = ctx.now;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(_) => return Drive::Close,
                }
            }
            if self.out.is_empty() && matches!(self.phase, Phase::Closing) {
                let wait = if self.rejected {
                    LINGER_REJECTED
                } else {
                    LINGER
                };
                if self.stream.shutdown_write().is_err() {
                    return Drive::Close;
                }
                self.phase = Phase::Linger { drained: 0, wait };
                self.read_since = ctx.now;
                progress = true;
            }

            // Read only once every response is written: a client that sends faster than
            // it reads is held back by its own socket buffers, not by ours.
            if self.out.is_empty() && self.readable && !matches!(self.phase, Phase::Closing) {
                match self.stream.read(ctx.scratch) {
                    Ok(0) => return Drive::Close,
                    Ok(n) => {
                        progress = true;
                        self.read_since = ctx.now;
                        if !self.take_input(n, ctx) {
                            return Drive::Close;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(_) => return Drive::Close,
                }
            }
            if ctx.stopping && self.is_idle() {
                return Drive::Close;
            }
            if !progress {
                return Drive::Wait;
            }
        }
        Drive::Again
    }

    /// Takes `ctx.scratch[..n]`, just read. A body is decoded straight from there when
    /// nothing is buffered before it. `false`: the connection is done.
    fn take_input(&mut self, n: usize, ctx: &mut Ctx<'_>) -> bool {
        let data = &ctx.scratch[..n];
        match &mut self.phase {
            Phase::Linger { drained, .. } => {
                *drained += n;
                return *drained < LINGER_MAX;
            }
            Phase::Body {
                decoder, hasher, ..
            } if self.rbuf.is_empty() => match decode(decoder, hasher, data) {
                Ok(used) => self.rbuf.append(&data[used..]),
                Err(e) => self.body_failed(e, ctx),
            },
            Phase::Closing => {}
            _ => self.rbuf.append(data),
        }
        true
    }

    /// Answers what the buffered bytes allow; `true` if anything changed.
    fn process(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let mut progress = false;
        loop {
            match &mut self.phase {
                Phase::Head => {
                    if self.rbuf.is_empty() || !self.out.has_room() {
                        break;
                    }
                    match parse_head(self.rbuf.bytes()) {
                        Ok(None) => break,
                        Ok(Some((len, head))) => {
                            self.rbuf.consume(len);
                            match head {
                                Ok(head) => self.start_request(&head, ctx),
                                Err(bad) => self.refuse(&bad, ctx),
                            }
                        }
                        Err(e) => self.refuse(&BadRequest::Head(e), ctx),
                    }
                }
                Phase::Body {
                    decoder, hasher, ..
                } => {
                    if !decoder.is_done() {
                        if self.rbuf.is_empty() {
                            break;
                        }
                        match decode(decoder, hasher, self.rbuf.bytes()) {
                            Ok(0) => break,
                            Ok(used) => {
                                self.rbuf.consume(used);
                            }
                            Err(e) => {
                                self.body_failed(e, ctx);
                                progress = true;
                                continue;
                            }
                        }
                    }
                    if decoder.is_done() {
                        self.finish_body(ctx);
                    }
                }
                Phase::Closing | Phase::Linger { .. } => {
                    self.rbuf.clear();
                    break;
                }
            }
            progress = true;
        }
        progress
    }

    /// A request head has arrived: answer it now, or go read its body.
    fn start_request(&mut self, head: &RequestHead, ctx: &mut Ctx<'_>) {
        let plan = plan(head);
        let hasher = match plan.body {
            BodyPlan::None | BodyPlan::Skip => {
                let response = answer(&plan, &self.stream, ctx.stats);
                return self.respond(&response, ctx);
            }
            BodyPlan::Hash { continue_first } => {
                if continue_first {
                    self.queue(CONTINUE, ctx);
                }
                Some(Box::new(Sha256::new()))
            }
            BodyPlan::Drain => None,
        };
        self.phase = Phase::Body {
            decoder: BodyDecoder::new(plan.framing),
            hasher,
            plan,
        };
    }

    /// The body has been read: answer the request.
    fn finish_body(&mut self, ctx: &mut Ctx<'_>) {
        let Phase::Body { hasher, plan, .. } = std::mem::replace(&mut self.phase, Phase::Head)
        else {
            return;
        };
        let response = match hasher {
            Some(h) => sha256_response(&hex(&h.finalize()), plan.keep),
            None => answer(&plan, &self.stream, ctx.stats),
        };
        self.respond(&response, ctx);
    }

    /// A body that does not parse: 400, and the connection closes (its framing is lost).
    fn body_failed(&mut self, e: ChunkError, ctx: &mut Ctx<'_>) {
        self.respond(&bad_body_response(&e.into()), ctx);
    }

    /// A request refused before routing: its status, and the connection closes.
    fn refuse(&mut self, bad: &BadRequest, ctx: &mut Ctx<'_>) {
        self.respond(&refusal(bad), ctx);
    }

    /// Queues a response; keeps the connection for the next request or closes after it.
    fn respond(&mut self, response: &Response, ctx: &mut Ctx<'_>) {
        if self.out.is_empty() {
            self.write_since = ctx.now;
        }
        self.out.push(response);
        if response.keep && !ctx.stopping {
            self.phase = Phase::Head;
        } else {
            self.phase = Phase::Closing;
            self.rbuf.clear();
        }
    }

    /// Queues bytes that are not a whole response (`100 Continue`).
    fn queue(&mut self, bytes: &[u8], ctx: &mut Ctx<'_>) {
        if self.out.is_empty() {
            self.write_since = ctx.now;
        }
        self.out.buf.extend_from_slice(bytes);
    }
}

/// Feeds body bytes to the decoder (and the digest); returns how many it used.
fn decode(
    decoder: &mut BodyDecoder,
    hasher: &mut Option<Box<Sha256>>,
    data: &[u8],
) -> Result<usize, ChunkError> {
    decoder.decode(data, |piece| {
        if let Some(h) = hasher {
            h.update(piece);
        }
    })
}

/// A request head at the start of `buf`, with the limits of the blocking server's
/// `BufConn::read_head`: `Ok(None)` while incomplete, `TooLarge` past `MAX_HEAD`.
#[allow(clippy::type_complexity)]
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Result<RequestHead, BadRequest>)>, HeadError> {
    match parse_request(buf).map_err(HeadError::Parse)? {
        Some((len, _)) if len > MAX_HEAD => Err(HeadError::TooLarge),
        Some(done) => Ok(Some(done)),
        None if buf.len() > MAX_HEAD => Err(HeadError::TooLarge),
        None => Ok(None),
    }
}
