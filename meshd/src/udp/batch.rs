//! Batched datagrams: one `recvmmsg(2)` takes up to `BATCH` datagrams into
//! buffers owned by the worker thread, so neither a datagram nor a session
//! allocates, and one `sendmmsg(2)` hands the replies of every session of a
//! port to their clients at once. The buffers are borrowed only between a
//! receive and the (non-blocking) send that empties them, never across an
//! `await`, so one set per thread is enough.

use nix::errno::Errno;
use nix::sys::socket::{
    recvmmsg, send, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};
use std::cell::RefCell;
use std::io::{ErrorKind, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Room for the largest UDP payload (65,507 bytes over IPv4, 65,527 over IPv6).
pub const MAX_DATAGRAM: usize = 65_536;
/// Datagrams taken per `recvmmsg` call, and sent per `sendmmsg` call.
pub const BATCH: usize = 32;

/// One filled slot: its size, its sender (`None`: unusable, e.g. cut by
/// `MSG_TRUNC`), and, for a reply, the session it belongs to.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    size: usize,
    from: Option<SocketAddr>,
    owner: u64,
}

/// Buffers and headers of one batch.
pub struct Batch {
    bufs: Box<[u8]>,
    headers: MultiHeaders<SockaddrStorage>,
    slots: [Slot; BATCH],
    len: usize,
    send_headers: MultiHeaders<SockaddrStorage>,
    /// Where each slot goes when the batch is sent.
    send_to: Vec<Option<SockaddrStorage>>,
}

/// What [`Batch::send`] did with one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The session the datagram belongs to.
    pub owner: u64,
    /// Its bytes.
    pub bytes: u64,
    /// Whether the kernel took it (when not: dropped, as UDP may).
    pub sent: bool,
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
            slots: [Slot::default(); BATCH],
            len: 0,
            send_headers: MultiHeaders::preallocate(BATCH, None),
            send_to: Vec::with_capacity(BATCH),
        }
    }
}

impl Batch {
    /// Empties the batch.
    pub fn clear(&mut self) {
        self.len = 0;
        self.send_to.clear();
    }

    /// Free slots left.
    pub fn room(&self) -> usize {
        BATCH - self.len
    }

    /// Reads what `fd` holds into the free slots without blocking, each
    /// datagram tagged with `owner` and bound for `to` when sent; returns
    /// how many (`WouldBlock` when none).
    fn recv_into(
        &mut self,
        fd: RawFd,
        owner: u64,
        to: Option<&SockaddrStorage>,
    ) -> std::io::Result<usize> {
        let start = self.len;
        let Batch {
            bufs,
            headers,
            slots,
            len,
            send_to,
            ..
        } = self;
        let mut chunks = bufs.chunks_mut(MAX_DATAGRAM).skip(start);
        let mut fixed: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        let free = &mut fixed[..BATCH - start];
        let results = recvmmsg(fd, headers, free.iter_mut(), MsgFlags::MSG_DONTWAIT, None)?;
        for r in results {
            // A datagram larger than the buffer cannot be one UDP carries; never forwarded cut.
            let from = if r.flags.contains(MsgFlags::MSG_TRUNC) {
                None
            } else {
                r.address.and_then(|a| to_std(&a))
            };
            if let Some(slot) = slots.get_mut(*len) {
                *slot = Slot {
                    size: r.bytes,
                    from,
                    owner,
                };
                send_to.push(to.copied());
                *len += 1;
            }
        }
        Ok(*len - start)
    }

    /// Reads client datagrams from `fd` into an empty batch (see [`Batch::datagrams`]).
    pub fn recv(&mut self, fd: RawFd) -> std::io::Result<usize> {
        self.clear();
        self.recv_into(fd, 0, None)
    }

