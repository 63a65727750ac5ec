//! HTTP mode over HTTP/2 (prior knowledge, or ALPN `h2`) on hyper's server,
//! carried to backends over pooled HTTP/1.1 connections; HTTP/1.1 clients
//! take meshd's own server (`h1.rs`), which shares the request types here. The allow-list verdict was
//! taken at accept; a denied connection gets 403 on every request. Failed
//! connects move on to another backend; idempotent requests without a body
//! are retried once on a reset or 502/503, within the retry budget.

use super::alarms::Alarms;
use super::body::{DownBody, Settle, UpBody};
use super::codec::{parse_length, BodyFraming, Framing};
use super::forward::{forward, Failure, Outgoing, Sent, Wait};
use super::headers;
use super::respond::ProxyError;
use super::rtt::RttCache;
use super::tunnel::Watched;
use super::upstream::{self, BodyReader, ExchangeError};
use crate::access_log::{AccessLog, Entry};
use crate::authz::Decision;
use crate::backend::InFlight;
use crate::snapshot::Route;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest request header block accepted (431 beyond it).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Concurrent HTTP/2 streams per client connection.
pub const MAX_CONCURRENT_STREAMS: u32 = 256;

pub use super::conn::{Conn, Target};

type Reply = Response<DownBody<Exchange>>;

