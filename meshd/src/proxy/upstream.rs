//! The upstream side of the HTTP proxy: a lean HTTP/1.1 client that runs
//! inside the request's own task. hyper's client puts each connection in a
//! task of its own and hands requests and bodies across channels; here the
//! request is written and the response read in place, which saves two task
//! hops per request. How bodies are framed is `codec`'s to say.

use super::codec::{
    listed_in_connection, poll_fill_held, tokens, BodyFraming, Decoder, Framing, FramingFields,
};
use super::h2::RecvBody;
use super::stream::UpstreamIo;
use bytes::{Bytes, BytesMut};
use http_body::Body;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, StatusCode};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// Largest response head accepted from a backend.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most response headers accepted.
const MAX_HEADERS: usize = 100;

/// One connection to a backend, with what was read past the last message.
#[derive(Debug)]
pub struct Conn {
    io: UpstreamIo,
    buf: BytesMut,
}

/// Why an exchange failed, and whether the request reached the backend.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Writing the request failed: the backend did not take it, and it
    /// may go elsewhere.
    #[error("connection closed before the request was taken: {0}")]
    NotSent(io::Error),
    /// A reused connection closed after the request was written, before
    /// any byte of an answer: most likely stale, but the backend may have
    /// read and acted on it, so only an idempotent request goes again.
    #[error("reused connection closed unanswered: {0}")]
    Unanswered(io::Error),
    /// The backend may have seen the request.
    #[error("{0}")]
    Failed(io::Error),
    /// The client's side failed while its body was read.
    #[error("client went away: {0}")]
    ClientGone(io::Error),
    /// The backend answered something that is not HTTP/1.x.
    #[error("bad response from backend: {0}")]
    Malformed(String),
}

/// Where a response head goes once parsed.
#[derive(Debug)]
pub enum HeadInto<'a> {
    /// Into `Head::headers`.
    Map,
    /// Client-ready HTTP/1.1 bytes: status line and end-to-end fields.
    Http1(&'a mut Vec<u8>),
    /// An HPACK block for an HTTP/2 client: `:status`, then the end-to-end
    /// fields, names lowercased.
    Hpack(&'a mut Vec<u8>),
}

impl HeadInto<'_> {
    /// The same destination, lent again.
    pub fn reborrow(&mut self) -> HeadInto<'_> {
        match self {
            HeadInto::Map => HeadInto::Map,
            HeadInto::Http1(out) => HeadInto::Http1(out),
            HeadInto::Hpack(out) => HeadInto::Hpack(out),
        }
    }

    /// Empties what an earlier response wrote (a 1xx, or a retried attempt).
    fn clear(&mut self) {
        if let HeadInto::Http1(out) | HeadInto::Hpack(out) = self {
            out.clear();
        }
    }
}

/// A response head and how its body is framed.
#[derive(Debug)]
pub struct Head {
    /// Status.
    pub status: StatusCode,
    /// End-to-end headers (empty unless read into `HeadInto::Map`).
    pub headers: HeaderMap,
    /// How the body is framed, and what meshd writes to frame it.
    pub body: BodyFraming,
    /// Whether the connection may carry another request afterwards.
    pub reusable: bool,
}

impl Conn {
    /// Wraps a fresh connection.
    pub fn new(io: UpstreamIo) -> Conn {
        Conn {
            io,
            // Taken from the thread's cache by the first read.
            buf: BytesMut::new(),
        }
    }

    /// Lets the read buffer go when it holds nothing: the connection is
    /// going back to its pool, where it may wait long.
    pub fn release_buffer(&mut self) {
        if self.buf.is_empty() {
            super::buffers::give_read(std::mem::take(&mut self.buf));
        }
    }

