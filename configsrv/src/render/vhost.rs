//! Edge host names per app. A policy entry's `vhost` is the app's; a label's
//! (`PALISADE_VHOST`, `HAPROXY_0_VHOST`) only where no policy file names that
//! host, whatever the path. A host and path that several apps claim on equal
//! terms (two labels, or one group pattern's entry) goes to none of them and
//! each is told who else claims it: a winner by id would let a new app take
//! another's traffic just by its name, and the fix is a policy file's vhost.

use crate::error::RenderError;
use crate::state::ClusterState;
use schemas::policy::route_key;
use schemas::{AppId, PolicySet};
use std::collections::{BTreeMap, BTreeSet};

/// An edge route as compared: lowercase host, path prefix.
type Route = (String, String);

/// The host names the edge routes to each app (to its first service port).
pub fn vhosts(
    state: &ClusterState,
    policies: &PolicySet,
    errors: &mut Vec<RenderError>,
) -> BTreeMap<AppId, Vec<String>> {
    // Every host a policy file names, by lowercase name: reserved for policy.
    let mut reserved: BTreeMap<String, String> = BTreeMap::new();
    for (pattern, entry) in &policies.apps {
        for host in &entry.vhost {
            reserved
                .entry(host.to_ascii_lowercase())
                .or_insert_with(|| pattern.to_string());
        }
    }
    let mut wanted: Vec<(&AppId, Vec<(String, Route)>)> = Vec::new();
    let mut claimants: BTreeMap<Route, BTreeSet<&AppId>> = BTreeMap::new();
    for app in &state.apps {
        let entry = policies.entry_for(&app.id).map(|(_, e)| e);
        let prefix = entry.and_then(|e| e.path_prefix.as_deref());
        let (hosts, from_labels) = match entry.filter(|e| !e.vhost.is_empty()) {
            Some(e) => (&e.vhost, false),
            None => (&app.vhost, true),
        };
        let mut mine = Vec::new();
        for host in hosts {
            let key = route_key(host, prefix);
            if from_labels {
                if let Some(owner) = reserved.get(&key.0) {
                    errors.push(RenderError::VhostReserved {
                        app: app.id.to_string(),
                        host: host.clone(),
                        owner: owner.clone(),
                    });
                    continue;
                }
            }
            if mine.iter().any(|(_, k)| *k == key) {
                continue;
            }
            claimants.entry(key.clone()).or_default().insert(&app.id);
            mine.push((host.clone(), key));
        }
        wanted.push((&app.id, mine));
    }
    let mut out = BTreeMap::new();
    for (app, mine) in wanted {
        let mut kept = Vec::new();
        for (host, key) in mine {
            let others: Vec<String> = claimants[&key]
                .iter()
                .filter(|a| **a != app)
                .map(ToString::to_string)
                .collect();
            if others.is_empty() {
                kept.push(host);
            } else {
                errors.push(RenderError::VhostShared {
                    app: app.to_string(),
                    host,
                    path: key.1,
                    others: others.join(", "),
                });
            }
        }
        out.insert(app.clone(), kept);
    }
    out
}
