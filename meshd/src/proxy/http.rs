//! HTTP mode: HTTP/1.1 and HTTP/2 (prior knowledge) on one port, carried to
//! backends over pooled HTTP/1.1 connections. The allow-list verdict was
//! taken at accept; a denied connection gets 403 on every request. Failed
//! connects move on to another backend; idempotent requests without a body
//! are retried once on a reset or 502/503, within the retry budget.

use super::body::{DownBody, Settle, UpBody};
use super::connect::connect_backend;
use super::headers;
use super::tunnel::{copy_with_idle, Watched};
use super::upstream::{self, BodyReader, ExchangeError};
use crate::access_log::{AccessLog, Entry};
use crate::authz::Decision;
use crate::backend::InFlight;
use crate::select::{now_ms, Tried};
use crate::snapshot::Route;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// Largest request header block accepted (431 beyond it).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Concurrent HTTP/2 streams per client connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 256;

/// Where a connection's requests go.
pub enum Target {
    /// A service port: one app, the verdict taken at accept.
    Service {
        /// The service as it was at accept; used once the service is removed.
        route: Arc<Route>,
        /// The listener's address, where the current route is looked up per request.
        local: SocketAddr,
        /// The verdict taken at accept.
        decision: Decision,
    },
    /// A shared edge listener: the app is chosen per request by host and
    /// path, and so is the verdict.
    Edge,
}

/// What every request of one client connection shares.
pub struct Conn {
    /// Where its requests go.
    pub target: Target,
    /// The running config.
    pub runtime: Arc<crate::swap::Runtime>,
    /// The client.
    pub peer: SocketAddr,
    /// The source app's name, or `unknown`.
    pub src_app: Arc<str>,
    /// `X-Forwarded-For` value for this client.
    pub peer_header: HeaderValue,
    /// Where finished requests are logged, if anywhere.
    pub access_log: Option<AccessLog>,
    /// Fires at the drain deadline; closes upgraded tunnels.
    pub stop: CancellationToken,
    /// Whether the client came over TLS (`X-Forwarded-Proto: https`).
    pub https: bool,
}

type Reply = Response<DownBody<Exchange>>;

