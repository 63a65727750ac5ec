//! Copying bytes both ways between two streams, holding a buffer only
//! while bytes wait for their writer: a direction reads onto the stack and
//! writes on at once; only when the writer pushes back does it keep the
//! rest in a buffer, which it lets go when a read would wait with nothing
//! left to write (to the thread's cache, `buffers`). A quiet tunnel is
//! then a few words of state, where
//! `tokio::io::copy_bidirectional` keeps two 8 KiB buffers for its life.
//! A direction between two plain sockets may hand a large burst to the
//! kernel instead (`splice`): [`Direction::poll_copy`] says when.

use super::buffers;
use bytes::BytesMut;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Copies `a` to `b` and `b` to `a` until both directions end (each
/// shutting down its writer at its reader's end), or either fails.
/// Returns the bytes moved `a` -> `b` and `b` -> `a`.
pub fn both_ways<'s, A, B>(a: &'s mut A, b: &'s mut B) -> BothWays<'s, A, B>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    BothWays {
        a,
        b,
        a_to_b: Direction::default(),
        b_to_a: Direction::default(),
    }
}

/// The future of [`both_ways`].
pub struct BothWays<'s, A: ?Sized, B: ?Sized> {
    a: &'s mut A,
    b: &'s mut B,
    a_to_b: Direction,
    b_to_a: Direction,
}

/// Bytes a tunnel's copy has written so far, `a` -> `b` and `b` -> `a`,
/// whether it ended well or not (the metrics count what was delivered).
pub trait Moved {
    /// Bytes written `a` -> `b` and `b` -> `a`.
    fn moved(&self) -> (u64, u64);
}

impl<A: ?Sized, B: ?Sized> Moved for BothWays<'_, A, B> {
    fn moved(&self) -> (u64, u64) {
        (self.a_to_b.moved, self.b_to_a.moved)
    }
}

/// Where a direction's poll left off, when it did not wait.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    /// The reader ended and the writer was shut down.
    Done,
    /// A read filled the whole buffer and all of it was written: more is
    /// likely waiting, and the caller may move it some other way (only
    /// when asked for, see `poll_copy`'s `bulk`).
    Bulk,
}

/// One direction's progress.
#[derive(Debug, Default)]
pub(super) struct Direction {
    /// Read and not yet written; no capacity while the direction is quiet.
    buf: BytesMut,
    /// The reader ended.
    pub(super) read_done: bool,
    /// Bytes were written since the last flush.
    need_flush: bool,
    /// The writer was shut down after the reader ended.
    done: bool,
    /// The last read filled all the room it was given.
    full: bool,
    /// Bytes written.
    pub(super) moved: u64,
}

