//! The HTTP/1.1 server of service ports and edge listeners, without hyper.
//! A request head is parsed and rewritten for the backend in one pass over
//! the raw bytes; the response head comes back client-ready from the
//! backend connection; bodies are decoded and re-framed as they pass. No
//! header map, no task hop and no timer registration per request: the
//! connection keeps one deadline for its idle, request-head and response
//! waits. On an edge listener the app is chosen per request, by host and
//! path. A connection that opens with the HTTP/2 preface goes to meshd's
//! HTTP/2 server (`h2`) instead. This file is the session loop (heads in, answers of
//! meshd's own out through `respond`); `exchange` carries one request.

mod exchange;
pub mod request;

use super::buffers;
use super::cancel::Watch;
use super::codec::poll_fill;
use super::deadline::{Deadline, Idle};
use super::http::{Conn, Target, MAX_HEADER_BYTES};
use super::park::{Parkable, Parked, PARK_AFTER};
use super::respond::ProxyError;
use super::rtt::RttCache;
use crate::timeouts::Resolved;
use bytes::BytesMut;
use exchange::write_out;
use request::{Client, Parsed};
use std::future::Future;
use std::pin::pin;
use std::sync::PoisonError;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An edge listener's connection timeouts (its apps' own apply per request).
const EDGE_TIMEOUTS: Resolved = Resolved::DEFAULT;
/// Size of the buffer a response is gathered in.
const READ_CHUNK: usize = buffers::READ;

/// Serves one client connection of a service port or an edge listener
/// until it closes, or until `draining` fires between requests. This
/// future is the connection's task, so what it holds while the client is
/// quiet is what an idle connection costs: the stream, `Conn`, the
/// session's few fields and one waiter on `draining`. The first bytes' wait
/// and each request's state are boxed, allocated while they run. An
/// `async` block, not an `async fn`: it uses its captured stream and
/// `Conn` in place, where an `async fn` keeps its arguments twice. A
/// connection quiet for `park::PARK_AFTER` ends its task and waits in its
/// listener's lot (`park`), when it has one and a plain socket.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn serve<I>(mut io: I, conn: Conn) -> impl Future<Output = ()> + Send
where
    I: AsyncRead + AsyncWrite + Parkable + Unpin + Send + 'static,
{
    async move {
        let t = match &conn.target {
            Target::Service(judged) => conn.judge(judged).0.timeouts,
            Target::Edge => EDGE_TIMEOUTS,
        };
        let opened = Instant::now();
        // Built before the first wait, so that its parts are held once.
        // Its buffer is taken by `first_bytes`.
        let mut session = Session::new(&mut io, &conn, t, BytesMut::new(), RttCache::default());
        let until = opened + t.request_header;
        // In a block of its own: what it matched would otherwise keep a
        // place in the task through the session.
        {
            let h2 = match Box::pin(first_bytes(
                &mut *session.io,
                &conn.stop,
                &mut session.deadline,
                until,
            ))
            .await
            {
                First::Http1(buf) => {
                    session.buf = buf;
                    None
                }
                First::H2(prefix) => Some(prefix),
                First::Ended => return,
            };
            if let Some(prefix) = h2 {
                drop(session);
                // A task of its own on a service port, where this one's
                // state then goes (~770 bytes per HTTP/2 connection); on an
                // edge listener, whose accept loop holds the slot, boxed:
                // HTTP/2's state would size every HTTP/1.1 task.
                match conn.lot() {
                    Some(lot) => lot.spawn(super::h2::serve(io, conn, prefix)),
                    None => Box::pin(super::h2::serve(io, conn, prefix)).await,
                }
                return;
            }
        }
        if let Some(park) = session.run(true).await {
            drop(session);
            hand_over(io, conn, park);
        }
    }
}

/// Serves a parked connection whose client spoke again (`buf` holds what
/// it sent), as `serve` does after the first request.
#[allow(clippy::manual_async_fn)] // as `serve`
pub fn resume(
    mut io: TcpStream,
    conn: Conn,
    rtt: RttCache,
    buf: BytesMut,
) -> impl Future<Output = ()> + Send {
    async move {
        let t = timeouts_of(&conn);
        let mut session = Session::new(&mut io, &conn, t, buf, rtt);
        if let Some(park) = session.run(false).await {
            drop(session);
            hand_over(io, conn, park);
        }
    }
}

/// Where a quiet connection's session stood when it was handed over.
struct Park {
    rtt: RttCache,
    until: Instant,
}

