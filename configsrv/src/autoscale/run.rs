//! Autoscaling, the actor (`configsrv serve --autoscale`): every scrape
//! interval, for each app whose policy has `autoscale`, read it from
//! Marathon, measure it from the collector's window, decide, check Mesos for
//! room before a scale-up, carry out the change, and record the decision.
//! The only writer to Marathon in configsrv; all of its I/O is here.

use super::capacity;
use super::decide::{self, decide, Inputs, Outcome, Room, Verdict};
use super::log::{Decision, DecisionLog};
use super::marathon::{self, AppState, MarathonError};
use super::measure::{measure, Scope};
use crate::observe::Observed;
use crate::reconcile::view::{AppView, View};
use crate::sources::marathon::rest::MarathonClient;
use schemas::policy::Autoscale;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// How long a 409 (a deployment holds the app) waits before the next try.
pub const CONFLICT_RETRY: Duration = Duration::from_secs(2);
/// How long Marathon's `instances` is trusted while the figures say hold.
const REREAD: Duration = Duration::from_secs(30);
/// How long a capacity refusal stands before Marathon and Mesos are asked again.
const CAPACITY_RECHECK: Duration = Duration::from_secs(10);
/// How long a refusal (401/403) waits: an operator must fix the credentials.
const REFUSED_RETRY: Duration = Duration::from_secs(60);
/// Backoff after network and server errors: doubled from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// The scaler's settings.
#[derive(Debug, Clone)]
pub struct ScalerOptions {
    /// How often apps are looked at (the scrape interval: figures change no faster).
    pub interval: Duration,
    /// A node's last good scrape older than this makes an app's figures stale.
    pub stale_after: Duration,
    /// Mesos master base URL: scale-ups are checked for room there; none: not checked.
    pub mesos: Option<String>,
    /// Largest Mesos answer taken, in bytes.
    pub max_body: u64,
}

/// What the scaler remembers of one app between rounds.
#[derive(Debug, Default)]
struct Memory {
    last_up: Option<Instant>,
    last_down: Option<Instant>,
    /// No call to Marathon for this app before then (409, errors).
    not_before: Option<Instant>,
    backoff: Duration,
    /// Marathon's `instances` when last read.
    instances: u32,
    /// When Marathon was last read for this app.
    read_at: Option<Instant>,
    /// The last recorded (outcome, from, to): repeats of a hold are not recorded again.
    last: Option<(Outcome, u32, u32)>,
}

impl Memory {
    fn back_off(&mut self, now: Instant) -> Duration {
        self.backoff = (self.backoff * 2).clamp(BACKOFF.0, BACKOFF.1);
        self.not_before = Some(now + self.backoff);
        self.backoff
    }
}

/// What one round reads, shared by every app of the round.
struct Round<'a> {
    client: &'a MarathonClient,
    opts: &'a ScalerOptions,
    mesos: &'a reqwest::Client,
    window: crate::observe::window::Window,
    log: &'a DecisionLog,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs the scaler for good.
pub async fn run(
    opts: ScalerOptions,
    client: MarathonClient,
    view: watch::Receiver<Arc<View>>,
    observed: Observed,
    log: Arc<DecisionLog>,
) {
    let mesos = reqwest::Client::new();
    let mut memory: BTreeMap<String, Memory> = BTreeMap::new();
    tracing::info!(interval = ?opts.interval, mesos = opts.mesos.is_some(), "autoscaler on");
    if opts.mesos.is_none() {
        tracing::warn!(
            "autoscaler without --mesos: scale-ups are not checked for room in the cluster"
        );
    }
    loop {
        tokio::time::sleep(opts.interval).await;
        let picture = view.borrow().clone();
        let scaled: Vec<(&AppView, Autoscale)> = picture
            .apps
            .iter()
            .filter_map(|a| {
                let (_, entry) = picture.policy.set.entry_for(&a.id)?;
                Some((a, entry.autoscale.clone()?))
            })
            .collect();
        memory.retain(|id, _| scaled.iter().any(|(a, _)| a.id.as_str() == id));
        let round = Round {
            client: &client,
            opts: &opts,
            mesos: &mesos,
            window: crate::observe::snapshot(&observed),
            log: &log,
        };
        for (app, policy) in scaled {
            let mem = memory.entry(app.id.as_str().to_owned()).or_default();
            if mem.not_before.is_some_and(|t| Instant::now() < t) {
                continue;
            }
            round.step(app, &policy, mem).await;
        }
    }
}

