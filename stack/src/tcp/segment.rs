//! A TCP segment on the wire: parsing a received one (header, options, checksum) into a
//! [`Segment`], and writing the header of one to send from a [`SegmentOut`].
//!
//! Header fields are read and written through `smoltcp::wire::TcpPacket` (no hand-rolled
//! parsing of what smoltcp already does; see `docs/ARCHITECTURE.md`). The options have
//! their own small parser and writer here, because smoltcp's do not fit:
//! - its SACK parsing keeps at most 3 blocks, dropping a 4th that a peer without
//!   timestamps may legitimately send (RFC 2018 §3: "the 40 bytes available for TCP
//!   options can specify a maximum of 4 blocks");
//! - it accepts a timestamp option of the wrong length as an unknown option, and lets the
//!   caller decide what to do with an End-of-Option-List, where we want every malformed
//!   length to be one error the input path counts (`BadOptions`);
//! - its writer emits options one at a time in the caller's order; we want Linux's exact
//!   32-bit-aligned layout (see [`SegmentOut`]) so captures look like Linux's.
//!
//! Panic contract (as smoltcp's): [`parse`] never panics on any input; [`SegmentOut::emit`]
//! panics only when the caller's buffer is shorter than [`SegmentOut::header_len`].

use std::net::Ipv4Addr;

use bitflags::bitflags;
use smoltcp::wire::{TcpPacket, TcpSeqNumber};

use super::seq::Seq;
use crate::checksum;
use crate::mbuf::CsumFlags;
pub use crate::net::ipv4::Ecn;

/// Length of the TCP header without options.
pub const HEADER_LEN: usize = 20;
/// Most option bytes a header can carry (data offset 15 words = 60 bytes).
pub const MAX_OPTIONS_LEN: usize = 40;
/// Most SACK blocks one option can carry (RFC 2018 §3).
pub const MAX_SACK_BLOCKS: usize = 4;
/// The largest window shift (RFC 7323 §2.3).
pub const MAX_WSCALE: u8 = 14;
/// IP protocol number of TCP, for the pseudo-header.
const IPPROTO_TCP: u8 = 6;

/// Option kinds (RFC 9293 §3.2, RFC 7323, RFC 2018).
mod kind {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WSCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

bitflags! {
    /// The TCP control bits (RFC 9293 §3.1; ECE/CWR from RFC 3168).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct TcpFlags: u8 {
        /// No more data from sender.
        const FIN = 0x01;
        /// Synchronize sequence numbers.
        const SYN = 0x02;
        /// Reset the connection.
        const RST = 0x04;
        /// Push function.
        const PSH = 0x08;
        /// Acknowledgment field is significant.
        const ACK = 0x10;
        /// Urgent pointer field is significant.
        const URG = 0x20;
        /// ECN-Echo (RFC 3168).
        const ECE = 0x40;
        /// Congestion Window Reduced (RFC 3168).
        const CWR = 0x80;
    }
}

/// The order and padding of the options a segment carries. Receivers accept any
/// layout; a test suite written against one stack compares the bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OptionLayout {
    /// Linux's `tcp_options_write`: MSS; SACK-permitted folded into the timestamps'
    /// leading NOPs; NOP,window scale; NOP,NOP,SACK blocks. Every piece 32-bit aligned.
    #[default]
    Linux,
    /// FreeBSD's `tcp_addoptions`: MSS, window scale, SACK-permitted, timestamps, SACK
    /// blocks in that order, each preceded by the NOPs its alignment rule asks for
    /// (window scale at an odd offset, SACK-permitted at an even one, timestamps and
    /// SACK blocks at 2 mod 4), then EOL and zero padding to a multiple of 4.
    FreeBsd,
}

/// The TCP options we understand. Unknown options are skipped on input and never sent.
///
/// Parsing records every option wherever it appears; which ones count is the TCB's call
/// (RFC 9293 §3.2: MSS is only sent on segments with SYN; RFC 7323 §2.2: window scale
/// likewise; an MSS seen on a later segment is still parsed, and ignored by the TCB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// How [`TcpOptions::wire_len`] and emission lay the options out (ignored on input).
    pub layout: OptionLayout,
    /// Maximum segment size (kind 2).
    pub mss: Option<u16>,
    /// Window scale shift count (kind 3). On input it is already clamped to 14, RFC 7323
    /// §2.3: "If a Window Scale option is received with a shift.cnt value larger than 14,
    /// the TCP SHOULD log the error but MUST use 14 instead of the specified value."
    pub wscale: Option<u8>,
    /// SACK permitted (kind 4, RFC 2018).
    pub sack_permitted: bool,
    /// Timestamps (kind 8, RFC 7323): `(TSval, TSecr)`.
    pub timestamps: Option<(u32, u32)>,
    /// SACK blocks (kind 5, RFC 2018): `(left edge, right edge)`; the first
    /// [`n_sack`](Self::n_sack) are valid.
    pub sack_blocks: [(Seq, Seq); MAX_SACK_BLOCKS],
    /// How many of `sack_blocks` are valid (0..=4).
    pub n_sack: u8,
}

impl TcpOptions {
    /// The valid SACK blocks.
    pub fn sack(&self) -> &[(Seq, Seq)] {
        &self.sack_blocks[..(self.n_sack as usize).min(MAX_SACK_BLOCKS)]
    }

    /// Appends a SACK block; false (and nothing changes) when four are already there.
    pub fn push_sack(&mut self, left: Seq, right: Seq) -> bool {
        let n = self.n_sack as usize;
        if n >= MAX_SACK_BLOCKS {
            return false;
        }
        self.sack_blocks[n] = (left, right);
        self.n_sack += 1;
        true
    }

    /// Bytes the options take when emitted (a multiple of 4, at most 40), and how many
    /// SACK blocks fit. SACK blocks that would overflow the 40 bytes are left out, the
    /// last first (the first block is the one RFC 2018 §4 requires); with timestamps
    /// that leaves 3, as RFC 2018 §3 says. See [`OptionLayout`] for the two layouts.
    fn layout(&self) -> (usize, usize) {
        match self.layout {
            OptionLayout::Linux => self.linux_layout(),
            OptionLayout::FreeBsd => {
                let mut n_sack = self.sack().len();
                loop {
                    let len = self.freebsd_emit(None, n_sack);
                    if len <= MAX_OPTIONS_LEN || n_sack == 0 {
                        return (len, n_sack);
                    }
                    n_sack -= 1;
                }
            }
        }
    }

