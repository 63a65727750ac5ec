//! The HTTP/2 conformance suite (`tests/h2spec/suite.py`, frame-level, each
//! case naming its RFC 9113 section) against meshd's cleartext h2 port and
//! its TLS port (ALPN h2). Needs Python's `h2` package; `.ci/run` installs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::backends;
use palisade_tests::certs::TestCa;
use palisade_tests::cluster::{node_config, service};
use palisade_tests::harness::{meshd, wait_generation, Scratch};
use schemas::Protocol;
use std::path::PathBuf;
use std::process::Command;

fn suite(args: &[&str]) -> (bool, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("h2spec/suite.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("ModuleNotFoundError"),
        "install Python's h2 package (`pip install h2`): {text}"
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshd_h2_listeners_pass_the_conformance_suite() {
    let _web = backends::http("127.0.141.1:8080", "h2.web").await;
    let dir = Scratch::new("h2spec");
    let ca = TestCa::new("h2spec CA");
    let ca_file = dir.write("ca.pem", &ca.pem);
    let certs = dir.path("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (cert, key) = ca.leaf(&certs, "h2spec", &["h2spec.test"]);
    let plain = service(
        "/h2/plain",
        22600,
        Protocol::Http,
        &[("127.0.141.1:8080", "h2.web")],
    );
    let mut tls = service(
        "/h2/tls",
        22601,
        Protocol::Http,
        &[("127.0.141.1:8080", "h2.web")],
    );
    tls.tls = Some(schemas::Tls {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        redirect_https: false,
        hsts: None,
    });
    dir.write(
        "nodes/h2.yaml",
        &node_config("h2", "127.0.0.140", 1, vec![plain, tls]),
    );
    let (mut mesh, admin) = meshd("h2", &dir.path("nodes"), &[]);
    wait_generation(admin, 1).await;

    let cleartext = tokio::task::spawn_blocking(|| suite(&["127.0.0.140", "22600"]))
        .await
        .unwrap();
    let ca_s = ca_file.display().to_string();
    let over_tls = tokio::task::spawn_blocking(move || {
        suite(&[
            "127.0.0.140",
            "22601",
            "--tls",
            &ca_s,
            "--sni",
            "h2spec.test",
        ])
    })
    .await
    .unwrap();
    eprintln!(
        "--- cleartext h2 ---\n{}\n--- h2 over TLS ---\n{}",
        cleartext.1, over_tls.1
    );
    assert!(cleartext.0, "{}", cleartext.1);
    assert!(over_tls.0, "{}", over_tls.1);
    assert!(mesh.running(), "meshd survived every malformed frame");
}
