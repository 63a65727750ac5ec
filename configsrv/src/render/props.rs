//! Property tests of the renderer on generated clusters and policies: input
//! order never changes a byte; no node file lets through a source that the
//! policy denies, judged by meshd's own code; whatever validates renders
//! files that `meshd check` accepts.

use super::*;
use crate::state::{Agent, App, Networking, PortSpec, Task, TaskPhase};
use meshd::authz::Verdict;
use meshd::snapshot::Snapshot;
use proptest::prelude::*;
use schemas::policy::{AppPolicy, Defaults};
use schemas::{Action, AppId, AppPattern, Balance, Mode, Protocol, Rule, ServicePort};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const APPS: &[&str] = &[
    "/prod/web",
    "/prod/api/x",
    "/prod/api/y",
    "/dev/web",
    "/dev/db",
    "/ops",
];
const GROUPS: &[&str] = &["/*", "/prod/*", "/prod/api/*", "/dev/*"];
const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "10.0.0.1/32",
    "10.1.0.0/16",
    "10.1.0.2/32",
    "172.17.0.0/16",
    "192.168.0.0/16",
];
/// Task hosts: two addresses and a hostname that only the agent list resolves.
const HOSTS: &[&str] = &["10.0.0.1", "10.0.0.2", "agent-a"];
/// Where sources outside the mesh may connect from.
const OUTSIDE: &[&str] = &[
    "10.0.0.9",
    "10.1.0.9",
    "172.17.0.9",
    "192.168.1.1",
    "8.8.8.8",
];

fn parse<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("a valid literal")
}

fn networking() -> impl Strategy<Value = Networking> {
    prop::sample::select(vec![
        Networking::Container,
        Networking::Host,
        Networking::Bridge,
    ])
}

fn task(networking: Networking) -> impl Strategy<Value = (String, Vec<IpAddr>, TaskPhase, bool)> {
    // Small address pools, so addresses are often shared.
    let address = match networking {
        Networking::Container => {
            prop::option::of((1u8..5).prop_map(|d| vec![IpAddr::V4(Ipv4Addr::new(10, 1, 0, d))]))
                .prop_map(Option::unwrap_or_default)
                .boxed()
        }
        Networking::Bridge => (1u8..4)
            .prop_map(|d| vec![IpAddr::V4(Ipv4Addr::new(172, 17, 0, d))])
            .boxed(),
        Networking::Host => Just(vec![]).boxed(),
    };
    (
        prop::sample::select(HOSTS).prop_map(str::to_owned),
        address,
        prop::sample::select(vec![
            TaskPhase::Running,
            TaskPhase::Running,
            TaskPhase::Killing,
            TaskPhase::NotRunning,
        ]),
        any::<bool>(),
    )
}

fn app(id: &'static str) -> impl Strategy<Value = App> {
    (networking(), 10_000u16..10_008, any::<bool>())
        .prop_flat_map(move |(networking, port, two_ports)| {
            (
                Just((networking, port, two_ports)),
                prop::collection::vec(task(networking), 0..4),
            )
        })
        .prop_map(move |((networking, port, two_ports), tasks)| {
            let stem = id.trim_start_matches('/').replace('/', "_");
            let ports = if two_ports { 2 } else { 1 };
            App {
                id: parse(id),
                networking,
                service_ports: (0..ports)
                    .map(|k| PortSpec {
                        index: k,
                        service_port: ServicePort(port + 100 * k as u16),
                        container_port: Some(8080 + k as u16),
                        transport: crate::state::Transport::Tcp,
                    })
                    .collect(),
                protocol: None,
                balance: None,
                vhost: vec![],
                health_checks: 0,
                tasks: tasks
                    .into_iter()
                    .enumerate()
                    .map(|(i, (host, addresses, phase, healthy))| Task {
                        id: parse(&format!("{stem}.{i}")),
                        host,
                        ports: (0..ports).map(|k| 31_000 + k as u16).collect(),
                        addresses,
                        phase,
                        healthy,
                    })
                    .collect(),
            }
        })
}

