//! The Internet checksum (RFC 1071), one implementation for every protocol.
//!
//! The sum is accumulated 8 bytes at a time into a 64-bit accumulator with end-around
//! carry and folded to 16 bits only at the end (RFC 1071 §2(B): "deferred carries"),
//! which is what makes a software checksum cheap enough to be the fallback for devices
//! without checksum offload.

/// Adds `data` to a running one's-complement sum (not yet folded). Bytes are taken as
/// big-endian 16-bit words; an odd trailing byte is padded with zero (RFC 1071 §4.1).
///
/// The bulk of the buffer is summed as native-endian 32-bit words into two 64-bit
/// accumulators, which cannot overflow for any buffer below 2^34 bytes, so the loop
/// has no carry handling at all; the byte order is fixed once at the end (RFC 1071
/// §2(B): the one's-complement sum is byte-order independent up to a final swap).
#[inline]
pub fn add(sum: u64, data: &[u8]) -> u64 {
    let mut a: u64 = 0;
    let mut b: u64 = 0;
    let mut chunks = data.chunks_exact(16);
    for c in &mut chunks {
        a += u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) as u64;
        b += u32::from_ne_bytes([c[4], c[5], c[6], c[7]]) as u64;
        a += u32::from_ne_bytes([c[8], c[9], c[10], c[11]]) as u64;
        b += u32::from_ne_bytes([c[12], c[13], c[14], c[15]]) as u64;
    }
    let mut rest = chunks.remainder();
    while rest.len() >= 4 {
        a += u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64;
        rest = &rest[4..];
    }
    // Fold the native-order accumulators to 16 bits, then put them in network order.
    let native = fold(a + (b & 0xffff_ffff) + (b >> 32));
    let mut total = sum + u16::from_be(native) as u64;
    if rest.len() >= 2 {
        total += u16::from_be_bytes([rest[0], rest[1]]) as u64;
        rest = &rest[2..];
    }
    if let [x] = rest {
        total += (*x as u64) << 8;
    }
    total
}

/// Folds a 64-bit accumulator to the 16-bit one's-complement sum (not complemented).
#[inline]
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The checksum field value for `data`: the complement of its folded sum.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(add(0, data))
}

/// True when `data`, checksum field included, sums to 0xffff (RFC 1071 §1(3)).
#[inline]
pub fn verify(data: &[u8]) -> bool {
    fold(add(0, data)) == 0xffff
}

/// The IPv4 pseudo-header sum for TCP/UDP (RFC 9293 §3.1, RFC 768), unfolded.
#[inline]
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, l4_len: u16) -> u64 {
    let mut sum = add(0, &src);
    sum = add(sum, &dst);
    sum + protocol as u64 + l4_len as u64
}

/// Incremental update of a checksum field when one 16-bit word changes from `old` to
/// `new` (RFC 1624 §3, eqn. 3: HC' = ~(~HC + ~m + m')).
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check as u32) + (!old as u32) + new as u32;
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Finishes a checksum a device was asked to compute (`CHECKSUM_PARTIAL`, FreeBSD's
/// `CSUM_TCP` with the pseudo-header sum in the field): sums `buf[start..]`, whose field
/// at `start + offset` holds the folded pseudo-header sum, and stores the complement
/// there. This is the software fallback of transmit checksum offload.
///
/// # Panics
/// If the field lies outside `buf`.
#[inline]
pub fn finish_partial(buf: &mut [u8], start: usize, offset: usize) {
    let field = start + offset;
    let c = !fold(add(0, &buf[start..]));
    buf[field..field + 2].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward 16-bit-at-a-time reference.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in data.chunks(2) {
            let w = if pair.len() == 2 {
                u16::from_be_bytes([pair[0], pair[1]])
            } else {
                u16::from_be_bytes([pair[0], 0])
            };
            sum += w as u32;
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn ipv4_header_golden() {
        // A real IPv4 header (checksum 0xb861, the common textbook example).
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(verify(&hdr));
        let mut zeroed = hdr;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(checksum(&zeroed), 0xb861);
    }

    #[test]
    fn matches_reference_on_all_lengths_and_offsets() {
        // A deterministic pseudo-random buffer; every length 0..300 and every start offset
        // 0..8 (alignment must not matter).
        let mut x: u32 = 0x1234_5678;
        let buf: Vec<u8> = (0..400)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for off in 0..8 {
            for len in 0..300 {
                let d = &buf[off..off + len];
                assert_eq!(checksum(d), reference(d), "off {off} len {len}");
            }
        }
    }

    #[test]
    fn all_ones_does_not_overflow() {
        let data = vec![0xffu8; 65535];
        assert_eq!(checksum(&data), reference(&data));
    }

    #[test]
    fn rfc1624_incremental_matches_full_recompute() {
        let mut hdr = [
            0x45u8, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        // Decrement the TTL as a router would: word 4 is TTL|protocol.
        let old = u16::from_be_bytes([hdr[8], hdr[9]]);
        hdr[8] -= 1;
        let new = u16::from_be_bytes([hdr[8], hdr[9]]);
        let inc = update16(0xb861, old, new);
        hdr[10] = 0;
        hdr[11] = 0;
        assert_eq!(inc, checksum(&hdr));
    }

    #[test]
    fn finished_partial_checksum_equals_the_full_one() {
        // A TCP segment whose field holds the pseudo-header sum (what tcp_output writes
        // under CSUM_TCP) finishes to what the full software path writes.
        let (src, dst) = ([198, 18, 0, 1], [198, 18, 0, 2]);
        let mut seg: Vec<u8> = (0..1480u32).map(|i| (i * 7 + 3) as u8).collect();
        seg[16] = 0;
        seg[17] = 0;
        let pseudo = pseudo_header_v4(src, dst, 6, seg.len() as u16);
        let full = !fold(add(pseudo, &seg));
        seg[16..18].copy_from_slice(&fold(pseudo).to_be_bytes());
        let mut frame = vec![0xaau8; 34];
        frame.extend_from_slice(&seg);
        finish_partial(&mut frame, 34, 16);
        assert_eq!(u16::from_be_bytes([frame[50], frame[51]]), full);
    }

    proptest::proptest! {
        /// The 8-bytes-at-a-time sum equals the 16-bit reference for any data and
        /// alignment, and the incremental update equals a full recompute.
        #[test]
        fn sum_matches_reference(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
                                 skip in 0usize..8, word in 0usize..64, new in proptest::prelude::any::<u16>()) {
            let d = &data[skip.min(data.len())..];
            proptest::prop_assert_eq!(checksum(d), reference(d));
            let mut buf = d.to_vec();
            if buf.len() >= 2 {
                let at = (word * 2) % (buf.len() & !1);
                let old_check = checksum(&buf);
                let old = u16::from_be_bytes([buf[at], buf[at + 1]]);
                buf[at..at + 2].copy_from_slice(&new.to_be_bytes());
                let inc = update16(old_check, old, new);
                // RFC 1624: equal up to the two representations of zero.
                let full = checksum(&buf);
                proptest::prop_assert!(inc == full || (inc == 0xffff && full == 0) || (inc == 0 && full == 0xffff),
                    "inc {inc:#x} full {full:#x}");
            }
        }
    }
}
