//! Cumulative Prometheus histograms: merged across nodes by summing bucket
//! counts (never by averaging percentiles), differenced over time with
//! counter resets handled, and read as quantiles the way Prometheus'
//! `histogram_quantile` does (linear interpolation inside a bucket). Pure.

/// A cumulative histogram: `(le, count of observations <= le)`, sorted by `le`,
/// the last bound `+Inf` when the source wrote one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets(pub Vec<(f64, f64)>);

impl Buckets {
    /// Builds from unsorted `(le, count)` pairs, dropping NaN bounds and counts.
    pub fn from_pairs(mut pairs: Vec<(f64, f64)>) -> Buckets {
        pairs.retain(|(le, n)| !le.is_nan() && n.is_finite() && *n >= 0.0);
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        pairs.dedup_by(|a, b| a.0 == b.0);
        Buckets(pairs)
    }

    /// Observations in total (the largest bound's count).
    pub fn count(&self) -> f64 {
        self.0.last().map_or(0.0, |(_, n)| *n)
    }

    /// The cumulative count at `le`: that of the largest bound not above it.
    fn at(&self, le: f64) -> f64 {
        self.0
            .iter()
            .take_while(|(b, _)| *b <= le)
            .last()
            .map_or(0.0, |(_, n)| *n)
    }

    /// Sums histograms bucket by bucket; differing bounds are merged on
    /// their union (a histogram without a bound counts what its next lower bound does).
    pub fn merge<'a>(all: impl IntoIterator<Item = &'a Buckets>) -> Buckets {
        let all: Vec<&Buckets> = all.into_iter().collect();
        let mut bounds: Vec<f64> = all
            .iter()
            .flat_map(|h| h.0.iter().map(|(le, _)| *le))
            .collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        Buckets(
            bounds
                .into_iter()
                .map(|le| (le, all.iter().map(|h| h.at(le)).sum()))
                .collect(),
        )
    }

    /// What was observed between `earlier` and `self`. A count that went
    /// down means the process restarted (a counter reset): everything in
    /// `self` is new, as Prometheus' `increase` assumes.
    pub fn since(&self, earlier: &Buckets) -> Buckets {
        let reset =
            self.0.iter().any(|(le, n)| *n < earlier.at(*le)) || self.count() < earlier.count();
        if reset {
            return self.clone();
        }
        Buckets(
            self.0
                .iter()
                .map(|(le, n)| (*le, (n - earlier.at(*le)).max(0.0)))
                .collect(),
        )
    }

    /// The `q` quantile (0..=1), `None` when nothing was observed. A rank
    /// that falls in the `+Inf` bucket answers the highest finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, n) in &self.0 {
            if n >= rank && n > 0.0 {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let in_bucket = n - lower.1;
                let start = if lower.0 > le { 0.0 } else { lower.0 };
                if in_bucket <= 0.0 {
                    return Some(le);
                }
                return Some(start + (le - start) * (rank - lower.1) / in_bucket);
            }
            lower = (le, n);
        }
        // Counts not monotonic (hostile input): the highest finite bound.
        self.0
            .iter()
            .rev()
            .map(|(le, _)| *le)
            .find(|le| le.is_finite())
    }
}

