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
use crate::snapshot::Route;
use crate::swap::Runtime;
use schemas::Protocol;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The two signals of a listener's connections.
#[derive(Debug, Clone)]
pub struct Signals {
    /// Finish what is in flight and close (HTTP: no new requests). A child
    /// of `stop`, so it fires with it too: an idle connection waits on
    /// this one alone (one waiter, not two, in every idle connection).
    pub draining: CancellationToken,
    /// Close now: the drain deadline has passed.
    pub stop: CancellationToken,
}

impl Default for Signals {
    fn default() -> Signals {
        let stop = CancellationToken::new();
        Signals {
            draining: stop.child_token(),
            stop,
        }
    }
}

/// What an allowed connection holds while it lives: its slot of the app's
/// `max_connections` and its count in the `active` gauge, both given back
/// when it ends, however it ends. Moved into the connection's innermost
/// state (`Conn`, the tunnel) so that no wrapper future holds it.
#[derive(Debug)]
pub struct Held {
    route: Arc<Route>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Held {
    fn new(route: &Arc<Route>, permit: Option<OwnedSemaphorePermit>) -> Held {
        route.metrics().active.increment(1.0);
        Held {
            route: Arc::clone(route),
            _permit: permit,
        }
    }
}

impl Held {
    /// The listen address of the connection's service.
    pub fn listen(&self) -> SocketAddr {
        self.route.listen
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.route.metrics().active.decrement(1.0);
    }
}

/// Judges one connection accepted on the listener bound at `local` and
/// spawns its task on `tasks`: plain HTTP, plain TCP and TLS connections
/// are tasks of their own types, each as large as its own state, so an
/// idle keep-alive connection does not carry a tunnel's or a handshake's
/// state (a task is as large as its future's largest state), and no
/// wrapper future holds a second copy of what the proxy's future holds.
pub fn spawn_connection(
    tasks: &TaskTracker,
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    runtime: &Arc<Runtime>,
    signals: &Signals,
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
    let src = snapshot.identities.app_name(peer.ip());
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
    let permit = match &route.carried.limit {
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
    let held = Held::new(&route, permit);
    let (runtime, signals) = (Arc::clone(runtime), signals.clone());
    let Some(acceptor) = snapshot_tls(&runtime, &route) else {
        match route.protocol {
            // UDP routes live in `Snapshot::udp_routes`; no TCP listener serves one.
            Protocol::Udp => {}
            Protocol::Tcp => {
                tasks.spawn(tunnel(stream, peer, runtime, signals.stop, client, held));
            }
            Protocol::Http => {
                let conn = http_conn(peer, judged, src, runtime, &signals, false, client, held);
                // meshd's HTTP/1.1 server hands a connection that opens
                // with the HTTP/2 preface to meshd's HTTP/2 server.
                tasks.spawn(proxy::h1::serve(stream, conn));
            }
        }
        return;
    };
    let header_timeout = route.timeouts.request_header;
    tasks.spawn(tls_connection(
        acceptor,
        stream,
        header_timeout,
        peer,
        judged,
        src,
        runtime,
        signals,
        client,
        held,
    ));
}

/// A TLS connection's task: the handshake, then the proxy. The stream is
/// handed to `carry` in a scope that ends before its future is awaited, so
/// that the task is as large as the larger of the two, not their sum
/// (issue 17: a local whose scope spans an await is kept in the task).
#[allow(clippy::too_many_arguments)] // the TLS branch of `spawn_connection`, its one caller
async fn tls_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    header_timeout: std::time::Duration,
    peer: SocketAddr,
    judged: Judged,
    src: Arc<str>,
    runtime: Arc<Runtime>,
    signals: Signals,
    client: proxy::rtt::ClientSocket,
    held: Held,
) {
    // The handshake gets the request-header timeout: a slow or silent client is cut off.
    let carried = match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => {
            let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let tls = if h2 { Tls::H2 } else { Tls::Http1 };
            carry(
                tls_stream, peer, judged, src, runtime, signals, tls, client, held,
            )
        }
        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
    };
    carried.await;
}

/// The acceptor of a service that terminates TLS.
fn snapshot_tls(runtime: &Runtime, route: &Route) -> Option<tokio_rustls::TlsAcceptor> {
    route
        .tls
        .as_ref()
        .map(|t| runtime.certs.acceptor(&t.cert, &t.key))
}

/// Whether a connection came over TLS, and which protocol ALPN chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    Http1,
    H2,
}

