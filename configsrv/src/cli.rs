//! configsrv's command line: `render` and `validate`, typed at once.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// palisade's config server: Marathon + Mesos + policy files -> one YAML config per node.
#[derive(Debug, Parser)]
#[command(name = "configsrv", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// configsrv's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render node configs once, offline, from snapshot files.
    ///
    /// Writes OUT/<node>.yaml for every node (every task host, and every
    /// active Mesos agent). A file is rewritten, with a higher generation,
    /// only when its content changed. On bad input nothing is written and
    /// the exit code is 1; problems with single apps are printed as warnings
    /// and those apps are left out.
    Render {
        /// JSON of Marathon's `GET /v2/apps?embed=apps.tasks`.
        #[arg(long, value_name = "FILE")]
        marathon_snapshot: PathBuf,
        /// JSON of Mesos' `GET /master/state`; gives agents with no tasks a file too.
        #[arg(long, value_name = "FILE")]
        mesos_snapshot: Option<PathBuf>,
        /// Directory of policy files (`*.yaml`, searched recursively; hidden entries skipped).
        #[arg(long, value_name = "DIR")]
        policies: PathBuf,
        /// Where node files go (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Follow a live cluster: Marathon (REST and /v2/events), optionally
    /// Mesos, and the policy directory; publish node configs to --out and to
    /// GET /v1/nodes/<node>/config.
    ///
    /// A failed, partial or suspicious Marathon read (an error, a timeout, an
    /// empty app list after a full one) never empties a node config: the
    /// last good state stays, marked stale in /v1/status and in
    /// palisade_source_stale. The policy directory must be valid to start;
    /// later invalid edits keep the last good policy.
    Serve(Box<ServeArgs>),
    /// Check every policy file in DIR; print `file:line:col: message` per problem.
    ///
    /// Exit 0 when clean, 1 when not: made for CI on the policy repository.
    Validate {
        /// The policy directory.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Preview what a candidate policy directory would change: a running
    /// configsrv replays the flows it observed through its policy and the
    /// candidate (`POST /v1/policy/impact`).
    ///
    /// Prints one line per flow whose verdict would change
    /// (`/a -> /b: allow -> deny, 1234 requests`). Exit 0 when nothing
    /// observed would be newly denied, 1 when something would, 2 on bad
    /// input (`file:line:col: message`) or when the API cannot answer.
    Impact(ImpactArgs),
}

/// Flags of `configsrv impact`.
#[derive(Debug, clap::Args)]
pub struct ImpactArgs {
    /// The candidate policy directory.
    #[arg(long, value_name = "DIR")]
    pub policies: PathBuf,
    /// configsrv's API base URL, e.g. `http://127.0.0.1:9900`.
    #[arg(long, value_name = "URL")]
    pub api: String,
    /// File holding the API token (configsrv's --api-token-file).
    #[arg(long, value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Print the API's JSON answer instead of one line per change.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `configsrv serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Marathon base URLs, comma-separated, tried in order (basic auth as `http://user:pass@host:8080`).
    #[arg(
        long,
        value_name = "URL[,URL...]",
        value_delimiter = ',',
        required = true
    )]
    pub marathon: Vec<String>,
    /// Mesos master base URL; every active agent then gets a node config.
    #[arg(long, value_name = "URL")]
    pub mesos: Option<String>,
    /// Policy directory (watched).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "policies_git",
        conflicts_with = "policies_git"
    )]
    pub policies: Option<PathBuf>,
    /// GitOps: follow this policy repository and branch (`REPO[#BRANCH]`, branch `main` by default).
    #[arg(long, value_name = "REPO[#BRANCH]")]
    pub policies_git: Option<String>,
    /// With --policies-git: configsrv's own checkout of the repository.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/palisade/policy-checkout"
    )]
    pub git_checkout: PathBuf,
    /// With --policies-git: how often to fetch (a push webhook fetches at once).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub git_interval: schemas::duration::Duration,
    /// With --policies-git: how long one git command may run before it is killed.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub git_timeout: schemas::duration::Duration,
    /// File holding the token every state-changing API request must carry as `Authorization: Bearer <token>`.
    #[arg(long, value_name = "FILE")]
    pub api_token_file: Option<PathBuf>,
    /// File holding the token `GET /v1/nodes/<node>/config` requires as `Authorization: Bearer <token>` (meshd's --config-token-file); without it node configs are open to any reader.
    #[arg(long, value_name = "FILE")]
    pub node_token_file: Option<PathBuf>,
    /// Also write OUT/<node>.yaml (atomically, changed files only).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// API address: /v1/nodes/<node>/config, /v1/nodes, /v1/status, /metrics.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9900")]
    pub listen: std::net::SocketAddr,
    /// Full resync with Marathon even when events say nothing changed.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub resync_interval: schemas::duration::Duration,
    /// An event stream with no bytes, not even heartbeats, this long is reopened.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub stream_silence: schemas::duration::Duration,
    /// Timeout of one Marathon REST read.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub marathon_timeout: schemas::duration::Duration,
    /// PEM bundle of CAs to trust for an HTTPS Marathon.
    #[arg(long, value_name = "FILE")]
    pub marathon_ca: Option<PathBuf>,
    /// File holding a DC/OS authentication token for Marathon.
    #[arg(long, value_name = "FILE")]
    pub marathon_token_file: Option<PathBuf>,
    /// Largest Marathon or Mesos REST answer taken, in bytes; a larger one marks the source stale.
    #[arg(long, value_name = "BYTES", default_value_t = crate::sources::DEFAULT_BODY_LIMIT)]
    pub source_max_bytes: u64,
    /// Largest event (or line) taken from Marathon's event stream, in bytes; a larger one reopens the stream.
    #[arg(long, value_name = "BYTES", default_value_t = crate::sources::marathon::events::DEFAULT_EVENT_LIMIT)]
    pub event_max_bytes: usize,
    /// Shortest time between two renders (and between two Marathon reads
    /// that app changes cause). A change after a quiet spell renders at
    /// once; the rest of a burst (a deployment of 100 apps) gathers into
    /// one render when the window closes, so a burst renders once per
    /// window, never once per event.
    #[arg(long, value_name = "DURATION", default_value = "50ms")]
    pub coalesce: schemas::duration::Duration,
    /// How often every meshd's admin endpoint is scraped (`/metrics`, `/status`).
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub scrape_interval: schemas::duration::Duration,
    /// Longest one node's scrape may take; a slower node is flagged unreachable.
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    pub scrape_timeout: schemas::duration::Duration,
    /// meshd's admin port on every node: scrapes go to `http://<node>:<port>`.
    #[arg(long, value_name = "PORT", default_value_t = 9901)]
    pub meshd_admin_port: u16,
    /// How far back the API's figures reach (rates, percentiles, flows).
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub window: schemas::duration::Duration,
    /// How often Mesos' agent list is read (with --mesos).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub mesos_interval: schemas::duration::Duration,
    /// Keep meshd on every agent: FILE is a Marathon app JSON for meshd
    /// (ops/marathon/meshd.json). configsrv creates it when missing and keeps
    /// its `instances` equal to Mesos' active agents, with the constraint
    /// `["hostname", "UNIQUE"]`; needs --mesos, and Marathon credentials that
    /// may change apps. It never shrinks the app on a failed or empty agent
    /// list, and removes instances only when two reads agree.
    #[arg(long, value_name = "FILE", requires = "mesos")]
    pub ensure_meshd: Option<PathBuf>,
    /// Run the autoscaler: scale the apps whose policy has `autoscale` with
    /// `PUT /v2/apps/<id>` (checked against --mesos for room). Off by
    /// default; run exactly one configsrv with it per cluster, the other
    /// replicas without it (they then record no decisions and never write
    /// to Marathon).
    #[arg(long)]
    pub autoscale: bool,
}
