//! meshd's own HTTP/2 server attacked on the wire: a client writes frames
//! byte by byte (HPACK literals, no table, so the bytes are the request),
//! and a raw backend keeps every byte meshd forwards as HTTP/1.1. Each case
//! checks what the client got (the response, RST_STREAM or GOAWAY code) and
//! what reached the backend: whatever HTTP/2 lets through becomes an
//! HTTP/1.1 head, so a malformed request must reach it not at all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::client::STEP;
use palisade_tests::h2raw::{
    block, data, frame, headers, kind, literal, literal_indexed, request, socket_from, Rig,
    PROTOCOL_ERROR,
};
use palisade_tests::harness::eventually;
use palisade_tests::raw_backend::find;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_reset_and_never_reach_the_backend() {
    let rig = Rig::start(1, &[]).await;
    let mut c = rig.connect().await;
    let get = |extra: &[(&str, &str)]| block(&request("GET", "/bad", extra));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("CR in a value", get(&[("x-a", "one\rx-b: two")])),
        ("LF in a value", get(&[("x-a", "one\nx-b: two")])),
        ("CRLF in a value", get(&[("x-a", "one\r\nx-b: two")])),
        ("NUL in a value", get(&[("x-a", "nul\0byte")])),
        ("leading space", get(&[("x-a", " padded")])),
        ("trailing space", get(&[("x-a", "padded ")])),
        ("uppercase name", get(&[("X-Upper", "1")])),
        (
            "transfer-encoding",
            get(&[("transfer-encoding", "chunked")]),
        ),
        ("connection", get(&[("connection", "keep-alive")])),
        ("upgrade", get(&[("upgrade", "websocket")])),
        ("te: gzip", get(&[("te", "gzip")])),
        ("keep-alive", get(&[("keep-alive", "timeout=5")])),
        ("proxy-connection", get(&[("proxy-connection", "close")])),
        ("a length and no body", get(&[("content-length", "5")])),
        ("host differs", get(&[("host", "other.test")])),
        (
            "a second host",
            get(&[("host", "web.test"), ("host", "other.test")]),
        ),
        (
            "two hosts, no :authority",
            block(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/bad"),
                ("host", "web.test"),
                ("host", "other.test"),
            ]),
        ),
        ("space in :path", block(&request("GET", "/a b", &[]))),
        (
            "userinfo in host, no :authority",
            block(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/bad"),
                ("host", "user@other.test"),
            ]),
        ),
        (
            "userinfo in :authority",
            block(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "user@other.test"),
                (":path", "/bad"),
            ]),
        ),
        (
            "missing :path",
            block(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "web.test"),
            ]),
        ),
        (":status in a request", get(&[(":status", "200")])),
        (
            ":status among pseudo-headers",
            block(&[
                (":method", "GET"),
                (":status", "200"),
                (":scheme", "http"),
                (":authority", "web.test"),
                (":path", "/bad"),
            ]),
        ),
    ];
    let mut stream = 1;
    for (what, b) in &cases {
        c.send(&headers(stream, b, true)).await;
        let o = c.outcome(stream).await;
        assert_eq!(o.reset, Some(PROTOCOL_ERROR), "{what}: {o:?}");
        assert_eq!(o.status, None, "{what}: answered {o:?}");
        stream += 2;
    }
    // A 70 KB field, over the 64 KiB list limit, in HEADERS and
    // CONTINUATION frames: answered 431 by meshd itself.
    let big = "b".repeat(70_000);
    let b = block(&request("GET", "/big", &[("x-big", &big)]));
    let mut frames = Vec::new();
    let pieces: Vec<&[u8]> = b.chunks(16_384).collect();
    for (n, piece) in pieces.iter().enumerate() {
        let last = n + 1 == pieces.len();
        let (k, flags) = match n {
            0 => (kind::HEADERS, 0x1),
            _ => (kind::CONTINUATION, 0),
        };
        frames.extend(frame(k, flags | if last { 0x4 } else { 0 }, stream, piece));
    }
    c.send(&frames).await;
    let o = c.outcome(stream).await;
    assert_eq!(o.status, Some(431), "{o:?}");
    stream += 2;
    // The connection lives on, and its next good request is the only one
    // the backend ever saw.
    let o = c.get(stream, "/good").await;
    assert_eq!(
        (o.status, o.body.as_slice()),
        (Some(200), &b"ok"[..]),
        "{o:?}"
    );
    let good = rig.backend.wait_request("/good").await;
    let all = rig.backend.all_bytes();
    assert_eq!(
        rig.backend.requests().len(),
        1,
        "{}",
        String::from_utf8_lossy(&all)
    );
    let head_len = find(&all, b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        all.len(),
        head_len,
        "only the good head: {}",
        String::from_utf8_lossy(&all)
    );
    assert_eq!(good.line(), "GET /good HTTP/1.1");
    assert_eq!(good.lines_of("host"), ["host: web.test"], "{}", good.head);
    for bad in [
        "/bad",
        "/a b",
        "x-a",
        "x-upper",
        "upgrade",
        "gzip",
        "other.test",
        "x-b",
    ] {
        assert!(
            !good.head.to_ascii_lowercase().contains(bad),
            "{bad} leaked: {}",
            good.head
        );
    }
    assert!(rig.meshd.pid() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_disagrees_with_content_length_never_reaches_the_backend_whole() {
    let mut rig = Rig::start(2, &[]).await;
    let mut c = rig.connect().await;
    let post = |stream, path, cl| {
        headers(
            stream,
            &block(&request("POST", path, &[("content-length", cl)])),
            false,
        )
    };

    // 5 declared, 3 sent: once the 3 bytes are at the backend, END_STREAM.
    // The stream is reset, and the backend's request stays unfinished on a
    // connection meshd closes rather than reuses.
    c.send(&[post(1, "/short", "5"), data(1, b"abc", false)].concat())
        .await;
    let short_conn = eventually("the first 3 bytes at the backend", STEP, || async {
        rig.backend
            .with(|s| {
                s.conns
                    .iter()
                    .position(|(raw, _)| raw.ends_with(b"\r\n\r\nabc"))
            })
            .ok_or_else(|| String::from_utf8_lossy(&rig.backend.all_bytes()).into_owned())
    })
    .await;
    c.send(&data(1, b"", true)).await;
    let o = c.outcome(1).await;
    assert_eq!(o.reset, Some(PROTOCOL_ERROR), "{o:?}");
    eventually(
        "the cut request's backend connection closes",
        STEP,
        || async {
            rig.backend
                .with(|s| s.conns[short_conn].1)
                .then_some(())
                .ok_or_else(|| "still open".to_owned())
        },
    )
    .await;
    let o = c.get(3, "/after-short").await;
    assert_eq!(o.status, Some(200), "{o:?}");
    let after = rig.backend.wait_request("/after-short").await;
    assert_ne!(
        after.conn, short_conn,
        "reused the connection of a cut request"
    );
    assert!(rig
        .backend
        .requests()
        .iter()
        .all(|r| !r.line().contains("/short")));

    // 3 declared, 5 sent in one frame: reset, the 4th byte never leaves meshd.
    c.send(&[post(5, "/long", "3"), data(5, b"qrstu", true)].concat())
        .await;
    let o = c.outcome(5).await;
    assert_eq!(o.reset, Some(PROTOCOL_ERROR), "{o:?}");
    // The same in two frames, to a backend that holds its answer: the
    // first three go (a whole request, to the backend), the rest may not;
    // and the backend connection, its answer still due, is not reused.
    c.send(&[post(7, "/hold-long2", "3"), data(7, b"vwx", false)].concat())
        .await;
    let held = rig.backend.wait_request("/hold-long2").await;
    c.send(&data(7, b"yz", true)).await;
    let o = c.outcome(7).await;
    assert_eq!(o.reset, Some(PROTOCOL_ERROR), "{o:?}");
    rig.backend.release();
    let o = c.get(9, "/after-long").await;
    assert_eq!(
        (o.status, o.body.as_slice()),
        (Some(200), &b"ok"[..]),
        "{o:?}"
    );
    let after = rig.backend.wait_request("/after-long").await;
    assert_ne!(
        after.conn, held.conn,
        "reused a connection whose answer was due"
    );
    let all = rig.backend.all_bytes();
    let text = String::from_utf8_lossy(&all);
    assert!(
        find(&all, b"qrst").is_none(),
        "the 4th byte reached the backend: {text}"
    );
    assert!(
        find(&all, b"vwxy").is_none(),
        "the 4th byte reached the backend: {text}"
    );
    assert!(
        rig.backend
            .requests()
            .iter()
            .all(|r| !r.line().contains("/long ")),
        "a whole /long request: {text}"
    );
    assert!(rig.meshd.running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_trailers_and_the_dynamic_table_reach_the_backend_right() {
    let rig = Rig::start(3, &[]).await;
    let mut c = rig.connect().await;

    // Two cookie fields: one `cookie` line (RFC 9113 8.2.3).
    let b = block(&request(
        "GET",
        "/cookies",
        &[("cookie", "a=1"), ("cookie", "b=2")],
    ));
    c.send(&headers(1, &b, true)).await;
    assert_eq!(c.outcome(1).await.status, Some(200));
    let r = rig.backend.wait_request("/cookies").await;
    assert_eq!(r.lines_of("cookie"), ["cookie: a=1; b=2"], "{}", r.head);
    // `te: trailers` is allowed in HTTP/2, and hop-by-hop in HTTP/1.1.
    assert!(r.lines_of("te").is_empty(), "{}", r.head);

    // Incremental indexing, then the entry by index (62) on the next request.
    let mut b = block(&request("GET", "/dyn1", &[]));
    b.extend(literal_indexed(b"x-dyn", b"table-value"));
    c.send(&headers(3, &b, true)).await;
    assert_eq!(c.outcome(3).await.status, Some(200));
    let mut b = block(&request("GET", "/dyn2", &[]));
    b.push(0x80 | 62);
    c.send(&headers(5, &b, true)).await;
    assert_eq!(c.outcome(5).await.status, Some(200));
    for path in ["/dyn1", "/dyn2"] {
        let r = rig.backend.wait_request(path).await;
        assert_eq!(r.lines_of("x-dyn"), ["x-dyn: table-value"], "{}", r.head);
    }

    // Trailers after DATA: the body arrives intact, the trailer field does not.
    let b = block(&request("POST", "/trailers", &[]));
    let trailers = literal(b"x-checksum", b"c0ffee");
    c.send(
        &[
            headers(7, &b, false),
            data(7, b"hello ", false),
            data(7, b"world", false),
            headers(7, &trailers, true),
        ]
        .concat(),
    )
    .await;
    let o = c.outcome(7).await;
    assert_eq!(
        (o.status, o.body.as_slice()),
        (Some(200), &b"ok"[..]),
        "{o:?}"
    );
    let r = rig.backend.wait_request("/trailers").await;
    assert_eq!(r.body, b"hello world", "{}", r.head);
    assert!(!r.head.contains("c0ffee"), "{}", r.head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_upload_waits_for_window_updates_and_arrives_exact() {
    let rig = Rig::start(4, &[]).await;
    let mut c = rig.connect().await;
    let body: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 31 % 251) as u8).collect();
    // Windows as meshd granted them: SETTINGS_INITIAL_WINDOW_SIZE for the
    // stream, 65535 plus WINDOW_UPDATEs for the connection.
    let mut stream_window: i64 = 65_535;
    let mut conn_window: i64 = 65_535;
    let mut grants = std::mem::take(&mut c.seen);
    let cl = body.len().to_string();
    let b = block(&request("POST", "/upload", &[("content-length", &cl)]));
    c.send(&headers(1, &b, false)).await;
    let (mut sent, mut waits) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent < body.len() {
        for f in grants.drain(..) {
            match (f.kind, f.stream) {
                (kind::SETTINGS, 0) if f.flags & 1 == 0 => {
                    for p in f.payload.chunks(6) {
                        if p[..2] == [0, 4] {
                            let v = u32::from_be_bytes(p[2..6].try_into().unwrap());
                            stream_window += i64::from(v) - 65_535;
                        }
                    }
                }
                (kind::WINDOW_UPDATE, 0) => conn_window += i64::from(f.word(0)),
                (kind::WINDOW_UPDATE, 1) => stream_window += i64::from(f.word(0)),
                (kind::RST_STREAM | kind::GOAWAY, _) => panic!("upload refused: {f:?}"),
                _ => {}
            }
        }
        let n = (body.len() - sent).min(16_384) as i64;
        if n <= stream_window.min(conn_window) {
            let end = sent + n as usize == body.len();
            c.send(&data(1, &body[sent..sent + n as usize], end)).await;
            sent += n as usize;
            stream_window -= n;
            conn_window -= n;
        } else {
            waits += 1;
            assert!(Instant::now() < deadline, "no window after {sent} bytes");
            grants.push(c.next().await.expect("a WINDOW_UPDATE"));
        }
    }
    let o = c.outcome(1).await;
    assert_eq!(
        (o.status, o.body.as_slice()),
        (Some(200), &b"ok"[..]),
        "{o:?}"
    );
    assert!(
        waits > 0,
        "256 KiB of stream window should have run out once"
    );
    let r = rig.backend.wait_request("/upload").await;
    assert_eq!(
        r.lines_of("content-length"),
        [format!("content-length: {cl}")]
    );
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "the body changed on the way");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_ignores_the_stream_window_is_reset() {
    // A backend that takes no connection: its accept queue (one long) is
    // full of the test's own, so meshd's connect waits and no body byte is taken,
    // nor credited back, while the client overruns.
    let rig = Rig::start_with_backlog(9, &[], 1).await;
    rig.backend.pause(true);
    let backend: std::net::SocketAddr = "127.0.212.109:44001".parse().unwrap();
    // Connections until one is left waiting: the queue is full.
    let mut fillers = Vec::new();
    loop {
        let socket = socket_from(&rig.client);
        match tokio::time::timeout(Duration::from_millis(300), socket.connect(backend)).await {
            Ok(s) => fillers.push(s.unwrap()),
            Err(_) => break,
        }
        assert!(
            fillers.len() < 16,
            "the backend's accept queue never filled"
        );
    }
    let mut c = rig.connect().await;
    // 272 KiB at once on a 256 KiB stream window (the connection's 1 MiB
    // has room): that stream alone is reset with FLOW_CONTROL_ERROR.
    let b = block(&request(
        "POST",
        "/overrun",
        &[("content-length", "300000")],
    ));
    let mut burst = headers(1, &b, false);
    for _ in 0..17 {
        burst.extend(data(1, &[0xa5; 16_384], false));
    }
    c.send(&burst).await;
    let o = c.outcome(1).await;
    assert_eq!(o.reset, Some(0x3), "{o:?}");
    assert_eq!(o.goaway, None, "{o:?}");
    // The connection goes on once the backend takes connections again.
    drop(fillers);
    rig.backend.pause(false);
    let b = block(&request("POST", "/after-overrun", &[]));
    c.send(&[headers(3, &b, false), data(3, &[0xa5; 10], true)].concat())
        .await;
    let o = c.outcome(3).await;
    assert_eq!(o.status, Some(200), "{o:?}");
    let after = rig.backend.wait_request("/after-overrun").await;
    assert_eq!(after.body, [0xa5; 10]);
    let all = rig.backend.all_bytes();
    assert_eq!(
        all.iter().filter(|&&b| b == 0xa5).count(),
        10,
        "only the second body arrived"
    );
    assert!(rig
        .backend
        .requests()
        .iter()
        .all(|r| !r.line().contains("/overrun")));
}