/// Apps (unique ids, as Marathon's) and agents, in generation order.
fn cluster() -> impl Strategy<Value = (Vec<App>, Vec<Agent>)> {
    let apps = prop::sample::subsequence(APPS.to_vec(), 1..=APPS.len())
        .prop_flat_map(|ids| ids.into_iter().map(app).collect::<Vec<_>>());
    let agents = prop::collection::vec(any::<bool>(), 3).prop_map(|active| {
        [
            ("agent-a", "10.0.0.3"),
            ("10.0.0.1", "10.0.0.1"),
            ("agent-b", "10.0.0.4"),
        ]
        .iter()
        .zip(active)
        .map(|((h, a), active)| Agent {
            hostname: (*h).to_owned(),
            address: Some(parse(a)),
            active,
        })
        .collect::<Vec<_>>()
    });
    (apps, agents)
}

fn pattern() -> impl Strategy<Value = AppPattern> {
    prop::sample::select([APPS, GROUPS].concat()).prop_map(parse)
}

fn rule() -> impl Strategy<Value = Rule> {
    prop_oneof![
        pattern().prop_map(|p| Rule {
            from: Some(p),
            from_cidr: None
        }),
        prop::sample::select(CIDRS).prop_map(|c| Rule {
            from: None,
            from_cidr: Some(parse(c)),
        }),
    ]
}

fn entry(settings: bool) -> impl Strategy<Value = AppPolicy> {
    (
        prop::collection::vec(rule(), 0..3),
        prop::collection::vec(rule(), 0..3),
        prop::option::of(prop::sample::select(vec![Protocol::Tcp, Protocol::Http])),
        prop::option::of(prop::sample::select(vec![
            Balance::RoundRobin,
            Balance::LeastRequest,
            Balance::P2cEwma,
            Balance::SourceHash,
        ])),
        prop::option::of(1u64..=8_760 * 3_600_000),
        prop::option::of(1u32..1000),
    )
        .prop_map(move |(allow, deny, protocol, balance, timeout, max)| {
            let mut e = AppPolicy {
                allow,
                deny,
                ..AppPolicy::default()
            };
            if settings {
                e.protocol = protocol;
                e.balance = balance;
                e.timeouts.connect = timeout
                    .map(|ms| schemas::duration::Duration(std::time::Duration::from_millis(ms)));
                e.max_connections = max;
            }
            e
        })
}

/// A policy repo: entries spread over up to three files, defaults in one.
#[derive(Debug, Clone)]
struct Repo {
    defaults: Defaults,
    /// (pattern, entry, file index).
    entries: Vec<(AppPattern, AppPolicy, usize)>,
}

impl Repo {
    /// The files, in the given order, each listing its entries in the given order.
    fn files(&self, file_order: &[usize], entry_order: &[usize]) -> Vec<(String, String)> {
        file_order
            .iter()
            .map(|&f| {
                let mut apps = yaml_serde::Mapping::new();
                for &i in entry_order {
                    let (p, e, file) = &self.entries[i];
                    if *file == f {
                        apps.insert(
                            p.as_str().into(),
                            yaml_serde::to_value(e).expect("a policy entry serializes"),
                        );
                    }
                }
                let mut doc = yaml_serde::Mapping::new();
                doc.insert("apiVersion".into(), "palisade/v1".into());
                doc.insert("kind".into(), "Policy".into());
                if f == 0 {
                    doc.insert(
                        "defaults".into(),
                        yaml_serde::to_value(self.defaults).expect("defaults serialize"),
                    );
                }
                doc.insert("apps".into(), yaml_serde::Value::Mapping(apps));
                let text = yaml_serde::to_string(&doc).expect("a policy file serializes");
                (format!("p{f}.yaml"), text)
            })
            .collect()
    }

