//! Message bodies: reading by length, by chunked transfer coding (RFC 9112 §7.1), or until the
//! connection closes; and writing a body in chunked coding.

use std::io::{self, Read, Write};

use super::buf::{BufConn, MAX_HEAD, MAX_HEADERS};

/// A chunk-size line (size, extensions, CRLF) may be at most this long.
const MAX_CHUNK_LINE: usize = 4096;

/// A malformed chunked body. Reported inside an `io::Error` of kind `InvalidData`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The chunk-size line is not `1*HEXDIG [ chunk-ext ] CRLF`.
    #[error("malformed chunk-size line")]
    BadSize,
    /// The chunk-size line (with extensions) is longer than 4096 bytes.
    #[error("chunk-size line longer than {MAX_CHUNK_LINE} bytes")]
    LineTooLong,
    /// Chunk data is not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
    /// The trailer section is malformed or too large.
    #[error("malformed or oversized trailer section")]
    BadTrailers,
}

impl From<ChunkError> for io::Error {
    fn from(e: ChunkError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Exactly this many bytes (`Content-Length`, or 0 for a request with neither field).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the peer closes (a response with neither field).
    UntilEof,
}

/// Where a chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// After the last chunk: expecting trailer fields and the final empty line.
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(ChunkState),
    UntilEof,
    Done,
}

/// Reads one message body off a [`BufConn`], leaving the connection positioned at the next
/// message. `read` returns 0 at the end of the body; a body cut short by the peer closing is
/// `UnexpectedEof`, a malformed chunked body is `InvalidData` carrying a [`ChunkError`].
pub(crate) struct BodyReader<'a, C> {
    conn: &'a mut BufConn<C>,
    state: State,
}

impl<'a, C: Read> BodyReader<'a, C> {
    /// A reader for a body framed as `framing`, starting at the connection's read position.
    pub(crate) fn new(conn: &'a mut BufConn<C>, framing: Framing) -> Self {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(ChunkState::Size),
            Framing::UntilEof => State::UntilEof,
        };
        Self { conn, state }
    }

    /// Reads and throws away the rest of the body; returns how many body bytes that was.
    pub(crate) fn drain(&mut self) -> io::Result<u64> {
        let mut scratch = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            match self.read(&mut scratch) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the next chunk-size line; returns the chunk size.
    fn read_size_line(&mut self) -> io::Result<u64> {
        loop {
            if let Some((len, size)) = parse_size_line(self.conn.buffered())? {
                std::io::BufRead::consume(self.conn, len);
                return Ok(size);
            }
            self.fill_or_eof()?;
        }
    }

    /// Reads the CRLF that ends chunk data.
    fn read_data_end(&mut self) -> io::Result<()> {
        while self.conn.buffered().len() < 2 {
            self.fill_or_eof()?;
        }
        if &self.conn.buffered()[..2] != b"\r\n" {
            return Err(ChunkError::MissingCrlf.into());
        }
        std::io::BufRead::consume(self.conn, 2);
        Ok(())
    }

    /// Reads (and discards) the trailer section and the empty line that ends the body.
    /// RFC 9112 §7.1.2: "A recipient that removes the chunked coding from a message MAY
    /// selectively retain or discard the received trailer fields."
    fn read_trailers(&mut self) -> io::Result<()> {
        loop {
            if let Some(len) = parse_trailers(self.conn.buffered())? {
                std::io::BufRead::consume(self.conn, len);
                return Ok(());
            }
            self.fill_or_eof()?;
        }
    }

    fn fill_or_eof(&mut self) -> io::Result<()> {
        if self.conn.fill_more()? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of a chunked body",
            ));
        }
        Ok(())
    }
}

/// A chunk-size line at the start of `buf`: its length and the size, or `None` while it is
/// incomplete.
fn parse_size_line(buf: &[u8]) -> Result<Option<(usize, u64)>, ChunkError> {
    match httparse::parse_chunk_size(buf) {
        Ok(httparse::Status::Complete((len, size))) => {
            check_size_line(&buf[..len])?;
            Ok(Some((len, size)))
        }
        Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => Err(ChunkError::LineTooLong),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::InvalidChunkSize) => Err(ChunkError::BadSize),
    }
}

