//! Whole transfers between two stacks over the simulated link (`crate::sim`), with
//! seeded loss, reordering, duplication and delay: every byte must arrive, in order.

use std::sync::Arc;
use std::time::Duration;

use crate::sim::{LinkConfig, Sim};
use crate::tcp::pcb::{Conn, Listener};
use crate::tcp::tcb::State;

/// The test pattern: byte i is (i % 251).
pub(super) fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 251) as u8).collect()
}

/// One bulk flow from host 0 to host 1 on port 80, driven a step at a time by tests that
/// look at the connection between steps (inside `Sim::run_until`): each step accepts
/// once the handshake is done, sends what the buffer takes, and reads what arrived.
pub(super) struct Flow<'a> {
    listener: Arc<Listener>,
    pub client: Arc<Conn>,
    server: Option<Arc<Conn>>,
    data: &'a [u8],
    sent: usize,
    buf: Vec<u8>,
}

impl<'a> Flow<'a> {
    /// Listens on host 1 and connects from host 0; `data` is what the flow sends.
    pub fn new(sim: &mut Sim, data: &'a [u8]) -> Self {
        let listener = sim.listen(1, 80, 16);
        let client = sim.connect(0, 80);
        Flow {
            listener,
            client,
            server: None,
            data,
            sent: 0,
            buf: vec![0u8; 64 * 1024],
        }
    }

    /// One step; `on_recv` gets every chunk the receiver read.
    pub fn step(&mut self, sim: &mut Sim, mut on_recv: impl FnMut(&[u8])) {
        if self.server.is_none() {
            self.server = sim.accept(&self.listener);
        }
        if self.sent < self.data.len() {
            self.sent += sim.send(0, &self.client, &self.data[self.sent..]);
        }
        if let Some(s) = &self.server {
            loop {
                let n = sim.recv(1, s, &mut self.buf);
                if n == 0 {
                    break;
                }
                on_recv(&self.buf[..n]);
            }
        }
    }
}

/// Sends `total` bytes from host 0 to host 1, both ends closing afterwards; returns
/// (received bytes, sender's connection, receiver's connection).
pub(super) fn transfer(
    sim: &mut Sim,
    total: usize,
    limit: Duration,
) -> (Vec<u8>, Arc<Conn>, Arc<Conn>) {
    let listener = sim.listen(1, 80, 16);
    let client = sim.connect(0, 80);
    let mut server = None;
    let mut sent = 0usize;
    let mut got = Vec::with_capacity(total);
    let mut buf = vec![0u8; 64 * 1024];
    let mut closed = false;
    // The pattern repeats every 251 bytes: any chunk of it is a slice of one buffer
    // (building a fresh 32 KiB chunk on every step dominated the run time in debug builds).
    const CHUNK: usize = 32 * 1024;
    let period = pattern(0, CHUNK + 251);
    let ok = sim.run_until(limit, |sim| {
        if server.is_none() {
            server = sim.accept(&listener);
        }
        while sent < total {
            let at = sent % 251;
            let chunk = &period[at..at + (total - sent).min(CHUNK)];
            let n = sim.send(0, &client, chunk);
            sent += n;
            if n < chunk.len() {
                break;
            }
        }
        if sent == total && !closed {
            sim.close(0, &client);
            closed = true;
        }
        if let Some(s) = &server {
            loop {
                let n = sim.recv(1, s, &mut buf);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            if s.lock().tcb.fin_received() && got.len() == total {
                sim.close(1, s);
                return true;
            }
        }
        false
    });
    if !ok {
        let c = client.lock();
        panic!(
            "transfer did not finish: got {} of {total} bytes; client {:?} ({:?}, {} retransmits) server {:?}",
            got.len(),
            c.tcb,
            c.tcb.error(),
            c.tcb.stats().retransmits,
            server.as_ref().map(|s| format!("{:?}", s.lock().tcb))
        );
    }
    let server = server.expect("accepted");
    (got, client, server)
}

#[test]
fn handshake_transfer_and_close_without_loss() {
    let mut sim = Sim::new(1, LinkConfig::default(), 1);
    let total = 10 * 1024 * 1024;
    let (got, client, server) = transfer(&mut sim, total, Duration::from_secs(60));
    assert!(got == pattern(0, total), "bytes differ");
    // Let the close finish: the active closer ends in TIME-WAIT, the other CLOSED.
    sim.run_until(Duration::from_secs(5), |_| false);
    assert_eq!(client.lock().tcb.state(), State::TimeWait);
    assert_eq!(server.lock().tcb.state(), State::Closed);
    assert_eq!(client.lock().tcb.stats().retransmits, 0);
}

fn lossy(loss: f64, seed: u64) {
    let link = LinkConfig {
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(2),
        loss,
        duplicate: 0.01,
        ..Default::default()
    };
    let mut sim = Sim::new(seed, link, 1);
    let total = 10 * 1024 * 1024;
    let (got, client, _server) = transfer(&mut sim, total, Duration::from_secs(600));
    assert_eq!(got.len(), total);
    assert!(got == pattern(0, total), "bytes differ at {loss} loss");
    let info = client.lock().tcb.info();
    eprintln!(
        "loss {loss}: retransmits {} bytes_retrans {} dropped frames {}",
        info.retransmits, info.bytes_retrans, sim.dropped
    );
}

#[test]
fn transfer_with_1_percent_loss_reordering_and_duplicates() {
    lossy(0.01, 2);
}

#[test]
fn transfer_with_5_percent_loss_reordering_and_duplicates() {
    lossy(0.05, 3);
}
