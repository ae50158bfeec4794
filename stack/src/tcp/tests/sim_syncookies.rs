//! A whole connection made from a SYN cookie (`SynCookies::Always`: the listener keeps
//! no state for the SYN) between two stacks: the options the cookie carried in its
//! TSval (window scale, SACK) are in force, and a transfer completes, under loss too.

use std::sync::Arc;
use std::time::Duration;

use super::sim_transfer::{pattern, transfer};
use crate::sim::{LinkConfig, Sim};
use crate::tcp::pcb::{Conn, Listener};
use crate::tcp::{SynCookies, TcpConfig};

fn cookies_only() -> TcpConfig {
    TcpConfig {
        syncookies: SynCookies::Always,
        ..TcpConfig::default()
    }
}

#[test]
fn a_cookie_connection_keeps_window_scale_and_sack_and_transfers() {
    let mut sim = Sim::with_config(3, LinkConfig::default(), 1, cookies_only());
    let total = 4 * 1024 * 1024;
    let (got, client, server) = transfer(&mut sim, total, Duration::from_secs(60));
    assert!(got == pattern(0, total), "bytes differ");
    assert_eq!(sim.counter(1, "tcp.syncookies_sent"), 1);
    assert_eq!(sim.counter(1, "tcp.syncookies_ok"), 1);
    assert_eq!(sim.counter(1, "tcp.syncache_added"), 0);
    let (s, c) = (server.lock().tcb.info(), client.lock().tcb.info());
    assert!(s.timestamps && s.sack, "server: {s:?}");
    assert_eq!(
        s.wscale.map(|w| w.1),
        c.wscale.map(|w| w.0),
        "the client's scale"
    );
    assert!(s.wscale.is_some());
}

#[test]
fn a_cookie_connection_survives_loss() {
    let link = LinkConfig {
        delay: Duration::from_millis(5),
        loss: 0.02,
        ..Default::default()
    };
    let mut sim = Sim::with_config(4, link, 1, cookies_only());
    let total = 2 * 1024 * 1024;
    let (got, _client, _server) = transfer(&mut sim, total, Duration::from_secs(600));
    assert!(got == pattern(0, total), "bytes differ");
    assert!(sim.counter(1, "tcp.syncookies_ok") >= 1);
}

/// A listener on host 1 with an accept queue of one, and two connections from host 0:
/// the first's ACK fills the queue, the second's finds it full, its client established.
fn second_finds_the_queue_full(sim: &mut Sim) -> (Arc<Listener>, Arc<Conn>, Arc<Conn>) {
    let l = sim.listen(1, 80, 1);
    let first = sim.connect(0, 80);
    let second = sim.connect(0, 80);
    assert!(sim.run_until(Duration::from_millis(100), |s| s
        .counter(1, "tcp.drop_listen_overflow")
        >= 1));
    assert_eq!(second.lock().tcb.state(), crate::tcp::State::Established);
    (l, first, second)
}

/// A cookie ACK that finds the accept queue full is not lost: the peer thinks it is
/// connected and, being idle, may send nothing more. The cookie becomes a cache entry
/// with the cookie's clock, its SYN,ACK is retransmitted, the peer's answer expands it
/// once the application has made room, and the connection carries data both ways.
#[test]
fn a_cookie_ack_at_a_full_accept_queue_waits_for_room() {
    let mut sim = Sim::with_config(5, LinkConfig::default(), 1, cookies_only());
    // Both SYNs find room and get cookies (as SYNs answered in the XDP program would,
    // whatever the queue holds); the first ACK fills the queue, the second finds it full.
    let (l, first, second) = second_finds_the_queue_full(&mut sim);
    assert_eq!(
        sim.hosts[1].syncache_len(),
        1,
        "the cookie is kept as an entry"
    );
    // The application makes room; the retransmitted SYN,ACK draws the client's ACK.
    let a = sim.accept(&l).expect("first");
    assert!(sim.run_until(Duration::from_secs(10), |s| s.hosts[1].syncache_len() == 0));
    assert!(sim.counter(1, "tcp.syncache_retransmitted") >= 1);
    let b = sim
        .accept(&l)
        .expect("the second connection, accepted after all");
    // Both ways, with the timestamps the cookie's clock started (no PAWS drop).
    sim.send(0, &second, b"ping");
    sim.send(1, &b, b"pong");
    let mut buf = [0u8; 8];
    assert!(sim.run_until(Duration::from_secs(5), |s| {
        let n = s.recv(1, &b, &mut buf);
        n == 4
    }));
    assert_eq!(&buf[..4], b"ping");
    assert!(sim.run_until(Duration::from_secs(5), |s| {
        let n = s.recv(0, &second, &mut buf);
        n == 4
    }));
    assert_eq!(&buf[..4], b"pong");
    drop((a, first));
}

/// A peer whose handshake is complete but whose ACK found the accept queue full waits
/// for room well past `synack_retries` (three resends, 15 s, for a SYN,ACK nobody
/// answered): its SYN,ACK is resent once per initial RTO, and the connection it gets in
/// the end starts with an unbacked-off RTO and no RTT sample from the wait.
#[test]
fn a_completed_handshake_waits_for_room_past_the_synack_retries() {
    for config in [cookies_only(), TcpConfig::default()] {
        let mut sim = Sim::with_config(6, LinkConfig::default(), 1, config);
        let (l, first, _second) = second_finds_the_queue_full(&mut sim);
        // 20 s with the queue full: past 1 + 2 + 4 + 8 s of doubled resends.
        sim.run_until(Duration::from_secs(20), |_| false);
        assert_eq!(sim.hosts[1].syncache_len(), 1, "still waiting for room");
        assert_eq!(sim.counter(1, "tcp.syncache_expired"), 0);
        let resent = sim.counter(1, "tcp.syncache_retransmitted");
        assert!(
            (15..=21).contains(&resent),
            "one resend per second of waiting, got {resent}"
        );
        let a = sim.accept(&l).expect("first");
        assert!(sim.run_until(Duration::from_secs(3), |s| s.hosts[1].syncache_len() == 0));
        let b = sim
            .accept(&l)
            .expect("the second connection, after the wait");
        let info = b.lock().tcb.info();
        assert!(
            info.rto_us <= 1_000_000,
            "the RTO is not backed off by the wait: {info:?}"
        );
        assert!(
            info.srtt_us < 1_000_000,
            "no RTT sample from the wait: {info:?}"
        );
        drop((a, first));
    }
}
