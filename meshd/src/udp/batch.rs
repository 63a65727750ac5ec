//! Batched receive: one `recvmmsg(2)` takes up to `BATCH` datagrams per
//! wake-up into buffers owned by the worker thread, so neither a datagram
//! nor a session allocates. The buffers are borrowed only between the
//! receive and the (non-blocking) forwarding of the batch, never across an
//! `await`, so one set per thread is enough.

use nix::sys::socket::{
    recvmmsg, send, sendmmsg, sendto, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};
use std::cell::RefCell;
use std::io::{ErrorKind, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Room for the largest UDP payload (65,507 bytes over IPv4, 65,527 over IPv6).
pub const MAX_DATAGRAM: usize = 65_536;
/// Datagrams taken per `recvmmsg` call.
pub const BATCH: usize = 32;

/// Buffers and headers of one batch.
pub struct Batch {
    bufs: Box<[u8]>,
    headers: MultiHeaders<SockaddrStorage>,
    got: [(usize, Option<SocketAddr>); BATCH],
    len: usize,
    send_headers: MultiHeaders<SockaddrStorage>,
    send_to: Vec<Option<SockaddrStorage>>,
}

/// What [`Batch::send_all_to`] handed to the kernel.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Datagrams the kernel took.
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Usable datagrams it did not take (socket buffer full): dropped, as UDP may.
    pub unsent: u64,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("len", &self.len).finish()
    }
}

impl Default for Batch {
    fn default() -> Batch {
        Batch {
            bufs: vec![0; BATCH * MAX_DATAGRAM].into_boxed_slice(),
            headers: MultiHeaders::preallocate(BATCH, None),
            got: [(0, None); BATCH],
            len: 0,
            send_headers: MultiHeaders::preallocate(BATCH, None),
            send_to: Vec::with_capacity(BATCH),
        }
    }
}

impl Batch {
    /// Reads what `fd` holds, up to `BATCH` datagrams, without blocking;
    /// returns how many (`WouldBlock` when none).
    pub fn recv(&mut self, fd: RawFd) -> std::io::Result<usize> {
        let Batch {
            bufs,
            headers,
            got,
            len,
            ..
        } = self;
        *len = 0;
        let mut chunks = bufs.chunks_mut(MAX_DATAGRAM);
        let mut slices: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        let results = recvmmsg(fd, headers, slices.iter_mut(), MsgFlags::MSG_DONTWAIT, None)?;
        for r in results {
            // A datagram larger than the buffer cannot be one UDP carries; never forwarded cut.
            let address = if r.flags.contains(MsgFlags::MSG_TRUNC) {
                None
            } else {
                r.address.and_then(|a| to_std(&a))
            };
            if let Some(slot) = got.get_mut(*len) {
                *slot = (r.bytes, address);
                *len += 1;
            }
        }
        Ok(*len)
    }

    /// Reads a batch from `socket` through tokio's readiness. A short batch
    /// means the kernel queue was empty, so readiness is cleared right then
    /// rather than by one more `recvmmsg` that could only say `EAGAIN` (one
    /// syscall less per wake-up; a datagram arriving meanwhile raises a new
    /// edge, so none is missed). `Ok(0)` when there was nothing to read.
    pub fn recv_ready(&mut self, socket: &UdpSocket) -> std::io::Result<usize> {
        let fd = socket.as_raw_fd();
        let mut got = 0;
        let read = socket.try_io(Interest::READABLE, || {
            got = self.recv(fd)?;
            if got < BATCH {
                Err(ErrorKind::WouldBlock.into())
            } else {
                Ok(got)
            }
        });
        match read {
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(got),
            other => other,
        }
    }

    /// Sends every usable datagram of the last `recv` to `to` from `fd`: a
    /// session's replies, all for its one client, in one `sendmmsg(2)` (one
    /// `sendto` when there is only one), without blocking.
    pub fn send_all_to(&mut self, fd: RawFd, to: &SockaddrStorage) -> Sent {
        let Batch {
            bufs,
            got,
            len,
            send_headers,
            send_to,
            ..
        } = self;
        let mut slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|_| [IoSlice::new(&[])]);
        let mut sizes = [0u64; BATCH];
        let mut n = 0;
        for ((size, from), buf) in got[..*len].iter().zip(bufs.chunks(MAX_DATAGRAM)) {
            let (Some(_), Some(payload)) = (from, buf.get(..*size)) else {
                continue;
            };
            slices[n] = [IoSlice::new(payload)];
            sizes[n] = *size as u64;
            n += 1;
        }
        let took = match n {
            0 => 0,
            1 => usize::from(sendto(fd, &slices[0][0], to, MsgFlags::MSG_DONTWAIT).is_ok()),
            _ => {
                send_to.clear();
                send_to.resize(n, Some(*to));
                let none: [ControlMessage<'_>; 0] = [];
                sendmmsg(
                    fd,
                    send_headers,
                    &slices[..n],
                    &send_to[..],
                    none,
                    MsgFlags::MSG_DONTWAIT,
                )
                .map_or(0, |sent| sent.count())
            }
        };
        Sent {
            datagrams: took as u64,
            bytes: sizes[..took].iter().sum(),
            unsent: (n - took) as u64,
        }
    }

