//! The renderer: `render(&ClusterState, &PolicySet)` -> one NodeConfig per
//! node. A pure function: same input, same output, whatever the input order.
//! Per-app problems become `RenderError`s and never stop the other apps.

mod allow;
pub(crate) mod backends;
mod identity;
mod vhost;

use crate::error::RenderError;
use crate::state::ClusterState;
use schemas::node_config::{NodeConfigKind, NodeParts, Shared};
use schemas::policy::ApiVersion;
use schemas::{Generation, NodeConfig, NodeName, PolicySet, Protocol, Revision, Service};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// What a render produced: every node's config (generation 0; the publisher
/// numbers them) and the problems met on the way. The services and the
/// identities unique in the cluster are the same in every node file: they
/// are kept, and serialized, once (`schemas::node_config::Shared`), so a
/// render's memory grows with apps plus nodes, not apps times nodes.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// Node configs by node, in parts.
    pub nodes: BTreeMap<NodeName, NodeParts>,
    /// Per-app and per-node problems.
    pub errors: Vec<RenderError>,
}

impl Rendered {
    /// Makes every node point at `earlier`'s serialized bytes where they
    /// are equal (see `Shared::reuse`), so a publish that rewrites some nodes
    /// and keeps others holds one copy. Every node of a render shares one
    /// `Shared`.
    pub fn reuse(&mut self, earlier: &Shared) {
        let Some(first) = self.nodes.values().next() else {
            return;
        };
        let shared = Arc::clone(&first.shared);
        let placeholder = Arc::new(Shared::default());
        for parts in self.nodes.values_mut() {
            parts.shared = Arc::clone(&placeholder);
        }
        let mut shared = Arc::try_unwrap(shared).unwrap_or_else(|s| (*s).clone());
        shared.reuse(earlier);
        let shared = Arc::new(shared);
        for parts in self.nodes.values_mut() {
            parts.shared = Arc::clone(&shared);
        }
    }

    /// Every node's whole config, as meshd parses its file (a copy of the
    /// shared parts per node: for tests and small clusters).
    pub fn configs(&self) -> BTreeMap<NodeName, NodeConfig> {
        self.nodes
            .iter()
            .map(|(n, p)| (n.clone(), p.to_config()))
            .collect()
    }
}

/// Renders every node's config from the cluster and the policies.
pub fn render(state: &ClusterState, policies: &PolicySet) -> Rendered {
    let mut errors = Vec::new();
    let claims = identity::claims(state);
    let services = services(state, policies, &claims.shared(), &mut errors);
    let shared = Arc::new(Shared::new(services, claims.everywhere()));
    let mut nodes = BTreeMap::new();
    for (name, hosts) in node_hosts(state, &mut errors) {
        let address = node_address(state, &hosts);
        let head = NodeConfig {
            api_version: ApiVersion::V1,
            kind: NodeConfigKind::NodeConfig,
            node: name.clone(),
            address,
            generation: Generation(0),
            revision: Revision::default(),
            policy_commit: policies.commit.clone(),
            services: Vec::new(),
            identities: Vec::new(),
        };
        let mut parts = NodeParts::new(head, claims.local(&hosts), Arc::clone(&shared));
        parts.head.revision = parts.revision();
        nodes.insert(name, parts);
    }
    Rendered { nodes, errors }
}

