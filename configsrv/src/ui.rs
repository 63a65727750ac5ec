//! The web UI: one HTML page, its script modules and its style sheet,
//! embedded in the binary so that configsrv serves it with nothing to
//! install and nothing fetched from the internet (clusters are often
//! air-gapped). The page reads the JSON API (`/v1/...`) from the same
//! origin and renders everything in the browser; there is no build step.
//!
//! Every answer carries a strict Content-Security-Policy: the page's own
//! scripts only, no inline script, no other origin. App ids come from
//! Marathon and may hold markup; the script renders them as text, and the
//! policy is the second line of defence if it ever did not.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The page and every asset it loads: (name under `/ui/`, content type, body).
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../ui/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../ui/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/app.js"),
    ),
    (
        "util.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/util.js"),
    ),
    (
        "graph.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/graph.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/charts.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../ui/favicon.svg"),
    ),
];

/// Same origin only (the proposed policy's download is a `blob:` link the
/// page makes itself, which navigation allows); no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self'; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The UI's routes, for the API router to merge: `/` (the page), `/ui/`
/// (the same page) and `/ui/<asset>`. Generic over the state so that it
/// merges into any router without touching the API's state type.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/", get(index))
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/{name}", get(asset))
        .route("/favicon.ico", get(favicon))
}

async fn index() -> Response {
    serve("index.html")
}

async fn favicon() -> Response {
    serve("favicon.svg")
}

async fn asset(Path(name): Path<String>) -> Response {
    serve(&name)
}

fn serve(name: &str) -> Response {
    let Some((_, content_type, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such UI asset\n").into_response();
    };
    let mut response = (*body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The assets change with the binary, not while it runs; revalidating on
    // every load keeps an upgraded configsrv from serving a stale script mix.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_asset_the_page_loads_is_embedded() {
        let index = ASSETS[0].2;
        for needle in ["/ui/style.css", "/ui/app.js", "/ui/favicon.svg"] {
            assert!(index.contains(needle), "index.html loads {needle}");
        }
        // Modules import each other by relative name; each must be served.
        for (_, _, body) in ASSETS {
            for (i, _) in body.match_indices("from './") {
                let rest = &body[i + "from './".len()..];
                let name = &rest[..rest.find('\'').unwrap()];
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == name),
                    "an import names `{name}`, which is not embedded"
                );
            }
        }
    }

    #[test]
    fn nothing_is_fetched_from_another_origin() {
        for (name, _, body) in ASSETS {
            for scheme in ["http://", "https://", "//fonts.", "//cdn"] {
                // SVG's namespace URI is a name, not a fetch.
                let fetched = body
                    .match_indices(scheme)
                    .any(|(i, _)| !body[i..].starts_with("http://www.w3.org/"));
                assert!(!fetched, "{name} refers to {scheme}");
            }
        }
    }

    #[tokio::test]
    async fn assets_are_served_with_their_type_and_a_strict_policy() {
        let r = serve("app.js");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript"));
        assert!(r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"));
        assert_eq!(serve("../Cargo.toml").status(), StatusCode::NOT_FOUND);
        assert_eq!(index().await.status(), StatusCode::OK);
    }
}
