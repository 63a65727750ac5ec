//! `configsrv serve`, read as the startup order: metrics, policies (they must
//! be valid to start), the API, the sources, then the state loop:
//! source events -> state (staleness guard, fast path) -> coalesce -> render
//! -> publish (directory and HTTP), until SIGTERM or Ctrl-C.

use crate::api::{self, ApiState};
use crate::error::SourceError;
use crate::followers::Followers;
use crate::observe::window::Window;
use crate::observe::{scrape, Observed};
use crate::publish::http::NodeStore;
use crate::publish::{assign_generation, files, Previous};
use crate::render::render;
use crate::sources::marathon::follow::{follow, Backoff, FollowOptions};
use crate::sources::marathon::rest::{ClientOptions, MarathonClient};
use crate::sources::{mesos, policy_dir, SourceEvent};
use crate::state::{accept_full_read, keep_last_good, Applied, ClusterState};
use crate::view::View;
use anyhow::Context;
use metrics_exporter_prometheus::PrometheusBuilder;
use schemas::{Generation, NodeName, PolicySet};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Marathon client settings.
    pub marathon: ClientOptions,
    /// Mesos master URL.
    pub mesos: Option<String>,
    /// Where policies come from.
    pub policies: PolicySource,
    /// Token for state-changing API requests; none means they are all refused.
    pub api_token: Option<String>,
    /// Token for node config reads; none means they are open.
    pub node_token: Option<String>,
    /// Directory sink.
    pub out: Option<PathBuf>,
    /// API address.
    pub listen: SocketAddr,
    /// Follower timing.
    pub follow: FollowOptions,
    /// How long a burst of changes may gather before a render.
    pub coalesce: Duration,
    /// The collector: scrape interval, timeout and meshd's admin port.
    pub scrape: crate::observe::scrape::ScrapeOptions,
    /// How far back the collector's figures reach (`--window`).
    pub window: Duration,
}

/// Where policies come from.
#[derive(Debug, Clone)]
pub enum PolicySource {
    /// A watched directory.
    Dir(PathBuf),
    /// A Git repository, fetched on an interval and on the push webhook.
    Git {
        /// The repository, branch and checkout.
        repo: crate::sources::policy_git::PolicyRepo,
        /// Fetch interval.
        interval: Duration,
    },
}

/// Staleness and errors of one source, for the API and the gauge.
#[derive(Debug, Default, Clone)]
struct SourceStatus {
    stale: bool,
    error: Option<String>,
}

