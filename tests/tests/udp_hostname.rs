//! UDP backends named by host name, end to end: `configsrv render` names a
//! host-networked task's backend by its Marathon `host` (`localhost`,
//! `nonexistent.invalid`), and a real meshd looks it up (once for the
//! sessions that wait for it). A session's first datagram waits for the
//! lookup instead of being lost, the IPv4 address of a name is the one
//! reached, and a name that does not resolve ends its session (datagrams
//! dropped and counted, a failure of the backend, a log line naming it)
//! while other sessions of the same port carry on.
//! Addresses 127.0.208.1-19 (mesh and clients), 127.0.0.1 and ::1
//! (`localhost`'s backends); ports 42801-42819.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::harness::{
    eventually, meshd, metric, node_file, render, wait_generation, wait_metric, Proc, Scratch,
};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

const MESH: &str = "127.0.208.1";
const SOON: Duration = Duration::from_secs(5);

/// A host-networked Marathon app with one UDP service port, in the shape of
/// `../shared/fixtures/marathon/apps-embed-tasks-host-portdefinitions.json`;
/// `tasks` are (host, host port).
fn host_app(id: &str, service_port: u16, tasks: &[(&str, u16)]) -> Value {
    let name = id.trim_start_matches('/').replace('/', "_");
    let tasks: Vec<Value> = tasks
        .iter()
        .enumerate()
        .map(|(i, (host, port))| {
            json!({
                "id": format!("{name}.{i:08x}-d6a6-11e6-a564-8605ecf0a9df"),
                "appId": id,
                "host": host,
                "ports": [port],
                "slaveId": format!("74f1836b-6784-4030-816e-aacbdd45ff57-S{i}"),
                "state": "TASK_RUNNING",
                "startedAt": "2026-12-07T10:00:05.000Z",
                "stagedAt": "2026-12-07T10:00:00.000Z",
                "version": "2026-12-07T10:00:00.000Z",
            })
        })
        .collect();
    json!({
        "id": id, "cmd": "./serve-udp", "instances": tasks.len(), "cpus": 0.1, "mem": 32,
        "portDefinitions": [{"port": service_port, "protocol": "udp", "name": "dns", "labels": {}}],
        "requirePorts": false, "labels": {}, "healthChecks": [],
        "version": "2026-12-07T10:00:00.000Z", "tasksRunning": tasks.len(),
        "tasks": tasks,
    })
}

