//! xstack's sockets as the event server's transport (the `xstack` crate's `mio` feature).
//!
//! All it needs from the `xstack` crate: `TcpListener::set_nonblocking`, a nonblocking
//! `TcpListener::accept` that answers `WouldBlock` when the accept queue is empty,
//! `TcpStream::set_nonblocking` with `Read`/`Write` that answer `WouldBlock`, and
//! `mio::event::Source` for both, edge-triggered like mio's own sockets: after a
//! `WouldBlock`, an event once the condition it waited for changes (whichever direction
//! the event says: the server takes any event for a connection as news for both). The
//! connections signal through one [`ReadyQueue`] per loop rather than an eventfd each. The
//! per-connection calls `GET /info` makes (`ConnControl`) are shared with the blocking
//! server (`xstack_impl.rs`).

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};

use mio::{Interest, Poll, Registry, Token};
use xstack::{NetStack, ReadyQueue, TaskContext, TaskStatus, TcpListener, TcpStream};

use super::{EventConn, EventListener, Server, LISTENER};
use crate::http::{ServerConfig, StatsFn};

/// Runs [`serve_event`](super::serve_event)'s loop inside worker `worker` of `net`, as a
/// task ([`NetStack::run_on_worker`]): the worker calls it on every turn of its own loop,
/// after the turn's input and before its output goes out, so a request that arrives is
/// answered in the same turn, on the same core, with no thread in between
/// (run-to-completion). Readiness comes through a ready queue made for the worker
/// ([`ReadyQueue::for_worker`]); the listener's token is on it too.
///
/// Returns at once; the receiver gets the loop's result when it ends (`stop` set and its
/// connections finished, as for `serve_event`), or is disconnected if the stack stops
/// first. Errors setting it up (no such worker, the listener's registration) are
/// returned.
pub fn serve_event_on_worker(
    net: &NetStack,
    worker: usize,
    mut listener: TcpListener,
    stats: StatsFn,
    stop: Arc<AtomicBool>,
    config: ServerConfig,
) -> io::Result<mpsc::Receiver<io::Result<()>>> {
    EventListener::prepare(&mut listener)?;
    let queue = ReadyQueue::for_worker(net, worker)?;
    listener.register_ready_queue(&queue, LISTENER.0)?;
    // Never polled: the connections' registrations go to the queue, and the trait's
    // calls take a registry.
    let poll = Poll::new()?;
    let (tx, rx) = mpsc::sync_channel(1);
    let mut parts = Some((listener, poll, queue, stats, config));
    let mut server = None;
    net.run_on_worker(worker, move |cx: &TaskContext| {
        // Built on the first call, on the worker's clock (a simulation's is virtual).
        let server = server.get_or_insert_with(|| {
            let (listener, poll, queue, stats, config) = parts.take().expect("once");
            Server::new(listener, poll, Some(queue), stats, config, cx.now())
        });
        match server.task_turn(&stop, cx.now()) {
            Ok(TaskStatus::Done) => {
                let _ = tx.send(Ok(()));
                TaskStatus::Done
            }
            Ok(status) => status,
            Err(e) => {
                let _ = tx.send(Err(e));
                TaskStatus::Done
            }
        }
    })?;
    Ok(rx)
}

impl EventListener for TcpListener {
    type Stream = TcpStream;

    fn prepare(&mut self) -> io::Result<()> {
        self.set_nonblocking(true)
    }

