//! One edge route, one app: a host name and path prefix (`vhost`,
//! `path_prefix`) claimed by two policy entries is an error naming both.
//! Host names compare case-insensitively; the same host under different
//! prefixes is two routes (longest prefix wins at the edge).

use super::{AppPolicy, Origin};
use crate::ids::AppPattern;
use crate::span::{locate, ConfigError, Seg};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

/// The edge route of a host name and path prefix, as compared.
pub fn route_key(host: &str, path_prefix: Option<&str>) -> (String, String) {
    (
        host.to_ascii_lowercase(),
        path_prefix.unwrap_or("/").to_owned(),
    )
}

/// Two entries claiming one route.
#[derive(Debug, Clone)]
pub struct Conflict {
    /// The first claimant and the second.
    pub apps: [AppPattern; 2],
    /// Located at the second claim; names the first.
    pub error: ConfigError,
}

/// Every route claimed so far, in merge order.
#[derive(Debug, Default)]
pub struct Claims {
    claims: Vec<((String, String), AppPattern, Origin)>,
}

impl Claims {
    /// Records the routes of one entry, written in `file`.
    pub fn add(&mut self, pattern: &AppPattern, app: &AppPolicy, file: &str, source: &str) {
        for (i, host) in app.vhost.iter().enumerate() {
            let path = [
                Seg::Key("apps"),
                Seg::Key(pattern.as_str()),
                Seg::Key("vhost"),
                Seg::Index(i),
            ];
            self.claims.push((
                route_key(host, app.path_prefix.as_deref()),
                pattern.clone(),
                Origin {
                    file: file.to_owned(),
                    location: locate(source, &path),
                },
            ));
        }
    }

    /// Each route claimed by a second entry, once per second claimant.
    pub fn conflicts(self) -> Vec<Conflict> {
        let mut first: BTreeMap<(String, String), (AppPattern, Origin)> = BTreeMap::new();
        let mut out: Vec<Conflict> = Vec::new();
        let mut seen = BTreeSet::new();
        for (key, pattern, here) in self.claims {
            // One entry listing a host twice claims one route.
            if !seen.insert((key.clone(), pattern.clone())) {
                continue;
            }
            match first.entry(key) {
                Entry::Vacant(v) => {
                    v.insert((pattern, here));
                }
                Entry::Occupied(o) => {
                    let (owner, at) = o.get();
                    let (host, prefix) = o.key();
                    let error = here.location.error(
                        &here.file,
                        format!(
                            "vhost {host} (path {prefix}) of {pattern} at {here} is already claimed by {owner} at {at}; an edge host and path go to one app, keep one"
                        ),
                    );
                    out.push(Conflict {
                        apps: [owner.clone(), pattern],
                        error,
                    });
                }
            }
        }
        out
    }
}
