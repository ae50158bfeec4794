//! Software TSO: tcp_output hands over up to 64 KB and the device layer cuts it into
//! MSS pieces. What goes on the wire must be exactly what the stack sends with TSO off,
//! segment by segment (sequence numbers, flags, options, payload, checksums), except
//! for the IP identification, which is per packet either way.

use std::time::Duration;

use super::sim_transfer::{pattern, transfer};
use crate::checksum;
use crate::sim::{LinkConfig, Sim};
use crate::tcp::TcpConfig;

const TSO_MAX: usize = 65_535 - 20 - 60;

/// The TCP frames host 0 sent, with the IP id and header checksum zeroed; checks every
/// IP and TCP checksum on the way.
fn sent_by_host0(sim: &Sim) -> Vec<Vec<u8>> {
    let tap = sim.tap.as_ref().expect("tap on");
    tap.iter()
        .filter(|(h, f)| *h == 0 && f.len() > 34 && f[12..14] == [0x08, 0x00] && f[23] == 6)
        .map(|(_, f)| {
            let ip = &f[14..34];
            assert!(checksum::verify(ip), "IPv4 header checksum");
            let tcp = &f[34..];
            let pseudo = checksum::pseudo_header_v4(
                [ip[12], ip[13], ip[14], ip[15]],
                [ip[16], ip[17], ip[18], ip[19]],
                6,
                tcp.len() as u16,
            );
            assert_eq!(
                checksum::fold(checksum::add(pseudo, tcp)),
                0xffff,
                "TCP checksum"
            );
            let mut f = f.clone();
            f[18..20].fill(0); // IP id
            f[24..26].fill(0); // IP header checksum (covers the id)
            f
        })
        .collect()
}

fn run(seed: u64, link: LinkConfig, tso_max: usize, total: usize) -> (Sim, Vec<u8>) {
    run_with(seed, link, tso_max, false, total)
}

fn run_with(
    seed: u64,
    link: LinkConfig,
    tso_max: usize,
    nodelay: bool,
    total: usize,
) -> (Sim, Vec<u8>) {
    run_on(seed, link, tso_max, nodelay, false, total)
}

/// `device_tso`: the link segments TSO frames (as the kernel does for a packet socket)
/// instead of the stack.
fn run_on(
    seed: u64,
    link: LinkConfig,
    tso_max: usize,
    nodelay: bool,
    device_tso: bool,
    total: usize,
) -> (Sim, Vec<u8>) {
    let cfg = TcpConfig {
        tso_max,
        nodelay,
        ..TcpConfig::default()
    };
    let mut sim = Sim::with_setup(seed, link, 1, cfg, |c| c.tso_device = device_tso);
    sim.tap = Some(Vec::new());
    let (got, _client, _server) = transfer(&mut sim, total, Duration::from_secs(600));
    (sim, got)
}

fn compare(seed: u64, link: LinkConfig, nodelay: bool) {
    compare_on(seed, link, nodelay, false)
}

/// TSO output (cut by the stack, or by the device when `device_tso`) against MSS
/// output, segment by segment.
fn compare_on(seed: u64, link: LinkConfig, nodelay: bool, device_tso: bool) {
    let total = 4 * 1024 * 1024;
    let (off, got_off) = run_with(seed, link, 0, nodelay, total);
    let (on, got_on) = run_on(seed, link, TSO_MAX, nodelay, device_tso, total);
    assert!(got_off == pattern(0, total) && got_on == got_off);
    let used = if device_tso {
        on.counter(0, "tcp.tso_offloaded")
    } else {
        on.counter(0, "tcp.tso_bursts")
    };
    assert!(used > 0, "TSO was used: {used} segments");
    if device_tso {
        assert_eq!(
            on.counter(0, "device.tx_gso_frames"),
            on.counter(0, "tcp.tso_offloaded")
        );
    }
    assert_eq!(off.counter(0, "tcp.tso_bursts"), 0);
    let (a, b) = (sent_by_host0(&off), sent_by_host0(&on));
    let brief = |f: &Vec<u8>| {
        let seq = u32::from_be_bytes([f[38], f[39], f[40], f[41]]);
        format!(
            "seq {seq} len {} flags {:#x}",
            f.len() - 34 - (f[46] >> 4) as usize * 4,
            f[47]
        )
    };
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            x == y,
            "segment {i} differs: off {} / on {}\n off {x:02x?}\n on  {y:02x?}",
            brief(x),
            brief(y)
        );
    }
    assert_eq!(a.len(), b.len(), "as many wire segments either way");
    eprintln!(
        "{} wire segments identical; {} TSO segments cut into {} pieces",
        a.len(),
        on.counter(0, "tcp.tso_bursts"),
        on.counter(0, "tcp.tso_segments")
    );
}

#[test]
fn tso_output_equals_mss_output_segment_by_segment() {
    compare(7, LinkConfig::default(), false);
}

/// The device segments (the kernel's GSO rules, `device::gso::segment`): the wire is
/// still what MSS output sends.
#[test]
fn device_segmented_tso_equals_mss_output_segment_by_segment() {
    compare_on(7, LinkConfig::default(), false, true);
}

#[test]
fn device_segmented_tso_equals_mss_output_under_loss() {
    let link = LinkConfig {
        loss: 0.01,
        ..Default::default()
    };
    compare_on(9, link, false, true);
}

#[test]
fn tso_output_equals_mss_output_with_nodelay() {
    compare(8, LinkConfig::default(), true);
}

/// The same under loss: with one seed the link drops the same frames in both runs, so
/// the recovery (and every retransmission) must match too.
#[test]
fn tso_output_equals_mss_output_under_loss() {
    let link = LinkConfig {
        loss: 0.01,
        ..Default::default()
    };
    compare(9, link, false);
}

/// Under loss, reordering and duplication a TSO sender still delivers every byte.
#[test]
fn tso_transfer_with_loss_delivers_every_byte() {
    let link = LinkConfig {
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(2),
        loss: 0.02,
        duplicate: 0.01,
        ..Default::default()
    };
    let total = 4 * 1024 * 1024;
    let (sim, got) = run(11, link, TSO_MAX, total);
    assert!(got == pattern(0, total), "bytes differ");
    assert!(sim.counter(0, "tcp.tso_bursts") > 0);
    assert!(
        sim.counter(0, "tcp.retransmits") > 0,
        "the loss was repaired"
    );
}
