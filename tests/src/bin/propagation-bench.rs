//! Propagation benchmark: from a Marathon change (a scale-up through the
//! simulator's REST API, which emits the real events) to "applied" on every
//! meshd, for N meshd on loopback. Prints p50 and p99 over the samples.
//!
//! `PALISADE_BIN_DIR=target/release propagation-bench NODES SAMPLES`

use palisade_tests::harness::{free_port, meshd, status, Proc, Scratch};
use palisade_tests::marathon_sim::MarathonSim;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

async fn generations(admins: &[SocketAddr]) -> Vec<u64> {
    let mut out = Vec::new();
    for a in admins {
        out.push(
            status(*a)
                .await
                .ok()
                .and_then(|s| s["generation"].as_u64())
                .unwrap_or(0),
        );
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let samples: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    anyhow::ensure!((1..=200).contains(&nodes), "NODES must be 1..=200");
    let hosts: Vec<String> = (0..nodes)
        .map(|i| format!("127.0.1{}.{}", 10 + i / 200, 1 + i % 200))
        .collect();
    let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let dir = Scratch::new("propagation");
    dir.write(
        "policies/p.yaml",
        "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: allow\n",
    );
    std::fs::create_dir_all(dir.path("nodes"))?;
    let sim = MarathonSim::start("127.0.0.1:0", &host_refs, [127, 0, 120]).await;
    // One task per node, so every node has a file from the start.
    let def = json!({"id": "/bench/prop", "instances": nodes, "networks": [{"mode": "container"}],
        "container": {"type": "DOCKER", "portMappings": [{"containerPort": 8080, "servicePort": 25000}]}});
    let http = reqwest::Client::new();
    http.post(format!("{}/v2/apps", sim.url))
        .json(&def)
        .send()
        .await?
        .error_for_status()?;
    let api = format!("127.0.0.1:{}", free_port());
    let (policies, out) = (dir.path("policies"), dir.path("nodes"));
    let _cs = Proc::spawn(
        "configsrv",
        &[
            "serve",
            "--marathon",
            &sim.url,
            "--policies",
            policies.to_str().unwrap_or(""),
            "--out",
            out.to_str().unwrap_or(""),
            "--listen",
            &api,
        ],
        &dir.0,
    );
    let mut meshds: Vec<Proc> = Vec::new();
    let mut admins = Vec::new();
    for h in &hosts {
        let (p, a) = meshd(h, &out, &[]);
        meshds.push(p);
        admins.push(a);
    }
    let start = Instant::now();
    while generations(&admins).await.contains(&0) {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(30),
            "meshd did not all start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut times = Vec::new();
    for i in 0..samples {
        let before = generations(&admins).await;
        let sent = Instant::now();
        http.put(format!("{}/v2/apps/bench/prop", sim.url))
            .json(&json!({"instances": nodes + 1 + i}))
            .send()
            .await?
            .error_for_status()?;
        loop {
            let now = generations(&admins).await;
            if now.iter().zip(&before).all(|(n, b)| n > b) {
                break;
            }
            anyhow::ensure!(
                sent.elapsed() < Duration::from_secs(10),
                "sample {i}: not applied everywhere in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.push(sent.elapsed());
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "| {nodes} meshd | {samples} changes | p50 {:.0} ms | p99 {:.0} ms | max {:.0} ms |",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
    Ok(())
}
