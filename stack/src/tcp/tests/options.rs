//! Option negotiation: MSS (RFC 9293 §3.7.1), window scaling and timestamps with PAWS and
//! RTTM (RFC 7323), SACK-permitted (RFC 2018).

use super::harness::*;
use crate::tcp::segment::OptionLayout;

/// Everything on, with a buffer that needs a window shift of 3.
fn cfg_all() -> TcpConfig {
    TcpConfig {
        rcvbuf: 256 * 1024,
        window_scaling: true,
        timestamps: true,
        sack: true,
        ..cfg()
    }
}

/// Our TSval at `ms` after the connection was created (RFC 7323 §5.4: a per-connection
/// random offset; ours is derived from the ISS).
fn tsval(ms: u32) -> u32 {
    OUR_ISS.0.rotate_left(13).wrapping_add(ms)
}

// ---------------------------------------------------------------- MSS

// RFC 9293 §3.7.1: "the MSS value to be sent in an MSS Option must be less than or equal
// to: MMS_R - 20" -- our configured MSS (interface MTU - 40).
#[test]
fn our_syn_offers_the_configured_mss() {
    let mut c = Conn::connect(TcpConfig { mss: 1400, ..cfg() });
    recv!(c, our_syn().mss(1400));
}

// RFC 9293 §3.7.1: "Eff.snd.MSS = min(SendMSS+20, MMS_S) - TCPhdrsize - IPoptionsize":
// the peer's MSS, never more than ours.
#[test]
fn send_mss_is_clamped_to_ours() {
    for (offered, want) in [(Some(9000u16), 1460usize), (Some(1000), 1000), (None, 536)] {
        let mut synack = seg(PEER_ISS).ack(OUR_ISS + 1).flags(F::SYN).win(PEER_WIN);
        synack.options.mss = offered;
        let mut c = established_with(cfg(), synack);
        assert_eq!(c.tcb.t_maxseg() as usize, want, "peer MSS {offered:?}");
        c.tcb.set_nodelay(true);
        c.write(&pattern(0, 2 * want + 1));
        let out = c.output();
        let lens: Vec<usize> = out.iter().map(|s| s.payload.len()).collect();
        assert_eq!(lens, vec![want, want, 1], "peer MSS {offered:?}");
    }
}

// ---------------------------------------------------------------- window scaling

// RFC 7323 §2.2: "The window field in a segment where the SYN bit is set (i.e., a <SYN>
// or <SYN,ACK>) MUST NOT be scaled." and §2.3 "the shift count ... applied to the window
// of every segment after the SYN".
#[test]
fn window_scaling_when_both_offer_it() {
    let mut c = Conn::connect(TcpConfig {
        timestamps: false,
        sack: false,
        ..cfg_all()
    });
    recv!(c, our_syn().win(65535).wscale(3));
    send!(c, peer_syn().ack(OUR_ISS + 1).win(1000).wscale(2));
    assert_eq!(c.tcb.snd_wnd(), 1000, "the SYN,ACK's window is not scaled");
    // Our window field from now on is scaled down by our shift.
    recv!(c, our_ack(0, 0, (262144 >> 3) as u16));
    send!(c, peer_ack(0, 0).win(1000));
    assert_eq!(c.tcb.snd_wnd(), 4000);
    assert_eq!(c.tcb.info().wscale, Some((3, 2)));
}

// RFC 7323 §2.2: "If a Window Scale option is received with a shift.cnt value larger
// than 14, the TCP SHOULD log the error but MUST use 14 instead of the specified value."
#[test]
fn window_scale_above_14_is_taken_as_14() {
    let mut c = syn_sent_with(cfg_all());
    send!(c, peer_syn().ack(OUR_ISS + 1).wscale(15));
    assert_eq!(c.tcb.snd_wscale(), 14);
}

