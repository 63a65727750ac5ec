//! One downstream connection: load the snapshot once -> identify the source
//! -> authorize -> pick a backend -> proxy. A denied connection is closed
//! before any byte is read or forwarded.

use crate::authz::Verdict;
use crate::proxy;
use crate::swap::Runtime;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Serves one accepted connection on the listener bound at `local`.
pub async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    runtime: Arc<Runtime>,
    stop: CancellationToken,
) {
    let Some(snapshot) = runtime.load() else {
        return;
    };
    let Some(route) = snapshot.routes.get(&local).cloned() else {
        // The service went away between accept and now: its listener is draining.
        return;
    };
    let (decision, counter) = route.authorize(&snapshot, peer.ip());
    counter.increment(1);
    let src = snapshot
        .identities
        .lookup(peer.ip())
        .map_or("unknown", |i| snapshot.config.identities[i].app.as_str());
    match decision.verdict {
        Verdict::Deny => {
            tracing::info!(%peer, src_app = src, dst_app = %route.app, rule = %decision.decider, "connection denied");
            return;
        }
        Verdict::WouldDeny => {
            tracing::info!(%peer, src_app = src, dst_app = %route.app, rule = %decision.decider, "audit: connection would be denied");
        }
        Verdict::Allow => {}
    }
    drop(snapshot);
    let _ = stream.set_nodelay(true);
    route.metrics.active.increment(1.0);
    match proxy::tcp::connect(&route).await {
        Some(upstream) => proxy::tcp::pipe(stream, upstream, stop).await,
        None => {
            route.metrics.no_backend.increment(1);
            tracing::warn!(%peer, dst_app = %route.app, "no healthy backend could be reached; connection closed");
        }
    }
    route.metrics.active.decrement(1.0);
}
