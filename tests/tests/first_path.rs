//! The first end-to-end path: configsrv renders from a Marathon snapshot and
//! a policy directory; two meshd serve the result; real clients bound to
//! task addresses get through or are refused; a new task takes traffic after
//! a re-render with no restart; a broken file changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends::{self, Backend};
use palisade_tests::client::{greet_from, refused_from};
use palisade_tests::cluster::{marathon_snapshot, App};
use palisade_tests::harness::{
    self, admin_get, eventually, meshd, metric, status_backends, wait_for_status, wait_generation,
    wait_metric, Scratch,
};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, SystemTime};

/// Default deny; /prod/web takes /prod/edge, /prod/db takes /prod/web (and
/// has no tasks yet); /prod/edge takes clients outside the mesh by CIDR.
const POLICY: &str = "apiVersion: palisade/v1
kind: Policy
defaults:
  action: deny
apps:
  /prod/web:
    protocol: tcp
    allow:
      - from: /prod/edge
  /prod/db:
    protocol: tcp
    allow:
      - from: /prod/web
  /prod/edge:
    allow:
      - from_cidr: 127.0.9.0/24
";

const WEB_PORT: u16 = 21000;
const EDGE_PORT: u16 = 21001;
const TOOL_PORT: u16 = 21002;
const EDGE_TASK: &str = "127.0.2.1";
const TOOL_TASK: &str = "127.0.3.1";
const OUTSIDER: &str = "127.0.9.9";
/// How long a counter may lag what it counts.
const SOON: Duration = Duration::from_secs(2);

/// The cluster as Marathon reports it: /prod/web on both nodes, /prod/edge
/// and /dev/tool on 127.0.0.2, each task with its own address.
struct Cluster {
    web: App,
    edge: App,
    tool: App,
}

impl Cluster {
    fn new() -> Cluster {
        let mut web = App::new("/prod/web", WEB_PORT, 8080);
        web.task("127.0.0.2", "127.0.1.1");
        web.task("127.0.0.3", "127.0.1.2");
        let mut edge = App::new("/prod/edge", EDGE_PORT, 8080);
        edge.task("127.0.0.2", EDGE_TASK);
        let mut tool = App::new("/dev/tool", TOOL_PORT, 8080);
        tool.task("127.0.0.2", TOOL_TASK);
        Cluster { web, edge, tool }
    }

    /// Writes `apps.json` into `dir`, atomically.
    fn write(&self, dir: &Scratch) {
        let apps = [self.web.clone(), self.edge.clone(), self.tool.clone()];
        dir.write("apps.json", &marathon_snapshot(&apps));
    }

    /// A greeting backend for every task, named by its task id.
    async fn backends(&self) -> Vec<Backend> {
        let mut out = Vec::new();
        for app in [&self.web, &self.edge, &self.tool] {
            for t in &app.tasks {
                let addr = format!("{}:{}", t.ip, app.container_port);
                out.push(backends::tcp(&addr, &t.id).await);
            }
        }
        out
    }
}

fn render(dir: &Scratch) -> Output {
    harness::render(
        &dir.path("apps.json"),
        &dir.path("policies"),
        &dir.path("nodes"),
    )
}

