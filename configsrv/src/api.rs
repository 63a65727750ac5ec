//! configsrv's HTTP API (loopback by default): node configs with ETag and
//! long-poll, the node list, source status, and Prometheus metrics.

use crate::publish::http::NodeStore;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use schemas::NodeName;
use serde::Deserialize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// What the API reads.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Published node configs.
    pub store: Arc<NodeStore>,
    /// The `/v1/status` document, kept current by the state loop.
    pub status: Arc<Mutex<serde_json::Value>>,
    /// Metrics.
    pub prometheus: PrometheusHandle,
    /// The token state-changing requests need (`--api-token-file`).
    pub token: Option<String>,
    /// The token node config reads need (`--node-token-file`); none: open.
    pub node_token: Option<String>,
    /// Wakes the Git follower (push webhook).
    pub git_kick: Arc<tokio::sync::Notify>,
}

/// The router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/{node}/config", get(node_config))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
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

async fn node_config(
    State(state): State<ApiState>,
    Path(node): Path<String>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
) -> Response {
    if state.node_token.is_some() && !bearer_matches(state.node_token.as_deref(), &headers) {
        return unauthorized(
            "the node token (configsrv's --node-token-file, meshd's --config-token-file)",
        );
    }
    let Ok(node) = node.parse::<NodeName>() else {
        return (
            StatusCode::BAD_REQUEST,
            format!("`{node}` is not a node name\n"),
        )
            .into_response();
    };
    let wait = match q
        .wait
        .as_deref()
        .map(str::parse::<schemas::duration::Duration>)
    {
        None => Duration::ZERO,
        Some(Ok(d)) => d.0.min(MAX_WAIT),
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, format!("wait: {e}\n")).into_response(),
    };
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
                    p.text.clone(),
                )
                    .into_response()
            }
            (None, _) if wait.is_zero() => {
                return (
                    StatusCode::NOT_FOUND,
                    format!("no config for node {node} (yet)\n"),
                )
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
                None => (
                    StatusCode::NOT_FOUND,
                    format!("no config for node {node} (yet)\n"),
                )
                    .into_response(),
            };
        }
    }
}

async fn nodes(State(state): State<ApiState>) -> Json<serde_json::Value> {
    let list: Vec<_> = state
        .store
        .list()
        .into_iter()
        .map(|(n, g)| serde_json::json!({"node": n, "generation": g}))
        .collect();
    Json(serde_json::json!({ "nodes": list }))
}

async fn status(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(
        state
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
    )
}

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

/// The one 401 answer, naming which token is wanted.
fn unauthorized(which: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        format!("a valid `Authorization: Bearer <token>` is required: {which}\n"),
    )
        .into_response()
}

/// The push webhook: fetch the policy repository now.
async fn git_hook(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if !bearer_matches(state.token.as_deref(), &headers) {
        return unauthorized("the API token (--api-token-file)");
    }
    state.git_kick.notify_one();
    (StatusCode::ACCEPTED, "fetching the policy repository\n").into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let want = Some("tok-123");
        assert!(bearer_matches(want, &with("Bearer tok-123")));
        for wrong in [
            "Bearer tok-12",
            "Bearer tok-1234",
            "Bearer TOK-123",
            "tok-123",
            "Basic tok-123",
            "Bearer ",
        ] {
            assert!(!bearer_matches(want, &with(wrong)), "{wrong}");
        }
        assert!(!bearer_matches(want, &HeaderMap::new()));
        assert!(!bearer_matches(None, &with("Bearer ")));
        assert!(!bearer_matches(None, &with("Bearer tok-123")));
    }
}
