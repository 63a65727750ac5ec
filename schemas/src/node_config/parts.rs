//! A node file in parts, for a renderer with many nodes: what every node
//! shares (the services, the identities unique in the cluster) is serialized
//! once into `Shared`, and each node keeps only its own fields and its
//! node-only identities (`NodeParts`). Joined, the parts are byte for byte
//! the text `NodeConfig::to_yaml` writes for the whole config, and
//! `NodeParts::revision` is its `content_revision`: meshd reads the same
//! file, while 100 nodes hold one copy of the shared bytes, not 100.

use super::{services_yaml, validate, Identity, NodeConfig, Service, ServicesDigest, HEADER};
use crate::ids::{Generation, Revision};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::Arc;

/// The parts of a node file every node shares, serialized once.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    services: Vec<Service>,
    services_yaml: Bytes,
    services_digest: ServicesDigest,
    /// Sorted by address.
    identities: Vec<Identity>,
    /// Every identity's entry, one after the other in address order.
    identities_yaml: Bytes,
    /// Where each entry starts in `identities_yaml`, then where the last ends.
    offsets: Vec<usize>,
}

impl Shared {
    /// Serializes the services and the identities every node carries.
    pub fn new(services: Vec<Service>, mut identities: Vec<Identity>) -> Shared {
        identities.sort_by_key(|i| i.address);
        let text = services_yaml(&services);
        let services_digest = ServicesDigest::of_yaml(&text);
        let mut yaml = String::new();
        let mut offsets = Vec::with_capacity(identities.len() + 1);
        for id in &identities {
            offsets.push(yaml.len());
            yaml.push_str(&entry_yaml(id));
        }
        offsets.push(yaml.len());
        Shared {
            services,
            services_yaml: Bytes::from(text),
            services_digest,
            identities,
            identities_yaml: Bytes::from(yaml),
            offsets,
        }
    }

    /// The services, as every node file lists them.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The identities every node file lists, sorted by address.
    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    /// The services block as written (empty when there are none).
    pub fn services_yaml(&self) -> &Bytes {
        &self.services_yaml
    }

    /// Shares the serialized bytes of `earlier` where they are equal, so
    /// nodes left unchanged by a render and the nodes it rewrote keep
    /// pointing at one copy.
    pub fn reuse(&mut self, earlier: &Shared) {
        if self.services_yaml == earlier.services_yaml {
            self.services_yaml = earlier.services_yaml.clone();
        }
        if self.identities_yaml == earlier.identities_yaml && self.offsets == earlier.offsets {
            self.identities_yaml = earlier.identities_yaml.clone();
        }
    }

    /// The serialized bytes alone (no typed services or identities), to
    /// `reuse` later at little cost.
    pub fn bytes_only(&self) -> Shared {
        Shared {
            services: Vec::new(),
            services_yaml: self.services_yaml.clone(),
            services_digest: self.services_digest.clone(),
            identities: Vec::new(),
            identities_yaml: self.identities_yaml.clone(),
            offsets: self.offsets.clone(),
        }
    }

    /// The NodeConfig rules on the shared parts, checked once for every node.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        validate::check_services(&"every node", &self.services, &mut |_, m| out.push(m));
        validate::check_identities(self.identities.iter(), &mut |_, m| out.push(m));
        out
    }
}

/// One identity as an entry of the `identities` block list.
fn entry_yaml(id: &Identity) -> String {
    // Serializing our own plain types cannot fail.
    yaml_serde::to_string(std::slice::from_ref(id)).unwrap_or_default()
}

/// One node's file in parts: its own fields and identities, and the parts
/// all nodes share.
#[derive(Debug, Clone)]
pub struct NodeParts {
    /// The node's own fields; its `services` and `identities` are empty
    /// (they are in `shared` and `local`).
    pub head: NodeConfig,
    /// Identities only this node sees (Docker bridge addresses).
    pub local: Vec<Identity>,
    /// What every node shares.
    pub shared: Arc<Shared>,
}

