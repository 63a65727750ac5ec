//! TCP mode: connect to a backend (moving on to the next after a failed
//! connect), then copy bytes both ways until either side closes, the tunnel
//! stays quiet for `tunnel_idle`, or the connection's drain deadline passes.

use super::connect::connect_backend;
use super::tunnel::copy_with_idle;
use crate::select::Tried;
use crate::snapshot::Route;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

/// Carries one allowed downstream connection to a backend of `route`.
pub async fn serve<D>(
    downstream: D,
    peer: SocketAddr,
    route: &Route,
    certs: &crate::tls::CertStore,
    stop: CancellationToken,
) where
    D: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut tried = Tried::default();
    while let Some(i) = route.choose(peer.ip(), &tried) {
        if !tried.push(i) {
            break;
        }
        let b = &route.backends[i];
        route.backend_metrics(i).requests.increment(1);
        // Boxed: a (TLS) connect's state would otherwise stay in the
        // tunnel's task for its whole life.
        match Box::pin(connect_backend(route, i, certs)).await {
            Ok(upstream) => {
                route.success(i);
                let _in_flight = b.state.begin();
                copy_with_idle(downstream, upstream, route.timeouts.tunnel_idle, stop).await;
                return;
            }
            Err(e) => {
                route.metrics().connect_failures.increment(1);
                route.failure(i);
                tracing::warn!(app = %route.app, backend = %b.label, error = %e, "backend connect failed; trying the next");
            }
        }
    }
    route.metrics().no_backend.increment(1);
    tracing::warn!(%peer, dst_app = %route.app, "no healthy backend could be reached; connection closed");
}
