//! The admin endpoint (loopback by default): `/metrics` (Prometheus text),
//! `/status` (JSON), `/healthz` (the process runs) and `/ready` (a config is applied).
//! Bounded like any listener: a few connections at once, each request head
//! within a timeout, so nothing that reaches the port can pin meshd's memory.

use crate::swap::{ReloadStatus, Runtime};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;
use tokio::net::TcpListener;

/// Most admin connections open at once (scrapers and operators; more are closed).
const MAX_CONNECTIONS: usize = 64;
/// How long a request head may take, and an idle connection may wait.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Binds the admin endpoint and serves it in the background.
pub async fn spawn(
    addr: SocketAddr,
    runtime: Arc<Runtime>,
    prometheus: PrometheusHandle,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors and the like: back off instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                tracing::warn!(
                    limit = MAX_CONNECTIONS,
                    "admin connection limit reached; connection closed"
                );
                continue;
            };
            let (runtime, prometheus) = (Arc::clone(&runtime), prometheus.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |req| {
                    let reply = respond(&req, &runtime, &prometheus);
                    async move { Ok::<_, std::convert::Infallible>(reply) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(local)
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

fn respond(
    req: &Request<Incoming>,
    runtime: &Runtime,
    prometheus: &PrometheusHandle,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "the admin endpoint is read-only\n",
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let mut text = prometheus.render();
            crate::metrics::render_timings(&mut text);
            reply(StatusCode::OK, "text/plain; version=0.0.4", text)
        }
        "/status" => {
            let body = serde_json::to_vec_pretty(&status(runtime)).unwrap_or_default();
            reply(StatusCode::OK, "application/json", body)
        }
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        "/ready" => match runtime.load() {
            Some(s) => reply(
                StatusCode::OK,
                "text/plain",
                format!("ready: generation {}\n", s.generation().0),
            ),
            None => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "not ready: no config applied yet\n",
            ),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /status, /metrics, /healthz, /ready\n",
        ),
    }
}

fn reload_json(r: &ReloadStatus) -> Value {
    json!({
        "ok": r.ok,
        "generation": r.generation,
        "error": r.error,
        "at_unix_ms": r.at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
    })
}

/// The `/status` document.
pub fn status(runtime: &Runtime) -> Value {
    let snapshot = runtime.load();
    let (last_reload, listener_errors, listening_generation) = runtime.with_report(|r| {
        (
            r.last_reload.as_ref().map(reload_json),
            r.listener_errors.clone(),
            r.listening_generation,
        )
    });
    let services: Vec<Value> = snapshot
        .iter()
        .flat_map(|s| {
            s.config.services.iter().map(|svc| {
                let listen = std::net::SocketAddr::new(s.bind, svc.port.0);
                json!({
                    "app": svc.app,
                    "port": svc.port,
                    "listen": listen.to_string(),
                    "listening": !listener_errors.contains_key(&listen),
                    "listen_error": listener_errors.get(&listen),
                    "protocol": svc.protocol,
                    "balance": svc.balance,
                    "policy": svc.access.policy,
                    "default_action": svc.access.default_action,
                    "mode": svc.access.mode,
                    "backends": svc.backends.iter().map(|b| json!({
                        "address": b.address.to_string(),
                        "task": b.task,
                        "weight": b.weight,
                        "health": b.health,
                    })).collect::<Vec<_>>(),
                })
            })
        })
        .collect();
    json!({
        "node": runtime.node,
        "ready": snapshot.is_some(),
        // The generation being served: swapped in and its listeners open.
        "generation": listening_generation,
        "revision": snapshot.as_ref().map(|s| s.revision().0.clone()),
        "bind": snapshot.as_ref().map(|s| s.bind.to_string()),
        "last_reload": last_reload,
        "services": services,
        "identities": snapshot.as_ref().map_or(0, |s| s.config.identities.len()),
        "tls_errors": runtime.certs.errors().into_iter().map(|(cert, error)| json!({"cert": cert, "error": error})).collect::<Vec<_>>(),
    })
}
