//! SACK (RFC 2018) and D-SACK (RFC 2883) on the wire: the blocks our ACKs carry as a
//! receiver, and the sender's scoreboard fed by the peer's blocks.

use super::harness::*;

const W: u16 = RCVBUF as u16;
const M: u32 = MSS as u32;

fn sack_cfg() -> TcpConfig {
    TcpConfig {
        sack: true,
        ..cfg()
    }
}

/// ESTABLISHED with SACK negotiated (no timestamps, so up to 4 blocks fit).
fn sack_established() -> Conn {
    let c = established_cfg(sack_cfg(), peer_syn().ack(OUR_ISS + 1).sack_ok());
    assert!(c.tcb.sack_ok());
    c
}

/// The peer's sequence number at stream offset `off`.
fn p(off: u32) -> Seq {
    PEER_ISS + 1 + off
}

/// Our sequence number at stream offset `off`.
fn o(off: u32) -> Seq {
    OUR_ISS + 1 + off
}

/// 100 bytes of peer data at offset `off`.
fn data_at(off: u32) -> Seg {
    peer_ack(off, 0).bytes(off as usize, 100)
}

// RFC 2018 §4: "If sent at all, SACK options SHOULD be included in all ACKs which do not
// ACK the highest sequence number in the data receiver's queue." and "The first SACK block
// ... MUST specify the contiguous block of data containing the segment which triggered
// this ACK". RFC 2018 §3: 4 blocks without other options.
#[test]
fn out_of_order_data_is_sacked_most_recent_first() {
    let mut c = sack_established();
    send!(c, data_at(1000));
    recv!(c, our_ack(0, 0, W).sack(p(1000), p(1100)));
    send!(c, data_at(2000));
    recv!(
        c,
        our_ack(0, 0, W)
            .sack(p(2000), p(2100))
            .sack(p(1000), p(1100))
    );
    // Extending an older block makes it the most recent one.
    send!(c, data_at(1100));
    recv!(
        c,
        our_ack(0, 0, W)
            .sack(p(1000), p(1200))
            .sack(p(2000), p(2100))
    );
    for off in [3000, 4000, 5000] {
        send!(c, data_at(off));
        let _ = c.output();
    }
    // Five blocks held, four reported: the most recent first, the oldest left out.
    recv_nothing!(c);
    send!(c, data_at(6000));
    recv!(
        c,
        our_ack(0, 0, W)
            .sack(p(6000), p(6100))
            .sack(p(5000), p(5100))
            .sack(p(4000), p(4100))
            .sack(p(3000), p(3100))
    );
    // Filling the first hole advances the ACK; the rest stay SACKed.
    send!(c, peer_ack(0, 0).bytes(0, 1000));
    recv!(
        c,
        our_ack(0, 1200, W - 1200)
            .sack(p(6000), p(6100))
            .sack(p(5000), p(5100))
            .sack(p(4000), p(4100))
            .sack(p(3000), p(3100))
    );
}

// RFC 2018 §3: "a SACK option that specifies n blocks will have a length of 8*n+2 bytes, so
// the 40 bytes available for TCP options can specify a maximum of 4 blocks. It is expected
// that SACK will often be used in conjunction with the Timestamp option ... which takes an
// additional 10 bytes (plus two bytes of padding); thus a maximum of 3 SACK blocks will be
// allowed in this case."
#[test]
fn three_blocks_with_timestamps() {
    let cfg = TcpConfig {
        timestamps: true,
        ..sack_cfg()
    };
    let mut c = established_cfg(
        cfg,
        peer_syn().ack(OUR_ISS + 1).sack_ok().ts(1, our_tsval(0)),
    );
    for off in [1000, 2000, 3000, 4000] {
        send!(c, data_at(off).ts(2, our_tsval(10)));
    }
    let out = c.output();
    let last = out.last().expect("an ACK");
    assert_eq!(
        last.options.sack(),
        &[(p(4000), p(4100)), (p(3000), p(3100)), (p(2000), p(2100))]
    );
}

