//! Every problem of one policy file, not only the first: serde stops at the
//! first bad node, so the file is read into a YAML value, and each time
//! deserializing fails the failing node is reported and pruned, and the rest
//! is tried again. A misspelt `protocol: htttp` no longer hides a misspelt
//! `form:` two lines below.

use super::entry_problems;
use crate::policy::Policy;
use crate::span::{from_yaml_error, locate, ConfigError, Location, Seg};
use std::collections::BTreeMap;
use yaml_serde::Value;

/// At most this many problems are reported per file (each also costs one
/// more pass over the value, so a file full of mistakes stays cheap).
const MAX_PROBLEMS: usize = 100;

/// One step of a path, owned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Key(String),
    Index(usize),
}

type Path = Vec<Step>;

fn segs(path: &[Step]) -> Vec<Seg<'_>> {
    path.iter()
        .map(|s| match s {
            Step::Key(k) => Seg::Key(k),
            Step::Index(i) => Seg::Index(*i),
        })
        .collect()
}

fn shown(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The path serde_path_to_error reports, or none when it holds a step we
/// cannot prune (an enum variant, a non-string key).
fn path_of(path: &serde_path_to_error::Path) -> Option<Path> {
    path.iter()
        .map(|s| match s {
            serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
            _ => None,
        })
        .collect()
}

/// Sequence items already pruned, by the original path of their sequence,
/// so later paths (taken on the pruned value) name the lines as written.
#[derive(Debug, Default)]
struct Pruned(BTreeMap<Path, Vec<usize>>);

impl Pruned {
    /// `path` on the pruned value -> the same node's path in the file.
    fn original(&self, path: &[Step]) -> Path {
        let mut out = Vec::with_capacity(path.len());
        for step in path {
            let step = match (step, self.0.get(&out)) {
                (Step::Index(i), Some(gone)) => {
                    Step::Index((0..).filter(|k| !gone.contains(k)).nth(*i).unwrap_or(*i))
                }
                _ => step.clone(),
            };
            out.push(step);
        }
        out
    }

    /// Removes the node at `path` from `value`; false when there is nothing
    /// left to remove (the root, or a path that does not lead anywhere).
    fn prune(&mut self, value: &mut Value, path: &[Step]) -> bool {
        let Some((last, parent)) = path.split_last() else {
            return false;
        };
        let mut node = value;
        for step in parent {
            let next = match (step, node) {
                (Step::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str()),
                (Step::Index(i), Value::Sequence(s)) => s.get_mut(*i),
                _ => None,
            };
            let Some(next) = next else { return false };
            node = next;
        }
        match (last, node) {
            (Step::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
            (Step::Index(i), Value::Sequence(s)) if *i < s.len() => {
                let original = self.original(path);
                s.remove(*i);
                if let Some(Step::Index(gone)) = original.last() {
                    let seq = original[..original.len() - 1].to_vec();
                    self.0.entry(seq).or_default().push(*gone);
                }
                true
            }
            _ => false,
        }
    }
}

/// Whether a problem at `path` may only echo a node already pruned: pruning
/// a field makes its parent miss it (`missing field`), and pruning a rule's
/// `from` leaves a rule with no source. Both sit right above the pruned node.
fn echoes(pruned: &[Path], path: &[Step]) -> bool {
    pruned
        .iter()
        .any(|p| p.len() == path.len() + 1 && p.starts_with(path))
}

/// Parses one policy file and returns every problem found, each at its line
/// and column. `first` is the error of the strict parse of the text.
pub(super) fn every_problem(
    file: &str,
    source: &str,
    first: serde_path_to_error::Error<yaml_serde::Error>,
) -> Vec<ConfigError> {
    let first_path = path_of(first.path());
    let first_error = from_yaml_error(file, first.inner());
    // Not even YAML (or a key twice): nothing below can be trusted.
    let Ok(mut value) = yaml_serde::from_str::<Value>(source) else {
        return vec![first_error];
    };
    let mut pruned = Pruned::default();
    let mut removed: Vec<Path> = Vec::new();
    let mut errors = Vec::new();
    // Every problem points at the key that holds the bad node, so two
    // problems of one kind read alike; where the key cannot be found (the
    // root), the text parse's own position of its problem is better.
    let at = |path: &Path| -> Location {
        let found = locate(source, &segs(path));
        if Some(path) == first_path.as_ref() && (path.is_empty() || found.line != first_error.line)
        {
            Location {
                line: first_error.line,
                col: first_error.col,
            }
        } else {
            found
        }
    };
    for _ in 0..MAX_PROBLEMS {
        match serde_path_to_error::deserialize::<_, Policy>(&value) {
            Ok(policy) => {
                for (path, message) in policy
                    .apps
                    .iter()
                    .flat_map(|(pattern, app)| entry_problems(pattern.as_str(), app))
                {
                    let path = pruned.original(&owned(&path));
                    if !echoes(&removed, &path) {
                        errors.push(at(&path).error(file, message));
                    }
                }
                break;
            }
            Err(e) => {
                let Some(path) = path_of(e.path()) else {
                    errors.push(at(&Vec::new()).error(file, e.inner().to_string()));
                    break;
                };
                let original = pruned.original(&path);
                if !echoes(&removed, &original) {
                    let message = if original.is_empty() {
                        e.inner().to_string()
                    } else {
                        format!("{}: {}", shown(&original), e.inner())
                    };
                    errors.push(at(&original).error(file, message));
                }
                if !pruned.prune(&mut value, &path) {
                    break;
                }
                removed.push(original);
            }
        }
    }
    if errors.is_empty() {
        // The value parse accepted what the text parse refused: trust the refusal.
        errors.push(first_error);
    }
    errors
}

fn owned(path: &[Seg<'_>]) -> Path {
    path.iter()
        .map(|s| match s {
            Seg::Key(k) => Step::Key((*k).to_owned()),
            Seg::Index(i) => Step::Index(*i),
        })
        .collect()
}
