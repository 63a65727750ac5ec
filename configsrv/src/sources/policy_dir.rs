//! The policy directory: every `*.yaml`/`*.yml` below it (hidden entries such
//! as `.git` skipped), read in a stable order.

use crate::error::SourceError;
use std::path::{Path, PathBuf};

/// One policy file: its path (as shown in errors) and its text.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    /// The path, under the directory the operator named.
    pub path: PathBuf,
    /// The contents.
    pub text: String,
}

/// Reads every policy file under `dir`, sorted by path.
pub fn read_policy_dir(dir: &Path) -> Result<Vec<PolicyFile>, SourceError> {
    let mut paths = Vec::new();
    collect(dir, &mut paths)?;
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).map_err(|error| SourceError::Io {
                path: path.clone(),
                error,
            })?;
            let text = String::from_utf8(bytes)
                .map_err(|_| SourceError::NotText { path: path.clone() })?;
            Ok(PolicyFile { path, text })
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    let io = |error| SourceError::Io {
        path: dir.to_owned(),
        error,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type().map_err(io)?;
        if kind.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Parses and merges what it can, for a running server (see `PolicySet::from_files_lenient`).
pub fn read_lenient(files: &[PolicyFile]) -> schemas::policy::Lenient {
    let names: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
    schemas::PolicySet::from_files_lenient(
        names
            .iter()
            .map(String::as_str)
            .zip(files.iter().map(|f| f.text.as_str())),
    )
}

/// Parses and merges the files; every problem is a `file:line:col: message` line.
pub fn load_policies(
    files: &[PolicyFile],
) -> Result<schemas::PolicySet, Vec<schemas::ConfigError>> {
    let names: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
    schemas::PolicySet::from_files(
        names
            .iter()
            .map(String::as_str)
            .zip(files.iter().map(|f| f.text.as_str())),
    )
}

/// Watches the policy directory; after each burst of changes (debounced) the
/// whole directory is read and validated again and sent as one event, so an
/// invalid file never half-applies.
pub fn watch(
    dir: PathBuf,
    tx: tokio::sync::mpsc::Sender<crate::sources::SourceEvent>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let (kick, mut kicked) = tokio::sync::mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Our own reads raise access events; reacting to them would loop.
        if !matches!(res, Ok(ref ev) if matches!(ev.kind, notify::EventKind::Access(_))) {
            let _ = kick.try_send(());
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        while kicked.recv().await.is_some() {
            while tokio::time::timeout(std::time::Duration::from_millis(100), kicked.recv())
                .await
                .is_ok()
            {}
            let result = match read_policy_dir(&dir) {
                Ok(files) => read_lenient(&files),
                Err(e) => {
                    let name = dir.display().to_string();
                    schemas::policy::Lenient {
                        errors: vec![schemas::span::Location::START.error(&name, e.to_string())],
                        broken_files: [name].into(),
                        ..Default::default()
                    }
                }
            };
            if tx
                .send(crate::sources::SourceEvent::Policies(result))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    Ok(watcher)
}
