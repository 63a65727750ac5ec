//! HTTP/2 by hand, for tests that attack meshd's HTTP/2 server on the wire:
//! frames built byte by byte, HPACK literals that need no table, a client
//! that reads frames one at a time; and a raw HTTP/1.1 backend that keeps
//! every byte each of its connections received.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The client connection preface (RFC 9113 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types.
pub mod kind {
    /// DATA.
    pub const DATA: u8 = 0x0;
    /// HEADERS.
    pub const HEADERS: u8 = 0x1;
    /// RST_STREAM.
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS.
    pub const SETTINGS: u8 = 0x4;
    /// PING.
    pub const PING: u8 = 0x6;
    /// GOAWAY.
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE.
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// CONTINUATION.
    pub const CONTINUATION: u8 = 0x9;
}

/// END_STREAM (DATA, HEADERS) and ACK (SETTINGS, PING).
pub const END_STREAM: u8 = 0x1;
/// END_HEADERS.
pub const END_HEADERS: u8 = 0x4;

/// Error codes the tests look for.
pub const PROTOCOL_ERROR: u32 = 0x1;
/// ENHANCE_YOUR_CALM.
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame: 9 header bytes, then the payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    assert!(len < 1 << 24, "frame too long");
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer (RFC 7541 5.1) with `prefix` bits, the first byte's other bits `flags`.
pub fn hpack_int(out: &mut Vec<u8>, flags: u8, prefix: u32, mut n: usize) {
    let max = (1usize << prefix) - 1;
    if n < max {
        out.push(flags | n as u8);
        return;
    }
    out.push(flags | max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// "Literal without indexing, new name": 0x00, name, value (no table needed).
pub fn literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00];
    hpack_str(&mut out, name);
    hpack_str(&mut out, value);
    out
}

/// "Literal with incremental indexing, new name": 0x40, name, value; the
/// field becomes dynamic table entry 62.
pub fn literal_indexed(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x40];
    hpack_str(&mut out, name);
    hpack_str(&mut out, value);
    out
}

/// A header block of literals without indexing.
pub fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    fields
        .iter()
        .flat_map(|(n, v)| literal(n.as_bytes(), v.as_bytes()))
        .collect()
}

/// The four pseudo-headers of a request, then `extra`.
pub fn request<'a>(
    method: &'a str,
    path: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut f = vec![
        (":method", method),
        (":scheme", "http"),
        (":authority", "web.test"),
        (":path", path),
    ];
    f.extend_from_slice(extra);
    f
}

/// A HEADERS frame with END_HEADERS (and END_STREAM when `end`).
pub fn headers(stream: u32, block: &[u8], end: bool) -> Vec<u8> {
    let flags = END_HEADERS | if end { END_STREAM } else { 0 };
    frame(kind::HEADERS, flags, stream, block)
}

/// A DATA frame.
pub fn data(stream: u32, bytes: &[u8], end: bool) -> Vec<u8> {
    frame(kind::DATA, if end { END_STREAM } else { 0 }, stream, bytes)
}

