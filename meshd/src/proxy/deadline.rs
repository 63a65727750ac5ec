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
    /// In microseconds: 4 bytes, not a `Duration`'s 16, in every
    /// connection (a step past 71 minutes is cut to that: the timer then
    /// only fires once more per 71 minutes of a longer wait).
    step_us: u32,
    /// Whether `at` was set ahead for the next wait (`preset`); in the
    /// padding after `step_us`, so a connection holds no `Option<Instant>`
    /// for it.
    preset: bool,
}

impl Deadline {
    /// A timer for waits that are each at least `step` long.
    pub fn new(step: Duration) -> Deadline {
        let at = Instant::now() + step;
        Deadline {
            sleep: Box::pin(tokio::time::sleep_until(at)),
            at,
            step_us: u32::try_from(step.as_micros()).unwrap_or(u32::MAX),
            preset: false,
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

    /// `set`, for a wait that has not begun yet: the one that takes it
    /// (`take_preset`) runs to `at` without reading the clock.
    pub fn preset(&mut self, at: Instant) {
        self.set(at);
        self.preset = true;
    }

    /// Whether `preset` set the current deadline since the last call.
    pub fn take_preset(&mut self) -> bool {
        std::mem::take(&mut self.preset)
    }

    /// Ready once the deadline `set` last has passed. For a wait written
    /// as one `poll_fn` (an idle connection's), which then holds no
    /// future of `within`'s.
    pub fn poll_passed(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        self.poll_idle(cx, |_, _| false).map(|_| ())
    }

    /// `poll_passed` for a quiet connection that may be handed over
    /// (`park`): also ready, with `Idle::Park`, when the timer fires and
    /// `park(now, deadline)` says the wait has gone on long enough. The
    /// question is asked only when the timer fires (at least every
    /// `step`), so a wait costs nothing more until then.
    pub fn poll_idle(
        &mut self,
        cx: &mut std::task::Context<'_>,
        mut park: impl FnMut(Instant, Instant) -> bool,
    ) -> Poll<Idle> {
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            let now = Instant::now();
            if now >= self.at {
                return Poll::Ready(Idle::Passed);
            }
            let next = self
                .at
                .min(now + Duration::from_micros(u64::from(self.step_us)));
            self.sleep.as_mut().reset(next);
            if park(now, self.at) {
                return Poll::Ready(Idle::Park);
            }
        }
    }
}

/// Why an idle wait ended (`Deadline::poll_idle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idle {
    /// The deadline passed.
    Passed,
    /// The wait has gone on long enough to hand the connection over.
    Park,
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

    #[tokio::test(start_paused = true)]
    async fn a_preset_deadline_is_taken_once_and_honoured() {
        let mut d = Deadline::new(Duration::from_millis(100));
        assert!(!d.take_preset());
        let start = Instant::now();
        d.preset(start + Duration::from_millis(250));
        assert!(d.take_preset());
        assert!(!d.take_preset(), "taken once");
        // The wait that took it runs to the preset deadline, across steps.
        std::future::poll_fn(|cx| d.poll_passed(cx)).await;
        let waited = Instant::now() - start;
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_millis(300),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_wait_parks_at_the_first_firing_the_caller_agrees_to() {
        let mut d = Deadline::new(Duration::from_millis(100));
        let start = Instant::now();
        d.set(start + Duration::from_secs(60));
        let park_at = start + Duration::from_millis(250);
        let r = std::future::poll_fn(|cx| d.poll_idle(cx, |now, _| now >= park_at)).await;
        assert_eq!(r, Idle::Park);
        let waited = Instant::now() - start;
        // Fired at 100, 200 (too early) and 300 ms.
        assert_eq!(waited, Duration::from_millis(300));
        // The deadline still wins when it comes first.
        d.set(Instant::now() + Duration::from_millis(150));
        let r = std::future::poll_fn(|cx| d.poll_idle(cx, |_, _| false)).await;
        assert_eq!(r, Idle::Passed);
    }

    #[test]
    fn a_step_past_u32_microseconds_is_cut() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let _guard = rt.enter();
        let d = Deadline::new(Duration::from_secs(10_000));
        assert_eq!(d.step_us, u32::MAX);
    }
}
