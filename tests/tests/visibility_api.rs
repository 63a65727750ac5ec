//! Visibility end to end: `configsrv serve` follows the Marathon simulator,
//! two meshd bind their admin endpoints on their node addresses, and curl
//! poses as apps' tasks (`--interface`). configsrv's collector scrapes both
//! meshd; its API shows rates and merged percentiles per app, the denied
//! flow, converged nodes, 404 JSON for unknown apps; in audit mode it
//! proposes a policy naming exactly the sources seen, which `configsrv
//! validate` accepts; `configsrv impact` answers 0, 1 and 2.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::harness::{bin, eventually, free_port, meshd_scraped, Proc, Scratch};
use palisade_tests::marathon_sim::MarathonSim;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const NODES: [&str; 2] = ["127.0.0.161", "127.0.0.162"];
const WEB_PORT: u16 = 25400;
const TOKEN: &str = "vis-token-1";
const DEFAULTS_ENFORCE: &str =
    "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: deny\n  mode: enforce\n";
const DEFAULTS_AUDIT: &str =
    "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: deny\n  mode: audit\n";
const APPS: &str = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /vis/web:\n    protocol: http\n    allow:\n      - from: /vis/edge\n";

fn app_def(id: &str, instances: u32, service_port: u16) -> Value {
    json!({
        "id": id, "instances": instances, "cpus": 0.1, "mem": 32, "labels": {}, "healthChecks": [],
        "networks": [{"mode": "container", "name": "sim"}],
        "container": {"type": "DOCKER", "docker": {"image": "vis/web:1"},
            "portMappings": [{"containerPort": 8080, "servicePort": service_port, "protocol": "tcp"}]}
    })
}

async fn get_json(api: SocketAddr, path: &str) -> Result<(u16, Value), String> {
    let resp = reqwest::get(format!("http://{api}{path}"))
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(|e| e.to_string())?;
    let v = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok((status, v))
}

/// `n` requests with curl from `source` to `/vis/web` through `node`; their statuses.
fn curl_from(source: &str, node: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let out = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "5",
                ])
                .args(["--interface", source])
                .arg(format!("http://{node}:{WEB_PORT}/"))
                .output()
                .expect("running curl");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect()
}

/// The flow `source -> /vis/web` from `/v1/flows`.
fn flow(flows: &Value, source: &str) -> Value {
    flows["flows"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["source"] == source && f["destination"] == "/vis/web")
        .cloned()
        .unwrap_or(Value::Null)
}

