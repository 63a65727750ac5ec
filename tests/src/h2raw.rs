//! HTTP/2 by hand, for tests that attack meshd's HTTP/2 server on the wire:
//! frames built byte by byte, HPACK literals that need no table, a client
//! that reads frames one at a time; and `Rig`, one meshd in front of a
//! `raw_backend` that keeps every byte meshd forwards. Its frame constants
//! are written here again, not taken from meshd's `h2::frame`, on purpose:
//! a client that shares the server's definitions shares its mistakes.

use crate::cluster::{node_config, service};
use crate::harness::{meshd, wait_generation, Proc, Scratch};
use crate::raw_backend::RawBackend;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

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
            if f.stream != stream || f.kind == kind::WINDOW_UPDATE {
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

/// meshd's service port in every `Rig`.
pub const PORT: u16 = 44000;

/// One test's meshd and backend: meshd's node on 127.0.212.`i`, its one
/// HTTP service's task (a `RawBackend`) on 127.0.212.`100+i`:44001,
/// clients from 127.0.212.`50+i`.
#[derive(Debug)]
pub struct Rig {
    /// The backend.
    pub backend: RawBackend,
    /// meshd.
    pub meshd: Proc,
    /// The service's address.
    pub dest: SocketAddr,
    /// Where clients connect from.
    pub client: String,
    /// meshd's config directory.
    pub dir: Scratch,
}

impl Rig {
    /// Starts the backend and meshd (with `extra` arguments), and waits
    /// until meshd serves the service.
    pub async fn start(i: u8, extra: &[&str]) -> Rig {
        Rig::start_with_backlog(i, extra, 64).await
    }

    /// `start`, the backend's accept queue `backlog` long.
    pub async fn start_with_backlog(i: u8, extra: &[&str], backlog: u32) -> Rig {
        let task = format!("127.0.212.{}:44001", 100 + i);
        let backend = RawBackend::start_with_backlog(&task, backlog).await;
        let dir = Scratch::new("h2wire");
        let node = format!("h2wire-{i}");
        let address = format!("127.0.212.{i}");
        let svc = service(
            "/h2wire/app",
            PORT,
            schemas::Protocol::Http,
            &[(&task, "app.1")],
        );
        dir.write(
            &format!("nodes/{node}.yaml"),
            &node_config(&node, &address, 1, vec![svc]),
        );
        let (meshd, admin) = meshd(&node, &dir.path("nodes"), extra);
        wait_generation(admin, 1).await;
        Rig {
            backend,
            meshd,
            dest: format!("{address}:{PORT}").parse().unwrap(),
            client: format!("127.0.212.{}", 50 + i),
            dir,
        }
    }

    /// A new HTTP/2 connection, past the SETTINGS exchange.
    pub async fn connect(&self) -> H2Client {
        H2Client::connect(&self.client, self.dest).await
    }
}
