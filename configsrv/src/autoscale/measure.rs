//! Autoscaling, the figure: one app's metric over the policy's window, read
//! from the collector's window, and refused when any node running the app
//! has no fresh scrape. Pure: the window and `now` in, a number or a reason out.

use crate::observe::histogram::Buckets;
use crate::observe::sample::{AppCounters, Timing};
use crate::observe::window::{NodeSeries, Window};
use schemas::policy::ScaleMetric;
use std::time::Duration;

/// What the figure of one app is read from.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    /// The app id, as meshd labels it.
    pub app: &'a str,
    /// Rate counts requests (HTTP) rather than connections.
    pub http: bool,
    /// The policy's metric.
    pub metric: ScaleMetric,
    /// The nodes its tasks run on: each must have fresh figures.
    pub nodes: &'a [String],
    /// Its running tasks, for per-instance figures.
    pub running: u32,
    /// The policy's window.
    pub window: Duration,
    /// A node's last good scrape older than this is stale.
    pub stale_after: Duration,
    /// Now, Unix milliseconds.
    pub now_ms: u64,
}

/// The node's points inside the window.
fn recent(n: &NodeSeries, since_ms: u64) -> NodeSeries {
    NodeSeries {
        points: n
            .points
            .iter()
            .filter(|p| p.at_ms >= since_ms)
            .cloned()
            .collect(),
        ..NodeSeries::default()
    }
}

