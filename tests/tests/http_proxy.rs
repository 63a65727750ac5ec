//! HTTP mode through a real meshd: HTTP/1.1 and h2 on one port, forwarding
//! headers, 403 with a reason, WebSocket upgrades, retries and ejection,
//! draining backends, limits and timeouts (idle tunnels too), access log and metrics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::client::{tcp_from, Http};
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{eventually, meshd, metric, wait_generation, wait_metric, Scratch};
use schemas::{Health, Protocol, Rule};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE: &str = "http-node";

struct Mesh {
    dir: Scratch,
    _meshd: palisade_tests::harness::Proc,
    admin: SocketAddr,
}

fn start(name: &str, address: &str, services: Vec<schemas::Service>, extra: &[&str]) -> Mesh {
    let dir = Scratch::new(name);
    dir.write(
        &format!("nodes/{NODE}.yaml"),
        &node_config(NODE, address, 1, services),
    );
    let (meshd, admin) = meshd(NODE, &dir.path("nodes"), extra);
    Mesh {
        dir,
        _meshd: meshd,
        admin,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_and_h2_share_a_port_balance_and_forward_headers() {
    let _a = backends::http("127.0.31.1:8080", "web.a").await;
    let _b = backends::http("127.0.31.2:8080", "web.b").await;
    let mut svc = service(
        "/e2e/web",
        22000,
        Protocol::Http,
        &[("127.0.31.1:8080", "web.a"), ("127.0.31.2:8080", "web.b")],
    );
    svc.access.deny.push(Rule {
        from: None,
        from_cidr: Some("127.0.39.0/24".parse().unwrap()),
    });
    let log = std::env::temp_dir().join(format!("palisade-access-{}.log", std::process::id()));
    let mesh = start(
        "h1h2",
        "127.0.0.31",
        vec![svc],
        &["--access-log", log.to_str().unwrap()],
    );
    wait_generation(mesh.admin, 1).await;
    let dest: SocketAddr = "127.0.0.31:22000".parse().unwrap();

    for h2 in [false, true] {
        let mut c = Http::connect("127.0.32.1", dest, h2).await.unwrap();
        let mut seen = HashSet::new();
        for _ in 0..4 {
            let a = c.get("/").await.unwrap();
            assert_eq!(a.status, 200, "h2={h2}: {a:?}");
            seen.insert(a.backend.unwrap());
        }
        assert_eq!(
            seen.len(),
            2,
            "h2={h2}: one keep-alive connection reaches both backends"
        );

        let req = hyper::Request::get(if h2 {
            "http://mesh.test/headers"
        } else {
            "/headers"
        })
        .header("host", "mesh.test")
        .header("x-forwarded-for", "10.9.9.9")
        .header("connection", "x-secret")
        .header("x-secret", "do not forward")
        .body(http_body_util::Empty::new())
        .unwrap();
        let req = if h2 {
            // Connection-specific headers are illegal in HTTP/2; send the rest.
            let (mut p, b) = req.into_parts();
            p.headers.remove("connection");
            p.headers.remove("x-secret");
            hyper::Request::from_parts(p, b)
        } else {
            req
        };
        let a = c.send(req).await.unwrap();
        let seen: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(
            seen["x-forwarded-for"], "10.9.9.9, 127.0.32.1",
            "h2={h2}: {seen}"
        );
        assert_eq!(seen["x-forwarded-proto"], "http");
        assert_eq!(seen["x-request-id"].as_str().unwrap().len(), 16);
        assert_eq!(seen["host"], "mesh.test");
        assert!(
            seen.get("x-secret").is_none() && seen.get("connection").is_none(),
            "{seen}"
        );
    }

    // A denied source gets 403 with the reason, on both protocols.
    for h2 in [false, true] {
        let mut c = Http::connect("127.0.39.1", dest, h2).await.unwrap();
        let a = c.get("/").await.unwrap();
        assert_eq!(a.status, 403);
        assert_eq!(
            a.body,
            "palisade: unknown may not reach /e2e/web (deny[0])\n"
        );
        assert!(a.backend.is_none());
    }

    // Oversized headers: 431.
    let mut c = Http::connect("127.0.32.1", dest, false).await.unwrap();
    let big = "a".repeat(70_000);
    let req = hyper::Request::get("/")
        .header("host", "x")
        .header("x-big", big)
        .body(http_body_util::Empty::new())
        .unwrap();
    assert_eq!(c.send(req).await.unwrap().status, 431);

    // Timing histograms and per-backend counters are exported.
    let text = palisade_tests::harness::admin_get(mesh.admin, "/metrics")
        .await
        .unwrap()
        .1;
    for series in [
        "palisade_meshd_request_duration_seconds_bucket{dst_app=\"/e2e/web\"",
        "palisade_meshd_upstream_ttfb_seconds_count{dst_app=\"/e2e/web\"}",
        "palisade_meshd_upstream_connect_seconds_count{dst_app=\"/e2e/web\"}",
        "palisade_meshd_backend_requests_total{dst_app=\"/e2e/web\",backend=\"127.0.31.1:8080\"}",
        "palisade_meshd_requests_total{dst_app=\"/e2e/web\",code=\"2xx\"}",
        "palisade_meshd_downstream_bytes_total{dst_app=\"/e2e/web\"}",
    ] {
        assert!(text.contains(series), "missing {series}");
    }

    // The access log has a JSON line per request with timing, bytes and verdict.
    let line = eventually("an access log line", Duration::from_secs(3), || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
            text.lines()
                .find(|l| l.contains("\"HTTP/2.0\""))
                .map(str::to_owned)
                .ok_or(text)
        }
    })
    .await;
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["dst_app"], "/e2e/web");
    assert_eq!(entry["src_app"], "unknown");
    assert_eq!(entry["verdict"], "allow");
    assert_eq!(entry["status"], 200);
    for field in ["ttfb_ms", "total_ms", "bytes_out", "backend", "peer"] {
        assert!(!entry[field].is_null(), "{field} in {entry}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let denied = text
        .lines()
        .find(|l| l.contains("\"verdict\":\"deny\""))
        .expect("denied requests are logged");
    let denied: serde_json::Value = serde_json::from_str(denied).unwrap();
    assert_eq!(denied["status"], 403);
    let _ = std::fs::remove_file(&log);
    drop(mesh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_are_tunnelled() {
    let _a = backends::http("127.0.33.1:8080", "ws.a").await;
    let mesh = start(
        "ws",
        "127.0.0.33",
        vec![service(
            "/e2e/ws",
            22001,
            Protocol::Http,
            &[("127.0.33.1:8080", "ws.a")],
        )],
        &[],
    );
    wait_generation(mesh.admin, 1).await;
    let mut s = tcp_from("127.0.34.1", "127.0.0.33:22001".parse().unwrap())
        .await
        .unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in ["hello", "over the tunnel"] {
        s.write_all(msg.as_bytes()).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], msg.as_bytes());
    }
    // The tunnel's bytes are counted both ways as it closes: 20 each way.
    drop(s);
    for series in ["upstream", "downstream"] {
        let series = format!(r#"palisade_meshd_{series}_bytes_total{{dst_app="/e2e/ws"}}"#);
        wait_metric(mesh.admin, &series, Duration::from_secs(3), |v| v == 20.0).await;
    }
    drop(mesh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_connects_and_resets_are_retried_and_dead_backends_ejected() {
    let _good = backends::http("127.0.35.1:8080", "web.good").await;
    let _bad = backends::http("127.0.35.2:8080", "web.bad").await;
    let flaky = service(
        "/e2e/flaky",
        22002,
        Protocol::Http,
        &[
            ("127.0.35.1:8080", "web.good"),
            ("127.0.35.2:8080", "web.bad"),
        ],
    );
    // 127.0.35.3 has nothing listening: every connect fails.
    let dead = service(
        "/e2e/dead",
        22005,
        Protocol::Http,
        &[
            ("127.0.35.1:8080", "web.good"),
            ("127.0.35.3:8080", "web.dead"),
        ],
    );
    let mesh = start("retry", "127.0.0.35", vec![flaky, dead], &[]);
    wait_generation(mesh.admin, 1).await;

    // A POST that meets a reset is not replayed: the client sees 502.
    let mut c = Http::connect("127.0.36.1", "127.0.0.35:22002".parse().unwrap(), false)
        .await
        .unwrap();
    let mut codes = Vec::new();
    for _ in 0..4 {
        let req = hyper::Request::post("/flaky")
            .header("host", "x")
            .body(http_body_util::Empty::new())
            .unwrap();
        codes.push(c.send(req).await.unwrap().status.as_u16());
    }
    assert!(
        codes.contains(&502) && codes.contains(&200),
        "round robin over good and bad: {codes:?}"
    );
    // An idempotent request survives a reset: it is retried on the other backend.
    for i in 0..8 {
        let a = c.get("/flaky").await.unwrap();
        assert_eq!(
            (a.status.as_u16(), a.backend.as_deref()),
            (200, Some("web.good")),
            "request {i}"
        );
    }
    assert!(
        metric(
            mesh.admin,
            "palisade_meshd_retries_total{dst_app=\"/e2e/flaky\"}"
        )
        .await
            >= 1.0
    );

    // Any request, POST included, survives a failed connect; five in a row eject the backend.
    let mut c = Http::connect("127.0.36.1", "127.0.0.35:22005".parse().unwrap(), false)
        .await
        .unwrap();
    for i in 0..12 {
        let req = hyper::Request::post("/")
            .header("host", "x")
            .body(http_body_util::Empty::new())
            .unwrap();
        let a = c.send(req).await.unwrap();
        assert_eq!(
            (a.status.as_u16(), a.backend.as_deref()),
            (200, Some("web.good")),
            "request {i}"
        );
    }
    let ejected =
        "palisade_meshd_backend_ejections_total{dst_app=\"/e2e/dead\",backend=\"127.0.35.3:8080\"}";
    assert_eq!(
        metric(mesh.admin, ejected).await,
        1.0,
        "the dead backend is ejected once"
    );
    let failures =
        "palisade_meshd_backend_failures_total{dst_app=\"/e2e/dead\",backend=\"127.0.35.3:8080\"}";
    assert_eq!(
        metric(mesh.admin, failures).await,
        5.0,
        "no connect is tried while it is ejected"
    );
    drop(mesh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_and_unhealthy_backends_get_no_new_work() {
    let live = backends::http("127.0.37.1:8080", "web.live").await;
    let draining = backends::http("127.0.37.2:8080", "web.draining").await;
    let sick = backends::http("127.0.37.3:8080", "web.sick").await;
    let mut svc = service(
        "/e2e/drain",
        22003,
        Protocol::Http,
        &[
            ("127.0.37.1:8080", "web.live"),
            ("127.0.37.2:8080", "web.draining"),
            ("127.0.37.3:8080", "web.sick"),
        ],
    );
    svc.backends[1].health = Health::Draining;
    svc.backends[2].health = Health::Unhealthy;
    let mesh = start("drain", "127.0.0.37", vec![svc], &[]);
    wait_generation(mesh.admin, 1).await;
    let mut c = Http::connect("127.0.38.1", "127.0.0.37:22003".parse().unwrap(), true)
        .await
        .unwrap();
    for _ in 0..10 {
        assert_eq!(
            c.get("/").await.unwrap().backend.as_deref(),
            Some("web.live")
        );
    }
    assert_eq!((live.hits(), draining.hits(), sick.hits()), (10, 0, 0));
    drop(mesh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_time_out_and_connection_limits_hold() {
    let _a = backends::http("127.0.40.1:8080", "web.a").await;
    let mut svc = service(
        "/e2e/limits",
        22004,
        Protocol::Http,
        &[("127.0.40.1:8080", "web.a")],
    );
    svc.timeouts.request_header = Some("500ms".parse().unwrap());
    svc.max_connections = Some(2);
    let mesh = start("limits", "127.0.0.40", vec![svc], &[]);
    wait_generation(mesh.admin, 1).await;
    let dest: SocketAddr = "127.0.0.40:22004".parse().unwrap();

    // A client that never finishes its header is cut off.
    let mut slow = tcp_from("127.0.41.1", dest).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(3), slow.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || answer.contains("408"), "{answer}");
    drop(slow);

    // Two connections may be open; a third is closed at once.
    let mut one = Http::connect("127.0.41.2", dest, false).await.unwrap();
    let mut two = Http::connect("127.0.41.3", dest, false).await.unwrap();
    assert_eq!(one.get("/").await.unwrap().status, 200);
    assert_eq!(two.get("/").await.unwrap().status, 200);
    let third = match Http::connect("127.0.41.4", dest, false).await {
        Ok(mut c) => c.get("/").await,
        Err(e) => Err(e.to_string()),
    };
    assert!(
        third.is_err(),
        "a third connection must be refused: {third:?}"
    );
    drop(one);
    eventually(
        "a slot frees up after a client leaves",
        Duration::from_secs(3),
        || async move {
            let mut c = Http::connect("127.0.41.5", dest, false)
                .await
                .map_err(|e| e.to_string())?;
            c.get("/").await.map(|_| ())
        },
    )
    .await;
    let _ = mesh.dir.path("");
}

/// Sends a line every 400 ms for 2.4 s (more than twice a 1 s
/// `tunnel_idle`), each echoed back, then goes quiet and checks that the
/// tunnel closes, and not before `tunnel_idle`.
async fn busy_then_quiet(s: &mut tokio::net::TcpStream, what: &str) {
    let mut buf = [0u8; 256];
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let line = format!("ping {i}\n");
        s.write_all(line.as_bytes()).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], line.as_bytes(), "busy {what} closed early");
    }
    let closed = time_to_close(s, Duration::from_secs(4)).await;
    assert!(
        closed >= Duration::from_millis(900),
        "{what} closed {closed:?} after the last byte, before tunnel_idle"
    );
}

/// Reads until the peer closes the connection (or it errors); how long that took.
async fn time_to_close(s: &mut tokio::net::TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout_at((start + within).into(), s.read(&mut buf)).await {
            Err(_) => panic!("still open {within:?} after the last byte"),
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_tunnels_close_after_tunnel_idle_and_busy_ones_stay_up() {
    let _tcp = backends::tcp("127.0.70.1:9000", "idle.tcp").await;
    let _ws = backends::http("127.0.70.2:8080", "idle.ws").await;
    let idle = schemas::Timeouts {
        tunnel_idle: Some(schemas::duration::Duration(Duration::from_secs(1))),
        ..Default::default()
    };
    let mut tcp = service(
        "/e2e/idle-tcp",
        22020,
        Protocol::Tcp,
        &[("127.0.70.1:9000", "idle.tcp")],
    );
    tcp.timeouts = idle;
    let mut ws = service(
        "/e2e/idle-ws",
        22021,
        Protocol::Http,
        &[("127.0.70.2:8080", "idle.ws")],
    );
    ws.timeouts = idle;
    let mesh = start("idle", "127.0.0.70", vec![tcp, ws], &[]);
    wait_generation(mesh.admin, 1).await;

    // TCP mode: traffic keeps the connection up; silence closes it.
    let mut t = tcp_from("127.0.71.1", "127.0.0.70:22020".parse().unwrap())
        .await
        .unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(3), t.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"idle.tcp\n");
    busy_then_quiet(&mut t, "TCP tunnel").await;

    // An upgraded (WebSocket) connection: the same timeout, the same rule.
    let mut s = tcp_from("127.0.71.1", "127.0.0.70:22021".parse().unwrap())
        .await
        .unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 101"));
    busy_then_quiet(&mut s, "WebSocket").await;
    drop(mesh);
}
