//! One UDP service port: its socket, its session table and its sessions'
//! tasks. The port's task reads client datagrams in batches and forwards
//! each on its session's connected upstream socket; a session's task reads
//! the backend's replies and sends them to the client from the service
//! port. Sending never waits: a datagram that finds a full socket buffer
//! is dropped and counted, as the network would.

use super::batch::{send_now, with_batch};
use super::session::{expires_at, is_idle, rejudge, LogLimit, Rejudged};
use crate::authz::Verdict;
use crate::metrics::{self, UdpMetrics};
use crate::select::{now_ms, Tried};
use crate::snapshot::{Route, Upstream};
use crate::swap::Runtime;
use nix::sys::socket::{recv, MsgFlags, SockaddrStorage};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

/// At most one "denied" (or "limit reached") line per second per port.
const LOG_EVERY_MS: u64 = 1_000;

/// A bound UDP service port; dropping it leaves the task running, `stop` ends it.
#[derive(Debug)]
pub struct Bound {
    /// Ends the port's task and every session of it.
    pub stop: CancellationToken,
}

/// State shared by a session's entry in the table and its task.
#[derive(Debug)]
struct Shared {
    /// The connected upstream socket, set once the backend's address is known.
    upstream: OnceLock<UdpSocket>,
    /// Last datagram either way, on `select::now_ms`'s clock.
    last_ms: AtomicU64,
    /// Ends the session.
    stop: CancellationToken,
}

/// One entry of the session table.
struct Session {
    shared: Arc<Shared>,
    route: Arc<Route>,
    backend: usize,
    id: u64,
}

/// Binds `addr` and starts its task; `reloads` carries the generation in force.
pub fn bind(
    addr: SocketAddr,
    runtime: Arc<Runtime>,
    reloads: watch::Receiver<u64>,
) -> std::io::Result<Bound> {
    let std_socket = std::net::UdpSocket::bind(addr)?;
    std_socket.set_nonblocking(true)?;
    let socket = Arc::new(UdpSocket::from_std(std_socket)?);
    let stop = CancellationToken::new();
    let port = Port {
        socket,
        local: addr,
        runtime,
        sessions: HashMap::new(),
        next_id: 0,
        stop: stop.clone(),
        denied_log: LogLimit::default(),
        limit_log: LogLimit::default(),
    };
    tokio::spawn(port.run(reloads));
    Ok(Bound { stop })
}

struct Port {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    runtime: Arc<Runtime>,
    sessions: HashMap<SocketAddr, Session>,
    next_id: u64,
    stop: CancellationToken,
    denied_log: LogLimit,
    limit_log: LogLimit,
}

impl Port {
    async fn run(mut self, mut reloads: watch::Receiver<u64>) {
        let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<(SocketAddr, u64)>();
        loop {
            tokio::select! {
                () = self.stop.cancelled() => break,
                r = self.socket.readable() => match r {
                    Ok(()) => self.read_batch(&ended_tx),
                    Err(e) => {
                        tracing::warn!(addr = %self.local, error = %e, "udp receive failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some((peer, id)) = ended_rx.recv() => {
                    if self.sessions.get(&peer).is_some_and(|s| s.id == id) {
                        self.sessions.remove(&peer);
                    }
                }
                Ok(()) = reloads.changed() => self.rejudge_all(),
            }
        }
        for s in self.sessions.values() {
            s.shared.stop.cancel();
        }
    }

    /// Takes one batch off the socket and forwards it.
    fn read_batch(&mut self, ended: &mpsc::UnboundedSender<(SocketAddr, u64)>) {
        let socket = Arc::clone(&self.socket);
        with_batch(|batch| {
            match batch.recv_ready(&socket) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(addr = %self.local, error = %e, "udp receive failed");
                    return;
                }
            }
            let now = now_ms();
            for (payload, peer) in batch.datagrams() {
                self.forward(payload, peer, now, ended);
            }
        });
    }

    /// Carries one client datagram: on its session, or on a new one.
    fn forward(
        &mut self,
        payload: &[u8],
        peer: SocketAddr,
        now: u64,
        ended: &mpsc::UnboundedSender<(SocketAddr, u64)>,
    ) {
        let open = self
            .sessions
            .get(&peer)
            .is_some_and(|s| !s.shared.stop.is_cancelled());
        if !open && !self.open_session(peer, now, ended) {
            return;
        }
        let Some(s) = self.sessions.get(&peer) else {
            return;
        };
        let udp = udp_metrics(&s.route);
        let Some(upstream) = s.shared.upstream.get() else {
            // A backend named by host name is still being resolved.
            udp.dropped.increment(1);
            return;
        };
        s.shared.last_ms.store(now, Ordering::Relaxed);
        match send_now(upstream.as_raw_fd(), payload) {
            Ok(_) => {
                udp.datagrams_up.increment(1);
                udp.bytes_up.increment(payload.len() as u64);
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                // The backend's port answered ICMP port-unreachable to an earlier datagram.
                s.route.failure(s.backend);
                s.shared.stop.cancel();
                udp.dropped.increment(1);
            }
            Err(_) => udp.dropped.increment(1),
        }
    }

