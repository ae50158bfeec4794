//! A download from `xstack http` with 1% random loss in the stack -> Linux direction
//! (an nftables netdev ingress hook on the Linux end) completes with the right bytes.

mod common;

use common::*;

const SIZE: u64 = 20_000_000;

/// Drops 1% of the stack's TCP segments from port 80 as they reach `vpeer`, counted.
const LOSS_RULES: &str = r#"
table netdev xstack_loss {
    chain ingress {
        type filter hook ingress device "vpeer" priority 0; policy accept;
        ip saddr 198.18.0.1 tcp sport 80 numgen random mod 100 < 1 counter drop
    }
}
"#;

/// `counter packets N` of the loss rule.
fn dropped(ruleset: &str) -> u64 {
    ruleset
        .lines()
        .find(|l| l.contains("numgen random"))
        .and_then(|l| l.split("counter packets ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// curl fetches 20 MB and then `/info` on the same keep-alive connection (so `/info` is
/// the download's tcp_info, with its retransmit count) through 1% loss; the body's sha256
/// matches, and the losses were repaired by retransmissions.
#[test]
fn download_under_1pct_loss() {
    if !require_root() || !require_tool("curl") || !require_tool("nft") {
        return;
    }
    let dir = TestDir::new("loss");
    let pair = VethPair::new_headers_only("loss1", 1, 128);
    pair.nft_apply(&dir, LOSS_RULES);
    let stack = pair.spawn_http(&[]);
    let body = dir.path.join("body.bin");
    let info = dir.path.join("info.json");
    let (body_s, info_s) = (body.display().to_string(), info.display().to_string());
    let run = pair.curl(&[
        "--max-time",
        "240",
        "-w",
        "%{stderr}curl: %{url_effective} http_code=%{http_code} size=%{size_download} local_port=%{local_port} connects=%{num_connects} time=%{time_total}\\n",
        "-o",
        &body_s,
        &format!("http://{STACK_ADDR}/bytes/{SIZE}"),
        "-o",
        &info_s,
        &format!("http://{STACK_ADDR}/info"),
    ]);
    eprintln!("{}", run.context());
    let ruleset = pair.nft_ruleset();
    eprintln!("nft ruleset after the transfer:\n{ruleset}");
    let stats = pair.curl(&["--max-time", "10", &format!("http://{STACK_ADDR}/stats")]);
    eprintln!("/stats: {}", stats.stdout_text());
    let (_, json) = stack.stop(libc::SIGTERM);
    let info_text = std::fs::read_to_string(&info).unwrap_or_default();
    eprintln!("/info of the download's connection: {info_text}");
    let ctx = format!(
        "{}\n/info: {info_text}\nnft:\n{ruleset}\nstack exit counters: {json}",
        run.context()
    );
    assert!(run.status.success(), "curl failed: {ctx}");
    let len = std::fs::metadata(&body).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, SIZE, "body size: {ctx}");
    assert_eq!(
        file_sha256(&body),
        xstack_tools::http::pattern_sha256(SIZE),
        "body sha256: {ctx}"
    );

    let drops = dropped(&ruleset);
    assert!(
        drops > 0,
        "the loss rule dropped nothing, so this tested no loss: {ctx}"
    );
    let info: serde_json::Value = serde_json::from_str(info_text.trim())
        .unwrap_or_else(|e| panic!("/info is not JSON ({e}): {ctx}"));
    // The /info must be the download's own connection for its counters to mean anything.
    let dl_port = run
        .stderr
        .lines()
        .find(|l| l.contains("/bytes/"))
        .and_then(|l| l.split("local_port=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    assert_eq!(
        info["peer"].as_str().and_then(|p| p.rsplit(':').next()),
        Some(dl_port.as_str()),
        "curl should have reused the download's connection for /info: {ctx}"
    );
    let retransmits = info["retransmits"].as_u64().unwrap_or(0);
    let bytes_retrans = info["bytes_retrans"].as_u64().unwrap_or(0);
    println!(
        "1% loss, {SIZE} bytes: {drops} segments dropped by nft, {retransmits} retransmits \
         ({bytes_retrans} bytes) on the connection, rto_us={}, cwnd={}",
        info["rto_us"], info["cwnd"]
    );
    assert!(
        retransmits >= 1 && bytes_retrans >= 1,
        "{drops} segments were dropped yet the connection reports no retransmission: {ctx}"
    );
}
