//! The config channel between configsrv and meshd (`--config-url`): node
//! configs need the node token, an `https://` URL is verified against
//! `--config-ca`, and meshd refuses bodies over its size cap and
//! generations no configsrv clock could have made, keeping the last good
//! config. A cache that cannot be written never stops configs applying.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_tests::certs::TestCa;
use palisade_tests::cluster::node_config;
use palisade_tests::config_server::ConfigServer;
use palisade_tests::harness::{
    eventually, free_port, wait_for_status, wait_generation, wait_metric, Proc, Scratch,
};
use palisade_tests::marathon_sim::MarathonSim;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const POLICY: &str = "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: deny\napps:\n  /chan/*:\n    allow:\n      - from_cidr: 127.0.0.0/8\n";
const TOKEN: &str = "node-token-7c1f";

/// meshd following `url` for `node`, its cache in `dir/cache-<node>`.
fn meshd_url(dir: &Scratch, node: &str, url: &str, extra: &[&str]) -> (Proc, SocketAddr) {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cache = dir.path(&format!("cache-{node}-{}", admin.port()));
    let (admin_s, cache_s) = (admin.to_string(), cache.display().to_string());
    let mut args = vec![
        "run",
        "--node",
        node,
        "--config-url",
        url,
        "--cache-dir",
        &cache_s,
        "--admin",
        &admin_s,
    ];
    args.extend_from_slice(extra);
    (Proc::spawn("meshd", &args, &dir.0), admin)
}

/// A container-network app on service `port`, as the simulator takes it.
fn app_def(id: &str, instances: u32, port: u16) -> serde_json::Value {
    json!({
        "id": id, "instances": instances, "labels": {}, "healthChecks": [],
        "networks": [{"mode": "container", "name": "sim"}],
        "container": {"type": "DOCKER", "docker": {"image": "chan/echo:1"},
            "portMappings": [{"containerPort": 8080, "servicePort": port, "protocol": "tcp"}]}
    })
}

/// configsrv following a simulated Marathon with one app on `host`, its
/// node configs behind `--node-token-file`; returns it, the API address and the simulator.
async fn configsrv_with_token(
    dir: &Scratch,
    host: &str,
    port: u16,
) -> (Proc, SocketAddr, MarathonSim) {
    dir.write("policies/chan.yaml", POLICY);
    let token = dir.write("node-token", &format!("{TOKEN}\n"));
    let sim = MarathonSim::start("127.0.0.1:0", &[host], [127, 0, 159]).await;
    assert_eq!(sim.post_app(&app_def("/chan/app", 1, port)).await, 201);
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let policies = dir.path("policies");
    let cs = Proc::spawn(
        "configsrv",
        &[
            "serve",
            "--marathon",
            &sim.url,
            "--policies",
            policies.to_str().unwrap(),
            "--listen",
            &api.to_string(),
            "--node-token-file",
            token.to_str().unwrap(),
        ],
        &dir.0,
    );
    (cs, api, sim)
}