/// The trailer section and final empty line at the start of `buf`: its length, or `None`
/// while it is incomplete.
fn parse_trailers(buf: &[u8]) -> Result<Option<usize>, ChunkError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete((len, _))) if len <= MAX_HEAD => Ok(Some(len)),
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => Ok(None),
        Ok(_) | Err(_) => Err(ChunkError::BadTrailers),
    }
}

/// httparse accepts a size line with no digits (an empty line reads as size 0) and any octet
/// inside an extension, bare LF included. Both are request-smuggling vectors when a proxy in
/// front reads the line differently, so insist on RFC 9112 §7.1: `chunk-size = 1*HEXDIG`, and
/// extensions made of visible characters, spaces and tabs.
fn check_size_line(line: &[u8]) -> Result<(), ChunkError> {
    let body = line.strip_suffix(b"\r\n").ok_or(ChunkError::BadSize)?;
    if !body.first().is_some_and(u8::is_ascii_hexdigit) {
        return Err(ChunkError::BadSize);
    }
    if body.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(ChunkError::BadSize);
    }
    Ok(())
}

impl<C: Read> Read for BodyReader<'_, C> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Length(left) => {
                    let want = left.min(out.len() as u64) as usize;
                    let n = self.conn.read(&mut out[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("connection closed with {left} body bytes still to come"),
                        ));
                    }
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length(left)
                    };
                    return Ok(n);
                }
                State::UntilEof => {
                    let n = self.conn.read(out)?;
                    if n == 0 {
                        self.state = State::Done;
                    }
                    return Ok(n);
                }
                State::Chunked(ChunkState::Size) => {
                    let size = self.read_size_line()?;
                    // RFC 9112 §7.1: "The chunked transfer coding is complete when a chunk
                    // with a chunk-size of zero is received, possibly followed by a trailer
                    // section, and finally terminated by an empty line."
                    self.state = State::Chunked(if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    });
                }
                State::Chunked(ChunkState::Data(left)) => {
                    let want = left.min(out.len() as u64) as usize;
                    let n = self.conn.read(&mut out[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed inside a chunk",
                        ));
                    }
                    let left = left - n as u64;
                    self.state = State::Chunked(if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    });
                    return Ok(n);
                }
                State::Chunked(ChunkState::DataEnd) => {
                    self.read_data_end()?;
                    self.state = State::Chunked(ChunkState::Size);
                }
                State::Chunked(ChunkState::Trailers) => {
                    self.read_trailers()?;
                    self.state = State::Done;
                }
            }
        }
    }
}

