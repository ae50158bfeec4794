//! Many connections between two 4-worker stacks over the simulated link: every byte
//! arrives, and every segment is processed by its connection's owner (the simulator
//! hands a frame that arrives on another worker's queue to the owner, counting it).

use std::sync::Arc;
use std::time::Duration;

use crate::sim::{LinkConfig, Sim};
use crate::tcp::pcb::Conn;

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i + seed * 7) % 251) as u8).collect()
}

#[test]
fn a_thousand_connections_over_four_workers() {
    const N: usize = 1000;
    const LEN: usize = 8 * 1024;
    let link = LinkConfig {
        delay: Duration::from_millis(1),
        loss: 0.005,
        ..Default::default()
    };
    let mut sim = Sim::new(21, link, 4);
    let listener = sim.listen(1, 80, 2 * N);
    let clients: Vec<Arc<Conn>> = (0..N).map(|_| sim.connect(0, 80)).collect();
    // Active opens are spread over the workers by their ephemeral port choice.
    let mut per_worker = [0usize; 4];
    for c in &clients {
        per_worker[c.owner] += 1;
    }
    assert!(per_worker.iter().all(|&n| n > N / 8), "{per_worker:?}");

    let mut servers: Vec<Arc<Conn>> = Vec::new();
    let mut sent = vec![0usize; N];
    let mut got: std::collections::HashMap<u64, Vec<u8>> = std::collections::HashMap::new();
    let mut buf = vec![0u8; 16 * 1024];
    let ok = sim.run_until(Duration::from_secs(300), |sim| {
        while let Some(s) = sim.accept(&listener) {
            servers.push(s);
        }
        for (i, c) in clients.iter().enumerate() {
            // Close only once established: CLOSE in SYN-SENT deletes the TCB (RFC 9293
            // §3.10.4), queued data and all.
            if sent[i] < LEN && c.lock().tcb.state().is_synchronized() {
                let data = pattern(i, LEN);
                sent[i] += sim.send(0, c, &data[sent[i]..]);
                if sent[i] == LEN {
                    sim.close(0, c);
                }
            }
        }
        for s in &servers {
            loop {
                let n = sim.recv(1, s, &mut buf);
                if n == 0 {
                    break;
                }
                got.entry(s.id).or_default().extend_from_slice(&buf[..n]);
            }
        }
        servers.len() == N
            && servers.iter().all(|s| {
                got.get(&s.id).map(|v| v.len()) == Some(LEN) && s.lock().tcb.fin_received()
            })
    });
    assert!(
        ok,
        "{} of {N} accepted, {} complete",
        servers.len(),
        got.values().filter(|v| v.len() == LEN).count()
    );
    // Match each server connection to its client by the client's port, then compare.
    for s in &servers {
        let port = s.tuple.remote.port();
        let i = clients
            .iter()
            .position(|c| c.tuple.local.port() == port)
            .expect("client");
        assert!(
            got[&s.id] == pattern(i, LEN),
            "connection {i}: bytes differ"
        );
        // The receiving side's owner is where RSS puts its segments.
        assert_eq!(
            s.owner,
            sim.hosts[1].tcp.owner_of(s.tuple.local, s.tuple.remote)
        );
    }
    // ...and every segment of every connection was processed on its owner: netisr's
    // FLOW placement and the pcbgroups agree.
    for h in 0..2 {
        assert_eq!(sim.counter(h, "tcp.rx_misplaced"), 0, "host {h}");
    }
    eprintln!(
        "1000 connections: handoffs host0 {} host1 {}; frames dropped by the link {}",
        sim.hosts[0].handoffs(),
        sim.hosts[1].handoffs(),
        sim.dropped
    );
    assert!(
        sim.hosts[1].handoffs() > 0,
        "the simulated NIC spreads frames its own way, so some must be handed over"
    );
    // Per-group figures add up: every IPv4 packet is counted in exactly one group, on
    // the group's owner; handoffs are a part of them; connections match the table.
    for h in 0..2 {
        let groups = sim.hosts[h].tcp.pcbs.group_stats();
        let packets: u64 = groups.iter().map(|g| g.packets).sum();
        let handed: u64 = groups.iter().map(|g| g.handoffs_in).sum();
        let conns: usize = groups.iter().map(|g| g.connections).sum();
        assert_eq!(packets, sim.counter(h, "ip.rx"), "host {h}");
        assert!(handed > 0 && handed <= sim.hosts[h].handoffs(), "host {h}");
        assert_eq!(conns, sim.hosts[h].tcp.pcbs.len(), "host {h}");
        // Groups are spread over all four workers.
        let busy: std::collections::HashSet<usize> = groups
            .iter()
            .filter(|g| g.packets > 0)
            .map(|g| g.worker)
            .collect();
        assert_eq!(busy.len(), 4, "host {h}: {groups:?}");
    }
}
