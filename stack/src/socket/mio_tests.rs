//! The sockets as `mio::event::Source`s (`readiness.rs`), against two simulated stacks
//! running on a background thread ([`Sim::spawn`]): edge-triggered wakeups under many
//! small reads and writes, accept readiness, non-blocking connect completion, peer close
//! and reset, and no eventfd write while nobody waits.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddrV4};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::{TcpListener, TcpStream};
use crate::sim::{host_addr, LinkConfig, Sim, SimThread};

const LISTENER: Token = Token(0);
const STREAM: Token = Token(1);
/// How long a test waits for one event before failing.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

fn sim(seed: u64) -> SimThread {
    let link = LinkConfig {
        delay: Duration::from_millis(1),
        ..LinkConfig::default()
    };
    Sim::new(seed, link, 2).spawn()
}

fn server_addr(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(host_addr(1), port)
}

/// Polls until an event for `token` arrives; false after [`EVENT_TIMEOUT`].
fn wait_event(poll: &mut Poll, events: &mut Events, token: Token) -> bool {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        poll.poll(events, Some(left)).expect("poll");
        if events.iter().any(|e| e.token() == token) {
            return true;
        }
    }
}

/// A listener on host 1 registered under [`LISTENER`], and a connected pair: the client
/// (host 0, blocking) and the accepted server stream (non-blocking, not registered).
fn pair(sim: &SimThread, port: u16, poll: &mut Poll) -> (TcpListener, TcpStream, TcpStream) {
    let mut listener = TcpListener::bind(sim.net(1), server_addr(port)).expect("bind");
    listener.set_nonblocking(true).unwrap();
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap();
    let client =
        TcpStream::connect_timeout(sim.net(0), server_addr(port), EVENT_TIMEOUT).expect("connect");
    let mut events = Events::with_capacity(16);
    let server = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(
                    wait_event(poll, &mut events, LISTENER),
                    "no accept readiness"
                );
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    server.set_nonblocking(true).unwrap();
    (listener, client, server)
}

/// Many small writes from a blocking client, echoed by a mio loop that reads and writes
/// until `WouldBlock` and then waits for the next edge: every byte comes back, so no
/// readiness change between a `WouldBlock` and the wait was lost.
#[test]
fn edge_triggered_echo_loses_no_wakeup() {
    let sim = sim(1);
    let mut poll = Poll::new().unwrap();
    let (_l, client, mut server) = pair(&sim, 7, &mut poll);
    poll.registry()
        .register(&mut server, STREAM, Interest::READABLE | Interest::WRITABLE)
        .unwrap();
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    // A failing server loop must not leave the client threads blocked forever.
    client.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
    client.set_write_timeout(Some(EVENT_TIMEOUT)).unwrap();
    const MESSAGES: usize = 3000;
    let want: Vec<u8> = (0..MESSAGES)
        .flat_map(|i| format!("m{i:05};").into_bytes())
        .collect();
    let writer = {
        let want = want.clone();
        let client = &client;
        move || {
            for chunk in want.chunks(7) {
                (&*client).write_all(chunk).expect("client write");
            }
            client.shutdown(Shutdown::Write).expect("shutdown");
        }
    };
    let echoed = std::thread::scope(|s| {
        s.spawn(writer);
        let reader = s.spawn(|| {
            let mut got = Vec::new();
            (&client).read_to_end(&mut got).expect("client read");
            got
        });
        let mut events = Events::with_capacity(16);
        let mut pending: Vec<u8> = Vec::new();
        let mut eof = false;
        let mut buf = [0u8; 5];
        'serve: loop {
            // Drain both directions to WouldBlock, then wait for the next edge.
            loop {
                let mut progress = false;
                if !eof {
                    match server.read(&mut buf) {
                        Ok(0) => eof = true,
                        Ok(n) => {
                            pending.extend_from_slice(&buf[..n]);
                            progress = true;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => panic!("server read: {e}"),
                    }
                }
                if !pending.is_empty() {
                    match server.write(&pending[..pending.len().min(3)]) {
                        Ok(n) => {
                            pending.drain(..n);
                            progress = true;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => panic!("server write: {e}"),
                    }
                }
                if eof && pending.is_empty() {
                    server.shutdown(Shutdown::Write).unwrap();
                    break 'serve;
                }
                if !progress {
                    break;
                }
            }
            assert!(
                wait_event(&mut poll, &mut events, STREAM),
                "no readiness event within {EVENT_TIMEOUT:?}: a wakeup was lost \
                 (pending {} bytes, eof {eof})",
                pending.len()
            );
        }
        reader.join().expect("reader")
    });
    assert_eq!(echoed.len(), want.len());
    assert!(echoed == want, "echo differs from what was sent");
}

/// A registered stream nobody waits on costs no eventfd write: after the registration's
/// signal, data arriving without a `WouldBlock` in between leaves the fd alone; the next
/// `WouldBlock` arms it again and the next change writes it once.
#[test]
fn no_signal_while_nobody_waits() {
    let sim = sim(2);
    let mut poll = Poll::new().unwrap();
    let (_l, mut client, mut server) = pair(&sim, 8, &mut poll);
    poll.registry()
        .register(&mut server, STREAM, Interest::READABLE)
        .unwrap();
    let fd = server.readiness_fd().unwrap();
    // Connected and writable: the registration signalled at once and disarmed.
    assert!(
        !fd.is_armed(),
        "registration signals an already-ready stream"
    );
    assert!(fd.signals() > 0);
    let base = fd.signals();
    let mut events = Events::with_capacity(16);
    // Take the registration's edges, so the wait below sees only new ones.
    poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
    client.set_nodelay(true).unwrap();
    for i in 0..50u8 {
        client.write_all(&[i]).unwrap();
    }
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while server.info().bytes_received < 50 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.info().bytes_received, 50);
    assert_eq!(fd.signals(), base, "no write while the fd was not armed");
    let mut buf = [0u8; 64];
    assert_eq!(server.read(&mut buf).unwrap(), 50);
    assert_eq!(
        server.read(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    assert!(fd.is_armed(), "WouldBlock arms the fd");
    client.write_all(b"x").unwrap();
    assert!(wait_event(&mut poll, &mut events, STREAM));
    assert_eq!(fd.signals(), base + 1);
    assert_eq!(server.read(&mut buf).unwrap(), 1);
}

/// Accept readiness: an `accept` that found nothing arms the listener, a queued
/// connection makes it readable; a connection queued before registration is reported
/// at registration.
#[test]
fn listener_accept_readiness() {
    let sim = sim(3);
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(16);
    let mut listener = TcpListener::bind(sim.net(1), server_addr(9)).expect("bind");
    listener.set_nonblocking(true).unwrap();
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap();
    assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
    let _c1 = TcpStream::connect_timeout(sim.net(0), server_addr(9), EVENT_TIMEOUT).unwrap();
    assert!(wait_event(&mut poll, &mut events, LISTENER), "accept edge");
    let (s1, peer) = listener.accept().expect("accept after the edge");
    assert_eq!(peer, _c1.local_addr().unwrap());
    drop(s1);

    // Queued while not registered: the new registration reports it.
    poll.registry().deregister(&mut listener).unwrap();
    let _c2 = TcpStream::connect_timeout(sim.net(0), server_addr(9), EVENT_TIMEOUT).unwrap();
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while listener.listener.queue.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut poll2 = Poll::new().unwrap();
    poll2
        .registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap();
    poll2
        .poll(&mut events, Some(Duration::from_secs(1)))
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.token() == LISTENER && e.is_readable()),
        "registration of a listener with a queued connection signals at once"
    );
    listener.accept().expect("the queued connection");
}

