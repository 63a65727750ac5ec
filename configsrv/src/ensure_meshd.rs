//! `configsrv serve --ensure-meshd FILE`: keeps the meshd Marathon app
//! (FILE) running with one instance per active Mesos agent and the
//! `["hostname", "UNIQUE"]` constraint, so a joining agent gets its meshd.
//! The decisions are pure (`plan`); this module reads the reconciler's view,
//! talks to Marathon (`GET`, `POST /v2/apps`, `PUT /v2/apps/<id>`, never
//! `?force`), backs off on errors and reports what it did in
//! `palisade_ensure_meshd_actions_total{outcome}` and `GET /v1/nodes`.

pub mod plan;

use crate::reconcile::view::{Source, View};
use crate::sources::marathon::rest::MarathonClient;
use plan::{Agents, Current, MeshdApp, Step};
use serde::Serialize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// What the keeper did last, for `GET /v1/nodes` (`ensure_meshd`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeeperStatus {
    /// The meshd app id.
    pub app: String,
    /// Active agents in the last good Mesos read.
    pub agents: Option<usize>,
    /// The app's `instances` in Marathon, as last read or set.
    pub instances: Option<u64>,
    /// The last outcome: `created`, `scaled`, `unchanged`, `held`,
    /// `conflict`, `unauthorized`, `rejected` or `error`.
    pub outcome: Option<String>,
    /// What the last outcome means, or why it failed.
    pub message: Option<String>,
    /// When the last check ended, Unix seconds.
    pub at: Option<u64>,
}

/// The keeper's status, shared with the API; none when `--ensure-meshd` is off.
#[derive(Debug, Clone, Default)]
pub struct Shared(Arc<Mutex<Option<KeeperStatus>>>);

impl Shared {
    /// The latest status.
    pub fn current(&self) -> Option<KeeperStatus> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, status: KeeperStatus) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(status);
    }
}

/// What one check came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Created(u64),
    Scaled(u64),
    Unchanged(u64),
    Held(String),
    /// 409: a deployment holds the app; retried soon.
    Conflict(String),
    /// 401/403: the credentials are wrong; retried slowly.
    Unauthorized(String),
    /// Another 4xx: Marathon refuses the definition.
    Rejected(String),
    /// Network error or 5xx.
    Error(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Created(_) => "created",
            Outcome::Scaled(_) => "scaled",
            Outcome::Unchanged(_) => "unchanged",
            Outcome::Held(_) => "held",
            Outcome::Conflict(_) => "conflict",
            Outcome::Unauthorized(_) => "unauthorized",
            Outcome::Rejected(_) => "rejected",
            Outcome::Error(_) => "error",
        }
    }

    /// Whether the check must run again without waiting for a new Mesos read.
    fn retry(&self) -> bool {
        !matches!(
            self,
            Outcome::Created(_) | Outcome::Scaled(_) | Outcome::Unchanged(_) | Outcome::Held(_)
        )
    }
}

/// An answer from Marathon, or why there is none.
enum Answer {
    Status(u16, serde_json::Value),
    Failed(String),
}

/// The keeper.
pub struct Keeper {
    /// Marathon, with configsrv's credentials.
    pub client: MarathonClient,
    /// The meshd app (FILE).
    pub app: MeshdApp,
    /// The reconciler's pictures: agents and Mesos' staleness.
    pub view: watch::Receiver<Arc<View>>,
    /// Where the API reads what it did.
    pub status: Shared,
    /// Also checks this often without a new Mesos read (someone may have scaled the app by hand).
    pub resync: Duration,
}

/// Backoff bounds after a failed check.
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

