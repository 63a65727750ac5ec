//! Power of two choices over a peak-EWMA of time to first byte: draw two
//! healthy backends at random and take the one with the lower
//! latency x (in-flight + 1) / weight. Unmeasured backends score 0, so new
//! tasks get tried at once.

use super::{PickOrder, Pickable};

fn score<B: Pickable>(b: &B) -> f64 {
    let latency = b.latency_ns() as f64;
    latency * (f64::from(b.in_flight()) + 1.0) / f64::from(b.weight().max(1))
}

/// The better of two random eligible backends.
pub fn pick<B: Pickable>(
    order: &PickOrder,
    backends: &[B],
    random: (f64, f64),
    out: &impl Fn(usize) -> bool,
) -> Option<usize> {
    let healthy = order.healthy();
    let n = healthy.len();
    if n == 0 {
        return None;
    }
    let draw = |r: f64| ((r.clamp(0.0, 0.999_999) * n as f64) as usize).min(n - 1);
    let first = draw(random.0);
    // The second draw skips the first, so the two choices differ.
    let second = if n > 1 {
        (first + 1 + draw(random.1) % (n - 1)) % n
    } else {
        first
    };
    let (a, b) = (healthy[first], healthy[second]);
    match (out(a), out(b)) {
        (false, false) => Some(if score(&backends[b]) < score(&backends[a]) {
            b
        } else {
            a
        }),
        (false, true) => Some(a),
        (true, false) => Some(b),
        // Both drawn are out: fall back to the best eligible one.
        (true, true) => healthy
            .iter()
            .copied()
            .filter(|&i| !out(i))
            .min_by(|&x, &y| score(&backends[x]).total_cmp(&score(&backends[y]))),
    }
}

/// Folds one latency sample into a peak-EWMA: a slower sample counts at
/// once, faster ones decay the average over `tau_ms`.
pub fn update_ewma(old_ns: u64, sample_ns: u64, elapsed_ms: u64, tau_ms: u64) -> u64 {
    if old_ns == 0 || sample_ns >= old_ns {
        return sample_ns.max(1);
    }
    let w = (-(elapsed_ms as f64) / tau_ms.max(1) as f64).exp();
    ((old_ns as f64) * w + (sample_ns as f64) * (1.0 - w)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::Fake;

    /// A seeded xorshift, so the test is repeatable.
    fn rng(state: &mut u64) -> f64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn a_backend_ten_times_slower_gets_under_ten_percent() {
        // Five backends, one 10x slower; requests take time, so in-flight
        // counts and the EWMA both move as the simulation runs.
        let mut bs: Vec<Fake> = (0..5).map(Fake::new).collect();
        let service_ms = [1u64, 1, 1, 1, 10];
        let order = PickOrder::weighted(&(0..5).map(|i| (i, 1)).collect::<Vec<_>>());
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut ends: Vec<(u64, usize)> = Vec::new();
        let mut counts = [0usize; 5];
        for now in 0..20_000u64 {
            // One request arrives every 0.25 ms (4 per ms of simulated time).
            let t = now / 4;
            ends.retain(|&(end, i)| {
                if end <= t {
                    bs[i].in_flight -= 1;
                    false
                } else {
                    true
                }
            });
            let i = pick(&order, &bs, (rng(&mut seed), rng(&mut seed)), &|_| false).unwrap();
            counts[i] += 1;
            bs[i].in_flight += 1;
            bs[i].latency_ns = update_ewma(bs[i].latency_ns, service_ms[i] * 1_000_000, 1, 100);
            ends.push((t + service_ms[i], i));
        }
        let slow_share = counts[4] as f64 / counts.iter().sum::<usize>() as f64;
        assert!(
            slow_share < 0.10,
            "slow backend got {slow_share:.3} of requests: {counts:?}"
        );
        assert!(counts[4] > 0, "the slow backend still gets probed");
    }

    #[test]
    fn ejected_choices_fall_back_to_an_eligible_backend() {
        let bs = vec![Fake::new(0), Fake::new(1), Fake::new(2)];
        let order = PickOrder::weighted(&[(0, 1), (1, 1), (2, 1)]);
        for r in [0.0, 0.4, 0.9] {
            assert_eq!(pick(&order, &bs, (r, r), &|i| i != 2), Some(2));
        }
        assert_eq!(pick(&order, &bs, (0.1, 0.2), &|_| true), None);
    }

    #[test]
    fn peak_ewma_takes_slow_samples_at_once_and_decays_fast_ones() {
        assert_eq!(update_ewma(0, 500, 0, 1000), 500);
        assert_eq!(update_ewma(100, 500, 0, 1000), 500);
        let decayed = update_ewma(1000, 100, 1000, 1000);
        assert!(decayed < 1000 && decayed > 100, "{decayed}");
    }
}
