//! Buffered reading of a connection: message heads parsed in place, and whatever arrived past
//! a head kept for the body or the next pipelined request.

use std::io::{self, BufRead, Read};

/// A message head (request line or status line plus header fields) may be at most this long,
/// counting any empty lines before it. Longer answers 400 (server) or fails (client).
pub(crate) const MAX_HEAD: usize = 16 * 1024;

/// At most this many header fields in a head (and in a chunked trailer section).
pub(crate) const MAX_HEADERS: usize = 64;

/// Read buffer size. Larger than [`MAX_HEAD`] so a whole head always fits after compaction.
const BUF_SIZE: usize = 64 * 1024;

/// Why a head could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadError {
    /// The connection failed, timed out, or closed in the middle of a head.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The head is not valid HTTP/1.x.
    #[error("malformed head: {0}")]
    Parse(httparse::Error),
    /// The head did not end within [`MAX_HEAD`] bytes.
    #[error("head longer than {MAX_HEAD} bytes")]
    TooLarge,
}

/// A reader over a connection with a buffer the caller can inspect (`buffered`), extend
/// (`fill_more`) and consume (`BufRead::consume`).
///
/// Bytes read past a head stay in the buffer: they are the start of the body, or of the next
/// request when a client pipelines. Large reads into an empty buffer go straight to the
/// caller's slice, so streaming a body costs no extra copy.
pub(crate) struct BufConn<C> {
    inner: C,
    buf: Box<[u8]>,
    /// Start of unconsumed bytes.
    pos: usize,
    /// End of valid bytes.
    filled: usize,
}

impl<C: Read> BufConn<C> {
    /// Wraps `inner` with an empty buffer.
    pub(crate) fn new(inner: C) -> Self {
        Self {
            inner,
            buf: vec![0; BUF_SIZE].into_boxed_slice(),
            pos: 0,
            filled: 0,
        }
    }

    /// The wrapped connection, for writing and for per-connection calls like `info_json`.
    pub(crate) fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// The bytes read but not yet consumed.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.filled]
    }

    /// Reads more bytes from the connection, appending them to [`Self::buffered`] (moving the
    /// buffered bytes to the front first when the tail is full). Returns how many arrived:
    /// 0 means end of stream, or that the buffer is completely full.
    pub(crate) fn fill_more(&mut self) -> io::Result<usize> {
        if self.filled == self.buf.len() && self.pos > 0 {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
        if self.filled == self.buf.len() {
            return Ok(0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.filled..]) {
                Ok(n) => {
                    self.filled += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one head: calls `parse` on the buffered bytes (after each arrival) until it
    /// returns `Some((head_len, value))`, consumes `head_len` bytes and returns the value.
    /// `parse` returns `Ok(None)` while the head is incomplete.
    ///
    /// `Ok(None)` means the peer closed the connection cleanly before sending any byte of a
    /// head (the normal end of a keep-alive connection).
    pub(crate) fn read_head<T>(
        &mut self,
        mut parse: impl FnMut(&[u8]) -> Result<Option<(usize, T)>, httparse::Error>,
    ) -> Result<Option<T>, HeadError> {
        // A head must fit in one buffer; compacting now keeps `fill_more` from having to.
        if self.buf.len() - self.pos < MAX_HEAD + 1 {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
        loop {
            if self.pos < self.filled {
                match parse(self.buffered()).map_err(HeadError::Parse)? {
                    Some((len, _)) if len > MAX_HEAD => return Err(HeadError::TooLarge),
                    Some((len, value)) => {
                        self.pos += len;
                        return Ok(Some(value));
                    }
                    None if self.filled - self.pos > MAX_HEAD => return Err(HeadError::TooLarge),
                    None => {}
                }
            }
            if self.fill_more()? == 0 {
                if self.pos == self.filled {
                    return Ok(None);
                }
                return Err(HeadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a message head",
                )));
            }
        }
    }
}

impl<C: Read> Read for BufConn<C> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // Nothing buffered and a large destination: skip the copy through our buffer.
        if self.pos == self.filled && out.len() >= self.buf.len() {
            self.pos = 0;
            self.filled = 0;
            return self.inner.read(out);
        }
        let n = {
            let avail = self.fill_buf()?;
            let n = avail.len().min(out.len());
            out[..n].copy_from_slice(&avail[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<C: Read> BufRead for BufConn<C> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.filled {
            self.pos = 0;
            self.filled = 0;
            self.fill_more()?;
        }
        Ok(self.buffered())
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.filled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its input in fixed-size pieces, to split heads across reads.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len() - self.at);
            out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn request_len(buf: &[u8]) -> Result<Option<(usize, String)>, httparse::Error> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        Ok(match req.parse(buf)? {
            httparse::Status::Complete(n) => Some((n, req.path.unwrap_or("").to_string())),
            httparse::Status::Partial => None,
        })
    }

    #[test]
    fn head_split_across_reads_keeps_the_bytes_after_it() {
        let data = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nBODYGET /b HTTP/1.1\r\n\r\n".to_vec();
        let mut bc = BufConn::new(Trickle {
            data,
            at: 0,
            step: 3,
        });
        assert_eq!(bc.read_head(request_len).unwrap().as_deref(), Some("/a"));
        let mut body = [0u8; 4];
        bc.read_exact(&mut body).unwrap();
        assert_eq!(&body, b"BODY");
        assert_eq!(bc.read_head(request_len).unwrap().as_deref(), Some("/b"));
        assert!(
            bc.read_head(request_len).unwrap().is_none(),
            "clean EOF after the last head"
        );
    }

    #[test]
    fn eof_inside_a_head_is_an_error() {
        let data = b"GET /a HTTP/1.1\r\nHo".to_vec();
        let mut bc = BufConn::new(Trickle {
            data,
            at: 0,
            step: 1000,
        });
        match bc.read_head(request_len) {
            Err(HeadError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            other => panic!("expected UnexpectedEof, got {other:?}"),
        }
    }

    #[test]
    fn endless_head_is_too_large() {
        let mut data = b"GET /a HTTP/1.1\r\n".to_vec();
        while data.len() < 3 * MAX_HEAD {
            data.extend_from_slice(b"X-Filler: 0123456789\r\n");
        }
        let mut bc = BufConn::new(Trickle {
            data,
            at: 0,
            step: 4096,
        });
        // MAX_HEADERS would stop this first; allow as many headers as it takes.
        let r = bc.read_head(|buf| {
            let mut headers = vec![httparse::EMPTY_HEADER; 4096];
            let mut req = httparse::Request::new(&mut headers);
            Ok(match req.parse(buf)? {
                httparse::Status::Complete(n) => Some((n, ())),
                httparse::Status::Partial => None,
            })
        });
        assert!(matches!(r, Err(HeadError::TooLarge)), "got {r:?}");
    }
}