// RFC 2883 §4: "A D-SACK block is only used to report a duplicate contiguous sequence of
// data received by the receiver in the most recent packet"; "Each duplicate contiguous
// sequence of data received is reported in at most one D-SACK block".
#[test]
fn dsack_for_a_duplicate_below_the_cumulative_ack() {
    let mut c = sack_established();
    send!(c, peer_ack(0, 0).bytes(0, 100));
    c.fire(); // the delayed ACK
    recv!(c, our_ack(0, 100, W - 100));
    send!(c, peer_ack(0, 0).bytes(0, 100));
    recv!(c, our_ack(0, 100, W - 100).sack(p(0), p(100)));
    // Reported once: the next ACK has no D-SACK.
    send!(c, data_at(1000));
    recv!(c, our_ack(0, 100, W - 100).sack(p(1000), p(1100)));
    // A partial duplicate: only its old part is reported.
    send!(c, peer_ack(50, 0).bytes(50, 100));
    recv!(
        c,
        our_ack(0, 150, W - 150)
            .sack(p(50), p(100))
            .sack(p(1000), p(1100))
    );
}

// RFC 2883 §4: "If the D-SACK block reports a duplicate contiguous sequence from a (possibly
// larger) block of data in the receiver's data queue above the cumulative acknowledgement,
// then the second SACK block in that SACK option should specify that (possibly larger)
// block of data."
#[test]
fn dsack_for_a_duplicate_inside_an_out_of_order_block() {
    let mut c = sack_established();
    send!(c, data_at(1000));
    send!(c, data_at(1100));
    send!(c, data_at(3000));
    let _ = c.output();
    send!(c, data_at(1000));
    recv!(
        c,
        our_ack(0, 0, W)
            .sack(p(1000), p(1100))
            .sack(p(1000), p(1200))
            .sack(p(3000), p(3100))
    );
}

// Without SACK negotiated, no blocks and no D-SACK.
#[test]
fn no_blocks_without_sack_permitted() {
    let mut c = established_cfg(sack_cfg(), peer_syn().ack(OUR_ISS + 1));
    assert!(!c.tcb.sack_ok());
    send!(c, data_at(1000));
    recv!(c, our_ack(0, 0, W));
}

/// Established with SACK, nodelay, `n` segments queued and the first 10 (IW) sent.
fn sack_flight(n: usize) -> Conn {
    let mut c = sack_established();
    c.tcb.set_nodelay(true);
    c.write(&pattern(0, n * MSS));
    assert_eq!(c.output().len(), 10);
    c
}

// RFC 6675 §4 Update(): "each octet that is cumulatively ACKed or SACKed should be marked
// accordingly in the scoreboard data structure, and the total number of octets SACKed
// should be recorded."
#[test]
fn scoreboard_follows_the_peers_blocks() {
    let mut c = sack_flight(10);
    send!(c, peer_ack(0, 0).sack(o(2 * M), o(3 * M)));
    assert_eq!(c.tcb.sb().ranges(), &[(o(2 * M), o(3 * M))]);
    send!(
        c,
        peer_ack(0, 0)
            .sack(o(5 * M), o(7 * M))
            .sack(o(2 * M), o(4 * M))
    );
    assert_eq!(
        c.tcb.sb().ranges(),
        &[(o(2 * M), o(4 * M)), (o(5 * M), o(7 * M))]
    );
    // A cumulative ACK removes what it covers.
    send!(c, peer_ack(0, 3 * M).sack(o(5 * M), o(7 * M)));
    assert_eq!(
        c.tcb.sb().ranges(),
        &[(o(3 * M), o(4 * M)), (o(5 * M), o(7 * M))]
    );
    // Bogus blocks (beyond what we sent, or below snd_una but not a D-SACK's shape) are
    // ignored and counted; they are not duplicate ACKs either.
    let dupacks = c.tcb.dupacks();
    send!(c, peer_ack(0, 3 * M).sack(o(20 * M), o(21 * M)));
    assert_eq!(c.tcb.stats().bad_sacks, 1);
    assert_eq!(
        c.tcb.dupacks(),
        dupacks + 1,
        "a plain RFC 5681 duplicate still counts"
    );
    send!(c, peer_ack(0, 3 * M).win(1000).sack(o(9 * M), o(11 * M)));
    assert_eq!(c.tcb.stats().bad_sacks, 2);
    assert_eq!(
        c.tcb.dupacks(),
        dupacks + 1,
        "new window, nothing newly SACKed: no duplicate"
    );
    assert_eq!(
        c.tcb.sb().ranges(),
        &[(o(3 * M), o(4 * M)), (o(5 * M), o(7 * M))]
    );
    // Everything acknowledged: the scoreboard empties.
    send!(c, peer_ack(0, 10 * M));
    assert!(c.tcb.sb().is_empty());
}