impl Round<'_> {
    /// One app: read, measure, decide, act, record.
    async fn step(&self, app: &AppView, policy: &Autoscale, mem: &mut Memory) {
        let id = app.id.as_str();
        let now = Instant::now();
        let record = |mem: &mut Memory,
                      value: Option<f64>,
                      from: u32,
                      to: u32,
                      outcome: Outcome,
                      reason: String| {
            let key = (outcome, from, to);
            let acted = matches!(
                outcome,
                Outcome::ScaledUp | Outcome::ScaledDown | Outcome::Error
            );
            if acted || mem.last != Some(key) {
                self.log.record(Decision {
                    time: unix_ms() / 1000,
                    app: id.to_owned(),
                    metric: serde_json::to_value(policy.metric)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    value,
                    target: policy.target,
                    from,
                    to,
                    outcome,
                    reason,
                });
            }
            mem.last = Some(key);
        };
        // Between Marathon reads, a hold that the figures alone decide is
        // recorded without asking Marathon: one read per app per `REREAD`
        // while nothing changes, not one per scrape (be gentle with Marathon).
        if mem.read_at.is_some_and(|t| now.duration_since(t) < REREAD) {
            let known = AppState {
                instances: mem.instances,
                cpus: 0.0,
                mem: 0.0,
                deploying: false,
                hosts: app.backends.iter().map(|b| b.node.clone()).collect(),
                running: u32::try_from(app.instances).unwrap_or(u32::MAX),
            };
            let pre = decide(&Inputs {
                policy,
                instances: mem.instances,
                measured: self.figure(app, policy, &known),
                deploying: false,
                room: None,
                last_up: mem.last_up,
                last_down: mem.last_down,
                now,
            });
            if matches!(
                pre.outcome,
                Outcome::WithinBand
                    | Outcome::StaleMetrics
                    | Outcome::Cooldown
                    | Outcome::DryRun
                    | Outcome::Suspended
            ) {
                let from = mem.instances;
                return record(mem, pre.value, from, pre.to, pre.outcome, pre.reason);
            }
            // A capacity refusal stands until Mesos is asked again.
            let refused = mem.last.is_some_and(|(o, _, _)| o == Outcome::Capacity);
            if refused
                && pre.outcome == Outcome::ScaledUp
                && mem
                    .read_at
                    .is_some_and(|t| now.duration_since(t) < CAPACITY_RECHECK)
            {
                return;
            }
        }
        let state = match marathon::read_app(self.client, id).await {
            Ok(s) => s,
            Err(e) => {
                let reason = self.failed(mem, now, &e, "reading the app");
                return record(
                    mem,
                    None,
                    mem.instances,
                    mem.instances,
                    Outcome::Error,
                    reason,
                );
            }
        };
        mem.instances = state.instances;
        mem.read_at = Some(now);
        mem.backoff = Duration::ZERO;
        let verdict = self.verdict(app, policy, &state, mem, now).await;
        let (
            from,
            Verdict {
                value,
                to,
                outcome,
                reason,
            },
        ) = (state.instances, verdict);
        if !matches!(outcome, Outcome::ScaledUp | Outcome::ScaledDown) {
            return record(mem, value, from, to, outcome, reason);
        }
        match marathon::scale(self.client, id, to).await {
            Ok(()) => {
                mem.backoff = Duration::ZERO;
                mem.instances = to;
                if outcome == Outcome::ScaledUp {
                    mem.last_up = Some(now);
                } else {
                    mem.last_down = Some(now);
                }
                record(mem, value, from, to, outcome, reason);
            }
            Err(MarathonError::Conflict(m)) => {
                mem.not_before = Some(now + CONFLICT_RETRY);
                let reason = format!(
                    "{reason}; Marathon answered 409 ({m}): retrying in {} s",
                    CONFLICT_RETRY.as_secs()
                );
                record(mem, value, from, from, Outcome::Deployment, reason);
            }
            Err(e) => {
                let reason = format!("{reason}; {}", self.failed(mem, now, &e, "scaling"));
                record(mem, value, from, from, Outcome::Error, reason);
            }
        }
    }

    /// The decision, with Mesos' room when it is a scale-up.
    async fn verdict(
        &self,
        app: &AppView,
        policy: &Autoscale,
        state: &AppState,
        mem: &mut Memory,
        now: Instant,
    ) -> Verdict {
        let measured = self.figure(app, policy, state);
        let mut inputs = Inputs {
            policy,
            instances: state.instances,
            measured,
            deploying: state.deploying,
            room: None,
            last_up: mem.last_up,
            last_down: mem.last_down,
            now,
        };
        let first = decide(&inputs);
        let growing = matches!(first.outcome, Outcome::ScaledUp | Outcome::DryRun)
            && first.to > state.instances;
        let Some(url) = self.opts.mesos.as_deref().filter(|_| growing) else {
            return first;
        };
        match self.free(url).await {
            Ok(free) => {
                inputs.room = Some(Room {
                    fits: capacity::fits(&free, state.cpus, state.mem),
                    cpus: state.cpus,
                    mem: state.mem,
                });
                decide(&inputs)
            }
            Err(e) => {
                let wait = mem.back_off(now);
                Verdict {
                    value: first.value,
                    to: state.instances,
                    outcome: Outcome::Error,
                    reason: format!(
                        "{}; but Mesos could not be asked for room ({e}); retrying in {} s",
                        first.reason,
                        wait.as_secs()
                    ),
                }
            }
        }
    }

    /// The app's figure over its policy's window, checked fresh on the nodes of its tasks.
    fn figure(&self, app: &AppView, policy: &Autoscale, state: &AppState) -> Result<f64, String> {
        let nodes: Vec<String> = state
            .hosts
            .iter()
            .map(|h| schemas::NodeName::sanitise(h).map_or_else(|| h.clone(), |n| n.to_string()))
            .collect();
        measure(
            &self.window,
            &Scope {
                app: app.id.as_str(),
                http: app.protocol == schemas::Protocol::Http,
                metric: policy.metric,
                nodes: &nodes,
                running: state.running,
                window: policy.window.map_or(decide::DEFAULT_WINDOW, |d| d.0),
                stale_after: self.opts.stale_after,
                now_ms: unix_ms(),
            },
        )
    }

    /// Every active agent's free unreserved resources.
    async fn free(&self, url: &str) -> Result<Vec<capacity::Free>, crate::error::SourceError> {
        let target = format!("{}/master/state", url.trim_end_matches('/'));
        let origin = schemas::RedactedUrl::new(&target);
        let resp = self
            .mesos
            .get(&target)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| crate::error::SourceError::Http {
                origin: origin.clone(),
                message: schemas::redact::redact(&e.to_string()),
            })?;
        let body = crate::sources::read_body(resp, &origin, self.opts.max_body).await?;
        capacity::free_resources(origin.as_str(), &body)
    }

    /// Sets the app's next try after `e` and says why, for the log.
    fn failed(&self, mem: &mut Memory, now: Instant, e: &MarathonError, doing: &str) -> String {
        let wait = if e.transient() {
            mem.back_off(now)
        } else if matches!(e, MarathonError::Conflict(_)) {
            mem.not_before = Some(now + CONFLICT_RETRY);
            CONFLICT_RETRY
        } else {
            mem.not_before = Some(now + REFUSED_RETRY);
            REFUSED_RETRY
        };
        if let MarathonError::Refused { .. } = e {
            tracing::error!(error = %e, "autoscale: Marathon refused the scaler");
        }
        format!("{doing}: {e}; next try in {} s", wait.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_a_minute() {
        let mut m = Memory::default();
        let now = Instant::now();
        let waits: Vec<u64> = (0..9).map(|_| m.back_off(now).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(m.not_before, Some(now + Duration::from_secs(60)));
    }
}
