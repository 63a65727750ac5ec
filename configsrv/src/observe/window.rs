//! The last `--window` of scrapes, per node: a bounded ring of samples (its
//! memory depends on the window and the scrape interval, never on uptime),
//! and each node's latest scrape outcome. Increases over the window handle
//! counter resets as Prometheus' `increase` does. Pure: callers pass `now`.

use super::histogram::Buckets;
use super::sample::{NodeSample, NodeStatus};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// One scrape's sample, stamped with its round's start (Unix milliseconds).
#[derive(Debug, Clone)]
pub struct Point {
    /// When the round started, shared by every node of the round.
    pub at_ms: u64,
    /// What meshd said.
    pub sample: Arc<NodeSample>,
}

/// One node's recent scrapes.
#[derive(Debug, Clone, Default)]
pub struct NodeSeries {
    /// Successful scrapes in the window, oldest first.
    pub points: VecDeque<Point>,
    /// The last scrape succeeded.
    pub reachable: bool,
    /// Why the last scrape failed.
    pub error: Option<String>,
    /// When the last scrape succeeded (Unix seconds).
    pub last_ok: Option<u64>,
    /// What `/status` said at the last successful scrape.
    pub status: Option<NodeStatus>,
}

impl NodeSeries {
    /// Seconds between the oldest and newest point (0 with fewer than two).
    pub fn span_secs(&self) -> f64 {
        match (self.points.front(), self.points.back()) {
            (Some(a), Some(b)) => b.at_ms.saturating_sub(a.at_ms) as f64 / 1000.0,
            _ => 0.0,
        }
    }

    /// Increase of a counter over the window: the sum of consecutive
    /// differences, where a drop means a restart and the new value counts whole.
    pub fn increase(&self, value: impl Fn(&NodeSample) -> f64) -> f64 {
        self.points
            .iter()
            .zip(self.points.iter().skip(1))
            .map(|(a, b)| step(value(&a.sample), value(&b.sample)))
            .sum()
    }

    /// Increase of a histogram over the window, bucket by bucket.
    pub fn histogram_increase(&self, h: impl Fn(&NodeSample) -> Option<&Buckets>) -> Buckets {
        let steps: Vec<Buckets> = self
            .points
            .iter()
            .zip(self.points.iter().skip(1))
            .filter_map(|(a, b)| {
                let later = h(&b.sample)?;
                Some(h(&a.sample).map_or_else(|| later.clone(), |earlier| later.since(earlier)))
            })
            .collect();
        Buckets::merge(&steps)
    }
}

/// The difference of a counter between two scrapes; a series absent before
/// counts from 0 (meshd creates a series on its first event).
pub fn step(before: f64, after: f64) -> f64 {
    if after >= before {
        after - before
    } else {
        after
    }
}

/// Every node's recent scrapes.
#[derive(Debug, Clone)]
pub struct Window {
    /// How far back figures reach.
    pub span: Duration,
    /// Most points kept per node (the window over the interval, plus slack).
    pub max_points: usize,
    /// By node name.
    pub nodes: BTreeMap<String, NodeSeries>,
}

impl Window {
    /// An empty window of `span`, scraped every `interval`.
    pub fn new(span: Duration, interval: Duration) -> Window {
        let per = span.as_millis() / interval.as_millis().max(1);
        Window {
            span,
            max_points: usize::try_from(per).unwrap_or(usize::MAX).clamp(2, 100_000) + 2,
            nodes: BTreeMap::new(),
        }
    }

    /// Keeps only these nodes (the ones configsrv renders for now).
    pub fn retain_nodes(&mut self, nodes: &BTreeSet<String>) {
        self.nodes.retain(|n, _| nodes.contains(n));
        for n in nodes {
            self.nodes.entry(n.clone()).or_default();
        }
    }

