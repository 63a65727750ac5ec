//! Reload step 3: a validated NodeConfig becomes an immutable `Snapshot`, the
//! routing table every connection reads. Everything the connection path
//! needs is computed here: verdicts per known source, pick orders, metric
//! handles. No I/O.

use crate::authz::{decide, Decision, Verdict};
use crate::balance::PickOrder;
use crate::identity::IdentityTable;
use crate::metrics::{verdict_counter, ServiceMetrics, UNKNOWN_SOURCE};
use metrics::Counter;
use schemas::{Endpoint, Generation, Health, NodeConfig, Revision};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::sync::OnceLock;

/// The routing table of one generation.
#[derive(Debug)]
pub struct Snapshot {
    /// The config it was built from, for `/status`.
    pub config: NodeConfig,
    /// Where services listen: the config's address or `--bind`.
    pub bind: IpAddr,
    /// Service routes by listen address.
    pub routes: HashMap<SocketAddr, Arc<Route>>,
    /// Peer address -> identity index.
    pub identities: IdentityTable,
}

/// State that outlives a swap, keyed by (app, port): the round-robin cursor.
#[derive(Debug, Default)]
pub struct Carried {
    /// Next pick.
    pub cursor: AtomicUsize,
}

/// One service as the connection path sees it.
#[derive(Debug)]
pub struct Route {
    /// Index into `config.services`.
    pub service: usize,
    /// Destination app, for logs.
    pub app: schemas::AppId,
    /// Where each backend is reached.
    pub backends: Vec<Upstream>,
    /// Healthy backends in pick order.
    pub picks: PickOrder,
    /// Survives reloads.
    pub carried: Arc<Carried>,
    /// Verdict per identity index, precomputed for every known source.
    pub known: Vec<Decision>,
    /// The verdict counter per identity index, registered at first use so
    /// that pairs that never talk add no series to /metrics.
    known_counters: Vec<OnceLock<Counter>>,
    /// Counters for unknown sources, by verdict: allow, deny, would_deny.
    unknown_counters: [OnceLock<Counter>; 3],
    /// Per-destination handles.
    pub metrics: ServiceMetrics,
}

/// One backend address, resolved as far as it can be at reload.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// An IP address: connect directly.
    Addr(SocketAddr),
    /// A hostname: resolved when connecting.
    Name(Endpoint),
}

impl Snapshot {
    /// The generation served.
    pub fn generation(&self) -> Generation {
        self.config.generation
    }

    /// The revision served.
    pub fn revision(&self) -> &Revision {
        &self.config.revision
    }

    /// Builds the routing table; `previous` lends the state that survives swaps.
    pub fn compile(
        config: NodeConfig,
        bind: Option<IpAddr>,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let bind = bind.unwrap_or(config.address);
        let identities = IdentityTable::new(&config.identities);
        let carried_before: HashMap<(&str, u16), &Arc<Carried>> = previous
            .into_iter()
            .flat_map(|p| {
                p.routes.values().map(move |r| {
                    (
                        (
                            p.config.services[r.service].app.as_str(),
                            p.config.services[r.service].port.0,
                        ),
                        &r.carried,
                    )
                })
            })
            .collect();
        let mut routes = HashMap::new();
        for (i, svc) in config.services.iter().enumerate() {
            let dst = svc.app.as_str();
            let backends: Vec<Upstream> = svc
                .backends
                .iter()
                .map(|b| match b.address.host.parse::<IpAddr>() {
                    Ok(ip) => Upstream::Addr(SocketAddr::new(ip, b.address.port)),
                    Err(_) => Upstream::Name(b.address.clone()),
                })
                .collect();
            let eligible: Vec<(usize, u32)> = svc
                .backends
                .iter()
                .enumerate()
                .filter(|(_, b)| b.health == Health::Healthy)
                .map(|(j, b)| (j, b.weight))
                .collect();
            let known = config
                .identities
                .iter()
                .map(|id| decide(&svc.access, Some(&id.app), id.address))
                .collect();
            let carried = carried_before
                .get(&(dst, svc.port.0))
                .map_or_else(|| Arc::new(Carried::default()), |c| Arc::clone(c));
            routes.insert(
                SocketAddr::new(bind, svc.port.0),
                Arc::new(Route {
                    service: i,
                    app: svc.app.clone(),
                    backends,
                    picks: PickOrder::weighted(&eligible),
                    carried,
                    known,
                    known_counters: config.identities.iter().map(|_| OnceLock::new()).collect(),
                    unknown_counters: Default::default(),
                    metrics: ServiceMetrics::new(dst),
                }),
            );
        }
        Snapshot {
            config,
            bind,
            routes,
            identities,
        }
    }
}

