//! A TCP tunnel between two plain sockets, whose large bursts the kernel
//! moves through a pipe (`splice(2)`) instead of copying them through user
//! space. Each direction runs `copy`'s loop until a read fills its whole
//! buffer; it then splices, socket -> pipe -> socket, until a burst ends
//! small, and goes back to the loop. Small request/response traffic never
//! sees a pipe; a direction waiting for bytes holds none (pipes wait empty
//! in a per-thread cache, as `buffers` keeps read buffers).

use super::copy::{Direction, Flow, Moved};
use nix::fcntl::{splice, OFlag, SpliceFFlags};
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::tunnel::Watched;

/// Bytes asked of one splice into an empty pipe: the pipe takes what fits
/// (16 pages by default).
const FILL: usize = 1 << 20;
/// A burst whose splice into the pipe brought less than this is over: the
/// direction goes back to copying (one read and one write per message).
const SMALL: usize = super::buffers::READ;
/// Empty pipes kept per thread; the rest are closed.
const KEEP: usize = 16;

thread_local! {
    static PIPES: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// A pipe's two ends, both non-blocking.
#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

/// An empty pipe from the thread's cache, or a new one; `None` when none
/// can be made (descriptor limit): the direction then keeps copying.
fn take_pipe() -> Option<Pipe> {
    if let Some(p) = PIPES.with(|c| c.borrow_mut().pop()) {
        return Some(p);
    }
    match nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC) {
        Ok((read, write)) => Some(Pipe { read, write }),
        Err(e) => {
            tracing::debug!(error = %e, "no pipe for splice; copying instead");
            None
        }
    }
}

/// Takes back an empty pipe (one holding bytes is dropped, closing it).
fn give_pipe(p: Pipe) {
    PIPES.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() < KEEP {
            c.push(p);
        }
    });
}

fn splice_flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE
}

/// A burst being spliced: the pipe, and the bytes in it.
#[derive(Debug, Default)]
struct Burst {
    /// Held only while it holds bytes, or between a fill and its drain.
    pipe: Option<Pipe>,
    /// Bytes in the pipe.
    held: usize,
    /// The last fill was small: once drained, the burst is over.
    small: bool,
}

/// How a burst ended.
enum BurstEnd {
    /// It went small: back to copying.
    Over,
    /// The reader ended (EOF); the pipe is drained.
    Eof,
}

impl Burst {
    /// Splices `from` -> pipe -> `to` until the burst goes small or the
    /// reader ends. Waits (`Pending`) for `to` with bytes in the pipe, or
    /// for `from` with the pipe given back. Kept out of line: small
    /// messages never come here, and the copy loop's path stays short.
    #[inline(never)]
    fn poll_move(
        &mut self,
        cx: &mut Context<'_>,
        from: &Watched<TcpStream>,
        to: &TcpStream,
        moved: &mut u64,
    ) -> Poll<io::Result<BurstEnd>> {
        loop {
            while self.held > 0 {
                let Some(pipe) = &self.pipe else {
                    return Poll::Ready(Err(io::Error::other("bytes held without a pipe")));
                };
                ready!(to.poll_write_ready(cx))?;
                let out = to.try_io(Interest::WRITABLE, || {
                    splice(&pipe.read, None, to, None, self.held, splice_flags())
                        .map_err(io::Error::from)
                });
                match out {
                    Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Ok(n) => {
                        self.held -= n;
                        *moved += n as u64;
                    }
                    // Its readiness is cleared: the next poll waits for room.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            if self.small {
                self.small = false;
                if let Some(p) = self.pipe.take() {
                    give_pipe(p);
                }
                return Poll::Ready(Ok(BurstEnd::Over));
            }
            // The pipe is empty: it waits in the cache, not here.
            if from.get_ref().poll_read_ready(cx)?.is_pending() {
                if let Some(p) = self.pipe.take() {
                    give_pipe(p);
                }
                return Poll::Pending;
            }
            if self.pipe.is_none() {
                match take_pipe() {
                    Some(p) => self.pipe = Some(p),
                    None => return Poll::Ready(Ok(BurstEnd::Over)),
                }
            }
            let Some(pipe) = &self.pipe else {
                continue;
            };
            // Into an empty pipe, so `WouldBlock` can only mean the
            // socket has nothing: its readiness is rightly cleared.
            let sock = from.get_ref();
            let got = sock.try_io(Interest::READABLE, || {
                splice(sock, None, &pipe.write, None, FILL, splice_flags()).map_err(io::Error::from)
            });
            match got {
                Ok(0) => {
                    if let Some(p) = self.pipe.take() {
                        give_pipe(p);
                    }
                    return Poll::Ready(Ok(BurstEnd::Eof));
                }
                Ok(n) => {
                    from.saw_bytes();
                    self.held = n;
                    self.small = n < SMALL;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// One direction: `copy`'s loop, or a burst being spliced.
#[derive(Debug, Default)]
struct Lane {
    copy: Direction,
    burst: Option<Burst>,
    /// Bytes of `copy.moved` that went through a pipe.
    spliced: u64,
}

impl Lane {
    /// Inlined, as `copy::BothWays` inlines its directions: a call per
    /// direction per wake-up cost TCP mode ~5% of its instructions.
    #[inline(always)]
    fn poll_lane(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut Watched<TcpStream>,
        to: &mut Watched<TcpStream>,
    ) -> Poll<io::Result<()>> {
        loop {
            if let Some(burst) = &mut self.burst {
                let before = self.copy.moved;
                let end = burst.poll_move(cx, from, to.get_ref(), &mut self.copy.moved);
                self.spliced += self.copy.moved - before;
                match ready!(end)? {
                    BurstEnd::Over => {}
                    // `copy` shuts the writer down, as at any reader's end.
                    BurstEnd::Eof => self.copy.read_done = true,
                }
                self.burst = None;
            }
            match ready!(self
                .copy
                .poll_copy(cx, Pin::new(&mut *from), Pin::new(&mut *to), true))?
            {
                Flow::Done => return Poll::Ready(Ok(())),
                Flow::Bulk => self.burst = Some(Burst::default()),
            }
        }
    }
}

/// Copies between two plain sockets both ways, splicing large bursts,
/// until both directions end or either fails; see [`super::copy::both_ways`].
pub struct BothWays<'s> {
    a: &'s mut Watched<TcpStream>,
    b: &'s mut Watched<TcpStream>,
    a_to_b: Lane,
    b_to_a: Lane,
}

/// The tunnel between `a` and `b`.
pub fn both_ways<'s>(a: &'s mut Watched<TcpStream>, b: &'s mut Watched<TcpStream>) -> BothWays<'s> {
    BothWays {
        a,
        b,
        a_to_b: Lane::default(),
        b_to_a: Lane::default(),
    }
}

impl BothWays<'_> {
    /// Bytes of [`Moved::moved`] that went through a pipe.
    pub fn spliced(&self) -> u64 {
        self.a_to_b.spliced + self.b_to_a.spliced
    }
}

impl Moved for BothWays<'_> {
    fn moved(&self) -> (u64, u64) {
        (self.a_to_b.copy.moved, self.b_to_a.copy.moved)
    }
}

impl Future for BothWays<'_> {
    type Output = io::Result<(u64, u64)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let ab = this.a_to_b.poll_lane(cx, this.a, this.b)?;
        let ba = this.b_to_a.poll_lane(cx, this.b, this.a)?;
        ready!(ab);
        ready!(ba);
        Poll::Ready(Ok(this.moved()))
    }
}

#[cfg(test)]
mod tests;
