//! Every metric meshd exports, declared once. Handles for the connection path
//! are made here at reload time, so serving a connection formats no label.

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

/// Connections by source app, destination app and verdict.
pub const CONNECTIONS: &str = "palisade_meshd_connections_total";
/// Connections open now, by destination app.
pub const ACTIVE_CONNECTIONS: &str = "palisade_meshd_active_connections";
/// Failed connects to a backend, by destination app.
pub const UPSTREAM_CONNECT_FAILURES: &str = "palisade_meshd_upstream_connect_failures_total";
/// Allowed connections closed because no backend could be reached.
pub const NO_BACKEND: &str = "palisade_meshd_no_backend_total";
/// Open tunnels closed because a reload denied their source.
pub const REVOKED: &str = "palisade_meshd_revoked_connections_total";
/// Config reloads applied.
pub const RELOADS: &str = "palisade_meshd_reloads_total";
/// Config reloads refused (invalid, older, for another node, too large, or a generation too far ahead).
pub const RELOAD_FAILURES: &str = "palisade_meshd_reload_failures_total";
/// The generation being served.
pub const GENERATION: &str = "palisade_meshd_config_generation";
/// Configs from configsrv applied but not written to the cache (`--cache-dir`).
pub const CONFIG_CACHE_WRITE_FAILURES: &str = "palisade_meshd_config_cache_write_failures_total";
/// Services whose port could not be bound.
pub const LISTENER_ERRORS: &str = "palisade_meshd_listener_errors_total";

/// HTTP requests answered, by destination app and status class.
pub const REQUESTS: &str = "palisade_meshd_requests_total";
/// Whole request time, first byte in to last byte out.
pub const REQUEST_DURATION: &str = "palisade_meshd_request_duration_seconds";
/// Time to connect to a backend (new connections only).
pub const UPSTREAM_CONNECT: &str = "palisade_meshd_upstream_connect_seconds";
/// Time from sending the request to the backend's response header.
pub const UPSTREAM_TTFB: &str = "palisade_meshd_upstream_ttfb_seconds";
/// Bytes from clients to backends.
pub const BYTES_UPSTREAM: &str = "palisade_meshd_upstream_bytes_total";
/// Bytes from backends to clients.
pub const BYTES_DOWNSTREAM: &str = "palisade_meshd_downstream_bytes_total";
/// Requests retried on another backend.
pub const RETRIES: &str = "palisade_meshd_retries_total";
/// Requests and connections sent to one backend.
pub const BACKEND_REQUESTS: &str = "palisade_meshd_backend_requests_total";
/// Connect failures, resets and 5xx answers of one backend.
pub const BACKEND_FAILURES: &str = "palisade_meshd_backend_failures_total";
/// Times a backend was ejected by outlier detection.
pub const BACKEND_EJECTIONS: &str = "palisade_meshd_backend_ejections_total";
/// Access log lines dropped because the writer fell behind.
pub const ACCESS_LOG_DROPPED: &str = "palisade_meshd_access_log_dropped_total";

/// Histogram buckets for every `*_seconds` metric.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The label meshd uses for a source the identity table does not know.
pub const UNKNOWN_SOURCE: &str = "unknown";

/// One verdict counter, with its labels fixed.
pub fn verdict_counter(src_app: &str, dst_app: &str, verdict: &'static str) -> Counter {
    counter!(CONNECTIONS, "src_app" => src_app.to_owned(), "dst_app" => dst_app.to_owned(), "verdict" => verdict)
}

/// Per-destination handles for the connection and request paths.
#[derive(Debug, Clone)]
pub struct ServiceMetrics {
    /// Open connections.
    pub active: Gauge,
    /// Failed backend connects.
    pub connect_failures: Counter,
    /// Allowed connections or requests with no reachable backend.
    pub no_backend: Counter,
    /// Requests by status class: 1xx..5xx.
    pub requests: [Counter; 5],
    /// Whole request time.
    pub duration: Histogram,
    /// New-connection connect time.
    pub connect: Histogram,
    /// Time to the response header.
    pub ttfb: Histogram,
    /// Client -> backend bytes.
    pub bytes_up: Counter,
    /// Backend -> client bytes.
    pub bytes_down: Counter,
    /// Retries.
    pub retries: Counter,
}

impl ServiceMetrics {
    /// Registers the handles of one destination app.
    pub fn new(dst_app: &str) -> ServiceMetrics {
        let app = dst_app.to_owned();
        let class = |c: &'static str| counter!(REQUESTS, "dst_app" => app.clone(), "code" => c);
        ServiceMetrics {
            active: gauge!(ACTIVE_CONNECTIONS, "dst_app" => app.clone()),
            connect_failures: counter!(UPSTREAM_CONNECT_FAILURES, "dst_app" => app.clone()),
            no_backend: counter!(NO_BACKEND, "dst_app" => app.clone()),
            requests: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            duration: histogram!(REQUEST_DURATION, "dst_app" => app.clone()),
            connect: histogram!(UPSTREAM_CONNECT, "dst_app" => app.clone()),
            ttfb: histogram!(UPSTREAM_TTFB, "dst_app" => app.clone()),
            bytes_up: counter!(BYTES_UPSTREAM, "dst_app" => app.clone()),
            bytes_down: counter!(BYTES_DOWNSTREAM, "dst_app" => app.clone()),
            retries: counter!(RETRIES, "dst_app" => app),
        }
    }

    /// The counter of a status code's class.
    pub fn status(&self, code: u16) -> &Counter {
        let i = usize::from((code / 100).clamp(1, 5)) - 1;
        &self.requests[i]
    }
}

/// Per-backend handles.
#[derive(Debug, Clone)]
pub struct BackendMetrics {
    /// Requests or connections sent.
    pub requests: Counter,
    /// Failures seen.
    pub failures: Counter,
    /// Ejections.
    pub ejections: Counter,
}

impl BackendMetrics {
    /// Registers the handles of one backend of one app.
    pub fn new(dst_app: &str, backend: &str) -> BackendMetrics {
        let (app, b) = (dst_app.to_owned(), backend.to_owned());
        BackendMetrics {
            requests: counter!(BACKEND_REQUESTS, "dst_app" => app.clone(), "backend" => b.clone()),
            failures: counter!(BACKEND_FAILURES, "dst_app" => app.clone(), "backend" => b.clone()),
            ejections: counter!(BACKEND_EJECTIONS, "dst_app" => app, "backend" => b),
        }
    }
}
