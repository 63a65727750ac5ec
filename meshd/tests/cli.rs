//! `meshd check` and `--help` through the real binary. (This file also makes
//! `cargo test --workspace` build the meshd binary the end-to-end tests run.)

#![allow(clippy::unwrap_used)] // a failing step should fail the test loudly

use std::process::Command;

fn meshd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn check_accepts_a_valid_file_and_locates_problems_in_a_bad_one() {
    let dir = std::env::temp_dir().join(format!("meshd-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("n1.yaml");
    std::fs::write(
        &good,
        "apiVersion: palisade/v1\nkind: NodeConfig\nnode: n1\naddress: 127.0.0.2\ngeneration: 4\nrevision: r\nservices:\n  - app: /a\n    port: 10000\n    access:\n      default_action: deny\n    backends:\n      - {address: 127.0.1.1:8080, task: a.1}\n",
    )
    .unwrap();
    let out = meshd(&["check", good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("generation 4, 1 services, 1 backends"));

    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "apiVersion: palisade/v1\nkind: NodeConfig\nnode: n1\naddress: 127.0.0.2\ngeneration: 4\nrevision: r\nservices:\n  - app: /a\n    port: 10000\n    protocol: sctp\n").unwrap();
    let out = meshd(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("{}:10:", bad.display())),
        "{text}"
    );
    assert!(
        text.contains("`tcp`") && text.contains("`http`") && text.contains("`udp`"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_names_every_run_flag() {
    let out = meshd(&["run", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--node",
        "--config-dir",
        "--admin",
        "--bind",
        "--threads",
        "--drain-deadline",
        "--access-log",
    ] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}
