//! A stand-in for configsrv's `GET /v1/nodes/<node>/config`, serving
//! whatever body a test sets, with ETags and a short long-poll: meshd's side
//! of the channel meets bodies configsrv never makes (too big, generations
//! far ahead of any clock).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use std::time::Duration;
use tokio::sync::watch;

/// A running stand-in; serves 404 until a body is set.
#[derive(Debug, Clone)]
pub struct ConfigServer {
    /// Its base URL, for `--config-url`.
    pub url: String,
    body: watch::Sender<(u64, Bytes)>,
}

impl ConfigServer {
    /// Starts on `addr` (a 127.0.0.x address).
    pub async fn start(addr: &str) -> ConfigServer {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let body = watch::channel((0, Bytes::new())).0;
        let app = Router::new()
            .route("/v1/nodes/{node}/config", get(node_config))
            .with_state(body.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ConfigServer { url, body }
    }

    /// Serves `body` from now on, under a new ETag; wakes waiting polls.
    pub fn set(&self, body: impl Into<Bytes>) {
        let body = body.into();
        self.body.send_modify(|(n, b)| {
            *n += 1;
            *b = body;
        });
    }
}

async fn node_config(
    State(body): State<watch::Sender<(u64, Bytes)>>,
    headers: HeaderMap,
) -> Response {
    let seen = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut rx = body.subscribe();
    loop {
        let (n, text) = rx.borrow_and_update().clone();
        let etag = format!("\"{n}\"");
        if n > 0 && seen.as_deref() != Some(etag.as_str()) {
            return ([(header::ETAG, etag)], text).into_response();
        }
        // Unchanged or not set: wait a little for a change, as configsrv does.
        if tokio::time::timeout(Duration::from_secs(1), rx.changed())
            .await
            .is_err()
        {
            return if n == 0 {
                StatusCode::NOT_FOUND.into_response()
            } else {
                (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response()
            };
        }
    }
}
