//! One scrape of one meshd, reduced to what configsrv shows: per destination
//! app its counters, gauges and timing histograms, per (source, destination)
//! its verdict counts, and from `/status` the generation it runs. Pure: text
//! and JSON in, values out; series configsrv does not use are dropped here.

use super::histogram::Buckets;
use super::prom_text::Sample;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The five timing histograms of a request, in the order `docs/api.md` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timing {
    /// Downstream smoothed RTT (`TCP_INFO`).
    ClientRtt,
    /// Connecting to the backend.
    Connect,
    /// Request sent to the backend's first response byte.
    Response,
    /// First response byte to the last byte written to the client.
    Transfer,
    /// First request byte in to last response byte out.
    Total,
}

impl Timing {
    /// Every timing, in order.
    pub const ALL: [Timing; 5] = [
        Timing::ClientRtt,
        Timing::Connect,
        Timing::Response,
        Timing::Transfer,
        Timing::Total,
    ];

    /// meshd's histogram for it.
    pub fn metric(self) -> &'static str {
        match self {
            Timing::ClientRtt => "palisade_meshd_client_rtt_seconds",
            Timing::Connect => "palisade_meshd_upstream_connect_seconds",
            Timing::Response => "palisade_meshd_upstream_ttfb_seconds",
            Timing::Transfer => "palisade_meshd_transfer_seconds",
            Timing::Total => "palisade_meshd_request_duration_seconds",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One destination app's figures on one node, as cumulative counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppCounters {
    /// HTTP requests answered, every status class.
    pub requests: f64,
    /// HTTP requests answered 5xx.
    pub errors: f64,
    /// Connections allowed (or let through in audit mode).
    pub connections: f64,
    /// Connections and requests denied.
    pub denied: f64,
    /// Connections open now (a gauge).
    pub active: f64,
    /// Bytes from clients to backends.
    pub bytes_in: f64,
    /// Bytes from backends to clients.
    pub bytes_out: f64,
    /// Timing histograms, indexed by `Timing`; empty when meshd has none.
    pub timings: [Buckets; 5],
}

impl AppCounters {
    /// The histogram of one timing.
    pub fn timing(&self, t: Timing) -> &Buckets {
        &self.timings[t.index()]
    }
}

/// Verdict counts of one (source app, destination app) pair.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FlowCounts {
    /// Let through by a rule or the default.
    pub allow: f64,
    /// Refused.
    pub deny: f64,
    /// Would be refused; let through because the destination is in audit mode.
    pub would_deny: f64,
}

/// What one `/metrics` answer says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSample {
    /// By destination app id, as meshd labels it. Shared: the window keeps
    /// one copy of an app's figures while they do not change between scrapes.
    pub apps: BTreeMap<String, Arc<AppCounters>>,
    /// By (source, destination); the source is `unknown` outside the identity table.
    pub flows: BTreeMap<(String, String), FlowCounts>,
    /// `palisade_meshd_reload_failures_total`.
    pub reload_failures: f64,
}

/// What one `/status` answer says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStatus {
    /// The node meshd says it is.
    pub node: Option<String>,
    /// The generation it serves.
    pub applied: Option<u64>,
    /// Its last reload's error, if that reload failed.
    pub last_error: Option<String>,
}

const CONNECTIONS: &str = "palisade_meshd_connections_total";