    fn set(&self, file_order: &[usize], entry_order: &[usize]) -> PolicySet {
        let files = self.files(file_order, entry_order);
        PolicySet::from_files(files.iter().map(|(f, s)| (f.as_str(), s.as_str())))
            .expect("generated policies validate")
    }
}

fn repo(action: impl Strategy<Value = Action>, settings: bool) -> impl Strategy<Value = Repo> {
    (
        action,
        prop::collection::btree_map(pattern(), (entry(settings), 0usize..3), 0..6),
    )
        .prop_map(|(action, entries)| Repo {
            defaults: Defaults {
                action,
                mode: Mode::Enforce,
            },
            entries: entries.into_iter().map(|(p, (e, f))| (p, e, f)).collect(),
        })
}

fn any_action() -> impl Strategy<Value = Action> {
    prop::sample::select(vec![Action::Deny, Action::Allow])
}

fn shuffled<T: Clone>(items: &[T], rng: &mut fastrand::Rng) -> Vec<T> {
    let mut v = items.to_vec();
    rng.shuffle(&mut v);
    v
}

/// Every node file's text, by node.
fn texts(r: &Rendered) -> BTreeMap<NodeName, String> {
    r.nodes.iter().map(|(n, c)| (n.clone(), text(c))).collect()
}

