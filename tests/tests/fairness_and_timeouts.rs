//! Every wait is bounded and blamed on the side that caused it: a backend
//! that stalls mid-body is cut off at the idle timeout (HTTP/1.1 and
//! HTTP/2); a client's slow upload neither counts against the backend's
//! `response` timeout nor marks the backend failed; an HTTP/2 client that
//! resets its upload never ejects a backend; edge listeners and the admin
//! endpoint hold a bounded number of connections, each head within a timeout;
//! a reload's timeouts reach a kept-alive connection at its next request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use palisade_tests::client::{read_until, tcp_from, STEP};
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{admin_get, meshd, wait_generation, Scratch};
use palisade_tests::recorder;
use schemas::duration::Duration as Wait;
use schemas::Protocol;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT: &str = "127.0.127.9";

/// The sum of every series of metric `name`.
async fn metric_sum(admin: SocketAddr, name: &str) -> f64 {
    let (_, body) = admin_get(admin, "/metrics").await.unwrap();
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A meshd on 127.0.128.`i` serving one HTTP app on port 22970 whose task
/// is a recorder on 127.0.127.`i`, with the given idle and response timeouts.
async fn start(
    i: u8,
    idle: &str,
    response: &str,
    extra: &[&str],
) -> (
    recorder::Recorder,
    palisade_tests::harness::Proc,
    SocketAddr,
    SocketAddr,
    Scratch,
) {
    let task = format!("127.0.127.{i}:8080");
    let rec = recorder::start(&task).await;
    let mut svc = service("/fair/app", 22970, Protocol::Http, &[(&task, "app.1")]);
    svc.timeouts.idle = Some(idle.parse::<Wait>().unwrap());
    svc.timeouts.response = Some(response.parse::<Wait>().unwrap());
    let node = format!("fair-{i}");
    let dir = Scratch::new("fair");
    dir.write(
        &format!("nodes/{node}.yaml"),
        &node_config(&node, &format!("127.0.128.{i}"), 1, vec![svc]),
    );
    let (proc, admin) = meshd(&node, &dir.path("nodes"), extra);
    wait_generation(admin, 1).await;
    let dest = format!("127.0.128.{i}:22970").parse().unwrap();
    (rec, proc, admin, dest, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_stalling_mid_body_is_cut_off_at_idle() {
    let (_rec, _meshd, _admin, dest, _dir) = start(1, "1s", "5s", &[]).await;
    // HTTP/1.1: half the body, then the connection closes.
    let mut s = tcp_from(CLIENT, dest).await.unwrap();
    s.write_all(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    tokio::time::timeout(STEP * 2, s.read_to_end(&mut out))
        .await
        .expect("a stalled response body pinned the client connection")
        .unwrap_or_default();
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("hello"),
        "{out}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "cut before idle"
    );

    // HTTP/2: the stream's body ends with an error.
    let mut h2 = palisade_tests::client::Http::connect(CLIENT, dest, true)
        .await
        .unwrap();
    let palisade_tests::client::Http::H2(sender) = &mut h2 else {
        unreachable!()
    };
    let req = hyper::Request::get("http://x/stall")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let body = tokio::time::timeout(STEP * 2, resp.into_body().collect())
        .await
        .expect("a stalled response body pinned the HTTP/2 stream");
    assert!(body.is_err(), "a cut body must not look complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_is_the_clients_time_not_the_backends() {
    let (rec, _meshd, admin, dest, _dir) = start(2, "5s", "1s", &[]).await;
    let mut s = tcp_from(CLIENT, dest).await.unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello",
    )
    .await
    .unwrap();
    // A client slower than the backend's response timeout, within idle.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b"world").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(rec.complete()[0].body, b"helloworld");
    assert_eq!(
        metric_sum(admin, "palisade_meshd_backend_failures_total").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_resetting_its_upload_never_ejects_the_backend() {
    let (_rec, _meshd, admin, dest, _dir) = start(3, "5s", "5s", &[]).await;
    type Frame_ = Result<Frame<Bytes>, std::io::Error>;
    type Frames = std::pin::Pin<Box<dyn futures_util::Stream<Item = Frame_> + Send>>;
    let io = hyper_util::rt::TokioIo::new(tcp_from(CLIENT, dest).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<_, _, StreamBody<Frames>>(
        hyper_util::rt::TokioExecutor::new(),
        io,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for _ in 0..8 {
        // A part of the body; once meshd is waiting for the rest, the
        // client gives up and hyper resets the stream.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Frame_>();
        tx.send(Ok(Frame::data(Bytes::from_static(b"part"))))
            .unwrap();
        let frames: Frames = Box::pin(futures_util::stream::unfold(rx, |mut rx| async {
            rx.recv().await.map(|f| (f, rx))
        }));
        let req = hyper::Request::post("http://x/upload")
            .body(StreamBody::new(frames))
            .unwrap();
        let sent = tokio::spawn(sender.send_request(req));
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(Err(std::io::Error::other("client gives up")))
            .unwrap();
        let _ = tokio::time::timeout(STEP, sent).await;
    }
    assert_eq!(
        metric_sum(admin, "palisade_meshd_backend_failures_total").await,
        0.0
    );
    let mut h1 = palisade_tests::client::Http::connect(CLIENT, dest, false)
        .await
        .unwrap();
    let a = h1.get("/after").await.unwrap();
    assert_eq!(a.status, 200, "the backend was ejected: {a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_listener_holds_a_bounded_number_of_connections() {
    let edge = "127.0.128.4:22980";
    let (_rec, _meshd, _admin, _dest, _dir) = start(
        4,
        "5s",
        "5s",
        &["--edge-http", edge, "--edge-max-connections", "2"],
    )
    .await;
    let edge: SocketAddr = edge.parse().unwrap();
    // Two held connections fill the edge; a third is closed at accept.
    let _held: Vec<_> = futures_util::future::join_all((0..2).map(|_| tcp_from(CLIENT, edge)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let refused = palisade_tests::client::refused_from(CLIENT, edge).await;
    assert!(refused.is_ok(), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_closes_an_unfinished_request_head() {
    let (_rec, _meshd, admin, _dest, _dir) = start(5, "5s", "5s", &[]).await;
    // An admin connection that never finishes its head is closed.
    let mut slow = tcp_from("127.0.0.1", admin).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(15), slow.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
        "an unfinished admin request head held its connection"
    );
}

/// One request and its whole response on a kept-alive connection.
async fn exchange(s: &mut tokio::net::TcpStream) {
    s.write_all(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The recorder answers `200 ok` with `Content-Length: 2`.
    let out = read_until(s, "\r\n\r\nok", 1).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// A reload's timeouts reach a connection kept alive across it at its next
/// request (judged again then), instead of the ones it was opened with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_idle_timeout_reaches_an_open_connection_at_its_next_request() {
    let (_rec, _meshd, admin, dest, dir) = start(6, "60s", "5s", &[]).await;
    let mut s = tcp_from(CLIENT, dest).await.unwrap();
    exchange(&mut s).await;

    let task = "127.0.127.6:8080";
    let mut svc = service("/fair/app", 22970, Protocol::Http, &[(task, "app.1")]);
    svc.timeouts.idle = Some("500ms".parse::<Wait>().unwrap());
    svc.timeouts.response = Some("5s".parse::<Wait>().unwrap());
    dir.write(
        "nodes/fair-6.yaml",
        &node_config("fair-6", "127.0.128.6", 2, vec![svc]),
    );
    wait_generation(admin, 2).await;

    exchange(&mut s).await;
    let quiet = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(STEP * 2, s.read(&mut buf))
        .await
        .expect("the connection kept the 60 s idle timeout it was opened with")
        .unwrap_or(0);
    assert_eq!(n, 0, "meshd answered nothing, it should close");
    assert!(
        quiet.elapsed() >= Duration::from_millis(400),
        "closed before the new idle timeout: {:?}",
        quiet.elapsed()
    );
}
