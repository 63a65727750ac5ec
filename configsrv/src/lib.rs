//! configsrv: turns Marathon's and Mesos' view of the cluster plus the policy
//! files into one NodeConfig per node.
//!
//! Flow, one way: `sources` (Marathon, Mesos, policy dir, offline snapshots)
//! -> `state` (ClusterState) -> `render` (pure) -> `publish` (number, write).
//! `reconcile` is the state machine that drives state, render and publish.
//! `serve` wiring lives in `app`, its HTTP API in `api`; `cli` and `main`
//! sit at the edge; `error` holds the typed errors.

pub mod api;
pub mod app;
pub mod autoscale;
pub mod cli;
pub mod ensure_meshd;
pub mod error;
pub mod followers;
pub mod impact_client;
pub mod observe;
pub mod publish;
pub mod reconcile;
pub mod render;
pub mod sources;
pub mod state;
pub mod ui;
