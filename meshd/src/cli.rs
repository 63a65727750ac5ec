//! meshd's command line: `run` and `check`, typed at once.

use clap::{Parser, Subcommand, ValueEnum};
use schemas::duration::Duration;
use schemas::NodeName;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// palisade's node proxy: serves every app's service ports on this node, with allow-lists.
#[derive(Debug, Parser)]
#[command(name = "meshd", version, about, long_about = None)]
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

/// meshd's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve this node: watch DIR/<node>.yaml, hot-reload it, proxy every service port.
    ///
    /// A file that is invalid, for another node, or not newer than the running
    /// one changes nothing; the error shows in the logs, /status and
    /// palisade_meshd_reload_failures_total. meshd starts serving once a valid
    /// file appears.
    Run(Box<RunArgs>),
    /// Validate a node config file; print `file:line:col: message` per problem.
    ///
    /// Exit 0 when valid, 1 when not.
    Check {
        /// The node config file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Flags of `meshd run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// This node's name: the host Marathon reports for its tasks.
    #[arg(long, value_name = "NAME")]
    pub node: NodeName,
    /// Directory holding <node>.yaml, as configsrv writes it.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "config_url",
        conflicts_with = "config_url"
    )]
    pub config_dir: Option<PathBuf>,
    /// configsrv's API (`http://host:9900`, or `https://` with --config-ca): long-poll this node's config from it.
    #[arg(long, value_name = "URL")]
    pub config_url: Option<String>,
    /// With --config-url: file holding the node token, sent as `Authorization: Bearer <token>` (configsrv's --node-token-file).
    #[arg(long, value_name = "FILE", requires = "config_url")]
    pub config_token_file: Option<PathBuf>,
    /// With an https:// --config-url: PEM bundle of the CAs that may sign configsrv's certificate (the only ones trusted).
    #[arg(long, value_name = "FILE", requires = "config_url")]
    pub config_ca: Option<PathBuf>,
    /// With --config-url: a config body larger than this many bytes is refused; the running config stays.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024 * 1024)]
    pub config_max_bytes: u64,
    /// With --config-url: where the last good config is kept, to start from when configsrv is down.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/palisade")]
    pub cache_dir: PathBuf,
    /// Admin endpoint: /metrics, /status, /healthz, /ready.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// Listen on this address instead of the node address in the config.
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<IpAddr>,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Shared HTTP edge listener: routes by `Host` to apps with a `vhost` (off unless given).
    #[arg(long, value_name = "ADDR")]
    pub edge_http: Option<SocketAddr>,
    /// Shared HTTPS edge listener: routes by SNI and `Host`, certificates from each app's `tls`.
    #[arg(long, value_name = "ADDR")]
    pub edge_https: Option<SocketAddr>,
    /// Most connections open at once on each edge listener; more are closed at accept.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub edge_max_connections: usize,
    /// Write a JSON line per HTTP request here (`-` for standard output).
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
    /// How long connections of a removed service, or of a stopping meshd, may finish.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub drain_deadline: Duration,
    /// Sources (CIDR ranges, comma-separated or repeated) trusted to set
    /// `X-Forwarded-Proto` and `X-Request-Id`, such as a load balancer in
    /// front of the edge. From anyone else meshd overwrites both. Default: nobody.
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub trust_forwarded: Vec<schemas::Cidr>,
}
