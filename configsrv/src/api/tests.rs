#![allow(clippy::unwrap_used)]
use super::*;

fn with(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, value.parse().unwrap());
    h
}

#[test]
fn only_the_exact_bearer_token_matches() {
    let want = Some("tok-123");
    assert!(bearer_matches(want, &with("Bearer tok-123")));
    for wrong in [
        "Bearer tok-12",
        "Bearer tok-1234",
        "Bearer TOK-123",
        "tok-123",
        "Basic tok-123",
        "Bearer ",
    ] {
        assert!(!bearer_matches(want, &with(wrong)), "{wrong}");
    }
    assert!(!bearer_matches(want, &HeaderMap::new()));
    assert!(!bearer_matches(None, &with("Bearer ")));
    assert!(!bearer_matches(None, &with("Bearer tok-123")));
}

mod routes {
    #![allow(clippy::unwrap_used)]
    use super::super::*;
    use crate::observe::window::Window;
    use crate::reconcile::view::{AppView, View};
    use std::collections::BTreeSet;
    use utoipa::OpenApi;

    const TOKEN: &str = "t0ken";

    /// An API over a view with one app and one node, served on loopback.
    async fn serve() -> String {
        let store = Arc::new(NodeStore::default());
        // In segments, as the publisher stores a node file: the answer joins them.
        let text = vec!["node: ".into(), bytes::Bytes::new(), "n1\n".into()];
        store.put("n1".parse().unwrap(), text, 7, "sha256:ab");
        let view = View {
            apps: vec![AppView {
                id: "/shop/web".parse().unwrap(),
                instances: 1,
                healthy: 1,
                protocol: schemas::Protocol::Http,
                service_ports: vec![10000],
                backends: vec![],
                addresses: vec![],
            }],
            ..View::default()
        };
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(view));
        // The sender may go: receivers keep the last value.
        let state = ApiState {
            store,
            prometheus: metrics_exporter_prometheus::PrometheusBuilder::new()
                .build_recorder()
                .handle(),
            token: Some(TOKEN.into()),
            node_token: None,
            git_kick: Arc::default(),
            followers: Arc::default(),
            new_follower: Arc::default(),
            ensure_meshd: crate::ensure_meshd::Shared::default(),
            decisions: Arc::default(),
            view: rx,
            observed: Arc::new(std::sync::Mutex::new(Window::new(
                Duration::from_secs(60),
                Duration::from_secs(1),
            ))),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        url
    }

    /// (METHOD, path) of every route the OpenAPI document lists.
    fn documented() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(openapi::ApiDoc::openapi()).unwrap();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    /// (METHOD, path) of every `## \`METHOD /path\`` heading of docs/api.md.
    fn in_api_md() -> BTreeSet<(String, String)> {
        let md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md"))
            .unwrap();
        md.lines()
            .filter_map(|l| l.strip_prefix("## `"))
            .filter_map(|l| l.split('`').next())
            .filter_map(|l| l.split_once(' '))
            .map(|(m, p)| {
                let p = p.replace("<app id>", "{id}").replace("<node>", "{node}");
                (m.to_owned(), p)
            })
            .collect()
    }

    fn concrete(path: &str) -> String {
        path.replace("{id}", "shop/web").replace("{node}", "n1")
    }

