//! `configsrv serve`, read as the startup order: metrics, policies (they must
//! be valid to start), the API, the sources, then the loop that feeds source
//! events and timer wake-ups to the `Reconciler` and carries out its actions
//! (publish to the directory and HTTP store, metrics, the view), until
//! SIGTERM or Ctrl-C. Only I/O here; the decisions are in `reconcile`.

use crate::api::{self, ApiState};
use crate::followers::Followers;
use crate::observe::window::Window;
use crate::observe::{scrape, Observed};
use crate::publish::http::NodeStore;
use crate::publish::{assign_generation, files, Previous};
use crate::reconcile::view::View;
use crate::reconcile::{Action, Event, Reconciler};
use crate::render::Rendered;
use crate::sources::marathon::follow::{follow, FollowOptions};
use crate::sources::marathon::rest::{ClientOptions, MarathonClient};
use crate::sources::policy_git::LoadError;
use crate::sources::{mesos, policy_dir, SourceEvent};
use anyhow::Context;
use metrics_exporter_prometheus::PrometheusBuilder;
use schemas::node_config::Shared;
use schemas::{Generation, NodeName};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

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
    /// Shortest time between two renders (`--coalesce`).
    pub coalesce: Duration,
    /// The collector: scrape interval, timeout and meshd's admin port.
    pub scrape: crate::observe::scrape::ScrapeOptions,
    /// How far back the collector's figures reach (`--window`).
    pub window: Duration,
    /// How often Mesos' agents are read (`--mesos-interval`).
    pub mesos_interval: Duration,
    /// The meshd app to keep on every agent (`--ensure-meshd`).
    pub ensure_meshd: Option<crate::ensure_meshd::plan::MeshdApp>,
    /// Run the autoscaler (`--autoscale`).
    pub autoscale: bool,
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

/// The start-up error for invalid policies: every problem on a line of its
/// own, so an operator (or `grep`) reads them as `validate` prints them.
fn invalid_at_start(what: &str, problems: &[String]) -> anyhow::Error {
    anyhow::anyhow!(
        "{what}; fix it before starting ({} problem(s)):\n{}",
        problems.len(),
        problems.join("\n")
    )
}

/// The autoscaler's settings from `serve`'s: it looks as often as the
/// collector scrapes, and a node is stale after three missed scrapes.
fn scaler_options(opts: &ServeOptions) -> crate::autoscale::run::ScalerOptions {
    let interval = opts.scrape.interval.max(Duration::from_millis(100));
    crate::autoscale::run::ScalerOptions {
        interval,
        stale_after: (interval * 3 + opts.scrape.timeout).max(Duration::from_secs(1)),
        mesos: opts.mesos.clone(),
        max_body: opts.marathon.max_body,
    }
}

