//! `TCP_INFO` in Linux's `struct tcp_info` layout (what packetdrill, built on Linux,
//! reads for a script's Python blocks: `tcpi_state`, `tcpi_options`, the window
//! scales), filled from the stack's [`xstack::TcpInfo`].

use xstack::TcpInfo;

/// Linux's `tcpi_state` values (`include/net/tcp_states.h`).
pub fn linux_state(name: &str) -> u8 {
    match name {
        "ESTABLISHED" => 1,
        "SYN_SENT" => 2,
        "SYN_RECEIVED" => 3,
        "FIN_WAIT_1" => 4,
        "FIN_WAIT_2" => 5,
        "TIME_WAIT" => 6,
        "CLOSE_WAIT" => 8,
        "LAST_ACK" => 9,
        "LISTEN" => 10,
        "CLOSING" => 11,
        // CLOSED, and a socket neither listening nor connected.
        _ => 7,
    }
}

/// Linux's `tcpi_options` bits.
const TCPI_OPT_TIMESTAMPS: u8 = 1;
const TCPI_OPT_SACK: u8 = 2;
const TCPI_OPT_WSCALE: u8 = 4;
const TCPI_OPT_ECN: u8 = 8;

/// The bytes of a Linux `struct tcp_info` for a socket in `state` (a Linux state
/// number), with the connection's details when it has one. Fields the stack has no
/// counterpart for stay zero.
pub fn encode(state: u8, info: Option<&TcpInfo>) -> Vec<u8> {
    // SAFETY: `tcp_info` is plain old data (integers only); all-zero is a valid value.
    let mut t: libc::tcp_info = unsafe { std::mem::zeroed() };
    t.tcpi_state = state;
    if let Some(i) = info {
        fill(&mut t, i);
    }
    let size = std::mem::size_of::<libc::tcp_info>();
    // SAFETY: `t` is a live, initialised value of `size` bytes with no padding that
    // matters (zeroed above), read as bytes for the copy.
    unsafe { std::slice::from_raw_parts((&raw const t).cast::<u8>(), size) }.to_vec()
}

fn fill(t: &mut libc::tcp_info, i: &TcpInfo) {
    let mut opts = 0;
    if i.timestamps {
        opts |= TCPI_OPT_TIMESTAMPS;
    }
    if i.sack {
        opts |= TCPI_OPT_SACK;
    }
    if let Some((ours, theirs)) = i.wscale {
        opts |= TCPI_OPT_WSCALE;
        // Bit fields `tcpi_snd_wscale : 4, tcpi_rcv_wscale : 4`, low bits first.
        t.tcpi_snd_rcv_wscale = (theirs & 0xf) | (ours & 0xf) << 4;
    }
    if i.ecn {
        opts |= TCPI_OPT_ECN;
    }
    t.tcpi_options = opts;
    t.tcpi_retransmits = i.retransmits.min(255) as u8;
    t.tcpi_rto = i.rto_us.min(u32::MAX.into()) as u32;
    t.tcpi_snd_mss = i.mss;
    t.tcpi_rcv_mss = i.mss;
    t.tcpi_rtt = i.srtt_us.min(u32::MAX.into()) as u32;
    t.tcpi_rttvar = i.rttvar_us.min(u32::MAX.into()) as u32;
    let mss = i.mss.max(1);
    t.tcpi_snd_cwnd = i.cwnd / mss;
    t.tcpi_snd_ssthresh = i.ssthresh / mss;
    t.tcpi_total_retrans = i.retransmits.min(u32::MAX.into()) as u32;
    t.tcpi_advmss = i.mss;
    t.tcpi_rcv_space = i.rcv_wnd;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_options_land_where_linux_puts_them() {
        let info = TcpInfo {
            state: "ESTABLISHED",
            wscale: Some((6, 7)),
            timestamps: true,
            sack: true,
            mss: 1460,
            cwnd: 14600,
            ..TcpInfo::default()
        };
        let b = encode(linux_state(info.state), Some(&info));
        assert_eq!(b.len(), std::mem::size_of::<libc::tcp_info>());
        // Offsets of Linux's struct: state, ca_state, retransmits, probes, backoff,
        // options, wscales; then u32 fields from offset 8 (rto), snd_mss at 16.
        assert_eq!(b[0], 1);
        assert_eq!(b[5], TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE);
        assert_eq!(b[6], 7 | 6 << 4);
        assert_eq!(u32::from_ne_bytes(b[16..20].try_into().unwrap()), 1460);
        assert_eq!(encode(linux_state("LISTEN"), None)[0], 10);
        assert_eq!(linux_state("CLOSED"), 7);
    }
}
