//! Batched receive: one `recvmmsg(2)` takes up to `BATCH` datagrams per
//! wake-up into buffers owned by the worker thread, so neither a datagram
//! nor a session allocates. The buffers are borrowed only between the
//! receive and the (non-blocking) forwarding of the batch, never across an
//! `await`, so one set per thread is enough.

use nix::sys::socket::{recvmmsg, send, sendto, MsgFlags, MultiHeaders, SockaddrStorage};
use std::cell::RefCell;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::os::fd::RawFd;

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

/// Sends one datagram to `to` without blocking (see [`send_now`]).
pub fn send_to_now(fd: RawFd, payload: &[u8], to: SocketAddr) -> std::io::Result<usize> {
    Ok(sendto(
        fd,
        payload,
        &SockaddrStorage::from(to),
        MsgFlags::MSG_DONTWAIT,
    )?)
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

thread_local! {
    static BATCH_BUFS: RefCell<Option<Batch>> = const { RefCell::new(None) };
    static REPLY_BUF: RefCell<Option<Box<[u8]>>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's batch (made at first use).
pub fn with_batch<T>(f: impl FnOnce(&mut Batch) -> T) -> T {
    BATCH_BUFS.with(|b| {
        let mut b = b.borrow_mut();
        f(b.get_or_insert_with(Batch::default))
    })
}

/// Runs `f` on this thread's reply buffer (`MAX_DATAGRAM` bytes).
pub fn with_reply_buf<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
    REPLY_BUF.with(|b| {
        let mut b = b.borrow_mut();
        f(b.get_or_insert_with(|| vec![0; MAX_DATAGRAM].into_boxed_slice()))
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
}