// RFC 7323 §2.2: "If a TCP receives a <SYN> segment containing a Window Scale option, it
// SHOULD send its own Window Scale option in the <SYN,ACK> segment." and §2.3: both
// shifts are 0 unless both sides sent the option.
#[test]
fn no_scaling_unless_the_peer_offers_it() {
    let mut c = Conn::connect(TcpConfig {
        timestamps: false,
        sack: false,
        ..cfg_all()
    });
    recv!(c, our_syn().win(65535).wscale(3));
    send!(c, peer_syn().ack(OUR_ISS + 1).win(1000));
    // Unscaled: the whole 256 KiB cannot be advertised, 65535 is the most.
    recv!(c, our_ack(0, 0, 65535));
    send!(c, peer_ack(0, 0).win(1000));
    assert_eq!(c.tcb.snd_wnd(), 1000);
    assert_eq!(c.tcb.info().wscale, None);
}

#[test]
fn passive_open_answers_window_scale_only_if_offered() {
    let cfg = TcpConfig {
        timestamps: false,
        sack: false,
        ..cfg_all()
    };
    let mut c = Conn::accept(cfg.clone(), peer_syn());
    recv!(c, our_syn().win(65535).ack(PEER_ISS + 1));
    let mut c = Conn::accept(cfg, peer_syn().wscale(7).win(500));
    recv!(c, our_syn().win(65535).wscale(3).ack(PEER_ISS + 1));
    assert_eq!(c.tcb.snd_wnd(), 500, "the SYN's window is not scaled");
    send!(c, peer_ack(0, 0).win(500) => InputOutcome::Established);
    assert_eq!(c.tcb.snd_wnd(), 500 << 7);
}

// ---------------------------------------------------------------- timestamps

// RFC 7323 §3.2: "TSopt MUST be sent in every non-<RST> segment for the duration of the
// connection" once negotiated; §4.3: "TSecr = TS.Recent"; §3.2: the MSS counts the option
// (RFC 9293 §3.7.1).
#[test]
fn timestamps_negotiated_and_echoed() {
    let mut c = Conn::connect(TcpConfig {
        window_scaling: false,
        sack: false,
        ..cfg_all()
    });
    recv!(c, our_syn().win(65535).ts(tsval(0), 0));
    c.advance(Duration::from_millis(10));
    send!(c, peer_syn().ack(OUR_ISS + 1).ts(777, tsval(0)));
    recv!(c, our_ack(0, 0, 65535).ts(tsval(10), 777));
    assert!(c.tcb.ts_enabled());
    assert_eq!(c.tcb.t_maxseg(), 1448);
    // RTTM from the SYN,ACK's echo: 10 ms.
    assert_eq!(c.tcb.rtt().srtt(), Some(Duration::from_millis(10)));
    c.write(&pattern(0, 10));
    recv!(
        c,
        our_ack(0, 0, 65535)
            .flags(F::PSH)
            .bytes(0, 10)
            .ts(tsval(10), 777)
    );
    // RFC 7323 §4.1 RTTM: "RTT = current time - TSecr", here 50 ms; SRTT = 7/8*10 + 50/8.
    c.advance(Duration::from_millis(50));
    send!(c, peer_ack(0, 10).ts(800, tsval(10)));
    assert_eq!(c.tcb.rtt().srtt(), Some(Duration::from_millis(15)));
    // RFC 7323 §4.3 (2): "If SEG.TSval >= TS.Recent and SEG.SEQ =< Last.ACK.sent, then
    // TS.Recent = SEG.TSval".
    assert_eq!(c.tcb.ts_recent(), 800);
}

// RFC 7323 §5.3 R1: "If there is a Timestamps option in the arriving segment, SEG.TSval <
// TS.Recent, and if TS.Recent is valid, then treat the arriving segment as not acceptable:
// Send an acknowledgment in reply as specified in [RFC0793], Page 69 and drop the segment."
#[test]
fn paws_drops_old_timestamps() {
    let mut c = syn_sent_with(TcpConfig {
        window_scaling: false,
        sack: false,
        ..cfg_all()
    });
    send!(c, peer_syn().ack(OUR_ISS + 1).ts(1000, tsval(0)));
    let _ = c.output();
    send!(c, peer_ack(0, 0).ts(999, tsval(0)).bytes(0, 100));
    recv!(c, our_ack(0, 0, 65535).ts(tsval(0), 1000));
    assert_eq!(c.tcb.readable(), 0);
    assert_eq!(c.tcb.stats().drops, 1);
    // The same data with a current TSval is taken; an equal TSval is not "less".
    send!(c, peer_ack(0, 0).ts(1000, tsval(0)).bytes(0, 100));
    assert_eq!(c.read_all(), pattern(0, 100));
    // TSval wraps modulo 2^32 (RFC 7323 §5.2): 0x8000_0000 past TS.Recent is "older".
    send!(
        c,
        peer_ack(100, 0)
            .ts(1000u32.wrapping_add(0x8000_0001), tsval(0))
            .bytes(100, 1)
    );
    assert_eq!(c.tcb.readable(), 0);
}

