//! Network namespaces joined by veth pairs, for the veth integration tests of
//! `xstack-tools`, `cargo xtask demo`, `cargo xtask bench` and `cargo xtask cc-plot`.
//!
//! ```text
//!   netns A (stack)                        netns B (peer, Linux)
//!   vstk  (no kernel address; the stack    vpeer 198.18.0.2/24, tx checksum offload off
//!          owns 198.18.0.1/24)
//! ```
//!
//! [`SecondHop`] adds a third namespace behind B, routed through it: `vfwd` 198.18.1.1/24
//! in B, `vcli` 198.18.1.2/24 in the client namespace, a tbf on `vfwd` unless unshaped.
//!
//! Every namespace is deleted when its guard drops (also on panic), and a namespace of the
//! same name left by an earlier run is deleted before it is created. All addresses are in
//! 198.18.0.0/15 (RFC 2544 benchmarking), inside namespaces made here.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The stack's end of the pair.
pub const STACK_IF: &str = "vstk";
/// The Linux peer's end of the pair.
pub const PEER_IF: &str = "vpeer";
/// Address the stack owns.
pub const STACK_ADDR: &str = "198.18.0.1";
/// [`STACK_ADDR`] with its prefix, as passed to `xstack up --addr`.
pub const STACK_CIDR: &str = "198.18.0.1/24";
/// The Linux peer's address.
pub const PEER_ADDR: &str = "198.18.0.2";
/// [`PEER_ADDR`] with its prefix.
pub const PEER_CIDR: &str = "198.18.0.2/24";
/// The subnet of the pair.
pub const PAIR_NET: &str = "198.18.0.0/24";
/// The router's (peer namespace's) end of the second hop.
pub const ROUTER_IF: &str = "vfwd";
/// The client's end of the second hop.
pub const CLIENT_IF: &str = "vcli";
/// The router's address on the second hop.
pub const ROUTER_ADDR: &str = "198.18.1.1";
/// The client's address on the second hop.
pub const CLIENT_ADDR: &str = "198.18.1.2";
/// The subnet of the second hop.
pub const CLIENT_NET: &str = "198.18.1.0/24";

/// Runs a command to completion, capturing its output (stdin is /dev/null).
pub fn run<I, S>(argv: I) -> io::Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let argv: Vec<OsString> = argv.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let (bin, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", show(&argv))))
}

/// Runs a command; an error (with the command, its status, stdout and stderr) unless it
/// succeeds.
pub fn run_ok<I, S>(argv: I) -> io::Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let argv: Vec<OsString> = argv.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = run(&argv)?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`{}` failed ({}): {}\nstdout:\n{}",
            show(&argv),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout)
        )));
    }
    Ok(out)
}

/// Runs a command, discarding its output; whether it succeeded.
pub fn quiet<I, S>(argv: I) -> bool
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(argv).is_ok_and(|o| o.status.success())
}

fn show(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ip netns exec NS CMD...`.
pub fn ns_argv<I, S>(ns: &str, cmd: I) -> Vec<OsString>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut v: Vec<OsString> = vec!["ip".into(), "netns".into(), "exec".into(), ns.into()];
    v.extend(cmd.into_iter().map(|a| a.as_ref().to_owned()));
    v
}

/// A network namespace of this name exists (`/run/netns/NAME`).
pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Deletes the namespaces named `PREFIX<pid>-...` whose process `<pid>` is gone: what a
/// crashed run left behind.
pub fn remove_stale(prefix: &str) {
    let Ok(out) = run(["ip", "netns", "list"]) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            quiet(["ip", "netns", "del", name]);
        }
    }
}

/// One network namespace with its loopback up; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` (deleting a leftover of the same name first) and brings
    /// its `lo` up.
    pub fn create(name: &str) -> io::Result<Netns> {
        if netns_exists(name) {
            quiet(["ip", "netns", "del", name]);
        }
        run_ok(["ip", "netns", "add", name])?;
        // From here on, drop removes it, even if a step below fails.
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> io::Result<Output> {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend_from_slice(args);
        run_ok(argv)
    }

    /// `ip netns exec NAME CMD...`, as an argv for [`run`], [`Command`] or a spawn helper.
    pub fn argv<I, S>(&self, cmd: I) -> Vec<OsString>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        ns_argv(&self.name, cmd)
    }

    /// Runs `cmd` inside the namespace, capturing its output.
    pub fn exec<I, S>(&self, cmd: I) -> io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(self.argv(cmd))
    }

    /// Runs `cmd` inside the namespace; an error unless it succeeds.
    pub fn exec_ok<I, S>(&self, cmd: I) -> io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_ok(self.argv(cmd))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        quiet(["ip", "netns", "del", &self.name]);
    }
}

/// Two namespaces joined by a veth pair: [`STACK_IF`] in `stack` (no kernel address),
/// [`PEER_IF`] in `peer` with [`PEER_CIDR`] and tx checksum offload off. Both ends up.
/// Drop deletes the stack's namespace, then the peer's.
#[derive(Debug)]
pub struct NsPair {
    /// The stack's namespace.
    pub stack: Netns,
    /// The Linux peer's namespace.
    pub peer: Netns,
}

