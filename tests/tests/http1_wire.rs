//! meshd's own HTTP/1.1 server, byte for byte on the wire: request bodies
//! by length and chunked (with `Expect: 100-continue`), responses by length,
//! chunked and by close, HTTP/1.0 clients, pipelined requests, HEAD, and
//! the request shapes it refuses (smuggling, too many headers).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::client::{raw_exchange, read_until, tcp_from, STEP};
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{meshd, wait_generation, Scratch};
use schemas::Protocol;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const NODE: &str = "wire-node";
const CLIENT: &str = "127.0.56.9";

/// A backend that answers by hand: `/chunked` in two chunks (keep-alive),
/// `/close` with no length, ended by closing the connection.
async fn raw_backend(addr: &str) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let n = match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = find(&buf, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        if head.starts_with("GET /close") {
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\nX-Way: close\r\n\r\nuntil the end")
                                .await;
                            return;
                        }
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
                            .await;
                    }
                }
            });
        }
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends `raw` on a fresh connection and reads until meshd closes it.
async fn exchange(dest: SocketAddr, raw: &[u8]) -> String {
    raw_exchange(CLIENT, dest, raw).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_framings_and_refusals_on_the_wire() {
    let _echo = backends::http("127.0.56.1:8080", "echo.1").await;
    let _raw = raw_backend("127.0.56.2:8080").await;
    let dir = Scratch::new("wire");
    dir.write(
        &format!("nodes/{NODE}.yaml"),
        &node_config(
            NODE,
            "127.0.0.56",
            1,
            vec![
                service(
                    "/wire/echo",
                    22700,
                    Protocol::Http,
                    &[("127.0.56.1:8080", "echo.1")],
                ),
                service(
                    "/wire/raw",
                    22701,
                    Protocol::Http,
                    &[("127.0.56.2:8080", "raw.1")],
                ),
            ],
        ),
    );
    let (_meshd, admin) = meshd(NODE, &dir.path("nodes"), &[]);
    wait_generation(admin, 1).await;
    let echo: SocketAddr = "127.0.0.56:22700".parse().unwrap();
    let raw: SocketAddr = "127.0.0.56:22701".parse().unwrap();

    // A body by length reaches the backend whole.
    let r = exchange(
        echo,
        b"POST /echo HTTP/1.1\r\nHost: e\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(
        r.contains("x-body-framing: length") && r.ends_with("\r\n\r\nhello world"),
        "{r}"
    );
    assert!(r.to_ascii_lowercase().contains("connection: close"), "{r}");

    // A chunked body, its head and chunks in separate writes after a 100 Continue.
    let mut s = tcp_from(CLIENT, echo).await.unwrap();
    s.write_all(b"PUT /echo HTTP/1.1\r\nHost: e\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let interim = read_until(&mut s, "\r\n\r\n", 1).await;
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue\r\n\r\n"),
        "{interim}"
    );
    s.write_all(b"4\r\nabcd\r\n").await.unwrap();
    s.write_all(b"3;ext=1\r\nefg\r\n0\r\n\r\n").await.unwrap();
    let r = read_until(&mut s, "abcdefg", 1).await;
    assert!(
        r.contains("x-body-framing: chunked") && r.contains("x-method: PUT"),
        "{r}"
    );
    // The connection stays open for the next request.
    s.write_all(b"GET /echo HTTP/1.1\r\nHost: e\r\nContent-Length: 2\r\n\r\nok")
        .await
        .unwrap();
    let r = read_until(&mut s, "\r\n\r\nok", 1).await;
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");

    // Two pipelined requests in one write get two answers, in order.
    let mut s = tcp_from(CLIENT, echo).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\n\r\nfirstPOST /echo HTTP/1.1\r\nHost: e\r\nContent-Length: 6\r\n\r\nsecond")
        .await
        .unwrap();
    let r = read_until(&mut s, "HTTP/1.1 200 OK", 2).await;
    let r = if r.contains("second") {
        r
    } else {
        r + &read_until(&mut s, "second", 1).await
    };
    assert!(r.find("first").unwrap() < r.find("second").unwrap(), "{r}");

    // HEAD keeps the length and sends no body.
    let r = exchange(
        echo,
        b"HEAD /echo HTTP/1.1\r\nHost: e\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK") && r.ends_with("\r\n\r\n"),
        "{r}"
    );

    // A chunked response stays chunked for an HTTP/1.1 client, on a kept connection.
    let mut s = tcp_from(CLIENT, raw).await.unwrap();
    s.write_all(b"GET /chunked HTTP/1.1\r\nHost: r\r\n\r\n")
        .await
        .unwrap();
    let r = read_until(&mut s, "0\r\n\r\n", 1).await;
    assert!(
        r.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{r}"
    );
    assert!(r.ends_with("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "{r}");
    assert!(
        !r.to_ascii_lowercase().contains("keep-alive"),
        "hop-by-hop passed: {r}"
    );
    // A response ended by the backend's close reaches an HTTP/1.1 client
    // chunked, and the client's connection stays usable.
    s.write_all(b"GET /close HTTP/1.1\r\nHost: r\r\n\r\n")
        .await
        .unwrap();
    let r = read_until(&mut s, "0\r\n\r\n", 1).await;
    assert!(
        r.contains("x-way: close") || r.contains("X-Way: close"),
        "{r}"
    );
    assert!(r.contains("d\r\nuntil the end\r\n0\r\n\r\n"), "{r}");
    s.write_all(b"GET /chunked HTTP/1.1\r\nHost: r\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut s, "hello", 1).await;

    // An HTTP/1.0 client gets the chunked body decoded, ended by close.
    let r = exchange(raw, b"GET /chunked HTTP/1.0\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
    assert!(r.ends_with("\r\n\r\nhello world"), "{r}");
    assert!(!r.to_ascii_lowercase().contains("transfer-encoding"), "{r}");

    // Refused shapes: 400 for length and chunked together, 431 for too many
    // headers; the backend never sees them, and the connection closes.
    let r = exchange(
        echo,
        b"POST /echo HTTP/1.1\r\nHost: e\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400 Bad Request"), "{r}");
    assert!(
        r.contains("both transfer-encoding and content-length"),
        "{r}"
    );
    let many: String = (0..120).map(|i| format!("x-h{i}: v\r\n")).collect();
    let r = exchange(
        echo,
        format!("GET /echo HTTP/1.1\r\nHost: e\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    let r = exchange(echo, b"GET / HTTP/1.1\r\nHost: e\r\nBad Header: x\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_waits_end_at_idle_and_slow_responses_at_the_response_timeout() {
    let _echo = backends::http("127.0.57.1:8080", "echo.2").await;
    let mut svc = service(
        "/wire/idle",
        22710,
        Protocol::Http,
        &[("127.0.57.1:8080", "echo.2")],
    );
    svc.timeouts.idle = Some("400ms".parse().unwrap());
    svc.timeouts.request_header = Some("5s".parse().unwrap());
    svc.timeouts.response = Some("300ms".parse().unwrap());
    let dir = Scratch::new("wire-idle");
    dir.write(
        &format!("nodes/{NODE}.yaml"),
        &node_config(NODE, "127.0.0.57", 1, vec![svc]),
    );
    let (_meshd, admin) = meshd(NODE, &dir.path("nodes"), &[]);
    wait_generation(admin, 1).await;
    let dest: SocketAddr = "127.0.0.57:22710".parse().unwrap();

    // A kept connection that stays quiet is closed after `idle`, not before.
    let mut s = tcp_from(CLIENT, dest).await.unwrap();
    s.write_all(b"GET /echo HTTP/1.1\r\nHost: e\r\nContent-Length: 2\r\n\r\nhi")
        .await
        .unwrap();
    read_until(&mut s, "\r\n\r\nhi", 1).await;
    let quiet = std::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut rest))
        .await
        .expect("closed after idle")
        .unwrap();
    let waited = quiet.elapsed();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(
        waited >= std::time::Duration::from_millis(350)
            && waited < std::time::Duration::from_secs(2),
        "closed after {waited:?}"
    );

    // A backend slower than `response` gets the client a 504.
    let r = exchange(
        dest,
        b"GET /slow/1500 HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 504 Gateway Timeout"), "{r}");
    assert!(r.contains("did not answer in time"), "{r}");
}
