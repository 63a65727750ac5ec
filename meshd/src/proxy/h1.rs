//! The HTTP/1.1 server of service ports and edge listeners, without hyper.
//! A request head is parsed and rewritten for the backend in one pass over
//! the raw bytes; the response head comes back client-ready from the
//! backend connection; bodies are decoded and re-framed as they pass. No
//! header map, no task hop and no timer registration per request: the
//! connection keeps one deadline for its idle, request-head and response
//! waits. On an edge listener the app is chosen per request, by host and
//! path. A connection that opens with the HTTP/2 preface goes to the hyper
//! server instead.

pub mod request;

use super::codec::{poll_fill, Decoder, Framing};
use super::deadline::Deadline;
use super::edge;
use super::forward::{failure_text, forward, Failure, Outgoing, Sent, Wait};
use super::http::{Conn, Exchange, Target, MAX_HEADER_BYTES};
use super::tunnel::copy_with_idle;
use super::upstream::{self, ExchangeError};
use crate::judge::Judged;
use crate::timeouts::Resolved;
use bytes::{Buf, Bytes, BytesMut};
use hyper::{StatusCode, Version};
use request::{Client, Parsed};
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Read buffer step.
const READ_CHUNK: usize = 8 * 1024;
/// Body bytes gathered before a write.
const FLUSH_AT: usize = 64 * 1024;

/// Serves one client connection of a service port or an edge listener
/// until it closes, or until `draining` fires between requests.
pub async fn serve<I>(mut io: I, conn: Conn, draining: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (port, t) = match &conn.target {
        Target::Service(judged) => {
            conn.judge(judged);
            let judged = judged
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let t = judged.route.timeouts;
            (Some(judged), t)
        }
        Target::Edge => (None, Resolved::from(&schemas::Timeouts::default())),
    };
    let mut deadline = Deadline::new(t.request_header.min(t.idle).min(t.response));
    let opened = Instant::now();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let stop = conn.stop.clone();
    // HTTP/2 with prior knowledge, or HTTP/1.x: the first bytes tell.
    loop {
        let n = buf.len().min(PREFACE.len());
        if buf[..n] != PREFACE[..n] {
            break;
        }
        if n == PREFACE.len() {
            let io = Prefixed {
                prefix: buf.freeze(),
                inner: io,
            };
            return super::http::serve(io, conn, draining).await;
        }
        let read = std::future::poll_fn(|cx| poll_fill(&mut buf, &mut io, cx));
        let read = async {
            tokio::select! {
                biased;
                r = read => Some(r),
                () = stop.cancelled() => None,
            }
        };
        match deadline
            .within(Instant::now() + t.request_header, read)
            .await
        {
            Some(Some(Ok(n))) if n > 0 => {}
            _ => return,
        }
    }
    let mut session = Session {
        io: &mut io,
        buf,
        out: Vec::with_capacity(READ_CHUNK),
        up_head: Vec::with_capacity(1024),
        deadline,
        conn: &conn,
        port,
        timeouts: t,
        draining: &draining,
        first_head: Some(opened),
    };
    tokio::select! {
        biased;
        () = session.run() => {}
        () = stop.cancelled() => {}
    }
}

/// One HTTP/1.1 client connection's state.
struct Session<'a, I> {
    io: &'a mut I,
    /// Bytes read from the client and not yet used.
    buf: BytesMut,
    /// What goes to the client next.
    out: Vec<u8>,
    /// The head the backend gets.
    up_head: Vec<u8>,
    deadline: Deadline,
    conn: &'a Conn,
    /// The service port's route and this client's verdict, taken again
    /// after each reload; `None` on a shared edge listener, where the app
    /// and the verdict are chosen per request.
    port: Option<Judged>,
    /// The connection's own waits: the service's, or the defaults on the edge.
    timeouts: Resolved,
    draining: &'a CancellationToken,
    /// When the first request's head began: the connection's opening.
    first_head: Option<Instant>,
}

/// Whether the connection takes another request.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Request,
    Close,
}

