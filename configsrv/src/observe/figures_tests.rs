#![allow(clippy::unwrap_used)]
use super::*;
use crate::observe::sample::{FlowCounts, NodeStatus};
use std::time::Duration;

const BOUNDS: [f64; 4] = [0.001, 0.01, 0.1, f64::INFINITY];

/// A sample of app `/a`: `requests` so far (`errors` of them 5xx), each
/// bucket's own count of the total-time histogram, and flows from `/b`.
fn sample(
    requests: f64,
    errors: f64,
    per_bucket: [f64; 4],
    from_b: f64,
    denied: f64,
) -> NodeSample {
    let mut cum = 0.0;
    let hist = Buckets(
        BOUNDS
            .iter()
            .zip(per_bucket)
            .map(|(le, n)| {
                cum += n;
                (*le, cum)
            })
            .collect(),
    );
    let mut a = AppCounters {
        requests,
        errors,
        active: 2.0,
        denied,
        ..Default::default()
    };
    a.timings[Timing::Total as usize] = hist;
    let mut s = NodeSample::default();
    s.apps.insert("/a".into(), std::sync::Arc::new(a));
    s.flows.insert(
        ("/b".into(), "/a".into()),
        FlowCounts {
            allow: from_b,
            ..Default::default()
        },
    );
    s.flows.insert(
        ("unknown".into(), "/a".into()),
        FlowCounts {
            deny: denied,
            ..Default::default()
        },
    );
    s
}

fn app_view() -> AppView {
    AppView {
        id: "/a".parse().unwrap(),
        instances: 2,
        healthy: 2,
        protocol: schemas::Protocol::Http,
        service_ports: vec![10000],
        backends: vec![],
        addresses: vec![],
    }
}

/// Two nodes over 10 s: n1 serves 100 fast requests, n2 10 slow ones (2 of them 5xx).
fn window() -> Window {
    let mut w = Window::new(Duration::from_secs(60), Duration::from_secs(5));
    w.retain_nodes(&["n1".to_owned(), "n2".to_owned()].into());
    let ok = |s| Ok((s, NodeStatus::default()));
    w.record(
        "n1",
        0,
        0,
        ok(sample(50.0, 0.0, [50.0, 0.0, 0.0, 0.0], 50.0, 0.0)),
    );
    w.record("n2", 0, 0, ok(NodeSample::default()));
    w.record(
        "n1",
        5_000,
        5_000,
        ok(sample(100.0, 0.0, [100.0, 0.0, 0.0, 0.0], 100.0, 1.0)),
    );
    w.record(
        "n2",
        5_000,
        5_000,
        ok(sample(4.0, 0.0, [0.0, 0.0, 4.0, 0.0], 4.0, 2.0)),
    );
    w.record(
        "n1",
        10_000,
        10_000,
        ok(sample(150.0, 0.0, [150.0, 0.0, 0.0, 0.0], 150.0, 1.0)),
    );
    w.record(
        "n2",
        10_000,
        10_000,
        ok(sample(10.0, 2.0, [0.0, 0.0, 10.0, 0.0], 10.0, 3.0)),
    );
    w
}

#[test]
fn app_figures_sum_nodes_and_merge_histograms() {
    let w = window();
    let s = summary(&w, &app_view());
    // n1: 100 requests in 10 s; n2: 10 (its series appeared after the first scrape).
    assert!((s.rate.unwrap() - 11.0).abs() < 1e-9, "{s:?}");
    assert!((s.error_rate.unwrap() - 2.0 / 110.0).abs() < 1e-9);
    // 110 requests, 100 of them under 1 ms: the merged p50 and p90 are fast, p99 slow.
    assert!(s.latency.p50.unwrap() <= 0.001);
    assert!(s.latency.p90.unwrap() <= 0.001);
    assert!(s.latency.p99.unwrap() > 0.01, "{:?}", s.latency);
    assert_eq!(s.active_connections, 4);
    assert_eq!(s.denied, 4);
}

#[test]
fn nothing_measured_is_null() {
    let mut w = Window::new(Duration::from_secs(60), Duration::from_secs(5));
    w.retain_nodes(&["n1".to_owned()].into());
    let s = summary(&w, &app_view());
    assert_eq!(
        (s.rate, s.error_rate, s.latency),
        (None, None, Latency::default())
    );
    w.record(
        "n1",
        0,
        0,
        Ok((NodeSample::default(), NodeStatus::default())),
    );
    w.record(
        "n1",
        5_000,
        5_000,
        Ok((NodeSample::default(), NodeStatus::default())),
    );
    let s = summary(&w, &app_view());
    assert_eq!(s.rate, Some(0.0));
    assert_eq!((s.error_rate, s.latency.p99), (None, None));
}

#[test]
fn flows_and_series() {
    let w = window();
    let f = flows(&w);
    assert_eq!(
        f,
        vec![
            Flow {
                source: "/b".into(),
                destination: "/a".into(),
                allowed: 110,
                denied: 0,
                would_deny: 0
            },
            Flow {
                source: "unknown".into(),
                destination: "/a".into(),
                allowed: 0,
                denied: 4,
                would_deny: 0
            },
        ]
    );
    let view = View {
        apps: vec![app_view()],
        ..View::default()
    };
    let d = detail(&w, &view, &view.apps[0]);
    assert_eq!(d.series.len(), 2);
    assert_eq!(d.series[0].at, 5);
    assert!((d.series[0].rate.unwrap() - (50.0 + 4.0) / 5.0).abs() < 1e-9);
    assert_eq!(d.sources, ["/b", "unknown"]);
    assert!(d.timing.client_rtt.p50.is_none() && d.timing.total.p50.is_some());
}

#[test]
fn the_one_pass_totals_match_the_window_increases_shared_figures_or_not() {
    let mut w = window();
    // An idle stretch: n1 repeats its last figures, which the window shares.
    let last = w.nodes["n1"].points.back().unwrap().sample.clone();
    for t in [15_000, 20_000] {
        let again = (*last).clone();
        w.record("n1", t, t, Ok((again, NodeStatus::default())));
    }
    let p = &w.nodes["n1"].points;
    assert!(std::sync::Arc::ptr_eq(
        &p[p.len() - 1].sample.apps["/a"],
        &p[p.len() - 2].sample.apps["/a"]
    ));
    let view = View {
        apps: vec![app_view()],
        ..View::default()
    };
    let shared = serde_json::to_value(apps(&w, &view)).unwrap();
    // The same window with every point's figures a copy of their own.
    let mut copied = w.clone();
    for n in copied.nodes.values_mut() {
        for p in &mut n.points {
            let mut s = (*p.sample).clone();
            for a in s.apps.values_mut() {
                *a = std::sync::Arc::new((**a).clone());
            }
            p.sample = std::sync::Arc::new(s);
        }
    }
    assert_eq!(shared, serde_json::to_value(apps(&copied, &view)).unwrap());
    // And both agree with the per-series increase.
    let denied = |s: &NodeSample| s.apps.get("/a").map_or(0.0, |a| a.denied);
    assert_eq!(shared["apps"][0]["denied"], increase(&w, denied) as u64);
    let requests: f64 = w
        .nodes
        .values()
        .map(|n| n.increase(|s| s.apps.get("/a").map_or(0.0, |a| a.requests)) / n.span_secs())
        .sum();
    assert!((shared["apps"][0]["rate"].as_f64().unwrap() - requests).abs() < 1e-9);
}