    /// [`OptionLayout::Linux`]: each piece is 32-bit aligned, so no trailing padding is
    /// ever needed.
    fn linux_layout(&self) -> (usize, usize) {
        let mut len = 0;
        if self.mss.is_some() {
            len += 4;
        }
        if self.timestamps.is_some() {
            len += 12;
        } else if self.sack_permitted {
            len += 4;
        }
        if self.wscale.is_some() {
            len += 4;
        }
        let room = (MAX_OPTIONS_LEN - len).saturating_sub(4) / 8;
        let n_sack = self.sack().len().min(room);
        if n_sack > 0 {
            len += 4 + 8 * n_sack;
        }
        (len, n_sack)
    }

    /// [`OptionLayout::FreeBsd`]: writes into `buf` when given (it must be long enough),
    /// and returns the length either way.
    fn freebsd_emit(&self, buf: Option<&mut [u8]>, n_sack: usize) -> usize {
        let mut w = OptWriter { buf, at: 0 };
        // `tcp_addoptions`' alignment rules, on the offset so far (its `optlen`).
        let odd = |l: usize| l % 2 == 1;
        let even = |l: usize| l % 2 == 0;
        let two_mod_four = |l: usize| l % 4 == 2;
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            w.put(&[kind::MSS, 4, m[0], m[1]]);
        }
        if let Some(ws) = self.wscale {
            w.nops_until(false, odd);
            w.put(&[kind::WSCALE, 3, ws]);
        }
        if self.sack_permitted {
            w.nops_until(true, even);
            w.put(&[kind::SACK_PERMITTED, 2]);
        }
        if let Some((tsval, tsecr)) = self.timestamps {
            w.nops_until(false, two_mod_four);
            w.put(&[kind::TIMESTAMPS, 10]);
            w.put(&tsval.to_be_bytes());
            w.put(&tsecr.to_be_bytes());
        }
        if n_sack > 0 {
            w.nops_until(false, two_mod_four);
            w.put(&[kind::SACK, (2 + 8 * n_sack) as u8]);
            for &(l, r) in &self.sack()[..n_sack] {
                w.put(&l.0.to_be_bytes());
                w.put(&r.0.to_be_bytes());
            }
        }
        // "Terminate and pad TCP options to a 4 byte boundary": one EOL, then zeros.
        if w.at % 4 != 0 {
            w.put(&[kind::EOL]);
        }
        while w.at % 4 != 0 {
            w.put(&[0]);
        }
        w.at
    }

    /// Bytes these options take on the wire (see [`SegmentOut`] for the layout).
    pub fn wire_len(&self) -> usize {
        self.layout().0
    }

    /// Writes the options into `buf` (exactly [`wire_len`](Self::wire_len) bytes).
    fn emit(&self, buf: &mut [u8]) {
        let (len, n_sack) = self.layout();
        let buf = &mut buf[..len];
        if self.layout == OptionLayout::FreeBsd {
            self.freebsd_emit(Some(buf), n_sack);
            return;
        }
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            put(&[kind::MSS, 4, m[0], m[1]]);
        }
        if let Some((tsval, tsecr)) = self.timestamps {
            if self.sack_permitted {
                put(&[kind::SACK_PERMITTED, 2, kind::TIMESTAMPS, 10]);
            } else {
                put(&[kind::NOP, kind::NOP, kind::TIMESTAMPS, 10]);
            }
            put(&tsval.to_be_bytes());
            put(&tsecr.to_be_bytes());
        } else if self.sack_permitted {
            put(&[kind::NOP, kind::NOP, kind::SACK_PERMITTED, 2]);
        }
        if let Some(ws) = self.wscale {
            put(&[kind::NOP, kind::WSCALE, 3, ws]);
        }
        if n_sack > 0 {
            put(&[kind::NOP, kind::NOP, kind::SACK, (2 + 8 * n_sack) as u8]);
            for &(l, r) in &self.sack()[..n_sack] {
                put(&l.0.to_be_bytes());
                put(&r.0.to_be_bytes());
            }
        }
    }
}

/// Writes option bytes at a running offset, or only counts them (`buf` is `None`).
struct OptWriter<'a> {
    buf: Option<&'a mut [u8]>,
    at: usize,
}

impl OptWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        if let Some(b) = self.buf.as_deref_mut() {
            b[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        }
        self.at += bytes.len();
    }

    /// NOPs until the next option may start here: where `ok` says, and not at offset
    /// 0 unless `at_start` (FreeBSD's `while (!optlen || !ok(optlen))` and, for
    /// SACK-permitted, `while (!ok(optlen))`).
    fn nops_until(&mut self, at_start: bool, ok: impl Fn(usize) -> bool) {
        while (self.at == 0 && !at_start) || !ok(self.at) {
            self.put(&[kind::NOP]);
        }
    }
}

/// A parsed, validated received segment, borrowing its payload from the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Source port (nonzero).
    pub src_port: u16,
    /// Destination port (nonzero).
    pub dst_port: u16,
    /// SEG.SEQ.
    pub seq: Seq,
    /// SEG.ACK (meaningful only with [`TcpFlags::ACK`]).
    pub ack: Seq,
    /// Control bits.
    pub flags: TcpFlags,
    /// SEG.WND, unscaled as on the wire.
    pub window: u16,
    /// Urgent pointer (meaningful only with [`TcpFlags::URG`]).
    pub urgent: u16,
    /// The options.
    pub options: TcpOptions,
    /// The data.
    pub payload: &'a [u8],
    /// The ECN field of the IP header it arrived in (RFC 3168). The IP glue fills it in;
    /// [`parse`] sees only TCP bytes and leaves it Not-ECT.
    pub ecn: Ecn,
}

