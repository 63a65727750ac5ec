//! The session table's decisions, apart from the sockets: what a reload
//! does to an open session (invariant 8: the policy in force judges it;
//! it ends when its backend is gone) and when a quiet session expires.

use crate::authz::Verdict;
use crate::backend::BackendState;
use crate::snapshot::{Route, Snapshot};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What a reload means for one open session.
#[derive(Debug)]
pub enum Rejudged {
    /// Still allowed, backend still there: carry on with this route and backend index.
    Keep {
        /// The service's route in the new snapshot.
        route: Arc<Route>,
        /// The session's backend in it.
        backend: usize,
    },
    /// The new policy denies the source: end the session (revocation).
    Revoked,
    /// The session's backend is no longer in the service: end the session.
    BackendGone,
    /// The service is gone from this node: its socket closes with the session.
    ServiceGone,
}

/// Judges a session from `peer` to the service at `listen`, whose backend
/// has `state`, by `snapshot`. Backend state is carried across reloads by
/// (task, address), so the same `Arc` means the same backend.
pub fn rejudge(
    snapshot: &Snapshot,
    listen: SocketAddr,
    peer: SocketAddr,
    state: &Arc<BackendState>,
) -> Rejudged {
    let Some(route) = snapshot.udp_routes.get(&listen) else {
        return Rejudged::ServiceGone;
    };
    if route.authorize(snapshot, peer.ip()).0.verdict == Verdict::Deny {
        return Rejudged::Revoked;
    }
    match route
        .backends
        .iter()
        .position(|b| Arc::ptr_eq(&b.state, state))
    {
        Some(backend) => Rejudged::Keep {
            route: Arc::clone(route),
            backend,
        },
        None => Rejudged::BackendGone,
    }
}

/// Whether a session last active at `last_ms` has been quiet for `idle` at `now_ms`.
pub fn is_idle(last_ms: u64, now_ms: u64, idle: Duration) -> bool {
    now_ms.saturating_sub(last_ms) >= idle.as_millis() as u64
}

/// When a session last active at `last_ms` may next expire (milliseconds).
pub fn expires_at(last_ms: u64, idle: Duration) -> u64 {
    last_ms.saturating_add(idle.as_millis() as u64)
}

/// Lets one log line through per `every_ms`, counting the ones held back,
/// so a flood of denied datagrams cannot flood the log.
#[derive(Debug, Default)]
pub struct LogLimit {
    next_ms: u64,
    held: u64,
}

impl LogLimit {
    /// `Some(held back since the last line)` when a line may be written at `now_ms`.
    pub fn allow(&mut self, now_ms: u64, every_ms: u64) -> Option<u64> {
        if now_ms >= self.next_ms {
            self.next_ms = now_ms.saturating_add(every_ms);
            Some(std::mem::take(&mut self.held))
        } else {
            self.held += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(generation: u64, allow: &str, backends: &str) -> Snapshot {
        let text = format!(
            "apiVersion: palisade/v1
kind: NodeConfig
node: n1
address: 127.0.0.2
generation: {generation}
revision: r
services:
  - app: /dns
    port: 53
    protocol: udp
    access:
      default_action: deny
      allow:
{allow}
    backends:
{backends}
  - app: /dns
    port: 53
    access:
      default_action: allow
identities:
  - {{address: 127.0.2.1, app: /client, tasks: [c.1]}}
  - {{address: 127.0.3.1, app: /other, tasks: [o.1]}}
"
        );
        let c = schemas::parse_node_config("n1.yaml", &text).unwrap();
        Snapshot::compile(c, None, None)
    }

    const BOTH: &str = "      - {address: 127.0.1.1:53, task: dns.1}\n      - {address: 127.0.1.2:53, task: dns.2}\n";
    const CLIENT: &str = "        - from: /client\n";
    const KEY: &str = "127.0.0.2:53";

    fn after(a: &Snapshot, b: Snapshot) -> Snapshot {
        Snapshot::compile(b.config, None, Some(a))
    }

    #[test]
    fn a_udp_and_a_tcp_service_share_a_port_in_separate_tables() {
        let s = config(1, CLIENT, BOTH);
        let key: SocketAddr = KEY.parse().unwrap();
        assert_eq!(s.udp_routes[&key].protocol, schemas::Protocol::Udp);
        assert_eq!(s.routes[&key].protocol, schemas::Protocol::Tcp);
        assert!(!Arc::ptr_eq(
            &s.udp_routes[&key].carried,
            &s.routes[&key].carried
        ));
    }

    #[test]
    fn a_reload_keeps_an_allowed_session_on_its_backend_wherever_it_moved() {
        let a = config(1, CLIENT, BOTH);
        let key: SocketAddr = KEY.parse().unwrap();
        let peer: SocketAddr = "127.0.2.1:5000".parse().unwrap();
        let state = Arc::clone(&a.udp_routes[&key].backends[1].state);
        // dns.1 goes away: dns.2 is now backend 0.
        let b = after(
            &a,
            config(2, CLIENT, "      - {address: 127.0.1.2:53, task: dns.2}\n"),
        );
        match rejudge(&b, key, peer, &state) {
            Rejudged::Keep { route, backend } => {
                assert_eq!(backend, 0);
                assert_eq!(route.backends[0].label, "127.0.1.2:53");
            }
            other => panic!("{other:?}"),
        }
        let gone = Arc::clone(&a.udp_routes[&key].backends[0].state);
        assert!(matches!(
            rejudge(&b, key, peer, &gone),
            Rejudged::BackendGone
        ));
    }

    #[test]
    fn a_reload_that_denies_the_source_revokes_the_session() {
        let a = config(1, CLIENT, BOTH);
        let key: SocketAddr = KEY.parse().unwrap();
        let peer: SocketAddr = "127.0.2.1:5000".parse().unwrap();
        let state = Arc::clone(&a.udp_routes[&key].backends[0].state);
        let b = after(&a, config(2, "        - from: /other\n", BOTH));
        assert!(matches!(rejudge(&b, key, peer, &state), Rejudged::Revoked));
        let elsewhere: SocketAddr = "127.0.0.2:54".parse().unwrap();
        assert!(matches!(
            rejudge(&b, elsewhere, peer, &state),
            Rejudged::ServiceGone
        ));
    }

    #[test]
    fn idle_is_measured_from_the_last_datagram_either_way() {
        let idle = Duration::from_secs(30);
        assert!(!is_idle(1_000, 30_999, idle));
        assert!(is_idle(1_000, 31_000, idle));
        assert!(
            !is_idle(5_000, 1_000, idle),
            "a clock read before the last datagram"
        );
        assert_eq!(expires_at(1_000, idle), 31_000);
        assert_eq!(expires_at(u64::MAX, idle), u64::MAX);
    }

    #[test]
    fn the_log_limit_lets_one_line_a_period_and_counts_the_rest() {
        let mut l = LogLimit::default();
        assert_eq!(l.allow(0, 1_000), Some(0));
        assert_eq!(l.allow(10, 1_000), None);
        assert_eq!(l.allow(999, 1_000), None);
        assert_eq!(l.allow(1_000, 1_000), Some(2));
        assert_eq!(l.allow(1_001, 1_000), None);
    }
}
