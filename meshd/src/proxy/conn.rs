//! What every request of one client connection shares (`Conn`), whichever
//! server carries it: meshd's HTTP/1.1 (`h1`) or HTTP/2 (`h2`, `http`).

use crate::authz::Decision;
use crate::judge::Judged;
use crate::snapshot::Route;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use tokio_util::sync::CancellationToken;

/// Where a connection's requests go.
pub enum Target {
    /// A service port: its route and the client's verdict, taken again
    /// whenever a reload swapped the snapshot (invariant 8). Shared by the
    /// streams of an HTTP/2 connection.
    Service(Mutex<Judged>),
    /// A shared edge listener: the app is chosen per request by host and
    /// path, and so is the verdict.
    Edge,
}

/// What every request of one client connection shares.
pub struct Conn {
    /// Where its requests go.
    pub target: Target,
    /// The running config.
    pub runtime: Arc<crate::swap::Runtime>,
    /// The client's address (its port in `port`: an `IpAddr` and a port
    /// pack with the flags below, where a `SocketAddr` takes 32 bytes).
    pub ip: IpAddr,
    /// The client's port.
    pub port: u16,
    /// The source app's name, or `unknown`.
    pub src_app: Arc<str>,
    /// `X-Forwarded-For` value for this client: its address as text
    /// (boxed: 16 bytes in every connection, not a `HeaderValue`'s 40).
    pub peer_header: Box<[u8]>,
    /// Fires at the drain deadline; closes upgraded tunnels.
    pub stop: CancellationToken,
    /// Fires at a drain (and with `stop`, its parent): no new requests.
    /// Here, not beside `Conn`, so that an idle HTTP/1.1 task holds it once.
    pub draining: CancellationToken,
    /// Whether the client came over TLS (`X-Forwarded-Proto: https`).
    pub https: bool,
    /// Whether the client is a trusted forwarder (`--trust-forwarded`),
    /// whose `X-Forwarded-Proto` and `X-Request-Id` are kept.
    pub trusted: bool,
    /// The client's TCP socket, to read its RTT from.
    pub client: super::rtt::ClientSocket,
    /// A service port's slot and gauge count, given back when the
    /// connection's state goes (`None` on an edge listener, whose accept
    /// loop holds its slot).
    pub held: Option<crate::serve::Held>,
}

impl Conn {
    /// Where this connection parks when it has been quiet a while: its
    /// service listener's lot (an edge listener's connections keep their
    /// tasks: their slot is held by the accept loop's task).
    pub fn lot(&self) -> Option<Arc<super::park::Lot>> {
        let held = self.held.as_ref()?;
        self.runtime.lots.get(held.listen())
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// The route and this client's verdict under the snapshot in force.
    pub fn judge(&self, judged: &Mutex<Judged>) -> (Arc<Route>, Decision) {
        let mut j = judged.lock().unwrap_or_else(PoisonError::into_inner);
        self.runtime.with_current(|s| j.refresh(s, self.ip));
        (Arc::clone(&j.route), j.decision)
    }
}
