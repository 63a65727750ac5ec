//! The web UI in a real browser (headless Chromium over the DevTools
//! protocol, tests/src/browser.rs).
//!
//! 1. Against a fixture of a thousand apps served next to the real UI
//!    routes: every page renders, the table and the graph stay fast (render
//!    times are measured in the browser and printed), filtering and sorting
//!    work, an app id holding markup renders as text and runs nothing, and a
//!    failing API shows a banner that goes away when the API recovers.
//! 2. Against a running mesh: the Marathon simulator, `configsrv serve`
//!    following it, two meshd long-polling configsrv, HTTP backends on the
//!    task addresses, and real traffic from task addresses (curl
//!    `--interface`), allowed and denied. The graph shows the denied flow and
//!    the app page a non-zero rate and the timing breakdown.
//!
//! Screenshots land in `<target dir>/ui-screenshots/` (printed by each test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use palisade_tests::browser::{screenshot_dir, Browser};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An app id as Marathon could hand it to a careless UI: markup, a script,
/// an event handler that would mark the page if it ever ran.
const EVIL: &str = "/evil/<script>document.body.dataset.pwned='script'</script><img src=x onerror=\"document.body.dataset.pwned='img'\">";

const APPS: usize = 1000;

fn fixture_ids() -> Vec<String> {
    let mut ids: Vec<String> = ["/shop/web", "/shop/edge", "/dev/tool", EVIL]
        .map(str::to_owned)
        .to_vec();
    ids.extend((ids.len()..APPS).map(|i| format!("/team{:02}/svc-{i:04}", i % 40)));
    ids
}

fn fixture_apps(ids: &[String]) -> Value {
    let apps: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let p50 = 0.001 + (i % 17) as f64 * 0.0007;
            json!({
                "id": id, "instances": 3, "healthy": if i % 50 == 7 { 2 } else { 3 },
                "protocol": if i % 3 == 0 { "tcp" } else { "http" },
                "service_ports": [10000 + i], "rate": (i * 37 % 1000) as f64 / 7.0,
                "error_rate": if i % 25 == 0 { 0.02 } else { 0.0 },
                "latency": {"p50": p50, "p90": p50 * 2.0, "p99": p50 * 5.0},
                "active_connections": i % 13, "bytes_in": i * 1000, "bytes_out": i * 9000,
                "denied": if id == "/shop/web" { 3 } else { 0 }
            })
        })
        .collect();
    json!({"window_seconds": 300, "apps": apps})
}

fn fixture_flows(ids: &[String]) -> Value {
    let n = ids.len();
    let mut flows = vec![
        json!({"source": "/shop/edge", "destination": "/shop/web", "allowed": 1200, "denied": 0, "would_deny": 0}),
        json!({"source": "/dev/tool", "destination": "/shop/web", "allowed": 0, "denied": 3, "would_deny": 0}),
        json!({"source": "unknown", "destination": "/shop/edge", "allowed": 40, "denied": 4, "would_deny": 0}),
        json!({"source": EVIL, "destination": "/shop/web", "allowed": 0, "denied": 0, "would_deny": 7}),
    ];
    // Every other app calls one or two others: about 1,500 edges, some cycles.
    for i in 4..n {
        let to = 4 + (i * 7 + 3) % (n - 4);
        flows.push(json!({"source": ids[i], "destination": ids[to], "allowed": 1 + i * 31 % 5000, "denied": 0, "would_deny": 0}));
        if i % 2 == 0 {
            let to = 4 + (i * 13 + 5) % (n - 4);
            flows.push(json!({"source": ids[i], "destination": ids[to], "allowed": 1 + i % 90, "denied": 0, "would_deny": 0}));
        }
    }
    json!({"window_seconds": 300, "flows": flows})
}

