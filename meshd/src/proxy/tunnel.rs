//! Copying bytes both ways between two streams (TCP mode, upgraded HTTP
//! connections), closing when either side ends, when no byte moves for the
//! idle timeout, or when `stop` fires. The idle check costs one relaxed
//! store per read, not a timer reset.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

/// A stream that notes when bytes arrive.
pub struct Watched<S> {
    inner: S,
    seen: Arc<AtomicBool>,
}

impl<S> Watched<S> {
    /// Wraps `inner`; `seen` becomes true whenever bytes are read.
    pub fn new(inner: S, seen: Arc<AtomicBool>) -> Watched<S> {
        Watched { inner, seen }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.seen.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Copies until done, quiet for at least `idle`, or stopped.
pub async fn copy_with_idle<A, B>(a: A, b: B, idle: Duration, stop: CancellationToken)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let seen = Arc::new(AtomicBool::new(false));
    let mut a = Watched {
        inner: a,
        seen: Arc::clone(&seen),
    };
    let mut b = Watched {
        inner: b,
        seen: Arc::clone(&seen),
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    let mut tick = tokio::time::interval(idle);
    tick.reset();
    loop {
        tokio::select! {
            r = &mut copy => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "tunnel ended with an error");
                }
                return;
            }
            _ = tick.tick() => {
                if !seen.swap(false, Ordering::Relaxed) {
                    tracing::debug!(idle_secs = idle.as_secs(), "tunnel idle; closed");
                    return;
                }
            }
            () = stop.cancelled() => {
                tracing::debug!("tunnel closed at the drain deadline");
                return;
            }
        }
    }
}
