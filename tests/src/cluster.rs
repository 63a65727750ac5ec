//! Inputs the way operators' systems produce them: Marathon's
//! `/v2/apps?embed=apps.tasks` JSON for IP-per-task apps, policy files, and
//! (for meshd-only tests) node configs in the real format.

use schemas::node_config::NodeConfigKind;
use schemas::policy::ApiVersion;
use schemas::{
    Access, Action, Backend, Balance, Generation, Health, NodeConfig, Protocol, Revision, Rule,
    Service,
};
use serde_json::{json, Value};

/// One task of an app: its id, its node (Marathon's `host`) and its own address.
#[derive(Debug, Clone)]
pub struct Task {
    /// Mesos task id.
    pub id: String,
    /// The node it runs on.
    pub host: String,
    /// Its own address (IP per task).
    pub ip: String,
}

/// One app with IP-per-task networking and one service port.
#[derive(Debug, Clone)]
pub struct App {
    /// Marathon app id.
    pub id: String,
    /// Its service port.
    pub service_port: u16,
    /// Port inside the container (the backend port on the task address).
    pub container_port: u16,
    /// Its running tasks.
    pub tasks: Vec<Task>,
}

impl App {
    /// An app with no tasks yet.
    pub fn new(id: &str, service_port: u16, container_port: u16) -> App {
        App {
            id: id.into(),
            service_port,
            container_port,
            tasks: Vec::new(),
        }
    }

    /// Adds a running task on `host` at address `ip`; returns its id.
    pub fn task(&mut self, host: &str, ip: &str) -> String {
        let id = format!(
            "{}.{:08x}-7f61-11f0-9d2b-0242ac11{:04x}",
            self.id.trim_start_matches('/').replace('/', "_"),
            self.tasks.len() + 1,
            self.service_port
        );
        self.tasks.push(Task {
            id: id.clone(),
            host: host.into(),
            ip: ip.into(),
        });
        id
    }
}

/// Marathon's `GET /v2/apps?embed=apps.tasks` body for these apps.
pub fn marathon_snapshot(apps: &[App]) -> String {
    let apps: Vec<Value> = apps
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "instances": a.tasks.len(),
                "labels": {},
                "healthChecks": [],
                "networks": [{"mode": "container", "name": "dcos"}],
                "container": {
                    "type": "DOCKER",
                    "docker": {"image": "e2e/backend:1"},
                    "portMappings": [{"containerPort": a.container_port, "servicePort": a.service_port, "protocol": "tcp"}]
                },
                "tasks": a.tasks.iter().map(|t| json!({
                    "id": t.id,
                    "appId": a.id,
                    "host": t.host,
                    "ports": [],
                    "ipAddresses": [{"ipAddress": t.ip, "protocol": "IPv4"}],
                    "state": "TASK_RUNNING",
                    "startedAt": "2026-11-01T09:00:00.000Z",
                    "healthCheckResults": []
                })).collect::<Vec<_>>()
            })
        })
        .collect();
    json!({ "apps": apps }).to_string()
}

/// A service for a hand-made node config: every source allowed from 127.0.0.0/8.
pub fn service(app: &str, port: u16, protocol: Protocol, backends: &[(&str, &str)]) -> Service {
    Service {
        app: app.parse().unwrap(),
        port: schemas::ServicePort(port),
        protocol,
        balance: Balance::RoundRobin,
        access: Access {
            policy: None,
            default_action: Action::Deny,
            mode: schemas::Mode::Enforce,
            allow: vec![Rule {
                from: None,
                from_cidr: Some("127.0.0.0/8".parse().unwrap()),
            }],
            deny: vec![],
        },
        backends: backends
            .iter()
            .map(|(addr, task)| Backend {
                address: addr.parse().unwrap(),
                task: task.parse().unwrap(),
                weight: 1,
                health: Health::Healthy,
            })
            .collect(),
        timeouts: Default::default(),
        max_connections: None,
        vhost: vec![],
        path_prefix: None,
        tls: None,
        upstream_tls: None,
    }
}

/// A node config in the real format, with its revision computed.
pub fn node_config(node: &str, address: &str, generation: u64, services: Vec<Service>) -> String {
    let mut c = NodeConfig {
        api_version: ApiVersion::V1,
        kind: NodeConfigKind::NodeConfig,
        node: node.parse().unwrap(),
        address: address.parse().unwrap(),
        generation: Generation(generation),
        revision: Revision::default(),
        policy_commit: None,
        services,
        identities: vec![],
    };
    c.revision = c.content_revision();
    c.to_yaml()
}
