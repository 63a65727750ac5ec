//! configsrv's typed errors: what went wrong with a source, one app, or a write.

use schemas::RedactedUrl;
use std::path::PathBuf;

/// A source could not be read as a whole.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file or directory could not be read.
    #[error("{path}: {error}")]
    Io {
        /// What we tried to read.
        path: PathBuf,
        /// Why it failed.
        error: std::io::Error,
    },
    /// A body was not the JSON we expect.
    #[error("{origin}:{line}:{col}: not a valid response: {message}")]
    Json {
        /// The file or URL, without credentials.
        origin: RedactedUrl,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// serde's explanation.
        message: String,
    },
    /// An HTTP request to a source failed.
    #[error("{origin}: {message}")]
    Http {
        /// The URL, without credentials.
        origin: RedactedUrl,
        /// What failed.
        message: String,
    },
    /// An answer (or one event) over its size limit; nothing of it is used.
    #[error("{origin}: the answer is larger than the limit of {limit} bytes ({flag}); keeping the last good state")]
    TooLarge {
        /// The URL, without credentials.
        origin: RedactedUrl,
        /// The limit in bytes.
        limit: u64,
        /// The flag that sets the limit.
        flag: &'static str,
    },
    /// A source is configured wrongly (bad URL, CA file, token).
    #[error("{0}")]
    Config(String),
    /// A read looked wrong, so the last good state was kept.
    #[error("{0}; keeping the last good state")]
    Suspicious(String),
    /// A file is not UTF-8 text.
    #[error("{path}: not UTF-8 text")]
    NotText {
        /// The file.
        path: PathBuf,
    },
}

/// One Marathon app that cannot be used; the others go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("app {app}: {message}")]
pub struct AppError {
    /// The app id as Marathon wrote it.
    pub app: String,
    /// What is wrong with it.
    pub message: String,
}

impl SourceError {
    /// A body from `origin` that serde could not read as the JSON we expect.
    pub fn json(origin: &str, e: &serde_json::Error) -> SourceError {
        SourceError::Json {
            origin: origin.into(),
            line: e.line(),
            col: e.column(),
            message: e.to_string(),
        }
    }
}

impl AppError {
    /// An error for the app written `app`.
    pub fn new(app: &str, message: impl Into<String>) -> AppError {
        AppError {
            app: app.to_owned(),
            message: message.into(),
        }
    }
}

/// A problem found while rendering one app or node; never fatal to the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// Two apps claim one service port; the first by app id keeps it.
    #[error("app {app}: service port {port} is already used by {owner}; this port is not served")]
    PortConflict {
        /// The app that loses the port.
        app: String,
        /// The port.
        port: u16,
        /// The app that keeps it.
        owner: String,
    },
    /// A task cannot be a backend for one port.
    #[error("app {app}: task {task} has no address for service port {port}: {why}")]
    TaskWithoutAddress {
        /// The app.
        app: String,
        /// The task.
        task: String,
        /// The service port.
        port: u16,
        /// Why.
        why: &'static str,
    },
    /// A label names an edge host that a policy file names: policy files
    /// win, so the host is not routed to this app.
    #[error("app {app}: label vhost {host} is named by policy entry {owner}; labels never take a policy file's host names, so it is not routed to this app")]
    VhostReserved {
        /// The app whose label lost the host.
        app: String,
        /// The host name.
        host: String,
        /// The policy entry that names it.
        owner: String,
    },
    /// Apps of equal standing (labels, or one group pattern) claim one edge
    /// host and path: it goes to none of them, so no app can take another's
    /// traffic by claiming its host.
    #[error("app {app}: vhost {host} (path {path}) is also claimed by {others}; it is routed to none of them until one gives it up (a policy file's vhost beats labels)")]
    VhostShared {
        /// One claimant.
        app: String,
        /// The host name.
        host: String,
        /// The path prefix.
        path: String,
        /// The other claimants.
        others: String,
    },
    /// A host cannot be named as a node.
    #[error("host `{host}` cannot be used as a node name")]
    BadHost {
        /// The host as reported.
        host: String,
    },
}

impl RenderError {
    /// The app the problem belongs to; none for a node's problem.
    pub fn app(&self) -> Option<&str> {
        match self {
            RenderError::PortConflict { app, .. }
            | RenderError::TaskWithoutAddress { app, .. }
            | RenderError::VhostReserved { app, .. }
            | RenderError::VhostShared { app, .. } => Some(app),
            RenderError::BadHost { .. } => None,
        }
    }
}

/// A node file could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Writing, syncing or renaming failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A rendered config failed its own validation: a renderer bug, so nothing is written.
    #[error("rendered config for node {node} does not validate: {message}")]
    Invalid {
        /// The node.
        node: String,
        /// The validation errors.
        message: String,
    },
}
