//! The helpers in the tree (`tcp/helpers/`) on whole connections over the simulated link:
//! ERTT against the link's known delay (a delayed-ACK receiver, a large send, TSO, loss),
//! the ERTT estimate reaching a congestion-control module, and the statistics helper's
//! histograms.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use xstack_cc::{from_fn, AckInfo, CcSignal, CcVars, CongInfo, CongestionControl, Ertt, NewReno};

use super::sim_transfer::transfer;
use crate::helpers::{ErttData, ErttHelper, Log2Histogram, StatsData, StatsHelper};
use crate::sim::{LinkConfig, Sim};
use crate::tcp::pcb::Conn;
use crate::tcp::tcb::State;
use crate::TcpConfig;

/// The simulated path's RTT: 5 ms each way, no serialization, no jitter.
const PATH_RTT: Duration = Duration::from_millis(10);

fn ertt_of(conn: &Arc<Conn>) -> ErttData {
    let inner = conn.lock();
    let d: &ErttData = inner.tcb.helper_data(ErttHelper::NAME).expect("ERTT data");
    ErttData::clone_for_test(d)
}

/// Every measurement is the path's RTT: nothing is lower (a retransmission matched to
/// the wrong send) and nothing is higher (a delayed-ACK wait taken as path delay).
fn assert_path_rtt(e: &Ertt) {
    assert!(e.samples > 50, "{e:?}");
    assert!(e.min_rtt >= PATH_RTT, "{e:?}");
    assert!(e.max_rtt < PATH_RTT + Duration::from_millis(2), "{e:?}");
    assert!(e.srtt >= PATH_RTT && e.srtt < PATH_RTT + Duration::from_millis(2));
}

#[test]
fn ertt_is_the_path_rtt_on_a_large_send_to_a_delayed_ack_receiver() {
    let mut sim = Sim::new(11, LinkConfig::default(), 1);
    sim.hosts[0].net().register_helper(ErttHelper).unwrap();
    let (got, client, _) = transfer(&mut sim, 4 << 20, Duration::from_secs(60));
    assert_eq!(got.len(), 4 << 20);
    let d = ertt_of(&client);
    let e = d.estimate().expect("measured");
    assert_path_rtt(&e);
    // Per segment, not once per RTT: about one measurement per ACK of two segments.
    let segs = (4u64 << 20) / client.lock().tcb.t_maxseg() as u64;
    assert!(
        e.samples > segs / 4,
        "{} samples for {segs} segments",
        e.samples
    );
    assert!(d.receiver_delays_acks());
    assert_eq!(d.excluded(), 0);
}

/// Sends `rounds` bursts of two full segments and a short one, each after the last
/// was acknowledged: the short one's ACK waits for the receiver's delayed-ACK timer
/// (RFC 5681 §4.2: only every second full-sized segment forces one).
fn odd_bursts(sim: &mut Sim, client: &Arc<Conn>, rounds: usize) {
    let mss = client.lock().tcb.t_maxseg() as usize;
    let burst = vec![1u8; 2 * mss + 500];
    for _ in 0..rounds {
        let goal = client.lock().tcb.stats().bytes_acked + burst.len() as u64;
        let mut sent = 0;
        assert!(sim.run_until(Duration::from_secs(5), |sim| {
            if sent < burst.len() {
                sent += sim.send(0, client, &burst[sent..]);
            }
            client.lock().tcb.stats().bytes_acked >= goal
        }));
    }
}

#[test]
fn ertt_sets_aside_acks_held_by_the_delayed_ack_timer() {
    let mut sim = Sim::new(12, LinkConfig::default(), 1);
    sim.hosts[0].net().register_helper(ErttHelper).unwrap();
    let _l = sim.listen(1, 80, 4);
    let client = sim.connect(0, 80);
    assert!(
        sim.run_until(Duration::from_secs(5), |_| client.lock().tcb.state()
            == State::Established)
    );
    odd_bursts(&mut sim, &client, 30);
    let d = ertt_of(&client);
    let e = d.estimate().expect("measured");
    // Each burst: one immediate ACK of two segments (measured: the path RTT) and one
    // delayed ACK of the short segment (set aside: it waited the 40 ms timer).
    assert!(e.samples >= 30, "{e:?}");
    assert!(e.max_rtt < PATH_RTT + Duration::from_millis(2), "{e:?}");
    assert!(e.delayed >= 29, "{e:?}");
    let delack = TcpConfig::default().delack;
    assert!(
        d.last_delayed().expect("a delayed ACK") >= PATH_RTT + delack - Duration::from_millis(1)
    );
}

#[test]
fn ertt_with_tso_bursts() {
    let cfg = TcpConfig {
        tso_max: 64 * 1024,
        ..Default::default()
    };
    let mut sim = Sim::with_config(13, LinkConfig::default(), 1, cfg);
    sim.hosts[0].net().register_helper(ErttHelper).unwrap();
    let (got, client, _) = transfer(&mut sim, 4 << 20, Duration::from_secs(60));
    assert_eq!(got.len(), 4 << 20);
    assert!(sim.counter(0, "tcp.tso_bursts") > 0);
    // Each ACK inside a burst is measured from the burst's send time.
    let e = ertt_of(&client).estimate().expect("measured");
    assert_path_rtt(&e);
}

