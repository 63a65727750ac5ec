//! Verdicts that follow the policy in force (invariant 8). A connection
//! keeps its verdict with the generation it was taken on and takes it again
//! when a reload swapped the snapshot, so every request is judged by the
//! policy it runs under at the cost of one integer compare. Open tunnels
//! (TCP mode, upgraded connections) carry no requests to judge: each reload
//! judges them again and closes those whose source is now denied.

use crate::authz::{Decision, Verdict};
use crate::snapshot::{Route, Snapshot};
use schemas::Generation;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio_util::sync::CancellationToken;

/// One source's verdict at one service, and the generation it was taken on.
#[derive(Debug, Clone)]
pub struct Judged {
    /// The service's route in that generation.
    pub route: Arc<Route>,
    /// The verdict.
    pub decision: Decision,
    generation: Generation,
}

impl Judged {
    /// A verdict taken on `snapshot`.
    pub fn new(route: Arc<Route>, decision: Decision, snapshot: &Snapshot) -> Judged {
        Judged {
            route,
            decision,
            generation: snapshot.generation(),
        }
    }

    /// Takes the verdict again if `snapshot` is not the one it was taken
    /// on. A service gone from the snapshot keeps its last route and
    /// verdict: its listener is draining.
    pub fn refresh(&mut self, snapshot: &Snapshot, peer: IpAddr) {
        if snapshot.generation() == self.generation {
            return;
        }
        self.generation = snapshot.generation();
        if let Some(route) = snapshot.routes.get(&self.route.listen) {
            self.decision = route.authorize(snapshot, peer).0;
            self.route = Arc::clone(route);
        }
    }
}

/// The open tunnels of this node, judged again at every reload.
#[derive(Debug, Default)]
pub struct Tunnels {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Tunnel>>,
}

#[derive(Debug)]
struct Tunnel {
    listen: SocketAddr,
    peer: IpAddr,
    stop: CancellationToken,
}

/// A tunnel's place in `Tunnels`; dropping it forgets the tunnel.
#[derive(Debug)]
pub struct Registration {
    tunnels: Arc<Tunnels>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut open = self.tunnels.lock();
        open.remove(&self.id);
        if open.is_empty() && open.capacity() > KEPT_ROOM {
            // A burst's table goes back to the allocator with it.
            *open = HashMap::new();
        }
    }
}

/// Room the registry keeps once the last tunnel has gone.
const KEPT_ROOM: usize = 64;

impl Tunnels {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Tunnel>> {
        // Each entry is inserted or removed whole: a poisoned map is still sound.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a tunnel from `peer` to the service listening at `listen`;
    /// `stop` is cancelled if a reload denies it.
    pub fn open(
        self: &Arc<Self>,
        listen: SocketAddr,
        peer: IpAddr,
        stop: CancellationToken,
    ) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Tunnel { listen, peer, stop });
        Registration {
            tunnels: Arc::clone(self),
            id,
        }
    }

    /// Closes every tunnel that `snapshot` denies; returns how many.
    /// Tunnels of a service the snapshot no longer has are left to its
    /// listener's drain. Audit mode never closes (`WouldDeny` lets through).
    pub fn revoke(&self, snapshot: &Snapshot) -> usize {
        let open = self.lock();
        let mut closed = 0;
        for t in open.values() {
            let Some(route) = snapshot.routes.get(&t.listen) else {
                continue;
            };
            if route.authorize(snapshot, t.peer).0.verdict == Verdict::Deny
                && !t.stop.is_cancelled()
            {
                tracing::info!(peer = %t.peer, dst_app = %route.app, "reload denies an open tunnel's source; closed");
                t.stop.cancel();
                closed += 1;
            }
        }
        closed
    }

    /// How many tunnels are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