impl Direction {
    /// Copies until the reader ends (`Done`) or, with `bulk`, until a read
    /// filled the buffer and was all written (`Bulk`: the caller takes over
    /// until the burst is over, then calls again). Inlined into each
    /// tunnel's poll: out of line, its call and stack probe cost TCP mode's
    /// small exchanges ~70 instructions per direction and wake-up.
    #[inline(always)]
    pub(super) fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
        bulk: bool,
    ) -> Poll<io::Result<Flow>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(Flow::Done));
        }
        loop {
            if self.buf.capacity() == 0 && !self.read_done {
                // Holding no buffer: read onto the stack, and keep only
                // what the writer does not take at once.
                ready!(self.poll_through_stack(cx, r.as_mut(), w.as_mut()))?;
                if bulk && self.full {
                    self.full = false;
                    return Poll::Ready(Ok(Flow::Bulk));
                }
                continue;
            }
            if self.buf.is_empty() && !self.read_done {
                // A buffer kept after the writer pushed back; reused until quiet.
                if self.buf.capacity() < buffers::READ / 2 && !self.buf.try_reclaim(buffers::READ) {
                    self.buf = buffers::take_read();
                }
                let room = self.buf.capacity() - self.buf.len();
                match tokio_util::io::poll_read_buf(r.as_mut(), cx, &mut self.buf) {
                    Poll::Ready(Ok(0)) => self.read_done = true,
                    Poll::Ready(Ok(n)) => self.full = n == room,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        // Nothing to write and nothing to read: quiet, so
                        // the buffer goes back to the thread's cache.
                        buffers::give_read(std::mem::take(&mut self.buf));
                        if self.need_flush {
                            ready!(w.as_mut().poll_flush(cx))?;
                            self.need_flush = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while !self.buf.is_empty() {
                let n = ready!(w.as_mut().poll_write(cx, &self.buf))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                // Cleared once all is written: the buffer keeps its room.
                buffers::consume(&mut self.buf, n);
                self.moved += n as u64;
                self.need_flush = true;
            }
            if self.read_done {
                ready!(w.as_mut().poll_flush(cx))?;
                self.need_flush = false;
                buffers::give_read(std::mem::take(&mut self.buf));
                ready!(w.as_mut().poll_shutdown(cx))?;
                self.done = true;
                return Poll::Ready(Ok(Flow::Done));
            }
            if bulk && self.full {
                // All written: the caller moves the rest of the burst.
                self.full = false;
                buffers::give_read(std::mem::take(&mut self.buf));
                return Poll::Ready(Ok(Flow::Bulk));
            }
        }
    }
}

impl Direction {
    /// One read onto the stack, written on at once. `Ready(Ok)` when it was
    /// all taken or the reader ended; `Pending` when the reader has nothing
    /// (no buffer held) or the writer pushed back (the rest kept in `buf`).
    /// Inlined: its 8 KiB frame's probe and saves cost ~24 instructions a call.
    #[inline(always)]
    fn poll_through_stack<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        let mut stack = [MaybeUninit::<u8>::uninit(); buffers::READ];
        let mut read = ReadBuf::uninit(&mut stack);
        match r.as_mut().poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {
                if self.need_flush {
                    ready!(w.as_mut().poll_flush(cx))?;
                    self.need_flush = false;
                }
                return Poll::Pending;
            }
        }
        let got = read.filled();
        if got.is_empty() {
            self.read_done = true;
            return Poll::Ready(Ok(()));
        }
        self.full = got.len() == buffers::READ;
        let mut at = 0;
        while at < got.len() {
            match w.as_mut().poll_write(cx, &got[at..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    at += n;
                    self.moved += n as u64;
                    self.need_flush = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.buf = buffers::take_read();
                    self.buf.extend_from_slice(&got[at..]);
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<A, B> Future for BothWays<'_, A, B>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    type Output = io::Result<(u64, u64)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let ab =
            this.a_to_b
                .poll_copy(cx, Pin::new(&mut *this.a), Pin::new(&mut *this.b), false)?;
        let ba =
            this.b_to_a
                .poll_copy(cx, Pin::new(&mut *this.b), Pin::new(&mut *this.a), false)?;
        ready!(ab);
        ready!(ba);
        Poll::Ready(Ok((this.a_to_b.moved, this.b_to_a.moved)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_cross_both_ways_and_ends_propagate() {
        let (mut client, mut a) = tokio::io::duplex(64);
        let (mut b, mut server) = tokio::io::duplex(64);
        let copy = tokio::spawn(async move { both_ways(&mut a, &mut b).await });
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, big);
        server.write_all(b"pong").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"pong");
        assert_eq!(copy.await.unwrap().unwrap(), (100_000, 4));
    }

    #[tokio::test]
    async fn a_quiet_direction_holds_no_buffer() {
        let (mut client, mut a) = tokio::io::duplex(64);
        let (mut b, mut server) = tokio::io::duplex(64);
        let mut copy = both_ways(&mut a, &mut b);
        let mut copy = Pin::new(&mut copy);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        client.write_all(b"hello").await.unwrap();
        assert!(copy.as_mut().poll(&mut cx).is_pending());
        let mut got = [0u8; 5];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        // Everything read was written, and the next read waits.
        assert_eq!(copy.a_to_b.buf.capacity(), 0);
        assert_eq!(copy.b_to_a.buf.capacity(), 0);
    }
}
