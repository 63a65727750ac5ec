//! One timer per HTTP/1.1 client connection for every wait it has in turn
//! (idle, request head, backend response). A new wait moves a deadline,
//! not the timer: the timer never sits later than the deadline, fires at
//! least every `step`, and is re-armed only when it fires. So a request
//! costs no timer registration, where a fresh `tokio::time::timeout` per
//! wait would take the timer wheel's lock twice.

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{ready, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The connection's timer and the deadline of its current wait.
#[derive(Debug)]
pub struct Deadline {
    sleep: Pin<Box<Sleep>>,
    at: Instant,
    /// In nanoseconds: 8 bytes, not a `Duration`'s 16, in every connection.
    step_ns: u64,
}

impl Deadline {
    /// A timer for waits that are each at least `step` long.
    pub fn new(step: Duration) -> Deadline {
        let at = Instant::now() + step;
        Deadline {
            sleep: Box::pin(tokio::time::sleep_until(at)),
            at,
            step_ns: u64::try_from(step.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// Runs `fut` until it finishes (`Some`) or `at` passes (`None`).
    pub async fn within<F: Future>(&mut self, at: Instant, fut: F) -> Option<F::Output> {
        self.within_pinned(at, pin!(fut)).await
    }

    /// `within` for a future pinned where it was built: a large one (a
    /// whole backend exchange) is then never moved, where passing it by
    /// value copies it (a `memcpy` of its state per request).
    pub async fn within_pinned<F: Future>(
        &mut self,
        at: Instant,
        mut fut: Pin<&mut F>,
    ) -> Option<F::Output> {
        self.set(at);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            self.poll_passed(cx).map(|()| None)
        })
        .await
    }

    /// The current wait's deadline.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// Makes `at` the current wait's deadline, for `poll_passed`.
    pub fn set(&mut self, at: Instant) {
        self.at = at;
        if self.at < self.sleep.deadline() {
            // A shorter wait than `step` (a reload lowered a timeout).
            self.sleep.as_mut().reset(self.at);
        }
    }

    /// Ready once the deadline `set` last has passed. For a wait written
    /// as one `poll_fn` (an idle connection's), which then holds no
    /// future of `within`'s.
    pub fn poll_passed(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            let now = Instant::now();
            if now >= self.at {
                return Poll::Ready(());
            }
            let next = self.at.min(now + Duration::from_nanos(self.step_ns));
            self.sleep.as_mut().reset(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_end_at_their_own_deadline_whatever_the_step() {
        let mut d = Deadline::new(Duration::from_millis(100));
        let start = Instant::now();
        // Longer than the step: the timer fires at each step, the wait goes on.
        let r = d
            .within(
                start + Duration::from_millis(350),
                std::future::pending::<()>(),
            )
            .await;
        assert!(r.is_none());
        assert!(tokio::time::Instant::now() >= start + Duration::from_millis(350));
        // A finished future wins, and a later wait is unaffected.
        let t = Instant::now();
        assert_eq!(
            d.within(t + Duration::from_secs(5), async { 7 }).await,
            Some(7)
        );
        let r = d
            .within(
                t + Duration::from_millis(120),
                tokio::time::sleep(Duration::from_millis(50)),
            )
            .await;
        assert!(r.is_some());
        // Shorter than the step: still honoured.
        let t = Instant::now();
        let r = d
            .within(t + Duration::from_millis(10), std::future::pending::<()>())
            .await;
        assert!(r.is_none());
        let waited = tokio::time::Instant::now() - t;
        assert!(
            waited >= Duration::from_millis(10) && waited < Duration::from_millis(50),
            "{waited:?}"
        );
    }
}
