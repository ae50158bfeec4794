//! FreeBSD sysctls a script sets (through the runner's `sysctl` stub, which appends
//! `key=value` lines to the file named by `$XSTACK_SYSCTL_LOG`), translated to what the
//! shim can honour: the socket buffer defaults, ECN, RFC 1323 options, SACK, the
//! initial RTO, keepalive, RFC 5961's checks (`insecure_rst`/`insecure_syn`), ICMP hard
//! errors (`icmp_may_rst`), the window scale (`kern.ipc.maxsockbuf`), SYN+FIN handling
//! (`drop_synfin`), ECN on retransmitted SYNs (`ecn.maxretries`) and the connection
//! timeout (`keepinit`) are translated; a few are no-ops at the one value xstack already behaves
//! as (see [`apply`]); the rest are listed as untranslated (and written beside the log,
//! `LOG.untranslated`, where the runner turns a failed script that set one into a skip).

/// Environment variable naming the file the `sysctl` stub appends to.
pub const LOG_ENV: &str = "XSTACK_SYSCTL_LOG";

/// Per-socket defaults the translated sysctls set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Defaults {
    /// `net.inet.tcp.sendspace`: SO_SNDBUF of new sockets.
    pub sndbuf: Option<usize>,
    /// `net.inet.tcp.recvspace`: SO_RCVBUF of new sockets.
    pub rcvbuf: Option<usize>,
    /// `net.inet.tcp.ecn.enable`: 0 off, 1 on (requested and accepted), 2 accepted
    /// only (listeners turn it on, active opens do not ask).
    pub ecn: Option<u8>,
    /// `net.inet.tcp.rfc1323`: window scaling and timestamps on or off.
    pub rfc1323: Option<bool>,
    /// `net.inet.tcp.sack.enable`.
    pub sack: Option<bool>,
    /// `net.inet.tcp.rexmit_initial` (ms): the RTO before the first RTT sample.
    pub rto_initial_ms: Option<u64>,
    /// `net.inet.tcp.keepidle`, `keepintvl` (ms) and `keepcnt`: the TCP_KEEPIDLE,
    /// TCP_KEEPINTVL and TCP_KEEPCNT of new sockets.
    pub keepidle_ms: Option<u64>,
    pub keepintvl_ms: Option<u64>,
    pub keepcnt: Option<u32>,
    /// `net.inet.tcp.insecure_rst`: 1 turns RFC 5961's RST check off.
    pub insecure_rst: Option<bool>,
    /// `net.inet.tcp.insecure_syn`: 1 turns RFC 5961's SYN check off.
    pub insecure_syn: Option<bool>,
    /// `net.inet.tcp.icmp_may_rst`: whether ICMP hard errors end connection attempts.
    pub icmp_may_rst: Option<bool>,
    /// `kern.ipc.maxsockbuf`: FreeBSD derives the window scale it offers from it.
    pub maxsockbuf: Option<usize>,
    /// `net.inet.tcp.drop_synfin`: whether a SYN+FIN is dropped.
    pub drop_synfin: Option<bool>,
    /// `net.inet.tcp.ecn.maxretries`: SYN retransmissions that keep ECE and CWR.
    pub ecn_maxretries: Option<u32>,
    /// `net.inet.tcp.rexmit_drop_options`: SYNs from the third retransmission on
    /// carry MSS only.
    pub rexmit_drop_options: Option<bool>,
    /// `net.inet.tcp.keepinit` (ms): the connection-establishment timeout.
    pub keepinit_ms: Option<u64>,
}

/// The window scale FreeBSD offers for a socket-buffer limit: the smallest shift that
/// lets `max` bytes be advertised (`tcp_connect`/`syncache_add`), at most 14.
pub fn window_shift_for(max: usize) -> u8 {
    (0..14u8).find(|&s| (65535usize << s) >= max).unwrap_or(14)
}

