//! What a connection's request tasks hand back to it: their answers, and
//! the request body bytes they took (to credit back as WINDOW_UPDATE). One
//! lock and one waker for both; the connection takes everything at once
//! on its next poll.

use crate::proxy::http::Reply;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Waker};

/// A connection's mailbox, shared with its request tasks.
#[derive(Debug, Default)]
pub struct Mailbox {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    credits: Vec<(u32, u32)>,
    replies: Vec<(u32, Option<Reply>)>,
    conn: Option<Waker>,
}

/// What was delivered since the connection last looked.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Request body bytes taken, per stream.
    pub credits: Vec<(u32, u32)>,
    /// Answers per stream; `None`: the request's task ended without one.
    pub replies: Vec<(u32, Option<Reply>)>,
}

impl Mailbox {
    fn put(&self, f: impl FnOnce(&mut Inner)) {
        let mut m = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut m);
        if let Some(w) = m.conn.take() {
            w.wake();
        }
    }

    /// `n` bytes of stream `id`'s request body were taken.
    pub fn credit(&self, id: u32, n: u32) {
        self.put(|m| m.credits.push((id, n)));
    }

    /// Stream `id`'s answer (`None`: there is none).
    pub fn reply(&self, id: u32, reply: Option<Reply>) {
        self.put(|m| m.replies.push((id, reply)));
    }

    /// Moves what was delivered into `into`; the connection's task is woken
    /// by the next delivery.
    pub fn take(&self, cx: &Context<'_>, into: &mut Delivered) {
        let mut m = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        into.credits.append(&mut m.credits);
        into.replies.append(&mut m.replies);
        match &m.conn {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => m.conn = Some(cx.waker().clone()),
        }
    }
}

/// Delivers a request's answer when its task ends: the answer it
/// produced, or `None` if the task ended without one (aborted, or a bug
/// that panicked), so that its stream is not left waiting. It holds no
/// room for the answer: the task's future stays small.
pub struct Deliver {
    mailbox: std::sync::Arc<Mailbox>,
    id: u32,
    armed: bool,
}

impl Deliver {
    /// A delivery of stream `id`'s answer to `mailbox`.
    pub fn new(mailbox: std::sync::Arc<Mailbox>, id: u32) -> Deliver {
        Deliver {
            mailbox,
            id,
            armed: true,
        }
    }

    /// Delivers `reply`.
    pub fn send(mut self, reply: Reply) {
        self.armed = false;
        self.mailbox.reply(self.id, Some(reply));
    }
}

impl Drop for Deliver {
    fn drop(&mut self) {
        if self.armed {
            self.mailbox.reply(self.id, None);
        }
    }
}