    #[tokio::test]
    async fn a_node_config_stored_in_segments_is_answered_whole_with_its_length() {
        let url = serve().await;
        let resp = reqwest::get(format!("{url}/v1/nodes/n1/config"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-length"], "9");
        assert_eq!(resp.headers()["etag"], "\"7-ab\"");
        assert_eq!(resp.text().await.unwrap(), "node: n1\n");
    }

    #[tokio::test]
    async fn the_openapi_document_the_router_and_api_md_list_the_same_routes() {
        let url = serve().await;
        let documented = documented();
        assert_eq!(documented, in_api_md(), "openapi.json vs docs/api.md");
        let client = reqwest::Client::new();
        for (method, path) in &documented {
            let req = match method.as_str() {
                "GET" => client.get(format!("{url}{}", concrete(path))),
                "POST" => client
                    .post(format!("{url}{}", concrete(path)))
                    .bearer_auth(TOKEN)
                    .json(&serde_json::json!({"files": []})),
                other => panic!("unexpected method {other} for {path}"),
            };
            let status = req.send().await.unwrap().status().as_u16();
            assert!(
                status != 404 && status != 405,
                "{method} {path}: documented but answers {status}"
            );
        }
        // The document is served, and matches.
        let served: serde_json::Value = client
            .get(format!("{url}/v1/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        assert_eq!(served["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        // The answers' shapes come from the handlers' types.
        for schema in [
            "AppList",
            "AppDetail",
            "NodeList",
            "NodeInfo",
            "FlowList",
            "PolicyInForce",
            "ImpactRequest",
            "ImpactReport",
            "ErrorBody",
            "Decision",
        ] {
            assert!(
                served["components"]["schemas"][schema].is_object(),
                "{schema} missing from the document"
            );
        }
        let detail = &served["components"]["schemas"]["AppDetail"];
        assert!(detail.to_string().contains("timing"), "{detail}");
        // Candidate routes people might try: each answers only if documented.
        for (method, path) in [
            ("GET", "/v1/autoscale/decisions"),
            ("GET", "/v1/apps/"),
            ("POST", "/v1/apps"),
            ("GET", "/v1/policy/impact"),
            ("POST", "/v1/policy/proposed"),
            ("GET", "/v1/hooks/git"),
            ("GET", "/v1"),
            ("GET", "/v1/flows/x"),
        ] {
            let req = client.request(method.parse().unwrap(), format!("{url}{path}"));
            let status = req.send().await.unwrap().status().as_u16();
            let listed = documented.contains(&(method.to_owned(), path.to_owned()));
            assert_eq!(
                listed,
                status != 404 && status != 405,
                "{method} {path} answers {status}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_apps_and_nodes_are_404_json_naming_them_and_writes_need_the_token() {
        let url = serve().await;
        let client = reqwest::Client::new();
        for (path, named) in [
            ("/v1/apps/no/such", "/no/such"),
            ("/v1/nodes/ghost", "ghost"),
            ("/v1/nodes/ghost/config", "ghost"),
        ] {
            let resp = client.get(format!("{url}{path}")).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), 404, "{path}");
            let body: serde_json::Value = resp.json().await.unwrap();
            assert!(
                body["error"].as_str().unwrap().contains(named),
                "{path}: {body}"
            );
        }
        let app: serde_json::Value = client
            .get(format!("{url}/v1/apps/shop/web"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(app["id"], "/shop/web");
        assert!(app["timing"]["client_rtt"]["p50"].is_null(), "{app}");
        let impact = |token: Option<&'static str>, body: serde_json::Value| {
            let mut req = client.post(format!("{url}/v1/policy/impact")).json(&body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send()
        };
        let empty = serde_json::json!({"files": []});
        for token in [None, Some("wrong")] {
            let resp = impact(token, empty.clone()).await.unwrap();
            assert_eq!(resp.status().as_u16(), 401);
            let body: serde_json::Value = resp.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().contains("Bearer"));
        }
        let bad = serde_json::json!({"files": [{"name": "shop.yaml", "text": "apiVersion: palisade/v1\nkind: Policy\napps:\n  /shop/web:\n    alow: []\n"}]});
        let resp = impact(Some(TOKEN), bad).await.unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let body: serde_json::Value = resp.json().await.unwrap();
        let problem = body["problems"][0].as_str().unwrap_or_default().to_owned();
        assert!(problem.starts_with("shop.yaml:5:"), "{body}");
        let resp = impact(Some(TOKEN), serde_json::json!({"nope": 1}))
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let ok: serde_json::Value = impact(Some(TOKEN), empty)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ok["newly_denied"], 0, "{ok}");
    }
}