/// Serves one client connection until it closes, or drains when `conn.draining` fires.
pub async fn serve<I>(stream: I, conn: Conn)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let draining = conn.draining.clone();
    let timeouts = match &conn.target {
        Target::Service(judged) => conn.judge(judged).0.timeouts,
        Target::Edge => crate::timeouts::Resolved::from(&schemas::Timeouts::default()),
    };
    let stop = conn.stop.clone();
    let conn = Arc::new(conn);
    // The connection's RTT, kept by its service: hyper calls it for each
    // stream, one at a time, inside the connection's poll.
    let rtt = Cell::new(RttCache::default());
    // The streams' response deadlines, on one timer this task drives.
    let alarms = Arc::new(Alarms::default());
    let stream_alarms = Arc::clone(&alarms);
    let service = hyper::service::service_fn(move |req| {
        handle(Arc::clone(&conn), &rtt, Arc::clone(&stream_alarms), req)
    });
    // Only HTTP/2 reaches this server: HTTP/1.1 takes meshd's own (h1.rs),
    // which hands over a connection that opens with the HTTP/2 preface.
    // Its streams run in tasks of their own: polled inside this task
    // (`inline_streams`, tried), the backend got its requests in smaller
    // batches and CPU per request rose (docs/benchmarks.md, lever K).
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    // Idle is judged by bytes read from the client: graceful shutdown lets
    // any request still in flight finish, so only truly quiet connections close.
    let seen = Arc::new(AtomicBool::new(true));
    let io = TokioIo::new(Watched::new(stream, Arc::clone(&seen)));
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    // Set by `alarms` before it is first polled.
    let timer = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(timer);
    // Validation refuses a zero timeout; the floor keeps `interval` from
    // panicking should one ever get past it (invariant 10).
    let mut idle = tokio::time::interval(timeouts.idle.max(Duration::from_millis(1)));
    idle.reset();
    let mut closing = false;
    loop {
        tokio::select! {
            biased;
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
                return;
            }
            // A stream that notes an earlier deadline wakes this task.
            () = std::future::poll_fn(|cx| alarms.poll_timer(timer.as_mut(), cx)) => {}
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

/// Logs a denied request to the access log, if there is one.
pub(crate) fn log_denied(
    conn: &Conn,
    route: &Route,
    decision: Decision,
    version: Version,
    start: Instant,
) {
    if let Some(log) = &conn.runtime.access_log {
        log.write(Entry {
            src_app: &conn.src_app,
            dst_app: route.app.as_str(),
            peer: conn.peer(),
            backend: "",
            version,
            status: 403,
            verdict: decision.verdict.as_str(),
            connect_ms: None,
            ttfb_ms: 0.0,
            total_ms: start.elapsed().as_secs_f64() * 1e3,
            bytes_out: 0,
            complete: true,
        });
    }
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// One request's future, boxed: hyper moves it into a task of its own per
/// HTTP/2 stream, and one allocation costs less than moving kilobytes.
type Handled = Pin<Box<dyn Future<Output = Result<Reply, Infallible>> + Send>>;

/// When a request began, and the client's RTT then (microseconds, 0: unknown).
#[derive(Debug, Clone, Copy)]
struct Began {
    start: Instant,
    client_rtt_us: u32,
}

/// Starts one request. Its head is judged, routed and rewritten for the
/// backend here, before the future is boxed: the `Request` (a few hundred
/// bytes) is taken apart in place instead of being moved into the future
/// and on through it (four copies, ~270 instructions per HTTP/2 request).
fn handle(
    conn: Arc<Conn>,
    rtt: &Cell<RttCache>,
    alarms: Arc<Alarms>,
    req: Request<Incoming>,
) -> Handled {
    let start = Instant::now();
    // Here, not in the request's task: hyper calls this inside the
    // connection's poll, while the socket is surely open.
    let mut cache = rtt.get();
    let began = Began {
        start,
        client_rtt_us: cache.sample(conn.client, start),
    };
    rtt.set(cache);
    let (route, decision, hsts) = match &conn.target {
        Target::Service(judged) => {
            let (route, decision) = conn.judge(judged);
            (route, decision, None)
        }
        // On a shared edge listener the app is chosen by host and path.
        Target::Edge => match super::edge::choose(&conn, &req) {
            Ok((route, decision)) => {
                let hsts = super::edge::hsts(&conn, &route);
                (route, decision, hsts)
            }
            Err(refusal) => return Box::pin(std::future::ready(Ok(refusal.response()))),
        },
    };
    let prepared = prepare(&conn, &route, decision, req, began.start);
    Box::pin(async move {
        let mut resp = match prepared {
            Ok(out) => proxy_request(&conn, &route, decision, out, began, &alarms).await,
            Err(e) => e.response(),
        };
        if let Some(max_age) = hsts {
            // The edge's policy replaces whatever the backend said.
            if let Ok(v) = HeaderValue::from_str(&format!("max-age={max_age}")) {
                resp.headers_mut()
                    .insert(hyper::header::STRICT_TRANSPORT_SECURITY, v);
            }
        }
        Ok(resp)
    })
}

/// The request as the backend gets it, or why meshd answers itself (403).
fn prepare(
    conn: &Conn,
    route: &Route,
    decision: Decision,
    req: Request<Incoming>,
    start: Instant,
) -> Result<HyperRequest, ProxyError> {
    if !decision.verdict.lets_through() {
        route.metrics().status(403).increment(1);
        log_denied(conn, route, decision, req.version(), start);
        return Err(ProxyError::Forbidden {
            src: Arc::clone(&conn.src_app),
            dst: route.app.clone(),
            decision,
        });
    }
    route.carried.retry_budget.deposit();
    let (parts, body) = req.into_parts();
    let empty = hyper::body::Body::is_end_stream(&body);
    // meshd frames the body itself: by the length the client declared (h2
    // checks the DATA against it), else chunked.
    let framing = BodyFraming {
        framing: match hyper::body::Body::size_hint(&body).exact() {
            _ if empty => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Chunked,
        },
        declared: parts
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| parse_length(v.as_bytes()))
            .filter(|_| empty),
        codings: None,
    };
    let chunked = framing.framing == Framing::Chunked;
    Ok(HyperRequest {
        head: headers::backend_head(
            &parts,
            &conn.peer_header,
            conn.https,
            conn.trusted,
            &framing,
        ),
        body: (!empty).then_some(UpBody::Stream(body)),
        has_body: !empty,
        chunked,
        version: parts.version,
        method: parts.method,
    })
}

async fn proxy_request(
    conn: &Conn,
    route: &Arc<Route>,
    decision: Decision,
    mut out: HyperRequest,
    began: Began,
    alarms: &Alarms,
) -> Reply {
    let start = began.start;
    let client_version = out.version;
    let sent = forward(
        route,
        conn.ip,
        &conn.runtime.certs,
        &mut out,
        None,
        Wait::Alarms(alarms),
        tokio::time::Instant::from_std(start),
    )
    .await;
    let Sent {
        upstream,
        head,
        backend,
        in_flight,
        connect_time,
        ttfb,
        answered,
    } = match sent {
        Ok(sent) => sent,
        Err(Failure::Answer(e)) => return e.response(),
        Err(Failure::ClientGone) => return ProxyError::BadBody.response(),
    };
    let upstream::Head {
        status,
        headers: resp_headers,
        body: resp_body,
        reusable,
    } = head;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // HTTP/2 has no upgrades and meshd asked for none.
        tracing::warn!(app = %route.app, "backend switched protocols unasked");
        drop(in_flight);
        return ProxyError::BadGateway(route.app.clone()).response();
    }
    let reader = BodyReader::new(upstream, resp_body.framing, reusable);
    let exchange = Exchange {
        route: Arc::clone(route),
        backend,
        _in_flight: in_flight,
        start,
        connect_time,
        ttfb,
        answered: answered.into_std(),
        client_rtt_us: began.client_rtt_us,
        status: status.as_u16(),
        verdict: decision.verdict.as_str(),
        log: conn
            .runtime
            .access_log
            .as_ref()
            .map(|l| (l.clone(), conn.src_app.clone(), conn.peer(), client_version)),
    };
    let mut resp = Response::new(DownBody::upstream(reader, exchange, route.timeouts.idle));
    *resp.status_mut() = status;
    *resp.headers_mut() = resp_headers;
    resp
}

