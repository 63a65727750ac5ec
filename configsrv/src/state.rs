//! The cluster as configsrv knows it: apps with their tasks, and agents. Pure
//! values; sources build it, events update it (`apply`), the renderer reads it.

use crate::sources::marathon::events::{task_of_instance, Event, TaskStatus};
use schemas::{AppId, Balance, NodeName, Protocol, ServicePort, TaskId};
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
    /// Which transports Marathon declares for it (`protocol` of the port).
    pub transport: Transport,
}

/// A port's Marathon `protocol`: `tcp` (the default), `udp`, or both
/// (`udp,tcp` and `tcp,udp`, Marathon takes either spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// TCP only.
    #[default]
    Tcp,
    /// UDP only.
    Udp,
    /// TCP and UDP on the same port number.
    Both,
}

impl Transport {
    /// Reads Marathon's spelling; `None` for anything else.
    pub fn parse(protocol: &str) -> Option<Transport> {
        let (mut tcp, mut udp) = (false, false);
        for part in protocol.split(',') {
            match part.trim().to_ascii_lowercase().as_str() {
                "tcp" => tcp = true,
                "udp" => udp = true,
                _ => return None,
            }
        }
        match (tcp, udp) {
            (true, false) => Some(Transport::Tcp),
            (false, true) => Some(Transport::Udp),
            (true, true) => Some(Transport::Both),
            (false, false) => None,
        }
    }

    /// Whether TCP is served on the port.
    pub fn tcp(self) -> bool {
        self != Transport::Udp
    }

    /// Whether UDP is served on the port.
    pub fn udp(self) -> bool {
        self != Transport::Tcp
    }
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
    /// Edge host names from the app's labels (`PALISADE_VHOST`, else marathon-lb's `HAPROXY_0_VHOST`).
    pub vhost: Vec<String>,
    /// How many Marathon health checks the app has; a new task with any is
    /// unhealthy until Marathon says otherwise.
    pub health_checks: usize,
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
    /// Nodes whose meshd asks for its config, sorted: each gets a config
    /// even with no task or agent behind it (`crate::followers`).
    pub followers: Vec<NodeName>,
}

impl ClusterState {
    /// Sorts apps, tasks and agents so the same cluster always renders the same bytes.
    pub fn new(mut apps: Vec<App>, mut agents: Vec<Agent>) -> ClusterState {
        apps.sort_by(|a, b| a.id.cmp(&b.id));
        for app in &mut apps {
            app.tasks.sort_by(|a, b| a.id.cmp(&b.id));
        }
        agents.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        ClusterState {
            apps,
            agents,
            followers: Vec::new(),
        }
    }

    /// The same cluster with these followers.
    pub fn with_followers(mut self, mut followers: Vec<NodeName>) -> ClusterState {
        followers.sort();
        followers.dedup();
        self.followers = followers;
        self
    }
}

/// What applying an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The state changed: render again.
    Changed,
    /// Nothing routing-relevant changed.
    Unchanged,
    /// App definitions changed: only a full read of the apps can tell how.
    NeedsResync,
}

impl ClusterState {
    /// Applies one Marathon event: task kills drain or remove the task at
    /// once, new running tasks join, health changes gate tasks in or out.
    pub fn apply(&mut self, event: &Event) -> Applied {
        match event {
            Event::TaskStatus(t) => self.apply_status(t),
            Event::Health {
                app,
                instance,
                alive,
            } => {
                let Some(app) = self.apps.iter_mut().find(|a| a.id.as_str() == app) else {
                    return Applied::Unchanged;
                };
                let mut changed = false;
                for task in app
                    .tasks
                    .iter_mut()
                    .filter(|t| task_of_instance(t.id.as_str(), instance))
                {
                    changed |= task.healthy != *alive;
                    task.healthy = *alive;
                }
                if changed {
                    Applied::Changed
                } else {
                    Applied::Unchanged
                }
            }
            Event::AppsChanged { .. } => Applied::NeedsResync,
            Event::Attached | Event::Other(_) => Applied::Unchanged,
        }
    }

    fn apply_status(&mut self, t: &TaskStatus) -> Applied {
        let Some(app) = self.apps.iter_mut().find(|a| a.id.as_str() == t.app_id) else {
            // A task of an app we have not read yet: the next full read brings it.
            return if t.task_status == "TASK_RUNNING" {
                Applied::NeedsResync
            } else {
                Applied::Unchanged
            };
        };
        let existing = app.tasks.iter().position(|x| x.id.as_str() == t.task_id);
        match (t.task_status.as_str(), existing) {
            ("TASK_RUNNING", Some(i)) => {
                let task = &mut app.tasks[i];
                let was = task.phase;
                task.phase = TaskPhase::Running;
                if was == TaskPhase::Running {
                    Applied::Unchanged
                } else {
                    Applied::Changed
                }
            }
            ("TASK_RUNNING", None) => {
                let Ok(id) = t.task_id.parse() else {
                    return Applied::Unchanged;
                };
                app.tasks.push(Task {
                    id,
                    host: t.host.clone(),
                    ports: t
                        .ports
                        .iter()
                        .map(|p| u16::try_from(*p).unwrap_or(0))
                        .collect(),
                    addresses: t
                        .ip_addresses
                        .iter()
                        .filter_map(|a| a.ip_address.parse().ok())
                        .collect(),
                    phase: TaskPhase::Running,
                    // Ready before routed: with health checks, wait for Marathon's word.
                    healthy: app.health_checks == 0,
                });
                app.tasks.sort_by(|a, b| a.id.cmp(&b.id));
                Applied::Changed
            }
            ("TASK_KILLING", Some(i)) => {
                let changed = app.tasks[i].phase != TaskPhase::Killing;
                app.tasks[i].phase = TaskPhase::Killing;
                if changed {
                    Applied::Changed
                } else {
                    Applied::Unchanged
                }
            }
            (
                "TASK_KILLED"
                | "TASK_FAILED"
                | "TASK_LOST"
                | "TASK_FINISHED"
                | "TASK_ERROR"
                | "TASK_GONE"
                | "TASK_DROPPED"
                | "TASK_UNREACHABLE"
                | "TASK_GONE_BY_OPERATOR"
                | "TASK_UNKNOWN",
                Some(i),
            ) => {
                app.tasks.remove(i);
                Applied::Changed
            }
            _ => Applied::Unchanged,
        }
    }
}