/// Reduces parsed samples to the figures configsrv uses.
pub fn reduce(samples: &[Sample]) -> NodeSample {
    let mut out = NodeSample::default();
    let mut apps: BTreeMap<String, AppCounters> = BTreeMap::new();
    // Bucket pairs gathered per (app, timing) before sorting into histograms.
    let mut buckets: BTreeMap<(String, Timing), Vec<(f64, f64)>> = BTreeMap::new();
    for s in samples {
        if !s.value.is_finite() {
            continue;
        }
        if s.name == "palisade_meshd_reload_failures_total" {
            out.reload_failures = s.value;
            continue;
        }
        let Some(dst) = s.label("dst_app") else {
            continue;
        };
        if s.name == CONNECTIONS {
            let src = s.label("src_app").unwrap_or("unknown");
            let flow = out
                .flows
                .entry((src.to_owned(), dst.to_owned()))
                .or_default();
            let app = apps.entry(dst.to_owned()).or_default();
            match s.label("verdict") {
                Some("allow") => {
                    flow.allow += s.value;
                    app.connections += s.value;
                }
                Some("would_deny") => {
                    flow.would_deny += s.value;
                    app.connections += s.value;
                }
                Some("deny") => {
                    flow.deny += s.value;
                    app.denied += s.value;
                }
                _ => {}
            }
            continue;
        }
        if let Some(t) = Timing::ALL
            .into_iter()
            .find(|t| s.name.strip_prefix(t.metric()) == Some("_bucket"))
        {
            if let Some(le) = s.label("le").and_then(parse_le) {
                buckets
                    .entry((dst.to_owned(), t))
                    .or_default()
                    .push((le, s.value));
            }
            continue;
        }
        let app = apps.entry(dst.to_owned()).or_default();
        match s.name.as_str() {
            "palisade_meshd_requests_total" => {
                app.requests += s.value;
                if s.label("code") == Some("5xx") {
                    app.errors += s.value;
                }
            }
            "palisade_meshd_active_connections" => app.active += s.value,
            "palisade_meshd_upstream_bytes_total" => app.bytes_in += s.value,
            "palisade_meshd_downstream_bytes_total" => app.bytes_out += s.value,
            _ => {}
        }
    }
    for ((dst, t), pairs) in buckets {
        apps.entry(dst).or_default().timings[t.index()] = Buckets::from_pairs(pairs);
    }
    out.apps = apps.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
    out
}

fn parse_le(le: &str) -> Option<f64> {
    match le {
        "+Inf" => Some(f64::INFINITY),
        _ => le.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

/// Reads meshd's `/status` JSON; an answer that is not that JSON is an error.
pub fn status(body: &[u8]) -> Result<NodeStatus, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("/status is not JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "/status is not a JSON object".to_owned())?;
    let last = obj.get("last_reload");
    let failed = last
        .and_then(|l| l.get("ok"))
        .and_then(serde_json::Value::as_bool)
        == Some(false);
    Ok(NodeStatus {
        node: obj.get("node").and_then(|n| n.as_str()).map(str::to_owned),
        applied: obj.get("generation").and_then(serde_json::Value::as_u64),
        last_error: failed
            .then(|| {
                last.and_then(|l| l.get("error"))
                    .and_then(|e| e.as_str())
                    .map(str::to_owned)
            })
            .flatten(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reduces_meshd_metrics() {
        let body =
            br#"palisade_meshd_connections_total{src_app="/a",dst_app="/b",verdict="allow"} 5
palisade_meshd_connections_total{src_app="unknown",dst_app="/b",verdict="deny"} 2
palisade_meshd_connections_total{src_app="/c",dst_app="/b",verdict="would_deny"} 1
palisade_meshd_requests_total{dst_app="/b",code="2xx"} 9
palisade_meshd_requests_total{dst_app="/b",code="5xx"} 1
palisade_meshd_active_connections{dst_app="/b"} 3
palisade_meshd_downstream_bytes_total{dst_app="/b"} 1000
palisade_meshd_request_duration_seconds_bucket{dst_app="/b",le="0.01"} 8
palisade_meshd_request_duration_seconds_bucket{dst_app="/b",le="+Inf"} 10
palisade_meshd_request_duration_seconds_count{dst_app="/b"} 10
palisade_meshd_reload_failures_total 4
"#;
        let s = reduce(&super::super::prom_text::parse(body).unwrap());
        let b = &s.apps["/b"];
        assert_eq!(
            (b.requests, b.errors, b.active, b.bytes_out),
            (10.0, 1.0, 3.0, 1000.0)
        );
        assert_eq!((b.connections, b.denied), (6.0, 2.0));
        assert_eq!(
            b.timing(Timing::Total).0,
            vec![(0.01, 8.0), (f64::INFINITY, 10.0)]
        );
        assert!(b.timing(Timing::ClientRtt).0.is_empty());
        assert_eq!(s.flows[&("unknown".into(), "/b".into())].deny, 2.0);
        assert_eq!(s.flows[&("/c".into(), "/b".into())].would_deny, 1.0);
        assert_eq!(s.reload_failures, 4.0);
    }

    #[test]
    fn status_reads_generation_and_reload_error() {
        let s = status(
            br#"{"node":"n1","generation":7,"last_reload":{"ok":false,"error":"bad file"}}"#,
        )
        .unwrap();
        assert_eq!(s.applied, Some(7));
        assert_eq!(s.last_error.as_deref(), Some("bad file"));
        assert!(status(b"<html>").is_err());
        assert!(status(b"[1]").is_err());
    }
}
