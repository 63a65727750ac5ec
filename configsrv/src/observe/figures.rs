//! The window read as the API's figures: per app (rates, error rate, merged
//! percentiles, timing breakdown, series), per flow, per node. Pure: the
//! window and the view in, serializable answers out.

use super::histogram::{Buckets, Percentiles};
use super::sample::{AppCounters, NodeSample, Timing};
use super::whole as count;
use super::window::{step, NodeSeries, Window};
use crate::reconcile::view::{AppView, View};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
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
    /// The timing breakdown; client_rtt and transfer are null until meshd measures them.
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

/// Sums the window increase of `value` over every node.
fn increase(w: &Window, value: impl Fn(&NodeSample) -> f64 + Copy) -> f64 {
    w.nodes.values().map(|n| n.increase(value)).sum()
}

fn app<'a>(s: &'a NodeSample, id: &str) -> Option<&'a AppCounters> {
    s.apps.get(id).map(|a| &**a)
}

/// The merged increase of one timing histogram of `id` over the window.
fn timing(w: &Window, id: &str, t: Timing) -> Buckets {
    let per_node: Vec<Buckets> = w
        .nodes
        .values()
        .map(|n| n.histogram_increase(|s| app(s, id).map(|a| a.timing(t))))
        .collect();
    Buckets::merge(&per_node)
}

/// The counter an app's `rate` counts: requests for HTTP, connections for TCP.
fn rate_counter(view: &AppView) -> fn(&AppCounters) -> f64 {
    match view.protocol {
        schemas::Protocol::Http => |a| a.requests,
        _ => |a| a.connections,
    }
}

/// One app's counters over the window, summed over nodes.
#[derive(Debug, Default)]
struct Totals {
    /// Per-node increase of the rate counter over the node's span, summed.
    rate: f64,
    requests: f64,
    errors: f64,
    bytes_in: f64,
    bytes_out: f64,
    denied: f64,
    /// Open connections at each node's last scrape.
    active: f64,
    /// The whole-request histogram's increase, every node.
    total: Buckets,
}

/// The window totals of `apps`, in one pass over every node's points. An
/// app whose figures did not change between two scrapes shares them (the
/// window keeps one copy), so idle apps cost a pointer compare.
fn totals<'a>(w: &Window, apps: &[&'a AppView]) -> BTreeMap<&'a str, Totals> {
    let wanted: BTreeMap<&str, fn(&AppCounters) -> f64> = apps
        .iter()
        .map(|a| (a.id.as_str(), rate_counter(a)))
        .collect();
    let mut out: BTreeMap<&str, Totals> =
        wanted.keys().map(|id| (*id, Totals::default())).collect();
    let empty = AppCounters::default();
    for n in w.nodes.values() {
        let span = n.span_secs();
        for (a, b) in n.points.iter().zip(n.points.iter().skip(1)) {
            for (id, now) in &b.sample.apps {
                let (Some(counter), Some(t)) = (wanted.get(id.as_str()), out.get_mut(id.as_str()))
                else {
                    continue;
                };
                let before = a.sample.apps.get(id);
                if before.is_some_and(|p| std::sync::Arc::ptr_eq(p, now)) {
                    continue;
                }
                let x = before.map_or(&empty, |p| &**p);
                if span > 0.0 {
                    t.rate += step(counter(x), counter(now)) / span;
                }
                t.requests += step(x.requests, now.requests);
                t.errors += step(x.errors, now.errors);
                t.bytes_in += step(x.bytes_in, now.bytes_in);
                t.bytes_out += step(x.bytes_out, now.bytes_out);
                t.denied += step(x.denied, now.denied);
                let grew = now.timing(Timing::Total).since(x.timing(Timing::Total));
                t.total = Buckets::merge([&t.total, &grew]);
            }
        }
        if let Some(last) = n.points.back() {
            for (id, t) in &mut out {
                t.active += last.sample.apps.get(*id).map_or(0.0, |a| a.active);
            }
        }
    }
    out
}

fn summarize(w: &Window, view: &AppView, t: &Totals) -> AppSummary {
    // A rate needs two scrapes of some node; then an app nobody called has rate 0.
    let measured = w.nodes.values().any(|n| n.span_secs() > 0.0);
    AppSummary {
        id: view.id.as_str().to_owned(),
        instances: view.instances,
        healthy: view.healthy,
        // The policy format's own spelling (`tcp`, `http`).
        protocol: serde_json::to_value(view.protocol)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        service_ports: view.service_ports.clone(),
        rate: measured.then_some(t.rate),
        error_rate: (t.requests > 0.0).then(|| t.errors / t.requests),
        latency: Percentiles::of(&t.total).into(),
        active_connections: count(t.active),
        bytes_in: count(t.bytes_in),
        bytes_out: count(t.bytes_out),
        denied: count(t.denied),
    }
}

/// One app's summary.
pub fn summary(w: &Window, view: &AppView) -> AppSummary {
    let t = totals(w, &[view])
        .remove(view.id.as_str())
        .unwrap_or_default();
    summarize(w, view, &t)
}