    /// The datagrams of the last `recv`: (payload, sender); unusable ones left out.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.got[..self.len]
            .iter()
            .zip(self.bufs.chunks(MAX_DATAGRAM))
            .filter_map(|((n, from), buf)| Some((buf.get(..*n)?, (*from)?)))
    }
}

/// Sends one datagram on a connected socket without blocking. Straight to
/// the kernel: tokio's `try_send` refuses until the socket has been seen
/// writable once, which would drop the first datagram of every session.
pub fn send_now(fd: RawFd, payload: &[u8]) -> std::io::Result<usize> {
    Ok(send(fd, payload, MsgFlags::MSG_DONTWAIT)?)
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

thread_local! {
    static BATCH_BUFS: RefCell<Option<Batch>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's batch (made at first use).
pub fn with_batch<T>(f: impl FnOnce(&mut Batch) -> T) -> T {
    BATCH_BUFS.with(|b| {
        let mut b = b.borrow_mut();
        f(b.get_or_insert_with(Batch::default))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn one_call_takes_every_queued_datagram_with_its_sender() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let big = vec![7u8; 65_507];
        tx.send_to(b"one", rx.local_addr().unwrap()).unwrap();
        tx.send_to(&big, rx.local_addr().unwrap()).unwrap();
        tx.send_to(b"", rx.local_addr().unwrap()).unwrap();
        let mut b = Batch::default();
        assert_eq!(b.recv(rx.as_raw_fd()).unwrap(), 3);
        let got: Vec<(Vec<u8>, SocketAddr)> = b.datagrams().map(|(d, a)| (d.to_vec(), a)).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, b"one");
        assert_eq!(got[1].0, big);
        assert!(got[2].0.is_empty());
        assert!(got.iter().all(|(_, a)| *a == tx.local_addr().unwrap()));
        let e = b.recv(rx.as_raw_fd()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    }

    #[test]
    fn one_call_sends_a_whole_batch_to_one_client_intact() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let big = vec![9u8; 60_000];
        tx.send_to(b"first", rx.local_addr().unwrap()).unwrap();
        tx.send_to(&big, rx.local_addr().unwrap()).unwrap();
        tx.send_to(b"third", rx.local_addr().unwrap()).unwrap();
        let mut b = Batch::default();
        assert_eq!(b.recv(rx.as_raw_fd()).unwrap(), 3);
        let to = SockaddrStorage::from(client.local_addr().unwrap());
        let sent = b.send_all_to(rx.as_raw_fd(), &to);
        assert_eq!(
            sent,
            Sent {
                datagrams: 3,
                bytes: 60_010,
                unsent: 0
            }
        );
        let mut buf = vec![0u8; 65_536];
        let mut got = Vec::new();
        for _ in 0..3 {
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(
                from,
                rx.local_addr().unwrap(),
                "replies come from the socket sent on"
            );
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got, [b"first".to_vec(), big, b"third".to_vec()]);
    }

    #[tokio::test]
    async fn a_short_batch_clears_readiness_and_the_next_datagram_wakes_again() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        tx.send_to(b"a", to).unwrap();
        tx.send_to(b"b", to).unwrap();
        let mut b = Batch::default();
        let wait = std::time::Duration::from_secs(5);
        let mut got = 0;
        while got < 2 {
            tokio::time::timeout(wait, rx.readable())
                .await
                .unwrap()
                .unwrap();
            got += b.recv_ready(&rx).unwrap();
        }
        // Drained: tokio no longer thinks the socket readable, without another call.
        assert_eq!(b.recv_ready(&rx).unwrap(), 0);
        tx.send_to(b"c", to).unwrap();
        tokio::time::timeout(wait, rx.readable())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.recv_ready(&rx).unwrap(), 1);
        assert_eq!(b.datagrams().next().unwrap().0, b"c");
    }
}