/// The staleness guard of invariant 1: whether a full read of Marathon may
/// replace the state. An empty app list after a non-empty one is suspicious
/// until `CONFIRM_EMPTY` reads in a row agree.
pub fn accept_full_read(
    previous_apps: usize,
    new_apps: usize,
    empty_reads_in_a_row: u32,
) -> Result<(), String> {
    if new_apps == 0 && previous_apps > 0 && empty_reads_in_a_row < CONFIRM_EMPTY {
        return Err(format!(
            "Marathon returned no apps after {previous_apps}; read {empty_reads_in_a_row} of {CONFIRM_EMPTY} needed to believe it"
        ));
    }
    Ok(())
}

/// Empty full reads in a row that confirm a cluster really has no apps.
pub const CONFIRM_EMPTY: u32 = 3;

/// Keeps the last good version of every app that could not be read this
/// time, so one bad app never loses its routes.
pub fn keep_last_good(
    previous: &ClusterState,
    mut apps: Vec<App>,
    broken: &[crate::error::AppError],
) -> Vec<App> {
    for e in broken {
        if let Some(old) = previous.apps.iter().find(|a| a.id.as_str() == e.app) {
            if !apps.iter().any(|a| a.id == old.id) {
                apps.push(old.clone());
            }
        }
    }
    apps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::marathon::events::parse_event;

    fn state(health_checks: usize) -> ClusterState {
        ClusterState::new(
            vec![App {
                id: "/web".parse().unwrap(),
                networking: Networking::Container,
                service_ports: vec![],
                protocol: None,
                balance: None,
                vhost: vec![],
                health_checks,
                tasks: vec![Task {
                    id: "web.1".parse().unwrap(),
                    host: "127.0.0.2".into(),
                    ports: vec![],
                    addresses: vec!["127.0.1.1".parse().unwrap()],
                    phase: TaskPhase::Running,
                    healthy: true,
                }],
            }],
            vec![],
        )
    }

    fn status(task: &str, status: &str) -> Event {
        parse_event(&format!(
            r#"{{"eventType":"status_update_event","appId":"/web","taskId":"{task}","taskStatus":"{status}","host":"127.0.0.2","ports":[],"ipAddresses":[{{"ipAddress":"127.0.1.2","protocol":"IPv4"}}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_kill_drains_then_removes_the_task_without_a_resync() {
        let mut s = state(0);
        assert_eq!(s.apply(&status("web.1", "TASK_KILLING")), Applied::Changed);
        assert_eq!(s.apps[0].tasks[0].phase, TaskPhase::Killing);
        assert_eq!(
            s.apply(&status("web.1", "TASK_KILLING")),
            Applied::Unchanged
        );
        assert_eq!(s.apply(&status("web.1", "TASK_KILLED")), Applied::Changed);
        assert!(s.apps[0].tasks.is_empty());
    }

    #[test]
    fn a_new_task_joins_healthy_only_when_the_app_has_no_health_checks() {
        let mut s = state(0);
        assert_eq!(s.apply(&status("web.2", "TASK_RUNNING")), Applied::Changed);
        assert!(s.apps[0].tasks[1].healthy);
        let mut s = state(1);
        s.apply(&status("web.2", "TASK_RUNNING"));
        assert!(!s.apps[0].tasks[1].healthy, "ready before routed");
        let health = parse_event(r#"{"eventType":"health_status_changed_event","appId":"/web","taskId":"web.2","alive":true}"#).unwrap();
        assert_eq!(s.apply(&health), Applied::Changed);
        assert!(s.apps[0].tasks[1].healthy);
    }

    #[test]
    fn definition_changes_and_unknown_apps_ask_for_a_full_read() {
        let mut s = state(0);
        let deploy = parse_event(r#"{"eventType":"deployment_success","id":"d1"}"#).unwrap();
        assert_eq!(s.apply(&deploy), Applied::NeedsResync);
        let other = parse_event(r#"{"eventType":"status_update_event","appId":"/new","taskId":"new.1","taskStatus":"TASK_RUNNING"}"#).unwrap();
        assert_eq!(s.apply(&other), Applied::NeedsResync);
    }

    #[test]
    fn an_empty_read_after_a_full_one_needs_confirmation() {
        assert!(accept_full_read(0, 0, 1).is_ok());
        assert!(accept_full_read(5, 3, 0).is_ok());
        assert!(accept_full_read(5, 0, 1).is_err());
        assert!(accept_full_read(5, 0, CONFIRM_EMPTY - 1).is_err());
        assert!(accept_full_read(5, 0, CONFIRM_EMPTY).is_ok());
    }

    #[test]
    fn an_app_that_cannot_be_read_keeps_its_last_good_version() {
        let previous = state(0);
        let broken = [crate::error::AppError::new("/web", "bad label")];
        let kept = keep_last_good(&previous, vec![], &broken);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].id.as_str(), "/web");
        assert!(keep_last_good(&previous, vec![], &[]).is_empty());
    }
}
