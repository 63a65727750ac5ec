//! Autoscaling, the decision: one app's next instance count from its figure
//! over the policy's window, Marathon's count and deployments, Mesos' room
//! and the app's last actions. Pure: callers pass `now`; no I/O, no clock.

use schemas::policy::Autoscale;
use serde::Serialize;
use std::time::{Duration, Instant};
use utoipa::ToSchema;

/// Within this fraction of the target nothing changes: the band that keeps
/// a figure hovering around its target from flapping the instance count.
pub const TOLERANCE: f64 = 0.1;
/// `scale_up_cooldown` when the policy gives none.
pub const DEFAULT_UP_COOLDOWN: Duration = Duration::from_secs(30);
/// `scale_down_cooldown` when the policy gives none.
pub const DEFAULT_DOWN_COOLDOWN: Duration = Duration::from_secs(300);
/// `max_step` when the policy gives none.
pub const DEFAULT_MAX_STEP: u32 = 4;
/// `window` when the policy gives none.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// What came of one decision (`palisade_autoscale_decisions_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Marathon was asked for more instances.
    ScaledUp,
    /// Marathon was asked for one instance fewer.
    ScaledDown,
    /// A change was due, but the app changed too recently.
    Cooldown,
    /// A Marathon deployment of the app is running (or Marathon answered 409).
    Deployment,
    /// Some node running the app has no fresh figures: nothing is done blind.
    StaleMetrics,
    /// More instances were due, but none fits in Mesos' free resources.
    Capacity,
    /// A change was due; the policy says `dry_run`, so Marathon was not asked.
    DryRun,
    /// The figure is within the band around the target.
    WithinBand,
    /// Marathon or Mesos could not be read or refused the change.
    Error,
    /// The app has 0 instances in Marathon: someone suspended it, and the
    /// scaler does not bring it back.
    Suspended,
}

impl Outcome {
    /// The spelling of the metric label and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::ScaledUp => "scaled_up",
            Outcome::ScaledDown => "scaled_down",
            Outcome::Cooldown => "cooldown",
            Outcome::Deployment => "deployment",
            Outcome::StaleMetrics => "stale_metrics",
            Outcome::Capacity => "capacity",
            Outcome::DryRun => "dry_run",
            Outcome::WithinBand => "within_band",
            Outcome::Error => "error",
            Outcome::Suspended => "suspended",
        }
    }
}

/// How many more instances of the app fit in Mesos' free resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Room {
    /// Instances that fit, summed over agents.
    pub fits: u32,
    /// The app's `cpus` per instance.
    pub cpus: f64,
    /// The app's `mem` (MiB) per instance.
    pub mem: f64,
}

/// Everything one decision reads.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The app's `autoscale` policy.
    pub policy: &'a Autoscale,
    /// Marathon's `instances` for the app.
    pub instances: u32,
    /// The figure over the window, or why it cannot be trusted.
    pub measured: Result<f64, String>,
    /// A Marathon deployment of the app is in progress.
    pub deploying: bool,
    /// Mesos' room; `None` when unknown (no `--mesos`, or not asked yet).
    pub room: Option<Room>,
    /// When the app was last scaled up by this scaler.
    pub last_up: Option<Instant>,
    /// When the app was last scaled down by this scaler.
    pub last_down: Option<Instant>,
    /// Now.
    pub now: Instant,
}

/// One decision, before the actuator carries it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The figure it was taken on, if fresh.
    pub value: Option<f64>,
    /// The instance count wanted (`from` when nothing changes).
    pub to: u32,
    /// What came of it.
    pub outcome: Outcome,
    /// Why, in a sentence an operator can act on.
    pub reason: String,
}

