//! The event-driven HTTP server: one mio event loop per thread serves every connection that
//! thread accepts. It answers exactly what the thread-per-connection server answers (both
//! build their responses in `request.rs`); what differs is how the bytes move:
//!
//! - **Readiness.** The listener and every connection are registered with one `mio::Poll`
//!   for reading and writing, edge-triggered. A connection remembers the readiness it has
//!   not used up (`Connection::readable`/`writable`, both set by any event for it) and
//!   reads or writes until `WouldBlock` clears it, so stopping early (its output is full,
//!   its rounds ran out) never loses an edge: it is driven again from the loop's own list.
//! - **Per connection**, a state machine (`conn.rs`): request head, then the body if any
//!   (hashed for `/sha256` or dropped as it arrives, chunked coding decoded incrementally),
//!   then the response, written as the socket takes it; a `/bytes/N` body is written from
//!   the shared pattern buffer and never built. Pipelined requests are answered in order;
//!   reading stops while responses wait for the client, so a client that does not read
//!   is held back by its own socket buffers. `Connection: close` (or an error) ends with a
//!   graceful close: FIN, then what the peer still sends is read and dropped for a short
//!   while, as the blocking server's `linger_close` does.
//! - **Timeouts** without an OS timer per connection: a timer wheel (`timer.rs`, 10 ms
//!   ticks) holds one lazy entry per connection. The idle timeout counts from the last
//!   byte the peer sent (or the moment the server began waiting for one), the write
//!   timeout from the last progress writing a response.
//! - **Limits.** Beyond `ServerConfig::max_connections` a connection is answered 503 by
//!   the same machinery (so the loop never blocks on it) and closed; at most
//!   [`MAX_REJECTING`] such answers are in flight, beyond that a connection is closed
//!   unanswered. Accepting takes at most [`ACCEPT_BATCH`] connections per turn of the
//!   loop, and a connection at most a few dozen reads and writes, so neither a flood of
//!   connections nor one fast client starves the others.
//!
//! The sockets are anything that implements [`EventListener`] and [`EventConn`]: kernel
//! sockets through `mio::net` (how the tests run, on loopback), and xstack's sockets as
//! mio sources (`xstack.rs`).

mod conn;
mod kernel;
mod timer;
mod xstack;

pub use xstack::serve_event_on_worker;

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::xstack::{ReadyQueue, TaskStatus};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

use super::request::StatsFn;
use super::server::{accept_error_action, AcceptAction};
use super::{ConnControl, ServerConfig};
use conn::{Connection, Ctx, Drive};
use timer::TimerWheel;

/// A nonblocking listening socket that is a mio source, for [`serve_event`].
pub trait EventListener: mio::event::Source + Send + 'static {
    /// The connections it accepts.
    type Stream: EventConn;

    /// Called once before the listener is registered: make it nonblocking if it is not.
    fn prepare(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Accepts one connection without blocking: `WouldBlock` when none is waiting. The
    /// connection must be nonblocking too (reads and writes answer `WouldBlock`).
    fn accept(&mut self) -> io::Result<Self::Stream>;

    /// A queue for the connections' readiness, if they can signal through one shared fd
    /// instead of one each (xstack's sockets: [`ReadyQueue`]). Called once, at start.
    fn ready_queue(&mut self) -> io::Result<Option<Arc<ReadyQueue>>> {
        Ok(None)
    }
}

/// A nonblocking connection that is a mio source (readiness edge-triggered, as mio's own
/// sockets are), for [`serve_event`].
pub trait EventConn:
    ConnControl + io::Read + io::Write + mio::event::Source + Send + 'static
{
    /// Registers for readiness under `token`: on the loop's ready queue when the listener
    /// gave one, else with mio.
    fn register_in(
        &mut self,
        registry: &Registry,
        token: Token,
        queue: Option<&Arc<ReadyQueue>>,
    ) -> io::Result<()> {
        let _ = queue;
        registry.register(self, token, Interest::READABLE | Interest::WRITABLE)
    }

    /// Undoes [`EventConn::register_in`].
    fn deregister_in(&mut self, registry: &Registry, queue: Option<&Arc<ReadyQueue>>) {
        let _ = queue;
        let _ = registry.deregister(self);
    }
}

