//! Policy from traffic: the allow-lists the observed flows call for
//! (`GET /v1/policy/proposed`), and what a candidate policy would change
//! for the flows observed (`POST /v1/policy/impact`). Pure: flows and policy
//! sets in, answers out. Verdicts follow meshd's `authz::decide`.

use super::figures::Flow;
use schemas::policy::AppPolicy;
use schemas::{Action, AppId, AppPattern, Mode, PolicySet, Rule};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use utoipa::ToSchema;

/// A verdict, as meshd counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Let through.
    Allow,
    /// Refused.
    Deny,
    /// Let through in audit mode; enforce would refuse it.
    WouldDeny,
}

/// Judges a source (its app, when known, and its task addresses) against
/// `dst` under `policies`; `None` when a CIDR rule could decide and the
/// source's addresses are not known (sources outside the mesh).
pub fn judge(
    policies: &PolicySet,
    source: Option<&AppId>,
    addresses: &[IpAddr],
    dst: &AppId,
) -> Option<Verdict> {
    let entry = policies.entry_for(dst).map(|(_, e)| e);
    // Some(true): matches; Some(false): does not; None: cannot tell.
    let matches = |r: &Rule| match (&r.from, &r.from_cidr) {
        (Some(p), _) => Some(source.is_some_and(|a| p.matches(a))),
        // An unknown source speaks from some address the counts do not keep.
        (None, Some(_)) if addresses.is_empty() => None,
        (None, Some(cidr)) => Some(addresses.iter().any(|a| cidr.contains(*a))),
        (None, None) => Some(false),
    };
    let hit = |rules: &[Rule]| -> Option<bool> {
        let seen: Vec<Option<bool>> = rules.iter().map(matches).collect();
        if seen.contains(&Some(true)) {
            Some(true)
        } else if seen.contains(&None) {
            None
        } else {
            Some(false)
        }
    };
    let (allow, deny) = entry.map_or((&[][..], &[][..]), |e| (&e.allow[..], &e.deny[..]));
    let action = match (hit(deny)?, hit(allow)?) {
        (true, _) => Action::Deny,
        (false, true) => Action::Allow,
        (false, false) => policies.defaults.action,
    };
    Some(match (action, policies.defaults.mode) {
        (Action::Allow, _) => Verdict::Allow,
        (Action::Deny, Mode::Enforce) => Verdict::Deny,
        (Action::Deny, Mode::Audit) => Verdict::WouldDeny,
    })
}

/// One candidate policy file (`POST /v1/policy/impact`).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct CandidateFile {
    /// Its name, as problems should cite it (e.g. `shop.yaml`).
    pub name: String,
    /// Its YAML text.
    pub text: String,
}

/// The body of `POST /v1/policy/impact`: the candidate policy directory.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ImpactRequest {
    /// Every file of the candidate directory.
    pub files: Vec<CandidateFile>,
}

/// A flow whose verdict would change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    /// Source app, or `unknown`.
    pub source: String,
    /// Destination app.
    pub destination: String,
    /// Verdict under the policy in force.
    pub from: Verdict,
    /// Verdict under the candidate.
    pub to: Verdict,
    /// Connections and requests of this flow in the window.
    pub requests: u64,
}

/// What a candidate policy would change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ImpactReport {
    /// Flows whose verdict would change.
    pub changes: Vec<Change>,
    /// Changes that would refuse traffic let through today.
    pub newly_denied: usize,
    /// Flows that cannot be judged without their source address (a CIDR
    /// rule decides and the source is outside the mesh), as `source -> destination`.
    pub unjudged: Vec<String>,
}

/// Replays `flows` through the policy in force and the candidate.
pub fn replay(
    flows: &[Flow],
    current: &PolicySet,
    candidate: &PolicySet,
    addresses: &dyn Fn(&AppId) -> Vec<IpAddr>,
) -> ImpactReport {
    let mut report = ImpactReport {
        changes: Vec::new(),
        newly_denied: 0,
        unjudged: Vec::new(),
    };
    for f in flows {
        let Ok(dst) = f.destination.parse::<AppId>() else {
            continue;
        };
        let src = f.source.parse::<AppId>().ok();
        let addrs = src.as_ref().map(addresses).unwrap_or_default();
        let verdicts = (
            judge(current, src.as_ref(), &addrs, &dst),
            judge(candidate, src.as_ref(), &addrs, &dst),
        );
        let (Some(from), Some(to)) = verdicts else {
            report
                .unjudged
                .push(format!("{} -> {}", f.source, f.destination));
            continue;
        };
        if from != to {
            if to == Verdict::Deny {
                report.newly_denied += 1;
            }
            report.changes.push(Change {
                source: f.source.clone(),
                destination: f.destination.clone(),
                from,
                to,
                requests: f.allowed + f.denied + f.would_deny,
            });
        }
    }
    report
}

/// The allow-lists the observed flows call for: per destination, every
/// source app seen let through (allowed or would-be-denied). Sources outside
/// the mesh (`unknown`) can only be allowed by address, so they are noted, not listed.
pub fn propose(flows: &[Flow]) -> String {
    let mut apps: BTreeMap<AppPattern, AppPolicy> = BTreeMap::new();
    let mut outside: BTreeMap<String, u64> = BTreeMap::new();
    for f in flows.iter().filter(|f| f.allowed + f.would_deny > 0) {
        let Ok(dst) = f.destination.parse::<AppPattern>() else {
            continue;
        };
        match f.source.parse::<AppPattern>() {
            Ok(src) => {
                let entry = apps.entry(dst).or_default();
                let rule = Rule {
                    from: Some(src),
                    from_cidr: None,
                };
                if !entry.allow.contains(&rule) {
                    entry.allow.push(rule);
                }
            }
            Err(_) => {
                *outside.entry(f.destination.clone()).or_default() += f.allowed + f.would_deny
            }
        }
    }
    let policy = schemas::Policy {
        api_version: schemas::policy::ApiVersion::V1,
        kind: schemas::policy::PolicyKind::Policy,
        defaults: None,
        apps,
    };
    let mut text = String::from(
        "# Allow-lists learned from the traffic configsrv observed in its window:\n\
         # each app lists exactly the source apps seen reaching it. With\n\
         # `defaults: {action: deny}` everything else is refused; merge these\n\
         # rules into each app's entry before switching it from audit to enforce.\n",
    );
    for (dst, n) in &outside {
        text.push_str(&format!(
            "# {dst}: {n} connection(s) from sources outside the mesh; allow them by address (from_cidr).\n"
        ));
    }
    text.push_str(&yaml_serde::to_string(&policy).unwrap_or_default());
    text
}

#[cfg(test)]
#[path = "impact_tests.rs"]
mod tests;
