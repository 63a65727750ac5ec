//! Every metric meshd exports, declared once. Handles for the connection path
//! are made here at reload time, so serving a connection formats no label.
//! Counters and gauges go through the `metrics` facade and its Prometheus
//! exporter; the per-request timing histograms are `Timing`s, rendered
//! after the exporter's text (`render_timings`).

use metrics::{counter, gauge, Counter, Gauge};
use metrics_exporter_prometheus::formatting::{
    sanitize_label_value, write_metric_line, write_type_line,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Connections by source app, destination app and verdict.
pub const CONNECTIONS: &str = "palisade_meshd_connections_total";
/// Connections open now, by destination app.
pub const ACTIVE_CONNECTIONS: &str = "palisade_meshd_active_connections";
/// Of the open HTTP/1.1 connections, those parked while quiet (no task of their own).
pub const PARKED_CONNECTIONS: &str = "palisade_meshd_parked_connections";
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
/// App response time: the request sent (head, and body if any) to the backend's first response byte.
pub const UPSTREAM_TTFB: &str = "palisade_meshd_upstream_ttfb_seconds";
/// The client connection's smoothed RTT (`TCP_INFO`), once per HTTP request or TCP connection.
pub const CLIENT_RTT: &str = "palisade_meshd_client_rtt_seconds";
/// Data transfer time: the backend's first response byte to the last byte written to the client.
pub const TRANSFER: &str = "palisade_meshd_transfer_seconds";
/// Bytes from clients to backends.
pub const BYTES_UPSTREAM: &str = "palisade_meshd_upstream_bytes_total";
/// Bytes from backends to clients.
pub const BYTES_DOWNSTREAM: &str = "palisade_meshd_downstream_bytes_total";
/// Of the TCP-mode bytes both ways, those the kernel moved with `splice(2)`.
pub const BYTES_SPLICED: &str = "palisade_meshd_spliced_bytes_total";
/// Requests retried on another backend.
pub const RETRIES: &str = "palisade_meshd_retries_total";
/// Requests and connections sent to one backend.
pub const BACKEND_REQUESTS: &str = "palisade_meshd_backend_requests_total";
/// Connect failures, resets and 5xx answers of one backend.
pub const BACKEND_FAILURES: &str = "palisade_meshd_backend_failures_total";
/// Times a backend was ejected by outlier detection.
pub const BACKEND_EJECTIONS: &str = "palisade_meshd_backend_ejections_total";
/// UDP datagrams from clients forwarded to backends, by destination app.
pub const UDP_DATAGRAMS_UPSTREAM: &str = "palisade_meshd_udp_upstream_datagrams_total";
/// UDP datagrams from backends sent back to clients, by destination app.
pub const UDP_DATAGRAMS_DOWNSTREAM: &str = "palisade_meshd_udp_downstream_datagrams_total";
/// UDP payload bytes from clients to backends, by destination app.
pub const UDP_BYTES_UPSTREAM: &str = "palisade_meshd_udp_upstream_bytes_total";
/// UDP payload bytes from backends to clients, by destination app.
pub const UDP_BYTES_DOWNSTREAM: &str = "palisade_meshd_udp_downstream_bytes_total";
/// UDP sessions open now, by destination app.
pub const UDP_SESSIONS: &str = "palisade_meshd_udp_sessions";
/// UDP datagrams of allowed sources dropped (no backend, session limit, full socket buffer), by destination app.
pub const UDP_DROPPED: &str = "palisade_meshd_udp_dropped_datagrams_total";
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
    pub duration: Arc<Timing>,
    /// New-connection connect time.
    pub connect: Arc<Timing>,
    /// Time to the response's first byte.
    pub ttfb: Arc<Timing>,
    /// The client's smoothed RTT, per request (per connection in TCP mode).
    pub client_rtt: Arc<Timing>,
    /// The backend's first byte to the client's last.
    pub transfer: Arc<Timing>,
    /// Client -> backend bytes.
    pub bytes_up: Counter,
    /// Backend -> client bytes.
    pub bytes_down: Counter,
    /// TCP-mode bytes (both ways) moved by `splice(2)`.
    pub bytes_spliced: Counter,
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
            duration: timing(REQUEST_DURATION, dst_app),
            connect: timing(UPSTREAM_CONNECT, dst_app),
            ttfb: timing(UPSTREAM_TTFB, dst_app),
            client_rtt: timing(CLIENT_RTT, dst_app),
            transfer: timing(TRANSFER, dst_app),
            bytes_up: counter!(BYTES_UPSTREAM, "dst_app" => app.clone()),
            bytes_down: counter!(BYTES_DOWNSTREAM, "dst_app" => app.clone()),
            bytes_spliced: counter!(BYTES_SPLICED, "dst_app" => app.clone()),
            retries: counter!(RETRIES, "dst_app" => app),
        }
    }

    /// The counter of a status code's class.
    pub fn status(&self, code: u16) -> &Counter {
        let i = usize::from((code / 100).clamp(1, 5)) - 1;
        &self.requests[i]
    }
}

