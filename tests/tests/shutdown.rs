//! Graceful shutdown on SIGTERM: meshd stops accepting, lets in-flight
//! requests finish, closes what is left at the drain deadline, and exits 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::client::{greet_from, tcp_from, Http};
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{eventually, meshd, wait_generation, Scratch};
use schemas::Protocol;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_work_then_exits_zero() {
    let _web = backends::http("127.0.60.1:8080", "web.a").await;
    let _tcp = backends::tcp("127.0.60.2:9000", "tcp.a").await;
    let dir = Scratch::new("shutdown");
    let services = vec![
        service(
            "/stop/web",
            22200,
            Protocol::Http,
            &[("127.0.60.1:8080", "web.a")],
        ),
        service(
            "/stop/tcp",
            22201,
            Protocol::Tcp,
            &[("127.0.60.2:9000", "tcp.a")],
        ),
    ];
    dir.write(
        "nodes/stop.yaml",
        &node_config("stop", "127.0.0.60", 1, services),
    );
    let (mut mesh, admin) = meshd("stop", &dir.path("nodes"), &["--drain-deadline", "2s"]);
    wait_generation(admin, 1).await;
    let web: SocketAddr = "127.0.0.60:22200".parse().unwrap();

    // An idle TCP connection and a slow request are open when SIGTERM comes.
    let (_idle_tcp, _) = greet_from("127.0.61.1", "127.0.0.60:22201".parse().unwrap())
        .await
        .unwrap();
    let mut client = Http::connect("127.0.61.2", web, false).await.unwrap();
    let slow = tokio::spawn(async move { client.get("/slow/800").await });
    eventually("the slow request is in flight", Duration::from_secs(2), || async move {
        let text = palisade_tests::harness::admin_get(admin, "/metrics").await?.1;
        text.contains("palisade_meshd_backend_requests_total{dst_app=\"/stop/web\",backend=\"127.0.60.1:8080\"} 1")
            .then_some(())
            .ok_or(text)
    })
    .await;

    let started = Instant::now();
    let code = tokio::task::spawn_blocking(move || {
        let code = mesh.terminate(Duration::from_secs(6));
        (code, mesh)
    });
    // New connections are refused soon after the signal.
    eventually("listeners close", Duration::from_secs(2), || async move {
        match tcp_from("127.0.61.3", web).await {
            Err(_) => Ok(()),
            Ok(_) => Err("still accepting".to_owned()),
        }
    })
    .await;
    let answer = slow.await.unwrap().expect("the in-flight request finishes");
    assert_eq!(answer.status, 200);
    let (code, _mesh) = code.await.unwrap();
    let took = started.elapsed();
    assert_eq!(code, Some(0), "meshd exits 0 after draining");
    // The idle TCP connection is closed at the 2 s deadline, not before the slow request ends.
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "{took:?}"
    );
}
