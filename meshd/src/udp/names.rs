//! The host names of a port's backends: one lookup in flight per name,
//! shared by every session that waits for it, and its answer kept briefly.
//! A DNS-shaped client opens a session per query (a new source port each
//! time), so without this each query would cost a lookup, and a burst of
//! new clients a burst of lookups on the resolver. No I/O: the port's task
//! runs the lookups and passes the clock.

use schemas::Endpoint;
use std::collections::HashMap;
use std::net::SocketAddr;

/// How long a name's address is reused before it is looked up again (ms).
pub const KEEP_MS: u64 = 5_000;
/// How long a failed lookup fails new sessions at once (ms): a name that
/// does not resolve costs the resolver one lookup a second per port.
pub const KEEP_FAILED_MS: u64 = 1_000;
/// Past this many names, answers that expired are forgotten.
const PRUNE_ABOVE: usize = 64;

/// What a new session of a backend named `name` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Connect to this address now.
    Known(SocketAddr),
    /// The name failed to resolve a moment ago, for this reason.
    Failed(String),
    /// A lookup is in flight; the session waits for it.
    Wait,
    /// No lookup in flight: the caller starts one; the session waits for it.
    Start,
}

#[derive(Debug)]
enum Entry {
    /// Sessions waiting for the lookup in flight.
    Pending(Vec<u64>),
    /// The last answer, kept until `until_ms`.
    Answered {
        answer: Result<SocketAddr, String>,
        until_ms: u64,
    },
}

/// A port's names.
#[derive(Debug, Default)]
pub struct Names {
    by_name: HashMap<Endpoint, Entry>,
}

impl Names {
    /// Session `id` needs `name` at `now_ms`.
    pub fn lookup(&mut self, name: &Endpoint, id: u64, now_ms: u64) -> Lookup {
        match self.by_name.get_mut(name) {
            Some(Entry::Pending(waiting)) => {
                waiting.push(id);
                Lookup::Wait
            }
            Some(Entry::Answered { answer, until_ms }) if now_ms < *until_ms => match answer {
                Ok(addr) => Lookup::Known(*addr),
                Err(why) => Lookup::Failed(why.clone()),
            },
            _ => {
                if self.by_name.len() >= PRUNE_ABOVE {
                    self.by_name.retain(|_, e| match e {
                        Entry::Pending(_) => true,
                        Entry::Answered { until_ms, .. } => now_ms < *until_ms,
                    });
                }
                self.by_name.insert(name.clone(), Entry::Pending(vec![id]));
                Lookup::Start
            }
        }
    }

    /// The lookup of `name` ended at `now_ms`: the answer is kept, and the
    /// sessions that waited for it are returned.
    pub fn answered(
        &mut self,
        name: &Endpoint,
        answer: Result<SocketAddr, String>,
        now_ms: u64,
    ) -> Vec<u64> {
        let keep = if answer.is_ok() {
            KEEP_MS
        } else {
            KEEP_FAILED_MS
        };
        let entry = Entry::Answered {
            answer,
            until_ms: now_ms.saturating_add(keep),
        };
        match self.by_name.insert(name.clone(), entry) {
            Some(Entry::Pending(waiting)) => waiting,
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(host: &str) -> Endpoint {
        Endpoint {
            host: host.into(),
            port: 53,
        }
    }

    #[test]
    fn sessions_that_come_during_a_lookup_share_it_and_its_answer_is_kept() {
        let mut n = Names::default();
        let dns = name("dns.internal");
        let addr: SocketAddr = "10.0.0.5:53".parse().unwrap();
        assert_eq!(n.lookup(&dns, 1, 0), Lookup::Start);
        assert_eq!(n.lookup(&dns, 2, 10), Lookup::Wait);
        assert_eq!(n.lookup(&name("other"), 3, 10), Lookup::Start);
        assert_eq!(n.answered(&dns, Ok(addr), 20), [1, 2]);
        assert_eq!(n.lookup(&dns, 4, 20 + KEEP_MS - 1), Lookup::Known(addr));
        assert_eq!(n.lookup(&dns, 5, 20 + KEEP_MS), Lookup::Start, "expired");
    }

    #[test]
    fn a_failed_lookup_fails_new_sessions_at_once_for_a_second() {
        let mut n = Names::default();
        let bad = name("nonexistent.invalid");
        assert_eq!(n.lookup(&bad, 1, 0), Lookup::Start);
        assert_eq!(n.answered(&bad, Err("no such name".into()), 5), [1]);
        assert_eq!(
            n.lookup(&bad, 2, 5 + KEEP_FAILED_MS - 1),
            Lookup::Failed("no such name".into())
        );
        assert_eq!(n.lookup(&bad, 3, 5 + KEEP_FAILED_MS), Lookup::Start);
    }

    #[test]
    fn expired_answers_are_forgotten_once_there_are_many_names() {
        let mut n = Names::default();
        let addr: SocketAddr = "10.0.0.5:53".parse().unwrap();
        for i in 0..PRUNE_ABOVE {
            let host = name(&format!("h{i}"));
            n.lookup(&host, 0, 0);
            n.answered(&host, Ok(addr), 0);
        }
        assert_eq!(n.by_name.len(), PRUNE_ABOVE);
        n.lookup(&name("new"), 1, KEEP_MS);
        assert_eq!(n.by_name.len(), 1, "only the name in flight is left");
    }
}
