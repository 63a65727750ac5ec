//! Marathon's JSON as it arrives, read tolerantly (every field optional,
//! unknown fields ignored, nulls accepted), then turned into typed `state::App`s.
//! Labels become typed per-app settings here; an app that cannot be read
//! becomes its own `AppError` and never stops the others.

use crate::error::AppError;
use crate::state::{App, Networking, PortSpec, Task, TaskPhase, Transport};
use schemas::{AppId, Balance, Protocol, ServicePort, TaskId};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Body of `GET /v2/apps?embed=apps.tasks`.
#[derive(Debug, Deserialize)]
pub struct AppsResponse {
    /// Every app, with its tasks embedded.
    pub apps: Vec<MarathonApp>,
}

/// Body of `GET /v2/apps/<id>`.
#[derive(Debug, Deserialize)]
pub struct AppResponse {
    /// The app.
    pub app: MarathonApp,
}

/// One app as Marathon reports it.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct MarathonApp {
    /// Absolute app id.
    pub id: String,
    /// Legacy service ports.
    pub ports: Option<Vec<u32>>,
    /// Service ports (host and bridge networking).
    pub port_definitions: Option<Vec<PortDefinition>>,
    /// Docker or Mesos container settings.
    pub container: Option<Container>,
    /// Marathon 1.5+ networking.
    pub networks: Option<Vec<Network>>,
    /// Pre-1.5 IP-per-task marker.
    pub ip_address: Option<serde_json::Value>,
    /// Marathon health checks; only their number matters here.
    pub health_checks: Option<Vec<serde_json::Value>>,
    /// App labels.
    pub labels: Option<BTreeMap<String, serde_json::Value>>,
    /// Embedded tasks.
    pub tasks: Option<Vec<MarathonTask>>,
}

/// `portDefinitions[]`.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct PortDefinition {
    /// The service port.
    pub port: Option<u32>,
    /// `tcp` (default), `udp`, `udp,tcp` or `tcp,udp`.
    pub protocol: Option<String>,
}

/// `container`.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    /// Docker settings (pre-1.5 port mappings and network live here).
    pub docker: Option<Docker>,
    /// Marathon 1.5+ port mappings.
    pub port_mappings: Option<Vec<PortMapping>>,
}

/// `container.docker`.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Docker {
    /// `HOST`, `BRIDGE` or `USER` before Marathon 1.5.
    pub network: Option<String>,
    /// Pre-1.5 port mappings.
    pub port_mappings: Option<Vec<PortMapping>>,
}

/// One port mapping.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct PortMapping {
    /// Port inside the container.
    pub container_port: Option<u32>,
    /// Service port.
    pub service_port: Option<u32>,
    /// `tcp` (default), `udp`, `udp,tcp` or `tcp,udp`.
    pub protocol: Option<String>,
}

/// `networks[]`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Network {
    /// `host`, `container/bridge` or `container`.
    pub mode: Option<String>,
}

/// One task as Marathon reports it.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct MarathonTask {
    /// Mesos task id.
    pub id: String,
    /// The agent the task runs on.
    pub host: String,
    /// Host ports, one per service port.
    pub ports: Option<Vec<u32>>,
    /// The task's own addresses.
    pub ip_addresses: Option<Vec<TaskAddress>>,
    /// Mesos state; old Marathon versions leave it out.
    pub state: Option<String>,
    /// Set once the task runs.
    pub started_at: Option<String>,
    /// Results of the app's health checks.
    pub health_check_results: Option<Vec<HealthCheckResult>>,
}

/// `ipAddresses[]`.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TaskAddress {
    /// The address.
    pub ip_address: String,
}

/// `healthCheckResults[]`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct HealthCheckResult {
    /// Whether the last check passed.
    pub alive: bool,
}

/// The label that sets an app's protocol (`tcp` or `http`) when no policy file does.
pub const LABEL_PROTOCOL: &str = "PALISADE_PROTOCOL";
/// The label that names an app's edge host names (comma-separated) when no policy file does.
pub const LABEL_VHOST: &str = "PALISADE_VHOST";
/// The label that sets an app's balancing when no policy file does.
pub const LABEL_BALANCE: &str = "PALISADE_BALANCE";

