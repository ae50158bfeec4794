
#[test]
fn zz_experiment() {
    use super::sim_transfer::{pattern, transfer};
    for (name, link) in [
        ("1%", LinkConfig { delay: Duration::from_millis(1), loss: 0.01, rate_bps: Some(100_000_000), ..Default::default() }),
        ("3%", LinkConfig { delay: Duration::from_millis(1), loss: 0.03, rate_bps: Some(100_000_000), ..Default::default() }),
        ("reorder", LinkConfig { delay: Duration::from_millis(5), jitter: Duration::from_millis(1), loss: 0.01, duplicate: 0.01, rate_bps: Some(100_000_000), ..Default::default() }),
    ] {
        for (rack, prr) in [(false, false), (false, true), (true, false), (true, true)] {
            let mut sum = (0u64, 0u64, 0u64, 0u64, 0u64, Duration::ZERO);
            for seed in 20..24 {
                let cfg = TcpConfig { rack, prr, ..TcpConfig::default() };
                let mut sim = Sim::with_config(seed, link, 1, cfg);
                let start = sim.now;
                let total = 8 << 20;
                let (got, client, _s) = transfer(&mut sim, total, Duration::from_secs(3600));
                assert!(got == pattern(0, total));
                let t = client.lock();
                let st = t.tcb.stats();
                sum.0 += st.rtos; sum.1 += st.retransmits; sum.2 += st.dsacks; sum.3 += st.tlp_probes; sum.4 += st.rack_lost;
                sum.5 += sim.now.saturating_duration_since(start);
            }
            eprintln!("{name} rack {rack} prr {prr}: rtos {} rexmits {} dsacks {} tlp {} rack_lost {} time {:?}", sum.0, sum.1, sum.2, sum.3, sum.4, sum.5);
        }
    }
}
