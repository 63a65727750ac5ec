//! A node file that cannot be written stalls no other node and is retried,
//! with backoff, without waiting for the cluster to change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::harness::{admin_get, eventually, free_port, Proc, Scratch};
use palisade_tests::marathon_sim::MarathonSim;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_node_file_write_is_retried_and_the_other_nodes_still_publish() {
    let dir = Scratch::new("publish-retry");
    dir.write(
        "policies/p.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps: {}\n",
    );
    // Sorted first, so a publisher that stops at the first failure writes nothing.
    let (a, b) = ("127.0.0.156", "127.0.0.157");
    let sim = MarathonSim::start("127.0.0.1:0", &[a, b], [127, 0, 158]).await;
    let def = json!({
        "id": "/retry/app", "instances": 2, "labels": {}, "healthChecks": [],
        "networks": [{"mode": "container", "name": "sim"}],
        "container": {"type": "DOCKER", "docker": {"image": "retry/echo:1"},
            "portMappings": [{"containerPort": 8080, "servicePort": 25010, "protocol": "tcp"}]}
    });
    assert_eq!(sim.post_app(&def).await, 201);
    let out = dir.path("nodes");
    let blocked = out.join(format!("{a}.yaml"));
    // A directory where a's file goes: its writes fail, even as root.
    std::fs::create_dir_all(&blocked).unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _cs = Proc::spawn(
        "configsrv",
        &[
            "serve",
            "--marathon",
            &sim.url,
            "--policies",
            dir.path("policies").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--listen",
            &api.to_string(),
        ],
        &dir.0,
    );
    let other = out.join(format!("{b}.yaml"));
    let o = &other;
    eventually(
        "the other node's file is written",
        Duration::from_secs(5),
        || async move {
            if o.is_file() {
                Ok(())
            } else {
                Err("missing".to_owned())
            }
        },
    )
    .await;
    eventually(
        "the failure shows in /v1/status and the API still serves a",
        Duration::from_secs(5),
        || async move {
            let (_, body) = admin_get(api, "/v1/status").await?;
            let (code, _) = admin_get(api, &format!("/v1/nodes/{a}/config")).await?;
            if body.contains(a) && body.contains("publish_error") && code == 200 {
                Ok(())
            } else {
                Err(format!("{code} {body}"))
            }
        },
    )
    .await;

    // The disk heals; nothing in the cluster changes, yet a's file appears.
    std::fs::remove_dir(&blocked).unwrap();
    let bl = &blocked;
    eventually(
        "the failed write is retried",
        Duration::from_secs(10),
        || async move {
            if bl.is_file() {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        },
    )
    .await;
    eventually("the error clears", Duration::from_secs(5), || async move {
        let (_, body) = admin_get(api, "/v1/status").await?;
        if body.contains("\"publish_error\":null") {
            Ok(())
        } else {
            Err(body)
        }
    })
    .await;
}
