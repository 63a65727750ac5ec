//! The one file-writing helper both binaries share (configsrv's node files,
//! meshd's config cache): the single exception to "no I/O in schemas", kept
//! here because `schemas` is the only crate both depend on (invariant 4).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `bytes` to `path` so a reader sees the old file or the new one,
/// never half, and a crash never loses a rename that was reported done: a
/// temp file in the same directory (rename is atomic only within one file
/// system), written, fsynced, renamed over `path`, then the directory
/// fsynced (the rename itself lives in the directory). On failure the temp
/// file is removed and `path` is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_parts(path, &[bytes])
}

/// `write_atomic` of the concatenation of `parts`, without concatenating
/// them first (a node file's shared services are written from the one copy).
pub fn write_atomic_parts<B: AsRef<[u8]>>(path: &Path, parts: &[B]) -> std::io::Result<()> {
    // Unique per process and call: two writers of one file never share a temp file.
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let f = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, f);
        for part in parts {
            w.write_all(part.as_ref())?;
        }
        let f = w
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("schemas-atomic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_write_replaces_the_file_and_leaves_no_temp_file() {
        let dir = scratch("replace");
        let file = dir.join("n.yaml");
        write_atomic(&file, b"one").unwrap();
        write_atomic(&file, b"two").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        assert_eq!(entries(&dir), ["n.yaml"]);
        let big = vec![b'x'; 100_000];
        write_atomic_parts(&file, &[&b"head "[..], &big[..], &b""[..], &b" tail"[..]]).unwrap();
        let back = std::fs::read(&file).unwrap();
        assert_eq!(back.len(), 5 + 100_000 + 5);
        assert!(back.starts_with(b"head x") && back.ends_with(b"x tail"));
        assert_eq!(entries(&dir), ["n.yaml"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_rename_keeps_the_target_and_removes_the_temp_file() {
        let dir = scratch("fail");
        // A directory where the file should be: the rename fails, even for root.
        std::fs::create_dir(dir.join("n.yaml")).unwrap();
        assert!(write_atomic(&dir.join("n.yaml"), b"x").is_err());
        assert!(dir.join("n.yaml").is_dir());
        assert_eq!(entries(&dir), ["n.yaml"]);
        assert!(write_atomic(&dir.join("missing/n.yaml"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
