//! Policy parsing and merging, on hand-written files.

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
    let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    protocol: sctp\n";
    let e = errors(&[("p.yaml", src)]);
    assert!(e[0].starts_with("p.yaml:5:"), "{}", e[0]);
    assert!(
        e[0].contains("`tcp`") && e[0].contains("`http`") && e[0].contains("`udp`"),
        "{}",
        e[0]
    );
    let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    balance: random\n";
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
    let a = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /good:\n    protocol: http\n  /bad:\n    protocol: sctp\n";
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
fn two_apps_claiming_one_vhost_and_path_is_an_error_naming_both() {
    let a = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /shop/web:\n    vhost: [shop.example.com]\n";
    let b = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /x/api:\n    vhost: [shop.example.com]\n    path_prefix: /api\n  /evil/web:\n    vhost:\n      - other.example.com\n      - Shop.Example.com\n";
    let e = errors(&[("a.yaml", a), ("b.yaml", b)]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("b.yaml:10:7: "), "{}", e[0]);
    for part in ["/evil/web", "/shop/web", "a.yaml:5:5", "shop.example.com"] {
        assert!(e[0].contains(part), "{part}: {}", e[0]);
    }
    // The same host under another path prefix is a different route.
    assert_eq!(
        errors(&[("a.yaml", a), ("b.yaml", &b[..b.find("  /evil").unwrap()])]),
        Vec::<String>::new()
    );
    // An explicit `/` is the default prefix.
    let c = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /c:\n    vhost: [shop.example.com]\n    path_prefix: /\n";
    assert_eq!(errors(&[("a.yaml", a), ("c.yaml", c)]).len(), 1);
}

#[test]
fn lenient_merge_leaves_out_both_apps_of_a_vhost_conflict_and_keeps_the_rest() {
    let a = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /shop/web:\n    vhost: [shop.example.com]\n  /ok:\n    vhost: [ok.example.com]\n";
    let b = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /evil/web:\n    vhost: [shop.example.com]\n";
    let l = PolicySet::from_files_lenient([("a.yaml", a), ("b.yaml", b)]);
    let keys: Vec<&str> = l.set.apps.keys().map(AppPattern::as_str).collect();
    assert_eq!(keys, ["/ok"], "{l:?}");
    assert!(l.broken_files.is_empty(), "{l:?}");
    let broken: Vec<&str> = l.broken_apps.iter().map(String::as_str).collect();
    assert_eq!(broken, ["/evil/web", "/shop/web"]);
    assert_eq!(l.errors.len(), 1, "{l:?}");
}

#[test]
fn duplicate_key_in_one_file_is_rejected() {
    let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /a:\n    protocol: tcp\n  /a:\n    protocol: http\n";
    let e = errors(&[("a.yaml", src)]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("duplicate"), "{}", e[0]);
}

#[test]
fn every_problem_of_a_file_is_reported_each_at_its_line() {
    // A misspelt enum value no longer hides a misspelt field below it.
    let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    protocol: htttp\n    allow:\n      - form: /prod/edge\n      - from: /prod/x\n  /prod/db:\n    balance: random\n    timeouts: {connect: 0s}\n";
    let e = errors(&[("p.yaml", src)]);
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(e[0].starts_with("p.yaml:5:5: apps./prod/web.protocol: unknown variant `htttp`"));
    assert!(e[1].starts_with("p.yaml:7:9: apps./prod/web.allow[0].form: unknown field `form`"));
    assert!(e[2].starts_with("p.yaml:10:5: apps./prod/db.balance: unknown variant `random`"));
    assert!(e[3].starts_with("p.yaml:11:16: apps./prod/db.timeouts.connect:"));
}

#[test]
fn a_pruned_problem_does_not_echo_in_its_parent_and_later_items_keep_their_index() {
    let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /x:\n    autoscale: {metric: bogus, target: 1, min: 1, max: 2}\n    allow:\n      - from: /A\n      - from_cidr: 300.0.0.0/8\n      - from: /b\n        frm: 1\n      - {}\n";
    let e = errors(&[("p.yaml", src)]);
    let at: Vec<&str> = e.iter().map(|e| e.split(": ").next().unwrap()).collect();
    // No `missing field metric` for the pruned metric, no "rule needs `from`"
    // for the pruned `from: /A`; the empty rule is a problem of its own.
    assert_eq!(
        at,
        [
            "p.yaml:5:17",
            "p.yaml:7:9",
            "p.yaml:8:9",
            "p.yaml:10:9",
            "p.yaml:11:7"
        ],
        "{e:#?}"
    );
    assert!(e[4].contains("allow[3]"), "{}", e[4]);
}

