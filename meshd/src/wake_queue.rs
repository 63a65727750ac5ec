//! Ids woken since a task last looked. One task drives many sockets (a UDP
//! port's sessions, a listener's parked connections); each socket waits
//! with a waker of its own, which queues its id and wakes the task, so a
//! wake-up costs O(woken sockets), not O(all sockets).

use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};
use tokio::sync::Notify;

/// The ids woken since the driving task last looked.
#[derive(Debug, Default)]
pub struct ReadyQueue {
    ids: Mutex<Vec<u64>>,
    notify: Notify,
}

impl ReadyQueue {
    /// Resolves once an id has been woken or `wake` was called (at once
    /// when one was meanwhile).
    pub async fn woken(&self) {
        self.notify.notified().await;
    }

    /// Wakes the driving task without queuing an id (it has something
    /// else to look at).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Swaps the queued ids into `into` (cleared first): no allocation once
    /// both vectors have grown to the usual burst.
    pub fn take(&self, into: &mut Vec<u64>) {
        into.clear();
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *ids, into);
    }

    fn push(&self, id: u64) {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).push(id);
        self.notify.notify_one();
    }
}

/// A waker that queues `id` on `queue`.
pub fn waker(queue: &Arc<ReadyQueue>, id: u64) -> Waker {
    Waker::from(Arc::new(IdWake {
        id,
        queue: Arc::clone(queue),
    }))
}

struct IdWake {
    id: u64,
    queue: Arc<ReadyQueue>,
}

impl Wake for IdWake {
    fn wake(self: Arc<Self>) {
        self.queue.push(self.id);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.queue.push(self.id);
    }
}
