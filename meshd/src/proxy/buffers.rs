//! A per-thread cache of I/O buffers. Connections let their buffers go
//! whenever they wait (an idle connection holds none) and take one when
//! bytes arrive: that is once or twice per request, and the allocator's
//! path for blocks of kilobytes costs hundreds of instructions each way,
//! where a pop from this cache costs a few. The cache is bounded, so a
//! burst's buffers go back to the allocator once the cache is full, and a
//! thread that went idle lets the whole cache go (`on_park`).

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

thread_local! {
    static READS: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static HEADS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static WRITES: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// Buffers taken by this thread, ever (wrapping).
    static TAKEN: Cell<u32> = const { Cell::new(0) };
    /// `TAKEN` when the thread last went idle.
    static TAKEN_AT_PARK: Cell<u32> = const { Cell::new(0) };
}

/// Counts a buffer taken, for `on_park`.
#[inline]
fn taken() {
    TAKEN.with(|t| t.set(t.get().wrapping_add(1)));
}

/// Called as the runtime's thread goes idle: when it took no buffer since
/// it last went idle (it woke only for a timer or a quiet socket), the
/// cache is let go, so that the memory of a burst goes back to the system
/// (about 1.1 MB per thread when full). A busy thread takes buffers
/// between any two idle moments and keeps its cache.
pub fn on_park() {
    let now = TAKEN.with(Cell::get);
    if TAKEN_AT_PARK.with(|t| t.replace(now)) == now {
        READS.with(|c| drop(c.take()));
        HEADS.with(|c| drop(c.take()));
        WRITES.with(|c| drop(c.take()));
    }
}

/// An empty read buffer with room for at least `READ` bytes.
#[inline]
pub fn take_read() -> BytesMut {
    taken();
    READS
        .with(|c| c.borrow_mut().pop())
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
    READS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() < KEEP {
            c.push(buf);
        }
    });
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
    taken();
    let mut v = pool_of(size)
        .with(|c| c.borrow_mut().pop())
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
    pool_of(cap).with(|c| {
        let mut c = c.borrow_mut();
        if c.len() < KEEP {
            c.push(v);
        }
    });
}

fn pool_of(size: usize) -> &'static std::thread::LocalKey<RefCell<Vec<Vec<u8>>>> {
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
    fn an_idle_moment_without_a_take_lets_the_cache_go() {
        std::thread::spawn(|| {
            give_read(take_read());
            give_vec(take_vec(HEAD));
            give_vec(take_vec(READ));
            let cached = || {
                READS.with(|c| c.borrow().len())
                    + HEADS.with(|c| c.borrow().len())
                    + WRITES.with(|c| c.borrow().len())
            };
            assert_eq!(cached(), 3);
            // Buffers were taken since the last idle moment: kept.
            on_park();
            assert_eq!(cached(), 3);
            // Idle again with nothing taken between: let go.
            on_park();
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
