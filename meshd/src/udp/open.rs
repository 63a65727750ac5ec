//! Opening a session at a client's first datagram: the verdict, the
//! `max_connections` slot, the backend and its connected upstream socket
//! (when the backend is a host name: looked up in a task of its own, one
//! lookup shared by the sessions that wait for it, their datagrams held
//! meanwhile; see `names`).

use super::batch::send_now;
use super::listen::{Port, Resolved};
use super::names::Lookup;
use super::ready::Readiness;
use super::table::{udp_metrics, Session};
use crate::authz::Verdict;
use crate::metrics;
use crate::select::{now_ms, Tried};
use crate::snapshot::{Route, Upstream};
use nix::sys::socket::SockaddrStorage;
use schemas::Endpoint;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
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
        let address = match &route.backends[backend].upstream {
            Upstream::Addr(a) => Some(*a),
            Upstream::Name(n) => match self.names.lookup(n, id, now) {
                Lookup::Known(a) => Some(a),
                Lookup::Wait => None,
                Lookup::Start => {
                    let timeout = route.timeouts.connect;
                    tokio::spawn(resolve(n.clone(), timeout, self.resolved.clone()));
                    None
                }
                Lookup::Failed(why) => {
                    // Failed a moment ago: no session, no new lookup.
                    self.name_failed(peer, &route, backend, &why, now);
                    udp.dropped.increment(1);
                    return false;
                }
            },
        };
        let upstream = match address.map(connect) {
            Some(Ok(s)) => Some(Readiness::new(Arc::new(s), id, &self.queue)),
            Some(Err(e)) => {
                tracing::warn!(%peer, dst_app = %route.app, backend = %route.backends[backend].label, error = %e, "udp upstream socket failed");
                route.failure(backend);
                udp.dropped.increment(1);
                return false;
            }
            // A host name is being resolved: the session's datagrams wait.
            None => None,
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
                held: Vec::new(),
                last_ms: now,
                permit,
            },
        );
        true
    }

    /// The lookup of `name` ended: each session waiting for it gets a
    /// socket connected to the address and sends its held datagrams; or,
    /// when the name did not resolve, ends (held datagrams counted as
    /// dropped, a failure of its backend).
    pub(super) fn resolved(&mut self, name: Endpoint, answer: Result<SocketAddr, String>) {
        let now = now_ms();
        let waiting = self.names.answered(&name, answer.clone(), now);
        let queue = Arc::clone(&self.queue);
        for id in waiting {
            let Some(s) = self.table.get_mut(id) else {
                // The session ended meanwhile.
                continue;
            };
            let socket = answer
                .clone()
                .and_then(|a| connect(a).map_err(|e| format!("{a}: {e}")));
            match socket {
                Ok(socket) => {
                    let udp = udp_metrics(&s.route);
                    for d in std::mem::take(&mut s.held) {
                        match send_now(socket.as_raw_fd(), &d) {
                            Ok(_) => {
                                udp.datagrams_up.increment(1);
                                udp.bytes_up.increment(d.len() as u64);
                            }
                            Err(_) => udp.dropped.increment(1),
                        }
                    }
                    s.upstream = Some(Readiness::new(Arc::new(socket), id, &queue));
                }
                Err(why) => {
                    let (peer, route, backend) = (s.peer, Arc::clone(&s.route), s.backend);
                    self.name_failed(peer, &route, backend, &why, now);
                    self.table.end(id);
                }
            }
        }
    }

    /// A session of `peer` cannot reach `backend`, named by a host name
    /// that does not resolve: a failure for passive ejection, and a warning
    /// at most once a second.
    fn name_failed(
        &mut self,
        peer: SocketAddr,
        route: &Route,
        backend: usize,
        why: &str,
        now: u64,
    ) {
        route.failure(backend);
        if let Some(held) = self.resolve_log.allow(now, LOG_EVERY_MS) {
            let b = &route.backends[backend];
            tracing::warn!(client = %peer, dst_app = %route.app, backend = %b.label, task = %b.task, error = %why, held_back = held, "udp backend's host name cannot be resolved; session ended, its datagrams dropped");
        }
    }
}

/// Looks a backend's host name up, within `timeout`, for the port's task.
async fn resolve(name: Endpoint, timeout: Duration, done: mpsc::UnboundedSender<Resolved>) {
    let lookup = tokio::net::lookup_host((name.host.as_str(), name.port));
    let answer = match tokio::time::timeout(timeout, lookup).await {
        Err(_) => Err(format!("no answer from the resolver within {timeout:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(addrs)) => pick_address(addrs).ok_or_else(|| "the name has no address".to_owned()),
    };
    let _ = done.send((name, answer));
}

/// The address a session's datagrams go to, of those a name resolves to:
/// the first IPv4 one, else the first. A datagram gets no handshake to try
/// the next address with, and a service on a Mesos agent listens on its
/// IPv4 address; configsrv prefers a task's IPv4 address the same way.
fn pick_address(addrs: impl IntoIterator<Item = SocketAddr>) -> Option<SocketAddr> {
    let mut first = None;
    for a in addrs {
        if a.is_ipv4() {
            return Some(a);
        }
        first = first.or(Some(a));
    }
    first
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn a_name_with_both_families_is_reached_on_its_first_ipv4_address() {
        let both = addrs(&["[::1]:53", "127.0.0.1:53", "127.0.0.2:53"]);
        assert_eq!(pick_address(both), Some("127.0.0.1:53".parse().unwrap()));
        let v6 = addrs(&["[fd00::2]:53", "[::1]:53"]);
        assert_eq!(pick_address(v6), Some("[fd00::2]:53".parse().unwrap()));
        assert_eq!(pick_address(Vec::new()), None);
    }
}
