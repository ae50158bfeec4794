//! Half-close (RFC 9293 §3.6: "a TCP endpoint ... may continue to RECEIVE until told that
//! the remote side has closed"): shutdown(SHUT_WR) and keep receiving, and the reverse.

use super::harness::*;

const W: u16 = RCVBUF as u16;
const M: u32 = MSS as u32;

#[test]
fn shutdown_write_then_receive_everything() {
    let mut c = established();
    c.write(&pattern(0, 500));
    c.tcb.close(c.now); // shutdown(SHUT_WR)
    recv!(c, our_ack(0, 0, W).flags(F::PSH | F::FIN).bytes(0, 500));
    assert_eq!(c.tcb.send(b"more"), Err(UserError::SendClosed));
    send!(c, peer_ack(0, 501));
    assert_eq!(c.state(), State::FinWait2);
    // The peer keeps sending for a while.
    let mut got = Vec::new();
    for i in 0..6u32 {
        send!(c, peer_ack(i * M, 501).bytes(i as usize * MSS, MSS));
        got.extend(c.read_all());
        if i % 2 == 1 {
            recv!(c, our_ack(501, (i + 1) * M, W));
        }
    }
    send!(c, peer_ack(6 * M, 501).flags(F::FIN));
    recv!(c, our_ack(501, 6 * M + 1, W));
    assert_eq!(c.state(), State::TimeWait);
    assert_eq!(got, pattern(0, 6 * MSS));
    let mut b = [0u8; 4];
    assert_eq!(c.tcb.recv(&mut b), Ok(0));
}

// The peer half-closed: we can still send as much as we like (CLOSE-WAIT), reads see the
// end of stream, and our own close finishes the connection.
#[test]
fn peer_half_close_then_we_keep_sending() {
    let mut c = close_wait();
    let mut b = [0u8; 4];
    assert_eq!(c.tcb.recv(&mut b), Ok(0));
    c.tcb.set_nodelay(true);
    c.write(&pattern(0, 3 * MSS));
    recv!(
        c,
        [
            our_ack(0, 1, W).bytes(0, MSS),
            our_ack(M, 1, W).bytes(MSS, MSS),
            our_ack(2 * M, 1, W).flags(F::PSH).bytes(2 * MSS, MSS),
        ]
    );
    send!(c, peer_ack(1, 3 * M));
    c.tcb.close(c.now);
    recv!(c, our_ack(3 * M, 1, W).flags(F::FIN));
    send!(c, peer_ack(1, 3 * M + 1));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.tcb.error(), None);
}

// Data queued in the send buffer when the application shuts down is all sent before the
// FIN, even across several segments and windows.
#[test]
fn fin_waits_for_all_queued_data() {
    let mut c = established();
    send!(c, peer_ack(0, 0).win(2 * M as u16));
    c.write(&pattern(0, 3 * MSS));
    c.tcb.close(c.now);
    recv!(
        c,
        [
            our_ack(0, 0, W).bytes(0, MSS),
            our_ack(M, 0, W).bytes(MSS, MSS)
        ]
    );
    send!(c, peer_ack(0, 2 * M).win(2 * M as u16));
    recv!(
        c,
        our_ack(2 * M, 0, W)
            .flags(F::PSH | F::FIN)
            .bytes(2 * MSS, MSS)
    );
    send!(c, peer_ack(0, 3 * M + 1).win(2 * M as u16));
    assert_eq!(c.state(), State::FinWait2);
}
