//! Weighted round robin: the pick order lists each healthy backend `weight`
//! times, interleaved, and a shared cursor walks it.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The pick order of one service, built at reload: indices into its backends.
#[derive(Debug, Default, Clone)]
pub struct PickOrder {
    order: Vec<usize>,
    distinct: Vec<usize>,
}

impl PickOrder {
    /// Every eligible `(index, weight)` backend `weight` times, interleaved so
    /// heavy backends do not come in runs.
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
        PickOrder {
            order,
            distinct: eligible.iter().map(|&(i, _)| i).collect(),
        }
    }

    /// Whether no backend is healthy.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The healthy backends, each once.
    pub fn healthy(&self) -> &[usize] {
        &self.distinct
    }

    /// Where the cursor says to start this time.
    pub fn start(&self, cursor: &AtomicUsize) -> usize {
        match self.order.len() {
            0 => 0,
            len => cursor.fetch_add(1, Ordering::Relaxed) % len,
        }
    }
}

/// The next backend in turn that is not `out`.
pub fn pick(
    order: &PickOrder,
    cursor: &AtomicUsize,
    out: &impl Fn(usize) -> bool,
) -> Option<usize> {
    let len = order.order.len();
    let start = order.start(cursor);
    (0..len)
        .map(|k| order.order[(start + k) % len])
        .find(|&i| !out(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visits_each_backend_in_turn() {
        let order = PickOrder::weighted(&[(0, 1), (1, 1), (2, 1)]);
        let cursor = AtomicUsize::new(0);
        let picks: Vec<usize> = (0..6)
            .map(|_| pick(&order, &cursor, &|_| false).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weights_share_picks_and_ejected_backends_are_skipped() {
        let order = PickOrder::weighted(&[(0, 3), (1, 1)]);
        let cursor = AtomicUsize::new(0);
        let picks: Vec<usize> = (0..8)
            .map(|_| pick(&order, &cursor, &|_| false).unwrap())
            .collect();
        assert_eq!(picks.iter().filter(|&&b| b == 0).count(), 6);
        assert!((0..8).all(|_| pick(&order, &cursor, &|i| i == 0) == Some(1)));
        assert_eq!(pick(&order, &cursor, &|_| true), None);
    }

    #[test]
    fn no_healthy_backend_means_no_pick() {
        let order = PickOrder::weighted(&[]);
        assert!(order.is_empty());
        assert_eq!(pick(&order, &AtomicUsize::new(0), &|_| false), None);
    }
}
