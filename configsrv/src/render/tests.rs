//! Renderer rules, on hand-built clusters.

use super::*;
use crate::state::{Agent, App, Networking, PortSpec, Task, TaskPhase};
use schemas::{Action, Health, ServicePort};

fn task(id: &str, host: &str, addr: Option<&str>, phase: TaskPhase, healthy: bool) -> Task {
    Task {
        id: id.parse().unwrap(),
        host: host.into(),
        ports: vec![31000],
        addresses: addr.map(|a| a.parse().unwrap()).into_iter().collect(),
        phase,
        healthy,
    }
}

fn app(id: &str, port: u16, networking: Networking, tasks: Vec<Task>) -> App {
    App {
        id: id.parse().unwrap(),
        networking,
        service_ports: vec![PortSpec {
            index: 0,
            service_port: ServicePort(port),
            container_port: Some(8080),
            transport: crate::state::Transport::Tcp,
        }],
        protocol: None,
        balance: None,
        vhost: vec![],
        health_checks: 0,
        tasks,
    }
}

fn cluster() -> ClusterState {
    use TaskPhase::*;
    ClusterState::new(
        vec![
            app(
                "/prod/web",
                10000,
                Networking::Container,
                vec![
                    task("web.1", "127.0.0.2", Some("127.0.1.1"), Running, true),
                    task("web.2", "127.0.0.3", Some("127.0.1.2"), Running, false),
                    task("web.3", "127.0.0.2", Some("127.0.1.3"), Killing, true),
                    task("web.4", "127.0.0.2", Some("127.0.1.4"), NotRunning, true),
                ],
            ),
            app(
                "/prod/edge",
                10001,
                Networking::Container,
                vec![task(
                    "edge.1",
                    "127.0.0.2",
                    Some("127.0.2.1"),
                    Running,
                    true,
                )],
            ),
            app(
                "/a/host",
                10002,
                Networking::Host,
                vec![task("host.1", "127.0.0.3", None, Running, true)],
            ),
        ],
        vec![Agent {
            hostname: "idle-agent".into(),
            address: Some("127.0.0.9".parse().unwrap()),
            active: true,
        }],
    )
}

fn policies(text: &str) -> PolicySet {
    PolicySet::from_files([("p.yaml", text)]).unwrap()
}

#[test]
fn render_ignores_input_order() {
    let state = cluster();
    let mut reversed = state.clone();
    reversed.apps.reverse();
    for a in &mut reversed.apps {
        a.tasks.reverse();
    }
    let reversed = ClusterState::new(reversed.apps, reversed.agents);
    let p = PolicySet::default();
    let a = render(&state, &p).configs();
    let b = render(&reversed, &p).configs();
    assert_eq!(a, b);
    let texts = |n: &BTreeMap<NodeName, NodeConfig>| {
        n.values().map(NodeConfig::to_yaml).collect::<Vec<_>>()
    };
    assert_eq!(texts(&a), texts(&b));
}

