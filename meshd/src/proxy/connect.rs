//! Opening a TCP connection to one backend, within the connect timeout.

use crate::snapshot::Upstream;
use std::time::Duration;
use tokio::net::TcpStream;

/// Connects to `upstream` within `timeout`, with Nagle off.
pub async fn connect(upstream: &Upstream, timeout: Duration) -> std::io::Result<TcpStream> {
    let attempt = async {
        match upstream {
            Upstream::Addr(addr) => TcpStream::connect(addr).await,
            Upstream::Name(ep) => TcpStream::connect((ep.host.as_str(), ep.port)).await,
        }
    };
    let stream = tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            ))
        })?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
