//! The simulator's record of app reads and writes and its Mesos resources,
//! for the autoscaler's tests: `GET /v2/apps/<id>` calls are counted, every
//! `PUT /v2/apps/<id>` is kept with its query and
//! body (so a test can assert `instances` and that `force` never came), the
//! next N writes can be made to answer 409 (a deployment holds the app) or
//! 401/403, app writes can require a credential of their own (a token that
//! may read but not write gets 403, none 401), and `/master/state` lists each agent's unreserved and used
//! resources from the apps' `cpus` and `mem`.

use super::MarathonSim;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One `PUT /v2/apps/<id>` as the simulator received it.
#[derive(Debug, Clone)]
pub struct Put {
    /// The app id, e.g. `/as/web`.
    pub app: String,
    /// The raw query string (`force=true` must never be there).
    pub query: Option<String>,
    /// The JSON body.
    pub body: Value,
    /// What the simulator answered.
    pub status: u16,
}

/// Writes seen and faults armed.
#[derive(Debug, Default)]
pub struct Writes {
    puts: Vec<Put>,
    /// Answer the next writes with this status, this many times.
    refuse: Option<(u16, usize)>,
    /// Per agent: (cpus, mem) it offers unreserved.
    capacity: BTreeMap<String, (f64, f64)>,
    /// `GET /v2/apps/<id>` calls, by app id.
    reads: BTreeMap<String, usize>,
    /// The `Authorization` header app writes need, when set.
    writer: Option<String>,
    /// App writes refused for their credentials: (method, path, status).
    unauthorized: Vec<(String, String, u16)>,
    /// `GET /master/state` calls (Mesos reads).
    mesos_reads: usize,
}

/// The key of an app definition that marks a deployment held in progress
/// (the simulator's own; Marathon has no such field, and it is not shown).
const HELD: &str = "_simDeploymentHeld";

/// The app's running deployments, as `GET /v2/apps/<id>` lists them.
pub(super) fn deployments(def: &Value) -> Value {
    if def[HELD].as_bool() == Some(true) {
        json!([{"id": "sim-held-deployment"}])
    } else {
        json!([])
    }
}

/// What an agent offers when the test set nothing: plenty.
const DEFAULT_CAPACITY: (f64, f64) = (64.0, 262_144.0);

impl MarathonSim {
    /// Every `PUT /v2/apps/...` received so far, oldest first.
    pub fn puts(&self) -> Vec<Put> {
        self.writes.lock().unwrap().puts.clone()
    }

    /// How many times `GET /v2/apps/<id>` was called for `app`.
    pub fn app_reads(&self, app: &str) -> usize {
        self.writes
            .lock()
            .unwrap()
            .reads
            .get(app)
            .copied()
            .unwrap_or(0)
    }

    /// Shows a deployment of `app` in progress in its JSON (or none again).
    pub fn hold_deployment(&self, app: &str, held: bool) {
        if let Some(a) = self.inner.lock().unwrap().apps.get_mut(app) {
            a.def[HELD] = held.into();
        }
    }

    /// Answers the next `n` app writes (PUT) with `status` (409, 401, 403...).
    pub fn refuse_writes(&self, status: u16, n: usize) {
        self.writes.lock().unwrap().refuse = Some((status, n));
    }

    /// Requires this exact `Authorization` header on app writes (`POST
    /// /v2/apps`, `PUT` and `DELETE /v2/apps/...`): 401 without one, 403
    /// with another, as Marathon under DC/OS answers a token that may read
    /// but not change apps. `None`: writes are open again.
    pub fn require_write_authorization(&self, value: Option<&str>) {
        self.writes.lock().unwrap().writer = value.map(str::to_owned);
    }

    /// How many times Mesos' `/master/state` was read.
    pub fn mesos_reads(&self) -> usize {
        self.writes.lock().unwrap().mesos_reads
    }

    /// App writes refused for their credentials so far: (method, path, status).
    pub fn unauthorized_writes(&self) -> Vec<(String, String, u16)> {
        self.writes.lock().unwrap().unauthorized.clone()
    }

