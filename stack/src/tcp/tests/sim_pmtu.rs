//! Path MTU discovery over the simulated link: a router in the middle with a smaller
//! MTU drops our DF datagrams and says so with ICMP "fragmentation needed" (RFC 1191);
//! the sender lowers its MSS and resends. Forged errors (a sequence number not in
//! flight, RFC 5927) change nothing, and none lowers the MSS below the floor.

use std::time::Duration;

use super::sim_transfer::{pattern, transfer};
use crate::sim::{frag_needed, LinkConfig, Sim};

/// The TCP payload length and sequence number of a data frame host 0 sent.
fn data_segment(frame: &[u8]) -> Option<(usize, u32)> {
    if frame.len() < 54 || frame[12..14] != [0x08, 0x00] || frame[23] != 6 {
        return None;
    }
    let total = u16::from_be_bytes([frame[16], frame[17]]) as usize;
    let doff = (frame[46] >> 4) as usize * 4;
    let len = total - 20 - doff;
    let seq = u32::from_be_bytes([frame[38], frame[39], frame[40], frame[41]]);
    (len > 0).then_some((len, seq))
}

/// Host 0's data frames in the tap, in order.
fn sent_data(sim: &Sim) -> Vec<Vec<u8>> {
    let tap = sim.tap.as_ref().expect("tap");
    tap.iter()
        .filter(|(h, f)| *h == 0 && data_segment(f).is_some())
        .map(|(_, f)| f.clone())
        .collect()
}

/// The same ICMP error reporting `mtu` instead.
fn reporting(mut icmp: Vec<u8>, mtu: u16) -> Vec<u8> {
    icmp[40..42].copy_from_slice(&mtu.to_be_bytes());
    icmp[36..38].fill(0);
    let sum = crate::checksum::checksum(&icmp[34..]);
    icmp[36..38].copy_from_slice(&sum.to_be_bytes());
    icmp
}

#[test]
fn a_narrower_path_is_discovered_and_the_transfer_completes() {
    let link = LinkConfig {
        mtu: Some(1000),
        ..LinkConfig::default()
    };
    let mut sim = Sim::new(7, link, 2);
    sim.tap = Some(Vec::new());
    let total = 300_000;
    let (got, client, _server) = transfer(&mut sim, total, Duration::from_secs(30));
    assert!(got == pattern(0, total), "the byte stream arrived intact");
    // 1000 - 40 bytes of headers - 12 of timestamps.
    assert_eq!(client.lock().tcb.t_maxseg(), 948);
    assert!(sim.counter(0, "tcp.pmtu_lowered") >= 1);
    assert_eq!(sim.counter(0, "tcp.pmtu_bogus"), 0);
    // Only the first flight was too big: everything from the first resend on fits.
    let data = sent_data(&sim);
    let first_small = data.iter().position(|f| f.len() - 14 <= 1000).unwrap();
    assert!(first_small <= 12, "{first_small} frames too big");
    assert!(data[first_small..].iter().all(|f| f.len() - 14 <= 1000));
    // The transfer was not treated as congestion: no timeout.
    assert_eq!(client.lock().tcb.stats().rtos, 0);
}

#[test]
fn forged_or_useless_errors_change_nothing_and_the_floor_holds() {
    let mut sim = Sim::new(8, LinkConfig::default(), 1);
    sim.tap = Some(Vec::new());
    let listener = sim.listen(1, 80, 4);
    let client = sim.connect(0, 80);
    let body = pattern(0, 200_000);
    assert_eq!(sim.send(0, &client, &body), body.len());
    // Until part of the data is acknowledged and more is in flight.
    assert!(sim.run_until(Duration::from_secs(5), |sim| {
        let acked = client.lock().tcb.snd_una();
        let data = sent_data(sim);
        data.len() > 20 && data_segment(data.last().unwrap()).unwrap().1 > acked.0
    }));
    let mss = client.lock().tcb.t_maxseg();
    let data = sent_data(&sim);
    let first = &data[0];
    let last = data.last().unwrap();
    // About a segment acknowledged long ago: not in flight, forged or stale.
    sim.hosts[0].inject_any(frag_needed(first, 600).unwrap());
    // An MTU that would not lower the MSS.
    sim.hosts[0].inject_any(reporting(frag_needed(last, 1000).unwrap(), 1500));
    sim.step();
    assert_eq!(sim.counter(0, "tcp.pmtu_bogus"), 1);
    assert_eq!(sim.counter(0, "tcp.pmtu_lowered"), 0);
    assert_eq!(sim.counter(0, "tcp.icmp_ignored"), 1);
    assert_eq!(client.lock().tcb.t_maxseg(), mss);
    // An absurd MTU about a segment in flight: lowered, but only to the floor (536,
    // less 12 bytes of timestamps).
    sim.hosts[0].inject_any(frag_needed(last, 100).unwrap());
    sim.step();
    assert_eq!(sim.counter(0, "tcp.pmtu_lowered"), 1);
    assert_eq!(client.lock().tcb.t_maxseg(), 524);
    // The rest arrives, in the new size.
    let before = sent_data(&sim).len();
    let server = sim.accept(&listener).expect("accepted");
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    assert!(sim.run_until(Duration::from_secs(30), |sim| {
        loop {
            let n = sim.recv(1, &server, &mut buf);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got.len() == body.len()
    }));
    assert!(got == body);
    let after = sent_data(&sim);
    assert!(after[before..]
        .iter()
        .all(|f| data_segment(f).unwrap().0 <= 524));
}
