//! TCP mode: connect to a backend (moving on to the next after a failed
//! connect), then copy bytes both ways until either side closes or the
//! connection's drain deadline passes.

use crate::snapshot::{Route, Upstream};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// How long one backend connect may take before the next backend is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

async fn connect_one(upstream: &Upstream) -> std::io::Result<TcpStream> {
    let attempt = async {
        match upstream {
            Upstream::Addr(addr) => TcpStream::connect(addr).await,
            Upstream::Name(ep) => TcpStream::connect((ep.host.as_str(), ep.port)).await,
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            ))
        })
}

/// Connects to the next healthy backend in turn, trying each at most once.
pub async fn connect(route: &Route) -> Option<TcpStream> {
    for i in route.picks.attempts(&route.carried.cursor) {
        let upstream = &route.backends[i];
        match connect_one(upstream).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Some(stream);
            }
            Err(e) => {
                route.metrics.connect_failures.increment(1);
                tracing::warn!(app = %route.app, backend = ?upstream, error = %e, "backend connect failed; trying the next");
            }
        }
    }
    None
}

/// Copies both ways until done, or until `stop` fires (drain deadline or shutdown).
pub async fn pipe(mut downstream: TcpStream, mut upstream: TcpStream, stop: CancellationToken) {
    tokio::select! {
        result = tokio::io::copy_bidirectional(&mut downstream, &mut upstream) => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = stop.cancelled() => {
            tracing::debug!("connection closed at the drain deadline");
        }
    }
}