#[test]
fn ertt_excludes_retransmitted_segments() {
    let link = LinkConfig {
        loss: 0.02,
        ..Default::default()
    };
    let mut sim = Sim::new(14, link, 1);
    sim.hosts[0].net().register_helper(ErttHelper).unwrap();
    let (got, client, _) = transfer(&mut sim, 2 << 20, Duration::from_secs(120));
    assert_eq!(got.len(), 2 << 20);
    assert!(client.lock().tcb.stats().retransmits > 0);
    let d = ertt_of(&client);
    assert!(d.excluded() > 0);
    assert_path_rtt(&d.estimate().expect("measured"));
}

/// A congestion-control module that reads ERTT: NewReno recording what it is given.
#[derive(Debug)]
struct ErttReader {
    inner: NewReno,
    seen: Arc<Mutex<Vec<Ertt>>>,
}

impl CongestionControl for ErttReader {
    fn name(&self) -> &'static str {
        "ertt-reader"
    }

    fn ack_received(&mut self, v: &mut CcVars, sig: CcSignal, ack: &AckInfo) {
        self.inner.ack_received(v, sig, ack);
    }

    fn cong_signal(&mut self, v: &mut CcVars, sig: CcSignal, info: &CongInfo) {
        self.inner.cong_signal(v, sig, info);
    }

    fn ertt_sample(&mut self, _v: &mut CcVars, e: &Ertt) {
        self.seen.lock().unwrap().push(*e);
    }
}

fn reader_sim(seed: u64, seen: &Arc<Mutex<Vec<Ertt>>>) -> Sim {
    let sim = Sim::new(seed, LinkConfig::default(), 1);
    let seen = seen.clone();
    let cc = sim.hosts[0].net();
    cc.congestion_control()
        .register(from_fn("ertt-reader", move || {
            Box::new(ErttReader {
                inner: NewReno::default(),
                seen: seen.clone(),
            })
        }))
        .unwrap();
    cc.congestion_control().set_default("ertt-reader").unwrap();
    sim
}

#[test]
fn a_congestion_control_module_reads_ertt() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut sim = reader_sim(15, &seen);
    sim.hosts[0].net().register_helper(ErttHelper).unwrap();
    let (_, client, _) = transfer(&mut sim, 1 << 20, Duration::from_secs(60));
    let seen = seen.lock().unwrap().clone();
    let e = ertt_of(&client).estimate().expect("measured");
    // Each measurement once, in order, the last one the helper's estimate.
    assert_eq!(seen.len() as u64, e.samples);
    assert!(seen.windows(2).all(|w| w[1].samples == w[0].samples + 1));
    assert_eq!(seen.last(), Some(&e));
    assert!(seen
        .iter()
        .all(|s| s.rtt >= PATH_RTT && s.min_rtt >= PATH_RTT));
}

#[test]
fn without_the_helper_a_module_gets_no_ertt() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut sim = reader_sim(16, &seen);
    let (got, _, _) = transfer(&mut sim, 1 << 20, Duration::from_secs(60));
    assert_eq!(got.len(), 1 << 20);
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn stats_helper_histograms() {
    let mut sim = Sim::new(17, LinkConfig::default(), 1);
    sim.hosts[0].net().register_helper(StatsHelper).unwrap();
    let (_, client, _) = transfer(&mut sim, 2 << 20, Duration::from_secs(60));
    let inner = client.lock();
    let d: &StatsData = inner
        .tcb
        .helper_data(StatsHelper::NAME)
        .expect("stats data");
    assert!(d.samples > 100);
    // Every RTT is the path's 10 ms: one bucket, [8192, 16384) us.
    let bucket = Log2Histogram::bucket_of(10_000);
    assert_eq!(d.rtt_us.count(), d.samples);
    assert_eq!(d.rtt_us.bucket(bucket), d.samples);
    let (lo, hi) = d.rtt_us.range().unwrap();
    // The send log ranks transmissions of one instant a nanosecond apart (rack.rs), so a
    // sample can come out a microsecond short of the path's.
    assert!(lo >= 9_999 && hi < 12_000, "{lo}..{hi}");
    // Delivery rates: one per valid sample; the transfer's own average rate (bytes over
    // its duration) is within the histogram's range.
    assert!(d.delivery_rate.count() > 50);
    let (rmin, rmax) = d.delivery_rate.range().unwrap();
    assert!(rmin > 0 && rmax >= rmin);
    let json = inner.tcb.helper_info();
    assert_eq!(json.len(), 1);
    assert_eq!(json[0].0, "stats");
    assert!(json[0]
        .1
        .starts_with(&format!("{{\"samples\":{},", d.samples)));
    assert!(json[0].1.contains("\"rtt_us\":{\"count\":"));
    assert!(json[0].1.contains("{\"ge\":8192,\"lt\":16384,\"count\":"));
}
