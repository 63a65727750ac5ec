//! End-to-end test support: real meshd and configsrv processes on
//! 127.0.0.x, real backends and clients bound to task addresses.
//!
//! `harness` spawns the binaries behind kill-on-drop guards; `backends`
//! serves TCP and HTTP on task addresses; `client` poses as an app's task;
//! `cluster` writes Marathon snapshots, policies and node configs;
//! `marathon_sim` is a live Marathon for configsrv to follow;
//! `config_server` stands in for configsrv's node config endpoint;
//! `h2raw` speaks HTTP/2 frame by frame, to a `raw_backend` that keeps
//! every byte.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support fails loudly by design

pub mod backends;
pub mod browser;
pub mod certs;
pub mod client;
pub mod cluster;
pub mod config_server;
pub mod h2raw;
pub mod harness;
pub mod marathon_sim;
pub mod raw_backend;
pub mod recorder;
