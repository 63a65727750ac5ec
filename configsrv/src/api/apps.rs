//! `GET /v1/apps` and `GET /v1/apps/<app id>`: per-app figures from the window.

use super::error::{ApiError, ErrorBody};
use super::ApiState;
use crate::observe::figures::{self, AppDetail, AppList};
use axum::extract::{Path, State};
use axum::Json;

/// Every app with its figures over the window.
#[utoipa::path(get, path = "/v1/apps", tag = "apps",
    responses((status = 200, description = "every app", body = AppList)))]
pub async fn list(State(state): State<ApiState>) -> Json<AppList> {
    let view = state.view.borrow().clone();
    let window = crate::observe::snapshot(&state.observed);
    Json(figures::apps(&window, &view))
}

/// One app: its figures, timing breakdown, series, backends, sources and errors.
#[utoipa::path(get, path = "/v1/apps/{id}", tag = "apps",
    params(("id" = String, Path, description = "the app id without its leading slash, e.g. `shop/web`")),
    responses(
        (status = 200, description = "the app", body = AppDetail),
        (status = 404, description = "no such app", body = ErrorBody)))]
pub async fn one(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<AppDetail>, ApiError> {
    let id = format!("/{}", id.trim_start_matches('/'));
    let view = state.view.borrow().clone();
    let app = view
        .app(&id)
        .ok_or_else(|| ApiError::not_found(format!("no app {id}")))?;
    let window = crate::observe::snapshot(&state.observed);
    Ok(Json(figures::detail(&window, &view, app)))
}
