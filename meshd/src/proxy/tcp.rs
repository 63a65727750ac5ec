//! TCP mode: connect to a backend (moving on to the next after a failed
//! connect), then copy bytes both ways until either side closes, the tunnel
//! stays quiet for `tunnel_idle`, or the connection's drain deadline passes.
//! Between two plain sockets the kernel splices large bursts.

use super::connect::connect_backend;
use super::stream::UpstreamIo;
use super::tunnel::{copy_with_idle, splice_with_idle, Carried};
use crate::select::Tried;
use crate::snapshot::Route;
use std::any::Any;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Carries one allowed downstream connection to a backend of `route`.
pub async fn serve<D>(
    downstream: D,
    peer: SocketAddr,
    route: &Route,
    certs: &crate::tls::CertStore,
    stop: CancellationToken,
) where
    D: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
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
                let idle = route.timeouts.tunnel_idle;
                let mut other = Some(downstream);
                let carried = match (take_plain(&mut other), upstream, other) {
                    (Some(down), UpstreamIo::Plain(up), _) => {
                        splice_with_idle(down, up, idle, stop).await
                    }
                    (Some(down), up, _) => copy_with_idle(down, up, idle, stop).await,
                    (None, up, Some(down)) => copy_with_idle(down, up, idle, stop).await,
                    // The stream is in one of the two.
                    (None, _, None) => Carried::default(),
                };
                count(route, carried);
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

/// Takes the downstream out of `slot` when it is a plain socket (not
/// TLS-terminated); leaves it there otherwise.
fn take_plain<D: 'static>(slot: &mut Option<D>) -> Option<TcpStream> {
    (slot as &mut dyn Any)
        .downcast_mut::<Option<TcpStream>>()
        .and_then(Option::take)
}

/// Once per tunnel (TCP mode, or an upgraded HTTP connection), as it
/// closes: a counter add per request would cost TCP mode's small
/// exchanges more than the copy does.
pub(crate) fn count(route: &Route, carried: Carried) {
    let m = route.metrics();
    m.bytes_up.increment(carried.a_to_b);
    m.bytes_down.increment(carried.b_to_a);
    if carried.spliced > 0 {
        m.bytes_spliced.increment(carried.spliced);
    }
}
