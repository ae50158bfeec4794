//! ECN (RFC 3168) against Linux over a veth pair, Linux with `net.ipv4.tcp_ecn=1` in the
//! peer's namespace:
//!
//! - Linux uploads to `xstack http --ecn` while an nftables rule on Linux's output path
//!   marks a share of its ECT packets CE: the body's sha256 is right, the stack counted
//!   the marks and echoed them with ECE, and Linux answered with CWR.
//! - Linux downloads from `xstack http --ecn` while an nftables rule on Linux's ingress
//!   marks a share of the stack's ECT packets CE: the body is right, the stack's data went
//!   out ECT(0) (retransmissions Not-ECT), Linux echoed ECE and the stack cut its window
//!   and sent CWR.
//! - `xstack get --ecn` (an active open) downloads from a Linux server: the SYN and
//!   SYN-ACK negotiate ECN.
//!
//! Every check of what went on the wire reads the test's own packet capture.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// Marks 5% of Linux's ECT(0) packets to the stack CE on their way out (the output hook
/// sees them once the kernel set ECT, as a router's AQM would mark them).
const MARK_UPLOAD: &str = r#"
table ip xstack_ecn {
    chain output {
        type filter hook output priority 0; policy accept;
        ip daddr 198.18.0.1 tcp dport 80 ip ecn ect0 numgen random mod 100 < 5 ip ecn set ce counter
    }
}
"#;

/// Marks 2% of the stack's ECT(0) packets CE as they reach Linux (netdev ingress on
/// vpeer: before Linux's TCP sees them).
const MARK_DOWNLOAD: &str = r#"
table netdev xstack_ecn {
    chain ingress {
        type filter hook ingress device "vpeer" priority 0; policy accept;
        ip saddr 198.18.0.1 tcp sport 80 ip ecn ect0 numgen random mod 100 < 2 ip ecn set ce counter
    }
}
"#;

