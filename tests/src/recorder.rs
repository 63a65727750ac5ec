//! A backend that records every request exactly as it arrived: head, body,
//! and whether the body was whole by its own framing. It answers by path:
//! `/both` with both `Content-Length` and `Transfer-Encoding`, `/conn-cl`
//! with `Connection: content-length`, `/hangup` by closing unanswered,
//! `/stall` with half a body and then nothing, and anything else `200 ok`
//! with a length.

use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One request as the backend read it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request line and header lines, without the blank line.
    pub head: String,
    /// The body's data (chunked bodies decoded).
    pub body: Vec<u8>,
    /// Whether the body ended where its framing said.
    pub complete: bool,
}

impl Received {
    /// The request line.
    pub fn line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    /// The values of header `name`, in order.
    pub fn header(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }
}

/// The recording backend; stops when dropped.
#[derive(Debug)]
pub struct Recorder {
    seen: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    /// Every request read so far.
    pub fn all(&self) -> Vec<Received> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The requests whose body arrived whole.
    pub fn complete(&self) -> Vec<Received> {
        self.all().into_iter().filter(|r| r.complete).collect()
    }

    /// Forgets what was recorded.
    pub fn clear(&self) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Waits until at least `n` requests were read, and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        crate::harness::eventually(
            &format!("{n} requests at the backend"),
            crate::client::STEP,
            || async {
                let all = self.all();
                if all.len() >= n {
                    Ok(all)
                } else {
                    Err(format!("{all:#?}"))
                }
            },
        )
        .await
    }
}

/// Starts a recording backend on `addr`.
pub async fn start(addr: &str) -> Recorder {
    let listener = TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("binding recorder {addr}: {e}"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s, Arc::clone(&record)));
        }
    });
    Recorder { seen, task }
}

async fn serve(mut s: TcpStream, seen: Arc<Mutex<Vec<Received>>>) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = fill_until(&mut s, &mut buf, |b| find(b, b"\r\n\r\n")).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end + 4);
        let mut got = Received {
            head,
            body: Vec::new(),
            complete: false,
        };
        let te = got.header("transfer-encoding");
        let cl = got.header("content-length");
        let ok = if te.last().is_some_and(|t| t.ends_with("chunked")) {
            read_chunked(&mut s, &mut buf, &mut got.body).await
        } else if let Some(n) = cl.first().and_then(|v| v.parse::<usize>().ok()) {
            let done = fill_until(&mut s, &mut buf, |b| (b.len() >= n).then_some(n)).await;
            if done.is_some() {
                got.body = buf.drain(..n).collect();
            }
            done.is_some()
        } else {
            true
        };
        got.complete = ok;
        let path = got.line().split(' ').nth(1).unwrap_or_default().to_owned();
        seen.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(got);
        if !ok {
            return;
        }
        let answer: &[u8] = match path.as_str() {
            "/hangup" => return,
            "/stall" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello").await;
                // Holds the connection, silent, until the peer gives up.
                let _ = s.read(&mut [0u8; 1]).await;
                return;
            }
            "/both" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "/conn-cl" => b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello",
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        if s.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// Reads until `done` finds what it wants in `buf`; `None` if the peer closes first.
async fn fill_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> Option<usize>,
) -> Option<usize> {
    loop {
        if let Some(at) = done(buf) {
            return Some(at);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Decodes a chunked body strictly: sizes are bare hex digits.
async fn read_chunked(s: &mut TcpStream, buf: &mut Vec<u8>, body: &mut Vec<u8>) -> bool {
    loop {
        let Some(end) = fill_until(s, buf, |b| find(b, b"\r\n")).await else {
            return false;
        };
        let line = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end + 2);
        let digits = line.split(';').next().unwrap_or_default();
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return false;
        }
        let Ok(size) = usize::from_str_radix(digits, 16) else {
            return false;
        };
        if size == 0 {
            // Trailers, up to the blank line.
            let Some(end) = fill_until(s, buf, |b| {
                if b.starts_with(b"\r\n") {
                    Some(0)
                } else {
                    find(b, b"\r\n\r\n").map(|i| i + 2)
                }
            })
            .await
            else {
                return false;
            };
            buf.drain(..end + 2);
            return true;
        }
        if fill_until(s, buf, |b| (b.len() >= size + 2).then_some(0))
            .await
            .is_none()
            || buf[size..size + 2] != *b"\r\n"
        {
            return false;
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
