//! The HTTP/1.1 server of service ports and edge listeners, without hyper.
//! A request head is parsed and rewritten for the backend in one pass over
//! the raw bytes; the response head comes back client-ready from the
//! backend connection; bodies are decoded and re-framed as they pass. No
//! header map, no task hop and no timer registration per request: the
//! connection keeps one deadline for its idle, request-head and response
//! waits. On an edge listener the app is chosen per request, by host and
//! path. A connection that opens with the HTTP/2 preface goes to the hyper
//! server instead. This file is the session loop (heads in, answers of
//! meshd's own out through `respond`); `exchange` carries one request.

mod exchange;
pub mod request;

use super::buffers;
use super::cancel::Watch;
use super::codec::poll_fill;
use super::deadline::Deadline;
use super::http::{Conn, Target, MAX_HEADER_BYTES};
use super::respond::ProxyError;
use super::rtt::RttCache;
use crate::judge::Judged;
use crate::timeouts::Resolved;
use bytes::{Buf, Bytes, BytesMut};
use exchange::write_out;
use request::{Client, Parsed};
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Size of the buffer a response is gathered in.
const READ_CHUNK: usize = buffers::READ;

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
    let mut buf = super::buffers::take_read();
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
            // Boxed: hyper's connection state would size every HTTP/1.1 task.
            return Box::pin(super::http::serve(io, conn, draining)).await;
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
        // Taken when a request arrives (`read_head`, `request`).
        out: Vec::new(),
        up_head: Vec::new(),
        deadline,
        conn: &conn,
        port,
        timeouts: t,
        draining: &draining,
        first_head: Some(opened),
        idle_from: None,
        rtt: RttCache::default(),
    };
    let mut run = pin!(session.run());
    let mut stopped = pin!(stop.cancelled());
    let mut watch = Watch::default();
    std::future::poll_fn(|cx| {
        if run.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        watch.poll(&stop, stopped.as_mut(), cx)
    })
    .await;
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
    /// When the last response ended (its settling read the clock): the
    /// idle wait for the next request runs from there, with no clock read
    /// of its own.
    idle_from: Option<Instant>,
    /// The client's RTT, as its requests record it.
    rtt: RttCache,
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
        let mut watch = Watch::default();
        loop {
            let Some(parsed) = self.read_head(drained.as_mut(), &mut watch).await else {
                return;
            };
            // Boxed, once per request: a request's state (forwarding,
            // body pumps) is kilobytes, which an idle connection's task
            // would otherwise carry between requests.
            if Box::pin(self.request(parsed)).await == Next::Close {
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
        watch: &mut Watch,
    ) -> Option<Parsed> {
        let t = self.timeouts;
        // The first head's time runs from the connection's opening, so the
        // bytes read to tell HTTP/1 from HTTP/2 do not restart it.
        let mut head_started: Option<Instant> = self.first_head.take();
        // Only for this wait: a pipelined head after it needs none.
        let mut idle_from = self.idle_from.take();
        loop {
            if !self.buf.is_empty() {
                self.up_head.clear();
                if self.up_head.capacity() == 0 {
                    // Given back while the connection was quiet (below).
                    self.up_head = buffers::take_vec(buffers::HEAD);
                }
                let client = Client {
                    peer: self.conn.peer_header.as_bytes(),
                    https: self.conn.https,
                    trusted: self.conn.trusted,
                };
                match request::rewrite(&self.buf, client, &mut self.up_head) {
                    Ok(Some(p)) if p.len <= MAX_HEADER_BYTES => return Some(p),
                    Ok(Some(_)) => {
                        self.refuse(ProxyError::HeadTooLarge).await;
                        return None;
                    }
                    Ok(None) if self.buf.len() < MAX_HEADER_BYTES => {}
                    Ok(None) => {
                        self.refuse(ProxyError::HeadTooLarge).await;
                        return None;
                    }
                    Err(e) => {
                        self.refuse(e.into()).await;
                        return None;
                    }
                }
            }
            let between = self.buf.is_empty();
            let at = if between {
                idle_from.take().unwrap_or_else(Instant::now) + t.idle
            } else {
                // Counted from the head's first byte: trickling bytes does not extend it.
                *head_started.get_or_insert_with(Instant::now) + t.request_header
            };
            let (buf, io) = (&mut self.buf, &mut *self.io);
            let (out, up_head) = (&mut self.out, &mut self.up_head);
            let draining = self.draining;
            let read = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = poll_fill(buf, io, cx) {
                    return Poll::Ready(Some(r));
                }
                if between {
                    // Quiet between requests: the connection holds no
                    // buffer while it waits (`poll_fill` let the read
                    // buffer go too), however large the last response was.
                    release(out);
                    release(up_head);
                }
                if between && watch.poll(draining, drained.as_mut(), cx).is_ready() {
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

    /// Answers with meshd's own response (`respond`).
    async fn answer(&mut self, e: &ProxyError, keep: bool) -> Next {
        self.out.clear();
        if self.out.capacity() == 0 {
            self.out = buffers::take_vec(READ_CHUNK);
        }
        e.write_h1(&mut self.out, keep);
        match write_out(self.io, &mut self.out).await {
            Ok(()) if keep => Next::Request,
            _ => Next::Close,
        }
    }

    /// Refuses a request head the connection cannot go on from.
    async fn refuse(&mut self, e: ProxyError) {
        tracing::debug!(peer = %self.conn.peer, error = %e, "request refused");
        self.answer(&e, false).await;
        let _ = self.io.shutdown().await;
    }
}

/// Gives `v`'s allocation back to the thread's cache, if it has one.
fn release(v: &mut Vec<u8>) {
    if v.capacity() != 0 {
        buffers::give_vec(std::mem::take(v));
    }
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
