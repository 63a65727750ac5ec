//! The user-to-app timing breakdown through a real meshd: HTTP/1.1 (curl)
//! and h2c (hyper) requests and TCP connections, to a backend that sends its
//! response's first bytes, waits, then sends the rest (so the wait is data
//! transfer time) or waits before answering at all (app response time).
//! meshd's `/metrics` must count the client's RTT once per request (once
//! per connection in TCP mode) and put each wait in its own histogram.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::client::{greet_from, Http};
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{admin_get, meshd, wait_generation, wait_metric, Scratch};
use schemas::Protocol;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const NODE: &str = "timing-node";
const MESH: &str = "127.0.0.160";
const CLIENT: &str = "127.0.162.1";
/// The backend's wait between the response's first bytes and the rest.
const TRICKLE: Duration = Duration::from_millis(60);
/// The backend's wait before it answers `/think`.
const THINK: Duration = Duration::from_millis(40);

/// An HTTP/1.1 backend that answers every request (keep-alive, no request
/// bodies) with `hello` at once and `world` after `TRICKLE`, or, for
/// `/think`, with `helloworld` after `THINK`. Stops when its task is aborted.
async fn trickling_backend(addr: &str) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let think = buf.starts_with(b"GET /think ");
                    buf.drain(..end + 4);
                    let head = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n";
                    let sent = if think {
                        tokio::time::sleep(THINK).await;
                        s.write_all(&[&head[..], b"helloworld"].concat()).await
                    } else {
                        let first = s.write_all(&[&head[..], b"hello"].concat()).await;
                        tokio::time::sleep(TRICKLE).await;
                        match first {
                            Ok(()) => s.write_all(b"world").await,
                            Err(e) => Err(e),
                        }
                    };
                    if sent.is_err() {
                        return;
                    }
                }
            });
        }
    })
}

/// Runs curl (HTTP/1.1) from `CLIENT` for `urls` on one connection: one
/// line per request, `body|status`, and how many connections it opened.
async fn curl(urls: Vec<String>) -> (Vec<String>, u32) {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("curl");
        // One -w serves every URL; curl reuses its connection across them.
        cmd.args(["-sS", "--max-time", "10", "--interface", CLIENT]);
        cmd.args(["-w", "|%{http_code}|%{num_connects}\\n"]);
        cmd.args(&urls);
        let out = cmd.output().expect("curl");
        assert!(out.status.success(), "curl: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = Vec::new();
        let mut connects = 0;
        for line in text.lines() {
            let (answer, n) = line.rsplit_once('|').expect("curl's -w line");
            connects += n.parse::<u32>().expect("num_connects");
            lines.push(answer.to_owned());
        }
        (lines, connects)
    })
    .await
    .unwrap()
}

