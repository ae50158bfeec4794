//! The socket API on two simulated stacks (`crate::sim`): non-blocking connect, accept,
//! read and write driven by the readiness poller, EOF, and the io errors applications
//! see (WouldBlock, BrokenPipe, ConnectionReset, ConnectionRefused, AddrInUse).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::{Event, Interest, NetStack, Poller, TcpListener, TcpStream};
use crate::sim::{host_addr, LinkConfig, Sim};

fn net(sim: &Sim, h: usize) -> NetStack {
    NetStack {
        tcp: sim.hosts[h].tcp.clone(),
        ifp: sim.hosts[h].ifp.clone(),
    }
}

/// Steps the simulation until the poller reports an event for `token`.
fn wait_for(sim: &mut Sim, poller: &Poller, token: usize) -> Event {
    let mut events = Vec::new();
    for _ in 0..10_000 {
        poller
            .wait(&mut events, Some(Duration::ZERO))
            .expect("wait");
        if let Some(e) = events.iter().find(|e| e.token == token) {
            return *e;
        }
        sim.step();
    }
    panic!("no event for token {token}");
}

fn settle(sim: &mut Sim) {
    for _ in 0..200 {
        sim.step();
    }
}

/// A connected pair: (client on host 0, server on host 1, poller with client=2, server=3).
fn pair(sim: &mut Sim) -> (TcpStream, TcpStream, Poller) {
    let listener = TcpListener::bind(
        net(sim, 1),
        SocketAddr::V4(SocketAddrV4::new(host_addr(1), 80)),
    )
    .expect("bind");
    listener.set_nonblocking(true).unwrap();
    let poller = Poller::new();
    poller.register(&listener, 1, Interest::READABLE).unwrap();
    assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
    let client = TcpStream::connect_nonblocking(net(sim, 0), SocketAddrV4::new(host_addr(1), 80))
        .expect("connect");
    poller.register(&client, 2, Interest::WRITABLE).unwrap();
    let ev = wait_for(sim, &poller, 1);
    assert!(ev.readable);
    let (server, peer) = listener.accept().expect("accept");
    assert_eq!(peer, client.local_addr().unwrap());
    server.set_nonblocking(true).unwrap();
    let ev = wait_for(sim, &poller, 2);
    assert!(ev.writable, "connected means writable");
    poller.reregister(2, Interest::READABLE).unwrap();
    poller.register(&server, 3, Interest::READABLE).unwrap();
    (client, server, poller)
}

