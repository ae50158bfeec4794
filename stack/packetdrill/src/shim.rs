//! One packetdrill interface instance: a [`SimStack`] behind a mutex, the packets it
//! sent waiting for packetdrill, the virtual clock, and how blocking calls wait.
//!
//! Time is virtual and moves only when packetdrill's main thread asks: `usleep`
//! advances it (firing every timer on the way, so a retransmission carries the time
//! its timer fired), `gettimeofday` advances it by 1 µs per call (packetdrill spins
//! on `gettimeofday` for the last microseconds before an event), and `netdev_receive`
//! jumps to the stack's next timer when no packet is waiting (the stack would send
//! nothing before it). A blocking call never moves time: it releases the lock and
//! waits for another thread to change something (a packet injected, time moved, a
//! descriptor closed).
//!
//! Diagnostics on stderr: when `netdev_receive` gives up, the stack's non-zero drop
//! counters; with `$XSTACK_PD_TRACE` set, the addresses of every injected packet.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libc::c_int;
use smoltcp::wire::EthernetAddress;
use xstack::sim::{SimStack, SimStackConfig};
use xstack::NetStack;

use crate::frames::{self, Outbound};
use crate::posix::FdTable;
use crate::sockets::Sock;

/// packetdrill's local IPv4 address when the runner passes `--local_ip=192.168.0.1`
/// (its default is a random address in 192.168.0.0/16; `--so_flags=local=IP` changes
/// ours).
pub const DEFAULT_LOCAL: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);

/// How long `netdev_receive` lets other threads act (real time) before it moves
/// virtual time to the stack's next timer.
const GRACE: Duration = Duration::from_millis(2);
/// The furthest `netdev_receive` jumps to a single timer, and in all, looking for a
/// packet; past it the stack is taken to send nothing more.
const MAX_JUMP: Duration = Duration::from_secs(130);
const MAX_SILENCE: Duration = Duration::from_secs(600);
/// A blocking call gives up (EINTR) when nothing changed for this long (real time):
/// no thread is left to make it progress.
const STALL: Duration = Duration::from_secs(3);

/// The state under the lock.
pub struct Inner {
    pub(crate) sim: SimStack,
    pub(crate) net: NetStack,
    pub(crate) fds: FdTable<Sock>,
    pub(crate) local: Ipv4Addr,
    /// The stack's default send and receive buffer sizes (SO_SNDBUF, SO_RCVBUF).
    pub(crate) bufs: (usize, usize),
    /// IP packets the stack sent, with their virtual send time (µs since the epoch).
    out: VecDeque<(i64, Vec<u8>)>,
    start: Instant,
    epoch_us: i64,
    /// Bumped by every change another thread may be waiting for.
    generation: u64,
    /// Threads in a blocking wait.
    blocked: usize,
    /// Unsupported calls and options, by name.
    pub(crate) unsupported: BTreeMap<String, u64>,
    /// Sysctls the script set that have no translation.
    pub(crate) sysctls: BTreeSet<String>,
    /// The translated `net.inet.tcp.ecn.enable`, for listeners.
    pub(crate) ecn_sysctl: Option<u8>,
    /// The socket table last written for `sockstat` (`None`: `$XSTACK_SOCKSTAT` unset).
    sockstat: Option<String>,
    /// The stack's TCP configuration as the profile set it (what sysctls change).
    pub(crate) profile_tcp: xstack::TcpConfig,
}

/// A packetdrill interface instance (its `userdata`).
pub struct Shim {
    inner: Mutex<Inner>,
    changed: Condvar,
}

/// The defaults a suite was written against (`--so_flags=profile=NAME`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// xstack's own defaults, which follow Linux (upstream packetdrill scripts).
    #[default]
    Linux,
    /// FreeBSD's, which its TCP test suite assumes: its option order and padding
    /// (`tcp_addoptions`), the window scale its 2 MB socket-buffer limit gives (6),
    /// buffers rounded up to a multiple of the MSS (`tcp_mss`), the FIN resent with
    /// every ACK while unacknowledged (`tcp_output`), TIME-WAIT's compact checks
    /// (`tcp_twcheck`), SYN+FIN handled as a SYN (`drop_synfin=0`) and ECN kept on the
    /// first retransmitted SYN (`ecn.maxretries=1`).
    FreeBsd,
}