fn render_ok(dir: &Scratch) {
    let out = render(dir);
    assert!(
        out.status.success(),
        "configsrv render failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn node_file(dir: &Scratch, node: &str) -> (String, schemas::NodeConfig) {
    harness::node_file(&dir.path("nodes"), node)
}

/// When the node file was last written, and its inode: an atomic rewrite
/// (rename over it) changes the inode even within one mtime tick.
fn stamp(dir: &Scratch, node: &str) -> (SystemTime, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir.path(&format!("nodes/{node}.yaml"))).unwrap();
    (m.modified().unwrap(), m.ino())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_serve_allow_deny_and_hot_reload() {
    let dir = Scratch::new("first-path");
    dir.write("policies/prod.yaml", POLICY);
    let mut cluster = Cluster::new();
    cluster.write(&dir);
    render_ok(&dir);
    for node in ["127.0.0.2", "127.0.0.3"] {
        let (text, c) = node_file(&dir, node);
        assert_eq!(c.generation.0, 1, "{text}");
        let web = c.services.iter().find(|s| s.app.to_string() == "/prod/web");
        let web = web.unwrap_or_else(|| panic!("no /prod/web on {node}: {text}"));
        assert_eq!(web.port.0, WEB_PORT);
        let mut addrs: Vec<String> = web.backends.iter().map(|b| b.address.to_string()).collect();
        addrs.sort();
        assert_eq!(addrs, ["127.0.1.1:8080", "127.0.1.2:8080"], "{text}");
    }

    let web1 = cluster.web.tasks[0].id.clone();
    let web2 = cluster.web.tasks[1].id.clone();
    let edge1 = cluster.edge.tasks[0].id.clone();
    let _backends = cluster.backends().await;
    let nodes = dir.path("nodes");
    let (mut mesh2, admin2) = meshd("127.0.0.2", &nodes, &[]);
    let (_mesh3, admin3) = meshd("127.0.0.3", &nodes, &[]);
    for admin in [admin2, admin3] {
        wait_for_status(
            admin,
            "ready at generation 1",
            Duration::from_secs(5),
            |s| s["generation"].as_u64() >= Some(1) && s["ready"] == true,
        )
        .await;
    }
    let web_on_2: SocketAddr = format!("127.0.0.2:{WEB_PORT}").parse().unwrap();
    let web_on_3: SocketAddr = format!("127.0.0.3:{WEB_PORT}").parse().unwrap();
    let edge_on_2: SocketAddr = format!("127.0.0.2:{EDGE_PORT}").parse().unwrap();

    // Allowed: /prod/edge's task reaches both /prod/web tasks, in turn.
    let mut order = Vec::new();
    for i in 0..6 {
        let (mut conn, name) = greet_from(EDGE_TASK, web_on_2)
            .await
            .unwrap_or_else(|e| panic!("edge -> web is allowed, connection {i}: {e}"));
        assert_eq!(
            conn.echo(&format!("ping {i}")).await.unwrap(),
            format!("ping {i}")
        );
        order.push(name);
    }
    let seen: HashSet<&String> = order.iter().collect();
    assert_eq!(seen, HashSet::from([&web1, &web2]), "{order:?}");
    assert!(
        order.windows(2).all(|w| w[0] != w[1]),
        "round robin alternates: {order:?}"
    );

    // Denied: /dev/tool is not on the list; an unknown address matches no app.
    for source in [TOOL_TASK, OUTSIDER] {
        if let Err(e) = refused_from(source, web_on_2).await {
            panic!("{source} -> /prod/web must be closed before any byte: {e}");
        }
    }
    // ...but a CIDR rule lets the outsider reach /prod/edge.
    let (_, name) = greet_from(OUTSIDER, edge_on_2).await.unwrap();
    assert_eq!(name, edge1);
    // Node 127.0.0.3 knows /prod/web's own task there, and web may not reach web.
    refused_from("127.0.1.2", web_on_3).await.unwrap();

    // Every verdict is counted by (source app, destination app, verdict).
    for (admin, src, dst, verdict, n) in [
        (admin2, "/dev/tool", "/prod/web", "deny", 1.0),
        (admin2, "unknown", "/prod/web", "deny", 1.0),
        (admin2, "/prod/edge", "/prod/web", "allow", 6.0),
        (admin2, "unknown", "/prod/edge", "allow", 1.0),
        (admin3, "/prod/web", "/prod/web", "deny", 1.0),
    ] {
        let series = format!(
            "palisade_meshd_connections_total{{src_app=\"{src}\",dst_app=\"{dst}\",verdict=\"{verdict}\"}}"
        );
        wait_metric(admin, &series, SOON, |v| v == n).await;
    }
    let (_, metrics) = admin_get(admin2, "/metrics").await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("palisade_meshd_connections_total{")
                && l.contains("verdict=\"deny\"")),
        "no deny verdict counted:\n{metrics}"
    );
    // Per-app and per-backend series appear with an app's first use, so a
    // node file of many apps does not fill /metrics with idle ones: node
    // 127.0.0.3 serves /prod/edge too, but nothing called it there.
    assert!(
        metrics.contains("palisade_meshd_backend_requests_total{dst_app=\"/prod/edge\""),
        "a called app's backend is counted:\n{metrics}"
    );
    let (_, on_3) = node_file(&dir, "127.0.0.3");
    assert!(on_3
        .services
        .iter()
        .any(|s| s.app.to_string() == "/prod/edge"));
    let (_, metrics3) = admin_get(admin3, "/metrics").await.unwrap();
    assert!(
        !metrics3.contains("dst_app=\"/prod/edge\""),
        "an app nobody called has series:\n{metrics3}"
    );

    // A connection opened before the reload must live through it.
    let (mut early, _) = greet_from(EDGE_TASK, web_on_2).await.unwrap();
    assert_eq!(early.echo("before").await.unwrap(), "before");

    // A third task appears: re-render, and it takes traffic within 2 s, no restart.
    let pid = mesh2.pid();
    let (_, before2) = node_file(&dir, "127.0.0.2");
    let (_, before3) = node_file(&dir, "127.0.0.3");
    let web3 = cluster.web.task("127.0.0.2", "127.0.1.3");
    let _b3 = backends::tcp("127.0.1.3:8080", &web3).await;
    cluster.write(&dir);
    render_ok(&dir);
    let (text2, after2) = node_file(&dir, "127.0.0.2");
    let (text3, after3) = node_file(&dir, "127.0.0.3");
    assert!(after2.generation > before2.generation, "{text2}");
    assert!(after3.generation > before3.generation, "{text3}");
    let reached = eventually("the new task takes traffic", Duration::from_secs(2), || {
        let web3 = web3.clone();
        async move {
            let (mut conn, name) = greet_from(EDGE_TASK, web_on_2).await?;
            conn.echo("hello").await?;
            if name == web3 {
                Ok(name)
            } else {
                Err(format!("answered by {name}"))
            }
        }
    })
    .await;
    assert_eq!(reached, web3);
    let mut round = HashSet::new();
    for _ in 0..3 {
        round.insert(greet_from(EDGE_TASK, web_on_2).await.unwrap().1);
    }
    assert_eq!(
        round,
        HashSet::from([web1, web2, web3]),
        "round robin over three"
    );
    assert!(mesh2.running(), "meshd exited:\n{}", mesh2.stderr());
    assert_eq!(mesh2.pid(), pid, "meshd was not restarted");
    assert_eq!(early.echo("still there").await.unwrap(), "still there");
    let s = wait_generation(admin2, after2.generation.0).await;
    assert_eq!(
        status_backends(&s, "/prod/web"),
        ["127.0.1.1:8080", "127.0.1.2:8080", "127.0.1.3:8080"],
        "{s}"
    );
    wait_generation(admin3, after3.generation.0).await;

    // Same input again: nothing is rewritten.
    let stamps = [stamp(&dir, "127.0.0.2"), stamp(&dir, "127.0.0.3")];
    render_ok(&dir);
    assert_eq!(
        node_file(&dir, "127.0.0.2").0,
        text2,
        "unchanged input rewrote"
    );
    assert_eq!(
        node_file(&dir, "127.0.0.3").0,
        text3,
        "unchanged input rewrote"
    );
    assert_eq!(
        [stamp(&dir, "127.0.0.2"), stamp(&dir, "127.0.0.3")],
        stamps,
        "unchanged input touched the files"
    );

    // A broken file: the last good config keeps serving, the error is visible.
    let failures = metric(admin2, "palisade_meshd_reload_failures_total").await;
    dir.write(
        "nodes/127.0.0.2.yaml",
        "apiVersion: palisade/v1\nkind: NodeConfig\nnode: 127.0.0.2\nservices: [oops\n",
    );
    let s = wait_for_status(
        admin2,
        "reporting the broken file",
        Duration::from_secs(5),
        |s| s["last_reload"]["ok"] == false,
    )
    .await;
    assert_eq!(s["generation"], after2.generation.0, "{s}");
    assert_eq!(s["ready"], true, "{s}");
    let error = s["last_reload"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("127.0.0.2.yaml:"),
        "error names the file: {s}"
    );
    wait_metric(admin2, "palisade_meshd_reload_failures_total", SOON, |v| {
        v > failures
    })
    .await;
    let (mut conn, _) = greet_from(EDGE_TASK, web_on_2)
        .await
        .expect("traffic still flows");
    assert_eq!(conn.echo("after").await.unwrap(), "after");
    assert_eq!(early.echo("and still").await.unwrap(), "and still");
    refused_from(TOOL_TASK, web_on_2).await.unwrap();
    assert_eq!(mesh2.pid(), pid);
}

