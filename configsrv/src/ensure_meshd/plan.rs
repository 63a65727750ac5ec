//! What `--ensure-meshd` wants of Marathon, decided without I/O: the meshd
//! app definition read from FILE (checked at start), and, given Mesos'
//! agents and the app as Marathon has it, whether to create it, scale it, or
//! leave it alone. Growing acts on one fresh read; shrinking waits for a
//! second read that agrees, and an empty or stale agent list never shrinks it
//! (invariant 1's spirit: a bad read never takes meshd away from a node).

use serde_json::{json, Value};
use std::path::Path;

/// The constraint that puts at most one meshd on each agent.
pub const UNIQUE_HOSTNAME: [&str; 2] = ["hostname", "UNIQUE"];

/// Why FILE cannot be the meshd app.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DefinitionError {
    /// The file cannot be read.
    #[error("{file}: {message}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        message: String,
    },
    /// The file is not JSON.
    #[error("{file}:{line}:{col}: not JSON: {message}")]
    Json {
        /// The file.
        file: String,
        /// Line of the error.
        line: usize,
        /// Column of the error.
        col: usize,
        /// serde_json's message.
        message: String,
    },
    /// The JSON is not a usable meshd app.
    #[error("{file}: field `{field}`: {message}")]
    Field {
        /// The file.
        file: String,
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The meshd app, as FILE defines it, with the UNIQUE constraint ensured.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshdApp {
    /// Marathon app id, with a leading slash.
    pub id: String,
    /// The definition to POST (`instances` is set per request).
    pub definition: Value,
}

/// Reads and checks FILE.
pub fn load(path: &Path) -> Result<MeshdApp, DefinitionError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| DefinitionError::Read {
        file: file.clone(),
        message: e.to_string(),
    })?;
    parse(&file, &text)
}

/// Checks a meshd app definition; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<MeshdApp, DefinitionError> {
    let mut def: Value = serde_json::from_str(text).map_err(|e| DefinitionError::Json {
        file: file.into(),
        line: e.line(),
        col: e.column(),
        message: e.to_string(),
    })?;
    let field = |field: &'static str, message: &str| DefinitionError::Field {
        file: file.into(),
        field,
        message: message.into(),
    };
    let Some(obj) = def.as_object_mut() else {
        return Err(field("(top level)", "a Marathon app is a JSON object"));
    };
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| field("id", "missing or not a string"))?;
    let id = format!("/{}", id.trim_matches('/'));
    let valid = |seg: &str| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
    };
    if !id[1..].split('/').all(valid) {
        return Err(field(
            "id",
            &format!("`{id}` is not a Marathon app id (lowercase letters, digits, `-`, `.`, `_`, slashes)"),
        ));
    }
    if !["cmd", "args", "container"]
        .iter()
        .any(|k| obj.get(*k).is_some_and(|v| !v.is_null()))
    {
        return Err(field(
            "cmd",
            "the app runs nothing: give `cmd`, `args` or `container`",
        ));
    }
    let host_networks = obj.get("networks").is_none_or(|n| {
        n.as_array().is_some_and(|list| {
            list.iter()
                .all(|n| n.get("mode").and_then(Value::as_str) == Some("host"))
        })
    });
    let docker_network = obj
        .get("container")
        .and_then(|c| c.get("docker"))
        .and_then(|d| d.get("network"))
        .and_then(Value::as_str);
    if !host_networks || docker_network.is_some_and(|n| n != "HOST") {
        return Err(field(
            "networks",
            "meshd binds service ports on the agent's own address: use host networking",
        ));
    }
    let constraints = obj.entry("constraints").or_insert_with(|| json!([]));
    let Some(list) = constraints.as_array_mut() else {
        return Err(field(
            "constraints",
            "not a list of [field, operator, value?] lists",
        ));
    };
    if list.iter().any(|c| {
        !c.as_array()
            .is_some_and(|c| !c.is_empty() && c.iter().all(Value::is_string))
    }) {
        return Err(field(
            "constraints",
            "not a list of [field, operator, value?] lists",
        ));
    }
    if !has_unique_hostname(list) {
        list.push(json!(UNIQUE_HOSTNAME));
    }
    obj.insert("id".into(), id.clone().into());
    Ok(MeshdApp {
        id,
        definition: def,
    })
}

/// Whether `constraints` hold `["hostname", "UNIQUE"]` (Marathon's operators are case-insensitive).
pub fn has_unique_hostname(constraints: &[Value]) -> bool {
    constraints.iter().any(|c| {
        let parts: Vec<&str> = c
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        parts.len() == 2
            && parts[0] == UNIQUE_HOSTNAME[0]
            && parts[1].eq_ignore_ascii_case(UNIQUE_HOSTNAME[1])
    })
}

/// The meshd app as Marathon has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    /// Its `instances`.
    pub instances: u64,
    /// Its constraints include `["hostname", "UNIQUE"]`.
    pub unique: bool,
}

impl Current {
    /// Reads `GET /v2/apps/<id>`'s answer (`{"app": {...}}`).
    pub fn from_answer(body: &Value) -> Option<Current> {
        let app = body.get("app")?;
        Some(Current {
            instances: app.get("instances")?.as_u64()?,
            unique: app
                .get("constraints")
                .and_then(Value::as_array)
                .is_some_and(|c| has_unique_hostname(c)),
        })
    }
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `POST /v2/apps` with this body.
    Create(Value),
    /// `PUT /v2/apps/<id>` with this body (never `?force`).
    Update(Value),
    /// Marathon already has it right.
    Nothing,
    /// Not acting, and why.
    Hold(String),
}

/// Mesos' active agents as the last reads give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agents {
    /// Active agents in the latest good read; none while Mesos is stale or unread.
    pub now: Option<usize>,
    /// Active agents in the good read before it.
    pub before: Option<usize>,
}

/// Decides the next step for `app`.
pub fn decide(app: &MeshdApp, agents: Agents, current: Option<Current>) -> Step {
    let Some(n) = agents.now else {
        return Step::Hold("Mesos' agent list is stale or unread; meshd's instances stay".into());
    };
    if n == 0 {
        return Step::Hold("Mesos lists no active agent; meshd's instances stay".into());
    }
    let want = n as u64;
    let Some(current) = current else {
        let mut def = app.definition.clone();
        def["instances"] = want.into();
        return Step::Create(def);
    };
    if want < current.instances && agents.before != Some(n) {
        return Step::Hold(format!(
            "Mesos lists {n} active agents, {} meshd instances run: waiting for the next read to agree before removing any",
            current.instances
        ));
    }
    if want == current.instances && current.unique {
        return Step::Nothing;
    }
    let mut body = json!({ "instances": want });
    if !current.unique {
        let mut constraints = app
            .definition
            .get("constraints")
            .cloned()
            .unwrap_or_else(|| json!([]));
        if let Some(list) = constraints.as_array_mut() {
            if !has_unique_hostname(list) {
                list.push(json!(UNIQUE_HOSTNAME));
            }
        }
        body["constraints"] = constraints;
    }
    Step::Update(body)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
