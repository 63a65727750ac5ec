//! The reply half of a port's pass: read every woken session's upstream
//! socket into the thread's batch, then send the whole batch, the replies of
//! all those sessions, to their clients with one `sendmmsg` on the service
//! port (each datagram carries its own destination).

use super::batch::{with_batch, Batch};
use super::listen::Port;
use super::table::udp_metrics;
use crate::select::now_ms;
use std::os::fd::AsRawFd;

/// Full receives of one session per pass before the others get their turn:
/// a backend flooding its session cannot hold the port's task.
const FULL_READS_PER_PASS: usize = 4;

impl Port {
    /// Relays the replies of the sessions woken since the last pass.
    pub(super) fn relay_replies(&mut self) {
        let mut woken = std::mem::take(&mut self.woken);
        self.queue.take(&mut woken);
        if !woken.is_empty() {
            let now = now_ms();
            with_batch(|batch| {
                batch.clear();
                for &id in &woken {
                    self.read_replies(id, now, batch);
                }
                self.send_replies(batch);
            });
        }
        self.woken = woken;
    }

    /// Reads what session `id`'s backend sent until its socket is drained
    /// (sending the batch whenever it fills), then leaves its waker
    /// registered for the next datagram.
    fn read_replies(&mut self, id: u64, now: u64, batch: &mut Batch) {
        let mut full = 0;
        loop {
            let Some(up) = self.table.get_mut(id).and_then(|s| s.upstream.as_mut()) else {
                return;
            };
            match up.poll() {
                None => return,
                Some(Ok(ready)) if !ready.is_error() => {}
                // ICMP port-unreachable comes as a socket error, not as data.
                Some(_) => return self.unreachable(id),
            }
            loop {
                if batch.room() == 0 {
                    self.send_replies(batch);
                }
                let room = batch.room();
                let Some(s) = self.table.get_mut(id) else {
                    return;
                };
                let Some(up) = &s.upstream else {
                    return;
                };
                match batch.recv_ready(up.socket(), id, Some(&s.client)) {
                    Ok(got) => {
                        if got > 0 {
                            s.last_ms = now;
                        }
                        if got < room {
                            // Drained: readiness is cleared, the next poll registers the waker.
                            break;
                        }
                        full += 1;
                        if full == FULL_READS_PER_PASS {
                            up.requeue();
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(client = %s.peer, error = %e, "udp upstream receive failed");
                        return self.unreachable(id);
                    }
                }
            }
        }
    }

    /// Sends the batch's replies from the service port and counts them per session.
    fn send_replies(&self, batch: &mut Batch) {
        let table = &self.table;
        batch.send(self.socket.as_raw_fd(), |o| {
            let Some(s) = table.get(o.owner) else {
                return;
            };
            let udp = udp_metrics(&s.route);
            if o.sent {
                udp.datagrams_down.increment(1);
                udp.bytes_down.increment(o.bytes);
            } else {
                udp.dropped.increment(1);
            }
            // The backend answered: it is alive, whatever became of the reply.
            s.route.success(s.backend);
        });
    }
}
