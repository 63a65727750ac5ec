//! Policy files -> one `PolicySet`: strict parse of each file, checks inside
//! each file, then the merge, where one app defined twice names both files,
//! and so does one edge host and path claimed by two apps (`vhost`).

mod autoscale;
mod every;
mod vhost;

pub use vhost::route_key;

use super::{AppPolicy, Defaults, Policy, Rule};
use crate::duration::Duration;
use crate::ids::{AppId, AppPattern};
use crate::span::{locate, ConfigError, Location, Seg};
use std::collections::{BTreeMap, BTreeSet};

/// Every file parsed and merged: the set, the problems that make the merge
/// untrustworthy (a file that does not parse, an app or defaults set twice),
/// and the vhost conflicts, which leave out only the apps involved.
fn merge<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> (PolicySet, Vec<ConfigError>, Vec<vhost::Conflict>) {
    let mut set = PolicySet::default();
    let mut defaults_origin: Option<Origin> = None;
    let mut errors = Vec::new();
    let mut claims = vhost::Claims::default();
    for (file, source) in files {
        let policy = match parse_policy_file(file, source) {
            Ok(p) => p,
            Err(mut e) => {
                errors.append(&mut e);
                continue;
            }
        };
        if let Some(defaults) = policy.defaults {
            let here = Origin {
                file: file.to_owned(),
                location: locate(source, &[Seg::Key("defaults")]),
            };
            match &defaults_origin {
                Some(first) => errors.push(here.location.error(
                    file,
                    format!("defaults are already set at {first}; only one file may set them"),
                )),
                None => {
                    set.defaults = defaults;
                    defaults_origin = Some(here);
                }
            }
        }
        for (pattern, app) in policy.apps {
            let here = Origin {
                file: file.to_owned(),
                location: locate(source, &[Seg::Key("apps"), Seg::Key(pattern.as_str())]),
            };
            if let Some(first) = set.origins.get(&pattern) {
                errors.push(here.location.error(
                    file,
                    format!("app {pattern} is defined in both {first} and {here}; keep one"),
                ));
                continue;
            }
            claims.add(&pattern, &app, file, source);
            set.origins.insert(pattern.clone(), here);
            set.apps.insert(pattern, app);
        }
    }
    (set, errors, claims.conflicts())
}

/// Where a policy entry was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file as the caller named it.
    pub file: String,
    /// The entry's key in that file.
    pub location: Location,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.file, self.location.line, self.location.col
        )
    }
}

/// Every policy file of a directory, merged and checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicySet {
    /// The cluster defaults (deny, enforce when no file sets them).
    pub defaults: Defaults,
    /// Every app and group entry.
    pub apps: BTreeMap<AppPattern, AppPolicy>,
    /// Where each entry of `apps` came from.
    pub origins: BTreeMap<AppPattern, Origin>,
    /// The policy repository commit these files came from (`--policies-git`).
    pub commit: Option<String>,
}

/// Parses one policy file strictly and checks what serde cannot; on failure,
/// every problem found in the file, in the order of their lines.
pub fn parse_policy_file(file: &str, source: &str) -> Result<Policy, Vec<ConfigError>> {
    let text = yaml_serde::Deserializer::from_str(source);
    let policy: Policy = serde_path_to_error::deserialize(text).map_err(|first| {
        let mut errors = every::every_problem(file, source, first);
        errors.sort_by_key(|e| (e.line, e.col));
        errors
    })?;
    let errors: Vec<ConfigError> = policy
        .apps
        .iter()
        .flat_map(|(pattern, app)| entry_problems(pattern.as_str(), app))
        .map(|(path, message)| locate(source, &path).error(file, message))
        .collect();
    if errors.is_empty() {
        Ok(policy)
    } else {
        Err(errors)
    }
}

/// Every problem of one app entry that serde cannot see, each with the path
/// of the offending value (for `locate`) and its message.
fn entry_problems<'a>(key: &'a str, app: &AppPolicy) -> Vec<(Vec<Seg<'a>>, String)> {
    let at = |rest: &[Seg<'a>]| {
        let mut path = vec![Seg::Key("apps"), Seg::Key(key)];
        path.extend_from_slice(rest);
        path
    };
    let mut out = Vec::new();
    for (list, rules) in [("allow", &app.allow), ("deny", &app.deny)] {
        for (i, rule) in rules.iter().enumerate() {
            if let Some(msg) = rule_problem(rule) {
                out.push((
                    at(&[Seg::Key(list), Seg::Index(i)]),
                    format!("apps.{key}.{list}[{i}]: {msg}"),
                ));
            }
        }
    }
    // Invariant 10: a zero or overlong timer must never reach a node.
    for (name, d) in app.timeouts.named() {
        if let Some(Err(e)) = d.map(Duration::check_in_file) {
            out.push((
                at(&[Seg::Key("timeouts"), Seg::Key(name)]),
                format!("apps.{key}.timeouts.{name}: {e}"),
            ));
        }
    }
    if let Some(a) = &app.autoscale {
        for (rest, message) in autoscale::problems(key, a) {
            out.push((at(&rest), message));
        }
    }
    out
}

fn rule_problem(rule: &Rule) -> Option<&'static str> {
    match (&rule.from, &rule.from_cidr) {
        (Some(_), Some(_)) => {
            Some("a rule names either `from` (an app) or `from_cidr` (an address range), not both; split it in two")
        }
        (None, None) => Some("a rule needs `from` (an app id or /group/*) or `from_cidr` (e.g. 10.0.0.0/8)"),
        _ => None,
    }
}

