//! The socket table FreeBSD's `sockstat -s` prints, kept in the file named by
//! `$XSTACK_SOCKSTAT` so the runner's `sockstat` stub (scripts run it in backticks:
//! `sockstat -4 -P tcp -s -p 8080 | grep -c SYN_RCVD`) can filter it as its options
//! ask. The shim rewrites the file whenever it differs from the stack's state after a
//! call (interface calls, injected packets, time moving).
//!
//! Format: sockstat's header and one line per socket, whitespace-separated columns
//! `USER COMMAND PID FD PROTO LOCAL FOREIGN STATE` (the command name is cut to 10
//! characters, `packetdril`, as FreeBSD's `ki_comm` column; connections no descriptor
//! holds any more are `?` in the first four columns, as sockstat prints sockets no
//! process owns). States take FreeBSD's names (`tcpstates[]`).

use std::net::SocketAddrV4;

/// Environment variable naming the table file.
pub const ENV: &str = "XSTACK_SOCKSTAT";

/// sockstat's header with `-s`.
pub const HEADER: &str =
    "USER     COMMAND    PID   FD  PROTO  LOCAL ADDRESS         FOREIGN ADDRESS       PATH STATE   CONN STATE";

/// One socket of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The descriptor holding it (`None`: no process owns it).
    pub fd: Option<i32>,
    pub local: SocketAddrV4,
    /// `None` for a listener (`*:*`).
    pub remote: Option<SocketAddrV4>,
    /// The FreeBSD state name.
    pub state: &'static str,
}

/// FreeBSD's name (`tcpstates[]`) for xstack's state name (RFC 9293 spelling).
pub fn freebsd_state(xstack: &str) -> &'static str {
    match xstack {
        "CLOSED" => "CLOSED",
        "LISTEN" => "LISTEN",
        "SYN_SENT" => "SYN_SENT",
        "SYN_RECEIVED" => "SYN_RCVD",
        "ESTABLISHED" => "ESTABLISHED",
        "CLOSE_WAIT" => "CLOSE_WAIT",
        "FIN_WAIT_1" => "FIN_WAIT_1",
        "CLOSING" => "CLOSING",
        "LAST_ACK" => "LAST_ACK",
        "FIN_WAIT_2" => "FIN_WAIT_2",
        "TIME_WAIT" => "TIME_WAIT",
        _ => "UNKNOWN",
    }
}

/// The table as sockstat prints it (header included), `pid` the process's.
pub fn render(entries: &[Entry], pid: u32) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    for e in entries {
        let (user, cmd, pid, fd) = match e.fd {
            Some(fd) => (
                "root".to_string(),
                "packetdril".to_string(),
                pid.to_string(),
                fd.to_string(),
            ),
            None => ("?".into(), "?".into(), "?".into(), "?".into()),
        };
        let remote = e.remote.map_or("*:*".to_string(), |r| r.to_string());
        out.push_str(&format!(
            "{user:<8} {cmd:<10} {pid:<5} {fd:<3} {:<6} {:<21} {:<21} {}\n",
            "tcp4",
            e.local.to_string(),
            remote,
            e.state
        ));
    }
    out
}

/// Writes `text` to `$XSTACK_SOCKSTAT` if it differs from `last` (which it becomes).
pub fn publish(text: String, last: &mut String) {
    if *last == text {
        return;
    }
    if let Some(p) = std::env::var_os(ENV) {
        // Written whole then renamed, so the stub never reads half a table.
        let tmp = std::path::PathBuf::from(&p).with_extension("tmp");
        if std::fs::write(&tmp, &text).is_ok() {
            let _ = std::fs::rename(&tmp, &p);
        }
    }
    *last = text;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_reads_like_sockstat() {
        let a = |s: &str| s.parse::<SocketAddrV4>().unwrap();
        let t = render(
            &[
                Entry {
                    fd: Some(3),
                    local: a("192.168.0.1:8080"),
                    remote: None,
                    state: "LISTEN",
                },
                Entry {
                    fd: None,
                    local: a("192.168.0.1:8080"),
                    remote: Some(a("192.0.2.1:5000")),
                    state: freebsd_state("SYN_RECEIVED"),
                },
                Entry {
                    fd: Some(4),
                    local: a("192.168.0.1:8080"),
                    remote: Some(a("192.0.2.1:5001")),
                    state: freebsd_state("TIME_WAIT"),
                },
            ],
            42,
        );
        let lines: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
        assert!(lines[0].starts_with(&["USER", "COMMAND", "PID", "FD", "PROTO"]));
        assert_eq!(
            lines[1],
            [
                "root",
                "packetdril",
                "42",
                "3",
                "tcp4",
                "192.168.0.1:8080",
                "*:*",
                "LISTEN"
            ]
        );
        assert_eq!(
            lines[2],
            [
                "?",
                "?",
                "?",
                "?",
                "tcp4",
                "192.168.0.1:8080",
                "192.0.2.1:5000",
                "SYN_RCVD"
            ]
        );
        assert_eq!(lines[3][1], "packetdril");
        assert_eq!(lines[3][7], "TIME_WAIT");
        assert_eq!(t.lines().filter(|l| l.contains("SYN_RCVD")).count(), 1);
    }
}
