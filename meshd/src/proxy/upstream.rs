//! The upstream side of the HTTP proxy: a lean HTTP/1.1 client that runs
//! inside the request's own task. hyper's client puts each connection in a
//! task of its own and hands requests and bodies across channels; here the
//! request is written and the response read in place, which saves two task
//! hops per request. Framing follows RFC 9112 section 6.

use super::body::UpBody;
use super::stream::UpstreamIo;
use bytes::{Bytes, BytesMut};
use http_body::Body;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use hyper::{HeaderMap, Method, StatusCode};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncWriteExt, Interest};

/// Largest response head accepted from a backend.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most response headers accepted.
const MAX_HEADERS: usize = 100;
/// Read buffer growth step.
const READ_CHUNK: usize = 8 * 1024;

/// One connection to a backend, with what was read past the last message.
#[derive(Debug)]
pub struct Conn {
    io: UpstreamIo,
    buf: BytesMut,
}

/// Why an exchange failed, and whether the request reached the backend.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Nothing reached the backend, or it closed a reused connection
    /// without reading: the request may go elsewhere.
    #[error("connection closed before the request was taken: {0}")]
    NotSent(io::Error),
    /// The backend may have seen the request.
    #[error("{0}")]
    Failed(io::Error),
    /// The backend answered something that is not HTTP/1.x.
    #[error("bad response from backend: {0}")]
    Malformed(String),
}

/// A response head and how its body is framed.
#[derive(Debug)]
pub struct Head {
    /// Status.
    pub status: StatusCode,
    /// Headers (hop-by-hop ones still in).
    pub headers: HeaderMap,
    /// Body framing.
    pub framing: Framing,
    /// Whether the connection may carry another request afterwards.
    pub reusable: bool,
}

/// How a response body ends (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the backend closes.
    Close,
}

impl Conn {
    /// Wraps a fresh connection.
    pub fn new(io: UpstreamIo) -> Conn {
        Conn {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// Whether an idle connection is still usable: no stray bytes and no
    /// close from the backend. Uses the reactor's readiness, so a quiet
    /// connection costs no syscall.
    pub fn is_usable(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let tcp = self.io.tcp();
        let mut cx = Context::from_waker(Waker::noop());
        let ready = std::pin::pin!(tcp.ready(Interest::READABLE));
        match ready.poll(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readable on an idle connection: only a real read can tell an
            // old wake-up from a close.
            // Under TLS a raw peek would eat record bytes: a readable idle TLS
            // connection (close_notify, most likely) is simply not reused.
            Poll::Ready(Ok(_)) if self.io.is_tls() => false,
            Poll::Ready(Ok(r)) => {
                !r.is_read_closed()
                    && matches!(tcp.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Sends a request and reads the response head. `reused` says the
    /// connection came from the pool (a close at once then means "not taken").
    pub async fn exchange(
        &mut self,
        method: &Method,
        target: &[u8],
        headers: &HeaderMap,
        mut body: UpBody,
        reused: bool,
    ) -> Result<Head, ExchangeError> {
        let chunked = !body.is_end_stream() && !headers.contains_key(CONTENT_LENGTH);
        let mut head = Vec::with_capacity(256 + headers.len() * 32);
        head.extend_from_slice(method.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(target);
        head.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in headers {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        if chunked {
            head.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        head.extend_from_slice(b"\r\n");
        self.io
            .write_all(&head)
            .await
            .map_err(ExchangeError::NotSent)?;
        if !body.is_end_stream() {
            self.send_body(&mut body, chunked)
                .await
                .map_err(ExchangeError::Failed)?;
        }
        let expect_body = *method != Method::HEAD;
        loop {
            let head = self.read_head(expect_body, reused).await?;
            // 1xx other than 101 are interim: the real answer follows.
            if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                continue;
            }
            return Ok(head);
        }
    }

    async fn send_body(&mut self, body: &mut UpBody, chunked: bool) -> io::Result<()> {
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
        {
            let frame = frame.map_err(io::Error::other)?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            if chunked {
                self.io
                    .write_all(format!("{:x}\r\n", data.len()).as_bytes())
                    .await?;
                self.io.write_all(&data).await?;
                self.io.write_all(b"\r\n").await?;
            } else {
                self.io.write_all(&data).await?;
            }
        }
        if chunked {
            self.io.write_all(b"0\r\n\r\n").await?;
        }
        Ok(())
    }

    async fn fill(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.reserve(READ_CHUNK);
        }
        tokio::io::AsyncReadExt::read_buf(&mut self.io, &mut self.buf).await
    }

    async fn read_head(&mut self, expect_body: bool, reused: bool) -> Result<Head, ExchangeError> {
        let mut first = true;
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = self.parse_head(expect_body)? {
                    return Ok(head);
                }
                if self.buf.len() >= MAX_HEAD {
                    return Err(ExchangeError::Malformed("response head too large".into()));
                }
            }
            match self.fill().await {
                Ok(0) if first && self.buf.is_empty() && reused => {
                    return Err(ExchangeError::NotSent(
                        io::ErrorKind::ConnectionReset.into(),
                    ))
                }
                Ok(0) => return Err(ExchangeError::Failed(io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => first = false,
                Err(e)
                    if first
                        && self.buf.is_empty()
                        && reused
                        && e.kind() == io::ErrorKind::ConnectionReset =>
                {
                    return Err(ExchangeError::NotSent(e))
                }
                Err(e) => return Err(ExchangeError::Failed(e)),
            }
        }
    }

    fn parse_head(&mut self, expect_body: bool) -> Result<Option<Head>, ExchangeError> {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut slots);
        let len = match resp.parse(&self.buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(ExchangeError::Malformed(e.to_string())),
        };
        let code = resp.code.unwrap_or(0);
        let status =
            StatusCode::from_u16(code).map_err(|e| ExchangeError::Malformed(e.to_string()))?;
        let http11 = resp.version == Some(1);
        // Header values are slices of the head: share its bytes instead of copying each.
        let base = self.buf.as_ptr() as usize;
        let spans: Vec<(HeaderName, usize, usize)> = resp
            .headers
            .iter()
            .map(|h| {
                let name = HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|e| ExchangeError::Malformed(e.to_string()))?;
                let start = h.value.as_ptr() as usize - base;
                Ok((name, start, start + h.value.len()))
            })
            .collect::<Result<_, ExchangeError>>()?;
        let raw = self.buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(spans.len());
        for (name, start, end) in spans {
            let value = HeaderValue::from_maybe_shared(raw.slice(start..end))
                .map_err(|e| ExchangeError::Malformed(e.to_string()))?;
            headers.append(name, value);
        }
        let close = headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| token(v, "close"));
        let keep_alive = headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| token(v, "keep-alive"));
        let framing = if !expect_body
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Framing::Empty
        } else if headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .any(|v| token(v, "chunked"))
        {
            Framing::Chunked
        } else if let Some(v) = headers.get(CONTENT_LENGTH) {
            let n = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| ExchangeError::Malformed("bad content-length".into()))?;
            Framing::Length(n)
        } else {
            Framing::Close
        };
        let reusable = !close
            && (http11 || keep_alive)
            && framing != Framing::Close
            && status != StatusCode::SWITCHING_PROTOCOLS;
        Ok(Some(Head {
            status,
            headers,
            framing,
            reusable,
        }))
    }

    /// The stream and any bytes read past the head, for an upgraded connection.
    pub fn into_parts(self) -> (UpstreamIo, Bytes) {
        (self.io, self.buf.freeze())
    }
}

fn token(v: &HeaderValue, t: &str) -> bool {
    v.to_str()
        .is_ok_and(|s| s.split(',').any(|p| p.trim().eq_ignore_ascii_case(t)))
}

/// Reading a response body off a connection, frame by frame.
#[derive(Debug)]
pub struct BodyReader {
    conn: Option<Conn>,
    state: State,
    reusable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    Close,
    Done,
}

impl BodyReader {
    /// Reads a body framed as `framing` from `conn`.
    pub fn new(conn: Conn, framing: Framing, reusable: bool) -> BodyReader {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Close => State::Close,
        };
        BodyReader {
            conn: Some(conn),
            state,
            reusable,
        }
    }