impl NodeParts {
    /// A node's parts; `local` must not repeat an address of `shared`.
    pub fn new(head: NodeConfig, mut local: Vec<Identity>, shared: Arc<Shared>) -> NodeParts {
        local.sort_by_key(|i| i.address);
        NodeParts {
            head,
            local,
            shared,
        }
    }

    /// The revision of the whole config: `content_revision` of `to_config()`.
    pub fn revision(&self) -> Revision {
        let mut head = self.head.without_services();
        head.identities = Vec::new();
        head.generation = Generation(0);
        head.revision = Revision::default();
        let mut h = Sha256::new();
        h.update(strip_identities(&yaml_serde::to_string(&head).unwrap_or_default()).as_bytes());
        for part in self.identities_block() {
            h.update(&part);
        }
        h.update(self.shared.services_digest.0);
        super::revision_of(&h.finalize())
    }

    /// The file's text, in order; joined, it is `to_config().to_yaml()`.
    pub fn segments(&self) -> Vec<Bytes> {
        let mut head = self.head.without_services();
        head.identities = Vec::new();
        let text = yaml_serde::to_string(&head).unwrap_or_default();
        let mut text = format!("{HEADER}{}", strip_identities(&text));
        let mut out = Vec::with_capacity(3 + 2 * self.local.len());
        if self.shared.services_yaml.is_empty() {
            out.push(Bytes::from(text));
        } else {
            // yaml_serde writes an empty list as `services: []`; the block
            // list goes in its place, at the same indentation serde uses.
            text = text.replacen("services: []\n", "services:\n", 1);
            out.push(Bytes::from(text));
            out.push(self.shared.services_yaml.clone());
        }
        out.extend(self.identities_block());
        out
    }

    /// `identities: ...` to the end of the file: the shared entries with
    /// this node's own slotted in by address.
    fn identities_block(&self) -> Vec<Bytes> {
        let shared = &self.shared;
        if shared.identities.is_empty() && self.local.is_empty() {
            return vec![Bytes::from_static(b"identities: []\n")];
        }
        let mut out = vec![Bytes::from_static(b"identities:\n")];
        let mut from = 0;
        for id in &self.local {
            let at = shared
                .identities
                .partition_point(|s| s.address < id.address);
            if at > from {
                out.push(
                    shared
                        .identities_yaml
                        .slice(shared.offsets[from]..shared.offsets[at]),
                );
            }
            out.push(Bytes::from(entry_yaml(id)));
            from = at;
        }
        if shared.identities.len() > from {
            out.push(shared.identities_yaml.slice(shared.offsets[from]..));
        }
        out
    }

    /// The NodeConfig rules this node adds to `Shared::problems`: its own
    /// identities against each other and against the shared ones.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        validate::check_identities(self.local.iter(), &mut |_, m| out.push(m));
        let shared: std::collections::HashSet<IpAddr> = self
            .local
            .iter()
            .map(|l| validate::canonical(l.address))
            .collect();
        if !shared.is_empty() {
            for s in &self.shared.identities {
                if shared.contains(&validate::canonical(s.address)) {
                    out.push(format!(
                        "identities: address {} of {} is given on node {} and cluster-wide; a shared address identifies no app",
                        s.address, s.app, self.head.node
                    ));
                }
            }
        }
        out
    }

    /// The whole config, as meshd parses the file.
    pub fn to_config(&self) -> NodeConfig {
        let mut config = self.head.clone();
        config.services = self.shared.services.clone();
        let mut ids: Vec<Identity> = self.shared.identities.clone();
        ids.extend(self.local.iter().cloned());
        ids.sort_by_key(|i| i.address);
        config.identities = ids;
        config
    }
}

/// A head serialized with no identities ends `identities: []`; the block is
/// written after it.
fn strip_identities(text: &str) -> &str {
    text.strip_suffix("identities: []\n").unwrap_or(text)
}

#[cfg(test)]
#[path = "parts_tests.rs"]
mod tests;