impl Segment<'_> {
    /// SEG.LEN: RFC 9293 §3.4 "the number of octets occupied by the data in the segment
    /// (counting SYN and FIN)".
    pub fn seg_len(&self) -> u32 {
        self.payload.len() as u32
            + self.flags.contains(TcpFlags::SYN) as u32
            + self.flags.contains(TcpFlags::FIN) as u32
    }
}

/// Why a received segment was dropped. Never shown to the application: the input path
/// counts each kind in a named counter.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum SegmentError {
    /// Shorter than the 20-byte fixed header.
    #[error("segment shorter than a TCP header")]
    Truncated,
    /// Data offset below 5 words or past the end of the segment.
    #[error("bad TCP data offset")]
    BadDataOffset,
    /// The checksum (pseudo-header included) does not verify.
    #[error("bad TCP checksum")]
    BadChecksum,
    /// An option with a bad length, or one running past the header.
    #[error("malformed TCP options")]
    BadOptions,
    /// A combination of control bits no conforming TCP sends (SYN+RST; SYN+FIN is
    /// dropped by the TCP layer unless `TcpConfig::drop_synfin` is off).
    #[error("impossible TCP flag combination")]
    ImpossibleFlags,
    /// Source or destination port 0.
    #[error("TCP port 0")]
    ZeroPort,
}

/// Parses and validates a received TCP segment.
///
/// `bytes` is exactly the IP payload (header + data); `src`/`dst` are the IP addresses
/// for the pseudo-header. The checksum is verified unless the device already did
/// (`csum` contains [`CsumFlags::DATA_VALID`]). Checks, in order: length, data offset,
/// checksum, ports, flags, options.
///
/// Flags: SYN+RST is rejected. SYN+FIN parses, and the TCP layer drops it unless
/// `TcpConfig::drop_synfin` is off: no conforming TCP sends either, they are the classic
/// scan/evasion probes, and Linux drops SYN+FIN too (`tcp_rcv_state_process`, LISTEN);
/// FreeBSD has `net.inet.tcp.drop_synfin`. RST+FIN is accepted: RFC 9293
/// §3.10.7.4 checks the RST bit ("second") long before the FIN bit ("eighth"), so it is
/// handled as a reset. A segment with no flags at all is accepted too, because the state
/// machine has defined answers for it: RFC 9293 §3.10.7.1 (CLOSED) "An incoming segment
/// not containing a RST causes a RST to be sent in response", and in other states "if
/// the ACK bit is off, drop the segment".
pub fn parse(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    bytes: &[u8],
    csum: CsumFlags,
) -> Result<Segment<'_>, SegmentError> {
    if bytes.len() < HEADER_LEN {
        return Err(SegmentError::Truncated);
    }
    let pkt = TcpPacket::new_unchecked(bytes);
    let header_len = pkt.header_len() as usize;
    if header_len < HEADER_LEN || header_len > bytes.len() {
        return Err(SegmentError::BadDataOffset);
    }
    // From here `pkt.check_len()` would succeed: no accessor panics.

    if !csum.contains(CsumFlags::DATA_VALID) {
        // The pseudo-header length is 16 bits; a longer "segment" cannot come from IPv4
        // unless a device coalesced it, and then it would have set DATA_VALID.
        let l4_len = u16::try_from(bytes.len()).map_err(|_| SegmentError::BadChecksum)?;
        let sum = checksum::pseudo_header_v4(src.octets(), dst.octets(), IPPROTO_TCP, l4_len);
        if checksum::fold(checksum::add(sum, bytes)) != 0xffff {
            return Err(SegmentError::BadChecksum);
        }
    }

    let (src_port, dst_port) = (pkt.src_port(), pkt.dst_port());
    if src_port == 0 || dst_port == 0 {
        return Err(SegmentError::ZeroPort);
    }

    let flags = flags_of(&pkt);
    if flags.contains(TcpFlags::SYN | TcpFlags::RST) {
        return Err(SegmentError::ImpossibleFlags);
    }

    let options = parse_options(&bytes[HEADER_LEN..header_len])?;
    Ok(Segment {
        src_port,
        dst_port,
        seq: Seq(pkt.seq_number().0 as u32),
        ack: Seq(pkt.ack_number().0 as u32),
        flags,
        window: pkt.window_len(),
        urgent: pkt.urgent_at(),
        options,
        payload: &bytes[header_len..],
        ecn: Ecn::NotEct,
    })
}

/// The eight control bits through smoltcp's accessors (it has no raw-flags getter).
fn flags_of(pkt: &TcpPacket<&[u8]>) -> TcpFlags {
    let mut f = TcpFlags::empty();
    f.set(TcpFlags::FIN, pkt.fin());
    f.set(TcpFlags::SYN, pkt.syn());
    f.set(TcpFlags::RST, pkt.rst());
    f.set(TcpFlags::PSH, pkt.psh());
    f.set(TcpFlags::ACK, pkt.ack());
    f.set(TcpFlags::URG, pkt.urg());
    f.set(TcpFlags::ECE, pkt.ece());
    f.set(TcpFlags::CWR, pkt.cwr());
    f
}