fn fixture_app(app: &Value) -> Value {
    let mut a = app.clone();
    let series: Vec<Value> = (0..60)
        .map(|k| {
            json!({"at": 1_796_650_000 + k * 5, "rate": 10.0 + (k % 5) as f64, "error_rate": 0.0,
                   "p50": 0.004, "p99": 0.03, "client_rtt_p50": 0.0001, "connect_p50": 0.0002,
                   "response_p50": 0.003, "transfer_p50": 0.0007})
        })
        .collect();
    let extra = json!({
        "timing": {
            "client_rtt": {"p50": 0.0001, "p90": 0.0002, "p99": 0.0004},
            "connect": {"p50": 0.0002, "p90": 0.0003, "p99": 0.001},
            "response": {"p50": 0.003, "p90": 0.009, "p99": 0.03},
            "transfer": {"p50": 0.0007, "p90": 0.0012, "p99": 0.004},
            "total": {"p50": 0.004, "p90": 0.011, "p99": 0.032}
        },
        "series": series,
        "backends": [
            {"task": "t.1", "address": "127.0.1.1:8080", "node": "127.0.0.2", "health": "healthy", "draining": false},
            {"task": "t.2", "address": "127.0.1.2:8080", "node": "127.0.0.3", "health": "healthy", "draining": true}
        ],
        "sources": ["/shop/edge", EVIL, "unknown"],
        "errors": [format!("policies/x.yaml:3:5: {EVIL}")]
    });
    for (k, v) in extra.as_object().unwrap() {
        a[k] = v.clone();
    }
    a
}

const PROPOSED: &str = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /shop/web:\n    action: deny\n    allow:\n      - from: /shop/edge\n";

#[derive(Clone)]
struct Fixture {
    apps: Arc<Value>,
    flows: Arc<Value>,
    /// While set, `/v1/apps` answers 500, as a configsrv in trouble would.
    failing: Arc<AtomicBool>,
}

async fn apps(State(f): State<Fixture>) -> Response {
    if f.failing.load(Ordering::Relaxed) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "the collector is down (fixture)"})),
        )
            .into_response();
    }
    Json((*f.apps).clone()).into_response()
}

