//! Reload step 1: watch the config directory. Watching the directory, not the
//! file, sees a file replaced by rename; a slow poll backs the watch up in
//! case an event is lost. Bursts are debounced into one read.

use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Quiet time after the last event before the file is read.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// How often the file is re-read even without an event.
pub const POLL: Duration = Duration::from_secs(2);

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
    pub async fn changed(&mut self) {
        let _ = tokio::time::timeout(POLL, self.events.recv()).await;
        // Debounce: keep waiting while events keep coming.
        while tokio::time::timeout(DEBOUNCE, self.events.recv())
            .await
            .is_ok()
        {}
    }
}
