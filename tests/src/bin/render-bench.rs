//! Render benchmark: a synthetic cluster of APPS apps with one service port
//! and three tasks each, spread over NODES nodes; times the pure renderer
//! and the publish step (every node file written). Medians of 5 runs.
//!
//! `render-bench APPS NODES`

use configsrv::render::render;
use configsrv::state::{App, ClusterState, Networking, PortSpec, Task, TaskPhase};
use schemas::{PolicySet, ServicePort};
use std::time::Instant;

fn cluster(apps: usize, nodes: usize) -> ClusterState {
    let mut out = Vec::with_capacity(apps);
    for a in 0..apps {
        let tasks = (0..3)
            .map(|t| {
                let n = (a * 3 + t) % nodes;
                let ip = 10 + (a * 3 + t);
                Task {
                    id: format!("app{a}.{t:08x}").parse().expect("task id"),
                    host: format!("127.{}.{}.1", 1 + n / 250, n % 250),
                    ports: vec![],
                    addresses: vec![format!(
                        "127.{}.{}.{}",
                        100 + ip / 65_000,
                        (ip / 250) % 250,
                        1 + ip % 250
                    )
                    .parse()
                    .expect("ip")],
                    phase: TaskPhase::Running,
                    healthy: true,
                }
            })
            .collect();
        out.push(App {
            id: format!("/bench/group{}/app{a}", a % 50)
                .parse()
                .expect("app id"),
            networking: Networking::Container,
            service_ports: vec![PortSpec {
                index: 0,
                service_port: ServicePort(10_000 + (a % 50_000) as u16),
                container_port: Some(8080),
                transport: configsrv::state::Transport::Tcp,
            }],
            protocol: None,
            balance: None,
            vhost: vec![],
            health_checks: 0,
            tasks,
        });
    }
    ClusterState::new(out, vec![])
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let apps: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let state = cluster(apps, nodes);
    let policies = PolicySet::from_files([(
        "p.yaml",
        "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: deny\napps:\n  /bench/*:\n    allow:\n      - from: /bench/*\n      - from_cidr: 10.0.0.0/8\n",
    )])
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let dir = std::env::temp_dir().join(format!("palisade-render-bench-{}", std::process::id()));
    let (mut renders, mut publishes) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let rendered = render(&state, &policies);
        renders.push(t.elapsed());
        anyhow::ensure!(rendered.errors.is_empty(), "{:?}", &rendered.errors[..1]);
        let n = rendered.nodes.len();
        let t = Instant::now();
        let outcome =
            configsrv::publish::files::publish_dir(&dir, rendered.nodes, schemas::Generation(1))?;
        anyhow::ensure!(outcome.failed.is_empty(), "{}", outcome.failed[0].1);
        publishes.push(t.elapsed());
        let _ = std::fs::remove_dir_all(&dir);
        anyhow::ensure!(n == nodes, "{n} nodes rendered");
    }
    renders.sort();
    publishes.sort();
    println!(
        "| {apps} apps, {nodes} nodes | render {:.0} ms | render + write every node file {:.0} ms |",
        renders[2].as_secs_f64() * 1e3,
        (renders[2] + publishes[2]).as_secs_f64() * 1e3
    );
    Ok(())
}
