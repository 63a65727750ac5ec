//! Property tests: every identifier prints as text that parses back to
//! itself, and no string makes a parser panic (invariant 10).

use super::*;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A Marathon path segment: lowercase letters, digits, `-` and `.`, starting
/// and ending with a letter or digit.
fn segment() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9.-]{0,6}[a-z0-9])?"
}

fn app_id_text() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..4).prop_map(|segs| format!("/{}", segs.join("/")))
}

fn pattern_text() -> impl Strategy<Value = String> {
    prop_oneof![
        app_id_text(),
        app_id_text().prop_map(|id| format!("{id}/*")),
        Just("/*".to_owned()),
    ]
}

fn cidr_text() -> impl Strategy<Value = String> {
    prop_oneof![
        // v4-mapped ranges, as a policy may write them (`::ffff:10.0.0.0/104`).
        (any::<u32>(), 96u8..=128).prop_map(|(a, p)| {
            let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
            let v6 = u128::from(Ipv4Addr::from(a).to_ipv6_mapped());
            format!("{}/{p}", Ipv6Addr::from(v6 & mask))
        }),
        (any::<u32>(), 0u8..=32).prop_map(|(a, p)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
            format!("{}/{p}", Ipv4Addr::from(a & mask))
        }),
        (any::<u128>(), 0u8..=128).prop_map(|(a, p)| {
            let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
            format!("{}/{p}", Ipv6Addr::from(a & mask))
        }),
    ]
}

/// Text close to every identifier's syntax, so the parsers' edges are hit
/// far more often than by arbitrary Unicode.
fn near_text() -> impl Strategy<Value = String> {
    "[/a-zA-Z0-9.*:_\\[\\] -]{0,24}"
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn app_ids_round_trip(text in app_id_text()) {
        let id: AppId = text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(id.to_string(), text.clone());
        prop_assert_eq!(id.to_string().parse::<AppId>().ok(), Some(id));
    }

    #[test]
    fn app_patterns_round_trip_and_name_what_they_cover(text in pattern_text(), child in segment()) {
        let p: AppPattern = text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(p.to_string(), text.clone());
        prop_assert_eq!(p.to_string().parse::<AppPattern>().ok(), Some(p.clone()));
        // A group names every app below it; an exact id names itself.
        let named = match &p {
            AppPattern::Exact(id) => id.clone(),
            AppPattern::Group(g) => format!("{}{child}", g.trim_end_matches('*')).parse().map_err(|e| TestCaseError::fail(format!("{e}")))?,
        };
        prop_assert!(p.matches(&named));
    }

    #[test]
    fn node_names_round_trip(text in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,40}") {
        let n: NodeName = text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(n.to_string(), text.clone());
        prop_assert_eq!(n.file_name(), format!("{text}.yaml"));
    }

    #[test]
    fn any_host_sanitises_to_a_node_name_that_parses(host in any::<String>()) {
        // Invariant 4: whatever Marathon reports becomes a safe file name.
        if let Some(n) = NodeName::sanitise(&host) {
            prop_assert_eq!(n.as_str().parse::<NodeName>().ok(), Some(n.clone()));
            prop_assert!(!n.as_str().contains('/') && !n.as_str().starts_with('.'));
        }
    }

    #[test]
    fn cidrs_round_trip_and_contain_their_network(text in cidr_text()) {
        let c: Cidr = text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(c.to_string(), text.clone());
        prop_assert_eq!(c.to_string().parse::<Cidr>().ok(), Some(c));
        prop_assert!(c.contains(c.network));
    }

    #[test]
    fn one_address_in_either_spelling_is_in_the_same_ranges(text in cidr_text(), a in any::<Ipv4Addr>(), near in any::<bool>()) {
        // A dual-stack listener sees `::ffff:a.b.c.d` where a v4 one sees
        // `a.b.c.d`: a range must not tell them apart (a deny rule would).
        let c: Cidr = text.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let a = match (near, c.network) {
            // Land inside the range often, for v4 and v4-mapped ranges alike.
            (true, IpAddr::V4(n)) => Ipv4Addr::from(u32::from(n) | (u32::from(a) & 0xff)),
            (true, IpAddr::V6(n)) => n.to_ipv4_mapped().map_or(a, |n| Ipv4Addr::from(u32::from(n) | (u32::from(a) & 0xff))),
            (false, _) => a,
        };
        prop_assert_eq!(c.contains(IpAddr::V4(a)), c.contains(IpAddr::V6(a.to_ipv6_mapped())), "{} and {}", c, a);
    }

    #[test]
    fn task_ids_and_endpoints_round_trip(
        task in "[!-~]{1,30}",
        host in prop_oneof![
            "[a-z0-9][a-z0-9.-]{0,20}",
            any::<Ipv4Addr>().prop_map(|a| a.to_string()),
            any::<Ipv6Addr>().prop_map(|a| a.to_string()),
        ],
        port in 1u16..,
    ) {
        let t: TaskId = task.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(t.to_string(), task.clone());
        let e = Endpoint { host, port };
        prop_assert_eq!(e.to_string().parse::<Endpoint>().ok(), Some(e));
    }

    #[test]
    fn no_string_makes_an_identifier_parser_panic(
        text in prop_oneof![any::<String>(), near_text(), cidr_text().prop_map(|c| format!("{c}9"))],
    ) {
        // Whatever parses prints as text that parses to the same value.
        if let Ok(v) = text.parse::<AppId>() {
            prop_assert_eq!(v.to_string().parse::<AppId>().ok(), Some(v));
        }
        if let Ok(v) = text.parse::<AppPattern>() {
            prop_assert_eq!(v.to_string().parse::<AppPattern>().ok(), Some(v));
        }
        if let Ok(v) = text.parse::<TaskId>() {
            prop_assert_eq!(v.to_string().parse::<TaskId>().ok(), Some(v));
        }
        if let Ok(v) = text.parse::<NodeName>() {
            prop_assert_eq!(v.to_string().parse::<NodeName>().ok(), Some(v));
        }
        if let Ok(v) = text.parse::<Cidr>() {
            prop_assert_eq!(v.to_string().parse::<Cidr>().ok(), Some(v));
        }
        if let Ok(v) = text.parse::<Endpoint>() {
            prop_assert_eq!(v.to_string().parse::<Endpoint>().ok(), Some(v));
        }
        let _ = NodeName::sanitise(&text);
    }
}
