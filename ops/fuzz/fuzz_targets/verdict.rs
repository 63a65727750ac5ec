//! Identity lookup and the allow-list verdict with arbitrary rules,
//! identities and peers, checked against the rules as DESIGN.md states
//! them: a matching deny beats a matching allow, the first match of a list
//! decides, no match leaves it to the default, audit turns deny into would-deny.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use meshd::authz::{decide, Decider, Verdict};
use meshd::identity::{canonical, IdentityTable};
use schemas::{Access, Action, AppId, AppPattern, Cidr, Identity, Mode, Rule};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Arbitrary)]
enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
    /// `::ffff:a.b.c.d`, the way a dual-stack socket shows an IPv4 peer.
    Mapped([u8; 4]),
}

impl Addr {
    fn ip(&self) -> IpAddr {
        match *self {
            Addr::V4(b) => IpAddr::V4(Ipv4Addr::from(b)),
            Addr::V6(b) => IpAddr::V6(Ipv6Addr::from(b)),
            Addr::Mapped(b) => IpAddr::V6(Ipv4Addr::from(b).to_ipv6_mapped()),
        }
    }
}

/// App names from a small set, so that rules and identities meet.
fn app_name(i: u8, depth: u8) -> String {
    let parts = ["shop", "web", "edge", "dev", "db"];
    (0..=depth % 3)
        .map(|d| parts[usize::from(i.wrapping_add(d)) % parts.len()])
        .fold(String::new(), |s, p| s + "/" + p)
}

#[derive(Debug, Arbitrary)]
enum RuleIn {
    From { app: u8, depth: u8, group: bool },
    FromCidr { addr: Addr, prefix: u8 },
    Pattern(String),
}

impl RuleIn {
    fn rule(&self) -> Option<Rule> {
        let (from, from_cidr) = match self {
            RuleIn::From { app, depth, group } => {
                let name = app_name(*app, *depth);
                let text = if *group { format!("{name}/*") } else { name };
                (Some(text.parse::<AppPattern>().ok()?), None)
            }
            RuleIn::FromCidr { addr, prefix } => {
                let ip = addr.ip();
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let prefix = u32::from(*prefix) % (max + 1);
                let masked = match ip {
                    IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(
                        u32::from(v4) & u32::MAX.checked_shl(32 - prefix).unwrap_or(0),
                    )),
                    IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(
                        u128::from(v6) & u128::MAX.checked_shl(128 - prefix).unwrap_or(0),
                    )),
                };
                (
                    None,
                    Some(format!("{masked}/{prefix}").parse::<Cidr>().ok()?),
                )
            }
            RuleIn::Pattern(s) => (Some(s.parse::<AppPattern>().ok()?), None),
        };
        Some(Rule { from, from_cidr })
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    allow: Vec<RuleIn>,
    deny: Vec<RuleIn>,
    default_deny: bool,
    audit: bool,
    identities: Vec<(Addr, u8, u8)>,
    peer: Addr,
}

fn matches(rule: &Rule, app: Option<&AppId>, addr: IpAddr) -> bool {
    match (&rule.from, &rule.from_cidr) {
        (Some(p), _) => app.is_some_and(|a| p.matches(a)),
        (None, Some(c)) => c.contains(addr),
        (None, None) => false,
    }
}

fuzz_target!(|input: Input| {
    let access = Access {
        policy: None,
        default_action: if input.default_deny {
            Action::Deny
        } else {
            Action::Allow
        },
        mode: if input.audit {
            Mode::Audit
        } else {
            Mode::Enforce
        },
        allow: input.allow.iter().filter_map(RuleIn::rule).collect(),
        deny: input.deny.iter().filter_map(RuleIn::rule).collect(),
    };
    // Identities as validation leaves them: one entry per address.
    let mut identities: Vec<Identity> = Vec::new();
    for (addr, app, depth) in &input.identities {
        let address = canonical(addr.ip());
        if identities.iter().any(|i| i.address == address) {
            continue;
        }
        let Ok(app) = app_name(*app, *depth).parse::<AppId>() else {
            continue;
        };
        identities.push(Identity {
            address,
            app,
            tasks: Vec::new(),
        });
    }
    let table = IdentityTable::new(&identities);
    let peer = input.peer.ip();
    let found = table.lookup(peer);
    assert_eq!(found, table.lookup(canonical(peer)));
    assert_eq!(
        found,
        identities.iter().position(|i| i.address == canonical(peer))
    );
    let app = found.map(|i| &identities[i].app);

    // As `snapshot::Route::authorize` does: a known source is decided at
    // its identity's address, an unknown one at the peer's.
    let at = found.map_or(peer, |i| identities[i].address);
    let decision = decide(&access, app, at);
    let first = |rules: &[Rule]| rules.iter().position(|r| matches(r, app, at));
    let expected = match (first(&access.deny), first(&access.allow)) {
        (Some(i), _) => Decider::DenyRule(i),
        (None, Some(i)) => Decider::AllowRule(i),
        (None, None) => Decider::Default,
    };
    assert_eq!(decision.decider, expected);
    let action = match expected {
        Decider::DenyRule(_) => Action::Deny,
        Decider::AllowRule(_) => Action::Allow,
        Decider::Default => access.default_action,
    };
    let verdict = match (action, access.mode) {
        (Action::Allow, _) => Verdict::Allow,
        (Action::Deny, Mode::Enforce) => Verdict::Deny,
        (Action::Deny, Mode::Audit) => Verdict::WouldDeny,
    };
    assert_eq!(decision.verdict, verdict);
    // The same peer seen through a dual-stack socket gets the same verdict
    // (IPv6 ranges written over the mapped space aside).
    let v6_ranges = access
        .allow
        .iter()
        .chain(&access.deny)
        .any(|r| r.from_cidr.is_some_and(|c| c.to_string().contains(':')));
    if let (IpAddr::V4(v4), false) = (peer, v6_ranges) {
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        let app6 = table.lookup(mapped).map(|i| &identities[i].app);
        assert_eq!(app6, app);
        let at6 = table
            .lookup(mapped)
            .map_or(mapped, |i| identities[i].address);
        assert_eq!(decide(&access, app6, at6).verdict, decision.verdict);
    }
});
