//! Invariant 10, end to end: no file stops a node. A node file with a zero
//! timeout is refused by `meshd check` with its file:line:col, and a running
//! meshd keeps its last good config, stays up and keeps serving HTTP/2 (the
//! connection kind that `idle: 0s` used to panic).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::client::Http;
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{bin, meshd, wait_for_status, wait_generation, Scratch};
use schemas::duration::Duration as Written;
use schemas::Protocol;
use std::net::SocketAddr;
use std::time::Duration;

const NODE: &str = "127.0.0.150";
const TASK: &str = "127.0.150.1:8080";
const PORT: u16 = 24000;

/// The node file at `generation` whose one HTTP service has `idle: <idle>`.
fn node_file(generation: u64, idle: &str) -> String {
    let mut svc = service("/bad/web", PORT, Protocol::Http, &[(TASK, "bad_web.1")]);
    svc.timeouts.idle = Some(Written(Duration::from_secs(5)));
    let text = node_config(NODE, NODE, generation, vec![svc]);
    assert!(text.contains("idle: 5s"), "{text}");
    text.replace("idle: 5s", &format!("idle: {idle}"))
}

/// 1-based (line, column) of `needle` in `text`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    text.lines()
        .enumerate()
        .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
        .unwrap_or_else(|| panic!("{needle} not in {text}"))
}

async fn h2_get(dest: SocketAddr) -> Result<u16, String> {
    let mut c = Http::connect("127.0.150.9", dest, true)
        .await
        .map_err(|e| e.to_string())?;
    c.get("/").await.map(|a| a.status.as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_timeout_is_refused_by_check_and_a_running_meshd_keeps_its_last_good_config() {
    let dir = Scratch::new("bad-input");
    let bad = node_file(2, "0s");
    let bad_path = dir.write("bad.yaml", &bad);
    let out = std::process::Command::new(bin("meshd"))
        .arg("check")
        .arg(&bad_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (line, col) = position(&bad, "idle: 0s");
    let expected = format!(
        "{}:{line}:{col}: services[0].timeouts.idle:",
        bad_path.display()
    );
    assert!(
        !out.status.success() && stdout.contains(&expected) && stdout.contains("greater than zero"),
        "meshd check must refuse a zero timeout at {expected}; exit {}, stdout: {stdout}",
        out.status
    );

    let _backend = backends::http(TASK, "bad_web.1").await;
    let nodes = dir.path("nodes");
    dir.write(&format!("nodes/{NODE}.yaml"), &node_file(1, "5s"));
    let (mut mesh, admin) = meshd(NODE, &nodes, &[]);
    wait_generation(admin, 1).await;
    let dest: SocketAddr = format!("{NODE}:{PORT}").parse().unwrap();
    assert_eq!(h2_get(dest).await, Ok(200), "HTTP/2 before the bad file");

    dir.write(&format!("nodes/{NODE}.yaml"), &bad);
    let s = wait_for_status(
        admin,
        "the zero timeout refused",
        Duration::from_secs(5),
        |s| s["last_reload"]["ok"] == false,
    )
    .await;
    let error = s["last_reload"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(":{line}:{col}: services[0].timeouts.idle")),
        "{s}"
    );
    assert_eq!(s["generation"].as_u64(), Some(1), "{s}");
    // Still up, still serving on the last good config, over HTTP/2 too.
    for i in 0..3 {
        assert_eq!(h2_get(dest).await, Ok(200), "HTTP/2 request {i} after");
    }
    assert!(mesh.running(), "meshd must stay up: {}", mesh.stderr());
}
