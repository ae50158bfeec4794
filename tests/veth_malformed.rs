//! Malformed frames sent by Linux from a raw AF_PACKET socket reach the stack (the XDP
//! program steers anything addressed to its IP) and are each dropped and counted under
//! their own name; the stack keeps answering afterwards.

mod common;

use common::*;

/// Python sender: builds each malformed frame to the stack's MAC and sends it `n` times.
const SENDER: &str = r#"
import socket, struct, sys
iface, dst_mac, n = sys.argv[1], bytes.fromhex(sys.argv[2].replace(':', '')), int(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
src_mac = s.getsockname()[4]
me, peer = socket.inet_aton('198.18.0.1'), socket.inet_aton('198.18.0.2')

def csum(b):
    if len(b) % 2: b += b'\0'
    t = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while t >> 16: t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff

def ip(payload, proto=1, total=None, vihl=0x45, frag=0x4000, fix=True, bad_sum=False):
    total = 20 + len(payload) if total is None else total
    h = struct.pack('!BBHHHBBH4s4s', vihl, 0, total, 1, frag, 64, proto, 0, peer, me)
    c = csum(h) if fix else 0
    if bad_sum: c ^= 0x5555
    return h[:10] + struct.pack('!H', c) + h[12:] + payload

def icmp_echo(data=b'abcdefgh', bad=False):
    m = struct.pack('!BBHHH', 8, 0, 0, 0x77, 1) + data
    c = csum(m) ^ (0x1111 if bad else 0)
    return m[:2] + struct.pack('!H', c) + m[4:]

def tcp_data(bad=False):
    # ACK with 8 bytes of data to port 80: an LRO candidate but for its checksum, which
    # (no CSUM_DATA_VALID from the device) TCP input must verify, drop and count.
    h = struct.pack('!HHIIBBHHH', 40000, 80, 1, 1, 5 << 4, 0x10, 1000, 0, 0) + b'abcdefgh'
    c = csum(peer + me + struct.pack('!BBH', 0, 6, len(h)) + h) ^ (0x2222 if bad else 0)
    return h[:16] + struct.pack('!H', c) + h[18:]

eth = lambda t: dst_mac + src_mac + struct.pack('!H', t)
arp_bad_htype = struct.pack('!HHBBH6s4s6s4s', 6, 0x0800, 6, 4, 1, src_mac, peer, b'\0' * 6, me)
frames = {
    'ip.drop_bad_checksum': eth(0x0800) + ip(icmp_echo(), bad_sum=True),
    'ip.drop_truncated': eth(0x0800) + ip(icmp_echo(), total=400),
    'ip.drop_bad_header': eth(0x0800) + ip(icmp_echo(), vihl=0x44),
    'ip.drop_fragments': eth(0x0800) + ip(icmp_echo(), frag=0x2000),
    'ip.drop_unknown_protocol': eth(0x0800) + ip(b'x' * 16, proto=253),
    'icmp.drop_bad_checksum': eth(0x0800) + ip(icmp_echo(bad=True)),
    'icmp.drop_truncated': eth(0x0800) + ip(b'\x08\0\0\0'),
    'arp.drop_malformed': eth(0x0806) + arp_bad_htype,
    'tcp.drop_bad_checksum': eth(0x0800) + ip(tcp_data(bad=True), proto=6),
}
for name, f in frames.items():
    for _ in range(n):
        s.send(f)
print(' '.join(frames))
"#;

#[test]
fn malformed_frames_are_dropped_and_counted() {
    if !require_root() || !require_tool("python3") {
        return;
    }
    let pair = VethPair::new("malformed", 1);
    let stack = pair.spawn_stack(&[]);
    // Make sure ARP is settled and the stack answers before the junk.
    pair.ping(STACK_ADDR, 3, "0.05", None).assert_all(3);

    let link = pair.stack_link();
    let mac = link
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("stack MAC in ip link output")
        .to_string();
    const N: u64 = 5;
    let out = pair.exec_peer(["python3", "-c", SENDER, PEER_IF, &mac, &N.to_string()]);
    let sent = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "sender failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Still alive and answering.
    pair.ping(STACK_ADDR, 5, "0.05", None).assert_all(5);
    let (status, json) = stack.stop(libc::SIGTERM);
    assert!(status.success(), "stack exit {status:?}");
    for name in sent.split_whitespace() {
        let got = json["counters"][name].as_u64().unwrap_or(u64::MAX);
        assert_eq!(got, N, "counter {name}: {json}");
    }
    // The valid pings were all answered; nothing else was.
    assert_eq!(
        json["counters"]["icmp.echo_replies_tx"].as_u64(),
        Some(8),
        "{json}"
    );
}