    /// The unreserved `cpus` and `mem` (MiB) an agent offers in `/master/state`.
    pub fn set_agent_capacity(&self, agent: &str, cpus: f64, mem: f64) {
        self.writes
            .lock()
            .unwrap()
            .capacity
            .insert(agent.to_owned(), (cpus, mem));
    }

    /// An agent's (unreserved, used) resources: what the test gave it, and
    /// the `cpus` and `mem` of the running tasks placed on it.
    pub(super) fn agent_resources(&self, agent: &str) -> (Value, Value) {
        let (cpus, mem) = self
            .writes
            .lock()
            .unwrap()
            .capacity
            .get(agent)
            .copied()
            .unwrap_or(DEFAULT_CAPACITY);
        let (mut used_cpus, mut used_mem) = (0.0, 0.0);
        for app in self.inner.lock().unwrap().apps.values() {
            let (c, m) = app_resources(&app.def);
            let n = app.tasks.iter().filter(|t| t.host == agent).count() as f64;
            used_cpus += c * n;
            used_mem += m * n;
        }
        (
            json!({"cpus": cpus, "mem": mem, "disk": 10000.0, "gpus": 0.0, "ports": "[31000-32000]"}),
            json!({"cpus": used_cpus, "mem": used_mem, "disk": 0.0, "gpus": 0.0}),
        )
    }
}

/// An app's `cpus` and `mem`, with Marathon's defaults (1 cpu, 128 MiB).
pub(super) fn app_resources(def: &Value) -> (f64, f64) {
    (
        def["cpus"].as_f64().unwrap_or(1.0),
        def["mem"].as_f64().unwrap_or(128.0),
    )
}

/// The layer in front of the simulator's routes: records app writes and
/// answers armed refusals before the write happens.
pub(super) async fn record_writes(
    State(writes): State<Arc<Mutex<Writes>>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    if path == "/master/state" {
        writes.lock().unwrap().mesos_reads += 1;
    }
    let write = matches!(*req.method(), Method::POST | Method::PUT | Method::DELETE);
    if write && (path == "/v2/apps" || path.starts_with("/v2/apps/")) {
        let mut w = writes.lock().unwrap();
        if let Some(want) = w.writer.clone() {
            let got = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            let status = match got {
                Some(g) if g == want => None,
                Some(_) => Some(StatusCode::FORBIDDEN),
                None => Some(StatusCode::UNAUTHORIZED),
            };
            if let Some(status) = status {
                w.unauthorized
                    .push((req.method().to_string(), path, status.as_u16()));
                let message = if status == StatusCode::FORBIDDEN {
                    "Access Denied"
                } else {
                    "Unauthorized"
                };
                return (status, Json(json!({ "message": message }))).into_response();
            }
        }
    }
    if let Some(app) = path
        .strip_prefix("/v2/apps/")
        .filter(|_| req.method() == Method::GET)
    {
        let app = format!("/{}", app.trim_matches('/'));
        *writes.lock().unwrap().reads.entry(app).or_default() += 1;
    }
    let Some(app) = path
        .strip_prefix("/v2/apps/")
        .filter(|_| req.method() == Method::PUT)
    else {
        return next.run(req).await;
    };
    let app = format!("/{}", app.trim_matches('/'));
    let query = req.uri().query().map(str::to_owned);
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let refusal = {
        let mut w = writes.lock().unwrap();
        match &mut w.refuse {
            Some((status, n)) if *n > 0 => {
                *n -= 1;
                Some(*status)
            }
            _ => None,
        }
    };
    let resp = match refusal {
        Some(409) => (StatusCode::CONFLICT, Json(json!({"message": "App is locked by one or more deployments.", "deployments": [{"id": "sim-held"}]}))).into_response(),
        Some(s) => (
            StatusCode::from_u16(s).unwrap_or(StatusCode::FORBIDDEN),
            Json(json!({"message": "Unauthorized access"})),
        )
            .into_response(),
        None => next.run(Request::from_parts(parts, Body::from(bytes))).await,
    };
    writes.lock().unwrap().puts.push(Put {
        app,
        query,
        body: json,
        status: resp.status().as_u16(),
    });
    resp
}
