//! What the reconciler shows the outside: the typed `/v1/status` document and
//! a read-only `View` (apps, effective policy, per-app errors) that the API
//! reads from a `watch` channel. Plain values, built from the reconciler's state.

use crate::state::{ClusterState, TaskPhase};
use schemas::{AppId, PolicySet, Protocol};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A source whose staleness configsrv tracks (`palisade_source_stale{source}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Marathon's apps and events.
    Marathon,
    /// Mesos' agents.
    Mesos,
    /// The policy directory or repository.
    Policy,
}

impl Source {
    /// The name used in the metric label and the status document.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Marathon => "marathon",
            Source::Mesos => "mesos",
            Source::Policy => "policy",
        }
    }
}

/// Staleness and the error behind it, for one source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceStatus {
    /// True while the last read failed or looked suspicious.
    pub stale: bool,
    /// Why, when stale.
    pub error: Option<String>,
}

/// The `/v1/status` document (DESIGN.md: `{"sources": {"marathon": {"stale": .., "error": ..}}}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Every source heard from so far, by name.
    pub sources: BTreeMap<Source, SourceStatus>,
    /// Apps in the state.
    pub apps: usize,
    /// Agents in the state.
    pub agents: usize,
    /// Nodes the HTTP store serves.
    pub nodes: usize,
    /// Renders done since start.
    pub renders: u64,
    /// The policy commit in force (`--policies-git`).
    pub policy_commit: Option<String>,
    /// Why the last publish failed; none after a good one.
    pub publish_error: Option<String>,
    /// Good Mesos reads since start: the node-coverage keeper acts on fresh ones only.
    pub mesos_reads: u64,
}

/// One app as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppView {
    /// App id.
    pub id: AppId,
    /// Tasks that run or drain.
    pub instances: usize,
    /// Running tasks whose health checks pass.
    pub healthy: usize,
    /// Effective protocol: policy entry, else label, else tcp.
    pub protocol: Protocol,
    /// The service ports every node binds for it.
    pub service_ports: Vec<u16>,
    /// Its backends at its first service port.
    pub backends: Vec<BackendView>,
    /// Its tasks' own addresses (IP per task), for judging CIDR rules in impact previews.
    pub addresses: Vec<std::net::IpAddr>,
}

/// One backend of an app, as `/v1/apps/<id>` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendView {
    /// Mesos task id.
    pub task: String,
    /// Where meshd reaches it.
    pub address: String,
    /// The node it runs on.
    pub node: String,
    /// `healthy`, `unhealthy` or `draining`.
    pub health: &'static str,
}

impl View {
    /// The app with this id.
    pub fn app(&self, id: &str) -> Option<&AppView> {
        self.apps.iter().find(|a| a.id.as_str() == id)
    }
}

/// An app's backends at its first service port, with the node each runs on.
fn backends(app: &crate::state::App) -> Vec<BackendView> {
    let Some(spec) = app.service_ports.first() else {
        return Vec::new();
    };
    crate::render::backends::backends(app, spec, &mut Vec::new())
        .into_iter()
        .map(|b| {
            let host = app
                .tasks
                .iter()
                .find(|t| t.id == b.task)
                .map(|t| t.host.clone())
                .unwrap_or_default();
            BackendView {
                task: b.task.to_string(),
                address: b.address.to_string(),
                node: schemas::NodeName::sanitise(&host).map_or(host, |n| n.to_string()),
                health: match b.health {
                    schemas::Health::Healthy => "healthy",
                    schemas::Health::Unhealthy => "unhealthy",
                    schemas::Health::Draining => "draining",
                },
            }
        })
        .collect()
}

/// The policy in force and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicyView {
    /// The merged policy set (last good entries kept for broken apps);
    /// shared, so publishing a view never copies it.
    pub set: Arc<PolicySet>,
    /// Every problem of the last policy read, `file:line:col: message`.
    pub problems: Vec<String>,
    /// Entries (as written) that keep their last good settings.
    pub broken_apps: BTreeSet<String>,
    /// The problems of each broken entry, `file:line:col: message`.
    pub app_errors: BTreeMap<String, Vec<String>>,
}

/// A read-only picture of the reconciler, published after every change.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct View {
    /// The `/v1/status` document.
    pub status: Status,
    /// Apps by id.
    pub apps: Vec<AppView>,
    /// The effective policy.
    pub policy: PolicyView,
    /// Problems per app id or policy entry: the last render's and the policy's.
    pub app_errors: BTreeMap<String, Vec<String>>,
    /// Mesos' agents as of the last good read, by hostname.
    pub agents: Vec<AgentView>,
}

/// One Mesos agent, for node coverage and the meshd keeper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentView {
    /// Hostname as Mesos reports it.
    pub hostname: String,
    /// Its node name (the sanitised hostname); none when it cannot be one.
    pub node: Option<String>,
    /// Whether Mesos counts it as active.
    pub active: bool,
    /// Marathon tasks that run or drain on it.
    pub tasks: usize,
}

/// The agents of `state`, with how many tasks run on each.
pub fn agents(state: &ClusterState) -> Vec<AgentView> {
    state
        .agents
        .iter()
        .map(|agent| AgentView {
            hostname: agent.hostname.clone(),
            node: schemas::NodeName::sanitise(&agent.hostname).map(|n| n.to_string()),
            active: agent.active,
            tasks: state
                .apps
                .iter()
                .flat_map(|a| &a.tasks)
                .filter(|t| t.phase != TaskPhase::NotRunning && t.host == agent.hostname)
                .count(),
        })
        .collect()
}

/// The apps of `state` as the API shows them, with the protocol `policies` give them.
pub fn apps(state: &ClusterState, policies: &PolicySet) -> Vec<AppView> {
    state
        .apps
        .iter()
        .map(|app| AppView {
            id: app.id.clone(),
            instances: app
                .tasks
                .iter()
                .filter(|t| t.phase != TaskPhase::NotRunning)
                .count(),
            healthy: app
                .tasks
                .iter()
                .filter(|t| t.phase == TaskPhase::Running && t.healthy)
                .count(),
            protocol: policies
                .entry_for(&app.id)
                .and_then(|(_, p)| p.protocol)
                .or(app.protocol)
                .unwrap_or_default(),
            service_ports: app.service_ports.iter().map(|s| s.service_port.0).collect(),
            backends: backends(app),
            addresses: app
                .tasks
                .iter()
                .flat_map(|t| t.addresses.iter().copied())
                .collect(),
        })
        .collect()
}
