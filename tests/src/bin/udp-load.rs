//! UDP request/response load for `ops/bench/udp.sh`, and its origin.
//!
//! - `udp-load echo ADDR`: answers every datagram with itself, forever.
//! - `udp-load client TARGET SESSIONS SECONDS [SIZE]`: SESSIONS sockets (one
//!   per session, each its own source port), each sending a SIZE-byte
//!   datagram (default 64) and waiting for the answer before the next, for
//!   SECONDS; prints `exchanges N lost L`. A datagram not answered within
//!   200 ms counts as lost and the session sends the next one.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("echo") if args.len() == 2 => echo(args[1].parse()?),
        Some("client") if args.len() >= 4 => client(
            args[1].parse()?,
            args[2].parse()?,
            Duration::from_secs(args[3].parse()?),
            args.get(4).map_or(Ok(64), |s| s.parse())?,
        ),
        _ => anyhow::bail!(
            "usage: udp-load echo ADDR | udp-load client TARGET SESSIONS SECONDS [SIZE]"
        ),
    }
}

fn echo(addr: SocketAddr) -> anyhow::Result<()> {
    let s = UdpSocket::bind(addr)?;
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = s.recv_from(&mut buf)?;
        let _ = s.send_to(&buf[..n], from);
    }
}

fn client(target: SocketAddr, sessions: usize, run: Duration, size: usize) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..sessions {
        let s = UdpSocket::bind("127.0.0.1:0")?;
        s.connect(target)?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        let (stop, done, lost) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&lost));
        threads.push(std::thread::spawn(move || {
            let out = vec![b'x'; size];
            let mut buf = vec![0u8; 65_536];
            let (mut n, mut l) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                if s.send(&out).is_err() {
                    l += 1;
                    continue;
                }
                match s.recv(&mut buf) {
                    Ok(_) => n += 1,
                    Err(_) => l += 1,
                }
            }
            done.fetch_add(n, Ordering::Relaxed);
            lost.fetch_add(l, Ordering::Relaxed);
        }));
    }
    let start = Instant::now();
    std::thread::sleep(run);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "exchanges {} lost {} seconds {secs:.3}",
        done.load(Ordering::Relaxed),
        lost.load(Ordering::Relaxed)
    );
    Ok(())
}