/// The future that carries a decrypted stream to the TCP or HTTP proxy.
/// Not an `async fn`: one would keep its arguments (the 1.2 KB TLS
/// session among them) beside the future they move into, for as long as
/// the connection lives (issue 17).
#[allow(clippy::too_many_arguments)] // the TLS branch of `spawn_connection`, its one caller
fn carry<I>(
    io: I,
    peer: SocketAddr,
    judged: Judged,
    src: Arc<str>,
    runtime: Arc<Runtime>,
    signals: Signals,
    tls: Tls,
    client: proxy::rtt::ClientSocket,
    held: Held,
) -> Either<impl Future<Output = ()> + Send, Pin<Box<dyn Future<Output = ()> + Send>>>
where
    I: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + proxy::park::Parkable
        + Unpin
        + Send
        + 'static,
{
    // Boxed: a tunnel over TLS holds ~8 KB of state and the HTTP/2 server is
    // large, and both are rare here: inline, every idle TLS HTTP/1.1
    // connection's task would carry them.
    match judged.route.protocol {
        Protocol::Udp => Either::Right(Box::pin(std::future::ready(()))),
        Protocol::Tcp => Either::Right(Box::pin(tunnel(
            io,
            peer,
            runtime,
            signals.stop,
            client,
            held,
        ))),
        Protocol::Http => {
            let conn = http_conn(peer, judged, src, runtime, &signals, true, client, held);
            // HTTP/1.1 takes meshd's own server; HTTP/2 (chosen by ALPN, or
            // recognised by its preface in h1::serve) takes meshd's `h2`.
            if tls == Tls::H2 {
                Either::Right(Box::pin(proxy::h2::serve(io, conn, bytes::BytesMut::new())))
            } else {
                Either::Left(proxy::h1::serve(io, conn))
            }
        }
    }
}

/// A TCP-mode connection: registered so that a reload denying its source
/// closes it, then carried to a backend.
async fn tunnel<I>(
    io: I,
    peer: SocketAddr,
    runtime: Arc<Runtime>,
    stop: CancellationToken,
    client: proxy::rtt::ClientSocket,
    held: Held,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let route = &held.route;
    // Its own stop: fired at the drain deadline, or by a reload that
    // denies this source.
    let stop = stop.child_token();
    let _open = runtime.tunnels.open(route.listen, peer.ip(), stop.clone());
    // Once per connection, as it is carried: the user-to-app breakdown of
    // a TCP service weighs by connections.
    let us = client.rtt_us();
    if us != 0 {
        route.metrics().client_rtt.record_ns(u64::from(us) * 1000);
    }
    proxy::tcp::serve(io, peer, route, &runtime.certs, stop).await;
    drop(_open);
    if runtime.tunnels.is_empty() {
        // The last tunnel went: the buffers the burst left in this
        // thread's cache go back to the system.
        proxy::buffers::let_go();
    }
}

/// An HTTP connection's state for the proxy, on a service port.
#[allow(clippy::too_many_arguments)] // the fields of `Conn`, from the judged connection
fn http_conn(
    peer: SocketAddr,
    judged: Judged,
    src: Arc<str>,
    runtime: Arc<Runtime>,
    signals: &Signals,
    https: bool,
    client: proxy::rtt::ClientSocket,
    held: Held,
) -> proxy::http::Conn {
    proxy::http::Conn {
        target: proxy::http::Target::Service(Mutex::new(judged)),
        trusted: runtime.trusts_forwarded(peer.ip()),
        runtime,
        ip: peer.ip(),
        port: peer.port(),
        src_app: src,
        peer_header: peer_text(peer),
        stop: signals.stop.clone(),
        draining: signals.draining.clone(),
        https,
        client,
        held: Some(held),
    }
}

/// A client's `X-Forwarded-For` value: its address as text.
fn peer_text(peer: SocketAddr) -> Box<[u8]> {
    peer.ip().to_string().into_bytes().into_boxed_slice()
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
    let src: Arc<str> = runtime.load().map_or_else(
        || Arc::from(crate::identity::UNKNOWN),
        |s| s.identities.app_name(peer.ip()),
    );
    let conn = |https, client| proxy::http::Conn {
        target: proxy::http::Target::Edge,
        runtime: Arc::clone(&runtime),
        ip: peer.ip(),
        port: peer.port(),
        src_app: Arc::clone(&src),
        peer_header: peer_text(peer),
        stop: signals.stop.clone(),
        draining: signals.draining.clone(),
        https,
        trusted: runtime.trusts_forwarded(peer.ip()),
        client,
        held: None,
    };
    match tls {
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(crate::timeouts::REQUEST_HEADER, acceptor.accept(stream))
                    .await;
            if let Ok(Ok(tls_stream)) = handshake {
                // HTTP/2 chosen by ALPN takes `h2`; HTTP/1.1 takes `h1`.
                if tls_stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                    proxy::h2::serve(tls_stream, conn(true, client), bytes::BytesMut::new()).await;
                } else {
                    proxy::h1::serve(tls_stream, conn(true, client)).await;
                }
            }
        }
        // meshd's HTTP/1.1 server hands a connection that opens with the
        // HTTP/2 preface to `h2`.
        None => proxy::h1::serve(stream, conn(false, client)).await,
    }
}

#[cfg(test)]
mod tests;
