//! Bulk transfers through a TCP-mode service (issue 17 item 2), where meshd
//! splices large bursts between the two sockets: megabytes arrive byte-exact
//! both ways, a half-close still gets the whole answer, a slow reader gets
//! everything, a quiet tunnel still closes after `tunnel_idle`, and the
//! byte counters equal the bytes sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::client::tcp_from;
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{meshd, wait_generation, wait_metric, Proc, Scratch};
use schemas::Protocol;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const NODE: &str = "bulk-node";
const CLIENT: &str = "127.0.204.9";
const MIB: usize = 1 << 20;
/// Deadline for one whole transfer on a busy 2-core machine.
const TRANSFER: Duration = Duration::from_secs(30);

/// `n` bytes that differ from any shift of themselves: a lost, doubled or
/// reordered chunk shows.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A backend: `serve` runs for every accepted connection.
async fn backend<F, Fut>(addr: &str, serve: F) -> JoinHandle<()>
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("binding backend {addr}: {e}"));
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s));
        }
    })
}

/// A meshd whose node (`node_ip`) has one TCP service, `app` on `port`, to
/// `backend`; `idle` sets its `tunnel_idle`.
fn start(
    dir: &Scratch,
    node_ip: &str,
    app: &str,
    port: u16,
    backend: &str,
    idle: Option<Duration>,
) -> (Proc, SocketAddr) {
    let mut svc = service(app, port, Protocol::Tcp, &[(backend, "bulk.1")]);
    svc.timeouts.tunnel_idle = idle.map(schemas::duration::Duration);
    dir.write(
        &format!("nodes/{NODE}.yaml"),
        &node_config(NODE, node_ip, 1, vec![svc]),
    );
    meshd(NODE, &dir.path("nodes"), &["--threads", "1"])
}

/// Reads until EOF, within the transfer deadline.
async fn read_all(s: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(TRANSFER, s.read_to_end(&mut got))
        .await
        .expect("transfer in time")
        .expect("read to the end");
    got
}