/// Renders `apps` with configsrv, starts meshd on node `localhost`'s file
/// (bound on `MESH`) and returns it with its admin address.
async fn mesh(dir: &Scratch, apps: &[Value], policy: &str) -> (Proc, SocketAddr) {
    let snapshot = dir.write("marathon.json", &json!({ "apps": apps }).to_string());
    dir.write("policies/p.yaml", policy);
    let out = render(&snapshot, &dir.path("policies"), &dir.path("nodes"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (meshd, admin) = meshd("localhost", &dir.path("nodes"), &["--bind", MESH]);
    wait_generation(admin, 1).await;
    (meshd, admin)
}

/// Sends `payload` to `port` on the mesh; the answer within `wait`, if any.
async fn exchange(sock: &UdpSocket, port: u16, payload: &[u8], wait: Duration) -> Option<String> {
    let to: SocketAddr = format!("{MESH}:{port}").parse().unwrap();
    sock.send_to(payload, to).await.unwrap();
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => {
            assert_eq!(from, to, "the answer comes from the service port");
            Some(String::from_utf8_lossy(&buf[..n]).into_owned())
        }
        _ => None,
    }
}

async fn client(ip: &str) -> UdpSocket {
    UdpSocket::bind(format!("{ip}:0")).await.unwrap()
}

fn udp_series(name: &str, app: &str) -> String {
    format!("palisade_meshd_udp_{name}{{dst_app=\"{app}\"}}")
}

const ALLOW_ALL: &str = "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: allow\n  mode: enforce\napps:\n  /udp/mixed:\n    balance: round_robin\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_named_localhost_answers_each_sessions_first_datagram_over_ipv4() {
    let dir = Scratch::new("udp-hostname-localhost");
    // `localhost` may resolve to ::1 too: a backend on each, answering with its family.
    let v4 = backends::udp("127.0.0.1:42811", "v4").await;
    let v6 = match std::net::UdpSocket::bind("[::1]:42811") {
        Ok(probe) => {
            drop(probe);
            Some(backends::udp("[::1]:42811", "v6").await)
        }
        Err(_) => None,
    };
    let app = host_app("/udp/named", 42801, &[("localhost", 42811)]);
    let (_meshd, admin) = mesh(&dir, &[app], ALLOW_ALL).await;
    let (text, config) = node_file(&dir.path("nodes"), "localhost");
    let named = config
        .services
        .iter()
        .find(|s| s.port.0 == 42801)
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(named.backends[0].address.to_string(), "localhost:42811");

    // Three clients' first datagrams come while meshd looks the name up
    // (one lookup, which the later two wait for).
    let to: SocketAddr = format!("{MESH}:42801").parse().unwrap();
    let mut clients = Vec::new();
    for ip in ["127.0.208.10", "127.0.208.13", "127.0.208.14"] {
        let c = client(ip).await;
        c.send_to(b"q1", to).await.unwrap();
        clients.push(c);
    }
    for c in &clients {
        let mut buf = [0u8; 64];
        let got = tokio::time::timeout(SOON, c.recv_from(&mut buf)).await;
        let (n, from) = got
            .expect("the first datagram is held for the lookup")
            .unwrap();
        assert_eq!(from, to);
        assert_eq!(&buf[..n], b"v4|q1", "sent to the IPv4 address");
    }
    let c = &clients[0];
    for q in ["q2", "q3"] {
        let a = exchange(c, 42801, q.as_bytes(), SOON).await;
        assert_eq!(a, Some(format!("v4|{q}")));
    }
    let peers = v4.peers.lock().unwrap().clone();
    assert_eq!(peers.len(), 5, "{peers:?}");
    assert_eq!(v4.sessions(), 3, "a session per client: {peers:?}");
    assert!(
        peers.iter().all(|p| p.ip().to_string() == "127.0.0.1"),
        "{peers:?}"
    );
    if let Some(v6) = &v6 {
        assert_eq!(v6.hits(), 0, "nothing went to ::1");
    }

    let m = |name: &str| udp_series(name, "/udp/named");
    wait_metric(admin, &m("downstream_datagrams_total"), SOON, |v| v == 5.0).await;
    assert_eq!(metric(admin, &m("upstream_datagrams_total")).await, 5.0);
    assert_eq!(metric(admin, &m("upstream_bytes_total")).await, 10.0);
    assert_eq!(metric(admin, &m("dropped_datagrams_total")).await, 0.0);
    assert_eq!(metric(admin, &m("sessions")).await, 3.0);
    let picked =
        "palisade_meshd_backend_requests_total{dst_app=\"/udp/named\",backend=\"localhost:42811\"}";
    assert_eq!(metric(admin, picked).await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_ends_its_sessions_and_the_port_carries_on() {
    let dir = Scratch::new("udp-hostname-invalid");
    let good = backends::udp("127.0.0.1:42812", "good").await;
    let app = host_app(
        "/udp/mixed",
        42802,
        &[("localhost", 42812), ("nonexistent.invalid", 42813)],
    );
    let (meshd, admin) = mesh(&dir, &[app], ALLOW_ALL).await;
    let (text, _) = node_file(&dir.path("nodes"), "localhost");
    assert!(text.contains("nonexistent.invalid:42813"), "{text}");

    // A session that lands on `localhost` and stays there throughout (a
    // try that lands on the other task is a lost session like those below).
    let (mut answered, mut lost) = (0, 0);
    let mut steady = None;
    for _ in 0..4 {
        let c = client("127.0.208.11").await;
        if exchange(&c, 42802, b"hello", Duration::from_secs(1))
            .await
            .is_some()
        {
            steady = Some(c);
            break;
        }
        lost += 1;
    }
    let steady = steady.expect("a session on the backend that resolves");

    // New sessions alternate between the two tasks (round robin); those
    // that get the name that does not resolve are never answered.
    for i in 0..8u8 {
        let c = client("127.0.208.12").await;
        let q = [b'n', i];
        match exchange(&c, 42802, &q, Duration::from_millis(700)).await {
            Some(a) => {
                assert!(a.starts_with("good|"), "{a}");
                answered += 1;
            }
            None => lost += 1,
        }
        // The port still serves the steady session at once.
        let a = exchange(&steady, 42802, &[b's', i], SOON).await;
        assert_eq!(
            a.map(|a| a.into_bytes()),
            Some([b"good|s" as &[u8], &[i]].concat())
        );
    }
    assert!(
        lost >= 1 && answered >= 1,
        "{answered} answered, {lost} lost"
    );

    let failures = "palisade_meshd_backend_failures_total{dst_app=\"/udp/mixed\",backend=\"nonexistent.invalid:42813\"}";
    wait_metric(admin, failures, SOON, |v| v == f64::from(lost)).await;
    let ok =
        "palisade_meshd_backend_failures_total{dst_app=\"/udp/mixed\",backend=\"localhost:42812\"}";
    assert_eq!(metric(admin, ok).await, 0.0);
    // Each lost session's one datagram, held for the lookup, was dropped.
    assert_eq!(
        metric(admin, &udp_series("dropped_datagrams_total", "/udp/mixed")).await,
        f64::from(lost)
    );
    // Sessions that failed are gone; the answered ones and the steady one remain.
    assert_eq!(
        metric(admin, &udp_series("sessions", "/udp/mixed")).await,
        f64::from(answered + 1)
    );
    assert_eq!(good.hits(), 1 + 8 + answered as usize);
    eventually("a log line naming the host", SOON, || async {
        let log = meshd.stderr();
        (log.contains("nonexistent.invalid:42813") && log.contains("cannot be resolved"))
            .then_some(())
            .ok_or(log)
    })
    .await;
}