    /// Whether an idle connection is still usable: no stray bytes and no
    /// close from the backend.
    pub fn is_usable(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        // A quiet socket is answered from the reactor's cached readiness,
        // with no syscall and no waiter to register and remove; only a
        // readable one is read. Any byte read (stray data, or a TLS
        // close_notify record) means the connection is not reused.
        matches!(self.io.tcp().try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Writes a complete request head; a failure means the request was not taken.
    pub async fn write_head(&mut self, head: &[u8]) -> Result<(), ExchangeError> {
        self.io
            .write_all(head)
            .await
            .map_err(ExchangeError::NotSent)
    }

    /// Writes bytes of a request body.
    pub async fn write_body(&mut self, data: &[u8]) -> io::Result<()> {
        self.io.write_all(data).await
    }

    /// Reads the final response head (1xx other than 101 are skipped), and
    /// when its first byte was at hand (the app's response time ends there),
    /// into `into`.
    pub async fn read_response(
        &mut self,
        expect_body: bool,
        reused: bool,
        mut into: HeadInto<'_>,
    ) -> Result<(Head, Instant), ExchangeError> {
        loop {
            into.clear();
            let (head, first_byte) = self.read_head(expect_body, reused, into.reborrow()).await?;
            // 1xx other than 101 are interim: the real answer follows.
            if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                continue;
            }
            return Ok((head, first_byte));
        }
    }

    /// Streams an HTTP/2 request body, chunk-encoded when `chunked`, with no
    /// wait longer than `idle`. The client's side failing (an HTTP/2 reset,
    /// or a stall) is `ClientGone`, never the backend's fault; the backend
    /// not taking the bytes is `Failed`.
    pub async fn send_body(
        &mut self,
        body: &mut RecvBody,
        chunked: bool,
        idle: std::time::Duration,
    ) -> Result<(), ExchangeError> {
        let stalled = || io::Error::from(io::ErrorKind::TimedOut);
        let mut frame_head = Vec::new();
        loop {
            let next = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx));
            let frame = match tokio::time::timeout(idle, next).await {
                Err(_) => return Err(ExchangeError::ClientGone(stalled())),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(ExchangeError::ClientGone(io::Error::other(e))),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            let write = async {
                if chunked {
                    frame_head.clear();
                    push_chunk_size(&mut frame_head, data.len());
                    self.io.write_all(&frame_head).await?;
                    self.io.write_all(&data).await?;
                    self.io.write_all(b"\r\n").await
                } else {
                    self.io.write_all(&data).await
                }
            };
            match tokio::time::timeout(idle, write).await {
                Err(_) => return Err(ExchangeError::Failed(stalled())),
                Ok(Err(e)) => return Err(ExchangeError::Failed(e)),
                Ok(Ok(())) => {}
            }
        }
        if chunked {
            self.io
                .write_all(b"0\r\n\r\n")
                .await
                .map_err(ExchangeError::Failed)?;
        }
        Ok(())
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| poll_fill_held(&mut self.buf, &mut self.io, cx)).await
    }

    async fn read_head(
        &mut self,
        expect_body: bool,
        reused: bool,
        mut into: HeadInto<'_>,
    ) -> Result<(Head, Instant), ExchangeError> {
        let mut first = true;
        // Read once the first byte is here, before parsing: the one clock
        // read of the response serves the app's response time, the start
        // of the transfer and the body's first idle window.
        let mut first_byte = None;
        loop {
            if !self.buf.is_empty() {
                let at = *first_byte.get_or_insert_with(Instant::now);
                if let Some(head) = self.parse_head(expect_body, into.reborrow())? {
                    return Ok((head, at));
                }
                if self.buf.len() >= MAX_HEAD {
                    return Err(ExchangeError::Malformed("response head too large".into()));
                }
            }
            match self.fill().await {
                Ok(0) if first && self.buf.is_empty() && reused => {
                    return Err(ExchangeError::Unanswered(
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
                    return Err(ExchangeError::Unanswered(e))
                }
                Err(e) => return Err(ExchangeError::Failed(e)),
            }
        }
    }

    fn parse_head(
        &mut self,
        expect_body: bool,
        into: HeadInto<'_>,
    ) -> Result<Option<Head>, ExchangeError> {
        parse_response_head(&mut self.buf, expect_body, into)
    }

    /// The read buffer and the stream, for reading a body in place.
    pub fn parts_mut(&mut self) -> (&mut BytesMut, &mut UpstreamIo) {
        (&mut self.buf, &mut self.io)
    }

    /// The stream and any bytes read past the head, for an upgraded connection.
    pub fn into_parts(self) -> (UpstreamIo, Bytes) {
        (self.io, self.buf.freeze())
    }
}

/// Parses the response head at the front of `buf` as a backend connection
/// does: `Ok(None)` while it is incomplete; once parsed, the head's bytes
/// are taken from `buf` and the body's follow. Public for the fuzz targets
/// (`ops/fuzz`), which feed it arbitrary bytes.
pub fn parse_response_head(
    buf: &mut BytesMut,
    expect_body: bool,
    into: HeadInto<'_>,
) -> Result<Option<Head>, ExchangeError> {
    // Left uninitialised: filling 100 empty slots on every response
    // costs more than parsing a short head.
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        &buf[..],
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ExchangeError::Malformed(e.to_string())),
    };
    let code = resp.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|e| ExchangeError::Malformed(e.to_string()))?;
    let http11 = resp.version == Some(1);
    // One pass over the raw headers finds what framing and reuse depend on.
    let (mut close, mut keep_alive, mut lists_names) = (false, false, false);
    let mut framing_fields = FramingFields::default();
    // Which headers are framing fields, by index (at most MAX_HEADERS),
    // so the copy below skips them without comparing names again.
    let mut framing_at = 0u128;
    for (i, h) in resp.headers.iter().enumerate() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                } else if !t.eq_ignore_ascii_case(b"upgrade") {
                    lists_names = true;
                }
            }
        } else if framing_fields.take(name, h.value) {
            framing_at |= 1 << i;
        }
    }
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let never_length = status.is_informational() || status == StatusCode::NO_CONTENT;
    let no_body = !expect_body || status == StatusCode::NOT_MODIFIED;
    let body = framing_fields
        .response(no_body, never_length)
        .map_err(|e| ExchangeError::Malformed(e.to_string()))?;
    let framing = body.framing;
    let reusable = !close && (http11 || keep_alive) && framing != Framing::Close && !switching;
    // The length meshd frames the body with, if it sends one.
    let length = match (body.framing, body.declared) {
        (Framing::Length(n), _) | (Framing::Empty, Some(n)) => Some(n),
        _ => None,
    };
    let headers = match into {
        HeadInto::Http1(out) => {
            // The client gets HTTP/1.1 whatever the backend spoke, and
            // only end-to-end headers; meshd adds its own framing.
            out.extend_from_slice(b"HTTP/1.1 ");
            out.extend_from_slice(status.as_str().as_bytes());
            out.push(b' ');
            out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
            out.extend_from_slice(b"\r\n");
            for h in end_to_end(resp.headers, framing_at, switching, lists_names) {
                out.extend_from_slice(h.name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(h.value);
                out.extend_from_slice(b"\r\n");
            }
            if switching {
                out.extend_from_slice(b"connection: upgrade\r\n");
            }
            super::buffers::consume(buf, len);
            HeaderMap::new()
        }
        HeadInto::Hpack(out) => {
            // HTTP/2 frames by DATA and END_STREAM and has no transfer
            // codings: a coded body cannot pass without losing them.
            if body.codings.is_some() {
                return Err(ExchangeError::Malformed(
                    "transfer codings other than chunked".into(),
                ));
            }
            super::h2::hpack::encode_status(out, code);
            for h in end_to_end(resp.headers, framing_at, switching, lists_names) {
                super::h2::hpack::encode_field_folded(out, h.name.as_bytes(), h.value);
            }
            if let Some(n) = length {
                super::h2::hpack::encode_content_length(out, n);
            }
            super::buffers::consume(buf, len);
            HeaderMap::new()
        }
        HeadInto::Map => {
            // Header values are slices of the head: share its bytes instead of copying each.
            let base = buf.as_ptr() as usize;
            // The backend's own Content-Length is shared rather than
            // formatted anew when it already reads as meshd would write it
            // (FramingFields checked that every copy says the same).
            let mut length_kept = false;
            let mut keep_length = |value: &[u8]| {
                let canonical = !value.is_empty()
                    && value.iter().all(u8::is_ascii_digit)
                    && (value.len() == 1 || value[0] != b'0');
                let keep = length.is_some() && canonical && !length_kept;
                length_kept |= keep;
                keep
            };
            // Hop-by-hop headers stop here, as in the raw head.
            let spans: Vec<(HeaderName, usize, usize)> = resp
                .headers
                .iter()
                .enumerate()
                .filter(|(_, h)| {
                    let name = h.name.as_bytes();
                    let framing_field = is_framing(name)
                        && !(name.eq_ignore_ascii_case(b"content-length") && keep_length(h.value));
                    !(hop_by_hop(name, switching)
                        || framing_field
                        || (lists_names && listed_in_connection(resp.headers, name)))
                })
                .map(|(i, h)| {
                    let name = super::name_cache::header_name(i, h.name.as_bytes())
                        .map_err(|e| ExchangeError::Malformed(e.to_string()))?;
                    let start = h.value.as_ptr() as usize - base;
                    Ok((name, start, start + h.value.len()))
                })
                .collect::<Result<_, ExchangeError>>()?;
            let raw = buf.split_to(len).freeze();
            let mut headers = HeaderMap::with_capacity(spans.len());
            for (name, start, end) in spans {
                let value = HeaderValue::from_maybe_shared(raw.slice(start..end))
                    .map_err(|e| ExchangeError::Malformed(e.to_string()))?;
                headers.append(name, value);
            }
            if switching {
                headers.insert(
                    hyper::header::CONNECTION,
                    HeaderValue::from_static("upgrade"),
                );
            }
            // HTTP/2 frames by DATA and END_STREAM and has no transfer
            // codings: a coded body cannot pass without losing them.
            if body.codings.is_some() {
                return Err(ExchangeError::Malformed(
                    "transfer codings other than chunked".into(),
                ));
            }
            if let Some(n) = length.filter(|_| !length_kept) {
                headers.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            headers
        }
    };
    Ok(Some(Head {
        status,
        headers,
        body,
        reusable,
    }))
}

/// The fields of a response head a client gets: not the framing fields
/// (`framing_at`, by index), not hop-by-hop ones, not those `Connection`
/// names.
fn end_to_end<'h, 'b>(
    headers: &'h [httparse::Header<'b>],
    framing_at: u128,
    switching: bool,
    lists_names: bool,
) -> impl Iterator<Item = &'h httparse::Header<'b>> {
    headers.iter().enumerate().filter_map(move |(i, h)| {
        let name = h.name.as_bytes();
        let skip = framing_at >> i & 1 == 1
            || hop_by_hop(name, switching)
            || (lists_names && listed_in_connection(headers, name));
        (!skip).then_some(h)
    })
}

