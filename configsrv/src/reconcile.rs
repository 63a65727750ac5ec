//! configsrv's state machine, between the sources and the publishers: events
//! in, new state and `Action`s out. No I/O and no clock: `app` feeds it source
//! events, timer wake-ups and publish results, and carries out its actions.
//! Invariant 1 lives here: a failed, partial or suspicious Marathon read never
//! produces an emptier config, and nothing renders before the first good read.

pub mod view;

use crate::error::SourceError;
use crate::render::{render, Rendered};
use crate::sources::marathon::follow::Backoff;
use crate::sources::SourceEvent;
use crate::state::{accept_full_read, keep_last_good, Applied, ClusterState};
use schemas::PolicySet;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use view::{PolicyView, Source, SourceStatus, Status, View};

/// What the reconciler hears.
#[derive(Debug)]
pub enum Event {
    /// Something a source read or saw.
    Source(SourceEvent),
    /// How the `Action::Publish` just carried out went.
    Published {
        /// Nodes the HTTP store now serves.
        nodes: usize,
        /// The failure, `{:#}`-formatted, if any file could not be written.
        result: Result<(), String>,
    },
}

/// What the reconciler asks `app` to do, in order.
#[derive(Debug)]
pub enum Action {
    /// Publish these configs (directory and HTTP store), then report back
    /// with `Event::Published`.
    Publish(Box<Rendered>),
    /// Call `on_timer` at this instant; replaces any earlier wake-up.
    ScheduleRender(Instant),
    /// Set `palisade_source_stale{source}`.
    SetStale {
        /// Which source.
        source: Source,
        /// Stale or not.
        stale: bool,
    },
    /// Move `palisade_policy_commit{commit}` from `old` (to 0) to `new` (to 1).
    SetPolicyCommit {
        /// The commit that ran until now.
        old: Option<String>,
        /// The commit that runs from now.
        new: Option<String>,
    },
    /// Count one failed publish (`palisade_publish_failures_total`).
    CountPublishFailure,
    /// A new picture of the state for readers (the API).
    View(Arc<View>),
}

/// Publish retries start here and double up to `RETRY_MAX`.
const RETRY_MIN: Duration = Duration::from_millis(250);
/// The longest wait between publish retries.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// The state machine. Owns the cluster state, the policies in force, the
/// sources' staleness, and when the next render is due.
#[derive(Debug)]
pub struct Reconciler {
    state: ClusterState,
    /// The policies in force (`policy.set`) and what is wrong with the last read.
    policy: PolicyView,
    sources: BTreeMap<Source, SourceStatus>,
    /// Empty Marathon reads in a row (invariant 1's confirmation count).
    empty_reads: u32,
    /// A good Marathon read has arrived: rendering may start.
    have_apps: bool,
    render_at: Option<Instant>,
    /// When the last render ran: the coalesce window runs from there.
    last_render: Option<Instant>,
    coalesce: Duration,
    renders: u64,
    nodes: usize,
    publish_error: Option<String>,
    retry: Backoff,
    rng: fastrand::Rng,
    app_errors: BTreeMap<String, Vec<String>>,
    /// Something a reader can see changed since the last `Action::View`.
    dirty: bool,
    /// Good Mesos reads since start.
    mesos_reads: u64,
}

impl Reconciler {
    /// A reconciler starting from the policies `serve` loaded (they were
    /// valid); `coalesce` is the shortest time between two renders (a
    /// burst gathers for that long after the render its first change
    /// caused), `seed` seeds the retry jitter.
    pub fn new(policies: PolicySet, coalesce: Duration, seed: u64) -> Reconciler {
        Reconciler {
            state: ClusterState::default(),
            policy: PolicyView {
                set: Arc::new(policies),
                ..PolicyView::default()
            },
            sources: BTreeMap::new(),
            empty_reads: 0,
            have_apps: false,
            render_at: None,
            last_render: None,
            coalesce,
            renders: 0,
            nodes: 0,
            publish_error: None,
            retry: Backoff::new(RETRY_MIN, RETRY_MAX),
            rng: fastrand::Rng::with_seed(seed),
            app_errors: BTreeMap::new(),
            dirty: true,
            mesos_reads: 0,
        }
    }

    /// The actions due before any event: the commit metric and a first view.
    pub fn start(&mut self) -> Vec<Action> {
        let mut out = vec![Action::SetPolicyCommit {
            old: None,
            new: self.policy.set.commit.clone(),
        }];
        self.flush_view(&mut out);
        out
    }