impl Defaults {
    /// Sets the stack-wide settings these sysctls change (for connections opened
    /// afterwards); `base` is the profile's configuration, for settings not set.
    pub fn apply_to(&self, base: &xstack::TcpConfig, tcp: &mut xstack::TcpConfig) {
        let on = self.rfc1323.unwrap_or(true);
        tcp.window_scaling = on && base.window_scaling;
        tcp.timestamps = on && base.timestamps;
        tcp.sack = self.sack.unwrap_or(true) && base.sack;
        tcp.sndbuf = self.sndbuf.unwrap_or(base.sndbuf);
        tcp.rcvbuf = self.rcvbuf.unwrap_or(base.rcvbuf);
        tcp.rto.initial = self
            .rto_initial_ms
            .map_or(base.rto.initial, std::time::Duration::from_millis);
        tcp.challenge_rst = self.insecure_rst.map_or(base.challenge_rst, |i| !i);
        tcp.challenge_syn = self.insecure_syn.map_or(base.challenge_syn, |i| !i);
        tcp.icmp_hard_errors = self.icmp_may_rst.unwrap_or(base.icmp_hard_errors);
        tcp.window_shift = self
            .maxsockbuf
            .map_or(base.window_shift, |m| Some(window_shift_for(m)));
        tcp.drop_synfin = self.drop_synfin.unwrap_or(base.drop_synfin);
        tcp.syn_drop_options_after = self
            .rexmit_drop_options
            .map_or(base.syn_drop_options_after, |on| if on { 3 } else { 0 });
        tcp.ecn_syn_retries = self.ecn_maxretries.unwrap_or(base.ecn_syn_retries);
        tcp.connect_timeout = self
            .keepinit_ms
            .map_or(base.connect_timeout, std::time::Duration::from_millis);
    }
}

/// Sysctls that change nothing at one value: xstack already behaves as FreeBSD does
/// with it (`blackhole=0` answers closed ports, `purgenow=1` flushes a host cache
/// xstack does not keep).
const NO_OPS: &[(&str, &str)] = &[
    ("net.inet.tcp.blackhole", "0"),
    ("net.inet.tcp.hostcache.purgenow", "1"),
];

/// Sysctls with no translation set to FreeBSD's default, as the suite does at every
/// script's start "to ensure default values": not a setting the script needs beyond
/// the defaults, so the stack runs as it is and a difference from FreeBSD's default
/// behaviour fails the script (an engine difference, not a missing translation).
const FREEBSD_DEFAULTS: &[(&str, &str)] = &[
    ("net.inet.tcp.rexmit_slop", "200"),
    ("net.inet.tcp.syncookies", "1"),
    ("net.inet.tcp.syncookies_only", "0"),
];

/// Applies the `key=value` lines of `text`; returns the keys with no translation.
pub fn apply(text: &str, d: &mut Defaults) -> Vec<String> {
    let mut untranslated = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((k, v)) = line.split_once('=') else {
            untranslated.push(line.to_string());
            continue;
        };
        let n = v.trim().parse::<usize>().ok();
        match (k.trim(), n) {
            ("net.inet.tcp.sendspace", Some(n)) => d.sndbuf = Some(n),
            ("net.inet.tcp.recvspace", Some(n)) => d.rcvbuf = Some(n),
            ("net.inet.tcp.ecn.enable", Some(n @ 0..=2)) => d.ecn = Some(n as u8),
            ("net.inet.tcp.rfc1323", Some(n @ 0..=1)) => d.rfc1323 = Some(n == 1),
            ("net.inet.tcp.sack.enable", Some(n @ 0..=1)) => d.sack = Some(n == 1),
            ("net.inet.tcp.rexmit_initial", Some(n @ 1..)) => d.rto_initial_ms = Some(n as u64),
            ("net.inet.tcp.keepidle", Some(n @ 1000..)) => d.keepidle_ms = Some(n as u64),
            ("net.inet.tcp.keepintvl", Some(n @ 1000..)) => d.keepintvl_ms = Some(n as u64),
            ("net.inet.tcp.keepcnt", Some(n @ 1..)) => d.keepcnt = Some(n as u32),
            ("net.inet.tcp.insecure_rst", Some(n @ 0..=1)) => d.insecure_rst = Some(n == 1),
            ("net.inet.tcp.insecure_syn", Some(n @ 0..=1)) => d.insecure_syn = Some(n == 1),
            ("net.inet.tcp.icmp_may_rst", Some(n @ 0..=1)) => d.icmp_may_rst = Some(n == 1),
            ("kern.ipc.maxsockbuf", Some(n @ 1..)) => d.maxsockbuf = Some(n),
            ("net.inet.tcp.drop_synfin", Some(n @ 0..=1)) => d.drop_synfin = Some(n == 1),
            ("net.inet.tcp.ecn.maxretries", Some(n)) => d.ecn_maxretries = Some(n as u32),
            ("net.inet.tcp.keepinit", Some(n @ 1..)) => d.keepinit_ms = Some(n as u64),
            ("net.inet.tcp.rexmit_drop_options", Some(n @ 0..=1)) => {
                d.rexmit_drop_options = Some(n == 1)
            }
            (k, _)
                if NO_OPS.contains(&(k, v.trim())) || FREEBSD_DEFAULTS.contains(&(k, v.trim())) => {
            }
            (k, _) => untranslated.push(k.to_string()),
        }
    }
    untranslated
}

