//! One UDP service port: its socket, its session table, and the one task
//! that drives both. A pass of that task reads client datagrams in batches
//! and forwards each on its session's connected upstream socket, reads the
//! replies of every session woken since the last pass, and sends all those
//! replies to their clients from the service port in one `sendmmsg`, so a
//! pass costs one send for the port rather than one per session. Sending
//! never waits: a datagram that finds a full socket buffer is dropped and
//! counted, as the network would.

use super::batch::{send_now, with_batch};
use super::names::Names;
use super::ready::ReadyQueue;
use super::session::{expires_at, is_idle, rejudge, LogLimit, Rejudged};
use super::table::{udp_metrics, Table, HELD_MAX};
use crate::metrics;
use crate::select::now_ms;
use crate::swap::Runtime;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Idle sessions are looked for at most this often, so that sessions whose
/// expiries are spread out do not each cost a sweep of the whole table.
const SWEEP_EVERY_MS: u64 = 100;
/// When no session is open, the sweep timer rests this far ahead.
const NO_SWEEP: Duration = Duration::from_secs(86_400);

/// A bound UDP service port; dropping it leaves the task running, `stop` ends it.
#[derive(Debug)]
pub struct Bound {
    /// Ends the port's task and every session of it.
    pub stop: CancellationToken,
}

/// A backend's host name looked up: the address to use, or why there is none.
pub(super) type Resolved = (schemas::Endpoint, Result<SocketAddr, String>);

/// Binds `addr` and starts its task; `reloads` carries the generation in force.
pub fn bind(
    addr: SocketAddr,
    runtime: Arc<Runtime>,
    reloads: watch::Receiver<u64>,
) -> std::io::Result<Bound> {
    let std_socket = std::net::UdpSocket::bind(addr)?;
    std_socket.set_nonblocking(true)?;
    let socket = UdpSocket::from_std(std_socket)?;
    let stop = CancellationToken::new();
    let (resolved_tx, resolved_rx) = mpsc::unbounded_channel();
    let table = Table::default();
    let open = table.open_count();
    runtime.with_report(|r| r.udp_sessions.insert(addr, open));
    let port = Port {
        socket,
        local: addr,
        runtime,
        table,
        queue: Arc::new(ReadyQueue::default()),
        woken: Vec::new(),
        resolved: resolved_tx,
        next_sweep: Instant::now() + NO_SWEEP,
        denied_log: LogLimit::default(),
        limit_log: LogLimit::default(),
        resolve_log: LogLimit::default(),
        names: Names::default(),
    };
    tokio::spawn(port.run(stop.clone(), reloads, resolved_rx));
    Ok(Bound { stop })
}

/// A port's state, owned by its task.
pub(super) struct Port {
    pub(super) socket: UdpSocket,
    pub(super) local: SocketAddr,
    pub(super) runtime: Arc<Runtime>,
    pub(super) table: Table,
    /// Sessions whose upstream socket woke since the last pass.
    pub(super) queue: Arc<ReadyQueue>,
    /// The ids taken from `queue` (kept to reuse its allocation).
    pub(super) woken: Vec<u64>,
    pub(super) resolved: mpsc::UnboundedSender<Resolved>,
    /// When to look for idle sessions next.
    pub(super) next_sweep: Instant,
    pub(super) denied_log: LogLimit,
    pub(super) limit_log: LogLimit,
    pub(super) resolve_log: LogLimit,
    /// Backends' host names: lookups in flight and recent answers.
    pub(super) names: Names,
}