    /// Reads from `socket` through tokio's readiness into the free slots
    /// (replies of session `owner`, bound for `to`; `to` is `None` for
    /// client datagrams). A short read means the kernel queue was empty, so
    /// readiness is cleared right then rather than by one more `recvmmsg`
    /// that could only say `EAGAIN` (one syscall less per wake-up; a
    /// datagram arriving meanwhile raises a new edge, so none is missed).
    /// `Ok(0)` when there was nothing to read.
    pub fn recv_ready(
        &mut self,
        socket: &UdpSocket,
        owner: u64,
        to: Option<&SockaddrStorage>,
    ) -> std::io::Result<usize> {
        let fd = socket.as_raw_fd();
        let mut got = 0;
        let read = socket.try_io(Interest::READABLE, || {
            let room = self.room();
            got = self.recv_into(fd, owner, to)?;
            if got < room {
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

    /// Sends every usable slot from `fd` to its destination in as few
    /// `sendmmsg(2)` calls as the kernel allows, without blocking, and
    /// empties the batch; `outcome` hears of each slot in order. A slot the
    /// kernel refuses is skipped; a full socket buffer drops the rest.
    pub fn send(&mut self, fd: RawFd, mut outcome: impl FnMut(Outcome)) {
        let Batch {
            bufs,
            slots,
            len,
            send_headers,
            send_to,
            ..
        } = self;
        let mut slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|_| [IoSlice::new(&[])]);
        let mut usable = [0usize; BATCH];
        let mut n = 0;
        for (i, (slot, buf)) in slots[..*len]
            .iter()
            .zip(bufs.chunks(MAX_DATAGRAM))
            .enumerate()
        {
            let (Some(_), Some(payload), Some(Some(_))) =
                (slot.from, buf.get(..slot.size), send_to.get(i))
            else {
                continue;
            };
            slices[n] = [IoSlice::new(payload)];
            usable[n] = i;
            n += 1;
        }
        let to: [Option<SockaddrStorage>; BATCH] =
            std::array::from_fn(|k| if k < n { send_to[usable[k]] } else { None });
        let none: [ControlMessage<'_>; 0] = [];
        let mut done = 0;
        while done < n {
            let r = sendmmsg(
                fd,
                send_headers,
                &slices[done..n],
                &to[done..n],
                none,
                MsgFlags::MSG_DONTWAIT,
            )
            .map(|sent| sent.count());
            let (took, give_up) = match r {
                Ok(0) | Err(Errno::EAGAIN) => (0, true),
                Ok(k) => (k, false),
                // The first datagram was refused (its own error): skip it only.
                Err(_) => (0, false),
            };
            let mut report = |from: usize, count: usize, sent: bool| {
                for &i in &usable[from..from + count] {
                    let s = slots[i];
                    outcome(Outcome {
                        owner: s.owner,
                        bytes: s.size as u64,
                        sent,
                    });
                }
            };
            report(done, took, true);
            done += took;
            let skip = if give_up {
                n - done
            } else {
                usize::from(took == 0)
            };
            report(done, skip, false);
            done += skip;
        }
        *len = 0;
        send_to.clear();
    }

    /// The datagrams of the last `recv`: (payload, sender); unusable ones left out.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.slots[..self.len]
            .iter()
            .zip(self.bufs.chunks(MAX_DATAGRAM))
            .filter_map(|(s, buf)| Some((buf.get(..s.size)?, s.from?)))
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

    #[tokio::test]
    async fn one_call_sends_the_replies_of_several_sessions_each_to_its_client() {
        let service = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let backend = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (up_a, up_b) = (
            UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        );
        let (client_a, client_b) = (
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        let big = vec![9u8; 60_000];
        backend.send_to(b"a1", up_a.local_addr().unwrap()).unwrap();
        backend.send_to(&big, up_a.local_addr().unwrap()).unwrap();
        backend.send_to(b"b1", up_b.local_addr().unwrap()).unwrap();
        backend.send_to(b"b2", up_b.local_addr().unwrap()).unwrap();
        let wait = std::time::Duration::from_secs(5);
        let mut b = Batch::default();
        let (to_a, to_b) = (
            SockaddrStorage::from(client_a.local_addr().unwrap()),
            SockaddrStorage::from(client_b.local_addr().unwrap()),
        );
        for (up, owner, to, want) in [(&up_a, 1, &to_a, 2), (&up_b, 2, &to_b, 4)] {
            while b.len < want {
                tokio::time::timeout(wait, up.readable())
                    .await
                    .unwrap()
                    .unwrap();
                b.recv_ready(up, owner, Some(to)).unwrap();
            }
        }
        assert_eq!(b.room(), BATCH - 4);
        let mut outcomes = Vec::new();
        b.send(service.as_raw_fd(), |o| outcomes.push(o));
        let sent = |owner, bytes| Outcome {
            owner,
            bytes,
            sent: true,
        };
        assert_eq!(
            outcomes,
            [sent(1, 2), sent(1, 60_000), sent(2, 2), sent(2, 2)]
        );
        assert_eq!(b.room(), BATCH);
        let mut buf = vec![0u8; 65_536];
        for (client, want) in [
            (&client_a, vec![b"a1".to_vec(), big]),
            (&client_b, vec![b"b1".to_vec(), b"b2".to_vec()]),
        ] {
            for w in want {
                let (n, from) = client.recv_from(&mut buf).unwrap();
                assert_eq!(
                    from,
                    service.local_addr().unwrap(),
                    "replies come from the service port"
                );
                assert_eq!(buf[..n], w[..]);
            }
        }
    }

    #[tokio::test]
    async fn a_full_batch_keeps_readiness_and_a_short_one_clears_it() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let client = SockaddrStorage::from(tx.local_addr().unwrap());
        for i in 0..=BATCH {
            tx.send_to(&[i as u8], to).unwrap();
        }
        let mut b = Batch::default();
        let wait = std::time::Duration::from_secs(5);
        let mut got = 0;
        while got < BATCH {
            tokio::time::timeout(wait, rx.readable())
                .await
                .unwrap()
                .unwrap();
            got += b.recv_ready(&rx, 7, Some(&client)).unwrap();
        }
        assert_eq!(b.room(), 0);
        b.clear();
        // Still readable without a new datagram: the last read was full.
        tokio::time::timeout(wait, rx.readable())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.recv_ready(&rx, 7, Some(&client)).unwrap(), 1);
        // Drained: tokio no longer thinks the socket readable, without another call.
        assert_eq!(b.recv_ready(&rx, 7, Some(&client)).unwrap(), 0);
        tx.send_to(b"c", to).unwrap();
        tokio::time::timeout(wait, rx.readable())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.recv_ready(&rx, 7, Some(&client)).unwrap(), 1);
    }
}
