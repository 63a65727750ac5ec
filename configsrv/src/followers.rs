//! The nodes whose meshd follows configsrv (`GET /v1/nodes/<node>/config`).
//!
//! Without Mesos, configsrv learns nodes only from Marathon's task hosts: a
//! node whose last task left (or any node, after configsrv restarts) would
//! get no config, and its meshd would keep its last one, allow-lists
//! included, so a policy edit that denies a source would never reach it. A
//! meshd asking for its config says the node exists; the renderer then
//! treats it like an agent with no tasks. Names expire when their meshd stops
//! asking, and their number is capped: the endpoint may be open.

use schemas::NodeName;
use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A follower not heard from for this long is forgotten (a long-poll asks
/// at least every 30 s).
pub const TTL: Duration = Duration::from_secs(600);
/// At most this many names are remembered.
pub const MAX: usize = 10_000;

/// Nodes that asked for their config, with when they last did.
#[derive(Debug, Default)]
pub struct Followers {
    seen: Mutex<BTreeMap<NodeName, Instant>>,
}

impl Followers {
    /// Notes that `node`'s meshd asked at `now`; true when the node is new
    /// (the caller wakes the renderer). Past `MAX` names, new ones are not
    /// remembered: known nodes still get their configs.
    pub fn note(&self, node: &NodeName, now: Instant) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = seen.get_mut(node) {
            *at = now;
            return false;
        }
        if seen.len() >= MAX {
            drop(seen);
            tracing::warn!(%node, max = MAX, "too many nodes follow configsrv; not rendering a config for another");
            return false;
        }
        seen.insert(node.clone(), now);
        true
    }

    /// The followers heard from within `TTL` of `now`, sorted; forgets the others.
    pub fn current(&self, now: Instant) -> Vec<NodeName> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.retain(|_, at| now.saturating_duration_since(*at) < TTL);
        seen.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> NodeName {
        n.parse().unwrap()
    }

    #[test]
    fn a_new_follower_wakes_once_and_expires_after_the_ttl() {
        let f = Followers::default();
        let t0 = Instant::now();
        assert!(f.note(&node("127.0.0.2"), t0));
        assert!(!f.note(&node("127.0.0.2"), t0 + Duration::from_secs(1)));
        assert!(f.note(&node("127.0.0.1"), t0));
        assert_eq!(f.current(t0), vec![node("127.0.0.1"), node("127.0.0.2")]);
        // 10.0.0.2 asked again later, so it outlives 10.0.0.1.
        assert_eq!(f.current(t0 + TTL), vec![node("127.0.0.2")]);
        assert!(f.current(t0 + TTL + Duration::from_secs(2)).is_empty());
        assert!(
            f.note(&node("127.0.0.1"), t0 + TTL),
            "forgotten, so new again"
        );
    }

    #[test]
    fn the_number_of_followers_is_capped() {
        let f = Followers::default();
        let t0 = Instant::now();
        for i in 0..MAX {
            assert!(f.note(&node(&format!("n{i}")), t0));
        }
        assert!(!f.note(&node("one-too-many"), t0));
        assert_eq!(f.current(t0).len(), MAX);
        assert!(!f.note(&node("n0"), t0), "known names are still refreshed");
    }
}
