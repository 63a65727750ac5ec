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
    let state: MasterState = serde_json::from_slice(body).map_err(|e| SourceError::Json {
        origin: origin.to_owned(),
        line: e.line(),
        col: e.column(),
        message: e.to_string(),
    })?;
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
