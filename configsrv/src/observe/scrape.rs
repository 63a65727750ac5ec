//! The collector's I/O: every `--scrape-interval`, each node's meshd admin
//! endpoint (`/metrics` and `/status` at `http://<node>:<--meshd-admin-port>`)
//! is read concurrently, each node on its own task within `--scrape-timeout`,
//! so a node that hangs, answers garbage or is gone is flagged and never
//! delays the others. Results go into the shared `Window`.

use super::sample::{self, NodeSample, NodeStatus};
use super::window::Window;
use super::{prom_text, Observed};
use crate::publish::http::NodeStore;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest `/status` answer taken, bytes.
const MAX_STATUS: usize = 8 * 1024 * 1024;

/// How the collector runs.
#[derive(Debug, Clone, Copy)]
pub struct ScrapeOptions {
    /// Time between rounds.
    pub interval: Duration,
    /// Longest one node's scrape may take.
    pub timeout: Duration,
    /// meshd's admin port on every node.
    pub admin_port: u16,
}

/// Why one node's scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// Connecting, sending or reading failed.
    #[error("{url}: {message}")]
    Http {
        /// What was asked.
        url: String,
        /// What failed.
        message: String,
    },
    /// No full answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// An answer over its size limit.
    #[error("{url}: the answer is larger than {limit} bytes")]
    TooLarge {
        /// What was asked.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// `/metrics` is not Prometheus text.
    #[error("{url}: {error}")]
    Metrics {
        /// What was asked.
        url: String,
        /// Why.
        error: prom_text::ParseError,
    },
    /// `/status` is not meshd's status.
    #[error("{url}: {message}")]
    Status {
        /// What was asked.
        url: String,
        /// Why.
        message: String,
    },
}

/// `http://<node>:<port>`, with brackets for an IPv6 node.
pub fn admin_base(node: &str, port: u16) -> String {
    match node.parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) => format!("http://[{a}]:{port}"),
        _ => format!("http://{node}:{port}"),
    }
}

/// The HTTP client the collector uses: no proxy, no redirects. The whole
/// scrape's deadline is `scrape_node`'s, so its error says so.
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout)
        .build()
}

/// An error with its causes, which reqwest keeps apart (`connection refused`).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Reads one answer's body, refusing it past `limit` bytes.
async fn get(client: &reqwest::Client, url: &str, limit: usize) -> Result<Vec<u8>, ScrapeError> {
    let http = |e: reqwest::Error| ScrapeError::Http {
        url: url.to_owned(),
        message: with_causes(&e),
    };
    let mut resp = client.get(url).send().await.map_err(http)?;
    if !resp.status().is_success() {
        return Err(ScrapeError::Http {
            url: url.to_owned(),
            message: format!("answered {}", resp.status()),
        });
    }
    let too_large = || ScrapeError::TooLarge {
        url: url.to_owned(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(http)? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Scrapes one meshd: `/metrics` and `/status`, both within `timeout`.
pub async fn scrape_node(
    client: &reqwest::Client,
    node: &str,
    base: &str,
    timeout: Duration,
) -> Result<(NodeSample, NodeStatus), ScrapeError> {
    let metrics_url = format!("{base}/metrics");
    let status_url = format!("{base}/status");
    let both = async {
        tokio::try_join!(
            get(client, &metrics_url, prom_text::MAX_BODY),
            get(client, &status_url, MAX_STATUS)
        )
    };
    let (metrics, status) = tokio::time::timeout(timeout, both)
        .await
        .map_err(|_| ScrapeError::Timeout(timeout))??;
    let samples = prom_text::parse(&metrics).map_err(|error| ScrapeError::Metrics {
        url: metrics_url,
        error,
    })?;
    let status = sample::status(&status).map_err(|message| ScrapeError::Status {
        url: status_url.clone(),
        message,
    })?;
    if let Some(other) = status.node.as_deref().filter(|n| *n != node) {
        return Err(ScrapeError::Status {
            url: status_url,
            message: format!("answers as node {other}, not {node}: check --meshd-admin-port"),
        });
    }
    Ok((sample::reduce(&samples), status))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs the collector over every node the store publishes for, for good.
pub async fn run(opts: ScrapeOptions, store: Arc<NodeStore>, observed: Observed) {
    run_covering(opts, store, observed, None).await;
}

/// Like `run`; `palisade_nodes_uncovered` also counts the active Mesos
/// agents of `view` that nothing was rendered for (yet).
pub async fn run_covering(
    opts: ScrapeOptions,
    store: Arc<NodeStore>,
    observed: Observed,
    view: Option<tokio::sync::watch::Receiver<Arc<crate::reconcile::view::View>>>,
) {
    let client = match client(opts.timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "the collector could not start its HTTP client");
            return;
        }
    };
    let in_flight: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    // `interval` panics on zero; flags refuse it, and this keeps a caller honest.
    let mut tick = tokio::time::interval(opts.interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let rendered = store.list();
        let nodes: BTreeSet<String> = rendered.iter().map(|(n, _)| n.to_string()).collect();
        {
            let mut window = observed.lock().unwrap_or_else(PoisonError::into_inner);
            window.retain_nodes(&nodes);
            // As of the previous round: nodes whose meshd does not run the latest generation.
            let mut list = super::coverage::nodes(&window, &rendered);
            if let Some(v) = &view {
                let agents = Arc::clone(&v.borrow());
                list = super::coverage::with_agents(list, &agents.agents);
            }
            metrics::gauge!("palisade_nodes_uncovered")
                .set(super::coverage::uncovered(&list) as f64);
        }
        let at = unix_ms();
        for node in nodes {
            // A node still busy with an earlier round is skipped: one slow
            // node never piles up requests, and never holds up the rest.
            if !in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(node.clone())
            {
                continue;
            }
            let (client, observed, in_flight) = (
                client.clone(),
                Arc::clone(&observed),
                Arc::clone(&in_flight),
            );
            tokio::spawn(async move {
                let base = admin_base(&node, opts.admin_port);
                let result = scrape_node(&client, &node, &base, opts.timeout)
                    .await
                    .map_err(|e| e.to_string());
                record(&observed, &node, at, result);
                in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&node);
            });
        }
    }
}

/// Records one scrape; a node that stops or starts answering is logged once, not every round.
fn record(
    observed: &Mutex<Window>,
    node: &str,
    at: u64,
    result: Result<(NodeSample, NodeStatus), String>,
) {
    let mut window = observed.lock().unwrap_or_else(PoisonError::into_inner);
    // Whether the node had failed before this scrape (its error is set until a good one).
    let failing = window.nodes.get(node).map(|s| s.error.is_some());
    let error = result.as_ref().err().cloned();
    window.record(node, at, unix_ms(), result);
    drop(window);
    match (failing, error) {
        (Some(false), Some(e)) => {
            tracing::warn!(%node, error = %e, "meshd's admin endpoint does not answer the scrape");
        }
        (Some(true), None) => tracing::info!(%node, "meshd answers the scrape again"),
        _ => {}
    }
}