    /// Records one node's scrape of the round that started at `at_ms`.
    pub fn record(
        &mut self,
        node: &str,
        at_ms: u64,
        now_ms: u64,
        result: Result<(NodeSample, NodeStatus), String>,
    ) {
        // A node dropped while its scrape was in flight stays dropped.
        let Some(series) = self.nodes.get_mut(node) else {
            return;
        };
        match result {
            Ok((mut sample, status)) => {
                // Idle apps repeat their figures scrape after scrape: keep one copy.
                if let Some(prev) = series.points.back() {
                    for (id, counters) in &mut sample.apps {
                        if let Some(same) = prev.sample.apps.get(id).filter(|p| *p == counters) {
                            *counters = Arc::clone(same);
                        }
                    }
                }
                series.reachable = true;
                series.error = None;
                series.last_ok = Some(now_ms / 1000);
                series.status = Some(status);
                series.points.push_back(Point {
                    at_ms,
                    sample: Arc::new(sample),
                });
            }
            Err(e) => {
                series.reachable = false;
                series.error = Some(e);
            }
        }
        let oldest =
            now_ms.saturating_sub(u64::try_from(self.span.as_millis()).unwrap_or(u64::MAX));
        while series.points.len() > self.max_points
            || series.points.front().is_some_and(|p| p.at_ms < oldest)
        {
            series.points.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::observe::sample::AppCounters;

    fn sample(requests: f64) -> (NodeSample, NodeStatus) {
        let mut s = NodeSample::default();
        s.apps.insert(
            "/a".into(),
            Arc::new(AppCounters {
                requests,
                ..Default::default()
            }),
        );
        (s, NodeStatus::default())
    }

    fn requests(s: &NodeSample) -> f64 {
        s.apps.get("/a").map_or(0.0, |a| a.requests)
    }

    #[test]
    fn memory_is_bounded_by_the_window_not_uptime() {
        let mut w = Window::new(Duration::from_secs(10), Duration::from_secs(1));
        w.retain_nodes(&["n1".to_owned()].into());
        for i in 0..10_000u64 {
            w.record("n1", i * 1000, i * 1000, Ok(sample(i as f64)));
        }
        let s = &w.nodes["n1"];
        assert!(s.points.len() <= 11, "{}", s.points.len());
        assert!((s.span_secs() - 10.0).abs() < 1e-9);
        // A steady 1 request a second.
        assert!((s.increase(requests) / s.span_secs() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn counter_resets_count_what_came_after() {
        let mut w = Window::new(Duration::from_secs(60), Duration::from_secs(1));
        w.retain_nodes(&["n1".to_owned()].into());
        // 100 -> 150 (+50), restart -> 20 (+20), -> 30 (+10).
        for (t, v) in [(0, 100.0), (1, 150.0), (2, 20.0), (3, 30.0)] {
            w.record("n1", t * 1000, t * 1000, Ok(sample(v)));
        }
        assert_eq!(w.nodes["n1"].increase(requests), 80.0);
    }

    #[test]
    fn unchanged_app_figures_are_kept_once() {
        let mut w = Window::new(Duration::from_secs(60), Duration::from_secs(1));
        w.retain_nodes(&["n1".to_owned()].into());
        for t in 0..3 {
            w.record("n1", t * 1000, t * 1000, Ok(sample(7.0)));
        }
        let p = &w.nodes["n1"].points;
        assert!(Arc::ptr_eq(
            &p[0].sample.apps["/a"],
            &p[2].sample.apps["/a"]
        ));
    }

    #[test]
    fn failures_flag_the_node_and_keep_its_points() {
        let mut w = Window::new(Duration::from_secs(60), Duration::from_secs(1));
        w.retain_nodes(&["n1".to_owned(), "n2".to_owned()].into());
        w.record("n1", 0, 0, Ok(sample(1.0)));
        w.record("n1", 1000, 1500, Err("timed out".into()));
        let s = &w.nodes["n1"];
        assert!(!s.reachable);
        assert_eq!(s.error.as_deref(), Some("timed out"));
        assert_eq!((s.points.len(), s.last_ok), (1, Some(0)));
        assert!(w.nodes["n2"].points.is_empty());
        // A node no longer rendered for leaves the window, late answers too.
        w.retain_nodes(&["n2".to_owned()].into());
        w.record("n1", 2000, 2000, Ok(sample(2.0)));
        assert!(!w.nodes.contains_key("n1"));
    }
}
