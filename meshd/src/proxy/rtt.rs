//! The client's round-trip time, as the kernel's TCP stack smooths it
//! (`TCP_INFO`'s `tcpi_rtt`): the first field of the user-to-app timing
//! breakdown. A `getsockopt` per request would cost a syscall on the
//! request path, so a connection reads it at its first request and then at
//! most once per `REFRESH`; the requests in between record the value last
//! read, so the histogram still weighs by requests.

use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long a value read serves the connection's requests. Time, not a
/// request count, bounds the syscalls: at most one a second per connection
/// however fast its requests come, and a slow keep-alive connection still
/// gets a fresh value for a request a second after the last. The kernel's
/// estimate is an average over many ACKs (gain 1/8), so it moves little in
/// a second; a graph of it is drawn from scrapes seconds apart.
pub const REFRESH: Duration = Duration::from_secs(1);

/// A client connection's TCP socket, to read its RTT from. Not owned: read
/// only while the connection's stream is open (on the connection's own
/// task, or as the HTTP/2 connection's task reads a request), so the
/// descriptor is still the connection's.
#[derive(Debug, Clone, Copy)]
pub struct ClientSocket {
    fd: Option<i32>,
}

impl ClientSocket {
    /// For a connection accepted on `stream` (before any TLS is put on it).
    pub fn new(stream: &TcpStream) -> ClientSocket {
        #[cfg(unix)]
        let fd = Some(std::os::fd::AsRawFd::as_raw_fd(stream));
        #[cfg(not(unix))]
        let fd = {
            let _ = stream;
            None
        };
        ClientSocket { fd }
    }

    /// Reads the smoothed RTT now, in microseconds (0: unknown).
    pub fn rtt_us(self) -> u32 {
        self.fd.map_or(0, tcp_rtt_us)
    }
}

/// The RTT a connection's requests record: read at its first request, then
/// again once `REFRESH` has passed. Kept by the connection's one request
/// loop (HTTP/1.1) or its service (HTTP/2), so no atomics: a request costs
/// one comparison of instants it had read anyway.
#[derive(Debug, Clone, Copy, Default)]
pub struct RttCache {
    /// When the value read goes stale; `None` before the first read.
    next: Option<Instant>,
    /// The value last read, in microseconds; 0 when the read failed or
    /// the kernel had no sample.
    us: u32,
}

impl RttCache {
    /// The RTT in microseconds for a request judged at `now` (0: unknown).
    #[inline]
    pub fn sample(&mut self, socket: ClientSocket, now: Instant) -> u32 {
        self.sample_with(now, || socket.rtt_us())
    }

    #[inline]
    fn sample_with(&mut self, now: Instant, read: impl FnOnce() -> u32) -> u32 {
        match self.next {
            Some(next) if now < next => self.us,
            _ => self.refresh(now, read),
        }
    }

    /// Reads anew: out of line, so the request path inlines only the compare.
    #[cold]
    #[inline(never)]
    fn refresh(&mut self, now: Instant, read: impl FnOnce() -> u32) -> u32 {
        self.us = read();
        self.next = Some(now + REFRESH);
        self.us
    }
}

/// `tcpi_rtt` of socket `fd`, in microseconds; 0 when it cannot be read.
#[cfg(target_os = "linux")]
fn tcp_rtt_us(fd: i32) -> u32 {
    const LEN: usize = std::mem::size_of::<libc::tcp_info>();
    const AT: usize = std::mem::offset_of!(libc::tcp_info, tcpi_rtt);
    // A plain byte buffer: the kernel copies bytes, and the field is read
    // back from its offset without any unsafe reinterpretation.
    let mut info = [0u8; LEN];
    let mut len = LEN as libc::socklen_t;
    // SAFETY: `info` is a live, writable buffer of `len` bytes and `len` a
    // live socklen_t; the kernel writes at most `len` bytes and stores the
    // length written. A bad or reused fd makes the call fail (or describe
    // another socket), never touch memory other than these two.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 || (len as usize) < AT + 4 {
        return 0;
    }
    info.get(AT..AT + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

/// `TCP_INFO` is Linux's; elsewhere the RTT is unknown.
#[cfg(not(target_os = "linux"))]
fn tcp_rtt_us(_fd: i32) -> u32 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_read_at_the_first_request_then_once_per_refresh() {
        let mut cache = RttCache::default();
        let t0 = Instant::now();
        let mut reads = 0;
        let mut read = |v| {
            reads += 1;
            v
        };
        assert_eq!(
            cache.sample_with(t0, || read(100)),
            100,
            "the first request reads"
        );
        assert_eq!(cache.sample_with(t0, || read(200)), 100);
        let almost = t0 + REFRESH - Duration::from_nanos(1);
        assert_eq!(
            cache.sample_with(almost, || read(300)),
            100,
            "within REFRESH the value serves"
        );
        assert_eq!(cache.sample_with(t0 + REFRESH, || read(400)), 400);
        assert_eq!(cache.sample_with(t0 + REFRESH, || read(500)), 400);
        // An unknown RTT is remembered as unknown, not read on every request.
        assert_eq!(cache.sample_with(t0 + REFRESH * 2, || read(0)), 0);
        assert_eq!(cache.sample_with(t0 + REFRESH * 2, || read(600)), 0);
        assert_eq!(reads, 3);
    }

    #[tokio::test]
    async fn a_loopback_connection_has_a_smoothed_rtt() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (server, _) = accepted.unwrap();
        let rtt = ClientSocket::new(&server).rtt_us();
        if cfg!(target_os = "linux") {
            // The handshake gave the kernel its first sample; loopback is fast.
            assert!(rtt > 0 && rtt < 1_000_000, "{rtt} us");
        }
        drop(client);
    }
}