// RFC 7323 §5.3 R1 applies to "the RST bit is not set" segments only... an RST with an old
// TSval still goes through RFC 5961's checks.
#[test]
fn paws_does_not_apply_to_rst() {
    let mut c = syn_sent_with(TcpConfig {
        window_scaling: false,
        sack: false,
        ..cfg_all()
    });
    send!(c, peer_syn().ack(OUR_ISS + 1).ts(1000, tsval(0)));
    send!(c, seg(PEER_ISS + 1).flags(F::RST).ts(5, 0));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.tcb.error(), Some(TcpError::Reset));
}

// RFC 7323 §4.3: TS.Recent only moves for segments at or before Last.ACK.sent, so a
// segment from beyond a hole does not advance it.
#[test]
fn ts_recent_not_taken_from_out_of_order_segments() {
    let mut c = syn_sent_with(TcpConfig {
        window_scaling: false,
        sack: false,
        ..cfg_all()
    });
    send!(c, peer_syn().ack(OUR_ISS + 1).ts(1000, tsval(0)));
    let _ = c.output();
    send!(c, peer_ack(1000, 0).ts(2000, tsval(0)).bytes(1000, 100));
    assert_eq!(c.tcb.ts_recent(), 1000);
    // Its immediate duplicate ACK still echoes the old TS.Recent (RFC 7323 §4.3 (1)).
    recv!(c, our_ack(0, 0, 65535).ts(tsval(0), 1000));
}

// Timestamps only when both sides offer them.
#[test]
fn no_timestamps_unless_both_offer() {
    let mut c = syn_sent_with(TcpConfig {
        window_scaling: false,
        sack: false,
        ..cfg_all()
    });
    send!(c, peer_syn().ack(OUR_ISS + 1));
    recv!(c, our_ack(0, 0, 65535));
    assert!(!c.tcb.ts_enabled());
    assert_eq!(c.tcb.t_maxseg(), 1460);
    // Passive, peer offers, we do not.
    let mut c = Conn::accept(cfg(), peer_syn().ts(5, 0));
    recv!(c, our_syn().ack(PEER_ISS + 1));
    // Passive, both offer: the SYN,ACK echoes the SYN's TSval (RFC 7323 §3.2).
    let mut c = Conn::accept(
        TcpConfig {
            window_scaling: false,
            sack: false,
            ..cfg_all()
        },
        peer_syn().ts(5, 0),
    );
    recv!(c, our_syn().win(65535).ack(PEER_ISS + 1).ts(tsval(0), 5));
}

// ---------------------------------------------------------------- SACK-permitted

// RFC 2018 §2: "This option may be sent in a SYN by a TCP that has been extended to
// receive (and presumably process) the SACK option once the connection has opened. It
// MUST NOT be sent on non-SYN segments."
#[test]
fn sack_permitted_negotiation() {
    let only_sack = TcpConfig {
        window_scaling: false,
        timestamps: false,
        ..cfg_all()
    };
    let mut c = Conn::connect(only_sack.clone());
    recv!(c, our_syn().win(65535).sack_ok());
    send!(c, peer_syn().ack(OUR_ISS + 1).sack_ok());
    assert!(c.tcb.sack_ok());
    recv!(c, our_ack(0, 0, 65535));
    let mut c = syn_sent_with(only_sack.clone());
    send!(c, peer_syn().ack(OUR_ISS + 1));
    assert!(!c.tcb.sack_ok());
    // Passive: answered only when offered, and only if configured.
    let mut c = Conn::accept(only_sack.clone(), peer_syn().sack_ok());
    recv!(c, our_syn().win(65535).ack(PEER_ISS + 1).sack_ok());
    let mut c = Conn::accept(only_sack, peer_syn());
    recv!(c, our_syn().win(65535).ack(PEER_ISS + 1));
    let mut c = Conn::accept(cfg(), peer_syn().sack_ok());
    recv!(c, our_syn().ack(PEER_ISS + 1));
    assert!(!c.tcb.sack_ok());
}

