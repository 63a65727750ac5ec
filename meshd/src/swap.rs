//! Reload step 4: the running snapshot, swapped atomically, and the outcome
//! of the last reload for `/status`. Connections load the snapshot once, at
//! accept; a swap never touches a connection that is already open.

use crate::error::ReloadError;
use crate::metrics;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwapOption;
use schemas::{NodeConfig, NodeName};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// The outcome of the last reload attempt.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    /// Whether it was applied.
    pub ok: bool,
    /// The generation it carried, when the file could be read that far.
    pub generation: Option<u64>,
    /// Why it was refused.
    pub error: Option<String>,
    /// When.
    pub at: SystemTime,
}

/// Everything the admin endpoint reports besides the snapshot.
#[derive(Debug, Default)]
pub struct Report {
    /// The last reload, if any.
    pub last_reload: Option<ReloadStatus>,
    /// Listen addresses that could not be bound, with the error.
    pub listener_errors: BTreeMap<SocketAddr, String>,
    /// The generation whose listeners have been opened: what `/status`
    /// reports, so a client that sees it can connect at once.
    pub listening_generation: Option<u64>,
    /// Open sessions of each bound UDP service port, counted by the port's task.
    pub udp_sessions: BTreeMap<SocketAddr, Arc<std::sync::atomic::AtomicUsize>>,
}

/// The running config of this node.
#[derive(Debug)]
pub struct Runtime {
    /// This node's name (`--node`).
    pub node: NodeName,
    /// `--bind`, overriding the config's address.
    pub bind: Option<IpAddr>,
    /// `--access-log`, when given.
    pub access_log: Option<crate::access_log::AccessLog>,
    /// Certificates of TLS services, reloaded when their files change.
    pub certs: crate::tls::CertStore,
    /// Open tunnels, judged again at each reload.
    pub tunnels: Arc<crate::judge::Tunnels>,
    /// `--trust-forwarded`: sources whose `X-Forwarded-Proto` and
    /// `X-Request-Id` are kept.
    pub trusted_forwarders: Vec<schemas::Cidr>,
    /// Each service listener's lot for its quiet HTTP/1.1 connections.
    pub lots: crate::proxy::park::Lots,
    current: ArcSwapOption<Snapshot>,
    report: Mutex<Report>,
}

impl Runtime {
    /// A runtime with nothing to serve yet.
    pub fn new(
        node: NodeName,
        bind: Option<IpAddr>,
        access_log: Option<crate::access_log::AccessLog>,
    ) -> Runtime {
        Runtime {
            node,
            bind,
            access_log,
            certs: crate::tls::CertStore::default(),
            tunnels: Arc::default(),
            trusted_forwarders: Vec::new(),
            lots: crate::proxy::park::Lots::default(),
            current: ArcSwapOption::empty(),
            report: Mutex::new(Report::default()),
        }
    }

    /// The snapshot to serve a new connection with.
    pub fn load(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Whether `peer` is a trusted forwarder.
    pub fn trusts_forwarded(&self, peer: IpAddr) -> bool {
        self.trusted_forwarders.iter().any(|c| c.contains(peer))
    }

    /// Runs `f` on the snapshot in force, without touching its reference
    /// count (the request path).
    pub fn with_current<T>(&self, f: impl FnOnce(&Snapshot) -> T) -> Option<T> {
        self.current.load().as_deref().map(f)
    }

    /// The current route of the service listening at `local`, without
    /// touching the snapshot's reference count (the HTTP request path).
    pub fn route(&self, local: &SocketAddr) -> Option<Arc<crate::snapshot::Route>> {
        self.current
            .load()
            .as_ref()
            .and_then(|s| s.routes.get(local).cloned())
    }

    /// Compiles and swaps in a validated config; returns the new snapshot.
    pub fn apply(&self, config: NodeConfig) -> Arc<Snapshot> {
        let previous = self.load();
        let generation = config.generation.0;
        let snapshot = Arc::new(Snapshot::compile(config, self.bind, previous.as_deref()));
        self.current.store(Some(Arc::clone(&snapshot)));
        // Requests take the new verdicts as they come; open tunnels are
        // judged here, once the new snapshot is in force.
        let revoked = self.tunnels.revoke(&snapshot);
        if revoked > 0 {
            ::metrics::counter!(metrics::REVOKED).increment(revoked as u64);
        }
        ::metrics::counter!(metrics::RELOADS).increment(1);
        ::metrics::gauge!(metrics::GENERATION).set(generation as f64);
        tracing::info!(generation, revision = %snapshot.revision().0, services = snapshot.routes.len(), "config applied");
        self.with_report(|r| {
            r.last_reload = Some(ReloadStatus {
                ok: true,
                generation: Some(generation),
                error: None,
                at: SystemTime::now(),
            })
        });
        snapshot
    }

    /// Records a refused reload; the running snapshot stays.
    pub fn refuse(&self, error: &ReloadError) {
        ::metrics::counter!(metrics::RELOAD_FAILURES).increment(1);
        tracing::error!(error = %error, "config refused; the running config stays");
        let generation = match error {
            ReloadError::NotNewer { found, .. } => Some(*found),
            _ => None,
        };
        self.with_report(|r| {
            r.last_reload = Some(ReloadStatus {
                ok: false,
                generation,
                error: Some(error.to_string()),
                at: SystemTime::now(),
            })
        });
    }

    /// Reads or changes the report under its lock.
    pub fn with_report<T>(&self, f: impl FnOnce(&mut Report) -> T) -> T {
        // A panic elsewhere while holding the lock leaves a report that is
        // still whole (each field is written in one go), so keep using it.
        f(&mut self.report.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
