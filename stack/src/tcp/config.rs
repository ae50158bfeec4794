//! Per-connection settings and the errors the user calls report.

use std::time::Duration;

use super::rtt::RtoConfig;

/// Keepalive settings (RFC 1122 §4.2.3.6; Linux's tcp_keepalive_* defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between unanswered probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub count: u32,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            idle: Duration::from_secs(7200),
            interval: Duration::from_secs(75),
            count: 9,
        }
    }
}

/// Per-connection settings. Defaults follow Linux where RFCs leave a choice.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// Our MSS: the largest segment payload we accept (the interface MTU - 40).
    pub mss: u16,
    /// Send buffer size in bytes.
    pub sndbuf: usize,
    /// Receive buffer size in bytes (the largest window we advertise).
    pub rcvbuf: usize,
    /// RTO bounds.
    pub rto: RtoConfig,
    /// Delayed ACK timeout (RFC 9293 §3.8.6.3: "MUST be less than 0.5 seconds").
    pub delack: Duration,
    /// Disable Nagle (TCP_NODELAY).
    pub nodelay: bool,
    /// Keepalive, when enabled.
    pub keepalive: Option<Keepalive>,
    /// Record a cwnd trace ([`crate::CwndTrace`]) on every connection from its creation,
    /// keeping at most this many samples each. `None` (the default): no trace unless a
    /// socket asks for one.
    pub cwnd_trace: Option<usize>,
    /// Helper modules (`tcp/hhook.rs`) new connections get data for and run. Empty by
    /// default; [`NetStack::register_helper`](crate::NetStack::register_helper) and
    /// `unregister_helper` change it at run time.
    pub helpers: super::hhook::HelperSet,
    /// TIME-WAIT duration (2*MSL).
    pub time_wait: Duration,
    /// How long a connection nobody holds a handle to may wait in FIN-WAIT-2 for the
    /// peer's FIN (Linux's tcp_fin_timeout): without it a peer that never closes keeps
    /// the connection forever.
    pub orphan_fin_timeout: Duration,
    /// SYN (or SYN,ACK) retransmissions before giving up.
    pub syn_retries: u32,
    /// Limit on the whole connection attempt.
    pub connect_timeout: Duration,
    /// Data retransmissions (of one segment) before the connection is dropped.
    pub max_retransmits: u32,
    /// Offer window scaling (RFC 7323).
    pub window_scaling: bool,
    /// The window scale shift to offer; `None` (the default): the smallest that lets
    /// `rcvbuf` be advertised, as Linux does. FreeBSD derives it from the largest socket
    /// buffer allowed (`kern.ipc.maxsockbuf`: 6 for its 2 MB default).
    pub window_shift: Option<u8>,
    /// RFC 5961 §3.2: a RST inside the window but not exactly at RCV.NXT gets a challenge
    /// ACK (on by default, as in Linux and FreeBSD). Off: any in-window RST resets the
    /// connection, as RFC 793 had it (FreeBSD's `net.inet.tcp.insecure_rst=1`).
    pub challenge_rst: bool,
    /// RFC 5961 §4.2: a SYN on a synchronized connection gets a challenge ACK (on by
    /// default). Off: an in-window SYN resets the connection and is answered with a
    /// RST, as RFC 793 had it (FreeBSD's `net.inet.tcp.insecure_syn=1`).
    pub challenge_syn: bool,
    /// An ICMP hard error (RFC 1122 §4.2.3.9) about the SYN of a connection attempt
    /// ends it with "connection refused" (on by default, as FreeBSD's
    /// `net.inet.tcp.icmp_may_rst=1`); off, ICMP errors never end a connection.
    pub icmp_hard_errors: bool,
    /// Round the send and receive buffers up to a multiple of the connection's MSS once
    /// the handshake fixed it, as FreeBSD's `tcp_mss` does (65,536 becomes 65,700 with
    /// an MSS of 1,460). Off by default, as in Linux.
    pub round_buffers_to_mss: bool,
    /// The order and padding of the TCP options we send (Linux's by default); receivers
    /// accept any, but a packet-level test suite written for another stack compares
    /// the bytes.
    pub option_layout: super::segment::OptionLayout,
    /// Offer timestamps (RFC 7323).
    pub timestamps: bool,
    /// Offer SACK (RFC 2018): SACK blocks and D-SACK (RFC 2883) as a receiver, the
    /// scoreboard and RFC 6675 loss recovery as a sender.
    pub sack: bool,
    /// Limited transmit (RFC 3042; FreeBSD's `net.inet.tcp.rfc3042`): one new segment on
    /// each of the first two duplicate ACKs.
    pub limited_transmit: bool,
    /// Lost-retransmission detection in SACK recovery (Linux's `tcp_mark_lost_retrans`,
    /// the idea RFC 8985 §6 generalises): a retransmission is deemed lost again once the
    /// peer SACKs data first sent after it, and is resent without waiting for the RTO.
    /// The SACK scoreboard (`tcp/sack.rs`) says how. On by default; off gives plain
    /// RFC 6675. Not used while RACK-TLP (`rack`) is, which finds lost retransmissions
    /// by time.
    pub lost_retransmit: bool,
    /// RACK-TLP loss detection (RFC 8985; Linux's `tcp_recovery` RACK bit, on by
    /// default there too): losses are marked by time with a reordering window, and a
    /// lost tail is probed (TLP) instead of waiting for the RTO. Needs SACK; with it on,
    /// RACK replaces the DupThresh trigger and `lost_retransmit`. See `tcp/rack.rs`.
    /// Per connection: `TcpStream::set_rack`.
    pub rack: bool,
    /// With RACK-TLP: a probe, as a tail loss probe, when fast recovery goes silent --
    /// no ACK for a PTO (2*SRTT, at least 1 ms) since the last segment sent or ACK
    /// received, and nothing the window lets out. A deviation from RFC 8985 §7.2, which
    /// arms the PTO only outside recovery (as Linux does): there the covering ACK of the
    /// last retransmission, if it is lost, leaves nothing in flight to produce another,
    /// and only the RTO (200 ms minimum) recovers. The probe (the highest segment sent,
    /// or one new segment) draws an ACK in a round trip; it changes no window, since the
    /// episode already reduced it. On by default.
    pub recovery_probe: bool,
    /// Proportional Rate Reduction (RFC 6937, PRR-SSRB) sets cwnd during SACK fast
    /// recovery (`tcp/prr.rs`); off gives RFC 6675's cwnd = ssthresh.
    pub prr: bool,
    /// Largest TCP payload handed to the device in one segment for it to cut into MSS
    /// pieces (TSO, FreeBSD's `CSUM_TSO` with `tso_segsz`); 0 sends MSS-sized segments.
    /// The stack sets it when the device layer segments (`--no-offload tso` clears it).
    pub tso_max: usize,
    /// Explicit Congestion Notification (RFC 3168): ask for it on active opens and
    /// accept it on passive ones. Off by default, as Linux's `tcp_ecn=2` leaves it off
    /// for connections it starts. Fixed per connection at its SYN: changing it later
    /// affects connections opened afterwards only.
    pub ecn: bool,
    /// While our FIN is unacknowledged (FIN-WAIT-1, CLOSING, LAST-ACK), every ACK we
    /// send carries it again, at the FIN's sequence number, as FreeBSD's `tcp_output`
    /// does. Off by default: a bare ACK at SND.NXT, as Linux and RFC 9293 §3.10.7.4
    /// describe; the FIN is resent by its retransmission timer either way.
    pub fin_with_every_ack: bool,
    /// RFC 1337 ("TIME-WAIT assassination hazards"): a connection in TIME-WAIT ignores
    /// RSTs, as FreeBSD's `tcp_twcheck` does and Linux's `net.ipv4.tcp_rfc1337=1`.
    /// Off by default, as in Linux: an acceptable RST ends TIME-WAIT (RFC 9293).
    pub rfc1337: bool,
    /// How a segment for a connection in TIME-WAIT is answered. `Rfc9293` (the
    /// default): the state machine as for any synchronized state (sequence check,
    /// RFC 5961 challenge ACKs, RFC 793's RST to an in-window SYN when `challenge_syn`
    /// is off). `FreeBsd`: as FreeBSD's compact `tcp_twcheck`, which skips that
    /// machinery: RSTs ignored, segments without ACK (a SYN that does not reopen the
    /// connection included) dropped silently, anything but a duplicate of the last ACK
    /// acknowledged.
    pub time_wait_input: TimeWaitInput,
    /// Drop a segment that carries both SYN and FIN (as Linux does, and FreeBSD with
    /// `net.inet.tcp.drop_synfin=1`). On by default; off, it is handled as a SYN and
    /// the FIN is ignored (FreeBSD's `drop_synfin=0`).
    pub drop_synfin: bool,
    /// How many retransmissions of an ECN-setup SYN keep ECE and CWR before the SYN is
    /// sent without them (FreeBSD's `net.inet.tcp.ecn.maxretries`, 1 there). 0 by
    /// default: a retransmitted SYN drops ECN at once (RFC 3168 §6.1.1.1 leaves the
    /// choice to the implementation).
    pub ecn_syn_retries: u32,
    /// From this SYN retransmission on, a connection attempt stops offering window
    /// scaling, timestamps and SACK (only MSS is left), in case a middlebox drops SYNs
    /// with options (FreeBSD's `net.inet.tcp.rexmit_drop_options=1` does it at the
    /// third). 0, the default: never (as Linux).
    pub syn_drop_options_after: u32,
    /// Send no TCP options at all, not even MSS, and take up none the peer sends
    /// (FreeBSD's per-socket TCP_NOOPT): the send MSS is then RFC 9293's default, 536.
    /// Off by default; set per connection with `ConnectOptions::no_options` or
    /// `TcpListener::set_no_options`.
    pub no_options: bool,
    /// The least MSS an ICMP "fragmentation needed" may lower a connection to (path MTU
    /// discovery, `tcp/pmtu.rs`): a forged error that passes the sequence check can
    /// make segments no smaller than this (FreeBSD's `net.inet.tcp.minmss` guards the
    /// same; 536 is RFC 9293's default MSS).
    pub pmtu_min_mss: u16,
    /// SYN cache entries per worker (`tcp/syncache.rs`): a SYN to a listener is kept
    /// in one until the handshake completes, not in a control block. FreeBSD keeps
    /// 15,360 (512 buckets of 30) for the whole stack.
    pub syncache_limit: usize,
    /// When SYN,ACKs carry SYN cookies instead of a cache entry (RFC 4987 §3.6):
    /// `WhenFull` by default, as FreeBSD and Linux.
    pub syncookies: super::syncache::SynCookies,
    /// SYN,ACK retransmissions before a SYN cache entry is dropped (FreeBSD's 3;
    /// Linux's `tcp_synack_retries` is 5).
    pub synack_retries: u32,
    /// Most SACKed ranges one connection's scoreboard holds (FreeBSD's
    /// `net.inet.tcp.sack.maxholes`): a SACK block that would make one more is ignored,
    /// its bytes treated as not SACKed (`tcp.sack_refused_conn_limit`). Bounds the work
    /// per ACK, which is linear in the ranges, against a receiver that SACKs every other
    /// byte (CVE-2019-11478).
    pub sack_max_holes: usize,
    /// Most SACKed ranges all connections' scoreboards hold together (FreeBSD's
    /// `net.inet.tcp.sack.globalmaxholes`; `tcp.sack_refused_global_limit`).
    pub sack_global_max_holes: usize,
    /// Most out-of-order ranges one connection's receive buffer holds; a segment that
    /// would make one more is dropped (`tcp.drop_ooo_ranges`) and the peer resends it.
    pub max_ooo_ranges: usize,
    /// Most out-of-order bytes one connection's receive buffer holds (never more than
    /// the window anyway); a segment beyond is dropped (`tcp.drop_ooo_bytes`).
    pub max_ooo_bytes: usize,
    /// Most orphaned connections (closed by the application, still sending or waiting
    /// for the peer) in the stack; a connection let go of beyond it is reset at once
    /// (`tcp.orphans_reset_limit`), as Linux's `tcp_max_orphans`.
    pub max_orphans: usize,
    /// Zero-window probes an orphaned connection sends without the window opening
    /// before it is dropped with a RST (Linux's `tcp_orphan_retries`;
    /// `tcp.orphan_persist_dropped`): a peer that never reads would otherwise keep it in
    /// FIN-WAIT-1 forever.
    pub orphan_persist_probes: u32,
    /// Most connections in TIME-WAIT in the stack (Linux's `tcp_max_tw_buckets`); a
    /// connection that would enter it beyond is closed at once
    /// (`tcp.time_wait_refused_limit`).
    pub max_time_wait: usize,
    /// Most connections (any state but LISTEN) in the stack: `connect` fails and SYNs
    /// for listeners are dropped beyond it (`tcp.conns_refused_limit`).
    pub max_connections: usize,
    /// A connection whose send or receive buffer is empty and that neither sent nor
    /// received data for this long gives that buffer's memory back (the buffers grow
    /// again on demand), so an idle connection holds no large buffer; so do an empty
    /// RACK send log and empty SACK lists. Checked on a deadline of its own, never per
    /// segment.
    pub buffer_idle_release: Duration,
    /// Once buffers of this many bytes in all were freed, the stack asks the allocator
    /// to give its free memory back to the system (`malloc_trim` on glibc; at most once
    /// a second, off the workers; `tcp.memory_trims`), so memory a flood of connections
    /// made the stack take returns after they go. `None`: never.
    pub memory_trim_after: Option<usize>,
    /// The stack-wide gauges and counters behind the bounds above (a TCP layer sets its
    /// own; connections share them through their copy of the settings).
    pub bounds: super::bounds::TcpBounds,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            mss: 1460,
            sndbuf: 256 * 1024,
            rcvbuf: 256 * 1024,
            rto: RtoConfig::default(),
            delack: Duration::from_millis(40),
            nodelay: false,
            keepalive: None,
            cwnd_trace: None,
            helpers: Default::default(),
            time_wait: Duration::from_secs(60),
            orphan_fin_timeout: Duration::from_secs(60),
            syn_retries: 6,
            connect_timeout: Duration::from_secs(75),
            max_retransmits: 15,
            window_scaling: true,
            window_shift: None,
            round_buffers_to_mss: false,
            challenge_rst: true,
            icmp_hard_errors: true,
            challenge_syn: true,
            option_layout: super::segment::OptionLayout::Linux,
            timestamps: true,
            sack: true,
            limited_transmit: true,
            lost_retransmit: true,
            rack: true,
            recovery_probe: true,
            prr: true,
            tso_max: 0,
            ecn: false,
            fin_with_every_ack: false,
            rfc1337: false,
            time_wait_input: TimeWaitInput::Rfc9293,
            drop_synfin: true,
            ecn_syn_retries: 0,
            syn_drop_options_after: 0,
            no_options: false,
            pmtu_min_mss: 536,
            syncache_limit: 8192,
            syncookies: super::syncache::SynCookies::WhenFull,
            synack_retries: 3,
            sack_max_holes: 128,
            sack_global_max_holes: 65_536,
            max_ooo_ranges: super::recvbuf::MAX_OOO_RANGES,
            max_ooo_bytes: 1 << 20,
            max_orphans: 65_536,
            orphan_persist_probes: 8,
            max_time_wait: 65_536,
            max_connections: 262_144,
            buffer_idle_release: Duration::from_secs(1),
            memory_trim_after: Some(64 << 20),
            bounds: super::bounds::TcpBounds::default(),
        }
    }
}

