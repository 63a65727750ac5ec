//! The allow-list verdict for one source against one destination's resolved
//! `Access`: a matching deny beats a matching allow; with no match the
//! default decides; `audit` mode turns a deny into a would-deny. Pure.

use schemas::{Access, Action, AppId, Mode, Rule};
use std::fmt;
use std::net::IpAddr;

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let through.
    Allow,
    /// Refused.
    Deny,
    /// Would be refused, but the destination is in audit mode: let through and recorded.
    WouldDeny,
}

impl Verdict {
    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::WouldDeny => "would_deny",
        }
    }

    /// Whether the connection or request may go on.
    pub fn lets_through(self) -> bool {
        self != Verdict::Deny
    }
}

/// Which part of the access list decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decider {
    /// `allow[i]`.
    AllowRule(usize),
    /// `deny[i]`.
    DenyRule(usize),
    /// No rule matched; the default action applied.
    Default,
}

impl fmt::Display for Decider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decider::AllowRule(i) => write!(f, "allow[{i}]"),
            Decider::DenyRule(i) => write!(f, "deny[{i}]"),
            Decider::Default => f.write_str("default"),
        }
    }
}

/// A verdict and the rule behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    /// What decided it.
    pub decider: Decider,
}

fn matches(rule: &Rule, app: Option<&AppId>, addr: IpAddr) -> bool {
    match (&rule.from, &rule.from_cidr) {
        (Some(pattern), _) => app.is_some_and(|a| pattern.matches(a)),
        (None, Some(cidr)) => cidr.contains(addr),
        (None, None) => false,
    }
}

/// Decides for a source at `addr`, identified as `app` when the identity table knows it.
pub fn decide(access: &Access, app: Option<&AppId>, addr: IpAddr) -> Decision {
    let hit = |rules: &[Rule]| rules.iter().position(|r| matches(r, app, addr));
    let (action, decider) = if let Some(i) = hit(&access.deny) {
        (Action::Deny, Decider::DenyRule(i))
    } else if let Some(i) = hit(&access.allow) {
        (Action::Allow, Decider::AllowRule(i))
    } else {
        (access.default_action, Decider::Default)
    };
    let verdict = match (action, access.mode) {
        (Action::Allow, _) => Verdict::Allow,
        (Action::Deny, Mode::Enforce) => Verdict::Deny,
        (Action::Deny, Mode::Audit) => Verdict::WouldDeny,
    };
    Decision { verdict, decider }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    fn access(json: &str) -> Access {
        serde_json::from_str(json).unwrap()
    }

    fn app(s: &str) -> AppId {
        s.parse().unwrap()
    }

    const ADDR: &str = "127.0.1.1";

    #[test]
    fn allow_rule_lets_a_named_app_through_and_default_denies_the_rest() {
        let a = access(r#"{"default_action":"deny","allow":[{"from":"/prod/edge"}]}"#);
        let ip = ADDR.parse().unwrap();
        assert_eq!(
            decide(&a, Some(&app("/prod/edge")), ip).verdict,
            Verdict::Allow
        );
        assert_eq!(
            decide(&a, Some(&app("/dev/x")), ip),
            Decision {
                verdict: Verdict::Deny,
                decider: Decider::Default
            }
        );
        assert_eq!(decide(&a, None, ip).verdict, Verdict::Deny);
    }

    #[test]
    fn deny_beats_allow_at_equal_specificity() {
        let a = access(
            r#"{"default_action":"allow","allow":[{"from":"/prod/*"}],"deny":[{"from":"/prod/*"}]}"#,
        );
        let d = decide(&a, Some(&app("/prod/web")), ADDR.parse().unwrap());
        assert_eq!(
            d,
            Decision {
                verdict: Verdict::Deny,
                decider: Decider::DenyRule(0)
            }
        );
    }

    #[test]
    fn cidr_rules_match_unidentified_sources() {
        let a = access(r#"{"default_action":"deny","allow":[{"from_cidr":"127.0.9.0/24"}]}"#);
        assert_eq!(
            decide(&a, None, "127.0.9.9".parse().unwrap()).verdict,
            Verdict::Allow
        );
        assert_eq!(
            decide(&a, None, "127.0.8.9".parse().unwrap()).verdict,
            Verdict::Deny
        );
    }

    #[test]
    fn audit_mode_never_blocks_but_says_would_deny() {
        let a = access(r#"{"default_action":"deny","mode":"audit"}"#);
        let d = decide(&a, None, ADDR.parse().unwrap());
        assert_eq!(d.verdict, Verdict::WouldDeny);
        assert!(d.verdict.lets_through());
    }
}
