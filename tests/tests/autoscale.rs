//! Autoscaling end to end: `configsrv serve --autoscale --mesos` follows the
//! Marathon simulator (which answers for Mesos too), two meshd on
//! 127.0.200.201-202 are scraped every 250 ms, and a bounded load loop sends
//! HTTP requests through meshd. The scaler asks the simulator for more
//! instances of `/as/web` (a 409 first, retried), and after the load stops
//! brings it back to `min` one step at a time; `/as/dry` (dry run) is only
//! recorded; `/as/big`, whose next instance fits on no agent, is refused with
//! a capacity reason; a deployment in progress holds the app; a 403 is an
//! error naming the credentials. No PUT ever
//! carries `force`. The web UI's app page lists the app's decisions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::harness::{eventually, free_port, meshd_scraped, Proc, Scratch};
use palisade_tests::marathon_sim::MarathonSim;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NODES: [&str; 2] = ["127.0.200.201", "127.0.200.202"];
const WEB_PORT: u16 = 42100;
const DRY_PORT: u16 = 42101;
const BIG_PORT: u16 = 42102;
const POLICY: &str = "apiVersion: palisade/v1
kind: Policy
defaults:
  action: allow
apps:
  /as/web:
    protocol: http
    autoscale:
      metric: rps_per_instance
      target: 4
      min: 1
      max: 4
      max_step: 2
      window: 2s
      scale_up_cooldown: 1s
      scale_down_cooldown: 2s
  /as/dry:
    autoscale: {metric: rps_per_instance, target: 4, min: 2, max: 4, window: 2s, dry_run: true}
  /as/big:
    autoscale: {metric: active_connections_per_instance, target: 10, min: 2, max: 4, window: 2s}
";

fn app_def(id: &str, instances: u32, service_port: u16, cpus: f64) -> Value {
    json!({
        "id": id, "instances": instances, "cpus": cpus, "mem": 64, "labels": {}, "healthChecks": [],
        "networks": [{"mode": "container", "name": "sim"}],
        "container": {"type": "DOCKER", "docker": {"image": "as/web:1"},
            "portMappings": [{"containerPort": 8080, "servicePort": service_port, "protocol": "tcp"}]}
    })
}

async fn decisions(api: SocketAddr) -> Vec<Value> {
    let Ok(resp) = reqwest::get(format!("http://{api}/v1/autoscale/decisions")).await else {
        return Vec::new();
    };
    resp.json::<Vec<Value>>().await.unwrap_or_default()
}

fn line(d: &Value) -> String {
    format!(
        "{} {:<13} {} -> {}  {}={}  target {}  ({})",
        d["app"].as_str().unwrap_or("?"),
        d["outcome"].as_str().unwrap_or("?"),
        d["from"],
        d["to"],
        d["metric"].as_str().unwrap_or("?"),
        d["value"]
            .as_f64()
            .map_or("null".into(), |v| format!("{v:.1}")),
        d["target"],
        d["reason"].as_str().unwrap_or("")
    )
}

