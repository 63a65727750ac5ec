//! Invariant 8: a request, a connection and a tunnel are judged by the
//! policy in force. Connections opened under an allow rule keep working
//! only while the rule stands: after a reload that removes it (or moves the
//! service port to an app that denies the source), kept-alive HTTP/1.1 and
//! HTTP/2 connections get 403 on their next request, and open TCP and
//! WebSocket tunnels are closed. Denied connections hold no slot of the
//! app's `max_connections`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use hyper::StatusCode;
use palisade_tests::backends;
use palisade_tests::client::{greet_from, tcp_from, Http, STEP};
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{meshd, metric, wait_generation, Scratch};
use schemas::{Protocol, Rule, Service};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE: &str = "verdict-node";
const ADDRESS: &str = "127.0.0.123";
const CLIENT: &str = "127.0.124.9";

/// A service that lets in only `cidr`.
fn allowing(app: &str, port: u16, protocol: Protocol, backend: &str, cidr: &str) -> Service {
    let mut s = service(app, port, protocol, &[(backend, "task.1")]);
    s.access.allow = vec![Rule {
        from: None,
        from_cidr: Some(cidr.parse().unwrap()),
    }];
    s
}

/// Reads from `s` until it closes; `Err` if it stays open past the deadline.
async fn closed(s: &mut tokio::net::TcpStream) -> Result<(), String> {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(STEP * 2, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .map_err(|_| "still open".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_denies_a_source_reaches_its_open_connections() {
    let _web = backends::http("127.0.123.1:8080", "web.1").await;
    let _db = backends::tcp("127.0.123.2:8080", "db.1").await;
    let dir = Scratch::new("verdicts");
    let file = format!("nodes/{NODE}.yaml");
    let http: SocketAddr = format!("{ADDRESS}:22950").parse().unwrap();
    let tcp: SocketAddr = format!("{ADDRESS}:22951").parse().unwrap();
    let ws: SocketAddr = format!("{ADDRESS}:22952").parse().unwrap();
    let generation = |n: u64, cidr: &str, http_app: &str| {
        node_config(
            NODE,
            ADDRESS,
            n,
            vec![
                allowing(http_app, 22950, Protocol::Http, "127.0.123.1:8080", cidr),
                allowing("/v/db", 22951, Protocol::Tcp, "127.0.123.2:8080", cidr),
                allowing("/v/ws", 22952, Protocol::Http, "127.0.123.1:8080", cidr),
            ],
        )
    };
    dir.write(&file, &generation(1, "127.0.124.0/24", "/v/web"));
    let (_meshd, admin) = meshd(NODE, &dir.path("nodes"), &[]);
    wait_generation(admin, 1).await;

    // Allowed: one connection of each kind, left open.
    let mut h1 = Http::connect(CLIENT, http, false).await.unwrap();
    let mut h2 = Http::connect(CLIENT, http, true).await.unwrap();
    assert_eq!(h1.get("/").await.unwrap().status, StatusCode::OK);
    assert_eq!(h2.get("/").await.unwrap().status, StatusCode::OK);
    let (mut lines, name) = greet_from(CLIENT, tcp).await.unwrap();
    assert_eq!(name, "db.1");
    assert_eq!(lines.echo("ping").await.unwrap(), "ping");
    let mut socket = tcp_from(CLIENT, ws).await.unwrap();
    socket
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = [0u8; 512];
    let n = tokio::time::timeout(STEP, socket.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert!(
        head[..n].starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&head[..n])
    );

    // The allow rule goes; the web port now serves another app.
    dir.write(&file, &generation(2, "127.0.125.0/24", "/v/moved"));
    wait_generation(admin, 2).await;

    for (what, conn) in [("HTTP/1.1", &mut h1), ("HTTP/2", &mut h2)] {
        let answer = conn.get("/").await;
        let a = answer.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{what}: {a:?}");
        assert!(
            a.body.contains("/v/moved"),
            "{what}: judged for the app now on the port: {}",
            a.body
        );
    }
    assert!(
        lines.echo("ping").await.is_err(),
        "the TCP tunnel of a denied source stayed open"
    );
    closed(&mut socket)
        .await
        .expect("the WebSocket of a denied source stayed open");
    assert!(metric(admin, "palisade_meshd_revoked_connections_total").await >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_connections_hold_no_slot() {
    let _web = backends::http("127.0.123.11:8080", "web.1").await;
    let dir = Scratch::new("slots");
    let node = "slot-node";
    let address = "127.0.0.124";
    let mut svc = allowing(
        "/v/web",
        22960,
        Protocol::Http,
        "127.0.123.11:8080",
        "127.0.124.0/24",
    );
    svc.max_connections = Some(1);
    dir.write(
        &format!("nodes/{node}.yaml"),
        &node_config(node, address, 1, vec![svc]),
    );
    let (_meshd, admin) = meshd(node, &dir.path("nodes"), &[]);
    wait_generation(admin, 1).await;
    let dest: SocketAddr = format!("{address}:22960").parse().unwrap();

    // A denied source opens connections and sits on them.
    let mut squatters = Vec::new();
    for _ in 0..3 {
        squatters.push(tcp_from("127.0.126.1", dest).await.unwrap());
    }
    // The one slot is still there for an allowed client.
    let mut allowed = Http::connect(CLIENT, dest, false).await.unwrap();
    let a = allowed.get("/").await.expect("allowed client served");
    assert_eq!(a.status, StatusCode::OK);
    // And a denied request gets its 403, then the connection closes.
    let s = &mut squatters[0];
    s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut out))
        .await
        .expect("denied connection closed after its 403")
        .unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 403"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}
