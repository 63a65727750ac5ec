//! HTTP/1.1 message framing in both directions (RFC 9112 sections 6 and
//! 7): the one place that decides how a body is delimited. A head's framing
//! fields are gathered into `FramingFields`, which either refuses the
//! message as ambiguous or says how its body ends; meshd then writes its own
//! framing field from that verdict (invariant 9: the peer's are never
//! copied), and `Decoder` finds the body's data with strict chunk sizes.

use bytes::BytesMut;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncRead;

/// Read buffer growth step.
pub const READ_CHUNK: usize = super::buffers::READ;
/// Longest chunk-size line, and largest trailer section, accepted.
pub const MAX_LINE: usize = 64 * 1024;

/// How a body ends (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the sender closes (responses only).
    Close,
}

/// Why a message's framing is refused: it could be read two ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A `Content-Length` that is not a plain decimal number.
    #[error("bad content-length")]
    BadLength,
    /// Two different `Content-Length` values.
    #[error("conflicting content-length")]
    ConflictingLength,
    /// `Transfer-Encoding` and `Content-Length` together.
    #[error("both transfer-encoding and content-length")]
    Both,
    /// A request whose last transfer coding is not `chunked`.
    #[error("transfer-encoding does not end with chunked")]
    NotChunked,
    /// `chunked` applied twice, or another coding after it.
    #[error("chunked must be the last transfer coding, once")]
    ChunkedNotLast,
    /// `Transfer-Encoding` from an HTTP/1.0 client.
    #[error("transfer-encoding in an HTTP/1.0 request")]
    Http10,
}

/// The framing fields of one head, gathered field by field.
#[derive(Debug, Default)]
pub struct FramingFields {
    length: Option<u64>,
    transfer_encoding: bool,
    chunked_seen: bool,
    chunked_last: bool,
    /// Codings other than chunked, in order, comma-separated (rarely any).
    codings: Vec<u8>,
    error: Option<FramingError>,
}

/// What a head's framing fields decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyFraming {
    /// How the body ends.
    pub framing: Framing,
    /// The `Content-Length` the sender declared, where it says something
    /// beyond the framing (an empty request body, a response to HEAD, a 304).
    pub declared: Option<u64>,
    /// Transfer codings before `chunked` (`gzip, ` ...), passed on as they came.
    pub codings: Option<Box<[u8]>>,
}

impl FramingFields {
    /// Takes `name: value` if it is a framing field. Returns whether it was:
    /// those are never copied, meshd writes its own.
    #[inline]
    pub fn take(&mut self, name: &[u8], value: &[u8]) -> bool {
        // Most fields are neither: their length alone says so.
        if name.len() != 14 && name.len() != 17 {
            return false;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            match parse_length(value) {
                None => self.fail(FramingError::BadLength),
                Some(n) if self.length.is_some_and(|l| l != n) => {
                    self.fail(FramingError::ConflictingLength)
                }
                Some(n) => self.length = Some(n),
            }
            true
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
            for t in tokens(value).filter(|t| !t.is_empty()) {
                if self.chunked_seen {
                    self.fail(FramingError::ChunkedNotLast);
                }
                if t.eq_ignore_ascii_case(b"chunked") {
                    self.chunked_seen = true;
                    self.chunked_last = true;
                } else {
                    if !self.codings.is_empty() {
                        self.codings.extend_from_slice(b", ");
                    }
                    self.codings.extend_from_slice(t);
                    self.chunked_last = false;
                }
            }
            true
        } else {
            false
        }
    }

    fn fail(&mut self, e: FramingError) {
        self.error.get_or_insert(e);
    }

    fn codings(&mut self) -> Option<Box<[u8]>> {
        (!self.codings.is_empty()).then(|| std::mem::take(&mut self.codings).into_boxed_slice())
    }

