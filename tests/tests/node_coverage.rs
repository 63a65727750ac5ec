//! Node coverage end to end: `configsrv serve --mesos` follows the Marathon
//! simulator (which answers Mesos' `/master/state` too) while the agent list
//! changes. An agent without meshd is listed uncovered in `GET /v1/nodes`
//! (with its tasks), counted in `palisade_nodes_uncovered` and marked in the
//! UI; starting meshd there clears it. With `--ensure-meshd
//! ops/marathon/meshd.json` the simulator receives the meshd app with one
//! instance per active agent and the UNIQUE constraint, one more when an
//! agent joins, its instances and constraint back after a manual change, a
//! 409 retried, none fewer on a failed or empty Mesos read, and fewer only
//! when two reads agree.
//!
//! Addresses 127.0.202.20-49 (agents) and 127.0.202.100 (simulator and API);
//! task addresses 127.0.204.N; service port 42300.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::browser::{screenshot_dir, Browser};
use palisade_tests::harness::{
    configsrv_metric, eventually, free_port, get_json, meshd_scraped, Proc, Scratch,
};
use palisade_tests::marathon_sim::MarathonSim;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SERVICE_PORT: u16 = 42300;
const SCRAPE: Duration = Duration::from_millis(400);
const MESOS_EVERY: Duration = Duration::from_millis(100);
const POLICY: &str =
    "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: allow\n  mode: enforce\n";

fn app_def(id: &str, instances: u32) -> Value {
    json!({
        "id": id, "instances": instances, "cpus": 0.1, "mem": 32, "labels": {}, "healthChecks": [],
        "networks": [{"mode": "container", "name": "sim"}],
        "container": {"type": "DOCKER", "docker": {"image": "cov/web:1"},
            "portMappings": [{"containerPort": 8080, "servicePort": SERVICE_PORT, "protocol": "tcp"}]}
    })
}

/// The `/v1/nodes` entry of `node`.
async fn node(api: SocketAddr, node: &str) -> Result<Value, String> {
    let v = get_json(&format!("http://{api}/v1/nodes")).await?;
    v["nodes"]
        .as_array()
        .and_then(|l| l.iter().find(|n| n["node"] == node).cloned())
        .ok_or_else(|| format!("{node} not listed: {v}"))
}