/// Per-destination handles of a UDP service.
#[derive(Debug, Clone)]
pub struct UdpMetrics {
    /// Client -> backend datagrams.
    pub datagrams_up: Counter,
    /// Backend -> client datagrams.
    pub datagrams_down: Counter,
    /// Client -> backend payload bytes.
    pub bytes_up: Counter,
    /// Backend -> client payload bytes.
    pub bytes_down: Counter,
    /// Open sessions.
    pub sessions: Gauge,
    /// Datagrams of allowed sources that could not be carried.
    pub dropped: Counter,
}

impl UdpMetrics {
    /// Registers the UDP handles of one destination app.
    pub fn new(dst_app: &str) -> UdpMetrics {
        let app = dst_app.to_owned();
        UdpMetrics {
            datagrams_up: counter!(UDP_DATAGRAMS_UPSTREAM, "dst_app" => app.clone()),
            datagrams_down: counter!(UDP_DATAGRAMS_DOWNSTREAM, "dst_app" => app.clone()),
            bytes_up: counter!(UDP_BYTES_UPSTREAM, "dst_app" => app.clone()),
            bytes_down: counter!(UDP_BYTES_DOWNSTREAM, "dst_app" => app.clone()),
            sessions: gauge!(UDP_SESSIONS, "dst_app" => app.clone()),
            dropped: counter!(UDP_DROPPED, "dst_app" => app),
        }
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

/// `SECONDS_BUCKETS` in nanoseconds, for `Timing`'s integer compare.
const BOUNDS_NS: [u64; SECONDS_BUCKETS.len()] = {
    let mut out = [0; SECONDS_BUCKETS.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = (SECONDS_BUCKETS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

/// A Prometheus histogram over `SECONDS_BUCKETS` that costs a sample two
/// relaxed atomic adds and a binary search of 15 integers. The exporter's
/// histograms keep every sample (with a clock read each) until upkeep
/// folds them: about 130 instructions in the request's thread and more in
/// upkeep's, 1% of an HTTP/1.1 request each (`ops/bench/instructions.py`).
/// A request records four or five timings, so they all take this instead.
#[derive(Debug, Default)]
pub struct Timing {
    /// Samples per bucket (not cumulative); the last is above every bound.
    buckets: [AtomicU64; SECONDS_BUCKETS.len() + 1],
    /// Sum of the samples, in nanoseconds (wraps after 584 years).
    sum_ns: AtomicU64,
}

impl Timing {
    /// Records one sample.
    pub fn record(&self, d: Duration) {
        // Saturates at 584 years, far past the last bucket.
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.record_ns(ns);
    }

    /// Records one sample of `ns` nanoseconds.
    pub fn record_ns(&self, ns: u64) {
        // Prometheus buckets count samples <= their bound: the first bound
        // not below the sample takes it.
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (`+Inf` last, which is the count) and the
    /// sum in seconds. Read while requests record, so the sum and the counts
    /// may be one sample apart, as with any lock-free histogram.
    pub fn snapshot(&self) -> ([u64; SECONDS_BUCKETS.len() + 1], f64) {
        let mut out = [0; SECONDS_BUCKETS.len() + 1];
        let mut total = 0u64;
        for (o, b) in out.iter_mut().zip(&self.buckets) {
            total = total.wrapping_add(b.load(Ordering::Relaxed));
            *o = total;
        }
        (out, self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

/// Every `Timing` handed out, by metric name and rendered labels: a second
/// handle for the same series shares the first one's counts, as the
/// `metrics` facade does. Locked only when a handle is made and at a scrape.
static TIMINGS: Mutex<BTreeMap<(&'static str, String), Arc<Timing>>> = Mutex::new(BTreeMap::new());

/// The `Timing` of metric `name` for one destination app.
pub fn timing(name: &'static str, dst_app: &str) -> Arc<Timing> {
    let labels = format!("dst_app=\"{}\"", sanitize_label_value(dst_app));
    let mut all = TIMINGS.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(all.entry((name, labels)).or_default())
}

/// Appends every `Timing` to a Prometheus text exposition, in the format
/// the exporter uses for its own histograms.
pub fn render_timings(out: &mut String) {
    let all = TIMINGS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut family = None;
    for ((name, labels), t) in all.iter() {
        if family != Some(*name) {
            if family.is_some() {
                out.push('\n');
            }
            write_type_line(out, name, "histogram");
            family = Some(*name);
        }
        let labels = std::slice::from_ref(labels);
        let (counts, sum) = t.snapshot();
        for (le, n) in SECONDS_BUCKETS.iter().zip(counts) {
            write_metric_line(out, name, Some("bucket"), labels, Some(("le", le)), n, None);
        }
        let count = counts[SECONDS_BUCKETS.len()];
        write_metric_line(
            out,
            name,
            Some("bucket"),
            labels,
            Some(("le", "+Inf")),
            count,
            None,
        );
        write_metric_line::<&str, f64>(out, name, Some("sum"), labels, None, sum, None);
        write_metric_line::<&str, u64>(out, name, Some("count"), labels, None, count, None);
    }
    if family.is_some() {
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_the_seconds_buckets_in_nanoseconds() {
        for (ns, s) in BOUNDS_NS.iter().zip(SECONDS_BUCKETS) {
            assert_eq!(*ns, (s * 1e9).round() as u64);
        }
        assert!(BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_timing_renders_as_a_cumulative_prometheus_histogram() {
        let t = timing(TRANSFER, "/test/render \"q\"");
        // On a bound, just above it, and beyond the last.
        t.record(Duration::from_millis(50));
        t.record(Duration::from_micros(50_001));
        t.record(Duration::from_secs(60));
        t.record_ns(0);
        // A second handle for the same series shares its counts.
        timing(TRANSFER, "/test/render \"q\"").record(Duration::from_millis(1));
        let mut out = String::new();
        render_timings(&mut out);
        let series = |suffix: &str| {
            let prefix = format!("{TRANSFER}_{suffix}{{dst_app=\"/test/render \\\"q\\\"\"");
            out.lines()
                .filter(|l| l.starts_with(&prefix))
                .map(|l| l[prefix.len()..].to_owned())
                .collect::<Vec<_>>()
        };
        let buckets = series("bucket");
        assert_eq!(buckets.len(), SECONDS_BUCKETS.len() + 1, "{out}");
        assert_eq!(buckets[0], ",le=\"0.0005\"} 1");
        assert_eq!(buckets[1], ",le=\"0.001\"} 2");
        assert_eq!(buckets[6], ",le=\"0.05\"} 3");
        assert_eq!(buckets[7], ",le=\"0.1\"} 4");
        assert_eq!(buckets[14], ",le=\"30\"} 4");
        assert_eq!(buckets[15], ",le=\"+Inf\"} 5");
        assert_eq!(series("count"), ["} 5"]);
        let sum: f64 = series("sum")[0][2..].parse().unwrap();
        assert!((sum - 60.101001).abs() < 1e-9, "{sum}");
        assert_eq!(
            out.matches(&format!("# TYPE {TRANSFER} histogram\n"))
                .count(),
            1
        );
    }
}
