//! Service listeners follow the snapshot: bind new services, keep unchanged
//! ones (their open connections never notice a reload), stop accepting on
//! removed ones and close their connections after the drain deadline. UDP
//! ports (`crate::udp`) follow the same way; their sessions are judged
//! again at every new generation and end with their port.

use crate::metrics;
use crate::serve::{self, Signals};
use crate::snapshot::Snapshot;
use crate::swap::Runtime;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

struct Bound {
    accept: JoinHandle<()>,
    /// Tells this listener's connections to finish, then to close.
    signals: Signals,
}

/// Every service listener of this node.
pub struct Listeners {
    runtime: Arc<Runtime>,
    bound: HashMap<SocketAddr, Bound>,
    connections: TaskTracker,
    drain: Duration,
    edges: Vec<Bound>,
    udp: HashMap<SocketAddr, crate::udp::listen::Bound>,
    /// The generation in force, for the UDP ports to judge their sessions again.
    reloads: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("bound", &self.bound.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Listeners {
    /// No listeners yet; removed ones drain for `drain`.
    pub fn new(runtime: Arc<Runtime>, drain: Duration) -> Listeners {
        Listeners {
            runtime,
            bound: HashMap::new(),
            connections: TaskTracker::new(),
            drain,
            edges: Vec::new(),
            udp: HashMap::new(),
            reloads: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Makes the bound listeners match `snapshot`. A port that cannot be bound
    /// is reported and tried again at the next call.
    pub fn reconcile(&mut self, snapshot: &Snapshot) {
        let removed: Vec<SocketAddr> = self
            .bound
            .keys()
            .filter(|a| !snapshot.routes.contains_key(a))
            .copied()
            .collect();
        for addr in removed {
            if let Some(b) = self.bound.remove(&addr) {
                self.runtime.lots.remove(addr);
                b.accept.abort();
                b.signals.draining.cancel();
                let (stop, drain) = (b.signals.stop, self.drain);
                tracing::info!(%addr, drain_secs = drain.as_secs(), "service removed; listener closed, connections draining");
                tokio::spawn(async move {
                    tokio::time::sleep(drain).await;
                    stop.cancel();
                });
            }
        }
        let mut errors = HashMap::new();
        for addr in snapshot.routes.keys() {
            if self.bound.contains_key(addr) {
                continue;
            }
            match bind(*addr) {
                Ok(listener) => {
                    let signals = Signals::default();
                    // Where its quiet HTTP/1.1 connections park, until it drains.
                    let lot =
                        crate::proxy::park::Lot::start(&self.connections, signals.draining.clone());
                    self.runtime.lots.insert(*addr, lot);
                    let accept = tokio::spawn(accept_loop(
                        listener,
                        *addr,
                        Arc::clone(&self.runtime),
                        self.connections.clone(),
                        signals.clone(),
                    ));
                    tracing::info!(%addr, "listening");
                    self.bound.insert(*addr, Bound { accept, signals });
                }
                Err(e) => {
                    ::metrics::counter!(metrics::LISTENER_ERRORS).increment(1);
                    tracing::error!(%addr, error = %e, "cannot listen; will retry");
                    errors.insert(*addr, e.to_string());
                }
            }
        }
        self.reconcile_udp(snapshot, &mut errors);
        self.runtime
            .with_report(|r| r.listener_errors = errors.into_iter().collect());
    }

    /// The UDP half of `reconcile`: a removed port ends its sessions at
    /// once (a datagram has no in-flight work to drain).
    fn reconcile_udp(&mut self, snapshot: &Snapshot, errors: &mut HashMap<SocketAddr, String>) {
        let generation = snapshot.generation().0;
        self.reloads.send_if_modified(|g| {
            let changed = *g != generation;
            *g = generation;
            changed
        });
        self.udp.retain(|addr, b| {
            let keep = snapshot.udp_routes.contains_key(addr);
            if !keep {
                tracing::info!(%addr, "udp service removed; socket closed, sessions ended");
                b.stop.cancel();
            }
            keep
        });
        for addr in snapshot.udp_routes.keys() {
            if self.udp.contains_key(addr) {
                continue;
            }
            match crate::udp::listen::bind(
                *addr,
                Arc::clone(&self.runtime),
                self.reloads.subscribe(),
            ) {
                Ok(b) => {
                    tracing::info!(%addr, "listening (udp)");
                    self.udp.insert(*addr, b);
                }
                Err(e) => {
                    ::metrics::counter!(metrics::LISTENER_ERRORS).increment(1);
                    tracing::error!(%addr, error = %e, "cannot listen on udp; will retry");
                    errors.insert(*addr, format!("udp: {e}"));
                }
            }
        }
    }

    /// Binds a shared edge listener (`tls` for HTTPS); it lives until
    /// shutdown. At most `max_connections` are open at once: past that a
    /// new connection is closed at accept, as a service port does.
    pub fn bind_edge(
        &mut self,
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        max_connections: usize,
    ) -> std::io::Result<()> {
        let listener = bind(addr)?;
        let limit = Arc::new(tokio::sync::Semaphore::new(max_connections));
        let signals = Signals::default();
        let (runtime, connections, s) = (
            Arc::clone(&self.runtime),
            self.connections.clone(),
            signals.clone(),
        );
        let accept = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                            tracing::warn!(%addr, %peer, max_connections, "edge connection limit reached; connection closed");
                            continue;
                        };
                        let connection = serve::edge_connection(
                            stream,
                            peer,
                            Arc::clone(&runtime),
                            tls.clone(),
                            s.clone(),
                        );
                        connections.spawn(async move {
                            connection.await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(%addr, error = %e, "edge accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        tracing::info!(%addr, "edge listening");
        self.edges.push(Bound { accept, signals });
        Ok(())
    }

    /// Graceful shutdown: stop accepting everywhere, let open connections
    /// finish within `deadline`, then close what is left.
    pub async fn shutdown(self, deadline: Duration) {
        for b in self.udp.values() {
            b.stop.cancel();
        }
        for b in self.bound.values().chain(&self.edges) {
            b.accept.abort();
            b.signals.draining.cancel();
        }
        self.connections.close();
        let open = self.connections.len();
        tracing::info!(
            open,
            deadline_secs = deadline.as_secs(),
            "draining connections"
        );
        if tokio::time::timeout(deadline, self.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.connections.len(),
                "drain deadline passed; closing the rest"
            );
            for b in self.bound.values().chain(&self.edges) {
                b.signals.stop.cancel();
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), self.connections.wait()).await;
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // A restarted meshd must rebind at once, whatever TIME_WAIT is left.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener,
    local: SocketAddr,
    runtime: Arc<Runtime>,
    connections: TaskTracker,
    signals: Signals,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                serve::spawn_connection(&connections, stream, peer, local, &runtime, &signals);
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%local, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