/// The app's figure over the window, or why it cannot be trusted.
pub fn measure(w: &Window, s: &Scope<'_>) -> Result<f64, String> {
    let window_ms = u64::try_from(s.window.as_millis()).unwrap_or(u64::MAX);
    let since = s.now_ms.saturating_sub(window_ms);
    let fresh_ms = u64::try_from(s.stale_after.as_millis()).unwrap_or(u64::MAX);
    // Half the window at least, so a just-started collector does not act on one scrape.
    let need_secs = s.window.as_secs_f64() / 2.0;
    for node in s.nodes {
        let Some(series) = w.nodes.get(node) else {
            return Err(format!("node {node} runs the app but is not scraped (yet)"));
        };
        if !series.reachable {
            let why = series.error.as_deref().unwrap_or("no scrape yet");
            return Err(format!(
                "node {node} runs the app and its last scrape failed: {why}"
            ));
        }
        let last = series.points.back().map_or(0, |p| p.at_ms);
        if s.now_ms.saturating_sub(last) > fresh_ms {
            return Err(format!(
                "node {node} runs the app and its last good scrape is {:.1} s old",
                s.now_ms.saturating_sub(last) as f64 / 1000.0
            ));
        }
        let span = recent(series, since).span_secs();
        if span < need_secs {
            return Err(format!(
                "node {node} has {span:.1} s of figures; the {} s window needs {need_secs:.1} s first",
                s.window.as_secs_f64()
            ));
        }
    }
    let counter: fn(&AppCounters) -> f64 = if s.http {
        |a| a.requests
    } else {
        |a| a.connections
    };
    let app = |sample: &crate::observe::sample::NodeSample| sample.apps.get(s.app).cloned();
    let per_instance = f64::from(s.running.max(1));
    // Every node's meshd carries traffic to the app (clients' nodes), so all count.
    let nodes: Vec<NodeSeries> = w.nodes.values().map(|n| recent(n, since)).collect();
    Ok(match s.metric {
        ScaleMetric::RpsPerInstance => {
            let rate: f64 = nodes
                .iter()
                .filter(|n| n.span_secs() > 0.0)
                .map(|n| n.increase(|x| app(x).map_or(0.0, |a| counter(&a))) / n.span_secs())
                .sum();
            rate / per_instance
        }
        ScaleMetric::ActiveConnectionsPerInstance => {
            let open: f64 = nodes
                .iter()
                .filter_map(|n| n.points.back())
                .map(|p| p.sample.apps.get(s.app).map_or(0.0, |a| a.active))
                .sum();
            open / per_instance
        }
        ScaleMetric::P99LatencyMs => {
            let per_node: Vec<Buckets> = nodes
                .iter()
                .map(|n| {
                    n.histogram_increase(|x| x.apps.get(s.app).map(|a| a.timing(Timing::Total)))
                })
                .collect();
            // No request in the window: no latency to complain of.
            Buckets::merge(&per_node)
                .quantile(0.99)
                .map_or(0.0, |secs| secs * 1000.0)
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::observe::sample::{NodeSample, NodeStatus};
    use std::sync::Arc;

    fn sample(requests: f64, active: f64) -> (NodeSample, NodeStatus) {
        let mut s = NodeSample::default();
        s.apps.insert(
            "/a".into(),
            Arc::new(AppCounters {
                requests,
                active,
                ..Default::default()
            }),
        );
        (s, NodeStatus::default())
    }

    fn scope<'a>(metric: ScaleMetric, nodes: &'a [String], now_ms: u64) -> Scope<'a> {
        Scope {
            app: "/a",
            http: true,
            metric,
            nodes,
            running: 2,
            window: Duration::from_secs(10),
            stale_after: Duration::from_secs(3),
            now_ms,
        }
    }

    /// n1 and n2 scraped every second for 20 s: n1 sees 10 rps, n2 30 rps.
    fn window() -> Window {
        let mut w = Window::new(Duration::from_secs(60), Duration::from_secs(1));
        w.retain_nodes(&["n1".to_owned(), "n2".to_owned()].into());
        for t in 0..=20u64 {
            w.record("n1", t * 1000, t * 1000, Ok(sample(10.0 * t as f64, 3.0)));
            w.record("n2", t * 1000, t * 1000, Ok(sample(30.0 * t as f64, 5.0)));
        }
        w
    }

    #[test]
    fn rate_and_connections_per_instance_sum_every_node() {
        let w = window();
        let nodes = ["n1".to_owned()];
        let rps = measure(&w, &scope(ScaleMetric::RpsPerInstance, &nodes, 20_000)).unwrap();
        assert!((rps - 20.0).abs() < 1e-9, "{rps}");
        let open = measure(
            &w,
            &scope(ScaleMetric::ActiveConnectionsPerInstance, &nodes, 20_000),
        )
        .unwrap();
        assert!((open - 4.0).abs() < 1e-9, "{open}");
        // No requests: a p99 of 0, not an error.
        let p99 = measure(&w, &scope(ScaleMetric::P99LatencyMs, &nodes, 20_000)).unwrap();
        assert_eq!(p99, 0.0);
    }

    #[test]
    fn a_node_running_the_app_without_a_fresh_scrape_is_stale() {
        let mut w = window();
        let nodes = ["n1".to_owned(), "n2".to_owned()];
        // 5 s after the last scrape: older than `stale_after`.
        let e = measure(&w, &scope(ScaleMetric::RpsPerInstance, &nodes, 25_000)).unwrap_err();
        assert!(e.contains("node n1") && e.contains("5.0 s old"), "{e}");
        // A failed scrape.
        w.record("n2", 21_000, 21_000, Err("connection refused".into()));
        let e = measure(&w, &scope(ScaleMetric::RpsPerInstance, &nodes[1..], 21_000)).unwrap_err();
        assert!(e.contains("n2") && e.contains("connection refused"), "{e}");
        // A node never scraped.
        let ghost = ["n9".to_owned()];
        let e = measure(&w, &scope(ScaleMetric::RpsPerInstance, &ghost, 20_000)).unwrap_err();
        assert!(e.contains("n9"), "{e}");
    }

    #[test]
    fn a_window_not_half_filled_yet_is_stale() {
        let mut w = Window::new(Duration::from_secs(60), Duration::from_secs(1));
        w.retain_nodes(&["n1".to_owned()].into());
        for t in 0..3u64 {
            w.record("n1", t * 1000, t * 1000, Ok(sample(t as f64, 0.0)));
        }
        let nodes = ["n1".to_owned()];
        let e = measure(&w, &scope(ScaleMetric::RpsPerInstance, &nodes, 2_000)).unwrap_err();
        assert!(e.contains("2.0 s of figures"), "{e}");
    }
}