    /// Judges a new client and opens its session; false when it gets none.
    fn open_session(
        &mut self,
        peer: SocketAddr,
        now: u64,
        ended: &mpsc::UnboundedSender<(SocketAddr, u64)>,
    ) -> bool {
        let Some(snapshot) = self.runtime.load() else {
            return false;
        };
        let Some(route) = snapshot.udp_routes.get(&self.local).cloned() else {
            return false;
        };
        let (decision, counter) = route.authorize(&snapshot, peer.ip());
        // Denied sources hold nothing, so each of their datagrams is judged
        // (and counted) anew: a flood of spoofed sources cannot fill the table.
        counter.increment(1);
        match decision.verdict {
            Verdict::Deny => {
                if let Some(held) = self.denied_log.allow(now, LOG_EVERY_MS) {
                    let src = source_app(&snapshot, peer.ip());
                    tracing::info!(%peer, src_app = src, dst_app = %route.app, rule = %decision.decider, held_back = held, "udp datagram denied; dropped");
                }
                return false;
            }
            Verdict::WouldDeny => {
                let src = source_app(&snapshot, peer.ip());
                tracing::info!(%peer, src_app = src, dst_app = %route.app, rule = %decision.decider, "audit: udp session would be denied");
            }
            Verdict::Allow => {}
        }
        drop(snapshot);
        let udp = udp_metrics(&route);
        let permit = match &route.carried.limit {
            Some((limit, sem)) => match Arc::clone(sem).try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    if let Some(held) = self.limit_log.allow(now, LOG_EVERY_MS) {
                        tracing::warn!(%peer, dst_app = %route.app, limit, held_back = held, "max_connections reached; udp datagram dropped");
                    }
                    udp.dropped.increment(1);
                    return false;
                }
            },
            None => None,
        };
        let Some(backend) = route.choose(peer.ip(), &Tried::default()) else {
            route.metrics().no_backend.increment(1);
            udp.dropped.increment(1);
            return false;
        };
        let shared = Arc::new(Shared {
            upstream: OnceLock::new(),
            last_ms: AtomicU64::new(now),
            stop: self.stop.child_token(),
        });
        let target = match &route.backends[backend].upstream {
            Upstream::Addr(a) => match connect(*a) {
                Ok(s) => {
                    let _ = shared.upstream.set(s);
                    None
                }
                Err(e) => {
                    tracing::warn!(%peer, dst_app = %route.app, backend = %route.backends[backend].label, error = %e, "udp upstream socket failed");
                    route.failure(backend);
                    udp.dropped.increment(1);
                    return false;
                }
            },
            Upstream::Name(n) => Some(n.to_string()),
        };
        route.backend_metrics(backend).requests.increment(1);
        udp.sessions.increment(1.0);
        self.next_id += 1;
        let id = self.next_id;
        let task = SessionTask {
            shared: Arc::clone(&shared),
            service: Arc::clone(&self.socket),
            client: peer,
            client_addr: SockaddrStorage::from(peer),
            route: Arc::clone(&route),
            backend,
            ended: ended.clone(),
            id,
            _permit: permit,
        };
        tokio::spawn(task.run(target));
        self.sessions.insert(
            peer,
            Session {
                shared,
                route,
                backend,
                id,
            },
        );
        true
    }

    /// A reload: every open session is judged by the policy now in force.
    fn rejudge_all(&mut self) {
        let Some(snapshot) = self.runtime.load() else {
            return;
        };
        let mut revoked = 0;
        for (peer, s) in &mut self.sessions {
            let state = &s.route.backends[s.backend].state;
            match rejudge(&snapshot, self.local, *peer, state) {
                Rejudged::Keep { route, backend } => {
                    s.route = route;
                    s.backend = backend;
                }
                Rejudged::Revoked => {
                    tracing::info!(%peer, dst_app = %s.route.app, "reload denies an open udp session's source; ended");
                    if !s.shared.stop.is_cancelled() {
                        revoked += 1;
                    }
                    s.shared.stop.cancel();
                }
                Rejudged::BackendGone => {
                    tracing::debug!(%peer, dst_app = %s.route.app, "udp session's backend removed; ended");
                    s.shared.stop.cancel();
                }
                // The port itself is being closed by `Listeners`.
                Rejudged::ServiceGone => {}
            }
        }
        if revoked > 0 {
            ::metrics::counter!(metrics::REVOKED).increment(revoked);
        }
    }
}

/// The UDP handles of a route (made at compile time for UDP services).
fn udp_metrics(route: &Route) -> &UdpMetrics {
    route
        .carried
        .udp
        .get_or_init(|| UdpMetrics::new(route.app.as_str()))
}