    /// What is known of the body's length.
    pub fn size_hint(&self) -> http_body::SizeHint {
        match self.state {
            State::Done => http_body::SizeHint::with_exact(0),
            State::Length(n) => http_body::SizeHint::with_exact(n),
            _ => http_body::SizeHint::default(),
        }
    }

    /// Whether the body has been read to its end.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The connection, once the body ended and the backend allows reuse.
    pub fn take_reusable(&mut self) -> Option<Conn> {
        (self.state == State::Done && self.reusable)
            .then(|| self.conn.take())
            .flatten()
    }

    /// The next piece of body, `None` at its end.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match self.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) | State::ChunkData(left) if !conn.buf.is_empty() => {
                    let n = (conn.buf.len() as u64).min(left) as usize;
                    let data = conn.buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::ChunkDataEnd,
                        _ => State::ChunkData(left),
                    };
                    return Poll::Ready(Some(Ok(data)));
                }
                State::Close if !conn.buf.is_empty() => {
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(data)));
                }
                State::ChunkSize | State::ChunkDataEnd | State::Trailers => {
                    if let Some(pos) = conn.buf.windows(2).position(|w| w == b"\r\n") {
                        let line = conn.buf.split_to(pos + 2);
                        let line = &line[..pos];
                        self.state = match self.state {
                            State::ChunkDataEnd if line.is_empty() => State::ChunkSize,
                            State::ChunkDataEnd => {
                                return Poll::Ready(Some(Err(io::Error::other("bad chunk end"))))
                            }
                            State::Trailers if line.is_empty() => State::Done,
                            State::Trailers => State::Trailers,
                            _ => {
                                let hex = line.split(|&b| b == b';').next().unwrap_or(&[]);
                                let size = std::str::from_utf8(hex)
                                    .ok()
                                    .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
                                    .ok_or_else(|| io::Error::other("bad chunk size"));
                                match size {
                                    Ok(0) => State::Trailers,
                                    Ok(n) => State::ChunkData(n),
                                    Err(e) => return Poll::Ready(Some(Err(e))),
                                }
                            }
                        };
                        continue;
                    }
                    if conn.buf.len() > MAX_HEAD {
                        return Poll::Ready(Some(Err(io::Error::other("chunk line too long"))));
                    }
                }
                _ => {}
            }
            // Need more bytes.
            let mut fill = std::pin::pin!(conn.fill());
            match fill.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Ok(0)) if self.state == State::Close => {
                    self.state = State::Done;
                    self.reusable = false;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Some(Err(io::ErrorKind::UnexpectedEof.into())))
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
    }
}