impl Keeper {
    /// Runs until the reconciler goes away.
    pub async fn run(mut self) {
        for outcome in [
            "created",
            "scaled",
            "conflict",
            "unauthorized",
            "rejected",
            "error",
        ] {
            metrics::counter!("palisade_ensure_meshd_actions_total", "outcome" => outcome)
                .increment(0);
        }
        self.status.set(KeeperStatus {
            app: self.app.id.clone(),
            ..KeeperStatus::default()
        });
        // Reads already acted on, and the active-agent counts of the last two good reads.
        let (mut done, mut seen) = (0u64, 0u64);
        let mut history = Agents {
            now: None,
            before: None,
        };
        let mut backoff = RETRY_MIN;
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut resync = tokio::time::Instant::now() + self.resync;
        loop {
            let wake = retry_at.unwrap_or(resync);
            let forced = tokio::select! {
                changed = self.view.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    false
                }
                () = tokio::time::sleep_until(wake) => true,
            };
            let view = Arc::clone(&self.view.borrow_and_update());
            let reads = view.status.mesos_reads;
            let stale = view
                .status
                .sources
                .get(&Source::Mesos)
                .is_none_or(|s| s.stale);
            if reads != seen {
                seen = reads;
                history.before = history.now;
                history.now = Some(active_agents(&view));
            }
            if !due(forced, reads, done, retry_at, tokio::time::Instant::now()) {
                continue;
            }
            let agents = Agents {
                now: if stale { None } else { history.now },
                ..history
            };
            let outcome = self.check(agents).await;
            self.report(&outcome, agents.now);
            if outcome.retry() {
                // Wrong credentials or a refused FILE do not heal by themselves soon.
                let slow = matches!(outcome, Outcome::Unauthorized(_) | Outcome::Rejected(_));
                let wait = if slow { RETRY_MAX } else { backoff };
                retry_at = Some(tokio::time::Instant::now() + wait);
                backoff = (backoff * 2).min(RETRY_MAX);
            } else {
                done = reads;
                retry_at = None;
                backoff = RETRY_MIN;
            }
            resync = tokio::time::Instant::now() + self.resync;
        }
    }

    /// Reads the app from Marathon and does the step `plan` decides.
    async fn check(&self, agents: Agents) -> Outcome {
        if agents.now.unwrap_or(0) == 0 {
            if let Step::Hold(why) = plan::decide(&self.app, agents, None) {
                return Outcome::Held(why);
            }
        }
        let path = format!("/v2/apps{}", self.app.id);
        let current = match self.send(reqwest::Method::GET, &path, None).await {
            Answer::Status(200, body) => match Current::from_answer(&body) {
                Some(c) => Some(c),
                None => {
                    return Outcome::Error(format!("GET {path}: an answer without `app.instances`"))
                }
            },
            Answer::Status(404, _) => None,
            other => return failure("GET", &path, other),
        };
        match plan::decide(&self.app, agents, current) {
            Step::Nothing => Outcome::Unchanged(current.map_or(0, |c| c.instances)),
            Step::Hold(why) => Outcome::Held(why),
            Step::Create(def) => {
                let n = def["instances"].as_u64().unwrap_or(0);
                match self
                    .send(reqwest::Method::POST, "/v2/apps", Some(&def))
                    .await
                {
                    Answer::Status(200..=299, _) => Outcome::Created(n),
                    other => failure("POST", "/v2/apps", other),
                }
            }
            Step::Update(body) => {
                let n = body["instances"].as_u64().unwrap_or(0);
                match self.send(reqwest::Method::PUT, &path, Some(&body)).await {
                    Answer::Status(200..=299, _) => Outcome::Scaled(n),
                    other => failure("PUT", &path, other),
                }
            }
        }
    }

    /// Sends to the first Marathon that answers at all (any status).
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Answer {
        match self.client.call(method, path, body).await {
            // Marathon's answers are small; an unreadable one is just empty.
            Ok(a) => Answer::Status(
                a.status,
                serde_json::from_slice(&a.body).unwrap_or(serde_json::Value::Null),
            ),
            Err(e) => Answer::Failed(e.to_string()),
        }
    }

    fn report(&self, outcome: &Outcome, agents: Option<usize>) {
        let label = outcome.label();
        let mut instances = self.status.current().and_then(|s| s.instances);
        let message = match outcome {
            Outcome::Created(n) | Outcome::Scaled(n) | Outcome::Unchanged(n) => {
                instances = Some(*n);
                format!("{} has {n} instances", self.app.id)
            }
            Outcome::Held(m)
            | Outcome::Conflict(m)
            | Outcome::Unauthorized(m)
            | Outcome::Rejected(m)
            | Outcome::Error(m) => m.clone(),
        };
        match outcome {
            Outcome::Created(n) => {
                tracing::info!(app = %self.app.id, instances = n, "created the meshd app in Marathon")
            }
            Outcome::Scaled(n) => {
                tracing::info!(app = %self.app.id, instances = n, "set the meshd app's instances")
            }
            Outcome::Unchanged(_) => {
                tracing::debug!(app = %self.app.id, "the meshd app is as it should be")
            }
            Outcome::Held(m) => {
                tracing::warn!(app = %self.app.id, "not changing the meshd app: {m}")
            }
            Outcome::Conflict(m) => tracing::info!(app = %self.app.id, "{m}; retrying"),
            Outcome::Unauthorized(m) | Outcome::Rejected(m) | Outcome::Error(m) => {
                tracing::error!(app = %self.app.id, "keeping meshd on every agent failed: {m}");
            }
        }
        if !matches!(outcome, Outcome::Unchanged(_)) {
            metrics::counter!("palisade_ensure_meshd_actions_total", "outcome" => label)
                .increment(1);
        }
        self.status.set(KeeperStatus {
            app: self.app.id.clone(),
            agents,
            instances,
            outcome: Some(label.into()),
            message: Some(message),
            at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs()),
        });
    }
}

/// Whether a wake-up runs a check: the timer's always (a retry or the
/// resync); a new Mesos read when it was not acted on yet, but not before a
/// pending retry's time, or a cluster whose Mesos is read every few
/// seconds would try wrong credentials at every read.
fn due(
    forced: bool,
    reads: u64,
    done: u64,
    retry_at: Option<tokio::time::Instant>,
    now: tokio::time::Instant,
) -> bool {
    forced || (reads != done && retry_at.is_none_or(|at| at <= now))
}

/// Active agents in a view.
fn active_agents(view: &View) -> usize {
    view.agents.iter().filter(|a| a.active).count()
}

/// The outcome of a request that did not succeed.
fn failure(method: &str, path: &str, answer: Answer) -> Outcome {
    let (status, body) = match answer {
        Answer::Failed(e) => return Outcome::Error(format!("{method} {path}: {e}")),
        Answer::Status(s, b) => (s, b),
    };
    let said = body
        .get("message")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_owned();
    let details = body
        .get("details")
        .map(|d| format!(" {d}"))
        .unwrap_or_default();
    let m = format!("{method} {path}: Marathon answered {status} {said}{details}");
    match status {
        409 => Outcome::Conflict(format!("{m} (a deployment holds the app)")),
        401 | 403 => Outcome::Unauthorized(format!(
            "{m}: configsrv's Marathon credentials (--marathon URL user info or --marathon-token-file) may not change apps"
        )),
        400..=499 => Outcome::Rejected(m),
        _ => Outcome::Error(m),
    }
}

#[cfg(test)]
#[path = "ensure_meshd/keeper_tests.rs"]
mod tests;
