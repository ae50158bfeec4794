//! Settings that make the stack answer as FreeBSD does where RFC 9293 leaves a choice
//! (what the conformance suite's `--profile freebsd` turns on): the FIN carried by every
//! ACK while unacknowledged, RFC 1337 in TIME-WAIT, FreeBSD's TIME-WAIT checks, ECN on a
//! retransmitted SYN.

use super::harness::*;
use crate::tcp::TimeWaitInput;

const W: u16 = RCVBUF as u16;

// FreeBSD's tcp_output: "If we are doing a retransmission of FIN, back up snd_nxt" --
// an ACK sent while our FIN is outstanding carries it again, at the FIN's sequence
// number. A challenge ACK (RFC 5961, FreeBSD's tcp_respond) stays a bare ACK.
#[test]
fn fin_with_every_ack_rides_on_acks_but_not_on_challenge_acks() {
    let mut c = fin_wait_1();
    std::sync::Arc::make_mut(&mut c.tcb.cfg).fin_with_every_ack = true;
    // An out-of-window segment is answered by tcp_output: the FIN again.
    send!(c, peer_ack(100_000, 0));
    recv!(c, our_ack(0, 0, W).flags(F::FIN));
    // A SYN in the window gets a challenge ACK: bare, at SND.NXT.
    send!(c, seg(PEER_ISS + 1).flags(F::SYN).win(PEER_WIN));
    recv!(c, our_ack(1, 0, W));
    // So does a SYN outside the window (RFC 5961 §4.2: "whatever its sequence number").
    send!(c, seg(PEER_ISS + 100_000).flags(F::SYN).win(PEER_WIN));
    recv!(c, our_ack(1, 0, W));
    // The peer's FIN moves us to CLOSING; its ACK carries our FIN again.
    send!(c, peer_ack(0, 0).flags(F::FIN));
    recv!(c, our_ack(0, 1, W).flags(F::FIN));
    assert_eq!(c.state(), State::Closing);
    // Once acknowledged, no more FIN.
    send!(c, peer_ack(1, 1));
    assert_eq!(c.state(), State::TimeWait);
}

// Off (the default), the same ACK is bare at SND.NXT.
#[test]
fn without_fin_with_every_ack_acks_are_bare() {
    let mut c = fin_wait_1();
    send!(c, peer_ack(100_000, 0));
    recv!(c, our_ack(1, 0, W));
}

// RFC 1337 §3 fix (1): "Ignore RST segments in TIME-WAIT state".
#[test]
fn rfc1337_time_wait_ignores_rst() {
    let mut c = time_wait();
    std::sync::Arc::make_mut(&mut c.tcb.cfg).rfc1337 = true;
    send!(c, seg(PEER_ISS + 2).flags(F::RST));
    assert_eq!(c.state(), State::TimeWait);
    recv_nothing!(c);
}

// FreeBSD's tcp_twcheck: no ACK, no answer (a SYN that does not reopen included); RSTs
// ignored; anything but a duplicate of the last ACK is acknowledged at once.
#[test]
fn freebsd_time_wait_input() {
    let mut c = time_wait();
    std::sync::Arc::make_mut(&mut c.tcb.cfg).time_wait_input = TimeWaitInput::FreeBsd;
    send!(c, seg(PEER_ISS + 2).flags(F::SYN).win(PEER_WIN));
    recv_nothing!(c);
    send!(c, seg(PEER_ISS + 2).flags(F::RST));
    recv_nothing!(c);
    assert_eq!(c.state(), State::TimeWait);
    // A duplicate of the last ACK: nothing.
    send!(c, peer_ack(1, 1));
    recv_nothing!(c);
    // An old ACK (RFC 9293's TIME-WAIT would say nothing: it is in the window).
    send!(c, peer_ack(0, 1));
    recv!(c, our_ack(1, 1, W));
    // A retransmitted FIN: acknowledged, 2 MSL restarted.
    c.advance(Duration::from_secs(30));
    send!(c, peer_ack(0, 1).flags(F::FIN));
    recv!(c, our_ack(1, 1, W));
    assert_eq!(c.timer(TimerKind::TwoMsl), Some(Duration::from_secs(60)));
}

// FreeBSD's `net.inet.tcp.ecn.maxretries`: the first `ecn_syn_retries` retransmitted
// SYNs keep ECE and CWR; later ones drop them (RFC 3168 §6.1.1.1).
#[test]
fn ecn_kept_on_the_first_retransmitted_syns() {
    let mut c = Conn::connect(TcpConfig {
        ecn: true,
        ecn_syn_retries: 1,
        ..cfg()
    });
    recv!(c, our_syn().flags(F::ECE | F::CWR));
    c.fire();
    recv!(c, our_syn().flags(F::ECE | F::CWR));
    c.fire();
    recv!(c, our_syn());
    send!(c, peer_syn().ack(OUR_ISS + 1).flags(F::ECE));
    assert!(!c.tcb.ecn(), "a non-ECN-setup SYN was sent");
}

// FreeBSD's `rexmit_drop_options`: from the configured SYN retransmission on, the SYN
// offers MSS only, and options the SYN,ACK then offers are not taken up.
#[test]
fn syn_options_dropped_after_retransmissions() {
    let mut c = Conn::connect(TcpConfig {
        window_scaling: true,
        timestamps: true,
        sack: true,
        syn_drop_options_after: 2,
        ..cfg()
    });
    let with = |s: &Seg| s.options.wscale.is_some() && s.options.sack_permitted;
    let first = c.output();
    assert!(with(&first[0]), "{first:?}");
    c.fire();
    let second = c.output();
    assert!(with(&second[0]), "{second:?}");
    c.fire();
    let third = c.output();
    let o = &third[0].options;
    assert!(
        o.wscale.is_none() && !o.sack_permitted && o.timestamps.is_none(),
        "{third:?}"
    );
    assert_eq!(o.mss, Some(MSS as u16));
    send!(c, peer_syn().ack(OUR_ISS + 1).wscale(7).sack_ok());
    assert_eq!(c.state(), State::Established);
    assert!(c.tcb.info().wscale.is_none() && !c.tcb.info().sack);
}

// FreeBSD's TCP_NOOPT (`TcpConfig::no_options`): a SYN with no options at all, not even
// MSS; a passive open answers without options and takes up none of the peer's, so the
// send MSS is RFC 9293's default.
#[test]
fn no_options_sends_and_takes_up_none() {
    let noopt = TcpConfig {
        window_scaling: true,
        timestamps: true,
        sack: true,
        no_options: true,
        ..cfg()
    };
    let mut c = Conn::connect(noopt.clone());
    let syn = c.output();
    assert_eq!(syn[0].options.mss, None, "{syn:?}");
    assert!(syn[0].options.wscale.is_none() && !syn[0].options.sack_permitted);

    let mut c = Conn::accept(noopt, peer_syn().mss(1000).wscale(6).sack_ok().ts(100, 0));
    let synack = c.output();
    assert_eq!(synack[0].options.mss, None, "{synack:?}");
    assert!(synack[0].options.timestamps.is_none());
    send!(c, peer_ack(0, 0) => InputOutcome::Established);
    let info = c.tcb.info();
    assert_eq!(info.mss, 536);
    assert!(info.wscale.is_none() && !info.sack && !info.timestamps);
}
