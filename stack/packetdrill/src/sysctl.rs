//! FreeBSD sysctls a script sets (through the runner's `sysctl` stub, which appends
//! `key=value` lines to the file named by `$XSTACK_SYSCTL_LOG`), translated to what the
//! shim can honour. Only the socket buffer defaults and ECN are translated so far; the
//! rest are listed as untranslated.

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
}

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
    let text = std::fs::read_to_string(path).unwrap_or_default();
    *d = Defaults::default();
    apply(&text, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_sysctls_are_translated_and_others_listed() {
        let mut d = Defaults::default();
        let rest = apply(
            "net.inet.tcp.recvspace=65536\nnet.inet.tcp.sendspace=32768\n\
             net.inet.tcp.sack.enable=1\nnet.inet.tcp.recvspace=x\nnet.inet.tcp.ecn.enable=2\n",
            &mut d,
        );
        assert_eq!(d.rcvbuf, Some(65536));
        assert_eq!(d.sndbuf, Some(32768));
        assert_eq!(d.ecn, Some(2));
        assert_eq!(
            rest,
            vec!["net.inet.tcp.sack.enable", "net.inet.tcp.recvspace"]
        );
    }
}
