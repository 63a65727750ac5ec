//! Identifiers shared by both file formats, each parsed once and typed, so a
//! hostname never passes for an app id and a node name is always a safe file name.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Why an identifier was rejected; the message says what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(String);

fn id_err(msg: impl Into<String>) -> IdError {
    IdError(msg.into())
}

/// Marathon's rule for one path segment: lowercase letters, digits, dots and
/// hyphens, starting and ending with a letter or digit.
fn valid_segment(seg: &str) -> bool {
    let bytes = seg.as_bytes();
    let ok_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.';
    let ok_edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !bytes.is_empty()
        && bytes.iter().all(|&c| ok_char(c))
        && ok_edge(bytes[0])
        && ok_edge(bytes[bytes.len() - 1])
}

macro_rules! string_newtype_serde {
    ($ty:ident, $schema_desc:expr, $pattern:expr) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "description": $schema_desc,
                    "pattern": $pattern,
                })
            }
        }
    };
}

/// A Marathon app id, absolute: `/prod/web`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppId(String);

impl AppId {
    /// The id as Marathon writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AppId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let rest = s
            .strip_prefix('/')
            .ok_or_else(|| id_err(format!("app id `{s}` must be absolute, like `/prod/web`")))?;
        if rest.is_empty() || !rest.split('/').all(valid_segment) {
            return Err(id_err(format!(
                "app id `{s}` is not a Marathon app id: each segment is lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit"
            )));
        }
        Ok(AppId(s.to_owned()))
    }
}

string_newtype_serde!(
    AppId,
    "A Marathon app id, absolute, e.g. /prod/web",
    "^(/[a-z0-9]([a-z0-9.-]*[a-z0-9])?)+$"
);

/// An app id, or a group pattern ending in `/*` that names every app below it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AppPattern {
    /// Exactly this app.
    Exact(AppId),
    /// Every app under this group prefix (stored with its trailing `/`; `/` for `/*`).
    Group(String),
}

impl AppPattern {
    /// The pattern as written in a policy file.
    pub fn as_str(&self) -> &str {
        match self {
            AppPattern::Exact(id) => id.as_str(),
            AppPattern::Group(g) => g.as_str(),
        }
    }

    /// Whether `app` is named by this pattern.
    pub fn matches(&self, app: &AppId) -> bool {
        match self {
            AppPattern::Exact(id) => id == app,
            AppPattern::Group(g) => {
                // Drop the `*`, keep the `/` (no slicing: a hand-built `Group` may lack it).
                let prefix = g.strip_suffix('*').unwrap_or(g);
                app.as_str().starts_with(prefix)
            }
        }
    }

    /// How specific the pattern is: an exact id beats any group, a deeper
    /// group beats a shallower one.
    pub fn specificity(&self) -> (u8, usize) {
        match self {
            AppPattern::Exact(id) => (1, id.as_str().len()),
            AppPattern::Group(g) => (0, g.len()),
        }
    }
}

impl FromStr for AppPattern {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if s == "/*" {
            return Ok(AppPattern::Group(s.to_owned()));
        }
        if let Some(group) = s.strip_suffix("/*") {
            group.parse::<AppId>().map_err(|_| {
                id_err(format!(
                    "group pattern `{s}` must be an app id followed by `/*`, like `/prod/*`"
                ))
            })?;
            return Ok(AppPattern::Group(s.to_owned()));
        }
        if s.contains('*') {
            return Err(id_err(format!(
                "pattern `{s}`: `*` is only allowed as a whole last segment, like `/prod/*`"
            )));
        }
        Ok(AppPattern::Exact(s.parse()?))
    }
}

impl fmt::Display for AppPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl Serialize for AppPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> Deserialize<'de> for AppPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
impl JsonSchema for AppPattern {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AppPattern".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A Marathon app id (/prod/web) or a group pattern (/prod/*, /*)",
            "pattern": "^((/[a-z0-9]([a-z0-9.-]*[a-z0-9])?)+(/\\*)?|/\\*)$",
        })
    }
}

/// A Mesos task id as Marathon reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(String);

impl TaskId {
    /// The id as Marathon writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TaskId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.is_empty() || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(id_err(format!(
                "task id `{s}` must be non-empty with no spaces or control characters"
            )));
        }
        Ok(TaskId(s.to_owned()))
    }
}

string_newtype_serde!(TaskId, "A Mesos task id", "^\\S+$");

/// A node's name: the host Marathon reports for its tasks. Sanitised when
/// built, so it is always safe as a file name (invariant 4).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName(String);

impl NodeName {
    /// Builds a node name from any reported host, replacing every character
    /// that is unsafe in a file name with `_`.
    pub fn sanitise(host: &str) -> Option<NodeName> {
        let cleaned: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let trimmed = cleaned.trim_start_matches('.');
        (!trimmed.is_empty() && trimmed.len() <= 253).then(|| NodeName(trimmed.to_owned()))
    }

    /// The name, also the stem of the node's file.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The node's file name in the output directory.
    pub fn file_name(&self) -> String {
        format!("{}.yaml", self.0)
    }
}

impl FromStr for NodeName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        match NodeName::sanitise(s) {
            Some(n) if n.0 == s => Ok(n),
            _ => Err(id_err(format!(
                "node name `{s}` may hold only letters, digits, `.`, `-` and `_`, and must not start with `.`"
            ))),
        }
    }
}

string_newtype_serde!(
    NodeName,
    "A node's name (the host Marathon reports), safe as a file name",
    "^[A-Za-z0-9_-][A-Za-z0-9._-]*$"
);

