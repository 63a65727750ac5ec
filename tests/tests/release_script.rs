//! `ops/release` as an operator runs it, short of building release binaries
//! (too slow for the suite; `ops_units.rs` packs the test binaries): its
//! `--help` says what it does without `--bin-dir`, relative paths are taken
//! from where it is run, and without `--bin-dir` and without cargo it says
//! what is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::harness::{bin, Scratch};
use std::path::PathBuf;
use std::process::Command;

fn release() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ops/release")
}

#[test]
fn help_says_what_happens_without_bin_dir_and_prints_no_script() {
    let out = Command::new(release()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for part in [
        "Without --bin-dir it builds",
        "cargo build --release --locked -p meshd -p configsrv",
        "CARGO_TARGET_DIR",
        "--bin-dir: take meshd and configsrv from DIR",
        "Relative paths are taken from the directory it is run in",
        "Exit 0 on success",
    ] {
        assert!(help.contains(part), "{part:?} not in:\n{help}");
    }
    assert!(!help.contains("set -e"), "shell code in the help:\n{help}");
    assert!(help.lines().all(|l| !l.starts_with('#')), "{help}");
}

#[test]
fn relative_bin_dir_and_out_are_taken_from_where_it_runs() {
    let dir = Scratch::new("release-relative");
    let bins = dir.path("bins");
    std::fs::create_dir_all(&bins).unwrap();
    for b in ["meshd", "configsrv"] {
        std::fs::copy(bin(b), bins.join(b)).unwrap();
    }
    let out = Command::new(release())
        .args(["--bin-dir", "bins", "--out", "dist", "--version", "9.9.9"])
        .current_dir(&dir.0)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let tarball = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(
        tarball.starts_with(dir.path("dist")),
        "{}",
        tarball.display()
    );
    assert!(tarball.exists(), "{}", tarball.display());
    let name = tarball.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("palisade-9.9.9-"), "{name}");
    assert!(dir.path(&format!("dist/{name}.sha256")).exists());
}

#[test]
fn without_bin_dir_and_without_cargo_it_says_so() {
    let dir = Scratch::new("release-no-cargo");
    // Only the tools the script needs besides cargo (bash, coreutils, sed).
    let path = "/usr/bin:/bin";
    if std::path::Path::new("/usr/bin/cargo").exists()
        || std::path::Path::new("/bin/cargo").exists()
    {
        return;
    }
    let out = Command::new("/bin/bash")
        .arg(release())
        .args(["--out", "dist"])
        .env("PATH", path)
        .current_dir(&dir.0)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cargo is not on PATH"), "{stderr}");
    assert!(stderr.contains("--bin-dir"), "{stderr}");
    assert!(!dir.path("dist").exists());
}