#[test]
fn poller_drives_connect_accept_read_write_and_eof() {
    let mut sim = Sim::new(7, LinkConfig::default(), 1);
    let (client, mut server, poller) = pair(&mut sim);
    let mut buf = [0u8; 64];
    assert_eq!(
        server.read(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );

    (&client).write_all(b"hello").unwrap();
    let ev = wait_for(&mut sim, &poller, 3);
    assert!(ev.readable && !ev.error);
    assert_eq!(server.read(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");

    // The server closes its side: the client reads EOF.
    server.shutdown(Shutdown::Write).unwrap();
    let ev = wait_for(&mut sim, &poller, 2);
    assert!(ev.readable);
    assert_eq!((&client).read(&mut buf).unwrap(), 0);
    // Writing after our own shutdown is a broken pipe.
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        (&client).write(b"x").unwrap_err().kind(),
        ErrorKind::BrokenPipe
    );
    // The peer closed first (CLOSE-WAIT), so our close goes to LAST-ACK.
    assert_eq!(client.info().state, "LAST_ACK");
}

#[test]
fn reset_surfaces_as_connection_reset() {
    let mut sim = Sim::new(8, LinkConfig::default(), 1);
    let (client, server, poller) = pair(&mut sim);
    (&client).write_all(b"unread").unwrap();
    wait_for(&mut sim, &poller, 3);
    // Dropping a socket with unread data resets the connection (RFC 2525 §2.17).
    drop(server);
    let ev = wait_for(&mut sim, &poller, 2);
    assert!(ev.error, "{ev:?}");
    let mut buf = [0u8; 8];
    assert_eq!(
        (&client).read(&mut buf).unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
    assert_eq!(
        (&client).write(b"x").unwrap_err().kind(),
        ErrorKind::ConnectionReset
    );
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    let mut sim = Sim::new(9, LinkConfig::default(), 1);
    let client = TcpStream::connect_nonblocking(net(&sim, 0), SocketAddrV4::new(host_addr(1), 81))
        .expect("connect");
    let poller = Poller::new();
    poller.register(&client, 5, Interest::WRITABLE).unwrap();
    let ev = wait_for(&mut sim, &poller, 5);
    assert!(ev.error);
    let err = client.take_error().unwrap().expect("an error");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    settle(&mut sim);
    assert!(sim.counter(1, "tcp.rst_tx") >= 1);
}

#[test]
fn binding_twice_is_addr_in_use_and_bad_addresses_are_refused() {
    let sim = Sim::new(10, LinkConfig::default(), 1);
    let any = SocketAddr::V4(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 80));
    let _l = TcpListener::bind(net(&sim, 1), any).unwrap();
    assert_eq!(
        TcpListener::bind(net(&sim, 1), any).unwrap_err().kind(),
        ErrorKind::AddrInUse
    );
    let not_ours = SocketAddr::V4(SocketAddrV4::new(
        std::net::Ipv4Addr::new(198, 18, 9, 9),
        80,
    ));
    assert_eq!(
        TcpListener::bind(net(&sim, 1), not_ours)
            .unwrap_err()
            .kind(),
        ErrorKind::AddrNotAvailable
    );
    let err = TcpStream::connect_nonblocking(net(&sim, 0), SocketAddrV4::new(host_addr(1), 0))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn congestion_control_switches_per_socket_with_clear_errors() {
    let mut sim = Sim::new(11, LinkConfig::default(), 1);
    let (client, server, _poller) = pair(&mut sim);
    assert_eq!(client.congestion(), "newreno");
    let err = client.set_congestion("vegas").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("newreno"), "{err}");
    let cwnd = client.info().cwnd;
    client.set_congestion("newreno").unwrap();
    // TCP_CONGESTION semantics: the new module starts from the current window.
    assert_eq!(client.info().cwnd, cwnd);
    assert_eq!(server.info().state, "ESTABLISHED");
}

/// `TcpInfo::cc_state` (what `GET /info` of the `xstack http` server turns into JSON):
/// CUBIC's state after a transfer reports its RFC 9438 variables as numbers ("-" while
/// undefined), NewReno its congestion-avoidance byte count.
#[test]
fn info_carries_the_module_state() {
    let mut sim = Sim::new(12, LinkConfig::default(), 1);
    let (client, mut server, _poller) = pair(&mut sim);
    server.set_congestion("cubic").unwrap();
    let data = vec![7u8; 200_000];
    let mut sent = 0;
    let mut got = 0;
    let mut buf = vec![0u8; 65536];
    for _ in 0..20_000 {
        if sent < data.len() {
            if let Ok(n) = server.write(&data[sent..]) {
                sent += n;
            }
        }
        if let Ok(n) = (&client).read(&mut buf) {
            got += n;
        }
        if got == data.len() {
            break;
        }
        sim.step();
    }
    assert_eq!(got, data.len());
    let state = |info: &crate::TcpInfo, key: &str| {
        info.cc_state
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key} in {info:?}"))
    };
    let is_number = |t: &str| t.parse::<f64>().is_ok_and(f64::is_finite);
    let v = server.info();
    assert_eq!(v.cc, "cubic");
    assert!(is_number(&state(&v, "w_max")), "{v:?}");
    assert!(is_number(&state(&v, "cwnd_prior")), "{v:?}");
    let k = state(&v, "k_ms");
    assert!(is_number(&k) || k == "-", "{v:?}");
    assert!(!is_number(&state(&v, "region")), "{v:?}");
    let v = client.info();
    assert_eq!(v.cc, "newreno");
    assert!(is_number(&state(&v, "ca_bytes_acked")), "{v:?}");
}

/// Opens one connection from host 0 (with `client_ecn`) to a listener on host 1 whose
/// ECN switch is `listener_ecn` (None: the stack's); returns (client ECN, server ECN).
fn ecn_pair(
    sim: &mut Sim,
    port: u16,
    client_ecn: Option<bool>,
    listener_ecn: Option<bool>,
) -> (bool, bool) {
    let listener = TcpListener::bind(
        net(sim, 1),
        SocketAddr::V4(SocketAddrV4::new(host_addr(1), port)),
    )
    .expect("bind");
    if let Some(on) = listener_ecn {
        listener.set_ecn(on).unwrap();
        assert_eq!(listener.ecn(), on);
    }
    listener.set_nonblocking(true).unwrap();
    let opts = super::ConnectOptions {
        ecn: client_ecn,
        nonblocking: true,
        ..Default::default()
    };
    let client = TcpStream::connect_with(net(sim, 0), SocketAddrV4::new(host_addr(1), port), &opts)
        .expect("connect");
    let mut server = None;
    for _ in 0..10_000 {
        sim.step();
        if let Ok((s, _)) = listener.accept() {
            server = Some(s);
        }
        if server.is_some() && client.info().state == "ESTABLISHED" {
            break;
        }
    }
    let server = server.expect("accepted");
    assert_eq!(client.info().state, "ESTABLISHED");
    assert_eq!(client.info().ecn, client.ecn());
    (client.ecn(), server.ecn())
}

// ECN (RFC 3168) switches: off by default; the stack-wide switch, the listener's and the
// connect option each decide for the connections opened after them; both ends must agree.
#[test]
fn ecn_switches_decide_the_negotiation() {
    let mut sim = Sim::new(11, LinkConfig::default(), 1);
    assert!(!net(&sim, 0).ecn() && !net(&sim, 1).ecn(), "off by default");
    assert_eq!(ecn_pair(&mut sim, 81, None, None), (false, false));
    // The client asks, the server's stack does not answer.
    assert_eq!(ecn_pair(&mut sim, 82, Some(true), None), (false, false));
    // The listener's own switch answers.
    assert_eq!(ecn_pair(&mut sim, 83, Some(true), Some(true)), (true, true));
    // Stack-wide on both hosts, for connections opened from now on.
    net(&sim, 0).set_ecn(true);
    net(&sim, 1).set_ecn(true);
    assert!(net(&sim, 0).ecn());
    assert_eq!(ecn_pair(&mut sim, 84, None, None), (true, true));
    // Per-connection and per-listener switches override the stack's.
    assert_eq!(ecn_pair(&mut sim, 85, Some(false), None), (false, false));
    assert_eq!(ecn_pair(&mut sim, 86, None, Some(false)), (false, false));
}

// RACK-TLP switches: on by default; the stack-wide switch decides for connections opened
// after it, `TcpStream::set_rack` for one connection at any time (TcpInfo::rack says
// whether it is in use: on, and SACK negotiated).
#[test]
fn rack_switches_stack_wide_and_per_socket() {
    let mut sim = Sim::new(12, LinkConfig::default(), 1);
    assert!(net(&sim, 0).rack(), "on by default");
    let connect = |sim: &mut Sim, port: u16| {
        let listener = TcpListener::bind(
            net(sim, 1),
            SocketAddr::V4(SocketAddrV4::new(host_addr(1), port)),
        )
        .expect("bind");
        let client =
            TcpStream::connect_nonblocking(net(sim, 0), SocketAddrV4::new(host_addr(1), port))
                .expect("connect");
        for _ in 0..10_000 {
            sim.step();
            if client.info().state == "ESTABLISHED" {
                break;
            }
        }
        (client, listener)
    };
    let (a, _la) = connect(&mut sim, 81);
    assert!(a.rack().unwrap() && a.info().rack);
    net(&sim, 0).set_rack(false);
    assert!(!net(&sim, 0).rack());
    let (b, _lb) = connect(&mut sim, 82);
    assert!(!b.rack().unwrap() && !b.info().rack);
    assert!(a.info().rack, "an open connection keeps its setting");
    b.set_rack(true).unwrap();
    assert!(b.rack().unwrap() && b.info().rack);
    a.set_rack(false).unwrap();
    assert!(!a.info().rack);
}

/// Opens `n` non-blocking connections from host 0 to host 1's port 80 and steps until
/// `listeners` have accepted them all; returns (listener index, accepted stream) pairs.
fn accept_all(
    sim: &mut Sim,
    listeners: &[&TcpListener],
    n: usize,
) -> (Vec<TcpStream>, Vec<(usize, TcpStream)>) {
    let clients: Vec<TcpStream> = (0..n)
        .map(|_| {
            TcpStream::connect_nonblocking(net(sim, 0), SocketAddrV4::new(host_addr(1), 80))
                .expect("connect")
        })
        .collect();
    let mut accepted = Vec::new();
    for _ in 0..10_000 {
        for (i, l) in listeners.iter().enumerate() {
            while let Ok((s, _)) = l.accept() {
                accepted.push((i, s));
            }
        }
        if accepted.len() == n {
            break;
        }
        sim.step();
    }
    assert_eq!(accepted.len(), n, "not all connections were accepted");
    (clients, accepted)
}

#[test]
fn per_worker_listeners_accept_their_own_workers_connections() {
    let mut sim = Sim::new(12, LinkConfig::default(), 4);
    let any = SocketAddr::V4(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 80));
    let mut set = TcpListener::bind_per_worker(net(&sim, 1), any).expect("bind");
    assert_eq!(set.len(), 4);
    assert_eq!(
        TcpListener::bind(net(&sim, 1), any).unwrap_err().kind(),
        ErrorKind::AddrInUse
    );
    for (w, l) in set.iter().enumerate() {
        assert_eq!(l.worker(), Some(w));
        l.set_nonblocking(true).unwrap();
    }
    let refs: Vec<&TcpListener> = set.iter().collect();
    let (clients, accepted) = accept_all(&mut sim, &refs, 64);
    let mut per_worker = [0usize; 4];
    for (i, s) in &accepted {
        // Accepted by the listener of the worker that owns (processes) the connection.
        assert_eq!(s.conn.owner, *i, "{:?}", s.conn.tuple);
        per_worker[*i] += 1;
    }
    assert!(per_worker.iter().all(|&n| n > 0), "{per_worker:?}");

    // Worker 1's listener closes. Its accepted connections carry on; the other
    // listeners keep accepting, and worker 1's new connections go to worker 2's.
    let kept = accepted
        .iter()
        .position(|(i, _)| *i == 1)
        .expect("worker 1 accepted something");
    drop(set.remove(1));
    let (mut server, client) = (&accepted[kept].1, &clients);
    server.set_nonblocking(true).unwrap();
    let peer = server.peer_addr().unwrap();
    let c = client
        .iter()
        .find(|c| c.local_addr().unwrap() == peer)
        .expect("client of the kept connection");
    (&*c).write_all(b"still here").unwrap();
    let mut buf = [0u8; 16];
    let mut got = 0;
    for _ in 0..1000 {
        if let Ok(n) = server.read(&mut buf[got..]) {
            got += n;
        }
        if got == 10 {
            break;
        }
        sim.step();
    }
    assert_eq!(&buf[..got], b"still here");

    let refs: Vec<&TcpListener> = set.iter().collect(); // workers 0, 2, 3
    let (_clients2, accepted2) = accept_all(&mut sim, &refs, 64);
    let mut moved = 0;
    for (i, s) in &accepted2 {
        let w = [0, 2, 3][*i];
        match s.conn.owner {
            1 => {
                assert_eq!(w, 2, "worker 1's connections go to the next open member");
                moved += 1;
            }
            o => assert_eq!(o, w),
        }
    }
    assert!(moved > 0);
    // The address stays taken until the last member closes.
    assert_eq!(
        TcpListener::bind(net(&sim, 1), any).unwrap_err().kind(),
        ErrorKind::AddrInUse
    );
    drop(set);
    drop(accepted);
    drop(accepted2);
    TcpListener::bind(net(&sim, 1), any).expect("free again");
}

