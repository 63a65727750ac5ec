//! HTTP mode: HTTP/1.1 and HTTP/2 (prior knowledge) on one port, carried to
//! backends over pooled HTTP/1.1 connections. The allow-list verdict was
//! taken at accept; a denied connection gets 403 on every request. Failed
//! connects move on to another backend; idempotent requests without a body
//! are retried once on a reset or 502/503, within the retry budget.

use super::body::{DownBody, Settle, UpBody};
use super::connect::connect;
use super::headers;
use super::tunnel::{copy_with_idle, Watched};
use crate::access_log::{AccessLog, Entry};
use crate::authz::Decision;
use crate::backend::InFlight;
use crate::select::{now_ms, Tried};
use crate::snapshot::Route;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Largest request header block accepted (431 beyond it).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Concurrent HTTP/2 streams per client connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 256;

/// What every request of one client connection shares.
pub struct Conn {
    /// The service as it was at accept; used once the service is removed.
    pub route: Arc<Route>,
    /// Where the current route of this listener is looked up per request.
    pub runtime: Arc<crate::swap::Runtime>,
    /// The listener's address.
    pub local: SocketAddr,
    /// The client.
    pub peer: SocketAddr,
    /// The verdict taken at accept.
    pub decision: Decision,
    /// The source app's name, or `unknown`.
    pub src_app: Arc<str>,
    /// `X-Forwarded-For` value for this client.
    pub peer_header: HeaderValue,
    /// Where finished requests are logged, if anywhere.
    pub access_log: Option<AccessLog>,
    /// Fires at the drain deadline; closes upgraded tunnels.
    pub stop: CancellationToken,
}

type Reply = Response<DownBody<Exchange>>;

/// Serves one client connection until it closes, or drains when `draining` fires.
pub async fn serve(stream: TcpStream, conn: Conn, draining: CancellationToken) {
    let timeouts = conn.route.timeouts;
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

fn local(status: StatusCode, text: String) -> Reply {
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

async fn handle(conn: &Conn, mut req: Request<Incoming>) -> Reply {
    // Backends and balancing come from the newest snapshot on every request,
    // so keep-alive clients follow reloads; the verdict stays the one taken at accept.
    let current = conn.runtime.route(&conn.local);
    let route = current.as_ref().unwrap_or(&conn.route);
    let start = Instant::now();
    if !conn.decision.verdict.lets_through() {
        route.metrics.status(403).increment(1);
        return local(
            StatusCode::FORBIDDEN,
            format!(
                "palisade: {} may not reach {} ({})\n",
                conn.src_app, route.app, conn.decision.decider
            ),
        );
    }
    route.carried.retry_budget.deposit();
    let upgrade = headers::is_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let client_version = parts.version;
    headers::prepare_request(&mut parts, &conn.peer_header, upgrade.is_some());
    let empty = hyper::body::Body::is_end_stream(&body);
    let retryable = empty && idempotent(&parts.method) && route.picks.healthy().len() > 1;
    // Kept only when a retry could use it: most requests never pay for the copy.
    let spare = retryable.then(|| clone_parts(&parts));
    let mut request = Some(Request::from_parts(
        parts,
        if empty {
            UpBody::Empty
        } else {
            UpBody::Stream(body)
        },
    ));
    let mut tried = Tried::default();
    let mut retried = false;
    let mut status_for_none = StatusCode::SERVICE_UNAVAILABLE;
    while let Some(i) = route.choose(conn.peer.ip(), &tried) {
        if !tried.push(i) {
            break;
        }
        let Some(req) = request.take().or_else(|| spare.as_ref().map(rebuild)) else {
            break;
        };
        let b = &route.backends[i];
        b.metrics.requests.increment(1);
        let (mut sender, connect_time) = match checkout(route, i).await {
            Ok(s) => s,
            Err(e) => {
                route.metrics.connect_failures.increment(1);
                route.failure(i);
                tracing::warn!(app = %route.app, backend = %b.label, error = %e, "backend connect failed; trying the next");
                // Nothing was sent: any request may go to the next backend.
                request = Some(req);
                status_for_none = StatusCode::BAD_GATEWAY;
                continue;
            }
        };
        if let Some(t) = connect_time {
            route.metrics.connect.record(t.as_secs_f64());
        }
        let in_flight = b.state.begin();
        let sent_at = Instant::now();
        let outcome =
            tokio::time::timeout(route.timeouts.response, sender.try_send_request(req)).await;
        let mut resp = match outcome {
            Ok(Ok(resp)) => resp,
            Ok(Err(mut e)) => {
                route.failure(i);
                if let Some(unsent) = e.take_message() {
                    // The connection closed before the request went out.
                    request = Some(unsent);
                    continue;
                }
                tracing::warn!(app = %route.app, backend = %b.label, error = %e.error(), "backend failed mid-request");
                status_for_none = StatusCode::BAD_GATEWAY;
                if spare.is_some() && !retried && route.carried.retry_budget.withdraw() {
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
        let status = resp.status();
        if status.is_server_error() {
            route.failure(i);
            let retry_status =
                status == StatusCode::BAD_GATEWAY || status == StatusCode::SERVICE_UNAVAILABLE;
            if retry_status && spare.is_some() && !retried && route.carried.retry_budget.withdraw()
            {
                retried = true;
                route.metrics.retries.increment(1);
                continue;
            }
        } else {
            route.success(i);
        }
        route.metrics.status(status.as_u16()).increment(1);
        if status == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_side) = upgrade {
                let backend_side = hyper::upgrade::on(&mut resp);
                let (idle, stop) = (route.timeouts.tunnel_idle, conn.stop.clone());
                tokio::spawn(async move {
                    if let (Ok(c), Ok(u)) = (client_side.await, backend_side.await) {
                        copy_with_idle(TokioIo::new(c), TokioIo::new(u), idle, stop).await;
                    }
                    drop(in_flight);
                });
                let (parts, _) = resp.into_parts();
                return Response::from_parts(parts, DownBody::Local(None));
            }
        }
        let (mut parts, inner) = resp.into_parts();
        headers::prepare_response(&mut parts);
        let exchange = Exchange {
            route: Arc::clone(route),
            backend: i,
            sender: Some(sender),
            _in_flight: in_flight,
            start,
            connect_time,
            ttfb,
            status: status.as_u16(),
            log: conn
                .access_log
                .as_ref()
                .map(|l| (l.clone(), conn.src_app.clone(), conn.peer, client_version)),
        };
        return Response::from_parts(
            parts,
            DownBody::Upstream {
                inner,
                settle: Some(exchange),
                bytes: 0,
            },
        );
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
) -> std::io::Result<(SendRequest<UpBody>, Option<Duration>)> {
    let b = &route.backends[i];
    while let Some(mut sender) = b.state.take_idle() {
        // A connection returned at its body's end may not have caught up yet.
        if sender.is_ready() || sender.ready().await.is_ok() {
            return Ok((sender, None));
        }
    }
    let started = Instant::now();
    let stream = connect(&b.upstream, route.timeouts.connect).await?;
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "backend connection ended with an error");
        }
    });
    Ok((sender, Some(started.elapsed())))
}