impl Profile {
    /// The stack settings of this profile, on top of xstack's defaults.
    pub fn apply(self, tcp: &mut xstack::TcpConfig) {
        if self == Profile::FreeBsd {
            tcp.option_layout = xstack::OptionLayout::FreeBsd;
            tcp.window_shift = Some(6);
            tcp.round_buffers_to_mss = true;
            tcp.fin_with_every_ack = true;
            tcp.rfc1337 = true;
            tcp.time_wait_input = xstack::TimeWaitInput::FreeBsd;
            tcp.drop_synfin = false;
            tcp.ecn_syn_retries = 1;
        }
    }
}

/// What `--so_flags` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags {
    /// The stack's address.
    pub local: Ipv4Addr,
    /// Whose defaults.
    pub profile: Profile,
    /// The interface MTU (the script's `--mtu`, which the runner passes on; the
    /// default 1500).
    pub mtu: Option<usize>,
}

/// Parses `--so_flags`: comma-separated `local=IP` and `profile=linux|freebsd`
/// (unknown keys are an error).
pub fn parse_flags(flags: &str) -> Result<Flags, String> {
    let mut f = Flags {
        local: DEFAULT_LOCAL,
        profile: Profile::default(),
        mtu: None,
    };
    for kv in flags.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("local", ip)) => {
                f.local = ip.parse().map_err(|_| format!("bad address in `{kv}`"))?;
            }
            Some(("profile", "linux")) => f.profile = Profile::Linux,
            Some(("profile", "freebsd")) => f.profile = Profile::FreeBsd,
            Some(("mtu", n)) => {
                f.mtu = Some(
                    n.parse()
                        .ok()
                        .filter(|n| (68..=65535).contains(n))
                        .ok_or_else(|| format!("bad MTU in `{kv}`"))?,
                );
            }
            _ => {
                return Err(format!(
                    "unknown flag `{kv}` (known: local=IP, profile=linux|freebsd, mtu=N)"
                ))
            }
        }
    }
    Ok(f)
}

impl Shim {
    /// A stack owning `local` (a /16 routed through the peer, which answers every ARP
    /// request), its clock starting now.
    pub fn new(flags: Flags) -> Shim {
        let (local, start) = (flags.local, Instant::now());
        let mut cfg = SimStackConfig::new(EthernetAddress(frames::STACK_MAC), local, start);
        flags.profile.apply(&mut cfg.tcp);
        if let Some(m) = flags.mtu {
            // xstack takes its MSS from the configuration, not the interface: set it
            // as the MTU gives it (less the IPv4 and TCP headers), as FreeBSD's
            // tcp_mssopt does.
            cfg.mtu = m;
            cfg.tcp.mss = u16::try_from(m.saturating_sub(40)).unwrap_or(u16::MAX);
        }
        if let Some(a) = cfg.addrs.first_mut() {
            a.prefix_len = 16;
        }
        let o = local.octets();
        cfg.gateway = Some(Ipv4Addr::new(o[0], o[1], 255, 254));
        let bufs = (cfg.tcp.sndbuf, cfg.tcp.rcvbuf);
        let profile_tcp = cfg.tcp.clone();
        let sim = SimStack::new(cfg);
        let epoch_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        Shim {
            inner: Mutex::new(Inner {
                net: sim.net(),
                sim,
                fds: FdTable::default(),
                local,
                bufs,
                out: VecDeque::new(),
                start,
                epoch_us,
                generation: 0,
                blocked: 0,
                unsupported: BTreeMap::new(),
                sysctls: BTreeSet::new(),
                ecn_sysctl: None,
                profile_tcp,
                sockstat: std::env::var_os(crate::sockstat::ENV).map(|_| String::new()),
            }),
            changed: Condvar::new(),
        }
    }