/// Parses the option bytes (the header past its first 20 bytes).
///
/// RFC 9293 §3.1: options are either "a single octet of option-kind" (EOL, NOP) or "an
/// octet of option-kind, an octet of option-length, and the actual option-data octets",
/// the length counting kind and length octets. Also §3.1: "A TCP implementation MUST be
/// able to receive a TCP Option in any segment" and "MUST ignore without error any TCP
/// Option it does not implement, assuming that the option has a length field" (unknown
/// kinds are skipped by their length), and "TCP implementations MUST be prepared to
/// handle an illegal option length (e.g., zero); a suggested procedure is to reset the
/// connection and log the error cause" (we drop the segment: a length below 2 would
/// never advance, and one past the header cannot be trusted).
///
/// Known options must have their exact length (MSS 4, WS 3, SACK-permitted 2,
/// timestamps 10, SACK 2 + 8n with 1 <= n <= 4), else `BadOptions`. Linux ignores such
/// an option instead; dropping is stricter, and a TCP that sends malformed options has
/// nothing good coming.
fn parse_options(mut opts: &[u8]) -> Result<TcpOptions, SegmentError> {
    let mut o = TcpOptions::default();
    while let Some(&k) = opts.first() {
        match k {
            // RFC 9293 §3.2: End of Option List "is used at the end of all options";
            // whatever follows is padding.
            kind::EOL => break,
            kind::NOP => opts = &opts[1..],
            _ => {
                let len = *opts.get(1).ok_or(SegmentError::BadOptions)? as usize;
                if len < 2 || len > opts.len() {
                    return Err(SegmentError::BadOptions);
                }
                let data = &opts[2..len];
                match (k, len) {
                    (kind::MSS, 4) => o.mss = Some(u16::from_be_bytes([data[0], data[1]])),
                    (kind::WSCALE, 3) => o.wscale = Some(data[0].min(MAX_WSCALE)),
                    (kind::SACK_PERMITTED, 2) => o.sack_permitted = true,
                    (kind::TIMESTAMPS, 10) => {
                        o.timestamps = Some((be32(&data[0..4]), be32(&data[4..8])))
                    }
                    (kind::SACK, _) if len >= 10 && (len - 2) % 8 == 0 => {
                        // len <= 40 here (it fits in the options), so at most 4 blocks.
                        o.n_sack = 0;
                        for b in data.chunks_exact(8) {
                            o.push_sack(Seq(be32(&b[0..4])), Seq(be32(&b[4..8])));
                        }
                    }
                    (
                        kind::MSS
                        | kind::WSCALE
                        | kind::SACK_PERMITTED
                        | kind::TIMESTAMPS
                        | kind::SACK,
                        _,
                    ) => return Err(SegmentError::BadOptions),
                    _ => {} // unknown kind: skipped by its length
                }
                opts = &opts[len..];
            }
        }
    }
    Ok(o)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// How [`SegmentOut::emit`] fills the checksum field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumMode {
    /// Compute the full checksum in software (devices without `CSUM_TCP`).
    Full,
    /// Write only the folded pseudo-header sum, not complemented, for `CSUM_TCP` offload:
    /// the device sums the segment from the TCP header on (this field included) and
    /// stores the complement (Linux's `CHECKSUM_PARTIAL` convention).
    PseudoHeaderOnly,
}

/// A segment to send; the payload goes separately (it is already in the frame).
///
/// Options are laid out as Linux does (`tcp_options_write`), every piece 32-bit aligned:
///
/// | options | bytes |
/// | --- | --- |
/// | MSS | `02 04 mm mm` |
/// | timestamps + SACK-permitted | `04 02 08 0a` TSval TSecr |
/// | timestamps alone | `01 01 08 0a` TSval TSecr |
/// | SACK-permitted alone | `01 01 04 02` |
/// | window scale | `01 03 03 ws` |
/// | SACK blocks | `01 01 05 len` (left right)* |
///
/// in that order, so Linux's SYN (MSS, SACK-permitted, timestamps, window scale) is
/// `02 04 05 b4 04 02 08 0a <TSval> <TSecr> 01 03 03 07`, 20 bytes, and a data segment
/// with timestamps carries `01 01 08 0a <TSval> <TSecr>`, 12 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentOut {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// SEG.SEQ.
    pub seq: Seq,
    /// SEG.ACK (sent as given; RFC 9293 §3.1: significant only with ACK set).
    pub ack: Seq,
    /// Control bits.
    pub flags: TcpFlags,
    /// Window field, already scaled down by the caller.
    pub window: u16,
    /// Options to send.
    pub options: TcpOptions,
}

