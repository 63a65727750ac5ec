//! UDP services end to end: configsrv renders them from Marathon's port
//! protocols; a real meshd carries DNS queries, judges each session's
//! source, balances, expires idle sessions, keeps sessions across reloads
//! (and ends them when their backend goes or the policy turns), carries a
//! 60,000-byte datagram both ways, ends a session on ICMP unreachable, and
//! hands bursts of replies of several sessions to the right clients while
//! one session's backend floods it.
//! Addresses 127.0.201.x and 127.0.202.60-79, UDP ports 42200-42299.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::cluster::service;
use palisade_tests::harness::{
    meshd, metric, node_file, render, wait_generation, wait_metric, Proc, Scratch,
};
use schemas::node_config::NodeConfigKind;
use schemas::policy::ApiVersion;
use schemas::{Balance, Generation, Identity, NodeConfig, Protocol, Revision, Rule, Service};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;

const NODE: &str = "udp-node";
const MESH: &str = "127.0.201.1";
const SOON: Duration = Duration::from_secs(5);

/// A node config with UDP services and an identity table.
fn config(generation: u64, services: Vec<Service>, identities: &[(&str, &str)]) -> String {
    let mut c = NodeConfig {
        api_version: ApiVersion::V1,
        kind: NodeConfigKind::NodeConfig,
        node: NODE.parse().unwrap(),
        address: MESH.parse().unwrap(),
        generation: Generation(generation),
        revision: Revision::default(),
        policy_commit: None,
        services,
        identities: identities
            .iter()
            .map(|(address, app)| Identity {
                address: address.parse().unwrap(),
                app: app.parse().unwrap(),
                tasks: vec![format!("{}.1", &app[1..].replace('/', "_"))
                    .parse()
                    .unwrap()],
            })
            .collect(),
    };
    c.revision = c.content_revision();
    c.to_yaml()
}

fn udp_service(app: &str, port: u16, backends: &[(&str, &str)]) -> Service {
    service(app, port, Protocol::Udp, backends)
}

struct Mesh {
    dir: Scratch,
    _meshd: Proc,
    admin: SocketAddr,
}

impl Mesh {
    async fn start(name: &str, services: Vec<Service>, identities: &[(&str, &str)]) -> Mesh {
        let dir = Scratch::new(name);
        dir.write(
            &format!("nodes/{NODE}.yaml"),
            &config(1, services, identities),
        );
        let (meshd, admin) = meshd(NODE, &dir.path("nodes"), &[]);
        wait_generation(admin, 1).await;
        Mesh {
            dir,
            _meshd: meshd,
            admin,
        }
    }

    async fn reload(&self, generation: u64, services: Vec<Service>, identities: &[(&str, &str)]) {
        self.dir.write(
            &format!("nodes/{NODE}.yaml"),
            &config(generation, services, identities),
        );
        wait_generation(self.admin, generation).await;
    }
}

async fn client(ip: &str) -> UdpSocket {
    UdpSocket::bind(format!("{ip}:0")).await.unwrap()
}

/// Sends `payload` to `port` on the mesh and waits up to `wait` for the answer.
async fn exchange(sock: &UdpSocket, port: u16, payload: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let to: SocketAddr = format!("{MESH}:{port}").parse().unwrap();
    sock.send_to(payload, to).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => {
            assert_eq!(from, to, "the answer comes from the service port");
            buf.truncate(n);
            Some(buf)
        }
        _ => None,
    }
}

/// The answering backend's name, from a `name|payload` answer.
fn answered_by(reply: &[u8]) -> String {
    let end = reply.iter().position(|&b| b == b'|').unwrap();
    String::from_utf8_lossy(&reply[..end]).into_owned()
}

fn allow_only(svc: &mut Service, from: &str) {
    svc.access.allow = vec![Rule {
        from: Some(from.parse().unwrap()),
        from_cidr: None,
    }];
}

