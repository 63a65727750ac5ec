//! A per-thread cache of I/O buffers. Connections let their buffers go
//! whenever they wait (an idle connection holds none) and take one when
//! bytes arrive: that is once or twice per request, and the allocator's
//! path for blocks of kilobytes costs hundreds of instructions each way,
//! where a pop from this cache costs a few. The cache is bounded, so a
//! burst's buffers go back to the allocator once the cache is full, and a
//! thread between bursts lets the whole cache go (`on_quiet`).

use bytes::BytesMut;
use std::cell::{Cell, RefCell};

/// Size of a read buffer (a connection's, or one direction of a tunnel).
pub const READ: usize = 8 * 1024;
/// Size of a request head being rewritten for the backend.
pub const HEAD: usize = 1024;
/// Buffers kept per thread and kind: enough for the connections one
/// thread has on the move at once; the rest go back to the allocator.
const KEEP: usize = 64;
/// Larger buffers than this many times their kind's size are not kept.
const MAX_GROWTH: usize = 4;

/// One kind's kept buffers, and how many were ever taken (wrapping).
struct Pool<T> {
    kept: Vec<T>,
    taken: u32,
}

impl<T> Pool<T> {
    const fn new() -> Pool<T> {
        Pool {
            kept: Vec::new(),
            taken: 0,
        }
    }

    /// A kept buffer, if any; counted as taken either way.
    #[inline]
    fn take(&mut self) -> Option<T> {
        self.taken = self.taken.wrapping_add(1);
        self.kept.pop()
    }

    #[inline]
    fn give(&mut self, buf: T) {
        if self.kept.len() < KEEP {
            self.kept.push(buf);
        }
    }
}

thread_local! {
    static READS: RefCell<Pool<BytesMut>> = const { RefCell::new(Pool::new()) };
    static HEADS: RefCell<Pool<Vec<u8>>> = const { RefCell::new(Pool::new()) };
    static WRITES: RefCell<Pool<Vec<u8>>> = const { RefCell::new(Pool::new()) };
    /// Buffers taken by this thread when a quiet connection was last
    /// handed over here.
    static TAKEN_AT_QUIET: Cell<u32> = const { Cell::new(0) };
}

/// Called when a connection that has been quiet for a while is parked
/// (`park`): when this thread took no buffer since the last such
/// moment, it is between bursts, and the cache is let go so that a
/// burst's memory goes back to the system (about 1.1 MB per thread when
/// full). A thread still carrying requests takes buffers between two
/// parkings and keeps its cache; one wrongly emptied just fills again.
/// Asked here, not each time the thread goes idle: a runtime hook there
/// costs every request.
pub fn on_quiet() {
    let now = READS
        .with(|c| c.borrow().taken)
        .wrapping_add(HEADS.with(|c| c.borrow().taken))
        .wrapping_add(WRITES.with(|c| c.borrow().taken));
    if TAKEN_AT_QUIET.with(|t| t.replace(now)) == now {
        let_go();
    }
}

/// Lets this thread's cache go (a listener's last parked connection
/// went: the burst that filled it is over).
pub fn let_go() {
    READS.with(|c| drop(std::mem::take(&mut c.borrow_mut().kept)));
    HEADS.with(|c| drop(std::mem::take(&mut c.borrow_mut().kept)));
    WRITES.with(|c| drop(std::mem::take(&mut c.borrow_mut().kept)));
}

/// An empty read buffer with room for at least `READ` bytes.
#[inline]
pub fn take_read() -> BytesMut {
    READS
        .with(|c| c.borrow_mut().take())
        .unwrap_or_else(|| BytesMut::with_capacity(READ))
}

/// Takes `buf` back if it is empty and its memory can be reused whole
/// (not shared with bytes still passed on); drops it otherwise.
#[inline]
pub fn give_read(mut buf: BytesMut) {
    if !buf.is_empty() {
        return;
    }
    // A cleared buffer (`consume`) has its room at hand; one read past by
    // `advance` gets it back when its memory is its own.
    if buf.capacity() < READ && !buf.try_reclaim(READ) || buf.capacity() > READ * MAX_GROWTH {
        return;
    }
    READS.with(|c| c.borrow_mut().give(buf));
}

/// Takes the first `n` bytes of `buf` as used: all of them clears it, which
/// keeps its whole room (`advance` would leave it to be reclaimed).
#[inline]
pub fn consume(buf: &mut BytesMut, n: usize) {
    if n >= buf.len() {
        buf.clear();
    } else {
        bytes::Buf::advance(buf, n);
    }
}

/// An empty buffer with room for at least `size` bytes (`HEAD` or a write
/// buffer's size).
#[inline]
pub fn take_vec(size: usize) -> Vec<u8> {
    let mut v = pool_of(size)
        .with(|c| c.borrow_mut().take())
        .unwrap_or_default();
    v.reserve(size);
    v
}

/// Takes `v` back, emptied, when it has a kept size.
#[inline]
pub fn give_vec(mut v: Vec<u8>) {
    let cap = v.capacity();
    let kept =
        (HEAD..HEAD * MAX_GROWTH).contains(&cap) || (READ..=READ * MAX_GROWTH).contains(&cap);
    if !kept {
        return;
    }
    v.clear();
    pool_of(cap).with(|c| c.borrow_mut().give(v));
}

fn pool_of(size: usize) -> &'static std::thread::LocalKey<RefCell<Pool<Vec<u8>>>> {
    if size < READ {
        &HEADS
    } else {
        &WRITES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn a_given_back_read_buffer_is_taken_again_whole() {
        let mut b = take_read();
        let at = b.as_ptr();
        b.put_slice(b"request");
        let _ = b.split_to(7);
        // The split-off bytes are gone: the memory is the buffer's alone.
        give_read(b);
        let again = take_read();
        assert_eq!(again.as_ptr(), at);
        assert!(again.is_empty() && again.capacity() >= READ);
    }

    #[test]
    fn a_buffer_sharing_its_memory_is_not_kept() {
        let mut b = take_read();
        b.put_slice(b"body");
        let passed_on = b.split_to(4).freeze();
        give_read(b);
        let other = take_read();
        assert_ne!(other.as_ptr(), passed_on.as_ptr());
        assert_eq!(&passed_on[..], b"body");
    }

    #[test]
    fn a_quiet_moment_without_a_take_since_the_last_lets_the_cache_go() {
        std::thread::spawn(|| {
            give_read(take_read());
            give_vec(take_vec(HEAD));
            give_vec(take_vec(READ));
            let cached = || {
                READS.with(|c| c.borrow().kept.len())
                    + HEADS.with(|c| c.borrow().kept.len())
                    + WRITES.with(|c| c.borrow().kept.len())
            };
            assert_eq!(cached(), 3);
            // Buffers were taken since the last quiet moment: kept.
            on_quiet();
            assert_eq!(cached(), 3);
            // Another, with nothing taken between: let go.
            on_quiet();
            assert_eq!(cached(), 0);
        })
        .join()
        .expect("the test's thread");
    }

    #[test]
    fn write_buffers_come_back_empty_and_oversized_ones_are_dropped() {
        let mut v = take_vec(READ);
        v.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let at = v.as_ptr();
        give_vec(v);
        let again = take_vec(READ);
        assert!(again.is_empty() && again.capacity() >= READ);
        assert_eq!(again.as_ptr(), at);
        give_vec(Vec::with_capacity(READ * MAX_GROWTH + 1));
        let head = take_vec(HEAD);
        assert!(head.capacity() >= HEAD && head.capacity() < READ);
    }
}