    fn accept(&mut self) -> io::Result<TcpStream> {
        let (stream, _) = TcpListener::accept(self)?;
        // A blocking connection would stall the whole loop: drop it, as an aborted one (the
        // server goes on accepting), rather than serve it.
        if stream.set_nonblocking(true).is_err() {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        // Responses go out in large writes; Nagle would only delay the tail. A failure is
        // about this connection only: serve it anyway.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// One fd for all of the loop's connections: an fd per connection would cap them at
    /// the open-file limit and cost kernel memory per connection.
    fn ready_queue(&mut self) -> io::Result<Option<Arc<ReadyQueue>>> {
        ReadyQueue::new().map(Some)
    }
}

impl EventConn for TcpStream {
    fn register_in(
        &mut self,
        registry: &Registry,
        token: Token,
        queue: Option<&Arc<ReadyQueue>>,
    ) -> io::Result<()> {
        match queue {
            Some(q) => self.register_ready_queue(q, token.0),
            None => registry.register(self, token, Interest::READABLE | Interest::WRITABLE),
        }
    }

    fn deregister_in(&mut self, registry: &Registry, queue: Option<&Arc<ReadyQueue>>) {
        match queue {
            Some(_) => self.deregister_ready_queue(),
            None => {
                let _ = registry.deregister(self);
            }
        }
    }
}

/// The event server on xstack's sockets, on two simulated stacks run by a background
/// thread: downloads, uploads (plain and chunked), congestion control switched through
/// `/info`, several pipelined keep-alive connections at once, and a clean stop.
#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::SocketAddrV4;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use xstack::sim::{host_addr, LinkConfig, Sim};
    use xstack::{TcpListener, TcpStream};

    use super::super::super::{get, pattern_sha256, post, ServerConfig, StatsFn};
    use super::super::serve_event;
    use super::serve_event_on_worker;

    #[test]
    fn event_server_on_xstack_sockets() {
        serve_and_check(false);
    }

    /// The same, with the loop inside host 1's worker 0 as a task: its connections are
    /// spread over both workers.
    #[test]
    fn event_server_inside_a_worker() {
        serve_and_check(true);
    }

    fn serve_and_check(on_worker: bool) {
        let link = LinkConfig {
            delay: Duration::from_millis(1),
            ..LinkConfig::default()
        };
        let sim = Sim::new(7, link, 2).spawn();
        let addr = SocketAddrV4::new(host_addr(1), 80);
        let listener = TcpListener::bind(sim.net(1), addr).expect("bind");
        let stop = Arc::new(AtomicBool::new(false));
        let stats: StatsFn = Arc::new(|| serde_json::json!({"sim": true}));
        let s = Arc::clone(&stop);
        let server: Box<dyn FnOnce() -> std::io::Result<()>> = if on_worker {
            let done =
                serve_event_on_worker(&sim.net(1), 0, listener, stats, s, ServerConfig::event())
                    .expect("started");
            Box::new(move || done.recv_timeout(Duration::from_secs(10)).expect("ends"))
        } else {
            let t =
                std::thread::spawn(move || serve_event(listener, stats, s, ServerConfig::event()));
            Box::new(move || t.join().unwrap())
        };
        let connect = || {
            let c = TcpStream::connect_timeout(sim.net(0), addr, Duration::from_secs(10))
                .expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            c
        };
        let host = addr.to_string();

        for n in [0u64, 1, 300_000] {
            let r = get(connect(), &host, &format!("/bytes/{n}")).unwrap();
            assert_eq!((r.status, r.bytes), (200, n));
            assert_eq!(r.sha256, pattern_sha256(n));
        }
        for chunked in [false, true] {
            let r = post(connect(), &host, "/sha256", 200_000, chunked).unwrap();
            assert_eq!(r.status, 200, "chunked {chunked}");
            assert_eq!(r.body_prefix, pattern_sha256(200_000).into_bytes());
        }
        let r = get(connect(), &host, "/info?cc=cubic").unwrap();
        let info: serde_json::Value = serde_json::from_slice(&r.body_prefix).unwrap();
        assert_eq!((r.status, &info["cc"]), (200, &serde_json::json!("cubic")));

        let mut conns: Vec<TcpStream> = (0..8).map(|_| connect()).collect();
        for c in &mut conns {
            c.write_all(
                b"GET /bytes/5 HTTP/1.1\r\nHost: t\r\n\r\n\
                  GET /stats HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
        }
        for c in &mut conns {
            let mut out = Vec::new();
            c.read_to_end(&mut out).unwrap();
            let text = String::from_utf8_lossy(&out);
            assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text}");
            assert!(
                text.contains("\r\n\r\n\x00\x01\x02\x03\x04HTTP/1.1"),
                "{text}"
            );
            assert!(text.ends_with("{\"sim\":true}\n"), "{text}");
        }

        stop.store(true, Ordering::Relaxed);
        server().expect("serve_event returns Ok once stopped");
    }

    /// A download, then `GET /info` on the same connection, from a server on a stack
    /// running the `stats` helper (`xstack http --helper stats`); returns the `/info`.
    fn info_after_download(event: bool) -> serde_json::Value {
        let link = LinkConfig {
            delay: Duration::from_millis(1),
            ..LinkConfig::default()
        };
        let sim = Sim::new(8, link, 1).spawn();
        xstack::helpers::register(&sim.net(1), "stats").expect("register");
        assert!(xstack::helpers::register(&sim.net(1), "nope").is_err());
        let addr = SocketAddrV4::new(host_addr(1), 80);
        let listener = TcpListener::bind(sim.net(1), addr).expect("bind");
        let stop = Arc::new(AtomicBool::new(false));
        let stats: StatsFn = Arc::new(|| serde_json::json!({}));
        let s = Arc::clone(&stop);
        let server = std::thread::spawn(move || {
            if event {
                serve_event(listener, stats, s, ServerConfig::event())
            } else {
                super::super::super::serve(listener, stats, s)
            }
        });
        let mut c =
            TcpStream::connect_timeout(sim.net(0), addr, Duration::from_secs(10)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(
            b"GET /bytes/400000 HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /info HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).unwrap();
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap().expect("stopped");
        // The pattern body never holds an empty line: the last one ends /info's head.
        let body = out
            .windows(4)
            .rposition(|w| w == b"\r\n\r\n")
            .map(|i| &out[i + 4..])
            .expect("a response");
        serde_json::from_slice(body).expect("JSON")
    }

    #[test]
    fn info_reports_the_stats_helper_in_both_servers() {
        for event in [true, false] {
            let info = info_after_download(event);
            let st = &info["helpers"]["stats"];
            let samples = st["samples"].as_u64().unwrap_or(0);
            assert!(samples > 10, "event {event}: {info}");
            assert_eq!(st["rtt_us"]["count"].as_u64(), Some(samples), "{info}");
            let buckets = st["delivery_rate_bytes_per_sec"]["buckets"]
                .as_array()
                .unwrap();
            let counted: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
            assert_eq!(
                Some(counted),
                st["delivery_rate_bytes_per_sec"]["count"].as_u64()
            );
            assert!(counted > 0);
        }
    }
}
