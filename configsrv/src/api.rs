//! configsrv's HTTP API (loopback by default): node configs with ETag and
//! long-poll, source status and Prometheus metrics here; apps, nodes, flows
//! and policy from the collector's window in `api/`, one file per resource;
//! the OpenAPI document in `api/openapi.rs`; every error answer in `api/error.rs`.

mod apps;
mod autoscale;
pub mod error;
mod flows;
mod nodes;
pub mod openapi;
mod policy;
#[cfg(test)]
mod tests;

use crate::observe::Observed;
use error::{ApiError, ErrorBody};

use crate::publish::http::NodeStore;
use crate::reconcile::view::{Status, View};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use schemas::NodeName;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What the API reads.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Published node configs.
    pub store: Arc<NodeStore>,
    /// The reconciler's latest picture (`/v1/status` and friends).
    pub view: watch::Receiver<Arc<View>>,
    /// Metrics.
    pub prometheus: PrometheusHandle,
    /// The token state-changing requests need (`--api-token-file`).
    pub token: Option<String>,
    /// The token node config reads need (`--node-token-file`); none: open.
    pub node_token: Option<String>,
    /// Wakes the Git follower (push webhook).
    pub git_kick: Arc<tokio::sync::Notify>,
    /// The collector's window.
    pub observed: Observed,
    /// The nodes whose meshd asks for its config.
    pub followers: Arc<crate::followers::Followers>,
    /// Wakes the state loop when a new node starts following.
    pub new_follower: Arc<tokio::sync::Notify>,
    /// What `--ensure-meshd` did last (`GET /v1/nodes`).
    pub ensure_meshd: crate::ensure_meshd::Shared,
    /// The autoscaler's decisions (empty without `--autoscale`).
    pub decisions: Arc<crate::autoscale::log::DecisionLog>,
}

/// The router.
pub fn router(state: ApiState) -> Router {
    // Every route here is in `openapi::ApiDoc` (a test checks both ways).
    Router::new()
        .route("/v1/apps", get(apps::list))
        .route("/v1/apps/{*id}", get(apps::one))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/nodes/{node}", get(nodes::one))
        .route("/v1/nodes/{node}/config", get(node_config))
        .route("/v1/flows", get(flows::list))
        .route("/v1/policy", get(policy::in_force))
        .route("/v1/policy/proposed", get(policy::proposed))
        .route("/v1/policy/impact", axum::routing::post(policy::impact))
        .route("/v1/autoscale/decisions", get(autoscale::decisions))
        .route("/v1/status", get(status))
        .route("/v1/openapi.json", get(openapi::openapi_json))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/v1/hooks/git", axum::routing::post(git_hook))
        .with_state(state)
        .merge(crate::ui::router())
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    wait: Option<String>,
}

/// Longest long-poll a client may ask for.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// A node's config (YAML), with an ETag; `?wait=30s` with `If-None-Match` long-polls.
#[utoipa::path(get, path = "/v1/nodes/{node}/config", tag = "nodes",
    params(("node" = String, Path, description = "the node name"),
        ("wait" = Option<String>, Query, description = "long-poll up to this long, e.g. `30s`")),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "the config", content_type = "application/yaml", body = String),
        (status = 304, description = "unchanged within `wait`"),
        (status = 400, description = "bad node name or wait", body = ErrorBody),
        (status = 401, description = "--node-token-file is set and no valid token came", body = ErrorBody),
        (status = 404, description = "no config for the node (yet)", body = ErrorBody)))]
async fn node_config(
    State(state): State<ApiState>,
    Path(node): Path<String>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
) -> Response {
    if state.node_token.is_some() && !bearer_matches(state.node_token.as_deref(), &headers) {
        return ApiError::unauthorized(
            "the node token (configsrv's --node-token-file, meshd's --config-token-file)",
        )
        .into_response();
    }
    let Ok(node) = node.parse::<NodeName>() else {
        return ApiError::bad_request(format!("`{node}` is not a node name")).into_response();
    };
    let wait = match q
        .wait
        .as_deref()
        .map(str::parse::<schemas::duration::Duration>)
    {
        None => Duration::ZERO,
        Some(Ok(d)) => d.0.min(MAX_WAIT),
        Some(Err(e)) => return ApiError::bad_request(format!("wait: {e}")).into_response(),
    };
    if state.followers.note(&node, std::time::Instant::now()) {
        state.new_follower.notify_one();
    }
    let seen = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut changes = state.store.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let current = state.store.get(&node);
        match (&current, &seen) {
            (Some(p), Some(etag)) if &p.etag == etag => {}
            (Some(p), _) => {
                return (
                    [
                        (header::ETAG, p.etag.clone()),
                        (header::CONTENT_TYPE, "application/yaml".into()),
                    ],
                    axum::body::Body::new(crate::publish::http::Segments::new(p.text.clone())),
                )
                    .into_response()
            }
            (None, _) if wait.is_zero() => {
                return ApiError::not_found(format!("no config for node {node} (yet)"))
                    .into_response()
            }
            (None, _) => {}
        }
        // Unchanged (or not there yet): wait for a change, up to the deadline.
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            return match current {
                Some(p) => (StatusCode::NOT_MODIFIED, [(header::ETAG, p.etag)]).into_response(),
                None => {
                    ApiError::not_found(format!("no config for node {node} (yet)")).into_response()
                }
            };
        }
    }
}

/// Sources' staleness and errors, counts, renders, the policy commit and the publish error.
#[utoipa::path(get, path = "/v1/status", tag = "meta",
    responses((status = 200, description = "configsrv's status", body = Object)))]
async fn status(State(state): State<ApiState>) -> Json<Status> {
    Json(state.view.borrow().status.clone())
}

/// configsrv's own metrics, Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<ApiState>) -> String {
    state.prometheus.render()
}

/// Whether a request carries `Authorization: Bearer <want>`; with no token
/// configured, none matches. Compared in constant time, so the answer's
/// timing tells nothing about how much of a guess was right.
fn bearer_matches(want: Option<&str>, headers: &HeaderMap) -> bool {
    use subtle::ConstantTimeEq;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (want, given) {
        // `ct_eq` on slices of different lengths is false at once: only the length shows.
        (Some(want), Some(got)) => bool::from(want.as_bytes().ct_eq(got.as_bytes())),
        _ => false,
    }
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses((status = 200, description = "configsrv runs", content_type = "text/plain", body = String)))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// The push webhook: fetch the policy repository now.
#[utoipa::path(post, path = "/v1/hooks/git", tag = "policy",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "fetching the policy repository"),
        (status = 401, description = "no valid token", body = ErrorBody)))]
async fn git_hook(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if !bearer_matches(state.token.as_deref(), &headers) {
        return ApiError::unauthorized("the API token (--api-token-file)").into_response();
    }
    state.git_kick.notify_one();
    (StatusCode::ACCEPTED, "fetching the policy repository\n").into_response()
}
