//! The client's round-trip time, as the kernel's TCP stack smooths it
//! (`TCP_INFO`'s `tcpi_rtt`): the first field of the user-to-app timing
//! breakdown. A `getsockopt` per request would cost a syscall on the
//! request path, so a connection reads it at its first request and then at
//! most once per `REFRESH`; the requests in between record the value last
//! read, so the histogram still weighs by requests.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long a value read serves the connection's requests. Time, not a
/// request count, bounds the syscalls: at most one a second per connection
/// however fast its requests come, and a slow keep-alive connection still
/// gets a fresh value for a request a second after the last. The kernel's
/// estimate is an average over many ACKs (gain 1/8), so it moves little in
/// a second; a graph of it is drawn from scrapes seconds apart.
pub const REFRESH: Duration = Duration::from_secs(1);

/// `read_at` before the first read.
const NEVER: u64 = u64::MAX;

/// One client connection's RTT, read from its socket now and then.
/// Shared by the streams of an HTTP/2 connection, hence the atomics (plain
/// loads and stores on x86; two streams racing read the socket twice).
#[derive(Debug)]
pub struct ClientRtt {
    /// The connection's socket. Not owned: read only while the connection's
    /// stream is open (its requests are judged on its own task, or in
    /// hyper's service call, which runs inside the connection's poll).
    fd: Option<i32>,
    /// The clock `read_at` counts from.
    opened: Instant,
    /// The value last read, in microseconds; 0 when the read failed or the
    /// kernel had no sample.
    us: AtomicU32,
    /// When it was read, in nanoseconds since `opened`; `NEVER` before.
    read_at: AtomicU64,
}

impl ClientRtt {
    /// For a connection accepted on `stream` (before any TLS is put on it).
    pub fn new(stream: &TcpStream) -> ClientRtt {
        #[cfg(unix)]
        let fd = Some(std::os::fd::AsRawFd::as_raw_fd(stream));
        #[cfg(not(unix))]
        let fd = {
            let _ = stream;
            None
        };
        ClientRtt {
            fd,
            opened: Instant::now(),
            us: AtomicU32::new(0),
            read_at: AtomicU64::new(NEVER),
        }
    }

    /// The RTT in microseconds for a request judged at `now` (0: unknown):
    /// read from the socket when the last read is older than `REFRESH`,
    /// else the value last read.
    pub fn sample(&self, now: Instant) -> u32 {
        let since = u64::try_from(now.saturating_duration_since(self.opened).as_nanos())
            .unwrap_or(NEVER - 1);
        if !due(since, self.read_at.load(Ordering::Relaxed)) {
            return self.us.load(Ordering::Relaxed);
        }
        let us = self.read();
        self.us.store(us, Ordering::Relaxed);
        self.read_at.store(since, Ordering::Relaxed);
        us
    }

    /// Reads the RTT from the socket now, in microseconds (0: unknown).
    pub fn read(&self) -> u32 {
        self.fd.map_or(0, tcp_rtt_us)
    }
}

/// Whether a value read at `read_at` (or `NEVER`) is too old at `since`
/// (both nanoseconds since the connection opened).
fn due(since: u64, read_at: u64) -> bool {
    read_at == NEVER || since.saturating_sub(read_at) >= REFRESH.as_nanos() as u64
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
    fn a_value_is_read_first_then_once_per_refresh() {
        let refresh = REFRESH.as_nanos() as u64;
        assert!(due(0, NEVER), "the first request reads");
        assert!(due(5 * refresh, NEVER));
        assert!(!due(0, 0));
        assert!(!due(refresh - 1, 0), "within REFRESH the last value serves");
        assert!(due(refresh, 0));
        assert!(!due(refresh + 7, refresh));
        // A clock that seems to go back never reads on every request.
        assert!(!due(3, 10));
    }

    #[tokio::test]
    async fn a_loopback_connection_has_a_smoothed_rtt() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (server, _) = accepted.unwrap();
        let rtt = ClientRtt::new(&server);
        let opened = Instant::now();
        let first = rtt.sample(opened);
        if cfg!(target_os = "linux") {
            // The handshake gave the kernel its first sample; loopback is fast.
            assert!(first > 0 && first < 1_000_000, "{first} us");
        }
        // Within REFRESH the value read serves, whatever the socket says.
        rtt.us.store(4242, Ordering::Relaxed);
        assert_eq!(rtt.sample(opened + Duration::from_millis(10)), 4242);
        if cfg!(target_os = "linux") {
            // After REFRESH the socket is read again.
            assert_ne!(rtt.sample(opened + REFRESH * 2), 4242);
        }
        drop(client);
    }
}
