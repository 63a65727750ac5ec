//! Backends that stand in for an app's tasks, bound on the task's own
//! address: a TCP server that greets with its name and echoes lines, and an
//! HTTP/1.1 server with paths that misbehave on purpose.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A backend server; stops when dropped.
#[derive(Debug)]
pub struct Backend {
    /// Its name (a task id), as it answers.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests (HTTP) or connections (TCP) served.
    pub hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Backend {
    /// Requests or connections served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn bind(addr: &str) -> TcpListener {
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket
        .bind(addr)
        .unwrap_or_else(|e| panic!("binding backend {addr}: {e}"));
    socket.listen(1024).unwrap()
}

/// A TCP backend: writes `name\n` on connect, then echoes every line.
pub async fn tcp(addr: &str, name: &str) -> Backend {
    let listener = bind(addr).await;
    let hits = Arc::new(AtomicUsize::new(0));
    let (n, h) = (name.to_owned(), Arc::clone(&hits));
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::Relaxed);
            let n = n.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                if w.write_all(format!("{n}\n").as_bytes()).await.is_err() {
                    return;
                }
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if w.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Backend {
        name: name.to_owned(),
        addr: addr.parse().unwrap(),
        hits,
        task,
    }
}

/// An HTTP/1.1 backend. Paths: `/` answers `name\n`; `/headers` answers the
/// request headers as JSON; `/status/N` answers status N; `/slow/MS` waits
/// first; `/echo` answers the request body (with `x-method` and
/// `x-body-framing` naming how it came); `/reset` drops the connection without an answer, and so does
/// `/flaky` on a backend whose name contains `bad`; `/ws` with
/// `Upgrade` switches protocols and echoes bytes.
pub async fn http(addr: &str, name: &str) -> Backend {
    let listener = bind(addr).await;
    let hits = Arc::new(AtomicUsize::new(0));
    let (n, h) = (Arc::<str>::from(name), Arc::clone(&hits));
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (n, h) = (Arc::clone(&n), Arc::clone(&h));
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    h.fetch_add(1, Ordering::Relaxed);
                    answer(Arc::clone(&n), req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Backend {
        name: name.to_owned(),
        addr: addr.parse().unwrap(),
        hits,
        task,
    }
}

fn reply(status: u16, name: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert("x-backend", name.parse().unwrap());
    r
}

async fn answer(
    name: Arc<str>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let path = req.uri().path().to_owned();
    if path == "/reset" || (path == "/flaky" && name.contains("bad")) {
        return Err(std::io::Error::other("reset on purpose"));
    }
    if let Some(ms) = path.strip_prefix("/slow/").and_then(|m| m.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = path.strip_prefix("/status/").and_then(|c| c.parse().ok()) {
        return Ok(reply(code, &name, format!("{name}\n")));
    }
    if path == "/echo" {
        let framing = if req.headers().contains_key("transfer-encoding") {
            "chunked"
        } else if req.headers().contains_key("content-length") {
            "length"
        } else {
            "none"
        };
        let method = req.method().to_string();
        let body = http_body_util::BodyExt::collect(req.into_body())
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        let mut r = Response::new(Full::new(body));
        r.headers_mut().insert("x-backend", name.parse().unwrap());
        r.headers_mut().insert("x-method", method.parse().unwrap());
        r.headers_mut()
            .insert("x-body-framing", framing.parse().unwrap());
        return Ok(r);
    }
    if path == "/headers" {
        let map: serde_json::Map<String, serde_json::Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
            .collect();
        return Ok(reply(
            200,
            &name,
            serde_json::Value::Object(map).to_string(),
        ));
    }
    if path == "/ws" && req.headers().contains_key("upgrade") {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut r = reply(101, &name, String::new());
        r.headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        r.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        return Ok(r);
    }
    Ok(reply(200, &name, format!("{name}\n")))
}

/// A UDP backend: answers every datagram with `name|` and the datagram,
/// from the address it listens on; stops when dropped.
#[derive(Debug)]
pub struct UdpBackend {
    /// Its name (a task id), as it answers.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Every datagram's sender, in order: one source port per meshd session.
    pub peers: Arc<std::sync::Mutex<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

impl UdpBackend {
    /// Datagrams answered so far.
    pub fn hits(&self) -> usize {
        self.peers.lock().unwrap().len()
    }

    /// Distinct senders so far (sessions meshd opened to it).
    pub fn sessions(&self) -> usize {
        let mut p = self.peers.lock().unwrap().clone();
        p.sort();
        p.dedup();
        p.len()
    }
}

impl Drop for UdpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a [`UdpBackend`] on `addr`.
pub async fn udp(addr: &str, name: &str) -> UdpBackend {
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = tokio::net::UdpSocket::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("binding udp backend {addr}: {e}"));
    let peers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (n, p) = (name.to_owned(), Arc::clone(&peers));
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let mut out = Vec::with_capacity(65_536 + n.len() + 1);
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            p.lock().unwrap().push(from);
            out.clear();
            out.extend_from_slice(n.as_bytes());
            out.push(b'|');
            out.extend_from_slice(&buf[..len]);
            let _ = socket.send_to(&out, from).await;
        }
    });
    UdpBackend {
        name: name.to_owned(),
        addr,
        peers,
        task,
    }
}
