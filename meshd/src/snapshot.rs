//! Reload step 3: a validated NodeConfig becomes an immutable `Snapshot`, the
//! routing table every connection reads. Everything the connection path
//! needs is computed here: verdicts per known source, pick orders, metric
//! handles. No I/O.

use crate::authz::{decide, Decision, Verdict};
use crate::backend::BackendState;
use crate::balance::{hash_bytes, PickOrder, Pickable};
use crate::identity::IdentityTable;
use crate::metrics::{verdict_counter, BackendMetrics, ServiceMetrics, UdpMetrics, UNKNOWN_SOURCE};
use crate::retry::RetryBudget;
use crate::timeouts::Resolved;
use metrics::Counter;
use schemas::{Balance, Endpoint, Generation, Health, NodeConfig, Protocol, Revision, TaskId};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

/// The routing table of one generation.
#[derive(Debug)]
pub struct Snapshot {
    /// The config it was built from, for `/status`.
    pub config: NodeConfig,
    /// Where services listen: the config's address or `--bind`.
    pub bind: IpAddr,
    /// TCP and HTTP service routes by listen address.
    pub routes: HashMap<SocketAddr, Arc<Route>>,
    /// UDP service routes by listen address (a port may be in both maps:
    /// Marathon's `udp,tcp`).
    pub udp_routes: HashMap<SocketAddr, Arc<Route>>,
    /// Peer address -> identity index.
    pub identities: IdentityTable,
    /// Edge routing: host -> (path prefix, route key), longest prefix first.
    pub edge: HashMap<String, Vec<(String, SocketAddr)>>,
    /// Edge certificates: host -> (cert, key) paths.
    pub edge_tls: HashMap<String, (String, String)>,
}

/// Per-service state that outlives a swap, keyed by (app, port).
#[derive(Debug)]
pub struct Carried {
    /// Next round-robin pick.
    pub cursor: AtomicUsize,
    /// Retries allowed as a share of requests.
    pub retry_budget: RetryBudget,
    /// Open connections allowed (`max_connections`), with the limit it was made for.
    pub limit: Option<(u32, Arc<Semaphore>)>,
    /// Per-destination handles, registered at first use (`Route::metrics`):
    /// a node file of 10,000 services would otherwise put 10,000 apps'
    /// series on /metrics (66 MB) and into every fold of the histograms
    /// (38 ms a second), though a node's apps call few of them. Kept here,
    /// an app registers once, not again after every reload.
    pub metrics: OnceLock<ServiceMetrics>,
    /// A UDP service's handles, registered when its route is compiled.
    pub udp: OnceLock<UdpMetrics>,
}

/// One service as the connection path sees it.
#[derive(Debug)]
pub struct Route {
    /// Where its service listens: its key in `Snapshot::routes`.
    pub listen: SocketAddr,
    /// Index into `config.services`.
    pub service: usize,
    /// Destination app, for logs.
    pub app: schemas::AppId,
    /// tcp, http or udp.
    pub protocol: Protocol,
    /// TLS termination, when the service has it.
    pub tls: Option<schemas::Tls>,
    /// TLS towards the tasks, when the service has it.
    pub upstream_tls: Option<schemas::UpstreamTls>,
    /// Backend selection policy.
    pub balance: Balance,
    /// Timeouts with defaults applied.
    pub timeouts: Resolved,
    /// Every backend, healthy or not (indices match the config).
    pub backends: Vec<RouteBackend>,
    /// Healthy backends in weighted pick order.
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
}

/// One backend of one service.
#[derive(Debug)]
pub struct RouteBackend {
    /// Where to connect.
    pub upstream: Upstream,
    /// `host:port`, for logs and labels.
    pub label: String,
    /// The Mesos task.
    pub task: TaskId,
    /// Relative share.
    pub weight: u32,
    /// Load, health and idle connections; survives reloads.
    pub state: Arc<BackendState>,
    /// Hash of task and address, for `source_hash`.
    pub key_hash: u64,
}

impl Pickable for RouteBackend {
    fn weight(&self) -> u32 {
        self.weight
    }
    fn in_flight(&self) -> u32 {
        self.state.in_flight()
    }
    fn latency_ns(&self) -> u64 {
        self.state.latency_ns()
    }
    fn key_hash(&self) -> u64 {
        self.key_hash
    }
}

/// One backend address, resolved as far as it can be at reload.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// An IP address: connect directly.
    Addr(SocketAddr),
    /// A hostname: resolved when connecting.
    Name(Endpoint),
}

