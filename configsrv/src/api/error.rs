//! The API's one error answer: `{"error": "...", "problems": [...]}` with
//! 400, 401 or 404. Every handler's failure becomes a response here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// The JSON body of every error answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong, naming the app id, node or field.
    pub error: String,
    /// Each problem of a candidate policy, `file:line:col: message`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// A failed request.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    /// 404 naming what was not found.
    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, what)
    }

    /// 400 naming what is wrong.
    pub fn bad_request(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, what)
    }

    /// 401 naming the token wanted.
    pub fn unauthorized(which: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("a valid `Authorization: Bearer <token>` is required: {which}"),
        )
    }

    /// Adds the problems of a candidate policy.
    pub fn with_problems(mut self, problems: Vec<String>) -> ApiError {
        self.body.problems = problems;
        self
    }

    fn new(status: StatusCode, what: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: what.into(),
                problems: Vec::new(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
