//! Quiet HTTP/1.1 keep-alive connections, parked. A connection that has
//! waited `PARK_AFTER` for its next request ends its task and hands its
//! socket and state to its listener's lot: one task per listener watches
//! every parked socket (each with a waker that names it), closes those
//! whose idle timeout passes, and gives a socket whose client speaks again
//! a new task. So a quiet connection costs its socket's registration and a
//! few hundred bytes, not a task (a task's cell alone is 768 bytes), as an
//! event-loop proxy's does; a busy one never parks.

use super::buffers;
use super::http::Conn;
use super::rtt::RttCache;
use crate::wake_queue::{self, ReadyQueue};
use bytes::BytesMut;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a connection waits for its next request in a task of its own
/// before it is parked. A client that sends a request at least this often
/// never parks; one that pauses longer pays a task spawn when it speaks.
pub const PARK_AFTER: Duration = Duration::from_secs(1);
/// The shortest time between two sweeps for idle timeouts: a parked
/// connection closes at most this late.
const SWEEP_EVERY: Duration = Duration::from_millis(100);
/// Room the keeper's vectors keep once a burst has passed.
const KEPT_ROOM: usize = 64;

/// A stream a quiet connection can be parked on: a plain TCP socket,
/// whose readiness tells when the client speaks. A TLS stream cannot (its
/// session may hold bytes already read).
pub trait Parkable: Sized {
    /// Whether `into_tcp` gives a socket.
    const CAN_PARK: bool;
    /// The plain socket, when there is one.
    fn into_tcp(self) -> Option<TcpStream>;
}

impl Parkable for TcpStream {
    const CAN_PARK: bool = true;
    fn into_tcp(self) -> Option<TcpStream> {
        Some(self)
    }
}

impl<T> Parkable for tokio_rustls::server::TlsStream<T> {
    const CAN_PARK: bool = false;
    fn into_tcp(self) -> Option<TcpStream> {
        None
    }
}

/// Every service listener's lot, by listen address.
#[derive(Debug, Default)]
pub struct Lots(Mutex<HashMap<SocketAddr, Arc<Lot>>>);

impl Lots {
    /// The lot of the listener bound at `listen`.
    pub fn get(&self, listen: SocketAddr) -> Option<Arc<Lot>> {
        let lots = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        lots.get(&listen).cloned()
    }

    /// Registers the lot of a listener bound at `listen`.
    pub fn insert(&self, listen: SocketAddr, lot: Arc<Lot>) {
        let mut lots = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        lots.insert(listen, lot);
    }

    /// Forgets the lot of a listener that is draining.
    pub fn remove(&self, listen: SocketAddr) {
        let mut lots = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        lots.remove(&listen);
    }
}

/// A parked connection: what its task held, minus the task.
pub struct Parked {
    /// The client's socket.
    pub io: TcpStream,
    /// What its requests share.
    pub conn: Conn,
    /// Its RTT as last read.
    pub rtt: RttCache,
    /// Its idle deadline.
    pub until: Instant,
}

/// A listener's parked connections: where its connections hand themselves
/// over, and the state its keeper task shares with them.
#[derive(Debug)]
pub struct Lot {
    /// Handed over and not yet watched; `None` once the listener drained.
    handed: Mutex<Option<Vec<Parked>>>,
    /// Parked sockets that became readable, and hand-overs.
    queue: Arc<ReadyQueue>,
    /// Where resumed connections' tasks go (the listener's, so a shutdown
    /// waits for them).
    tasks: TaskTracker,
}

impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parked")
            .field("peer", &self.conn.peer())
            .finish_non_exhaustive()
    }
}

impl Lot {
    /// A lot for one listener, and its keeper, spawned on `tasks`: it ends
    /// (closing every connection parked there) when `draining` fires.
    pub fn start(tasks: &TaskTracker, draining: CancellationToken) -> Arc<Lot> {
        let lot = Arc::new(Lot {
            handed: Mutex::new(Some(Vec::new())),
            queue: Arc::new(ReadyQueue::default()),
            tasks: tasks.clone(),
        });
        tasks.spawn(keep(Arc::clone(&lot), draining));
        lot
    }

    /// Runs `connection` in a task of its own among the listener's (a
    /// shutdown waits for it): an HTTP/1.1 connection that turned out to
    /// speak HTTP/2 ends its task and hands its socket on this way.
    pub fn spawn(&self, connection: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(connection);
    }

    /// Parks a quiet connection; after a drain it is closed instead.
    pub fn park(&self, parked: Parked) {
        let mut handed = self.handed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = handed.as_mut() {
            h.push(parked);
            drop(handed);
            self.queue.wake();
        }
    }
}

/// One parked connection in the keeper's table.
struct Slot {
    /// Bumped when the slot is emptied, so that a stale wake-up (its id
    /// names the slot's earlier tenant) finds nothing.
    generation: u32,
    /// The idle deadline, beside the slot so that a sweep reads no box.
    until: Instant,
    parked: Option<Box<Parked>>,
}

/// The keeper's table of parked connections.
struct Table {
    slots: Vec<Slot>,
    free: Vec<u32>,
    len: usize,
    /// `palisade_meshd_parked_connections`, shared by every listener's table.
    gauge: metrics::Gauge,
}

impl Drop for Table {
    fn drop(&mut self) {
        self.gauge.decrement(self.len as f64);
    }
}