/// A chunk's size line.
fn push_chunk_size(out: &mut Vec<u8>, n: usize) {
    use std::io::Write;
    // Writing a number into a Vec cannot fail.
    let _ = write!(out, "{n:x}\r\n");
}

/// The fields meshd frames a message with itself.
fn is_framing(name: &[u8]) -> bool {
    match name.len() {
        14 => name.eq_ignore_ascii_case(b"content-length"),
        17 => name.eq_ignore_ascii_case(b"transfer-encoding"),
        _ => false,
    }
}

/// Hop-by-hop response headers (RFC 9110 section 7.6.1); `Upgrade` stays on a 101.
fn hop_by_hop(name: &[u8], switching: bool) -> bool {
    const NAMES: [&[u8]; 6] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
    ];
    NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
        || (!switching && name.eq_ignore_ascii_case(b"upgrade"))
}

/// Reading a response body off a backend connection, piece by piece.
#[derive(Debug)]
pub struct BodyReader {
    conn: Option<Conn>,
    decoder: Decoder,
    reusable: bool,
}

impl BodyReader {
    /// Reads a body framed as `framing` from `conn`.
    pub fn new(conn: Conn, framing: Framing, reusable: bool) -> BodyReader {
        BodyReader {
            conn: Some(conn),
            decoder: Decoder::new(framing),
            reusable: reusable && framing != Framing::Close,
        }
    }

