//! A whole connection made from a SYN cookie (`SynCookies::Always`: the listener keeps
//! no state for the SYN) between two stacks: the options the cookie carried in its
//! TSval (window scale, SACK) are in force, and a transfer completes, under loss too.

use std::time::Duration;

use super::sim_transfer::{pattern, transfer};
use crate::sim::{LinkConfig, Sim};
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
