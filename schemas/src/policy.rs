//! The Policy format as people write it: many `*.yaml` files in a directory,
//! merged by `policy::validate` into one `PolicySet`. Unknown fields are errors.

pub mod validate;

use crate::duration::Duration;
use crate::ids::{AppPattern, Cidr};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use validate::{parse_policy_file, route_key, Lenient, PolicySet};

/// `apiVersion` of both formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum ApiVersion {
    /// The only version so far.
    #[default]
    #[serde(rename = "palisade/v1")]
    V1,
}

/// `kind` of a policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PolicyKind {
    /// A policy file.
    Policy,
}

/// One policy file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Always `palisade/v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: ApiVersion,
    /// Always `Policy`.
    pub kind: PolicyKind,
    /// Cluster-wide defaults; at most one file may set them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Defaults>,
    /// Per-app settings and allow-lists, keyed by app id or group pattern (`/prod/*`).
    #[serde(default, deserialize_with = "unique_keys")]
    pub apps: BTreeMap<AppPattern, AppPolicy>,
}

/// What happens to traffic that no rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Verdict for traffic no rule matches. Default `deny`.
    #[serde(default)]
    pub action: Action,
    /// `enforce` blocks denied traffic; `audit` lets it through and records it. Default `enforce`.
    #[serde(default)]
    pub mode: Mode,
}

/// A verdict that a rule or the default gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Refuse.
    #[default]
    Deny,
    /// Let through.
    Allow,
}

/// Whether denials block or are only recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Denied traffic is refused.
    #[default]
    Enforce,
    /// Nothing is refused; would-be denials are logged and counted.
    Audit,
}

/// How meshd carries an app's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// Bytes, both ways.
    #[default]
    Tcp,
    /// HTTP/1.1 and HTTP/2 on one port.
    Http,
    /// Datagrams, in sessions per client address and port.
    Udp,
}

impl Protocol {
    /// Whether the service is carried over UDP (its port is a UDP port).
    pub fn is_udp(self) -> bool {
        self == Protocol::Udp
    }
}

/// How meshd picks a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each healthy backend in turn, by weight.
    #[default]
    RoundRobin,
    /// The backend with the fewest requests in flight.
    LeastRequest,
    /// Power of two choices over a latency moving average.
    P2cEwma,
    /// A hash of the source address, stable when backends come and go.
    SourceHash,
}

/// One app's (or group's) entry in a policy file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AppPolicy {
    /// `tcp`, `http` or `udp` (every port of the app over UDP). Default: the
    /// Marathon label, else `tcp` (plus UDP on ports Marathon declares `udp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// Balancing. Default: the Marathon label, else `round_robin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<Balance>,
    /// Who may connect to this app.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Rule>,
    /// Who may not; a matching deny beats a matching allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<Rule>,
    /// Scale the Marathon app from measured traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<Autoscale>,
    /// Timeouts; each one left out keeps meshd's default.
    #[serde(default, skip_serializing_if = "Timeouts::is_empty")]
    pub timeouts: Timeouts,
    /// Most connections open at once to this app through one meshd. Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Host names the shared edge listeners route to this app (by `Host` and SNI).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vhost: Vec<String>,
    /// With `vhost`: only requests under this path prefix (longest prefix wins). Default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Terminate TLS for this app, on the edge and on its service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Speak TLS to this app's tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_tls: Option<UpstreamTls>,
}

/// TLS termination settings of one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain, a path on the node; watched and reloaded.
    pub cert: String,
    /// PEM private key, a path on the node.
    pub key: String,
    /// Plain-HTTP edge requests get 308 to `https://`. Default false.
    #[serde(default)]
    pub redirect_https: bool,
    /// `Strict-Transport-Security` max-age in seconds on HTTPS answers; absent: no header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<u64>,
}

/// TLS towards an app's tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM bundle of CAs the tasks' certificates must chain to.
    pub ca: String,
    /// Name to verify the tasks' certificates against (and to send as SNI).
    pub server_name: String,
}

/// Per-app timeouts; meshd's defaults in brackets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Connecting to one backend [2s]; a failed connect moves on to the next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<Duration>,
    /// A client's request header must arrive within this [10s].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header: Option<Duration>,
    /// An idle keep-alive client connection is closed after this [60s].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<Duration>,
    /// The backend's response header must arrive within this [30s]; else 504.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Duration>,
    /// A TCP connection or upgraded tunnel with no bytes either way is closed after this [1h].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_idle: Option<Duration>,
    /// A UDP session with no datagram either way ends after this [30s].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_idle: Option<Duration>,
}

impl Timeouts {
    /// Whether no timeout is set.
    pub fn is_empty(&self) -> bool {
        *self == Timeouts::default()
    }

    /// Every timeout by its field name, set or not.
    pub fn named(&self) -> [(&'static str, Option<Duration>); 6] {
        [
            ("connect", self.connect),
            ("request_header", self.request_header),
            ("idle", self.idle),
            ("response", self.response),
            ("tunnel_idle", self.tunnel_idle),
            ("udp_idle", self.udp_idle),
        ]
    }
}

/// A source that a rule names: exactly one of `from` and `from_cidr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// An app id or group pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<AppPattern>,
    /// An address range outside the mesh, e.g. a cloud load balancer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_cidr: Option<Cidr>,
}

/// What the autoscaler measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScaleMetric {
    /// Requests per second per running instance.
    RpsPerInstance,
    /// 99th percentile latency in milliseconds.
    P99LatencyMs,
    /// Open connections per running instance.
    ActiveConnectionsPerInstance,
}

/// Autoscaling settings for one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Autoscale {
    /// The measured metric.
    pub metric: ScaleMetric,
    /// The value to aim for: per instance, or milliseconds for `p99_latency_ms`; greater than 0.
    pub target: f64,
    /// Fewest instances.
    pub min: u32,
    /// Most instances; at least 1 and not below `min`.
    pub max: u32,
    /// Least time between scale-ups. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up_cooldown: Option<Duration>,
    /// Least time between scale-downs. Default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_cooldown: Option<Duration>,
    /// Most instances added at once (scale-downs remove one at a time). Default 4; at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_step: Option<u32>,
    /// Metrics are averaged over this window. Default 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    /// Decide and report, but never change Marathon. Default false.
    #[serde(default)]
    pub dry_run: bool,
}

/// Rejects a key written twice in one mapping; serde's map would keep the last silently.
fn unique_keys<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    K: Deserialize<'de> + Ord + std::fmt::Display,
    V: Deserialize<'de>,
{
    struct Unique<K, V>(std::marker::PhantomData<(K, V)>);
    impl<'de, K, V> serde::de::Visitor<'de> for Unique<K, V>
    where
        K: Deserialize<'de> + Ord + std::fmt::Display,
        V: Deserialize<'de>,
    {
        type Value = BTreeMap<K, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a mapping of app ids to settings")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<K>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!(
                        "duplicate entry for `{key}`; merge the two into one"
                    )));
                }
                let value = map.next_value()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique(std::marker::PhantomData))
}