/// A node file's text, joined from its segments as they are written.
fn text(node: &schemas::node_config::NodeParts) -> String {
    let bytes: Vec<u8> = node.segments().iter().flatten().copied().collect();
    String::from_utf8(bytes).unwrap_or_default()
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn render_is_deterministic_and_ignores_input_order(
        (apps, agents) in cluster(),
        repo in repo(any_action(), true),
        seed in any::<u64>(),
    ) {
        let in_order: Vec<usize> = (0..repo.entries.len()).collect();
        let policies = repo.set(&[0, 1, 2], &in_order);
        let state = ClusterState::new(apps.clone(), agents.clone());
        let first = render(&state, &policies);
        prop_assert_eq!(texts(&first), texts(&render(&state, &policies)));

        let mut rng = fastrand::Rng::with_seed(seed);
        let mut apps = shuffled(&apps, &mut rng);
        for a in &mut apps {
            a.tasks = shuffled(&a.tasks, &mut rng);
        }
        let state = ClusterState::new(apps, shuffled(&agents, &mut rng));
        let files = shuffled(&[0, 1, 2], &mut rng);
        let entries = shuffled(&in_order, &mut rng);
        let second = render(&state, &repo.set(&files, &entries));
        prop_assert_eq!(texts(&first), texts(&second));
        prop_assert_eq!(first.configs(), second.configs());
    }

    #[test]
    fn no_node_file_lets_through_a_source_the_policy_denies(
        (apps, agents) in cluster(),
        repo in repo(Just(Action::Deny), false),
    ) {
        let policies = repo.set(&[0, 1, 2], &(0..repo.entries.len()).collect::<Vec<_>>());
        let state = ClusterState::new(apps, agents);
        let rendered = render(&state, &policies);
        for (name, node) in &rendered.nodes {
            // As meshd reads it: the file's text, parsed and checked, compiled.
            let text = text(node);
            let parsed = schemas::parse_node_config("n.yaml", &text)
                .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            let snapshot = Snapshot::compile(parsed, None, None);
            let hosts: BTreeSet<String> = state
                .apps
                .iter()
                .flat_map(|a| &a.tasks)
                .map(|t| t.host.clone())
                .chain(state.agents.iter().filter(|a| a.active).map(|a| a.hostname.clone()))
                .filter(|h| NodeName::sanitise(h).as_ref() == Some(name))
                .collect();
            let sources = sources(&state, &hosts);
            for route in snapshot.routes.values() {
                for (app, identity, addr) in &sources {
                    if policy_denies(&policies, &route.app, identity.as_ref(), *addr) {
                        let (d, _) = route.authorize(&snapshot, *addr);
                        prop_assert_eq!(
                            d.verdict, Verdict::Deny,
                            "node {}: {:?} (identified as {:?}) from {} reached {} ({})", name, app, identity, addr, route.app, d.decider
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_policy_that_validates_renders_files_meshd_check_accepts(
        (apps, agents) in cluster(),
        repo in repo(any_action(), true),
    ) {
        let policies = repo.set(&[0, 1, 2], &(0..repo.entries.len()).collect::<Vec<_>>());
        let rendered = render(&ClusterState::new(apps, agents), &policies);
        for (name, node) in &rendered.nodes {
            let text = text(node);
            // What `meshd check FILE` runs on the file's text.
            let file = name.file_name();
            let parsed = schemas::parse_node_config(&file, &text);
            match parsed {
                Ok(parsed) => {
                    // The parts join into the whole config's own text and revision.
                    prop_assert_eq!(&parsed, &node.to_config());
                    prop_assert_eq!(&text, &node.to_config().to_yaml());
                    prop_assert_eq!(&node.head.revision, &node.to_config().content_revision());
                }
                Err(e) => prop_assert!(false, "{}: {:?}\n{}", file, e, text),
            }
        }
    }
}

/// Every source as `hosts`' node sees it: (the app it is, the identity
/// DESIGN.md gives its address there, the address). Each live task speaks
/// from addresses by its networking mode; an address that several apps
/// speak from identifies none of them, and a bridge task masqueraded
/// behind its agent's address never owns that address. Addresses outside
/// the mesh that no task uses are sources too, identified as nobody.
fn sources(
    state: &ClusterState,
    hosts: &BTreeSet<String>,
) -> Vec<(Option<AppId>, Option<AppId>, IpAddr)> {
    let mut seen: BTreeMap<IpAddr, (BTreeSet<AppId>, bool)> = BTreeMap::new();
    let mut used = BTreeSet::new();
    for app in &state.apps {
        for task in &app.tasks {
            let agent = host_address(state, &task.host);
            used.extend(task.addresses.iter().chain(&agent).copied());
            if task.phase == TaskPhase::NotRunning {
                continue;
            }
            let (from, grants): (Vec<IpAddr>, bool) = match app.networking {
                Networking::Container => (task.addresses.clone(), true),
                Networking::Host => (task.addresses.iter().chain(&agent).copied().collect(), true),
                Networking::Bridge if hosts.contains(&task.host) => (task.addresses.clone(), true),
                Networking::Bridge => (agent.into_iter().collect(), false),
            };
            for a in from {
                let entry = seen.entry(a).or_default();
                entry.0.insert(app.id.clone());
                entry.1 |= grants;
            }
        }
    }
    let mut out = Vec::new();
    for (addr, (apps, granted)) in seen {
        let identity = (apps.len() == 1 && granted)
            .then(|| apps.iter().next().cloned())
            .flatten();
        out.extend(
            apps.into_iter()
                .map(|app| (Some(app), identity.clone(), addr)),
        );
    }
    for a in OUTSIDE {
        let a: IpAddr = parse(a);
        if !used.contains(&a) {
            out.push((None, None, a));
        }
    }
    out
}

/// The policy's own evaluation: the most specific entry for the
/// destination; a matching deny, else a matching allow, else the default.
fn policy_denies(policies: &PolicySet, dst: &AppId, src: Option<&AppId>, addr: IpAddr) -> bool {
    let names = |r: &Rule| match (&r.from, &r.from_cidr) {
        (Some(p), None) => src.is_some_and(|s| p.matches(s)),
        (None, Some(c)) => c.contains(addr),
        _ => false,
    };
    let Some((_, entry)) = policies.entry_for(dst) else {
        return policies.defaults.action == Action::Deny;
    };
    if entry.deny.iter().any(names) {
        return true;
    }
    if entry.allow.iter().any(names) {
        return false;
    }
    policies.defaults.action == Action::Deny
}
