//! The cluster as configsrv knows it: apps with their tasks, and agents. Pure
//! values; sources build it, the renderer reads it.

use schemas::{AppId, Balance, Protocol, ServicePort, TaskId};
use std::net::IpAddr;

/// How an app's tasks are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Networking {
    /// Tasks share the agent's address; backends are `host:ports[i]`.
    Host,
    /// Docker bridge: backends are `host:ports[i]`; the bridge address identifies the source.
    Bridge,
    /// IP per task: backends are `ipAddresses[0]:containerPort`.
    Container,
}

/// One of an app's service ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// Position in Marathon's port list; selects `task.ports[index]`.
    pub index: usize,
    /// The port every node binds.
    pub service_port: ServicePort,
    /// The port inside the container, for IP-per-task apps.
    pub container_port: Option<u16>,
}

/// Where a task is in its life, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskPhase {
    /// Running: may take traffic once healthy.
    Running,
    /// Being killed: finishes in-flight work, takes no new work.
    Killing,
    /// Staging, starting, or gone.
    NotRunning,
}

/// One task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Mesos task id.
    pub id: TaskId,
    /// The agent it runs on, as Marathon reports it.
    pub host: String,
    /// Host ports, one per service port; 0 where unknown.
    pub ports: Vec<u16>,
    /// The task's own addresses.
    pub addresses: Vec<IpAddr>,
    /// Life-cycle phase.
    pub phase: TaskPhase,
    /// Every Marathon health check passes (true when there are none).
    pub healthy: bool,
}

/// One Marathon app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// App id.
    pub id: AppId,
    /// Networking mode.
    pub networking: Networking,
    /// Service ports to bind.
    pub service_ports: Vec<PortSpec>,
    /// Protocol from the app's labels.
    pub protocol: Option<Protocol>,
    /// Balancing from the app's labels.
    pub balance: Option<Balance>,
    /// Its tasks.
    pub tasks: Vec<Task>,
}

/// One Mesos agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Hostname as Mesos reports it (what Marathon calls `host`).
    pub hostname: String,
    /// Address from the agent's pid.
    pub address: Option<IpAddr>,
    /// Whether Mesos counts it as active.
    pub active: bool,
}

/// Apps and agents, in a canonical order so rendering ignores input order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterState {
    /// Apps sorted by id.
    pub apps: Vec<App>,
    /// Agents sorted by hostname.
    pub agents: Vec<Agent>,
}

impl ClusterState {
    /// Sorts apps, tasks and agents so the same cluster always renders the same bytes.
    pub fn new(mut apps: Vec<App>, mut agents: Vec<Agent>) -> ClusterState {
        apps.sort_by(|a, b| a.id.cmp(&b.id));
        for app in &mut apps {
            app.tasks.sort_by(|a, b| a.id.cmp(&b.id));
        }
        agents.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        ClusterState { apps, agents }
    }
}