/// HTTP requests to `/as/web` through the first node's meshd, one after
/// another, until `stop` or 40 s; counts the answers.
fn load(stop: Arc<AtomicBool>, answered: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(40);
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            if client
                .get(format!("http://{}:{WEB_PORT}/", NODES[0]))
                .send()
                .await
                .is_ok()
            {
                answered.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_scales_up_idle_scales_down_to_min_dry_run_sends_nothing_and_no_room_is_refused() {
    let dir = Scratch::new("autoscale");
    dir.write("policies/apps.yaml", POLICY);
    std::fs::create_dir_all(dir.path("nodes")).unwrap();
    let sim = MarathonSim::start("127.0.0.1:0", &NODES, [127, 0, 200]).await;
    // 3 cpus per agent: /as/big (4 cpus an instance) never fits.
    for n in NODES {
        sim.set_agent_capacity(n, 3.0, 4096.0);
    }
    assert_eq!(
        sim.post_app(&app_def("/as/web", 1, WEB_PORT, 0.1)).await,
        201
    );
    assert_eq!(
        sim.post_app(&app_def("/as/dry", 1, DRY_PORT, 0.1)).await,
        201
    );
    assert_eq!(
        sim.post_app(&app_def("/as/big", 1, BIG_PORT, 4.0)).await,
        201
    );
    let (_, _, web_ip) = sim.tasks("/as/web")[0].clone();
    let _web = backends::http(&format!("{web_ip}:8080"), "web-1").await;
    // The first scale-up meets a deployment: 409, then retried.
    sim.refuse_writes(409, 1);

    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin_port = free_port();
    let nodes_dir = dir.path("nodes");
    let started = Instant::now();
    let _configsrv = Proc::spawn(
        "configsrv",
        &[
            "serve",
            "--autoscale",
            "--marathon",
            &sim.url,
            "--mesos",
            &sim.url,
            "--policies",
            dir.path("policies").to_str().unwrap(),
            "--out",
            nodes_dir.to_str().unwrap(),
            "--listen",
            &api.to_string(),
            "--meshd-admin-port",
            &admin_port.to_string(),
            "--scrape-interval",
            "250ms",
            "--window",
            "1m",
        ],
        &dir.0,
    );
    let _meshd: Vec<Proc> = NODES
        .iter()
        .map(|node| meshd_scraped(node, &nodes_dir, admin_port, &dir.0))
        .collect();

    // Idle at first: /as/big is refused for room, /as/dry only recorded.
    let found = |all: &[Value], app: &str, outcome: &str| {
        all.iter()
            .find(|d| d["app"] == app && d["outcome"] == outcome)
            .cloned()
    };
    let refusal = eventually(
        "a capacity refusal for /as/big",
        Duration::from_secs(20),
        || async {
            let all = decisions(api).await;
            found(&all, "/as/big", "capacity").ok_or_else(|| format!("{all:?}"))
        },
    )
    .await;
    assert_eq!(
        (refusal["from"].as_u64(), refusal["to"].as_u64()),
        (Some(1), Some(1))
    );
    let reason = refusal["reason"].as_str().unwrap();
    assert!(
        reason.contains("no room in Mesos") && reason.contains("4 cpus"),
        "{reason}"
    );
    let dry = eventually(
        "a dry-run decision for /as/dry",
        Duration::from_secs(10),
        || async {
            let all = decisions(api).await;
            found(&all, "/as/dry", "dry_run").ok_or_else(|| format!("{all:?}"))
        },
    )
    .await;
    assert_eq!(
        (dry["from"].as_u64(), dry["to"].as_u64()),
        (Some(1), Some(2))
    );

    // Load: the figure rises, the first PUT meets a 409, the retry scales up.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let loader = load(Arc::clone(&stop), Arc::clone(&answered));
    let up = eventually("a scale-up of /as/web", Duration::from_secs(30), || async {
        let all = decisions(api).await;
        found(&all, "/as/web", "scaled_up").ok_or_else(|| {
            format!(
                "{} answered; {:?}",
                answered.load(Ordering::Relaxed),
                all.first()
            )
        })
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    loader.await.unwrap();
    assert!(up["to"].as_u64() > up["from"].as_u64(), "{up}");
    assert!(up["value"].as_f64().unwrap() > 4.0 * 1.1, "{up}");
    let puts = sim.puts();
    assert_eq!(puts[0].status, 409, "{puts:?}");
    assert_eq!(puts[0].app, "/as/web");
    assert_eq!(puts[1].status, 200, "{puts:?}");
    assert!(puts[1].body["instances"].as_u64().unwrap() >= 2, "{puts:?}");
    let conflict =
        found(&decisions(api).await, "/as/web", "deployment").expect("the 409 is recorded");
    assert!(
        conflict["reason"].as_str().unwrap().contains("409"),
        "{conflict}"
    );

    // Idle again: back to min 1, one step at a time after the cooldown.
    let web_instances = |puts: &[palisade_tests::marathon_sim::Put]| {
        puts.iter()
            .filter(|p| p.app == "/as/web" && p.status == 200)
            .map(|p| p.body["instances"].as_u64().unwrap())
            .collect::<Vec<u64>>()
    };
    eventually("/as/web back at min", Duration::from_secs(40), || async {
        let seen = web_instances(&sim.puts());
        if seen.last() == Some(&1) {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
    let seen = web_instances(&sim.puts());
    let peak = seen
        .iter()
        .position(|n| Some(n) == seen.iter().max())
        .unwrap();
    assert!(
        seen[peak..].windows(2).all(|w| w[1] + 1 == w[0]),
        "down one step at a time: {seen:?}"
    );
    assert!(seen[peak] >= 2, "{seen:?}");
    let downs: Vec<Value> = decisions(api)
        .await
        .into_iter()
        .filter(|d| d["app"] == "/as/web" && d["outcome"] == "scaled_down")
        .collect();
    assert_eq!(downs.len() as u64, seen[peak] - 1, "{downs:?}");

    // Never forced; the dry run and the refused app were never written.
    let puts = sim.puts();
    assert!(
        puts.iter()
            .all(|p| p.query.as_deref().is_none_or(|q| !q.contains("force"))),
        "{puts:?}"
    );
    assert!(puts.iter().all(|p| p.app == "/as/web"), "{puts:?}");
    assert_eq!(sim.tasks("/as/dry").len(), 1);
    assert_eq!(sim.tasks("/as/big").len(), 1);
    // Gentle with Marathon: a hold is not a read every 250 ms scrape (four
    // reads a second per app), only every 30 s (10 s while a capacity
    // refusal stands).
    let secs = started.elapsed().as_secs() as usize;
    for (app, most) in [("/as/dry", secs / 30 + 2), ("/as/big", secs / 10 + 2)] {
        let reads = sim.app_reads(app);
        assert!(
            (1..=most).contains(&reads),
            "{app} read {reads} times in {secs} s"
        );
    }

    // The metric counts decisions per app and outcome.
    let metrics = reqwest::get(format!("http://{api}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "palisade_autoscale_decisions_total{app=\"/as/web\",outcome=\"scaled_up\"}",
        "palisade_autoscale_decisions_total{app=\"/as/web\",outcome=\"scaled_down\"}",
        "palisade_autoscale_decisions_total{app=\"/as/big\",outcome=\"capacity\"}",
        "palisade_autoscale_decisions_total{app=\"/as/dry\",outcome=\"dry_run\"}",
    ] {
        assert!(metrics.contains(want), "{want} missing:\n{metrics}");
    }

    // Load while a deployment of the app runs: no action, said why.
    sim.hold_deployment("/as/web", true);
    let puts_before = sim.puts().len();
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(Arc::clone(&stop), Arc::clone(&answered));
    let held = eventually(
        "a hold for the deployment",
        Duration::from_secs(30),
        || async {
            let all = decisions(api).await;
            all.iter()
                .find(|d| {
                    d["app"] == "/as/web"
                        && d["outcome"] == "deployment"
                        && d["reason"].as_str().unwrap_or("").contains("in progress")
                })
                .cloned()
                .ok_or_else(|| format!("{:?}", all.first()))
        },
    )
    .await;
    assert_eq!(
        (held["from"].as_u64(), held["to"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(sim.puts().len(), puts_before);

    // The deployment ends; the scale-up is then refused (403): an error
    // that names the credentials, and nothing changes.
    sim.refuse_writes(403, 1);
    sim.hold_deployment("/as/web", false);
    let refused = eventually("a 403 reported", Duration::from_secs(30), || async {
        let all = decisions(api).await;
        found(&all, "/as/web", "error").ok_or_else(|| format!("{:?}", all.first()))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    loader.await.unwrap();
    let reason = refused["reason"].as_str().unwrap();
    assert!(
        reason.contains("403") && reason.contains("credentials"),
        "{reason}"
    );
    assert_eq!(refused["from"], refused["to"], "{refused}");
    assert_eq!(sim.puts().last().map(|p| p.status), Some(403));

    // The web UI's app page shows the app's decisions.
    let mut b = palisade_tests::browser::Browser::launch("autoscale").await;
    b.goto(&format!("http://{api}/#/app/%2Fas%2Fweb")).await;
    b.wait_for(
        "the app page's autoscaling decisions",
        "document.querySelector('#autoscale-decisions tr[data-outcome=scaled_down]')",
        Duration::from_secs(20),
    )
    .await;
    let table = b
        .eval("document.querySelector('#autoscale-decisions').innerText")
        .await;
    let table = table.as_str().unwrap();
    for want in ["scaled_up", "scaled_down", "2 → 1", "rps_per_instance"] {
        assert!(table.contains(want), "{want} on the app page: {table}");
    }
    assert!(!table.contains("/as/big"), "{table}");
    assert_eq!(
        b.eval("JSON.stringify([window.palisadeUi.errors, window.palisadeUi.violations])")
            .await,
        json!("[[],[]]")
    );

    // The decision log, oldest first, for the record.
    let all = decisions(api).await;
    eprintln!(
        "---- autoscale decisions ({} requests answered under load) ----",
        answered.load(Ordering::Relaxed)
    );
    for d in all.iter().rev() {
        eprintln!("decision: {}", line(d));
    }
}
