//! Where configsrv's inputs come from: Marathon, Mesos, the policy directory,
//! and offline snapshot files of the first two.

pub mod marathon;
pub mod mesos;
pub mod offline;
pub mod policy_dir;
pub mod policy_git;

use crate::error::{AppError, SourceError};
use crate::state::{Agent, App};
use schemas::RedactedUrl;

/// Default of `--source-max-bytes`: one REST answer (Marathon's apps with
/// their tasks, Mesos' state) may be this large; 256 MiB holds tens of
/// thousands of apps.
pub const DEFAULT_BODY_LIMIT: u64 = 256 * 1024 * 1024;

/// Reads a REST answer's body, refusing it once it passes `limit` bytes
/// (announced or counted), so a broken or hostile source cannot fill memory.
pub async fn read_body(
    mut resp: reqwest::Response,
    origin: &RedactedUrl,
    limit: u64,
) -> Result<bytes::Bytes, SourceError> {
    let too_large = || SourceError::TooLarge {
        origin: origin.clone(),
        limit,
        flag: "--source-max-bytes",
    };
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    // Sized from the announced length when there is one: growing by
    // doubling would hold up to twice a large body (Marathon's apps at
    // 10,000 apps: tens of MB) while the last copy is made.
    let announced = resp.content_length().unwrap_or(0);
    let mut body = bytes::BytesMut::with_capacity(usize::try_from(announced).unwrap_or(0));
    loop {
        let chunk = resp.chunk().await.map_err(|e| SourceError::Http {
            origin: origin.clone(),
            message: schemas::redact::redact(&e.to_string()),
        })?;
        let Some(chunk) = chunk else { break };
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Everything the sources tell the state loop.
#[derive(Debug)]
pub enum SourceEvent {
    /// A full read of Marathon's apps, or why it failed.
    MarathonApps(Result<(Vec<App>, Vec<AppError>), SourceError>),
    /// One event from Marathon's stream.
    MarathonEvent(marathon::events::Event),
    /// The event stream opened (its URL) or broke.
    MarathonStream(Result<String, SourceError>),
    /// A read of Mesos' agents.
    MesosAgents(Result<Vec<Agent>, SourceError>),
    /// The policy directory, read again: what parsed, and what did not.
    Policies(schemas::policy::Lenient),
    /// A new commit of the policy repository, validated, or why it was refused.
    PolicyCommit(Result<schemas::PolicySet, String>),
    /// The nodes whose meshd asked for its config lately (`crate::followers`).
    Followers(Vec<schemas::NodeName>),
}