async fn app(State(f): State<Fixture>, Path(rest): Path<String>) -> Response {
    let id = format!("/{rest}");
    match f.apps["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
    {
        Some(a) => Json(fixture_app(a)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no app {id}")})),
        )
            .into_response(),
    }
}

/// The real UI routes plus the API's shapes (docs/api.md) from fixtures.
async fn serve_fixture() -> (SocketAddr, Fixture) {
    let ids = fixture_ids();
    let fixture = Fixture {
        apps: Arc::new(fixture_apps(&ids)),
        flows: Arc::new(fixture_flows(&ids)),
        failing: Arc::new(AtomicBool::new(false)),
    };
    let flows = fixture.flows.clone();
    let router = Router::new()
        .route("/v1/apps", get(apps))
        .route("/v1/apps/{*rest}", get(app))
        .route("/v1/flows", get(move || async move { Json((*flows).clone()) }))
        .route(
            "/v1/nodes",
            get(|| async {
                Json(json!({"nodes": [
                    {"node": "127.0.0.2", "generation": 1_796_650_000_200_u64, "rendered": 1_796_650_000_200_u64,
                     "applied": 1_796_650_000_200_u64, "converged": true, "reachable": true,
                     "last_scrape": 1_796_650_001, "reload_errors": 0, "last_error": null, "error": null},
                    {"node": "127.0.0.4", "generation": 1_796_650_000_200_u64, "rendered": 1_796_650_000_200_u64,
                     "applied": null, "converged": false, "reachable": false,
                     "last_scrape": 1_796_649_000, "reload_errors": 0, "last_error": null,
                     "error": "connect 127.0.0.4:9901: connection refused"}
                ]}))
            }),
        )
        .route(
            "/v1/policy",
            get(|| async {
                Json(json!({"commit": null,
                    "apps": {"/shop/web": {"allow": [{"from": "/shop/edge"}]}},
                    "errors": {EVIL: [format!("evil.yaml:1:1: {EVIL}")]},
                    "files": [{"file": "shop.yaml", "error": null}]}))
            }),
        )
        .route(
            "/v1/policy/proposed",
            get(|| async { ([("content-type", "application/yaml")], PROPOSED) }),
        )
        .route(
            "/v1/status",
            get(|| async { Json(json!({"sources": {"marathon": {"stale": false, "error": null}}})) }),
        )
        .with_state(fixture.clone())
        .merge(configsrv::ui::router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, fixture)
}

/// Nothing from the evil id ran: no marker, no injected element; and the
/// page met no script error and nothing its Content-Security-Policy blocked.
async fn assert_nothing_injected(b: &mut Browser, page: &str) {
    let trouble = b
        .eval("JSON.stringify([window.palisadeUi.errors, window.palisadeUi.violations])")
        .await;
    assert_eq!(
        trouble.as_str().unwrap(),
        "[[],[]]",
        "{page}: script errors and policy violations"
    );
    let injected = b
        .eval(
            "JSON.stringify({pwned: document.body.dataset.pwned || null, \
              imgs: document.querySelectorAll('img').length, \
              scripts: document.querySelectorAll('script').length})",
        )
        .await;
    assert_eq!(
        injected.as_str().unwrap(),
        r#"{"pwned":null,"imgs":0,"scripts":1}"#,
        "{page}: an app id with markup must render as text, never as elements"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_renders_a_thousand_apps_fast_and_ids_as_text() {
    let (addr, fixture) = serve_fixture().await;
    let base = format!("http://{addr}/");
    let shots = screenshot_dir();
    let mut b = Browser::launch("web-ui-fixture").await;

    // Overview: all 1,000 rows, sorted by rate, filterable.
    b.goto(&base).await;
    b.wait_for(
        "the apps table with 1,000 rows",
        "document.querySelectorAll('#apps tbody tr').length === 1000",
        Duration::from_secs(20),
    )
    .await;
    let overview_ms = b.eval("window.palisadeUi.renders.overview").await;
    let evil_row = b
        .eval(&format!(
            "[...document.querySelectorAll('#apps td.id a')].some(a => a.textContent === {})",
            json!(EVIL)
        ))
        .await;
    assert_eq!(evil_row, json!(true), "the markup app id shows as its text");
    assert_nothing_injected(&mut b, "overview").await;
    b.screenshot(&shots.join("fixture-overview.png")).await;
    b.eval(
        "(() => { const i = document.querySelector('main input[type=search]'); \
          i.value = 'svc-09'; i.dispatchEvent(new Event('input')); })()",
    )
    .await;
    let filtered = b
        .eval("document.querySelectorAll('#apps tbody tr').length")
        .await;
    // svc-0900 .. svc-0999.
    assert_eq!(filtered, json!(100), "the filter narrows the table");
    let filtered_ms = b.eval("window.palisadeUi.renders.overview").await;
    // Sorting by app id, ascending: the first row is the smallest id.
    b.eval("[...document.querySelectorAll('#apps th')].find(t => t.textContent === 'App').click()")
        .await;
    let first = b
        .eval("document.querySelector('#apps tbody tr td.id').textContent")
        .await;
    assert_eq!(first, json!("/team00/svc-0920"));

    // Graph: every app and every flow (the heaviest setting), timed.
    b.goto(&format!("{base}#/graph")).await;
    b.wait_for(
        "the graph",
        "document.querySelector('svg#graph g.node')",
        Duration::from_secs(20),
    )
    .await;
    b.eval(
        "(() => { const s = document.querySelector('main select'); s.value = '0'; \
          s.dispatchEvent(new Event('change')); \
          const c = [...document.querySelectorAll('main input[type=checkbox]')][1]; \
          c.checked = true; c.dispatchEvent(new Event('change')); })()",
    )
    .await;
    let nodes = b
        .eval("document.querySelector('svg#graph').dataset.nodes")
        .await;
    assert_eq!(nodes, json!("1001"), "1,000 apps and the outside world");
    let graph_ms = b.eval("window.palisadeUi.renders.graph").await;
    let denied = b
        .eval(
            "[...document.querySelectorAll('svg#graph g.edge[data-verdict=deny] title')] \
             .map(t => t.textContent).join('\\n')",
        )
        .await;
    assert!(
        denied
            .as_str()
            .unwrap()
            .contains("/dev/tool → /shop/web: 3 denied"),
        "denied flows are drawn as their own edges: {denied}"
    );
    let label = b
        .eval("[...document.querySelectorAll('svg#graph g.edge-label[data-verdict=deny] text')].map(t => t.textContent).join('|')")
        .await;
    assert!(label.as_str().unwrap().contains("denied 3"), "{label}");
    assert_nothing_injected(&mut b, "graph").await;
    b.eval("document.querySelector('button[title=\"fit the window\"]').click()")
        .await;
    b.screenshot(&shots.join("fixture-graph.png")).await;
    // The default view (top 200 flows) is what most visits render.
    b.eval(
        "(() => { const s = document.querySelector('main select'); s.value = '200'; \
          s.dispatchEvent(new Event('change')); })()",
    )
    .await;
    let graph_top_ms = b.eval("window.palisadeUi.renders.graph").await;
    // A click on an app's box opens its page.
    b.eval(
        "[...document.querySelectorAll('svg#graph g.node')] \
         .find(g => g.querySelector('title').textContent === '/shop/web') \
         .dispatchEvent(new MouseEvent('click', {bubbles: true}))",
    )
    .await;
    b.wait_for(
        "/shop/web's page after a click on its box",
        "location.hash === '#/app/%2Fshop%2Fweb' && document.getElementById('app-id') && \
         document.getElementById('app-id').textContent === '/shop/web'",
        Duration::from_secs(10),
    )
    .await;

    // The app page of the evil id: heading, sources and errors as text.
    b.goto(&format!(
        "{base}#/app/{}",
        EVIL.bytes()
            .map(|c| if c.is_ascii_alphanumeric() {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            })
            .collect::<String>()
    ))
    .await;
    b.wait_for(
        "the app page's timing table",
        "document.querySelector('#timing tr[data-step=response]')",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        b.eval("document.getElementById('app-id').textContent")
            .await,
        json!(EVIL)
    );
    let page = b.eval("document.querySelector('main').innerText").await;
    let page = page.as_str().unwrap();
    for want in [
        "Client RTT",
        "Backend connect",
        "App response",
        "Data transfer",
        "3.00 ms",
        "draining",
    ] {
        assert!(page.contains(want), "the app page shows {want}: {page}");
    }
    assert_nothing_injected(&mut b, "app page").await;
    let app_ms = b.eval("window.palisadeUi.renders.app").await;

    // Nodes: the unreachable one is flagged.
    b.goto(&format!("{base}#/nodes")).await;
    b.wait_for(
        "the unreachable node flagged",
        "document.querySelector('#nodes tr[data-reachable=false]') && \
         document.querySelector('#nodes tr[data-reachable=false]').innerText.includes('connection refused')",
        Duration::from_secs(20),
    )
    .await;

    // Policy: the errors (as text) and the proposed policy, verbatim.
    b.goto(&format!("{base}#/policy")).await;
    let proposed = b
        .wait_for(
            "the proposed policy",
            "document.getElementById('proposed').textContent",
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(proposed, json!(PROPOSED));
    // Copy: to the clipboard, or (no permission in a headless browser)
    // selected for Ctrl-C; either way the page says which.
    b.eval("document.getElementById('copy-proposed').click()")
        .await;
    b.wait_for(
        "the copy button's confirmation",
        "document.querySelector('#copy-proposed ~ span').textContent",
        Duration::from_secs(5),
    )
    .await;
    let errors = b
        .eval("document.getElementById('policy-errors').textContent")
        .await;
    assert!(errors.as_str().unwrap().contains(EVIL), "{errors}");
    assert_nothing_injected(&mut b, "policy").await;

    // A failing API: a banner saying what failed, the last data kept; gone on recovery.
    b.goto(&format!("{base}?refresh=1#/")).await;
    b.wait_for(
        "the apps table",
        "document.querySelectorAll('#apps tbody tr').length === 1000",
        Duration::from_secs(20),
    )
    .await;
    fixture.failing.store(true, Ordering::Relaxed);
    let banner = b
        .wait_for(
            "the API failure banner",
            "!document.getElementById('banner').hidden && document.getElementById('banner').textContent",
            Duration::from_secs(10),
        )
        .await;
    let banner = banner.as_str().unwrap();
    assert!(
        banner.contains("/v1/apps")
            && banner.contains("500")
            && banner.contains("the collector is down"),
        "the banner names the request and the error: {banner}"
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#apps tbody tr').length")
            .await,
        json!(1000),
        "the last data stays on screen"
    );
    b.screenshot(&shots.join("fixture-api-down.png")).await;
    fixture.failing.store(false, Ordering::Relaxed);
    b.wait_for(
        "the banner gone after recovery",
        "document.getElementById('banner').hidden && document.body.dataset.state === 'ok'",
        Duration::from_secs(10),
    )
    .await;

    // The page's Content-Security-Policy is in force (and the UI's own
    // check of it works): an inline script or style is refused and reported.
    b.eval(
        "(() => { const s = document.createElement('script'); \
          s.textContent = 'document.body.dataset.pwned = 1'; document.body.appendChild(s); })()",
    )
    .await;
    let violation = b
        .wait_for(
            "the policy refusing an inline script",
            "window.palisadeUi.violations.join(' ')",
            Duration::from_secs(5),
        )
        .await;
    assert!(
        violation.as_str().unwrap().contains("script-src"),
        "{violation}"
    );
    assert_eq!(
        b.eval("document.body.dataset.pwned || null").await,
        Value::Null
    );

    let ms = |v: &Value| v.as_f64().unwrap();
    println!(
        "web UI with {APPS} apps: overview table {:.1} ms (filtered to 100: {:.1} ms), \
         graph of every app and flow {:.1} ms, graph of the top 200 flows {:.1} ms, \
         app page {:.1} ms; screenshots in {}",
        ms(&overview_ms),
        ms(&filtered_ms),
        ms(&graph_ms),
        ms(&graph_top_ms),
        ms(&app_ms),
        shots.display()
    );
    // Budgets far above what a laptop needs (tens of ms), so a loaded CI
    // machine passes, yet a layout gone quadratic fails.
    assert!(
        ms(&overview_ms) < 2000.0,
        "overview render took {overview_ms} ms"
    );
    assert!(ms(&graph_ms) < 4000.0, "graph render took {graph_ms} ms");
    assert!(
        ms(&graph_top_ms) < 2000.0,
        "graph render took {graph_top_ms} ms"
    );
}

// ------------------------------------------------------- a running mesh

// Nodes 127.0.0.181-182, tasks 127.0.181.x, service ports 26300-26302:
// addresses and ports no other test binds, so the suites run in parallel.
const NODE_A: &str = "127.0.0.181";
const NODE_B: &str = "127.0.0.182";
const WEB_PORT: u16 = 26300;

const MESH_POLICY: &str = "apiVersion: palisade/v1
kind: Policy
defaults:
  action: deny
apps:
  /ui/web:
    protocol: http
    allow:
      - from: /ui/edge
  /ui/edge:
    protocol: http
    allow:
      - from_cidr: 127.0.0.0/8
  /ui/tool:
    protocol: http
    allow:
      - from_cidr: 127.0.0.0/8
";

fn app_def(id: &str, instances: u32, service_port: u16) -> Value {
    json!({
        "id": id, "instances": instances, "cpus": 0.1, "mem": 32, "labels": {}, "healthChecks": [],
        "networks": [{"mode": "container", "name": "sim"}],
        "container": {"type": "DOCKER", "docker": {"image": "ui/backend:1"},
            "portMappings": [{"containerPort": 8080, "servicePort": service_port, "protocol": "tcp"}]}
    })
}

/// One request through meshd with curl, posing as the task at `source`;
/// the HTTP status (0 when curl got none).
fn curl_from(source: &str, url: &str) -> u16 {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .args(["--interface", source, url])
        .output()
        .expect("running curl (the tests need it on PATH)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

async fn api_json(api: SocketAddr, path: &str) -> Result<Value, String> {
    let r = reqwest::get(format!("http://{api}{path}"))
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{path}: {status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{path}: {e}: {body}"))
}

/// Traffic until dropped: every 100 ms one allowed request (/ui/edge ->
/// /ui/web) and every fifth time a denied one (/ui/tool -> /ui/web), from
/// the tasks' own addresses; bounded at 3,000 rounds.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, usize)>>,
}

impl Traffic {
    fn start(edge: String, tool: String) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let url = format!("http://{NODE_A}:{WEB_PORT}/");
        let thread = std::thread::spawn(move || {
            let (mut allowed, mut denied) = (0, 0);
            for round in 0..3000 {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let code = curl_from(&edge, &url);
                assert_eq!(code, 200, "/ui/edge -> /ui/web is allowed");
                allowed += 1;
                if round % 5 == 0 {
                    let code = curl_from(&tool, &url);
                    assert_eq!(code, 403, "/ui/tool -> /ui/web is denied");
                    denied += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (allowed, denied)
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().unwrap().join() {
            Ok(counts) => counts,
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_shows_a_running_mesh_with_its_denied_flow_and_timing() {
    use palisade_tests::backends;
    use palisade_tests::harness::{eventually, free_port, wait_generation, Proc, Scratch};
    use palisade_tests::marathon_sim::MarathonSim;

    let dir = Scratch::new("web-ui-mesh");
    dir.write("policies/ui.yaml", MESH_POLICY);
    std::fs::create_dir_all(dir.path("nodes")).unwrap();
    let sim = MarathonSim::start("127.0.0.1:0", &[NODE_A, NODE_B], [127, 0, 181]).await;
    for (id, instances, port) in [
        ("/ui/web", 2, WEB_PORT),
        ("/ui/edge", 1, WEB_PORT + 1),
        ("/ui/tool", 1, WEB_PORT + 2),
    ] {
        assert_eq!(sim.post_app(&app_def(id, instances, port)).await, 201);
    }
    let mut backends = Vec::new();
    for app in ["/ui/web", "/ui/edge", "/ui/tool"] {
        for (task, _, ip) in sim.tasks(app) {
            backends.push(backends::http(&format!("{ip}:8080"), &task).await);
        }
    }
    let edge_ip = sim.tasks("/ui/edge")[0].2.clone();
    let tool_ip = sim.tasks("/ui/tool")[0].2.clone();

    // configsrv follows the simulator and scrapes every meshd each second;
    // both meshd bind their admin endpoint on their node's address, on the
    // one port configsrv scrapes.
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin_port = free_port().to_string();
    let (policies, out) = (dir.path("policies"), dir.path("nodes"));
    let _configsrv = Proc::spawn(
        "configsrv",
        &[
            "serve",
            "--marathon",
            &sim.url,
            "--mesos",
            &sim.url,
            "--policies",
            policies.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--listen",
            &api.to_string(),
            "--scrape-interval",
            "1s",
            "--meshd-admin-port",
            &admin_port,
        ],
        &dir.0,
    );
    let config_url = format!("http://{api}");
    let mut meshds = Vec::new();
    for node in [NODE_A, NODE_B] {
        let admin: SocketAddr = format!("{node}:{admin_port}").parse().unwrap();
        let cache = dir.path(&format!("cache-{node}"));
        let proc = Proc::spawn(
            "meshd",
            &[
                "run",
                "--node",
                node,
                "--config-url",
                &config_url,
                "--cache-dir",
                cache.to_str().unwrap(),
                "--admin",
                &admin.to_string(),
            ],
            &dir.0,
        );
        wait_generation(admin, 1).await;
        meshds.push(proc);
    }

    // configsrv has scraped both nodes before the first request, so the
    // window holds every first: meshd's first upstream connects (later
    // requests reuse them) land between two scrapes and are counted.
    eventually(
        "both nodes scraped and converged",
        Duration::from_secs(30),
        || async move {
            let v = api_json(api, "/v1/nodes").await?;
            let list = v["nodes"].as_array().cloned().unwrap_or_default();
            let ok = list.len() == 2
                && list
                    .iter()
                    .all(|n| n["converged"] == true && n["reachable"] == true);
            if ok {
                Ok(())
            } else {
                Err(v.to_string())
            }
        },
    )
    .await;
    let traffic = Traffic::start(edge_ip.clone(), tool_ip.clone());
    // The API has figures once two scrapes bracket some traffic.
    let detail = eventually(
        "configsrv's API to show /ui/web's rate and the denied flow",
        Duration::from_secs(60),
        || async move {
            let app = api_json(api, "/v1/apps/ui/web").await?;
            let flows = api_json(api, "/v1/flows").await?;
            let denied = flows["flows"].as_array().is_some_and(|l| {
                l.iter().any(|f| {
                    f["source"] == "/ui/tool"
                        && f["destination"] == "/ui/web"
                        && f["denied"].as_f64().is_some_and(|n| n > 0.0)
                })
            });
            if app["rate"].as_f64().is_some_and(|r| r > 0.0) && denied {
                Ok(app)
            } else {
                Err(format!("app: {app}\nflows: {flows}"))
            }
        },
    )
    .await;

    let shots = screenshot_dir();
    let base = format!("http://{api}/?refresh=1");
    let mut b = Browser::launch("web-ui-mesh").await;

    // The graph: the denied flow drawn apart, labelled, and listed.
    b.goto(&format!("{base}#/graph")).await;
    let denied_edge = b
        .wait_for(
            "the denied flow /ui/tool -> /ui/web in the graph",
            "[...document.querySelectorAll('svg#graph g.edge[data-verdict=deny] title')] \
             .map(t => t.textContent).find(t => t.startsWith('/ui/tool → /ui/web'))",
            Duration::from_secs(20),
        )
        .await;
    let label = b
        .eval("[...document.querySelectorAll('svg#graph g.edge-label[data-verdict=deny] text')].map(t => t.textContent).join('|')")
        .await;
    assert!(
        label.as_str().unwrap().contains("denied"),
        "the denied edge carries a visible label: {label}"
    );
    let allowed_edge = b
        .eval(
            "[...document.querySelectorAll('svg#graph g.edge[data-verdict=allow] title')] \
             .map(t => t.textContent).find(t => t.startsWith('/ui/edge → /ui/web'))",
        )
        .await;
    assert!(
        allowed_edge.is_string(),
        "the allowed flow is drawn too: {allowed_edge}"
    );
    b.screenshot(&shots.join("mesh-graph.png")).await;

    // The app page: a rate above zero and the timing breakdown.
    b.goto(&format!("{base}#/app/%2Fui%2Fweb")).await;
    let rate = b
        .wait_for(
            "a non-zero rate on /ui/web's page",
            "(() => { const v = document.querySelector('#app-figures [data-figure=rate] .v'); \
              return v && v.textContent !== '0' && v.textContent !== '—' ? v.textContent : null; })()",
            Duration::from_secs(20),
        )
        .await;
    let steps = b
        .eval(
            "Object.fromEntries([...document.querySelectorAll('#timing tbody tr')] \
             .map(tr => [tr.dataset.step, tr.children[1].textContent]))",
        )
        .await;
    for step in ["client_rtt", "connect", "response", "transfer", "total"] {
        let shown = steps[step]
            .as_str()
            .unwrap_or_else(|| panic!("no {step} row: {steps}"));
        // Whatever the API measured, the page shows; `—` only for what it did not.
        let measured = detail["timing"][step]["p50"].is_number()
            || (step == "total" && detail["latency"]["p50"].is_number());
        assert_eq!(
            shown != "—",
            measured,
            "{step}: the page shows {shown:?}, the API said {}",
            detail["timing"][step]
        );
    }
    // meshd measures every part of an HTTP request (connect: the pool's
    // first connections, made after the first scrape above). Each part's
    // histogram is required where meshd exports it.
    let admin_a: SocketAddr = format!("{NODE_A}:{admin_port}").parse().unwrap();
    let (_, metrics) = palisade_tests::harness::admin_get(admin_a, "/metrics")
        .await
        .unwrap();
    let mut required = vec!["total"];
    for (step, histogram) in [
        ("client_rtt", "palisade_meshd_client_rtt_seconds"),
        ("connect", "palisade_meshd_upstream_connect_seconds"),
        ("response", "palisade_meshd_upstream_ttfb_seconds"),
        ("transfer", "palisade_meshd_transfer_seconds"),
    ] {
        if metrics.contains(histogram) {
            required.push(step);
        }
    }
    for step in &required {
        assert_ne!(
            steps[step],
            json!("—"),
            "{step} is measured for HTTP: {steps}"
        );
    }
    let breakdown = b
        .eval("document.querySelectorAll('.breakdown span').length")
        .await;
    assert!(
        breakdown.as_u64().unwrap() > 0,
        "the p50 breakdown bar is drawn"
    );
    // Over time: rate, latency, the p50 breakdown and errors, charted from
    // `series` once a few scrapes with traffic are in the window.
    b.wait_for(
        "the app page's four charts drawn from the series",
        "document.querySelectorAll('figure.chart:not(.empty) svg path.line, \
         figure.chart:not(.empty) svg polygon.area').length >= 8 && \
         document.querySelectorAll('figure.chart.empty').length === 0",
        Duration::from_secs(30),
    )
    .await;
    b.screenshot(&shots.join("mesh-app.png")).await;

    // Overview and nodes: the apps listed, both nodes converged and reachable.
    b.goto(&format!("{base}#/")).await;
    b.wait_for(
        "/ui/web in the apps table",
        "[...document.querySelectorAll('#apps td.id a')].some(a => a.textContent === '/ui/web')",
        Duration::from_secs(20),
    )
    .await;
    b.screenshot(&shots.join("mesh-overview.png")).await;
    b.goto(&format!("{base}#/nodes")).await;
    b.wait_for(
        "both nodes converged and reachable",
        "document.querySelectorAll('#nodes tr[data-converged=true][data-reachable=true]').length === 2",
        Duration::from_secs(20),
    )
    .await;
    b.screenshot(&shots.join("mesh-nodes.png")).await;
    b.goto(&format!("{base}#/policy")).await;
    b.wait_for(
        "the proposed policy naming /ui/edge",
        "document.getElementById('proposed').textContent.includes('/ui/edge')",
        Duration::from_secs(20),
    )
    .await;
    b.screenshot(&shots.join("mesh-policy.png")).await;
    let trouble = b
        .eval("JSON.stringify([window.palisadeUi.errors, window.palisadeUi.violations])")
        .await;
    assert_eq!(
        trouble.as_str().unwrap(),
        "[[],[]]",
        "script errors and policy violations on the real API's answers"
    );

    let (allowed, denied) = traffic.finish();
    println!(
        "web UI against a running mesh: {allowed} allowed and {denied} denied requests; \
         graph edge `{}`, /ui/web rate {rate} req/s, timing p50 {steps} (required: {required:?}); \
         screenshots in {}",
        denied_edge.as_str().unwrap_or_default(),
        shots.display()
    );
    drop(backends);
}
