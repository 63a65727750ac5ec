//! The streams of one HTTP/2 connection: what each still owes and is owed.
//! A stream stays here while its request's task runs, its request body may
//! still come, or its response is being sent; once it is done both ways it
//! goes, and every id at or below the highest seen is then closed.

use super::recv::Inbound;
use crate::proxy::body::DownBody;
use crate::proxy::http::Exchange;
use bytes::Bytes;
use tokio::task::JoinHandle;

/// One open stream.
pub struct Stream {
    /// Its id (odd: client-initiated).
    pub id: u32,
    /// Feeds its request body to the request's task, while the client may
    /// still send (`None` once it ended, or when there is none).
    pub inbound: Option<Inbound>,
    /// The client may still send on it (no END_STREAM yet).
    pub recv_open: bool,
    /// What the client may still send on it before a WINDOW_UPDATE.
    pub recv_window: i64,
    /// Bytes taken by the request's task, not yet given back.
    pub recv_credit: u32,
    /// The request body's declared length, checked against its DATA.
    pub declared: Option<u64>,
    /// Request body bytes received.
    pub received: u64,
    /// The request's task, while it runs.
    pub task: Option<JoinHandle<()>>,
    /// The response body being sent.
    pub body: Option<DownBody<Exchange>>,
    /// Response bytes taken from `body`, not yet framed.
    pub pending: Bytes,
    /// `body` has given its last bytes.
    pub body_done: bool,
    /// What meshd may still send on it.
    pub send_window: i64,
    /// END_STREAM was sent, or the stream was reset: it is done.
    pub done: bool,
}

impl Stream {
    /// A stream whose request head just came.
    pub fn new(id: u32, recv_window: i64, send_window: i64) -> Stream {
        Stream {
            id,
            inbound: None,
            recv_open: false,
            recv_window,
            recv_credit: 0,
            declared: None,
            received: 0,
            task: None,
            body: None,
            pending: Bytes::new(),
            body_done: false,
            send_window,
            done: false,
        }
    }

    /// Ends it where it stands: the request's task stops, a body on its
    /// way to the backend fails, a response body is dropped (settled as
    /// incomplete).
    pub fn cancel(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(i) = self.inbound.take() {
            i.fail();
        }
        self.recv_open = false;
        self.body = None;
        self.pending = Bytes::new();
        self.done = true;
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // A stream that goes (reset, or its connection ended) takes its
        // request's task with it.
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// The open streams, with their ids kept apart: a frame's stream is found
/// by scanning 4-byte ids, not 144-byte entries (a client with a hundred
/// streams in flight makes every lookup a scan).
#[derive(Default)]
pub struct Table {
    ids: Vec<u32>,
    entries: Vec<Stream>,
}

impl Table {
    /// Where stream `id` is, if it is open.
    pub fn find(&self, id: u32) -> Option<usize> {
        self.ids.iter().position(|&i| i == id)
    }

    /// Adds a stream.
    pub fn push(&mut self, s: Stream) {
        self.ids.push(s.id);
        self.entries.push(s);
    }

    /// Removes the stream at `i`; the last one takes its place.
    pub fn swap_remove(&mut self, i: usize) {
        if i < self.entries.len() {
            self.ids.swap_remove(i);
            self.entries.swap_remove(i);
        }
    }

    /// Removes every stream.
    pub fn clear(&mut self) {
        self.ids.clear();
        self.entries.clear();
    }

    /// Lets go of the room a burst of streams grew, when none is open.
    pub fn shrink_when_empty(&mut self) {
        if self.entries.is_empty() && self.entries.capacity() != 0 {
            *self = Table::default();
        }
    }
}

impl std::ops::Deref for Table {
    type Target = [Stream];
    fn deref(&self) -> &[Stream] {
        &self.entries
    }
}

impl std::ops::DerefMut for Table {
    fn deref_mut(&mut self) -> &mut [Stream] {
        &mut self.entries
    }
}
