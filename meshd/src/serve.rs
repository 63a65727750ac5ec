//! One downstream connection: load the snapshot once -> identify the source
//! -> authorize -> hand over to the TCP or HTTP proxy. A denied TCP
//! connection is closed before any byte is read or forwarded; a denied HTTP
//! request gets 403. Only allowed connections hold a slot of the app's
//! `max_connections`, so a denied source cannot lock an app out. HTTP
//! requests are judged again after each reload (`judge`); a TCP connection
//! is registered so that a reload denying its source closes it.

use crate::authz::Verdict;
use crate::judge::Judged;
use crate::proxy;
use crate::swap::Runtime;
use hyper::header::HeaderValue;
use schemas::Protocol;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The two signals of a listener's connections.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// Finish what is in flight and close (HTTP: no new requests).
    pub draining: CancellationToken,
    /// Close now: the drain deadline has passed.
    pub stop: CancellationToken,
}

/// Serves one accepted connection on the listener bound at `local`.
pub async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    runtime: Arc<Runtime>,
    signals: Signals,
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
    let src: Arc<str> = snapshot
        .identities
        .lookup(peer.ip())
        .map_or("unknown", |i| snapshot.config.identities[i].app.as_str())
        .into();
    let judged = Judged::new(Arc::clone(&route), decision, &snapshot);
    drop(snapshot);
    match decision.verdict {
        Verdict::Deny => {
            tracing::info!(%peer, src_app = &*src, dst_app = %route.app, rule = %decision.decider, "connection denied");
            if route.protocol == Protocol::Tcp {
                return;
            }
        }
        Verdict::WouldDeny => {
            tracing::info!(%peer, src_app = &*src, dst_app = %route.app, rule = %decision.decider, "audit: connection would be denied");
        }
        Verdict::Allow => {}
    }
    let _permit = match &route.carried.limit {
        // A denied HTTP connection is answered 403 and closed: it takes no slot.
        Some(_) if !decision.verdict.lets_through() => None,
        Some((limit, sem)) => match Arc::clone(sem).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                tracing::warn!(%peer, dst_app = %route.app, limit, "max_connections reached; connection closed");
                return;
            }
        },
        None => None,
    };
    let _ = stream.set_nodelay(true);
    // Taken from the TCP socket before TLS is put on it.
    let client = proxy::rtt::ClientSocket::new(&stream);
    route.metrics().active.increment(1.0);
    let tls = snapshot_tls(&runtime, &route);
    match tls {
        // Boxed: the handshake's and the TLS stream's states would
        // otherwise size every connection's task, plain ones included.
        Some(acceptor) => {
            Box::pin(async {
                // The handshake gets the request-header timeout: a slow or silent client is cut off.
                match tokio::time::timeout(route.timeouts.request_header, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(tls_stream)) => {
                        let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        let tls = if h2 { Tls::H2 } else { Tls::Http1 };
                        carry(
                            tls_stream, peer, judged, src, &runtime, signals, tls, client,
                        )
                        .await
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            })
            .await
        }
        None => {
            carry(
                stream,
                peer,
                judged,
                src,
                &runtime,
                signals,
                Tls::No,
                client,
            )
            .await
        }
    }
    route.metrics().active.decrement(1.0);
}

/// The acceptor of a service that terminates TLS.
fn snapshot_tls(
    runtime: &Runtime,
    route: &crate::snapshot::Route,
) -> Option<tokio_rustls::TlsAcceptor> {
    route
        .tls
        .as_ref()
        .map(|t| runtime.certs.acceptor(&t.cert, &t.key))
}

/// Whether a connection came over TLS, and which protocol ALPN chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    No,
    Http1,
    H2,
}