/// Beyond the connection limit, at most this many connections are being answered 503 at
/// once; more are closed unanswered.
pub const MAX_REJECTING: usize = 1024;

/// Connections accepted per turn of the loop at most, so a flood of connections cannot
/// starve the ones already open.
pub const ACCEPT_BATCH: usize = 128;

/// The loop wakes at least this often to see the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// After the stop flag is set, connections in the middle of a request get this long to
/// finish before the loop returns and drops them.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Reads land in one buffer of this size per loop.
const SCRATCH: usize = 64 * 1024;

const LISTENER: Token = Token(0);
/// The ready queue's fd, when the listener gave one; connections are `Token(key + 1)`.
const READY_QUEUE: Token = Token(usize::MAX);

/// Serves HTTP on `listener` from one event loop on the calling thread until `stop` is
/// set. [`ServerConfig::event`] is the usual configuration (no connection limit but the
/// stack's own).
///
/// `stop` is checked at least every 100 ms. Once it is set, the listener is closed,
/// connections between requests are closed, and the others finish their request
/// (without keep-alive) for up to a second.
///
/// Returns `Err` when the poll fails or `accept` fails with an error that is not about one
/// connection (an aborted or reset connection, or running out of descriptors, is waited
/// out).
pub fn serve_event<L: EventListener>(
    mut listener: L,
    stats: StatsFn,
    stop: Arc<AtomicBool>,
    config: ServerConfig,
) -> io::Result<()> {
    listener.prepare()?;
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let queue = listener.ready_queue()?;
    if let Some(q) = &queue {
        poll.registry().register(
            &mut SourceFd(&q.as_raw_fd()),
            READY_QUEUE,
            Interest::READABLE,
        )?;
    }
    Server::new(listener, poll, queue, stats, config, Instant::now()).run(&stop)
}

/// One event loop's state.
struct Server<L: EventListener> {
    poll: Poll,
    /// Where the connections signal readiness, if not through mio (see
    /// [`EventListener::ready_queue`]).
    queue: Option<Arc<ReadyQueue>>,
    /// Reused for the tokens drained from `queue`.
    tokens: Vec<usize>,
    /// `None` once stopping.
    listener: Option<L>,
    /// The listener's edge has not been used up (accept has not said `WouldBlock`).
    listener_ready: bool,
    /// After running out of descriptors or memory, accepting waits until then.
    accept_paused_until: Option<Instant>,
    /// Connections by token (`Token(i + 1)`); `None` slots are in `free`.
    conns: Vec<Option<Connection<L::Stream>>>,
    free: Vec<usize>,
    /// Connections being served (counted against `max_connections`).
    served: usize,
    /// Connections being answered 503.
    rejecting: usize,
    wheel: TimerWheel,
    /// Connections to drive on this turn of the loop.
    ready: VecDeque<usize>,
    /// Reused for the timer wheel's expired entries.
    due: Vec<(usize, u64)>,
    scratch: Box<[u8]>,
    stats: StatsFn,
    config: ServerConfig,
    /// Set when the stop flag is first seen.
    stop_deadline: Option<Instant>,
}

impl<L: EventListener> Server<L> {
    fn new(
        listener: L,
        poll: Poll,
        queue: Option<Arc<ReadyQueue>>,
        stats: StatsFn,
        config: ServerConfig,
        now: Instant,
    ) -> Self {
        Server {
            poll,
            queue,
            tokens: Vec::new(),
            listener: Some(listener),
            listener_ready: true,
            accept_paused_until: None,
            conns: Vec::new(),
            free: Vec::new(),
            served: 0,
            rejecting: 0,
            wheel: TimerWheel::new(now),
            ready: VecDeque::new(),
            due: Vec::new(),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            stats,
            config,
            stop_deadline: None,
        }
    }

    fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if self.stopped(stop, now) {
                return Ok(());
            }
            let timeout = self.poll_timeout(now);
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                match ev.token() {
                    READY_QUEUE => {
                        if let Some(q) = &self.queue {
                            q.drain(&mut self.tokens);
                        }
                    }
                    Token(t) => self.tokens.push(t),
                }
            }
            self.process(Instant::now())?;
        }
    }

    /// Sees the stop flag; true once the loop is done (stopping, and every connection
    /// finished or out of time).
    fn stopped(&mut self, stop: &AtomicBool, now: Instant) -> bool {
        if self.stop_deadline.is_none() && stop.load(Ordering::Relaxed) {
            self.begin_stop(now);
        }
        self.stop_deadline
            .is_some_and(|deadline| self.served + self.rejecting == 0 || now >= deadline)
    }

    /// One turn after the events: the tokens they gave (`LISTENER`'s or a
    /// connection's), then accepting, driving and expiring.
    fn process(&mut self, now: Instant) -> io::Result<()> {
        for i in 0..self.tokens.len() {
            match self.tokens[i] {
                t if t == LISTENER.0 => self.listener_ready = true,
                t => self.mark_ready(t),
            }
        }
        self.tokens.clear();
        self.accept(now)?;
        self.drive_ready(now);
        self.expire(now);
        Ok(())
    }

    /// One call of the loop as a worker task (`serve_event_on_worker`): the same turn,
    /// with the ready queue drained instead of polled and the worker's clock.
    fn task_turn(&mut self, stop: &AtomicBool, now: Instant) -> Result<TaskStatus, io::Error> {
        if self.stopped(stop, now) {
            return Ok(TaskStatus::Done);
        }
        if let Some(q) = &self.queue {
            q.drain(&mut self.tokens);
        }
        self.process(now)?;
        let wait = self.poll_timeout(now);
        Ok(if wait.is_zero() {
            TaskStatus::Busy
        } else {
            TaskStatus::Idle(Some(now + wait))
        })
    }

    /// Connection `Token(token)` had an event: drive it on this turn.
    fn mark_ready(&mut self, token: usize) {
        let Some(Some(c)) = token.checked_sub(1).and_then(|key| self.conns.get_mut(key)) else {
            return;
        };
        // Any event is taken as news for both directions: the next read and write say
        // what changed (an error or hang-up too, through the call it fails). Sources with
        // one readiness signal for both directions (xstack's) need no more than an edge;
        // for kernel sockets it costs at most one read or write that answers
        // `WouldBlock`, since a connection reads only with nothing left to write.
        c.readable = true;
        c.writable = true;
        if !c.queued {
            c.queued = true;
            self.ready.push_back(token - 1);
        }
    }

    /// How long the next poll may wait: not past a deadline, a retry of accept, or the
    /// next look at the stop flag; not at all while work is left over.
    fn poll_timeout(&self, now: Instant) -> Duration {
        let accept_now = self.listener.is_some()
            && self.listener_ready
            && self.accept_paused_until.is_none_or(|t| t <= now);
        if !self.ready.is_empty() || accept_now {
            return Duration::ZERO;
        }
        let mut wake = now + STOP_CHECK;
        if let Some(t) = self.wheel.next_deadline() {
            wake = wake.min(t);
        }
        if let (Some(t), Some(_)) = (self.accept_paused_until, &self.listener) {
            wake = wake.min(t);
        }
        wake.saturating_duration_since(now)
    }

    /// Accepts up to [`ACCEPT_BATCH`] connections.
    fn accept(&mut self, now: Instant) -> io::Result<()> {
        if !self.listener_ready || self.accept_paused_until.is_some_and(|t| t > now) {
            return Ok(());
        }
        self.accept_paused_until = None;
        for _ in 0..ACCEPT_BATCH {
            let Some(listener) = self.listener.as_mut() else {
                return Ok(());
            };
            match listener.accept() {
                Ok(stream) => self.add(stream, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.listener_ready = false;
                    return Ok(());
                }
                Err(e) => match accept_error_action(&e) {
                    AcceptAction::Retry(Duration::ZERO) => {}
                    AcceptAction::Retry(pause) => {
                        self.accept_paused_until = Some(now + pause);
                        return Ok(());
                    }
                    AcceptAction::Fail => return Err(e),
                },
            }
        }
        Ok(())
    }

    /// Takes a new connection: served, answered 503 over the limit, or closed at once when
    /// even the 503s are at their limit.
    fn add(&mut self, mut stream: L::Stream, now: Instant) {
        let rejected = self.served >= self.config.max_connections;
        if rejected && self.rejecting >= MAX_REJECTING {
            return;
        }
        let key = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        if stream
            .register_in(self.poll.registry(), Token(key + 1), self.queue.as_ref())
            .is_err()
        {
            self.free.push(key);
            return;
        }
        let mut c = if rejected {
            self.rejecting += 1;
            Connection::new_rejected(stream, now)
        } else {
            self.served += 1;
            Connection::new(stream, now)
        };
        c.queued = true;
        self.conns[key] = Some(c);
        self.ready.push_back(key);
    }

    /// Drives every connection that was ready when this turn began.
    fn drive_ready(&mut self, now: Instant) {
        let mut ctx = Ctx {
            now,
            scratch: &mut self.scratch,
            stats: &*self.stats,
            idle_timeout: self.config.idle_timeout,
            write_timeout: self.config.write_timeout,
            stopping: self.stop_deadline.is_some(),
        };
        for _ in 0..self.ready.len() {
            let Some(key) = self.ready.pop_front() else {
                break;
            };
            let Some(Some(c)) = self.conns.get_mut(key) else {
                continue;
            };
            c.queued = false;
            match c.drive(&mut ctx) {
                Drive::Close => {
                    close(
                        &self.poll,
                        self.queue.as_ref(),
                        &mut self.conns,
                        &mut self.free,
                        &mut self.served,
                        &mut self.rejecting,
                        key,
                    );
                    continue;
                }
                Drive::Again => {
                    c.queued = true;
                    self.ready.push_back(key);
                }
                Drive::Wait => c.shed_buffers(),
            }
            // A deadline may have moved earlier (a response now waits for the client).
            if let Some(d) = c.deadline(ctx.idle_timeout, ctx.write_timeout) {
                let tick = self.wheel.tick_for(d);
                if c.timer.is_none_or(|t| tick < t) {
                    c.timer = Some(self.wheel.schedule(key, d));
                }
            }
        }
    }

    /// Closes the connections whose deadline has passed; schedules again those whose
    /// deadline moved on.
    fn expire(&mut self, now: Instant) {
        self.wheel.expire(now, &mut self.due);
        for (key, tick) in std::mem::take(&mut self.due) {
            let Some(Some(c)) = self.conns.get_mut(key) else {
                continue;
            };
            if c.timer != Some(tick) {
                continue; // stale: a newer entry stands for this connection
            }
            c.timer = None;
            match c.deadline(self.config.idle_timeout, self.config.write_timeout) {
                Some(d) if d <= now => close(
                    &self.poll,
                    self.queue.as_ref(),
                    &mut self.conns,
                    &mut self.free,
                    &mut self.served,
                    &mut self.rejecting,
                    key,
                ),
                Some(d) => c.timer = Some(self.wheel.schedule(key, d)),
                None => {}
            }
        }
    }

    /// Stops accepting, closes connections between requests, and gives the rest
    /// [`STOP_GRACE`].
    fn begin_stop(&mut self, now: Instant) {
        self.stop_deadline = Some(now + STOP_GRACE);
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        for key in 0..self.conns.len() {
            if let Some(c) = &mut self.conns[key] {
                if !c.queued {
                    c.queued = true;
                    self.ready.push_back(key);
                }
            }
        }
    }
}

/// Deregisters and drops connection `key` (a free function so the loop can call it while
/// it holds other fields).
fn close<S: EventConn>(
    poll: &Poll,
    queue: Option<&Arc<ReadyQueue>>,
    conns: &mut [Option<Connection<S>>],
    free: &mut Vec<usize>,
    served: &mut usize,
    rejecting: &mut usize,
    key: usize,
) {
    let Some(mut c) = conns.get_mut(key).and_then(Option::take) else {
        return;
    };
    c.stream.deregister_in(poll.registry(), queue);
    if c.rejected {
        *rejecting -= 1;
    } else {
        *served -= 1;
    }
    free.push(key);
}
