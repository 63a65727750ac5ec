//! Node coverage (`GET /v1/nodes`): each node's rendered generation against
//! the one its meshd says it runs, and whether its last scrape succeeded. Pure.

use super::window::Window;
use crate::reconcile::view::AgentView;
use schemas::NodeName;
use serde::Serialize;
use utoipa::ToSchema;

/// One node.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct NodeInfo {
    /// The node name (a Marathon task host or Mesos agent).
    pub node: String,
    /// The latest generation rendered for it (same as `rendered`).
    pub generation: u64,
    /// The latest generation rendered for it.
    pub rendered: u64,
    /// The generation its meshd runs, from `/status`; null before a good scrape.
    pub applied: Option<u64>,
    /// `applied` equals `rendered`.
    pub converged: bool,
    /// The last scrape succeeded.
    pub reachable: bool,
    /// Reachable and converged: its meshd runs what configsrv rendered.
    pub covered: bool,
    /// When the last good scrape ended, Unix seconds.
    pub last_scrape: Option<u64>,
    /// meshd's refused reloads since it started (`palisade_meshd_reload_failures_total`).
    pub reload_errors: u64,
    /// meshd's last reload error, if its last reload failed.
    pub last_error: Option<String>,
    /// Why the last scrape failed.
    pub error: Option<String>,
    /// An active Mesos agent (as of the last good Mesos read).
    pub agent: bool,
    /// The agent's hostname as Mesos reports it; null for nodes that are no agent.
    pub hostname: Option<String>,
    /// Marathon tasks that run or drain on the agent.
    pub tasks: usize,
}

/// `GET /v1/nodes`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NodeList {
    /// Every node configsrv renders for, and every active Mesos agent.
    pub nodes: Vec<NodeInfo>,
    /// What `--ensure-meshd` did last; null when it is off.
    #[schema(value_type = Option<Object>)]
    pub ensure_meshd: Option<crate::ensure_meshd::KeeperStatus>,
}

/// Every node rendered for (with its latest generation), with what the window knows of it.
pub fn nodes(w: &Window, rendered: &[(NodeName, u64)]) -> NodeList {
    NodeList {
        nodes: rendered
            .iter()
            .map(|(name, rendered)| {
                let series = w.nodes.get(name.as_str());
                let status = series.and_then(|s| s.status.as_ref());
                let applied = status.and_then(|s| s.applied);
                let reachable = series.is_some_and(|s| s.reachable);
                let converged = applied == Some(*rendered);
                NodeInfo {
                    node: name.to_string(),
                    generation: *rendered,
                    rendered: *rendered,
                    applied,
                    converged,
                    reachable,
                    covered: reachable && converged,
                    last_scrape: series.and_then(|s| s.last_ok),
                    reload_errors: series
                        .and_then(|s| s.points.back())
                        .map_or(0, |p| super::whole(p.sample.reload_failures)),
                    last_error: status.and_then(|s| s.last_error.clone()),
                    error: series.and_then(|s| s.error.clone()),
                    agent: false,
                    hostname: None,
                    tasks: 0,
                }
            })
            .collect(),
        ensure_meshd: None,
    }
}

/// Marks the active agents among `list`'s nodes, and lists those that were
/// not rendered for (yet) as uncovered: every active agent shows, so a hole
/// in the mesh is never simply absent.
pub fn with_agents(mut list: NodeList, agents: &[AgentView]) -> NodeList {
    for agent in agents.iter().filter(|a| a.active) {
        let node = agent.node.clone().unwrap_or_else(|| agent.hostname.clone());
        match list.nodes.iter_mut().find(|n| n.node == node) {
            Some(n) => {
                n.agent = true;
                n.hostname = Some(agent.hostname.clone());
                n.tasks = agent.tasks;
            }
            None => list.nodes.push(NodeInfo {
                node,
                generation: 0,
                rendered: 0,
                applied: None,
                converged: false,
                reachable: false,
                covered: false,
                last_scrape: None,
                reload_errors: 0,
                last_error: None,
                error: Some("nothing rendered for this agent yet".into()),
                agent: true,
                hostname: Some(agent.hostname.clone()),
                tasks: agent.tasks,
            }),
        }
    }
    list.nodes.sort_by(|a, b| a.node.cmp(&b.node));
    list
}

/// Nodes whose meshd does not run the latest generation or does not answer.
pub fn uncovered(list: &NodeList) -> usize {
    list.nodes.iter().filter(|n| !n.covered).count()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn agent(host: &str, active: bool, tasks: usize) -> AgentView {
        AgentView {
            hostname: host.into(),
            node: NodeName::sanitise(host).map(|n| n.to_string()),
            active,
            tasks,
        }
    }

    #[test]
    fn every_active_agent_is_listed_and_marked_rendered_or_not() {
        let w = Window::new(
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(1),
        );
        let rendered = [
            ("10.0.1.5".parse().unwrap(), 7),
            ("task-host".parse().unwrap(), 7),
        ];
        let agents = [
            agent("10.0.1.5", true, 2),
            agent("10.0.1.9", true, 0),
            agent("10.0.1.10", false, 0),
        ];
        let list = with_agents(nodes(&w, &rendered), &agents);
        let names: Vec<&str> = list.nodes.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(names, ["10.0.1.5", "10.0.1.9", "task-host"]);
        let a = &list.nodes[0];
        assert!(a.agent && a.tasks == 2 && a.hostname.as_deref() == Some("10.0.1.5"));
        assert!(!a.covered, "never scraped");
        let new = &list.nodes[1];
        assert!(new.agent && !new.covered && new.rendered == 0 && new.error.is_some());
        let host = &list.nodes[2];
        assert!(!host.agent && host.hostname.is_none());
        assert_eq!(uncovered(&list), 3);
    }
}
