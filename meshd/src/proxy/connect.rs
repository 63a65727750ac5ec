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

/// Connects to backend `i` of `route`, over TLS when the app has `upstream_tls`.
pub async fn connect_backend(
    route: &crate::snapshot::Route,
    i: usize,
    certs: &crate::tls::CertStore,
) -> std::io::Result<super::stream::UpstreamIo> {
    let tcp = connect(&route.backends[i].upstream, route.timeouts.connect).await?;
    let Some(t) = &route.upstream_tls else {
        return Ok(super::stream::UpstreamIo::Plain(tcp));
    };
    let connector = certs.connector(&t.ca).map_err(std::io::Error::other)?;
    let name = rustls_pki_types::ServerName::try_from(t.server_name.clone()).map_err(|e| {
        std::io::Error::other(format!("upstream_tls.server_name `{}`: {e}", t.server_name))
    })?;
    let tls = tokio::time::timeout(route.timeouts.connect, connector.connect(name, tcp))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake with the backend timed out",
            )
        })??;
    Ok(super::stream::UpstreamIo::Tls(Box::new(tls)))
}