/// `palisade_policy_commit{commit}` is 1 for the commit that runs.
fn set_commit_metric(old: Option<&str>, new: Option<&str>) {
    if let Some(o) = old {
        metrics::gauge!("palisade_policy_commit", "commit" => o.to_owned()).set(0.0);
    }
    if let Some(n) = new {
        metrics::gauge!("palisade_policy_commit", "commit" => n.to_owned()).set(1.0);
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn mark(
    statuses: &mut BTreeMap<&'static str, SourceStatus>,
    source: &'static str,
    error: Option<String>,
) {
    let stale = error.is_some();
    if let Some(e) = &error {
        tracing::warn!(source, error = %e, "source is stale; the last good state stays");
    }
    metrics::gauge!("palisade_source_stale", "source" => source).set(if stale { 1.0 } else { 0.0 });
    statuses.insert(source, SourceStatus { stale, error });
}

/// Runs `configsrv serve` until told to stop.
pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;

    let (mut policies, git_head) = match &opts.policies {
        PolicySource::Dir(dir) => {
            let files = policy_dir::read_policy_dir(dir)
                .with_context(|| format!("reading policy directory {}", dir.display()))?;
            let set = policy_dir::load_policies(&files).map_err(|errors| {
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                anyhow::anyhow!(
                    "the policy directory is invalid; fix it before starting:\n{}",
                    lines.join("\n")
                )
            })?;
            (set, None)
        }
        PolicySource::Git { repo, .. } => {
            let head = repo
                .fetch()
                .await
                .with_context(|| format!("fetching the policy repository {}", repo.shown()))?;
            let set = repo.load(&head).await.map_err(anyhow::Error::msg)?;
            tracing::info!(repo = %repo.shown(), branch = %repo.branch, commit = %head, "policies from Git");
            (set, Some(head))
        }
    };
    set_commit_metric(None, policies.commit.as_deref());
    let client = MarathonClient::new(&opts.marathon).context("configuring the Marathon client")?;

    let store = Arc::new(NodeStore::default());
    let status = Arc::new(Mutex::new(json!({})));
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("binding the API on {}", opts.listen))?;
    let git_kick = Arc::new(tokio::sync::Notify::new());
    // The API and the collector read the loop's latest view; the loop sends a
    // new one after each render and policy read (watch: only the latest matters).
    let (view_tx, view_rx) = tokio::sync::watch::channel(Arc::new(View::default()));
    let observed: Observed = Arc::new(Mutex::new(Window::new(opts.window, opts.scrape.interval)));
    tokio::spawn(scrape::run(
        opts.scrape,
        Arc::clone(&store),
        Arc::clone(&observed),
    ));
    let followers = Arc::new(Followers::default());
    let new_follower = Arc::new(tokio::sync::Notify::new());
    let api = api::router(ApiState {
        store: Arc::clone(&store),
        status: Arc::clone(&status),
        prometheus,
        token: opts.api_token.clone(),
        node_token: opts.node_token.clone(),
        git_kick: Arc::clone(&git_kick),
        view: view_rx,
        observed,
        followers: Arc::clone(&followers),
        new_follower: Arc::clone(&new_follower),
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, api).await {
            tracing::error!(error = %e, "the API server stopped");
        }
    });
    let marathon: Vec<String> = client
        .shown_urls()
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(listen = %opts.listen, marathon = %marathon.join(","), "configsrv serving");

    let (tx, mut rx) = mpsc::channel(1024);
    tokio::spawn(follow(client, opts.follow, tx.clone()));
    let _policy_watch = match (&opts.policies, git_head) {
        (PolicySource::Dir(dir), _) => Some(
            policy_dir::watch(dir.clone(), tx.clone()).context("watching the policy directory")?,
        ),
        (PolicySource::Git { repo, interval }, Some(head)) => {
            let follower = crate::sources::policy_git::follow(
                repo.clone(),
                head,
                *interval,
                git_kick,
                tx.clone(),
            );
            tokio::spawn(follower);
            None
        }
        (PolicySource::Git { .. }, None) => None,
    };
    if let Some(url) = opts.mesos.clone() {
        let limit = opts.marathon.max_body;
        tokio::spawn(mesos::poll(url, Duration::from_secs(30), limit, tx.clone()));
    }
    tokio::spawn(report_followers(followers, new_follower, tx.clone()));
    drop(tx);

    let mut state = ClusterState::default();
    let mut statuses: BTreeMap<&'static str, SourceStatus> = BTreeMap::new();
    let mut empty_reads = 0u32;
    let mut have_apps = false;
    let mut previous: BTreeMap<NodeName, Previous> = BTreeMap::new();
    let mut render_at: Option<tokio::time::Instant> = None;
    let mut renders = 0u64;
    let mut publish_error: Option<String> = None;
    let mut policy_errors: Vec<schemas::ConfigError> = Vec::new();
    let mut render_errors: Vec<crate::error::RenderError> = Vec::new();
    let mut retry = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let wake =
            render_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { break };
                let policy_read = match &event {
                    SourceEvent::Policies(read) => Some(read.errors.clone()),
                    SourceEvent::PolicyCommit(_) => Some(Vec::new()),
                    _ => None,
                };
                let changed = absorb(event, &mut state, &mut policies, &mut statuses, &mut empty_reads, &mut have_apps);
                if changed {
                    // The first change of a burst sets the time; a pending
                    // retry further off is brought forward.
                    let at = tokio::time::Instant::now() + opts.coalesce;
                    render_at = Some(render_at.map_or(at, |r| r.min(at)));
                }
                if let Some(errors) = policy_read {
                    policy_errors = errors;
                    view_tx.send_replace(Arc::new(View::build(&state, &policies, &policy_errors, &render_errors)));
                }
            }
            () = tokio::time::sleep_until(wake), if render_at.is_some() => {
                render_at = None;
                // Nothing is rendered before the first good read: an empty
                // cluster must not overwrite what the nodes run.
                if have_apps {
                    renders += 1;
                    // A failed write (disk full, permissions) must not stop
                    // configsrv: the API keeps serving every node, and the
                    // publish is retried with backoff, change or not.
                    if let Err(e) = publish(&opts, &state, &policies, &store, &mut previous, &mut render_errors) {
                        metrics::counter!("palisade_publish_failures_total").increment(1);
                        let wait = retry.next(fastrand::f64());
                        tracing::error!(error = %format!("{e:#}"), retry_ms = wait.as_millis() as u64, "publishing failed; retrying");
                        publish_error = Some(format!("{e:#}"));
                        render_at = Some(tokio::time::Instant::now() + wait);
                    } else {
                        retry.reset();
                        publish_error = None;
                    }
                    view_tx.send_replace(Arc::new(View::build(&state, &policies, &policy_errors, &render_errors)));
                }
            }
            () = &mut shutdown => break,
        }
        let sources: serde_json::Map<String, serde_json::Value> = statuses
            .iter()
            .map(|(k, v)| (k.to_string(), json!({"stale": v.stale, "error": v.error})))
            .collect();
        *status.lock().unwrap_or_else(PoisonError::into_inner) = json!({
            "sources": sources,
            "apps": state.apps.len(),
            "agents": state.agents.len(),
            "nodes": store.list().len(),
            "renders": renders,
            "policy_commit": policies.commit,
            "publish_error": publish_error,
        });
    }
    tracing::info!("configsrv stopped");
    Ok(())
}