fn impact(
    dir: &std::path::Path,
    api: SocketAddr,
    token: Option<&std::path::Path>,
) -> (i32, String) {
    let mut cmd = Command::new(bin("configsrv"));
    cmd.arg("impact")
        .arg("--policies")
        .arg(dir)
        .arg("--api")
        .arg(format!("http://{api}"));
    if let Some(t) = token {
        cmd.arg("--api-token-file").arg(t);
    }
    let out = cmd.output().expect("running configsrv impact");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_shows_traffic_flows_nodes_and_learns_allow_lists() {
    let dir = Scratch::new("visibility");
    dir.write("policies/defaults.yaml", DEFAULTS_ENFORCE);
    dir.write("policies/apps.yaml", APPS);
    let token = dir.write("token", TOKEN);
    std::fs::create_dir_all(dir.path("nodes")).unwrap();
    let sim = MarathonSim::start("127.0.0.1:0", &NODES, [127, 0, 163]).await;
    assert_eq!(sim.post_app(&app_def("/vis/web", 2, WEB_PORT)).await, 201);
    assert_eq!(
        sim.post_app(&app_def("/vis/edge", 1, WEB_PORT + 1)).await,
        201
    );
    assert_eq!(
        sim.post_app(&app_def("/vis/dev", 1, WEB_PORT + 2)).await,
        201
    );
    let mut web = Vec::new();
    for (task, _, ip) in sim.tasks("/vis/web") {
        web.push(backends::http(&format!("{ip}:8080"), &task).await);
    }
    let edge = sim.tasks("/vis/edge")[0].2.clone();
    let dev = sim.tasks("/vis/dev")[0].2.clone();

    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin_port = free_port();
    let configsrv = Proc::spawn(
        "configsrv",
        &[
            "serve",
            "--marathon",
            &sim.url,
            "--policies",
            dir.path("policies").to_str().unwrap(),
            "--out",
            dir.path("nodes").to_str().unwrap(),
            "--listen",
            &api.to_string(),
            "--api-token-file",
            token.to_str().unwrap(),
            "--meshd-admin-port",
            &admin_port.to_string(),
            "--scrape-interval",
            "250ms",
            "--window",
            "2m",
        ],
        &dir.0,
    );
    let nodes_dir = dir.path("nodes");
    let start_meshd = |node: &str| meshd_scraped(node, &nodes_dir, admin_port, &dir.0);
    let mut meshd: Vec<Proc> = NODES.iter().map(|n| start_meshd(n)).collect();

    // Both nodes converge: their meshd answer the scrape and run what was rendered.
    let nodes = eventually("every node converged", Duration::from_secs(15), || async {
        let (_, v) = get_json(api, "/v1/nodes").await?;
        let list = v["nodes"].as_array().cloned().unwrap_or_default();
        let ok = list.len() == 2
            && list.iter().all(|n| {
                n["converged"] == true
                    && n["reachable"] == true
                    && n["applied"] == n["rendered"]
                    && n["generation"] == n["rendered"]
                    && n["error"].is_null()
                    && n["last_scrape"].is_u64()
            });
        if ok {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    })
    .await;
    let names: BTreeSet<&str> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert_eq!(names, NODES.into_iter().collect());

    // Real traffic through both nodes: allowed from /vis/edge, denied from /vis/dev.
    for node in NODES {
        let statuses = curl_from(&edge, node, 15);
        assert!(statuses.iter().all(|s| s == "200"), "{statuses:?}");
        let statuses = curl_from(&dev, node, 3);
        assert!(statuses.iter().all(|s| s == "403"), "{statuses:?}");
    }

    let apps = eventually(
        "/v1/apps shows the traffic",
        Duration::from_secs(10),
        || async {
            let (_, v) = get_json(api, "/v1/apps").await?;
            let web = v["apps"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["id"] == "/vis/web")
                .cloned()
                .unwrap_or(Value::Null);
            let seen = web["rate"].as_f64().is_some_and(|r| r > 0.0)
                && web["denied"] == 6
                && web["latency"]["p99"].is_f64();
            if seen {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        },
    )
    .await;
    assert_eq!(apps["window_seconds"], 120);
    let web_summary = apps["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "/vis/web")
        .unwrap();
    let (p50, p99) = (
        web_summary["latency"]["p50"].as_f64().unwrap(),
        web_summary["latency"]["p99"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99, "{web_summary}");
    assert_eq!(web_summary["protocol"], "http");
    assert_eq!(web_summary["instances"], 2);
    assert_eq!(web_summary["service_ports"], json!([WEB_PORT]));
    assert_eq!(web_summary["error_rate"], 0.0);

    let (_, flows) = get_json(api, "/v1/flows").await.unwrap();
    let denied = flow(&flows, "/vis/dev");
    assert_eq!(denied["denied"], 6, "{flows}");
    assert_eq!(denied["allowed"], 0, "{flows}");
    assert_eq!(flow(&flows, "/vis/edge")["allowed"], 30, "{flows}");

    let (status, detail) = get_json(api, "/v1/apps/vis/web").await.unwrap();
    assert_eq!(status, 200);
    assert!(detail["timing"]["total"]["p50"].is_f64(), "{detail}");
    assert!(detail["timing"]["response"]["p50"].is_f64(), "{detail}");
    // meshd measures every part of an HTTP request: client RTT (TCP_INFO),
    // connect, response and transfer, merged over both nodes.
    for part in ["client_rtt", "connect", "response", "transfer", "total"] {
        assert!(detail["timing"][part]["p50"].is_f64(), "{part}: {detail}");
    }
    // Null only when nothing was measured; never absent.
    for part in ["client_rtt", "connect", "response", "transfer", "total"] {
        for q in ["p50", "p90", "p99"] {
            let v = &detail["timing"][part][q];
            assert!(
                v.is_null() || v.as_f64().is_some_and(|x| x >= 0.0),
                "{part}.{q}: {detail}"
            );
            assert!(
                detail["timing"][part].get(q).is_some(),
                "{part}.{q} missing: {detail}"
            );
        }
    }
    assert_eq!(detail["backends"].as_array().unwrap().len(), 2, "{detail}");
    assert_eq!(detail["sources"], json!(["/vis/dev", "/vis/edge"]));
    assert!(!detail["series"].as_array().unwrap().is_empty());

    let (status, missing) = get_json(api, "/v1/apps/vis/nope").await.unwrap();
    assert_eq!(status, 404);
    assert!(
        missing["error"].as_str().unwrap().contains("/vis/nope"),
        "{missing}"
    );

    // Audit mode: /vis/dev is let through and counted as would-be denied.
    dir.write("policies/defaults.yaml", DEFAULTS_AUDIT);
    for node in NODES {
        eventually(
            "the audit policy applied",
            Duration::from_secs(10),
            || async {
                let statuses = curl_from(&dev, node, 1);
                if statuses == ["200"] {
                    Ok(())
                } else {
                    Err(format!("{statuses:?}"))
                }
            },
        )
        .await;
    }
    eventually(
        "the would-be denial counted",
        Duration::from_secs(10),
        || async {
            let (_, v) = get_json(api, "/v1/flows").await?;
            if flow(&v, "/vis/dev")["would_deny"].as_u64() >= Some(2) {
                Ok(())
            } else {
                Err(v.to_string())
            }
        },
    )
    .await;

    // The learned allow-list names exactly the sources seen, and validates.
    let proposed = reqwest::get(format!("http://{api}/v1/policy/proposed"))
        .await
        .unwrap();
    assert_eq!(proposed.headers()["content-type"], "application/yaml");
    let proposed = proposed.text().await.unwrap();
    dir.write("learned/proposed.yaml", &proposed);
    dir.write("learned/defaults.yaml", DEFAULTS_ENFORCE);
    let validate = Command::new(bin("configsrv"))
        .arg("validate")
        .arg(dir.path("learned"))
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "configsrv validate: {}{}\n{proposed}",
        String::from_utf8_lossy(&validate.stdout),
        String::from_utf8_lossy(&validate.stderr)
    );
    let policy: schemas::Policy = yaml_serde::from_str(&proposed).unwrap();
    let named: BTreeSet<String> = policy
        .apps
        .iter()
        .flat_map(|(dst, entry)| {
            entry
                .allow
                .iter()
                .filter_map(move |r| r.from.as_ref().map(|f| format!("{} -> {dst}", f.as_str())))
        })
        .collect();
    let want: BTreeSet<String> = ["/vis/dev -> /vis/web", "/vis/edge -> /vis/web"]
        .map(String::from)
        .into();
    assert_eq!(named, want, "{proposed}");

    // Impact: the learned policy under enforce newly denies nothing (exit 0);
    // dropping /vis/edge's rule would deny it (exit 1); a bad file is exit 2.
    let (code, out) = impact(&dir.path("learned"), api, Some(&token));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("/vis/dev -> /vis/web: would_deny -> allow"),
        "{out}"
    );
    dir.write("strict/defaults.yaml", DEFAULTS_ENFORCE);
    dir.write(
        "strict/apps.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps:\n  /vis/web:\n    protocol: http\n",
    );
    let (code, out) = impact(&dir.path("strict"), api, Some(&token));
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("/vis/edge -> /vis/web: allow -> deny, "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.ends_with(" requests"), "{line}");
    dir.write(
        "broken/apps.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps:\n  /vis/web:\n    alow: []\n",
    );
    let (code, out) = impact(&dir.path("broken"), api, Some(&token));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("apps.yaml:5:"), "{out}");
    let (code, out) = impact(&dir.path("learned"), api, None);
    assert_eq!(code, 2, "without the token: {out}");
    assert!(out.contains("401"), "{out}");

    // A meshd that is gone is flagged; its counters start again from zero
    // when it comes back, and the window counts that as a reset, not a drop.
    let node_info = |node: &'static str| async move {
        let (_, v) = get_json(api, &format!("/v1/nodes/{node}")).await?;
        Ok::<Value, String>(v)
    };
    drop(meshd.pop());
    eventually(
        "the stopped meshd flagged",
        Duration::from_secs(10),
        || async {
            let n = node_info(NODES[1]).await?;
            if n["reachable"] == false && n["error"].is_string() && n["covered"] == false {
                Ok(())
            } else {
                Err(n.to_string())
            }
        },
    )
    .await;
    let (_, v) = get_json(api, "/v1/flows").await.unwrap();
    assert_eq!(flow(&v, "/vis/edge")["allowed"], 30, "{v}");
    meshd.push(start_meshd(NODES[1]));
    eventually(
        "the restarted meshd converged",
        Duration::from_secs(15),
        || async {
            let n = node_info(NODES[1]).await?;
            if n["converged"] == true && n["reachable"] == true {
                Ok(())
            } else {
                Err(n.to_string())
            }
        },
    )
    .await;
    let statuses = curl_from(&edge, NODES[1], 5);
    assert!(statuses.iter().all(|s| s == "200"), "{statuses:?}");
    eventually(
        "requests after the restart counted",
        Duration::from_secs(10),
        || async {
            let (_, v) = get_json(api, "/v1/flows").await?;
            if flow(&v, "/vis/edge")["allowed"] == 35 {
                Ok(())
            } else {
                Err(v.to_string())
            }
        },
    )
    .await;
    drop(configsrv);
}
