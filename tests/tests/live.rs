//! configsrv following a live (simulated) Marathon: an app posted to
//! Marathon reaches every meshd within a second; a task killed under load
//! drains with no failed connection; a failing Marathon never empties a node
//! config; meshd keeps serving while configsrv is down, and generations keep
//! rising across a configsrv restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends::{self, Backend};
use palisade_tests::client::greet_from;
use palisade_tests::harness::{eventually, free_port, meshd, status, Proc, Scratch};
use palisade_tests::marathon_sim::{Fault, MarathonSim};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const POLICY: &str = "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: deny\napps:\n  /live/*:\n    allow:\n      - from_cidr: 127.0.0.0/8\n";

fn fixture(rel: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures")
        .join(rel);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn app_def(id: &str, instances: u32, service_port: u16) -> Value {
    json!({
        "id": id, "instances": instances, "cpus": 0.1, "mem": 32, "labels": {}, "healthChecks": [],
        "networks": [{"mode": "container", "name": "sim"}],
        "container": {"type": "DOCKER", "docker": {"image": "live/echo:1"},
            "portMappings": [{"containerPort": 8080, "servicePort": service_port, "protocol": "tcp"}]}
    })
}

struct Live {
    dir: Scratch,
    sim: MarathonSim,
    api: SocketAddr,
    configsrv: Proc,
}

fn configsrv(dir: &Scratch, sim: &MarathonSim, api: SocketAddr) -> Proc {
    let (policies, out) = (dir.path("policies"), dir.path("nodes"));
    // The first Marathon URL is down: every test through here covers failover too.
    let marathons = format!("http://127.0.0.1:1,{}", sim.url);
    let args = [
        "serve",
        "--marathon",
        &marathons,
        "--policies",
        policies.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--listen",
        &api.to_string(),
        "--resync-interval",
        "300ms",
        "--marathon-timeout",
        "300ms",
    ];
    Proc::spawn("configsrv", &args, &dir.0)
}

async fn start(name: &str, hosts: &[&str], ip_base: [u8; 3]) -> Live {
    let dir = Scratch::new(name);
    dir.write("policies/live.yaml", POLICY);
    std::fs::create_dir_all(dir.path("nodes")).unwrap();
    let sim = MarathonSim::start("127.0.0.1:0", hosts, ip_base).await;
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let configsrv = configsrv(&dir, &sim, api);
    Live {
        dir,
        sim,
        api,
        configsrv,
    }
}

async fn api_status(api: SocketAddr) -> Result<Value, String> {
    let (_, body) = palisade_tests::harness::admin_get(api, "/v1/status").await?;
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

/// Waits until configsrv's `/v1/status` says `source` is (or is not) stale; returns the status.
async fn wait_stale(
    api: SocketAddr,
    source: &'static str,
    stale: bool,
    what: impl AsRef<str>,
) -> Value {
    eventually(what.as_ref(), Duration::from_secs(5), || async move {
        let s = api_status(api).await?;
        if s["sources"][source]["stale"] == stale {
            Ok(s)
        } else {
            Err(s.to_string())
        }
    })
    .await
}

async fn backends_for(sim: &MarathonSim, app: &str) -> Vec<Backend> {
    let mut out = Vec::new();
    for (task, _, ip) in sim.tasks(app) {
        out.push(backends::tcp(&format!("{ip}:8080"), &task).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_payloads_have_the_real_shapes() {
    let sim = MarathonSim::start("127.0.0.1:0", &["127.0.0.90"], [127, 0, 91]).await;
    assert_eq!(sim.post_app(&app_def("/live/shape", 1, 24000)).await, 201);
    let body = reqwest::get(format!("{}/v2/apps?embed=apps.tasks", sim.url))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // The same parser configsrv runs reads the simulator without a complaint.
    let (apps, errors) = configsrv::sources::marathon::parse_apps("sim", &body).unwrap();
    assert!(errors.is_empty() && apps.len() == 1, "{errors:?}");
    // Every field the simulator sends is one real Marathon sends too.
    let sim_json: Value = serde_json::from_slice(&body).unwrap();
    let real = [
        "marathon/apps-embed-tasks-container-network.json",
        "marathon/apps-embed-tasks-marathon15-mesos-http-healthchecks.json",
        "marathon/apps-embed-tasks-host-portdefinitions.json",
    ]
    .map(fixture);
    let real_apps: BTreeSet<String> = real.iter().flat_map(|f| keys(&f["apps"][0])).collect();
    let real_tasks: BTreeSet<String> = real
        .iter()
        .flat_map(|f| keys(&f["apps"][0]["tasks"][0]))
        .collect();
    for (what, sim_keys, real_keys) in [
        ("app", keys(&sim_json["apps"][0]), &real_apps),
        ("task", keys(&sim_json["apps"][0]["tasks"][0]), &real_tasks),
    ] {
        let extra: Vec<_> = sim_keys.difference(real_keys).collect();
        assert!(
            extra.is_empty(),
            "{what} fields no real Marathon payload has: {extra:?}"
        );
    }
    // Conflicts answer 409, like a locked deployment.
    sim.lock_deployments(true);
    assert_eq!(sim.post_app(&app_def("/live/other", 1, 24001)).await, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_posted_app_is_routed_by_every_meshd_within_a_second() {
    let live = start("live-post", &["127.0.0.81", "127.0.0.82"], [127, 0, 85]).await;
    // Placeholder app so both nodes exist before the measured one arrives.
    assert_eq!(
        live.sim.post_app(&app_def("/live/base", 2, 24100)).await,
        201
    );
    let _base = backends_for(&live.sim, "/live/base").await;
    let nodes = live.dir.path("nodes");
    let (_m1, a1) = meshd("127.0.0.81", &nodes, &[]);
    let (_m2, a2) = meshd("127.0.0.82", &nodes, &[]);
    for a in [a1, a2] {
        eventually("meshd ready", Duration::from_secs(5), || async move {
            let s = status(a).await?;
            if s["ready"] == true {
                Ok(())
            } else {
                Err(s.to_string())
            }
        })
        .await;
    }

    let posted = Instant::now();
    assert_eq!(
        live.sim.post_app(&app_def("/live/web", 2, 24101)).await,
        201
    );
    for a in [a1, a2] {
        eventually(
            "the new app routed on every node",
            Duration::from_secs(1),
            || async move {
                let s = status(a).await?;
                let routed = s["services"].as_array().into_iter().flatten().any(|svc| {
                    svc["port"] == 24101 && svc["backends"].as_array().is_some_and(|b| b.len() == 2)
                });
                if routed {
                    Ok(())
                } else {
                    Err(s.to_string())
                }
            },
        )
        .await;
    }
    let took = posted.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    let _web = backends_for(&live.sim, "/live/web").await;
    let (_, name) = greet_from("127.0.86.1", "127.0.0.81:24101".parse().unwrap())
        .await
        .unwrap();
    assert!(name.starts_with("live_web."), "{name}");
    eprintln!("POST to routed on both nodes: {took:?}");
    drop(live.configsrv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_task_drains_under_load_with_no_failed_connection() {
    let live = start("live-kill", &["127.0.0.87"], [127, 0, 88]).await;
    assert_eq!(
        live.sim.post_app(&app_def("/live/kill", 2, 24200)).await,
        201
    );
    let mut backends = backends_for(&live.sim, "/live/kill").await;
    let (_m, admin) = meshd("127.0.0.87", &live.dir.path("nodes"), &[]);
    let svc = "127.0.0.87:24200".parse().unwrap();
    eventually("both tasks routed", Duration::from_secs(5), || async move {
        let s = status(admin).await?;
        let n = s["services"][0]["backends"].as_array().map_or(0, Vec::len);
        if n == 2 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    })
    .await;

    let victim = live.sim.tasks("/live/kill")[0].0.clone();
    let load = tokio::spawn(async move {
        let (mut ok, mut failed) = (0, Vec::new());
        let end = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < end {
            match greet_from("127.0.89.1", svc).await {
                Ok((mut c, _)) => match c.echo("x").await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e),
                },
                Err(e) => failed.push(e),
            }
        }
        (ok, failed)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // TASK_KILLING now, TASK_KILLED 300 ms later; the process dies after that.
    live.sim
        .kill_task("/live/kill", &victim, Duration::from_millis(300))
        .await;
    eventually(
        "the killed task is gone from meshd",
        Duration::from_secs(2),
        || {
            let victim = victim.clone();
            async move {
                let s = status(admin).await?;
                let gone = !s["services"][0]["backends"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|b| b["task"] == victim.as_str());
                if gone {
                    Ok(())
                } else {
                    Err(s.to_string())
                }
            }
        },
    )
    .await;
    backends.retain(|b| b.name != victim);
    let (ok, failed) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} failed of {}: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 50, "{ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_marathon_never_empties_a_node_and_restarts_keep_generations_rising() {
    let mut live = start("live-faults", &["127.0.0.93"], [127, 0, 94]).await;
    assert_eq!(
        live.sim.post_app(&app_def("/live/keep", 1, 24300)).await,
        201
    );
    let file = live.dir.path("nodes/127.0.0.93.yaml");
    let first = eventually("the node file is written", Duration::from_secs(5), || {
        let file = file.clone();
        async move { std::fs::read_to_string(&file).map_err(|e| e.to_string()) }
    })
    .await;
    let generation = |text: &str| schemas::parse_node_config("n", text).unwrap().generation.0;
    let (_m, admin) = meshd("127.0.0.93", &live.dir.path("nodes"), &[]);
    let _b = backends_for(&live.sim, "/live/keep").await;
    eventually("meshd serves", Duration::from_secs(5), || async move {
        greet_from("127.0.95.1", "127.0.0.93:24300".parse().unwrap())
            .await
            .map(|_| ())
    })
    .await;

    for fault in [
        Fault::ServerError,
        Fault::Hang,
        Fault::Truncated,
        Fault::Empty,
    ] {
        live.sim.set_fault(fault);
        let api = live.api;
        let s = wait_stale(
            api,
            "marathon",
            true,
            format!("{fault:?} marks Marathon stale"),
        )
        .await;
        assert!(
            s["sources"]["marathon"]["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty()),
            "{s}"
        );
        let (_, metrics) = palisade_tests::harness::admin_get(api, "/metrics")
            .await
            .unwrap();
        assert!(
            metrics.contains("palisade_source_stale{source=\"marathon\"} 1"),
            "{fault:?}"
        );
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            first,
            "{fault:?} changed the node file"
        );
        live.sim.set_fault(Fault::None);
        wait_stale(api, "marathon", false, "Marathon fresh again").await;
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            first,
            "recovering from {fault:?} changed nothing"
        );
    }

    // configsrv stops: meshd keeps serving. It restarts and a change gets a higher generation.
    let before = generation(&first);
    assert_eq!(live.configsrv.terminate(Duration::from_secs(5)), Some(0));
    let (_, name) = greet_from("127.0.95.1", "127.0.0.93:24300".parse().unwrap())
        .await
        .expect("meshd serves without configsrv");
    assert!(name.starts_with("live_keep."));
    live.configsrv = configsrv(&live.dir, &live.sim, live.api);
    reqwest::Client::new()
        .put(format!("{}/v2/apps/live/keep", live.sim.url))
        .json(&json!({"instances": 2}))
        .send()
        .await
        .unwrap();
    let file2 = file.clone();
    let after = eventually(
        "a higher generation after the restart",
        Duration::from_secs(5),
        || {
            let file = file2.clone();
            async move {
                let g = generation(&std::fs::read_to_string(&file).map_err(|e| e.to_string())?);
                if g > before {
                    Ok(g)
                } else {
                    Err(format!("still {g}"))
                }
            }
        },
    )
    .await;
    assert!(after > before);
    let _ = status(admin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshd_long_polls_the_api_and_starts_from_its_cache() {
    let mut live = start("live-url", &["127.0.0.96"], [127, 0, 97]).await;
    assert_eq!(
        live.sim.post_app(&app_def("/live/url", 1, 24400)).await,
        201
    );
    let _b = backends_for(&live.sim, "/live/url").await;
    let api = live.api;

    // The API: an ETag, 304 after the wait when nothing changed, 200 at once on a change.
    let url = format!("http://{api}/v1/nodes/127.0.0.96/config");
    let client = reqwest::Client::new();
    let first = eventually("the node config is served", Duration::from_secs(5), || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client.get(&url).send().await.map_err(|e| e.to_string())?;
            if r.status() == 200 {
                Ok(r)
            } else {
                Err(r.status().to_string())
            }
        }
    })
    .await;
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let started = Instant::now();
    let r = client
        .get(format!("{url}?wait=700ms"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    let waiting = tokio::spawn({
        let (client, url, etag) = (client.clone(), url.clone(), etag.clone());
        async move {
            client
                .get(format!("{url}?wait=10s"))
                .header("if-none-match", etag)
                .send()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let changed_at = Instant::now();
    client
        .put(format!("{}/v2/apps/live/url", live.sim.url))
        .json(&json!({"instances": 2}))
        .send()
        .await
        .unwrap();
    let r = waiting.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
    assert!(
        changed_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        changed_at.elapsed()
    );
    let (task2, _, ip2) = live.sim.tasks("/live/url")[1].clone();
    let _b2 = backends::tcp(&format!("{ip2}:8080"), &task2).await;

    // meshd follows the API into its cache.
    let cache = live.dir.path("cache");
    let base = format!("http://{api}");
    let extra = [
        "--config-url",
        base.as_str(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let args = |admin: SocketAddr| {
        let mut a = vec![
            "run".to_owned(),
            "--node".into(),
            "127.0.0.96".into(),
            "--admin".into(),
            admin.to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let spawn = |admin: SocketAddr| {
        let a = args(admin);
        Proc::spawn(
            "meshd",
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            &live.dir.0,
        )
    };
    let mut mesh = spawn(admin);
    eventually(
        "meshd routes from the API",
        Duration::from_secs(5),
        || async move {
            let s = status(admin).await?;
            let n = s["services"][0]["backends"].as_array().map_or(0, Vec::len);
            if n == 2 {
                Ok(())
            } else {
                Err(s.to_string())
            }
        },
    )
    .await;
    // The config is applied first and cached right after: wait for the file.
    let cached = cache.join("127.0.0.96.yaml");
    eventually("meshd caches the config", Duration::from_secs(5), || {
        let cached = cached.clone();
        async move {
            if cached.exists() {
                Ok(())
            } else {
                Err(format!("{} missing", cached.display()))
            }
        }
    })
    .await;

    // configsrv goes away; a restarted meshd starts from its cache.
    assert_eq!(live.configsrv.terminate(Duration::from_secs(5)), Some(0));
    assert_eq!(mesh.terminate(Duration::from_secs(5)), Some(0));
    let admin2: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _mesh2 = spawn(admin2);
    eventually(
        "meshd serves from its cache",
        Duration::from_secs(5),
        || async move {
            greet_from("127.0.98.1", "127.0.0.96:24400".parse().unwrap())
                .await
                .map(|_| ())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_gate_tasks_and_idle_agents_get_a_node() {
    let dir = Scratch::new("live-health");
    dir.write("policies/live.yaml", POLICY);
    std::fs::create_dir_all(dir.path("nodes")).unwrap();
    let sim = MarathonSim::start("127.0.0.1:0", &["127.0.0.101"], [127, 0, 102]).await;
    sim.set_agents(&["127.0.0.101", "127.0.0.103"]);
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (policies, out) = (dir.path("policies"), dir.path("nodes"));
    let _cs = Proc::spawn(
        "configsrv",
        &[
            "serve",
            "--marathon",
            &sim.url,
            "--mesos",
            &sim.url,
            "--policies",
            policies.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--listen",
            &api.to_string(),
        ],
        &dir.0,
    );
    let mut def = app_def("/live/checked", 1, 24500);
    def["healthChecks"] = json!([{"protocol": "MESOS_HTTP", "path": "/", "portIndex": 0}]);
    assert_eq!(sim.post_app(&def).await, 201);
    let task = sim.tasks("/live/checked")[0].0.clone();
    let file = dir.path("nodes/127.0.0.101.yaml");
    let health = |want: &'static str| {
        let file = file.clone();
        async move {
            let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
            let c = schemas::parse_node_config("n", &text).map_err(|e| format!("{e:?}"))?;
            let got = c
                .services
                .first()
                .and_then(|s| s.backends.first())
                .map(|b| format!("{:?}", b.health).to_lowercase());
            if got.as_deref() == Some(want) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        }
    };
    eventually(
        "a new task waits for its health checks",
        Duration::from_secs(5),
        || health("unhealthy"),
    )
    .await;
    sim.set_health("/live/checked", &task, true);
    eventually("passing checks let it in", Duration::from_secs(2), || {
        health("healthy")
    })
    .await;
    sim.set_health("/live/checked", &task, false);
    eventually(
        "a failing check takes it out",
        Duration::from_secs(2),
        || health("unhealthy"),
    )
    .await;
    // The Mesos agent with no task still gets its file.
    eventually("the idle agent's node file", Duration::from_secs(5), || {
        let p = dir.path("nodes/127.0.0.103.yaml");
        async move {
            std::fs::read_to_string(&p)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_edits_apply_and_bad_ones_keep_the_last_good_settings() {
    let live = start("live-policy", &["127.0.0.104"], [127, 0, 105]).await;
    live.dir.write(
        "policies/web.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps:\n  /live/pol:\n    balance: least_request\n",
    );
    assert_eq!(
        live.sim.post_app(&app_def("/live/pol", 1, 24600)).await,
        201
    );
    assert_eq!(
        live.sim.post_app(&app_def("/live/two", 1, 24601)).await,
        201
    );
    let file = live.dir.path("nodes/127.0.0.104.yaml");
    let balance_of = |port: u16| {
        let file = file.clone();
        move || {
            let file = file.clone();
            async move {
                let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
                let c = schemas::parse_node_config("n", &text).map_err(|e| format!("{e:?}"))?;
                let svc = c
                    .services
                    .iter()
                    .find(|s| s.port.0 == port)
                    .ok_or("no service")?;
                Ok::<String, String>(format!("{:?}", svc.balance))
            }
        }
    };
    let wait_for = |port: u16, want: &'static str| {
        let f = balance_of(port);
        async move {
            eventually(
                &format!("port {port} balanced by {want}"),
                Duration::from_secs(5),
                || {
                    let f = f.clone();
                    async move {
                        let got = f().await?;
                        if got == want {
                            Ok(())
                        } else {
                            Err(got)
                        }
                    }
                },
            )
            .await
        }
    };
    wait_for(24600, "LeastRequest").await;

    // An edit applies.
    live.dir.write(
        "policies/web.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps:\n  /live/pol:\n    balance: source_hash\n",
    );
    wait_for(24600, "SourceHash").await;

    // A file with a broken format changes nothing and is reported.
    live.dir.write(
        "policies/broken.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps: [oops\n",
    );
    let api = live.api;
    let s = wait_stale(api, "policy", true, "the broken file is reported").await;
    assert!(
        s["sources"]["policy"]["error"]
            .as_str()
            .unwrap()
            .contains("broken.yaml:"),
        "{s}"
    );
    assert_eq!(balance_of(24600)().await.unwrap(), "SourceHash");
    std::fs::remove_file(live.dir.path("policies/broken.yaml")).unwrap();

    // One invalid app keeps its last good settings; the other app's change applies.
    live.dir.write(
        "policies/web.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps:\n  /live/pol:\n    balance: random\n  /live/two:\n    balance: p2c_ewma\n",
    );
    wait_for(24601, "P2cEwma").await;
    assert_eq!(balance_of(24600)().await.unwrap(), "SourceHash");
    let s = api_status(api).await.unwrap();
    assert!(
        s["sources"]["policy"]["error"]
            .as_str()
            .unwrap()
            .contains("web.yaml:5:"),
        "{s}"
    );
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=palisade-test",
            "-c",
            "user.email=test@palisade.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn commit_and_push(work: &std::path::Path, file: &str, body: &str, msg: &str) -> String {
    std::fs::write(work.join(file), body).unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", msg]);
    git(work, &["push", "-q", "origin", "HEAD:main"]);
    git(work, &["rev-parse", "HEAD"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitops_applies_good_commits_and_keeps_running_on_a_bad_one() {
    let dir = Scratch::new("live-git");
    let (bare, work) = (dir.path("policies.git"), dir.path("work"));
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    let first = commit_and_push(&work, "p.yaml", POLICY, "allow the live group");
    dir.write("token", "s3cret\n");
    std::fs::create_dir_all(dir.path("nodes")).unwrap();

    let sim = MarathonSim::start("127.0.0.1:0", &["127.0.0.106"], [127, 0, 107]).await;
    assert_eq!(sim.post_app(&app_def("/live/git", 1, 24700)).await, 201);
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let spec = format!("{}#main", bare.display());
    let (checkout, out, token) = (dir.path("checkout"), dir.path("nodes"), dir.path("token"));
    let _cs = Proc::spawn(
        "configsrv",
        &[
            "serve",
            "--marathon",
            &sim.url,
            "--policies-git",
            &spec,
            "--git-checkout",
            checkout.to_str().unwrap(),
            "--git-interval",
            "1h",
            "--api-token-file",
            token.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--listen",
            &api.to_string(),
        ],
        &dir.0,
    );
    let file = dir.path("nodes/127.0.0.106.yaml");
    let commit_in_file = |want: String| {
        let file = file.clone();
        move || {
            let (file, want) = (file.clone(), want.clone());
            async move {
                let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
                let c = schemas::parse_node_config("n", &text).map_err(|e| format!("{e:?}"))?;
                if c.policy_commit.as_deref() == Some(want.as_str()) {
                    Ok(c)
                } else {
                    Err(format!("{:?}", c.policy_commit))
                }
            }
        }
    };
    eventually(
        "the first commit runs",
        Duration::from_secs(5),
        commit_in_file(first.clone()),
    )
    .await;

    // The push webhook needs the token.
    let hook = format!("http://{api}/v1/hooks/git");
    let client = reqwest::Client::new();
    assert_eq!(client.post(&hook).send().await.unwrap().status(), 401);
    assert_eq!(
        client
            .post(&hook)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // A good commit is applied on push.
    let second = commit_and_push(
        &work,
        "p.yaml",
        &POLICY.replace("allow:", "balance: least_request\n    allow:"),
        "balance by load",
    );
    assert_eq!(
        client
            .post(&hook)
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    let c = eventually(
        "the second commit runs",
        Duration::from_secs(5),
        commit_in_file(second.clone()),
    )
    .await;
    assert_eq!(c.services[0].balance, schemas::Balance::LeastRequest);

    // A bad commit: the previous one keeps running, and the error shows.
    commit_and_push(
        &work,
        "p.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps:\n  /live/*:\n    protocol: sctp\n",
        "broken",
    );
    assert_eq!(
        client
            .post(&hook)
            .bearer_auth("s3cret")
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    let s = wait_stale(api, "policy", true, "the bad commit is reported").await;
    assert!(
        s["sources"]["policy"]["error"]
            .as_str()
            .unwrap()
            .contains("p.yaml:5:"),
        "{s}"
    );
    assert_eq!(s["policy_commit"], second.as_str());
    commit_in_file(second.clone())().await.unwrap();
    let (_, metrics) = palisade_tests::harness::admin_get(api, "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("palisade_policy_commit{{commit=\"{second}\"}} 1")),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_dcos_tokens_reach_a_secured_marathon() {
    let dir = Scratch::new("live-auth");
    dir.write("policies/live.yaml", POLICY);
    dir.write("token", "dcos-acs-token\n");
    let sim = MarathonSim::start("127.0.0.1:0", &["127.0.0.108"], [127, 0, 109]).await;
    assert_eq!(sim.post_app(&app_def("/live/auth", 1, 24800)).await, 201);
    let with_user = sim.url.replacen("http://", "http://ops:s3cret@", 1);
    for (marathon, header, extra) in [
        (with_user.clone(), "Basic b3BzOnMzY3JldA==", None),
        (
            sim.url.clone(),
            "token=dcos-acs-token",
            Some(dir.path("token")),
        ),
    ] {
        sim.require_authorization(Some(header));
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let policies = dir.path("policies");
        let mut args = vec![
            "serve".to_owned(),
            "--marathon".into(),
            marathon,
            "--policies".into(),
            policies.display().to_string(),
            "--listen".into(),
            api.to_string(),
        ];
        if let Some(t) = &extra {
            args.extend(["--marathon-token-file".to_owned(), t.display().to_string()]);
        }
        let _cs = Proc::spawn(
            "configsrv",
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &dir.0,
        );
        eventually(
            &format!("configsrv reads Marathon with {header}"),
            Duration::from_secs(5),
            || async move {
                let s = api_status(api).await?;
                if s["apps"] == 1 && s["sources"]["marathon"]["stale"] == false {
                    Ok(())
                } else {
                    Err(s.to_string())
                }
            },
        )
        .await;
    }
    // Wrong credentials: refused, and configsrv says so.
    sim.require_authorization(Some("Basic bm9ib2R5Om5vcGU="));
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let policies = dir.path("policies");
    let _cs = Proc::spawn(
        "configsrv",
        &[
            "serve",
            "--marathon",
            &with_user,
            "--policies",
            policies.to_str().unwrap(),
            "--listen",
            &api.to_string(),
        ],
        &dir.0,
    );
    let s = wait_stale(api, "marathon", true, "a 401 marks Marathon stale").await;
    assert!(
        s["sources"]["marathon"]["error"]
            .as_str()
            .unwrap()
            .contains("401"),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_event_stream_is_reopened() {
    let dir = Scratch::new("live-silent");
    dir.write("policies/live.yaml", POLICY);
    let sim = MarathonSim::start("127.0.0.1:0", &["127.0.0.110"], [127, 0, 111]).await;
    sim.mute_streams(true);
    let api = format!("127.0.0.1:{}", free_port());
    let policies = dir.path("policies");
    let _cs = Proc::spawn(
        "configsrv",
        &[
            "serve",
            "--marathon",
            &sim.url,
            "--policies",
            policies.to_str().unwrap(),
            "--listen",
            &api,
            "--stream-silence",
            "1s",
        ],
        &dir.0,
    );
    let s = &sim;
    eventually(
        "configsrv reopens a silent stream",
        Duration::from_secs(8),
        || async move {
            let n = s.streams_opened();
            if n >= 3 {
                Ok(())
            } else {
                Err(format!("{n} streams opened"))
            }
        },
    )
    .await;
    // With heartbeats flowing, the stream stays open.
    sim.mute_streams(false);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let settled = sim.streams_opened();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sim.streams_opened(),
        settled,
        "a stream with heartbeats must not be reopened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_marathon_is_trusted_through_a_custom_ca_only() {
    let dir = Scratch::new("live-tls");
    dir.write("policies/live.yaml", POLICY);
    let sim = MarathonSim::start("127.0.0.1:0", &["127.0.0.112"], [127, 0, 113]).await;
    assert_eq!(sim.post_app(&app_def("/live/tls", 1, 24900)).await, 201);
    let test_ca = palisade_tests::certs::TestCa::new("marathon CA");
    let tls = test_ca
        .tls_front(
            "127.0.0.1:0",
            sim.url.trim_start_matches("http://"),
            &["127.0.0.1"],
        )
        .await;
    let ca = dir.write("ca.pem", &test_ca.pem);
    let https = format!("https://{tls}");
    let policies = dir.path("policies");
    for (trusted, want_stale) in [(true, false), (false, true)] {
        let api = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "serve",
            "--marathon",
            &https,
            "--policies",
            policies.to_str().unwrap(),
            "--listen",
            &api,
        ];
        if trusted {
            args.extend(["--marathon-ca", ca.to_str().unwrap()]);
        }
        let _cs = Proc::spawn("configsrv", &args, &dir.0);
        let api: SocketAddr = api.parse().unwrap();
        eventually(
            &format!("trusted={trusted}"),
            Duration::from_secs(5),
            || async move {
                let s = api_status(api).await?;
                let stale = s["sources"]["marathon"]["stale"].as_bool();
                if stale == Some(want_stale) {
                    Ok(())
                } else {
                    Err(s.to_string())
                }
            },
        )
        .await;
    }
}
