//! The shared edge listeners: routing by Host and SNI with path prefixes,
//! certificates per host, redirect to HTTPS, HSTS, 404 for unknown hosts
//! with no backend touched, allow-lists applied at the edge, and an app
//! chosen per request on one HTTP/1.1 keep-alive connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::certs::TestCa;
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{meshd, wait_generation, Scratch};
use schemas::{Protocol, Rule};
use std::process::Command;

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `curl` off the async runtime's threads.
async fn curl_async(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || curl(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_routes_by_host_sni_and_path() {
    let shop = backends::http("127.0.132.1:8080", "shop.web").await;
    let _v1 = backends::http("127.0.132.2:8080", "api.v1").await;
    let _root = backends::http("127.0.132.3:8080", "api.root").await;
    let dir = Scratch::new("edge");
    let ca = TestCa::new("edge CA");
    let ca_file = dir.write("ca.pem", &ca.pem);
    let certs = dir.path("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (shop_cert, shop_key) = ca.leaf(&certs, "shop", &["shop.test"]);
    let (api_cert, api_key) = ca.leaf(&certs, "api", &["api.test"]);
    let tls = |c: &std::path::Path, k: &std::path::Path, redirect, hsts| {
        Some(schemas::Tls {
            cert: c.display().to_string(),
            key: k.display().to_string(),
            redirect_https: redirect,
            hsts,
        })
    };
    let mut web = service(
        "/shop/web",
        22501,
        Protocol::Http,
        &[("127.0.132.1:8080", "shop.web")],
    );
    web.vhost = vec!["shop.test".into()];
    web.tls = tls(&shop_cert, &shop_key, true, Some(600));
    let mut v1 = service(
        "/api/v1",
        22502,
        Protocol::Http,
        &[("127.0.132.2:8080", "api.v1")],
    );
    v1.vhost = vec!["api.test".into()];
    v1.path_prefix = Some("/v1".into());
    v1.tls = tls(&api_cert, &api_key, false, None);
    v1.access.deny.push(Rule {
        from: None,
        from_cidr: Some("127.0.133.0/24".parse().unwrap()),
    });
    let mut root = service(
        "/api/root",
        22503,
        Protocol::Http,
        &[("127.0.132.3:8080", "api.root")],
    );
    root.vhost = vec!["api.test".into()];
    root.tls = tls(&api_cert, &api_key, false, None);
    dir.write(
        "nodes/edge.yaml",
        &node_config("edge", "127.0.0.130", 1, vec![web, v1, root]),
    );
    let (_mesh, admin) = meshd(
        "edge",
        &dir.path("nodes"),
        &[
            "--edge-http",
            "127.0.0.130:22480",
            "--edge-https",
            "127.0.0.130:22443",
        ],
    );
    wait_generation(admin, 1).await;
    let ca_s = ca_file.to_str().unwrap().to_owned();

    let out = curl_async(&["-H", "Host: shop.test", "http://127.0.0.130:22480/cart?x=1"]).await;
    assert!(out.starts_with("HTTP/1.1 308"), "{out}");
    assert!(
        out.to_lowercase()
            .contains("location: https://shop.test/cart?x=1"),
        "{out}"
    );

    // HSTS over HTTP/2 (hyper's server) and HTTP/1.1 (the head meshd
    // writes itself), exactly once.
    for (version, status) in [("--http2", "HTTP/2 200"), ("--http1.1", "HTTP/1.1 200")] {
        let out = curl_async(&[
            version,
            "--cacert",
            ca_s.as_str(),
            "--resolve",
            "shop.test:22443:127.0.0.130",
            "https://shop.test:22443/",
        ])
        .await;
        assert!(out.starts_with(status), "{out}");
        assert!(out.contains("x-backend: shop.web"), "{out}");
        assert_eq!(
            out.to_lowercase()
                .matches("strict-transport-security: max-age=600")
                .count(),
            1,
            "{out}"
        );
    }

    for (path, backend) in [
        ("/v1/orders", "api.v1"),
        ("/", "api.root"),
        ("/v2", "api.root"),
    ] {
        let url = format!("https://api.test:22443{path}");
        let out = curl_async(&[
            "--http1.1",
            "--cacert",
            &ca_s,
            "--resolve",
            "api.test:22443:127.0.0.130",
            &url,
        ])
        .await;
        assert!(
            out.starts_with("HTTP/1.1 200") && out.contains(&format!("x-backend: {backend}")),
            "{path}: {out}"
        );
        assert!(!out.contains("strict-transport-security"), "{out}");
    }

    let before = shop.hits();
    let out = curl_async(&["-H", "Host: nowhere.test", "http://127.0.0.130:22480/"]).await;
    assert!(
        out.starts_with("HTTP/1.1 404") && out.contains("no app serves nowhere.test/"),
        "{out}"
    );
    assert_eq!(shop.hits(), before, "no backend touched");

    let out = curl_async(&[
        "--cacert",
        ca_s.as_str(),
        "--interface",
        "127.0.133.1",
        "--resolve",
        "api.test:22443:127.0.0.130",
        "https://api.test:22443/v1/x",
    ])
    .await;
    assert!(
        out.contains(" 403") && out.contains("may not reach /api/v1"),
        "{out}"
    );

    // One keep-alive connection, an app chosen per request: by path, then
    // by host, and an unknown host answered without closing.
    let mut conn = tokio::net::TcpStream::connect("127.0.0.130:22480")
        .await
        .unwrap();
    for (head, expect) in [
        (
            "GET /v1/a HTTP/1.1\r\nHost: api.test\r\n\r\n",
            "x-backend: api.v1",
        ),
        (
            "GET /b HTTP/1.1\r\nHost: API.test:22480\r\n\r\n",
            "x-backend: api.root",
        ),
        (
            "GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n",
            "no app serves nowhere.test/",
        ),
        (
            "GET http://api.test/v1/c HTTP/1.1\r\nHost: ignored.test\r\n\r\n",
            "x-backend: api.v1",
        ),
    ] {
        let out = exchange(&mut conn, head).await;
        assert!(out.contains(expect), "{head:?}: {out}");
    }
}

/// Writes one request on `conn` and reads one response (its body framed by length).
async fn exchange(conn: &mut tokio::net::TcpStream, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "connection closed: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    return text;
                }
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("a response within 5 s")
}