type BackendKey = (TaskId, Endpoint);

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
        let mut carried_before: HashMap<(&str, u16, bool), &Arc<Carried>> = HashMap::new();
        let mut states_before: HashMap<BackendKey, &Arc<BackendState>> = HashMap::new();
        for p in previous.into_iter() {
            for r in p.routes.values().chain(p.udp_routes.values()) {
                let svc = &p.config.services[r.service];
                let key = (svc.app.as_str(), svc.port.0, svc.protocol.is_udp());
                carried_before.insert(key, &r.carried);
                for (b, rb) in svc.backends.iter().zip(&r.backends) {
                    states_before.insert((b.task.clone(), b.address.clone()), &rb.state);
                }
            }
        }
        let mut routes = HashMap::new();
        let mut udp_routes = HashMap::new();
        for (i, svc) in config.services.iter().enumerate() {
            let dst = svc.app.as_str();
            let backends: Vec<RouteBackend> = svc
                .backends
                .iter()
                .map(|b| {
                    let label = b.address.to_string();
                    let upstream = match b.address.host.parse::<IpAddr>() {
                        Ok(ip) => Upstream::Addr(SocketAddr::new(ip, b.address.port)),
                        Err(_) => Upstream::Name(b.address.clone()),
                    };
                    let state = states_before
                        .get(&(b.task.clone(), b.address.clone()))
                        .map_or_else(|| Arc::new(BackendState::default()), |s| Arc::clone(s));
                    let key_hash = hash_bytes(format!("{}|{label}", b.task).as_bytes());
                    RouteBackend {
                        upstream,
                        label,
                        task: b.task.clone(),
                        weight: b.weight,
                        state,
                        key_hash,
                    }
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
            let carried = match carried_before.get(&(dst, svc.port.0, svc.protocol.is_udp())) {
                Some(c) if c.limit.as_ref().map(|(n, _)| *n) == svc.max_connections => {
                    Arc::clone(c)
                }
                Some(c) => Arc::new(Carried {
                    cursor: AtomicUsize::new(c.cursor.load(std::sync::atomic::Ordering::Relaxed)),
                    retry_budget: RetryBudget::default(),
                    limit: svc
                        .max_connections
                        .map(|n| (n, Arc::new(Semaphore::new(n as usize)))),
                    metrics: c
                        .metrics
                        .get()
                        .cloned()
                        .map(OnceLock::from)
                        .unwrap_or_default(),
                    udp: c.udp.get().cloned().map(OnceLock::from).unwrap_or_default(),
                }),
                None => Arc::new(Carried {
                    cursor: AtomicUsize::new(0),
                    retry_budget: RetryBudget::default(),
                    limit: svc
                        .max_connections
                        .map(|n| (n, Arc::new(Semaphore::new(n as usize)))),
                    metrics: OnceLock::new(),
                    udp: OnceLock::new(),
                }),
            };
            if svc.protocol.is_udp() {
                // UDP ports are few; their handles are ready before the first datagram.
                carried.udp.get_or_init(|| UdpMetrics::new(dst));
            }
            let listen = SocketAddr::new(bind, svc.port.0);
            let table = if svc.protocol.is_udp() {
                &mut udp_routes
            } else {
                &mut routes
            };
            table.insert(
                listen,
                Arc::new(Route {
                    listen,
                    service: i,
                    app: svc.app.clone(),
                    protocol: svc.protocol,
                    tls: svc.tls.clone(),
                    upstream_tls: svc.upstream_tls.clone(),
                    balance: svc.balance,
                    timeouts: Resolved::from(&svc.timeouts),
                    backends,
                    picks: PickOrder::weighted(&eligible),
                    carried,
                    known,
                    known_counters: config.identities.iter().map(|_| OnceLock::new()).collect(),
                    unknown_counters: Default::default(),
                }),
            );
        }
        let mut edge: HashMap<String, Vec<(String, SocketAddr)>> = HashMap::new();
        let mut edge_tls = HashMap::new();
        for svc in config.services.iter().filter(|s| !s.protocol.is_udp()) {
            let key = SocketAddr::new(bind, svc.port.0);
            for host in &svc.vhost {
                let host = host.to_ascii_lowercase();
                let prefix = svc.path_prefix.clone().unwrap_or_else(|| "/".to_owned());
                edge.entry(host.clone()).or_default().push((prefix, key));
                if let Some(t) = &svc.tls {
                    edge_tls
                        .entry(host)
                        .or_insert_with(|| (t.cert.clone(), t.key.clone()));
                }
            }
        }
        for entries in edge.values_mut() {
            // Longest prefix wins; equal prefixes keep the service order (port order).
            entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        }
        Snapshot {
            config,
            bind,
            routes,
            udp_routes,
            identities,
            edge,
            edge_tls,
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

    /// This destination's handles, registered by its first connection.
    pub fn metrics(&self) -> &ServiceMetrics {
        self.carried
            .metrics
            .get_or_init(|| ServiceMetrics::new(self.app.as_str()))
    }

    /// Backend `i`'s handles, registered at its first use.
    pub fn backend_metrics(&self, i: usize) -> &BackendMetrics {
        let b = &self.backends[i];
        b.state
            .metrics
            .get_or_init(|| BackendMetrics::new(self.app.as_str(), &b.label))
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
        assert_eq!(
            route.picks.healthy(),
            &[0, 2],
            "the unhealthy backend is never picked"
        );
        assert!(matches!(route.backends[2].upstream, Upstream::Name(_)));
    }

    #[test]
    fn cursor_and_backend_state_survive_a_swap() {
        let a = snapshot(None, None);
        let key = "127.0.0.2:10000".parse().unwrap();
        let ra = &a.routes[&key];
        let b = snapshot(None, Some(&a));
        let rb = &b.routes[&key];
        assert!(Arc::ptr_eq(&ra.carried, &rb.carried));
        for (x, y) in ra.backends.iter().zip(&rb.backends) {
            assert!(Arc::ptr_eq(&x.state, &y.state), "{}", x.label);
        }
    }
}