/// The value of `name{dst_app="app"}` (a `_sum` or `_count`).
fn series(name: &str, app: &str) -> String {
    format!("{name}{{dst_app=\"{app}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_records_client_rtt_response_and_transfer_time() {
    let backend = trickling_backend("127.0.161.1:8080").await;
    let _tcp = backends::tcp("127.0.161.2:8080", "timing.tcp").await;
    let web = service(
        "/timing/web",
        22160,
        Protocol::Http,
        &[("127.0.161.1:8080", "timing_web.1")],
    );
    let think = service(
        "/timing/think",
        22162,
        Protocol::Http,
        &[("127.0.161.1:8080", "timing_web.1")],
    );
    let tcp = service(
        "/timing/tcp",
        22161,
        Protocol::Tcp,
        &[("127.0.161.2:8080", "timing_tcp.1")],
    );
    let dir = Scratch::new("user-timing");
    dir.write(
        &format!("nodes/{NODE}.yaml"),
        &node_config(NODE, MESH, 1, vec![web, think, tcp]),
    );
    let (_meshd, admin) = meshd(NODE, &dir.path("nodes"), &[]);
    wait_generation(admin, 1).await;

    // HTTP/1.1 (curl) and h2c (hyper's client: curl 7.88 cannot reuse a
    // prior-knowledge connection, curl/curl#10634), several requests on one
    // connection each: the RTT read at the first request serves the next
    // ones, and every request still counts.
    const PER_CONNECTION: usize = 4;
    let (answers, connects) = curl(vec![format!("http://{MESH}:22160/"); PER_CONNECTION]).await;
    assert_eq!(answers, vec!["helloworld|200"; PER_CONNECTION]);
    assert_eq!(connects, 1, "one keep-alive connection");
    let dest: SocketAddr = format!("{MESH}:22160").parse().unwrap();
    let mut h2 = Http::connect(CLIENT, dest, true).await.unwrap();
    for _ in 0..PER_CONNECTION {
        let a = h2.get("/").await.unwrap();
        assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "helloworld"));
    }
    drop(h2);
    let http_requests = (2 * PER_CONNECTION) as f64;
    let think_url = format!("http://{MESH}:22162/think");
    let (answers, _) = curl(vec![think_url.clone(), think_url]).await;
    assert_eq!(answers, vec!["helloworld|200"; 2]);

    // TCP: one RTT per connection, however many bytes it carries.
    const TCP_CONNECTIONS: usize = 3;
    let tcp_dest: SocketAddr = format!("{MESH}:22161").parse().unwrap();
    for i in 0..TCP_CONNECTIONS {
        let (mut lines, greeting) = greet_from(CLIENT, tcp_dest).await.unwrap();
        assert_eq!(greeting, "timing.tcp");
        for j in 0..3 {
            let line = format!("line {i}.{j}");
            assert_eq!(lines.echo(&line).await.unwrap(), line);
        }
    }

    // The last request settles just after its last byte reached the client.
    let settle = Duration::from_secs(5);
    let web = "/timing/web";
    let rtt_count = wait_metric(
        admin,
        &series("palisade_meshd_client_rtt_seconds_count", web),
        settle,
        |v| v >= http_requests,
    )
    .await;
    let transfer_count = wait_metric(
        admin,
        &series("palisade_meshd_transfer_seconds_count", web),
        settle,
        |v| v >= http_requests,
    )
    .await;
    let tcp_rtt_count = wait_metric(
        admin,
        &series("palisade_meshd_client_rtt_seconds_count", "/timing/tcp"),
        settle,
        |v| v >= TCP_CONNECTIONS as f64,
    )
    .await;
    let think_count = wait_metric(
        admin,
        &series(
            "palisade_meshd_upstream_ttfb_seconds_count",
            "/timing/think",
        ),
        settle,
        |v| v >= 2.0,
    )
    .await;
    let text = admin_get(admin, "/metrics").await.unwrap().1;
    let value = |name: &str, app: &str| -> f64 {
        let s = series(name, app);
        text.lines()
            .find_map(|l| l.strip_prefix(&s).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {s} in /metrics:\n{text}"))
    };

    // Exactly one sample per request (per connection in TCP mode).
    assert_eq!(rtt_count, http_requests, "{text}");
    assert_eq!(transfer_count, http_requests, "{text}");
    assert_eq!(tcp_rtt_count, TCP_CONNECTIONS as f64, "{text}");
    assert_eq!(think_count, 2.0, "{text}");
    for name in [
        "palisade_meshd_upstream_ttfb_seconds_count",
        "palisade_meshd_request_duration_seconds_count",
    ] {
        assert_eq!(value(name, web), http_requests, "{name}\n{text}");
    }
    assert!(
        value("palisade_meshd_upstream_connect_seconds_count", web) >= 1.0,
        "a new backend connection's connect time: {text}"
    );

    // Loopback RTTs: above zero, and below 50 ms each even on a loaded machine.
    let rtt_sum = value("palisade_meshd_client_rtt_seconds_sum", web);
    assert!(
        rtt_sum > 0.0 && rtt_sum < 0.05 * http_requests,
        "client RTT sum {rtt_sum}\n{text}"
    );
    let tcp_rtt_sum = value("palisade_meshd_client_rtt_seconds_sum", "/timing/tcp");
    assert!(tcp_rtt_sum > 0.0 && tcp_rtt_sum < 0.05 * TCP_CONNECTIONS as f64);

    // The backend's pause mid-body is transfer time, not response time: at
    // least 50 ms of the 60 ms pause per request (the first byte's read may
    // come late on a busy machine), and not much more.
    let transfer_sum = value("palisade_meshd_transfer_seconds_sum", web);
    assert!(
        transfer_sum >= 0.05 * http_requests && transfer_sum < 1.0 * http_requests,
        "transfer sum {transfer_sum} for {http_requests} requests\n{text}"
    );
    let ttfb_sum = value("palisade_meshd_upstream_ttfb_seconds_sum", web);
    assert!(
        ttfb_sum < 0.04 * http_requests,
        "the pause after the first byte is not response time: ttfb sum {ttfb_sum}\n{text}"
    );
    let total_sum = value("palisade_meshd_request_duration_seconds_sum", web);
    assert!(
        total_sum >= transfer_sum + ttfb_sum - 1e-3,
        "total {total_sum} < transfer {transfer_sum} + response {ttfb_sum}"
    );

    // A backend that thinks before its head: response time, not transfer.
    let think_ttfb = value("palisade_meshd_upstream_ttfb_seconds_sum", "/timing/think");
    let think_transfer = value("palisade_meshd_transfer_seconds_sum", "/timing/think");
    assert!(
        (0.04 * 2.0..2.0).contains(&think_ttfb),
        "response time {think_ttfb} for two requests that waited 40 ms each\n{text}"
    );
    assert!(
        think_transfer < 0.03 * 2.0,
        "a body that came with its head moves at once: transfer {think_transfer}\n{text}"
    );
    // Every new series is a histogram on the shared buckets.
    for name in [
        "palisade_meshd_client_rtt_seconds",
        "palisade_meshd_transfer_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} histogram\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{name}_bucket{{dst_app=\"{web}\",le=\"+Inf\"}} {http_requests}"
            )),
            "{name}: {text}"
        );
    }
    backend.abort();
}
