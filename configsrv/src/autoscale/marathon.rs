//! Autoscaling, Marathon's side: read one app (`instances`, `cpus`, `mem`,
//! deployments, task hosts) and ask for a new `instances` with
//! `PUT /v2/apps/<id>`, never `?force=true`: forcing would cancel a
//! deployment someone else started. I/O, through configsrv's Marathon client.

use crate::error::SourceError;
use crate::sources::marathon::rest::{Answer, MarathonClient};
use serde::Deserialize;

/// What the scaler reads of one app.
#[derive(Debug, Clone, PartialEq)]
pub struct AppState {
    /// Marathon's `instances`.
    pub instances: u32,
    /// CPUs per instance.
    pub cpus: f64,
    /// Memory per instance, MiB.
    pub mem: f64,
    /// A deployment of the app is running.
    pub deploying: bool,
    /// Hosts of its tasks, as Marathon names them.
    pub hosts: Vec<String>,
    /// Its running tasks.
    pub running: u32,
}

/// Why a Marathon call did not do what the scaler asked.
#[derive(Debug, thiserror::Error)]
pub enum MarathonError {
    /// 401 or 403: the credentials may not do this.
    #[error("Marathon refused with {status} at {origin}: give configsrv's Marathon credentials (user:pass in --marathon, or --marathon-token-file) the right to update this app ({message})")]
    Refused {
        /// The status.
        status: u16,
        /// Where.
        origin: String,
        /// Marathon's message.
        message: String,
    },
    /// 409: a deployment holds the app.
    #[error("Marathon answered 409, a deployment holds the app: {0}")]
    Conflict(String),
    /// Any other unexpected status.
    #[error("Marathon answered {status} at {origin}: {message}")]
    Status {
        /// The status.
        status: u16,
        /// Where.
        origin: String,
        /// Marathon's message.
        message: String,
    },
    /// No Marathon answered, or the answer was not what we read.
    #[error(transparent)]
    Source(#[from] SourceError),
}

impl MarathonError {
    /// A network or server trouble that deserves a backoff, not an operator.
    pub fn transient(&self) -> bool {
        match self {
            MarathonError::Status { status, .. } => *status >= 500,
            MarathonError::Source(_) => true,
            MarathonError::Refused { .. } | MarathonError::Conflict(_) => false,
        }
    }
}

#[derive(Debug, Deserialize)]
struct One {
    app: App,
}

#[derive(Debug, Deserialize)]
struct App {
    #[serde(default)]
    instances: u32,
    #[serde(default)]
    cpus: f64,
    #[serde(default)]
    mem: f64,
    #[serde(default)]
    deployments: Vec<serde_json::Value>,
    #[serde(default)]
    tasks: Vec<Task>,
}

#[derive(Debug, Deserialize)]
struct Task {
    #[serde(default)]
    host: String,
    #[serde(default)]
    state: Option<String>,
}

/// Marathon's `message`, else the body's start.
fn message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(200).collect())
}

fn check(a: &Answer) -> Result<(), MarathonError> {
    let (status, origin) = (a.status, a.origin.to_string());
    match status {
        200..=299 => Ok(()),
        401 | 403 => Err(MarathonError::Refused {
            status,
            origin,
            message: message(&a.body),
        }),
        409 => Err(MarathonError::Conflict(message(&a.body))),
        _ => Err(MarathonError::Status {
            status,
            origin,
            message: message(&a.body),
        }),
    }
}

/// Reads a `GET /v2/apps/<id>` body.
pub fn parse_app(origin: &str, body: &[u8]) -> Result<AppState, SourceError> {
    let one: One = serde_json::from_slice(body).map_err(|e| SourceError::json(origin, &e))?;
    let a = one.app;
    Ok(AppState {
        instances: a.instances,
        cpus: a.cpus,
        mem: a.mem,
        deploying: !a.deployments.is_empty(),
        running: a
            .tasks
            .iter()
            .filter(|t| t.state.as_deref().is_none_or(|s| s == "TASK_RUNNING"))
            .count()
            .try_into()
            .unwrap_or(u32::MAX),
        hosts: a.tasks.into_iter().map(|t| t.host).collect(),
    })
}

/// `GET /v2/apps/<id>`, its tasks and deployments embedded.
pub async fn read_app(client: &MarathonClient, id: &str) -> Result<AppState, MarathonError> {
    let a = client
        .call(
            reqwest::Method::GET,
            &format!("/v2/apps{id}?embed=app.tasks&embed=app.deployments"),
            None,
        )
        .await?;
    check(&a)?;
    Ok(parse_app(a.origin.as_str(), &a.body)?)
}

/// `PUT /v2/apps/<id>` with `{"instances": to}`, without `force`.
pub async fn scale(client: &MarathonClient, id: &str, to: u32) -> Result<(), MarathonError> {
    let body = serde_json::json!({ "instances": to });
    let a = client
        .call(reqwest::Method::PUT, &format!("/v2/apps{id}"), Some(&body))
        .await?;
    check(&a)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_real_single_app_answer_reads() {
        let path = format!(
            "{}/../../shared/fixtures/marathon/app-single-container-network.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let body = std::fs::read(&path).unwrap();
        let a = parse_app("fixture", &body).unwrap();
        assert!(a.instances >= 1, "{a:?}");
        assert!(a.cpus > 0.0 && a.mem > 0.0, "{a:?}");
        assert_eq!(a.hosts.len(), a.running as usize, "{a:?}");
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            origin: schemas::RedactedUrl::new("http://u:secret@m1:8080/v2/apps/a"),
            status,
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn statuses_become_refusals_conflicts_and_transient_errors() {
        assert!(check(&answer(200, "{}")).is_ok());
        for s in [401, 403] {
            let e = check(&answer(s, r#"{"message":"Unauthorized access"}"#)).unwrap_err();
            assert!(
                matches!(e, MarathonError::Refused { .. }) && !e.transient(),
                "{e}"
            );
            let text = e.to_string();
            assert!(
                text.contains(&s.to_string()) && text.contains("credentials"),
                "{text}"
            );
            assert!(
                text.contains("Unauthorized access") && !text.contains("secret"),
                "{text}"
            );
        }
        let e = check(&answer(
            409,
            r#"{"message":"App is locked by one or more deployments."}"#,
        ))
        .unwrap_err();
        assert!(
            matches!(e, MarathonError::Conflict(_)) && !e.transient(),
            "{e}"
        );
        assert!(check(&answer(503, "busy")).unwrap_err().transient());
        assert!(!check(&answer(422, "{}")).unwrap_err().transient());
    }

    #[test]
    fn deployments_and_task_states_count() {
        let body = br#"{"app":{"id":"/a","instances":3,"cpus":0.5,"mem":64,"deployments":[{"id":"d1"}],
            "tasks":[{"host":"h1","state":"TASK_RUNNING"},{"host":"h2","state":"TASK_STAGING"},{"host":"h1"}]}}"#;
        let a = parse_app("x", body).unwrap();
        assert!(a.deploying);
        assert_eq!((a.instances, a.running), (3, 2));
        assert_eq!(a.hosts, ["h1", "h2", "h1"]);
    }
}
