//! One exchange of meshd's HTTP/1.1 server: a parsed request is judged,
//! forwarded (`forward`), and its response head and body carried back,
//! re-framed by meshd (`codec`). The session loop (`h1.rs`) reads heads and
//! hands each to `Session::request`; the body pump moves bytes both ways
//! with no wait longer than the idle timeout.

use super::request::Parsed;
use super::{Next, Session};
use crate::proxy::buffers;
use crate::proxy::codec::{Decoder, Framing};
use crate::proxy::deadline::Deadline;
use crate::proxy::edge;
use crate::proxy::forward::{forward, Failure, Outgoing, Sent, Wait};
use crate::proxy::http::{Exchange, Target};
use crate::proxy::respond::ProxyError;
use crate::proxy::tunnel::copy_with_idle;
use crate::proxy::upstream::{self, ExchangeError, HeadInto};
use bytes::BytesMut;
use hyper::{StatusCode, Version};
use std::io;
use std::sync::Arc;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Body bytes gathered before a write.
const FLUSH_AT: usize = 64 * 1024;

impl<I> Session<'_, I>
where
    I: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Carries one request and its response.
    pub(super) async fn request(&mut self, parsed: Parsed) -> Next {
        let start = std::time::Instant::now();
        if self.out.capacity() == 0 {
            // Given back while the connection was quiet (`read_head`).
            self.out = crate::proxy::buffers::take_vec(super::READ_CHUNK);
        }
        let version = if parsed.http10 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let body_left = parsed.framing() != Framing::Empty;
        let may_continue = parsed.keep_alive && !self.conn.draining.is_cancelled();
        let (route, decision, hsts) = match &self.conn.target {
            // Route and verdict follow the snapshot in force (invariant 8):
            // a reload that removes the client's allow rule, or moves the
            // port to another app, applies to its next request. Held once,
            // in `Conn`, not again in the session.
            Target::Service(judged) => {
                let (route, decision) = self.conn.judge(judged);
                (route, decision, None)
            }
            Target::Edge => {
                let host = parsed
                    .host
                    .clone()
                    .and_then(|r| std::str::from_utf8(&self.buf[r]).ok())
                    .map(edge::normalize_host);
                let target = parsed
                    .target
                    .clone()
                    .and_then(|r| std::str::from_utf8(&self.buf[r]).ok())
                    .unwrap_or("/");
                match edge::choose_by(self.conn, host, target) {
                    Ok((route, decision)) => {
                        let hsts = edge::hsts(self.conn, &route);
                        (route, decision, hsts)
                    }
                    Err(refusal) => {
                        buffers::consume(&mut self.buf, parsed.len);
                        let keep = may_continue && !body_left;
                        return self.answer(&refusal, keep).await;
                    }
                }
            }
        };
        buffers::consume(&mut self.buf, parsed.len);
        if !decision.verdict.lets_through() {
            route.metrics().status(403).increment(1);
            crate::proxy::http::log_denied(self.conn, &route, decision, version, start);
            let denied = ProxyError::Forbidden {
                src: Arc::clone(&self.conn.src_app),
                dst: route.app.clone(),
                decision,
            };
            // Closed after the answer: a denied source holds no connection
            // (and no slot of the app's) longer than one request.
            return self.answer(&denied, false).await;
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
            self.conn.ip,
            &self.conn.runtime.certs,
            &mut req,
            HeadInto::Http1(&mut self.out),
            Wait::Shared(&mut self.deadline),
            Instant::from_std(start),
        )
        .await;
        let body_done = req.done;
        let sent = match sent {
            Ok(sent) => sent,
            Err(Failure::ClientGone) => return Next::Close,
            Err(Failure::Answer(e)) => {
                return self.answer(&e, may_continue && body_done).await;
            }
        };
        let Sent {
            mut upstream,
            head,
            backend,
            in_flight,
            connect_time,
            ttfb,
            answered,
        } = sent;
        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            if !parsed.upgrade {
                tracing::warn!(app = %route.app, "backend switched protocols unasked");
                return self
                    .answer(&ProxyError::BadGateway(route.app.clone()), false)
                    .await;
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
            let _open = self
                .conn
                .runtime
                .tunnels
                .open(route.listen, self.conn.ip, stop.clone());
            let mut carried =
                copy_with_idle(&mut *self.io, backend_io, route.timeouts.tunnel_idle, stop).await;
            // An upgraded connection's bytes count as a TCP tunnel's do.
            carried.a_to_b += client_early.len() as u64;
            carried.b_to_a += backend_early.len() as u64;
            crate::proxy::tcp::count(&route, carried);
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
            answered: answered.into_std(),
            // The connection's socket is this session's: open.
            client_rtt_us: self.rtt.sample(self.conn.client, start),
            status: head.status.as_u16(),
            verdict: decision.verdict.as_str(),
            log: self.conn.runtime.access_log.as_ref().map(|l| {
                (
                    l.clone(),
                    Arc::clone(&self.conn.src_app),
                    self.conn.peer(),
                    version,
                )
            }),
        };
        let mut decoder = Decoder::new(head.body.framing);
        let (ubuf, uio) = upstream.parts_mut();
        let (bytes, pumped) = pump(
            &mut decoder,
            ubuf,
            uio,
            self.io,
            &mut self.out,
            rechunk,
            // The body's first idle window runs from the head's arrival,
            // which `forward` read the clock for already.
            IdleClock::new(&mut self.deadline, answered, route.timeouts.idle),
        )
        .await;
        let clean = pumped.is_ok();
        let reusable = clean && head.reusable && decoder.is_done();
        let ended = exchange.finish(reusable.then_some(upstream), clean, bytes);
        // The client's idle wait for its next request runs from here: the
        // service's idle timeout (`route` was judged for this request, so
        // it is what `Conn::target` holds, read here without its lock), or
        // an edge listener's.
        let idle = match self.conn.target {
            Target::Service(_) => route.timeouts.idle,
            Target::Edge => super::EDGE_TIMEOUTS.idle,
        };
        self.deadline.preset(Instant::from_std(ended) + idle);
        match pumped {
            Ok(()) if keep => Next::Request,
            Ok(()) => Next::Close,
            Err(e) => {
                tracing::debug!(app = %route.app, error = ?e, "response body cut short");
                Next::Close
            }
        }
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

pub(super) async fn write_out<W: AsyncWrite + Unpin>(
    io: &mut W,
    out: &mut Vec<u8>,
) -> io::Result<()> {
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
        let mut own;
        let deadline = match wait {
            Wait::Shared(d) => &mut **d,
            Wait::Own | Wait::Alarms(_) => {
                own = Deadline::new(idle);
                &mut own
            }
        };
        let (_, r) = pump(
            &mut decoder,
            self.buf,
            self.client,
            upstream_io,
            &mut self.scratch,
            chunked,
            IdleClock::new(deadline, Instant::now(), idle),
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
/// gathered into one write. A side that moves no byte for `idle` (up to
/// twice that, timed by `wait`) ends the body with `TimedOut`.
/// Returns the data bytes moved.
async fn pump<R, W>(
    decoder: &mut Decoder,
    buf: &mut BytesMut,
    src: &mut R,
    dst: &mut W,
    out: &mut Vec<u8>,
    chunked: bool,
    mut clock: IdleClock<'_>,
) -> (u64, Result<(), PumpError>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let stalled = || io::Error::from(io::ErrorKind::TimedOut);
    let mut bytes = 0u64;
    loop {
        let moved = &mut clock.moved;
        let step = std::future::poll_fn(|cx| loop {
            match decoder.poll_data(buf, src, cx) {
                Poll::Ready(Some(Ok(0))) => {}
                Poll::Ready(Some(Ok(n))) => {
                    *moved = true;
                    if chunked {
                        push_hex(out, n);
                        out.extend_from_slice(b"\r\n");
                    }
                    out.extend_from_slice(&buf[..n]);
                    if chunked {
                        out.extend_from_slice(b"\r\n");
                    }
                    buffers::consume(buf, n);
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
        // Reading is cancel-safe (the decoder and `out` keep their place),
        // so a wait cut at the deadline resumes when bytes had moved.
        let step = match clock.deadline.within(clock.at, step).await {
            Some(step) => step,
            None if clock.extend() => continue,
            None => Step::Failed(stalled()),
        };
        match step {
            Step::Failed(e) => return (bytes, Err(PumpError::Read(e))),
            Step::Flush | Step::Done => {
                // Write by write, so that a wait cut at the deadline loses
                // nothing: `out` keeps what has not left yet.
                while !out.is_empty() {
                    match clock.deadline.within(clock.at, dst.write(out)).await {
                        Some(Ok(0)) => {
                            return (
                                bytes,
                                Err(PumpError::Write(io::ErrorKind::WriteZero.into())),
                            )
                        }
                        Some(Ok(n)) if n == out.len() => {
                            out.clear();
                            clock.moved = true;
                        }
                        Some(Ok(n)) => {
                            out.drain(..n);
                            clock.moved = true;
                        }
                        Some(Err(e)) => return (bytes, Err(PumpError::Write(e))),
                        None if clock.extend() => {}
                        None => return (bytes, Err(PumpError::Write(stalled()))),
                    }
                }
                match clock.deadline.within(clock.at, dst.flush()).await {
                    Some(Ok(())) => {}
                    Some(Err(e)) => return (bytes, Err(PumpError::Write(e))),
                    None => return (bytes, Err(PumpError::Write(stalled()))),
                }
                if matches!(step, Step::Done) {
                    return (bytes, Ok(()));
                }
            }
        }
    }
}

/// The idle bound of a body on the move, on the connection's timer: one
/// deadline, moved on only when it passes after bytes moved (so no wait is
/// longer than twice `idle`, and a body costs no clock read per piece).
struct IdleClock<'d> {
    deadline: &'d mut Deadline,
    at: Instant,
    moved: bool,
    idle: std::time::Duration,
}

impl IdleClock<'_> {
    /// A clock on `deadline` whose first window is `idle` from `since`.
    fn new(deadline: &mut Deadline, since: Instant, idle: std::time::Duration) -> IdleClock<'_> {
        IdleClock {
            deadline,
            at: since + idle,
            moved: false,
            idle,
        }
    }

    /// Whether a wait cut at `at` may go on: bytes moved since `at` was set.
    fn extend(&mut self) -> bool {
        if !self.moved {
            return false;
        }
        self.at = Instant::now() + self.idle;
        self.moved = false;
        true
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
            IdleClock::new(&mut Deadline::new(idle), Instant::now(), idle),
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
            IdleClock::new(&mut Deadline::new(idle), Instant::now(), idle),
        )
        .await;
        assert!(r.is_ok() && n == 4 && dst == b"NEXT" && &buf[..] == b"more");
    }
}