impl Port {
    async fn run(
        mut self,
        stop: CancellationToken,
        mut reloads: watch::Receiver<u64>,
        mut resolved: mpsc::UnboundedReceiver<Resolved>,
    ) {
        let queue = Arc::clone(&self.queue);
        let sweep = tokio::time::sleep_until(self.next_sweep);
        tokio::pin!(sweep);
        loop {
            // A pass can find more to do at once (a full batch, a session put
            // back on the queue, a wake-up tokio's budget turned into a
            // retry): once the budget is spent, give the thread back before
            // the next pass rather than spin.
            tokio::task::consume_budget().await;
            tokio::select! {
                () = stop.cancelled() => break,
                r = self.socket.readable() => match r {
                    Ok(()) => self.read_clients(),
                    Err(e) => {
                        tracing::warn!(addr = %self.local, error = %e, "udp receive failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = queue.woken() => {}
                () = &mut sweep => self.sweep(),
                Some((name, answer)) = resolved.recv() => self.resolved(name, answer),
                Ok(()) = reloads.changed() => self.rejudge_all(),
            }
            // Whatever woke the task, replies that are ready go out now.
            self.relay_replies();
            if sweep.deadline() != self.next_sweep {
                sweep.as_mut().reset(self.next_sweep);
            }
        }
        self.table.end_all();
        // Unless a new socket has taken the address meanwhile.
        let open = self.table.open_count();
        self.runtime.with_report(|r| {
            if r.udp_sessions
                .get(&self.local)
                .is_some_and(|c| Arc::ptr_eq(c, &open))
            {
                r.udp_sessions.remove(&self.local);
            }
        });
    }

    /// Takes one batch of client datagrams off the socket and forwards it.
    fn read_clients(&mut self) {
        with_batch(|batch| {
            batch.clear();
            match batch.recv_ready(&self.socket, 0, None) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(addr = %self.local, error = %e, "udp receive failed");
                    return;
                }
            }
            let now = now_ms();
            for (payload, peer) in batch.datagrams() {
                self.forward(payload, peer, now);
            }
        });
    }

    /// Carries one client datagram: on its session, or on a new one.
    fn forward(&mut self, payload: &[u8], peer: SocketAddr, now: u64) {
        if self.table.by_peer(&peer).is_none() && !self.open_session(peer, now) {
            return;
        }
        let Some((id, s)) = self.table.by_peer(&peer) else {
            return;
        };
        let udp = udp_metrics(&s.route);
        s.last_ms = now;
        let Some(upstream) = &s.upstream else {
            // A backend named by host name is still being resolved.
            if s.held.len() < HELD_MAX {
                s.held.push(payload.into());
            } else {
                udp.dropped.increment(1);
            }
            return;
        };
        match send_now(upstream.socket().as_raw_fd(), payload) {
            Ok(_) => {
                udp.datagrams_up.increment(1);
                udp.bytes_up.increment(payload.len() as u64);
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                // The backend's port answered ICMP port-unreachable to an earlier datagram.
                udp.dropped.increment(1);
                self.unreachable(id);
            }
            Err(_) => udp.dropped.increment(1),
        }
    }

    /// The backend of session `id` cannot be reached (ICMP port-unreachable
    /// or another receive error): a failure for passive ejection, and the
    /// end of the session.
    pub(super) fn unreachable(&mut self, id: u64) {
        if let Some(s) = self.table.get(id) {
            tracing::debug!(client = %s.peer, dst_app = %s.route.app, backend = %s.route.backends[s.backend].label, "udp backend unreachable; session ended");
            s.route.failure(s.backend);
        }
        self.table.end(id);
    }

    /// Ends the sessions quiet for their route's `udp_idle`, and sets when
    /// to look again: at the next expiry, but not sooner than `SWEEP_EVERY_MS`.
    fn sweep(&mut self) {
        let now = now_ms();
        let mut idle = Vec::new();
        let mut next: Option<u64> = None;
        for (id, s) in self.table.iter_mut() {
            let limit = s.route.timeouts.udp_idle;
            if is_idle(s.last_ms, now, limit) {
                tracing::debug!(client = %s.peer, dst_app = %s.route.app, "udp session idle; ended");
                idle.push(id);
            } else {
                let at = expires_at(s.last_ms, limit);
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        for id in idle {
            self.table.end(id);
        }
        self.next_sweep = match next {
            Some(at) => {
                let wait = at.saturating_sub(now).max(SWEEP_EVERY_MS);
                Instant::now() + Duration::from_millis(wait)
            }
            None => Instant::now() + NO_SWEEP,
        };
    }

    /// Makes sure the sweep looks at a session opened now with `idle` in time.
    pub(super) fn sweep_by(&mut self, idle: Duration) {
        self.next_sweep = self.next_sweep.min(Instant::now() + idle);
    }

    /// A reload: every open session is judged by the policy now in force.
    fn rejudge_all(&mut self) {
        let Some(snapshot) = self.runtime.load() else {
            return;
        };
        let mut revoked = 0;
        let mut ended = Vec::new();
        for (id, s) in self.table.iter_mut() {
            let state = &s.route.backends[s.backend].state;
            match rejudge(&snapshot, self.local, s.peer, state) {
                Rejudged::Keep { route, backend } => {
                    s.route = route;
                    s.backend = backend;
                }
                Rejudged::Revoked => {
                    tracing::info!(peer = %s.peer, dst_app = %s.route.app, "reload denies an open udp session's source; ended");
                    revoked += 1;
                    ended.push(id);
                }
                Rejudged::BackendGone => {
                    tracing::debug!(peer = %s.peer, dst_app = %s.route.app, "udp session's backend removed; ended");
                    ended.push(id);
                }
                // The port itself is being closed by `Listeners`.
                Rejudged::ServiceGone => {}
            }
        }
        for id in ended {
            self.table.end(id);
        }
        if revoked > 0 {
            ::metrics::counter!(metrics::REVOKED).increment(revoked);
        }
        // A route's idle timeout may have shortened.
        self.next_sweep = self.next_sweep.min(Instant::now());
    }
}
