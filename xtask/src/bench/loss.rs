//! The loss row of `cargo xtask bench`: downloads through a routed hop that drops 1% of
//! the TCP packets each way (`--loss-percent`), xstack NewReno / CUBIC / BBR beside
//! Linux Reno / CUBIC / BBR.

use super::{check_interrupt, curl_gbps, line, median, Bg, Env, KERNEL_ADDR, STACK_ADDR};
use crate::sys::must;
use anyhow::{Context, Result};

/// Bytes per transfer in the loss case: 1% loss each way keeps rates far below the
/// loss-free case, and a full `--bytes` transfer would take minutes per round.
const LOSS_BYTES: u64 = 300_000_000;
/// The client namespace behind the bench's peer namespace, for the loss case.
const NS_LOSS_CLIENT: &str = "xsbench-c";
/// The loss case's senders: xstack's module, Linux's counterpart, and the port of the
/// kernel server running it (TCP_CONGESTION on its listener).
const LOSS_SENDERS: [(&str, &str, &str); 3] = [
    ("newreno", "reno", "8081"),
    ("cubic", "cubic", "8082"),
    ("bbr", "bbr", "8083"),
];

/// nftables rules for the loss case, in the router (peer) namespace: on each of its two
/// ingresses, every TCP packet is counted and `percent`% of them, at random, dropped:
/// `vpeer` sees the server's data on its way to the client, `vfwd` the client's ACKs (and
/// requests) on their way back. Only TCP, so ARP and the like are not lost.
fn loss_rules(percent: u8) -> String {
    format!(
        r#"
table netdev xsbench_loss {{
    chain to_client {{
        type filter hook ingress device "vpeer" priority 0; policy accept;
        ip protocol tcp counter
        ip protocol tcp numgen random mod 100 < {percent} counter drop
    }}
    chain to_server {{
        type filter hook ingress device "vfwd" priority 0; policy accept;
        ip protocol tcp counter
        ip protocol tcp numgen random mod 100 < {percent} counter drop
    }}
}}
"#
    )
}

/// Packets the loss rules saw and dropped, per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
struct LossCounters {
    to_client_seen: u64,
    to_client_dropped: u64,
    to_server_seen: u64,
    to_server_dropped: u64,
}

impl LossCounters {
    /// Parses `nft -j list table netdev xsbench_loss`: per chain, the counter of the rule
    /// that drops and the one that does not.
    fn parse(json: &str) -> Result<LossCounters> {
        let v: serde_json::Value = serde_json::from_str(json).context("nft -j output")?;
        let mut c = LossCounters::default();
        let items = v["nftables"].as_array().context("no nftables array")?;
        for rule in items.iter().filter_map(|i| i.get("rule")) {
            let expr = rule["expr"].as_array().context("rule without expr")?;
            let Some(packets) = expr.iter().find_map(|e| e["counter"]["packets"].as_u64()) else {
                continue;
            };
            let drops = expr.iter().any(|e| e.get("drop").is_some());
            match (rule["chain"].as_str(), drops) {
                (Some("to_client"), false) => c.to_client_seen = packets,
                (Some("to_client"), true) => c.to_client_dropped = packets,
                (Some("to_server"), false) => c.to_server_seen = packets,
                (Some("to_server"), true) => c.to_server_dropped = packets,
                _ => {}
            }
        }
        Ok(c)
    }

    /// What the counters went up by since `before`.
    fn since(self, before: LossCounters) -> LossCounters {
        LossCounters {
            to_client_seen: self.to_client_seen.saturating_sub(before.to_client_seen),
            to_client_dropped: self
                .to_client_dropped
                .saturating_sub(before.to_client_dropped),
            to_server_seen: self.to_server_seen.saturating_sub(before.to_server_seen),
            to_server_dropped: self
                .to_server_dropped
                .saturating_sub(before.to_server_dropped),
        }
    }

    fn add(&mut self, d: LossCounters) {
        self.to_client_seen += d.to_client_seen;
        self.to_client_dropped += d.to_client_dropped;
        self.to_server_seen += d.to_server_seen;
        self.to_server_dropped += d.to_server_dropped;
    }

