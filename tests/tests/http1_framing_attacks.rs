//! Request smuggling and framing attacks on meshd's HTTP/1.1 path, on the
//! wire: raw bytes go in from a client posing as an app's task, and a
//! recording backend says exactly which requests reached it, with which
//! heads and bodies. Invariant 9: meshd writes its own framing both ways;
//! no header named in `Connection` removes `Content-Length`,
//! `Transfer-Encoding` or `Host`; ambiguous framing is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::client::{raw_exchange, tcp_from, STEP};
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{meshd, wait_generation, Scratch};
use palisade_tests::recorder::{self, Recorder};
use schemas::Protocol;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE: &str = "framing-node";
const CLIENT: &str = "127.0.120.9";

/// Sends `raw` on a fresh connection and reads until meshd closes it.
async fn exchange(dest: SocketAddr, raw: &[u8]) -> String {
    raw_exchange(CLIENT, dest, raw).await
}

/// A meshd on 127.0.121.`i` with one HTTP service whose task is a
/// recorder on 127.0.120.`i` (each test its own, as they run at once).
async fn start(i: u8) -> (Recorder, palisade_tests::harness::Proc, SocketAddr, Scratch) {
    let task = format!("127.0.120.{i}:8080");
    let rec = recorder::start(&task).await;
    let dir = Scratch::new("framing");
    dir.write(
        &format!("nodes/{NODE}.yaml"),
        &node_config(
            NODE,
            &format!("127.0.121.{i}"),
            1,
            vec![service(
                "/framing/app",
                22800,
                Protocol::Http,
                &[(&task, "app.1")],
            )],
        ),
    );
    let (proc, admin) = meshd(NODE, &dir.path("nodes"), &[]);
    wait_generation(admin, 1).await;
    (
        rec,
        proc,
        format!("127.0.121.{i}:22800").parse().unwrap(),
        dir,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_header_named_in_connection_unframes_a_request() {
    let (rec, _meshd, dest, _dir) = start(1).await;

    // The reproduced attack: `Connection: content-length` must not strip the
    // length while the body is still framed by it, or the body's bytes reach
    // the backend as a second request of their own.
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let raw = format!(
        "POST /outer HTTP/1.1\r\nHost: x\r\nConnection: content-length\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    let r = exchange(
        dest,
        format!("{raw}GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.matches("HTTP/1.1 200").count(), 2, "{r}");
    let seen = rec.wait_for(2).await;
    assert_eq!(seen[0].line(), "POST /outer HTTP/1.1", "{seen:#?}");
    assert_eq!(
        seen[0].header("content-length"),
        [smuggled.len().to_string()]
    );
    assert_eq!(seen[0].body, smuggled.as_bytes());
    assert_eq!(seen[1].line(), "GET /after HTTP/1.1", "{seen:#?}");
    assert!(
        seen.iter().all(|r| !r.line().contains("smuggled")),
        "{seen:#?}"
    );
    rec.clear();

    // The same with chunked framing and with Host.
    let raw = "POST /chunked HTTP/1.1\r\nHost: x\r\nConnection: transfer-encoding, host\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
               GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let r = exchange(dest, raw.as_bytes()).await;
    assert_eq!(r.matches("HTTP/1.1 200").count(), 2, "{r}");
    let seen = rec.wait_for(2).await;
    assert_eq!(seen[0].line(), "POST /chunked HTTP/1.1", "{seen:#?}");
    assert_eq!(seen[0].header("transfer-encoding"), ["chunked"]);
    assert_eq!(seen[0].header("host"), ["x"]);
    assert_eq!(seen[0].body, b"hello");
    rec.clear();

    // meshd writes the length itself: a client's odd spelling of it never
    // reaches the backend.
    let r = exchange(
        dest,
        b"POST /spelled HTTP/1.1\r\nHost: x\r\nContent-Length: 005\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let seen = rec.wait_for(1).await;
    assert_eq!(seen[0].header("content-length"), ["5"]);
    rec.clear();

    // Codings before chunked are kept, not silently stripped.
    let r = exchange(
        dest,
        b"POST /gz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let seen = rec.wait_for(1).await;
    assert_eq!(seen[0].header("transfer-encoding"), ["gzip, chunked"]);
    assert_eq!(seen[0].body, b"abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_sizes_hosts_and_upgrades_are_parsed_strictly() {
    let (rec, _meshd, dest, _dir) = start(2).await;

    // Chunk sizes: hex digits only, at least one, no sign, no padding.
    for size in ["+5", " 5", "0x5", "", "5\n"] {
        let raw = format!(
            "POST /bad-chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{size}\r\nhello\r\n0\r\n\r\n"
        );
        let r = exchange(dest, raw.as_bytes()).await;
        assert!(r.starts_with("HTTP/1.1 400"), "chunk size {size:?}: {r}");
    }
    assert!(
        rec.complete().is_empty(),
        "a body with a bad chunk size reached the backend whole: {:#?}",
        rec.complete()
    );

    // RFC 9112 section 3.2: a request with two Host headers, or an HTTP/1.1
    // request with none, is answered 400 and reaches no backend.
    for raw in [
        "GET /two-hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /no-host HTTP/1.1\r\n\r\n",
    ] {
        let r = exchange(dest, raw.as_bytes()).await;
        assert!(r.starts_with("HTTP/1.1 400"), "{raw:?}: {r}");
    }
    assert!(rec.all().is_empty(), "{:#?}", rec.all());

    // `Upgrade: h2c` would take the connection past meshd's HTTP handling:
    // it is stripped and the request is served as HTTP/1.1.
    let r = exchange(
        dest,
        b"GET /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let seen = rec.wait_for(1).await;
    assert!(seen[0].header("upgrade").is_empty(), "{seen:#?}");
    assert!(seen[0].header("http2-settings").is_empty(), "{seen:#?}");
    assert!(seen[0].header("connection").is_empty(), "{seen:#?}");
    rec.clear();

    // An absolute-form target with a query and no path keeps its query,
    // and its authority is the Host the backend sees (RFC 9112 3.2.2).
    let r = exchange(
        dest,
        b"GET http://app.test?q=1 HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let seen = rec.wait_for(1).await;
    assert_eq!(seen[0].line(), "GET /?q=1 HTTP/1.1", "{seen:#?}");
    assert_eq!(seen[0].header("host"), ["app.test"]);
    rec.clear();

    // The client's X-Forwarded-Proto is overwritten on a plain port, and an
    // untrusted client's X-Request-Id is replaced.
    let r = exchange(
        dest,
        b"GET /xfp HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nX-Request-Id: forged\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let seen = rec.wait_for(1).await;
    assert_eq!(seen[0].header("x-forwarded-proto"), ["http"]);
    let id = seen[0].header("x-request-id");
    assert!(id.len() == 1 && id[0] != "forged", "{id:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_get_meshd_framing_and_ambiguous_ones_are_refused() {
    let (_rec, _meshd, dest, _dir) = start(3).await;

    // Both Content-Length and Transfer-Encoding: 502, never passed on.
    let r = exchange(
        dest,
        b"GET /both HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    assert!(!r.contains("hello"), "{r}");

    // A backend's `Connection: content-length` cannot unframe its response:
    // the client still gets the length, and the next response on the same
    // connection is read right.
    let mut s = tcp_from(CLIENT, dest).await.unwrap();
    s.write_all(b"GET /conn-cl HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(STEP, s.read_to_end(&mut out))
        .await
        .expect("meshd closed the connection")
        .unwrap();
    let r = String::from_utf8_lossy(&out);
    let first = r.split("HTTP/1.1 ").nth(1).unwrap_or_default();
    assert!(
        first.to_ascii_lowercase().contains("content-length: 5\r\n"),
        "{r}"
    );
    assert_eq!(r.matches("HTTP/1.1 200").count(), 2, "{r}");
    assert!(r.ends_with("ok"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_backend_took_is_never_sent_twice() {
    let (rec, _meshd, dest, _dir) = start(4).await;
    // Pool a backend connection, then send a body-less POST that the
    // backend reads and answers by closing: it must arrive once, not be
    // replayed on a fresh connection.
    let r = exchange(
        dest,
        b"GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = exchange(
        dest,
        b"POST /hangup HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    rec.wait_for(2).await;
    let posts = rec
        .all()
        .iter()
        .filter(|r| r.line().starts_with("POST /hangup"))
        .count();
    assert_eq!(posts, 1, "{:#?}", rec.all());
}
