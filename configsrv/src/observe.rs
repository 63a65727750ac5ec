//! The collector: configsrv scrapes every meshd's admin endpoint into a
//! bounded window and reads it as per-app, per-flow and per-node figures.
//!
//! `scrape` (I/O) -> `prom_text` (parse) -> `sample` (reduce) -> `window`
//! (bounded history) -> `figures`, `coverage`, `impact` (pure answers, in
//! the `shapes` the API serves).
//! `histogram` merges and reads bucket counts.

pub mod coverage;
pub mod figures;
pub mod histogram;
pub mod impact;
pub mod prom_text;
pub mod sample;
pub mod scrape;
pub mod shapes;
pub mod window;

use std::sync::{Arc, Mutex};

/// The window the collector writes and the API reads.
pub type Observed = Arc<Mutex<window::Window>>;

/// A copy of the window taken under its lock (points are shared, so this is
/// cheap), so figures are computed without holding up the collector.
pub fn snapshot(observed: &Observed) -> window::Window {
    observed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// A counter as the API shows it, a whole number (NaN and negatives are 0).
pub fn whole(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}
