//! `GET /v1/policy` (the policy in force and its problems),
//! `GET /v1/policy/proposed` (allow-lists learned from traffic) and
//! `POST /v1/policy/impact` (what candidate files would change; token).

use super::error::{ApiError, ErrorBody};
use super::{bearer_matches, ApiState};
use crate::observe::figures;
use crate::observe::impact::{self, ImpactReport, ImpactRequest};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// One policy file and its first problem.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyFileInfo {
    /// The file, as configsrv read it.
    pub file: String,
    /// Its problems, `file:line:col: message` joined by `; `, or null.
    pub error: Option<String>,
}

/// `GET /v1/policy`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PolicyInForce {
    /// The policy repository commit (`--policies-git`), or null.
    pub commit: Option<String>,
    /// The cluster defaults.
    #[schema(value_type = Object)]
    pub defaults: schemas::policy::Defaults,
    /// Every app and group entry in force, merged.
    #[schema(value_type = Object)]
    pub apps: BTreeMap<String, schemas::policy::AppPolicy>,
    /// Problems per app id (policy entries and render).
    pub errors: BTreeMap<String, Vec<String>>,
    /// Every file with an entry in force or a problem.
    pub files: Vec<PolicyFileInfo>,
}

/// The policy in force, per-app errors and files.
#[utoipa::path(get, path = "/v1/policy", tag = "policy",
    responses((status = 200, description = "the policy in force", body = PolicyInForce)))]
pub async fn in_force(State(state): State<ApiState>) -> Json<PolicyInForce> {
    let view = state.view.borrow().clone();
    let set = &view.policy.set;
    let mut files: BTreeMap<String, Vec<String>> = set
        .origins
        .values()
        .map(|o| (o.file.clone(), Vec::new()))
        .collect();
    for problem in &view.policy.problems {
        // `file:line:col: message`: the longest known file it names, else the text before `:`.
        let file = files
            .keys()
            .filter(|f| problem.starts_with(&format!("{f}:")))
            .max_by_key(|f| f.len())
            .cloned()
            .unwrap_or_else(|| problem.split(':').next().unwrap_or_default().to_owned());
        files.entry(file).or_default().push(problem.clone());
    }
    Json(PolicyInForce {
        commit: set.commit.clone(),
        defaults: set.defaults,
        apps: set
            .apps
            .iter()
            .map(|(p, a)| (p.as_str().to_owned(), a.clone()))
            .collect(),
        errors: view.app_errors.clone(),
        files: files
            .into_iter()
            .map(|(file, e)| PolicyFileInfo {
                file,
                error: (!e.is_empty()).then(|| e.join("; ")),
            })
            .collect(),
    })
}

/// A policy file naming, per destination app, exactly the source apps seen in the window.
#[utoipa::path(get, path = "/v1/policy/proposed", tag = "policy",
    responses((status = 200, description = "a policy file that `configsrv validate` accepts",
        content_type = "application/yaml", body = String)))]
pub async fn proposed(State(state): State<ApiState>) -> impl IntoResponse {
    let flows = {
        let window = crate::observe::snapshot(&state.observed);
        figures::flows(&window)
    };
    (
        [(header::CONTENT_TYPE, "application/yaml")],
        impact::propose(&flows),
    )
}

/// Replays the flows of the window through the policy in force and the candidate files.
#[utoipa::path(post, path = "/v1/policy/impact", tag = "policy",
    request_body = ImpactRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the flows whose verdict would change", body = ImpactReport),
        (status = 400, description = "the candidate is invalid", body = ErrorBody),
        (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn impact(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<ImpactRequest>, JsonRejection>,
) -> Result<Json<ImpactReport>, ApiError> {
    if !bearer_matches(state.token.as_deref(), &headers) {
        return Err(ApiError::unauthorized("the API token (--api-token-file)"));
    }
    let Json(request) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let candidate = schemas::PolicySet::from_files(
        request
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.text.as_str())),
    )
    .map_err(|errors| {
        ApiError::bad_request(format!(
            "the candidate policy has {} problem(s)",
            errors.len()
        ))
        .with_problems(errors.iter().map(ToString::to_string).collect())
    })?;
    let view = state.view.borrow().clone();
    let flows = {
        let window = crate::observe::snapshot(&state.observed);
        figures::flows(&window)
    };
    let addresses = |app: &schemas::AppId| {
        view.app(app.as_str())
            .map(|a| a.addresses.clone())
            .unwrap_or_default()
    };
    Ok(Json(impact::replay(
        &flows,
        &view.policy.set,
        &candidate,
        &addresses,
    )))
}
