//! A Marathon simulator for tests and the demo: apps (GET/POST/PUT/DELETE),
//! tasks, `/v2/info`, `/v2/deployments`, and `/v2/events` emitting the real
//! event shapes. Tasks get their own addresses on 127.0.0.0/8 and run on the
//! simulated agents given at start. Tests can kill tasks (`TASK_KILLING`
//! then `TASK_KILLED`), fail health checks, and make the REST API misbehave.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

mod writes;
pub use writes::Put;

/// How the REST API misbehaves, for invariant tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Answers normally.
    None = 0,
    /// `GET /v2/apps` answers 500.
    ServerError = 1,
    /// `GET /v2/apps` never answers.
    Hang = 2,
    /// `GET /v2/apps` answers half a JSON document.
    Truncated = 3,
    /// `GET /v2/apps` answers an empty app list.
    Empty = 4,
}

#[derive(Debug, Clone)]
struct SimTask {
    id: String,
    host: String,
    ip: String,
    state: &'static str,
    healthy: bool,
}

#[derive(Debug, Clone)]
struct SimApp {
    def: Value,
    tasks: Vec<SimTask>,
}

#[derive(Debug)]
struct Inner {
    apps: BTreeMap<String, SimApp>,
    next_ip: u32,
    next_task: u32,
    next_host: usize,
    locked: bool,
}

/// A running simulator.
#[derive(Debug, Clone)]
pub struct MarathonSim {
    /// Its base URL.
    pub url: String,
    hosts: Arc<Vec<String>>,
    ip_base: [u8; 3],
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<(String, String)>,
    fault: Arc<AtomicU8>,
    agents: Arc<Mutex<Vec<String>>>,
    auth: Arc<Mutex<Option<String>>>,
    streams: Arc<std::sync::atomic::AtomicUsize>,
    muted: Arc<std::sync::atomic::AtomicBool>,
    mesos_down: Arc<std::sync::atomic::AtomicBool>,
    writes: Arc<Mutex<writes::Writes>>,
}

