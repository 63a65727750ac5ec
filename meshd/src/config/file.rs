//! Reload step 1: watch the config directory. Watching the directory, not the
//! file, sees a file replaced by rename; a slow poll backs the watch up in
//! case an event is lost. A burst of events (one write) is settled into one
//! read after a short quiet time.

use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Quiet time after the last event before the file is read. configsrv
/// replaces the file by rename, whose events arrive together; a writer that
/// edits in place finishes within a few milliseconds, and a read that still
/// catches it half-written is followed by the read its next events cause.
/// Every millisecond here is a millisecond of convergence (it was 100 ms).
pub const DEBOUNCE: Duration = Duration::from_millis(10);
/// How often the file is checked even without an event.
pub const POLL: Duration = Duration::from_secs(2);
/// A poll reads the whole file only when its stamp changed, or after this
/// many polls that trusted the stamp: on NFS, where the watch sees no remote
/// writes and the poll is the real mechanism, `stat` may answer from the
/// attribute cache while `open` revalidates.
pub const FULL_READ_EVERY: u32 = 15;

/// What ended a wait for the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The directory reported a change to the file (or events were lost).
    Event,
    /// The poll interval passed without one.
    Poll,
}

/// What `stat` says of a file: a rename gives a new inode, a rewrite in
/// place a new size, mtime or ctime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// The file's stamp, or `None` when it cannot be read (then read the file).
#[cfg(unix)]
pub fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// Without inode and change times a stamp could miss a rewrite: always read.
#[cfg(not(unix))]
pub fn stamp(_path: &Path) -> Option<Stamp> {
    None
}

/// Watches one file in a directory; `changed()` resolves once per burst of events.
pub struct FileWatch {
    _watcher: notify::RecommendedWatcher,
    events: mpsc::Receiver<()>,
    /// The watched file.
    pub path: PathBuf,
}

impl std::fmt::Debug for FileWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatch")
            .field("path", &self.path)
            .finish()
    }
}

impl FileWatch {
    /// Starts watching `dir` for changes to `dir/file_name`.
    pub fn start(dir: &Path, file_name: &str) -> notify::Result<FileWatch> {
        let (tx, events) = mpsc::channel(1);
        let target = file_name.to_owned();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                let relevant = match res {
                    // Our own reads raise access events; reacting to them would loop.
                    Ok(ev) if matches!(ev.kind, notify::EventKind::Access(_)) => false,
                    Ok(ev) => ev
                        .paths
                        .iter()
                        .any(|p| p.file_name().is_some_and(|n| n == target.as_str())),
                    // An error may mean lost events: read the file to be sure.
                    Err(_) => true,
                };
                if relevant {
                    // Full means a read is already pending, which covers this event too.
                    let _ = tx.try_send(());
                }
            })?;
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        Ok(FileWatch {
            _watcher: watcher,
            events,
            path: dir.join(file_name),
        })
    }

    /// Waits for a burst of events to settle, or for the poll interval to pass.
    pub async fn changed(&mut self) -> Wake {
        let wake = match tokio::time::timeout(POLL, self.events.recv()).await {
            Ok(_) => Wake::Event,
            Err(_) => Wake::Poll,
        };
        // Debounce: keep waiting while events keep coming.
        while tokio::time::timeout(DEBOUNCE, self.events.recv())
            .await
            .is_ok()
        {}
        wake
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_changes_with_a_rename_or_a_rewrite_and_not_otherwise() {
        let dir = std::env::temp_dir().join(format!("meshd-stamp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("n.yaml");
        std::fs::write(&file, "generation: 1\n").unwrap();
        let first = stamp(&file).expect("a stamp");
        assert_eq!(stamp(&file), Some(first), "nothing changed");
        // configsrv's way: a new file renamed over the old one.
        let tmp = dir.join("n.yaml.tmp");
        std::fs::write(&tmp, "generation: 2\n").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        let renamed = stamp(&file).expect("a stamp");
        assert_ne!(renamed, first, "same size, but a new inode");
        // An editor's way: rewritten in place, longer.
        std::fs::write(&file, "generation: 30\n").unwrap();
        assert_ne!(stamp(&file), Some(renamed));
        assert_eq!(stamp(&dir.join("missing.yaml")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
