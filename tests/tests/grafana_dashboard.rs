//! `ops/grafana/palisade.json` is importable Grafana JSON over a Prometheus
//! datasource variable, and every metric its PromQL names is one that a real
//! meshd or configsrv exports: both are started here, with real HTTP traffic
//! (allowed, denied, 5xx) through meshd so that its histograms exist, the
//! user-to-app timing ones (client RTT, connect, TTFB, transfer) included.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends::{self, Backend};
use palisade_tests::client::Http;
use palisade_tests::harness::{admin_get, eventually, free_port, meshd, status, Proc, Scratch};
use palisade_tests::marathon_sim::MarathonSim;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

const DASHBOARD: &str = include_str!("../../ops/grafana/palisade.json");

const NODE: &str = "127.0.0.171";
const PORT: u16 = 24771;
/// Clients in this range are allowed; others are denied.
const ALLOWED: &str = "127.0.172.1";
const DENIED: &str = "127.0.173.1";
const POLICY: &str = "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: deny\napps:\n  /grafana/web:\n    protocol: http\n    allow:\n      - from_cidr: 127.0.172.0/24\n";

/// Every PromQL string of the dashboard: panel targets and variable queries.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("expr" | "definition" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// The palisade metric names a PromQL expression refers to (identifiers
/// starting `palisade_`; label names and functions never do).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
        if word(bytes[i]) && (i == 0 || !word(bytes[i - 1])) {
            let end = (i..bytes.len())
                .find(|&j| !word(bytes[j]))
                .unwrap_or(bytes.len());
            let name = &expr[i..end];
            if name.starts_with("palisade_") {
                out.insert(name.to_owned());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// The series names a Prometheus text exposition holds.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("ops/grafana/palisade.json is JSON")
}

fn dashboard_metrics() -> BTreeSet<String> {
    let mut all = Vec::new();
    queries(&dashboard(), &mut all);
    all.iter().flat_map(|q| metric_names(q)).collect()
}

#[test]
fn the_dashboard_is_importable_and_every_panel_queries_palisade_metrics() {
    let d = dashboard();
    assert_eq!(d["title"], "palisade");
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus datasource variable: {vars:?}"
    );
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut charts = 0;
    for p in panels {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "panel ids are unique"
        );
        if p["type"] == "row" {
            continue;
        }
        charts += 1;
        let title = p["title"].as_str().unwrap();
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            assert!(!metric_names(expr).is_empty(), "{title}: {expr}");
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            // Percentiles come from merged buckets, never from averages.
            if expr.contains("histogram_quantile") {
                assert!(
                    expr.contains("_bucket") && expr.contains("le"),
                    "{title}: {expr}"
                );
            }
        }
    }
    assert!(charts >= 10, "{charts} panels");
    let names = dashboard_metrics();
    for wanted in [
        "palisade_meshd_requests_total",
        "palisade_meshd_request_duration_seconds_bucket",
        "palisade_meshd_client_rtt_seconds_bucket",
        "palisade_meshd_upstream_connect_seconds_bucket",
        "palisade_meshd_upstream_ttfb_seconds_bucket",
        "palisade_meshd_transfer_seconds_bucket",
        "palisade_meshd_connections_total",
        "palisade_meshd_reloads_total",
        "palisade_source_stale",
    ] {
        assert!(names.contains(wanted), "the dashboard shows {wanted}");
    }
}

#[test]
fn metric_names_are_read_from_promql() {
    let e = r#"histogram_quantile(0.99, sum by (le, dst_app) (rate(palisade_meshd_x_bucket{dst_app=~"$app",code="5xx"}[$__rate_interval]))) / palisade_y"#;
    let got: Vec<String> = metric_names(e).into_iter().collect();
    assert_eq!(got, ["palisade_meshd_x_bucket", "palisade_y"]);
    let text = "# TYPE a counter\na_total{x=\"1\"} 3\nb 1\n\n";
    assert_eq!(
        exported(text),
        BTreeSet::from(["a_total".into(), "b".into()])
    );
}

