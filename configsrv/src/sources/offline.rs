//! Offline input for `configsrv render`: snapshot files of Marathon's and
//! Mesos' responses, read whole before anything is rendered.

use super::{marathon, mesos};
use crate::error::{AppError, SourceError};
use crate::state::ClusterState;
use std::path::Path;

/// Reads a file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>, SourceError> {
    std::fs::read(path).map_err(|error| SourceError::Io {
        path: path.to_owned(),
        error,
    })
}

/// Builds the cluster state from a Marathon snapshot and, optionally, a Mesos one.
pub fn load_snapshot(
    marathon_file: &Path,
    mesos_file: Option<&Path>,
) -> Result<(ClusterState, Vec<AppError>), SourceError> {
    let body = read_file(marathon_file)?;
    let (apps, app_errors) = marathon::parse_apps(&marathon_file.display().to_string(), &body)?;
    let agents = match mesos_file {
        Some(path) => mesos::parse_agents(&path.display().to_string(), &read_file(path)?)?,
        None => Vec::new(),
    };
    Ok((ClusterState::new(apps, agents), app_errors))
}
