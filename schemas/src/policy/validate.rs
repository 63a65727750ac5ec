//! Policy files -> one `PolicySet`: strict parse of each file, checks inside
//! each file, then the merge, where one app defined twice names both files.

use super::{AppPolicy, Defaults, Policy, Rule};
use crate::duration::Duration;
use crate::ids::{AppId, AppPattern};
use crate::span::{from_yaml_error, locate, ConfigError, Location, Seg};
use std::collections::{BTreeMap, BTreeSet};

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

/// Parses one policy file strictly and checks what serde cannot.
pub fn parse_policy_file(file: &str, source: &str) -> Result<Policy, Vec<ConfigError>> {
    let policy: Policy =
        yaml_serde::from_str(source).map_err(|e| vec![from_yaml_error(file, &e)])?;
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
        let here = || at(&[Seg::Key("autoscale")]);
        if a.min > a.max {
            out.push((
                here(),
                format!(
                    "apps.{key}.autoscale: min ({}) is greater than max ({})",
                    a.min, a.max
                ),
            ));
        }
        if !(a.target.is_finite() && a.target > 0.0) {
            out.push((
                here(),
                format!(
                    "apps.{key}.autoscale: target must be a positive number, got {}",
                    a.target
                ),
            ));
        }
        for (name, d) in [
            ("scale_up_cooldown", a.scale_up_cooldown),
            ("scale_down_cooldown", a.scale_down_cooldown),
            ("window", a.window),
        ] {
            if let Some(Err(e)) = d.map(Duration::check_in_file) {
                out.push((
                    at(&[Seg::Key("autoscale"), Seg::Key(name)]),
                    format!("apps.{key}.autoscale.{name}: {e}"),
                ));
            }
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
                    out.errors.extend(errors);
                    let Ok(shell) = yaml_serde::from_str::<Shell>(source) else {
                        out.broken_files.insert(file.to_owned());
                        continue;
                    };
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
        match PolicySet::from_files(good.iter().map(|(f, s)| (f.as_str(), s.as_str()))) {
            Ok(set) => out.set = set,
            // Cross-file problems (an app in two files): nothing merged is trustworthy.
            Err(errors) => {
                out.errors.extend(errors);
                out.broken_files.extend(good.into_iter().map(|(f, _)| f));
            }
        }
        out
    }

    /// Parses and merges `(file name, contents)` pairs; returns every problem found.
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<PolicySet, Vec<ConfigError>> {
        let mut set = PolicySet::default();
        let mut defaults_origin: Option<Origin> = None;
        let mut errors = Vec::new();
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
                set.origins.insert(pattern.clone(), here);
                set.apps.insert(pattern, app);
            }
        }
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
mod tests {
    use super::*;
    use crate::policy::{Action, Balance};

    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        match PolicySet::from_files(files.iter().copied()) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    const GOOD: &str = "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: deny\napps:\n  /prod/web:\n    protocol: http\n    balance: p2c_ewma\n    allow:\n      - from: /prod/edge\n      - from_cidr: 10.0.0.0/8\n    deny:\n      - from: /dev/*\n  /prod/*:\n    allow:\n      - from: /prod/*\n";

    #[test]
    fn good_policy_merges_and_resolves_most_specific_entry() {
        let set = PolicySet::from_files([("a.yaml", GOOD)]).unwrap();
        assert_eq!(set.defaults.action, Action::Deny);
        let web: AppId = "/prod/web".parse().unwrap();
        let (p, e) = set.entry_for(&web).unwrap();
        assert_eq!(p.as_str(), "/prod/web");
        assert_eq!(e.balance, Some(Balance::P2cEwma));
        let (p, _) = set.entry_for(&"/prod/db".parse().unwrap()).unwrap();
        assert_eq!(p.as_str(), "/prod/*");
        assert!(set.entry_for(&"/dev/x".parse().unwrap()).is_none());
    }