impl MarathonSim {
    /// Starts a simulator on `addr` whose agents are `hosts`; task addresses
    /// are `ip_base.N` (e.g. `[127, 0, 80]`).
    pub async fn start(addr: &str, hosts: &[&str], ip_base: [u8; 3]) -> MarathonSim {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let local: SocketAddr = listener.local_addr().unwrap();
        let sim = MarathonSim {
            url: format!("http://{local}"),
            hosts: Arc::new(hosts.iter().map(|h| h.to_string()).collect()),
            ip_base,
            inner: Arc::new(Mutex::new(Inner {
                apps: BTreeMap::new(),
                next_ip: 1,
                next_task: 1,
                next_host: 0,
                locked: false,
            })),
            events: broadcast::channel(1024).0,
            fault: Arc::new(AtomicU8::new(0)),
            agents: Arc::new(Mutex::new(hosts.iter().map(|h| h.to_string()).collect())),
            auth: Arc::new(Mutex::new(None)),
            streams: Arc::default(),
            muted: Arc::default(),
            mesos_down: Arc::default(),
            writes: Arc::default(),
        };
        let app = Router::new()
            .route("/v2/apps", get(list_apps).post(create_app))
            .route("/v2/apps/{*rest}", get(get_app).put(update_app).delete(delete_path))
            .route("/v2/tasks", get(list_tasks))
            .route("/v2/info", get(|| async { Json(json!({"name": "marathon", "version": "1.11.24", "frameworkId": "sim-0000", "leader": "127.0.0.1:8080", "http_config": {"http_port": 8080}})) }))
            .route("/v2/deployments", get(|| async { Json(json!([])) }))
            .route("/v2/events", get(events))
            .route("/master/state", get(mesos_state))
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&sim.writes),
                writes::record_writes,
            ))
            .with_state(sim.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        sim
    }

    /// The agents Mesos' `/master/state` lists (the simulator answers for Mesos too).
    pub fn set_agents(&self, agents: &[&str]) {
        *self.agents.lock().unwrap() = agents.iter().map(|a| a.to_string()).collect();
    }

    /// Makes Mesos' `/master/state` answer 500 (or answer again).
    pub fn set_mesos_down(&self, down: bool) {
        self.mesos_down.store(down, Ordering::Relaxed);
    }

    /// Requires this exact `Authorization` header on `/v2/apps` and
    /// `/v2/events` (401 otherwise), as a secured Marathon or DC/OS does.
    pub fn require_authorization(&self, value: Option<&str>) {
        *self.auth.lock().unwrap() = value.map(str::to_owned);
    }

    /// Event streams opened so far.
    pub fn streams_opened(&self) -> usize {
        self.streams.load(Ordering::Relaxed)
    }

    /// Makes new event streams send nothing at all, not even heartbeats.
    pub fn mute_streams(&self, muted: bool) {
        self.muted.store(muted, Ordering::Relaxed);
    }

    fn authorized(&self, headers: &axum::http::HeaderMap) -> bool {
        let want = self.auth.lock().unwrap().clone();
        want.is_none_or(|w| {
            headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(w.as_str())
        })
    }

    /// Makes `GET /v2/apps` misbehave (or behave again).
    pub fn set_fault(&self, fault: Fault) {
        self.fault.store(fault as u8, Ordering::Relaxed);
    }

    /// Holds every change as a running deployment: further changes get 409.
    pub fn lock_deployments(&self, locked: bool) {
        self.inner.lock().unwrap().locked = locked;
    }

    fn emit(&self, kind: &str, mut payload: Value) {
        payload["eventType"] = kind.into();
        payload["timestamp"] = "2026-11-25T05:00:00.000Z".into();
        let _ = self.events.send((kind.to_owned(), payload.to_string()));
    }

    fn task_json(app_id: &str, t: &SimTask, checks: usize) -> Value {
        json!({
            "id": t.id,
            "appId": app_id,
            "host": t.host,
            "ports": [],
            "servicePorts": [],
            "ipAddresses": [{"ipAddress": t.ip, "protocol": "IPv4"}],
            "state": t.state,
            "startedAt": "2026-11-25T05:00:00.000Z",
            "stagedAt": "2026-11-25T04:59:59.000Z",
            "version": "2026-11-25T04:59:58.000Z",
            "slaveId": "sim-S0",
            "healthCheckResults": if checks > 0 { json!([{"alive": t.healthy, "consecutiveFailures": if t.healthy {0} else {1}, "instanceId": t.id.replacen('.', ".marathon-", 1)}]) } else { json!([]) },
        })
    }

    fn app_json(app: &SimApp) -> Value {
        let id = app.def["id"].as_str().unwrap_or_default().to_owned();
        let checks = app.def["healthChecks"].as_array().map_or(0, Vec::len);
        let mut v = app.def.clone();
        let (cpus, mem) = writes::app_resources(&app.def);
        v["cpus"] = cpus.into();
        v["mem"] = mem.into();
        v["tasks"] = app
            .tasks
            .iter()
            .map(|t| Self::task_json(&id, t, checks))
            .collect();
        v["tasksRunning"] = app
            .tasks
            .iter()
            .filter(|t| t.state == "TASK_RUNNING")
            .count()
            .into();
        v["tasksHealthy"] = app.tasks.iter().filter(|t| t.healthy).count().into();
        v["deployments"] = writes::deployments(&app.def);
        if let Some(o) = v.as_object_mut() {
            o.remove("_simDeploymentHeld");
        }
        v
    }

    fn status_event(&self, app_id: &str, t: &SimTask) {
        self.emit(
            "status_update_event",
            json!({"slaveId": "sim-S0", "taskId": t.id, "taskStatus": t.state, "message": "", "appId": app_id,
                   "host": t.host, "ipAddresses": [{"ipAddress": t.ip, "protocol": "IPv4"}], "ports": [],
                   "version": "2026-11-25T04:59:58.000Z"}),
        );
    }

    /// Starts `n` more tasks of `app_id`; returns their (id, host, address).
    fn launch(&self, inner: &mut Inner, app_id: &str, n: usize) -> Vec<SimTask> {
        let mut started = Vec::new();
        for _ in 0..n {
            let host = self.hosts[inner.next_host % self.hosts.len()].clone();
            inner.next_host += 1;
            let ip = task_ip(self.ip_base, inner.next_ip);
            inner.next_ip += 1;
            let id = format!(
                "{}.{:08x}-0000-11f0-9d2b-0242ac110002",
                app_id.trim_start_matches('/').replace('/', "_"),
                inner.next_task
            );
            inner.next_task += 1;
            let checks = inner
                .apps
                .get(app_id)
                .map_or(0, |a| a.def["healthChecks"].as_array().map_or(0, Vec::len));
            let t = SimTask {
                id,
                host,
                ip,
                state: "TASK_RUNNING",
                healthy: checks == 0,
            };
            started.push(t);
        }
        started
    }

    /// The tasks of an app: (task id, host, address).
    pub fn tasks(&self, app_id: &str) -> Vec<(String, String, String)> {
        let inner = self.inner.lock().unwrap();
        inner.apps.get(app_id).map_or_else(Vec::new, |a| {
            a.tasks
                .iter()
                .map(|t| (t.id.clone(), t.host.clone(), t.ip.clone()))
                .collect()
        })
    }

    /// Deploys an app through the REST API (`POST /v2/apps`), as a user
    /// would; returns the status the simulator answered.
    pub async fn post_app(&self, def: &serde_json::Value) -> u16 {
        reqwest::Client::new()
            .post(format!("{}/v2/apps", self.url))
            .json(def)
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    /// Kills a task as Marathon does: `TASK_KILLING` now, `TASK_KILLED` after `grace`.
    pub async fn kill_task(&self, app_id: &str, task_id: &str, grace: Duration) {
        {
            let mut inner = self.inner.lock().unwrap();
            let Some(t) = inner
                .apps
                .get_mut(app_id)
                .and_then(|a| a.tasks.iter_mut().find(|t| t.id == task_id))
            else {
                return;
            };
            t.state = "TASK_KILLING";
            let t = t.clone();
            drop(inner);
            self.status_event(app_id, &t);
        }
        tokio::time::sleep(grace).await;
        let mut inner = self.inner.lock().unwrap();
        if let Some(app) = inner.apps.get_mut(app_id) {
            if let Some(i) = app.tasks.iter().position(|t| t.id == task_id) {
                let mut t = app.tasks.remove(i);
                t.state = "TASK_KILLED";
                drop(inner);
                self.status_event(app_id, &t);
            }
        }
    }

    /// Marks a task's health checks failing (or passing again).
    pub fn set_health(&self, app_id: &str, task_id: &str, alive: bool) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(t) = inner
            .apps
            .get_mut(app_id)
            .and_then(|a| a.tasks.iter_mut().find(|t| t.id == task_id))
        {
            t.healthy = alive;
        }
        drop(inner);
        self.emit(
            "health_status_changed_event",
            json!({"appId": app_id, "instanceId": task_id.replacen('.', ".marathon-", 1), "version": "2026-11-25T04:59:58.000Z", "alive": alive}),
        );
    }
}