/// Decides one app's next instance count.
pub fn decide(i: &Inputs<'_>) -> Verdict {
    let p = i.policy;
    let from = i.instances;
    let hold = |outcome, reason| hold(i, outcome, reason);
    if i.deploying {
        return hold(
            Outcome::Deployment,
            "a Marathon deployment of the app is in progress; deciding again after it".into(),
        );
    }
    // Marathon's way to stop an app; resurrecting it is an operator's call.
    if from == 0 {
        return hold(
            Outcome::Suspended,
            "the app is suspended (0 instances in Marathon); scaling resumes once it has instances"
                .into(),
        );
    }
    // Out of bounds, the bounds decide, whatever the figure says.
    let (wanted, why) = if from < p.min {
        (p.min, format!("{from} instances is below min {}", p.min))
    } else if from > p.max {
        (p.max, format!("{from} instances is above max {}", p.max))
    } else {
        let v = match &i.measured {
            Ok(v) => *v,
            Err(e) => return hold(Outcome::StaleMetrics, e.clone()),
        };
        let ratio = v / p.target;
        if (ratio - 1.0).abs() <= TOLERANCE {
            return hold(
                Outcome::WithinBand,
                format!(
                    "{v:.1} is within {:.0}% of the target {}",
                    TOLERANCE * 100.0,
                    p.target
                ),
            );
        }
        let raw = (f64::from(from.max(1)) * ratio).ceil();
        let wanted = if raw.is_finite() && raw > 0.0 {
            (raw.min(f64::from(u32::MAX)) as u32).clamp(p.min, p.max)
        } else {
            p.min
        };
        let side = if ratio > 1.0 { "above" } else { "below" };
        (wanted, format!("{v:.1} is {side} the target {}", p.target))
    };
    match wanted.cmp(&from) {
        std::cmp::Ordering::Equal => hold(
            Outcome::WithinBand,
            if from == p.max && wanted_more(i) {
                format!("{why}, but {from} instances is the policy's max")
            } else if from == p.min && !wanted_more(i) {
                format!("{why}, but {from} instances is the policy's min")
            } else {
                format!("{why}; {from} instances is what that needs")
            },
        ),
        std::cmp::Ordering::Greater => up(i, wanted, why),
        std::cmp::Ordering::Less => down(i, why),
    }
}

/// The figure is above the target.
fn wanted_more(i: &Inputs<'_>) -> bool {
    i.measured.as_ref().is_ok_and(|v| *v > i.policy.target)
}

/// Nothing changes: the count stays, with the figure and why.
fn hold(i: &Inputs<'_>, outcome: Outcome, reason: String) -> Verdict {
    Verdict {
        value: i.measured.as_ref().ok().copied(),
        to: i.instances,
        outcome,
        reason,
    }
}

fn up(i: &Inputs<'_>, wanted: u32, why: String) -> Verdict {
    let p = i.policy;
    let from = i.instances;
    let value = i.measured.as_ref().ok().copied();
    let hold = |outcome, reason| hold(i, outcome, reason);
    let cooldown = p.scale_up_cooldown.map_or(DEFAULT_UP_COOLDOWN, |d| d.0);
    if let Some(left) = left_of(cooldown, i.last_up, i.now) {
        return hold(
            Outcome::Cooldown,
            format!(
                "{why}; scale-up cooldown, {} s left",
                left.as_secs_f64().ceil()
            ),
        );
    }
    let step = (wanted - from).min(p.max_step.unwrap_or(DEFAULT_MAX_STEP).max(1));
    let (to, limited) = match i.room {
        Some(room) if room.fits == 0 => {
            return hold(
                Outcome::Capacity,
                format!(
                    "{why}; no room in Mesos for one more instance ({} cpus, {} MiB mem): no agent has that much unreserved and free",
                    room.cpus, room.mem
                ),
            )
        }
        Some(room) if room.fits < step => (from + room.fits, Some(room.fits)),
        _ => (from + step, None),
    };
    let mut reason = format!("{why}: {from} -> {to}");
    if let Some(fits) = limited {
        reason.push_str(&format!(
            " (capacity: Mesos has room for only {fits} more of the {step} due)"
        ));
    }
    act(p.dry_run, value, to, Outcome::ScaledUp, reason)
}

fn down(i: &Inputs<'_>, why: String) -> Verdict {
    let p = i.policy;
    let from = i.instances;
    let value = i.measured.as_ref().ok().copied();
    let cooldown = p.scale_down_cooldown.map_or(DEFAULT_DOWN_COOLDOWN, |d| d.0);
    // After any change: a scale-up's new instances must show in the figures first.
    let last = i.last_up.max(i.last_down);
    if let Some(left) = left_of(cooldown, last, i.now) {
        return Verdict {
            value,
            to: from,
            outcome: Outcome::Cooldown,
            reason: format!(
                "{why}; scale-down cooldown, {} s left",
                left.as_secs_f64().ceil()
            ),
        };
    }
    // One step at a time: the removed task drains before the next goes.
    let to = from - 1;
    act(
        p.dry_run,
        value,
        to,
        Outcome::ScaledDown,
        format!("{why}: {from} -> {to} (one step at a time)"),
    )
}

fn act(dry_run: bool, value: Option<f64>, to: u32, outcome: Outcome, reason: String) -> Verdict {
    if dry_run {
        Verdict {
            value,
            to,
            outcome: Outcome::DryRun,
            reason: format!("dry run, Marathon not asked: {reason}"),
        }
    } else {
        Verdict {
            value,
            to,
            outcome,
            reason,
        }
    }
}

/// How much of `cooldown` is left since `last`, if any.
fn left_of(cooldown: Duration, last: Option<Instant>, now: Instant) -> Option<Duration> {
    let since = now.saturating_duration_since(last?);
    (since < cooldown).then(|| cooldown - since)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
