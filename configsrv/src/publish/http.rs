//! The HTTP sink: the latest text of every node's config, with an ETag, and
//! a change signal that long-polling readers (`?wait=30s`) wait on.

use schemas::NodeName;
use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};
use tokio::sync::watch;

/// One node's published config.
#[derive(Debug, Clone)]
pub struct Published {
    /// The YAML text.
    pub text: bytes::Bytes,
    /// `"<generation>-<revision>"`, quoted, as the ETag.
    pub etag: String,
    /// Its generation.
    pub generation: u64,
}

/// Every node's latest config.
#[derive(Debug)]
pub struct NodeStore {
    nodes: RwLock<BTreeMap<NodeName, Published>>,
    changed: watch::Sender<u64>,
}

impl Default for NodeStore {
    fn default() -> Self {
        NodeStore {
            nodes: RwLock::default(),
            changed: watch::channel(0).0,
        }
    }
}

impl NodeStore {
    /// Stores a node's config; wakes long-polls when it differs.
    pub fn put(&self, node: NodeName, text: String, generation: u64, revision: &str) {
        let etag = format!(
            "\"{generation}-{}\"",
            revision.trim_start_matches("sha256:")
        );
        let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
        if nodes.get(&node).is_some_and(|p| p.etag == etag) {
            return;
        }
        nodes.insert(
            node,
            Published {
                text: text.into(),
                etag,
                generation,
            },
        );
        drop(nodes);
        self.changed.send_modify(|n| *n += 1);
    }

    /// A node's config.
    pub fn get(&self, node: &NodeName) -> Option<Published> {
        self.nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(node)
            .cloned()
    }

    /// Every node with its generation.
    pub fn list(&self) -> Vec<(NodeName, u64)> {
        self.nodes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, p)| (n.clone(), p.generation))
            .collect()
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
