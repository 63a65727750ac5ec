//! The ops material is real: systemd units pass `systemd-analyze verify`,
//! configsrv's and meshd's Marathon app definitions read with configsrv's
//! own parsers (meshd's as `--ensure-meshd` takes it), `ops/release` packs
//! what they fetch with checksums that verify, and the Prometheus scrape
//! config is valid YAML with both jobs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::harness::{bin, Scratch};
use std::path::PathBuf;
use std::process::Command;

fn ops(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../ops")
        .join(rel)
}

#[test]
fn systemd_and_fleet_units_verify() {
    let dir = Scratch::new("units");
    for unit in [
        "systemd/meshd.service",
        "systemd/configsrv.service",
        "fleet/meshd.service",
    ] {
        // verify wants the binaries the units name: point them at the ones just built.
        let text = std::fs::read_to_string(ops(unit)).unwrap();
        let text = text
            .replace("/usr/local/bin/meshd", bin("meshd").to_str().unwrap())
            .replace(
                "/usr/local/bin/configsrv",
                bin("configsrv").to_str().unwrap(),
            );
        let name = unit.replace('/', "-");
        let path = dir.write(&name, &text);
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .expect("systemd-analyze is needed; .ci/run installs systemd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // verify also reports the host's own units; only lines about ours count.
        let ours: Vec<&str> = stderr.lines().filter(|l| l.contains(&name)).collect();
        assert!(out.status.success() && ours.is_empty(), "{unit}:\n{stderr}");
        for hardening in ["NoNewPrivileges=yes", "ProtectSystem=strict"] {
            assert!(text.contains(hardening), "{unit} lacks {hardening}");
        }
    }
}

#[test]
fn configsrv_marathon_app_definition_reads_as_a_marathon_app() {
    let def: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ops("marathon/configsrv.json")).unwrap())
            .unwrap();
    let body = serde_json::json!({ "app": def }).to_string();
    let (apps, errors) =
        configsrv::sources::marathon::parse_apps("configsrv.json", body.as_bytes()).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(apps[0].id.as_str(), "/palisade/configsrv");
    assert_eq!(apps[0].service_ports[0].service_port.0, 9900);
    assert_eq!(def["healthChecks"][0]["path"], "/healthz");
    // The release tarball, extracted by Mesos; policies from Git, not a placeholder URL.
    assert_eq!(def["fetch"][0]["extract"], true);
    let cmd = def["cmd"].as_str().unwrap();
    assert!(
        cmd.contains("$MESOS_SANDBOX/palisade/bin/configsrv\" serve"),
        "{cmd}"
    );
    assert!(cmd.contains("--policies-git https://"), "{cmd}");
    assert!(
        cmd.contains("--ensure-meshd \"$MESOS_SANDBOX/palisade/marathon/meshd.json\""),
        "{cmd}"
    );
}

#[test]
fn meshd_marathon_app_definition_is_one_host_networked_meshd_per_agent() {
    let path = ops("marathon/meshd.json");
    // As `configsrv serve --ensure-meshd` reads it: host networking, UNIQUE hostname.
    let app = configsrv::ensure_meshd::plan::load(&path).unwrap();
    assert_eq!(app.id, "/palisade/meshd");
    let def: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        def, app.definition,
        "the file already carries the UNIQUE constraint"
    );
    assert_eq!(
        def["constraints"],
        serde_json::json!([["hostname", "UNIQUE"]])
    );
    assert_eq!(def["networks"], serde_json::json!([{"mode": "host"}]));
    assert_eq!(def["fetch"][0]["extract"], true);
    assert!(def["fetch"][0]["uri"]
        .as_str()
        .unwrap()
        .ends_with(".tar.gz"));
    // And as Marathon's own shape, through the parser configsrv follows Marathon with.
    let body = serde_json::json!({ "app": def }).to_string();
    let (apps, errors) =
        configsrv::sources::marathon::parse_apps("meshd.json", body.as_bytes()).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(apps[0].id.as_str(), "/palisade/meshd");
    // The node name from the agent, admin on the node address, configsrv as the source.
    let cmd = def["cmd"].as_str().unwrap();
    for part in [
        "$MESOS_SANDBOX/palisade/bin/meshd\" run",
        "--node \"$HOST\"",
        "--admin \"${NODE_IP:-$HOST}:9901\"",
        "--config-url http://",
        "--config-token-file ",
    ] {
        assert!(cmd.contains(part), "{part} not in {cmd}");
    }
}

#[test]
fn the_release_tarball_holds_binaries_units_apps_and_checksums() {
    let dir = Scratch::new("release");
    let bins = bin("meshd").parent().unwrap().to_owned();
    assert!(bin("configsrv").exists());
    let out = Command::new(ops("release"))
        .args(["--bin-dir", bins.to_str().unwrap(), "--out"])
        .arg(dir.path("dist"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let tarball = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let name = tarball.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("palisade-0.1.0-") && name.ends_with("-linux.tar.gz"),
        "{name}"
    );

    let listing = Command::new("tar")
        .arg("tzf")
        .arg(&tarball)
        .output()
        .unwrap();
    let mut files: Vec<String> = String::from_utf8(listing.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.ends_with('/'))
        .map(str::to_owned)
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "palisade/SHA256SUMS",
            "palisade/bin/configsrv",
            "palisade/bin/meshd",
            "palisade/fleet/meshd.service",
            "palisade/marathon/configsrv.json",
            "palisade/marathon/meshd.json",
            "palisade/systemd/configsrv.service",
            "palisade/systemd/meshd.service",
        ]
    );
    // The tarball's own checksum, and every file's inside it, verify.
    let check = Command::new("sha256sum")
        .args(["-c", &format!("{name}.sha256")])
        .current_dir(tarball.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let x = dir.path("x");
    std::fs::create_dir_all(&x).unwrap();
    assert!(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap()
        .success());
    let sums = std::fs::read_to_string(x.join("palisade/SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 7, "{sums}");
    let check = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(x.join("palisade"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // The packed binaries run.
    let version = Command::new(x.join("palisade/bin/meshd"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    // The shipped apps fetch this tarball by name (they name x86_64).
    if name.contains("-x86_64-") {
        for app in ["meshd.json", "configsrv.json"] {
            let def: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(ops(&format!("marathon/{app}"))).unwrap(),
            )
            .unwrap();
            let uri = def["fetch"][0]["uri"].as_str().unwrap();
            assert!(
                uri.ends_with(&format!("/{name}")),
                "{app} fetches {uri}, not {name}"
            );
        }
        assert!(!stderr.contains("note:"), "{stderr}");
    }
    // Bad usage is exit 2; a missing binary exit 1, naming it.
    let bad = Command::new(ops("release"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let missing = Command::new(ops("release"))
        .args(["--bin-dir", dir.path("nowhere").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nowhere/meshd"));
}

#[test]
fn prometheus_scrape_config_has_both_jobs() {
    let text = std::fs::read_to_string(ops("prometheus/scrape.yml")).unwrap();
    let v: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let jobs: Vec<&str> = v["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|j| j["job_name"].as_str())
        .collect();
    assert_eq!(jobs, ["palisade-meshd", "palisade-configsrv"]);
}
