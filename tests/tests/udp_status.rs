//! meshd's `/status` per service port, through the real admin endpoint: a
//! node file with an HTTP service, a UDP service and a `udp,tcp` port shows
//! each port once with the protocols bound on it, and a UDP port's open
//! sessions as clients come, go idle and the service is removed; the
//! `services` list keeps its fields (DESIGN.md: extend only).
//! Addresses 127.0.208.50-59; ports 42850-42869.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{meshd, status, wait_for_status, wait_generation, Scratch};
use schemas::{Protocol, Service};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

const NODE: &str = "status-node";
const MESH: &str = "127.0.208.50";
const SOON: Duration = Duration::from_secs(5);

fn services(with_dns: bool) -> Vec<Service> {
    let mut dns = service(
        "/infra/dns",
        42852,
        Protocol::Udp,
        &[("127.0.208.52:42862", "dns.1")],
    );
    dns.timeouts.udp_idle = Some(schemas::duration::Duration(Duration::from_millis(1500)));
    let mut out = vec![
        service(
            "/shop/web",
            42851,
            Protocol::Http,
            &[("127.0.208.51:42861", "web.1")],
        ),
        // Marathon's `udp,tcp`: one port, both sockets.
        service(
            "/kong/serf",
            42853,
            Protocol::Tcp,
            &[("127.0.208.53:42863", "serf.1")],
        ),
        service(
            "/kong/serf",
            42853,
            Protocol::Udp,
            &[("127.0.208.53:42863", "serf.1")],
        ),
    ];
    if with_dns {
        out.push(dns);
    }
    out
}

/// The `ports` entry of `port` in a `/status` document.
fn port(status: &Value, port: u16) -> Option<Value> {
    status["ports"]
        .as_array()?
        .iter()
        .find(|p| p["port"] == port)
        .cloned()
}

fn sessions(status: &Value, p: u16) -> Option<u64> {
    port(status, p)?["udp"]["sessions"].as_u64()
}

async fn ask(sock: &UdpSocket, to_port: u16) -> Vec<u8> {
    let to: SocketAddr = format!("{MESH}:{to_port}").parse().unwrap();
    sock.send_to(b"ping", to).await.unwrap();
    let mut buf = [0u8; 256];
    let (n, _) = tokio::time::timeout(SOON, sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    buf[..n].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_each_service_port_with_its_protocols_and_udp_sessions() {
    let _web = backends::http("127.0.208.51:42861", "web.1").await;
    let _dns = backends::udp("127.0.208.52:42862", "dns.1").await;
    let _serf_udp = backends::udp("127.0.208.53:42863", "serf.1").await;
    let _serf_tcp = backends::tcp("127.0.208.53:42863", "serf.1").await;
    let dir = Scratch::new("udp-status");
    dir.write(
        &format!("nodes/{NODE}.yaml"),
        &node_config(NODE, MESH, 1, services(true)),
    );
    let (_meshd, admin) = meshd(NODE, &dir.path("nodes"), &[]);
    let s = wait_generation(admin, 1).await;

    // The per-service list is still there, field for field.
    let svcs = s["services"].as_array().unwrap();
    assert_eq!(svcs.len(), 4, "{s}");
    for field in [
        "app",
        "port",
        "listen",
        "listening",
        "protocol",
        "balance",
        "backends",
    ] {
        assert!(svcs.iter().all(|v| v.get(field).is_some()), "{field}: {s}");
    }

    let ports: Vec<u64> = s["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [42851, 42852, 42853], "each port once: {s}");
    let web = port(&s, 42851).unwrap();
    assert_eq!(web["protocols"], json!(["http", "h2"]), "{web}");
    assert_eq!(web["listen"], format!("{MESH}:42851"));
    assert_eq!(web["tcp"]["app"], "/shop/web");
    assert_eq!(web["tcp"]["listening"], true);
    assert_eq!(web["udp"], Value::Null, "{web}");
    let dns = port(&s, 42852).unwrap();
    assert_eq!(dns["protocols"], json!(["udp"]), "{dns}");
    assert_eq!(dns["tcp"], Value::Null, "{dns}");
    assert_eq!(dns["udp"]["app"], "/infra/dns");
    assert_eq!(dns["udp"]["listening"], true);
    assert_eq!(dns["udp"]["sessions"], 0);
    assert_eq!(dns["udp"]["idle_timeout_ms"], 1500);
    let serf = port(&s, 42853).unwrap();
    assert_eq!(serf["protocols"], json!(["tcp", "udp"]), "{serf}");
    assert_eq!(serf["tcp"]["listening"], true);
    assert_eq!(serf["udp"]["listening"], true);

    // Two clients, two sessions on the DNS port; one on serf's.
    let a = UdpSocket::bind("127.0.208.55:0").await.unwrap();
    let b = UdpSocket::bind("127.0.208.56:0").await.unwrap();
    assert_eq!(ask(&a, 42852).await, b"dns.1|ping");
    assert_eq!(ask(&b, 42852).await, b"dns.1|ping");
    assert_eq!(ask(&a, 42852).await, b"dns.1|ping", "the same session");
    assert_eq!(ask(&a, 42853).await, b"serf.1|ping");
    let s = status(admin).await.unwrap();
    assert_eq!(sessions(&s, 42852), Some(2), "{s}");
    assert_eq!(sessions(&s, 42853), Some(1), "{s}");

    // Quiet for udp_idle (1.5 s): the DNS sessions end; serf's (30 s) stays.
    wait_for_status(admin, "DNS sessions idle", SOON, |s| {
        sessions(s, 42852) == Some(0)
    })
    .await;
    let s = status(admin).await.unwrap();
    assert_eq!(sessions(&s, 42853), Some(1), "{s}");

    // A reload that keeps serf keeps its session; the DNS port goes away.
    dir.write(
        &format!("nodes/{NODE}.yaml"),
        &node_config(NODE, MESH, 2, services(false)),
    );
    let s = wait_generation(admin, 2).await;
    assert_eq!(port(&s, 42852), None, "{s}");
    assert_eq!(sessions(&s, 42853), Some(1), "{s}");
}