#[test]
fn a_missing_kind_and_an_unknown_field_are_both_reported() {
    let src = "apiVersion: palisade/v1\napps:\n  /x:\n    protocl: tcp\n";
    let e = errors(&[("p.yaml", src)]);
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(e[0].contains("missing field `kind`"), "{}", e[0]);
    assert!(
        e[1].starts_with("p.yaml:4:5: apps./x.protocl: unknown field"),
        "{}",
        e[1]
    );
}

#[test]
fn broken_yaml_is_one_problem() {
    let e = errors(&[("p.yaml", "apiVersion: palisade/v1\nkind: Policy\napps: [\n")]);
    assert_eq!(e.len(), 1, "{e:#?}");
}

#[test]
fn a_lenient_read_files_each_problem_under_its_app_entry() {
    let a = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /good:\n    protocol: http\n  /bad:\n    protocol: sctp\n    allow:\n      - form: /x\n  /worse:\n    balance: random\n";
    let l = PolicySet::from_files_lenient([("a.yaml", a)]);
    let shown = |key: &str| -> Vec<String> {
        l.app_errors
            .get(key)
            .map(|v| v.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    };
    let bad = shown("/bad");
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(
        bad[0].starts_with("a.yaml:7:5:") && bad[1].starts_with("a.yaml:9:9:"),
        "{bad:?}"
    );
    let worse = shown("/worse");
    assert_eq!(worse.len(), 1, "{worse:?}");
    assert!(worse[0].starts_with("a.yaml:11:5:"), "{worse:?}");
    assert!(shown("/good").is_empty());
    assert_eq!(l.errors.len(), 3, "{:?}", l.errors);
}

/// Found by the `policy` fuzz target (ops/fuzz/artifacts/policy/timeout-a759...):
/// an anchored flow mapping as an app key reads as the empty key, and
/// filing its error under an app entry looped forever. The lenient read must
/// end and refuse the entry.
#[test]
fn an_anchored_flow_mapping_as_an_app_key_ends_with_an_error() {
    let source = "apiVersion: palisade/v1\nkind: Policy\napps:\n &ts: {idlkind: 0:s}\n";
    assert!(crate::parse_policy_file("fuzz.yaml", source).is_err());
    let lenient = PolicySet::from_files_lenient([("fuzz.yaml", source)]);
    assert!(!lenient.errors.is_empty());
    assert!(lenient.set.apps.is_empty());
    let twice = PolicySet::from_files_lenient([("a.yaml", source), ("b.yaml", source)]);
    assert!(!twice.errors.is_empty());
}

#[test]
fn autoscale_problems_are_each_located_at_their_field() {
    // Block form, one field a line, so each problem's line names its field.
    let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    autoscale:\n      metric: rps_per_instance\n      target: 0\n      min: 5\n      max: 2\n      max_step: 0\n      window: 0s\n      scale_up_cooldown: 0ms\n      scale_down_cooldown: 5m\n";
    let e = errors(&[("p.yaml", src)]);
    assert_eq!(e.len(), 5, "{e:?}");
    for (line, field, says) in [
        (7, "target", "positive"),
        (8, "min", "greater than max"),
        (10, "max_step", "at least 1"),
        (11, "window", "greater than zero"),
        (12, "scale_up_cooldown", "greater than zero"),
    ] {
        let found = e
            .iter()
            .find(|m| m.starts_with(&format!("p.yaml:{line}:")))
            .unwrap_or_else(|| panic!("nothing at line {line}: {e:?}"));
        assert!(found.contains(&format!("autoscale.{field}")), "{found}");
        assert!(found.contains(says), "{found}");
    }
    // A negative target and max 0 too.
    let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    autoscale: {metric: p99_latency_ms, target: -5, min: 0, max: 0}\n";
    let e = errors(&[("p.yaml", src)]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e.iter().all(|m| m.starts_with("p.yaml:5:")), "{e:?}");
    assert!(e
        .iter()
        .any(|m| m.contains("target: must be a positive number, got -5")));
    assert!(e.iter().any(|m| m.contains("max: must be at least 1")));
    // The full form of DESIGN.md is valid.
    let src = "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/shop:\n    autoscale:\n      metric: rps_per_instance\n      target: 200\n      min: 2\n      max: 20\n      scale_up_cooldown: 30s\n      scale_down_cooldown: 5m\n      max_step: 4\n      window: 60s\n      dry_run: false\n";
    assert!(errors(&[("p.yaml", src)]).is_empty());
}