// `max_connections`: `connect` beyond it fails at once with a clear error, and a SYN for
// a listener beyond it is dropped and counted (the client's attempt times out).
#[test]
fn connections_beyond_the_stack_bound_are_refused() {
    let mut sim = Sim::new(12, LinkConfig::default(), 1);
    for h in 0..2 {
        sim.hosts[h].update_tcp_config(|c| c.max_connections = 1);
    }
    let server_addr = SocketAddrV4::new(host_addr(1), 80);
    let listener = TcpListener::bind(net(&sim, 1), server_addr).expect("bind");
    let first = TcpStream::connect_nonblocking(net(&sim, 0), server_addr).expect("connect");
    settle(&mut sim);
    let _accepted = listener.accept().expect("accept");
    let Err(err) = TcpStream::connect_nonblocking(net(&sim, 0), server_addr) else {
        panic!("connect over the bound succeeded");
    };
    assert_eq!(err.kind(), ErrorKind::OutOfMemory);
    assert!(err.to_string().contains("max_connections (1)"), "{err}");
    assert_eq!(sim.counter(0, "tcp.conns_refused_limit"), 1);
    // Host 0 allows one more; host 1 holds its one already: the SYN is dropped.
    sim.hosts[0].update_tcp_config(|c| c.max_connections = 2);
    let second = TcpStream::connect_nonblocking(net(&sim, 0), server_addr).expect("connect");
    settle(&mut sim);
    // Every copy of the SYN (the client retransmits) is dropped.
    assert!(sim.counter(1, "tcp.conns_refused_limit") >= 1);
    // Never answered: still trying, or timed out.
    let state = second.info().state;
    assert!(matches!(state, "SYN_SENT" | "CLOSED"), "{state}");
    drop(first);
}
