//! A port's session table: by id (the key its waker and its replies carry)
//! and by client address. Ending a session here gives back its slot of
//! `max_connections`, lowers the sessions gauge and closes its socket.

use super::ready::Readiness;
use crate::metrics::UdpMetrics;
use crate::snapshot::Route;
use nix::sys::socket::SockaddrStorage;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

/// One client's session.
#[derive(Debug)]
pub struct Session {
    /// The client.
    pub peer: SocketAddr,
    /// `peer` as the kernel takes it, converted once for every reply.
    pub client: SockaddrStorage,
    /// The service's route in the snapshot in force.
    pub route: Arc<Route>,
    /// The session's backend in `route`.
    pub backend: usize,
    /// The connected upstream socket; `None` while a host name resolves.
    pub upstream: Option<Readiness>,
    /// Datagrams that came while the host name resolved (at most
    /// [`HELD_MAX`]), sent once the socket is connected: a client's first
    /// query is not lost to the lookup.
    pub held: Vec<Box<[u8]>>,
    /// Last datagram either way, on `select::now_ms`'s clock.
    pub last_ms: u64,
    /// The session's slot of `max_connections`, given back when it ends.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// Datagrams held per session while its backend's host name resolves;
/// more are dropped and counted, as a full socket buffer would.
pub const HELD_MAX: usize = 4;

/// Hashes the port's own session ids (sequential, never chosen by a
/// client, so no defence against crafted keys is needed) with one multiply,
/// instead of SipHash on every reply. Client addresses keep SipHash.
#[derive(Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        // Fibonacci hashing: spreads sequential ids over the high bits hashbrown uses too.
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The sessions of one port.
#[derive(Debug, Default)]
pub struct Table {
    by_id: HashMap<u64, Session, BuildHasherDefault<IdHasher>>,
    by_peer: HashMap<SocketAddr, u64>,
    last_id: u64,
    /// How many sessions are open, for `/status` (read from other threads).
    open: Arc<AtomicUsize>,
}

impl Table {
    /// A fresh session id (never reused by this port).
    pub fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    /// The count of open sessions, shared with `/status`.
    pub fn open_count(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.open)
    }

    /// Adds session `id` (from [`Table::next_id`]) and counts it in the gauge.
    pub fn insert(&mut self, id: u64, s: Session) {
        udp_metrics(&s.route).sessions.increment(1.0);
        self.by_peer.insert(s.peer, id);
        self.by_id.insert(id, s);
        self.open.store(self.by_id.len(), Ordering::Relaxed);
    }

    /// The session of client `peer`, with its id.
    pub fn by_peer(&mut self, peer: &SocketAddr) -> Option<(u64, &mut Session)> {
        let id = *self.by_peer.get(peer)?;
        self.by_id.get_mut(&id).map(|s| (id, s))
    }

    /// Session `id`.
    pub fn get(&self, id: u64) -> Option<&Session> {
        self.by_id.get(&id)
    }

    /// Session `id`, to change.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Session> {
        self.by_id.get_mut(&id)
    }

    /// Every session, with its id.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut Session)> {
        self.by_id.iter_mut().map(|(id, s)| (*id, s))
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Ends session `id` (nothing when it already ended).
    pub fn end(&mut self, id: u64) {
        if let Some(s) = self.by_id.remove(&id) {
            self.by_peer.remove(&s.peer);
            udp_metrics(&s.route).sessions.decrement(1.0);
            if !s.held.is_empty() {
                udp_metrics(&s.route).dropped.increment(s.held.len() as u64);
            }
            self.open.store(self.by_id.len(), Ordering::Relaxed);
        }
    }

    /// Ends every session (the port closes).
    pub fn end_all(&mut self) {
        let ids: Vec<u64> = self.by_id.keys().copied().collect();
        for id in ids {
            self.end(id);
        }
    }
}

/// The UDP handles of a route (made at compile time for UDP services).
pub fn udp_metrics(route: &Route) -> &UdpMetrics {
    route
        .carried
        .udp
        .get_or_init(|| UdpMetrics::new(route.app.as_str()))
}