/// Starts `configsrv serve` against `sim` with a short scrape and Mesos interval.
fn configsrv(
    dir: &Scratch,
    sim: &MarathonSim,
    api: SocketAddr,
    admin_port: u16,
    extra: &[&str],
) -> Proc {
    let mut args = vec![
        "serve".to_owned(),
        "--marathon".into(),
        sim.url.clone(),
        "--mesos".into(),
        sim.url.clone(),
        "--policies".into(),
        dir.path("policies").to_str().unwrap().into(),
        "--out".into(),
        dir.path("nodes").to_str().unwrap().into(),
        "--listen".into(),
        api.to_string(),
        "--meshd-admin-port".into(),
        admin_port.to_string(),
        "--scrape-interval".into(),
        format!("{}ms", SCRAPE.as_millis()),
        "--mesos-interval".into(),
        format!("{}ms", MESOS_EVERY.as_millis()),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::spawn("configsrv", &args, &dir.0)
}

fn setup(name: &str) -> Scratch {
    let dir = Scratch::new(name);
    dir.write("policies/defaults.yaml", POLICY);
    std::fs::create_dir_all(dir.path("nodes")).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_meshd_is_flagged_and_meshd_there_clears_it() {
    let dir = setup("node-coverage");
    let (a, b, c) = ("127.0.202.21", "127.0.202.22", "127.0.202.23");
    let sim = MarathonSim::start("127.0.202.100:0", &[a, b], [127, 0, 204]).await;
    sim.set_agents(&[a, b]);
    // Two tasks: one on each agent.
    assert_eq!(sim.post_app(&app_def("/cov/web", 2)).await, 201);
    let api: SocketAddr = format!("127.0.202.100:{}", free_port()).parse().unwrap();
    let admin_port = free_port();
    let _configsrv = configsrv(&dir, &sim, api, admin_port, &[]);
    let nodes_dir = dir.path("nodes");
    let start_meshd = |node: &str| meshd_scraped(node, &nodes_dir, admin_port, &dir.0);
    let _meshd_a = start_meshd(a);

    // a is covered; b, an active agent running a task, is not.
    eventually(
        "a covered, b an uncovered agent with a task",
        Duration::from_secs(20),
        || async {
            let (na, nb) = (node(api, a).await?, node(api, b).await?);
            let ok = na["covered"] == true
                && na["agent"] == true
                && na["tasks"] == 1
                && nb["covered"] == false
                && nb["agent"] == true
                && nb["hostname"] == b
                && nb["tasks"] == 1
                && nb["reachable"] == false;
            ok.then_some(()).ok_or(format!("{na} {nb}"))
        },
    )
    .await;
    eventually(
        "palisade_nodes_uncovered 1",
        Duration::from_secs(10),
        || async {
            let v = configsrv_metric(api, "palisade_nodes_uncovered ").await;
            (v == Some(1.0)).then_some(()).ok_or(format!("{v:?}"))
        },
    )
    .await;

    // The UI's nodes page marks b as an uncovered agent that runs tasks.
    let mut browser = Browser::launch("node-coverage").await;
    browser
        .goto(&format!("http://{api}/?refresh=1#/nodes"))
        .await;
    let marked = browser
        .wait_for(
            "b marked as an uncovered agent running tasks",
            "[...document.querySelectorAll('#nodes tr[data-uncovered-agent=true]')].map(r => r.innerText).join('|')",
            Duration::from_secs(20),
        )
        .await;
    let marked = marked.as_str().unwrap_or_default().to_owned();
    assert!(
        marked.contains(b) && marked.contains("uncovered, runs tasks"),
        "{marked}"
    );
    assert!(!marked.contains(a), "{marked}");
    browser
        .screenshot(&screenshot_dir().join("nodes-uncovered-agent.png"))
        .await;

    // meshd on b clears it: covered, and the gauge drops to 0.
    let _meshd_b = start_meshd(b);
    eventually("b covered", Duration::from_secs(20), || async {
        let nb = node(api, b).await?;
        (nb["covered"] == true).then_some(()).ok_or(nb.to_string())
    })
    .await;
    eventually(
        "palisade_nodes_uncovered 0",
        Duration::from_secs(10),
        || async {
            let v = configsrv_metric(api, "palisade_nodes_uncovered ").await;
            (v == Some(0.0)).then_some(()).ok_or(format!("{v:?}"))
        },
    )
    .await;
    browser
        .wait_for(
            "no uncovered agent marked",
            "document.querySelectorAll('#nodes tr[data-covered=true]').length === 2 && \
             document.querySelectorAll('#nodes tr[data-uncovered-agent=true]').length === 0",
            Duration::from_secs(20),
        )
        .await;

    // A joining agent without meshd is flagged within three scrape intervals
    // of the Mesos read that lists it, in the API and in the gauge.
    let joined = Instant::now();
    sim.set_agents(&[a, b, c]);
    eventually("c an uncovered agent", Duration::from_secs(10), || async {
        let nc = node(api, c).await?;
        let ok = nc["agent"] == true && nc["covered"] == false && nc["tasks"] == 0;
        ok.then_some(()).ok_or(nc.to_string())
    })
    .await;
    eventually(
        "palisade_nodes_uncovered 1 again",
        Duration::from_secs(10),
        || async {
            let v = configsrv_metric(api, "palisade_nodes_uncovered ").await;
            (v == Some(1.0)).then_some(()).ok_or(format!("{v:?}"))
        },
    )
    .await;
    let took = joined.elapsed();
    println!("a joining agent flagged uncovered after {took:?} (scrape interval {SCRAPE:?}, Mesos read every {MESOS_EVERY:?})");
    // The contract: three scrape intervals after the Mesos read that lists it.
    assert!(took <= MESOS_EVERY + SCRAPE * 3, "flagged after {took:?}");

    // An agent that leaves Mesos is no agent any more.
    sim.set_agents(&[a, b]);
    eventually("c no longer an agent", Duration::from_secs(10), || async {
        match node(api, c).await {
            Err(_) => Ok(()),
            Ok(nc) if nc["agent"] == false => Ok(()),
            Ok(nc) => Err(nc.to_string()),
        }
    })
    .await;
}

/// The meshd app as the simulator has it: (instances, its constraints).
async fn meshd_app(sim: &MarathonSim) -> Result<(u64, Value), String> {
    let v = get_json(&format!("{}/v2/apps/palisade/meshd", sim.url)).await?;
    let n = v["app"]["instances"].as_u64().ok_or(v.to_string())?;
    Ok((n, v["app"]["constraints"].clone()))
}

async fn wait_instances(sim: &MarathonSim, what: &str, want: u64) -> Value {
    eventually(what, Duration::from_secs(20), || async {
        let (n, constraints) = meshd_app(sim).await?;
        (n == want)
            .then_some(constraints)
            .ok_or(format!("{n} instances"))
    })
    .await
}

/// Waits until the keeper reports `outcome` with a message containing `says`.
async fn wait_keeper(api: SocketAddr, outcome: &str, says: &str) -> Value {
    eventually(
        &format!("keeper outcome {outcome}"),
        Duration::from_secs(20),
        || async {
            let v = get_json(&format!("http://{api}/v1/nodes")).await?;
            let k = v["ensure_meshd"].clone();
            let ok =
                k["outcome"] == outcome && k["message"].as_str().is_some_and(|m| m.contains(says));
            ok.then_some(k.clone()).ok_or(k.to_string())
        },
    )
    .await
}

fn meshd_json() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ops/marathon/meshd.json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_meshd_keeps_one_meshd_per_active_agent() {
    let dir = setup("ensure-meshd");
    let agents = [
        "127.0.202.31",
        "127.0.202.32",
        "127.0.202.33",
        "127.0.202.34",
    ];
    let sim = MarathonSim::start("127.0.202.100:0", &agents, [127, 0, 204]).await;
    sim.set_agents(&agents[..2]);
    let api: SocketAddr = format!("127.0.202.100:{}", free_port()).parse().unwrap();
    let file = meshd_json();
    let _configsrv = configsrv(
        &dir,
        &sim,
        api,
        free_port(),
        &[
            "--ensure-meshd",
            file.to_str().unwrap(),
            "--resync-interval",
            "1s",
        ],
    );

    // Created: one instance per active agent, at most one per host.
    let constraints = wait_instances(&sim, "meshd app created with 2 instances", 2).await;
    assert!(
        constraints
            .as_array()
            .unwrap()
            .contains(&json!(["hostname", "UNIQUE"])),
        "{constraints}"
    );
    let created = configsrv_metric(
        api,
        "palisade_ensure_meshd_actions_total{outcome=\"created\"} ",
    )
    .await;
    assert_eq!(created, Some(1.0));

    // A joining agent gets its meshd.
    sim.set_agents(&agents[..3]);
    wait_instances(&sim, "one more instance for the joining agent", 3).await;

    // Scaled down by hand and stripped of its constraint: put back at the next check.
    let status = reqwest::Client::new()
        .put(format!("{}/v2/apps/palisade/meshd", sim.url))
        .json(&json!({"instances": 1, "constraints": []}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let constraints = wait_instances(&sim, "3 instances again after a manual scale-down", 3).await;
    assert_eq!(constraints, json!([["hostname", "UNIQUE"]]));

    // A deployment in the way: 409, retried until it clears.
    sim.lock_deployments(true);
    sim.set_agents(&agents);
    wait_keeper(api, "conflict", "409").await;
    sim.lock_deployments(false);
    wait_instances(&sim, "4 instances once the deployment cleared", 4).await;

    // A failed Mesos read never shrinks it...
    sim.set_mesos_down(true);
    sim.set_agents(&agents[..1]);
    eventually("Mesos stale", Duration::from_secs(10), || async {
        let v = get_json(&format!("http://{api}/v1/status")).await?;
        (v["sources"]["mesos"]["stale"] == true)
            .then_some(())
            .ok_or(v.to_string())
    })
    .await;
    wait_keeper(api, "held", "stale").await;
    assert_eq!(meshd_app(&sim).await.unwrap().0, 4);
    // ...nor does an empty agent list.
    sim.set_agents(&[]);
    sim.set_mesos_down(false);
    wait_keeper(api, "held", "no active agent").await;
    assert_eq!(meshd_app(&sim).await.unwrap().0, 4);

    // An agent that really left (two reads agree) takes its instance away.
    sim.set_agents(&agents[..3]);
    wait_instances(&sim, "3 instances after two reads with 3 agents", 3).await;
    let scaled = configsrv_metric(
        api,
        "palisade_ensure_meshd_actions_total{outcome=\"scaled\"} ",
    )
    .await;
    assert!(scaled.is_some_and(|n| n >= 3.0), "{scaled:?}");
}

#[test]
fn a_bad_ensure_meshd_file_stops_configsrv_at_start_naming_it() {
    let dir = setup("ensure-meshd-bad");
    let bad = dir.write("meshd.json", "{\"id\": \"/palisade/meshd\",\n \"cmd\": \"meshd run\",\n \"networks\": [{\"mode\": \"container/bridge\"}]}\n");
    let broken = dir.write(
        "broken.json",
        "{\"id\": \"/palisade/meshd\",\n \"cmd\": }\n",
    );
    let run = |file: &std::path::Path, mesos: bool| {
        let mut cmd = std::process::Command::new(palisade_tests::harness::bin("configsrv"));
        cmd.args([
            "serve",
            "--marathon",
            "http://127.0.202.100:9",
            "--policies",
        ])
        .arg(dir.path("policies"))
        .args(["--listen", "127.0.202.100:0", "--ensure-meshd"])
        .arg(file);
        if mesos {
            cmd.args(["--mesos", "http://127.0.202.100:9"]);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&bad, true);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("{}: field `networks`", bad.display())),
        "{err}"
    );
    let (code, err) = run(&broken, true);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("{}:2:", broken.display())), "{err}");
    // It needs Mesos' agent list.
    let (code, err) = run(&bad, false);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--mesos"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_nothing_was_rendered_for_yet_is_listed_and_counted_uncovered() {
    let dir = setup("node-coverage-unrendered");
    let agent = "127.0.202.41";
    let sim = MarathonSim::start("127.0.202.100:0", &[agent], [127, 0, 204]).await;
    // Marathon fails: nothing is rendered, yet Mesos lists the agent.
    sim.set_fault(palisade_tests::marathon_sim::Fault::ServerError);
    let api: SocketAddr = format!("127.0.202.100:{}", free_port()).parse().unwrap();
    let _configsrv = configsrv(&dir, &sim, api, free_port(), &[]);
    eventually(
        "the agent listed uncovered",
        Duration::from_secs(20),
        || async {
            let n = node(api, agent).await?;
            let ok = n["agent"] == true && n["covered"] == false && n["rendered"] == 0;
            ok.then_some(()).ok_or(n.to_string())
        },
    )
    .await;
    eventually(
        "palisade_nodes_uncovered 1",
        Duration::from_secs(10),
        || async {
            let v = configsrv_metric(api, "palisade_nodes_uncovered ").await;
            (v == Some(1.0)).then_some(()).ok_or(format!("{v:?}"))
        },
    )
    .await;
}