#[test]
fn every_task_host_and_active_agent_gets_a_node_with_every_service() {
    let r = render(&cluster(), &PolicySet::default());
    let names: Vec<&str> = r.nodes.keys().map(NodeName::as_str).collect();
    assert_eq!(names, ["127.0.0.2", "127.0.0.3", "idle-agent"]);
    for config in r.configs().values() {
        let ports: Vec<u16> = config.services.iter().map(|s| s.port.0).collect();
        assert_eq!(ports, [10000, 10001, 10002]);
    }
    assert_eq!(
        r.nodes[&"idle-agent".parse().unwrap()].head.address,
        "127.0.0.9".parse::<IpAddr>().unwrap()
    );
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

#[test]
fn a_node_that_follows_gets_a_config_without_tasks_or_agent() {
    let followed = cluster().with_followers(vec![
        "127.0.0.7".parse().unwrap(),
        "127.0.0.2".parse().unwrap(),
    ]);
    let r = render(&followed, &PolicySet::default());
    let names: Vec<&str> = r.nodes.keys().map(NodeName::as_str).collect();
    assert_eq!(names, ["127.0.0.2", "127.0.0.3", "127.0.0.7", "idle-agent"]);
    let lone = r.configs()[&"127.0.0.7".parse().unwrap()].clone();
    assert_eq!(lone.address, "127.0.0.7".parse::<IpAddr>().unwrap());
    let ports: Vec<u16> = lone.services.iter().map(|s| s.port.0).collect();
    assert_eq!(ports, [10000, 10001, 10002]);
    // A follower that is also a task host changes nothing for it.
    let plain = render(&cluster(), &PolicySet::default());
    let key: NodeName = "127.0.0.2".parse().unwrap();
    assert_eq!(r.nodes[&key].head.revision, plain.nodes[&key].head.revision);
}

#[test]
fn backends_carry_health_and_draining_and_skip_tasks_not_running() {
    let r = render(&cluster(), &PolicySet::default());
    let web = r.configs().into_values().next().unwrap().services[0].clone();
    let got: Vec<(String, Health)> = web
        .backends
        .iter()
        .map(|b| (b.address.to_string(), b.health))
        .collect();
    assert_eq!(
        got,
        [
            ("127.0.1.1:8080".to_owned(), Health::Healthy),
            ("127.0.1.2:8080".to_owned(), Health::Unhealthy),
            ("127.0.1.3:8080".to_owned(), Health::Draining),
        ]
    );
}

fn ids(r: &Rendered, node: &str) -> Vec<(String, String)> {
    r.configs()[&node.parse().unwrap()]
        .identities
        .iter()
        .map(|i| (i.address.to_string(), i.app.to_string()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn unique_addresses_identify_their_app_on_every_node() {
    // Own task addresses (container networks) and a host-networked app's
    // agent address are unique in the cluster: every node knows them, so a
    // task calling another node's meshd is still itself there.
    let r = render(&cluster(), &PolicySet::default());
    let everywhere = pairs(&[
        ("127.0.0.3", "/a/host"),
        ("127.0.1.1", "/prod/web"),
        ("127.0.1.2", "/prod/web"),
        ("127.0.1.3", "/prod/web"),
        ("127.0.2.1", "/prod/edge"),
    ]);
    for node in ["127.0.0.2", "127.0.0.3", "idle-agent"] {
        assert_eq!(ids(&r, node), everywhere, "{node}");
    }
    let node = r.configs()[&"idle-agent".parse().unwrap()].clone();
    let web = node
        .identities
        .iter()
        .find(|i| i.app.as_str() == "/prod/web");
    assert_eq!(web.unwrap().tasks[0].as_str(), "web.1");
}

#[test]
fn bridge_addresses_identify_their_app_only_on_their_own_node() {
    use TaskPhase::*;
    let mut state = cluster();
    // Docker bridges reuse 172.17.x on every agent.
    state.apps.push(app(
        "/b/bridge",
        10003,
        Networking::Bridge,
        vec![task("b.1", "127.0.0.2", Some("172.17.0.2"), Running, true)],
    ));
    state.apps.push(app(
        "/c/bridge",
        10004,
        Networking::Bridge,
        vec![task("c.1", "127.0.0.3", Some("172.17.0.2"), Running, true)],
    ));
    let state = ClusterState::new(state.apps, state.agents);
    let r = render(&state, &PolicySet::default());
    let bridge = |node: &str| -> Vec<(String, String)> {
        ids(&r, node)
            .into_iter()
            .filter(|(a, _)| a.starts_with("172.17."))
            .collect()
    };
    assert_eq!(bridge("127.0.0.2"), pairs(&[("172.17.0.2", "/b/bridge")]));
    assert_eq!(bridge("127.0.0.3"), pairs(&[("172.17.0.2", "/c/bridge")]));
    assert_eq!(bridge("idle-agent"), []);
}

#[test]
fn a_bridge_app_beside_a_host_app_shares_the_agent_address_off_its_node() {
    // Docker masquerades a bridge task's traffic to other nodes behind its
    // agent's address, so there the host-networked app is not alone on it.
    let mut state = cluster();
    state.apps.push(app(
        "/b/bridge",
        10003,
        Networking::Bridge,
        vec![task(
            "b.1",
            "127.0.0.3",
            Some("172.17.0.2"),
            TaskPhase::Running,
            true,
        )],
    ));
    let state = ClusterState::new(state.apps, state.agents);
    let r = render(&state, &PolicySet::default());
    let agent = |node: &str| -> Vec<(String, String)> {
        ids(&r, node)
            .into_iter()
            .filter(|(a, _)| a == "127.0.0.3")
            .collect()
    };
    assert_eq!(agent("127.0.0.3"), pairs(&[("127.0.0.3", "/a/host")]));
    assert_eq!(agent("127.0.0.2"), []);
    assert_eq!(agent("idle-agent"), []);
}

#[test]
fn an_address_shared_by_two_apps_identifies_neither() {
    let mut state = cluster();
    state.apps.push(app(
        "/b/host",
        10003,
        Networking::Host,
        vec![task("b.1", "127.0.0.3", None, TaskPhase::Running, true)],
    ));
    let state = ClusterState::new(state.apps, state.agents);
    let r = render(&state, &PolicySet::default());
    for node in r.configs().values() {
        assert!(
            node.identities
                .iter()
                .all(|i| i.address.to_string() != "127.0.0.3"),
            "{}: {:?}",
            node.node,
            node.identities
        );
    }
}

#[test]
fn a_port_claimed_twice_stays_with_the_first_app() {
    let mut state = cluster();
    state
        .apps
        .push(app("/z/late", 10000, Networking::Container, vec![]));
    let state = ClusterState::new(state.apps, state.agents);
    let r = render(&state, &PolicySet::default());
    let node = r.configs().into_values().next().unwrap();
    assert_eq!(
        node.services.iter().filter(|s| s.port.0 == 10000).count(),
        1
    );
    assert_eq!(node.services[0].app.as_str(), "/prod/web");
    assert!(
        matches!(&r.errors[..], [RenderError::PortConflict { app, port: 10000, .. }] if app == "/z/late")
    );
}

#[test]
fn access_comes_from_the_most_specific_entry() {
    let p = policies(
        "apiVersion: palisade/v1\nkind: Policy\ndefaults:\n  action: deny\napps:\n  /prod/*:\n    allow:\n      - from: /prod/*\n  /prod/web:\n    protocol: http\n    allow:\n      - from: /prod/edge\n    deny:\n      - from_cidr: 127.0.9.0/24\n",
    );
    let r = render(&cluster(), &p);
    let node = r.configs().into_values().next().unwrap();
    let web = &node.services[0];
    assert_eq!(web.access.policy.as_ref().unwrap().as_str(), "/prod/web");
    assert_eq!(web.protocol, schemas::Protocol::Http);
    assert_eq!(web.access.allow.len(), 1);
    assert_eq!(web.access.deny.len(), 1);
    let edge = &node.services[1];
    assert_eq!(edge.access.policy.as_ref().unwrap().as_str(), "/prod/*");
    let host = &node.services[2];
    assert_eq!(host.access.policy, None);
    assert_eq!(host.access.default_action, Action::Deny);
}

#[test]
fn revision_changes_with_content_only() {
    let p = PolicySet::default();
    let a = render(&cluster(), &p);
    let b = render(&cluster(), &p);
    let first = |r: &Rendered| r.nodes.values().next().unwrap().head.revision.clone();
    assert_eq!(first(&a), first(&b));
    let mut changed = cluster();
    changed.apps[0].tasks.pop();
    assert_ne!(first(&a), first(&render(&changed, &p)));
}

fn vhost_of(r: &Rendered, app: &str) -> Vec<String> {
    let node = r.configs().into_values().next().unwrap();
    let svc = node.services.iter().find(|s| s.app.as_str() == app);
    svc.map(|s| s.vhost.clone()).unwrap_or_default()
}

fn with_label_vhosts(apps: &[(&str, u16, &[&str])]) -> ClusterState {
    let mut state = cluster();
    for (id, port, hosts) in apps {
        let mut a = app(id, *port, Networking::Container, vec![]);
        a.vhost = hosts.iter().map(|h| (*h).to_owned()).collect();
        state.apps.push(a);
    }
    ClusterState::new(state.apps, state.agents)
}

#[test]
fn a_label_vhost_never_takes_a_policy_files_host() {
    let state = with_label_vhosts(&[(
        "/label/app",
        10003,
        &["shop.example.com", "free.example.com"],
    )]);
    // The policy claims the host under one path only: the host is still the policy's.
    let p = policies(
        "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/web:\n    vhost: [Shop.Example.com]\n    path_prefix: /shop\n",
    );
    let r = render(&state, &p);
    assert_eq!(vhost_of(&r, "/label/app"), ["free.example.com"]);
    assert_eq!(vhost_of(&r, "/prod/web"), ["Shop.Example.com"]);
    assert!(
        matches!(&r.errors[..], [RenderError::VhostReserved { app, host, owner }]
            if app == "/label/app" && host == "shop.example.com" && owner == "/prod/web"),
        "{:?}",
        r.errors
    );
}

#[test]
fn two_label_apps_claiming_one_vhost_both_lose_it_with_an_error_each() {
    let state = with_label_vhosts(&[
        ("/l/a", 10003, &["shared.example.com", "a.example.com"]),
        ("/l/b", 10004, &["shared.example.com"]),
    ]);
    let r = render(&state, &PolicySet::default());
    assert_eq!(vhost_of(&r, "/l/a"), ["a.example.com"]);
    assert_eq!(vhost_of(&r, "/l/b"), Vec::<String>::new());
    let lost: Vec<(&str, &str)> = r
        .errors
        .iter()
        .filter_map(|e| match e {
            RenderError::VhostShared { app, others, .. } => Some((app.as_str(), others.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(lost, [("/l/a", "/l/b"), ("/l/b", "/l/a")], "{:?}", r.errors);
}

#[test]
fn a_group_patterns_vhost_given_to_two_apps_goes_to_neither() {
    let p = policies(
        "apiVersion: palisade/v1\nkind: Policy\napps:\n  /prod/*:\n    vhost: [prod.example.com]\n",
    );
    let r = render(&cluster(), &p);
    assert_eq!(vhost_of(&r, "/prod/web"), Vec::<String>::new());
    assert_eq!(vhost_of(&r, "/prod/edge"), Vec::<String>::new());
    assert_eq!(r.errors.len(), 2, "{:?}", r.errors);
}

#[test]
fn an_app_a_deny_names_cannot_get_in_through_a_cidr_allow_on_a_shared_address() {
    use TaskPhase::Running;
    // /dev/db and /prod/api/y are host-networked on one agent: 10.0.0.1
    // identifies neither, so meshd judges it by CIDR rules alone, and the
    // CIDR allow would let /dev/db in although the policy denies /dev/*.
    let state = ClusterState::new(
        vec![
            app(
                "/dev/db",
                10100,
                Networking::Host,
                vec![task("db.1", "agent-a", Some("10.0.0.1"), Running, true)],
            ),
            app(
                "/prod/api/y",
                10101,
                Networking::Host,
                vec![task("y.1", "agent-a", Some("10.0.0.1"), Running, true)],
            ),
        ],
        vec![],
    );
    let p = policies(
        "apiVersion: palisade/v1\nkind: Policy\ndefaults: {action: deny}\napps:\n  /prod/api/*:\n    allow: [{from_cidr: 10.0.0.0/8}]\n    deny: [{from: /dev/*}]\n",
    );
    let r = render(&state, &p);
    let config = r.configs().into_values().next().unwrap();
    assert!(config
        .identities
        .iter()
        .all(|i| i.address.to_string() != "10.0.0.1"));
    let svc = config.services.iter().find(|s| s.port.0 == 10101).unwrap();
    let addr: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let d = meshd::authz::decide(&svc.access, None, addr);
    assert_eq!(d.verdict, meshd::authz::Verdict::Deny, "{:?}", svc.access);
    // Outside clients of the range are still let in.
    let outside: std::net::IpAddr = "10.9.9.9".parse().unwrap();
    let d = meshd::authz::decide(&svc.access, None, outside);
    assert_eq!(d.verdict, meshd::authz::Verdict::Allow);
}
