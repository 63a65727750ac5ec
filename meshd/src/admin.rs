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
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
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
    let (last_reload, listener_errors, listening_generation, udp_sessions) =
        runtime.with_report(|r| {
            (
                r.last_reload.as_ref().map(reload_json),
                r.listener_errors.clone(),
                r.listening_generation,
                r.udp_sessions
                    .iter()
                    .map(|(a, n)| (*a, n.load(Ordering::Relaxed)))
                    .collect::<BTreeMap<_, _>>(),
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
        "ports": snapshot.as_ref().map_or_else(Vec::new, |s| ports(s, &listener_errors, &udp_sessions)),
        "identities": snapshot.as_ref().map_or(0, |s| s.config.identities.len()),
        "tls_errors": runtime.certs.errors().into_iter().map(|(cert, error)| json!({"cert": cert, "error": error})).collect::<Vec<_>>(),
    })
}

/// `/status`'s `ports`: each service port once, with what is bound on it
/// (`protocols`: `tcp`, or `http` and `h2` on one socket, and `udp`), its
/// TCP side and its UDP side with the sessions open now.
fn ports(
    snapshot: &crate::snapshot::Snapshot,
    listener_errors: &BTreeMap<SocketAddr, String>,
    udp_sessions: &BTreeMap<SocketAddr, usize>,
) -> Vec<Value> {
    let addrs: BTreeSet<SocketAddr> = snapshot
        .routes
        .keys()
        .chain(snapshot.udp_routes.keys())
        .copied()
        .collect();
    addrs
        .into_iter()
        .map(|listen| {
            let tcp = snapshot.routes.get(&listen);
            let udp = snapshot.udp_routes.get(&listen);
            let udp_open = udp_sessions.get(&listen).copied();
            let mut protocols = Vec::new();
            if let Some(r) = tcp {
                match r.protocol {
                    schemas::Protocol::Http => protocols.extend(["http", "h2"]),
                    _ => protocols.push("tcp"),
                }
            }
            if udp.is_some() {
                protocols.push("udp");
            }
            let error = listener_errors.get(&listen);
            // One error per address is kept, the UDP socket's last: while
            // the UDP side is unbound, an error there is its own.
            let tcp_listening = error.is_none() || (udp.is_some() && udp_open.is_none());
            json!({
                "port": listen.port(),
                "listen": listen.to_string(),
                "protocols": protocols,
                "listen_error": error,
                "tcp": tcp.map(|r| json!({
                    "app": r.app,
                    "protocol": r.protocol,
                    "tls": r.tls.is_some(),
                    "listening": tcp_listening,
                })),
                "udp": udp.map(|r| json!({
                    "app": r.app,
                    "listening": udp_open.is_some(),
                    "sessions": udp_open.unwrap_or(0),
                    "idle_timeout_ms": r.timeouts.udp_idle.as_millis() as u64,
                })),
            })
        })
        .collect()
}