/// A lenient merge for a running server: files and apps that fail are
/// reported and left out, so the caller can keep their last good versions.
#[derive(Debug, Clone, Default)]
pub struct Lenient {
    /// Everything that parsed.
    pub set: PolicySet,
    /// Every problem found, `file:line:col: message`.
    pub errors: Vec<ConfigError>,
    /// Files whose format is broken (nothing in them was used).
    pub broken_files: BTreeSet<String>,
    /// App keys (as written) whose entry is invalid (the rest of their file was used).
    pub broken_apps: BTreeSet<String>,
    /// The problems of each invalid entry, by app key as written.
    pub app_errors: BTreeMap<String, Vec<ConfigError>>,
}

/// The problems of `errors` that sit inside an app entry of `source`, with
/// the entry's key: an entry runs from its key's line to the next entry's.
fn by_entry<'e>(
    source: &str,
    keys: &[&str],
    errors: &'e [ConfigError],
) -> Vec<(String, &'e ConfigError)> {
    let apps = locate(source, &[Seg::Key("apps")]);
    let mut starts: Vec<(Location, &str)> = keys
        .iter()
        .map(|k| (locate(source, &[Seg::Key("apps"), Seg::Key(k)]), *k))
        .filter(|(at, _)| *at > apps)
        .collect();
    starts.sort();
    errors
        .iter()
        .filter_map(|e| {
            let at = Location {
                line: e.line,
                col: e.col,
            };
            // Deeper than `apps:` itself, or it is a top-level key's problem.
            if at.col <= apps.col {
                return None;
            }
            let (_, key) = starts.iter().rev().find(|(start, _)| *start <= at)?;
            Some(((*key).to_owned(), e))
        })
        .collect()
}

/// A policy file's outer shape, with app entries still unparsed.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Shell {
    #[serde(rename = "apiVersion")]
    _api_version: super::ApiVersion,
    #[serde(rename = "kind")]
    _kind: super::PolicyKind,
    #[serde(default)]
    defaults: Option<Defaults>,
    #[serde(default)]
    apps: BTreeMap<String, yaml_serde::Value>,
}

impl PolicySet {
    /// Merges what it can: a file with a broken format is left out whole,
    /// an invalid app entry is left out alone, and both are reported.
    pub fn from_files_lenient<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Lenient {
        let mut good: Vec<(String, String)> = Vec::new();
        let mut out = Lenient::default();
        for (file, source) in files {
            match parse_policy_file(file, source) {
                Ok(_) => good.push((file.to_owned(), source.to_owned())),
                Err(errors) => {
                    let Ok(shell) = yaml_serde::from_str::<Shell>(source) else {
                        out.errors.extend(errors);
                        out.broken_files.insert(file.to_owned());
                        continue;
                    };
                    let keys: Vec<&str> = shell.apps.keys().map(String::as_str).collect();
                    for (key, e) in by_entry(source, &keys, &errors) {
                        out.app_errors.entry(key).or_default().push(e.clone());
                    }
                    out.errors.extend(errors);
                    // Keep the valid entries of this file: rebuild it without the bad ones.
                    let mut apps = yaml_serde::Mapping::new();
                    for (key, value) in shell.apps {
                        let entry_ok = key.parse::<AppPattern>().is_ok()
                            && yaml_serde::from_value::<AppPolicy>(value.clone())
                                .is_ok_and(|a| entry_problems(&key, &a).is_empty());
                        if entry_ok {
                            apps.insert(yaml_serde::Value::String(key), value);
                        } else {
                            out.broken_apps.insert(key);
                        }
                    }
                    let mut doc = yaml_serde::Mapping::new();
                    doc.insert("apiVersion".into(), "palisade/v1".into());
                    doc.insert("kind".into(), "Policy".into());
                    if let Some(d) = shell.defaults {
                        doc.insert(
                            "defaults".into(),
                            yaml_serde::to_value(d).unwrap_or_default(),
                        );
                    }
                    doc.insert("apps".into(), yaml_serde::Value::Mapping(apps));
                    good.push((
                        file.to_owned(),
                        yaml_serde::to_string(&doc).unwrap_or_default(),
                    ));
                }
            }
        }
        let (mut set, errors, conflicts) =
            merge(good.iter().map(|(f, s)| (f.as_str(), s.as_str())));
        if !errors.is_empty() {
            // Cross-file problems (an app in two files): nothing merged is trustworthy.
            out.errors.extend(errors);
            out.broken_files.extend(good.into_iter().map(|(f, _)| f));
            return out;
        }
        // One vhost, two apps: both keep their last good entries (the caller's
        // call), so a new claimant cannot take a host name from its owner.
        for c in conflicts {
            for pattern in &c.apps {
                set.apps.remove(pattern);
                set.origins.remove(pattern);
                out.broken_apps.insert(pattern.as_str().to_owned());
                let key = pattern.as_str().to_owned();
                out.app_errors.entry(key).or_default().push(c.error.clone());
            }
            out.errors.push(c.error);
        }
        out.set = set;
        out
    }

    /// Parses and merges `(file name, contents)` pairs; returns every problem found.
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<PolicySet, Vec<ConfigError>> {
        let (set, mut errors, conflicts) = merge(files);
        errors.extend(conflicts.into_iter().map(|c| c.error));
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    /// The entry that governs `app`: its exact id, else the deepest group
    /// pattern that names it, else none (the defaults decide).
    pub fn entry_for(&self, app: &AppId) -> Option<(&AppPattern, &AppPolicy)> {
        self.apps
            .iter()
            .filter(|(p, _)| p.matches(app))
            .max_by_key(|(p, _)| p.specificity())
    }
}

#[cfg(test)]
mod tests;
