//! palisade's two file formats as Rust types, with strict parsing and
//! validation whose errors read `file:line:col: message`. No I/O: callers
//! pass text and a file name.
//!
//! Layout: `ids` (typed identifiers), `duration`, `span` (locations and
//! errors), `policy` (+ `policy::validate`: merge many files), `node_config`
//! (+ `node_config::validate`), `json_schema` (the checked-in JSON Schemas).
//! Two helpers both binaries share live here too, as the one crate both
//! depend on: `atomic_file` (the only file writer, and the only I/O) and
//! `redact` (URLs without credentials).

pub mod atomic_file;
pub mod duration;
pub mod ids;
pub mod json_schema;
pub mod node_config;
pub mod policy;
pub mod redact;
pub mod span;

pub use atomic_file::{write_atomic, write_atomic_parts};
pub use ids::{
    AppId, AppPattern, Cidr, Endpoint, Generation, NodeName, Revision, ServicePort, TaskId,
};
pub use node_config::{parse_node_config, Access, Backend, Health, Identity, NodeConfig, Service};
pub use policy::{
    parse_policy_file, Action, Balance, Mode, Policy, PolicySet, Protocol, Rule, Timeouts, Tls,
    UpstreamTls,
};
pub use redact::RedactedUrl;
pub use span::ConfigError;
