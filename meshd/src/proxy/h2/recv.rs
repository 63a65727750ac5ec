//! A request body on its way from an HTTP/2 stream to the backend. The
//! connection's task puts each DATA frame's bytes in; the request's task
//! takes them out as the backend connection takes them, and what it took is
//! credited back to the client as WINDOW_UPDATE, so that a slow backend
//! holds the client back instead of meshd buffering for it.

use super::mailbox::Mailbox;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// The connection's end of one stream's body.
#[derive(Debug)]
pub struct Inbound {
    shared: Arc<Shared>,
}

/// The request task's end: a `Body` for the backend connection.
#[derive(Debug)]
pub struct RecvBody {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    stream: u32,
    mailbox: Arc<Mailbox>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    chunks: VecDeque<Bytes>,
    ended: bool,
    failed: bool,
    /// The request task let its end go: bytes still coming are credited at once.
    dropped: bool,
    reader: Option<Waker>,
}

/// A body channel for `stream`, crediting through `mailbox`.
pub fn channel(stream: u32, mailbox: Arc<Mailbox>) -> (Inbound, RecvBody) {
    let shared = Arc::new(Shared {
        stream,
        mailbox,
        state: Mutex::new(State::default()),
    });
    (
        Inbound {
            shared: Arc::clone(&shared),
        },
        RecvBody { shared },
    )
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Inbound {
    /// Passes one DATA frame's bytes on; false when nobody reads them any
    /// more (the caller credits them back itself).
    pub fn push(&self, data: &[u8]) -> bool {
        self.shared.with(|s| {
            if s.dropped {
                return false;
            }
            s.chunks.push_back(Bytes::copy_from_slice(data));
            if let Some(w) = s.reader.take() {
                w.wake();
            }
            true
        })
    }

    /// The client ended the body.
    pub fn end(&self) {
        self.finish(false);
    }

    /// The body cannot complete (reset, or a length that does not add up):
    /// the backend must not get a body that looks whole.
    pub fn fail(&self) {
        self.finish(true);
    }

    fn finish(&self, failed: bool) {
        self.shared.with(|s| {
            s.ended = true;
            s.failed |= failed;
            if let Some(w) = s.reader.take() {
                w.wake();
            }
        });
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        // The stream went without an end: whatever came is not a whole body.
        self.shared.with(|s| {
            if !s.ended {
                s.ended = true;
                s.failed = true;
                if let Some(w) = s.reader.take() {
                    w.wake();
                }
            }
        });
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let shared = &self.shared;
        let polled = shared.with(|s| {
            if s.failed {
                return Poll::Ready(Some(Err(std::io::Error::other(
                    "the client reset the stream or its body did not match its length",
                ))));
            }
            if let Some(chunk) = s.chunks.pop_front() {
                return Poll::Ready(Some(Ok(chunk)));
            }
            if s.ended {
                return Poll::Ready(None);
            }
            match &s.reader {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => s.reader = Some(cx.waker().clone()),
            }
            Poll::Pending
        });
        match polled {
            Poll::Ready(Some(Ok(chunk))) => {
                // A frame's data fits a u32: frames are at most 16 MB.
                let n = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
                shared.mailbox.credit(shared.stream, n);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.shared
            .with(|s| s.ended && !s.failed && s.chunks.is_empty())
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for RecvBody {
    fn drop(&mut self) {
        let left: u64 = self.shared.with(|s| {
            s.dropped = true;
            s.chunks.drain(..).map(|c| c.len() as u64).sum()
        });
        if left > 0 {
            let n = u32::try_from(left).unwrap_or(u32::MAX);
            self.shared.mailbox.credit(self.shared.stream, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::mailbox::Delivered;
    use super::*;
    use std::future::poll_fn;

    async fn taken(mailbox: &Mailbox) -> Vec<(u32, u32)> {
        let mut d = Delivered::default();
        poll_fn(|cx| {
            mailbox.take(cx, &mut d);
            Poll::Ready(())
        })
        .await;
        d.credits
    }

    #[tokio::test]
    async fn bytes_pass_in_order_and_are_credited() {
        let credits = Arc::new(Mailbox::default());
        let (inbound, mut body) = channel(3, Arc::clone(&credits));
        assert!(inbound.push(b"ab"));
        assert!(inbound.push(b"cde"));
        inbound.end();
        let mut got = Vec::new();
        while let Some(f) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            got.extend_from_slice(&f.unwrap().into_data().unwrap());
        }
        assert_eq!(got, b"abcde");
        assert_eq!(taken(&credits).await, vec![(3, 2), (3, 3)]);
    }

    #[tokio::test]
    async fn a_failed_or_abandoned_body_is_an_error_not_an_end() {
        let credits = Arc::new(Mailbox::default());
        let (inbound, mut body) = channel(1, Arc::clone(&credits));
        inbound.push(b"x");
        inbound.fail();
        let first = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(first.unwrap().is_err());
        let (inbound, mut body) = channel(5, credits);
        drop(inbound);
        let first = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(first.unwrap().is_err());
    }

    #[tokio::test]
    async fn bytes_after_the_reader_went_are_refused() {
        let credits = Arc::new(Mailbox::default());
        let (inbound, body) = channel(7, Arc::clone(&credits));
        assert!(inbound.push(b"abc"));
        drop(body);
        assert!(!inbound.push(b"d"));
        assert_eq!(taken(&credits).await, vec![(7, 3)]);
    }
}
