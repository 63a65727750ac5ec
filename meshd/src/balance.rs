//! Backend selection. Round robin over the healthy backends, weighted by
//! repeating each backend `weight` times in the pick order built at reload.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The pick order of one service, built at reload: indices into its backends.
#[derive(Debug, Default, Clone)]
pub struct PickOrder {
    order: Vec<usize>,
}

impl PickOrder {
    /// Every eligible backend `weight` times, interleaved so heavy backends do not come in runs.
    pub fn weighted(eligible: &[(usize, u32)]) -> PickOrder {
        let max = eligible.iter().map(|&(_, w)| w).max().unwrap_or(0);
        let mut order = Vec::new();
        for round in 0..max {
            order.extend(
                eligible
                    .iter()
                    .filter(|&&(_, w)| w > round)
                    .map(|&(i, _)| i),
            );
        }
        PickOrder { order }
    }

    /// Whether no backend can take work.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Backends to try for one connection: the next in turn first, then the
    /// others once each, so a failed connect moves on to another backend.
    pub fn attempts(&self, cursor: &AtomicUsize) -> impl Iterator<Item = usize> + '_ {
        let len = self.order.len();
        let start = if len == 0 {
            0
        } else {
            cursor.fetch_add(1, Ordering::Relaxed) % len
        };
        let mut seen = Vec::with_capacity(len.min(8));
        (0..len).filter_map(move |k| {
            let b = self.order[(start + k) % len];
            if seen.contains(&b) {
                None
            } else {
                seen.push(b);
                Some(b)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_visits_each_backend_in_turn() {
        let order = PickOrder::weighted(&[(0, 1), (1, 1), (2, 1)]);
        let cursor = AtomicUsize::new(0);
        let firsts: Vec<usize> = (0..6)
            .map(|_| order.attempts(&cursor).next().unwrap())
            .collect();
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weights_share_picks_and_attempts_try_every_backend_once() {
        let order = PickOrder::weighted(&[(0, 3), (1, 1)]);
        let cursor = AtomicUsize::new(0);
        let firsts: Vec<usize> = (0..8)
            .map(|_| order.attempts(&cursor).next().unwrap())
            .collect();
        assert_eq!(firsts.iter().filter(|&&b| b == 0).count(), 6);
        let all: Vec<usize> = order.attempts(&cursor).collect();
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn no_eligible_backend_means_no_attempt() {
        let order = PickOrder::weighted(&[]);
        assert!(order.is_empty());
        assert_eq!(order.attempts(&AtomicUsize::new(0)).count(), 0);
    }
}
