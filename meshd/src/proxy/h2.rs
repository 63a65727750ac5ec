//! meshd's own HTTP/2 server, for service ports and edge listeners
//! (prior knowledge, or ALPN `h2`). hyper's server, on the h2 crate, kept
//! about 28 KB of buffers on every connection from its first byte to its
//! last (a 16 KB write buffer, an 8 KB read buffer, 4 KB of HPACK), idle or
//! not; a node proxy holds every HTTP/2 connection of every app on its
//! node, gRPC clients keep theirs open for hours, and HAProxy holds one in
//! 6 KB. Here a connection takes its read and write buffers from the
//! thread's cache when bytes move and gives them back when it goes quiet:
//! an idle connection is its task, its HPACK table and its socket.
//!
//! The connection's task (`driver`) reads frames, keeps the streams' state
//! and flow control, and writes every frame; each request runs in a task of
//! its own (`http::handle`, shared with the HTTP/1.1 path's rules) so that
//! the requests of one read reach the backends together. `request` checks a
//! request head against RFC 9113 section 8 before anything is forwarded;
//! `recv` carries request bodies; `send` writes responses.

mod driver;
mod flow;
pub mod frame;
pub mod hpack;
mod huffman;
mod mailbox;
mod open;
mod recv;
pub mod request;
mod send;
mod streams;

pub use recv::RecvBody;
pub use request::Head;

use super::alarms::Alarms;
use super::http::{Conn, Target};
use bytes::BytesMut;
use driver::Driver;
use std::sync::Arc;
use std::time::Duration;

/// Concurrent streams per client connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 256;
/// A connection quiet this long lets go of the room its streams grew.
const QUIET_AFTER: Duration = Duration::from_secs(1);

/// Serves one client connection until it closes, or drains when
/// `conn.draining` fires. `read` holds what was already read from it (the
/// preface, when HTTP/1.1's server recognised it). The connection's state
/// is built before the future, which then holds it once (an `async fn`
/// would keep its arguments beside it: ~400 bytes more per connection).
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn serve<I>(io: I, conn: Conn, read: BytesMut) -> impl std::future::Future<Output = ()> + Send
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let idle_after = match &conn.target {
        Target::Service(judged) => conn.judge(judged).0.timeouts.idle,
        Target::Edge => crate::timeouts::Resolved::from(&schemas::Timeouts::default()).idle,
    };
    let draining = conn.draining.clone();
    let stop = conn.stop.clone();
    // The streams' response deadlines, on one timer this task drives.
    let alarms = Arc::new(Alarms::default());
    let driver = Driver::new(io, Arc::new(conn), read, Arc::clone(&alarms));
    async move {
        let mut driver = driver;
        // Set by `alarms` before it is first polled.
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        // Validation refuses a zero timeout; the floor keeps the wait
        // positive should one ever get past it (invariant 10).
        let idle_after = idle_after.max(Duration::from_millis(1));
        // Quiet is checked every `step` while the client talks; once it
        // has been quiet that long the connection lets go of what its
        // streams grew, and next looks when it would be idle: a quiet
        // connection is woken twice, not every second.
        let mut step = idle_after.min(QUIET_AFTER);
        let mut quiet_for = Duration::ZERO;
        let check = tokio::time::sleep(step);
        tokio::pin!(check);
        loop {
            tokio::select! {
                biased;
                () = std::future::poll_fn(|cx| driver.poll(cx)) => break,
                // A stream that notes an earlier deadline wakes this task.
                () = std::future::poll_fn(|cx| alarms.poll_timer(timer.as_mut(), cx)) => {}
                () = draining.cancelled(), if !driver.closing() => driver.go_away(),
                // Idle is judged by bytes read from the client: requests in
                // flight finish, only truly quiet connections close.
                () = &mut check, if !driver.closing() => {
                    quiet_for = if driver.take_seen() { Duration::ZERO } else { quiet_for + step };
                    if quiet_for >= idle_after {
                        driver.go_away();
                        continue;
                    }
                    step = if quiet_for >= QUIET_AFTER && driver.let_go() {
                        idle_after - quiet_for
                    } else {
                        idle_after.min(QUIET_AFTER)
                    };
                    check.as_mut().reset(tokio::time::Instant::now() + step);
                }
                () = stop.cancelled() => return,
            }
        }
        driver.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    fn task_size<F, Fut>(_: &F) -> usize
    where
        F: FnOnce(TcpStream, Conn, BytesMut) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// An idle HTTP/2 connection is its future and a few small heap
    /// pieces (HAProxy holds one in ~6.3 KB): this keeps the future from
    /// growing back. 1,368 bytes in debug builds now, the quiet check's
    /// timer inline (an interval kept it on the heap); 1,912 while `close`
    /// took the driver by value (a second copy in the future).
    #[test]
    fn an_idle_connection_is_small() {
        let task = task_size(&serve::<TcpStream>);
        let driver = std::mem::size_of::<Driver<TcpStream>>();
        eprintln!("HTTP/2 connection future: {task} bytes, its driver {driver}");
        assert!(
            task <= 1408,
            "an HTTP/2 connection's future is {task} bytes"
        );
    }
}
