//! The request fields a backend gets from meshd's HTTP/1.1 server, byte for
//! byte: fields in canonical form are copied as the client sent them (in
//! runs), any other spelling (no space after the colon, several, a bare LF)
//! is rewritten to `name: value\r\n`, and hop-by-hop fields between them
//! are gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::client::{raw_exchange, STEP};
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{meshd, wait_generation, Scratch};
use schemas::Protocol;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const NODE: &str = "fields-node";
const CLIENT: &str = "127.0.203.40";
const BACKEND: &str = "127.0.203.41:42311";

/// A backend that sends each request head it reads (up to the blank line)
/// to `heads` and answers it with a short body, then closes.
async fn recording_backend(addr: &str, heads: mpsc::UnboundedSender<Vec<u8>>) {
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = heads.send(buf);
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_fields_reach_the_backend_in_canonical_form() {
    let (tx, mut heads) = mpsc::unbounded_channel();
    recording_backend(BACKEND, tx).await;
    let dir = Scratch::new("fields-wire");
    dir.write(
        &format!("nodes/{NODE}.yaml"),
        &node_config(
            NODE,
            "127.0.203.42",
            1,
            vec![service(
                "/fields/raw",
                42310,
                Protocol::Http,
                &[(BACKEND, "fields.1")],
            )],
        ),
    );
    let (_meshd, admin) = meshd(NODE, &dir.path("nodes"), &[]);
    wait_generation(admin, 1).await;
    let port: SocketAddr = "127.0.203.42:42310".parse().unwrap();

    let r = raw_exchange(
        CLIENT,
        port,
        b"GET /f HTTP/1.1\r\nHost: h\r\nA: 1\r\nB:2\r\nC:  3\r\nConnection: close, X-Gone\r\nD: 4\nX-Gone: 1\r\nE: 5\r\nF: \r\nTE: trailers\r\nG: 7\r\n\r\n",
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("ok"),
        "{r}"
    );
    let head = tokio::time::timeout(STEP, heads.recv())
        .await
        .expect("the backend got the request")
        .unwrap();
    let head = String::from_utf8(head).unwrap();
    assert!(
        head.starts_with(
            "GET /f HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: \r\nG: 7\r\nx-forwarded-for: 127.0.203.40\r\n"
        ),
        "{head}"
    );
    // Every line ends in CRLF, and no hop-by-hop field got through.
    assert_eq!(
        head.matches('\n').count(),
        head.matches("\r\n").count(),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    for gone in ["\r\nconnection:", "\r\nte:", "\r\nx-gone:"] {
        assert!(!lower.contains(gone), "{gone} in {head}");
    }
}
