//! A keep-alive connection quiet for a second is parked: its task ends
//! and its listener's keeper watches its socket (issue 17: an idle
//! connection then costs its socket's registration and a few hundred
//! bytes). What the client sends next, in whatever pieces, reaches the
//! backend as it would have; the idle timeout, a drain and the client's
//! close still end it; the gauges say where it is.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::client::{read_until, tcp_from, STEP};
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{meshd, wait_generation, wait_metric, Proc, Scratch};
use schemas::duration::Duration as Wait;
use schemas::Protocol;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENT: &str = "127.0.209.9";
const PARKED: &str = "palisade_meshd_parked_connections";
/// How long a quiet connection takes to park: a second, plus its timer's
/// step, plus slack for a loaded machine.
const TO_PARK: Duration = Duration::from_secs(6);

/// A meshd whose node `n` (at 127.0.209.`n`) has one HTTP service on
/// `port`, to the backend at `backend`, with `idle` as its idle timeout.
fn start(
    dir: &Scratch,
    n: u8,
    port: u16,
    backend: &str,
    idle: Option<&str>,
) -> (Proc, SocketAddr, SocketAddr) {
    let node = format!("park-{n}");
    let mut svc = service("/park/app", port, Protocol::Http, &[(backend, "park.1")]);
    svc.timeouts.idle = idle.map(|i| i.parse::<Wait>().unwrap());
    dir.write(
        &format!("nodes/{node}.yaml"),
        &node_config(&node, &format!("127.0.209.{n}"), 1, vec![svc]),
    );
    let (proc, admin) = meshd(&node, &dir.path("nodes"), &[]);
    let dest = format!("127.0.209.{n}:{port}").parse().unwrap();
    (proc, admin, dest)
}

/// One request on `s`, answered by the backend.
async fn get(s: &mut TcpStream) {
    s.write_all(b"GET / HTTP/1.1\r\nHost: park\r\n\r\n")
        .await
        .unwrap();
    let r = read_until(s, "park-backend\n", 1).await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
}

/// Waits until meshd has parked `n` connections.
async fn parked(admin: SocketAddr, n: f64) {
    wait_metric(admin, PARKED, TO_PARK, |v| v == n).await;
}

/// A connection that carried one request and is now parked (the only one).
async fn parked_connection(admin: SocketAddr, dest: SocketAddr) -> TcpStream {
    let mut s = tcp_from(CLIENT, dest).await.unwrap();
    get(&mut s).await;
    parked(admin, 1.0).await;
    s
}

/// Reads until the connection closes; what came before the close.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut got))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_carries_what_comes_next_in_any_pieces() {
    let _http = backends::http("127.0.209.2:42900", "park-backend").await;
    let dir = Scratch::new("park-pieces");
    let (_proc, admin, dest) = start(&dir, 1, 42910, "127.0.209.2:42900", None);
    wait_generation(admin, 1).await;
    let mut s = parked_connection(admin, dest).await;

    // A head in two pieces: the first wakes the parked socket, the rest
    // reaches the task it resumed in. The backend echoes the headers it got.
    s.write_all(b"GET /hea").await.unwrap();
    parked(admin, 0.0).await;
    s.write_all(b"ders HTTP/1.1\r\nHost: park\r\nX-Piece: one\r\n\r\n")
        .await
        .unwrap();
    let r = read_until(&mut s, "}", 1).await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains(r#""x-piece":"one""#), "{r}");
    assert!(r.contains(r#""x-forwarded-for":"127.0.209.9""#), "{r}");

    // Parked again, then a pipelined pair in one write: both answered, in order.
    parked(admin, 1.0).await;
    s.write_all(
        b"GET /status/204 HTTP/1.1\r\nHost: park\r\n\r\nGET / HTTP/1.1\r\nHost: park\r\n\r\n",
    )
    .await
    .unwrap();
    let r = read_until(&mut s, "park-backend\n", 1).await;
    let (first, second) = (
        r.find("HTTP/1.1 204").unwrap(),
        r.find("HTTP/1.1 200").unwrap(),
    );
    assert!(first < second, "{r}");

    // Parked again, then a body sent after its head, in pieces.
    parked(admin, 1.0).await;
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: park\r\nContent-Length: 11\r\n\r\nhello")
        .await
        .unwrap();
    s.write_all(b" world").await.unwrap();
    let r = read_until(&mut s, "hello world", 1).await;
    assert!(r.contains("x-body-framing: length"), "{r}");

    // Parked again; the client goes: the connection is closed and counted out.
    parked(admin, 1.0).await;
    assert!(
        palisade_tests::harness::metric(
            admin,
            r#"palisade_meshd_active_connections{dst_app="/park/app"}"#
        )
        .await
            == 1.0
    );
    drop(s);
    parked(admin, 0.0).await;
    wait_metric(
        admin,
        r#"palisade_meshd_active_connections{dst_app="/park/app"}"#,
        STEP,
        |v| v == 0.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_closes_at_its_idle_timeout_and_at_a_drain() {
    let _http = backends::http("127.0.209.4:42901", "park-backend").await;
    let dir = Scratch::new("park-timeout");
    let (_proc, admin, dest) = start(&dir, 3, 42911, "127.0.209.4:42901", Some("2500ms"));
    wait_generation(admin, 1).await;

    // The idle timeout, counted from the last response, holds while parked.
    let mut s = tcp_from(CLIENT, dest).await.unwrap();
    get(&mut s).await;
    let quiet = Instant::now();
    parked(admin, 1.0).await;
    let left = read_to_close(&mut s, STEP).await;
    let waited = quiet.elapsed();
    assert_eq!(left, "", "closed without a word");
    assert!(
        waited >= Duration::from_millis(2400) && waited < Duration::from_millis(2500) + STEP,
        "closed {waited:?} after the last response, idle timeout 2.5 s"
    );
    parked(admin, 0.0).await;

    // A parked connection of a service a reload removes closes at once,
    // well before the drain deadline (the default is 30 s).
    let mut s = parked_connection(admin, dest).await;
    dir.write(
        "nodes/park-3.yaml",
        &node_config("park-3", "127.0.209.3", 2, vec![]),
    );
    wait_generation(admin, 2).await;
    assert_eq!(read_to_close(&mut s, STEP).await, "");
    parked(admin, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_a_request_and_half_closes_while_parked_is_answered() {
    let _http = backends::http("127.0.209.6:42902", "park-backend").await;
    let dir = Scratch::new("park-halfclose");
    let (_proc, admin, dest) = start(&dir, 5, 42912, "127.0.209.6:42902", None);
    wait_generation(admin, 1).await;
    let mut s = parked_connection(admin, dest).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: park\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let r = read_to_close(&mut s, STEP).await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.ends_with("park-backend\n"), "{r}");
    parked(admin, 0.0).await;
}