/// A non-blocking connect completes under mio: writable, then `finish_connect` is Ok
/// and the address is the peer's; a connect to a closed port reports
/// `ConnectionRefused` through `finish_connect` and `take_error`.
#[test]
fn nonblocking_connect_completes() {
    let sim = sim(4);
    let _listener = TcpListener::bind(sim.net(1), server_addr(10)).expect("bind");
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(16);

    let mut c = TcpStream::connect_nonblocking(sim.net(0), server_addr(10)).unwrap();
    poll.registry()
        .register(&mut c, STREAM, Interest::WRITABLE)
        .unwrap();
    let mut connected = false;
    for _ in 0..100 {
        match c.finish_connect() {
            Ok(()) => {
                connected = true;
                break;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(wait_event(&mut poll, &mut events, STREAM), "connect edge");
            }
            Err(e) => panic!("connect failed: {e}"),
        }
    }
    assert!(connected);
    assert_eq!(c.peer_addr().unwrap(), server_addr(10).into());
    assert!(c.take_error().unwrap().is_none());

    let mut r = TcpStream::connect_nonblocking(sim.net(0), server_addr(11)).unwrap();
    poll.registry()
        .register(&mut r, Token(2), Interest::WRITABLE)
        .unwrap();
    let err = loop {
        match r.finish_connect() {
            Ok(()) => panic!("connected to a closed port"),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(wait_event(&mut poll, &mut events, Token(2)), "refusal edge");
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    assert_eq!(
        r.take_error().unwrap().map(|e| e.kind()),
        Some(ErrorKind::ConnectionRefused)
    );
}

/// The peer's FIN and RST wake a reader that saw `WouldBlock`: EOF, then reset.
#[test]
fn peer_close_and_reset_are_edges() {
    let sim = sim(5);
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(16);
    let (_l, client, mut server) = pair(&sim, 12, &mut poll);
    poll.registry()
        .register(&mut server, STREAM, Interest::READABLE)
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        server.read(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    client.shutdown(Shutdown::Write).unwrap();
    let eof = loop {
        match server.read(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(wait_event(&mut poll, &mut events, STREAM), "FIN edge");
            }
            Err(e) => panic!("read: {e}"),
        }
    };
    assert_eq!(eof, 0, "EOF after the peer's FIN");

    let (_l2, client2, mut server2) = pair(&sim, 13, &mut poll);
    poll.registry()
        .register(&mut server2, Token(3), Interest::READABLE)
        .unwrap();
    assert_eq!(
        server2.read(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    client2.set_linger(Some(Duration::ZERO)).unwrap();
    drop(client2);
    let err = loop {
        match server2.read(&mut buf) {
            Ok(n) => panic!("read {n} after a reset"),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(wait_event(&mut poll, &mut events, Token(3)), "RST edge");
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

/// Many streams behind one [`ReadyQueue`] fd: 16 clients each send messages in small
/// writes and read their echo, served by one mio loop that registers only the queue's fd
/// and the listener; every byte comes back to the right client, so no token was lost.
/// The listener answers through the queue too. A stream on a queue has no fd of its own
/// to hand out.
#[test]
fn ready_queue_serves_many_streams_through_one_fd() {
    use std::os::fd::AsRawFd;

    use mio::unix::SourceFd;

    use super::ReadyQueue;

    const CLIENTS: usize = 16;
    const QUEUE: Token = Token(usize::MAX);
    let sim = sim(9);
    let mut poll = Poll::new().unwrap();
    let queue = ReadyQueue::new().unwrap();
    poll.registry()
        .register(&mut SourceFd(&queue.as_raw_fd()), QUEUE, Interest::READABLE)
        .unwrap();
    let listener = TcpListener::bind(sim.net(1), server_addr(11)).expect("bind");
    listener.set_nonblocking(true).unwrap();
    listener.register_ready_queue(&queue, 0).unwrap();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let net = sim.net(0).clone();
            std::thread::spawn(move || {
                let c = TcpStream::connect_timeout(&net, server_addr(11), EVENT_TIMEOUT)
                    .expect("connect");
                c.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
                c.set_nodelay(true).unwrap();
                let want: Vec<u8> = (0..300)
                    .flat_map(|m| format!("c{i}m{m};").into_bytes())
                    .collect();
                for chunk in want.chunks(11) {
                    (&c).write_all(chunk).expect("client write");
                }
                c.shutdown(Shutdown::Write).unwrap();
                let mut got = Vec::new();
                (&c).read_to_end(&mut got).expect("client read");
                assert!(got == want, "client {i}: echo differs");
            })
        })
        .collect();
    // token - 1 indexes the served streams: (stream, pending echo, eof seen).
    let mut served: Vec<Option<(TcpStream, Vec<u8>, bool)>> = Vec::new();
    let mut finished = 0;
    let mut events = Events::with_capacity(16);
    let mut tokens = Vec::new();
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + 6 * EVENT_TIMEOUT;
    while finished < CLIENTS {
        assert!(
            Instant::now() < deadline,
            "{finished} of {CLIENTS} done: a token was lost"
        );
        poll.poll(&mut events, Some(EVENT_TIMEOUT)).unwrap();
        if !events.iter().any(|e| e.token() == QUEUE) {
            continue;
        }
        queue.drain(&mut tokens);
        for t in tokens.drain(..) {
            if t == 0 {
                loop {
                    match listener.accept() {
                        Ok((s, _)) => {
                            s.set_nonblocking(true).unwrap();
                            served.push(Some((s, Vec::new(), false)));
                            let (s, ..) = served.last().unwrap().as_ref().unwrap();
                            s.register_ready_queue(&queue, served.len()).unwrap();
                            assert_eq!(
                                s.readiness_fd().unwrap_err().kind(),
                                ErrorKind::AlreadyExists,
                                "a stream on a queue has no fd of its own"
                            );
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("accept: {e}"),
                    }
                }
                continue;
            }
            let Some(Some((s, pending, eof))) = served.get_mut(t - 1) else {
                continue;
            };
            if pump_echo(s, pending, eof, &mut buf) {
                s.deregister_ready_queue();
                served[t - 1] = None;
                finished += 1;
            }
        }
    }
    for c in clients {
        c.join().expect("client");
    }
}

/// Echoes what `s` has to read back to it until it would block; `pending` holds what is
/// read and not yet written, `eof` whether the peer finished. True once the peer has
/// finished and everything is echoed.
pub(super) fn pump_echo(
    s: &mut TcpStream,
    pending: &mut Vec<u8>,
    eof: &mut bool,
    buf: &mut [u8],
) -> bool {
    loop {
        let mut progress = false;
        if !*eof {
            match s.read(buf) {
                Ok(0) => *eof = true,
                Ok(n) => {
                    pending.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("server read: {e}"),
            }
        }
        if !pending.is_empty() {
            match s.write(pending) {
                Ok(n) => {
                    pending.drain(..n);
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("server write: {e}"),
            }
        }
        if *eof && pending.is_empty() {
            return true;
        }
        if !progress {
            return false;
        }
    }
}
