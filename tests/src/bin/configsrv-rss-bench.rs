//! configsrv memory at scale: `configsrv serve` against the Marathon
//! simulator holding APPS apps of three tasks each, spread over AGENTS agents
//! (also listed by the simulator's Mesos `/master/state`), publishing every
//! node's file to `--out` and answering every node's config read and
//! long-poll. Prints configsrv's VmRSS after the first sync, after CHANGES
//! scale changes (each one re-published to every node and to every waiting
//! long-poll), and its peak (VmHWM), from `/proc/<pid>/status`.
//!
//! `PALISADE_BIN_DIR=target/release configsrv-rss-bench APPS AGENTS CHANGES [--out]`
//!
//! Without `--out`, nodes read their configs over HTTP only; with it,
//! configsrv also writes every node's file (10 MB each at 10,000 apps: a
//! GB of fsynced writes per change, minutes on a busy disk).

use palisade_tests::harness::{free_port, Proc, Scratch};
use palisade_tests::marathon_sim::MarathonSim;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// `VmRSS` and `VmHWM` of `pid`, in KiB.
fn memory(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

fn mb(kib: u64) -> String {
    format!("{:.0} MB", kib as f64 * 1024.0 / 1e6)
}

/// Waits until configsrv's status shows more than `renders` renders over
/// `nodes` nodes; returns the render count.
async fn rendered(
    http: &reqwest::Client,
    api: &str,
    renders: u64,
    nodes: usize,
    cs: &mut Proc,
) -> anyhow::Result<u64> {
    let start = Instant::now();
    loop {
        anyhow::ensure!(cs.running(), "configsrv exited:\n{}", cs.stderr());
        if let Ok(resp) = http.get(format!("http://{api}/v1/status")).send().await {
            let s: Value = resp.json().await.unwrap_or_default();
            let r = s["renders"].as_u64().unwrap_or(0);
            if r > renders && s["nodes"].as_u64() == Some(nodes as u64) {
                return Ok(r);
            }
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(900),
            "no render over {nodes} nodes in 900 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ETag and size of the last config a node's long-poll got.
type Seen = Arc<Mutex<(String, usize)>>;

/// A node's meshd: reads its config, then long-polls for every new one,
/// keeping the ETag and size of the last it got in `seen`.
async fn follow_node(http: reqwest::Client, url: String, seen: Seen) -> anyhow::Result<()> {
    let mut etag = String::new();
    loop {
        let resp = http
            .get(format!("{url}?wait=60s"))
            .header("If-None-Match", &etag)
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::OK {
            etag = resp
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let bytes = resp.bytes().await?.len();
            *seen.lock().unwrap_or_else(PoisonError::into_inner) = (etag.clone(), bytes);
        }
    }
}

/// Waits until every node's long-poll got the config the API serves now;
/// returns the largest config's size.
async fn caught_up(
    http: &reqwest::Client,
    api: &str,
    nodes: &[(String, Seen)],
) -> anyhow::Result<usize> {
    let start = Instant::now();
    let mut largest = 0;
    for (node, seen) in nodes {
        let resp = http
            .head(format!("http://{api}/v1/nodes/{node}/config"))
            .send()
            .await?;
        let current = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        loop {
            let (etag, bytes) = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
            if etag == current {
                largest = largest.max(bytes);
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(900),
                "node {node}'s long-poll did not catch up in 900 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(largest)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let apps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let agents: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let changes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let write_files = args.next().as_deref() == Some("--out");
    anyhow::ensure!((1..=250).contains(&agents), "AGENTS must be 1..=250");
    anyhow::ensure!((1..=40_000).contains(&apps), "APPS must be 1..=40000");
    let hosts: Vec<String> = (1..=agents).map(|i| format!("127.0.204.{i}")).collect();
    let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let dir = Scratch::new("configsrv-rss");
    dir.write(
        "policies/p.yaml",
        "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: deny\napps:\n  /bench/*:\n    allow:\n      - from: /bench/*\n      - from_cidr: 10.0.0.0/8\n",
    );
    let sim = MarathonSim::start("127.0.0.1:0", &host_refs, [127, 1, 0]).await;
    let http = reqwest::Client::new();
    let t = Instant::now();
    // Posted as users would, on one kept-alive connection.
    for a in 0..apps {
        let def = json!({"id": format!("/bench/group{}/app{a}", a % 50), "instances": 3,
            "networks": [{"mode": "container"}],
            "container": {"type": "DOCKER", "portMappings": [{"containerPort": 8080, "servicePort": 10_000 + a}]}});
        let resp = http
            .post(format!("{}/v2/apps", sim.url))
            .json(&def)
            .send()
            .await?;
        anyhow::ensure!(resp.status() == 201, "posting app {a}: {}", resp.status());
    }
    eprintln!("{apps} apps posted in {:.1} s", t.elapsed().as_secs_f64());
    let api = format!("127.0.0.1:{}", free_port());
    let (policies, out) = (dir.path("policies"), dir.path("nodes"));
    let mut serve = vec![
        "serve",
        "--marathon",
        &sim.url,
        "--mesos",
        &sim.url,
        "--policies",
        policies.to_str().unwrap_or(""),
        "--listen",
        &api,
        "--marathon-timeout",
        "60s",
    ];
    if write_files {
        serve.extend(["--out", out.to_str().unwrap_or("")]);
    }
    let mut cs = Proc::spawn("configsrv", &serve, &dir.0);
    let t = Instant::now();
    let mut renders = rendered(&http, &api, 0, agents, &mut cs).await?;
    let first_sync = t.elapsed();
    let (rss_first, _) = memory(cs.pid())?;
    // Every node reads its config and keeps a long-poll open, as meshd --config-url does.
    let mut polls = Vec::new();
    let mut nodes = Vec::new();
    for h in &hosts {
        let url = format!("http://{api}/v1/nodes/{h}/config");
        let seen: Seen = Arc::new(Mutex::new((String::new(), 0)));
        polls.push(tokio::spawn(follow_node(http.clone(), url, seen.clone())));
        nodes.push((h.clone(), seen));
    }
    caught_up(&http, &api, &nodes).await?;
    for i in 0..changes {
        let app = format!("/bench/group{}/app{i}", i % 50);
        let resp = http
            .put(format!("{}/v2/apps{app}", sim.url))
            .json(&json!({"instances": 4 + i}))
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "scaling {app}: {}",
            resp.status()
        );
        renders = rendered(&http, &api, renders, agents, &mut cs).await?;
    }
    let body = caught_up(&http, &api, &nodes).await?;
    let (rss_after, peak) = memory(cs.pid())?;
    for p in polls {
        p.abort();
    }
    let files = if write_files {
        format!("{} node files and ", std::fs::read_dir(&out)?.count())
    } else {
        String::new()
    };
    // configsrv inherits the environment: say which malloc settings ran.
    let arenas = std::env::var("_RJEM_MALLOC_CONF")
        .map(|n| format!(", _RJEM_MALLOC_CONF={n}"))
        .unwrap_or_default();
    println!(
        "| {apps} apps x 3 tasks, {agents} agents ({files}{agents} long-polls, {:.1} MB per node{arenas}) | first sync {:.1} s | RSS after first sync {} | after {changes} changes {} | peak {} |",
        body as f64 / 1e6,
        first_sync.as_secs_f64(),
        mb(rss_first),
        mb(rss_after),
        mb(peak),
    );
    Ok(())
}
