//! Every metric meshd exports, declared once. Handles for the connection path
//! are made here at reload time, so serving a connection formats no label.

use metrics::{counter, gauge, Counter, Gauge};

/// Connections by source app, destination app and verdict.
pub const CONNECTIONS: &str = "palisade_meshd_connections_total";
/// Connections open now, by destination app.
pub const ACTIVE_CONNECTIONS: &str = "palisade_meshd_active_connections";
/// Failed connects to a backend, by destination app.
pub const UPSTREAM_CONNECT_FAILURES: &str = "palisade_meshd_upstream_connect_failures_total";
/// Allowed connections closed because no backend could be reached.
pub const NO_BACKEND: &str = "palisade_meshd_no_backend_total";
/// Config reloads applied.
pub const RELOADS: &str = "palisade_meshd_reloads_total";
/// Config reloads refused (invalid, older, or for another node).
pub const RELOAD_FAILURES: &str = "palisade_meshd_reload_failures_total";
/// The generation being served.
pub const GENERATION: &str = "palisade_meshd_config_generation";
/// Services whose port could not be bound.
pub const LISTENER_ERRORS: &str = "palisade_meshd_listener_errors_total";

/// The label meshd uses for a source the identity table does not know.
pub const UNKNOWN_SOURCE: &str = "unknown";

/// One verdict counter, with its labels fixed.
pub fn verdict_counter(src_app: &str, dst_app: &str, verdict: &'static str) -> Counter {
    counter!(CONNECTIONS, "src_app" => src_app.to_owned(), "dst_app" => dst_app.to_owned(), "verdict" => verdict)
}

/// Per-destination handles for the connection path.
#[derive(Debug, Clone)]
pub struct ServiceMetrics {
    /// Open connections.
    pub active: Gauge,
    /// Failed backend connects.
    pub connect_failures: Counter,
    /// Allowed connections with no reachable backend.
    pub no_backend: Counter,
}

impl ServiceMetrics {
    /// Registers the handles of one destination app.
    pub fn new(dst_app: &str) -> ServiceMetrics {
        let app = dst_app.to_owned();
        ServiceMetrics {
            active: gauge!(ACTIVE_CONNECTIONS, "dst_app" => app.clone()),
            connect_failures: counter!(UPSTREAM_CONNECT_FAILURES, "dst_app" => app.clone()),
            no_backend: counter!(NO_BACKEND, "dst_app" => app),
        }
    }
}