/// p50, p90 and p99 of one histogram.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl Percentiles {
    /// The three percentiles of `h`.
    pub fn of(h: &Buckets) -> Percentiles {
        Percentiles {
            p50: h.quantile(0.5),
            p90: h.quantile(0.9),
            p99: h.quantile(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const BOUNDS: [f64; 6] = [0.001, 0.01, 0.1, 1.0, 2.5, f64::INFINITY];

    /// A histogram from per-bucket (non-cumulative) counts over `BOUNDS`.
    fn h(per_bucket: [f64; 6]) -> Buckets {
        let mut cum = 0.0;
        Buckets(
            BOUNDS
                .iter()
                .zip(per_bucket)
                .map(|(le, n)| {
                    cum += n;
                    (*le, cum)
                })
                .collect(),
        )
    }

    #[test]
    fn merged_p99_is_not_the_average_of_per_node_p99s() {
        // Node A: 1000 fast requests; node B: 10 slow ones.
        let a = h([1000.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let b = h([0.0, 0.0, 0.0, 0.0, 10.0, 0.0]);
        let (pa, pb) = (a.quantile(0.99).unwrap(), b.quantile(0.99).unwrap());
        assert!(pa <= 0.001 && pb > 1.0, "{pa} {pb}");
        let averaged = (pa + pb) / 2.0;
        let merged = Buckets::merge([&a, &b]).quantile(0.99).unwrap();
        // 99% of 1010 requests is 999.9: inside node A's fast bucket.
        assert!(merged <= 0.001, "merged p99 {merged}");
        assert!(
            (averaged - merged).abs() > 1.0,
            "averaged {averaged} vs merged {merged}"
        );
    }

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        let x = h([0.0, 10.0, 10.0, 0.0, 0.0, 0.0]);
        // Rank 10 of 20 is the top of the (0.001, 0.01] bucket.
        assert!((x.quantile(0.5).unwrap() - 0.01).abs() < 1e-12);
        // Rank 15: halfway through (0.01, 0.1].
        assert!((x.quantile(0.75).unwrap() - 0.055).abs() < 1e-12);
        let p = Percentiles::of(&x);
        assert!(p.p50 <= p.p90 && p.p90 <= p.p99);
        assert_eq!(Buckets::default().quantile(0.5), None);
        assert_eq!(h([0.0; 6]).quantile(0.99), None);
        // Everything beyond the last finite bound: that bound.
        assert_eq!(h([0.0, 0.0, 0.0, 0.0, 0.0, 5.0]).quantile(0.5), Some(2.5));
        assert_eq!(x.quantile(1.5), None);
    }

    #[test]
    fn merging_unions_differing_bounds() {
        let a = Buckets(vec![(0.1, 1.0), (f64::INFINITY, 2.0)]);
        let b = Buckets(vec![(0.05, 3.0), (0.1, 3.0), (f64::INFINITY, 3.0)]);
        let m = Buckets::merge([&a, &b]);
        assert_eq!(m.0, vec![(0.05, 3.0), (0.1, 4.0), (f64::INFINITY, 5.0)]);
    }

    #[test]
    fn a_counter_reset_counts_everything_after_it() {
        let before = h([100.0, 50.0, 0.0, 0.0, 0.0, 0.0]);
        let later = h([110.0, 55.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(later.since(&before), h([10.0, 5.0, 1.0, 0.0, 0.0, 0.0]));
        // meshd restarted: its histogram starts again from zero.
        let restarted = h([3.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(restarted.since(&later), restarted);
    }

    proptest::proptest! {
        #[test]
        fn merging_adds_counts_and_quantiles_rise_with_q(
            nodes in proptest::collection::vec(proptest::array::uniform6(0u32..1000), 1..6)
        ) {
            let hs: Vec<Buckets> = nodes.iter().map(|n| h(n.map(f64::from))).collect();
            let merged = Buckets::merge(&hs);
            let total: f64 = hs.iter().map(Buckets::count).sum();
            proptest::prop_assert_eq!(merged.count(), total);
            // Merging is order-free.
            let mut rev = hs.clone();
            rev.reverse();
            proptest::prop_assert_eq!(&Buckets::merge(&rev), &merged);
            let mut last = 0.0;
            for q in [0.0, 0.1, 0.5, 0.9, 0.99, 1.0] {
                match merged.quantile(q) {
                    None => proptest::prop_assert_eq!(total, 0.0),
                    Some(v) => {
                        proptest::prop_assert!(v >= last && v <= 2.5, "q {} -> {}", q, v);
                        last = v;
                    }
                }
            }
        }
    }

    #[test]
    fn hostile_buckets_never_panic() {
        let weird = Buckets::from_pairs(vec![
            (f64::NAN, 1.0),
            (1.0, 5.0),
            (0.5, 9.0),
            (2.0, f64::NAN),
            (f64::INFINITY, 1.0),
        ]);
        for q in [0.0, 0.5, 0.99, 1.0] {
            let _ = weird.quantile(q);
        }
        let _ = weird.since(&h([1.0; 6]));
    }
}
