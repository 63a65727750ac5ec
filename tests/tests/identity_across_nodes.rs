//! Source identity across nodes (DESIGN.md "Source identity and
//! allow-lists"): a task with its own address on a container network is
//! itself on every node's meshd, not just its own node's. configsrv renders
//! from a Marathon snapshot; two meshd serve the result; a client bound to
//! the caller's task address on node A goes through node B's meshd.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::client::{greet_from, refused_from};
use palisade_tests::cluster::{marathon_snapshot, App};
use palisade_tests::harness::{self, meshd, wait_generation, wait_metric, Scratch};
use std::net::SocketAddr;
use std::time::Duration;

const NODE_A: &str = "127.0.0.151";
const NODE_B: &str = "127.0.0.152";
const CALLER_TASK: &str = "127.0.151.1";
const OTHER_TASK: &str = "127.0.151.2";
const API_TASK: &str = "127.0.152.1";
const API_PORT: u16 = 24100;

const POLICY: &str = "apiVersion: palisade/v1
kind: Policy
defaults:
  action: deny
apps:
  /x/api:
    allow:
      - from: /x/caller
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_with_its_own_address_is_itself_on_another_nodes_meshd() {
    let dir = Scratch::new("identity-across-nodes");
    dir.write("policies/x.yaml", POLICY);
    let mut api = App::new("/x/api", API_PORT, 8080);
    let api_task = api.task(NODE_B, API_TASK);
    let mut caller = App::new("/x/caller", API_PORT + 1, 8080);
    caller.task(NODE_A, CALLER_TASK);
    let mut other = App::new("/x/other", API_PORT + 2, 8080);
    other.task(NODE_A, OTHER_TASK);
    dir.write("apps.json", &marathon_snapshot(&[api, caller, other]));
    let out = harness::render(
        &dir.path("apps.json"),
        &dir.path("policies"),
        &dir.path("nodes"),
    );
    assert!(
        out.status.success(),
        "configsrv render: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (text, config) = harness::node_file(&dir.path("nodes"), NODE_B);
    assert!(
        config
            .identities
            .iter()
            .any(|i| i.address.to_string() == CALLER_TASK && i.app.as_str() == "/x/caller"),
        "node B's identity table names the caller's task address: {text}"
    );

    let _backend = backends::tcp(&format!("{API_TASK}:8080"), &api_task).await;
    let nodes = dir.path("nodes");
    let (_mesh_a, admin_a) = meshd(NODE_A, &nodes, &[]);
    let (_mesh_b, admin_b) = meshd(NODE_B, &nodes, &[]);
    wait_generation(admin_a, 1).await;
    wait_generation(admin_b, 1).await;

    // The caller's task lives on node A; through node B's meshd it is still /x/caller.
    for node in [NODE_B, NODE_A] {
        let dest: SocketAddr = format!("{node}:{API_PORT}").parse().unwrap();
        let (mut conn, name) = greet_from(CALLER_TASK, dest)
            .await
            .unwrap_or_else(|e| panic!("/x/caller -> /x/api via {node} is allowed: {e}"));
        assert_eq!(name, api_task);
        assert_eq!(conn.echo("hello").await.unwrap(), "hello");
    }
    // Known but not allowed, and unknown: both refused on node B.
    let via_b: SocketAddr = format!("{NODE_B}:{API_PORT}").parse().unwrap();
    for source in [OTHER_TASK, "127.0.151.9"] {
        if let Err(e) = refused_from(source, via_b).await {
            panic!("{source} -> /x/api via node B must be refused: {e}");
        }
    }
    for (src, verdict) in [
        ("/x/caller", "allow"),
        ("/x/other", "deny"),
        ("unknown", "deny"),
    ] {
        let series = format!(
            "palisade_meshd_connections_total{{src_app=\"{src}\",dst_app=\"/x/api\",verdict=\"{verdict}\"}}"
        );
        wait_metric(admin_b, &series, Duration::from_secs(2), |v| v == 1.0).await;
    }
}
