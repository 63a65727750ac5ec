//! The first end-to-end path: configsrv renders from a Marathon snapshot and
//! a policy directory; two meshd serve the result; real clients bound to
//! task addresses get through or are refused; a new task takes traffic after
//! a re-render with no restart; a broken file changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::client::greet_from;
use palisade_tests::cluster::{marathon_snapshot, App};
use palisade_tests::harness::{eventually, meshd, metric, status, wait_generation, Proc, Scratch};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

const POLICY: &str = "apiVersion: palisade/v1
kind: Policy
defaults:
  action: deny
apps:
  /prod/web:
    protocol: tcp
    allow:
      - from: /prod/edge
  /prod/edge:
    allow:
      - from_cidr: 127.0.9.0/24
";

fn render(dir: &Scratch) {
    let out = std::process::Command::new(palisade_tests::harness::bin("configsrv"))
        .args(["render", "--marathon-snapshot"])
        .arg(dir.path("apps.json"))
        .arg("--policies")
        .arg(dir.path("policies"))
        .arg("--out")
        .arg(dir.path("nodes"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn generation_on_disk(dir: &Scratch, node: &str) -> u64 {
    let text = std::fs::read_to_string(dir.path(&format!("nodes/{node}.yaml"))).unwrap();
    schemas::parse_node_config(node, &text)
        .unwrap()
        .generation
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_serve_allow_deny_and_hot_reload() {
    let dir = Scratch::new("first-path");
    dir.write("policies/prod.yaml", POLICY);
    let mut web = App::new("/prod/web", 21000, 8080);
    let web1 = web.task("127.0.0.2", "127.0.21.1");
    let web2 = web.task("127.0.0.3", "127.0.21.2");
    let mut edge = App::new("/prod/edge", 21001, 8080);
    edge.task("127.0.0.2", "127.0.22.1");
    let mut tool = App::new("/dev/tool", 21002, 8080);
    tool.task("127.0.0.2", "127.0.23.1");
    dir.write(
        "apps.json",
        &marathon_snapshot(&[web.clone(), edge.clone(), tool.clone()]),
    );
    render(&dir);
    for node in ["127.0.0.2", "127.0.0.3"] {
        assert_eq!(generation_on_disk(&dir, node), 1);
    }

    let _b1 = backends::tcp("127.0.21.1:8080", &web1).await;
    let _b2 = backends::tcp("127.0.21.2:8080", &web2).await;
    let nodes = dir.path("nodes");
    let (mut mesh2, admin2): (Proc, SocketAddr) = meshd("127.0.0.2", &nodes, &[]);
    let (_mesh3, admin3) = meshd("127.0.0.3", &nodes, &[]);
    wait_generation(admin2, 1).await;
    wait_generation(admin3, 1).await;
    let web_on_2: SocketAddr = "127.0.0.2:21000".parse().unwrap();

    // Allowed: /prod/edge's task reaches both /prod/web tasks, in turn.
    let mut seen = HashSet::new();
    for _ in 0..4 {
        let (mut conn, name) = greet_from("127.0.22.1", web_on_2)
            .await
            .expect("edge -> web is allowed");
        assert_eq!(conn.echo("ping").await.unwrap(), "ping");
        seen.insert(name);
    }
    assert_eq!(
        seen,
        HashSet::from([web1.clone(), web2.clone()]),
        "round robin over both tasks"
    );

    // Denied: /dev/tool is not on the list; an unknown address matches nothing.
    for source in ["127.0.23.1", "127.0.9.9"] {
        let r = greet_from(source, web_on_2).await;
        assert!(r.is_err(), "{source} must be refused, got {r:?}");
    }
    let denied = metric(admin2, "palisade_meshd_connections_total{src_app=\"/dev/tool\",dst_app=\"/prod/web\",verdict=\"deny\"}").await;
    assert_eq!(denied, 1.0);
    let unknown = metric(admin2, "palisade_meshd_connections_total{src_app=\"unknown\",dst_app=\"/prod/web\",verdict=\"deny\"}").await;
    assert_eq!(unknown, 1.0);
    let allowed = metric(admin2, "palisade_meshd_connections_total{src_app=\"/prod/edge\",dst_app=\"/prod/web\",verdict=\"allow\"}").await;
    assert_eq!(allowed, 4.0);

    // A connection opened before the reload must live through it.
    let (mut early, _) = greet_from("127.0.22.1", web_on_2).await.unwrap();

    // A third task appears: re-render, and it takes traffic within 2 s, no restart.
    let pid = mesh2.pid();
    let web3 = web.task("127.0.0.2", "127.0.21.3");
    let _b3 = backends::tcp("127.0.21.3:8080", &web3).await;
    dir.write(
        "apps.json",
        &marathon_snapshot(&[web.clone(), edge.clone(), tool.clone()]),
    );
    render(&dir);
    assert_eq!(generation_on_disk(&dir, "127.0.0.2"), 2);
    let reached = eventually("the new task takes traffic", Duration::from_secs(2), || {
        let web3 = web3.clone();
        async move {
            let (_, name) = greet_from("127.0.22.1", web_on_2).await?;
            if name == web3 {
                Ok(name)
            } else {
                Err(format!("answered by {name}"))
            }
        }
    })
    .await;
    assert_eq!(reached, web3);
    assert!(
        mesh2.running() && mesh2.pid() == pid,
        "meshd was not restarted"
    );
    assert_eq!(early.echo("still there").await.unwrap(), "still there");

    // Same input again: nothing is rewritten.
    render(&dir);
    assert_eq!(generation_on_disk(&dir, "127.0.0.2"), 2);

    // A broken file: the last good config keeps serving, the error is visible.
    dir.write(
        "nodes/127.0.0.2.yaml",
        "apiVersion: palisade/v1\nkind: NodeConfig\nnode: 127.0.0.2\nservices: [oops\n",
    );
    let s = eventually(
        "the broken file is reported",
        Duration::from_secs(5),
        || async move {
            let s = status(admin2).await?;
            if s["last_reload"]["ok"] == false {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        },
    )
    .await;
    assert_eq!(s["generation"], 2, "{s}");
    assert!(
        s["last_reload"]["error"]
            .as_str()
            .unwrap()
            .contains("127.0.0.2.yaml:"),
        "{s}"
    );
    assert!(metric(admin2, "palisade_meshd_reload_failures_total").await >= 1.0);
    let (mut conn, _) = greet_from("127.0.22.1", web_on_2)
        .await
        .expect("traffic still flows");
    assert_eq!(conn.echo("after").await.unwrap(), "after");
    assert_eq!(early.echo("and still").await.unwrap(), "and still");
}