    /// Folds one event in; returns what to do about it.
    pub fn on_event(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Source(e) => {
                if self.absorb(e, &mut out) {
                    let at = self.render_time(now);
                    self.schedule(at, &mut out);
                }
            }
            Event::Published { nodes, result } => {
                self.nodes = nodes;
                self.dirty = true;
                match result {
                    Ok(()) => {
                        self.retry.reset();
                        self.publish_error = None;
                    }
                    Err(e) => {
                        // A failed write (disk full, permissions) must not stop
                        // configsrv: the publish is retried with backoff, change or not.
                        out.push(Action::CountPublishFailure);
                        let wait = self.retry.next(self.rng.f64());
                        tracing::error!(error = %e, retry_ms = wait.as_millis() as u64, "publishing failed; retrying");
                        self.publish_error = Some(e);
                        self.schedule(now + wait, &mut out);
                    }
                }
            }
        }
        self.flush_view(&mut out);
        out
    }

    /// A wake-up asked for by `ScheduleRender`: renders when one is due.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.render_at.is_some_and(|at| at <= now) {
            self.render_at = None;
            // The state changes gathered since the last view show now.
            self.dirty = true;
            // Nothing is rendered before the first good read: an empty
            // cluster must not overwrite what the nodes run.
            if self.have_apps {
                self.renders += 1;
                self.last_render = Some(now);
                let rendered = render(&self.state, &self.policy.set);
                self.app_errors = BTreeMap::new();
                for e in &rendered.errors {
                    tracing::warn!("{e}");
                    let key = e.app().unwrap_or("").to_owned();
                    self.app_errors.entry(key).or_default().push(e.to_string());
                }
                out.push(Action::Publish(Box::new(rendered)));
            }
        } else if let Some(at) = self.render_at {
            // Woken early: ask again.
            out.push(Action::ScheduleRender(at));
        }
        self.flush_view(&mut out);
        out
    }

    /// When the next render is due, if one is.
    pub fn render_due(&self) -> Option<Instant> {
        self.render_at
    }

    /// The picture readers see.
    pub fn view(&self) -> View {
        let mut app_errors = self.app_errors.clone();
        for (key, errors) in &self.policy.app_errors {
            app_errors
                .entry(key.clone())
                .or_default()
                .extend(errors.iter().cloned());
        }
        View {
            status: Status {
                sources: self.sources.clone(),
                apps: self.state.apps.len(),
                agents: self.state.agents.len(),
                nodes: self.nodes,
                renders: self.renders,
                policy_commit: self.policy.set.commit.clone(),
                publish_error: self.publish_error.clone(),
                mesos_reads: self.mesos_reads,
            },
            apps: view::apps(&self.state, &self.policy.set),
            policy: self.policy.clone(),
            app_errors,
            agents: view::agents(&self.state),
        }
    }

    /// When a change seen at `now` renders. After a quiet spell, at once
    /// (the leading edge: a lone change, the common case, waits for
    /// nothing); within `coalesce` of the last render, when that window
    /// closes, so a burst renders at most once per window and its later
    /// changes gather into the trailing render. A pending render (or a
    /// retry further off) is brought forward, never pushed back.
    fn render_time(&self, now: Instant) -> Instant {
        let earliest = self
            .last_render
            .map_or(now, |last| (last + self.coalesce).max(now));
        self.render_at.map_or(earliest, |r| r.min(earliest))
    }

    fn schedule(&mut self, at: Instant, out: &mut Vec<Action>) {
        self.render_at = Some(at);
        out.push(Action::ScheduleRender(at));
    }

    fn flush_view(&mut self, out: &mut Vec<Action>) {
        if std::mem::take(&mut self.dirty) {
            out.push(Action::View(Arc::new(self.view())));
        }
    }

    fn mark(&mut self, source: Source, error: Option<String>, out: &mut Vec<Action>) {
        let stale = error.is_some();
        if let Some(e) = &error {
            tracing::warn!(source = source.as_str(), error = %e, "source is stale; the last good state stays");
        }
        out.push(Action::SetStale { source, stale });
        self.sources.insert(source, SourceStatus { stale, error });
        self.dirty = true;
    }

    /// Replaces the cluster state; true when it changed. Readers see the
    /// change with the render it schedules (see `on_timer`), so a burst of
    /// task events builds one view, not one per event.
    fn replace_state(&mut self, next: ClusterState) -> bool {
        let changed = next != self.state;
        self.state = next;
        changed
    }

    /// Folds one source event into the state; true when a render is due.
    fn absorb(&mut self, event: SourceEvent, out: &mut Vec<Action>) -> bool {
        match event {
            SourceEvent::MarathonApps(Ok((apps, broken))) => {
                for e in &broken {
                    tracing::warn!("{e}; its last good settings stay");
                }
                self.empty_reads = if apps.is_empty() {
                    self.empty_reads + 1
                } else {
                    0
                };
                if let Err(why) =
                    accept_full_read(self.state.apps.len(), apps.len(), self.empty_reads)
                {
                    let e = SourceError::Suspicious(why).to_string();
                    self.mark(Source::Marathon, Some(e), out);
                    return false;
                }
                let apps = keep_last_good(&self.state, apps, &broken);
                let next = ClusterState::new(apps, self.state.agents.clone())
                    .with_followers(self.state.followers.clone());
                self.mark(Source::Marathon, None, out);
                // The first good read renders even when it matches the empty
                // start: the nodes must get their files.
                let first = !std::mem::replace(&mut self.have_apps, true);
                self.replace_state(next) || first
            }
            SourceEvent::MarathonApps(Err(e)) => {
                self.mark(Source::Marathon, Some(e.to_string()), out);
                false
            }
            SourceEvent::MarathonEvent(event) => {
                matches!(self.state.apply(&event), Applied::Changed)
            }
            SourceEvent::MarathonStream(Ok(url)) => {
                tracing::info!(%url, "following Marathon's event stream");
                false
            }
            SourceEvent::MarathonStream(Err(e @ SourceError::TooLarge { .. })) => {
                // Events were lost: stale until the full read after the reconnect.
                self.mark(Source::Marathon, Some(e.to_string()), out);
                false
            }
            SourceEvent::MarathonStream(Err(e)) => {
                tracing::warn!(error = %e, "Marathon's event stream broke; full reads continue");
                false
            }
            SourceEvent::MesosAgents(Ok(agents)) => {
                self.mark(Source::Mesos, None, out);
                self.mesos_reads += 1;
                let next = ClusterState::new(self.state.apps.clone(), agents)
                    .with_followers(self.state.followers.clone());
                self.replace_state(next)
            }
            SourceEvent::Followers(followers) => {
                let next = self.state.clone().with_followers(followers);
                self.replace_state(next)
            }
            SourceEvent::MesosAgents(Err(e)) => {
                self.mark(Source::Mesos, Some(e.to_string()), out);
                false
            }
            SourceEvent::PolicyCommit(Ok(set)) => {
                self.mark(Source::Policy, None, out);
                out.push(Action::SetPolicyCommit {
                    old: self.policy.set.commit.clone(),
                    new: set.commit.clone(),
                });
                tracing::info!(commit = ?set.commit, "policy commit applied");
                self.policy = PolicyView {
                    set: Arc::new(set),
                    ..PolicyView::default()
                };
                true
            }
            SourceEvent::PolicyCommit(Err(why)) => {
                self.mark(Source::Policy, Some(why), out);
                false
            }
            SourceEvent::Policies(read) => self.absorb_policies(read, out),
        }
    }

    /// A new read of the policy directory: a broken file keeps the whole
    /// last good policy; an invalid app entry keeps its own last good settings.
    fn absorb_policies(&mut self, read: schemas::policy::Lenient, out: &mut Vec<Action>) -> bool {
        let errors: Vec<String> = read.errors.iter().map(ToString::to_string).collect();
        if !read.broken_files.is_empty() {
            self.mark(Source::Policy, Some(errors.join("; ")), out);
            self.policy.problems = errors;
            return false;
        }
        let mut set = read.set;
        for key in &read.broken_apps {
            let Ok(pattern) = key.parse::<schemas::AppPattern>() else {
                continue;
            };
            if let (Some(old), Some(origin)) = (
                self.policy.set.apps.get(&pattern),
                self.policy.set.origins.get(&pattern),
            ) {
                set.apps.insert(pattern.clone(), old.clone());
                set.origins.insert(pattern, origin.clone());
            }
        }
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        self.mark(Source::Policy, error, out);
        let app_errors = read
            .app_errors
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(ToString::to_string).collect()))
            .collect();
        let changed = set != *self.policy.set;
        self.policy = PolicyView {
            set: Arc::new(set),
            problems: errors,
            broken_apps: read.broken_apps,
            app_errors,
        };
        changed
    }
}

#[cfg(test)]
mod tests;
