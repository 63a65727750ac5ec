#![allow(clippy::unwrap_used)]
use super::*;
use crate::node_config::parse_node_config;

const FILE: &str = "apiVersion: palisade/v1
kind: NodeConfig
node: n1
address: 127.0.204.1
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
  - address: 127.0.1.9
    app: /prod/db
    tasks: [prod_db.1, prod_db.2]
  - address: 172.17.0.2
    app: /prod/edge
    tasks: [prod_edge.1]
  - address: \"::1\"
    app: /prod/v6
    tasks: [prod_v6.1]
";

fn joined(parts: &NodeParts) -> String {
    let bytes: Vec<u8> = parts.segments().iter().flatten().copied().collect();
    String::from_utf8(bytes).unwrap()
}

/// The full config split into parts: the identities at `local` stay the node's own.
fn split(full: &NodeConfig, local: &[usize]) -> NodeParts {
    let (mut own, mut everywhere) = (Vec::new(), Vec::new());
    for (i, id) in full.identities.iter().enumerate() {
        if local.contains(&i) {
            own.push(id.clone());
        } else {
            everywhere.push(id.clone());
        }
    }
    let mut head = full.clone();
    head.services.clear();
    head.identities.clear();
    NodeParts::new(
        head,
        own,
        Arc::new(Shared::new(full.services.clone(), everywhere)),
    )
}

#[test]
fn parts_join_into_the_plain_text_with_the_plain_revision() {
    let full = parse_node_config("n.yaml", FILE).unwrap();
    let mut cases = vec![full.clone()];
    let mut no_services = full.clone();
    no_services.services.clear();
    cases.push(no_services);
    let mut nothing = full.clone();
    nothing.services.clear();
    nothing.identities.clear();
    cases.push(nothing);
    for c in &cases {
        let n = c.identities.len();
        let locals: Vec<Vec<usize>> = vec![
            vec![],
            (0..n).collect(),
            vec![0],
            vec![n.saturating_sub(1)],
            vec![1, 2],
        ];
        for local in locals {
            let parts = split(c, &local);
            assert_eq!(joined(&parts), c.to_yaml(), "local {local:?}");
            assert_eq!(parts.revision(), c.content_revision(), "local {local:?}");
            assert_eq!(&parts.to_config(), c);
            assert!(parts.problems().is_empty());
            assert!(parts.shared.problems().is_empty());
            assert_eq!(parse_node_config("n.yaml", &joined(&parts)).unwrap(), *c);
        }
    }
}

#[test]
fn a_local_identity_on_a_shared_address_is_a_problem() {
    let full = parse_node_config("n.yaml", FILE).unwrap();
    let mut parts = split(&full, &[2]);
    parts.local[0].address = "::ffff:127.0.1.9".parse().unwrap();
    let p = parts.problems();
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("127.0.1.9") && p[0].contains("n1"), "{p:?}");
    let mut dup = full.clone();
    dup.services[1].port = dup.services[0].port;
    let p = split(&dup, &[]).shared.problems();
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("every node"), "{p:?}");
}

#[test]
fn equal_shared_bytes_are_reused() {
    let full = parse_node_config("n.yaml", FILE).unwrap();
    let a = split(&full, &[2]);
    let mut b = Shared::new(full.services.clone(), a.shared.identities().to_vec());
    b.reuse(&a.shared);
    assert_eq!(
        b.services_yaml().as_ptr(),
        a.shared.services_yaml().as_ptr()
    );
    assert_eq!(
        b.identities_yaml.as_ptr(),
        a.shared.identities_yaml.as_ptr()
    );
    let mut c = Shared::new(full.services[..1].to_vec(), vec![]);
    c.reuse(&a.shared);
    assert_ne!(c.services_yaml(), a.shared.services_yaml());
}