    /// A request's framing (RFC 9112 section 6.3): chunked last, or a
    /// length, or no body; anything else is refused.
    pub fn request(mut self, http10: bool) -> Result<BodyFraming, FramingError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let framing = match (self.transfer_encoding, self.length) {
            (true, Some(_)) => return Err(FramingError::Both),
            (true, None) if http10 => return Err(FramingError::Http10),
            (true, None) if !self.chunked_last => return Err(FramingError::NotChunked),
            (true, None) => Framing::Chunked,
            (false, Some(0) | None) => Framing::Empty,
            (false, Some(n)) => Framing::Length(n),
        };
        Ok(BodyFraming {
            framing,
            declared: self.length,
            codings: self.codings(),
        })
    }

    /// A response's framing (RFC 9112 section 6.3). `no_body`: a response
    /// to HEAD, or a 304, whose `Content-Length` describes what a GET would
    /// get; `never_length`: a 1xx or 204, which has none.
    pub fn response(
        mut self,
        no_body: bool,
        never_length: bool,
    ) -> Result<BodyFraming, FramingError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.transfer_encoding && self.length.is_some() {
            return Err(FramingError::Both);
        }
        if never_length || no_body {
            return Ok(BodyFraming {
                framing: Framing::Empty,
                declared: self.length.filter(|_| !never_length),
                codings: None,
            });
        }
        let framing = match (self.transfer_encoding, self.length) {
            (true, _) if self.chunked_last => Framing::Chunked,
            // Codings other than chunked last: the body runs until the close.
            (true, _) => Framing::Close,
            (false, Some(n)) => Framing::Length(n),
            (false, None) => Framing::Close,
        };
        Ok(BodyFraming {
            framing,
            declared: None,
            codings: self.codings(),
        })
    }
}

impl BodyFraming {
    /// Writes the framing field meshd sends with this body: `Content-Length`
    /// for a known length, `Transfer-Encoding` (the codings, then chunked)
    /// when the body goes `chunked`, nothing otherwise.
    pub fn write(&self, out: &mut Vec<u8>, chunked: bool) {
        match (self.framing, self.declared) {
            (Framing::Length(n), _) | (Framing::Empty, Some(n)) => {
                out.extend_from_slice(b"content-length: ");
                push_decimal(out, n);
                out.extend_from_slice(b"\r\n");
            }
            (Framing::Chunked | Framing::Close, _) if chunked => {
                out.extend_from_slice(b"transfer-encoding: ");
                if let Some(c) = &self.codings {
                    out.extend_from_slice(c);
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(b"chunked\r\n");
            }
            _ => {}
        }
    }
}

/// Appends `n` in decimal, without allocating.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The comma-separated tokens of a header value, trimmed.
pub fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// A content-length value: digits only, at most 19 (so it fits a u64).
pub fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Whether a `Connection` header names `name`, so it stops here too. The
/// fields meshd frames and routes by are never removed this way: naming
/// them in `Connection` would otherwise unframe the message.
pub fn listed_in_connection(headers: &[httparse::Header<'_>], name: &[u8]) -> bool {
    const PROTECTED: [&[u8]; 3] = [b"content-length", b"transfer-encoding", b"host"];
    if PROTECTED.iter().any(|p| name.eq_ignore_ascii_case(p)) {
        return false;
    }
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| tokens(h.value))
        .any(|t| t.eq_ignore_ascii_case(name))
}

/// A chunk-size line (its CRLF included): hex digits first, at least one,
/// then optional extensions; no bare CR or LF anywhere.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"\r\n")?;
    if !body.first().is_some_and(u8::is_ascii_hexdigit)
        || body.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
    {
        return None;
    }
    match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Complete((n, size))) if n == line.len() => Some(size),
        _ => None,
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads into `buf` from `io`, growing it a step when it runs short. A
/// read that would wait while `buf` holds nothing gives its buffer back to
/// the thread's cache (`buffers`): a quiet connection keeps no read
/// buffer, and the next read takes one.
#[inline]
pub fn poll_fill<R: AsyncRead + Unpin>(
    buf: &mut BytesMut,
    io: &mut R,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let r = poll_fill_held(buf, io, cx);
    if r.is_pending() && buf.is_empty() {
        super::buffers::give_read(std::mem::take(buf));
    }
    r
}