    /// Dropped share of what each direction saw, in percent.
    fn percent(&self) -> (f64, f64) {
        let pct = |d: u64, s: u64| 100.0 * d as f64 / s.max(1) as f64;
        (
            pct(self.to_client_dropped, self.to_client_seen),
            pct(self.to_server_dropped, self.to_server_seen),
        )
    }
}

/// The loss case's client namespace and routed hop, and the stack namespace's kernel
/// route to it; the route goes on drop, the namespace with [`xstack_testnet::SecondHop`].
struct LossHop<'a> {
    stack_ns: &'a str,
    _hop: xstack_testnet::SecondHop,
}

impl Drop for LossHop<'_> {
    fn drop(&mut self) {
        xstack_testnet::quiet([
            "ip",
            "-n",
            self.stack_ns,
            "route",
            "del",
            xstack_testnet::CLIENT_NET,
        ]);
    }
}

/// One loss-case sender's rounds: Gbit/s per round and the loss counters over them
/// (and for xstack, its loss-recovery counters per round).
#[derive(Default)]
struct LossSeries {
    gbps: Vec<f64>,
    counters: LossCounters,
    recovery: Vec<serde_json::Value>,
}

/// The loss-recovery counters of an xstack run's final counters (`stop_json`): what
/// explains a slow round.
fn recovery_counters(stats: &serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for k in [
        "tcp.retransmits",
        "tcp.rack_lost",
        "tcp.rack_reo_timeouts",
        "tcp.tlp_probes",
        "tcp.recovery_probes",
        "tcp.tlp_recoveries",
        "tcp.rtos",
        "tcp.dsacks_rx",
        "tcp.tso_bursts",
        "tcp.tso_offloaded",
    ] {
        out.insert(k.into(), stats["counters"][k].clone());
    }
    serde_json::Value::Object(out)
}

