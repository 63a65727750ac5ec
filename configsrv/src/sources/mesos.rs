//! Mesos as a source: the agent list from `GET /master/state` (or `/master/slaves`).

use crate::error::SourceError;
use crate::state::Agent;
use serde::Deserialize;
use std::net::IpAddr;

#[derive(Debug, Deserialize)]
struct MasterState {
    #[serde(default)]
    slaves: Vec<MesosAgent>,
}

#[derive(Debug, Deserialize)]
struct MesosAgent {
    #[serde(default)]
    hostname: String,
    /// `slave(1)@10.0.1.2:5051`: the only place the agent's address is given.
    #[serde(default)]
    pid: String,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

/// Reads the agents of a `/master/state` or `/master/slaves` body.
pub fn parse_agents(origin: &str, body: &[u8]) -> Result<Vec<Agent>, SourceError> {
    let state: MasterState =
        serde_json::from_slice(body).map_err(|e| SourceError::json(origin, &e))?;
    Ok(state
        .slaves
        .into_iter()
        .filter(|a| !a.hostname.is_empty())
        .map(|a| {
            let address = a
                .pid
                .rsplit_once('@')
                .and_then(|(_, hp)| hp.rsplit_once(':'))
                .and_then(|(h, _)| h.parse::<IpAddr>().ok());
            Agent {
                hostname: a.hostname,
                address,
                active: a.active,
            }
        })
        .collect())
}

/// Reads Mesos' agents from `{url}/master/state` every `every` (answers of
/// at most `max_body` bytes), and sends each result.
pub async fn poll(
    url: String,
    every: std::time::Duration,
    max_body: u64,
    tx: tokio::sync::mpsc::Sender<crate::sources::SourceEvent>,
) {
    let client = reqwest::Client::new();
    // Requested with its credentials, shown without them.
    let target = format!("{}/master/state", url.trim_end_matches('/'));
    let origin = schemas::RedactedUrl::new(&target);
    loop {
        let result = async {
            let resp = client
                .get(&target)
                .timeout(std::time::Duration::from_secs(10))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| SourceError::Http {
                    origin: origin.clone(),
                    message: schemas::redact::redact(&e.to_string()),
                })?;
            crate::sources::read_body(resp, &origin, max_body).await
        }
        .await
        .and_then(|body| parse_agents(origin.as_str(), &body));
        if tx
            .send(crate::sources::SourceEvent::MesosAgents(result))
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(every).await;
    }
}
