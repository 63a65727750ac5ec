//! meshd, palisade's node proxy.
//!
//! Reload path: `config::file` (watch) -> `config::load` (validate, newer?)
//! -> `swap` (Snapshot::compile, atomic store) -> `listen` (bind new, drain
//! removed). Connection path: `listen` -> `serve` -> `identity` -> `authz`
//! -> `select` (`balance`, `health`) -> `proxy` (`tcp`, `http`); UDP ports:
//! `udp::listen` (batch, sessions) with the same `authz` and `select`. `admin` and `metrics` report; `app` wires it all.

pub mod access_log;
pub mod admin;
pub mod app;
pub mod authz;
pub mod backend;
pub mod balance;
pub mod cli;
pub mod config;
pub mod error;
pub mod health;
pub mod identity;
pub mod judge;
pub mod listen;
pub mod metrics;
pub mod proxy;
pub mod retry;
pub mod select;
pub mod serve;
pub mod snapshot;
pub mod swap;
pub mod timeouts;
pub mod tls;
pub mod udp;
pub mod wake_queue;