/// Hands the state loop the nodes whose meshd follows configsrv: at once
/// when a new one asks, and every minute so the forgotten ones drop out.
async fn report_followers(
    followers: Arc<Followers>,
    new_follower: Arc<tokio::sync::Notify>,
    tx: mpsc::Sender<SourceEvent>,
) {
    loop {
        tokio::select! {
            () = new_follower.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        let current = followers.current(std::time::Instant::now());
        if tx.send(SourceEvent::Followers(current)).await.is_err() {
            return;
        }
    }
}

/// Folds one source event into the state; true when a render is due.
fn absorb(
    event: SourceEvent,
    state: &mut ClusterState,
    policies: &mut PolicySet,
    statuses: &mut BTreeMap<&'static str, SourceStatus>,
    empty_reads: &mut u32,
    have_apps: &mut bool,
) -> bool {
    match event {
        SourceEvent::MarathonApps(Ok((apps, broken))) => {
            for e in &broken {
                tracing::warn!("{e}; its last good settings stay");
            }
            *empty_reads = if apps.is_empty() { *empty_reads + 1 } else { 0 };
            if let Err(why) = accept_full_read(state.apps.len(), apps.len(), *empty_reads) {
                mark(
                    statuses,
                    "marathon",
                    Some(SourceError::Suspicious(why).to_string()),
                );
                return false;
            }
            let apps = keep_last_good(state, apps, &broken);
            let next = ClusterState::new(apps, state.agents.clone())
                .with_followers(state.followers.clone());
            mark(statuses, "marathon", None);
            *have_apps = true;
            let changed = next != *state;
            *state = next;
            changed
        }
        SourceEvent::MarathonApps(Err(e)) => {
            mark(statuses, "marathon", Some(e.to_string()));
            false
        }
        SourceEvent::MarathonEvent(event) => matches!(state.apply(&event), Applied::Changed),
        SourceEvent::MarathonStream(Ok(url)) => {
            tracing::info!(%url, "following Marathon's event stream");
            false
        }
        SourceEvent::MarathonStream(Err(e @ SourceError::TooLarge { .. })) => {
            // Events were lost: stale until the full read after the reconnect.
            mark(statuses, "marathon", Some(e.to_string()));
            false
        }
        SourceEvent::MarathonStream(Err(e)) => {
            tracing::warn!(error = %e, "Marathon's event stream broke; full reads continue");
            false
        }
        SourceEvent::MesosAgents(Ok(agents)) => {
            mark(statuses, "mesos", None);
            let next = ClusterState::new(state.apps.clone(), agents)
                .with_followers(state.followers.clone());
            let changed = next != *state;
            *state = next;
            changed
        }
        SourceEvent::Followers(followers) => {
            let next = state.clone().with_followers(followers);
            let changed = next != *state;
            *state = next;
            changed
        }
        SourceEvent::MesosAgents(Err(e)) => {
            mark(statuses, "mesos", Some(e.to_string()));
            false
        }
        SourceEvent::PolicyCommit(Ok(set)) => {
            mark(statuses, "policy", None);
            set_commit_metric(policies.commit.as_deref(), set.commit.as_deref());
            tracing::info!(commit = ?set.commit, "policy commit applied");
            *policies = set;
            true
        }
        SourceEvent::PolicyCommit(Err(why)) => {
            mark(statuses, "policy", Some(why));
            false
        }
        SourceEvent::Policies(read) => {
            let errors: Vec<String> = read.errors.iter().map(ToString::to_string).collect();
            if !read.broken_files.is_empty() {
                // A file whose format is broken: keep the whole last good policy.
                mark(statuses, "policy", Some(errors.join("; ")));
                return false;
            }
            let mut set = read.set;
            // An invalid app entry keeps its last good settings; the others move on.
            for key in &read.broken_apps {
                let Ok(pattern) = key.parse::<schemas::AppPattern>() else {
                    continue;
                };
                if let (Some(old), Some(origin)) =
                    (policies.apps.get(&pattern), policies.origins.get(&pattern))
                {
                    set.apps.insert(pattern.clone(), old.clone());
                    set.origins.insert(pattern, origin.clone());
                }
            }
            mark(
                statuses,
                "policy",
                (!errors.is_empty()).then(|| errors.join("; ")),
            );
            let changed = set != *policies;
            *policies = set;
            changed
        }
    }
}

/// Renders and publishes every node: the directory (when configured) and
/// the HTTP store. Every node reaches the store even when some files could
/// not be written; those failures are the error.
fn publish(
    opts: &ServeOptions,
    state: &ClusterState,
    policies: &PolicySet,
    store: &NodeStore,
    previous: &mut BTreeMap<NodeName, Previous>,
    render_errors: &mut Vec<crate::error::RenderError>,
) -> anyhow::Result<()> {
    let rendered = render(state, policies);
    for e in &rendered.errors {
        tracing::warn!("{e}");
    }
    render_errors.clone_from(&rendered.errors);
    let rendered_services = rendered.services_yaml.clone();
    let floor = Generation(unix_ms());
    let mut failed = Vec::new();
    let configs = match &opts.out {
        Some(dir) => {
            let outcome = files::publish_dir(dir, rendered.nodes, &rendered_services, floor)
                .with_context(|| format!("publishing to {}", dir.display()))?;
            let mut configs: Vec<_> = outcome
                .published
                .into_iter()
                .map(|(p, c)| (p.node, c))
                .collect();
            for (c, e) in outcome.failed {
                failed.push(e.to_string());
                configs.push((c.node.clone(), c));
            }
            configs
        }
        None => rendered
            .nodes
            .into_iter()
            .map(|(node, mut c)| {
                assign_generation(previous.get(&node), &mut c, floor);
                (node, c)
            })
            .collect(),
    };
    for (node, c) in configs {
        previous.insert(
            node.clone(),
            Previous {
                generation: c.generation,
                revision: c.revision.clone(),
            },
        );
        store.put(
            node,
            c.to_yaml_with(&rendered_services),
            c.generation.0,
            &c.revision.0,
        );
    }
    anyhow::ensure!(
        failed.is_empty(),
        "{} node file(s) not written: {}",
        failed.len(),
        failed.join("; ")
    );
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
