//! Bounded reads: a Marathon answer over `--source-max-bytes` is refused
//! with an error naming the (redacted) URL and the limit; Marathon is marked
//! stale and the last good state stays.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::harness::{admin_get, eventually, free_port, Proc, Scratch};
use palisade_tests::marathon_sim::MarathonSim;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

fn app(id: &str, port: u16, label: &str) -> Value {
    json!({
        "id": id, "instances": 1, "labels": {"NOTE": label}, "healthChecks": [],
        "networks": [{"mode": "container", "name": "sim"}],
        "container": {"type": "DOCKER", "docker": {"image": "lim/echo:1"},
            "portMappings": [{"containerPort": 8080, "servicePort": port, "protocol": "tcp"}]}
    })
}

async fn status(api: SocketAddr) -> Result<Value, String> {
    let (_, body) = admin_get(api, "/v1/status").await?;
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_marathon_answer_marks_it_stale_and_keeps_the_last_good_state() {
    let dir = Scratch::new("limits");
    dir.write(
        "policies/p.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps: {}\n",
    );
    let sim = MarathonSim::start("127.0.0.1:0", &["127.0.0.155"], [127, 0, 157]).await;
    assert_eq!(sim.post_app(&app("/lim/small", 25020, "small")).await, 201);
    let with_user = sim.url.replacen("http://", "http://ops:pw-secret@", 1);
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cs = Proc::spawn(
        "configsrv",
        &[
            "serve",
            "--marathon",
            &with_user,
            "--policies",
            dir.path("policies").to_str().unwrap(),
            "--listen",
            &api.to_string(),
            "--resync-interval",
            "300ms",
            "--source-max-bytes",
            "20000",
        ],
        &dir.0,
    );
    eventually(
        "the small app is read",
        Duration::from_secs(5),
        || async move {
            let s = status(api).await?;
            if s["apps"] == 1 && s["sources"]["marathon"]["stale"] == false {
                Ok(())
            } else {
                Err(s.to_string())
            }
        },
    )
    .await;

    assert_eq!(
        sim.post_app(&app("/lim/big", 25021, &"x".repeat(30_000)))
            .await,
        201
    );
    let s = eventually(
        "the oversize answer is refused",
        Duration::from_secs(5),
        || async move {
            let s = status(api).await?;
            if s["sources"]["marathon"]["stale"] == true {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        },
    )
    .await;
    let error = s["sources"]["marathon"]["error"].as_str().unwrap();
    let port = sim.url.rsplit(':').next().unwrap();
    assert!(error.contains("20000"), "names the limit: {error}");
    assert!(
        error.contains(&format!("http://***@127.0.0.1:{port}/v2/apps")),
        "names the URL: {error}"
    );
    assert_eq!(s["apps"], 1, "the last good state stays: {s}");
    assert!(!cs.stderr().contains("pw-secret"));
}