impl Route {
    /// The verdict for a peer, and the counter to bump: a table lookup for
    /// known sources, the CIDR rules for the rest.
    pub fn authorize(&self, snapshot: &Snapshot, peer: IpAddr) -> (Decision, &Counter) {
        let dst = self.app.as_str();
        match snapshot.identities.lookup(peer) {
            Some(i) => {
                let d = self.known[i];
                let src = snapshot.config.identities[i].app.as_str();
                (
                    d,
                    self.known_counters[i]
                        .get_or_init(|| verdict_counter(src, dst, d.verdict.as_str())),
                )
            }
            None => {
                let d = decide(&snapshot.config.services[self.service].access, None, peer);
                let slot = match d.verdict {
                    Verdict::Allow => 0,
                    Verdict::Deny => 1,
                    Verdict::WouldDeny => 2,
                };
                let counter = self.unknown_counters[slot]
                    .get_or_init(|| verdict_counter(UNKNOWN_SOURCE, dst, d.verdict.as_str()));
                (d, counter)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "apiVersion: palisade/v1
kind: NodeConfig
node: n1
address: 127.0.0.2
generation: 1
revision: r
services:
  - app: /prod/web
    port: 10000
    access:
      default_action: deny
      allow:
        - from: /prod/edge
    backends:
      - {address: 127.0.1.1:8080, task: web.1}
      - {address: 127.0.1.2:8080, task: web.2, health: unhealthy}
      - {address: backend.local:8080, task: web.3, weight: 2}
identities:
  - {address: 127.0.2.1, app: /prod/edge, tasks: [edge.1]}
  - {address: 127.0.3.1, app: /dev/tool, tasks: [tool.1]}
";

    fn snapshot(bind: Option<IpAddr>, previous: Option<&Snapshot>) -> Snapshot {
        let config = schemas::parse_node_config("n1.yaml", CONFIG).unwrap();
        Snapshot::compile(config, bind, previous)
    }

    #[test]
    fn verdicts_are_precomputed_for_known_sources() {
        let s = snapshot(None, None);
        let route = &s.routes[&"127.0.0.2:10000".parse().unwrap()];
        assert_eq!(
            route.authorize(&s, "127.0.2.1".parse().unwrap()).0.verdict,
            Verdict::Allow
        );
        assert_eq!(
            route.authorize(&s, "127.0.3.1".parse().unwrap()).0.verdict,
            Verdict::Deny
        );
        assert_eq!(
            route.authorize(&s, "127.0.9.9".parse().unwrap()).0.verdict,
            Verdict::Deny
        );
    }

    #[test]
    fn only_healthy_backends_are_picked_and_names_wait_for_connect() {
        let s = snapshot(Some("127.0.0.5".parse().unwrap()), None);
        let route = &s.routes[&"127.0.0.5:10000".parse().unwrap()];
        let picks: Vec<usize> = route.picks.attempts(&route.carried.cursor).collect();
        assert_eq!(picks.len(), 2);
        assert!(!picks.contains(&1), "the unhealthy backend is never picked");
        assert!(matches!(route.backends[2], Upstream::Name(_)));
    }

    #[test]
    fn round_robin_cursor_survives_a_swap() {
        let a = snapshot(None, None);
        let ra = Arc::clone(&a.routes[&"127.0.0.2:10000".parse().unwrap()].carried);
        let b = snapshot(None, Some(&a));
        let rb = &b.routes[&"127.0.0.2:10000".parse().unwrap()].carried;
        assert!(Arc::ptr_eq(&ra, rb));
    }
}