    /// The lock (a poisoned lock is still usable: the state stays consistent).
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` under the lock, then lets waiting threads look again.
    pub fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut g = self.lock();
        let r = f(&mut g);
        g.settle();
        g.publish_sockstat();
        g.generation += 1;
        drop(g);
        self.changed.notify_all();
        r
    }

    /// Runs `op` until it does not fail with `EAGAIN`, waiting for changes in between
    /// (or returns the `EAGAIN` at once when `nonblocking` says so). A call that
    /// sees nothing change for [`STALL`] fails with `EINTR`.
    pub fn blocking<T>(
        &self,
        nonblocking: impl Fn(&Inner) -> bool,
        mut op: impl FnMut(&mut Inner) -> Result<T, c_int>,
    ) -> Result<T, c_int> {
        let mut g = self.lock();
        let mut seen = g.generation;
        let mut since = Instant::now();
        loop {
            let r = op(&mut g);
            g.settle();
            match r {
                Err(libc::EAGAIN) if !nonblocking(&g) => {}
                r => {
                    g.publish_sockstat();
                    g.generation += 1;
                    drop(g);
                    self.changed.notify_all();
                    return r;
                }
            }
            if g.generation != seen {
                seen = g.generation;
                since = Instant::now();
            } else if since.elapsed() > STALL {
                eprintln!(
                    "xstack-packetdrill: a blocking call made no progress for {STALL:?}: EINTR"
                );
                return Err(libc::EINTR);
            }
            g.blocked += 1;
            g = self
                .changed
                .wait_timeout(g, Duration::from_millis(20))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            g.blocked -= 1;
        }
    }

    /// Injects an IP packet from packetdrill; `EAFNOSUPPORT` unless IPv4.
    pub fn netdev_send(&self, ip: &[u8]) -> Result<(), c_int> {
        if std::env::var_os("XSTACK_PD_TRACE").is_some() && ip.len() >= 20 {
            eprintln!(
                "xstack-packetdrill: in {:?} -> {:?}",
                &ip[12..16],
                &ip[16..20]
            );
        }
        let frame = frames::wrap_ip(ip).ok_or(libc::EAFNOSUPPORT)?;
        self.with(|g| g.sim.inject_any(frame));
        Ok(())
    }

    /// The next IP packet the stack sends and its time (µs), moving virtual time to
    /// the stack's timers while none is waiting; `None` when no timer is left within
    /// reach (the stack will send nothing).
    pub fn netdev_receive(&self) -> Option<(i64, Vec<u8>)> {
        let mut g = self.lock();
        let mut graced = false;
        let began = g.sim.now();
        loop {
            if let Some(p) = g.out.pop_front() {
                return Some(p);
            }
            if !graced {
                // A syscall thread may be about to send (packetdrill starts blocking
                // calls just before it sniffs for their packets).
                graced = true;
                g = self
                    .changed
                    .wait_timeout(g, GRACE)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            let now = g.sim.now();
            let next = g.sim.next_deadline();
            match next {
                Some(d) if d <= now + MAX_JUMP && d <= began + MAX_SILENCE => {
                    g.advance_to(d.max(now + Duration::from_micros(1)));
                    g.publish_sockstat();
                    g.generation += 1;
                    self.changed.notify_all();
                    // Let a blocked call react to what the timer changed.
                    graced = g.blocked == 0;
                }
                _ => {
                    eprintln!(
                        "xstack-packetdrill: the stack sent nothing within {:?} of virtual time and has no timer left within reach{}",
                        now - began,
                        g.drops()
                    );
                    return None;
                }
            }
        }
    }

    /// Moves virtual time forward by `d`, running every timer on the way. While a
    /// call is blocked in another thread, each timer step gives it [`GRACE`] to see
    /// the step's effect at that virtual time (a connect timing out returns when its
    /// timer fires, not at the end of the sleep).
    pub fn sleep(&self, d: Duration) {
        let mut g = self.lock();
        let t = g.sim.now() + d;
        g.settle();
        while let Some(n) = g.sim.next_deadline().filter(|&n| n <= t && n > g.sim.now()) {
            g.sim.advance_to(n);
            g.settle();
            if g.blocked > 0 {
                g.publish_sockstat();
                g.generation += 1;
                self.changed.notify_all();
                g = self
                    .changed
                    .wait_timeout(g, GRACE)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        drop(g);
        self.with(|g| g.advance_to(t));
    }

    /// The virtual time in µs since the Unix epoch (moving it 1 µs forward).
    pub fn gettimeofday(&self) -> i64 {
        self.with(|g| {
            let t = g.sim.now() + Duration::from_micros(1);
            g.advance_to(t);
            g.now_us()
        })
    }

    /// Counts an unsupported call or option.
    pub fn unsupported(&self, what: &str) {
        self.lock().unsupported(what);
    }

    /// Closes every descriptor; returns the unsupported-call counts and the
    /// untranslated sysctls.
    pub fn shutdown_all(&self) -> (BTreeMap<String, u64>, BTreeSet<String>) {
        self.with(|g| {
            drop(g.fds.drain());
            (
                std::mem::take(&mut g.unsupported),
                std::mem::take(&mut g.sysctls),
            )
        })
    }
}

impl Inner {
    /// Virtual time in µs since the Unix epoch.
    pub fn now_us(&self) -> i64 {
        self.epoch_us + (self.sim.now() - self.start).as_micros() as i64
    }

    /// The virtual clock.
    pub fn now(&self) -> Instant {
        self.sim.now()
    }

    /// The stack's non-zero drop counters, as `; dropped: name=n ...` (empty if none).
    pub fn drops(&self) -> String {
        let names = [
            "tcp.drop_malformed",
            "tcp.drop_bad_checksum",
            "tcp.drop_bad_options",
            "tcp.drop_bad_flags",
            "tcp.drop_listen_overflow",
            "ip.drop_truncated",
            "ip.drop_bad_header",
            "ip.drop_bad_checksum",
            "ip.drop_fragments",
            "ip.drop_not_ours",
            "ip.drop_martian_source",
            "ip.drop_unknown_protocol",
            "ip.drop_no_route",
            "arp.drop_unresolved",
            "tcp.rx_no_connection",
            "tcp.rst_tx",
        ];
        let v: Vec<String> = names
            .iter()
            .map(|n| (n, self.sim.counter(n)))
            .filter(|(_, c)| *c > 0)
            .map(|(n, c)| format!("{n}={c}"))
            .collect();
        if v.is_empty() {
            String::new()
        } else {
            format!("; counters: {}", v.join(" "))
        }
    }

    /// Counts an unsupported call or option.
    /// The first time for each, it is logged at once (packetdrill exits on a failed
    /// script without freeing the instance, so the summary at `free` may never come).
    pub fn unsupported(&mut self, what: impl Into<String>) {
        let what = what.into();
        let n = self.unsupported.entry(what.clone()).or_default();
        if *n == 0 {
            eprintln!("xstack-packetdrill: unsupported call: {what}");
        }
        *n += 1;
    }

    /// Rewrites the `sockstat` table (see [`crate::sockstat`]) if the sockets changed.
    pub fn publish_sockstat(&mut self) {
        use crate::sockstat::{freebsd_state, Entry};
        use std::net::SocketAddr;
        let Some(mut last) = self.sockstat.take() else {
            return;
        };
        let v4 = |a: std::io::Result<SocketAddr>| match a {
            Ok(SocketAddr::V4(a)) => Some(a),
            _ => None,
        };
        let mut entries = Vec::new();
        let mut streams = BTreeMap::new();
        for (fd, s) in self.fds.iter() {
            match s {
                Sock::Listener(l, _) => {
                    if let Some(local) = v4(l.local_addr()) {
                        entries.push(Entry {
                            fd: Some(fd),
                            local,
                            remote: None,
                            state: "LISTEN",
                        });
                    }
                }
                Sock::Stream(t, _) => {
                    if let (Some(l), Some(r)) = (v4(t.local_addr()), v4(t.peer_addr())) {
                        streams.insert((l, r), fd);
                    }
                }
                Sock::Fresh(_) | Sock::Epoll(..) => {}
            }
        }
        let mut held = BTreeSet::new();
        for (local, remote, state, orphaned) in self.sim.connections() {
            let fd = streams.get(&(local, remote)).copied().filter(|_| !orphaned);
            if fd.is_some() {
                held.insert((local, remote));
            }
            entries.push(Entry {
                fd,
                local,
                remote: Some(remote),
                state: freebsd_state(state),
            });
        }
        // A descriptor whose connection is gone: FreeBSD keeps the socket, CLOSED.
        for ((local, remote), fd) in streams {
            if !held.contains(&(local, remote)) {
                entries.push(Entry {
                    fd: Some(fd),
                    local,
                    remote: Some(remote),
                    state: "CLOSED",
                });
            }
        }
        crate::sockstat::publish(
            crate::sockstat::render(&entries, std::process::id()),
            &mut last,
        );
        self.sockstat = Some(last);
    }

    /// Runs what is due now and moves what the stack sent: IP packets to the queue
    /// for packetdrill, ARP requests answered (and the answer run).
    pub fn settle(&mut self) {
        loop {
            self.sim.run_now();
            let mut answered = false;
            let t = self.now_us();
            for f in self.sim.take_sent() {
                match frames::classify(&f) {
                    Outbound::Ip(p) => self.out.push_back((t, p)),
                    Outbound::ArpReply(r) => {
                        self.sim.inject_any(r);
                        answered = true;
                    }
                    Outbound::Ignored => {}
                }
            }
            if !answered {
                return;
            }
        }
    }

    /// Moves the clock to `t`, stopping at every timer on the way so what each sends
    /// carries its own time.
    pub fn advance_to(&mut self, t: Instant) {
        self.settle();
        while let Some(d) = self.sim.next_deadline() {
            if d > t || d <= self.sim.now() {
                break;
            }
            self.sim.advance_to(d);
            self.settle();
        }
        if t > self.sim.now() {
            self.sim.advance_to(t);
        }
        self.settle();
    }
}