/// Hands the (plain or decrypted) stream to the TCP or HTTP proxy.
#[allow(clippy::too_many_arguments)] // one call site per TLS outcome, all in `connection`
async fn carry<I>(
    io: I,
    peer: SocketAddr,
    judged: Judged,
    src: Arc<str>,
    runtime: &Arc<Runtime>,
    signals: Signals,
    tls: Tls,
    client: proxy::rtt::ClientSocket,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let route = Arc::clone(&judged.route);
    match route.protocol {
        // UDP routes live in `Snapshot::udp_routes`; no TCP listener serves one.
        Protocol::Udp => {}
        Protocol::Tcp => {
            // Its own stop: fired at the drain deadline, or by a reload
            // that denies this source.
            let stop = signals.stop.child_token();
            let _open = runtime.tunnels.open(route.listen, peer.ip(), stop.clone());
            // Once per connection, as it is carried: the user-to-app
            // breakdown of a TCP service weighs by connections.
            let us = client.rtt_us();
            if us != 0 {
                route.metrics().client_rtt.record_ns(u64::from(us) * 1000);
            }
            proxy::tcp::serve(io, peer, &route, &runtime.certs, stop).await
        }
        Protocol::Http => {
            let peer_header = HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or(HeaderValue::from_static("unknown"));
            let conn = proxy::http::Conn {
                target: proxy::http::Target::Service(Mutex::new(judged)),
                runtime: Arc::clone(runtime),
                peer,
                src_app: src,
                peer_header,
                access_log: runtime.access_log.clone(),
                stop: signals.stop,
                https: tls != Tls::No,
                trusted: runtime.trusts_forwarded(peer.ip()),
                client,
            };
            // HTTP/1.1 takes meshd's own server; HTTP/2 (chosen by ALPN, or
            // recognised by its preface in h1::serve) takes hyper's.
            if tls == Tls::H2 {
                // Boxed: hyper's connection state is large, and rare here.
                Box::pin(proxy::http::serve(io, conn, signals.draining)).await;
            } else {
                proxy::h1::serve(io, conn, signals.draining).await;
            }
        }
    }
}

/// Serves one connection on a shared edge listener (plain or TLS).
pub async fn edge_connection(
    stream: TcpStream,
    peer: SocketAddr,
    runtime: Arc<Runtime>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    signals: Signals,
) {
    let _ = stream.set_nodelay(true);
    // Taken from the TCP socket before TLS is put on it.
    let client = proxy::rtt::ClientSocket::new(&stream);
    let src: Arc<str> = runtime
        .load()
        .and_then(|s| {
            s.identities
                .lookup(peer.ip())
                .map(|i| s.config.identities[i].app.as_str().into())
        })
        .unwrap_or_else(|| "unknown".into());
    let conn = |https, client| proxy::http::Conn {
        target: proxy::http::Target::Edge,
        runtime: Arc::clone(&runtime),
        peer,
        src_app: Arc::clone(&src),
        peer_header: HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown")),
        access_log: runtime.access_log.clone(),
        stop: signals.stop.clone(),
        https,
        trusted: runtime.trusts_forwarded(peer.ip()),
        client,
    };
    match tls {
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(crate::timeouts::REQUEST_HEADER, acceptor.accept(stream))
                    .await;
            if let Ok(Ok(tls_stream)) = handshake {
                // HTTP/2 chosen by ALPN takes hyper's server; HTTP/1.1 meshd's own.
                if tls_stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                    proxy::http::serve(tls_stream, conn(true, client), signals.draining.clone())
                        .await;
                } else {
                    proxy::h1::serve(tls_stream, conn(true, client), signals.draining.clone())
                        .await;
                }
            }
        }
        // meshd's HTTP/1.1 server hands a connection that opens with the
        // HTTP/2 preface to hyper's.
        None => proxy::h1::serve(stream, conn(false, client), signals.draining.clone()).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every held connection is one task, as large as its future's largest
    /// state: this prints the figure (`--nocapture`) and keeps it bounded.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let local = listener.local_addr().expect("local address");
        let stream = TcpStream::connect(local).await.expect("connect");
        let runtime = Arc::new(Runtime::new("node".parse().expect("node name"), None, None));
        let task = connection(stream, local, local, runtime, Signals::default());
        let size = std::mem::size_of_val(&task);
        eprintln!("serve::connection future: {size} bytes");
        // 12 KB before the TLS, HTTP/2, connect and per-request states were boxed.
        assert!(size <= 4096, "a connection's task future is {size} bytes");
    }
}
