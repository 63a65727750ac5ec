//! `configsrv serve --ensure-meshd` with credentials that may read Marathon
//! but not change apps: the simulator answers the meshd app's creation with
//! 403. configsrv keeps running and serving, says `unauthorized` where an
//! operator looks (`GET /v1/nodes`'s `ensure_meshd`, the
//! `palisade_ensure_meshd_actions_total{outcome="unauthorized"}` counter, an
//! error line naming `--marathon-token-file`), retries slowly however often
//! Mesos is read, and once restarted with the right token file creates the
//! app with one instance per active agent.
//! Addresses 127.0.208.21-23 (agents), 127.0.208.40 (simulator, API);
//! ports 42840-42842; task addresses 127.0.209.N.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::harness::{configsrv_metric, eventually, get_json, Proc, Scratch};
use palisade_tests::marathon_sim::MarathonSim;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const AGENTS: [&str; 3] = ["127.0.208.21", "127.0.208.22", "127.0.208.23"];
const MESOS_EVERY: Duration = Duration::from_millis(100);
const WAIT: Duration = Duration::from_secs(20);

fn configsrv(dir: &Scratch, sim: &MarathonSim, api: SocketAddr, token: &Path) -> Proc {
    let meshd_json = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ops/marathon/meshd.json");
    let (policies, nodes) = (dir.path("policies"), dir.path("nodes"));
    let args = [
        "serve",
        "--marathon",
        &sim.url,
        "--mesos",
        &sim.url,
        "--marathon-token-file",
        token.to_str().unwrap(),
        "--policies",
        policies.to_str().unwrap(),
        "--out",
        nodes.to_str().unwrap(),
        "--listen",
        &api.to_string(),
        "--mesos-interval",
        &format!("{}ms", MESOS_EVERY.as_millis()),
        "--resync-interval",
        "1s",
        "--ensure-meshd",
        meshd_json.to_str().unwrap(),
    ];
    Proc::spawn("configsrv", &args, &dir.0)
}

/// Waits until `GET /v1/nodes` reports the keeper's `outcome`; returns its entry.
async fn wait_keeper(api: SocketAddr, outcome: &str) -> Value {
    eventually(&format!("keeper outcome {outcome}"), WAIT, || async {
        let v = get_json(&format!("http://{api}/v1/nodes")).await?;
        let k = v["ensure_meshd"].clone();
        (k["outcome"] == outcome)
            .then_some(k.clone())
            .ok_or(k.to_string())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_may_not_change_apps_is_reported_and_the_right_one_creates_the_app() {
    let dir = Scratch::new("ensure-meshd-auth");
    dir.write(
        "policies/defaults.yaml",
        "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: allow\n  mode: enforce\n",
    );
    std::fs::create_dir_all(dir.path("nodes")).unwrap();
    let sim = MarathonSim::start("127.0.208.40:42840", &AGENTS, [127, 0, 209]).await;
    sim.set_agents(&AGENTS);
    // configsrv's token may read (reads are open) but only the writer's may change apps.
    sim.require_write_authorization(Some("token=writer-secret"));
    let token = dir.write("marathon-token", "reader-secret\n");
    let api: SocketAddr = "127.0.208.40:42841".parse().unwrap();
    let mut first = configsrv(&dir, &sim, api, &token);

    let k = wait_keeper(api, "unauthorized").await;
    let message = k["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("POST /v2/apps")
            && message.contains("403")
            && message.contains("--marathon-token-file"),
        "{k}"
    );
    assert_eq!(k["agents"], 3, "{k}");
    assert!(!message.contains("reader-secret"), "no secret shown: {k}");
    let refused = sim.unauthorized_writes();
    assert_eq!(
        refused[0],
        ("POST".to_owned(), "/v2/apps".to_owned(), 403),
        "{refused:?}"
    );
    let unauthorized = "palisade_ensure_meshd_actions_total{outcome=\"unauthorized\"} ";
    let counted = configsrv_metric(api, unauthorized).await;
    assert!(counted.is_some_and(|n| n >= 1.0), "{counted:?}");
    let app = reqwest::get(format!("{}/v2/apps/palisade/meshd", sim.url))
        .await
        .unwrap();
    assert_eq!(app.status(), 404, "no meshd app was made");
    eventually("an error line naming the flag", WAIT, || async {
        let log = first.stderr();
        (log.contains("keeping meshd on every agent failed")
            && log.contains("--marathon-token-file"))
        .then_some(())
        .ok_or(log)
    })
    .await;

    // Retried slowly: Mesos is read every 100 ms, yet wrong credentials are
    // not tried again at each read.
    let (reads, tried) = (sim.mesos_reads(), sim.unauthorized_writes().len());
    eventually("20 more Mesos reads", WAIT, || async {
        let n = sim.mesos_reads();
        (n >= reads + 20).then_some(()).ok_or(n.to_string())
    })
    .await;
    let again = sim.unauthorized_writes().len() - tried;
    assert_eq!(again, 0, "more refused writes over 20 Mesos reads");
    // Still serving, with Marathon read fine.
    assert!(first.running());
    let status = get_json(&format!("http://{api}/v1/status")).await.unwrap();
    assert_eq!(status["sources"]["marathon"]["stale"], false, "{status}");

    // The operator puts the right token in the file and restarts configsrv.
    assert!(first.terminate(Duration::from_secs(10)).is_some());
    dir.write("marathon-token", "writer-secret\n");
    let api: SocketAddr = "127.0.208.40:42842".parse().unwrap();
    let _second = configsrv(&dir, &sim, api, &token);
    let k = wait_keeper(api, "created").await;
    assert_eq!(k["instances"], 3, "{k}");
    let app = get_json(&format!("{}/v2/apps/palisade/meshd", sim.url))
        .await
        .unwrap();
    assert_eq!(app["app"]["instances"], 3, "{app}");
    assert!(
        app["app"]["constraints"]
            .as_array()
            .unwrap()
            .contains(&json!(["hostname", "UNIQUE"])),
        "{app}"
    );
    let created = "palisade_ensure_meshd_actions_total{outcome=\"created\"} ";
    assert_eq!(configsrv_metric(api, created).await, Some(1.0));
}
