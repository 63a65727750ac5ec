//! The autoscaler: scales Marathon apps on what the mesh measures.
//!
//! `measure` (the collector's window -> one figure, or stale) -> `decide`
//! (pure: figure, policy, Marathon's count, Mesos' room, last actions ->
//! verdict) -> `run` (the actor: `marathon` reads and `PUT`s, `capacity`
//! reads Mesos' free resources) -> `log` (the decisions the API and UI show).
//! Only `configsrv serve --autoscale` runs the actor.

pub mod capacity;
pub mod decide;
pub mod log;
pub mod marathon;
pub mod measure;
pub mod run;