impl<I> Session<'_, I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn run(&mut self) {
        let mut drained = pin!(self.draining.cancelled());
        loop {
            let Some(parsed) = self.read_head(drained.as_mut()).await else {
                return;
            };
            if self.request(parsed).await == Next::Close {
                let _ = self.io.shutdown().await;
                return;
            }
        }
    }

    /// Reads until a complete request head; `None` when the connection ends
    /// (closed, timed out, refused, or draining between requests).
    async fn read_head(
        &mut self,
        mut drained: Pin<&mut tokio_util::sync::WaitForCancellationFuture<'_>>,
    ) -> Option<Parsed> {
        let t = self.timeouts;
        // The first head's time runs from the connection's opening, so the
        // bytes read to tell HTTP/1 from HTTP/2 do not restart it.
        let mut head_started: Option<Instant> = self.first_head.take();
        loop {
            if !self.buf.is_empty() {
                self.up_head.clear();
                let client = Client {
                    peer: self.conn.peer_header.as_bytes(),
                    https: self.conn.https,
                    trusted: self.conn.trusted,
                };
                match request::rewrite(&self.buf, client, &mut self.up_head) {
                    Ok(Some(p)) if p.len <= MAX_HEADER_BYTES => return Some(p),
                    Ok(Some(_)) => {
                        self.refuse(431, "palisade: request head too large\n").await;
                        return None;
                    }
                    Ok(None) if self.buf.len() < MAX_HEADER_BYTES => {}
                    Ok(None) => {
                        self.refuse(431, "palisade: request head too large\n").await;
                        return None;
                    }
                    Err(e) => {
                        self.refuse(e.status(), &format!("palisade: {e}\n")).await;
                        return None;
                    }
                }
            }
            let between = self.buf.is_empty();
            let at = if between {
                Instant::now() + t.idle
            } else {
                // Counted from the head's first byte: trickling bytes does not extend it.
                *head_started.get_or_insert_with(Instant::now) + t.request_header
            };
            let (buf, io) = (&mut self.buf, &mut *self.io);
            let read = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = poll_fill(buf, io, cx) {
                    return Poll::Ready(Some(r));
                }
                if between && drained.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            });
            match self.deadline.within(at, read).await {
                Some(Some(Ok(n))) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// Carries one request and its response.
    async fn request(&mut self, parsed: Parsed) -> Next {
        let start = std::time::Instant::now();
        let version = if parsed.http10 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let body_left = parsed.framing() != Framing::Empty;
        let may_continue = parsed.keep_alive && !self.draining.is_cancelled();
        let (route, decision, hsts) = match &mut self.port {
            // Route and verdict follow the snapshot in force (invariant 8):
            // a reload that removes the client's allow rule, or moves the
            // port to another app, applies to its next request.
            Some(judged) => {
                let peer = self.conn.peer.ip();
                self.conn.runtime.with_current(|s| judged.refresh(s, peer));
                (Arc::clone(&judged.route), judged.decision, None)
            }
            None => {
                let host = parsed
                    .host
                    .clone()
                    .and_then(|r| std::str::from_utf8(&self.buf[r]).ok())
                    .map(edge::normalize_host);
                let target = std::str::from_utf8(&self.buf[parsed.target.clone()]).unwrap_or("/");
                match edge::choose_by(self.conn, host, target) {
                    Ok((route, decision)) => {
                        let hsts = edge::hsts(self.conn, &route);
                        (route, decision, hsts)
                    }
                    Err((status, location, text)) => {
                        self.buf.advance(parsed.len);
                        let keep = may_continue && !body_left;
                        return self.local(status, &text, location.as_deref(), keep).await;
                    }
                }
            }
        };
        self.buf.advance(parsed.len);
        if !decision.verdict.lets_through() {
            route.metrics().status(403).increment(1);
            super::http::log_denied(self.conn, &route, decision, version, start);
            let text = super::http::forbidden_text(self.conn, &route, decision);
            // Closed after the answer: a denied source holds no connection
            // (and no slot of the app's) longer than one request.
            return self.local(StatusCode::FORBIDDEN, &text, None, false).await;
        }
        route.carried.retry_budget.deposit();
        let mut req = RawRequest {
            head: &self.up_head,
            parsed: &parsed,
            client: &mut *self.io,
            buf: &mut self.buf,
            started: false,
            done: !body_left,
            scratch: Vec::new(),
        };
        let sent = forward(
            &route,
            self.conn.peer.ip(),
            &self.conn.runtime.certs,
            &mut req,
            Some(&mut self.out),
            Wait::Shared(&mut self.deadline),
        )
        .await;
        let body_done = req.done;
        let sent = match sent {
            Ok(sent) => sent,
            Err(Failure::ClientGone) => return Next::Close,
            Err(Failure::Status(status)) => {
                let text = failure_text(&route, status);
                return self
                    .local(status, &text, None, may_continue && body_done)
                    .await;
            }
        };
        let Sent {
            mut upstream,
            head,
            backend,
            in_flight,
            connect_time,
            ttfb,
        } = sent;
        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            if !parsed.upgrade {
                tracing::warn!(app = %route.app, "backend switched protocols unasked");
                let status = StatusCode::BAD_GATEWAY;
                let text = failure_text(&route, status);
                return self.local(status, &text, None, false).await;
            }
            self.out.extend_from_slice(b"\r\n");
            if write_out(self.io, &mut self.out).await.is_err() {
                return Next::Close;
            }
            // Bytes either side sent past its head go first.
            let client_early = self.buf.split().freeze();
            let (mut backend_io, backend_early) = upstream.into_parts();
            if !client_early.is_empty() && backend_io.write_all(&client_early).await.is_err() {
                return Next::Close;
            }
            if !backend_early.is_empty() && self.io.write_all(&backend_early).await.is_err() {
                return Next::Close;
            }
            // Its own stop: the drain deadline, or a reload that denies this source.
            let stop = self.conn.stop.child_token();
            let _open =
                self.conn
                    .runtime
                    .tunnels
                    .open(route.listen, self.conn.peer.ip(), stop.clone());
            copy_with_idle(&mut *self.io, backend_io, route.timeouts.tunnel_idle, stop).await;
            drop(in_flight);
            return Next::Close;
        }
        // A body that ends when the backend closes needs chunked framing to
        // an HTTP/1.1 client; an HTTP/1.0 client gets it up to the close.
        let unsized_body = matches!(head.body.framing, Framing::Chunked | Framing::Close);
        let rechunk = unsized_body && !parsed.http10;
        let keep = may_continue && body_done && !(unsized_body && parsed.http10);
        if !keep {
            self.out.extend_from_slice(b"connection: close\r\n");
        } else if parsed.http10 {
            self.out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        // meshd's own framing, never the backend's field copied (invariant 9).
        head.body.write(&mut self.out, rechunk);
        if let Some(max_age) = hsts {
            // The edge's policy replaces whatever the backend said.
            remove_field(&mut self.out, b"strict-transport-security");
            self.out
                .extend_from_slice(b"strict-transport-security: max-age=");
            self.out.extend_from_slice(max_age.to_string().as_bytes());
            self.out.extend_from_slice(b"\r\n");
        }
        self.out.extend_from_slice(b"\r\n");
        let exchange = Exchange {
            route: Arc::clone(&route),
            backend,
            _in_flight: in_flight,
            start,
            connect_time,
            ttfb,
            status: head.status.as_u16(),
            verdict: decision.verdict.as_str(),
            log: self.conn.access_log.as_ref().map(|l| {
                (
                    l.clone(),
                    Arc::clone(&self.conn.src_app),
                    self.conn.peer,
                    version,
                )
            }),
        };
        let mut decoder = Decoder::new(head.body.framing);
        let (ubuf, uio) = upstream.parts_mut();
        let mut wait = Wait::Shared(&mut self.deadline);
        let (bytes, pumped) = pump(
            &mut decoder,
            ubuf,
            uio,
            self.io,
            &mut self.out,
            rechunk,
            (&mut wait, route.timeouts.idle),
        )
        .await;
        let clean = pumped.is_ok();
        let reusable = clean && head.reusable && decoder.is_done();
        super::body::Settle::settle(exchange, reusable.then_some(upstream), clean, bytes);
        match pumped {
            Ok(()) if keep => Next::Request,
            Ok(()) => Next::Close,
            Err(e) => {
                tracing::debug!(app = %route.app, error = ?e, "response body cut short");
                Next::Close
            }
        }
    }

    /// Answers with a short text of meshd's own (and a `Location`, for a redirect).
    async fn local(
        &mut self,
        status: StatusCode,
        text: &str,
        location: Option<&str>,
        keep: bool,
    ) -> Next {
        self.out.clear();
        self.out.extend_from_slice(b"HTTP/1.1 ");
        self.out.extend_from_slice(status.as_str().as_bytes());
        self.out.push(b' ');
        self.out
            .extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        if let Some(l) = location {
            self.out.extend_from_slice(b"\r\nlocation: ");
            self.out.extend_from_slice(l.as_bytes());
        }
        self.out
            .extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
        self.out
            .extend_from_slice(text.len().to_string().as_bytes());
        self.out.extend_from_slice(if keep {
            b"\r\n\r\n".as_slice()
        } else {
            b"\r\nconnection: close\r\n\r\n".as_slice()
        });
        self.out.extend_from_slice(text.as_bytes());
        match write_out(self.io, &mut self.out).await {
            Ok(()) if keep => Next::Request,
            _ => Next::Close,
        }
    }

    /// Refuses a request head the connection cannot go on from.
    async fn refuse(&mut self, status: u16, text: &str) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        tracing::debug!(peer = %self.conn.peer, %status, text, "request refused");
        self.local(status, text, None, false).await;
        let _ = self.io.shutdown().await;
    }
}