fn source_app(snapshot: &crate::snapshot::Snapshot, ip: IpAddr) -> &str {
    snapshot
        .identities
        .lookup(ip)
        .map_or(metrics::UNKNOWN_SOURCE, |i| {
            snapshot.config.identities[i].app.as_str()
        })
}

/// A fresh upstream socket connected to `to`: the kernel then delivers only
/// that backend's datagrams to it, and its ICMP errors as `ECONNREFUSED`.
fn connect(to: SocketAddr) -> std::io::Result<UdpSocket> {
    let any = match to {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let s = std::net::UdpSocket::bind(SocketAddr::new(any, 0))?;
    s.connect(to)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

/// The task of one session: replies back to the client, idle expiry.
struct SessionTask {
    shared: Arc<Shared>,
    service: Arc<UdpSocket>,
    client: SocketAddr,
    /// `client` as the kernel takes it, converted once for every reply.
    client_addr: SockaddrStorage,
    route: Arc<Route>,
    backend: usize,
    ended: mpsc::UnboundedSender<(SocketAddr, u64)>,
    id: u64,
    /// The session's slot of `max_connections`, given back when it ends.
    _permit: Option<OwnedSemaphorePermit>,
}

impl SessionTask {
    async fn run(self, name: Option<String>) {
        if let Some(name) = name {
            self.resolve(&name).await;
        }
        if let Some(upstream) = self.shared.upstream.get() {
            self.carry(upstream).await;
        }
        self.shared.stop.cancel();
        udp_metrics(&self.route).sessions.decrement(1.0);
        let _ = self.ended.send((self.client, self.id));
    }

    /// Connects to a backend named by host name.
    async fn resolve(&self, name: &str) {
        let found =
            tokio::time::timeout(self.route.timeouts.connect, tokio::net::lookup_host(name)).await;
        let addr = match found {
            Ok(Ok(mut addrs)) => addrs.next(),
            _ => None,
        };
        match addr.map(connect) {
            Some(Ok(s)) => {
                let _ = self.shared.upstream.set(s);
            }
            _ => {
                tracing::warn!(backend = name, dst_app = %self.route.app, "udp backend cannot be resolved");
                self.route.failure(self.backend);
            }
        }
    }

    /// Sends the backend's replies to the client until the session ends.
    async fn carry(&self, upstream: &UdpSocket) {
        let idle = self.route.timeouts.udp_idle;
        let udp = udp_metrics(&self.route);
        // One timer for the session's life, moved only when it fires early.
        let expiry = tokio::time::sleep(idle);
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                () = self.shared.stop.cancelled() => return,
                () = &mut expiry => {
                    let last = self.shared.last_ms.load(Ordering::Relaxed);
                    let now = now_ms();
                    if is_idle(last, now, idle) {
                        tracing::debug!(client = %self.client, dst_app = %self.route.app, "udp session idle; ended");
                        return;
                    }
                    let left = expires_at(last, idle).saturating_sub(now);
                    expiry.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(left));
                }
                // ERROR too: ICMP port-unreachable arrives as a socket error, not as data.
                r = upstream.ready(Interest::READABLE | Interest::ERROR) => match r {
                    Ok(ready) if ready.is_error() => {
                        self.refused(upstream);
                        return;
                    }
                    Ok(_) => {
                        if !self.relay(upstream, udp) {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        }
    }

    /// The backend answered ICMP port-unreachable: a failure for passive
    /// ejection, and the end of the session. Reads the pending socket error
    /// (tokio's `try_recv` would not try while the socket is not readable).
    fn refused(&self, upstream: &UdpSocket) {
        let mut byte = [0u8; 1];
        let _ = recv(upstream.as_raw_fd(), &mut byte, MsgFlags::MSG_DONTWAIT);
        tracing::debug!(client = %self.client, dst_app = %self.route.app, backend = %self.route.backends[self.backend].label, "udp backend port unreachable; session ended");
        self.route.failure(self.backend);
    }

    /// Sends what the backend has queued (one batch) to the client; false
    /// when the session must end (the backend refused: ICMP port-unreachable).
    fn relay(&self, upstream: &UdpSocket, udp: &UdpMetrics) -> bool {
        with_batch(|batch| {
            match batch.recv_ready(upstream) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    self.refused(upstream);
                    return false;
                }
                Err(e) => {
                    tracing::debug!(client = %self.client, error = %e, "udp upstream receive failed");
                    return true;
                }
            }
            self.shared.last_ms.store(now_ms(), Ordering::Relaxed);
            let sent = batch.send_all_to(self.service.as_raw_fd(), &self.client_addr);
            udp.datagrams_down.increment(sent.datagrams);
            udp.bytes_down.increment(sent.bytes);
            if sent.unsent > 0 {
                udp.dropped.increment(sent.unsent);
            }
            for _ in 0..sent.datagrams + sent.unsent {
                self.route.success(self.backend);
            }
            true
        })
    }
}
