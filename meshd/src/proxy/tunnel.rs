//! Copying bytes both ways between two streams (TCP mode, upgraded HTTP
//! connections), closing when either side ends, when no byte moves for the
//! idle timeout, or when `stop` fires. `copy` moves the bytes, with no
//! buffer held between bursts; between two plain sockets, `splice` has the
//! kernel move large bursts. The idle check costs one relaxed store per
//! read, not a timer reset.

use super::copy::Moved;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
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

    /// The stream inside.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Notes bytes read around `poll_read` (spliced).
    pub fn saw_bytes(&self) {
        self.seen.store(true, Ordering::Relaxed);
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

/// What a tunnel carried: bytes written each way, whether it ended well
/// or not, and how many of them the kernel spliced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    /// `a` -> `b` (client to backend in TCP mode).
    pub a_to_b: u64,
    /// `b` -> `a`.
    pub b_to_a: u64,
    /// Of both, the bytes moved by `splice(2)`.
    pub spliced: u64,
}

/// Copies until done, quiet for at least `idle`, or stopped.
pub async fn copy_with_idle<A, B>(a: A, b: B, idle: Duration, stop: CancellationToken) -> Carried
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let seen = Arc::new(AtomicBool::new(false));
    let mut a = Watched::new(a, Arc::clone(&seen));
    let mut b = Watched::new(b, Arc::clone(&seen));
    let mut copy = super::copy::both_ways(&mut a, &mut b);
    run(&mut copy, idle, stop, seen).await;
    let (a_to_b, b_to_a) = copy.moved();
    Carried {
        a_to_b,
        b_to_a,
        spliced: 0,
    }
}

/// [`copy_with_idle`] between two plain sockets, large bursts spliced.
pub async fn splice_with_idle(
    a: TcpStream,
    b: TcpStream,
    idle: Duration,
    stop: CancellationToken,
) -> Carried {
    let seen = Arc::new(AtomicBool::new(false));
    let mut a = Watched::new(a, Arc::clone(&seen));
    let mut b = Watched::new(b, Arc::clone(&seen));
    let mut copy = super::splice::both_ways(&mut a, &mut b);
    run(&mut copy, idle, stop, seen).await;
    let (a_to_b, b_to_a) = copy.moved();
    Carried {
        a_to_b,
        b_to_a,
        spliced: copy.spliced(),
    }
}

/// Runs `copy` against the idle check and `stop`, and logs how it ended.
async fn run<F>(copy: &mut F, idle: Duration, stop: CancellationToken, seen: Arc<AtomicBool>)
where
    F: Future<Output = std::io::Result<(u64, u64)>> + Unpin,
{
    match (Tunnel {
        copy,
        idle,
        tick: Box::pin(tokio::time::sleep(idle)),
        stop: Box::pin(stop.cancelled_owned()),
        seen,
        wakes: Wakes::new(),
    })
    .await
    {
        End::Done(Ok(_)) => {}
        End::Done(Err(e)) => tracing::debug!(error = %e, "tunnel ended with an error"),
        End::Idle => tracing::debug!(idle_secs = idle.as_secs(), "tunnel idle; closed"),
        End::Stopped => tracing::debug!("tunnel closed at the drain deadline"),
    }
}

/// Why a tunnel ended.
enum End {
    Done(std::io::Result<(u64, u64)>),
    Idle,
    Stopped,
}

const TICK: u8 = 1;
const STOP: u8 = 2;

/// The copy, raced against the idle check and the drain deadline. Unlike a
/// `select!`, a wake-up for bytes polls only the copy: the timer and the
/// token are polled when their own wakers fired (TCP mode wakes twice per
/// request, and polling both every time was 1% of meshd's CPU there).
struct Tunnel<F> {
    copy: F,
    idle: Duration,
    tick: Pin<Box<tokio::time::Sleep>>,
    stop: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    seen: Arc<AtomicBool>,
    wakes: Wakes,
}

/// Per-branch wakers that note which branch fired, then wake the task.
struct Wakes {
    shared: Arc<Fired>,
    tick: Waker,
    stop: Waker,
    /// The task waker last handed to `shared`; `None` before the first poll.
    task: Option<Waker>,
}

struct Fired {
    which: AtomicU8,
    task: Mutex<Option<Waker>>,
}

struct BranchWaker {
    shared: Arc<Fired>,
    bit: u8,
}

impl Wake for BranchWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.which.fetch_or(self.bit, Ordering::AcqRel);
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = task.as_ref() {
            w.wake_by_ref();
        }
    }
}

impl Wakes {
    fn new() -> Wakes {
        let shared = Arc::new(Fired {
            which: AtomicU8::new(0),
            task: Mutex::new(None),
        });
        let branch = |bit| {
            Waker::from(Arc::new(BranchWaker {
                shared: Arc::clone(&shared),
                bit,
            }))
        };
        Wakes {
            tick: branch(TICK),
            stop: branch(STOP),
            shared,
            task: None,
        }
    }

    /// Which branches to poll: all on the first poll, then those that fired.
    fn due(&mut self, cx: &Context<'_>) -> u8 {
        let first = self.task.is_none();
        if !self.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            let w = cx.waker().clone();
            *self
                .shared
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(w.clone());
            self.task = Some(w);
        }
        let fired = self.shared.which.swap(0, Ordering::AcqRel);
        if first {
            TICK | STOP
        } else {
            fired
        }
    }
}

impl<F> Future for Tunnel<F>
where
    F: Future<Output = std::io::Result<(u64, u64)>> + Unpin,
{
    type Output = End;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let this = &mut *self;
        let due = this.wakes.due(cx);
        if let Poll::Ready(r) = Pin::new(&mut this.copy).poll(cx) {
            return Poll::Ready(End::Done(r));
        }
        if due & STOP != 0
            && this
                .stop
                .as_mut()
                .poll(&mut Context::from_waker(&this.wakes.stop))
                .is_ready()
        {
            return Poll::Ready(End::Stopped);
        }
        if due & TICK != 0 {
            let mut tcx = Context::from_waker(&this.wakes.tick);
            while this.tick.as_mut().poll(&mut tcx).is_ready() {
                if !this.seen.swap(false, Ordering::Relaxed) {
                    return Poll::Ready(End::Idle);
                }
                this.tick
                    .as_mut()
                    .reset(tokio::time::Instant::now() + this.idle);
            }
        }
        Poll::Pending
    }
}
