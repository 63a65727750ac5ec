//! Policy resolution for one destination app: the most specific entry
//! (exact id, else deepest group, else the defaults) becomes its `Access`.

use crate::state::App;
use schemas::{Access, AppId, Balance, Cidr, PolicySet, Protocol, Rule, Timeouts};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The resolved allow-list of `app`.
pub fn access(app: &AppId, policies: &PolicySet) -> Access {
    let entry = policies.entry_for(app);
    Access {
        policy: entry.map(|(p, _)| p.clone()),
        default_action: policies.defaults.action,
        mode: policies.defaults.mode,
        allow: entry.map(|(_, e)| e.allow.clone()).unwrap_or_default(),
        deny: entry.map(|(_, e)| e.deny.clone()).unwrap_or_default(),
    }
}

/// Closes the gap a shared address leaves. meshd judges an address that
/// several apps speak from by CIDR rules alone, so a CIDR allow would let
/// in an app that a deny names, when it shares its address with another.
/// For each such address, a deny naming one of its apps becomes a deny of
/// the address itself (the other apps on it are refused too: fail closed).
pub fn close_shared(access: &mut Access, shared: &BTreeMap<IpAddr, BTreeSet<AppId>>) {
    let named: Vec<&schemas::AppPattern> =
        access.deny.iter().filter_map(|r| r.from.as_ref()).collect();
    if named.is_empty() {
        return;
    }
    let closed: Vec<Rule> = shared
        .iter()
        .filter(|(_, apps)| apps.iter().any(|a| named.iter().any(|p| p.matches(a))))
        .filter_map(|(address, _)| {
            let bits = if address.is_ipv4() { 32 } else { 128 };
            let cidr: Cidr = format!("{address}/{bits}").parse().ok()?;
            Some(Rule {
                from: None,
                from_cidr: Some(cidr),
            })
        })
        .collect();
    access.deny.extend(closed);
}

/// How meshd carries one app's traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// tcp, http or udp (every port over UDP).
    pub protocol: Protocol,
    /// Backend selection.
    pub balance: Balance,
    /// Timeouts set by policy.
    pub timeouts: Timeouts,
    /// Connection limit set by policy.
    pub max_connections: Option<u32>,
    /// Edge path prefix.
    pub path_prefix: Option<String>,
    /// TLS termination.
    pub tls: Option<schemas::Tls>,
    /// TLS towards the tasks.
    pub upstream_tls: Option<schemas::UpstreamTls>,
}

/// Per-app settings: the policy entry wins over the app's labels, which win
/// over the defaults (tcp, round robin).
pub fn settings(app: &App, policies: &PolicySet) -> Settings {
    let entry = policies.entry_for(&app.id).map(|(_, e)| e);
    Settings {
        protocol: entry
            .and_then(|e| e.protocol)
            .or(app.protocol)
            .unwrap_or_default(),
        balance: entry
            .and_then(|e| e.balance)
            .or(app.balance)
            .unwrap_or_default(),
        timeouts: entry.map(|e| e.timeouts).unwrap_or_default(),
        max_connections: entry.and_then(|e| e.max_connections),
        path_prefix: entry.and_then(|e| e.path_prefix.clone()),
        tls: entry.and_then(|e| e.tls.clone()),
        upstream_tls: entry.and_then(|e| e.upstream_tls.clone()),
    }
}
