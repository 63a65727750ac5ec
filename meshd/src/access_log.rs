//! The optional JSON access log: one line per finished request with timing,
//! bytes and verdict. Lines go through a bounded channel to a writer task,
//! so a slow disk drops lines (counted) instead of slowing requests.

use hyper::Version;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use tokio::sync::mpsc;

/// Lines buffered before new ones are dropped.
const QUEUE: usize = 8192;

/// A handle to the access log writer.
#[derive(Debug, Clone)]
pub struct AccessLog {
    lines: mpsc::Sender<String>,
    dropped: metrics::Counter,
}

/// One finished request.
#[derive(Debug)]
pub struct Entry<'a> {
    /// Source app or `unknown`.
    pub src_app: &'a str,
    /// Destination app.
    pub dst_app: &'a str,
    /// Client address.
    pub peer: SocketAddr,
    /// Backend address.
    pub backend: &'a str,
    /// Client's HTTP version.
    pub version: Version,
    /// Status sent.
    pub status: u16,
    /// `allow`, `deny` or `would_deny`.
    pub verdict: &'a str,
    /// Backend connect time, when a new connection was opened.
    pub connect_ms: Option<f64>,
    /// Time to the backend's response header.
    pub ttfb_ms: f64,
    /// Whole request.
    pub total_ms: f64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Whether the response body was sent to its end.
    pub complete: bool,
}

impl AccessLog {
    /// Starts the writer for `path` (`-` for standard output).
    pub fn open(path: &Path) -> std::io::Result<AccessLog> {
        let mut out: Box<dyn Write + Send> = if path == Path::new("-") {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )
        };
        let (lines, mut rx) = mpsc::channel::<String>(QUEUE);
        tokio::task::spawn_blocking(move || {
            let mut buf = std::io::BufWriter::new(&mut out);
            while let Some(line) = rx.blocking_recv() {
                let _ = buf.write_all(line.as_bytes());
                // Flush when the queue is empty, so lines appear promptly without a write per line.
                if rx.is_empty() {
                    let _ = buf.flush();
                }
            }
            let _ = buf.flush();
        });
        Ok(AccessLog {
            lines,
            dropped: metrics::counter!(crate::metrics::ACCESS_LOG_DROPPED),
        })
    }

    /// Queues one line; drops it when the writer is behind.
    pub fn write(&self, e: Entry<'_>) {
        let line = serde_json::json!({
            "src_app": e.src_app,
            "dst_app": e.dst_app,
            "peer": e.peer.to_string(),
            "backend": e.backend,
            "version": format!("{:?}", e.version),
            "status": e.status,
            "verdict": e.verdict,
            "connect_ms": e.connect_ms,
            "ttfb_ms": e.ttfb_ms,
            "total_ms": e.total_ms,
            "bytes_out": e.bytes_out,
            "complete": e.complete,
        });
        if self.lines.try_send(format!("{line}\n")).is_err() {
            self.dropped.increment(1);
        }
    }
}