/// What a retry needs to send the request again (body-less requests only).
struct Spare {
    method: Method,
    uri: hyper::Uri,
    version: Version,
    headers: hyper::HeaderMap,
}

fn clone_parts(p: &http::request::Parts) -> Spare {
    Spare {
        method: p.method.clone(),
        uri: p.uri.clone(),
        version: p.version,
        headers: p.headers.clone(),
    }
}

fn rebuild(s: &Spare) -> Request<UpBody> {
    let mut r = Request::new(UpBody::Empty);
    *r.method_mut() = s.method.clone();
    *r.uri_mut() = s.uri.clone();
    *r.version_mut() = s.version;
    *r.headers_mut() = s.headers.clone();
    r
}

/// Settles one request when its response body ends: the connection back to
/// the pool after a clean end, figures to metrics and the access log.
pub struct Exchange {
    route: Arc<Route>,
    backend: usize,
    sender: Option<SendRequest<UpBody>>,
    _in_flight: InFlight,
    start: Instant,
    connect_time: Option<Duration>,
    ttfb: Duration,
    status: u16,
    log: Option<(AccessLog, Arc<str>, SocketAddr, Version)>,
}

impl Settle for Exchange {
    fn settle(mut self, clean: bool, bytes: u64) {
        let b = &self.route.backends[self.backend];
        if clean {
            if let Some(s) = self.sender.take() {
                b.state.put_idle(s);
            }
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
                verdict: "allow",
                connect_ms: self.connect_time.map(|d| d.as_secs_f64() * 1e3),
                ttfb_ms: self.ttfb.as_secs_f64() * 1e3,
                total_ms: total.as_secs_f64() * 1e3,
                bytes_out: bytes,
                complete: clean,
            });
        }
    }
}
