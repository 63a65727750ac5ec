//! Cancellation waits that are cheap to poll again. A `CancellationToken`'s
//! `cancelled()` future takes two locks on every poll (the token's state,
//! then its `Notify`'s waiter list, to refresh the stored waker): an
//! HTTP/1.1 connection polls its stop and drain waits on every wake-up,
//! three times a request (~70 instructions each). Once a wait holds the
//! task's waker, a later poll by the same task only asks the token whether
//! it was cancelled: the waker the wait holds is what wakes the task when
//! it is.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio_util::sync::CancellationToken;

/// Remembers which waker a cancellation wait was last polled with.
#[derive(Debug, Default)]
pub struct Watch {
    registered: Option<Waker>,
}

impl Watch {
    /// Polls `wait` (from `token.cancelled()`), or only the token's flag when
    /// `wait` already holds this context's waker.
    pub fn poll<F: Future<Output = ()>>(
        &mut self,
        token: &CancellationToken,
        wait: Pin<&mut F>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if let Some(w) = &self.registered {
            if w.will_wake(cx.waker()) {
                return if token.is_cancelled() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                };
            }
        }
        let polled = wait.poll(cx);
        if polled.is_pending() {
            // `wait` stores this waker now: a cancellation wakes it.
            self.registered = Some(cx.waker().clone());
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (Arc::clone(&c), Waker::from(c))
    }

    #[test]
    fn a_cancel_wakes_the_last_waker_and_is_seen_on_the_next_poll() {
        let token = CancellationToken::new();
        let mut wait = pin!(token.cancelled());
        let mut watch = Watch::default();
        let (a_count, a) = waker();
        let mut cx = Context::from_waker(&a);
        assert!(watch.poll(&token, wait.as_mut(), &mut cx).is_pending());
        // Polled again by the same task: still waiting.
        assert!(watch.poll(&token, wait.as_mut(), &mut cx).is_pending());
        // Another task polls it: that one's waker is the one woken.
        let (b_count, b) = waker();
        let mut cx_b = Context::from_waker(&b);
        assert!(watch.poll(&token, wait.as_mut(), &mut cx_b).is_pending());
        token.cancel();
        assert_eq!(b_count.0.load(Ordering::SeqCst), 1);
        assert_eq!(a_count.0.load(Ordering::SeqCst), 0);
        assert!(watch.poll(&token, wait.as_mut(), &mut cx_b).is_ready());
    }

    #[tokio::test]
    async fn a_task_waiting_on_its_watch_ends_when_the_token_is_cancelled() {
        let token = CancellationToken::new();
        let t = token.clone();
        let task = tokio::spawn(async move {
            let mut wait = pin!(t.cancelled());
            let mut watch = Watch::default();
            let mut polls = 0u32;
            std::future::poll_fn(|cx| {
                polls += 1;
                if polls < 3 {
                    // Other wake-ups of the task (as a socket's would be).
                    cx.waker().wake_by_ref();
                }
                watch.poll(&t, wait.as_mut(), cx)
            })
            .await;
            polls
        });
        tokio::task::yield_now().await;
        token.cancel();
        let polls = tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("the task saw the cancel")
            .unwrap();
        assert!(polls >= 3, "{polls}");
    }
}