/// Serves one client connection until it closes, or drains when `draining` fires.
pub async fn serve<I>(stream: I, conn: Conn, draining: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let timeouts = match &conn.target {
        Target::Service { route, .. } => route.timeouts,
        Target::Edge => crate::timeouts::Resolved::from(&schemas::Timeouts::default()),
    };
    let stop = conn.stop.clone();
    let conn = Arc::new(conn);
    let service = hyper::service::service_fn(move |req| {
        let conn = Arc::clone(&conn);
        async move { Ok::<_, std::convert::Infallible>(handle(&conn, req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper also starts this timer while a keep-alive connection waits
        // for its next request, so HTTP/1.1 idle is at most this long too.
        .header_read_timeout(timeouts.request_header.min(timeouts.idle))
        .max_buf_size(MAX_HEADER_BYTES.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    // Idle is judged by bytes read from the client: graceful shutdown lets
    // any request still in flight finish, so only truly quiet connections close.
    let seen = Arc::new(AtomicBool::new(true));
    let io = TokioIo::new(Watched::new(stream, Arc::clone(&seen)));
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let mut idle = tokio::time::interval(timeouts.idle);
    idle.reset();
    let mut closing = false;
    loop {
        tokio::select! {
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
                return;
            }
            () = draining.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = idle.tick(), if !closing => {
                if !seen.swap(false, Ordering::Relaxed) {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

pub(crate) fn local(status: StatusCode, text: String) -> Reply {
    let mut r = Response::new(DownBody::text(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

async fn handle(conn: &Conn, req: Request<Incoming>) -> Reply {
    match &conn.target {
        Target::Service {
            route,
            local,
            decision,
        } => {
            // Backends and balancing come from the newest snapshot on every request,
            // so keep-alive clients follow reloads; the verdict stays the one taken at accept.
            let current = conn.runtime.route(local);
            proxy_request(conn, current.as_ref().unwrap_or(route), *decision, req).await
        }
        Target::Edge => match super::edge::choose(conn, &req) {
            Ok((route, decision)) => {
                let hsts = route
                    .tls
                    .as_ref()
                    .and_then(|t| t.hsts)
                    .filter(|_| conn.https);
                let mut resp = proxy_request(conn, &route, decision, req).await;
                if let Some(max_age) = hsts {
                    if let Ok(v) = HeaderValue::from_str(&format!("max-age={max_age}")) {
                        resp.headers_mut()
                            .insert(hyper::header::STRICT_TRANSPORT_SECURITY, v);
                    }
                }
                resp
            }
            Err((status, location, text)) => {
                let mut r = local(status, text);
                if let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                    r.headers_mut().insert(hyper::header::LOCATION, l);
                }
                r
            }
        },
    }
}

async fn proxy_request(
    conn: &Conn,
    route: &Arc<Route>,
    decision: Decision,
    mut req: Request<Incoming>,
) -> Reply {
    let start = Instant::now();
    if !decision.verdict.lets_through() {
        route.metrics.status(403).increment(1);
        if let Some(log) = &conn.access_log {
            log.write(Entry {
                src_app: &conn.src_app,
                dst_app: route.app.as_str(),
                peer: conn.peer,
                backend: "",
                version: req.version(),
                status: 403,
                verdict: decision.verdict.as_str(),
                connect_ms: None,
                ttfb_ms: 0.0,
                total_ms: start.elapsed().as_secs_f64() * 1e3,
                bytes_out: 0,
                complete: true,
            });
        }
        return local(
            StatusCode::FORBIDDEN,
            format!(
                "palisade: {} may not reach {} ({})\n",
                conn.src_app, route.app, decision.decider
            ),
        );
    }
    route.carried.retry_budget.deposit();
    let mut upgrade = headers::is_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let client_version = parts.version;
    headers::prepare_request(&mut parts, &conn.peer_header, upgrade.is_some(), conn.https);
    // Borrowed, not copied: the head is only read from here on.
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let empty = hyper::body::Body::is_end_stream(&body);
    // The head stays here and is lent to each attempt, so a body-less
    // request can be sent again without copying anything.
    let retryable = empty && idempotent(&parts.method);
    let mut body = Some(if empty {
        UpBody::Empty
    } else {
        UpBody::Stream(body)
    });
    let mut tried = Tried::default();
    let mut retried = false;
    let mut stale_retries = 0;
    let mut status_for_none = StatusCode::SERVICE_UNAVAILABLE;
    while let Some(i) = route.choose(conn.peer.ip(), &tried) {
        if !tried.push(i) {
            break;
        }
        let Some(this_body) = body.take().or_else(|| empty.then_some(UpBody::Empty)) else {
            break;
        };
        let b = &route.backends[i];
        b.metrics.requests.increment(1);
        let (mut upstream, connect_time) = match checkout(route, i, &conn.runtime.certs).await {
            Ok(c) => c,
            Err(e) => {
                route.metrics.connect_failures.increment(1);
                route.failure(i);
                tracing::warn!(app = %route.app, backend = %b.label, error = %e, "backend connect failed; trying the next");
                // Nothing was sent: any request may go to the next backend.
                body = Some(this_body);
                status_for_none = StatusCode::BAD_GATEWAY;
                continue;
            }
        };
        if let Some(t) = connect_time {
            route.metrics.connect.record(t.as_secs_f64());
        }
        let in_flight = b.state.begin();
        let sent_at = Instant::now();
        let reused = connect_time.is_none();
        let exchange = upstream.exchange(
            &parts.method,
            target.as_bytes(),
            &parts.headers,
            this_body,
            reused,
        );
        let head = match tokio::time::timeout(route.timeouts.response, exchange).await {
            Ok(Ok(head)) => head,
            Ok(Err(ExchangeError::NotSent(e))) if empty && stale_retries < 3 => {
                // A pooled connection the backend had closed: not the backend's fault.
                tracing::debug!(app = %route.app, backend = %b.label, error = %e, "stale backend connection; sending again");
                stale_retries += 1;
                tried.forget(i);
                continue;
            }
            Ok(Err(e)) => {
                route.failure(i);
                tracing::warn!(app = %route.app, backend = %b.label, error = %e, "backend failed mid-request");
                status_for_none = StatusCode::BAD_GATEWAY;
                if retryable && !retried && route.carried.retry_budget.withdraw() {
                    retried = true;
                    route.metrics.retries.increment(1);
                    continue;
                }
                break;
            }
            Err(_) => {
                route.failure(i);
                tracing::warn!(app = %route.app, backend = %b.label, "backend response timed out");
                status_for_none = StatusCode::GATEWAY_TIMEOUT;
                break;
            }
        };
        let ttfb = sent_at.elapsed();
        route.metrics.ttfb.record(ttfb.as_secs_f64());
        b.state.observe_latency(ttfb.as_nanos() as u64, now_ms());
        let upstream::Head {
            status,
            headers: resp_headers,
            framing,
            reusable,
        } = head;
        if status.is_server_error() {
            route.failure(i);
            let retry_status =
                status == StatusCode::BAD_GATEWAY || status == StatusCode::SERVICE_UNAVAILABLE;
            if retry_status && retryable && !retried && route.carried.retry_budget.withdraw() {
                retried = true;
                route.metrics.retries.increment(1);
                continue;
            }
        } else {
            route.success(i);
        }
        route.metrics.status(status.as_u16()).increment(1);
        let mut resp = Response::new(DownBody::Local(None));
        *resp.status_mut() = status;
        *resp.headers_mut() = resp_headers;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_side) = upgrade.take() {
                let (backend_io, early) = upstream.into_parts();
                let (idle, stop) = (route.timeouts.tunnel_idle, conn.stop.clone());
                tokio::spawn(async move {
                    if let Ok(client) = client_side.await {
                        let mut client = TokioIo::new(client);
                        // Bytes the backend sent right after its 101 go first.
                        if early.is_empty() || client.write_all(&early).await.is_ok() {
                            copy_with_idle(client, backend_io, idle, stop).await;
                        }
                    }
                    drop(in_flight);
                });
                return resp;
            }
        }
        let (mut resp_parts, _) = resp.into_parts();
        headers::prepare_response(&mut resp_parts);
        let reader = BodyReader::new(upstream, framing, reusable);
        let exchange = Exchange {
            route: Arc::clone(route),
            backend: i,
            _in_flight: in_flight,
            start,
            connect_time,
            ttfb,
            status: status.as_u16(),
            verdict: decision.verdict.as_str(),
            log: conn
                .access_log
                .as_ref()
                .map(|l| (l.clone(), conn.src_app.clone(), conn.peer, client_version)),
        };
        return Response::from_parts(resp_parts, DownBody::upstream(reader, exchange));
    }
    if tried.is_empty() {
        route.metrics.no_backend.increment(1);
    }
    route.metrics.status(status_for_none.as_u16()).increment(1);
    let why = match status_for_none {
        StatusCode::GATEWAY_TIMEOUT => "did not answer in time",
        StatusCode::BAD_GATEWAY => "could not be reached or failed",
        _ => "has no healthy backend",
    };
    local(status_for_none, format!("palisade: {} {why}\n", route.app))
}

/// An idle pooled connection to backend `i`, or a new one (with its connect time).
async fn checkout(
    route: &Route,
    i: usize,
    certs: &crate::tls::CertStore,
) -> std::io::Result<(upstream::Conn, Option<Duration>)> {
    let b = &route.backends[i];
    if let Some(conn) = b.state.take_idle() {
        return Ok((conn, None));
    }
    let started = Instant::now();
    let stream = connect_backend(route, i, certs).await?;
    Ok((upstream::Conn::new(stream), Some(started.elapsed())))
}

/// Settles one request when its response body ends: the connection back to
/// the pool after a clean end, figures to metrics and the access log.
pub struct Exchange {
    route: Arc<Route>,
    backend: usize,
    _in_flight: InFlight,
    start: Instant,
    connect_time: Option<Duration>,
    ttfb: Duration,
    status: u16,
    verdict: &'static str,
    log: Option<(AccessLog, Arc<str>, SocketAddr, Version)>,
}

impl Settle for Exchange {
    fn settle(mut self, conn: Option<upstream::Conn>, clean: bool, bytes: u64) {
        let b = &self.route.backends[self.backend];
        if let Some(c) = conn {
            b.state.put_idle(c);
        }
        let total = self.start.elapsed();
        self.route.metrics.duration.record(total.as_secs_f64());
        self.route.metrics.bytes_down.increment(bytes);
        if let Some((log, src, peer, version)) = self.log.take() {
            log.write(Entry {
                src_app: &src,
                dst_app: self.route.app.as_str(),
                peer,
                backend: &b.label,
                version,
                status: self.status,
                verdict: self.verdict,
                connect_ms: self.connect_time.map(|d| d.as_secs_f64() * 1e3),
                ttfb_ms: self.ttfb.as_secs_f64() * 1e3,
                total_ms: total.as_secs_f64() * 1e3,
                bytes_out: bytes,
                complete: clean,
            });
        }
    }
}
