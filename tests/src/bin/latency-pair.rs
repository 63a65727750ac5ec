//! Paired single-connection latency: one keep-alive HTTP/1.1 connection per
//! target, one request in flight at a time, the targets taking turns request
//! by request. A burst of machine noise (an idle vCPU's slow wake-up, a
//! kernel thread) then lands on every target alike, which separate runs
//! cannot promise: on a shared virtual machine the rate of those stalls
//! drifts from minute to minute and moves a run's p99 by more than the
//! proxies differ. Prints each target's latency histogram in microseconds
//! for ops/bench/proxy_bench.py to pool.
//!
//! `latency-pair SECONDS NAME=HOST:PORT...` (loopback addresses only)

use anyhow::{bail, ensure, Context};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest a connect or a read may take before the run is called failed.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// One target: its connection and what its requests took.
struct Target {
    name: String,
    conn: TcpStream,
    request: Vec<u8>,
    buf: Vec<u8>,
    /// Microseconds -> requests that took that long.
    hist: BTreeMap<u64, u64>,
    failed: u64,
}

impl Target {
    fn connect(spec: &str) -> anyhow::Result<Target> {
        let (name, addr) = spec
            .split_once('=')
            .with_context(|| format!("target {spec:?}: expected NAME=HOST:PORT"))?;
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("target {spec:?}: {addr:?} is not an IP:PORT"))?;
        ensure!(
            addr.ip().is_loopback(),
            "target {spec:?}: only loopback addresses may be measured"
        );
        let conn = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .with_context(|| format!("connecting to {name} at {addr}"))?;
        conn.set_nodelay(true)?;
        conn.set_read_timeout(Some(IO_TIMEOUT))?;
        Ok(Target {
            name: name.to_owned(),
            conn,
            // The very request wrk sends, so both clients cost the proxies alike.
            request: format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes(),
            buf: Vec::with_capacity(4096),
            hist: BTreeMap::new(),
            failed: 0,
        })
    }

    /// Sends one request and reads its whole response; records the time.
    fn exchange(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        self.conn
            .write_all(&self.request)
            .with_context(|| format!("{}: writing a request", self.name))?;
        let status = read_response(&mut self.conn, &mut self.buf)
            .with_context(|| format!("{}: reading a response", self.name))?;
        let us = start.elapsed().as_micros() as u64;
        *self.hist.entry(us).or_default() += 1;
        if status != 200 {
            self.failed += 1;
        }
        Ok(())
    }
}

/// Reads one response framed by Content-Length; returns its status code.
fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let (head_len, body_len, status) = loop {
        let n = conn.read(&mut chunk)?;
        ensure!(n > 0, "the connection closed mid-response");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).context("a response head not in UTF-8")?;
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("no status code in {head:?}"))?;
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok());
            let Some(length) = length else {
                bail!("a response without Content-Length: {head:?}");
            };
            break (end + 4, length, status);
        }
    };
    while buf.len() < head_len + body_len {
        let n = conn.read(&mut chunk)?;
        ensure!(n > 0, "the connection closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    ensure!(
        buf.len() == head_len + body_len,
        "more bytes than one response: is something pipelining?"
    );
    Ok(status)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .context("usage: latency-pair SECONDS NAME=HOST:PORT...")?;
    let mut targets = args
        .map(|spec| Target::connect(&spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure!(!targets.is_empty(), "give at least one NAME=HOST:PORT");
    let n = targets.len();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut round = 0usize;
    while Instant::now() < deadline {
        // Each round starts with the next target, so no target always
        // follows the same one.
        for i in 0..n {
            targets[(round + i) % n].exchange()?;
        }
        round += 1;
    }
    for t in &targets {
        let pairs: Vec<String> = t.hist.iter().map(|(us, c)| format!("{us}:{c}")).collect();
        println!("latency-histogram {} {}", t.name, pairs.join(" "));
        println!("failed {} {}", t.name, t.failed);
    }
    Ok(())
}
