//! Autoscaling, the record: every decision in a bounded ring, newest first,
//! for `GET /v1/autoscale/decisions` and the UI's app page, and counted in
//! `palisade_autoscale_decisions_total{app,outcome}`.

use super::decide::Outcome;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use utoipa::ToSchema;

/// Decisions kept; older ones fall off.
pub const CAPACITY: usize = 1000;

/// One decision, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Decision {
    /// When, Unix seconds.
    pub time: u64,
    /// The app id.
    pub app: String,
    /// The policy's metric (`rps_per_instance`, `p99_latency_ms`, `active_connections_per_instance`).
    pub metric: String,
    /// The figure over the policy's window; null when it could not be trusted.
    pub value: Option<f64>,
    /// The policy's target.
    pub target: f64,
    /// Marathon's instances before.
    pub from: u32,
    /// The instances asked for (or that would have been); `from` when nothing changed.
    pub to: u32,
    /// What came of it.
    pub outcome: Outcome,
    /// Why.
    pub reason: String,
}

/// The ring of decisions (shared by the scaler, which writes, and the API).
#[derive(Debug, Default)]
pub struct DecisionLog {
    ring: Mutex<VecDeque<Decision>>,
}

impl DecisionLog {
    /// Keeps `d`, counts it and logs it.
    pub fn record(&self, d: Decision) {
        metrics::counter!(
            "palisade_autoscale_decisions_total",
            "app" => d.app.clone(),
            "outcome" => d.outcome.as_str()
        )
        .increment(1);
        match d.outcome {
            Outcome::Error => {
                tracing::warn!(app = %d.app, from = d.from, to = d.to, reason = %d.reason, "autoscale: error")
            }
            o => {
                tracing::info!(app = %d.app, outcome = o.as_str(), value = ?d.value, target = d.target, from = d.from, to = d.to, reason = %d.reason, "autoscale decision")
            }
        }
        let mut ring = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ring.push_front(d);
        ring.truncate(CAPACITY);
    }

    /// Every kept decision, newest first; only `app`'s when given.
    pub fn list(&self, app: Option<&str>) -> Vec<Decision> {
        let ring = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ring.iter()
            .filter(|d| app.is_none_or(|a| d.app == a))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(app: &str, time: u64) -> Decision {
        Decision {
            time,
            app: app.into(),
            metric: "rps_per_instance".into(),
            value: Some(1.0),
            target: 2.0,
            from: 1,
            to: 1,
            outcome: Outcome::WithinBand,
            reason: String::new(),
        }
    }

    #[test]
    fn newest_first_bounded_and_filtered_by_app() {
        let log = DecisionLog::default();
        for t in 0..(CAPACITY as u64 + 5) {
            log.record(d(if t % 2 == 0 { "/a" } else { "/b" }, t));
        }
        let all = log.list(None);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].time, CAPACITY as u64 + 4);
        assert!(all.windows(2).all(|w| w[0].time > w[1].time));
        assert!(log.list(Some("/b")).iter().all(|x| x.app == "/b"));
    }
}