/// Runs `configsrv serve` until told to stop.
pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    // Exported from the start, so dashboards and alerts see 0, not nothing.
    metrics::counter!("palisade_publish_failures_total").increment(0);
    metrics::counter!("palisade_renders_total").increment(0);

    let (policies, git_head) = match &opts.policies {
        PolicySource::Dir(dir) => {
            let files = policy_dir::read_policy_dir(dir)
                .with_context(|| format!("reading policy directory {}", dir.display()))?;
            let set = policy_dir::load_policies(&files).map_err(|errors| {
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                invalid_at_start("the policy directory is invalid", &lines)
            })?;
            (set, None)
        }
        PolicySource::Git { repo, .. } => {
            let head = repo
                .fetch()
                .await
                .with_context(|| format!("fetching the policy repository {}", repo.shown()))?;
            let set = repo.load(&head).await.map_err(|e| match e {
                LoadError::Invalid { commit, problems } => invalid_at_start(
                    &format!("commit {commit} of {} is invalid", repo.shown()),
                    &problems,
                ),
                LoadError::Read(e) => anyhow::anyhow!(e),
            })?;
            tracing::info!(repo = %repo.shown(), branch = %repo.branch, commit = %head, "policies from Git");
            (set, Some(head))
        }
    };
    let client = MarathonClient::new(&opts.marathon).context("configuring the Marathon client")?;

    let store = Arc::new(NodeStore::default());
    // watch, not broadcast: readers (the API) want only the latest picture.
    let (view_tx, view_rx) = watch::channel(Arc::new(View::default()));
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("binding the API on {}", opts.listen))?;
    let git_kick = Arc::new(tokio::sync::Notify::new());
    let followers = Arc::new(Followers::default());
    let new_follower = Arc::new(tokio::sync::Notify::new());
    // The collector scrapes every node the store publishes for; the API reads its window.
    let scaler = opts.autoscale.then(|| scaler_options(&opts));
    let observed: Observed = Arc::new(Mutex::new(Window::new(opts.window, opts.scrape.interval)));
    tokio::spawn(scrape::run_covering(
        opts.scrape,
        Arc::clone(&store),
        Arc::clone(&observed),
        Some(view_rx.clone()),
    ));
    let keeper_status = crate::ensure_meshd::Shared::default();
    let keeper_view = view_rx.clone();
    let decisions = Arc::new(crate::autoscale::log::DecisionLog::default());
    if let Some(scaler) = scaler {
        tokio::spawn(crate::autoscale::run::run(
            scaler,
            client.clone(),
            view_rx.clone(),
            Arc::clone(&observed),
            Arc::clone(&decisions),
        ));
    }
    let api = api::router(ApiState {
        store: Arc::clone(&store),
        view: view_rx,
        prometheus,
        token: opts.api_token.clone(),
        node_token: opts.node_token.clone(),
        git_kick: Arc::clone(&git_kick),
        followers: Arc::clone(&followers),
        new_follower: Arc::clone(&new_follower),
        observed,
        ensure_meshd: keeper_status.clone(),
        decisions,
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
        tokio::spawn(mesos::poll(url, opts.mesos_interval, limit, tx.clone()));
    }
    if let Some(app) = opts.ensure_meshd.clone() {
        spawn_keeper(&opts, app, keeper_view, keeper_status)?;
    }
    tokio::spawn(report_followers(followers, new_follower, tx.clone()));
    drop(tx);

    let mut run = Executor {
        reconciler: Reconciler::new(policies, opts.coalesce, fastrand::u64(..)),
        sink: Sink {
            out: opts.out.clone(),
            store: Arc::clone(&store),
            previous: BTreeMap::new(),
            shared: Shared::default(),
        },
        view: view_tx,
        wake: None,
    };
    let first = run.reconciler.start();
    run.execute(first);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let far = Instant::now() + Duration::from_secs(3600);
        let actions = tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { break };
                run.reconciler.on_event(Event::Source(event), Instant::now().into_std())
            }
            () = tokio::time::sleep_until(run.wake.unwrap_or(far)), if run.wake.is_some() => {
                run.wake = None;
                run.reconciler.on_timer(Instant::now().into_std())
            }
            () = &mut shutdown => break,
        };
        run.execute(actions);
    }
    tracing::info!("configsrv stopped");
    Ok(())
}

/// The reconciler and what carries out its actions.
struct Executor {
    reconciler: Reconciler,
    sink: Sink,
    /// Sends each new picture to the API.
    view: watch::Sender<Arc<View>>,
    /// When to call `on_timer` next.
    wake: Option<Instant>,
}

