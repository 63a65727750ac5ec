//! The Marathon simulator as a program, for the demo and for trying
//! configsrv by hand. It answers Marathon's REST API and `/v2/events`, and
//! Mesos' `/master/state`, on loopback.
//!
//! `marathon-sim LISTEN HOSTS IP_BASE [APPS.json]`, e.g.
//! `marathon-sim 127.0.0.1:8080 127.0.0.2,127.0.0.3 127.0.1 examples/cluster/marathon-apps.json`:
//! agents 127.0.0.2 and 127.0.0.3, task addresses 127.0.1.N, and the apps of
//! a `/v2/apps` body started (their `tasks` are ignored; `instances` count),
//! with their health checks passing.

use palisade_tests::marathon_sim::MarathonSim;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, hosts, base, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: marathon-sim LISTEN HOSTS IP_BASE [APPS.json]");
    };
    let addr: std::net::SocketAddr = listen.parse()?;
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "the simulator listens on loopback only"
    );
    let octets: Vec<u8> = base.split('.').map(str::parse).collect::<Result<_, _>>()?;
    let [a, b, c] = octets[..] else {
        anyhow::bail!("IP_BASE is three octets, like 127.0.1")
    };
    anyhow::ensure!(a == 127, "task addresses stay on 127.0.0.0/8");
    let hosts: Vec<&str> = hosts.split(',').collect();
    let sim = MarathonSim::start(listen, &hosts, [a, b, c]).await;
    if let Some(file) = rest.first() {
        let body: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file)?)?;
        let client = reqwest::Client::new();
        for app in body["apps"].as_array().into_iter().flatten() {
            let mut def = app.clone();
            if let Some(o) = def.as_object_mut() {
                o.remove("tasks");
            }
            let resp = client
                .post(format!("{}/v2/apps", sim.url))
                .json(&def)
                .send()
                .await?;
            anyhow::ensure!(
                resp.status().is_success(),
                "posting {}: {}",
                app["id"],
                resp.status()
            );
            // Stand-in for Marathon's health checkers: the sample tasks pass theirs.
            if let Some(id) = app["id"].as_str() {
                for (task, _, _) in sim.tasks(id) {
                    sim.set_health(id, &task, true);
                }
            }
        }
    }
    eprintln!("marathon-sim: {} (agents {})", sim.url, hosts.join(", "));
    tokio::signal::ctrl_c().await?;
    Ok(())
}