impl NsPair {
    /// Creates the pair with `queues` rx and tx queues on each end (at least 1).
    pub fn create(stack_ns: &str, peer_ns: &str, queues: u32) -> io::Result<NsPair> {
        let stack = Netns::create(stack_ns)?;
        let peer = Netns::create(peer_ns)?;
        let q = queues.max(1).to_string();
        run_ok([
            "ip",
            "link",
            "add",
            STACK_IF,
            "netns",
            stack.name(),
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            PEER_IF,
            "netns",
            peer.name(),
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
        ])?;
        stack.ip(&["link", "set", STACK_IF, "up"])?;
        peer.ip(&["link", "set", PEER_IF, "up"])?;
        peer.ip(&["addr", "add", PEER_CIDR, "dev", PEER_IF])?;
        // With tx checksum offload, veth hands the peer's frames over with only a partial
        // checksum (docs/ARCHITECTURE.md, AF_XDP on veth).
        peer.exec_ok(["ethtool", "-K", PEER_IF, "tx", "off"])?;
        Ok(NsPair { stack, peer })
    }

    /// Gives the stack side's kernel an address of its own on [`STACK_IF`].
    pub fn add_stack_kernel_addr(&self, cidr: &str) -> io::Result<()> {
        self.stack
            .ip(&["addr", "add", cidr, "dev", STACK_IF])
            .map(drop)
    }

    /// Adds another address to [`PEER_IF`].
    pub fn add_peer_addr(&self, cidr: &str) -> io::Result<()> {
        self.peer
            .ip(&["addr", "add", cidr, "dev", PEER_IF])
            .map(drop)
    }

    /// Sets the MTU of both ends.
    pub fn set_mtu(&self, mtu: u32) -> io::Result<()> {
        let mtu = mtu.to_string();
        self.stack.ip(&["link", "set", STACK_IF, "mtu", &mtu])?;
        self.peer.ip(&["link", "set", PEER_IF, "mtu", &mtu])?;
        Ok(())
    }
}

/// A client namespace behind the peer namespace of an [`NsPair`], which routes between
/// them: [`ROUTER_IF`] ([`ROUTER_ADDR`]/24, forwarding on) in the router namespace,
/// [`CLIENT_IF`] ([`CLIENT_ADDR`]/24, route to [`PAIR_NET`] via the router, tx checksum
/// offload off) in the client's, and with [`SecondHop::create`] a tbf of 100 Mbit/s
/// (burst 32 kB, queue `limit`) on [`ROUTER_IF`]: the bottleneck
/// ([`SecondHop::create_unshaped`] leaves the hop at veth speed). Drop deletes the client
/// namespace (the router's end of the link goes with it).
#[derive(Debug)]
pub struct SecondHop {
    /// The client's namespace.
    pub client: Netns,
}

impl SecondHop {
    /// Creates namespace `client_ns` and the shaped, routed hop from `router_ns` to it.
    pub fn create(router_ns: &str, client_ns: &str, limit: &str) -> io::Result<SecondHop> {
        let hop = SecondHop::create_unshaped(router_ns, client_ns)?;
        run_ok(ns_argv(
            router_ns,
            [
                "tc", "qdisc", "add", "dev", ROUTER_IF, "root", "tbf", "rate", "100mbit", "burst",
                "32kb", "limit", limit,
            ],
        ))?;
        Ok(hop)
    }

    /// Creates namespace `client_ns` and the routed hop from `router_ns` to it, without a
    /// shaper: the router forwards at whatever rate the CPUs allow.
    pub fn create_unshaped(router_ns: &str, client_ns: &str) -> io::Result<SecondHop> {
        let client = Netns::create(client_ns)?;
        let r = |args: &[&str]| run_ok(ns_argv(router_ns, args)).map(drop);
        run_ok([
            "ip", "-n", router_ns, "link", "add", ROUTER_IF, "type", "veth", "peer", "name",
            CLIENT_IF, "netns", client_ns,
        ])?;
        let router_cidr = format!("{ROUTER_ADDR}/24");
        r(&["ip", "addr", "add", &router_cidr, "dev", ROUTER_IF])?;
        r(&["ip", "link", "set", ROUTER_IF, "up"])?;
        r(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        let client_cidr = format!("{CLIENT_ADDR}/24");
        client.ip(&["addr", "add", &client_cidr, "dev", CLIENT_IF])?;
        client.ip(&["link", "set", CLIENT_IF, "up"])?;
        client.ip(&["route", "add", PAIR_NET, "via", ROUTER_ADDR])?;
        // The client's ACKs are forwarded to the stack as they are: with tx checksum
        // offload they would carry only a partial checksum.
        client.exec_ok(["ethtool", "-K", CLIENT_IF, "tx", "off"])?;
        Ok(SecondHop { client })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_argv_prefixes_ip_netns_exec() {
        let v = ns_argv("xst-1", ["ping", "-c", "1"]);
        assert_eq!(v, ["ip", "netns", "exec", "xst-1", "ping", "-c", "1"]);
    }

    #[test]
    fn run_ok_reports_the_failing_command() {
        let err = run_ok(["sh", "-c", "echo oops >&2; exit 3"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("oops"), "{msg}");
        assert!(run(Vec::<&str>::new()).is_err());
        assert!(quiet(["true"]));
        assert!(!quiet(["false"]));
    }
}
