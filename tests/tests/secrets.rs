//! Secrets never leak: Marathon and Mesos credentials in URLs show as `***`
//! in configsrv's logs, `/v1/status` and metrics, even while the error that
//! names the URL is shown; tokens are never logged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::harness::{admin_get, eventually, free_port, Proc, Scratch};
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_source_urls_never_reach_logs_status_or_metrics() {
    let dir = Scratch::new("secrets");
    dir.write(
        "policies/p.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps: {}\n",
    );
    let api_token = dir.write("api-token", "api-token-secret\n");
    // Nothing listens on a port just released: every read fails, naming the URL.
    let closed = free_port();
    let marathon = format!("http://user:secret@127.0.0.1:{closed}");
    let mesos = format!("http://ops:secret@127.0.0.1:{closed}");
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cs = Proc::spawn(
        "configsrv",
        &[
            "serve",
            "--marathon",
            &marathon,
            "--mesos",
            &mesos,
            "--policies",
            dir.path("policies").to_str().unwrap(),
            "--listen",
            &api.to_string(),
            "--api-token-file",
            api_token.to_str().unwrap(),
            "--marathon-timeout",
            "300ms",
        ],
        &dir.0,
    );
    let status = eventually(
        "both sources stale, with their errors",
        Duration::from_secs(10),
        || async move {
            let (_, body) = admin_get(api, "/v1/status").await?;
            let s: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            let shown = |src: &str| {
                s["sources"][src]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("127.0.0.1"))
            };
            if shown("marathon") && shown("mesos") {
                Ok(body)
            } else {
                Err(body)
            }
        },
    )
    .await;
    assert!(!status.contains("secret"), "/v1/status: {status}");
    assert!(
        status.contains(&format!("http://***@127.0.0.1:{closed}")),
        "{status}"
    );
    let (_, metrics) = admin_get(api, "/metrics").await.unwrap();
    assert!(!metrics.contains("secret"), "/metrics: {metrics}");
    let log = cs.stderr();
    assert!(
        log.contains("***@127.0.0.1"),
        "the URL is still named: {log}"
    );
    assert!(!log.contains("secret"), "stderr: {log}");
}
