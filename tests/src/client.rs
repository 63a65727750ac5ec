//! Clients that pose as an app's task: every connection is bound to the
//! task's source address before it connects. TCP, HTTP/1.1 and HTTP/2.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long any client step may take.
pub const STEP: Duration = Duration::from_secs(3);

/// Reads from `s` until `out` holds `marker` `times` times.
pub async fn read_until(s: &mut TcpStream, marker: &str, times: usize) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(STEP, async {
        while String::from_utf8_lossy(&out).matches(marker).count() < times {
            let mut chunk = [0u8; 16384];
            let n = tokio::io::AsyncReadExt::read(s, &mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&out));
            out.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {marker} x{times}: {}", String::from_utf8_lossy(&out)));
    String::from_utf8_lossy(&out).to_string()
}

/// A TCP connection from `source` (an IP on 127.0.0.0/8) to `dest`.
pub async fn tcp_from(source: &str, dest: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse().expect("source IP"), 0))?;
    tokio::time::timeout(STEP, socket.connect(dest))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))?
}

/// Sends raw bytes from `source` to `dest` on a fresh connection and reads
/// until the peer closes it (panics if it stays open past `STEP`); a reset
/// ends the read like a close.
pub async fn raw_exchange(source: &str, dest: SocketAddr, raw: &[u8]) -> String {
    try_exchange(source, dest, raw).await.expect("raw exchange")
}

/// `raw_exchange` for a peer that may not be there yet: an error instead of a panic.
pub async fn try_exchange(source: &str, dest: SocketAddr, raw: &[u8]) -> Result<String, String> {
    use tokio::io::AsyncReadExt;
    let mut s = tcp_from(source, dest)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.write_all(raw).await.map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(STEP, s.read_to_end(&mut out))
        .await
        .map_err(|_| "the peer did not close the connection".to_owned())?;
    Ok(String::from_utf8_lossy(&out).to_string())
}

/// A line-oriented view of a TCP connection to a greeting backend.
#[derive(Debug)]
pub struct Lines {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Lines {
    /// Wraps a connection.
    pub fn new(stream: TcpStream) -> Lines {
        let (r, w) = stream.into_split();
        Lines {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    /// The next line; an error when the peer closed or nothing came in time.
    pub async fn line(&mut self) -> Result<String, String> {
        let mut s = String::new();
        match tokio::time::timeout(STEP, self.reader.read_line(&mut s)).await {
            Err(_) => Err("no line in time".into()),
            Ok(Err(e)) => Err(format!("read failed: {e}")),
            Ok(Ok(0)) => Err("closed".into()),
            Ok(Ok(_)) => Ok(s.trim_end().to_owned()),
        }
    }

    /// Sends a line and returns the echo.
    pub async fn echo(&mut self, line: &str) -> Result<String, String> {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        self.line().await
    }
}

/// Connects from `source` and reads the backend's greeting.
pub async fn greet_from(source: &str, dest: SocketAddr) -> Result<(Lines, String), String> {
    let stream = tcp_from(source, dest).await.map_err(|e| e.to_string())?;
    let mut lines = Lines::new(stream);
    let name = lines.line().await?;
    Ok((lines, name))
}

/// Connects from `source` and expects a refusal: the connection is accepted,
/// then closed (EOF or reset) before any byte arrives. `Ok` says how it was
/// closed; `Err` when connecting failed, a byte came, or it was held open.
pub async fn refused_from(source: &str, dest: SocketAddr) -> Result<&'static str, String> {
    use tokio::io::AsyncReadExt;
    let mut stream = tcp_from(source, dest)
        .await
        .map_err(|e| format!("connect from {source} to {dest} failed (no listener?): {e}"))?;
    let mut buf = [0u8; 256];
    match tokio::time::timeout(STEP, stream.read(&mut buf)).await {
        Err(_) => Err(format!(
            "{source} -> {dest}: held open, neither closed nor answered"
        )),
        Ok(Ok(0)) => Ok("closed"),
        Ok(Err(_)) => Ok("reset"),
        Ok(Ok(n)) => Err(format!(
            "{source} -> {dest}: got {n} bytes: {:?}",
            String::from_utf8_lossy(&buf[..n])
        )),
    }
}

/// An answer: status, the `x-backend` header, and the body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: StatusCode,
    /// Which backend answered, if one did.
    pub backend: Option<String>,
    /// Response headers.
    pub headers: hyper::HeaderMap,
    /// Body text.
    pub body: String,
}

/// An HTTP client connection (HTTP/1.1 or HTTP/2 prior knowledge).
#[derive(Debug)]
pub enum Http {
    /// HTTP/1.1.
    H1(http1::SendRequest<Empty<Bytes>>),
    /// HTTP/2.
    H2(http2::SendRequest<Empty<Bytes>>),
}

impl Http {
    /// Opens a connection from `source` to `dest`.
    pub async fn connect(source: &str, dest: SocketAddr, h2: bool) -> std::io::Result<Http> {
        let io = TokioIo::new(tcp_from(source, dest).await?);
        if h2 {
            let (s, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            Ok(Http::H2(s))
        } else {
            let (s, conn) = http1::handshake(io).await.map_err(std::io::Error::other)?;
            tokio::spawn(conn.with_upgrades());
            Ok(Http::H1(s))
        }
    }

    /// Sends `req` and reads the whole answer.
    pub async fn send(&mut self, req: Request<Empty<Bytes>>) -> Result<Answer, String> {
        let fut = async {
            let resp = match self {
                Http::H1(s) => {
                    s.ready().await.map_err(|e| e.to_string())?;
                    s.send_request(req).await
                }
                Http::H2(s) => {
                    s.ready().await.map_err(|e| e.to_string())?;
                    s.send_request(req).await
                }
            }
            .map_err(|e| e.to_string())?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok(Answer {
                status: parts.status,
                backend: parts
                    .headers
                    .get("x-backend")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                headers: parts.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        tokio::time::timeout(STEP, fut)
            .await
            .map_err(|_| "no answer in time".to_owned())?
    }

    /// `GET path` with a Host header.
    pub async fn get(&mut self, path: &str) -> Result<Answer, String> {
        let uri = match self {
            Http::H1(_) => path.to_owned(),
            Http::H2(_) => format!("http://mesh.test{path}"),
        };
        let req = Request::get(uri)
            .header("host", "mesh.test")
            .body(Empty::new())
            .unwrap();
        self.send(req).await
    }
}