/// The loss case: a download from the stack's side through a routed hop (stack ns ->
/// router = the bench's peer ns -> client ns, no shaper) with 1% of the TCP packets
/// dropped at random on each of the router's two ingresses, so data and ACKs are both
/// lost. curl in the client namespace fetches [`LOSS_BYTES`] from xstack with NewReno,
/// CUBIC and BBR and from the kernel with Reno, CUBIC and BBR, alternating per round;
/// reported as ratios xstack/Linux per pair under `throughput_loss_1pct`.
///
/// Fairness: the drop rules see what crosses the veth, and veth carries a 64 KB TSO packet
/// whole (one drop = ~45 segments lost). So the sending interface has TSO off and GSO on
/// for this case: both senders still hand the kernel 64 KB frames (the kernel's TCP its
/// GSO packets, xstack its TSO frames through the packet socket), and the kernel cuts them
/// into one-segment packets before the veth, as a NIC's TSO would before the wire. Both
/// sides use SACK and timestamps; the kernel's module is set on its server's listening
/// socket.
pub(super) fn loss_case(
    env: &Env,
    report: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let available = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control")
        .unwrap_or_default();
    if !available.split_whitespace().any(|m| m == "bbr") {
        // Loading the module is the only way to get Linux's BBR; harmless if built in.
        let _ = must(&["modprobe", "tcp_bbr"]);
    }
    let hop = LossHop {
        stack_ns: env.a,
        _hop: xstack_testnet::SecondHop::create_unshaped(env.b, NS_LOSS_CLIENT)?,
    };
    must(&[
        "ip",
        "-n",
        env.a,
        "route",
        "add",
        xstack_testnet::CLIENT_NET,
        "via",
        xstack_testnet::PEER_ADDR,
    ])?;
    let dir = crate::demo::target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let rules = dir.join("loss.nft");
    std::fs::write(&rules, loss_rules(env.args.loss_percent))?;
    let rules = rules.to_string_lossy().to_string();
    must(&["ip", "netns", "exec", env.b, "nft", "-f", &rules])?;
    // The module on the server's listening socket (TCP_CONGESTION, inherited by accepted
    // sockets): the namespace's default follows the host's, and root may set any module
    // the kernel has, allowed list or not.
    let mut servers = Vec::new();
    for (_, kcc, port) in LOSS_SENDERS {
        let listen = format!("{KERNEL_ADDR}:{port}");
        servers.push(Bg::spawn(&[
            "ip",
            "netns",
            "exec",
            env.a,
            "taskset",
            "-c",
            &env.cpu,
            &env.bin,
            "kernel-http",
            "--listen",
            &listen,
            "--cc",
            kcc,
        ])?);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    must(&[
        "ip", "netns", "exec", env.a, "ethtool", "-K", "vstk", "gso", "on", "tso", "off",
    ])?;
    let result = loss_rounds(env);
    // Undo even on failure: later cases (and a re-run) expect a loss-free path.
    let _ = must(&[
        "ip", "netns", "exec", env.a, "ethtool", "-K", "vstk", "gso", "on", "tso", "on",
    ]);
    let _ = must(&[
        "ip",
        "netns",
        "exec",
        env.b,
        "nft",
        "delete",
        "table",
        "netdev",
        "xsbench_loss",
    ]);
    drop(servers);
    drop(hop);
    let (xs, k) = result?;
    let pct = env.args.loss_percent;
    println!(
        "throughput stack->client through a router dropping {pct}% of the TCP packets each way \
         ({LOSS_BYTES} bytes):"
    );
    let mut row = serde_json::json!({
        "bytes": LOSS_BYTES,
        "path": "stack ns -> router (bench peer ns, forwarding) -> client ns, no shaper; curl in the client ns",
        "loss_percent": pct,
        "loss": format!("nft netdev ingress on both router interfaces (vpeer: to the client, vfwd: to the server): ip protocol tcp numgen random mod 100 < {pct} drop"),
        "linux": "kernel TCP at 198.18.0.3, module by TCP_CONGESTION on the listener, TSO off and GSO on on vstk: both senders build 64 KB frames and the kernel cuts them into one-segment packets before the veth",
    });
    for (((cc, kcc, _), s), l) in LOSS_SENDERS.iter().zip(&xs).zip(&k) {
        let (sm, km) = (median(s.gbps.clone()), median(l.gbps.clone()));
        line(&format!("  xstack-{cc} vs linux-{kcc} (Gbit/s)"), sm, km);
        for (who, c) in [
            (format!("xstack-{cc}"), s.counters),
            (format!("linux-{kcc}"), l.counters),
        ] {
            let (fwd, rev) = c.percent();
            println!(
                "    {who}: dropped {} of {} to the client ({fwd:.2} %), {} of {} to the server ({rev:.2} %)",
                c.to_client_dropped, c.to_client_seen, c.to_server_dropped, c.to_server_seen
            );
        }
        let o = row.as_object_mut().context("row is an object")?;
        o.insert(format!("xstack_{cc}_gbps"), sm.into());
        o.insert(format!("linux_{kcc}_gbps"), km.into());
        o.insert(format!("ratio_{cc}"), (sm / km).into());
        o.insert(format!("xstack_{cc}_rounds"), serde_json::json!(s.gbps));
        o.insert(format!("linux_{kcc}_rounds"), serde_json::json!(l.gbps));
        o.insert(
            format!("xstack_{cc}_dropped"),
            serde_json::to_value(s.counters)?,
        );
        o.insert(
            format!("xstack_{cc}_recovery_rounds"),
            s.recovery.clone().into(),
        );
        o.insert(
            format!("linux_{kcc}_dropped"),
            serde_json::to_value(l.counters)?,
        );
    }
    // The row keeps its name at the default 1% (the README's figures); other rates get
    // their own.
    report.insert(format!("throughput_loss_{pct}pct"), row);
    Ok(())
}

/// The loss rules' counters now.
fn loss_counters(env: &Env) -> Result<LossCounters> {
    let out = xstack_testnet::run_ok(xstack_testnet::ns_argv(
        env.b,
        ["nft", "-j", "list", "table", "netdev", "xsbench_loss"],
    ))?;
    LossCounters::parse(&String::from_utf8_lossy(&out.stdout))
}

/// The measured rounds of [`loss_case`], per entry of [`LOSS_SENDERS`]: xstack's and
/// Linux's series.
fn loss_rounds(env: &Env) -> Result<(Vec<LossSeries>, Vec<LossSeries>)> {
    let curl = |addr: &str| -> Vec<String> {
        let mut v: Vec<String> = [
            "ip",
            "netns",
            "exec",
            NS_LOSS_CLIENT,
            "taskset",
            "-c",
            &env.peer_cpu,
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download} %{speed_download}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(format!("http://{addr}/bytes/{LOSS_BYTES}"));
        v
    };
    let mut xs: Vec<LossSeries> = LOSS_SENDERS.iter().map(|_| LossSeries::default()).collect();
    let mut k: Vec<LossSeries> = LOSS_SENDERS.iter().map(|_| LossSeries::default()).collect();
    for _ in 0..env.args.rounds {
        for (i, (cc, _, port)) in LOSS_SENDERS.iter().enumerate() {
            check_interrupt()?;
            let running = env.stack(
                "http",
                &[
                    "--port",
                    "80",
                    "--cc",
                    cc,
                    "--gateway",
                    xstack_testnet::PEER_ADDR,
                ],
            )?;
            let before = loss_counters(env)?;
            let r = curl_gbps(&curl(STACK_ADDR), LOSS_BYTES);
            let after = loss_counters(env)?;
            let stats = running.stop_json()?;
            let gbps = r?;
            xs[i].gbps.push(gbps);
            xs[i].counters.add(after.since(before));
            let recovery = recovery_counters(&stats);
            println!("  xstack-{cc}: {gbps:.2} Gbit/s, {recovery}");
            xs[i].recovery.push(recovery);

            check_interrupt()?;
            let idle = env.idle_stack()?;
            let before = loss_counters(env)?;
            let r = curl_gbps(&curl(&format!("{KERNEL_ADDR}:{port}")), LOSS_BYTES);
            let after = loss_counters(env)?;
            idle.stop()?;
            k[i].gbps.push(r?);
            k[i].counters.add(after.since(before));
        }
    }
    Ok((xs, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_counters_come_from_nft_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"table": {"family": "netdev", "name": "xsbench_loss", "handle": 1}},
          {"chain": {"family": "netdev", "table": "xsbench_loss", "name": "to_client"}},
          {"rule": {"family": "netdev", "table": "xsbench_loss", "chain": "to_client", "handle": 3,
            "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "protocol"}}, "right": "tcp"}},
                     {"counter": {"packets": 1000, "bytes": 1500000}}]}},
          {"rule": {"family": "netdev", "table": "xsbench_loss", "chain": "to_client", "handle": 4,
            "expr": [{"match": {"op": "<", "left": {"numgen": {"mode": "random", "mod": 100, "offset": 0}}, "right": 1}},
                     {"counter": {"packets": 11, "bytes": 16000}}, {"drop": null}]}},
          {"rule": {"family": "netdev", "table": "xsbench_loss", "chain": "to_server", "handle": 5,
            "expr": [{"counter": {"packets": 500, "bytes": 33000}}]}},
          {"rule": {"family": "netdev", "table": "xsbench_loss", "chain": "to_server", "handle": 6,
            "expr": [{"counter": {"packets": 4, "bytes": 264}}, {"drop": null}]}}]}"#;
        let c = LossCounters::parse(json).unwrap();
        let want = LossCounters {
            to_client_seen: 1000,
            to_client_dropped: 11,
            to_server_seen: 500,
            to_server_dropped: 4,
        };
        assert_eq!(c, want);
        let d = want.since(LossCounters {
            to_client_seen: 400,
            ..LossCounters::default()
        });
        assert_eq!(d.to_client_seen, 600);
        let (fwd, rev) = want.percent();
        assert!((fwd - 1.1).abs() < 1e-9 && (rev - 0.8).abs() < 1e-9);
        assert!(LossCounters::parse("not json").is_err());
    }
}
