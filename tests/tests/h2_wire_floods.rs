//! meshd's own HTTP/2 server against clients that try to make it work or
//! hold memory for nothing: rapid reset, a header block that never ends, a
//! client that never reads; and its GOAWAY at a drain. Frames by hand
//! (`h2raw`), a backend that keeps every byte (`raw_backend`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::client::STEP;
use palisade_tests::h2raw::{
    block, frame, headers, kind, literal, read_frame, request, rst, socket_from, H2Client, Rig,
    ENHANCE_YOUR_CALM,
};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_enhance_your_calm() {
    let rig = Rig::start(5, &[]).await;
    let mut c = rig.connect().await;
    let b = block(&request("GET", "/rapid", &[]));
    let mut burst = Vec::new();
    for i in 0..250u32 {
        burst.extend(headers(2 * i + 1, &b, true));
        burst.extend(rst(2 * i + 1, 0x8));
    }
    // meshd may close while the burst is still going in.
    let _ = c.stream.write_all(&burst).await;
    let mut goaway = None;
    while let Some(f) = c.next().await {
        if f.kind == kind::GOAWAY {
            goaway = Some((f.word(0), f.word(4)));
            break;
        }
    }
    let (last, code) = goaway.expect("GOAWAY for a rapid reset");
    assert_eq!(code, ENHANCE_YOUR_CALM);
    assert!(last < 2 * 250 + 1, "last stream {last}");
    // No stream past the GOAWAY's last one was started.
    let started = rig.backend.requests().len();
    assert!(
        started as u32 <= last.div_ceil(2),
        "{started} requests, last {last}"
    );
    let mut fresh = rig.connect().await;
    assert_eq!(fresh.get(1, "/after").await.status, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_gets_enhance_your_calm() {
    let rig = Rig::start(6, &[]).await;
    let c = rig.connect().await;
    let (mut r, mut w) = c.stream.into_split();
    let mut buf = c.buf;
    let reader = tokio::spawn(async move {
        while let Some(f) = read_frame(&mut r, &mut buf, STEP).await {
            if f.kind == kind::GOAWAY {
                return Some((f.word(0), f.word(4)));
            }
        }
        None
    });
    let b = block(&request("GET", "/flood", &[]));
    w.write_all(&frame(kind::HEADERS, 0, 1, &b)).await.unwrap();
    let filler = frame(kind::CONTINUATION, 0, 1, &literal(b"x-f", &[b'a'; 16_000]));
    // 16 KB a frame: GOAWAY is due after 9; 64 (1 MiB) is the give-up point.
    let mut frames = 0;
    while frames < 64 && !reader.is_finished() {
        if w.write_all(&filler).await.is_err() {
            break;
        }
        frames += 1;
    }
    let (_, code) = reader
        .await
        .unwrap()
        .expect("GOAWAY for a header block that never ends");
    assert_eq!(code, ENHANCE_YOUR_CALM);
    assert!(frames >= 7, "GOAWAY after {frames} frames, before 128 KiB");
    assert!(rig.backend.requests().is_empty());
    let mut fresh = rig.connect().await;
    assert_eq!(fresh.get(1, "/after").await.status, Some(200));
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_cannot_make_meshd_buffer() {
    let rig = Rig::start(7, &[]).await;
    let before = rss_kib(rig.meshd.pid());
    // Small socket buffers on the client's side, so that what the kernel
    // holds does not hide what meshd holds.
    let socket = socket_from(&rig.client);
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    let c = H2Client::handshake(socket, rig.dest).await;
    let mut s = c.stream;
    let ping = frame(kind::PING, 0, 0, b"pingpong");
    let pings: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 1024)
        .collect();
    let (mut written, mut stalled) = (0usize, false);
    let give_up = 256 * 1024 * 1024;
    while written < give_up {
        match tokio::time::timeout(Duration::from_secs(1), s.write_all(&pings)).await {
            Ok(Ok(())) => written += pings.len(),
            Ok(Err(e)) => panic!("meshd closed on a ping flood: {e}"),
            Err(_) => {
                stalled = true;
                break;
            }
        }
    }
    assert!(stalled, "{written} bytes of PING and meshd still reads");
    let grown = rss_kib(rig.meshd.pid()).saturating_sub(before);
    eprintln!("PING bytes taken before meshd stopped reading: {written}; RSS +{grown} KiB");
    assert!(grown < 20 * 1024, "meshd's RSS grew {grown} KiB");
    // Another client is served meanwhile.
    let mut other = rig.connect().await;
    assert_eq!(other.get(1, "/other").await.status, Some(200));
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_sends_goaway_and_the_stream_in_flight_completes() {
    let rig = Rig::start(8, &["--drain-deadline", "5s"]).await;
    let mut c = rig.connect().await;
    c.send(&headers(1, &block(&request("GET", "/hold", &[])), true))
        .await;
    rig.backend.wait_request("/hold").await;
    let Rig {
        mut meshd,
        backend,
        dir: _dir,
        ..
    } = rig;
    let stopped = tokio::task::spawn_blocking(move || {
        let code = meshd.terminate(Duration::from_secs(8));
        (code, meshd)
    });
    let goaway = loop {
        let f = c.next().await.expect("GOAWAY at the drain");
        if f.kind == kind::GOAWAY {
            break (f.word(0), f.word(4));
        }
    };
    assert_eq!(
        goaway,
        (1, 0),
        "GOAWAY NO_ERROR naming stream 1 as the last"
    );
    // A stream opened past the GOAWAY's last one is not taken.
    c.send(&headers(3, &block(&request("GET", "/late", &[])), true))
        .await;
    backend.release();
    let o = c.outcome(1).await;
    assert_eq!(
        (o.status, o.body.as_slice()),
        (Some(200), &b"ok"[..]),
        "{o:?}"
    );
    let (code, _meshd) = stopped.await.unwrap();
    assert_eq!(code, Some(0), "meshd exits 0 once the stream is done");
    let paths: Vec<String> = backend
        .requests()
        .iter()
        .map(|r| r.line().to_owned())
        .collect();
    assert_eq!(paths, ["GET /hold HTTP/1.1"]);
}
