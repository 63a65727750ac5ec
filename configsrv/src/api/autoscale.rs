//! `GET /v1/autoscale/decisions`: the autoscaler's decisions, newest first.

use super::ApiState;
use crate::autoscale::log::Decision;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;

/// The optional filter.
#[derive(Debug, Deserialize)]
pub struct DecisionsQuery {
    app: Option<String>,
}

/// The autoscaler's decisions (a bounded ring), newest first; empty unless
/// this configsrv runs with `--autoscale`.
#[utoipa::path(get, path = "/v1/autoscale/decisions", tag = "autoscale",
    params(("app" = Option<String>, Query, description = "only this app's decisions, e.g. `/shop/web`")),
    responses((status = 200, description = "decisions, newest first", body = Vec<Decision>)))]
pub async fn decisions(
    State(state): State<ApiState>,
    Query(q): Query<DecisionsQuery>,
) -> Json<Vec<Decision>> {
    let app = q.app.map(|a| format!("/{}", a.trim_start_matches('/')));
    Json(state.decisions.list(app.as_deref()))
}