/// A RST_STREAM frame.
pub fn rst(stream: u32, code: u32) -> Vec<u8> {
    frame(kind::RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// One frame as read.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream id.
    pub stream: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The 32-bit word at `at` in the payload (RST_STREAM's code at 0;
    /// GOAWAY's last stream at 0, its code at 4).
    pub fn word(&self, at: usize) -> u32 {
        let b = self.payload.get(at..at + 4).expect("payload too short");
        u32::from_be_bytes(b.try_into().unwrap())
    }
}

/// Reads one frame from `r` (`buf` holds what was read past the last one);
/// `None` on EOF, error or after `wait`.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    wait: Duration,
) -> Option<Frame> {
    tokio::time::timeout(wait, async {
        loop {
            if buf.len() >= 9 {
                let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                if buf.len() >= 9 + len {
                    let f = Frame {
                        kind: buf[3],
                        flags: buf[4],
                        stream: u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff,
                        payload: buf[9..9 + len].to_vec(),
                    };
                    buf.drain(..9 + len);
                    return Some(f);
                }
            }
            let mut chunk = [0u8; 16384];
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// How a stream ended, as the client saw it.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// `:status` of the response, if one came.
    pub status: Option<u16>,
    /// The response body.
    pub body: Vec<u8>,
    /// RST_STREAM's code, if the stream was reset.
    pub reset: Option<u32>,
    /// GOAWAY's (last stream, code), if one came meanwhile.
    pub goaway: Option<(u32, u32)>,
    /// The connection closed before the stream ended.
    pub closed: bool,
}

/// A raw HTTP/2 client connection.
#[derive(Debug)]
pub struct H2Client {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read past the last frame.
    pub buf: Vec<u8>,
    /// Frames read while waiting for something else (WINDOW_UPDATE included).
    pub seen: Vec<Frame>,
}

/// A socket bound to `source` (an address on 127.0.0.0/8).
pub fn socket_from(source: &str) -> TcpSocket {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    socket
}

impl H2Client {
    /// Connects from `source`, sends the preface and an empty SETTINGS,
    /// and acknowledges meshd's SETTINGS.
    pub async fn connect(source: &str, dest: SocketAddr) -> H2Client {
        H2Client::handshake(socket_from(source), dest).await
    }

    /// `connect` on a socket prepared by the caller.
    pub async fn handshake(socket: TcpSocket, dest: SocketAddr) -> H2Client {
        let stream = tokio::time::timeout(crate::client::STEP, socket.connect(dest))
            .await
            .expect("connect timed out")
            .expect("connect");
        let mut c = H2Client {
            stream,
            buf: Vec::new(),
            seen: Vec::new(),
        };
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(kind::SETTINGS, 0, 0, &[]));
        c.send(&hello).await;
        loop {
            let f = c.next().await.expect("meshd's SETTINGS");
            if f.kind == kind::SETTINGS && f.flags & END_STREAM == 0 {
                c.seen.push(f);
                break;
            }
            c.seen.push(f);
        }
        c.send(&frame(kind::SETTINGS, END_STREAM, 0, &[])).await;
        c
    }

    /// Writes `bytes`; panics if the socket fails.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to meshd");
    }

    /// The next frame within `client::STEP`, or `None` (closed or quiet).
    pub async fn next(&mut self) -> Option<Frame> {
        read_frame(&mut self.stream, &mut self.buf, crate::client::STEP).await
    }

    /// Reads until `stream` ends (response with END_STREAM, RST_STREAM, or
    /// the connection closing); GOAWAY is noted on the way.
    pub async fn outcome(&mut self, stream: u32) -> Outcome {
        let mut o = Outcome::default();
        loop {
            let Some(f) = self.next().await else {
                o.closed = true;
                return o;
            };
            if f.kind == kind::GOAWAY {
                o.goaway = Some((f.word(0), f.word(4)));
            }
            if f.stream != stream {
                self.seen.push(f);
                continue;
            }
            match f.kind {
                kind::HEADERS if o.status.is_none() => o.status = response_status(&f.payload),
                kind::DATA => o.body.extend_from_slice(&f.payload),
                kind::RST_STREAM => {
                    o.reset = Some(f.word(0));
                    return o;
                }
                _ => {}
            }
            if matches!(f.kind, kind::HEADERS | kind::DATA) && f.flags & END_STREAM != 0 {
                return o;
            }
        }
    }

    /// A GET for `path` on `stream`, its outcome.
    pub async fn get(&mut self, stream: u32, path: &str) -> Outcome {
        self.send(&headers(stream, &block(&request("GET", path, &[])), true))
            .await;
        self.outcome(stream).await
    }
}

/// `:status` from a response block as meshd encodes one (RFC 7541:
/// indexed 8..=14, or a literal with name index 8; no Huffman).
pub fn response_status(block: &[u8]) -> Option<u16> {
    const INDEXED: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    let first = *block.first()?;
    if first & 0x80 != 0 {
        let i = usize::from(first & 0x7f);
        return INDEXED.get(i.checked_sub(8)?).copied();
    }
    // Literal (without indexing / never indexed / incremental) naming index 8.
    let name = if first & 0x40 != 0 {
        first & 0x3f
    } else {
        first & 0x0f
    };
    if name != 8 {
        return None;
    }
    let len = usize::from(*block.get(1)? & 0x7f);
    std::str::from_utf8(block.get(2..2 + len)?)
        .ok()?
        .parse()
        .ok()
}

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
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("binding backend {addr}: {e}"));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let release = Arc::new(Notify::new());
        let (s2, r2) = (Arc::clone(&seen), Arc::clone(&release));
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let conn = {
                    let mut g = s2.lock().unwrap_or_else(PoisonError::into_inner);
                    g.conns.push((Vec::new(), false));
                    g.conns.len() - 1
                };
                tokio::spawn(serve(s, conn, Arc::clone(&s2), Arc::clone(&r2)));
            }
        });
        RawBackend {
            seen,
            release,
            task,
        }
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

async fn serve(mut s: TcpStream, conn: usize, seen: Arc<Mutex<Seen>>, release: Arc<Notify>) {
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
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