fn app_def() -> Value {
    json!({
        "id": "/grafana/web", "instances": 1, "cpus": 0.1, "mem": 32, "labels": {}, "healthChecks": [],
        "networks": [{"mode": "container", "name": "sim"}],
        "container": {"type": "DOCKER", "docker": {"image": "grafana/web:1"},
            "portMappings": [{"containerPort": 8080, "servicePort": PORT, "protocol": "tcp"}]}
    })
}

fn configsrv(dir: &Scratch, sim: &MarathonSim, api: SocketAddr) -> Proc {
    let (policies, out) = (dir.path("policies"), dir.path("nodes"));
    let args = [
        "serve",
        "--marathon",
        &sim.url,
        "--policies",
        policies.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--listen",
        &api.to_string(),
    ];
    Proc::spawn("configsrv", &args, &dir.0)
}

async fn metrics_of(addr: SocketAddr) -> Result<BTreeSet<String>, String> {
    let (code, body) = admin_get(addr, "/metrics").await?;
    if code == 200 {
        Ok(exported(&body))
    } else {
        Err(format!("{addr}/metrics: {code}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_names_is_exported_by_meshd_or_configsrv() {
    let dir = Scratch::new("grafana");
    dir.write("policies/grafana.yaml", POLICY);
    std::fs::create_dir_all(dir.path("nodes")).unwrap();
    let sim = MarathonSim::start("127.0.0.1:0", &[NODE], [127, 0, 171]).await;
    assert_eq!(sim.post_app(&app_def()).await, 201);
    let mut _backends: Vec<Backend> = Vec::new();
    for (task, _, ip) in sim.tasks("/grafana/web") {
        _backends.push(backends::http(&format!("{ip}:8080"), &task).await);
    }
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _configsrv = configsrv(&dir, &sim, api);
    let nodes = dir.path("nodes");
    let (_mesh, admin) = meshd(NODE, &nodes, &[]);
    eventually(
        "meshd routes the app",
        Duration::from_secs(10),
        || async move {
            let s = status(admin).await?;
            let routed = s["services"].as_array().into_iter().flatten().any(|svc| {
                svc["port"] == PORT && svc["backends"].as_array().is_some_and(|b| b.len() == 1)
            });
            if routed && s["ready"] == true {
                Ok(())
            } else {
                Err(s.to_string())
            }
        },
    )
    .await;

    // Real traffic, so every histogram and verdict has samples.
    let service: SocketAddr = format!("{NODE}:{PORT}").parse().unwrap();
    // `/status` lists a service from the swapped config a moment before
    // its listener is bound (it reports `generation` only after): wait
    // for the port itself.
    let mut client = eventually(
        "the service port accepts",
        Duration::from_secs(5),
        || async {
            Http::connect(ALLOWED, service, false)
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await;
    for _ in 0..20 {
        assert_eq!(client.get("/").await.unwrap().status, 200);
    }
    assert_eq!(client.get("/status/500").await.unwrap().status, 500);
    let mut h2 = Http::connect(ALLOWED, service, true).await.unwrap();
    assert_eq!(h2.get("/").await.unwrap().status, 200);
    let mut outsider = Http::connect(DENIED, service, false).await.unwrap();
    assert_eq!(outsider.get("/").await.unwrap().status, 403);
    // A refused config, so the reload failure counter exists too (meshd
    // keeps serving the one it runs: invariant 2).
    dir.write(&format!("nodes/{NODE}.yaml"), "not: [a node config");

    let wanted = dashboard_metrics();
    eventually(
        "every metric of the dashboard exported",
        Duration::from_secs(10),
        || {
            let wanted = wanted.clone();
            async move {
                let mut have = metrics_of(admin).await?;
                have.extend(metrics_of(api).await?);
                let missing: Vec<&String> = wanted.difference(&have).collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("not exported: {missing:?}"))
                }
            }
        },
    )
    .await;
    assert_eq!(
        client.get("/").await.unwrap().status,
        200,
        "meshd still serves"
    );
}