/// The `n`th task address (from 1) above `base`: `base.n` while `n` fits in
/// the last octet (1..=254), then carried into the octets before it, so a
/// simulated cluster of 30,000 tasks still gets valid, distinct addresses.
fn task_ip([a, b, c]: [u8; 3], n: u32) -> String {
    let (carry, d) = ((n - 1) / 254, 1 + (n - 1) % 254);
    let bc = ((u32::from(b) << 8) | u32::from(c)) + carry;
    format!("{a}.{}.{}.{d}", (bc >> 8) & 0xff, bc & 0xff)
}

async fn list_apps(State(sim): State<MarathonSim>, headers: axum::http::HeaderMap) -> Response {
    if !sim.authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Unauthorized"})),
        )
            .into_response();
    }
    match sim.fault.load(Ordering::Relaxed) {
        1 => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "{\"message\":\"simulated failure\"}",
            )
                .into_response()
        }
        2 => {
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        3 => {
            let body = json!({"apps": sim.inner.lock().unwrap().apps.values().map(MarathonSim::app_json).collect::<Vec<_>>()}).to_string();
            return (
                [("content-type", "application/json")],
                body[..body.len() / 2].to_owned(),
            )
                .into_response();
        }
        4 => return Json(json!({"apps": []})).into_response(),
        _ => {}
    }
    let inner = sim.inner.lock().unwrap();
    Json(json!({"apps": inner.apps.values().map(MarathonSim::app_json).collect::<Vec<_>>()}))
        .into_response()
}