/// configsrv render's contract for bad input: non-zero exit, a message that
/// names the file, and nothing written.
#[test]
fn render_rejects_bad_input_and_writes_nothing() {
    let dir = Scratch::new("first-path-bad");
    dir.write("policies/prod.yaml", POLICY);
    dir.write("apps.json", "{\"apps\": [");
    let out = render(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "bad snapshot accepted: {stderr}");
    assert!(stderr.contains("apps.json"), "names the file: {stderr}");
    let written = std::fs::read_dir(dir.path("nodes"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(written, 0, "nothing is written");

    // A valid snapshot with a broken policy file: same.
    Cluster::new().write(&dir);
    dir.write(
        "policies/broken.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps:\n  /dev/tool:\n    protocl: tcp\n",
    );
    let out = render(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "bad policy accepted: {stderr}");
    assert!(stderr.contains("broken.yaml:5:"), "file:line:col: {stderr}");
    let written = std::fs::read_dir(dir.path("nodes"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(written, 0, "nothing is written");
}

/// Generations only grow (DESIGN: "a monotonically increasing generation";
/// meshd ignores a file that is not newer): after a node file was corrupted,
/// the next render must still outrank what meshd runs, so the node converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_after_a_corrupted_file_still_reaches_meshd() {
    let dir = Scratch::new("first-path-heal");
    dir.write(
        "policies/all.yaml",
        "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: allow\n",
    );
    let mut web = App::new("/prod/web", 21010, 8080);
    let first = web.task("127.0.0.2", "127.0.1.21");
    dir.write("apps.json", &marathon_snapshot(&[web.clone()]));
    render_ok(&dir);
    let second = web.task("127.0.0.2", "127.0.1.22");
    dir.write("apps.json", &marathon_snapshot(&[web.clone()]));
    render_ok(&dir);
    let (_, running) = node_file(&dir, "127.0.0.2");
    let _b1 = backends::tcp("127.0.1.21:8080", &first).await;
    let _b2 = backends::tcp("127.0.1.22:8080", &second).await;
    let (_mesh, admin) = meshd("127.0.0.2", &dir.path("nodes"), &[]);
    wait_generation(admin, running.generation.0).await;

    dir.write("nodes/127.0.0.2.yaml", "services: [oops\n");
    wait_for_status(
        admin,
        "reporting the broken file",
        Duration::from_secs(5),
        |s| s["last_reload"]["ok"] == false,
    )
    .await;

    // A third task, then a render over the broken file.
    let third = web.task("127.0.0.2", "127.0.1.23");
    let _b3 = backends::tcp("127.0.1.23:8080", &third).await;
    dir.write("apps.json", &marathon_snapshot(&[web.clone()]));
    render_ok(&dir);
    let (text, healed) = node_file(&dir, "127.0.0.2");
    assert!(
        healed.generation > running.generation,
        "generation went from {} back to {}:\n{text}",
        running.generation.0,
        healed.generation.0
    );
    let s = wait_for_status(
        admin,
        "applying the healed file",
        Duration::from_secs(2),
        |s| s["last_reload"]["ok"] == true && s["generation"].as_u64() == Some(healed.generation.0),
    )
    .await;
    assert_eq!(status_backends(&s, "/prod/web").len(), 3, "{s}");
}
