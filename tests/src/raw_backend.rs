//! A raw HTTP/1.1 backend that keeps every byte each of its connections
//! received (and whether it closed), and the requests in them; it answers
//! every whole request `200` with body `ok`.

use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// One request as the raw backend read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Which of the backend's connections (0, 1, ... in accept order).
    pub conn: usize,
    /// Request line and fields, without the blank line.
    pub head: String,
    /// The body (chunked decoded).
    pub body: Vec<u8>,
}

impl Request {
    /// The request line.
    pub fn line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    /// The field lines `name: value` of `name`, as they arrived.
    pub fn lines_of(&self, name: &str) -> Vec<&str> {
        self.head
            .lines()
            .skip(1)
            .filter(|l| {
                l.split_once(':')
                    .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
            })
            .collect()
    }
}

/// Everything the backend saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Per connection, every byte received, and whether it has closed.
    pub conns: Vec<(Vec<u8>, bool)>,
    /// Whole requests, in order.
    pub requests: Vec<Request>,
}

/// A raw HTTP/1.1 backend that answers every whole request `200` with body
/// `ok`; a path starting `/hold` waits for `release` first.
#[derive(Debug)]
pub struct RawBackend {
    seen: Arc<Mutex<Seen>>,
    release: Arc<Notify>,
    paused: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawBackend {
    /// Listens on `addr`.
    pub async fn start(addr: &str) -> RawBackend {
        RawBackend::start_with_backlog(addr, 64).await
    }

    /// Listens on `addr` with an accept queue of `backlog`: while `pause`d
    /// it accepts nothing either, so a small queue, once full, leaves new
    /// connections (meshd's) waiting in the kernel's SYN retries.
    pub async fn start_with_backlog(addr: &str, backlog: u32) -> RawBackend {
        let at: std::net::SocketAddr = addr.parse().unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket
            .bind(at)
            .unwrap_or_else(|e| panic!("binding backend {addr}: {e}"));
        let listener = socket.listen(backlog).unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let release = Arc::new(Notify::new());
        let (paused, paused_rx) = watch::channel(false);
        let (s2, r2) = (Arc::clone(&seen), Arc::clone(&release));
        let mut accepting = paused_rx.clone();
        let task = tokio::spawn(async move {
            loop {
                if accepting.wait_for(|p| !*p).await.is_err() {
                    return;
                }
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let conn = {
                    let mut g = s2.lock().unwrap_or_else(PoisonError::into_inner);
                    g.conns.push((Vec::new(), false));
                    g.conns.len() - 1
                };
                let shared = (Arc::clone(&s2), Arc::clone(&r2), paused_rx.clone());
                tokio::spawn(serve(s, conn, shared));
            }
        });
        RawBackend {
            seen,
            release,
            paused,
            task,
        }
    }

    /// Stops (`true`) or resumes accepting, and reading on every connection.
    pub fn pause(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    /// Runs `f` on what was seen so far.
    pub fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whole requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.with(|s| s.requests.clone())
    }

    /// Every byte every connection received, joined.
    pub fn all_bytes(&self) -> Vec<u8> {
        self.with(|s| s.conns.iter().flat_map(|c| c.0.clone()).collect())
    }

    /// Lets held requests (`/hold...`) answer.
    pub fn release(&self) {
        self.release.notify_waiters();
        self.release.notify_one();
    }

    /// Waits until a whole request for `path` arrived; returns it.
    pub async fn wait_request(&self, path: &str) -> Request {
        let want = format!(" {path} ");
        crate::harness::eventually(
            &format!("{path} at the backend"),
            crate::client::STEP,
            || async {
                self.requests()
                    .into_iter()
                    .find(|r| r.line().contains(&want))
                    .ok_or_else(|| String::from_utf8_lossy(&self.all_bytes()).into_owned())
            },
        )
        .await
    }
}

type Shared = (Arc<Mutex<Seen>>, Arc<Notify>, watch::Receiver<bool>);

async fn serve(mut s: TcpStream, conn: usize, (seen, release, mut paused): Shared) {
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let n = match s.read(&mut chunk).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        {
            let mut g = seen.lock().unwrap_or_else(PoisonError::into_inner);
            let c = &mut g.conns[conn];
            if n == 0 {
                c.1 = true;
                return;
            }
            c.0.extend_from_slice(&chunk[..n]);
        }
        pending.extend_from_slice(&chunk[..n]);
        while let Some((head, body, used)) = parse_request(&pending) {
            pending.drain(..used);
            let r = Request { conn, head, body };
            let hold = r
                .line()
                .split(' ')
                .nth(1)
                .is_some_and(|p| p.starts_with("/hold"));
            seen.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .requests
                .push(r);
            if hold {
                release.notified().await;
            }
            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if s.write_all(answer).await.is_err() {
                return;
            }
        }
    }
}

/// A whole request at the start of `b`: (head, body, bytes used).
fn parse_request(b: &[u8]) -> Option<(String, Vec<u8>, usize)> {
    let end = find(b, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&b[..end]).into_owned();
    let rest = &b[end + 4..];
    let field = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    if field("transfer-encoding").is_some_and(|t| t.ends_with("chunked")) {
        let (body, used) = parse_chunked(rest)?;
        return Some((head, body, end + 4 + used));
    }
    let n: usize = field("content-length").map_or(Some(0), |v| v.parse().ok())?;
    let body = rest.get(..n)?.to_vec();
    Some((head, body, end + 4 + n))
}

/// A whole chunked body (trailers skipped): (data, bytes used).
fn parse_chunked(mut b: &[u8]) -> Option<(Vec<u8>, usize)> {
    let start = b.len();
    let mut body = Vec::new();
    loop {
        let eol = find(b, b"\r\n")?;
        let digits = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(digits.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            let end = if b.starts_with(b"\r\n") {
                0
            } else {
                find(b, b"\r\n\r\n")? + 2
            };
            b = b.get(end + 2..)?;
            return Some((body, start - b.len()));
        }
        body.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