async fn mesos_state(State(sim): State<MarathonSim>) -> Response {
    if sim.mesos_down.load(Ordering::Relaxed) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "simulated Mesos failure").into_response();
    }
    let agents = sim.agents.lock().unwrap().clone();
    let slaves: Vec<Value> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let (unreserved, used) = sim.agent_resources(a);
            json!({"id": format!("sim-S{i}"), "hostname": a, "pid": format!("slave(1)@{a}:5051"), "active": true,
                   "resources": unreserved, "unreserved_resources": unreserved, "used_resources": used, "reserved_resources": {}})
        })
        .collect();
    Json(json!({"version": "1.8.0", "slaves": slaves})).into_response()
}

async fn list_tasks(State(sim): State<MarathonSim>) -> Json<Value> {
    let inner = sim.inner.lock().unwrap();
    let tasks: Vec<Value> = inner
        .apps
        .values()
        .flat_map(|a| {
            let id = a.def["id"].as_str().unwrap_or_default().to_owned();
            a.tasks
                .iter()
                .map(move |t| MarathonSim::task_json(&id, t, 0))
        })
        .collect();
    Json(json!({ "tasks": tasks }))
}

fn normalise(id: &str) -> String {
    format!("/{}", id.trim_matches('/'))
}

async fn get_app(State(sim): State<MarathonSim>, Path(rest): Path<String>) -> Response {
    let inner = sim.inner.lock().unwrap();
    match inner.apps.get(&normalise(&rest)) {
        Some(a) => Json(json!({"app": MarathonSim::app_json(a)})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": format!("App '{}' does not exist", normalise(&rest))})),
        )
            .into_response(),
    }
}

fn deployment(app: &str) -> Value {
    json!({"deploymentId": format!("sim-{}", app.trim_start_matches('/').replace('/', "-")), "version": "2026-11-25T05:00:00.000Z"})
}

async fn create_app(State(sim): State<MarathonSim>, Json(def): Json<Value>) -> Response {
    let Some(id) = def["id"].as_str().map(normalise) else {
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"message": "Object is not valid", "details": [{"path": "/id", "errors": ["error.path.missing"]}]}))).into_response();
    };
    let mut inner = sim.inner.lock().unwrap();
    if inner.locked {
        return (StatusCode::CONFLICT, Json(json!({"message": "App is locked by one or more deployments.", "deployments": [{"id": "sim-locked"}]}))).into_response();
    }
    if inner.apps.contains_key(&id) {
        return (
            StatusCode::CONFLICT,
            Json(json!({"message": format!("An app with id [{id}] already exists.")})),
        )
            .into_response();
    }
    let mut def = def.clone();
    def["id"] = id.clone().into();
    let n = def["instances"].as_u64().unwrap_or(1) as usize;
    inner.apps.insert(
        id.clone(),
        SimApp {
            def: def.clone(),
            tasks: vec![],
        },
    );
    let tasks = sim.launch(&mut inner, &id, n);
    if let Some(a) = inner.apps.get_mut(&id) {
        a.tasks.extend(tasks.iter().cloned());
    }
    drop(inner);
    sim.emit(
        "api_post_event",
        json!({"clientIp": "127.0.0.1", "uri": "/v2/apps", "appDefinition": def}),
    );
    for t in &tasks {
        sim.status_event(&id, t);
    }
    sim.emit("deployment_success", json!({"id": deployment(&id)["deploymentId"], "plan": {"id": deployment(&id)["deploymentId"]}}));
    let mut body = def;
    body["deployments"] = json!([{"id": deployment(&id)["deploymentId"]}]);
    (StatusCode::CREATED, Json(body)).into_response()
}

async fn update_app(
    State(sim): State<MarathonSim>,
    Path(rest): Path<String>,
    Json(change): Json<Value>,
) -> Response {
    let id = normalise(&rest);
    let mut inner = sim.inner.lock().unwrap();
    if inner.locked {
        return (StatusCode::CONFLICT, Json(json!({"message": "App is locked by one or more deployments.", "deployments": [{"id": "sim-locked"}]}))).into_response();
    }
    let Some(app) = inner.apps.get(&id).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"message": format!("App '{id}' does not exist")})),
        )
            .into_response();
    };
    let want = change["instances"]
        .as_u64()
        .map_or(app.tasks.len(), |n| n as usize);
    let mut killed = Vec::new();
    let mut started = Vec::new();
    if want > app.tasks.len() {
        started = sim.launch(&mut inner, &id, want - app.tasks.len());
    }
    if let Some(a) = inner.apps.get_mut(&id) {
        a.def["instances"] = want.into();
        // A partial update also replaces the constraints it carries.
        if let Some(c) = change.get("constraints") {
            a.def["constraints"] = c.clone();
        }
        a.tasks.extend(started.iter().cloned());
        while a.tasks.len() > want {
            if let Some(mut t) = a.tasks.pop() {
                t.state = "TASK_KILLED";
                killed.push(t);
            }
        }
    }
    drop(inner);
    for t in started.iter().chain(&killed) {
        sim.status_event(&id, t);
    }
    sim.emit("deployment_success", json!({"id": deployment(&id)["deploymentId"], "plan": {"id": deployment(&id)["deploymentId"]}}));
    (StatusCode::OK, Json(deployment(&id))).into_response()
}

