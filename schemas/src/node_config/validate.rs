//! Node config text -> a checked `NodeConfig`: strict parse, then the
//! cross-field rules meshd relies on (one service per port, one app per address).

use super::{Identity, NodeConfig, Service};
use crate::span::{from_yaml_error, locate, ConfigError, Seg};
use std::collections::HashMap;

/// The largest backend weight; meshd expands weights into a pick order.
pub const MAX_WEIGHT: u32 = 1000;

/// Parses a node config strictly and checks it; returns every problem found.
pub fn parse_node_config(file: &str, source: &str) -> Result<NodeConfig, Vec<ConfigError>> {
    let config: NodeConfig =
        yaml_serde::from_str(source).map_err(|e| vec![from_yaml_error(file, &e)])?;
    let mut errors = Vec::new();
    check(&config, |path, message| {
        errors.push(locate(source, path).error(file, message))
    });
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

/// The cross-field rules on a config built in memory (configsrv checks what
/// it renders before publishing); every problem as a message.
pub fn problems(config: &NodeConfig) -> Vec<String> {
    let mut out = Vec::new();
    check(config, |_, message| out.push(message));
    out
}

/// Every cross-field rule, reported with the path of the offending value.
fn check(config: &NodeConfig, mut report: impl FnMut(&[Seg<'_>], String)) {
    check_services(&config.node, &config.services, &mut report);
    check_identities(config.identities.iter(), &mut report);
}

/// One service per port, rules with one source, good timeouts and weights;
/// `node` names the node (or nodes) in messages.
pub(super) fn check_services(
    node: &dyn std::fmt::Display,
    services: &[Service],
    report: &mut dyn FnMut(&[Seg<'_>], String),
) {
    let mut ports = HashMap::new();
    for (i, svc) in services.iter().enumerate() {
        fn at<'a>(i: usize, rest: &[Seg<'a>]) -> Vec<Seg<'a>> {
            let mut path = vec![Seg::Key("services"), Seg::Index(i)];
            path.extend_from_slice(rest);
            path
        }
        // TCP and UDP are separate port spaces: `udp,tcp` in Marathon is two services.
        if let Some(first) = ports.insert((svc.port, svc.protocol.is_udp()), &svc.app) {
            report(
                &at(i, &[Seg::Key("port")]),
                format!(
                    "services[{i}]: service port {} of {} is already used by {first} on node {}",
                    svc.port.0, svc.app, node
                ),
            );
        }
        if svc.protocol.is_udp() && (svc.tls.is_some() || !svc.vhost.is_empty()) {
            report(
                &at(i, &[Seg::Key("protocol")]),
                format!("services[{i}]: a udp service takes no `tls` or `vhost`"),
            );
        }
        if svc.port.0 == 0 {
            report(
                &at(i, &[Seg::Key("port")]),
                format!("services[{i}]: port 0 cannot be listened on"),
            );
        }
        for (list, rules) in [("allow", &svc.access.allow), ("deny", &svc.access.deny)] {
            for (j, rule) in rules.iter().enumerate() {
                if rule.from.is_some() == rule.from_cidr.is_some() {
                    report(
                        &at(i, &[Seg::Key("access"), Seg::Key(list), Seg::Index(j)]),
                        format!("services[{i}].access.{list}[{j}]: a rule has exactly one of `from` and `from_cidr`"),
                    );
                }
            }
        }
        // Parsing already refuses these; a config built in memory is checked here.
        for (name, d) in svc.timeouts.named() {
            if let Some(Err(e)) = d.map(crate::duration::Duration::check_in_file) {
                report(
                    &at(i, &[Seg::Key("timeouts"), Seg::Key(name)]),
                    format!("services[{i}].timeouts.{name}: {e}"),
                );
            }
        }
        for (j, b) in svc.backends.iter().enumerate() {
            if !(1..=MAX_WEIGHT).contains(&b.weight) {
                report(
                    &at(
                        i,
                        &[Seg::Key("backends"), Seg::Index(j), Seg::Key("weight")],
                    ),
                    format!(
                        "services[{i}].backends[{j}]: weight must be between 1 and {MAX_WEIGHT}"
                    ),
                );
            }
        }
    }
}

/// meshd looks up `::ffff:a.b.c.d` as `a.b.c.d`: one address, two spellings.
pub(super) fn canonical(address: std::net::IpAddr) -> std::net::IpAddr {
    match address {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, std::net::IpAddr::V4),
        v4 => v4,
    }
}

/// One app per source address.
pub(super) fn check_identities<'a>(
    identities: impl Iterator<Item = &'a Identity>,
    report: &mut dyn FnMut(&[Seg<'_>], String),
) {
    let mut addresses = HashMap::new();
    for (i, id) in identities.enumerate() {
        let address = canonical(id.address);
        if let Some(first) = addresses.insert(address, &id.app) {
            report(
                &[Seg::Key("identities"), Seg::Index(i)],
                format!(
                    "identities[{i}]: address {} is already given to {first}; a shared address identifies no app",
                    id.address
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: palisade/v1
kind: NodeConfig
node: 127.0.0.2
address: 127.0.0.2
generation: 3
revision: sha256:00
services:
  - app: /prod/web
    port: 10000
    access:
      default_action: deny
      allow:
        - from: /prod/edge
    backends:
      - address: 127.0.1.1:31000
        task: prod_web.1
  - app: /prod/db
    port: 10001
    access:
      default_action: allow
identities:
  - address: 127.0.1.1
    app: /prod/web
    tasks: [prod_web.1]
";

    #[test]
    fn good_config_parses_with_defaults() {
        let c = parse_node_config("n.yaml", GOOD).unwrap();
        assert_eq!(c.services.len(), 2);
        assert_eq!(c.services[0].backends[0].weight, 1);
        assert_eq!(c.generation.0, 3);
    }

    #[test]
    fn a_udp_service_may_share_a_tcp_services_port_but_not_another_udp_one() {
        let both = GOOD.replace("    port: 10001\n", "    port: 10000\n    protocol: udp\n");
        assert!(parse_node_config("n.yaml", &both).is_ok(), "{both}");
        let twice = both.replace(
            "    port: 10000\n    access",
            "    port: 10000\n    protocol: udp\n    access",
        );
        let e = parse_node_config("n.yaml", &twice).unwrap_err();
        assert!(e[0].to_string().contains("already used"), "{e:?}");
        let tls = both.replace(
            "    protocol: udp\n",
            "    protocol: udp\n    tls: {cert: c.pem, key: k.pem}\n",
        );
        let e = parse_node_config("n.yaml", &tls).unwrap_err();
        assert!(e[0].to_string().contains("no `tls` or `vhost`"), "{e:?}");
    }

    #[test]
    fn duplicate_service_port_is_located() {
        let bad = GOOD.replace("port: 10001", "port: 10000");
        let e = parse_node_config("n.yaml", &bad).unwrap_err();
        assert_eq!(e.len(), 1);
        let msg = e[0].to_string();
        assert!(msg.starts_with("n.yaml:18:5:"), "{msg}");
        assert!(msg.contains("10000") && msg.contains("/prod/web"), "{msg}");
    }

    #[test]
    fn unknown_field_and_bad_endpoint_are_located() {
        let bad = GOOD.replace("    port: 10001", "    port: 10001\n    colour: red");
        let e = parse_node_config("n.yaml", &bad).unwrap_err();
        assert!(e[0].to_string().starts_with("n.yaml:19:"), "{}", e[0]);
        let bad = GOOD.replace("127.0.1.1:31000", "127.0.1.1");
        let e = parse_node_config("n.yaml", &bad).unwrap_err();
        assert!(e[0].to_string().starts_with("n.yaml:15:"), "{}", e[0]);
    }

    #[test]
    fn zero_or_overlong_timeouts_are_located() {
        // `idle: 0s` once reached `tokio::time::interval(0)` on the first HTTP/2 connection.
        let bad = GOOD.replace(
            "    port: 10001\n",
            "    port: 10001\n    timeouts: {idle: 0s}\n",
        );
        let e = parse_node_config("n.yaml", &bad).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        let msg = e[0].to_string();
        assert!(msg.starts_with("n.yaml:19:16: "), "{msg}");
        assert!(msg.contains("greater than zero"), "{msg}");
        let bad = GOOD.replace(
            "    port: 10001\n",
            "    port: 10001\n    timeouts:\n      tunnel_idle: 100000000000s\n",
        );
        let e = parse_node_config("n.yaml", &bad).unwrap_err();
        let msg = e[0].to_string();
        assert!(msg.starts_with("n.yaml:20:7: "), "{msg}");
        assert!(msg.contains("at most"), "{msg}");
    }

    #[test]
    fn one_address_in_two_spellings_is_a_shared_address() {
        let bad = format!(
            "{GOOD}  - address: \"::ffff:127.0.1.1\"\n    app: /prod/db\n    tasks: [prod_db.1]\n"
        );
        let e = parse_node_config("n.yaml", &bad).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].to_string().contains("identities[1]"), "{}", e[0]);
    }

    #[test]
    fn zero_timeouts_built_in_memory_are_problems() {
        let mut c = parse_node_config("n.yaml", GOOD).unwrap();
        c.services[1].timeouts.idle = Some(crate::duration::Duration(std::time::Duration::ZERO));
        let p = problems(&c);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("services[1].timeouts.idle"), "{p:?}");
    }

    #[test]
    fn revision_ignores_generation_only() {
        let mut c = parse_node_config("n.yaml", GOOD).unwrap();
        let r1 = c.content_revision();
        c.generation = c.generation.next();
        assert_eq!(r1, c.content_revision());
        c.services.pop();
        assert_ne!(r1, c.content_revision());
    }

    #[test]
    fn text_built_from_shared_services_is_the_plain_serialization() {
        let c = parse_node_config("n.yaml", GOOD).unwrap();
        let plain = format!(
            "# Written by configsrv; do not edit. meshd reloads it on change.\n{}",
            yaml_serde::to_string(&c).unwrap()
        );
        assert_eq!(c.to_yaml(), plain);
        let mut empty = c.clone();
        empty.services.clear();
        assert!(empty.to_yaml().contains("services: []"));
        assert_eq!(
            parse_node_config("n.yaml", &empty.to_yaml()).unwrap(),
            empty
        );
        assert!(problems(&c).is_empty());
        let mut dup = c.clone();
        dup.services[1].port = dup.services[0].port;
        assert_eq!(problems(&dup).len(), 1);
    }

    #[test]
    fn written_text_parses_back() {
        let c = parse_node_config("n.yaml", GOOD).unwrap();
        assert_eq!(parse_node_config("n.yaml", &c.to_yaml()).unwrap(), c);
    }
}
