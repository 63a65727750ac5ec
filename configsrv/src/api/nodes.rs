//! `GET /v1/nodes` and `GET /v1/nodes/<node>`: rendered against applied
//! generations, and each node's last scrape.

use super::error::{ApiError, ErrorBody};
use super::ApiState;
use crate::observe::coverage::{self, NodeInfo, NodeList};
use axum::extract::{Path, State};
use axum::Json;

/// Every node configsrv renders for and every active Mesos agent, with
/// `covered` (its meshd answers and runs the latest generation), and what
/// `--ensure-meshd` did last.
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes",
    responses((status = 200, description = "every node and active agent", body = NodeList)))]
pub async fn list(State(state): State<ApiState>) -> Json<NodeList> {
    Json(node_list(&state))
}

/// One node.
#[utoipa::path(get, path = "/v1/nodes/{node}", tag = "nodes",
    params(("node" = String, Path, description = "the node name")),
    responses(
        (status = 200, description = "the node", body = NodeInfo),
        (status = 404, description = "no such node", body = ErrorBody)))]
pub async fn one(
    State(state): State<ApiState>,
    Path(node): Path<String>,
) -> Result<Json<NodeInfo>, ApiError> {
    node_list(&state)
        .nodes
        .into_iter()
        .find(|n| n.node == node)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no node {node}")))
}

fn node_list(state: &ApiState) -> NodeList {
    let rendered = state.store.list();
    let window = crate::observe::snapshot(&state.observed);
    let view = std::sync::Arc::clone(&state.view.borrow());
    let mut list = coverage::with_agents(coverage::nodes(&window, &rendered), &view.agents);
    list.ensure_meshd = state.ensure_meshd.current();
    list
}