// RFC 2883 §4 (sender side): a first block below the cumulative ACK, or contained in the
// second block, is a D-SACK; it reports a duplicate, not newly received data.
#[test]
fn dsack_blocks_are_counted_not_scored() {
    let mut c = sack_flight(10);
    send!(c, peer_ack(0, 2 * M).sack(o(0), o(M)));
    assert_eq!(c.tcb.stats().dsacks, 1);
    assert!(c.tcb.sb().is_empty());
    send!(
        c,
        peer_ack(0, 2 * M)
            .sack(o(5 * M), o(6 * M))
            .sack(o(4 * M), o(7 * M))
    );
    assert_eq!(c.tcb.stats().dsacks, 2);
    assert_eq!(c.tcb.sb().ranges(), &[(o(4 * M), o(7 * M))]);
}

// RFC 6675 §2: with SACK a duplicate ACK is also "a segment that arrives carrying a SACK
// block that identifies previously unacknowledged and un-SACKed octets between HighACK and
// HighData" -- even when its window differs.
#[test]
fn new_sack_information_makes_a_duplicate() {
    let mut c = sack_flight(10);
    send!(c, peer_ack(0, 0).win(60000).sack(o(M), o(2 * M)));
    assert_eq!(c.tcb.dupacks(), 1);
    // The same block again with yet another window: nothing new, not a duplicate.
    send!(c, peer_ack(0, 0).win(50000).sack(o(M), o(2 * M)));
    assert_eq!(c.tcb.dupacks(), 1);
}

// CVE-2019-11478: a receiver SACKing 1-byte blocks with 1-byte gaps would make the
// scoreboard (and the work per ACK) grow with every ACK. It stops at `sack_max_holes`,
// the extra blocks are ignored and counted, and the connection still delivers its data
// and closes once the peer acknowledges.
#[test]
fn one_byte_sack_blocks_stay_bounded_and_the_connection_completes() {
    let cfg = TcpConfig {
        sack_max_holes: 32,
        ..sack_cfg()
    };
    let mut c = established_cfg(cfg, peer_syn().ack(OUR_ISS + 1).sack_ok());
    let bounds = c.tcb.config().bounds.clone();
    c.write(&pattern(0, 10 * M as usize));
    let sent: usize = c.output().iter().map(|s| s.payload.len()).sum();
    assert_eq!(sent, 10 * M as usize);
    for k in 0..100u32 {
        let mut ack = peer_ack(0, 0);
        for b in 0..4 {
            let off = 2 * (4 * k + b) + 1;
            ack = ack.sack(o(off), o(off + 1));
        }
        send!(c, ack);
        let _ = c.output();
        assert!(c.tcb.sb().ranges().len() <= 32);
    }
    assert_eq!(c.tcb.sb().ranges().len(), 32);
    let refused = bounds.counters().snapshot();
    assert!(
        refused.contains(&("tcp.sack_refused_conn_limit", 400 - 32)),
        "{refused:?}"
    );
    send!(c, peer_ack(0, 10 * M));
    assert!(c.tcb.sb().ranges().is_empty());
    assert_eq!(bounds.load(crate::tcp::bounds::Gauge::SackHoles), 0);
    c.tcb.close(c.now);
    let out = c.output();
    assert!(out.iter().any(|s| s.flags.contains(F::FIN)), "{out:?}");
    send!(c, peer_ack(0, 10 * M + 1));
    assert_eq!(c.state(), State::FinWait2);
}
