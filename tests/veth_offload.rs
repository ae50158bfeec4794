//! Transmit checksum and segmentation offload against Linux: the stack writes only the
//! pseudo-header sum and asks the device (AF_XDP TX metadata, or the virtio-net header of
//! a TSO frame handed to the kernel whole) to finish the TCP checksum.
//!
//! On veth the "device" never computes anything: the kernel hands the frame on as
//! `CHECKSUM_PARTIAL`, and the peer trusts it. To see the finished checksums on the wire,
//! the stack's end has tx checksumming switched off (`ethtool -K vstk tx off`), so the
//! kernel's software fallback (`skb_checksum_help` in `validate_xmit_skb`) finishes them
//! at the place our metadata names: a wrong `csum_start`/`csum_offset` or a wrong
//! pseudo-header sum shows up as a bad checksum in the capture on the peer.

mod common;

use std::time::Duration;

use common::*;

const N: u64 = 2_000_000;

/// Captures the stack's TCP segments on the peer while `curl` downloads N bytes; returns
/// (segments whose checksum tcpdump finds correct, segments it finds incorrect).
fn download_and_check(pair: &VethPair, dir: &TestDir) -> (usize, usize) {
    let pcap = dir.path.join("tx.pcap").display().to_string();
    let mut dump = pair.spawn_peer(
        "tcpdump",
        &[
            "tcpdump", "-i", PEER_IF, "-nn", "-U", "-c", "400", "-w", &pcap, "tcp", "and", "src",
            "host", STACK_ADDR,
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    // A first small request resolves the peer's address, so the count below is of the
    // download's frames: frames held for ARP leave later through the plain path,
    // finished in software (with `--offload syncookie` the handshake no longer takes
    // that wait, its first data does).
    let warm = pair.curl(&[
        "--max-time",
        "5",
        "-s",
        &format!("http://{STACK_ADDR}/bytes/1"),
    ]);
    assert!(warm.status.success(), "{}", warm.context());
    let dl = pair.curl_sha256(&format!("http://{STACK_ADDR}/bytes/{N}"), 60);
    assert_eq!(
        dl.sha256,
        xstack_tools::http::pattern_sha256(N),
        "download: {}",
        dl.context()
    );
    // tcpdump says "N packets captured" when it has its 400 and exits.
    dump.wait_for("packets captured", Duration::from_secs(10));
    let out = run(["tcpdump", "-r", &pcap, "-nn", "-vv"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let correct = text.matches("(correct)").count();
    let incorrect = text.matches("(incorrect").count();
    eprintln!("capture: {correct} correct, {incorrect} incorrect TCP checksums");
    (correct, incorrect)
}

/// With the offload on, every segment leaves with a partial checksum that the kernel's
/// fallback finishes correctly; with `--no-offload txcsum` the stack computes them all.
#[test]
fn tx_checksum_offload_finishes_correct_checksums() {
    if !require_root() || !require_tool("curl") || !require_tool("tcpdump") {
        return;
    }
    let dir = TestDir::new("txcsum");
    let pair = VethPair::new_headers_only("txcsum", 1, 128);
    // The kernel finishes CHECKSUM_PARTIAL frames itself on a device without tx
    // checksumming, so the capture shows the checksum our metadata asked for.
    let off = pair.exec_stack_ns(["ethtool", "-K", STACK_IF, "tx", "off"]);
    assert!(off.status.success(), "ethtool -K vstk tx off: {off:?}");

    // TSO frames go to the kernel whole (GSO is on); with tx checksumming off the device
    // has no TSO either, so the kernel cuts them and finishes each segment's checksum.
    let stack = pair.spawn_http(&[]);
    let up = stack.stderr_text();
    let (correct, incorrect) = download_and_check(&pair, &dir);
    let (_, json) = stack.stop(libc::SIGTERM);
    assert!(up.contains("tso on (kernel segments)"), "{up}");
    let gso_frames = json_counter(&json, "device.tx_gso_frames");
    assert!(
        json_counter(&json, "tcp.tso_offloaded") > 0 && gso_frames > 0,
        "TSO frames went to the kernel: {json}"
    );
    assert_eq!(
        json_counter(&json, "device.tx_gso_refused"),
        0,
        "the kernel took every GSO frame: {json}"
    );
    assert!(correct >= 100, "segments captured: {correct}");
    assert_eq!(incorrect, 0, "no bad checksum on the wire");

    // Segments one per AF_XDP frame (no TSO): each leaves with its checksum in the TX
    // metadata.
    let stack = pair.spawn_http(&["--no-offload", "tso"]);
    let up = stack.stderr_text();
    let (correct, incorrect) = download_and_check(&pair, &dir);
    let (_, json) = stack.stop(libc::SIGTERM);
    assert!(
        up.contains("txcsum on"),
        "this kernel (6.8+) takes AF_XDP TX metadata, so the offload is on: {up}"
    );
    let offloaded = json_counter(&json, "device.tx_csum_offloaded");
    assert!(
        offloaded >= N / 1448,
        "the data segments went out with the checksum offloaded ({offloaded}): {json}"
    );
    assert_eq!(json_counter(&json, "device.tx_gso_frames"), 0);
    assert!(correct >= 100, "segments captured: {correct}");
    assert_eq!(incorrect, 0, "no bad checksum on the wire");

    // Switched off: the software path, same result on the wire.
    let stack = pair.spawn_http(&["--no-offload", "txcsum,tso"]);
    assert!(stack.stderr_text().contains("txcsum off"));
    let (correct, incorrect) = download_and_check(&pair, &dir);
    let (_, json) = stack.stop(libc::SIGTERM);
    assert_eq!(json_counter(&json, "device.tx_csum_offloaded"), 0);
    assert!(correct >= 100, "segments captured: {correct}");
    assert_eq!(incorrect, 0, "no bad checksum on the wire");
}

/// An unknown offload name is one clear error line, exit status 2 (usage).
#[test]
fn unknown_offload_is_a_usage_error() {
    if !require_root() {
        return;
    }
    let pair = VethPair::new("offbad", 1);
    let r = pair.run_stack_expect_exit(
        &[],
        XSTACK_BIN,
        &[
            "up",
            "--iface",
            STACK_IF,
            "--addr",
            STACK_CIDR,
            "--no-offload",
            "lro9",
        ],
    );
    r.assert_error(2);
    assert!(r.stderr.contains("unknown offload 'lro9'"), "{}", r.stderr);
}

/// Software LRO against Linux: an upload from curl reaches `xstack http` in bursts of
/// in-order segments, which the worker coalesces; the body's sha256 is right with LRO
/// on (and segments were merged) and off (and none were).
#[test]
fn lro_coalesces_a_linux_upload_without_changing_it() {
    if !require_root() || !require_tool("curl") {
        return;
    }
    let dir = TestDir::new("lro");
    let file = dir.random_file("upload.bin", 20_000_000);
    let want = file_sha256(&file);
    let pair = VethPair::new_headers_only("lro", 1, 128);
    let data = format!("@{}", file.display());
    let url = format!("http://{STACK_ADDR}/sha256");
    for (extra, lro_on) in [(&[][..], true), (&["--no-offload", "lro"][..], false)] {
        let stack = pair.spawn_http(extra);
        let up = pair.curl(&[
            "--max-time",
            "120",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &data,
            &url,
        ]);
        let (_, json) = stack.stop(libc::SIGTERM);
        let ctx = format!("{}\ncounters: {json}", up.context());
        assert!(up.status.success(), "{ctx}");
        assert_eq!(up.stdout_text().trim(), want, "sha256 of the upload: {ctx}");
        let merged = json_counter(&json, "lro.merged");
        eprintln!(
            "LRO {}: {merged} segments merged into {} aggregates, {} TCP segments input",
            if lro_on { "on" } else { "off" },
            json_counter(&json, "lro.aggregates"),
            json_counter(&json, "tcp.rx")
        );
        if lro_on {
            assert!(merged > 0, "segments were coalesced: {ctx}");
        } else {
            assert_eq!(merged, 0, "{ctx}");
        }
    }
}
