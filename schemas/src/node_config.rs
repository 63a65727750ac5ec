//! The NodeConfig format: one fully resolved file per node, written by
//! configsrv and read by meshd, so meshd needs no Marathon or policy logic.

pub mod parts;
pub mod validate;

use crate::ids::{
    AppId, AppPattern, Endpoint, Generation, NodeName, Revision, ServicePort, TaskId,
};
use crate::policy::{
    Action, ApiVersion, Balance, Mode, Protocol, Rule, Timeouts, Tls, UpstreamTls,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

pub use parts::{NodeParts, Shared};
pub use validate::{parse_node_config, problems};

/// The first line of every node file configsrv writes.
const HEADER: &str = "# Written by configsrv; do not edit. meshd reloads it on change.\n";

/// `kind` of a node config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum NodeConfigKind {
    /// A node config.
    #[default]
    NodeConfig,
}

/// Everything one meshd needs to serve its node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Always `palisade/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: ApiVersion,
    /// Always `NodeConfig`.
    pub kind: NodeConfigKind,
    /// The node this file is for.
    pub node: NodeName,
    /// The node's own address; every service listens on it (`meshd run --bind` overrides).
    pub address: IpAddr,
    /// Increases with every change; meshd ignores a file that is not newer than what it runs.
    pub generation: Generation,
    /// Hash of the content without `generation` and `revision`.
    pub revision: Revision,
    /// The policy repository commit this file was rendered from, with `--policies-git`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_commit: Option<String>,
    /// One entry per app service port.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Source address -> app: addresses unique in the cluster (own task
    /// addresses, a host-networked app's agent) on every node, Docker bridge
    /// addresses on their own node only; shared addresses are left out.
    #[serde(default)]
    pub identities: Vec<Identity>,
}

/// One service port of one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The destination app.
    pub app: AppId,
    /// The Marathon service port meshd listens on.
    pub port: ServicePort,
    /// `tcp`, `http` or `udp`; a `tcp`/`http` and a `udp` service may share a port number.
    #[serde(default)]
    pub protocol: Protocol,
    /// How a backend is picked.
    #[serde(default)]
    pub balance: Balance,
    /// Who may connect, fully resolved.
    pub access: Access,
    /// The app's running tasks at this port.
    #[serde(default)]
    pub backends: Vec<Backend>,
    /// Timeouts; each one left out keeps meshd's default.
    #[serde(default, skip_serializing_if = "Timeouts::is_empty")]
    pub timeouts: Timeouts,
    /// Most connections open at once to this service. Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Host names the edge listeners route here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vhost: Vec<String>,
    /// With `vhost`: the path prefix routed here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// TLS termination, on the edge and on the service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// TLS towards the tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_tls: Option<UpstreamTls>,
}

/// The resolved allow-list of one destination app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Access {
    /// The policy entry that applies (app id or group); absent when only the defaults do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<AppPattern>,
    /// Verdict when no rule matches.
    pub default_action: Action,
    /// `enforce` or `audit`.
    #[serde(default)]
    pub mode: Mode,
    /// Sources let through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Rule>,
    /// Sources refused; a deny beats an allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<Rule>,
}

/// Whether a backend may take new work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Running, and its Marathon health checks (if any) pass.
    #[default]
    Healthy,
    /// Running, but a health check fails or has not passed yet.
    Unhealthy,
    /// Being killed: in-flight work finishes, no new work.
    Draining,
}

/// One task serving one service port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// Where to connect.
    pub address: Endpoint,
    /// The Mesos task.
    pub task: TaskId,
    /// Relative share of new work. Default 1.
    #[serde(default = "one")]
    pub weight: u32,
    /// Marathon's view of the task.
    #[serde(default)]
    pub health: Health,
}

fn one() -> u32 {
    1
}

/// A source address that, seen by this node, belongs to exactly one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The task address connections come from.
    pub address: IpAddr,
    /// The app whose tasks use it.
    pub app: AppId,
    /// The tasks behind it.
    pub tasks: Vec<TaskId>,
}

impl NodeConfig {
    /// The revision of this content: equal content, equal revision, whatever
    /// the generation. The services are hashed on their own first, so a
    /// renderer that gives every node the same services hashes them once
    /// (`revision_with`).
    pub fn content_revision(&self) -> Revision {
        self.revision_with(&services_digest(&self.services))
    }

    /// The revision, given `services_digest(&self.services)`.
    pub fn revision_with(&self, services: &ServicesDigest) -> Revision {
        let mut head = self.without_services();
        head.generation = Generation(0);
        head.revision = Revision::default();
        // Serializing our own plain types cannot fail.
        let text = yaml_serde::to_string(&head).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(text.as_bytes());
        h.update(services.0);
        revision_of(&h.finalize())
    }

    /// The file's text as configsrv writes it.
    pub fn to_yaml(&self) -> String {
        self.to_yaml_with(&services_yaml(&self.services))
    }

    /// The file's text, given `services_yaml(&self.services)`: a renderer
    /// that gives every node the same services serializes them once.
    pub fn to_yaml_with(&self, services: &str) -> String {
        let head = yaml_serde::to_string(&self.without_services()).unwrap_or_default();
        let body = if self.services.is_empty() {
            head
        } else {
            // yaml_serde writes an empty list as `services: []`; the block
            // list goes in its place, at the same indentation serde uses.
            head.replacen("services: []\n", &format!("services:\n{services}"), 1)
        };
        format!("{HEADER}{body}")
    }

    fn without_services(&self) -> NodeConfig {
        NodeConfig {
            api_version: self.api_version,
            kind: self.kind,
            node: self.node.clone(),
            address: self.address,
            generation: self.generation,
            revision: self.revision.clone(),
            policy_commit: self.policy_commit.clone(),
            services: Vec::new(),
            identities: self.identities.clone(),
        }
    }
}

/// A revision from a finished digest: its first 16 bytes in hex.
fn revision_of(digest: &[u8]) -> Revision {
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    Revision(format!("sha256:{hex}"))
}

/// A digest of a list of services, for `NodeConfig::revision_with`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServicesDigest([u8; 32]);

/// Hashes the services as they are written.
pub fn services_digest(services: &[Service]) -> ServicesDigest {
    ServicesDigest::of_yaml(&services_yaml(services))
}

impl ServicesDigest {
    /// The digest of services already written by `services_yaml`.
    pub fn of_yaml(yaml: &str) -> ServicesDigest {
        ServicesDigest(Sha256::digest(yaml.as_bytes()).into())
    }
}

/// The services as a YAML block list, as they stand in a node file.
pub fn services_yaml(services: &[Service]) -> String {
    if services.is_empty() {
        return String::new();
    }
    yaml_serde::to_string(services).unwrap_or_default()
}
