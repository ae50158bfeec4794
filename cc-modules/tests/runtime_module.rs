//! An application's own module, written outside the crate against the public API only,
//! registered by name at run time, selected, and switched to and from on a live connection.

use std::time::Instant;

use xstack_cc::testing::{Harness, Op};
use xstack_cc::{
    from_fn, switch, window, AckInfo, CcError, CcSignal, CcVars, CongInfo, CongestionControl,
    Recovery, Registry,
};

const MSS: u32 = 1460;

/// A fixed window of `segments` segments: no growth, and only the RFC 5681 §3.1 loss window
/// on an RTO (so it still passes the harness).
#[derive(Debug)]
struct FixedWindow {
    segments: u32,
    timeouts: u32,
}

impl CongestionControl for FixedWindow {
    fn name(&self) -> &'static str {
        "fixed"
    }

    fn conn_init(&mut self, v: &mut CcVars) {
        v.cwnd = v.cwnd.max(v.maxseg);
    }

    fn ack_received(&mut self, v: &mut CcVars, sig: CcSignal, ack: &AckInfo) {
        // Back to the fixed window once the RTO episode is over.
        if sig == CcSignal::Ack && ack.recovery == Recovery::Open && ack.cwnd_limited {
            let target = self.segments * v.maxseg;
            v.cwnd = v.cwnd.max(target.min(v.cwnd.saturating_add(v.maxseg)));
        }
    }

    fn cong_signal(&mut self, v: &mut CcVars, sig: CcSignal, _: &CongInfo) {
        if sig == CcSignal::Rto {
            self.timeouts += 1;
            v.cwnd = window::loss_window(v.maxseg);
        }
    }

    fn state(&self) -> Vec<(&'static str, String)> {
        vec![
            ("segments", self.segments.to_string()),
            ("timeouts", self.timeouts.to_string()),
        ]
    }
}

fn registry_with_fixed() -> Registry {
    let registry = Registry::with_builtins();
    registry
        .register(from_fn("fixed", || {
            Box::new(FixedWindow {
                segments: 4,
                timeouts: 0,
            })
        }))
        .unwrap();
    registry
}

#[test]
fn custom_module_is_registered_listed_and_created_by_name() {
    let registry = registry_with_fixed();
    assert_eq!(
        registry.available(),
        vec!["bbr", "cubic", "cubic-hs", "fixed", "newreno", "newreno-hs"]
    );
    let mut cc = registry.create("fixed").unwrap();
    assert_eq!(cc.name(), "fixed");
    assert_eq!(
        cc.state(),
        vec![("segments", "4".to_string()), ("timeouts", "0".to_string())]
    );
    let mut v = CcVars::new(MSS);
    cc.conn_init(&mut v);
    cc.cong_signal(
        &mut v,
        CcSignal::Rto,
        &CongInfo {
            in_flight: 10 * MSS,
            rto_count: 1,
            ..CongInfo::new(Instant::now())
        },
    );
    assert_eq!(v.cwnd, MSS);
    assert_eq!(cc.state()[1], ("timeouts", "1".to_string()));
    // Each connection gets its own state.
    assert_eq!(
        registry.create("fixed").unwrap().state()[1],
        ("timeouts", "0".to_string())
    );
}

#[test]
fn custom_module_can_become_the_default() {
    let registry = registry_with_fixed();
    registry.set_default("fixed").unwrap();
    assert_eq!(registry.default_name(), "fixed");
    assert_eq!(registry.create_default().name(), "fixed");
    assert_eq!(
        registry.register(from_fn("fixed", || Box::new(FixedWindow {
            segments: 9,
            timeouts: 0
        }))),
        Err(CcError::Duplicate("fixed"))
    );
    let err = registry.set_default("vegas").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown congestion control 'vegas' (available: bbr, cubic, cubic-hs, fixed, newreno, newreno-hs)"
    );
}

// TCP_CONGESTION semantics: the connection keeps cwnd/ssthresh across a switch, both ways.
#[test]
fn switching_a_live_connection_keeps_cwnd_and_ssthresh() {
    let registry = registry_with_fixed();
    let mut v = CcVars {
        cwnd: 50 * MSS,
        ssthresh: 40 * MSS,
        maxseg: MSS,
    };
    let mut cc = registry.create("newreno").unwrap();
    cc.conn_init(&mut v);
    cc = switch(&mut v, registry.create("fixed").unwrap());
    assert_eq!(
        (cc.name(), v),
        (
            "fixed",
            CcVars {
                cwnd: 50 * MSS,
                ssthresh: 40 * MSS,
                maxseg: MSS
            }
        )
    );
    cc = switch(&mut v, registry.create("newreno").unwrap());
    assert_eq!(
        (cc.name(), v),
        (
            "newreno",
            CcVars {
                cwnd: 50 * MSS,
                ssthresh: 40 * MSS,
                maxseg: MSS
            }
        )
    );
    // And NewReno carries on from there: congestion avoidance (cwnd > ssthresh).
    let ack = AckInfo {
        bytes_acked: 50 * MSS,
        acks: 25,
        cwnd_limited: true,
        ..AckInfo::new(Instant::now())
    };
    cc.ack_received(&mut v, CcSignal::Ack, &ack);
    assert_eq!(v.cwnd, 51 * MSS);
}

// The harness works on modules written outside the crate too.
#[test]
fn custom_module_passes_the_harness() {
    let start = CcVars {
        cwnd: 50 * MSS,
        ssthresh: 40 * MSS,
        maxseg: MSS,
    };
    let ops = [
        Op::Send { bytes: u32::MAX },
        Op::Ack { bytes: 10 * MSS },
        Op::Rto,
        Op::Ack { bytes: 40 * MSS },
        Op::Send { bytes: u32::MAX },
        Op::Ack { bytes: MSS },
        Op::Switch,
    ];
    let h = Harness::run(
        || {
            Box::new(FixedWindow {
                segments: 4,
                timeouts: 0,
            })
        },
        start,
        &ops,
    )
    .unwrap();
    assert_eq!(
        h.vars().cwnd,
        2 * MSS,
        "LW, then +1 segment toward the fixed window"
    );
}
