//! meshd's typed errors: why a reload was refused.

use schemas::{ConfigError, Generation, NodeName};
use std::path::PathBuf;

/// A node config that was not applied; the running one stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file does not parse or validate.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ConfigError>),
    /// The file names another node.
    #[error("{file}: the file is for node {found}, this meshd serves {expected}")]
    WrongNode {
        /// The file.
        file: String,
        /// `--node`.
        expected: NodeName,
        /// The file's `node`.
        found: NodeName,
    },
    /// The file is not newer than what runs; replaying an old file changes nothing.
    #[error(
        "{file}: generation {found} is not newer than the running generation {running}; ignored"
    )]
    NotNewer {
        /// The file.
        file: String,
        /// The file's generation.
        found: u64,
        /// The running generation.
        running: u64,
    },
}

impl ReloadError {
    /// A not-newer error from generations.
    pub fn not_newer(file: &str, found: Generation, running: Generation) -> ReloadError {
        ReloadError::NotNewer {
            file: file.to_owned(),
            found: found.0,
            running: running.0,
        }
    }
}
