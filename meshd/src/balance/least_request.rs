//! Least request: the backend with the fewest requests in flight per unit of
//! weight; ties go round robin so equal backends share the work.

use super::{PickOrder, Pickable};
use std::sync::atomic::AtomicUsize;

/// The least loaded backend that is not `out`.
pub fn pick<B: Pickable>(
    order: &PickOrder,
    cursor: &AtomicUsize,
    backends: &[B],
    out: &impl Fn(usize) -> bool,
) -> Option<usize> {
    let healthy = order.healthy();
    let n = healthy.len();
    let start = if n == 0 { 0 } else { order.start(cursor) % n };
    let mut best: Option<(u64, usize)> = None;
    for k in 0..n {
        let i = healthy[(start + k) % n];
        if out(i) {
            continue;
        }
        let b = &backends[i];
        // Compare in_flight/weight without division: scale by the other weights' product.
        let load = (u64::from(b.in_flight()) + 1) * 1_000_000 / u64::from(b.weight().max(1));
        if best.is_none_or(|(l, _)| load < l) {
            best = Some((load, i));
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::Fake;

    #[test]
    fn picks_the_backend_with_fewest_in_flight() {
        let mut bs = vec![Fake::new(0), Fake::new(1), Fake::new(2)];
        bs[0].in_flight = 5;
        bs[1].in_flight = 1;
        bs[2].in_flight = 3;
        let order = PickOrder::weighted(&[(0, 1), (1, 1), (2, 1)]);
        let c = AtomicUsize::new(0);
        assert_eq!(pick(&order, &c, &bs, &|_| false), Some(1));
        assert_eq!(pick(&order, &c, &bs, &|i| i == 1), Some(2));
    }

    #[test]
    fn equal_load_is_shared_and_weight_counts() {
        let bs = vec![Fake::new(0), Fake::new(1)];
        let order = PickOrder::weighted(&[(0, 1), (1, 1)]);
        let c = AtomicUsize::new(0);
        let picks: Vec<_> = (0..4)
            .map(|_| pick(&order, &c, &bs, &|_| false).unwrap())
            .collect();
        assert!(picks.contains(&0) && picks.contains(&1), "{picks:?}");
        let mut heavy = vec![Fake::new(0), Fake::new(1)];
        heavy[0].weight = 4;
        heavy[0].in_flight = 2;
        heavy[1].in_flight = 1;
        assert_eq!(pick(&order, &c, &heavy, &|_| false), Some(0));
    }
}
