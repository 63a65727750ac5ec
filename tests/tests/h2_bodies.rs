//! Large bodies both ways through meshd's HTTP/2 server: request bodies go
//! to the backend only as it takes them (WINDOW_UPDATE credits), response
//! bodies to the client only as its windows allow, and several such
//! streams share one connection without mixing a byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_tests::backends;
use palisade_tests::client::tcp_from;
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{meshd, wait_generation, Scratch};
use schemas::Protocol;
use std::time::Duration;

const CLIENT: &str = "127.0.213.9";
const NODE: &str = "127.0.213.1";
const PORT: u16 = 44101;
const BACKEND: &str = "127.0.213.2:44102";

/// `len` bytes that differ from stream to stream and position to position.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn megabytes_each_way_on_concurrent_streams_arrive_byte_exact() {
    let _web = backends::http(BACKEND, "bodies.web").await;
    let dir = Scratch::new("h2-bodies");
    let svc = service(
        "/h2/bodies",
        PORT,
        Protocol::Http,
        &[(BACKEND, "bodies.web")],
    );
    dir.write("nodes/n.yaml", &node_config("n", NODE, 1, vec![svc]));
    let (_mesh, admin) = meshd("n", &dir.path("nodes"), &[]);
    wait_generation(admin, 1).await;

    let io = TokioIo::new(
        tcp_from(CLIENT, format!("{NODE}:{PORT}").parse().unwrap())
            .await
            .unwrap(),
    );
    // The client's windows stay at the protocol's 64 KiB: every response
    // has to wait for WINDOW_UPDATEs many times over.
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .handshake::<_, Full<Bytes>>(io)
        .await
        .unwrap();
    tokio::spawn(conn);

    let sizes = [3 << 20, 1 << 20, 2 << 20 | 12_345];
    let mut streams = Vec::new();
    for (i, len) in sizes.into_iter().enumerate() {
        let mut sender = sender.clone();
        streams.push(tokio::spawn(async move {
            let body = pattern(i as u8, len);
            let req = Request::post("http://bodies.test/echo")
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap();
            sender.ready().await.unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()["x-body-framing"], "length");
            let got = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(got.len(), len, "stream {i}");
            assert!(got == body, "stream {i}: the echo differs");
        }));
    }
    for s in streams {
        tokio::time::timeout(Duration::from_secs(30), s)
            .await
            .expect("answered in time")
            .unwrap();
    }
}
