//! HTTP/2 streams polled inside their connection's task. hyper hands every
//! stream of a connection to an executor; tokio's makes each a task of its
//! own: a spawn, a wake-up through the scheduler for the backend's answer,
//! another for the connection to write it, and the task's release (~1,500
//! instructions per request under callgrind). `Spawner` keeps what hyper
//! hands it, and `Driver` polls those streams beside the connection in the
//! connection's task: a backend's answer wakes that task, which sends the
//! response and flushes it in the same pass.
//!
//! Each side is polled only when its own waker fired, so a pass for the
//! streams does not read the client socket again, and a wake-up that comes
//! in during a pass is taken in that pass instead of scheduling the task
//! once more.

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// What hyper spawns: a stream, or an upgraded stream's pump.
type Spawned = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Rounds of a pass before the task yields to the scheduler: a stream whose
/// resources ran out of tokio's cooperative budget wakes itself at once,
/// and only a return to the scheduler refills the budget.
const MAX_ROUNDS: usize = 16;

/// The executor given to hyper's HTTP/2 server: keeps what hyper spawns
/// for the connection's `Driver`.
#[derive(Clone, Default)]
pub struct Spawner {
    queue: Arc<Mutex<Vec<Spawned>>>,
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spawner")
    }
}

impl<F> hyper::rt::Executor<F> for Spawner
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::pin(fut));
    }
}

/// What the two wakers share with the driver.
#[derive(Default)]
struct Shared {
    /// The connection's own wakers fired (socket, timers, a stream's frames).
    conn: AtomicBool,
    /// A stream's wakers fired.
    streams: AtomicBool,
    /// The driver is inside a pass and looks at both flags before it ends.
    in_pass: AtomicBool,
    /// The task, woken for what fires outside a pass.
    task: AtomicWaker,
}

impl Shared {
    fn fire(&self, flag: &AtomicBool) {
        flag.store(true, SeqCst);
        // SeqCst on both sides: either the pass sees the flag before it
        // ends, or this sees that it ended and wakes the task.
        if !self.in_pass.load(SeqCst) {
            self.task.wake();
        }
    }
}

struct ConnWake(Arc<Shared>);

impl Wake for ConnWake {
    fn wake(self: Arc<Self>) {
        self.0.fire(&self.0.conn);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fire(&self.0.conn);
    }
}

struct StreamsWake(Arc<Shared>);

impl Wake for StreamsWake {
    fn wake(self: Arc<Self>) {
        self.0.fire(&self.0.streams);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fire(&self.0.streams);
    }
}

/// Polls one HTTP/2 connection (its output `O`) and the streams its
/// `Spawner` kept.
pub struct Driver<O> {
    spawner: Spawner,
    running: FuturesUnordered<Spawned>,
    /// Emptied into `running`; kept to reuse its allocation.
    taken: Vec<Spawned>,
    shared: Arc<Shared>,
    conn_waker: Waker,
    streams_waker: Waker,
    /// Whether the connection's future has finished (it is not polled again).
    conn_done: bool,
    /// Its output, handed on once the streams have finished too.
    finished: Option<O>,
}

impl<O> std::fmt::Debug for Driver<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Driver({} streams)", self.running.len())
    }
}

impl<O> Driver<O> {
    /// A driver for the streams `spawner` keeps; the connection is polled first.
    pub fn new(spawner: Spawner) -> Driver<O> {
        let shared = Arc::new(Shared::default());
        shared.conn.store(true, SeqCst);
        Driver {
            spawner,
            running: FuturesUnordered::new(),
            taken: Vec::new(),
            conn_waker: Waker::from(Arc::new(ConnWake(Arc::clone(&shared)))),
            streams_waker: Waker::from(Arc::new(StreamsWake(Arc::clone(&shared)))),
            shared,
            conn_done: false,
            finished: None,
        }
    }

    /// Has the connection polled at the next pass (after a call on it, such
    /// as a graceful shutdown, that its own wakers do not report).
    pub fn poke(&self) {
        self.shared.conn.store(true, SeqCst);
    }

    /// Polls `conn` and the streams whose wakers fired. Ready with the
    /// connection's output once it has finished and every stream it
    /// spawned has too, so that requests in flight still settle (access
    /// log, pool) as they did in tasks of their own.
    pub fn poll<C: Future<Output = O>>(
        &mut self,
        mut conn: Pin<&mut C>,
        cx: &mut Context<'_>,
    ) -> Poll<O> {
        self.shared.task.register(cx.waker());
        for _ in 0..MAX_ROUNDS {
            self.shared.in_pass.store(true, SeqCst);
            if self.shared.conn.swap(false, SeqCst) && !self.conn_done {
                if let Poll::Ready(out) = conn
                    .as_mut()
                    .poll(&mut Context::from_waker(&self.conn_waker))
                {
                    self.conn_done = true;
                    self.finished = Some(out);
                }
            }
            let spawned = self.take_spawned();
            if self.shared.streams.swap(false, SeqCst) || spawned {
                let mut scx = Context::from_waker(&self.streams_waker);
                while let Poll::Ready(Some(())) = self.running.poll_next_unpin(&mut scx) {}
            }
            self.shared.in_pass.store(false, SeqCst);
            let again = (self.shared.conn.load(SeqCst) && !self.conn_done)
                || self.shared.streams.load(SeqCst);
            if !again {
                if self.conn_done && self.running.is_empty() {
                    if let Some(out) = self.finished.take() {
                        return Poll::Ready(out);
                    }
                }
                return Poll::Pending;
            }
        }
        // Out of rounds: the flags stay set for the next poll.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Moves what hyper spawned into `running`; whether there was any.
    fn take_spawned(&mut self) -> bool {
        {
            let mut queue = self
                .spawner
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if queue.is_empty() {
                return false;
            }
            std::mem::swap(&mut *queue, &mut self.taken);
        }
        self.running.extend(self.taken.drain(..));
        true
    }
}
