//! One backend's live state: load figures for balancing, passive health,
//! and its pool of idle HTTP/1.1 connections. Carried across reloads by
//! (task, address), so a swap loses neither health nor warm connections.

use crate::balance::p2c_ewma::update_ewma;
use crate::health::Outlier;
use crate::proxy::upstream::Conn;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

/// Idle upstream connections kept per backend; more are closed when returned.
pub const MAX_IDLE: usize = 1024;
/// Time constant of the latency average, in milliseconds.
pub const EWMA_TAU_MS: u64 = 10_000;

/// State of one backend that outlives a reload.
#[derive(Debug, Default)]
pub struct BackendState {
    in_flight: AtomicU32,
    latency_ns: AtomicU64,
    latency_at_ms: AtomicU64,
    /// Passive health.
    pub outlier: Outlier,
    idle: Mutex<Vec<Conn>>,
    /// This backend's counters, registered at its first use
    /// (`Route::backend_metrics`), once for the life of the backend.
    pub metrics: OnceLock<crate::metrics::BackendMetrics>,
}

impl BackendState {
    /// Requests (or TCP connections) in flight now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Latency average in nanoseconds; 0 until measured.
    pub fn latency_ns(&self) -> u64 {
        self.latency_ns.load(Ordering::Relaxed)
    }

    /// Marks one more request in flight until the guard drops.
    pub fn begin(self: &std::sync::Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(std::sync::Arc::clone(self))
    }

    /// Folds a time-to-first-byte sample into the latency average.
    pub fn observe_latency(&self, sample_ns: u64, now_ms: u64) {
        let last = self.latency_at_ms.swap(now_ms, Ordering::Relaxed);
        let old = self.latency_ns.load(Ordering::Relaxed);
        let new = update_ewma(old, sample_ns, now_ms.saturating_sub(last), EWMA_TAU_MS);
        self.latency_ns.store(new, Ordering::Relaxed);
    }

    /// An idle connection, most recently used first; closed ones are dropped.
    pub fn take_idle(&self) -> Option<Conn> {
        loop {
            let conn = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()?;
            if conn.is_usable() {
                return Some(conn);
            }
        }
    }

    /// Returns a connection whose last response was read to the end.
    pub fn put_idle(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// Idle connections now.
    pub fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Counts a request in flight while it lives.
#[derive(Debug)]
pub struct InFlight(std::sync::Arc<BackendState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
