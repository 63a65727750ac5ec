//! configsrv's command line: `render` and `validate`, typed at once.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// palisade's config server: Marathon + Mesos + policy files -> one YAML config per node.
#[derive(Debug, Parser)]
#[command(name = "configsrv", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// configsrv's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render node configs once, offline, from snapshot files.
    ///
    /// Writes OUT/<node>.yaml for every node (every task host, and every
    /// active Mesos agent). A file is rewritten, with a higher generation,
    /// only when its content changed. On bad input nothing is written and
    /// the exit code is 1; problems with single apps are printed as warnings
    /// and those apps are left out.
    Render {
        /// JSON of Marathon's `GET /v2/apps?embed=apps.tasks`.
        #[arg(long, value_name = "FILE")]
        marathon_snapshot: PathBuf,
        /// JSON of Mesos' `GET /master/state`; gives agents with no tasks a file too.
        #[arg(long, value_name = "FILE")]
        mesos_snapshot: Option<PathBuf>,
        /// Directory of policy files (`*.yaml`, searched recursively; hidden entries skipped).
        #[arg(long, value_name = "DIR")]
        policies: PathBuf,
        /// Where node files go (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Check every policy file in DIR; print `file:line:col: message` per problem.
    ///
    /// Exit 0 when clean, 1 when not: made for CI on the policy repository.
    Validate {
        /// The policy directory.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}