/// A message body decoded incrementally from whatever bytes have arrived, for the event
/// server: the same framing rules as [`BodyReader`] without doing any I/O.
#[derive(Debug)]
pub(crate) struct BodyDecoder {
    state: State,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`.
    pub(crate) fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(ChunkState::Size),
            Framing::UntilEof => State::UntilEof,
        };
        Self { state }
    }

    /// Whether the whole body has been decoded.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the start of `input`, passing each piece of body data to `data`.
    /// Returns how many bytes of `input` it used: it stops at the end of the body (the rest
    /// is the next request), or where a size line or the trailers are not complete yet
    /// (call again with those bytes and more).
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<usize, ChunkError> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.state {
                State::Done => return Ok(at),
                State::Length(left) | State::Chunked(ChunkState::Data(left)) => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    let n = left.min(rest.len() as u64) as usize;
                    data(&rest[..n]);
                    at += n;
                    let left = left - n as u64;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::Chunked(ChunkState::DataEnd),
                        _ => State::Chunked(ChunkState::Data(left)),
                    };
                }
                State::UntilEof => {
                    data(rest);
                    return Ok(input.len());
                }
                State::Chunked(ChunkState::Size) => {
                    let Some((len, size)) = parse_size_line(rest)? else {
                        return Ok(at);
                    };
                    at += len;
                    // RFC 9112 §7.1: the last chunk has size zero and is followed by the
                    // trailer section.
                    self.state = State::Chunked(if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    });
                }
                State::Chunked(ChunkState::DataEnd) => {
                    if rest.len() < 2 {
                        if rest.first().is_some_and(|&b| b != b'\r') {
                            return Err(ChunkError::MissingCrlf);
                        }
                        return Ok(at);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(ChunkError::MissingCrlf);
                    }
                    at += 2;
                    self.state = State::Chunked(ChunkState::Size);
                }
                State::Chunked(ChunkState::Trailers) => {
                    let Some(len) = parse_trailers(rest)? else {
                        return Ok(at);
                    };
                    at += len;
                    self.state = State::Done;
                }
            }
        }
    }
}

/// Writes `data` as one chunk (size line, data, CRLF). Empty `data` writes nothing: an empty
/// chunk would end the body.
pub(crate) fn write_chunk(w: &mut impl Write, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    w.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
    w.write_all(data)?;
    w.write_all(b"\r\n")
}

/// Writes the last chunk and an empty trailer section, ending a chunked body.
pub(crate) fn write_last_chunk(w: &mut impl Write) -> io::Result<()> {
    w.write_all(b"0\r\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` as a chunked body fed `step` bytes per read; returns the body and
    /// whatever followed it on the connection.
    fn decode(wire: &[u8], step: usize) -> io::Result<(Vec<u8>, Vec<u8>)> {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = self.1.min(out.len()).min(self.0.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut bc = BufConn::new(Trickle(wire, step));
        let mut body = Vec::new();
        BodyReader::new(&mut bc, Framing::Chunked).read_to_end(&mut body)?;
        let mut rest = Vec::new();
        bc.read_to_end(&mut rest)?;
        Ok((body, rest))
    }

    /// The same through [`BodyDecoder`], fed `step` bytes at a time as the event server
    /// feeds it (unused bytes kept and offered again with the next ones). Checks that it
    /// agrees with [`BodyReader`] on the body, the rest and the error.
    fn decode_sans_io(wire: &[u8], step: usize) -> io::Result<(Vec<u8>, Vec<u8>)> {
        let mut dec = BodyDecoder::new(Framing::Chunked);
        let (mut body, mut pending, mut fed) = (Vec::new(), Vec::new(), 0);
        while !dec.is_done() {
            if fed == wire.len() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated"));
            }
            let take = step.min(wire.len() - fed);
            pending.extend_from_slice(&wire[fed..fed + take]);
            fed += take;
            let used = dec.decode(&pending, |d| body.extend_from_slice(d))?;
            pending.drain(..used);
        }
        pending.extend_from_slice(&wire[fed..]);
        let blocking = decode(wire, step);
        match &blocking {
            Ok(r) => assert_eq!(r, &(body.clone(), pending.clone()), "step {step}"),
            Err(e) => panic!("BodyReader failed where BodyDecoder did not: {e}"),
        }
        Ok((body, pending))
    }

    fn kind_of(wire: &[u8]) -> ChunkError {
        for step in [1, 3, 7, 4096] {
            let e = decode_sans_io(wire, step).expect_err("should be rejected (sans-IO)");
            let got = *e.into_inner().unwrap().downcast::<ChunkError>().unwrap();
            let blocking = decode(wire, step).expect_err("should be rejected");
            assert_eq!(blocking.kind(), io::ErrorKind::InvalidData, "{blocking}");
            let want = *blocking
                .into_inner()
                .unwrap()
                .downcast::<ChunkError>()
                .unwrap();
            assert_eq!(
                got, want,
                "step {step}: BodyDecoder and BodyReader disagree"
            );
        }
        let e = decode(wire, 7).expect_err("should be rejected");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        *e.into_inner().unwrap().downcast::<ChunkError>().unwrap()
    }

