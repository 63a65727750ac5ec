//! The directory sink: `<out>/<node>.yaml`, written atomically (temp file in
//! the same directory, fsync, rename, fsync the directory) and only when the
//! content changed, so meshd sees whole files and only real changes. One
//! node's failed write never keeps the others from being written.

use super::{assign_generation, Previous};
use crate::error::PublishError;
use schemas::node_config::NodeParts;
use schemas::{Generation, NodeName, Revision};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One node's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The node.
    pub node: NodeName,
    /// Its file.
    pub path: PathBuf,
    /// The generation the file now carries.
    pub generation: Generation,
    /// Whether the file was (re)written.
    pub changed: bool,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What `publish_dir` did: the nodes written (or unchanged), and the nodes
/// whose write failed, each with the config it should have written.
#[derive(Debug, Default)]
pub struct DirOutcome {
    /// Nodes whose file now holds their config.
    pub published: Vec<(Published, NodeParts)>,
    /// Nodes whose write failed; their configs, numbered, for other sinks.
    pub failed: Vec<(NodeParts, PublishError)>,
}

/// Reads what an earlier run wrote, leniently: a damaged file still tells its
/// generation, so the next one is higher and meshd accepts it.
pub fn read_previous(path: &Path) -> Option<Previous> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: yaml_serde::Value = yaml_serde::from_str(&text).ok()?;
    let generation = Generation(value.get("generation")?.as_u64()?);
    let revision = Revision(
        value
            .get("revision")
            .and_then(|r| r.as_str())
            .unwrap_or("")
            .to_owned(),
    );
    Some(Previous {
        generation,
        revision,
    })
}

/// Writes `bytes` to `path` atomically (`schemas::write_atomic`, shared with meshd).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    schemas::write_atomic(path, bytes).map_err(|error| PublishError::Io {
        path: path.to_owned(),
        error,
    })
}

/// Numbers and writes every node's config into `dir`, each file from the
/// shared parts (never 100 copies of the services at once). Every config is
/// checked against the NodeConfig rules first, so a renderer bug writes
/// nothing. A write that fails is reported in the outcome and the next node
/// is written all the same.
pub fn publish_dir(
    dir: &Path,
    nodes: BTreeMap<NodeName, NodeParts>,
    floor: Generation,
) -> Result<DirOutcome, PublishError> {
    std::fs::create_dir_all(dir).map_err(|error| PublishError::Io {
        path: dir.to_owned(),
        error,
    })?;
    check(&nodes)?;
    let mut ready = Vec::new();
    for (node, mut config) in nodes {
        let path = dir.join(node.file_name());
        let previous = read_previous(&path);
        // A file that exists but cannot be read (corrupted, edited by hand)
        // hides the generation its meshd runs: start above anything counted
        // so far, from the clock, so the node converges again.
        let floor = match (&previous, path.exists()) {
            (None, true) => floor.max(Generation(unix_ms())),
            _ => floor,
        };
        let changed = assign_generation(previous.as_ref(), &mut config.head, floor);
        ready.push((node, path, changed, config));
    }
    let mut outcome = DirOutcome::default();
    for (node, path, changed, config) in ready {
        if changed {
            let written = schemas::write_atomic_parts(&path, &config.segments());
            if let Err(error) = written {
                outcome
                    .failed
                    .push((config, PublishError::Io { path, error }));
                continue;
            }
        }
        outcome.published.push((
            Published {
                node,
                path,
                generation: config.head.generation,
                changed,
            },
            config,
        ));
    }
    Ok(outcome)
}

/// The NodeConfig rules on every node: the shared parts once (every node
/// of a render shares them), each node's own identities on their own.
pub fn check(nodes: &BTreeMap<NodeName, NodeParts>) -> Result<(), PublishError> {
    let mut checked: Vec<&std::sync::Arc<schemas::node_config::Shared>> = Vec::new();
    for (node, parts) in nodes {
        let mut problems = Vec::new();
        if !checked
            .iter()
            .any(|s| std::sync::Arc::ptr_eq(s, &parts.shared))
        {
            checked.push(&parts.shared);
            problems = parts.shared.problems();
        }
        problems.extend(parts.problems());
        problems.extend(schemas::node_config::problems(&parts.head));
        if !problems.is_empty() {
            return Err(PublishError::Invalid {
                node: node.to_string(),
                message: problems.join("; "),
            });
        }
    }
    Ok(())
}
