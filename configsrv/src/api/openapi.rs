//! `GET /v1/openapi.json`: the API described from the handlers' own types.
//! A test checks that this document, the router and docs/api.md list the same routes.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The OpenAPI 3 document of configsrv's API.
#[derive(OpenApi)]
#[openapi(
    info(title = "palisade configsrv", description = "configsrv's REST API: node configs, apps, nodes, flows, policy, autoscaling"),
    paths(
        super::apps::list,
        super::apps::one,
        super::nodes::list,
        super::nodes::one,
        super::node_config,
        super::flows::list,
        super::policy::in_force,
        super::policy::proposed,
        super::policy::impact,
        super::autoscale::decisions,
        super::status,
        super::git_hook,
        super::metrics,
        super::healthz,
        openapi_json,
    ),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "the OpenAPI 3 document", body = Object)))]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