/// `GET /v1/apps`.
pub fn apps(w: &Window, view: &View) -> AppList {
    let all: Vec<&AppView> = view.apps.iter().collect();
    let mut t = totals(w, &all);
    AppList {
        window_seconds: w.span.as_secs(),
        apps: view
            .apps
            .iter()
            .map(|a| summarize(w, a, &t.remove(a.id.as_str()).unwrap_or_default()))
            .collect(),
    }
}

/// `GET /v1/apps/<id>`.
pub fn detail(w: &Window, view: &View, app_view: &AppView) -> AppDetail {
    let id = app_view.id.as_str();
    let t = |k| Latency::from(Percentiles::of(&timing(w, id, k)));
    let sources: BTreeSet<String> = flows(w)
        .into_iter()
        .filter(|f| f.destination == id)
        .map(|f| f.source)
        .collect();
    AppDetail {
        summary: summary(w, app_view),
        timing: TimingBreakdown {
            client_rtt: t(Timing::ClientRtt),
            connect: t(Timing::Connect),
            response: t(Timing::Response),
            transfer: t(Timing::Transfer),
            total: t(Timing::Total),
        },
        series: series(w, app_view),
        backends: app_view
            .backends
            .iter()
            .map(|b| BackendInfo {
                task: b.task.clone(),
                address: b.address.clone(),
                node: b.node.clone(),
                health: b.health.to_owned(),
                draining: b.health == "draining",
            })
            .collect(),
        sources: sources.into_iter().collect(),
        errors: view.app_errors.get(id).cloned().unwrap_or_default(),
    }
}

/// One scrape round of one app, summed over nodes.
#[derive(Debug)]
struct Round {
    /// Requests (or connections) per second.
    rate: f64,
    requests: f64,
    errors: f64,
    /// Each node's step of each timing histogram, by `Timing`.
    timings: Vec<Vec<Buckets>>,
}

/// One point per round: each node's step from its previous scrape, summed.
fn series(w: &Window, view: &AppView) -> Vec<SeriesPoint> {
    let id = view.id.as_str();
    let counter = rate_counter(view);
    let mut rounds: BTreeMap<u64, Round> = BTreeMap::new();
    for n in w.nodes.values() {
        add_steps(n, id, counter, &mut rounds);
    }
    rounds
        .into_iter()
        .map(|(at_ms, r)| {
            let q = |t: Timing, q: f64| Buckets::merge(&r.timings[t as usize]).quantile(q);
            SeriesPoint {
                at: at_ms / 1000,
                rate: Some(r.rate),
                error_rate: (r.requests > 0.0).then(|| r.errors / r.requests),
                p50: q(Timing::Total, 0.5),
                p99: q(Timing::Total, 0.99),
                client_rtt_p50: q(Timing::ClientRtt, 0.5),
                connect_p50: q(Timing::Connect, 0.5),
                response_p50: q(Timing::Response, 0.5),
                transfer_p50: q(Timing::Transfer, 0.5),
            }
        })
        .collect()
}

fn add_steps(
    n: &NodeSeries,
    id: &str,
    counter: fn(&AppCounters) -> f64,
    rounds: &mut BTreeMap<u64, Round>,
) {
    let empty = AppCounters::default();
    for (a, b) in n.points.iter().zip(n.points.iter().skip(1)) {
        let x = app(&a.sample, id).unwrap_or(&empty);
        let y = app(&b.sample, id).unwrap_or(&empty);
        let secs = b.at_ms.saturating_sub(a.at_ms) as f64 / 1000.0;
        if secs <= 0.0 {
            continue;
        }
        let r = rounds.entry(b.at_ms).or_insert_with(|| Round {
            rate: 0.0,
            requests: 0.0,
            errors: 0.0,
            timings: vec![Vec::new(); Timing::ALL.len()],
        });
        r.rate += step(counter(x), counter(y)) / secs;
        r.requests += step(x.requests, y.requests);
        r.errors += step(x.errors, y.errors);
        for t in Timing::ALL {
            r.timings[t as usize].push(y.timing(t).since(x.timing(t)));
        }
    }
}

/// Every (source, destination) pair seen in the window, summed over nodes.
pub fn flows(w: &Window) -> Vec<Flow> {
    let mut pairs: BTreeSet<(String, String)> = BTreeSet::new();
    for n in w.nodes.values() {
        for p in &n.points {
            pairs.extend(p.sample.flows.keys().cloned());
        }
    }
    pairs
        .into_iter()
        .map(|(source, destination)| {
            let key = (source.clone(), destination.clone());
            let of = |f: fn(&super::sample::FlowCounts) -> f64| {
                let key = &key;
                count(increase(w, move |s: &NodeSample| {
                    s.flows.get(key).map_or(0.0, f)
                }))
            };
            Flow {
                allowed: of(|c| c.allow),
                denied: of(|c| c.deny),
                would_deny: of(|c| c.would_deny),
                source,
                destination,
            }
        })
        .filter(|f| f.allowed + f.denied + f.would_deny > 0)
        .collect()
}

#[cfg(test)]
#[path = "figures_tests.rs"]
mod tests;