/// An address range in CIDR form, `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `addr` lies in this range.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            (IpAddr::V4(_), IpAddr::V6(a)) => a
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(IpAddr::V4(v4))),
            // A v4 peer on a v4 socket is the same host as `::ffff:a.b.c.d`
            // on a dual-stack one: a v4-mapped range must name it either way.
            (IpAddr::V6(_), IpAddr::V4(a)) => self.contains(IpAddr::V6(a.to_ipv6_mapped())),
        }
    }

    /// The prefix length; longer is more specific.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for Cidr {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = || {
            id_err(format!(
                "`{s}` is not a CIDR range like `10.0.0.0/8` or `fd00::/8`"
            ))
        };
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let network: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(id_err(format!(
                "`{s}`: prefix length {prefix} is longer than {max}"
            )));
        }
        let cidr = Cidr { network, prefix };
        // Host bits set (10.1.2.3/8) usually means a typo; say so rather than guess.
        if cidr.masked() != network {
            return Err(id_err(format!(
                "`{s}` has host bits set; did you mean `{}/{prefix}`?",
                cidr.masked()
            )));
        }
        Ok(cidr)
    }
}

impl Cidr {
    fn masked(&self) -> IpAddr {
        match self.network {
            IpAddr::V4(n) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(n) & mask).into())
            }
            IpAddr::V6(n) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(n) & mask).into())
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}
impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
impl JsonSchema for Cidr {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Cidr".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An address range in CIDR form, e.g. 10.0.0.0/8 or fd00::/8",
        })
    }
}

/// An app's service port: the port every node binds for it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct ServicePort(pub u16);

/// Orders node configs: meshd applies only a generation newer than the one it runs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct Generation(pub u64);

impl Generation {
    /// The generation after this one.
    pub fn next(self) -> Generation {
        Generation(self.0.saturating_add(1))
    }
}

/// A content hash of a node config: equal revisions mean equal content.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(transparent)]
pub struct Revision(pub String);

/// A backend address: an IP or hostname with a port, written `host:port`
/// (`[v6]:port` for IPv6).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// IP address or hostname.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl FromStr for Endpoint {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = || {
            id_err(format!(
                "`{s}` is not an address like `10.0.0.5:31000` or `[fd00::5]:31000`"
            ))
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => {
                v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
                v6.to_owned()
            }
            None if host.contains(':') => return Err(bad()),
            None if host.is_empty() => return Err(bad()),
            None => host.to_owned(),
        };
        if port == 0 {
            return Err(id_err(format!("`{s}`: port 0 is not a usable port")));
        }
        Ok(Endpoint { host, port })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}
impl Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
impl JsonSchema for Endpoint {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Endpoint".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "host:port, or [v6]:port",
        })
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_follow_marathon_rules() {
        for ok in ["/prod/web", "/a", "/prod/api-v2/x.y"] {
            assert!(ok.parse::<AppId>().is_ok(), "{ok}");
        }
        for bad in ["prod/web", "/", "/Prod", "/prod/", "/-x", "/a//b", "/a b"] {
            assert!(bad.parse::<AppId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn group_patterns_match_nested_apps_only() {
        let g: AppPattern = "/prod/*".parse().unwrap();
        assert!(g.matches(&"/prod/web".parse().unwrap()));
        assert!(g.matches(&"/prod/api/x".parse().unwrap()));
        assert!(!g.matches(&"/production".parse().unwrap()));
        let all: AppPattern = "/*".parse().unwrap();
        assert!(all.matches(&"/x".parse().unwrap()));
        assert!("/prod*".parse::<AppPattern>().is_err());
        assert!(AppPattern::Exact("/prod/web".parse().unwrap()).specificity() > g.specificity());
        let deeper: AppPattern = "/prod/api/*".parse().unwrap();
        assert!(deeper.specificity() > g.specificity());
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.200.1.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!("10.1.0.0/8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("127.0.0.9".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_v4_mapped_range_names_the_v4_spelling_too() {
        // Found by `one_address_in_either_spelling_is_in_the_same_ranges`: a
        // `deny: from_cidr: ::ffff:10.9.0.0/112` missed 10.9.0.1 on a v4 listener.
        let c: Cidr = "::ffff:10.9.0.0/112".parse().unwrap();
        assert!(c.contains("::ffff:10.9.0.1".parse().unwrap()));
        assert!(c.contains("10.9.0.1".parse().unwrap()));
        assert!(!c.contains("10.8.0.1".parse().unwrap()));
        let all: Cidr = "::/0".parse().unwrap();
        assert!(all.contains("10.8.0.1".parse().unwrap()));
    }

    #[test]
    fn node_names_are_safe_file_names() {
        assert_eq!(
            NodeName::sanitise("../etc/passwd").unwrap().as_str(),
            "_etc_passwd"
        );
        assert_eq!(NodeName::sanitise("10.0.1.2").unwrap().as_str(), "10.0.1.2");
        assert!(NodeName::sanitise("").is_none());
        assert!("a/b".parse::<NodeName>().is_err());
    }

    #[test]
    fn endpoints_round_trip() {
        for s in ["10.0.0.5:31000", "[::1]:80", "agent-1.example.com:8080"] {
            let e: Endpoint = s.parse().unwrap();
            assert_eq!(e.to_string(), s);
        }
        assert!("::1:80".parse::<Endpoint>().is_err());
        assert!("host:0".parse::<Endpoint>().is_err());
    }
}
