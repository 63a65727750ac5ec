#![allow(clippy::unwrap_used)]
use super::*;

fn policies(text: &str) -> PolicySet {
    PolicySet::from_files([("p.yaml", text)]).unwrap()
}

fn id(s: &str) -> AppId {
    s.parse().unwrap()
}

fn flow(source: &str, destination: &str, allowed: u64, denied: u64, would_deny: u64) -> Flow {
    Flow {
        source: source.into(),
        destination: destination.into(),
        allowed,
        denied,
        would_deny,
    }
}

const CURRENT: &str = "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: deny\n  mode: audit\napps:\n  /shop/web:\n    allow:\n      - from: /shop/edge\n      - from: /shop/*\n    deny:\n      - from: /shop/bad\n  /shop/edge:\n    allow:\n      - from_cidr: 10.0.0.0/8\n";

#[test]
fn judging_follows_meshd_deny_beats_allow_and_audit_would_deny() {
    let p = policies(CURRENT);
    let web = id("/shop/web");
    assert_eq!(
        judge(&p, Some(&id("/shop/edge")), &[], &web),
        Some(Verdict::Allow)
    );
    assert_eq!(
        judge(&p, Some(&id("/shop/bad")), &[], &web),
        Some(Verdict::WouldDeny)
    );
    assert_eq!(
        judge(&p, Some(&id("/dev/x")), &[], &web),
        Some(Verdict::WouldDeny)
    );
    assert_eq!(judge(&p, None, &[], &web), Some(Verdict::WouldDeny));
    // A CIDR rule decides sources by address: unknown without one.
    let edge = id("/shop/edge");
    assert_eq!(judge(&p, None, &[], &edge), None);
    assert_eq!(
        judge(&p, Some(&id("/x/y")), &["10.1.2.3".parse().unwrap()], &edge),
        Some(Verdict::Allow)
    );
    assert_eq!(
        judge(
            &p,
            Some(&id("/x/y")),
            &["192.168.0.1".parse().unwrap()],
            &edge
        ),
        Some(Verdict::WouldDeny)
    );
}

#[test]
fn replay_reports_changes_and_what_would_be_newly_denied() {
    let current = policies(CURRENT);
    let candidate = policies(
        "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: deny\napps:\n  /shop/web:\n    allow:\n      - from: /dev/x\n",
    );
    let flows = [
        flow("/shop/edge", "/shop/web", 1200, 0, 0),
        flow("/dev/x", "/shop/web", 0, 0, 34),
        flow("unknown", "/shop/edge", 5, 0, 0),
        flow("/shop/bad", "/shop/web", 0, 0, 2),
    ];
    let r = replay(&flows, &current, &candidate, &|_| Vec::new());
    assert_eq!(
        r.changes,
        vec![
            Change {
                source: "/shop/edge".into(),
                destination: "/shop/web".into(),
                from: Verdict::Allow,
                to: Verdict::Deny,
                requests: 1200
            },
            Change {
                source: "/dev/x".into(),
                destination: "/shop/web".into(),
                from: Verdict::WouldDeny,
                to: Verdict::Allow,
                requests: 34
            },
            Change {
                source: "/shop/bad".into(),
                destination: "/shop/web".into(),
                from: Verdict::WouldDeny,
                to: Verdict::Deny,
                requests: 2
            },
        ]
    );
    assert_eq!(r.newly_denied, 2);
    assert_eq!(r.unjudged, vec!["unknown -> /shop/edge".to_owned()]);
    // The same policy changes nothing.
    let same = replay(&flows[..2], &current, &current, &|_| Vec::new());
    assert!(same.changes.is_empty() && same.newly_denied == 0);
}

#[test]
fn the_proposal_validates_and_names_exactly_the_sources_let_through() {
    let flows = [
        flow("/shop/edge", "/shop/web", 10, 0, 0),
        flow("/dev/x", "/shop/web", 0, 0, 3),
        flow("/dev/y", "/shop/web", 0, 7, 0),
        flow("unknown", "/shop/edge", 4, 0, 0),
        flow("/shop/web", "/shop/db", 2, 0, 0),
        flow("/x/not an id", "/shop/db", 2, 0, 0),
    ];
    let text = propose(&flows);
    let set = PolicySet::from_files([("proposed.yaml", text.as_str())])
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let named = |dst: &str| -> Vec<String> {
        set.apps[&dst.parse::<AppPattern>().unwrap()]
            .allow
            .iter()
            .map(|r| r.from.as_ref().unwrap().as_str().to_owned())
            .collect()
    };
    assert_eq!(named("/shop/web"), ["/shop/edge", "/dev/x"]);
    assert_eq!(named("/shop/db"), ["/shop/web"]);
    assert_eq!(set.apps.len(), 2, "{text}");
    assert!(
        text.contains("# /shop/edge: 4 connection(s) from sources outside the mesh"),
        "{text}"
    );
    // Nothing observed: still a valid (empty) policy file.
    let empty = propose(&[]);
    assert!(
        PolicySet::from_files([("p.yaml", empty.as_str())]).is_ok(),
        "{empty}"
    );
}