async fn delete_path(State(sim): State<MarathonSim>, Path(rest): Path<String>) -> Response {
    // DELETE /v2/apps/<id>/tasks/<task>: kill one task; DELETE /v2/apps/<id>: the app.
    if let Some((app, task)) = rest.split_once("/tasks/") {
        let (app, task) = (normalise(app), task.to_owned());
        let s = sim.clone();
        tokio::spawn(async move { s.kill_task(&app, &task, Duration::from_millis(300)).await });
        return Json(json!({"tasks": []})).into_response();
    }
    let id = normalise(&rest);
    let removed = sim.inner.lock().unwrap().apps.remove(&id);
    match removed {
        Some(app) => {
            for mut t in app.tasks {
                t.state = "TASK_KILLED";
                sim.status_event(&id, &t);
            }
            sim.emit(
                "deployment_success",
                json!({"id": deployment(&id)["deploymentId"]}),
            );
            Json(deployment(&id)).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": format!("App '{id}' does not exist")})),
        )
            .into_response(),
    }
}

async fn events(
    State(sim): State<MarathonSim>,
    Query(filters): Query<Vec<(String, String)>>,
    headers: axum::http::HeaderMap,
) -> Response {
    if !sim.authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Unauthorized"})),
        )
            .into_response();
    }
    sim.streams.fetch_add(1, Ordering::Relaxed);
    if sim.muted.load(Ordering::Relaxed) {
        // A stream that is open and silent: the case a follower must notice by itself.
        let silent = futures_util::stream::pending::<Result<Event, std::convert::Infallible>>();
        return Sse::new(silent).into_response();
    }
    event_stream(sim, filters).into_response()
}

fn event_stream(
    sim: MarathonSim,
    filters: Vec<(String, String)>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    use futures_util::StreamExt;
    // Server-side filters, as Marathon applies `?event_type=`.
    let wanted: Arc<Vec<String>> = Arc::new(
        filters
            .into_iter()
            .filter(|(k, _)| k == "event_type")
            .map(|(_, v)| v)
            .collect(),
    );
    let wants =
        |wanted: &[String], kind: &str| wanted.is_empty() || wanted.iter().any(|w| w == kind);
    let attached = json!({"remoteAddress": "127.0.0.1", "eventType": "event_stream_attached", "timestamp": "2026-11-25T05:00:00.000Z"}).to_string();
    let first = wants(&wanted, "event_stream_attached").then(|| {
        Ok(Event::default()
            .event("event_stream_attached")
            .data(attached))
    });
    let rx = sim.events.subscribe();
    let rest = futures_util::stream::unfold(rx, move |mut rx| {
        let wanted = Arc::clone(&wanted);
        async move {
            loop {
                match rx.recv().await {
                    Ok((kind, data)) if wants(&wanted, &kind) => {
                        return Some((Ok(Event::default().event(kind).data(data)), rx))
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    let stream = futures_util::stream::iter(first).chain(rest);
    // Jetty sends heartbeats; an SSE comment line plays their part here.
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_millis(250)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn task_addresses_stay_as_they_were_then_carry_into_the_octets_before() {
        assert_eq!(super::task_ip([127, 0, 80], 1), "127.0.80.1");
        assert_eq!(super::task_ip([127, 0, 80], 254), "127.0.80.254");
        assert_eq!(super::task_ip([127, 0, 80], 255), "127.0.81.1");
        assert_eq!(super::task_ip([127, 1, 0], 30_000), "127.1.118.28");
        assert_eq!(super::task_ip([127, 0, 255], 255), "127.1.0.1");
    }
}
