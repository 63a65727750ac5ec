//! The size bounds of each kind of connection's task (`serve.rs`).

use super::*;

/// The size of the future `f` returns, with no arguments at hand.
fn h1_task_size<F, Fut>(_: &F) -> usize
where
    F: FnOnce(TcpStream, proxy::http::Conn) -> Fut,
{
    std::mem::size_of::<Fut>()
}

/// `h1_task_size` for the tunnel's task.
fn tunnel_task_size<F, Fut>(_: &F) -> usize
where
    F: FnOnce(
        TcpStream,
        SocketAddr,
        Arc<Runtime>,
        CancellationToken,
        proxy::rtt::ClientSocket,
        Held,
    ) -> Fut,
{
    std::mem::size_of::<Fut>()
}

/// `h1_task_size` for a TLS connection's task once its handshake is done.
fn tls_carry_size<F, Fut>(_: &F) -> usize
where
    F: FnOnce(
        TlsStream,
        SocketAddr,
        Judged,
        Arc<str>,
        Arc<Runtime>,
        Signals,
        Tls,
        proxy::rtt::ClientSocket,
        Held,
    ) -> Fut,
{
    std::mem::size_of::<Fut>()
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// `h1_task_size` for a TLS connection's task, handshake included.
fn tls_task_size<F, Fut>(_: &F) -> usize
where
    F: FnOnce(
        tokio_rustls::TlsAcceptor,
        TcpStream,
        std::time::Duration,
        SocketAddr,
        Judged,
        Arc<str>,
        Arc<Runtime>,
        Signals,
        proxy::rtt::ClientSocket,
        Held,
    ) -> Fut,
{
    std::mem::size_of::<Fut>()
}

/// Every held connection is one task, as large as its future's largest
/// state (tokio adds ~250 bytes and rounds it up to 128): this prints
/// the figures (`--nocapture`) and keeps them bounded, so that an idle
/// connection's state does not grow back (issue 17: HAProxy holds an
/// idle keep-alive connection in ~1.2 KB, everything included).
#[test]
fn a_connection_task_stays_small() {
    let h1 = h1_task_size(&proxy::h1::serve::<TcpStream>);
    let tunnel = tunnel_task_size(&tunnel::<TcpStream>);
    let tls = tls_carry_size(&carry::<TlsStream>);
    let tls_task = tls_task_size(&tls_connection);
    eprintln!(
        "HTTP/1.1 connection task future: {h1} bytes; TCP tunnel task future: {tunnel} bytes; \
         TLS connection after its handshake: {tls} bytes, its task future: {tls_task} bytes"
    );
    // 2.3 KB for both before each kind took a task type of its own and
    // an idle HTTP/1.1 connection waited outside its requests' boxed state.
    assert!(
        h1 <= H1_MAX,
        "an HTTP/1.1 connection's task future is {h1} bytes"
    );
    assert!(
        tunnel <= TUNNEL_MAX,
        "a tunnel's task future is {tunnel} bytes"
    );
    assert!(
        tls <= TLS_MAX,
        "a TLS connection's task future is {tls} bytes once its handshake is done"
    );
    assert!(
        tls_task <= TLS_TASK_MAX,
        "a TLS connection's task future is {tls_task} bytes"
    );
}
/// tokio's task cell is a 128-byte header, the future with 16 bytes
/// (and the `TaskTracker`'s 8) rounded up to 128, and a 128-byte
/// trailer: at 488 bytes an idle HTTP/1.1 connection's task is 768
/// bytes, one more byte and it is 896 (as measured in debug builds,
/// which `cargo test` runs; release ones are no larger). 480 now; 616
/// before the verdict was held once, the access log and the drain
/// token were taken from where they already were, the client's
/// address packed and `X-Forwarded-For` boxed.
const H1_MAX: usize = 488;
/// A tunnel holds two sockets and its copy's (and splice's) state:
/// 1,200 bytes now, a 1,536-byte cell up to 1,256.
const TUNNEL_MAX: usize = 1256;
/// A TLS connection holds its rustls session (1,168 bytes) and, served
/// over HTTP/1.1, meshd's server: 1,680 bytes now; 9,696 while a
/// tunnel over TLS was inline in it (every idle TLS connection carried
/// that), 3,112 with the tunnel boxed and `carry` an `async fn` (its
/// arguments, the session among them, kept beside the server's future).
const TLS_MAX: usize = 1792;
/// The TLS task: what it was handed, and the larger of the handshake's
/// state and `carry`'s future: 1,944 bytes now; 4,392 while the TLS
/// stream's scope spanned the await of `carry`'s future (the session
/// kept twice), and a 12,416-byte task cell in release builds (massif)
/// while a tunnel's state was inline in it too.
const TLS_TASK_MAX: usize = 2048;