/// Parks a quiet connection in its listener's lot.
fn hand_over<I: Parkable>(io: I, conn: Conn, park: Park) {
    buffers::on_quiet();
    if let (Some(lot), Some(io)) = (conn.lot(), io.into_tcp()) {
        lot.park(Parked {
            io,
            conn,
            rtt: park.rtt,
            until: park.until,
        });
    }
}

/// What a connection's first bytes say.
enum First {
    /// HTTP/1.x, with the bytes read so far.
    Http1(BytesMut),
    /// HTTP/2 with prior knowledge: the preface, read whole.
    H2(BytesMut),
    /// Closed, silent until `until`, or stopped before telling.
    Ended,
}

/// Reads until the first bytes tell HTTP/2's preface from HTTP/1.x.
async fn first_bytes<I>(
    io: &mut I,
    stop: &CancellationToken,
    deadline: &mut Deadline,
    until: Instant,
) -> First
where
    I: AsyncRead + Unpin,
{
    let mut buf = super::buffers::take_read();
    loop {
        let n = buf.len().min(PREFACE.len());
        if buf[..n] != PREFACE[..n] {
            return First::Http1(buf);
        }
        if n == PREFACE.len() {
            return First::H2(buf);
        }
        let read = std::future::poll_fn(|cx| poll_fill(&mut buf, io, cx));
        let read = async {
            tokio::select! {
                biased;
                r = read => Some(r),
                () = stop.cancelled() => None,
            }
        };
        match deadline.within(until, read).await {
            Some(Some(Ok(n))) if n > 0 => {}
            _ => return First::Ended,
        }
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
    /// The client's RTT, as its requests record it.
    rtt: RttCache,
}

/// Whether the connection takes another request.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Request,
    Close,
    /// `conn.stop` fired mid-request: the connection is dropped as it is.
    Stopped,
}

/// What a quiet wait between requests ended with.
enum Quiet {
    /// The client sent bytes.
    More,
    /// Closed, timed out or drained.
    End,
    /// Quiet for `PARK_AFTER`: hand the connection over.
    Park,
}

impl<'a, I> Session<'a, I>
where
    I: AsyncRead + AsyncWrite + Parkable + Unpin + Send,
{
    /// A session on `io`, its timer stepping for timeouts `t`.
    fn new(io: &'a mut I, conn: &'a Conn, t: Resolved, buf: BytesMut, rtt: RttCache) -> Self {
        let mut step = t.request_header.min(t.idle).min(t.response);
        if I::CAN_PARK && conn.held.is_some() {
            // The timer fires at least this often, so that a quiet wait
            // is handed over soon after `PARK_AFTER` (a busy connection
            // pays one timer firing a second for it).
            step = step.min(PARK_AFTER);
        }
        Session {
            io,
            buf,
            // Taken when a request arrives (`read_head`, `request`).
            out: Vec::new(),
            up_head: Vec::new(),
            deadline: Deadline::new(step),
            conn,
            rtt,
        }
    }

    /// Carries requests until the connection ends (`None`) or has been
    /// quiet long enough to be parked. `first`: the connection's first
    /// request is still to come. An `async` block, not an `async fn`,
    /// which would hold `self` twice in every idle task.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    fn run<'s>(&'s mut self, first: bool) -> impl Future<Output = Option<Park>> + use<'s, 'a, I> {
        async move {
            // One waiter for the whole connection: `draining` fires on a drain
            // and on `stop` (its parent).
            let mut drained = pin!(self.conn.draining.cancelled());
            // Whether the first request's head is still to come: its time
            // runs from the connection's opening, the deadline `first_bytes`
            // set (a local here, not a session field, costs the idle task
            // nothing).
            let mut first = first;
            // Whether it may park (`Conn::lot` tells whether it can, when it is time).
            let parks = I::CAN_PARK && self.conn.held.is_some();
            loop {
                // The idle deadline the last response's end set (its
                // settling read the clock), so that this wait reads none;
                // taken here, as only this wait is for it: a pipelined head
                // after it needs none.
                let preset = self.deadline.take_preset();
                if self.buf.is_empty() {
                    // Quiet between requests: wait, holding no buffer, for the
                    // client's next bytes, until `idle` or a drain. One
                    // `poll_fn`, no nested futures: this is the state an idle
                    // connection is held in.
                    if !preset {
                        self.deadline.set(Instant::now() + self.timeouts().idle);
                    }
                    let (this, mut drained) = (&mut *self, drained.as_mut());
                    // `move`: the closure holds the two references, not one per field.
                    let quiet = std::future::poll_fn(move |cx| {
                        if let Poll::Ready(r) = poll_fill(&mut this.buf, &mut *this.io, cx) {
                            return Poll::Ready(if matches!(r, Ok(n) if n > 0) {
                                Quiet::More
                            } else {
                                Quiet::End
                            });
                        }
                        // `poll_fill` let the read buffer go; the response's
                        // and the head's go too, however large they grew.
                        release(&mut this.out);
                        release(&mut this.up_head);
                        if drained.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Quiet::End);
                        }
                        let conn = this.conn;
                        // Asked only when the timer fires: quiet since the
                        // idle deadline was set, for `PARK_AFTER` or more.
                        let long_enough = |now, at| {
                            parks
                                && now + timeouts_of(conn).idle >= at + PARK_AFTER
                                && conn.lot().is_some()
                        };
                        this.deadline
                            .poll_idle(cx, long_enough)
                            .map(|idle| match idle {
                                Idle::Passed => Quiet::End,
                                Idle::Park => Quiet::Park,
                            })
                    })
                    .await;
                    match quiet {
                        Quiet::More => {}
                        Quiet::End => return None,
                        Quiet::Park => {
                            return Some(Park {
                                rtt: self.rtt,
                                until: self.deadline.at(),
                            })
                        }
                    }
                }
                // Boxed, once per request: a request's state (its head's
                // reading, forwarding, body pumps) is kilobytes, which an idle
                // connection's task would otherwise carry between requests.
                let (stop, draining) = (&self.conn.stop, &self.conn.draining);
                let next = Box::pin(async {
                    let mut request = pin!(async {
                        match self.read_head(first).await {
                            Some(parsed) => self.request(parsed).await,
                            None => Next::Stopped,
                        }
                    });
                    // Drained first, then stopped: the drain's waiter
                    // serves until it fires (and `Watch` polls only its
                    // flag while it holds this task's waker), so a request
                    // registers no waiter of its own.
                    let mut watch = Watch::default();
                    let mut stopped = pin!(stop.cancelled());
                    std::future::poll_fn(|cx| {
                        if let Poll::Ready(next) = request.as_mut().poll(cx) {
                            return Poll::Ready(next);
                        }
                        if watch.poll(draining, drained.as_mut(), cx).is_ready() {
                            return stopped.as_mut().poll(cx).map(|()| Next::Stopped);
                        }
                        Poll::Pending
                    })
                    .await
                })
                .await;
                first = false;
                match next {
                    Next::Request => {}
                    Next::Close => {
                        let _ = self.io.shutdown().await;
                        return None;
                    }
                    Next::Stopped => return None,
                }
            }
        }
    }
}