/// Removes every `name:` field from a head being written (no blank line yet).
fn remove_field(head: &mut Vec<u8>, name: &[u8]) {
    let mut at = 0;
    while let Some(len) = head[at..].iter().position(|&b| b == b'\n').map(|i| i + 1) {
        let line = &head[at..at + len];
        let named = line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()] == b':';
        if named {
            head.drain(at..at + len);
        } else {
            at += len;
        }
    }
}

async fn write_out<W: AsyncWrite + Unpin>(io: &mut W, out: &mut Vec<u8>) -> io::Result<()> {
    io.write_all(out).await?;
    out.clear();
    io.flush().await
}

/// A client's request, sent from the connection's buffer and socket.
struct RawRequest<'a, I> {
    head: &'a [u8],
    parsed: &'a Parsed,
    client: &'a mut I,
    buf: &'a mut BytesMut,
    /// The body began to move (it cannot be sent again).
    started: bool,
    /// The body was read to its end (the connection can take another request).
    done: bool,
    scratch: Vec<u8>,
}

impl<I> Outgoing for RawRequest<'_, I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn body_less(&self) -> bool {
        self.parsed.framing() == Framing::Empty
    }
    fn can_send(&self) -> bool {
        !self.started
    }
    fn idempotent(&self) -> bool {
        self.parsed.idempotent
    }
    fn expect_body(&self) -> bool {
        !self.parsed.head
    }
    async fn send(
        &mut self,
        up: &mut upstream::Conn,
        wait: &mut Wait<'_>,
        idle: std::time::Duration,
    ) -> Result<(), ExchangeError> {
        if self.body_less() {
            return up.write_head(self.head).await;
        }
        self.started = true;
        if self.parsed.expect_continue && self.buf.is_empty() {
            self.client
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(ExchangeError::ClientGone)?;
        }
        // The head and the body bytes already here leave in one write.
        self.scratch.clear();
        self.scratch.extend_from_slice(self.head);
        let chunked = self.parsed.framing() == Framing::Chunked;
        let mut decoder = Decoder::new(self.parsed.framing());
        let (_, upstream_io) = up.parts_mut();
        let (_, r) = pump(
            &mut decoder,
            self.buf,
            self.client,
            upstream_io,
            &mut self.scratch,
            chunked,
            (wait, idle),
        )
        .await;
        match r {
            Ok(()) => {
                self.done = true;
                Ok(())
            }
            Err(PumpError::Read(e)) => Err(ExchangeError::ClientGone(e)),
            Err(PumpError::Write(e)) => Err(ExchangeError::Failed(e)),
        }
    }
}

