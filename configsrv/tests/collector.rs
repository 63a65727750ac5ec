//! The collector against fake meshd admin endpoints on 127.0.0.x: one
//! good, one that hangs, one that answers garbage and one that is gone.
//! The good node is scraped on every round while the hanging one is still
//! pending; each bad one is flagged with why.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::routing::get;
use axum::Router;
use configsrv::observe::scrape::{self, ScrapeOptions};
use configsrv::observe::window::Window;
use configsrv::publish::http::NodeStore;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GOOD: &str = "127.0.0.61";
const HANG: &str = "127.0.0.62";
const GARBAGE: &str = "127.0.0.63";
const GONE: &str = "127.0.0.64";

const METRICS: &str = "palisade_meshd_requests_total{dst_app=\"/a\",code=\"2xx\"} 5\n\
palisade_meshd_connections_total{src_app=\"/b\",dst_app=\"/a\",verdict=\"allow\"} 5\n";

async fn serve(addr: String, app: Router) {
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_garbage_or_gone_meshd_is_flagged_and_never_delays_the_others() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    serve(
        format!("{GOOD}:{port}"),
        Router::new()
            .route("/metrics", get(|| async { METRICS }))
            .route(
                "/status",
                get(|| async { format!("{{\"node\":\"{GOOD}\",\"generation\":3}}") }),
            ),
    )
    .await;
    serve(
        format!("{HANG}:{port}"),
        Router::new()
            .route("/metrics", get(std::future::pending::<String>))
            .route("/status", get(std::future::pending::<String>)),
    )
    .await;
    serve(
        format!("{GARBAGE}:{port}"),
        Router::new()
            .route(
                "/metrics",
                get(|| async { "<html><body>It works!</body></html>" }),
            )
            .route("/status", get(|| async { "{\"generation\": 1}" })),
    )
    .await;

    let store = Arc::new(NodeStore::default());
    for n in [GOOD, HANG, GARBAGE, GONE] {
        store.put(
            n.parse().unwrap(),
            vec![format!("node: {n}\n").into()],
            3,
            "sha256:00",
        );
    }
    let timeout = Duration::from_secs(3);
    let interval = Duration::from_millis(100);
    let observed = Arc::new(Mutex::new(Window::new(Duration::from_secs(60), interval)));
    let started = Instant::now();
    let opts = ScrapeOptions {
        interval,
        timeout,
        admin_port: port,
    };
    let collector = tokio::spawn(scrape::run(opts, store, Arc::clone(&observed)));

    // The good node gets round after round while the hanging one is still
    // pending (it cannot fail before `timeout`).
    loop {
        let points = observed
            .lock()
            .unwrap()
            .nodes
            .get(GOOD)
            .map_or(0, |n| n.points.len());
        if points >= 3 {
            break;
        }
        assert!(
            started.elapsed() < timeout - Duration::from_millis(500),
            "the good node was held up: {points} scrapes in {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    {
        let w = observed.lock().unwrap();
        let good = &w.nodes[GOOD];
        assert!(good.reachable && good.error.is_none());
        assert_eq!(good.status.as_ref().unwrap().applied, Some(3));
        assert_eq!(good.points.back().unwrap().sample.apps["/a"].requests, 5.0);
        let garbage = &w.nodes[GARBAGE];
        assert!(!garbage.reachable);
        let why = garbage.error.clone().unwrap();
        assert!(why.contains("line 1") && why.contains("/metrics"), "{why}");
        let gone = &w.nodes[GONE];
        assert!(!gone.reachable && gone.error.is_some());
        assert!(w.nodes[HANG].points.is_empty());
    }
    // After the timeout the hanging node is flagged too.
    let deadline = Instant::now() + timeout * 3;
    loop {
        let error = observed.lock().unwrap().nodes[HANG].error.clone();
        if let Some(e) = error {
            assert!(e.contains("no answer within"), "{e}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hanging node was never flagged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!observed.lock().unwrap().nodes[HANG].reachable);
    collector.abort();
}
