//! The ops material is real: systemd units pass `systemd-analyze verify`,
//! configsrv's Marathon app definition reads with configsrv's own parser,
//! and the Prometheus scrape config is valid YAML with both jobs.

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