async fn get_config(url: &str, token: Option<&str>) -> Result<u16, String> {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.header("authorization", t);
    }
    req.send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_configs_need_the_node_token_and_meshd_sends_it() {
    let dir = Scratch::new("chan-token");
    let node = "127.0.0.150";
    let (_cs, api, _sim) = configsrv_with_token(&dir, node, 25000).await;
    let url = format!("http://{api}/v1/nodes/{node}/config");
    let bearer = format!("Bearer {TOKEN}");
    eventually(
        "the config is served with the token",
        Duration::from_secs(5),
        || {
            let (url, bearer) = (url.clone(), bearer.clone());
            async move {
                match get_config(&url, Some(&bearer)).await? {
                    200 => Ok(()),
                    s => Err(s.to_string()),
                }
            }
        },
    )
    .await;
    assert_eq!(get_config(&url, None).await, Ok(401), "no token");
    for wrong in [
        "Bearer nope",
        "Bearer node-token-7c1",
        "Bearer node-token-7c1ff",
        TOKEN,
    ] {
        assert_eq!(get_config(&url, Some(wrong)).await, Ok(401), "{wrong}");
    }

    let good = dir.write("good-token", &format!("{TOKEN}\n"));
    let bad = dir.write("bad-token", "guess\n");
    let base = format!("http://{api}");
    let (_m, admin) = meshd_url(
        &dir,
        node,
        &base,
        &["--config-token-file", good.to_str().unwrap()],
    );
    wait_for_status(
        admin,
        "applying configsrv's config",
        Duration::from_secs(5),
        |s| s["services"].as_array().is_some_and(|v| v.len() == 1),
    )
    .await;
    let (wrong, admin2) = meshd_url(
        &dir,
        node,
        &base,
        &["--config-token-file", bad.to_str().unwrap()],
    );
    let w = &wrong;
    eventually(
        "meshd says configsrv refused its token",
        Duration::from_secs(5),
        || async move {
            if w.stderr().contains("401") {
                Ok(())
            } else {
                Err(w.stderr())
            }
        },
    )
    .await;
    let s = palisade_tests::harness::status(admin2).await.unwrap();
    assert!(s["generation"].is_null(), "{s}");
    assert!(!wrong.stderr().contains("guess"), "a token is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_config_url_is_verified_against_config_ca() {
    let dir = Scratch::new("chan-tls");
    let node = "127.0.0.151";
    let (_cs, api, _sim) = configsrv_with_token(&dir, node, 25001).await;
    let ca = TestCa::new("configsrv CA");
    let front = ca
        .tls_front("127.0.0.1:0", &api.to_string(), &["127.0.0.1"])
        .await;
    let ca_file = dir.write("ca.pem", &ca.pem);
    let other_ca = dir.write("other-ca.pem", &TestCa::new("someone else").pem);
    let token = dir.write("token", TOKEN);
    let https = format!("https://{front}");
    let tok = token.to_str().unwrap();

    let (_m, admin) = meshd_url(
        &dir,
        node,
        &https,
        &[
            "--config-token-file",
            tok,
            "--config-ca",
            ca_file.to_str().unwrap(),
        ],
    );
    wait_for_status(
        admin,
        "applying the config over TLS",
        Duration::from_secs(5),
        |s| s["services"].as_array().is_some_and(|v| v.len() == 1),
    )
    .await;

    let (untrusted, admin2) = meshd_url(
        &dir,
        node,
        &https,
        &[
            "--config-token-file",
            tok,
            "--config-ca",
            other_ca.to_str().unwrap(),
        ],
    );
    let u = &untrusted;
    eventually(
        "a certificate from another CA is refused",
        Duration::from_secs(5),
        || async move {
            let err = u.stderr();
            if err.contains("certificate") {
                Ok(())
            } else {
                Err(err)
            }
        },
    )
    .await;
    let s = palisade_tests::harness::status(admin2).await.unwrap();
    assert!(s["generation"].is_null(), "{s}");

    // https without a CA to verify it: refused at start, not trusted blindly.
    let (mut no_ca, _) = meshd_url(&dir, node, &https, &[]);
    let n = &mut no_ca;
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while n.running() && std::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !no_ca.running(),
        "meshd must refuse https without --config-ca"
    );
    assert!(no_ca.stderr().contains("--config-ca"), "{}", no_ca.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_config_is_refused_and_the_last_good_one_stays() {
    let dir = Scratch::new("chan-size");
    let node = "127.0.0.152";
    let server = ConfigServer::start("127.0.0.1:0").await;
    server.set(node_config(node, node, 5, vec![]));
    let (_m, admin) = meshd_url(&dir, node, &server.url, &["--config-max-bytes", "100000"]);
    wait_generation(admin, 5).await;

    // Valid YAML, newer, but 200 kB: over the cap.
    let padding = format!("# {}\n", "x".repeat(1000)).repeat(200);
    server.set(format!("{}{padding}", node_config(node, node, 6, vec![])));
    let s = wait_for_status(
        admin,
        "refusing the oversize body",
        Duration::from_secs(5),
        |s| s["last_reload"]["ok"] == false,
    )
    .await;
    let error = s["last_reload"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("100000"), "the error names the limit: {s}");
    assert_eq!(s["generation"], 5, "{s}");

    server.set(node_config(node, node, 7, vec![]));
    wait_generation(admin, 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_no_configsrv_clock_could_make_is_refused() {
    let dir = Scratch::new("chan-gen");
    let node = "127.0.0.153";
    let server = ConfigServer::start("127.0.0.1:0").await;
    server.set(node_config(node, node, 5, vec![]));
    let (_m, admin) = meshd_url(&dir, node, &server.url, &[]);
    wait_generation(admin, 5).await;

    server.set(node_config(node, node, u64::MAX, vec![]));
    let s = wait_for_status(
        admin,
        "refusing generation u64::MAX",
        Duration::from_secs(5),
        |s| s["last_reload"]["ok"] == false,
    )
    .await;
    assert_eq!(s["generation"], 5, "{s}");
    assert!(
        s["last_reload"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ahead"),
        "{s}"
    );

    // Not pinned: a generation from configsrv's clock still applies.
    let now = unix_ms();
    server.set(node_config(node, node, now, vec![]));
    wait_generation(admin, now).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_cannot_be_written_never_stops_configs_applying() {
    let dir = Scratch::new("chan-cache");
    let node = "127.0.0.154";
    let server = ConfigServer::start("127.0.0.1:0").await;
    server.set(node_config(node, node, 5, vec![]));
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cache = dir.path("cache");
    // A directory where the cache file goes: every write fails, even as root.
    std::fs::create_dir_all(cache.join(format!("{node}.yaml"))).unwrap();
    let _m = Proc::spawn(
        "meshd",
        &[
            "run",
            "--node",
            node,
            "--config-url",
            &server.url,
            "--cache-dir",
            cache.to_str().unwrap(),
            "--admin",
            &admin.to_string(),
        ],
        &dir.0,
    );
    wait_generation(admin, 5).await;
    wait_metric(
        admin,
        "palisade_meshd_config_cache_write_failures_total",
        Duration::from_secs(5),
        |v| v >= 1.0,
    )
    .await;
    server.set(node_config(node, node, 6, vec![]));
    wait_generation(admin, 6).await;
}

/// A node whose last task left (or any node, once configsrv restarts) is
/// still one configsrv renders for while its meshd follows: without Mesos,
/// configsrv knew nodes only from task hosts, so such a meshd kept its old
/// allow-list and a source the policy then denied still got through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_edits_reach_a_node_with_no_tasks_left_even_after_a_configsrv_restart() {
    let dir = Scratch::new("chan-follower");
    let (a, b) = ("127.0.0.153", "127.0.0.154");
    let port = 25004;
    let open = "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: deny\napps:\n  /chan/*:\n    protocol: http\n    allow:\n      - from_cidr: 127.0.0.0/8\n";
    let closed = |n: u8| {
        format!("apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: deny\napps:\n  /chan/*:\n    protocol: http\n    allow:\n      - from_cidr: 127.0.{n}.0/24\n")
    };
    dir.write("policies/chan.yaml", open);
    let sim = MarathonSim::start("127.0.0.1:0", &[a, b], [127, 0, 159]).await;
    assert_eq!(sim.post_app(&app_def("/chan/two", 2, port)).await, 201);
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let policies = dir.path("policies");
    let serve = || {
        Proc::spawn(
            "configsrv",
            &[
                "serve",
                "--marathon",
                &sim.url,
                "--policies",
                policies.to_str().unwrap(),
                "--listen",
                &api.to_string(),
                "--resync-interval",
                "1s",
            ],
            &dir.0,
        )
    };
    let mut cs = serve();
    let (_meshd, _admin) = meshd_url(&dir, b, &format!("http://{api}"), &[]);
    let service: SocketAddr = format!("{b}:{port}").parse().unwrap();
    // No backend listens on the simulated task addresses: an allowed
    // request gets meshd's 502/503, a denied one its 403.
    let status_from = |source: &'static str| async move {
        palisade_tests::client::try_exchange(
            source,
            service,
            b"GET / HTTP/1.1\r\nHost: chan\r\nConnection: close\r\n\r\n",
        )
        .await
        .map(|answer| answer.split(' ').nth(1).unwrap_or_default().to_owned())
    };
    let expect = |source: &'static str, want: &'static str, what: &'static str| async move {
        eventually(what, Duration::from_secs(10), || async move {
            let got = status_from(source).await?;
            if (want == "403") == (got == "403") && !got.is_empty() {
                Ok(())
            } else {
                Err(format!("{source} got {got:?}, want {want}"))
            }
        })
        .await;
    };
    expect("127.0.0.11", "not 403", "node b lets 127.0.0.11 through").await;

    // b's task goes; Marathon does not replace it (instances stay 2 in the
    // definition, one task runs, on a).
    let on_b: Vec<_> = sim
        .tasks("/chan/two")
        .into_iter()
        .filter(|(_, host, _)| host == b)
        .collect();
    assert_eq!(on_b.len(), 1, "one task on b: {:?}", sim.tasks("/chan/two"));
    sim.kill_task("/chan/two", &on_b[0].0, Duration::from_millis(50))
        .await;
    let gone = format!("{}:", on_b[0].2);
    eventually(
        "configsrv sees b's task gone",
        Duration::from_secs(10),
        || async {
            let gone = &gone;
            let body = reqwest::get(format!("http://{api}/v1/nodes/{a}/config"))
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            if body.contains(&format!("{port}")) && !body.contains(gone.as_str()) {
                Ok(())
            } else {
                Err(body)
            }
        },
    )
    .await;

    // The policy now denies 127.0.0.0/24: it must reach b, which has no task.
    dir.write("policies/chan.yaml", &closed(158));
    expect(
        "127.0.0.11",
        "403",
        "node b denies 127.0.0.11 after the edit",
    )
    .await;

    // And after a restart, which forgets every node configsrv rendered before.
    assert_eq!(cs.terminate(Duration::from_secs(10)), Some(0));
    dir.write("policies/chan.yaml", open);
    cs = serve();
    expect(
        "127.0.0.11",
        "not 403",
        "node b follows the restarted configsrv",
    )
    .await;
    dir.write("policies/chan.yaml", &closed(157));
    expect("127.0.0.11", "403", "and its edits").await;
    drop(cs);
}
