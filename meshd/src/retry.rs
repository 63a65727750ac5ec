//! The retry budget of one service: every request deposits a fifth of a
//! retry, every retry withdraws one, with a small reserve to start from, so
//! retries stay near 20% of requests and never multiply an outage.

use std::sync::atomic::{AtomicI64, Ordering};

/// Units per retry; a request deposits one unit.
const RETRY_COST: i64 = 5;
/// The balance a new service starts with: ten retries.
const RESERVE: i64 = 10 * RETRY_COST;
/// The most a quiet period can save up: a hundred retries.
const CAP: i64 = 100 * RETRY_COST;

/// A lock-free token bucket of retries.
#[derive(Debug)]
pub struct RetryBudget {
    balance: AtomicI64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            balance: AtomicI64::new(RESERVE),
        }
    }
}

impl RetryBudget {
    /// Records one request.
    pub fn deposit(&self) {
        // A relaxed check first keeps the hot path to one load when full.
        if self.balance.load(Ordering::Relaxed) < CAP {
            self.balance.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes one retry if the budget allows it.
    pub fn withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= RETRY_COST).then_some(b - RETRY_COST)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_limited_to_a_fifth_of_requests_after_the_reserve() {
        let b = RetryBudget::default();
        let mut allowed = 0;
        for _ in 0..1000 {
            b.deposit();
            if b.withdraw() {
                allowed += 1;
            }
        }
        // 10 from the reserve + 1000 / 5 from deposits.
        assert_eq!(allowed, 210);
        assert!(!b.withdraw());
    }
}