/// Which side of a body's way failed.
#[derive(Debug)]
enum PumpError {
    /// Reading the source.
    Read(io::Error),
    /// Writing the destination.
    Write(io::Error),
}

enum Step {
    Flush,
    Done,
    Failed(io::Error),
}

/// Moves a body from `src` (through its read buffer) to `dst`, after what
/// `out` already holds, chunk-encoding it when `chunked`. What is at hand is
/// gathered into one write. No read or write may wait longer than `idle`
/// (timed by `wait`): a stalled side ends the body with `TimedOut`.
/// Returns the data bytes moved.
async fn pump<R, W>(
    decoder: &mut Decoder,
    buf: &mut BytesMut,
    src: &mut R,
    dst: &mut W,
    out: &mut Vec<u8>,
    chunked: bool,
    (wait, idle): (&mut Wait<'_>, std::time::Duration),
) -> (u64, Result<(), PumpError>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let stalled = || io::Error::from(io::ErrorKind::TimedOut);
    let mut bytes = 0u64;
    loop {
        let step = std::future::poll_fn(|cx| loop {
            match decoder.poll_data(buf, src, cx) {
                Poll::Ready(Some(Ok(0))) => {}
                Poll::Ready(Some(Ok(n))) => {
                    if chunked {
                        push_hex(out, n);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(&buf[..n]);
                    if chunked {
                        out.extend_from_slice(b"\r\n");
                    }
                    buf.advance(n);
                    bytes += n as u64;
                    if out.len() >= FLUSH_AT {
                        return Poll::Ready(Step::Flush);
                    }
                }
                Poll::Ready(None) => {
                    if chunked {
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                    return Poll::Ready(Step::Done);
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Step::Failed(e)),
                Poll::Pending if out.is_empty() => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Step::Flush),
            }
        });
        let step = match wait.within(Instant::now() + idle, step).await {
            Some(step) => step,
            None => Step::Failed(stalled()),
        };
        match step {
            Step::Failed(e) => return (bytes, Err(PumpError::Read(e))),
            Step::Flush | Step::Done => {
                if !out.is_empty() {
                    match wait
                        .within(Instant::now() + idle, write_out(dst, out))
                        .await
                    {
                        Some(Ok(())) => {}
                        Some(Err(e)) => return (bytes, Err(PumpError::Write(e))),
                        None => return (bytes, Err(PumpError::Write(stalled()))),
                    }
                }
                if matches!(step, Step::Done) {
                    return (bytes, Ok(()));
                }
            }
        }
    }
}

fn push_hex(out: &mut Vec<u8>, mut n: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A stream whose first bytes were already read (the HTTP/2 preface).
struct Prefixed<I> {
    prefix: Bytes,
    inner: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            out.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_removed_from_a_head_whatever_its_case() {
        let mut head = b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=1\r\nx-a: 1\r\nstrict-transport-security: max-age=2\r\nx-strict-transport-security: 3\r\n".to_vec();
        remove_field(&mut head, b"strict-transport-security");
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 200 OK\r\nx-a: 1\r\nx-strict-transport-security: 3\r\n"
        );
    }

    #[test]
    fn chunk_sizes_are_lowercase_hex() {
        let mut out = Vec::new();
        for n in [0, 1, 15, 16, 255, 4096, 65535] {
            out.clear();
            push_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}").as_bytes());
        }
    }

    #[tokio::test]
    async fn pump_rechunks_and_gathers_what_is_at_hand() {
        // A chunked body whose pieces arrive in one read leaves in one write.
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nNEXT")
            .await
            .unwrap();
        let mut buf = BytesMut::new();
        let mut decoder = Decoder::new(Framing::Chunked);
        let mut dst = Vec::new();
        let mut out = b"HEAD\r\n".to_vec();
        let idle = std::time::Duration::from_secs(5);
        let (n, r) = pump(
            &mut decoder,
            &mut buf,
            &mut b,
            &mut dst,
            &mut out,
            true,
            (&mut Wait::Own, idle),
        )
        .await;
        assert!(r.is_ok());
        assert_eq!(n, 5);
        assert_eq!(
            String::from_utf8(dst).unwrap(),
            "HEAD\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        );
        // What follows the body stays for the next message.
        assert_eq!(&buf[..], b"NEXT");
        // A fixed-length body passes through as it is.
        let mut decoder = Decoder::new(Framing::Length(4));
        let mut buf = BytesMut::from(&b"NEXTmore"[..]);
        let mut dst = Vec::new();
        let (n, r) = pump(
            &mut decoder,
            &mut buf,
            &mut b,
            &mut dst,
            &mut Vec::new(),
            false,
            (&mut Wait::Own, idle),
        )
        .await;
        assert!(r.is_ok() && n == 4 && dst == b"NEXT" && &buf[..] == b"more");
    }
}
