//! The attempt loop both HTTP server paths share: pick a backend, send the
//! request, read the response head. A failed connect moves on to the next
//! backend (nothing was sent); a pooled connection whose write failed is
//! replaced; one that closed after the request was written is replaced only
//! for an idempotent request (the backend may have acted on it); an
//! idempotent request without a body is retried once on a reset or 502/503,
//! within the app's retry budget. Nothing else is ever sent twice.

use super::alarms::Alarms;
use super::connect::connect_backend;
use super::deadline::Deadline;
use super::respond::ProxyError;
use super::upstream::{self, ExchangeError, Head, HeadInto};
use crate::backend::InFlight;
use crate::select::{ms_at, Tried};
use crate::snapshot::Route;
use hyper::StatusCode;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;
use tokio::time::Instant;

/// A request on its way to a backend.
pub trait Outgoing {
    /// Whether it has no body, so it can be sent again after a failed attempt.
    fn body_less(&self) -> bool;
    /// Whether it can still be sent (its body, if any, is still unread).
    fn can_send(&self) -> bool;
    /// Whether its method is idempotent.
    fn idempotent(&self) -> bool;
    /// Whether the response may carry a body (not HEAD).
    fn expect_body(&self) -> bool;
    /// Writes it to `up`; a failed head write is `ExchangeError::NotSent`.
    /// Its body moves with no gap longer than `idle` (`wait` times the gaps):
    /// a client that stalls is `ClientGone`, a backend that stops reading `Failed`.
    fn send(
        &mut self,
        up: &mut upstream::Conn,
        wait: &mut Wait<'_>,
        idle: Duration,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send;
}

/// How the waits of a request are timed.
pub enum Wait<'a> {
    /// A timer of its own.
    Own,
    /// The deadlines of an HTTP/2 connection's streams, on one timer.
    Alarms(&'a Alarms),
    /// The client connection's deadline (HTTP/1.1).
    Shared(&'a mut Deadline),
}

/// Runs a future until it finishes (`Some`) or `at` passes (`None`), on
/// the wait's timer. A macro, not a method: the future (an `async` block
/// given whole) is built and pinned in place in the caller's state machine
/// instead of being moved through another one (each move of the exchange
/// is a `memcpy` of its state: ~3% of HTTP/1.1 instructions for two).
macro_rules! within {
    ($wait:expr, $at:expr, $fut:expr) => {
        match $wait {
            Wait::Own => tokio::time::timeout_at($at, $fut).await.ok(),
            Wait::Alarms(a) => a.within($at, $fut).await,
            Wait::Shared(d) => d.within_pinned($at, std::pin::pin!($fut)).await,
        }
    };
}

/// A backend answered: its connection, the head and the timings.
#[derive(Debug)]
pub struct Sent {
    /// The connection, positioned at the response body.
    pub upstream: upstream::Conn,
    /// The response head.
    pub head: Head,
    /// Which backend of the route.
    pub backend: usize,
    /// Counts the request in flight on that backend.
    pub in_flight: InFlight,
    /// Connect time, when a new connection was opened.
    pub connect_time: Option<Duration>,
    /// The app's response time: the request sent to the first response byte.
    pub ttfb: Duration,
    /// When the response's first byte came: where the transfer and a
    /// body's first idle window start.
    pub answered: Instant,
}

/// Why no backend answer is passed on.
#[derive(Debug, Clone)]
pub enum Failure {
    /// meshd answers this itself.
    Answer(ProxyError),
    /// The client went away while its body was read.
    ClientGone,
}

/// Sends `req` to a backend of `route` and reads the response head into
/// `into` (client-ready HTTP/1.1 bytes, an HPACK block, or a header map).
/// `began`: when the request began, read by the caller anyway.
pub async fn forward<O: Outgoing>(
    route: &Route,
    peer: IpAddr,
    certs: &crate::tls::CertStore,
    req: &mut O,
    mut into: HeadInto<'_>,
    mut wait: Wait<'_>,
    began: Instant,
) -> Result<Sent, Failure> {
    let mut began = Some(began);
    let retryable = req.body_less() && req.idempotent();
    let expect_body = req.expect_body();
    let mut tried = Tried::default();
    let mut retried = false;
    let mut stale_retries = 0;
    let mut status_for_none = StatusCode::SERVICE_UNAVAILABLE;
    while let Some(i) = route.choose(peer, &tried) {
        if !tried.push(i) || !req.can_send() {
            break;
        }
        let b = &route.backends[i];
        route.backend_metrics(i).requests.increment(1);
        let (mut upstream, connect_time, connected) = match checkout(route, i, certs).await {
            Ok(c) => c,
            Err(e) => {
                route.metrics().connect_failures.increment(1);
                route.failure(i);
                tracing::warn!(app = %route.app, backend = %b.label, error = %e, "backend connect failed; trying the next");
                // Nothing was sent: any request may go to the next backend.
                status_for_none = StatusCode::BAD_GATEWAY;
                continue;
            }
        };
        if let Some(t) = connect_time {
            route.metrics().connect.record(t);
        }
        let in_flight = b.state.begin();
        let reused = connect_time.is_none();
        let raw_now = into.reborrow();
        let timeouts = route.timeouts;
        // Where a body-less request's `response` window starts: the
        // request's start on a first attempt over a pooled connection
        // (microseconds earlier, and no clock read), else now.
        let window_from = match (connected, began.take()) {
            (Some(at), _) => at,
            (None, Some(at)) => at,
            (None, None) => Instant::now(),
        };
        // A body-less request is written and answered within `response`. A
        // body is the client's to send: it moves under the idle timeout,
        // and `response` runs from its end, so a slow upload neither
        // counts against the backend nor marks it failed.
        // The app's response time runs from the request's last byte written
        // (the head's, or the body's) to the response's first byte read.
        let outcome = if req.body_less() {
            within!(&mut wait, window_from + timeouts.response, async {
                req.send(&mut upstream, &mut Wait::Own, timeouts.idle)
                    .await?;
                let sent_at = Instant::now();
                let (head, first_byte) =
                    upstream.read_response(expect_body, reused, raw_now).await?;
                Ok::<_, ExchangeError>((head, first_byte, sent_at))
            })
        } else {
            match req.send(&mut upstream, &mut wait, timeouts.idle).await {
                Err(e) => Some(Err(e)),
                Ok(()) => {
                    let sent_at = Instant::now();
                    within!(&mut wait, sent_at + timeouts.response, async {
                        let (head, first_byte) =
                            upstream.read_response(expect_body, reused, raw_now).await?;
                        Ok::<_, ExchangeError>((head, first_byte, sent_at))
                    })
                }
            }
        };
        let (head, answered, sent_at) = match outcome {
            Some(Ok(answer)) => answer,
            Some(Err(e @ (ExchangeError::NotSent(_) | ExchangeError::Unanswered(_))))
                if req.body_less()
                    && stale_retries < 3
                    && (req.idempotent() || matches!(e, ExchangeError::NotSent(_))) =>
            {
                // A pooled connection the backend had closed: not the backend's fault.
                tracing::debug!(app = %route.app, backend = %b.label, error = %e, "stale backend connection; sending again");
                stale_retries += 1;
                tried.forget(i);
                continue;
            }
            Some(Err(ExchangeError::ClientGone(e))) => {
                tracing::debug!(app = %route.app, error = %e, "client's body failed; not the backend's fault");
                // A stalled or malformed body still gets an answer; a client
                // that is gone does not.
                return Err(match e.kind() {
                    std::io::ErrorKind::TimedOut => Failure::Answer(ProxyError::BodyStalled),
                    std::io::ErrorKind::InvalidData => Failure::Answer(ProxyError::BadBody),
                    _ => Failure::ClientGone,
                });
            }
            Some(Err(e)) => {
                route.failure(i);
                tracing::warn!(app = %route.app, backend = %b.label, error = %e, "backend failed mid-request");
                status_for_none = StatusCode::BAD_GATEWAY;
                if retryable && !retried && route.carried.retry_budget.withdraw() {
                    retried = true;
                    route.metrics().retries.increment(1);
                    continue;
                }
                break;
            }
            None => {
                route.failure(i);
                tracing::warn!(app = %route.app, backend = %b.label, "backend response timed out");
                status_for_none = StatusCode::GATEWAY_TIMEOUT;
                break;
            }
        };
        // The first byte's clock read serves the timing and the latency score.
        let ttfb = answered.saturating_duration_since(sent_at);
        route.metrics().ttfb.record(ttfb);
        b.state
            .observe_latency(ttfb.as_nanos() as u64, ms_at(answered.into_std()));
        if head.status.is_server_error() {
            route.failure(i);
            let retry_status = head.status == StatusCode::BAD_GATEWAY
                || head.status == StatusCode::SERVICE_UNAVAILABLE;
            if retry_status && retryable && !retried && route.carried.retry_budget.withdraw() {
                retried = true;
                route.metrics().retries.increment(1);
                continue;
            }
        } else {
            route.success(i);
        }
        route.metrics().status(head.status.as_u16()).increment(1);
        return Ok(Sent {
            upstream,
            head,
            backend: i,
            in_flight,
            connect_time,
            ttfb,
            answered,
        });
    }
    if tried.is_empty() {
        route.metrics().no_backend.increment(1);
    }
    route
        .metrics()
        .status(status_for_none.as_u16())
        .increment(1);
    let app = route.app.clone();
    Err(Failure::Answer(match status_for_none {
        StatusCode::GATEWAY_TIMEOUT => ProxyError::GatewayTimeout(app),
        StatusCode::BAD_GATEWAY => ProxyError::BadGateway(app),
        _ => ProxyError::NoBackend(app),
    }))
}

/// An idle pooled connection to backend `i`, or a new one (with its
/// connect time, and when it was connected).
async fn checkout(
    route: &Route,
    i: usize,
    certs: &crate::tls::CertStore,
) -> std::io::Result<(upstream::Conn, Option<Duration>, Option<Instant>)> {
    let b = &route.backends[i];
    if let Some(conn) = b.state.take_idle() {
        return Ok((conn, None, None));
    }
    let started = Instant::now();
    // Boxed: a connect (TLS handshake included) is rare on a kept pool and
    // its large state would otherwise weigh on every request's future,
    // which is moved whole when an HTTP/2 stream's task is spawned.
    let stream = Box::pin(connect_backend(route, i, certs)).await?;
    let connected = Instant::now();
    Ok((
        upstream::Conn::new(stream),
        Some(connected - started),
        Some(connected),
    ))
}