impl Table {
    fn new() -> Table {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            gauge: metrics::gauge!(crate::metrics::PARKED_CONNECTIONS),
        }
    }

    fn insert(&mut self, parked: Box<Parked>) -> u64 {
        let until = parked.until;
        self.len += 1;
        self.gauge.increment(1.0);
        let index = match self.free.pop() {
            Some(i) => {
                let slot = &mut self.slots[i as usize];
                slot.until = until;
                slot.parked = Some(parked);
                i
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    until,
                    parked: Some(parked),
                });
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        id(index, self.slots[index as usize].generation)
    }

    fn remove(&mut self, id: u64) -> Option<Box<Parked>> {
        let (index, generation) = ((id & u64::from(u32::MAX)) as u32, (id >> 32) as u32);
        let slot = self.slots.get_mut(index as usize)?;
        if slot.generation != generation {
            return None;
        }
        let parked = slot.parked.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.len -= 1;
        self.gauge.decrement(1.0);
        if self.len == 0 && self.slots.capacity() > KEPT_ROOM {
            // A burst's table goes back to the allocator with it (a stale
            // wake-up may then name a new tenant: it reads nothing and
            // stays parked), and so do the buffers its closing took.
            self.slots = Vec::new();
            self.free = Vec::new();
            buffers::let_go();
        }
        Some(parked)
    }

    /// Closes the connections whose deadline has passed; the earliest
    /// deadline left.
    fn sweep(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            if slot.parked.is_none() {
                continue;
            }
            if slot.until <= now {
                let id = id(i as u32, slot.generation);
                drop(self.remove(id));
            } else {
                next = Some(next.map_or(slot.until, |n| n.min(slot.until)));
            }
        }
        next
    }
}

fn id(index: u32, generation: u32) -> u64 {
    u64::from(generation) << 32 | u64::from(index)
}

/// What a parked socket's readiness said.
enum Woken {
    /// The client sent bytes (read into the buffer): it gets a task again.
    Spoke(BytesMut),
    /// Nothing to read after all: still parked.
    Quiet,
    /// Closed by the client, or failed.
    Gone,
}

/// Reads what a parked socket has, without waiting.
fn read_woken(io: &TcpStream) -> Woken {
    let mut buf = buffers::take_read();
    match io.try_read_buf(&mut buf) {
        Ok(n) if n > 0 => Woken::Spoke(buf),
        Ok(_) => {
            buffers::give_read(buf);
            Woken::Gone
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            buffers::give_read(buf);
            Woken::Quiet
        }
        Err(_) => {
            buffers::give_read(buf);
            Woken::Gone
        }
    }
}

/// The keeper of one listener's lot.
async fn keep(lot: Arc<Lot>, draining: CancellationToken) {
    let mut table = Table::new();
    let (mut handed, mut woken) = (Vec::new(), Vec::new());
    let mut sweep = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
    // The earliest idle deadline in the table (perhaps of a connection
    // gone since: its sweep then finds nothing).
    let mut next: Option<Instant> = None;
    let mut last_sweep = Instant::now();
    let mut drained = std::pin::pin!(draining.cancelled());
    loop {
        // Woken by a hand-over, a parked socket, the sweep or the drain.
        let mut notified = std::pin::pin!(lot.queue.woken());
        let fired = std::future::poll_fn(|cx| {
            if drained.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            if next.is_some() && sweep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(true));
            }
            notified.as_mut().poll(cx).map(|()| Some(false))
        });
        let Some(swept) = fired.await else { break };
        if let Some(h) = lot
            .handed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            std::mem::swap(h, &mut handed);
        }
        for parked in handed.drain(..) {
            next = Some(next.map_or(parked.until, |n| n.min(parked.until)));
            let id = table.insert(Box::new(parked));
            watch(&lot, &table, id);
        }
        // What a burst of hand-overs or wake-ups grew goes back.
        handed.shrink_to(KEPT_ROOM);
        woken.shrink_to(KEPT_ROOM);
        lot.queue.take(&mut woken);
        for &id in &woken {
            let Some(parked) = table.remove(id) else {
                continue;
            };
            match read_woken(&parked.io) {
                Woken::Spoke(buf) => resume(&lot, *parked, buf),
                Woken::Gone => {}
                Woken::Quiet => {
                    let id = table.insert(parked);
                    watch(&lot, &table, id);
                }
            }
        }
        if swept {
            last_sweep = Instant::now();
            next = table.sweep(last_sweep);
        }
        if let Some(at) = next {
            let at = at.max(last_sweep + SWEEP_EVERY);
            if sweep.deadline() != at {
                sweep.as_mut().reset(at);
            }
        }
    }
    // Draining: no new hand-overs; every parked connection closes.
    lot.handed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    drop(table);
}

/// Registers the keeper's waker for parked connection `id`'s socket; one
/// that is readable already is looked at on the next pass.
fn watch(lot: &Arc<Lot>, table: &Table, id: u64) {
    let Some(slot) = table.slots.get((id & u64::from(u32::MAX)) as usize) else {
        return;
    };
    let Some(parked) = slot.parked.as_ref() else {
        return;
    };
    let waker = wake_queue::waker(&lot.queue, id);
    let mut cx = Context::from_waker(&waker);
    if parked.io.poll_read_ready(&mut cx).is_ready() {
        waker.wake();
    }
}

/// Gives a parked connection whose client spoke a task again.
fn resume(lot: &Lot, parked: Parked, buf: BytesMut) {
    let Parked { io, conn, rtt, .. } = parked;
    lot.tasks.spawn(super::h1::resume(io, conn, rtt, buf));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a parked connection holds besides its socket's registration
    /// (256 bytes, tokio's): its box and its slot.
    #[test]
    fn a_parked_connection_stays_small() {
        let boxed = std::mem::size_of::<Parked>();
        let slot = std::mem::size_of::<Slot>();
        eprintln!("parked connection: {boxed}-byte box, {slot}-byte slot");
        assert!(boxed <= 256 && slot <= 40, "{boxed} + {slot} bytes");
    }
}
