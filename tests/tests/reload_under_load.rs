//! Reloads under load: bounded HTTP/1.1 and HTTP/2 load through meshd while
//! its node file is rewritten 50 times (backends added and removed,
//! balancing changed). No request may fail; a long-lived TCP connection and
//! a WebSocket stay up through every reload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::client::{greet_from, tcp_from, Http};
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{meshd, status, wait_generation, Scratch};
use schemas::{Balance, Protocol};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE: &str = "load-node";
const RELOADS: u64 = 50;
/// Upper bound on requests per load task, so the loop ends on its own.
const MAX_REQUESTS: usize = 50_000;

fn config(generation: u64) -> String {
    let sets: [&[(&str, &str)]; 3] = [
        &[("127.0.50.1:8080", "web.a"), ("127.0.50.2:8080", "web.b")],
        &[
            ("127.0.50.1:8080", "web.a"),
            ("127.0.50.2:8080", "web.b"),
            ("127.0.50.3:8080", "web.c"),
        ],
        &[("127.0.50.2:8080", "web.b"), ("127.0.50.3:8080", "web.c")],
    ];
    let balances = [
        Balance::RoundRobin,
        Balance::LeastRequest,
        Balance::P2cEwma,
        Balance::SourceHash,
    ];
    let mut web = service(
        "/load/web",
        22100,
        Protocol::Http,
        sets[(generation % 3) as usize],
    );
    web.balance = balances[(generation % 4) as usize];
    let tcp = service(
        "/load/tcp",
        22101,
        Protocol::Tcp,
        &[("127.0.50.9:9000", "tcp.a")],
    );
    node_config(NODE, "127.0.0.50", generation, vec![web, tcp])
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: AtomicUsize,
}

async fn load(
    h2: bool,
    source: &'static str,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<String> {
    let dest: SocketAddr = "127.0.0.50:22100".parse().unwrap();
    let mut errors = Vec::new();
    let mut conn = None;
    for i in 0..MAX_REQUESTS {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Mostly keep-alive, with a fresh connection now and then.
        if conn.is_none() || i % 50 == 0 {
            match Http::connect(source, dest, h2).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    errors.push(format!("connect: {e}"));
                    continue;
                }
            }
        }
        let c = conn.as_mut().unwrap();
        match c.get("/").await {
            Ok(a) if a.status == 200 => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                errors.push(format!("request {i} (h2={h2}): {other:?}"));
                conn = None;
            }
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_under_load_lose_nothing() {
    let _a = backends::http("127.0.50.1:8080", "web.a").await;
    let _b = backends::http("127.0.50.2:8080", "web.b").await;
    let _c = backends::http("127.0.50.3:8080", "web.c").await;
    let _t = backends::tcp("127.0.50.9:9000", "tcp.a").await;
    let dir = Scratch::new("reload-load");
    dir.write(&format!("nodes/{NODE}.yaml"), &config(1));
    let (mut mesh, admin) = meshd(NODE, &dir.path("nodes"), &[]);
    wait_generation(admin, 1).await;
    let pid = mesh.pid();

    let (mut tcp, greeting) = greet_from("127.0.51.1", "127.0.0.50:22101".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(greeting, "tcp.a");
    let mut ws = tcp_from("127.0.51.2", "127.0.0.50:22100".parse().unwrap())
        .await
        .unwrap();
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = ws.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut workers = Vec::new();
    for (h2, source) in [
        (false, "127.0.52.1"),
        (false, "127.0.52.2"),
        (true, "127.0.52.3"),
        (true, "127.0.52.4"),
    ] {
        workers.push(tokio::spawn(load(
            h2,
            source,
            Arc::clone(&stop),
            Arc::clone(&tally),
        )));
    }

    for generation in 2..=RELOADS + 1 {
        dir.write(&format!("nodes/{NODE}.yaml"), &config(generation));
        wait_generation(admin, generation).await;
        let msg = format!("tcp after reload {generation}");
        assert_eq!(tcp.echo(&msg).await.unwrap(), msg);
        let msg = format!("ws after reload {generation}");
        ws.write_all(msg.as_bytes()).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(3), ws.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], msg.as_bytes());
    }
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for w in workers {
        errors.extend(w.await.unwrap());
    }
    let s = status(admin).await.unwrap();
    assert_eq!(s["generation"], RELOADS + 1);
    assert_eq!(s["last_reload"]["ok"], true);
    assert!(
        mesh.running() && mesh.pid() == pid,
        "meshd was not restarted"
    );
    let ok = tally.ok.load(Ordering::Relaxed);
    assert!(
        errors.is_empty(),
        "{} failed of {}: {:?}",
        errors.len(),
        ok + errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(ok > 500, "too little load went through: {ok}");
    eprintln!("{ok} requests across {RELOADS} reloads, none failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_service_stops_accepting_and_its_connections_drain() {
    let _t = backends::tcp("127.0.53.9:9000", "tcp.keep").await;
    let _u = backends::tcp("127.0.53.8:9000", "tcp.gone").await;
    let keep = service(
        "/drain/keep",
        22150,
        Protocol::Tcp,
        &[("127.0.53.9:9000", "tcp.keep")],
    );
    let gone = service(
        "/drain/gone",
        22151,
        Protocol::Tcp,
        &[("127.0.53.8:9000", "tcp.gone")],
    );
    let dir = Scratch::new("drain-removed");
    dir.write(
        "nodes/drain.yaml",
        &node_config("drain", "127.0.0.53", 1, vec![keep.clone(), gone]),
    );
    let (_mesh, admin) = meshd("drain", &dir.path("nodes"), &["--drain-deadline", "1s"]);
    wait_generation(admin, 1).await;
    let (mut open, _) = greet_from("127.0.54.1", "127.0.0.53:22151".parse().unwrap())
        .await
        .unwrap();

    // Older files change nothing; the removal is generation 3.
    dir.write(
        "nodes/drain.yaml",
        &node_config("drain", "127.0.0.53", 3, vec![keep.clone()]),
    );
    wait_generation(admin, 3).await;
    dir.write(
        "nodes/drain.yaml",
        &node_config("drain", "127.0.0.53", 2, vec![keep]),
    );
    let s = palisade_tests::harness::eventually(
        "the older file is refused",
        Duration::from_secs(3),
        || async move {
            let s = status(admin).await?;
            if s["last_reload"]["ok"] == false {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        },
    )
    .await;
    assert_eq!(s["generation"], 3);
    assert!(
        s["last_reload"]["error"]
            .as_str()
            .unwrap()
            .contains("not newer"),
        "{s}"
    );

    // The removed port refuses new connections; the open one still works until the deadline.
    assert!(tcp_from("127.0.54.2", "127.0.0.53:22151".parse().unwrap())
        .await
        .is_err());
    assert_eq!(open.echo("draining").await.unwrap(), "draining");
    // At the 1 s drain deadline meshd closes it.
    assert_eq!(open.line().await, Err("closed".to_owned()));
    // The kept service never stopped.
    assert!(
        greet_from("127.0.54.3", "127.0.0.53:22150".parse().unwrap())
            .await
            .is_ok()
    );
}
