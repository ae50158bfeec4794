//! Pacing over the simulated link: a module that sets a pacing rate gets its data spread
//! at that rate (in bursts of about 1 ms); a module that sets none sends as before, as
//! fast as the window allows.

use std::time::{Duration, Instant};

use xstack_cc::{AckInfo, CcSignal, CcVars, CongInfo, CongestionControl};

use crate::sim::{LinkConfig, Sim};
use crate::tcp::TcpConfig;

/// A window so large it never limits, and a fixed pacing rate (or none).
#[derive(Debug)]
struct Paced(Option<u64>);

impl CongestionControl for Paced {
    fn name(&self) -> &'static str {
        "paced"
    }
    fn conn_init(&mut self, v: &mut CcVars) {
        v.cwnd = 64 << 20;
    }
    fn ack_received(&mut self, _: &mut CcVars, _: CcSignal, _: &AckInfo) {}
    fn cong_signal(&mut self, _: &mut CcVars, _: CcSignal, _: &CongInfo) {}
    fn pacing_rate(&self) -> Option<u64> {
        self.0
    }
}

/// Payload length of host 0's TCP frame, if it is one with data.
fn payload_of(f: &[u8]) -> Option<usize> {
    let ip = f.get(14..)?;
    if f.get(12..14)? != [0x08, 0x00] || *ip.get(9)? != 6 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let doff = usize::from(ip.get(ihl + 12)? >> 4) * 4;
    total.checked_sub(ihl + doff).filter(|&n| n > 0)
}

/// Sends `total` bytes from host 0 with `rate`; returns `(time, payload bytes)` of each
/// data frame host 0 sent.
fn departures(rate: Option<u64>, total: usize) -> Vec<(Instant, usize)> {
    let link = LinkConfig {
        delay: Duration::from_millis(5),
        ..Default::default()
    };
    let cfg = TcpConfig {
        sndbuf: 4 << 20,
        tso_max: 64 << 10,
        ..TcpConfig::default()
    };
    let mut sim = Sim::with_config(3, link, 1, cfg);
    sim.tap = Some(Vec::new());
    let listener = sim.listen(1, 80, 4);
    let client = sim.connect(0, 80);
    client.lock().tcb.set_congestion(Box::new(Paced(rate)));
    let data = vec![5u8; total];
    let (mut sent, mut got) = (0, 0);
    let mut server = None;
    let mut buf = vec![0u8; 1 << 16];
    let mut seen = 0;
    let mut out = Vec::new();
    let done = sim.run_until(Duration::from_secs(30), |sim| {
        server = server.take().or_else(|| sim.accept(&listener));
        if sent < total {
            sent += sim.send(0, &client, &data[sent..]);
        }
        if let Some(s) = &server {
            got += sim.recv(1, s, &mut buf);
        }
        let now = sim.now;
        let tap = sim.tap.as_ref().expect("tap");
        for (host, f) in &tap[seen..] {
            if let Some(n) = payload_of(f).filter(|_| *host == 0) {
                out.push((now, n));
            }
        }
        seen = tap.len();
        got == total
    });
    assert!(done, "transfer incomplete: {got} of {total}");
    out
}

/// The most payload host 0 sent at one instant (the device cuts a TSO burst into MSS
/// frames, all at the same time).
fn largest_burst(d: &[(Instant, usize)]) -> usize {
    d.chunk_by(|a, b| a.0 == b.0)
        .map(|c| c.iter().map(|x| x.1).sum())
        .max()
        .unwrap_or(0)
}

// With a rate, the data leaves at that rate: the span from the first data frame to the
// last is the bytes over the rate, no 10 ms window carries more than 10 ms of data plus
// a burst, and each burst is about 1 ms of data (at least two segments).
#[test]
fn a_pacing_rate_spreads_departures_at_that_rate() {
    let rate = 2_000_000u64;
    let total = 1 << 20;
    let d = departures(Some(rate), total);
    let bytes: usize = d.iter().map(|x| x.1).sum();
    assert!(bytes >= total);
    let span = d.last().unwrap().0 - d[0].0;
    let ideal = Duration::from_secs_f64((bytes - d.last().unwrap().1) as f64 / rate as f64);
    assert!(
        span >= ideal.mul_f64(0.95) && span <= ideal.mul_f64(1.15),
        "span {span:?} vs {ideal:?} at {rate} B/s"
    );
    let burst = largest_burst(&d);
    assert!(burst <= 2 * 1448, "bursts of {burst} bytes");
    let w = Duration::from_millis(10);
    for (i, &(t, _)) in d.iter().enumerate() {
        let in_w: usize = d[i..].iter().take_while(|x| x.0 < t + w).map(|x| x.1).sum();
        let most = rate as f64 * w.as_secs_f64() + 2.0 * burst as f64;
        assert!(in_w as f64 <= most, "{in_w} bytes in 10 ms from {i}");
    }
}

// No rate: output is as before, limited only by the window and the buffer.
#[test]
fn without_a_pacing_rate_nothing_is_held_back() {
    let total = 1 << 20;
    let d = departures(None, total);
    let span = d.last().unwrap().0 - d[0].0;
    assert!(span < Duration::from_millis(100), "span {span:?}");
    let burst = largest_burst(&d);
    assert!(burst > 16 * 1448, "bursts of {burst} bytes: held back");
}
