//! meshd, palisade's node proxy.
//!
//! Reload path: `config::file` (watch) -> `config::load` (validate, newer?)
//! -> `swap` (Snapshot::compile, atomic store) -> `listen` (bind new, drain
//! removed). Connection path: `listen` -> `serve` -> `identity` -> `authz`
//! -> `balance` -> `proxy`. `admin` and `metrics` report; `app` wires it all.

pub mod admin;
pub mod app;
pub mod authz;
pub mod balance;
pub mod cli;
pub mod config;
pub mod error;
pub mod identity;
pub mod listen;
pub mod metrics;
pub mod proxy;
pub mod serve;
pub mod snapshot;
pub mod swap;
