//! Backend health as meshd sees it: Marathon's verdict (from the node
//! config) gates new work; passive outlier detection ejects a backend after
//! consecutive failures, for a jittered, capped, growing time, and never
//! more than half of an app's backends. Kept across reloads by task and
//! address. Pure: callers pass `now` (milliseconds on meshd's clock).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Consecutive connect failures or 5xx answers that eject a backend.
pub const EJECT_AFTER: u32 = 5;
/// First ejection lasts about this long; each further one doubles it.
pub const BASE_EJECTION_MS: u64 = 1_000;
/// No ejection lasts longer than this.
pub const MAX_EJECTION_MS: u64 = 30_000;

/// Passive health of one backend.
#[derive(Debug, Default)]
pub struct Outlier {
    consecutive_failures: AtomicU32,
    ejected_until_ms: AtomicU64,
    ejections: AtomicU32,
}

impl Outlier {
    /// Whether the backend is ejected at `now_ms`.
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// `is_ejected`, asking `now_ms` for the time only for a backend that
    /// was ever ejected: most never are, and a clock read is a request's
    /// cost on the hot path.
    pub fn is_ejected_by(&self, now_ms: impl FnOnce() -> u64) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && until > now_ms()
    }

    /// Records a success: the failure streak ends.
    pub fn success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failure; returns true when the backend should now be
    /// ejected. `may_eject` is false when half the app is already out.
    pub fn failure(&self, now_ms: u64, may_eject: bool, jitter: f64) -> bool {
        let streak = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < EJECT_AFTER || !may_eject || self.is_ejected(now_ms) {
            return false;
        }
        let n = self.ejections.fetch_add(1, Ordering::Relaxed).min(5);
        let base = (BASE_EJECTION_MS << n).min(MAX_EJECTION_MS);
        // Jitter in [0.5, 1.0] of the base, so ejected backends do not all return at once.
        let ms = ((base as f64) * (0.5 + 0.5 * jitter.clamp(0.0, 1.0))) as u64;
        self.ejected_until_ms
            .store(now_ms + ms.max(1), Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        true
    }

    /// When the current ejection ends (0 when none).
    pub fn ejected_until_ms(&self) -> u64 {
        self.ejected_until_ms.load(Ordering::Relaxed)
    }
}

/// Whether one more backend of an app may be ejected: at most half may be out.
pub fn may_eject(ejected_now: usize, total: usize) -> bool {
    (ejected_now + 1) * 2 <= total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejects_after_consecutive_failures_only() {
        let o = Outlier::default();
        for _ in 0..EJECT_AFTER - 1 {
            assert!(!o.failure(0, true, 1.0));
        }
        o.success();
        for _ in 0..EJECT_AFTER - 1 {
            assert!(!o.failure(0, true, 1.0));
        }
        assert!(o.failure(0, true, 1.0));
        assert!(o.is_ejected(BASE_EJECTION_MS - 1));
        assert!(!o.is_ejected(BASE_EJECTION_MS));
    }

    #[test]
    fn the_clock_is_read_only_for_a_backend_once_ejected() {
        let o = Outlier::default();
        assert!(!o.is_ejected_by(|| panic!("never ejected: no clock read")));
        for _ in 0..EJECT_AFTER {
            o.failure(10, true, 1.0);
        }
        assert!(o.is_ejected_by(|| 10 + BASE_EJECTION_MS - 1));
        assert!(!o.is_ejected_by(|| 10 + BASE_EJECTION_MS));
    }

    #[test]
    fn ejection_grows_is_capped_and_jittered() {
        let o = Outlier::default();
        let mut lengths = Vec::new();
        let mut now = 0;
        for _ in 0..8 {
            for _ in 0..EJECT_AFTER {
                o.failure(now, true, 1.0);
            }
            lengths.push(o.ejected_until_ms() - now);
            now = o.ejected_until_ms();
        }
        assert_eq!(&lengths[..3], &[1_000, 2_000, 4_000]);
        assert!(lengths.iter().all(|&l| l <= MAX_EJECTION_MS));
        let j = Outlier::default();
        for _ in 0..EJECT_AFTER {
            j.failure(0, true, 0.0);
        }
        assert_eq!(j.ejected_until_ms(), BASE_EJECTION_MS / 2);
    }

    #[test]
    fn never_more_than_half_of_an_app_is_ejected() {
        assert!(may_eject(0, 2));
        assert!(!may_eject(1, 2));
        assert!(!may_eject(0, 1));
        assert!(may_eject(1, 4));
        assert!(!may_eject(2, 4));
        let o = Outlier::default();
        for _ in 0..EJECT_AFTER * 2 {
            assert!(!o.failure(0, false, 1.0));
        }
        assert!(!o.is_ejected(0));
    }
}