impl<I> Session<'_, I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Reads until a complete request head, the buffer holding its first
    /// bytes; `None` when the connection ends (closed, timed out, refused).
    /// The `first` head's time runs from the connection's opening.
    async fn read_head(&mut self, first: bool) -> Option<Parsed> {
        // The first head's time runs from the connection's opening (the
        // deadline `first_bytes` waited on), so the bytes read to tell
        // HTTP/1 from HTTP/2 do not restart it.
        let mut at = first.then(|| self.deadline.at());
        loop {
            if !self.buf.is_empty() {
                self.up_head.clear();
                if self.up_head.capacity() == 0 {
                    // Given back while the connection was quiet (`wait_quiet`).
                    self.up_head = buffers::take_vec(buffers::HEAD);
                }
                let client = Client {
                    peer: &self.conn.peer_header,
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
            // Counted from the head's first byte: trickling bytes does not extend it.
            let until = *at.get_or_insert_with(|| Instant::now() + self.timeouts().request_header);
            let (buf, io) = (&mut self.buf, &mut *self.io);
            let read = std::future::poll_fn(|cx| poll_fill(buf, io, cx));
            match self.deadline.within(until, read).await {
                Some(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// The connection's timeouts: its service's, as the last request's
    /// judging left them (`Conn::target` is judged again per request), or
    /// the defaults on an edge listener.
    fn timeouts(&self) -> Resolved {
        timeouts_of(self.conn)
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
        tracing::debug!(peer = %self.conn.peer(), error = %e, "request refused");
        self.answer(&e, false).await;
        let _ = self.io.shutdown().await;
    }
}

/// A connection's timeouts: its service's, as the last request's judging
/// left them (`Conn::target` is judged again per request), or the
/// defaults on an edge listener.
fn timeouts_of(conn: &Conn) -> Resolved {
    match &conn.target {
        Target::Service(judged) => {
            let judged = judged.lock().unwrap_or_else(PoisonError::into_inner);
            judged.route.timeouts
        }
        Target::Edge => EDGE_TIMEOUTS,
    }
}

/// Gives `v`'s allocation back to the thread's cache, if it has one.
fn release(v: &mut Vec<u8>) {
    if v.capacity() != 0 {
        buffers::give_vec(std::mem::take(v));
    }
}
