//! Choosing a backend for one connection or request, and scoring the
//! outcome: the balance policy over healthy, non-ejected backends, then
//! passive health bookkeeping. Brings the clock and randomness to the pure
//! `balance` and `health` modules.

use crate::balance::{pick, PickInput};
use crate::health::may_eject;
use crate::snapshot::Route;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Instant;

/// Milliseconds since meshd started: the clock of health and latency figures.
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// `at` on the clock of [`now_ms`], for a caller that has just read the time.
pub fn ms_at(at: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    at.saturating_duration_since(*START.get_or_init(Instant::now))
        .as_millis() as u64
}

/// Backends one request tried already (a request tries a handful at most).
#[derive(Debug, Default, Clone, Copy)]
pub struct Tried {
    list: [usize; 4],
    len: usize,
}

impl Tried {
    /// Whether `i` was tried.
    pub fn contains(&self, i: usize) -> bool {
        self.list[..self.len].contains(&i)
    }
    /// Records `i`; returns false when the list is full (stop trying).
    pub fn push(&mut self, i: usize) -> bool {
        if self.len == self.list.len() {
            return false;
        }
        self.list[self.len] = i;
        self.len += 1;
        true
    }
    /// Takes `i` off the list, so it may be tried again.
    pub fn forget(&mut self, i: usize) {
        if let Some(pos) = self.list[..self.len].iter().position(|&x| x == i) {
            self.list.copy_within(pos + 1..self.len, pos);
            self.len -= 1;
        }
    }

    /// How many were tried.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether none was tried.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Route {
    /// The next backend for a client at `source`, skipping ejected and tried ones.
    pub fn choose(&self, source: IpAddr, tried: &Tried) -> Option<usize> {
        // Read once, and only if a backend was ever ejected.
        let now = std::cell::OnceCell::new();
        let input = PickInput {
            balance: self.balance,
            order: &self.picks,
            cursor: &self.carried.cursor,
            source,
            random: (fastrand::f64(), fastrand::f64()),
        };
        let out = |i: usize| {
            tried.contains(i)
                || self.backends[i]
                    .state
                    .outlier
                    .is_ejected_by(|| *now.get_or_init(now_ms))
        };
        pick(&input, &self.backends, out).or_else(|| {
            // Everything healthy is ejected or tried: ejection never leaves an
            // app with nothing, so fall back to an untried healthy backend.
            self.picks
                .healthy()
                .iter()
                .copied()
                .find(|&i| !tried.contains(i))
        })
    }

    /// Scores a success of backend `i`.
    pub fn success(&self, i: usize) {
        self.backends[i].state.outlier.success();
    }

    /// Scores a failure of backend `i` (connect failure, reset or 5xx).
    pub fn failure(&self, i: usize) {
        let b = &self.backends[i];
        self.backend_metrics(i).failures.increment(1);
        let now = now_ms();
        let ejected_now = self
            .picks
            .healthy()
            .iter()
            .filter(|&&j| self.backends[j].state.outlier.is_ejected(now))
            .count();
        let allowed = may_eject(ejected_now, self.picks.healthy().len());
        if b.state.outlier.failure(now, allowed, fastrand::f64()) {
            self.backend_metrics(i).ejections.increment(1);
            tracing::warn!(app = %self.app, backend = %b.label, task = %b.task, "backend ejected after consecutive failures");
        }
    }
}