    /// What is known of the body's length.
    pub fn size_hint(&self) -> http_body::SizeHint {
        self.decoder.size_hint()
    }

    /// Whether the body has been read to its end.
    pub fn is_done(&self) -> bool {
        self.decoder.is_done()
    }

    /// The connection, once the body ended and the backend allows reuse.
    pub fn take_reusable(&mut self) -> Option<Conn> {
        (self.decoder.is_done() && self.reusable)
            .then(|| self.conn.take())
            .flatten()
    }

    /// The next piece of body, `None` at its end.
    pub fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        match std::task::ready!(self.decoder.poll_data(&mut conn.buf, &mut conn.io, cx)) {
            Some(Ok(n)) => Poll::Ready(Some(Ok(conn.buf.split_to(n).freeze()))),
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => Poll::Ready(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (
            Conn::new(UpstreamIo::Plain(client.unwrap())),
            accepted.unwrap().0,
        )
    }

    /// Lets the reactor see what the peer did.
    async fn settle() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn an_idle_connection_is_usable_until_the_backend_closes_or_talks() {
        let (quiet, _keep) = pair().await;
        settle().await;
        assert!(quiet.is_usable(), "a quiet connection is reused");

        let (closed, peer) = pair().await;
        drop(peer);
        settle().await;
        assert!(
            !closed.is_usable(),
            "a connection the backend closed is not"
        );

        let (chatty, mut peer) = pair().await;
        peer.write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
            .await
            .unwrap();
        settle().await;
        assert!(
            !chatty.is_usable(),
            "stray bytes make a connection unusable"
        );
    }
}
