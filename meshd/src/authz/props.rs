//! Property tests of the verdict: deny beats allow at equal specificity, and
//! under `action: deny` an address that no identity and no CIDR rule names
//! is refused, through the same snapshot lookup a connection takes.

use super::*;
use crate::identity::canonical;
use crate::snapshot::Snapshot;
use proptest::prelude::*;
use schemas::node_config::NodeConfigKind;
use schemas::policy::ApiVersion;
use schemas::{AppPattern, Cidr, Generation, Identity, NodeConfig, Revision, Service, ServicePort};
use std::net::{Ipv4Addr, Ipv6Addr};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const APPS: &[&str] = &[
    "/prod/web",
    "/prod/api/x",
    "/prod/api/y",
    "/dev/web",
    "/ops",
];
const PATTERNS: &[&str] = &[
    "/*",
    "/prod/*",
    "/prod/api/*",
    "/dev/*",
    "/prod/web",
    "/ops",
];
const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.1.2.3/32",
    "192.168.0.0/16",
    "::ffff:10.9.0.0/112",
    "fd00::/8",
];

fn app() -> impl Strategy<Value = AppId> {
    prop::sample::select(APPS).prop_map(|a| a.parse().expect("a valid app id"))
}

/// Addresses inside and around the CIDR pool, and anywhere.
fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u8..3, 0u8..4, 0u8..5).prop_map(|(b, c, d)| IpAddr::V4(Ipv4Addr::new(10, b, c, d))),
        (0u8..3, 0u8..4, 0u8..5)
            .prop_map(|(b, c, d)| IpAddr::V6(Ipv4Addr::new(10, b, c, d).to_ipv6_mapped())),
        any::<Ipv4Addr>().prop_map(IpAddr::V4),
        any::<Ipv6Addr>().prop_map(IpAddr::V6),
        (0u16..4).prop_map(|x| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, x))),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    prop_oneof![
        prop::sample::select(PATTERNS).prop_map(|p| Rule {
            from: Some(p.parse().expect("a valid pattern")),
            from_cidr: None,
        }),
        prop::sample::select(CIDRS).prop_map(|c| Rule {
            from: None,
            from_cidr: Some(c.parse().expect("a valid range")),
        }),
    ]
}

fn access() -> impl Strategy<Value = Access> {
    (
        prop::collection::vec(rule(), 0..4),
        prop::collection::vec(rule(), 0..4),
        prop::bool::ANY,
        prop::bool::ANY,
    )
        .prop_map(|(allow, deny, allow_default, audit)| Access {
            policy: None,
            default_action: if allow_default {
                Action::Allow
            } else {
                Action::Deny
            },
            mode: if audit { Mode::Audit } else { Mode::Enforce },
            allow,
            deny,
        })
}

/// The rule as the policy reads: an app rule names identified sources, a CIDR rule addresses.
fn names(rule: &Rule, app: Option<&AppId>, addr: IpAddr) -> bool {
    match (&rule.from, &rule.from_cidr) {
        (Some(p), None) => app.is_some_and(|a| p.matches(a)),
        (None, Some(c)) => c.contains(addr),
        _ => false,
    }
}

fn refused(mode: Mode) -> Verdict {
    match mode {
        Mode::Enforce => Verdict::Deny,
        Mode::Audit => Verdict::WouldDeny,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn deny_beats_allow_at_equal_specificity(
        mut access in access(),
        both in rule(),
        at in (0usize..5, 0usize..5),
        src in prop::option::of(app()),
        addr in address(),
    ) {
        // The same rule in both lists: whatever it names is refused.
        let at_allow = at.0.min(access.allow.len());
        let at_deny = at.1.min(access.deny.len());
        access.allow.insert(at_allow, both.clone());
        access.deny.insert(at_deny, both.clone());
        let d = decide(&access, src.as_ref(), addr);
        if names(&both, src.as_ref(), addr) {
            prop_assert_eq!(d.verdict, refused(access.mode));
            prop_assert!(matches!(d.decider, Decider::DenyRule(i) if i <= at_deny));
        }
        // And in general: any matching deny refuses, whatever the allows say.
        let first_deny = access.deny.iter().position(|r| names(r, src.as_ref(), addr));
        let any_allow = access.allow.iter().any(|r| names(r, src.as_ref(), addr));
        let expected = match first_deny {
            Some(i) => Decision { verdict: refused(access.mode), decider: Decider::DenyRule(i) },
            None if any_allow => Decision {
                verdict: Verdict::Allow,
                decider: Decider::AllowRule(
                    access.allow.iter().position(|r| names(r, src.as_ref(), addr)).unwrap_or(0),
                ),
            },
            None => Decision {
                verdict: match access.default_action {
                    Action::Allow => Verdict::Allow,
                    Action::Deny => refused(access.mode),
                },
                decider: Decider::Default,
            },
        };
        prop_assert_eq!(d, expected);
    }

    #[test]
    fn default_deny_refuses_any_unknown_address(
        accesses in prop::collection::vec(access(), 1..4),
        known in prop::collection::btree_map(address(), app(), 0..6),
        peer in address(),
    ) {
        let identities: Vec<Identity> = known
            .iter()
            .map(|(address, app)| Identity { address: *address, app: app.clone(), tasks: vec![] })
            .collect();
        // Each spelling of an address is one identity (validation refuses two).
        let mut seen = std::collections::HashSet::new();
        let identities: Vec<Identity> =
            identities.into_iter().filter(|i| seen.insert(canonical(i.address))).collect();
        let in_a_cidr = |a: &Access| {
            a.allow.iter().chain(&a.deny).filter_map(|r| r.from_cidr).any(|c: Cidr| {
                c.contains(peer) || c.contains(canonical(peer))
            })
        };
        prop_assume!(!seen.contains(&canonical(peer)));
        prop_assume!(!accesses.iter().any(in_a_cidr));
        let services: Vec<Service> = accesses
            .into_iter()
            .enumerate()
            .map(|(i, mut access)| {
                access.default_action = Action::Deny;
                access.mode = Mode::Enforce;
                access.policy = Some(AppPattern::Exact(APPS[i].parse().expect("a valid app id")));
                Service {
                    app: APPS[i].parse().expect("a valid app id"),
                    port: ServicePort(10_000 + i as u16),
                    protocol: Default::default(),
                    balance: Default::default(),
                    access,
                    backends: vec![],
                    timeouts: Default::default(),
                    max_connections: None,
                    vhost: vec![],
                    path_prefix: None,
                    tls: None,
                    upstream_tls: None,
                }
            })
            .collect();
        let node = NodeConfig {
            api_version: ApiVersion::V1,
            kind: NodeConfigKind::NodeConfig,
            node: "n1".parse().expect("a valid node name"),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            generation: Generation(1),
            revision: Revision::default(),
            policy_commit: None,
            services,
            identities,
        };
        prop_assert!(schemas::node_config::problems(&node).is_empty());
        let snapshot = Snapshot::compile(node, None, None);
        prop_assert!(!snapshot.routes.is_empty());
        for route in snapshot.routes.values() {
            let (d, _) = route.authorize(&snapshot, peer);
            prop_assert_eq!(d, Decision { verdict: Verdict::Deny, decider: Decider::Default }, "{} from {}", route.app, peer);
        }
    }
}
