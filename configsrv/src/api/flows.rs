//! `GET /v1/flows`: verdict counts per (source app, destination app).

use super::ApiState;
use crate::observe::figures::{self, FlowList};
use axum::extract::State;
use axum::Json;

/// Every flow seen in the window.
#[utoipa::path(get, path = "/v1/flows", tag = "flows",
    responses((status = 200, description = "every flow in the window", body = FlowList)))]
pub async fn list(State(state): State<ApiState>) -> Json<FlowList> {
    let window = crate::observe::snapshot(&state.observed);
    Json(FlowList {
        window_seconds: window.span.as_secs(),
        flows: figures::flows(&window),
    })
}