    #[test]
    fn unknown_field_names_file_line_and_column() {
        let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    protocl: http\n";
        let e = errors(&[("p.yaml", src)]);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("p.yaml:5:"), "{}", e[0]);
        assert!(e[0].contains("unknown field `protocl`"), "{}", e[0]);
    }

    #[test]
    fn unknown_protocol_and_balance_list_the_allowed_values() {
        let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    protocol: udp\n";
        let e = errors(&[("p.yaml", src)]);
        assert!(e[0].starts_with("p.yaml:5:"), "{}", e[0]);
        assert!(
            e[0].contains("`tcp`") && e[0].contains("`http`"),
            "{}",
            e[0]
        );
        let src =
            "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    balance: random\n";
        let e = errors(&[("p.yaml", src)]);
        assert!(
            e[0].contains("round_robin") && e[0].contains("source_hash"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn bad_app_id_and_bad_cidr_are_located() {
        let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /Prod/Web:\n    protocol: tcp\n";
        let e = errors(&[("p.yaml", src)]);
        assert!(e[0].starts_with("p.yaml:4:"), "{}", e[0]);
        assert!(e[0].contains("/Prod/Web"), "{}", e[0]);
        let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    allow:\n      - from_cidr: 10.0.0.300/8\n";
        let e = errors(&[("p.yaml", src)]);
        assert!(e[0].starts_with("p.yaml:6:"), "{}", e[0]);
        assert!(e[0].contains("10.0.0.300/8"), "{}", e[0]);
    }

    #[test]
    fn rule_with_both_or_neither_source_is_located() {
        let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    allow:\n      - from: /a\n      - from: /b\n        from_cidr: 10.0.0.0/8\n";
        let e = errors(&[("p.yaml", src)]);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("p.yaml:7:7: apps./prod/web.allow[1]"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn app_defined_in_two_files_names_both() {
        let a = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    protocol: tcp\n";
        let b = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /x:\n    protocol: tcp\n  /prod/web:\n    protocol: http\n";
        let e = errors(&[("a.yaml", a), ("b.yaml", b)]);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("b.yaml:6:3:"), "{}", e[0]);
        assert!(
            e[0].contains("a.yaml:4:3") && e[0].contains("b.yaml:6:3"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn two_files_with_defaults_is_an_error() {
        let a = "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: allow\n";
        let e = errors(&[("a.yaml", a), ("b.yaml", a)]);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("b.yaml:3:1:") && e[0].contains("a.yaml:3:1"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn wrong_api_version_or_kind_is_rejected() {
        let e = errors(&[("a.yaml", "apiVersion: palisade/v2\nkind: Policy\n")]);
        assert!(e[0].starts_with("a.yaml:1:"), "{}", e[0]);
        let e = errors(&[("a.yaml", "apiVersion: palisade/v1\nkind: NodeConfig\n")]);
        assert!(e[0].starts_with("a.yaml:2:"), "{}", e[0]);
    }

    #[test]
    fn lenient_merge_leaves_out_bad_apps_and_broken_files_only() {
        let a = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /good:\n    protocol: http\n  /bad:\n    protocol: udp\n";
        let b = "apiVersion: palisade/v1\nkind: Policy\napps: [not, a, map\n";
        let c = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /other:\n    protocol: tcp\n";
        let l = PolicySet::from_files_lenient([("a.yaml", a), ("b.yaml", b), ("c.yaml", c)]);
        let keys: Vec<&str> = l.set.apps.keys().map(AppPattern::as_str).collect();
        assert_eq!(keys, ["/good", "/other"]);
        assert!(l.broken_apps.contains("/bad"));
        assert!(l.broken_files.contains("b.yaml"));
        assert!(
            l.errors
                .iter()
                .any(|e| e.to_string().starts_with("a.yaml:7:")),
            "{:?}",
            l.errors
        );
        assert_eq!(
            l.set.origins[&"/good".parse::<AppPattern>().unwrap()].file,
            "a.yaml"
        );
    }

    #[test]
    fn zero_and_overlong_durations_are_located_at_their_value() {
        // Flow style, as operators write timeouts: the column is the value's.
        let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    timeouts: {connect: 2s, idle: 0s}\n";
        let e = errors(&[("p.yaml", src)]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("p.yaml:5:29: "), "{}", e[0]);
        assert!(e[0].contains("greater than zero"), "{}", e[0]);
        // 100000000000s would overflow a deadline (`Instant + Duration`) on a node.
        let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    timeouts:\n      response: 100000000000s\n";
        let e = errors(&[("p.yaml", src)]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("p.yaml:6:7: "), "{}", e[0]);
        assert!(e[0].contains("at most"), "{}", e[0]);
        let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    autoscale: {metric: rps_per_instance, target: 1, min: 1, max: 2, window: 0ms}\n";
        let e = errors(&[("p.yaml", src)]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("p.yaml:5:"), "{}", e[0]);
        assert!(e[0].contains("greater than zero"), "{}", e[0]);
    }

    #[test]
    fn lenient_merge_leaves_out_an_app_with_a_zero_timeout_alone() {
        let a = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /good:\n    timeouts: {idle: 5s}\n  /bad:\n    timeouts: {idle: 0s}\n";
        let l = PolicySet::from_files_lenient([("a.yaml", a)]);
        let keys: Vec<&str> = l.set.apps.keys().map(AppPattern::as_str).collect();
        assert_eq!(keys, ["/good"]);
        assert!(l.broken_apps.contains("/bad"), "{l:?}");
        assert!(l.broken_files.is_empty(), "{l:?}");
    }

    #[test]
    fn duplicate_key_in_one_file_is_rejected() {
        let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /a:\n    protocol: tcp\n  /a:\n    protocol: http\n";
        let e = errors(&[("a.yaml", src)]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("duplicate"), "{}", e[0]);
    }
}
