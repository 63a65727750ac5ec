//! Node coverage (`GET /v1/nodes`): each node's rendered generation against
//! the one its meshd says it runs, and whether its last scrape succeeded. Pure.

use super::window::Window;
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
}

/// `GET /v1/nodes`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NodeList {
    /// Every node configsrv renders for.
    pub nodes: Vec<NodeInfo>,
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
                }
            })
            .collect(),
    }
}

/// Nodes whose meshd does not run the latest generation or does not answer.
pub fn uncovered(list: &NodeList) -> usize {
    list.nodes.iter().filter(|n| !n.covered).count()
}
