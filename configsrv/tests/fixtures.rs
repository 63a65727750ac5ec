//! Every real Marathon payload in `../shared/fixtures/marathon/` renders, and
//! the backends found match the tasks in the payload.

#![allow(clippy::unwrap_used)] // a test fails loudly on bad fixtures; that is its job

use configsrv::render::render;
use configsrv::sources::offline::load_snapshot;
use schemas::{Health, PolicySet};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
}

/// The Mesos state of the same cluster, where the fixtures README names one.
fn paired_mesos(file: &str) -> Option<PathBuf> {
    (file == "apps-embed-tasks-host-portdefinitions.json")
        .then(|| fixtures().join("mesos/master-state-1.2.0.json"))
}

fn running(task: &Value) -> bool {
    match task.get("state").and_then(Value::as_str) {
        Some(s) => s == "TASK_RUNNING",
        None => task.get("startedAt").is_some_and(|s| !s.is_null()),
    }
}

#[test]
fn every_marathon_apps_payload_renders_with_its_tasks_as_backends() {
    let dir = fixtures().join("marathon");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures/marathon is readable")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("apps-") && n.ends_with(".json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 7,
        "expected the apps-*.json fixtures, found {files:?}"
    );
    let policies = PolicySet::default();
    for file in &files {
        let path = dir.join(file);
        let mesos = paired_mesos(file);
        let (state, app_errors) =
            load_snapshot(&path, mesos.as_deref()).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(app_errors.is_empty(), "{file}: {app_errors:?}");
        let rendered = render(&state, &policies);
        assert!(rendered.errors.is_empty(), "{file}: {:?}", rendered.errors);
        assert!(!rendered.nodes.is_empty(), "{file}: no node rendered");

        let raw: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for app in raw["apps"].as_array().unwrap() {
            let id = app["id"].as_str().unwrap();
            let tasks = app["tasks"].as_array().cloned().unwrap_or_default();
            for config in rendered.configs().values() {
                let services: Vec<_> = config
                    .services
                    .iter()
                    .filter(|s| s.app.as_str() == id)
                    .collect();
                assert!(
                    !services.is_empty(),
                    "{file}: {id} has no service on {}",
                    config.node
                );
                for svc in services {
                    let live: Vec<&Value> = tasks.iter().filter(|t| running(t)).collect();
                    assert_eq!(
                        svc.backends.len(),
                        live.len(),
                        "{file}: {id}:{} backends",
                        svc.port.0
                    );
                    for b in &svc.backends {
                        let task = live
                            .iter()
                            .find(|t| t["id"].as_str() == Some(b.task.as_str()))
                            .unwrap_or_else(|| {
                                panic!("{file}: backend {} is no running task", b.task)
                            });
                        let ips: Vec<&str> = task["ipAddresses"]
                            .as_array()
                            .map(|a| a.iter().filter_map(|i| i["ipAddress"].as_str()).collect())
                            .unwrap_or_default();
                        let ports: Vec<u64> = task["ports"]
                            .as_array()
                            .map(|a| a.iter().filter_map(Value::as_u64).collect())
                            .unwrap_or_default();
                        let on_host = b.address.host == task["host"].as_str().unwrap()
                            && ports.contains(&u64::from(b.address.port));
                        let own_ip = ips.contains(&b.address.host.as_str());
                        assert!(
                            on_host || own_ip,
                            "{file}: {} does not match task {}",
                            b.address,
                            task
                        );
                        let checks = app["healthChecks"].as_array().map_or(0, Vec::len);
                        if checks == 0 {
                            assert_eq!(b.health, Health::Healthy, "{file}: {}", b.task);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn paired_mesos_state_gives_agents_without_tasks_a_node() {
    let marathon = fixtures().join("marathon/apps-embed-tasks-host-portdefinitions.json");
    let mesos = fixtures().join("mesos/master-state-1.2.0.json");
    let (state, _) = load_snapshot(&marathon, Some(&mesos)).unwrap();
    let rendered = render(&state, &PolicySet::default());
    let agents = state.agents.iter().filter(|a| a.active).count();
    assert!(agents >= 2, "the 1.2.0 state has two agents");
    for agent in state.agents.iter().filter(|a| a.active) {
        let name = schemas::NodeName::sanitise(&agent.hostname).unwrap();
        assert!(
            rendered.nodes.contains_key(&name),
            "agent {} has no node",
            agent.hostname
        );
    }
}

#[test]
fn every_mesos_state_fixture_parses_its_agents() {
    for f in [
        "master-state.json",
        "master-state-1.2.0.json",
        "master-state-0.28.json",
        "master-slaves.json",
    ] {
        let body = std::fs::read(fixtures().join("mesos").join(f)).unwrap();
        let agents = configsrv::sources::mesos::parse_agents(f, &body).unwrap();
        assert!(!agents.is_empty(), "{f}");
        assert!(
            agents.iter().all(|a| a.address.is_some()),
            "{f}: {agents:?}"
        );
    }
}

#[test]
fn marathon_lb_vhost_labels_become_edge_host_names() {
    let marathon =
        fixtures().join("marathon/apps-embed-tasks-marathon15-bridge-haproxy-vhost.json");
    let (state, _) = load_snapshot(&marathon, None).unwrap();
    let rendered = render(&state, &PolicySet::default());
    let svc = rendered.configs().into_values().next().unwrap().services[0].clone();
    assert_eq!(svc.app.as_str(), "/pywebserver");
    assert!(!svc.vhost.is_empty(), "HAPROXY_0_VHOST is honoured");
    assert!(svc.vhost.iter().all(|h| h == &h.to_ascii_lowercase()));
}

/// The apps of several Marathon payloads as one cluster, with the Mesos
/// agents of the host-networking capture.
fn merged_cluster(files: &[&str]) -> configsrv::state::ClusterState {
    let mesos = fixtures().join("mesos/master-state-1.2.0.json");
    let mut apps = Vec::new();
    let mut agents = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let path = fixtures().join("marathon").join(f);
        let (state, errors) = load_snapshot(&path, (i == 0).then_some(mesos.as_path())).unwrap();
        assert!(errors.is_empty(), "{f}: {errors:?}");
        apps.extend(state.apps);
        agents.extend(state.agents);
    }
    configsrv::state::ClusterState::new(apps, agents)
}

#[test]
fn container_network_addresses_identify_their_app_on_every_node_and_bridge_ones_at_home() {
    // The container network app `/net` twice: Marathon 1.5+ `networks` and
    // the pre-1.5 docker `USER` network; beside BRIDGE and host-networked apps.
    for container in [
        "apps-embed-tasks-container-network.json",
        "apps-embed-tasks-user-network-legacy-1.4.json",
    ] {
        let state = merged_cluster(&[
            "apps-embed-tasks-host-portdefinitions.json",
            "apps-embed-tasks-bridge-healthchecks-haproxy.json",
            container,
        ]);
        let rendered = render(&state, &PolicySet::default());
        assert!(
            rendered.nodes.len() >= 4,
            "{container}: {:?}",
            rendered.nodes.keys()
        );
        for (node, config) in &rendered.configs() {
            let app_of = |addr: &str| {
                config
                    .identities
                    .iter()
                    .find(|i| i.address.to_string() == addr)
                    .map(|i| i.app.to_string())
            };
            let n = node.as_str();
            // The overlay address is /net's on every node, its own (10.0.0.206) and the others.
            assert_eq!(
                app_of("9.0.2.130").as_deref(),
                Some("/net"),
                "{container} on {n}"
            );
            // Bridge addresses are known only on their own agent.
            let green = (n == "10.0.6.25").then_some("/nginx-green");
            assert_eq!(
                app_of("172.17.1.72").as_deref(),
                green,
                "{container} on {n}"
            );
            let blue = (n == "10.0.1.147").then_some("/nginx-blue");
            assert_eq!(app_of("172.17.0.45").as_deref(), blue, "{container} on {n}");
            // Two host-networked apps share 10.0.2.121: it identifies neither, anywhere.
            assert_eq!(app_of("10.0.2.121"), None, "{container} on {n}");
            // A bridge agent's address speaks for every task behind its masquerade.
            assert_eq!(app_of("10.0.6.25"), None, "{container} on {n}");
        }
    }
}
