//! meshd's typed errors: why a reload was refused.

use schemas::{ConfigError, Generation, NodeName, RedactedUrl};
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
    /// A generation further ahead of this node's clock than configsrv,
    /// which numbers generations by its clock in milliseconds, could have made.
    #[error("{file}: generation {found} is further ahead of this node's clock than configsrv could have made (at most {ceiling}: now in ms since 1970 plus a day for clock skew); ignored, so it cannot pin this node")]
    TooFarAhead {
        /// The file.
        file: String,
        /// The file's generation.
        found: u64,
        /// The highest generation accepted now.
        ceiling: u64,
    },
    /// configsrv served a body over `--config-max-bytes`.
    #[error(
        "{url}: the config is larger than the limit of {limit} bytes (--config-max-bytes); refused"
    )]
    TooLarge {
        /// The URL, without credentials.
        url: RedactedUrl,
        /// The limit in bytes.
        limit: u64,
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
