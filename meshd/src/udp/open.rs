//! Opening a session at a client's first datagram: the verdict, the
//! `max_connections` slot, the backend and its connected upstream socket
//! (resolved in a task of its own when the backend is a host name).

use super::listen::{Port, Resolved};
use super::ready::Readiness;
use super::table::{udp_metrics, Session};
use crate::authz::Verdict;
use crate::metrics;
use crate::select::Tried;
use crate::snapshot::{Route, Upstream};
use nix::sys::socket::SockaddrStorage;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// At most one "denied" (or "limit reached") line per second per port.
const LOG_EVERY_MS: u64 = 1_000;

impl Port {
    /// Judges a new client and opens its session; false when it gets none.
    pub(super) fn open_session(&mut self, peer: SocketAddr, now: u64) -> bool {
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
        let id = self.table.next_id();
        let upstream = match &route.backends[backend].upstream {
            Upstream::Addr(a) => match connect(*a) {
                Ok(s) => Some(Readiness::new(Arc::new(s), id, &self.queue)),
                Err(e) => {
                    tracing::warn!(%peer, dst_app = %route.app, backend = %route.backends[backend].label, error = %e, "udp upstream socket failed");
                    route.failure(backend);
                    udp.dropped.increment(1);
                    return false;
                }
            },
            Upstream::Name(n) => {
                tokio::spawn(resolve(
                    id,
                    n.to_string(),
                    Arc::clone(&route),
                    backend,
                    self.resolved.clone(),
                ));
                None
            }
        };
        route.backend_metrics(backend).requests.increment(1);
        self.sweep_by(route.timeouts.udp_idle);
        self.table.insert(
            id,
            Session {
                peer,
                client: SockaddrStorage::from(peer),
                route,
                backend,
                upstream,
                last_ms: now,
                permit,
            },
        );
        true
    }

    /// A host name was resolved (or not) for session `id`.
    pub(super) fn resolved(&mut self, id: u64, socket: Option<UdpSocket>) {
        let queue = Arc::clone(&self.queue);
        match (self.table.get_mut(id), socket) {
            (Some(s), Some(socket)) => {
                s.upstream = Some(Readiness::new(Arc::new(socket), id, &queue));
            }
            (Some(_), None) => self.table.end(id),
            // The session ended meanwhile: the socket closes here.
            (None, _) => {}
        }
    }
}

/// Resolves a backend named by host name and connects a socket to it.
async fn resolve(
    id: u64,
    name: String,
    route: Arc<Route>,
    backend: usize,
    done: mpsc::UnboundedSender<Resolved>,
) {
    let found = tokio::time::timeout(route.timeouts.connect, tokio::net::lookup_host(&name)).await;
    let addr = match found {
        Ok(Ok(mut addrs)) => addrs.next(),
        _ => None,
    };
    let socket = addr.and_then(|a| connect(a).ok());
    if socket.is_none() {
        tracing::warn!(backend = name, dst_app = %route.app, "udp backend cannot be resolved");
        route.failure(backend);
    }
    let _ = done.send((id, socket));
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
