//! UDP from Marathon's port protocols (`udp`, `udp,tcp`, `tcp,udp`) and
//! from `protocol: udp` in policy, on Marathon payloads in the shape of
//! `../shared/fixtures/` (tests/fixtures/marathon/apps-embed-tasks-udp.json).

use super::*;
use crate::sources::marathon::model::{AppsResponse, MarathonApp};
use crate::state::Transport;
use schemas::Protocol;

const FIXTURE: &str = include_str!("../../../tests/fixtures/marathon/apps-embed-tasks-udp.json");

fn cluster(json: &str) -> ClusterState {
    let r: AppsResponse = serde_json::from_str(json).unwrap();
    let apps = r.apps.into_iter().map(|a| a.into_app().unwrap()).collect();
    ClusterState::new(apps, vec![])
}

fn policies(text: &str) -> PolicySet {
    PolicySet::from_files([("p.yaml", text)]).unwrap()
}

fn sides(r: &Rendered, app: &str) -> Vec<(u16, Protocol)> {
    let configs = r.configs();
    let node = configs.values().next().unwrap();
    node.services
        .iter()
        .filter(|s| s.app.as_str() == app)
        .map(|s| (s.port.0, s.protocol))
        .collect()
}

#[test]
fn marathon_spells_both_transports_either_way_and_nothing_else() {
    assert_eq!(Transport::parse("tcp"), Some(Transport::Tcp));
    assert_eq!(Transport::parse("udp"), Some(Transport::Udp));
    assert_eq!(Transport::parse("udp,tcp"), Some(Transport::Both));
    assert_eq!(Transport::parse("tcp,udp"), Some(Transport::Both));
    assert_eq!(Transport::parse("UDP, TCP"), Some(Transport::Both));
    assert_eq!(Transport::parse("sctp"), None);
    assert_eq!(Transport::parse(""), None);
}

#[test]
fn port_protocols_render_a_tcp_and_a_udp_service_each_where_declared() {
    let r = render(&cluster(FIXTURE), &PolicySet::default());
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    // BRIDGE (Marathon 1.5 portMappings): serf's 7946 is `udp,tcp`.
    assert_eq!(
        sides(&r, "/kong/kong"),
        [
            (10201, Protocol::Tcp),
            (10246, Protocol::Tcp),
            (10246, Protocol::Udp)
        ]
    );
    // Host networking, portDefinitions: `udp` only.
    assert_eq!(sides(&r, "/infra/dns"), [(10253, Protocol::Udp)]);
    // Pre-1.5 docker.portMappings, spelled `tcp,udp`.
    assert_eq!(
        sides(&r, "/infra/statsd"),
        [(10225, Protocol::Tcp), (10225, Protocol::Udp)]
    );
    let configs = r.configs();
    let node = &configs[&"10.0.2.148".parse().unwrap()];
    let serf_udp = node
        .services
        .iter()
        .find(|s| s.port.0 == 10246 && s.protocol == Protocol::Udp)
        .unwrap();
    let backends: Vec<String> = serf_udp
        .backends
        .iter()
        .map(|b| b.address.to_string())
        .collect();
    assert_eq!(backends, ["10.0.2.148:31246", "10.0.2.149:31346"]);
    // Every node file passes meshd's own checks (a port shared by TCP and UDP included).
    for c in configs.values() {
        assert!(schemas::node_config::problems(c).is_empty(), "{c:?}");
    }
}

#[test]
fn protocol_udp_in_policy_makes_every_port_udp_and_keeps_edge_settings_off() {
    let p = policies(
        "apiVersion: palisade/v1\nkind: Policy\napps:\n  /kong/kong:\n    protocol: udp\n    vhost: [kong.example.com]\n    timeouts: {udp_idle: 5s}\n",
    );
    let r = render(&cluster(FIXTURE), &p);
    assert_eq!(
        sides(&r, "/kong/kong"),
        [(10201, Protocol::Udp), (10246, Protocol::Udp)]
    );
    let configs = r.configs();
    let node = configs.values().next().unwrap();
    for s in node
        .services
        .iter()
        .filter(|s| s.app.as_str() == "/kong/kong")
    {
        assert!(s.vhost.is_empty() && s.tls.is_none(), "{s:?}");
        assert_eq!(
            s.timeouts.udp_idle.map(|d| d.0),
            Some(std::time::Duration::from_secs(5))
        );
    }
}

#[test]
fn a_udp_port_and_a_tcp_port_of_one_number_are_two_claims() {
    let json = r#"{"apps":[
      {"id":"/a","portDefinitions":[{"port":10300,"protocol":"udp"}]},
      {"id":"/b","portDefinitions":[{"port":10300,"protocol":"tcp"}]},
      {"id":"/c","portDefinitions":[{"port":10300,"protocol":"udp,tcp"}]}
    ]}"#;
    let r = render(&cluster(json), &PolicySet::default());
    // /a takes UDP 10300 and /b TCP 10300; /c loses both of its claims.
    let conflicts: Vec<String> = r.errors.iter().map(ToString::to_string).collect();
    assert_eq!(conflicts.len(), 2, "{conflicts:?}");
    assert!(conflicts.iter().all(|e| e.contains("/c")), "{conflicts:?}");
}

#[test]
fn an_unknown_port_protocol_is_the_apps_own_error() {
    let app: MarathonApp =
        serde_json::from_str(r#"{"id":"/x","portDefinitions":[{"port":10301,"protocol":"sctp"}]}"#)
            .unwrap();
    let e = app.into_app().unwrap_err().to_string();
    assert!(e.contains("/x") && e.contains("sctp"), "{e}");
}