    #[test]
    fn decodes_extensions_trailers_and_leaves_the_next_message() {
        let wire = b"5;name=value;quoted=\"a b\"\r\nhello\r\nA \r\n0123456789\r\n\
                     0;last\r\nX-Trailer: 1\r\nY: 2\r\n\r\nNEXT";
        for step in [1, 2, 3, 5, 64, 4096] {
            assert_eq!(
                decode_sans_io(wire, step).unwrap(),
                decode(wire, step).unwrap()
            );
            let (body, rest) = decode(wire, step).unwrap();
            assert_eq!(body, b"hello0123456789", "step {step}");
            assert_eq!(rest, b"NEXT", "step {step}");
        }
    }

    #[test]
    fn empty_body_is_just_the_last_chunk() {
        assert_eq!(decode(b"0\r\n\r\n", 1).unwrap(), (vec![], vec![]));
    }

    #[test]
    fn encoder_output_decodes() {
        let mut wire = Vec::new();
        write_chunk(&mut wire, b"abc").unwrap();
        write_chunk(&mut wire, b"").unwrap();
        write_chunk(&mut wire, &[7u8; 300]).unwrap();
        write_last_chunk(&mut wire).unwrap();
        let (body, _) = decode(&wire, 10).unwrap();
        let mut want = b"abc".to_vec();
        want.extend_from_slice(&[7u8; 300]);
        assert_eq!(body, want);
    }

    #[test]
    fn rejects_malformed_size_lines() {
        assert_eq!(kind_of(b"zz\r\nhello\r\n0\r\n\r\n"), ChunkError::BadSize);
        assert_eq!(
            kind_of(b"\r\n"),
            ChunkError::BadSize,
            "empty size line is not size 0"
        );
        assert_eq!(kind_of(b";ext\r\n"), ChunkError::BadSize);
        assert_eq!(kind_of(b"-5\r\nhello\r\n"), ChunkError::BadSize);
        assert_eq!(
            kind_of(b"5;a\nb\r\nhello\r\n0\r\n\r\n"),
            ChunkError::BadSize,
            "bare LF"
        );
        assert_eq!(kind_of(b"5\nhello\r\n0\r\n\r\n"), ChunkError::BadSize);
        assert_eq!(
            kind_of(b"11111111111111111\r\n"),
            ChunkError::BadSize,
            "overflow"
        );
        let mut long = b"5;".to_vec();
        long.extend(std::iter::repeat_n(b'x', 2 * MAX_CHUNK_LINE));
        assert_eq!(kind_of(&long), ChunkError::LineTooLong);
    }

    #[test]
    fn rejects_missing_crlf_and_bad_trailers() {
        assert_eq!(kind_of(b"5\r\nhelloXX0\r\n\r\n"), ChunkError::MissingCrlf);
        assert_eq!(
            kind_of(b"0\r\nbad trailer\r\n\r\n"),
            ChunkError::BadTrailers
        );
    }

    #[test]
    fn truncated_body_is_unexpected_eof() {
        for wire in [
            &b"5\r\nhel"[..],
            b"5\r\nhello",
            b"5\r\nhello\r\n",
            b"0\r\nX: 1\r\n",
        ] {
            let e = decode_sans_io(wire, 3).expect_err("truncated (sans-IO)");
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            let e = decode(wire, 3).expect_err("truncated");
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{wire:?}: {e}");
        }
    }

    #[test]
    fn length_framing_stops_at_the_length() {
        let mut bc = BufConn::new(&b"abcdefNEXT"[..]);
        let mut body = Vec::new();
        BodyReader::new(&mut bc, Framing::Length(6))
            .read_to_end(&mut body)
            .unwrap();
        assert_eq!(body, b"abcdef");
        let mut bc = BufConn::new(&b"abc"[..]);
        let e = BodyReader::new(&mut bc, Framing::Length(6)).read_to_end(&mut body);
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