#[test]
fn configsrv_renders_udp_services_from_marathon_port_protocols() {
    let dir = Scratch::new("udp-render");
    std::fs::create_dir_all(dir.path("policies")).unwrap();
    dir.write(
        "policies/p.yaml",
        "apiVersion: palisade/v1\nkind: Policy\napps:\n  /infra/*:\n    timeouts: {udp_idle: 10s}\n",
    );
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/marathon/apps-embed-tasks-udp.json");
    let out = render(&fixture, &dir.path("policies"), &dir.path("out"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in ["10.0.2.148", "10.0.2.149"] {
        let (text, c) = node_file(&dir.path("out"), node);
        let sides: Vec<(String, u16, Protocol)> = c
            .services
            .iter()
            .map(|s| (s.app.to_string(), s.port.0, s.protocol))
            .collect();
        let want = [
            ("/kong/kong", 10201, Protocol::Tcp),    // `tcp`
            ("/infra/statsd", 10225, Protocol::Tcp), // `tcp,udp`
            ("/infra/statsd", 10225, Protocol::Udp),
            ("/kong/kong", 10246, Protocol::Tcp), // serf's `udp,tcp`
            ("/kong/kong", 10246, Protocol::Udp),
            ("/infra/dns", 10253, Protocol::Udp), // `udp`
        ];
        let want: Vec<(String, u16, Protocol)> = want
            .iter()
            .map(|(a, p, x)| (a.to_string(), *p, *x))
            .collect();
        assert_eq!(sides, want, "{text}");
        let dns = c.services.iter().find(|s| s.port.0 == 10253).unwrap();
        assert_eq!(dns.backends[0].address.to_string(), "10.0.2.148:31053");
        assert_eq!(
            dns.timeouts.udp_idle.map(|d| d.0),
            Some(Duration::from_secs(10))
        );
        assert!(text.contains("protocol: udp"), "{text}");
    }
}

/// A standard query (RFC 1035 4.1) for `name`, type A, class IN, recursion desired.
fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// A resolver that answers every A query with `answer` (TTL 60).
async fn resolver(addr: &str, answer: [u8; 4]) -> (tokio::task::JoinHandle<()>, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind(addr).await.unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&served);
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let q = &buf[..n];
            // Header, then the question: labels up to the root, type, class.
            let mut end = 12;
            while end < n && q[end] != 0 {
                end += usize::from(q[end]) + 1;
            }
            let question = &q[12..(end + 5).min(n)];
            let mut r = Vec::new();
            r.extend_from_slice(&q[..2]);
            r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
            r.extend_from_slice(question);
            r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&answer);
            s.fetch_add(1, Ordering::Relaxed);
            let _ = socket.send_to(&r, from).await;
        }
    });
    (task, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_query_is_answered_through_meshd_by_a_resolver_on_a_task_address() {
    let (task, served) = resolver("127.0.201.10:42210", [127, 0, 201, 99]).await;
    let mesh = Mesh::start(
        "udp-dns",
        vec![udp_service(
            "/infra/dns",
            42201,
            &[("127.0.201.10:42210", "dns.1")],
        )],
        &[],
    )
    .await;
    let c = client("127.0.201.20").await;
    let query = dns_query(0x4242, "api.palisade.test");
    let answer = exchange(&c, 42201, &query, SOON).await.expect("an answer");
    task.abort();
    assert_eq!(&answer[..2], &[0x42, 0x42], "the query's id");
    assert_eq!(answer[2] & 0x80, 0x80, "a response");
    assert_eq!(&answer[6..8], &[0, 1], "one answer");
    assert_eq!(
        &answer[12..query.len()],
        &query[12..],
        "the question, echoed"
    );
    assert_eq!(&answer[answer.len() - 4..], &[127, 0, 201, 99]);
    assert_eq!(served.load(Ordering::Relaxed), 1);
    let m = |name: &str| format!("palisade_meshd_udp_{name}{{dst_app=\"/infra/dns\"}}");
    wait_metric(mesh.admin, &m("upstream_datagrams_total"), SOON, |v| {
        v == 1.0
    })
    .await;
    assert_eq!(
        metric(mesh.admin, &m("downstream_datagrams_total")).await,
        1.0
    );
    assert_eq!(
        metric(mesh.admin, &m("upstream_bytes_total")).await,
        query.len() as f64
    );
    assert_eq!(
        metric(mesh.admin, &m("downstream_bytes_total")).await,
        answer.len() as f64
    );
    assert_eq!(metric(mesh.admin, &m("sessions")).await, 1.0);
    assert_eq!(
        metric(
            mesh.admin,
            "palisade_meshd_connections_total{src_app=\"unknown\",dst_app=\"/infra/dns\",verdict=\"allow\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_source_is_dropped_counted_and_never_answered() {
    let backend = backends::udp("127.0.201.11:42211", "svc.1").await;
    let mut svc = udp_service("/udp/svc", 42202, &[("127.0.201.11:42211", "svc.1")]);
    allow_only(&mut svc, "/udp/client");
    let ids = [
        ("127.0.201.30", "/udp/client"),
        ("127.0.201.31", "/udp/intruder"),
    ];
    let mesh = Mesh::start("udp-deny", vec![svc], &ids).await;
    // The intruder poses as another app's task by binding its address.
    let intruder = client("127.0.201.31").await;
    let allowed = client("127.0.201.30").await;
    let to: SocketAddr = format!("{MESH}:42202").parse().unwrap();
    for _ in 0..3 {
        intruder.send_to(b"let me in", to).await.unwrap();
    }
    // One port, one ordered queue: once the allowed client's answer is back,
    // the intruder's datagrams, sent first, have been judged.
    let reply = exchange(&allowed, 42202, b"hello", SOON)
        .await
        .expect("an answer");
    assert_eq!(reply, b"svc.1|hello");
    let deny = "palisade_meshd_connections_total{src_app=\"/udp/intruder\",dst_app=\"/udp/svc\",verdict=\"deny\"}";
    wait_metric(mesh.admin, deny, SOON, |v| v == 3.0).await;
    let allow = "palisade_meshd_connections_total{src_app=\"/udp/client\",dst_app=\"/udp/svc\",verdict=\"allow\"}";
    assert_eq!(metric(mesh.admin, allow).await, 1.0);
    assert_eq!(
        backend.hits(),
        1,
        "nothing of the intruder's reached the task"
    );
    let mut buf = [0u8; 64];
    assert!(intruder.try_recv_from(&mut buf).is_err(), "never answered");
    assert_eq!(
        metric(
            mesh.admin,
            "palisade_meshd_udp_sessions{dst_app=\"/udp/svc\"}"
        )
        .await,
        1.0,
        "denied sources hold no session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_two_backends_and_source_hash_keeps_a_client_on_one() {
    let _a = backends::udp("127.0.201.12:42212", "rr.a").await;
    let _b = backends::udp("127.0.201.13:42213", "rr.b").await;
    let _c = backends::udp("127.0.201.14:42214", "sh.a").await;
    let _d = backends::udp("127.0.201.15:42215", "sh.b").await;
    let rr = udp_service(
        "/udp/rr",
        42203,
        &[
            ("127.0.201.12:42212", "rr.a"),
            ("127.0.201.13:42213", "rr.b"),
        ],
    );
    let mut sh = udp_service(
        "/udp/sh",
        42204,
        &[
            ("127.0.201.14:42214", "sh.a"),
            ("127.0.201.15:42215", "sh.b"),
        ],
    );
    sh.balance = Balance::SourceHash;
    let _mesh = Mesh::start("udp-balance", vec![rr, sh], &[]).await;
    let mut rr_seen = Vec::new();
    let mut sh_seen = Vec::new();
    for _ in 0..6 {
        // A new source port is a new session.
        let c = client("127.0.201.21").await;
        for _ in 0..3 {
            let r = exchange(&c, 42203, b"x", SOON).await.expect("rr answer");
            rr_seen.push(answered_by(&r));
            let r = exchange(&c, 42204, b"x", SOON).await.expect("sh answer");
            sh_seen.push(answered_by(&r));
        }
    }
    // Within a session, one backend; across sessions, both (round robin).
    for chunk in rr_seen.chunks(3) {
        assert!(chunk.iter().all(|n| n == &chunk[0]), "{rr_seen:?}");
    }
    assert!(
        rr_seen.contains(&"rr.a".to_owned()) && rr_seen.contains(&"rr.b".to_owned()),
        "{rr_seen:?}"
    );
    // source_hash: every session of this address, on one task.
    assert!(sh_seen.iter().all(|n| n == &sh_seen[0]), "{sh_seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_and_max_connections_counts_sessions() {
    let backend = backends::udp("127.0.201.16:42216", "idle.1").await;
    let mut svc = udp_service("/udp/idle", 42205, &[("127.0.201.16:42216", "idle.1")]);
    svc.timeouts.udp_idle = Some(schemas::duration::Duration(Duration::from_millis(800)));
    svc.max_connections = Some(1);
    let mesh = Mesh::start("udp-idle", vec![svc], &[]).await;
    let first = client("127.0.201.22").await;
    let second = client("127.0.201.23").await;
    assert!(exchange(&first, 42205, b"a", SOON).await.is_some());
    // The one slot is taken: the second client's session is refused.
    assert_eq!(
        exchange(&second, 42205, b"b", Duration::from_millis(300)).await,
        None
    );
    let gauge = "palisade_meshd_udp_sessions{dst_app=\"/udp/idle\"}";
    assert_eq!(metric(mesh.admin, gauge).await, 1.0);
    // Quiet for udp_idle: the session ends and gives its slot back.
    wait_metric(mesh.admin, gauge, SOON, |v| v == 0.0).await;
    assert!(exchange(&second, 42205, b"c", SOON).await.is_some());
    assert_eq!(backend.sessions(), 2, "one upstream socket per session");
    assert_eq!(backend.hits(), 2);
    assert!(
        metric(
            mesh.admin,
            "palisade_meshd_udp_dropped_datagrams_total{dst_app=\"/udp/idle\"}"
        )
        .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_traffic_keeps_sessions_until_their_backend_goes_or_the_policy_turns() {
    let a = backends::udp("127.0.201.17:42217", "rl.a").await;
    let b = backends::udp("127.0.201.18:42218", "rl.b").await;
    let ids = [("127.0.201.24", "/udp/caller")];
    let svc = |backends: &[(&str, &str)], allow: &str| {
        let mut s = udp_service("/udp/reload", 42206, backends);
        allow_only(&mut s, allow);
        s
    };
    let only_a = [("127.0.201.17:42217", "rl.a")];
    let both = [
        ("127.0.201.17:42217", "rl.a"),
        ("127.0.201.18:42218", "rl.b"),
    ];
    let only_b = [("127.0.201.18:42218", "rl.b")];
    let mesh = Mesh::start("udp-reload", vec![svc(&only_a, "/udp/caller")], &ids).await;

    // One client, one session, exchanging back to back all through the reloads.
    let answers: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (ans, st) = (Arc::clone(&answers), Arc::clone(&stop));
    let traffic = tokio::spawn(async move {
        let c = client("127.0.201.24").await;
        let mut n = 0u32;
        while !st.load(Ordering::Relaxed) && n < 100_000 {
            n += 1;
            let r = exchange(&c, 42206, &n.to_be_bytes(), Duration::from_millis(500)).await;
            ans.lock().unwrap().push(r.map(|r| answered_by(&r)));
        }
    });
    let count = || answers.lock().unwrap().len();
    let wait_more = |n: usize| {
        let target = count() + n;
        palisade_tests::harness::eventually("more exchanges", SOON, move || {
            let now = count();
            async move {
                if now >= target {
                    Ok(())
                } else {
                    Err(now.to_string())
                }
            }
        })
    };
    wait_more(20).await;
    // Generation 2: a second backend and a second service. The session stays on rl.a.
    let extra = udp_service("/udp/extra", 42207, &only_b);
    mesh.reload(2, vec![svc(&both, "/udp/caller"), extra.clone()], &ids)
        .await;
    wait_more(20).await;
    {
        let seen = answers.lock().unwrap();
        assert!(
            seen.iter().all(|r| r.as_deref() == Some("rl.a")),
            "{seen:?}"
        );
    }
    assert_eq!(a.sessions(), 1, "one session, kept across the reload");
    // Generation 3: rl.a leaves the service; its session ends, the next datagram opens one on rl.b.
    let before = count();
    mesh.reload(3, vec![svc(&only_b, "/udp/caller"), extra.clone()], &ids)
        .await;
    wait_more(20).await;
    {
        let seen = answers.lock().unwrap();
        let after = &seen[before..];
        let lost = after.iter().filter(|r| r.is_none()).count();
        assert!(
            lost <= 1,
            "at most the datagram in flight at the swap: {after:?}"
        );
        assert_eq!(after.last().unwrap().as_deref(), Some("rl.b"), "{after:?}");
    }
    assert_eq!(b.sessions(), 1);
    // Generation 4: the caller is no longer allowed: its open session is revoked.
    mesh.reload(4, vec![svc(&only_b, "/udp/other"), extra], &ids)
        .await;
    wait_metric(
        mesh.admin,
        "palisade_meshd_udp_sessions{dst_app=\"/udp/reload\"}",
        SOON,
        |v| v == 0.0,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    assert!(metric(mesh.admin, "palisade_meshd_revoked_connections_total").await >= 1.0);
    let hits = b.hits();
    let c = client("127.0.201.24").await;
    assert_eq!(
        exchange(&c, 42206, b"late", Duration::from_millis(300)).await,
        None
    );
    assert_eq!(b.hits(), hits, "nothing reaches the task once denied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_60000_byte_datagram_crosses_intact_both_ways() {
    let _b = backends::udp("127.0.201.19:42219", "big.1").await;
    let mesh = Mesh::start(
        "udp-big",
        vec![udp_service(
            "/udp/big",
            42208,
            &[("127.0.201.19:42219", "big.1")],
        )],
        &[],
    )
    .await;
    let c = client("127.0.201.25").await;
    let payload: Vec<u8> = (0..60_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let reply = exchange(&c, 42208, &payload, SOON)
        .await
        .expect("an answer");
    assert_eq!(reply.len(), "big.1|".len() + payload.len());
    assert_eq!(&reply[..6], b"big.1|");
    assert!(reply[6..] == payload[..], "the datagram came back changed");
    let up = "palisade_meshd_udp_upstream_bytes_total{dst_app=\"/udp/big\"}";
    wait_metric(mesh.admin, up, SOON, |v| v == 60_000.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icmp_port_unreachable_ends_the_session_and_counts_as_a_failure() {
    // Nothing listens on the task's port: the kernel answers ICMP port-unreachable.
    let mesh = Mesh::start(
        "udp-icmp",
        vec![udp_service(
            "/udp/gone",
            42209,
            &[("127.0.201.40:42240", "gone.1")],
        )],
        &[],
    )
    .await;
    let c = client("127.0.201.26").await;
    assert_eq!(
        exchange(&c, 42209, b"anyone?", Duration::from_millis(300)).await,
        None
    );
    let failures = "palisade_meshd_backend_failures_total{dst_app=\"/udp/gone\",backend=\"127.0.201.40:42240\"}";
    wait_metric(mesh.admin, failures, SOON, |v| v >= 1.0).await;
    wait_metric(
        mesh.admin,
        "palisade_meshd_udp_sessions{dst_app=\"/udp/gone\"}",
        SOON,
        |v| v == 0.0,
    )
    .await;
    // A backend that comes up later gets the next session.
    let _b = backends::udp("127.0.201.40:42240", "gone.1").await;
    let r = exchange(&c, 42209, b"now?", SOON).await.expect("an answer");
    assert_eq!(r, b"gone.1|now?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_replies_reaches_the_client_whole_and_in_order() {
    // A backend that answers one datagram with eight, sent back to back, so
    // meshd takes several in one receive and hands them on in one send.
    let backend = UdpSocket::bind("127.0.201.50:42250").await.unwrap();
    let replies: Vec<Vec<u8>> = (0..8u8)
        .map(|i| vec![i; if i == 3 { 30_000 } else { 100 + usize::from(i) }])
        .collect();
    let burst = replies.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((_, from)) = backend.recv_from(&mut buf).await {
            for r in &burst {
                let _ = backend.send_to(r, from).await;
            }
        }
    });
    let mesh = Mesh::start(
        "udp-burst",
        vec![udp_service(
            "/udp/burst",
            42230,
            &[("127.0.201.50:42250", "burst.1")],
        )],
        &[],
    )
    .await;
    let c = client("127.0.201.28").await;
    let first = exchange(&c, 42230, b"go", SOON).await.expect("an answer");
    let mut got = vec![first];
    let mut buf = vec![0u8; 65_536];
    while got.len() < replies.len() {
        let (n, _) = tokio::time::timeout(SOON, c.recv_from(&mut buf))
            .await
            .expect("every reply of the burst")
            .unwrap();
        got.push(buf[..n].to_vec());
    }
    assert_eq!(got, replies, "the burst came back changed or reordered");
    let down = "palisade_meshd_udp_downstream_datagrams_total{dst_app=\"/udp/burst\"}";
    wait_metric(mesh.admin, down, SOON, |v| v == 8.0).await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_replies_of_several_sessions_reach_each_client_whole_and_in_order() {
    // Each request is answered with eight replies back to back (one of
    // 30,000 bytes), naming the request: meshd takes the replies of several
    // sessions in one pass and sends them in one batch from the service port.
    let backend = UdpSocket::bind("127.0.202.60:42271").await.unwrap();
    let replies = |req: &[u8]| -> Vec<Vec<u8>> {
        (0..8u8)
            .map(|i| {
                let mut r = req.to_vec();
                r.push(i);
                r.resize(if i == 5 { 30_000 } else { 50 + usize::from(i) }, i);
                r
            })
            .collect()
    };
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = backend.recv_from(&mut buf).await {
            for r in replies(&buf[..n]) {
                let _ = backend.send_to(&r, from).await;
            }
        }
    });
    let mesh = Mesh::start(
        "udp-bursts",
        vec![udp_service(
            "/udp/bursts",
            42270,
            &[("127.0.202.60:42271", "bursts.1")],
        )],
        &[],
    )
    .await;
    let to: SocketAddr = format!("{MESH}:42270").parse().unwrap();
    let mut clients = Vec::new();
    for i in 0..6 {
        clients.push(client(&format!("127.0.202.{}", 61 + i)).await);
    }
    for round in 0..3u8 {
        // Every client asks before any reads, so replies of several sessions are pending at once.
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[b'c', i as u8, round], to).await.unwrap();
        }
        for (i, c) in clients.iter().enumerate() {
            let mut buf = vec![0u8; 65_536];
            let mut got = Vec::new();
            while got.len() < 8 {
                let (n, from) = tokio::time::timeout(SOON, c.recv_from(&mut buf))
                    .await
                    .expect("every reply of the burst")
                    .unwrap();
                assert_eq!(from, to, "the answer comes from the service port");
                got.push(buf[..n].to_vec());
            }
            let want: Vec<Vec<u8>> = (0..8u8)
                .map(|k| {
                    let mut r = vec![b'c', i as u8, round, k];
                    r.resize(if k == 5 { 30_000 } else { 50 + usize::from(k) }, k);
                    r
                })
                .collect();
            assert_eq!(
                got, want,
                "client {i} round {round}: changed, reordered or someone else's"
            );
        }
    }
    let down = "palisade_meshd_udp_downstream_datagrams_total{dst_app=\"/udp/bursts\"}";
    wait_metric(mesh.admin, down, SOON, |v| v == 144.0).await;
    let gauge = "palisade_meshd_udp_sessions{dst_app=\"/udp/bursts\"}";
    assert_eq!(metric(mesh.admin, gauge).await, 6.0);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_flooding_one_session_does_not_hold_up_the_others() {
    // "flood" is answered with 20,000 datagrams as fast as the backend can
    // send them; anything else is echoed. The flooded session shares the
    // port's task with the other client's session, which must keep its answers.
    let backend = Arc::new(UdpSocket::bind("127.0.202.70:42273").await.unwrap());
    let b = Arc::clone(&backend);
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = b.recv_from(&mut buf).await {
            if &buf[..n] == b"flood" {
                let b = Arc::clone(&b);
                tokio::spawn(async move {
                    let junk = vec![0u8; 1_000];
                    for _ in 0..20_000 {
                        let _ = b.send_to(&junk, from).await;
                    }
                });
            } else {
                let _ = b.send_to(&buf[..n], from).await;
            }
        }
    });
    let mesh = Mesh::start(
        "udp-flood",
        vec![udp_service(
            "/udp/flood",
            42272,
            &[("127.0.202.70:42273", "flood.1")],
        )],
        &[],
    )
    .await;
    let flooded = client("127.0.202.71").await;
    let other = client("127.0.202.72").await;
    let to: SocketAddr = format!("{MESH}:42272").parse().unwrap();
    flooded.send_to(b"flood", to).await.unwrap();
    let up = "palisade_meshd_udp_downstream_datagrams_total{dst_app=\"/udp/flood\"}";
    wait_metric(mesh.admin, up, SOON, |v| v >= 100.0).await;
    for i in 0..20u8 {
        let r = exchange(&other, 42272, &[b'q', i], Duration::from_millis(500)).await;
        assert_eq!(
            r.as_deref(),
            Some(&[b'q', i][..]),
            "exchange {i} during the flood"
        );
    }
    task.abort();
}
