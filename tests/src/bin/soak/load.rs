//! The load: HTTP/1.1, HTTP/2, TCP and WebSocket clients through every
//! meshd from allowed sources, and a prober from a denied source. Every
//! loop is bounded (one request in flight per client, a pause between) and
//! sends only to 127.0.0.0/8.

use crate::{Shared, NODES, TCP_PORT, WEB_PORT};
use palisade_tests::client::{greet_from, refused_from, tcp_from, Http, STEP};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The kinds of client, each from its own allowed source address.
pub const KINDS: [(&str, &str); 4] = [
    ("http1", "127.0.202.1"),
    ("http2", "127.0.202.2"),
    ("tcp", "127.0.202.3"),
    ("websocket", "127.0.202.4"),
];

/// A source that no rule allows.
pub const DENIED: &str = "127.0.203.1";

fn dest(node: usize, port: u16) -> SocketAddr {
    format!("{}:{port}", NODES[node % NODES.len()])
        .parse()
        .unwrap()
}

/// Runs the client of kind `k` until `shared.stop`.
pub async fn client(shared: Arc<Shared>, k: usize) {
    let (kind, source) = KINDS[k];
    let mut i = 0usize;
    // HTTP clients keep a connection for a few requests, then open another.
    let mut conn: Option<(Http, usize)> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        i += 1;
        let node = i % NODES.len();
        let result = match kind {
            "http1" | "http2" => {
                let node = conn.as_ref().map_or(node, |(_, n)| *n);
                http_once(&mut conn, source, node, kind == "http2").await
            }
            "tcp" => tcp_once(source, dest(node, TCP_PORT), i).await,
            _ => ws_once(source, dest(node, WEB_PORT), i).await,
        };
        if result.is_err() {
            conn = None;
        }
        if i.is_multiple_of(10) {
            conn = None;
        }
        shared.record(kind, node, result);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn http_once(
    conn: &mut Option<(Http, usize)>,
    source: &str,
    node: usize,
    h2: bool,
) -> Result<(), String> {
    if conn.is_none() {
        let c = Http::connect(source, dest(node, WEB_PORT), h2)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        *conn = Some((c, node));
    }
    let (c, _) = conn.as_mut().unwrap();
    let a = c.get("/").await?;
    match (a.status.as_u16(), &a.backend) {
        (200, Some(_)) => Ok(()),
        (s, b) => Err(format!("status {s} from backend {b:?}: {}", a.body.trim())),
    }
}

async fn tcp_once(source: &str, to: SocketAddr, i: usize) -> Result<(), String> {
    let (mut lines, _name) = greet_from(source, to).await?;
    let line = format!("ping-{i}");
    let echo = lines.echo(&line).await?;
    if echo == line {
        Ok(())
    } else {
        Err(format!("echo {echo:?}, sent {line:?}"))
    }
}

async fn ws_once(source: &str, to: SocketAddr, i: usize) -> Result<(), String> {
    let run = async {
        let mut s = tcp_from(source, to)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(b"GET /ws HTTP/1.1\r\nHost: mesh.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 8192 || s.read(&mut byte).await.map_err(|e| e.to_string())? == 0 {
                return Err(format!(
                    "closed during upgrade: {:?}",
                    String::from_utf8_lossy(&head)
                ));
            }
            head.push(byte[0]);
        }
        if !head.starts_with(b"HTTP/1.1 101") {
            let line = String::from_utf8_lossy(&head);
            return Err(format!(
                "no upgrade: {}",
                line.lines().next().unwrap_or_default()
            ));
        }
        for m in 0..3 {
            let msg = format!("ws-{i}-{m}");
            s.write_all(msg.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut back = vec![0u8; msg.len()];
            s.read_exact(&mut back)
                .await
                .map_err(|e| format!("echo: {e}"))?;
            if back != msg.as_bytes() {
                return Err(format!("echo {:?}", String::from_utf8_lossy(&back)));
            }
        }
        Ok(())
    };
    tokio::time::timeout(STEP * 2, run)
        .await
        .map_err(|_| "websocket timed out".to_owned())?
}

/// From a denied source, every node must refuse: HTTP with 403, TCP by
/// closing before any byte. A backend's answer is an invariant breach.
pub async fn denied_prober(shared: Arc<Shared>) {
    let mut i = 0usize;
    while !shared.stop.load(Ordering::Relaxed) {
        i += 1;
        let node = i % NODES.len();
        let started = Instant::now();
        shared.denied_probes.fetch_add(2, Ordering::Relaxed);
        if let Ok(mut c) = Http::connect(DENIED, dest(node, WEB_PORT), false).await {
            if let Ok(a) = c.get("/").await {
                if a.status.as_u16() != 403 || a.backend.is_some() {
                    shared.breach(format!(
                        "I5 denied source {DENIED} got HTTP {} from backend {:?} via {}",
                        a.status, a.backend, NODES[node]
                    ));
                }
            }
        }
        if let Err(e) = refused_from(DENIED, dest(node, TCP_PORT)).await {
            if e.contains("got ") {
                shared.breach(format!(
                    "I5 denied source {DENIED} got TCP bytes via {}: {e}",
                    NODES[node]
                ));
            }
        }
        let spent = started.elapsed();
        tokio::time::sleep(Duration::from_millis(300).saturating_sub(spent)).await;
    }
}