/// Every app's service ports, the same on every node; a port claimed twice
/// (TCP and UDP are separate claims) stays with the first app by id.
fn services(
    state: &ClusterState,
    policies: &PolicySet,
    shared: &BTreeMap<std::net::IpAddr, BTreeSet<schemas::AppId>>,
    errors: &mut Vec<RenderError>,
) -> Vec<Service> {
    let mut owners = BTreeMap::new();
    let mut services = Vec::new();
    let mut vhosts = vhost::vhosts(state, policies, errors);
    for app in &state.apps {
        let settings = allow::settings(app, policies);
        let mut access = allow::access(&app.id, policies);
        allow::close_shared(&mut access, shared);
        for (k, spec) in app.service_ports.iter().enumerate() {
            // `protocol: udp` in policy (or label) makes every port UDP;
            // otherwise Marathon's port protocol says which side(s) to serve.
            let udp_app = settings.protocol == Protocol::Udp;
            let sides = [
                (!udp_app && spec.transport.tcp(), settings.protocol),
                (udp_app || spec.transport.udp(), Protocol::Udp),
            ];
            for (protocol, first) in sides
                .into_iter()
                .filter_map(|(on, p)| on.then_some(p))
                .zip([true, false])
            {
                let udp = protocol == Protocol::Udp;
                if let Some(owner) = owners.get(&(spec.service_port, udp)) {
                    errors.push(RenderError::PortConflict {
                        app: app.id.to_string(),
                        port: spec.service_port.0,
                        owner: format!("{owner}"),
                    });
                    continue;
                }
                owners.insert((spec.service_port, udp), app.id.clone());
                // The edge routes an app's host names to its first service
                // port; UDP takes no TLS, vhost or path.
                let edge = k == 0 && first && !udp;
                services.push(Service {
                    app: app.id.clone(),
                    port: spec.service_port,
                    protocol,
                    balance: settings.balance,
                    access: access.clone(),
                    backends: backends::backends(app, spec, errors),
                    timeouts: settings.timeouts,
                    max_connections: settings.max_connections,
                    vhost: if edge {
                        vhosts.remove(&app.id).unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                    path_prefix: if edge {
                        settings.path_prefix.clone()
                    } else {
                        None
                    },
                    tls: if udp { None } else { settings.tls.clone() },
                    upstream_tls: if udp {
                        None
                    } else {
                        settings.upstream_tls.clone()
                    },
                });
            }
        }
    }
    services.sort_by_key(|s| (s.port, s.protocol.is_udp()));
    services
}

/// Every node and the hosts it stands for: task hosts, plus every active
/// Mesos agent and every node whose meshd follows configsrv, which get a
/// file even with no tasks on them.
fn node_hosts(
    state: &ClusterState,
    errors: &mut Vec<RenderError>,
) -> BTreeMap<NodeName, BTreeSet<String>> {
    let task_hosts = state
        .apps
        .iter()
        .flat_map(|a| a.tasks.iter().map(|t| t.host.as_str()));
    let agent_hosts = state
        .agents
        .iter()
        .filter(|a| a.active)
        .map(|a| a.hostname.as_str());
    let followers = state.followers.iter().map(NodeName::as_str);
    let mut nodes: BTreeMap<NodeName, BTreeSet<String>> = BTreeMap::new();
    for host in task_hosts.chain(agent_hosts).chain(followers) {
        match NodeName::sanitise(host) {
            Some(name) => {
                nodes.entry(name).or_default().insert(host.to_owned());
            }
            None => {
                let e = RenderError::BadHost {
                    host: host.to_owned(),
                };
                if !errors.contains(&e) {
                    errors.push(e);
                }
            }
        }
    }
    nodes
}

/// The address a node's services listen on: the host itself when it is an
/// address, else its Mesos agent's, else every address (`meshd --bind` narrows it).
fn node_address(state: &ClusterState, hosts: &BTreeSet<String>) -> IpAddr {
    hosts
        .iter()
        .find_map(|h| h.parse().ok())
        .or_else(|| {
            state
                .agents
                .iter()
                .filter(|a| hosts.contains(&a.hostname))
                .find_map(|a| a.address)
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The address a task's host stands for: itself, or its agent's address.
pub(crate) fn host_address(state: &ClusterState, host: &str) -> Option<IpAddr> {
    host.parse().ok().or_else(|| {
        state
            .agents
            .iter()
            .find(|a| a.hostname == host)
            .and_then(|a| a.address)
    })
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod udp_tests;
