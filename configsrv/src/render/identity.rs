//! The identity tables: which source address belongs to which app, per node.
//! An address unique in the cluster (a task's own address on a container
//! network; the agent address of a host-networked app alone on its agent)
//! identifies its app in every node file, so a task calling another node's
//! meshd is still itself there. A Docker bridge address (172.17.x, reused on
//! every agent) identifies its app only on its own node. An address that
//! several apps may speak from identifies none of them.

use super::host_address;
use crate::state::{ClusterState, Networking, TaskPhase};
use schemas::{AppId, Identity, TaskId};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Where a task may show up speaking from an address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// On every node.
    Everywhere,
    /// Only on the node of this host (a bridge address).
    OnlyOn(String),
    /// On every node but this host's: a bridge task's traffic leaves its
    /// agent masqueraded behind the agent's address.
    AwayFrom(String),
}

/// One app's use of one address.
#[derive(Debug, Clone)]
struct Claim {
    app: AppId,
    task: TaskId,
    seen: Seen,
    /// Whether this use makes the address the app's. A masqueraded bridge
    /// task only spoils the agent address for others: many processes of its
    /// agent speak from that address, and DESIGN.md grants it to
    /// host-networked apps only.
    grants: bool,
}

impl Claim {
    fn visible_on(&self, hosts: &BTreeSet<String>) -> bool {
        match &self.seen {
            Seen::Everywhere => true,
            Seen::OnlyOn(h) => hosts.contains(h),
            Seen::AwayFrom(h) => !hosts.contains(h),
        }
    }
}

/// Every live task's addresses across the cluster, computed once per render.
#[derive(Debug, Default)]
pub struct Claims {
    /// Addresses whose claims hold on every node: resolved once.
    everywhere: BTreeMap<IpAddr, Option<Identity>>,
    /// Addresses with a node-bound claim: resolved per node.
    per_node: BTreeMap<IpAddr, Vec<Claim>>,
    /// The claims on addresses that several apps use on every node.
    all: BTreeMap<IpAddr, Vec<Claim>>,
}

/// Collects every live task's claims on source addresses.
pub fn claims(state: &ClusterState) -> Claims {
    let mut by_address: BTreeMap<IpAddr, Vec<Claim>> = BTreeMap::new();
    for app in &state.apps {
        for task in &app.tasks {
            if task.phase == TaskPhase::NotRunning {
                continue;
            }
            let mut claim = |address: IpAddr, seen: Seen, grants: bool| {
                by_address.entry(address).or_default().push(Claim {
                    app: app.id.clone(),
                    task: task.id.clone(),
                    seen,
                    grants,
                });
            };
            let agent = host_address(state, &task.host);
            match app.networking {
                Networking::Container => {
                    for a in &task.addresses {
                        claim(*a, Seen::Everywhere, true);
                    }
                }
                Networking::Host => {
                    // Marathon lists the agent's address as a host task's own.
                    for a in task.addresses.iter().chain(&agent) {
                        claim(*a, Seen::Everywhere, true);
                    }
                }
                Networking::Bridge => {
                    for a in &task.addresses {
                        claim(*a, Seen::OnlyOn(task.host.clone()), true);
                    }
                    if let Some(a) = agent {
                        claim(a, Seen::AwayFrom(task.host.clone()), false);
                    }
                }
            }
        }
    }
    let mut out = Claims::default();
    for (address, list) in by_address {
        if list.iter().all(|c| c.seen == Seen::Everywhere) {
            out.everywhere
                .insert(address, resolve(address, list.iter()));
            if list.iter().any(|c| c.app != list[0].app) {
                out.all.insert(address, list);
            }
        } else {
            out.per_node.insert(address, list);
        }
    }
    out
}

impl Claims {
    /// Addresses that several apps speak from on every node, with those
    /// apps: such an address identifies none of them anywhere, so meshd
    /// judges it by CIDR rules alone (`allow::close_shared` turns a deny
    /// naming one of its apps into a deny of the address). Addresses shared
    /// only away from their home node (a bridge task masqueraded behind its
    /// agent) are left out: on their home node they identify their app, and
    /// a deny of the address would refuse it there too.
    pub fn shared(&self) -> BTreeMap<IpAddr, BTreeSet<AppId>> {
        self.all
            .iter()
            .map(|(a, list)| (*a, list.iter().map(|c| c.app.clone()).collect()))
            .collect()
    }

    /// The identities every node file carries (addresses unique in the
    /// cluster), sorted by address.
    pub fn everywhere(&self) -> Vec<Identity> {
        self.everywhere.values().flatten().cloned().collect()
    }

    /// The identities only the node that `hosts` stand for carries, sorted
    /// by address; never an address of `everywhere` (the two are disjoint).
    pub fn local(&self, hosts: &BTreeSet<String>) -> Vec<Identity> {
        self.per_node
            .iter()
            .filter_map(|(address, list)| {
                let visible = list.iter().filter(|c| c.visible_on(hosts));
                resolve(*address, visible)
            })
            .collect()
    }
}

/// The app that alone uses `address` among `claims`, if one does and may own it.
fn resolve<'a>(address: IpAddr, claims: impl Iterator<Item = &'a Claim>) -> Option<Identity> {
    let mut apps = BTreeSet::new();
    let mut tasks = Vec::new();
    let mut granted = false;
    for c in claims {
        apps.insert(&c.app);
        tasks.push(c.task.clone());
        granted |= c.grants;
    }
    let mut apps = apps.into_iter();
    let app = apps.next()?.clone();
    if apps.next().is_some() || !granted {
        return None;
    }
    tasks.sort();
    tasks.dedup();
    Some(Identity {
        address,
        app,
        tasks,
    })
}
