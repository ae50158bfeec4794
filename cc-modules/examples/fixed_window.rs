//! A congestion-control module written outside the crate, against its public API only:
//! defined here, registered by name in a [`Registry`] at run time, created by name, made the
//! default, and driven by a connection-like driver (the crate's model transport,
//! [`testing::Harness`]) next to the built-in CUBIC.
//!
//! Run with `cargo run -p xstack-cc --example fixed_window`.

use std::error::Error;
use std::sync::Arc;

use xstack_cc::testing::{Harness, Op};
use xstack_cc::{
    from_fn, window, AckInfo, CcSignal, CcVars, CongInfo, CongestionControl, Recovery, Registry,
};

/// A fixed window of `segments` segments. It still honours the rules the transport relies
/// on: one loss window after an RTO (RFC 5681 §3.1), no growth on an ACK that was not
/// cwnd-limited, ssthresh recorded on a loss, and the transport's fast-recovery inflation
/// taken back when recovery ends. After an RTO it climbs back one segment per ACK.
#[derive(Debug)]
struct FixedWindow {
    segments: u32,
    rtos: u32,
}

impl FixedWindow {
    const NAME: &'static str = "fixed";

    fn target(&self, v: &CcVars) -> u32 {
        self.segments.saturating_mul(v.maxseg)
    }
}

impl CongestionControl for FixedWindow {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn conn_init(&mut self, v: &mut CcVars) {
        // Start at the fixed window, but never above what the connection already has (a
        // switch mid-transfer must not open the window at once).
        window::repair(v);
        v.cwnd = v
            .cwnd
            .min(self.target(v))
            .max(window::loss_window(v.maxseg));
    }

    fn ack_received(&mut self, v: &mut CcVars, sig: CcSignal, ack: &AckInfo) {
        if window::growth_credit(sig, ack, v).is_some() && v.cwnd < self.target(v) {
            v.cwnd = window::grow(v.cwnd, v.maxseg).min(self.target(v));
        }
    }

    fn cong_signal(&mut self, v: &mut CcVars, sig: CcSignal, info: &CongInfo) {
        match sig {
            CcSignal::Rto => {
                self.rtos += 1;
                v.cwnd = window::loss_window(v.maxseg);
            }
            // Losses and ECN marks leave the window fixed, which is the point of this module
            // (and why it belongs in a lab, not on the Internet); ssthresh only records it.
            CcSignal::NDupAck | CcSignal::Ecn if info.recovery == Recovery::Open => {
                v.ssthresh = v.cwnd.max(window::min_ssthresh(v.maxseg));
            }
            _ => {}
        }
    }

    fn post_recovery(&mut self, v: &mut CcVars, _ack: &AckInfo) {
        // Undo the transport's RFC 5681 §3.2 inflation: back to the fixed window.
        v.cwnd = v
            .cwnd
            .min(self.target(v))
            .max(window::loss_window(v.maxseg));
    }

    fn state(&self) -> Vec<(&'static str, String)> {
        vec![
            ("segments", self.segments.to_string()),
            ("rtos", self.rtos.to_string()),
        ]
    }
}

/// One transfer through the model transport with module `name` (`None`: the registry's
/// default): 14 windows sent and acknowledged one MSS per ACK with an RTT sample each, a
/// loss in round 5 and an RTO in round 10. Prints and returns cwnd per round in segments,
/// and cwnd right after the RTO.
fn transfer(
    registry: &Arc<Registry>,
    name: Option<&str>,
) -> Result<(Vec<u32>, u32), Box<dyn Error>> {
    // The connection asks the registry for its module by name, as `set_congestion(name)`
    // does, or for the default, as a new socket does. Resolve the name once (an unknown one
    // is an error here, not in the middle of the transfer).
    let name = match name {
        Some(name) => registry.create(name)?.name(),
        None => registry.default_name(),
    };
    let reg = Arc::clone(registry);
    let make = move || reg.create(name).unwrap_or_else(|_| reg.create_default());
    let mut h = Harness::new(make, CcVars::new(1460));
    let mut trace = Vec::new();
    let mut after_rto = 0;
    for round in 0..14 {
        h.apply(Op::Send { bytes: u32::MAX })?;
        if round == 5 {
            h.apply(Op::FastRetransmit)?;
        }
        if round == 10 {
            h.apply(Op::Rto)?;
            after_rto = h.vars().cwnd / 1460;
        }
        for _ in 0..(h.flight() / 1460).max(1) {
            h.apply(Op::RttSample { micros: 20_000 })?;
            h.apply(Op::Ack { bytes: 1460 })?;
            h.apply(Op::Send { bytes: u32::MAX })?;
        }
        trace.push(h.vars().cwnd / 1460);
    }
    println!("{name:>8}: cwnd/MSS per round {trace:?}, {after_rto} right after the RTO");
    println!("          state {:?}", h.controller().state());
    Ok((trace, after_rto))
}

/// The built-in modules plus ours, registered at run time under "fixed".
fn builtin_registry_with_fixed() -> Result<Registry, Box<dyn Error>> {
    let registry = Registry::with_builtins();
    registry.register(from_fn(FixedWindow::NAME, || {
        Box::new(FixedWindow {
            segments: 20,
            rtos: 0,
        })
    }))?;
    Ok(registry)
}

fn main() -> Result<(), Box<dyn Error>> {
    let registry = Arc::new(builtin_registry_with_fixed()?);
    println!("available: {:?}", registry.available());
    println!("default before: {}", registry.default_name());

    // Created by name, like setsockopt(TCP_CONGESTION, "fixed").
    let cc = registry.create("fixed")?;
    println!("created by name: {} {:?}", cc.name(), cc.state());

    // Made the stack-wide default (`--cc fixed`): new connections get it.
    registry.set_default("fixed")?;
    println!("default now: {}", registry.default_name());
    let default = registry.create_default();
    assert_eq!(default.name(), "fixed");

    // Unknown names are refused with the list of what exists.
    if let Err(e) = registry.create("vegas") {
        println!("create(\"vegas\"): {e}");
    }

    // A connection-like driver: the model transport checks the invariants every module
    // must keep after every event, so a broken module would stop here with an error.
    let (fixed, after_rto) = transfer(&registry, None)?;
    let (cubic, _) = transfer(&registry, Some("cubic"))?;
    assert!(
        fixed.iter().all(|&w| w == 20),
        "the window holds through the loss and is back after the RTO: {fixed:?}"
    );
    assert_eq!(after_rto, 1, "the RTO took it to one segment");
    assert_ne!(fixed, cubic, "different modules, different windows");
    Ok(())
}
