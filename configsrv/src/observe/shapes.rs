//! The shapes of the collector's answers (`/v1/apps`, `/v1/apps/<id>`,
//! `/v1/flows`), as docs/api.md lists them; `figures` fills them in.

use super::histogram::Percentiles;
use serde::Serialize;
use utoipa::ToSchema;

/// p50, p90 and p99 in seconds; each null when nothing was measured.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Default)]
pub struct Latency {
    /// Median, seconds.
    pub p50: Option<f64>,
    /// 90th percentile, seconds.
    pub p90: Option<f64>,
    /// 99th percentile, seconds.
    pub p99: Option<f64>,
}

impl From<Percentiles> for Latency {
    fn from(p: Percentiles) -> Latency {
        Latency {
            p50: p.p50,
            p90: p.p90,
            p99: p.p99,
        }
    }
}

/// One app's figures over the window (`GET /v1/apps`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppSummary {
    /// App id, with its leading slash.
    pub id: String,
    /// Tasks running or being killed.
    pub instances: usize,
    /// Tasks running with passing health checks.
    pub healthy: usize,
    /// `tcp` or `http`.
    pub protocol: String,
    /// Its service ports.
    pub service_ports: Vec<u16>,
    /// Requests (HTTP) or connections (TCP) per second; null before two scrapes.
    pub rate: Option<f64>,
    /// Fraction of requests answered 5xx; null with no request.
    pub error_rate: Option<f64>,
    /// Whole-request latency from the merged histograms of every node.
    pub latency: Latency,
    /// Connections open now, every node.
    pub active_connections: u64,
    /// Bytes from clients to backends in the window.
    pub bytes_in: u64,
    /// Bytes from backends to clients in the window.
    pub bytes_out: u64,
    /// Connections and requests denied in the window.
    pub denied: u64,
}

/// `GET /v1/apps`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppList {
    /// The window figures cover, seconds.
    pub window_seconds: u64,
    /// Every app.
    pub apps: Vec<AppSummary>,
}

/// The user-to-app timing breakdown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimingBreakdown {
    /// Downstream smoothed RTT.
    pub client_rtt: Latency,
    /// Connecting to the backend.
    pub connect: Latency,
    /// Request sent to the backend's first byte.
    pub response: Latency,
    /// First response byte to the last byte to the client.
    pub transfer: Latency,
    /// The whole request.
    pub total: Latency,
}

/// One point per scrape round.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SeriesPoint {
    /// When the round started, Unix seconds.
    pub at: u64,
    /// Requests (or connections) per second since the previous round.
    pub rate: Option<f64>,
    /// 5xx fraction since the previous round.
    pub error_rate: Option<f64>,
    /// Median whole-request latency.
    pub p50: Option<f64>,
    /// 99th percentile whole-request latency.
    pub p99: Option<f64>,
    /// Median client RTT.
    pub client_rtt_p50: Option<f64>,
    /// Median backend connect time.
    pub connect_p50: Option<f64>,
    /// Median app response time.
    pub response_p50: Option<f64>,
    /// Median transfer time.
    pub transfer_p50: Option<f64>,
}

/// One backend of an app.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BackendInfo {
    /// Mesos task id.
    pub task: String,
    /// Where meshd reaches it.
    pub address: String,
    /// The node it runs on.
    pub node: String,
    /// `healthy`, `unhealthy` or `draining`.
    pub health: String,
    /// Finishing its work, taking no new work.
    pub draining: bool,
}

/// `GET /v1/apps/<app id>`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppDetail {
    /// Everything `/v1/apps` has for the app.
    #[serde(flatten)]
    pub summary: AppSummary,
    /// The user-to-app timing breakdown; each part null when nothing was measured in the window.
    pub timing: TimingBreakdown,
    /// One point per scrape in the window, oldest first.
    pub series: Vec<SeriesPoint>,
    /// Backends at its first service port.
    pub backends: Vec<BackendInfo>,
    /// Source apps seen calling it in the window (`unknown`: outside the identity table).
    pub sources: Vec<String>,
    /// Its policy and render problems.
    pub errors: Vec<String>,
}

/// One (source, destination) pair.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Flow {
    /// Source app, or `unknown`.
    pub source: String,
    /// Destination app.
    pub destination: String,
    /// Let through in the window.
    pub allowed: u64,
    /// Refused in the window.
    pub denied: u64,
    /// Let through in audit mode, would be refused.
    pub would_deny: u64,
}

/// `GET /v1/flows`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlowList {
    /// The window, seconds.
    pub window_seconds: u64,
    /// Every pair seen in the window.
    pub flows: Vec<Flow>,
}
