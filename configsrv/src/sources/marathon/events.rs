//! Marathon's `/v2/events` stream: server-sent-event framing (CRLF or LF,
//! blank lines between fields tolerated, heartbeats skipped, lines and
//! events bounded) and the event payloads palisade acts on. Pure: bytes in,
//! events out.

use serde::Deserialize;
use serde_json::Value;

/// The event types configsrv subscribes to (`?event_type=` filters), so
/// Marathon sends nothing else down the stream.
pub const SUBSCRIBED: &[&str] = &[
    "status_update_event",
    "health_status_changed_event",
    "instance_health_changed_event",
    "api_post_event",
    "deployment_success",
    "deployment_failed",
    "deployment_step_success",
    "group_change_success",
    "app_terminated_event",
];

/// One event, as far as routing cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A task changed state: the fast path for kills and starts.
    TaskStatus(TaskStatus),
    /// A task's or instance's Marathon health checks now pass or fail.
    Health {
        /// The app.
        app: String,
        /// A task id (Marathon 1.3 and earlier) or an instance id.
        instance: String,
        /// Whether it is healthy now.
        alive: bool,
    },
    /// App definitions changed (deploy, scale, delete): read the apps again.
    AppsChanged {
        /// The event type that said so.
        cause: String,
    },
    /// The stream is attached; nothing to do.
    Attached,
    /// Anything else (subscribed to by mistake, or newer than this code).
    Other(String),
}

/// A `status_update_event`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// The app (or pod) id.
    pub app_id: String,
    /// The task id.
    pub task_id: String,
    /// `TASK_RUNNING`, `TASK_KILLING`, `TASK_KILLED`, ...
    pub task_status: String,
    /// The agent.
    #[serde(default)]
    pub host: String,
    /// Host ports.
    #[serde(default)]
    pub ports: Vec<u32>,
    /// The task's own addresses.
    #[serde(default)]
    pub ip_addresses: Vec<Address>,
}

/// One of a task's addresses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// The address.
    pub ip_address: String,
}

/// Why an event's payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event}: {message}")]
pub struct EventError {
    /// The event type, or `?`.
    pub event: String,
    /// What was wrong.
    pub message: String,
}

/// Reads one event's `data:` payload.
pub fn parse_event(data: &str) -> Result<Event, EventError> {
    let value: Value = serde_json::from_str(data).map_err(|e| EventError {
        event: "?".into(),
        message: format!("not JSON: {e}"),
    })?;
    let kind = value
        .get("eventType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let err = |e: serde_json::Error| EventError {
        event: kind.clone(),
        message: e.to_string(),
    };
    Ok(match kind.as_str() {
        "status_update_event" => Event::TaskStatus(serde_json::from_value(value).map_err(err)?),
        "health_status_changed_event" => {
            let instance = ["instanceId", "taskId"]
                .iter()
                .find_map(|k| value.get(*k).and_then(Value::as_str))
                .unwrap_or("")
                .to_owned();
            Event::Health {
                app: value
                    .get("appId")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                instance,
                alive: value.get("alive").and_then(Value::as_bool).unwrap_or(false),
            }
        }
        "instance_health_changed_event" => Event::Health {
            app: value
                .get("runSpecId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            instance: value
                .get("instanceId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            alive: value
                .get("healthy")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        },
        "event_stream_attached" => Event::Attached,
        "api_post_event"
        | "deployment_success"
        | "deployment_failed"
        | "deployment_step_success"
        | "deployment_info"
        | "group_change_success"
        | "app_terminated_event" => Event::AppsChanged { cause: kind },
        _ => Event::Other(kind),
    })
}

/// Whether `task` belongs to `instance`: Marathon 1.4+ task ids extend their
/// instance id (`app.instance-<uuid>._app.1`); older ones drop the
/// `marathon-` prefix of a legacy instance id (`app.marathon-<uuid>`).
pub fn task_of_instance(task: &str, instance: &str) -> bool {
    task == instance
        || task
            .strip_prefix(instance)
            .is_some_and(|rest| rest.starts_with('.'))
        || instance.replacen(".marathon-", ".", 1) == task
}

/// Default of `--event-max-bytes`: the largest event (or line) taken from
/// the stream. A group deployment's `deployment_info` carries whole app
/// definitions; 16 MiB holds thousands.
pub const DEFAULT_EVENT_LIMIT: usize = 16 * 1024 * 1024;

/// Incremental framing of a `text/event-stream` body.
#[derive(Debug)]
pub struct SseParser {
    pending: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
    /// Bytes of `data` so far.
    data_len: usize,
    limit: usize,
}

impl Default for SseParser {
    fn default() -> SseParser {
        SseParser::new(DEFAULT_EVENT_LIMIT)
    }
}

/// A line or an event longer than the parser's limit: the stream must be
/// dropped, since the rest of it can no longer be framed with certainty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event stream line or event is larger than the limit of {limit} bytes")]
pub struct TooLarge {
    /// The limit in bytes.
    pub limit: usize,
}

/// One framed event: its `event:` name (if any) and its joined `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The `event:` field.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

impl SseParser {
    /// A parser that takes lines and events of at most `limit` bytes.
    pub fn new(limit: usize) -> SseParser {
        SseParser {
            pending: Vec::new(),
            event: None,
            data: Vec::new(),
            data_len: 0,
            limit,
        }
    }

    /// Feeds bytes; returns every event completed by them, or `TooLarge`
    /// once a line or an event passes the limit (nothing is kept after that).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, TooLarge> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let Some(nl) = self.pending.iter().position(|&b| b == b'\n') else {
                // An unfinished line is held only up to the limit.
                if self.pending.len() > self.limit {
                    return Err(self.overflow());
                }
                return Ok(out);
            };
            if nl > self.limit {
                return Err(self.overflow());
            }
            let mut line: Vec<u8> = self.pending.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                // A blank line ends an event, but only one that has data:
                // heartbeats and the extra blank lines some relays add are skipped.
                if !self.data.is_empty() {
                    out.push(Frame {
                        event: self.event.take(),
                        data: self.data.join("\n"),
                    });
                    self.data.clear();
                    self.data_len = 0;
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.event = Some(value.to_owned()),
                "data" => {
                    self.data_len += value.len() + 1;
                    if self.data_len > self.limit {
                        return Err(self.overflow());
                    }
                    self.data.push(value.to_owned());
                }
                _ => {}
            }
        }
    }

    /// Drops everything held and says why.
    fn overflow(&mut self) -> TooLarge {
        self.pending = Vec::new();
        self.data = Vec::new();
        self.data_len = 0;
        self.event = None;
        TooLarge { limit: self.limit }
    }
}

#[cfg(test)]
mod tests;