impl SegmentOut {
    /// Header length: 20 plus the options (already a multiple of 4; at most 60).
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.wire_len()
    }

    /// Writes the header into `buf[..header_len()]` and fills the checksum over all of
    /// `buf` (header + payload, the payload already at `buf[header_len()..]`). The urgent
    /// pointer is 0 (we never send urgent data).
    ///
    /// # Panics
    /// If `buf` is shorter than [`header_len`](Self::header_len). `buf` longer than
    /// 65535 bytes cannot be an IPv4 payload; its checksum would be wrong.
    pub fn emit(&self, src: Ipv4Addr, dst: Ipv4Addr, buf: &mut [u8], checksum: ChecksumMode) {
        let header_len = self.header_len();
        debug_assert!(buf.len() <= u16::MAX as usize);
        {
            let mut pkt = TcpPacket::new_unchecked(&mut buf[..header_len]);
            pkt.set_src_port(self.src_port);
            pkt.set_dst_port(self.dst_port);
            pkt.set_seq_number(TcpSeqNumber(self.seq.0 as i32));
            pkt.set_ack_number(TcpSeqNumber(self.ack.0 as i32));
            pkt.set_header_len(header_len as u8);
            pkt.clear_flags();
            pkt.set_fin(self.flags.contains(TcpFlags::FIN));
            pkt.set_syn(self.flags.contains(TcpFlags::SYN));
            pkt.set_rst(self.flags.contains(TcpFlags::RST));
            pkt.set_psh(self.flags.contains(TcpFlags::PSH));
            pkt.set_ack(self.flags.contains(TcpFlags::ACK));
            pkt.set_urg(self.flags.contains(TcpFlags::URG));
            pkt.set_ece(self.flags.contains(TcpFlags::ECE));
            pkt.set_cwr(self.flags.contains(TcpFlags::CWR));
            pkt.set_window_len(self.window);
            pkt.set_urgent_at(0);
            pkt.set_checksum(0);
        }
        self.options.emit(&mut buf[HEADER_LEN..header_len]);

        let sum =
            checksum::pseudo_header_v4(src.octets(), dst.octets(), IPPROTO_TCP, buf.len() as u16);
        let field = match checksum {
            ChecksumMode::Full => !checksum::fold(checksum::add(sum, buf)),
            ChecksumMode::PseudoHeaderOnly => checksum::fold(sum),
        };
        TcpPacket::new_unchecked(&mut buf[..header_len]).set_checksum(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const NONE: CsumFlags = CsumFlags::empty();

    /// A SYN as Linux sends it (RFC 9293 §3.1 layout, Linux's option order), from
    /// 198.18.0.1:45678 to 198.18.0.2:80, ISN 0x12345678, window 64240, MSS 1460,
    /// SACK-permitted, TSval 1000000, window scale 7. Checksum computed by hand.
    const LINUX_SYN: [u8; 40] = [
        0xb2, 0x6e, 0x00, 0x50, // ports 45678 -> 80
        0x12, 0x34, 0x56, 0x78, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0xa0, 0x02, // data offset 10 words, SYN
        0xfa, 0xf0, // window 64240
        0x63, 0x2d, // checksum
        0x00, 0x00, // urgent pointer
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, 0x08, 0x0a, // SACK-permitted, timestamps kind/len
        0x00, 0x0f, 0x42, 0x40, // TSval 1000000
        0x00, 0x00, 0x00, 0x00, // TSecr 0
        0x01, 0x03, 0x03, 0x07, // NOP, window scale 7
    ];

    /// An ACK|PSH data segment with timestamps and two SACK blocks, payload "hello".
    const DATA_SACK: [u8; 57] = [
        0xb2, 0x6e, 0x00, 0x50, // ports
        0x12, 0x34, 0x56, 0x79, // seq
        0x9a, 0xbc, 0xde, 0xf0, // ack
        0xd0, 0x18, // data offset 13 words, PSH|ACK
        0x01, 0xf6, // window 502
        0x91, 0x6e, // checksum
        0x00, 0x00, // urgent pointer
        0x01, 0x01, 0x08, 0x0a, // NOP NOP timestamps
        0x00, 0x0f, 0x42, 0x41, // TSval
        0x0b, 0xad, 0xf0, 0x0d, // TSecr
        0x01, 0x01, 0x05, 0x12, // NOP NOP SACK len 18 (2 blocks)
        0x9a, 0xbc, 0xdf, 0x00, 0x9a, 0xbc, 0xdf, 0x10, // block 1
        0x9a, 0xbc, 0xe0, 0x00, 0x9a, 0xbc, 0xe1, 0x00, // block 2
        b'h', b'e', b'l', b'l', b'o',
    ];

    fn linux_syn_out() -> SegmentOut {
        SegmentOut {
            src_port: 45678,
            dst_port: 80,
            seq: Seq(0x1234_5678),
            ack: Seq(0),
            flags: TcpFlags::SYN,
            window: 64240,
            options: TcpOptions {
                mss: Some(1460),
                wscale: Some(7),
                sack_permitted: true,
                timestamps: Some((1_000_000, 0)),
                ..TcpOptions::default()
            },
        }
    }

    fn data_sack_out() -> SegmentOut {
        let mut options = TcpOptions {
            timestamps: Some((0x000f_4241, 0x0bad_f00d)),
            ..TcpOptions::default()
        };
        options.push_sack(Seq(0x9abc_df00), Seq(0x9abc_df10));
        options.push_sack(Seq(0x9abc_e000), Seq(0x9abc_e100));
        SegmentOut {
            src_port: 45678,
            dst_port: 80,
            seq: Seq(0x1234_5679),
            ack: Seq(0x9abc_def0),
            flags: TcpFlags::PSH | TcpFlags::ACK,
            window: 502,
            options,
        }
    }

    fn emit_vec(out: &SegmentOut, payload: &[u8], mode: ChecksumMode) -> Vec<u8> {
        let hl = out.header_len();
        let mut buf = vec![0xeeu8; hl + payload.len()]; // garbage where the header goes
        buf[hl..].copy_from_slice(payload);
        out.emit(SRC, DST, &mut buf, mode);
        buf
    }

    #[test]
    fn emit_linux_syn_golden() {
        let out = linux_syn_out();
        assert_eq!(out.header_len(), 40);
        assert_eq!(emit_vec(&out, &[], ChecksumMode::Full), LINUX_SYN);
    }

    #[test]
    fn emit_data_with_sack_golden() {
        let out = data_sack_out();
        assert_eq!(out.header_len(), 52);
        assert_eq!(emit_vec(&out, b"hello", ChecksumMode::Full), DATA_SACK);
    }

    #[test]
    fn parse_linux_syn() {
        let seg = parse(SRC, DST, &LINUX_SYN, NONE).unwrap();
        assert_eq!(seg.src_port, 45678);
        assert_eq!(seg.dst_port, 80);
        assert_eq!(seg.seq, Seq(0x1234_5678));
        assert_eq!(seg.flags, TcpFlags::SYN);
        assert_eq!(seg.window, 64240);
        assert_eq!(seg.options.mss, Some(1460));
        assert_eq!(seg.options.wscale, Some(7));
        assert!(seg.options.sack_permitted);
        assert_eq!(seg.options.timestamps, Some((1_000_000, 0)));
        assert_eq!(seg.options.sack(), &[]);
        assert!(seg.payload.is_empty());
        assert_eq!(seg.seg_len(), 1); // RFC 9293 §3.4: SYN counts
    }

    #[test]
    fn parse_data_with_sack() {
        let seg = parse(SRC, DST, &DATA_SACK, NONE).unwrap();
        assert_eq!(seg.flags, TcpFlags::PSH | TcpFlags::ACK);
        assert_eq!(seg.ack, Seq(0x9abc_def0));
        assert_eq!(seg.options.timestamps, Some((0x000f_4241, 0x0bad_f00d)));
        assert_eq!(
            seg.options.sack(),
            &[
                (Seq(0x9abc_df00), Seq(0x9abc_df10)),
                (Seq(0x9abc_e000), Seq(0x9abc_e100))
            ]
        );
        assert_eq!(seg.payload, b"hello");
        assert_eq!(seg.seg_len(), 5);
    }

    #[test]
    fn parse_other_stacks_option_orders() {
        // Windows-style SYN options: MSS, NOP, WS 8, NOP, NOP, SACK-permitted.
        let mut seg = LINUX_SYN[..20].to_vec();
        seg.extend_from_slice(&[2, 4, 0x05, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2]);
        seg[12] = 0x80; // 8 words
        let opts = parse(SRC, DST, &seg, CsumFlags::DATA_VALID)
            .unwrap()
            .options;
        assert_eq!(opts.mss, Some(1460));
        assert_eq!(opts.wscale, Some(8));
        assert!(opts.sack_permitted);
        assert_eq!(opts.timestamps, None);
        // BSD/macOS-style: MSS, NOP, WS, NOP, NOP, TS, SACK-permitted, EOL, EOL;
        // anything after EOL is padding and ignored even if it is not zero.
        let mut seg = LINUX_SYN[..20].to_vec();
        seg.extend_from_slice(&[2, 4, 0x05, 0xb4, 1, 3, 3, 6, 1, 1, 8, 10]);
        seg.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 4, 2, 0, 0x55]);
        seg[12] = 0xb0; // 11 words
        let opts = parse(SRC, DST, &seg, CsumFlags::DATA_VALID)
            .unwrap()
            .options;
        assert_eq!(opts.wscale, Some(6));
        assert_eq!(opts.timestamps, Some((1, 2)));
        assert!(opts.sack_permitted);
    }

    #[test]
    fn checksum_verified_unless_device_did() {
        let mut bad = LINUX_SYN;
        bad[4] ^= 0x01;
        assert_eq!(parse(SRC, DST, &bad, NONE), Err(SegmentError::BadChecksum));
        // The pseudo-header counts: the same bytes between other addresses fail.
        assert_eq!(
            parse(SRC, Ipv4Addr::new(198, 18, 0, 3), &LINUX_SYN, NONE),
            Err(SegmentError::BadChecksum)
        );
        // CSUM_DATA_VALID: the device verified it; we do not look.
        assert!(parse(SRC, DST, &bad, CsumFlags::DATA_VALID).is_ok());
        // Other receive flags do not skip the check.
        assert_eq!(
            parse(SRC, DST, &bad, CsumFlags::IP_CHECKED | CsumFlags::IP_VALID),
            Err(SegmentError::BadChecksum)
        );
    }

    #[test]
    fn pseudo_header_only_checksum() {
        // What the device does with CSUM_TCP: sum from the TCP header on, seeded with the
        // field we wrote, and store the complement. The result must be the full checksum.
        let out = linux_syn_out();
        let mut frame = emit_vec(&out, &[], ChecksumMode::PseudoHeaderOnly);
        let seed = u16::from_be_bytes([frame[16], frame[17]]);
        let expected = checksum::fold(checksum::pseudo_header_v4(
            SRC.octets(),
            DST.octets(),
            6,
            40,
        ));
        assert_eq!(seed, expected);
        let device = !checksum::fold(checksum::add(0, &frame));
        frame[16..18].copy_from_slice(&device.to_be_bytes());
        assert_eq!(frame, LINUX_SYN);
    }

    #[test]
    fn truncated_header_at_every_length() {
        for input in [&LINUX_SYN[..], &DATA_SACK[..]] {
            let hl = (input[12] >> 4) as usize * 4;
            for len in 0..hl {
                for csum in [NONE, CsumFlags::DATA_VALID] {
                    let want = if len < 20 {
                        SegmentError::Truncated
                    } else {
                        SegmentError::BadDataOffset
                    };
                    assert_eq!(parse(SRC, DST, &input[..len], csum), Err(want), "len {len}");
                }
            }
        }
        // Payload cut short: the checksum catches it (the IP layer owns the length).
        for len in 52..DATA_SACK.len() {
            assert_eq!(
                parse(SRC, DST, &DATA_SACK[..len], NONE),
                Err(SegmentError::BadChecksum),
                "len {len}"
            );
        }
    }

    #[test]
    fn data_offset_below_five() {
        let mut seg = LINUX_SYN;
        for off in 0..5u8 {
            seg[12] = off << 4;
            assert_eq!(
                parse(SRC, DST, &seg, CsumFlags::DATA_VALID),
                Err(SegmentError::BadDataOffset)
            );
        }
    }

    #[test]
    fn zero_ports() {
        let mut seg = LINUX_SYN;
        seg[0] = 0;
        seg[1] = 0;
        assert_eq!(
            parse(SRC, DST, &seg, CsumFlags::DATA_VALID),
            Err(SegmentError::ZeroPort)
        );
        let mut seg = LINUX_SYN;
        seg[2] = 0;
        seg[3] = 0;
        assert_eq!(
            parse(SRC, DST, &seg, CsumFlags::DATA_VALID),
            Err(SegmentError::ZeroPort)
        );
    }

    #[test]
    fn impossible_flags() {
        let with = |flags: TcpFlags| {
            let mut seg = LINUX_SYN;
            seg[13] = flags.bits();
            parse(SRC, DST, &seg, CsumFlags::DATA_VALID).map(|s| s.flags)
        };
        use TcpFlags as F;
        // SYN+FIN parses; the TCP layer drops it (`TcpConfig::drop_synfin`).
        assert_eq!(with(F::SYN | F::FIN), Ok(F::SYN | F::FIN));
        assert_eq!(with(F::SYN | F::RST), Err(SegmentError::ImpossibleFlags));
        assert_eq!(with(F::all()), Err(SegmentError::ImpossibleFlags));
        // Accepted, the state machine decides (see `parse`).
        assert_eq!(with(F::RST | F::FIN), Ok(F::RST | F::FIN));
        assert_eq!(with(F::empty()), Ok(F::empty()));
        assert_eq!(
            with(F::SYN | F::ACK | F::ECE | F::CWR),
            Ok(F::SYN | F::ACK | F::ECE | F::CWR)
        );
        assert_eq!(
            with(F::FIN | F::ACK | F::URG | F::PSH),
            Ok(F::FIN | F::ACK | F::URG | F::PSH)
        );
    }

    /// Parses a header with the given option bytes (padded with EOL to a multiple of 4).
    fn parse_opts(opts: &[u8]) -> Result<TcpOptions, SegmentError> {
        let mut seg = LINUX_SYN[..20].to_vec();
        seg.extend_from_slice(opts);
        while seg.len() % 4 != 0 {
            seg.push(0);
        }
        seg[12] = ((seg.len() / 4) as u8) << 4;
        parse(SRC, DST, &seg, CsumFlags::DATA_VALID).map(|s| s.options)
    }

    /// Emits `o` in FreeBSD's layout: the bytes, and what parsing them gives back.
    fn freebsd_bytes(o: TcpOptions) -> (Vec<u8>, TcpOptions) {
        let o = TcpOptions {
            layout: OptionLayout::FreeBsd,
            ..o
        };
        let mut buf = vec![0xaa; o.wire_len()];
        o.emit(&mut buf);
        let back = parse_opts(&buf).expect("parses");
        (buf, back)
    }

    #[test]
    fn freebsd_option_layout() {
        let ts = |v: u32, e: u32| [v.to_be_bytes(), e.to_be_bytes()].concat();
        // FreeBSD's SYN: <mss 1460,nop,wscale 6,sackOK,TS val 100 ecr 0>.
        let syn = TcpOptions {
            mss: Some(1460),
            wscale: Some(6),
            sack_permitted: true,
            timestamps: Some((100, 0)),
            ..TcpOptions::default()
        };
        let (b, back) = freebsd_bytes(syn);
        let mut want = vec![2, 4, 0x05, 0xb4, 1, 3, 3, 6, 4, 2, 8, 10];
        want.extend(ts(100, 0));
        assert_eq!(b, want);
        assert_eq!(back, syn);
        // Its SYN,ACK to a peer that offered only SACK: <mss 1460,sackOK,eol,eol>.
        let synack = TcpOptions {
            mss: Some(1460),
            sack_permitted: true,
            ..TcpOptions::default()
        };
        assert_eq!(freebsd_bytes(synack).0, [2, 4, 0x05, 0xb4, 4, 2, 0, 0]);
        // Data with timestamps: <nop,nop,TS>; with SACK blocks: <nop,nop,TS,nop,nop,sack>.
        let mut data = TcpOptions {
            timestamps: Some((7, 9)),
            ..TcpOptions::default()
        };
        let mut want = vec![1, 1, 8, 10];
        want.extend(ts(7, 9));
        assert_eq!(freebsd_bytes(data).0, want);
        for i in 0..4u32 {
            data.push_sack(Seq(100 * i + 1), Seq(100 * i + 50));
        }
        let (b, back) = freebsd_bytes(data);
        assert_eq!(b.len(), 40, "three blocks fit beside the timestamps");
        assert_eq!(&b[12..16], &[1, 1, 5, 26]);
        assert_eq!(back.sack(), &data.sack()[..3]);
        // MSS and window scale alone: <mss,nop,wscale>; no options: nothing.
        let ws = TcpOptions {
            mss: Some(536),
            wscale: Some(0),
            ..TcpOptions::default()
        };
        assert_eq!(freebsd_bytes(ws).0, [2, 4, 2, 24, 1, 3, 3, 0]);
        assert!(freebsd_bytes(TcpOptions::default()).0.is_empty());
    }

    #[test]
    fn malformed_options() {
        let bad: &[&[u8]] = &[
            &[30, 0],       // zero length: would never advance
            &[30, 1],       // length 1: would never advance past the data
            &[30],          // kind with no length octet (then EOL padding: len 0)
            &[1, 1, 1, 30], // kind as the last byte: no length octet at all
            &[30, 8, 1, 1], // runs past the header
            &[2, 3, 5],     // MSS len 3
            &[2, 5, 5, 0xb4, 0],
            &[3, 4, 7, 0],                // WS len 4
            &[3, 2],                      // WS len 2
            &[4, 3, 0],                   // SACK-permitted len 3
            &[8, 8, 0, 0, 0, 1, 0, 0],    // TS len 8
            &[5, 2],                      // SACK with no block
            &[5, 9, 0, 0, 0, 1, 0, 0, 0], // SACK len not 2 + 8n
            &[5, 11, 0, 0, 0, 1, 0, 0, 0, 2, 0],
        ];
        for opts in bad {
            assert_eq!(parse_opts(opts), Err(SegmentError::BadOptions), "{opts:?}");
        }
    }

    #[test]
    fn unknown_and_padding_options() {
        // Unknown kinds are skipped by length (RFC 9293 §3.2), here MPTCP (30) and TFO (34).
        let o = parse_opts(&[30, 6, 1, 2, 3, 4, 34, 2, 2, 4, 0x05, 0xb4]).unwrap();
        assert_eq!(o.mss, Some(1460));
        // Empty option list, NOPs only, EOL first.
        assert_eq!(parse_opts(&[]).unwrap(), TcpOptions::default());
        assert_eq!(parse_opts(&[1, 1, 1, 1]).unwrap(), TcpOptions::default());
        assert_eq!(parse_opts(&[0, 2, 4, 0]).unwrap(), TcpOptions::default());
        // An option may end exactly at the header's end.
        let o = parse_opts(&[1, 3, 3, 2]).unwrap();
        assert_eq!(o.wscale, Some(2));
    }

    #[test]
    fn window_scale_clamped_to_14() {
        // RFC 7323 §2.3: "MUST use 14 instead of the specified value".
        assert_eq!(parse_opts(&[3, 3, 15]).unwrap().wscale, Some(14));
        assert_eq!(parse_opts(&[3, 3, 255]).unwrap().wscale, Some(14));
        assert_eq!(parse_opts(&[3, 3, 14]).unwrap().wscale, Some(14));
    }

    #[test]
    fn four_sack_blocks_without_timestamps() {
        let mut opts = TcpOptions::default();
        for i in 0..4u32 {
            assert!(opts.push_sack(Seq(i * 100), Seq(i * 100 + 50)));
        }
        assert!(!opts.push_sack(Seq(1), Seq(2)));
        let out = SegmentOut {
            src_port: 1,
            dst_port: 2,
            flags: TcpFlags::ACK,
            options: opts,
            ..SegmentOut::default()
        };
        assert_eq!(out.header_len(), 20 + 4 + 32);
        let buf = emit_vec(&out, &[], ChecksumMode::Full);
        let seg = parse(SRC, DST, &buf, NONE).unwrap();
        assert_eq!(seg.options.sack(), opts.sack());
        // With timestamps only 3 fit (RFC 2018 §3); the first ones are kept.
        let mut out = out;
        out.options.timestamps = Some((1, 2));
        assert_eq!(out.header_len(), 60);
        let buf = emit_vec(&out, &[], ChecksumMode::Full);
        let seg = parse(SRC, DST, &buf, NONE).unwrap();
        assert_eq!(seg.options.sack(), &opts.sack()[..3]);
        // SYN options plus SACK blocks: 20 bytes used, 2 blocks fit.
        let mut syn = linux_syn_out();
        syn.options.sack_blocks = opts.sack_blocks;
        syn.options.n_sack = 4;
        assert_eq!(syn.header_len(), 60);
        let buf = emit_vec(&syn, &[], ChecksumMode::Full);
        assert_eq!(
            parse(SRC, DST, &buf, NONE).unwrap().options.sack(),
            &opts.sack()[..2]
        );
    }

    #[test]
    fn option_layouts() {
        let hdr = |options: TcpOptions| {
            let out = SegmentOut {
                src_port: 1,
                dst_port: 2,
                options,
                ..SegmentOut::default()
            };
            emit_vec(&out, &[], ChecksumMode::Full)[20..].to_vec()
        };
        assert_eq!(hdr(TcpOptions::default()), Vec::<u8>::new());
        let ts = TcpOptions {
            timestamps: Some((0x01020304, 0x05060708)),
            ..Default::default()
        };
        assert_eq!(hdr(ts), [1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8]);
        let sp = TcpOptions {
            sack_permitted: true,
            ..Default::default()
        };
        assert_eq!(hdr(sp), [1, 1, 4, 2]);
        let mss_ws = TcpOptions {
            mss: Some(0x1234),
            wscale: Some(9),
            ..Default::default()
        };
        assert_eq!(hdr(mss_ws), [2, 4, 0x12, 0x34, 1, 3, 3, 9]);
    }

    #[test]
    fn emit_overwrites_garbage_and_reserved_bits() {
        let out = linux_syn_out();
        let mut buf = vec![0xffu8; 40];
        out.emit(SRC, DST, &mut buf, ChecksumMode::Full);
        assert_eq!(buf, LINUX_SYN);
    }

    fn arb_options() -> impl Strategy<Value = TcpOptions> {
        (
            proptest::option::of(any::<u16>()),
            proptest::option::of(0u8..=14),
            any::<bool>(),
            proptest::option::of((any::<u32>(), any::<u32>())),
            proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=4),
            any::<bool>(),
        )
            .prop_map(
                |(mss, wscale, sack_permitted, timestamps, blocks, freebsd)| {
                    let mut o = TcpOptions {
                        layout: if freebsd {
                            OptionLayout::FreeBsd
                        } else {
                            OptionLayout::Linux
                        },
                        mss,
                        wscale,
                        sack_permitted,
                        timestamps,
                        ..Default::default()
                    };
                    for (l, r) in blocks {
                        o.push_sack(Seq(l), Seq(r));
                    }
                    o
                },
            )
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..80),
            valid in any::<bool>(),
        ) {
            let csum = if valid { CsumFlags::DATA_VALID } else { NONE };
            let _ = parse(SRC, DST, &bytes, csum);
        }

        #[test]
        fn random_options_never_panic(
            opts in proptest::collection::vec(any::<u8>(), 0..=40),
            payload in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut seg = LINUX_SYN[..20].to_vec();
            seg.extend_from_slice(&opts);
            seg[12] = ((seg.len().div_ceil(4)) as u8) << 4;
            seg.extend_from_slice(&payload);
            if let Ok(s) = parse(SRC, DST, &seg, CsumFlags::DATA_VALID) {
                prop_assert!(s.options.n_sack as usize <= MAX_SACK_BLOCKS);
                prop_assert!(s.options.wscale.is_none_or(|w| w <= MAX_WSCALE));
            }
        }

        #[test]
        fn emit_parse_round_trip(
            src_port in 1u16..,
            dst_port in 1u16..,
            seq in any::<u32>(),
            ack in any::<u32>(),
            flags in any::<u8>(),
            window in any::<u16>(),
            options in arb_options(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            offload in any::<bool>(),
        ) {
            let mut flags = TcpFlags::from_bits_retain(flags);
            if flags.contains(TcpFlags::SYN) {
                // The combinations `parse` rejects (tested in `impossible_flags`).
                flags.remove(TcpFlags::FIN | TcpFlags::RST);
            }
            let out = SegmentOut {
                src_port,
                dst_port,
                seq: Seq(seq),
                ack: Seq(ack),
                flags,
                window,
                options,
            };
            let hl = out.header_len();
            prop_assert!(hl % 4 == 0 && hl <= 60);
            let mode = if offload { ChecksumMode::PseudoHeaderOnly } else { ChecksumMode::Full };
            let mut buf = emit_vec(&out, &payload, mode);
            if offload {
                // Finish the checksum as the device would.
                let c = !checksum::fold(checksum::add(0, &buf));
                buf[16..18].copy_from_slice(&c.to_be_bytes());
            }
            let seg = parse(SRC, DST, &buf, NONE).unwrap();
            prop_assert_eq!(seg.src_port, src_port);
            prop_assert_eq!(seg.dst_port, dst_port);
            prop_assert_eq!(seg.seq, Seq(seq));
            prop_assert_eq!(seg.ack, Seq(ack));
            prop_assert_eq!(seg.flags, flags);
            prop_assert_eq!(seg.window, window);
            prop_assert_eq!(seg.urgent, 0);
            prop_assert_eq!(seg.payload, &payload[..]);
            let (_, n_fit) = options.layout();
            let mut want = options;
            want.n_sack = n_fit as u8;
            for b in &mut want.sack_blocks[n_fit..] {
                *b = (Seq(0), Seq(0));
            }
            let mut got = seg.options;
            got.layout = options.layout; // a receiver does not learn the layout
            for b in &mut got.sack_blocks[n_fit..] {
                *b = (Seq(0), Seq(0));
            }
            prop_assert_eq!(got, want);
        }
    }
}
