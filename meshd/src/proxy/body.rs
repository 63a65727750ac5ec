//! Response bodies of the HTTP/2 path (a request body is `h2::RecvBody`):
//! `DownBody` carries a backend's body, or one meshd wrote, to the client,
//! and settles the request when it ends: the connection goes back to the
//! pool only after a clean end, and timing and byte counts are recorded. A
//! backend that stalls mid-body for the idle timeout ends it with an error.

use super::upstream::{BodyReader, Conn};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// What to do when a response body ends or is dropped.
pub trait Settle: Send + Unpin + 'static {
    /// `conn`: the backend connection when it may be reused (the body was
    /// read to its end); `clean`: the body was read to its end; `bytes`:
    /// data bytes passed.
    fn settle(self, conn: Option<Conn>, clean: bool, bytes: u64);
}

/// A response body on its way to the client.
pub enum DownBody<S: Settle> {
    /// A backend's body; `settle` runs once at its end or drop. Boxed: the
    /// response is moved from the request's task to its connection's, and
    /// one allocation costs less than moving the reader and the request's
    /// figures each time.
    Upstream(Box<Upstream<S>>),
    /// A body meshd wrote itself.
    Local(Option<Bytes>),
}

/// A backend's body on its way, and what settles its request.
pub struct Upstream<S: Settle> {
    /// Reads the body off the backend connection.
    reader: BodyReader,
    /// Runs once.
    settle: Option<S>,
    /// Data bytes so far.
    bytes: u64,
    /// The longest wait for the next bytes.
    idle: Duration,
    /// Armed at the first wait only: a body that arrives whole costs
    /// no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S: Settle> std::fmt::Debug for DownBody<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownBody::Upstream(u) => write!(f, "DownBody::Upstream({} bytes)", u.bytes),
            DownBody::Local(b) => write!(f, "DownBody::Local({:?})", b.as_ref().map(Bytes::len)),
        }
    }
}

impl<S: Settle> DownBody<S> {
    /// A local body with this text.
    pub fn text(text: impl Into<Bytes>) -> Self {
        DownBody::Local(Some(text.into()))
    }

    /// A backend's body, with no wait longer than `idle` for its next
    /// bytes; settles at once when there is none.
    pub fn upstream(reader: BodyReader, settle: S, idle: Duration) -> Self {
        let mut body = DownBody::Upstream(Box::new(Upstream {
            reader,
            settle: Some(settle),
            bytes: 0,
            idle,
            timer: None,
        }));
        body.settle_if_done();
        body
    }

    fn settle_if_done(&mut self) {
        if let DownBody::Upstream(u) = self {
            if u.reader.is_done() {
                if let Some(s) = u.settle.take() {
                    s.settle(u.reader.take_reusable(), true, u.bytes);
                }
            }
        }
    }
}

impl<S: Settle> Body for DownBody<S> {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        // Every field is Unpin, so the body can be handled by reference.
        let this = self.get_mut();
        match this {
            DownBody::Local(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            DownBody::Upstream(u) => {
                let Upstream {
                    reader,
                    settle,
                    bytes,
                    idle,
                    timer,
                } = &mut **u;
                let polled = reader.poll_data(cx);
                if polled.is_pending() {
                    let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(*idle)));
                    if timer.as_mut().poll(cx).is_ready() {
                        tracing::debug!(idle_ms = idle.as_millis() as u64, "response body stalled");
                        if let Some(s) = settle.take() {
                            s.settle(None, false, *bytes);
                        }
                        return Poll::Ready(Some(Err(std::io::ErrorKind::TimedOut.into())));
                    }
                    return Poll::Pending;
                }
                if let Some(t) = timer {
                    t.as_mut().reset(Instant::now() + *idle);
                }
                match ready!(polled) {
                    Some(Ok(data)) => {
                        *bytes += data.len() as u64;
                        this.settle_if_done();
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Some(Err(e)) => {
                        if let Some(s) = settle.take() {
                            s.settle(None, false, *bytes);
                        }
                        Poll::Ready(Some(Err(e)))
                    }
                    None => {
                        this.settle_if_done();
                        Poll::Ready(None)
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            DownBody::Local(b) => b.is_none(),
            DownBody::Upstream(u) => u.reader.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            DownBody::Local(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            DownBody::Upstream(u) => u.reader.size_hint(),
        }
    }
}

impl<S: Settle> Drop for DownBody<S> {
    fn drop(&mut self) {
        if let DownBody::Upstream(u) = self {
            if let Some(s) = u.settle.take() {
                let clean = u.reader.is_done();
                s.settle(u.reader.take_reusable(), clean, u.bytes);
            }
        }
    }
}