impl MarathonApp {
    /// The app as palisade sees it, or why it cannot be used.
    pub fn into_app(self) -> Result<App, AppError> {
        let id: AppId = self
            .id
            .parse()
            .map_err(|e| AppError::new(&self.id, format!("{e}")))?;
        let err = |msg: String| AppError::new(id.as_str(), msg);
        let networking = self.networking();
        let service_ports = self.port_specs(networking).map_err(err)?;
        let labels = self.labels.unwrap_or_default();
        let label = |name: &str| labels.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let protocol = label(LABEL_PROTOCOL)
            .map(|v| parse_label::<Protocol>(LABEL_PROTOCOL, &v))
            .transpose()
            .map_err(err)?;
        let balance = label(LABEL_BALANCE)
            .map(|v| parse_label::<Balance>(LABEL_BALANCE, &v))
            .transpose()
            .map_err(err)?;
        let health_checks = self.health_checks.map_or(0, |h| h.len());
        // marathon-lb's label is honoured, so apps migrate without relabelling.
        let vhost = label(LABEL_VHOST)
            .or_else(|| label("HAPROXY_0_VHOST"))
            .map(|v| {
                v.split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let tasks = self
            .tasks
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| t.into_task(health_checks))
            .collect();
        Ok(App {
            id,
            networking,
            service_ports,
            protocol,
            balance,
            vhost,
            health_checks,
            tasks,
        })
    }

    fn networking(&self) -> Networking {
        let modes: Vec<&str> = self
            .networks
            .iter()
            .flatten()
            .filter_map(|n| n.mode.as_deref())
            .collect();
        let docker_net = self
            .container
            .as_ref()
            .and_then(|c| c.docker.as_ref())
            .and_then(|d| d.network.as_deref());
        if modes.contains(&"container") || docker_net == Some("USER") {
            Networking::Container
        } else if modes.contains(&"container/bridge") || docker_net == Some("BRIDGE") {
            Networking::Bridge
        } else if self.ip_address.as_ref().is_some_and(|v| !v.is_null()) {
            Networking::Container
        } else {
            Networking::Host
        }
    }

    fn port_specs(&self, networking: Networking) -> Result<Vec<PortSpec>, String> {
        let mappings: Vec<&PortMapping> = self
            .container
            .iter()
            .flat_map(|c| {
                let docker = c.docker.as_ref().and_then(|d| d.port_mappings.as_ref());
                c.port_mappings.as_ref().or(docker).into_iter().flatten()
            })
            .collect();
        type Raw<'a> = (Option<u32>, Option<u32>, Option<&'a str>);
        let raw: Vec<Raw<'_>> = match networking {
            Networking::Container | Networking::Bridge if !mappings.is_empty() => mappings
                .iter()
                .map(|m| (m.service_port, m.container_port, m.protocol.as_deref()))
                .collect(),
            _ => match (&self.port_definitions, &self.ports) {
                (Some(defs), _) if !defs.is_empty() => defs
                    .iter()
                    .map(|d| (d.port, None, d.protocol.as_deref()))
                    .collect(),
                (_, Some(ports)) => ports.iter().map(|p| (Some(*p), None, None)).collect(),
                _ => Vec::new(),
            },
        };
        let mut specs = Vec::new();
        for (index, (service, container, protocol)) in raw.into_iter().enumerate() {
            // Port 0 asks Marathon to pick one; until it has, there is nothing to bind.
            let Some(service) = service.filter(|p| *p != 0) else {
                continue;
            };
            let service = u16::try_from(service)
                .map_err(|_| format!("service port {service} is out of range"))?;
            let container_port = match container {
                Some(c) => Some(
                    u16::try_from(c).map_err(|_| format!("container port {c} is out of range"))?,
                ),
                None => None,
            };
            let transport = match protocol {
                None => Transport::Tcp,
                Some(p) => Transport::parse(p).ok_or_else(|| {
                    format!("port {service}: protocol {p:?} is not tcp, udp, udp,tcp or tcp,udp")
                })?,
            };
            specs.push(PortSpec {
                index,
                service_port: ServicePort(service),
                container_port,
                transport,
            });
        }
        Ok(specs)
    }
}

fn parse_label<T: serde::de::DeserializeOwned>(name: &str, value: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|e| format!("label {name}={value}: {e}"))
}

impl MarathonTask {
    /// The task, or `None` when it is not running and not being killed.
    fn into_task(self, health_checks: usize) -> Option<Task> {
        let phase = match self.state.as_deref() {
            Some("TASK_RUNNING") => TaskPhase::Running,
            Some("TASK_KILLING") => TaskPhase::Killing,
            Some(_) => TaskPhase::NotRunning,
            // Marathon before 1.0 sends no state: a started task runs.
            None if self.started_at.is_some() => TaskPhase::Running,
            None => TaskPhase::NotRunning,
        };
        let id: TaskId = self.id.parse().ok()?;
        let results = self.health_check_results.unwrap_or_default();
        let healthy = health_checks == 0
            || (results.len() >= health_checks && results.iter().all(|r| r.alive));
        let addresses: Vec<IpAddr> = self
            .ip_addresses
            .unwrap_or_default()
            .iter()
            .filter_map(|a| a.ip_address.parse().ok())
            .collect();
        let ports = self
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| u16::try_from(p).unwrap_or(0))
            .collect();
        Some(Task {
            id,
            host: self.host,
            ports,
            addresses,
            phase,
            healthy,
        })
    }
}
