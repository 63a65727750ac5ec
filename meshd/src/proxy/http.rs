//! HTTP mode's requests from HTTP/2 clients (meshd's server in `h2`),
//! carried to backends over pooled HTTP/1.1 connections; HTTP/1.1 clients
//! take `h1`, which shares the request types here. The allow-list verdict
//! was taken at accept; a denied connection gets 403 on every request.
//! Failed connects move on to another backend; idempotent requests without
//! a body are retried once on a reset or 502/503, within the retry budget.

use super::alarms::Alarms;
use super::body::{DownBody, Settle};
use super::codec::{BodyFraming, Framing};
use super::forward::{forward, Failure, Outgoing, Sent, Wait};
use super::h2;
use super::respond::ProxyError;
use super::rtt::RttCache;
use super::upstream::{self, BodyReader, ExchangeError, HeadInto};
use crate::access_log::{AccessLog, Entry};
use crate::authz::Decision;
use crate::backend::InFlight;
use crate::snapshot::Route;
use hyper::header::HeaderValue;
use hyper::{Method, Response, StatusCode, Version};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest request header block accepted (431 beyond it).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
pub use super::conn::{Conn, Target};

/// An answer to one HTTP/2 request.
pub struct Reply {
    /// Its status.
    pub status: StatusCode,
    /// Its fields.
    pub fields: ReplyFields,
    /// Its body.
    pub body: DownBody<Exchange>,
}

/// A reply's fields: a backend's, HPACK-encoded as its head was read, or a
/// map (meshd's own answers, and the edge's, which may add fields).
pub enum ReplyFields {
    /// A whole HPACK block, `:status` first.
    Hpack(Vec<u8>),
    /// A header map.
    Map(hyper::HeaderMap),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reply({}, {:?})", self.status, self.body)
    }
}

impl From<Response<DownBody<Exchange>>> for Reply {
    fn from(r: Response<DownBody<Exchange>>) -> Reply {
        let (parts, body) = r.into_parts();
        Reply {
            status: parts.status,
            fields: ReplyFields::Map(parts.headers),
            body,
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

/// One request's future, boxed: it runs in a task of its own per HTTP/2
/// stream, and one allocation costs less than moving kilobytes.
pub type Handled = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// When a request began, and the client's RTT then (microseconds, 0: unknown).
#[derive(Debug, Clone, Copy)]
struct Began {
    start: Instant,
    client_rtt_us: u32,
}

/// Starts one request. Its head is judged, routed and rewritten for the
/// backend here, before the future is boxed: the head (a few hundred
/// bytes) is taken apart in place instead of being moved into the future
/// and on through it.
pub fn handle(
    conn: &Arc<Conn>,
    rtt: &mut RttCache,
    alarms: &Arc<Alarms>,
    req: h2::Head,
    body: Option<h2::RecvBody>,
) -> Handled {
    let start = Instant::now();
    // Here, not in the request's task: the connection's task calls this
    // as it reads the request, while the socket is surely open.
    let began = Began {
        start,
        client_rtt_us: rtt.sample(conn.client, start),
    };
    let (route, decision, hsts) = match &conn.target {
        Target::Service(judged) => {
            let (route, decision) = conn.judge(judged);
            (route, decision, None)
        }
        // On a shared edge listener the app is chosen by host and path.
        Target::Edge => match super::edge::choose_by(
            conn,
            req.host().map(super::edge::normalize_host),
            req.path_and_query(),
        ) {
            Ok((route, decision)) => {
                let hsts = super::edge::hsts(conn, &route);
                (route, decision, hsts)
            }
            Err(refusal) => return Box::pin(std::future::ready(refusal.response().into())),
        },
    };
    let prepared = prepare(conn, &route, decision, req, body, began.start);
    let conn = Arc::clone(conn);
    let alarms = Arc::clone(alarms);
    Box::pin(async move {
        // The edge's answers may get a field: those are read into a map.
        let hpack = hsts.is_none();
        let mut resp = match prepared {
            Ok(out) => proxy_request(&conn, &route, decision, out, began, &alarms, hpack).await,
            Err(e) => e.response().into(),
        };
        if let (Some(max_age), ReplyFields::Map(fields)) = (hsts, &mut resp.fields) {
            // The edge's policy replaces whatever the backend said.
            if let Ok(v) = HeaderValue::from_str(&format!("max-age={max_age}")) {
                fields.insert(hyper::header::STRICT_TRANSPORT_SECURITY, v);
            }
        }
        resp
    })
}

/// The request as the backend gets it, or why meshd answers itself (403).
fn prepare(
    conn: &Conn,
    route: &Route,
    decision: Decision,
    req: h2::Head,
    body: Option<h2::RecvBody>,
    start: Instant,
) -> Result<H2Request, ProxyError> {
    if !decision.verdict.lets_through() {
        route.metrics().status(403).increment(1);
        log_denied(conn, route, decision, Version::HTTP_2, start);
        return Err(ProxyError::Forbidden {
            src: Arc::clone(&conn.src_app),
            dst: route.app.clone(),
            decision,
        });
    }
    route.carried.retry_budget.deposit();
    let content_length = req.content_length;
    let empty = body.is_none();
    // meshd frames the body itself: by the length the client declared
    // (checked against its DATA as it comes), else chunked.
    let framing = BodyFraming {
        framing: match content_length {
            _ if empty => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Chunked,
        },
        declared: content_length.filter(|_| empty),
        codings: None,
    };
    let chunked = framing.framing == Framing::Chunked;
    let method = req.method.clone();
    Ok(H2Request {
        head: req.into_backend_head(&conn.peer_header, conn.https, &framing),
        body,
        has_body: !empty,
        chunked,
        method,
    })
}

async fn proxy_request(
    conn: &Conn,
    route: &Arc<Route>,
    decision: Decision,
    mut out: H2Request,
    began: Began,
    alarms: &Alarms,
    hpack: bool,
) -> Reply {
    let start = began.start;
    // From the thread's cache: a head grown from empty was reallocated
    // five times (~900 instructions per request).
    let mut block = super::buffers::take_vec(super::buffers::HEAD);
    let sent = forward(
        route,
        conn.ip,
        &conn.runtime.certs,
        &mut out,
        if hpack {
            HeadInto::Hpack(&mut block)
        } else {
            HeadInto::Map
        },
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
        Err(Failure::Answer(e)) => return e.response().into(),
        Err(Failure::ClientGone) => return ProxyError::BadBody.response().into(),
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
        return ProxyError::BadGateway(route.app.clone()).response().into();
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
        log: conn.runtime.access_log.as_ref().map(|l| {
            (
                l.clone(),
                conn.src_app.clone(),
                conn.peer(),
                Version::HTTP_2,
            )
        }),
    };
    Reply {
        status,
        fields: if hpack {
            ReplyFields::Hpack(block)
        } else {
            ReplyFields::Map(resp_headers)
        },
        body: DownBody::upstream(reader, exchange, route.timeouts.idle),
    }
}

/// A request that came over HTTP/2: its head is built once and lent to
/// every attempt; a body is streamed once.
struct H2Request {
    head: Vec<u8>,
    body: Option<h2::RecvBody>,
    has_body: bool,
    chunked: bool,
    method: Method,
}

impl Outgoing for H2Request {
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
        // settles after the last write to the client; HTTP/2 when the
        // connection frames the body's last bytes, which flow control lets
        // it do only as the client reads.
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
