//! TLS termination on a service port, checked with real clients: curl over
//! HTTP/2 and HTTP/1.1, `openssl s_client` for protocol versions and ALPN;
//! renewed certificate files are served without a restart, and a bad one
//! keeps the last good certificate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::certs::TestCa;
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{eventually, meshd, status, wait_generation, Scratch};
use schemas::Protocol;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn s_client(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            "127.0.0.120:22300",
            "-servername",
            "shop.test",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_terminates_with_alpn_and_renews_without_restart() {
    let _web = backends::http("127.0.121.1:8080", "tls.web").await;
    let dir = Scratch::new("tls");
    let ca = TestCa::new("palisade test CA");
    let ca_file = dir.write("ca.pem", &ca.pem);
    let mut svc = service(
        "/tls/web",
        22300,
        Protocol::Http,
        &[("127.0.121.1:8080", "tls.web")],
    );
    let (cert, key) = terminate_tls(&mut svc, &dir, &ca, "shop", &["shop.test", "127.0.0.120"]);
    dir.write(
        "nodes/tls.yaml",
        &node_config("tls", "127.0.0.120", 1, vec![svc]),
    );
    let (mut mesh, admin) = meshd("tls", &dir.path("nodes"), &[]);
    wait_generation(admin, 1).await;
    let url = "https://127.0.0.120:22300/headers";
    let ca_s = ca_file.to_str().unwrap();

    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (ok, out) = curl(&[
            "--cacert",
            ca_s,
            flag,
            "--interface",
            "127.0.122.1",
            "-w",
            "\n%{http_version}",
            url,
        ]);
        assert!(ok, "{flag}: {out}");
        assert!(out.ends_with(version), "{flag}: {out}");
        assert!(out.contains("\"x-forwarded-proto\":\"https\""), "{out}");
    }
    // An untrusted CA is refused by the client: the certificate really is ours.
    let (ok, _) = curl(&["--http2", url]);
    assert!(!ok);

    let tls12 = tokio::task::spawn_blocking(|| s_client(&["-tls1_2", "-alpn", "h2"]))
        .await
        .unwrap();
    assert!(
        tls12.contains("Protocol  : TLSv1.2") || tls12.contains("TLSv1.2"),
        "{tls12}"
    );
    assert!(tls12.contains("ALPN protocol: h2"), "{tls12}");
    let tls13 = tokio::task::spawn_blocking(|| s_client(&["-tls1_3", "-alpn", "http/1.1"]))
        .await
        .unwrap();
    assert!(tls13.contains("TLSv1.3"), "{tls13}");
    assert!(tls13.contains("ALPN protocol: http/1.1"), "{tls13}");
    let tls11 = tokio::task::spawn_blocking(|| s_client(&["-tls1_1"]))
        .await
        .unwrap();
    assert!(
        !tls11.contains("Cipher is ") || tls11.contains("Cipher is (NONE)"),
        "TLS 1.1 must be refused: {tls11}"
    );

    // Renewal: new files under the same paths serve the next handshake.
    let (renewed_cert, renewed_key) =
        ca.leaf(&dir.path("certs"), "renewed", &["shop.test", "127.0.0.120"]);
    std::fs::rename(&renewed_key, &key).unwrap();
    std::fs::rename(&renewed_cert, &cert).unwrap();
    eventually(
        "the renewed certificate is served",
        Duration::from_secs(6),
        || async {
            let out = tokio::task::spawn_blocking(|| s_client(&["-tls1_3"]))
                .await
                .unwrap();
            if out.contains("CN = renewed") || out.contains("CN=renewed") {
                Ok(())
            } else {
                Err(out)
            }
        },
    )
    .await;

    // A bad certificate file: refused, reported, and the last good one keeps serving.
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let s = eventually(
        "the bad certificate is reported",
        Duration::from_secs(6),
        || async move {
            let s = status(admin).await?;
            if s["tls_errors"].as_array().is_some_and(|e| !e.is_empty()) {
                Ok(s)
            } else {
                Err(s.to_string())
            }
        },
    )
    .await;
    assert!(
        s["tls_errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains(cert.to_str().unwrap()),
        "{s}"
    );
    let (ok, out) = curl(&["--cacert", ca_s, "--http2", url]);
    assert!(ok, "{out}");
    assert!(mesh.running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_verifies_the_backend_against_the_app_ca() {
    let _plain = backends::http("127.0.125.1:8081", "tls.backend").await;
    let dir = Scratch::new("upstream-tls");
    let ca = TestCa::new("backend CA");
    let other = TestCa::new("some other CA");
    let front = ca
        .tls_front("127.0.125.1:8443", "127.0.125.1:8081", &["backend.test"])
        .await;
    let good = dir.write("ca.pem", &ca.pem);
    let wrong = dir.write("other.pem", &other.pem);
    let upstream = |ca: &std::path::Path| {
        Some(schemas::UpstreamTls {
            ca: ca.display().to_string(),
            server_name: "backend.test".into(),
        })
    };
    let mut trusted = service(
        "/tls/trusted",
        22310,
        Protocol::Http,
        &[(&front.to_string(), "tls.backend")],
    );
    trusted.upstream_tls = upstream(&good);
    let mut untrusted = service(
        "/tls/untrusted",
        22311,
        Protocol::Http,
        &[(&front.to_string(), "tls.backend")],
    );
    untrusted.upstream_tls = upstream(&wrong);
    let mut tcp = service(
        "/tls/tcp",
        22312,
        Protocol::Tcp,
        &[(&front.to_string(), "tls.backend")],
    );
    tcp.upstream_tls = upstream(&good);
    dir.write(
        "nodes/up.yaml",
        &node_config("up", "127.0.0.124", 1, vec![trusted, untrusted, tcp]),
    );
    let (_mesh, admin) = meshd("up", &dir.path("nodes"), &[]);
    wait_generation(admin, 1).await;
    let (ok, out) = curl(&[
        "--interface",
        "127.0.126.1",
        "-i",
        "http://127.0.0.124:22310/",
    ]);
    assert!(
        ok && out.contains("200") && out.contains("x-backend: tls.backend"),
        "{out}"
    );
    let (_, out) = curl(&[
        "--interface",
        "127.0.126.1",
        "-i",
        "http://127.0.0.124:22311/",
    ]);
    assert!(
        out.starts_with("HTTP/1.1 502"),
        "a backend the CA does not vouch for is refused: {out}"
    );
    // TCP mode speaks TLS to the backend too; the client speaks plain HTTP to meshd.
    let (ok, out) = curl(&[
        "--interface",
        "127.0.126.1",
        "-i",
        "http://127.0.0.124:22312/",
    ]);
    assert!(ok && out.contains("x-backend: tls.backend"), "{out}");
}

/// A TCP-mode service with `tls:` terminates TLS and carries the plain
/// bytes both ways (its tunnel is boxed apart from the TLS task: issue 17).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_terminates_for_a_tcp_service() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let _echo = backends::tcp("127.0.210.2:43001", "tls.tcp").await;
    let dir = Scratch::new("tls-tcp");
    let ca = TestCa::new("palisade test CA");
    let mut svc = service(
        "/tls/tcp",
        43000,
        Protocol::Tcp,
        &[("127.0.210.2:43001", "tls.tcp")],
    );
    terminate_tls(&mut svc, &dir, &ca, "tcp", &["127.0.210.1"]);
    dir.write(
        "nodes/tlstcp.yaml",
        &node_config("tlstcp", "127.0.210.1", 1, vec![svc]),
    );
    let (mut mesh, admin) = meshd("tlstcp", &dir.path("nodes"), &[]);
    wait_generation(admin, 1).await;

    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let ca_der = rustls::pki_types::pem::PemObject::from_pem_slice(ca.pem.as_bytes()).unwrap();
    roots.add(ca_der).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect("127.0.210.1:43000")
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.210.1").unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let (r, mut w) = tokio::io::split(tls);
    let mut lines = BufReader::new(r).lines();
    // The echo backend greets with its name, then echoes each line.
    for (send, want) in [
        (None, "tls.tcp"),
        (Some("over tls"), "over tls"),
        (Some("and back"), "and back"),
    ] {
        if let Some(line) = send {
            w.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        }
        let got = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
            .await
            .expect("a line in time")
            .unwrap();
        assert_eq!(got.as_deref(), Some(want));
    }
    assert!(mesh.running());
}

/// Gives `svc` a certificate for `sans` signed by `ca`, written under
/// `dir`'s `certs/`; its certificate and key files.
fn terminate_tls(
    svc: &mut schemas::Service,
    dir: &Scratch,
    ca: &TestCa,
    name: &str,
    sans: &[&str],
) -> (PathBuf, PathBuf) {
    let certs = dir.path("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (cert, key) = ca.leaf(&certs, name, sans);
    svc.tls = Some(schemas::Tls {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        redirect_https: false,
        hsts: None,
    });
    (cert, key)
}