/// A request that came through hyper (HTTP/2, or the edge): its head is
/// built once and lent to every attempt; a body is streamed once.
struct HyperRequest {
    head: Vec<u8>,
    body: Option<UpBody>,
    has_body: bool,
    chunked: bool,
    /// The client's HTTP version, for the access log.
    version: Version,
    method: Method,
}

impl Outgoing for HyperRequest {
    fn body_less(&self) -> bool {
        !self.has_body
    }
    fn can_send(&self) -> bool {
        !self.has_body || self.body.is_some()
    }
    fn idempotent(&self) -> bool {
        idempotent(&self.method)
    }
    fn expect_body(&self) -> bool {
        self.method != Method::HEAD
    }
    async fn send(
        &mut self,
        up: &mut upstream::Conn,
        _wait: &mut Wait<'_>,
        idle: Duration,
    ) -> Result<(), ExchangeError> {
        // Written at once: holding the write until the other streams of the
        // same read had started (one yield) saved CPU on an older build and
        // machine, but now costs p99 and saves nothing (docs/benchmarks.md).
        up.write_head(&self.head).await?;
        if let Some(mut body) = self.body.take() {
            up.send_body(&mut body, self.chunked, idle).await?;
        }
        Ok(())
    }
}

/// Settles one request when its response body ends: the connection back to
/// the pool after a clean end, figures to metrics and the access log.
pub struct Exchange {
    pub(crate) route: Arc<Route>,
    pub(crate) backend: usize,
    pub(crate) _in_flight: InFlight,
    pub(crate) start: Instant,
    pub(crate) connect_time: Option<Duration>,
    pub(crate) ttfb: Duration,
    /// When the response's first byte came: the transfer starts there.
    pub(crate) answered: Instant,
    /// The client's RTT when the request was judged (microseconds, 0: unknown).
    pub(crate) client_rtt_us: u32,
    pub(crate) status: u16,
    pub(crate) verdict: &'static str,
    pub(crate) log: Option<(AccessLog, Arc<str>, SocketAddr, Version)>,
}

impl Settle for Exchange {
    fn settle(self, conn: Option<upstream::Conn>, clean: bool, bytes: u64) {
        self.finish(conn, clean, bytes);
    }
}

impl Exchange {
    /// Settles the request (see `Settle`) and returns the clock read that
    /// ended it, for a caller that times what comes next from there.
    pub(crate) fn finish(
        mut self,
        conn: Option<upstream::Conn>,
        clean: bool,
        bytes: u64,
    ) -> Instant {
        let b = &self.route.backends[self.backend];
        if let Some(mut c) = conn {
            c.release_buffer();
            b.state.put_idle(c);
        }
        // One clock read ends the request and its transfer: HTTP/1.1
        // settles after the last write to the client; HTTP/2 when hyper
        // takes the body's last bytes, which its flow control lets it do
        // only as the client reads.
        let now = Instant::now();
        let total = now.saturating_duration_since(self.start);
        let metrics = self.route.metrics();
        metrics.duration.record(total);
        metrics
            .transfer
            .record(now.saturating_duration_since(self.answered));
        if self.client_rtt_us != 0 {
            metrics
                .client_rtt
                .record_ns(u64::from(self.client_rtt_us) * 1000);
        }
        metrics.bytes_down.increment(bytes);
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
        now
    }
}
