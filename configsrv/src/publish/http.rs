//! The HTTP sink: the latest text of every node's config, with an ETag, and
//! a change signal that long-polling readers (`?wait=30s`) wait on. A text
//! is kept as the segments of the node file (`NodeParts::segments`): every
//! node's entry points at the one copy of the shared services, and answers
//! stream the segments as they are.

use schemas::NodeName;
use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};
use tokio::sync::watch;

/// One node's published config.
#[derive(Debug, Clone)]
pub struct Published {
    /// The YAML text, in segments that joined make the file.
    pub text: Vec<bytes::Bytes>,
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
    pub fn put(&self, node: NodeName, text: Vec<bytes::Bytes>, generation: u64, revision: &str) {
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
                text,
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

/// A response body made of a node file's segments, sent as they are (no
/// joined copy per answer), with its exact length for `Content-Length`.
#[derive(Debug)]
pub struct Segments(std::collections::VecDeque<bytes::Bytes>);

impl Segments {
    /// The body of `text`.
    pub fn new(text: Vec<bytes::Bytes>) -> Segments {
        Segments(text.into_iter().filter(|b| !b.is_empty()).collect())
    }
}

impl http_body::Body for Segments {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}
