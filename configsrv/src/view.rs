//! What the API and the collector read of the state loop: apps, the policy
//! in force with its problems, and the generation rendered for each node. The
//! loop builds a new `View` after each change and hands it over through a
//! `watch`; readers take the latest and never lock the loop.

use crate::error::RenderError;
use crate::state::{ClusterState, TaskPhase};
use schemas::{AppId, NodeName, PolicySet, Protocol};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One backend of an app, as `/v1/apps/<id>` shows it.
#[derive(Debug, Clone, PartialEq)]
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

/// One Marathon app.
#[derive(Debug, Clone, PartialEq)]
pub struct AppView {
    /// App id.
    pub id: AppId,
    /// Tasks running or being killed.
    pub instances: usize,
    /// Tasks running with their health checks passing.
    pub healthy: usize,
    /// How meshd carries it (policy entry, else label, else tcp).
    pub protocol: Protocol,
    /// Its service ports.
    pub service_ports: Vec<u16>,
    /// Its backends at its first service port.
    pub backends: Vec<BackendView>,
    /// Its tasks' own addresses (IP per task), for judging CIDR rules.
    pub addresses: Vec<std::net::IpAddr>,
}

/// The state loop's latest picture, read-only.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Apps by id order.
    pub apps: Vec<AppView>,
    /// The policy in force.
    pub policies: Arc<PolicySet>,
    /// Problems of the policy directory, `file:line:col: message`, with the file they name.
    pub policy_errors: Vec<(String, String)>,
    /// Per-app problems (render, Marathon), by app id.
    pub app_errors: BTreeMap<String, Vec<String>>,
}

impl View {
    /// Builds the view of one moment of the loop.
    pub fn build(
        state: &ClusterState,
        policies: &PolicySet,
        policy_errors: &[schemas::ConfigError],
        render_errors: &[RenderError],
    ) -> View {
        let apps = state
            .apps
            .iter()
            .map(|app| {
                let protocol = policies
                    .entry_for(&app.id)
                    .and_then(|(_, e)| e.protocol)
                    .or(app.protocol)
                    .unwrap_or_default();
                let backends = app
                    .service_ports
                    .first()
                    .map(|spec| crate::render::backends::backends(app, spec, &mut Vec::new()))
                    .unwrap_or_default()
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
                            node: NodeName::sanitise(&host).map_or(host, |n| n.to_string()),
                            health: match b.health {
                                schemas::Health::Healthy => "healthy",
                                schemas::Health::Unhealthy => "unhealthy",
                                schemas::Health::Draining => "draining",
                            },
                        }
                    })
                    .collect();
                AppView {
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
                    protocol,
                    service_ports: app.service_ports.iter().map(|p| p.service_port.0).collect(),
                    backends,
                    addresses: app
                        .tasks
                        .iter()
                        .flat_map(|t| t.addresses.iter().copied())
                        .collect(),
                }
            })
            .collect();
        let mut app_errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in render_errors {
            let app = match e {
                RenderError::PortConflict { app, .. }
                | RenderError::TaskWithoutAddress { app, .. }
                | RenderError::VhostReserved { app, .. }
                | RenderError::VhostShared { app, .. } => app,
                RenderError::BadHost { .. } => continue,
            };
            app_errors
                .entry(app.clone())
                .or_default()
                .push(e.to_string());
        }
        // A policy problem belongs to the app whose entry in force came from its file and
        // encloses its line; problems of entries left out stay file-level.
        for e in policy_errors {
            let owner = policies
                .origins
                .iter()
                .filter(|(_, o)| o.file == e.file && o.location.line <= e.line)
                .max_by_key(|(_, o)| o.location.line)
                .map(|(p, _)| p.as_str().to_owned());
            if let Some(app) = owner {
                app_errors.entry(app).or_default().push(e.to_string());
            }
        }
        View {
            apps,
            policies: Arc::new(policies.clone()),
            policy_errors: policy_errors
                .iter()
                .map(|e| (e.file.clone(), e.to_string()))
                .collect(),
            app_errors,
        }
    }

    /// The app with this id.
    pub fn app(&self, id: &str) -> Option<&AppView> {
        self.apps.iter().find(|a| a.id.as_str() == id)
    }
}
