//! Where configsrv's inputs come from: Marathon, Mesos, the policy directory,
//! and offline snapshot files of the first two.

pub mod marathon;
pub mod mesos;
pub mod offline;
pub mod policy_dir;
pub mod policy_git;

use crate::error::{AppError, SourceError};
use crate::state::{Agent, App};

/// Everything the sources tell the state loop.
#[derive(Debug)]
pub enum SourceEvent {
    /// A full read of Marathon's apps, or why it failed.
    MarathonApps(Result<(Vec<App>, Vec<AppError>), SourceError>),
    /// One event from Marathon's stream.
    MarathonEvent(marathon::events::Event),
    /// The event stream opened (its URL) or broke.
    MarathonStream(Result<String, SourceError>),
    /// A read of Mesos' agents.
    MesosAgents(Result<Vec<Agent>, SourceError>),
    /// The policy directory, read again: what parsed, and what did not.
    Policies(schemas::policy::Lenient),
    /// A new commit of the policy repository, validated, or why it was refused.
    PolicyCommit(Result<schemas::PolicySet, String>),
}