fn series(name: &str, app: &str) -> String {
    format!("{name}{{dst_app=\"{app}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_mib_each_way_arrive_byte_exact_and_are_counted() {
    // An echo backend: every byte back, then its close after the client's.
    let _b = backend("127.0.204.2:42400", |s| async move {
        let (mut r, mut w) = s.into_split();
        if tokio::io::copy(&mut r, &mut w).await.is_ok() {
            let _ = w.shutdown().await;
        }
    })
    .await;
    let dir = Scratch::new("bulk-echo");
    let (_meshd, admin) = start(
        &dir,
        "127.0.204.1",
        "/bulk/echo",
        42410,
        "127.0.204.2:42400",
        None,
    );
    wait_generation(admin, 1).await;
    let s = tcp_from(CLIENT, "127.0.204.1:42410".parse().unwrap())
        .await
        .unwrap();
    let sent = pattern(5 * MIB, 1);
    let (mut r, mut w) = s.into_split();
    let to_send = sent.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&to_send).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let got = read_all(&mut r).await;
    writer.await.unwrap();
    assert_eq!(got.len(), sent.len(), "echoed length");
    assert!(got == sent, "5 MiB came back changed");

    // Counted once the tunnel closes: exactly what crossed each way.
    let bytes = (5 * MIB) as f64;
    for name in [
        "palisade_meshd_upstream_bytes_total",
        "palisade_meshd_downstream_bytes_total",
    ] {
        wait_metric(admin, &series(name, "/bulk/echo"), TRANSFER, |v| v == bytes).await;
    }
    // And most of it went through the kernel's pipes, not user space.
    let spliced = wait_metric(
        admin,
        &series("palisade_meshd_spliced_bytes_total", "/bulk/echo"),
        TRANSFER,
        |v| v > 0.0,
    )
    .await;
    assert!(
        spliced > bytes,
        "only {spliced} of {} bytes spliced",
        2.0 * bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_shuts_its_write_side_still_gets_the_whole_response() {
    // Answers only after the request's end (EOF): 5 MiB, then closes.
    let _b = backend("127.0.204.4:42401", |mut s| async move {
        let mut req = Vec::new();
        if s.read_to_end(&mut req).await.is_err() || req != pattern(MIB, 2) {
            return;
        }
        let _ = s.write_all(&pattern(5 * MIB, 3)).await;
        let _ = s.shutdown().await;
    })
    .await;
    let dir = Scratch::new("bulk-half-close");
    let (_meshd, admin) = start(
        &dir,
        "127.0.204.3",
        "/bulk/half",
        42411,
        "127.0.204.4:42401",
        None,
    );
    wait_generation(admin, 1).await;
    let mut s = tcp_from(CLIENT, "127.0.204.3:42411".parse().unwrap())
        .await
        .unwrap();
    s.write_all(&pattern(MIB, 2)).await.unwrap();
    s.shutdown().await.unwrap();
    let got = read_all(&mut s).await;
    assert_eq!(got.len(), 5 * MIB, "response length after a half-close");
    assert!(got == pattern(5 * MIB, 3), "the response came changed");
    wait_metric(
        admin,
        &series("palisade_meshd_upstream_bytes_total", "/bulk/half"),
        TRANSFER,
        |v| v == MIB as f64,
    )
    .await;
    wait_metric(
        admin,
        &series("palisade_meshd_downstream_bytes_total", "/bulk/half"),
        TRANSFER,
        |v| v == (5 * MIB) as f64,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_every_byte() {
    // Writes 5 MiB at once: meshd has to hold back while the client lags.
    let _b = backend("127.0.204.6:42402", |mut s| async move {
        let _ = s.write_all(&pattern(5 * MIB, 4)).await;
        let _ = s.shutdown().await;
        let _ = s.read(&mut [0u8; 1]).await;
    })
    .await;
    let dir = Scratch::new("bulk-slow");
    let (_meshd, admin) = start(
        &dir,
        "127.0.204.5",
        "/bulk/slow",
        42412,
        "127.0.204.6:42402",
        None,
    );
    wait_generation(admin, 1).await;
    let mut s = tcp_from(CLIENT, "127.0.204.5:42412".parse().unwrap())
        .await
        .unwrap();
    // 32 KiB every 2 ms at most: far slower than loopback.
    let mut got = Vec::with_capacity(5 * MIB);
    let deadline = Instant::now() + TRANSFER;
    loop {
        assert!(Instant::now() < deadline, "slow read not done in time");
        let mut chunk = vec![0u8; 32 * 1024];
        let n = tokio::time::timeout(TRANSFER, s.read(&mut chunk))
            .await
            .expect("bytes in time")
            .expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(got.len(), 5 * MIB, "bytes the slow reader got");
    assert!(
        got == pattern(5 * MIB, 4),
        "the slow reader's bytes changed"
    );
    // The tunnel (and its count) ends with the client's side.
    drop(s);
    wait_metric(
        admin,
        &series("palisade_meshd_downstream_bytes_total", "/bulk/slow"),
        TRANSFER,
        |v| v == (5 * MIB) as f64,
    )
    .await;
    wait_metric(
        admin,
        &series("palisade_meshd_spliced_bytes_total", "/bulk/slow"),
        TRANSFER,
        |v| v > 0.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spliced_tunnel_still_closes_after_tunnel_idle() {
    // Sends 2 MiB, then holds the connection open and silent until meshd
    // closes it.
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let _b = backend("127.0.204.8:42403", move |mut s| {
        let closed = closed_tx.clone();
        async move {
            let _ = s.write_all(&pattern(2 * MIB, 5)).await;
            let _ = s.read(&mut [0u8; 1]).await;
            let _ = closed.send(());
        }
    })
    .await;
    let dir = Scratch::new("bulk-idle");
    let (_meshd, admin) = start(
        &dir,
        "127.0.204.7",
        "/bulk/idle",
        42413,
        "127.0.204.8:42403",
        Some(Duration::from_secs(1)),
    );
    wait_generation(admin, 1).await;
    let mut s = tcp_from(CLIENT, "127.0.204.7:42413".parse().unwrap())
        .await
        .unwrap();
    let mut got = vec![0u8; 2 * MIB];
    tokio::time::timeout(TRANSFER, s.read_exact(&mut got))
        .await
        .expect("2 MiB in time")
        .unwrap();
    assert!(got == pattern(2 * MIB, 5), "the burst came changed");
    let last_byte = Instant::now();
    // Quiet from here: meshd closes both sides between one and two
    // `tunnel_idle`s after the last byte.
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut [0u8; 16]))
        .await
        .expect("closed within 5 s of quiet")
        .unwrap_or(0);
    assert_eq!(n, 0, "bytes after the burst");
    let after = last_byte.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "closed {after:?} after the last byte, before tunnel_idle"
    );
    tokio::time::timeout(Duration::from_secs(5), closed_rx.recv())
        .await
        .expect("the backend side closed too");
    wait_metric(
        admin,
        &series("palisade_meshd_spliced_bytes_total", "/bulk/idle"),
        TRANSFER,
        |v| v > 0.0,
    )
    .await;
}