/// `poll_fill` for a read in the middle of an exchange (a response head
/// or a body awaited): the wait is short and bytes follow, so the buffer
/// is kept rather than given back and taken again for every read. Where
/// the connection goes quiet its owner lets the buffer go (`poll_fill`
/// between requests, `upstream::Conn::release_buffer` into the pool).
#[inline]
pub fn poll_fill_held<R: AsyncRead + Unpin>(
    buf: &mut BytesMut,
    io: &mut R,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        if buf.is_empty() && !buf.try_reclaim(READ_CHUNK) {
            *buf = super::buffers::take_read();
        } else {
            buf.reserve(READ_CHUNK);
        }
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

/// Finds the data of a framed HTTP/1.1 body (RFC 9112 sections 6 and 7.1)
/// in a read buffer, reading more when it needs to. It says how many bytes
/// at the front of the buffer are data; the caller takes exactly those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    /// Trailer bytes seen so far.
    Trailers(usize),
    Close,
    Done,
}

impl Decoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Decoder {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Close => State::Close,
        };
        Decoder { state }
    }

    /// Whether the body has been read to its end.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the body ended because the peer closed (no reuse then).
    pub fn ended_by_close(&self) -> bool {
        self.state == State::Close
    }

    /// What is known of the body's length.
    pub fn size_hint(&self) -> http_body::SizeHint {
        match self.state {
            State::Done => http_body::SizeHint::with_exact(0),
            State::Length(n) => http_body::SizeHint::with_exact(n),
            _ => http_body::SizeHint::default(),
        }
    }

    /// The number of data bytes now at the front of `buf` (the caller
    /// takes them all before polling again), `None` at the body's end.
    pub fn poll_data<R: AsyncRead + Unpin>(
        &mut self,
        buf: &mut BytesMut,
        io: &mut R,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<usize>>> {
        loop {
            match self.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) | State::ChunkData(left) if !buf.is_empty() => {
                    let n = (buf.len() as u64).min(left) as usize;
                    let left = left - n as u64;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::ChunkDataEnd,
                        _ => State::ChunkData(left),
                    };
                    return Poll::Ready(Some(Ok(n)));
                }
                State::Close if !buf.is_empty() => return Poll::Ready(Some(Ok(buf.len()))),
                State::ChunkSize | State::ChunkDataEnd | State::Trailers(_) => {
                    if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
                        let line = buf.split_to(pos + 2);
                        self.state = match self.state {
                            State::ChunkDataEnd if pos == 0 => State::ChunkSize,
                            State::ChunkDataEnd => {
                                return Poll::Ready(Some(Err(invalid("bad chunk end"))))
                            }
                            State::Trailers(_) if pos == 0 => State::Done,
                            // Trailers are dropped (meshd ends its own chunked
                            // body without any), but bounded.
                            State::Trailers(seen) if seen + line.len() > MAX_LINE => {
                                return Poll::Ready(Some(Err(invalid("trailers too large"))))
                            }
                            State::Trailers(seen) => State::Trailers(seen + line.len()),
                            _ => match chunk_size(&line) {
                                Some(0) => State::Trailers(0),
                                Some(n) => State::ChunkData(n),
                                None => return Poll::Ready(Some(Err(invalid("bad chunk size")))),
                            },
                        };
                        continue;
                    }
                    if buf.len() > MAX_LINE {
                        return Poll::Ready(Some(Err(invalid("chunk line too long"))));
                    }
                }
                _ => {}
            }
            // Need more bytes.
            match std::task::ready!(poll_fill_held(buf, io, cx)) {
                Err(e) => return Poll::Ready(Some(Err(e))),
                Ok(0) if self.state == State::Close => {
                    self.state = State::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => return Poll::Ready(Some(Err(io::ErrorKind::UnexpectedEof.into()))),
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(heads: &[(&str, &str)]) -> FramingFields {
        let mut f = FramingFields::default();
        for (n, v) in heads {
            assert!(f.take(n.as_bytes(), v.as_bytes()), "{n} is a framing field");
        }
        f
    }

    #[test]
    fn chunk_sizes_are_hex_digits_then_extensions() {
        for (line, size) in [
            ("5\r\n", 5),
            ("aB\r\n", 0xab),
            ("0\r\n", 0),
            ("5;x=y\r\n", 5),
        ] {
            assert_eq!(chunk_size(line.as_bytes()), Some(size), "{line:?}");
        }
        for bad in [
            "+5\r\n",
            " 5\r\n",
            "0x5\r\n",
            "\r\n",
            "5\n\r\n",
            "12345678901234567\r\n",
            "5 x\r\n",
            "-1\r\n",
        ] {
            assert_eq!(chunk_size(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn requests_frame_by_chunked_last_or_one_length() {
        let r = |f: FramingFields| f.request(false);
        assert_eq!(
            r(fields(&[("Content-Length", "5")])).unwrap().framing,
            Framing::Length(5)
        );
        let empty = r(fields(&[("content-length", "0")])).unwrap();
        assert_eq!((empty.framing, empty.declared), (Framing::Empty, Some(0)));
        let gz = r(fields(&[
            ("Transfer-Encoding", "gzip"),
            ("transfer-encoding", "chunked"),
        ]))
        .unwrap();
        assert_eq!(gz.framing, Framing::Chunked);
        assert_eq!(gz.codings.as_deref(), Some(&b"gzip"[..]));
        for (heads, e) in [
            (
                &[("content-length", "3"), ("transfer-encoding", "chunked")][..],
                FramingError::Both,
            ),
            (
                &[("content-length", "3"), ("content-length", "4")][..],
                FramingError::ConflictingLength,
            ),
            (&[("content-length", "+3")][..], FramingError::BadLength),
            (
                &[("transfer-encoding", "chunked, gzip")][..],
                FramingError::ChunkedNotLast,
            ),
            (
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ][..],
                FramingError::ChunkedNotLast,
            ),
            (
                &[("transfer-encoding", "gzip")][..],
                FramingError::NotChunked,
            ),
            (&[("transfer-encoding", "")][..], FramingError::NotChunked),
        ] {
            assert_eq!(r(fields(heads)), Err(e), "{heads:?}");
        }
        assert_eq!(
            fields(&[("transfer-encoding", "chunked")]).request(true),
            Err(FramingError::Http10)
        );
    }

    #[test]
    fn responses_with_both_framings_are_refused_and_codings_kept() {
        let both = fields(&[("content-length", "5"), ("transfer-encoding", "chunked")]);
        assert_eq!(both.response(false, false), Err(FramingError::Both));
        let head = fields(&[("content-length", "5")])
            .response(true, false)
            .unwrap();
        assert_eq!((head.framing, head.declared), (Framing::Empty, Some(5)));
        let no_content = fields(&[("content-length", "5")])
            .response(false, true)
            .unwrap();
        assert_eq!(no_content.declared, None);
        let coded = fields(&[("transfer-encoding", "gzip")])
            .response(false, false)
            .unwrap();
        assert_eq!(coded.framing, Framing::Close);
        let mut out = Vec::new();
        coded.write(&mut out, true);
        assert_eq!(out, b"transfer-encoding: gzip, chunked\r\n");
        out.clear();
        BodyFraming {
            framing: Framing::Length(1234567),
            declared: None,
            codings: None,
        }
        .write(&mut out, false);
        assert_eq!(out, b"content-length: 1234567\r\n");
        out.clear();
        BodyFraming {
            framing: Framing::Empty,
            declared: None,
            codings: None,
        }
        .write(&mut out, true);
        assert!(out.is_empty(), "no body, no framing field");
    }

    #[test]
    fn connection_cannot_name_the_fields_framing_depends_on() {
        let headers = [httparse::Header {
            name: "Connection",
            value: b"content-length, Transfer-Encoding, host, x-secret",
        }];
        for name in ["content-length", "transfer-encoding", "Host"] {
            assert!(!listed_in_connection(&headers, name.as_bytes()), "{name}");
        }
        assert!(listed_in_connection(&headers, b"x-secret"));
    }
}
