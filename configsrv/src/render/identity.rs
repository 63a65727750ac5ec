//! A node's identity table: which source address belongs to which app. An
//! address used by several apps identifies none of them.

use super::host_address;
use crate::state::{ClusterState, Networking, TaskPhase};
use schemas::{AppId, Identity, TaskId};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The identities of the live tasks on the node that `hosts` stand for.
pub fn identities(state: &ClusterState, hosts: &BTreeSet<String>) -> Vec<Identity> {
    let mut seen: BTreeMap<IpAddr, (BTreeSet<AppId>, Vec<TaskId>)> = BTreeMap::new();
    for app in &state.apps {
        for task in &app.tasks {
            if task.phase == TaskPhase::NotRunning || !hosts.contains(&task.host) {
                continue;
            }
            let mut addresses = task.addresses.clone();
            // Host networking: the task speaks from its agent's address.
            if app.networking == Networking::Host {
                addresses.extend(host_address(state, &task.host));
            }
            addresses.sort();
            addresses.dedup();
            for addr in addresses {
                let (apps, tasks) = seen.entry(addr).or_default();
                apps.insert(app.id.clone());
                tasks.push(task.id.clone());
            }
        }
    }
    seen.into_iter()
        .filter_map(|(address, (apps, mut tasks))| {
            let mut apps = apps.into_iter();
            let app = apps.next()?;
            if apps.next().is_some() {
                return None;
            }
            tasks.sort();
            tasks.dedup();
            Some(Identity {
                address,
                app,
                tasks,
            })
        })
        .collect()
}