/// `counter packets N` of the marking rule.
fn marked(ruleset: &str) -> u64 {
    ruleset
        .lines()
        .find(|l| l.contains("ecn set ce"))
        .and_then(|l| l.split("counter packets ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// One captured TCP/IPv4 frame, headers only.
#[derive(Clone, Copy, Debug)]
struct Frame {
    src: [u8; 4],
    sport: u16,
    dport: u16,
    /// The IP ECN field: 0 Not-ECT, 1 ECT(1), 2 ECT(0), 3 CE.
    ecn: u8,
    flags: u8,
    seq: u32,
    payload: u32,
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const ECE: u8 = 0x40;
const CWR: u8 = 0x80;
const STACK_IP: [u8; 4] = [198, 18, 0, 1];

impl Frame {
    fn sent_by_stack(&self) -> bool {
        self.src == STACK_IP
    }
    fn has(&self, f: u8) -> bool {
        self.flags & f == f
    }
}

/// The TCP/IPv4 frames of a pcap file (Ethernet, microsecond or nanosecond, either byte
/// order); everything else is skipped. `tcpdump -U` writes each packet as it comes, so a
/// capture still running can be read.
fn tcp_frames(pcap: &Path) -> Vec<Frame> {
    let data = std::fs::read(pcap).unwrap_or_default();
    if data.len() < 24 {
        return Vec::new();
    }
    let magic = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let le = matches!(magic, 0xa1b2c3d4 | 0xa1b23c4d);
    let rd32 = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let incl = rd32(&data[off + 8..off + 12]) as usize;
        let start = off + 16;
        off = start + incl;
        let Some(f) = data.get(start..start + incl) else {
            break;
        };
        if f.len() < 14 + 20 || f[12..14] != [0x08, 0x00] || f[14] >> 4 != 4 || f[23] != 6 {
            continue;
        }
        let ip = &f[14..];
        let ihl = ((ip[0] & 15) as usize) * 4;
        let total = u16::from_be_bytes([ip[2], ip[3]]) as u32;
        let Some(tcp) = ip.get(ihl..ihl + 20) else {
            continue;
        };
        let doff = (tcp[12] >> 4) as u32 * 4;
        out.push(Frame {
            src: [ip[12], ip[13], ip[14], ip[15]],
            sport: u16::from_be_bytes([tcp[0], tcp[1]]),
            dport: u16::from_be_bytes([tcp[2], tcp[3]]),
            ecn: ip[1] & 3,
            flags: tcp[13],
            seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
            payload: total.saturating_sub(ihl as u32 + doff),
        });
    }
    out
}

/// Waits for the capture to hold the last frames, then reads it.
fn capture(pair: &VethPair) -> Vec<Frame> {
    std::thread::sleep(Duration::from_millis(300));
    tcp_frames(pair.pcap_path())
}

/// Checks the handshake of every connection in the capture: the client's SYN is an
/// ECN-setup SYN (ECE and CWR), the server's SYN-ACK an ECN-setup SYN-ACK (ECE, not CWR),
/// and neither is ECT (RFC 3168 §6.1.1). Returns how many handshakes were seen.
fn check_handshakes(frames: &[Frame], ctx: &str) -> usize {
    let syns: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.has(SYN) && !f.has(ACK))
        .collect();
    let synacks: Vec<&Frame> = frames.iter().filter(|f| f.has(SYN | ACK)).collect();
    assert!(
        !syns.is_empty() && !synacks.is_empty(),
        "no handshake captured: {ctx}"
    );
    for s in &syns {
        assert!(
            s.has(ECE | CWR),
            "SYN is not an ECN-setup SYN: {s:?}: {ctx}"
        );
        assert_eq!(s.ecn, 0, "ECT on a SYN: {s:?}: {ctx}");
    }
    for s in &synacks {
        assert!(
            s.has(ECE) && !s.has(CWR),
            "SYN-ACK is not an ECN-setup SYN-ACK: {s:?}: {ctx}"
        );
        assert_eq!(s.ecn, 0, "ECT on a SYN-ACK: {s:?}: {ctx}");
    }
    synacks.len()
}

/// What the stack sent, classified: (new data ECT(0), new data not ECT(0), retransmitted
/// data ECT, segments without data that are ECT). RFC 3168: only the first class may be
/// non-zero besides retransmissions that are Not-ECT.
fn stack_codepoints(frames: &[Frame]) -> (u64, u64, u64, u64) {
    let mut high: std::collections::HashMap<(u16, u16), u32> = Default::default();
    let (mut new_ect, mut new_other, mut rexmit_ect, mut empty_ect) = (0, 0, 0, 0);
    for f in frames.iter().filter(|f| f.sent_by_stack()) {
        if f.payload == 0 {
            empty_ect += (f.ecn != 0) as u64;
            continue;
        }
        let end = f.seq.wrapping_add(f.payload);
        let hi = high.entry((f.sport, f.dport)).or_insert(f.seq);
        // Sequence-space comparison: a segment that ends at or below the highest end seen
        // is a retransmission.
        let retransmission = (end.wrapping_sub(*hi) as i32) <= 0;
        if retransmission {
            rexmit_ect += (f.ecn != 0) as u64;
        } else {
            *hi = end;
            // A frame the kernel will segment (GSO through veth) counts as the
            // 1,448-byte segments it carries.
            let segments = f.payload.div_ceil(1448).max(1) as u64;
            if f.ecn == 2 {
                new_ect += segments;
            } else {
                new_other += segments;
            }
        }
    }
    (new_ect, new_other, rexmit_ect, empty_ect)
}

/// Turns on ECN for Linux's TCP in the peer's namespace (both directions: it requests
/// ECN on its connections and accepts it on incoming ones).
fn linux_ecn_on(pair: &VethPair) -> bool {
    let out = pair.exec_peer(["sysctl", "-w", "net.ipv4.tcp_ecn=1"]);
    if !out.status.success() {
        println!(
            "skipping: cannot set net.ipv4.tcp_ecn in the peer namespace: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return false;
    }
    true
}

/// Linux -> stack: `curl --data-binary` of 20 MB to `POST /sha256` on `xstack http --ecn`
/// with 5% of Linux's ECT packets marked CE on the way.
#[test]
fn linux_upload_with_ce_marks() {
    if !require_root() || !require_tool("curl") || !require_tool("nft") || !require_tool("tcpdump")
    {
        return;
    }
    let dir = TestDir::new("ecnup");
    let file = dir.random_file("upload.bin", 20_000_000);
    let want = file_sha256(&file);
    let pair = VethPair::new_headers_only("ecnup", 1, 128);
    if !linux_ecn_on(&pair) {
        return;
    }
    pair.nft_apply(&dir, MARK_UPLOAD);
    let stack = pair.spawn_http(&["--ecn"]);
    let data = format!("@{}", file.display());
    let run = pair.curl(&[
        "--max-time",
        "120",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &data,
        "-w",
        "%{stderr}curl: http_code=%{http_code} size_upload=%{size_upload}\\n",
        &format!("http://{STACK_ADDR}/sha256"),
    ]);
    let ruleset = pair.nft_ruleset();
    let frames = capture(&pair);
    let (_, json) = stack.stop(libc::SIGTERM);
    let ctx = format!(
        "{}\nnft:\n{ruleset}\nstack exit counters: {json}",
        run.context()
    );
    assert!(run.stderr.contains("http_code=200"), "expected 200: {ctx}");
    assert_eq!(run.ok_text(), want, "sha256 answered vs file's: {ctx}");

    let c = |n| json_counter(&json, n);
    let marks = marked(&ruleset);
    println!(
        "upload: nft marked {marks} packets CE; stack: ecn_negotiated {} ce_rx {} ece_tx {} \
         cwr_rx {}",
        c("tcp.ecn_negotiated"),
        c("tcp.ecn_ce_rx"),
        c("tcp.ecn_ece_tx"),
        c("tcp.ecn_cwr_rx")
    );
    assert!(marks > 0, "the marking rule marked nothing: {ctx}");
    assert_eq!(c("tcp.ecn_negotiated"), 1, "{ctx}");
    assert!(c("tcp.ecn_ce_rx") > 0, "no CE counted: {ctx}");
    assert!(c("tcp.ecn_ece_tx") > 0, "no ECE sent: {ctx}");
    // Linux reduced its window and said so (RFC 3168 §6.1.2).
    assert!(c("tcp.ecn_cwr_rx") > 0, "Linux never sent CWR: {ctx}");

    // On the wire: Linux's SYN asked, the stack's SYN-ACK agreed; the stack's segments
    // (it sends no data but the 64-byte answer) are never ECT except that answer; Linux's
    // data arrived ECT(0) or CE, and the stack's ACKs carried ECE.
    assert_eq!(check_handshakes(&frames, &ctx), 1);
    let (new_ect, new_other, rexmit_ect, empty_ect) = stack_codepoints(&frames);
    assert_eq!(
        (new_other, rexmit_ect, empty_ect),
        (0, 0, 0),
        "stack codepoints: {ctx}"
    );
    assert!(new_ect >= 1, "the stack's answer was not ECT(0): {ctx}");
    let linux_data: Vec<&Frame> = frames
        .iter()
        .filter(|f| !f.sent_by_stack() && f.payload > 0)
        .collect();
    let ce = linux_data.iter().filter(|f| f.ecn == 3).count();
    let ect0 = linux_data.iter().filter(|f| f.ecn == 2).count();
    println!(
        "capture: Linux data frames {} (ECT(0) {ect0}, CE {ce}); stack ACKs with ECE {}",
        linux_data.len(),
        frames
            .iter()
            .filter(|f| f.sent_by_stack() && f.has(ECE) && !f.has(SYN))
            .count()
    );
    assert!(ce > 0, "no CE-marked frame in the capture: {ctx}");
    assert!(
        frames
            .iter()
            .any(|f| f.sent_by_stack() && f.has(ECE) && !f.has(SYN)),
        "no ECE from the stack in the capture: {ctx}"
    );
}

/// stack -> Linux: `curl` downloads 20 MB from `xstack http --ecn` with 2% of the stack's
/// ECT packets marked CE as they reach Linux. `/info` on the same keep-alive connection
/// reports ECN negotiated and the echoes the stack reacted to.
#[test]
fn linux_download_with_ce_marks() {
    if !require_root() || !require_tool("curl") || !require_tool("nft") || !require_tool("tcpdump")
    {
        return;
    }
    const SIZE: u64 = 20_000_000;
    let dir = TestDir::new("ecndown");
    let pair = VethPair::new_headers_only("ecndown", 1, 128);
    if !linux_ecn_on(&pair) {
        return;
    }
    pair.nft_apply(&dir, MARK_DOWNLOAD);
    let stack = pair.spawn_http(&["--ecn"]);
    let body = dir.path.join("body.bin");
    let info = dir.path.join("info.json");
    let run = pair.curl(&[
        "--max-time",
        "120",
        "-w",
        "%{stderr}curl: %{url_effective} http_code=%{http_code} size=%{size_download} local_port=%{local_port}\\n",
        "-o",
        &body.display().to_string(),
        &format!("http://{STACK_ADDR}/bytes/{SIZE}"),
        "-o",
        &info.display().to_string(),
        &format!("http://{STACK_ADDR}/info"),
    ]);
    let ruleset = pair.nft_ruleset();
    let frames = capture(&pair);
    let (_, json) = stack.stop(libc::SIGTERM);
    let info_text = std::fs::read_to_string(&info).unwrap_or_default();
    let ctx = format!(
        "{}\n/info: {info_text}\nnft:\n{ruleset}\nstack exit counters: {json}",
        run.context()
    );
    assert!(run.status.success(), "curl failed: {ctx}");
    assert_eq!(
        std::fs::metadata(&body).map(|m| m.len()).unwrap_or(0),
        SIZE,
        "body size: {ctx}"
    );
    assert_eq!(
        file_sha256(&body),
        xstack_tools::http::pattern_sha256(SIZE),
        "body sha256: {ctx}"
    );
    let info: serde_json::Value = serde_json::from_str(info_text.trim())
        .unwrap_or_else(|e| panic!("/info is not JSON ({e}): {ctx}"));
    let c = |n| json_counter(&json, n);
    let marks = marked(&ruleset);
    println!(
        "download: nft marked {marks} packets CE; /info ecn {} ece_received {} reductions {} \
         cwr_sent {} retransmits {}; stack ect_tx {}",
        info["ecn"],
        info["ecn_ece_received"],
        info["ecn_reductions"],
        info["ecn_cwr_sent"],
        info["retransmits"],
        c("tcp.ecn_ect_tx")
    );
    assert_eq!(info["ecn"], true, "ECN not negotiated: {ctx}");
    assert!(marks > 0, "the marking rule marked nothing: {ctx}");
    // Linux echoed the marks; the stack cut its window (once per window) and sent CWR.
    let ece_rx = info["ecn_ece_received"].as_u64().unwrap_or(0);
    let reductions = info["ecn_reductions"].as_u64().unwrap_or(0);
    let cwr = info["ecn_cwr_sent"].as_u64().unwrap_or(0);
    assert!(ece_rx > 0, "Linux never echoed ECE: {ctx}");
    assert!(reductions > 0 && reductions <= ece_rx, "reductions: {ctx}");
    assert!(cwr > 0, "no CWR sent: {ctx}");
    assert_eq!(c("tcp.ecn_negotiated"), 1, "{ctx}");
    assert!(c("tcp.ecn_ect_tx") > 0, "{ctx}");

    // On the wire: the handshake, and ECT(0) on every new data segment of the stack and
    // on nothing else it sent.
    assert_eq!(check_handshakes(&frames, &ctx), 1);
    let (new_ect, new_other, rexmit_ect, empty_ect) = stack_codepoints(&frames);
    println!(
        "capture: stack new data ECT(0) {new_ect}, other {new_other}; ECT retransmissions \
         {rexmit_ect}; ECT non-data {empty_ect}"
    );
    assert!(
        new_ect > 1000,
        "too few ECT(0) data frames: {new_ect}: {ctx}"
    );
    assert_eq!(
        (new_other, rexmit_ect, empty_ect),
        (0, 0, 0),
        "stack codepoints: {ctx}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.sent_by_stack() && f.has(CWR) && f.payload > 0),
        "no CWR data frame in the capture: {ctx}"
    );
}

/// Active open: `xstack get --ecn` from a Linux HTTP server (python3 http.server): the
/// stack's SYN asks for ECN, Linux's SYN-ACK agrees, the body is right, and the stack's
/// request went out ECT(0).
#[test]
fn stack_client_negotiates_with_linux() {
    if !require_root() || !require_tool("python3") || !require_tool("tcpdump") {
        return;
    }
    let dir = TestDir::new("ecnget");
    let www = dir.path.join("www");
    std::fs::create_dir_all(&www).expect("mkdir www");
    let file = dir.random_file("www/file", 5_000_000);
    let want = file_sha256(&file);
    let pair = VethPair::new_headers_only("ecnget", 1, 128);
    if !linux_ecn_on(&pair) {
        return;
    }
    let py = python3_path();
    let www_s = www.display().to_string();
    let mut server = pair.spawn_peer(
        "http.server",
        &[
            &py,
            "-u",
            "-m",
            "http.server",
            "8000",
            "--bind",
            PEER_ADDR,
            "--directory",
            &www_s,
        ],
    );
    server.wait_for("Serving HTTP", Duration::from_secs(10));
    let url = format!("http://{PEER_ADDR}:8000/file");
    let run = pair.run_xstack_client(
        &[
            "get", &url, "--iface", STACK_IF, "--addr", STACK_CIDR, "--idle", "sleep", "--ecn",
        ],
        Duration::from_secs(120),
    );
    let frames = capture(&pair);
    let ctx = format!("{}\nserver:\n{}", run.context(), server.output());
    let json = run.json();
    assert_eq!(json["status"], 200, "status: {ctx}");
    assert_eq!(json["sha256"], want, "sha256: {ctx}");
    assert_eq!(check_handshakes(&frames, &ctx), 1);
    let syn = frames.iter().find(|f| f.has(SYN) && !f.has(ACK));
    assert!(
        syn.is_some_and(|s| s.sent_by_stack()),
        "the SYN should be the stack's: {syn:?}: {ctx}"
    );
    let (new_ect, new_other, rexmit_ect, empty_ect) = stack_codepoints(&frames);
    assert!(new_ect >= 1, "the request was not ECT(0): {ctx}");
    assert_eq!(
        (new_other, rexmit_ect, empty_ect),
        (0, 0, 0),
        "stack codepoints: {ctx}"
    );
    // Linux, seeing the negotiation succeed, sends its data ECT(0).
    let linux_ect = frames
        .iter()
        .filter(|f| !f.sent_by_stack() && f.payload > 0 && f.ecn == 2)
        .count();
    println!("capture: stack ECT(0) data {new_ect}, Linux ECT(0) data {linux_ect}");
    assert!(linux_ect > 0, "Linux did not use ECN: {ctx}");
}