// Everything at once, the way Linux sends its SYN.
#[test]
fn all_options_together() {
    let mut c = Conn::connect(cfg_all());
    recv!(c, our_syn().win(65535).wscale(3).sack_ok().ts(tsval(0), 0));
    send!(
        c,
        peer_syn()
            .ack(OUR_ISS + 1)
            .wscale(7)
            .sack_ok()
            .ts(1, tsval(0))
    );
    recv!(c, our_ack(0, 0, 32768).ts(tsval(0), 1));
    let i = c.tcb.info();
    assert_eq!(
        (i.wscale, i.timestamps, i.sack, i.mss),
        (Some((3, 7)), true, true, 1448)
    );
}

// ---------------------------------------------------------------- layout

/// FreeBSD's settings: its option layout and the window shift its 2 MB socket-buffer
/// limit gives.
fn freebsd() -> TcpConfig {
    TcpConfig {
        option_layout: OptionLayout::FreeBsd,
        window_shift: Some(6),
        ..cfg_all()
    }
}

// A packet-level suite written for FreeBSD expects its SYN byte for byte:
// <mss 1460,nop,wscale 6,sackOK,TS val .. ecr 0>, then <nop,nop,TS> on data.
#[test]
fn freebsd_layout_and_window_shift() {
    let mut c = Conn::connect(freebsd());
    let syn = c.output().remove(0);
    let bytes = wire(&syn);
    let opts = &bytes[20..];
    assert_eq!(&opts[..10], &[2, 4, 0x05, 0xb4, 1, 3, 3, 6, 4, 2]);
    assert_eq!(&opts[10..12], &[8, 10]);
    assert_eq!(opts.len(), 20);
    // The peer agrees to everything: data segments carry <nop,nop,TS>.
    let synack = seg(PEER_ISS)
        .ack(OUR_ISS + 1)
        .flags(F::SYN | F::ACK)
        .win(PEER_WIN)
        .mss(1460)
        .wscale(7)
        .sack_ok()
        .ts(1, tsval(0));
    send!(c, synack);
    c.write(b"x");
    let out = c.output();
    let data = out.iter().find(|s| !s.payload.is_empty()).expect("data");
    let bytes = wire(data);
    assert_eq!(&bytes[20..24], &[1, 1, 8, 10]);
    assert_eq!(bytes.len(), 20 + 12 + 1);
    // Linux's layout for the same SYN differs, and the shift follows the buffer there.
    let lsyn = Conn::connect(cfg_all()).output().remove(0);
    assert_ne!(&wire(&lsyn)[20..], opts);
    assert_eq!(
        (syn.options.wscale, lsyn.options.wscale),
        (Some(6), Some(3))
    );
}

// FreeBSD's tcp_mss rounds both buffers up to a multiple of the MSS the handshake fixed
// (65,536 -> 65,700 with 1,460); off, they stay as configured.
#[test]
fn buffers_rounded_to_the_mss_when_asked() {
    for (round, want) in [(true, (33_580, 65_700)), (false, (32_768, 65_536))] {
        let mut c = Conn::connect(TcpConfig {
            sndbuf: 32_768,
            rcvbuf: 65_536,
            round_buffers_to_mss: round,
            ..cfg_all()
        });
        c.output();
        let synack = seg(PEER_ISS)
            .ack(OUR_ISS + 1)
            .flags(F::SYN | F::ACK)
            .win(PEER_WIN)
            .mss(1460)
            .ts(1, tsval(0));
        send!(c, synack);
        let cfg = c.tcb.config();
        assert_eq!((cfg.sndbuf, cfg.rcvbuf), want, "round {round}");
    }
}