/// Why a connection ended abnormally (surfaced to the application as io errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TcpError {
    /// RST in reply to our SYN.
    #[error("connection refused")]
    Refused,
    /// RST on an open connection.
    #[error("connection reset by peer")]
    Reset,
    /// Retransmissions, keepalives or the connect timeout ran out.
    #[error("connection timed out")]
    TimedOut,
    /// The local side aborted.
    #[error("connection aborted")]
    Aborted,
    /// ICMP said the host is unreachable (or the packet's time ran out on the way):
    /// a soft error (RFC 1122 §4.2.3.9), never ending the connection by itself but
    /// given as the reason when it then times out.
    #[error("no route to host")]
    HostUnreachable,
    /// ICMP said the network is unreachable: a soft error, as `HostUnreachable`.
    #[error("network is unreachable")]
    NetUnreachable,
}

/// How TIME-WAIT answers segments ([`TcpConfig::time_wait_input`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimeWaitInput {
    /// RFC 9293 §3.10.7.4 with RFC 5961, as any synchronized state.
    #[default]
    Rfc9293,
    /// FreeBSD's `tcp_twcheck`.
    FreeBsd,
}

/// Misuse of the user calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// Sending after our side was shut down (or the connection closed).
    #[error("broken pipe: the sending side is closed")]
    SendClosed,
    /// Not yet connected.
    #[error("not connected")]
    NotConnected,
    /// The connection failed.
    #[error("{0}")]
    Failed(TcpError),
}
