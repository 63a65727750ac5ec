//! The window read as the API's figures: per app (rates, error rate, merged
//! percentiles, timing breakdown, series) and per flow. Pure: the window and
//! the view in, the `shapes` the API serves out.

use super::histogram::{Buckets, Percentiles};
use super::sample::{AppCounters, NodeSample, Timing};
pub use super::shapes::{
    AppDetail, AppList, AppSummary, BackendInfo, Flow, FlowList, Latency, SeriesPoint,
    TimingBreakdown,
};
use super::whole as count;
use super::window::{step, NodeSeries, Window};
use crate::reconcile::view::{AppView, View};
use std::collections::{BTreeMap, BTreeSet};

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