/// Reads the stub's log (if `$XSTACK_SYSCTL_LOG` is set) and applies it from the start.
pub fn load(d: &mut Defaults) -> Vec<String> {
    let Some(path) = std::env::var_os(LOG_ENV) else {
        return Vec::new();
    };
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    *d = Defaults::default();
    let rest = apply(&text, d);
    let mut side = std::path::PathBuf::from(&path).into_os_string();
    side.push(".untranslated");
    let _ = std::fs::write(
        side,
        rest.iter().map(|k| format!("{k}\n")).collect::<String>(),
    );
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_sysctls_are_translated_and_others_listed() {
        let mut d = Defaults::default();
        let rest = apply(
            "net.inet.tcp.recvspace=65536\nnet.inet.tcp.sendspace=32768\n\
             net.inet.tcp.sack.enable=1\nnet.inet.tcp.recvspace=x\nnet.inet.tcp.ecn.enable=2\n\
             net.inet.tcp.insecure_rst=0\nnet.inet.tcp.insecure_rst=1\nnet.inet.tcp.rfc1323=0\n\
             net.inet.tcp.rexmit_initial=1000\nnet.inet.tcp.keepinit=15000\nnet.inet.tcp.rexmit_slop=100\n\
             net.inet.tcp.keepidle=15000\nnet.inet.tcp.keepcnt=2\n",
            &mut d,
        );
        assert_eq!(d.rcvbuf, Some(65536));
        assert_eq!(d.sndbuf, Some(32768));
        assert_eq!(d.ecn, Some(2));
        assert_eq!(
            (d.sack, d.rfc1323, d.rto_initial_ms),
            (Some(true), Some(false), Some(1000))
        );
        assert_eq!(
            rest,
            vec!["net.inet.tcp.recvspace", "net.inet.tcp.rexmit_slop"]
        );
        let base = xstack::TcpConfig::default();
        let mut tcp = base.clone();
        d.apply_to(&base, &mut tcp);
        assert!(!tcp.timestamps && !tcp.window_scaling && tcp.sack);
        assert_eq!(tcp.rto.initial, std::time::Duration::from_secs(1));
        assert_eq!(tcp.connect_timeout, std::time::Duration::from_secs(15));
        // insecure_rst was set to 0, then 1: the last one wins.
        assert!(!tcp.challenge_rst && tcp.challenge_syn && tcp.icmp_hard_errors);
    }

    #[test]
    fn rfc5961_icmp_and_window_scale_sysctls() {
        let mut d = Defaults::default();
        let rest = apply(
            "net.inet.tcp.insecure_syn=1\nnet.inet.tcp.icmp_may_rst=0\nkern.ipc.maxsockbuf=16777216\n",
            &mut d,
        );
        assert!(rest.is_empty());
        let base = xstack::TcpConfig::default();
        let mut tcp = base.clone();
        d.apply_to(&base, &mut tcp);
        assert!(tcp.challenge_rst && !tcp.challenge_syn && !tcp.icmp_hard_errors);
        assert_eq!(tcp.window_shift, Some(9));
        assert_eq!(
            [2_097_152, 65_535, 65_536, 1 << 30].map(window_shift_for),
            [6, 0, 1, 14]
        );
    }
}
