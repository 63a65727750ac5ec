//! Which sessions of a port have something to read. One task drives a
//! port and all its sessions' upstream sockets; each session waits on its
//! socket with its own waker, which queues the session's id and wakes the
//! port's task, so a wake-up costs O(ready sessions), not O(all sessions).

pub use crate::wake_queue::ReadyQueue;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::io::{Interest, Ready};
use tokio::net::UdpSocket;
use tokio_util::sync::ReusableBoxFuture;

/// Waits for one upstream socket to be readable or to carry an error (an
/// ICMP port-unreachable comes as an error, not as data), waking its
/// session through the port's queue.
pub struct Readiness {
    socket: Arc<UdpSocket>,
    future: ReusableBoxFuture<'static, std::io::Result<Ready>>,
    waker: Waker,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness").finish_non_exhaustive()
    }
}

async fn wait(socket: Arc<UdpSocket>) -> std::io::Result<Ready> {
    socket.ready(Interest::READABLE | Interest::ERROR).await
}

impl Readiness {
    /// Watches `socket` for session `id`, whose wake-ups go to `queue`.
    pub fn new(socket: Arc<UdpSocket>, id: u64, queue: &Arc<ReadyQueue>) -> Readiness {
        let waker = crate::wake_queue::waker(queue, id);
        // Queued once from the start: the port looks at the new socket and
        // registers its waker there.
        waker.wake_by_ref();
        Readiness {
            future: ReusableBoxFuture::new(wait(Arc::clone(&socket))),
            socket,
            waker,
        }
    }

    /// The socket watched.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Puts the session back on the port's queue, to be read again next
    /// pass (it still had data when the pass moved on).
    pub fn requeue(&self) {
        self.waker.wake_by_ref();
    }

    /// `Some(ready)` when the socket is ready now (the watch is then
    /// re-armed, reusing its allocation); `None` after registering the
    /// session's waker.
    pub fn poll(&mut self) -> Option<std::io::Result<Ready>> {
        let mut cx = Context::from_waker(&self.waker);
        match self.future.poll(&mut cx) {
            Poll::Pending => None,
            Poll::Ready(r) => {
                self.future.set(wait(Arc::clone(&self.socket)));
                Some(r)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The next non-empty set of woken ids (a wake-up may find the queue
    /// already taken: the port then just looks at nothing).
    async fn woken(queue: &ReadyQueue) -> Vec<u64> {
        let mut ids = Vec::new();
        while ids.is_empty() {
            tokio::time::timeout(Duration::from_secs(5), queue.woken())
                .await
                .expect("a wake-up");
            queue.take(&mut ids);
        }
        ids
    }

    #[tokio::test]
    async fn a_datagram_queues_its_session_once_and_only_its_own() {
        let queue = Arc::new(ReadyQueue::default());
        let (a, b) = (
            Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()),
            Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()),
        );
        let mut ra = Readiness::new(Arc::clone(&a), 1, &queue);
        let mut rb = Readiness::new(Arc::clone(&b), 2, &queue);
        let mut ids = Vec::new();
        queue.take(&mut ids);
        assert_eq!(ids, [1, 2], "new sessions are looked at once");
        assert!(ra.poll().is_none());
        assert!(rb.poll().is_none());
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"x", b.local_addr().unwrap()).unwrap();
        let ids = woken(&queue).await;
        assert_eq!(ids, [2]);
        let ready = rb.poll().unwrap().unwrap();
        assert!(ready.is_readable());
        let mut buf = [0u8; 8];
        assert_eq!(rb.socket().try_recv(&mut buf).unwrap(), 1);
        assert!(rb.socket().try_recv(&mut buf).is_err());
        assert!(rb.poll().is_none(), "re-armed and waiting again");
    }

    #[tokio::test]
    async fn an_icmp_error_wakes_the_session_without_data() {
        let queue = Arc::new(ReadyQueue::default());
        // A port nothing listens on: the kernel answers ICMP port-unreachable.
        let gone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = gone.local_addr().unwrap();
        drop(gone);
        let s = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        s.connect(to).await.unwrap();
        let mut r = Readiness::new(Arc::clone(&s), 9, &queue);
        let mut ids = Vec::new();
        queue.take(&mut ids);
        assert!(r.poll().is_none());
        super::super::batch::send_now(std::os::fd::AsRawFd::as_raw_fd(&*s), b"?").unwrap();
        let ids = woken(&queue).await;
        assert_eq!(ids, [9]);
        assert!(r.poll().unwrap().unwrap().is_error());
    }
}