impl Executor {
    /// Carries out the reconciler's actions in order; a publish reports back
    /// at once, and what the reconciler answers runs next (it never asks for
    /// another publish in answer to one, so this ends).
    fn execute(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Publish(rendered) => {
                    metrics::counter!("palisade_renders_total").increment(1);
                    let result = self.sink.publish(*rendered).map_err(|e| format!("{e:#}"));
                    let nodes = self.sink.store.list().len();
                    let event = Event::Published { nodes, result };
                    let now = Instant::now().into_std();
                    queue.extend(self.reconciler.on_event(event, now));
                }
                Action::ScheduleRender(at) => self.wake = Some(Instant::from_std(at)),
                Action::SetStale { source, stale } => {
                    metrics::gauge!("palisade_source_stale", "source" => source.as_str())
                        .set(if stale { 1.0 } else { 0.0 });
                }
                Action::SetPolicyCommit { old, new } => {
                    set_commit_metric(old.as_deref(), new.as_deref());
                }
                Action::CountPublishFailure => {
                    metrics::counter!("palisade_publish_failures_total").increment(1);
                }
                Action::View(v) => {
                    self.view.send_replace(v);
                }
            }
        }
    }
}

/// Starts `--ensure-meshd`'s keeper with its own Marathon client.
fn spawn_keeper(
    opts: &ServeOptions,
    app: crate::ensure_meshd::plan::MeshdApp,
    view: watch::Receiver<Arc<View>>,
    status: crate::ensure_meshd::Shared,
) -> anyhow::Result<()> {
    tracing::info!(app = %app.id, "keeping meshd on every active agent (--ensure-meshd)");
    let keeper = crate::ensure_meshd::Keeper {
        client: MarathonClient::new(&opts.marathon).context("configuring the Marathon client")?,
        app,
        view,
        status,
        resync: opts.follow.resync,
    };
    tokio::spawn(keeper.run());
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

/// Where rendered configs go: the directory (when configured) and the HTTP
/// store, with what was published before for numbering.
struct Sink {
    out: Option<PathBuf>,
    store: Arc<NodeStore>,
    previous: BTreeMap<NodeName, Previous>,
    /// The shared bytes of the last publish, to point unchanged parts at.
    shared: Shared,
}

impl Sink {
    /// Publishes every rendered node: the directory (when configured) and
    /// the HTTP store. Every node reaches the store even when some files
    /// could not be written; those failures are the error.
    fn publish(&mut self, mut rendered: Rendered) -> anyhow::Result<()> {
        rendered.reuse(&self.shared);
        if let Some(parts) = rendered.nodes.values().next() {
            self.shared = parts.shared.bytes_only();
        }
        let (store, previous) = (&self.store, &mut self.previous);
        let floor = Generation(unix_ms());
        let mut failed = Vec::new();
        let configs = match &self.out {
            Some(dir) => {
                let outcome = files::publish_dir(dir, rendered.nodes, floor)
                    .with_context(|| format!("publishing to {}", dir.display()))?;
                let mut configs: Vec<_> = outcome
                    .published
                    .into_iter()
                    .map(|(p, c)| (p.node, c))
                    .collect();
                for (c, e) in outcome.failed {
                    failed.push(e.to_string());
                    configs.push((c.head.node.clone(), c));
                }
                configs
            }
            None => {
                files::check(&rendered.nodes)?;
                rendered
                    .nodes
                    .into_iter()
                    .map(|(node, mut c)| {
                        assign_generation(previous.get(&node), &mut c.head, floor);
                        (node, c)
                    })
                    .collect()
            }
        };
        for (node, c) in configs {
            let (generation, revision) = (c.head.generation, c.head.revision.clone());
            let unchanged = previous
                .get(&node)
                .is_some_and(|p| p.generation == generation && p.revision == revision);
            previous.insert(
                node.clone(),
                Previous {
                    generation,
                    revision: revision.clone(),
                },
            );
            // An unchanged node keeps the text the store has (no new segments).
            if !unchanged || store.get(&node).is_none() {
                store.put(node, c.segments(), generation.0, &revision.0);
            }
        }
        anyhow::ensure!(
            failed.is_empty(),
            "{} node file(s) not written: {}",
            failed.len(),
            failed.join("; ")
        );
        Ok(())
    }
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
