//! UDP services: one socket per service port, a session per client
//! (address, port) judged at its first datagram, a connected upstream
//! socket per session, replies sent back from the service port.
//!
//! - `batch`: one `recvmmsg(2)` per wake-up into the worker thread's buffers.
//! - `session`: the session table's decisions (re-judging at reload, idle).
//! - `listen`: the sockets and tasks.

pub mod batch;
pub mod listen;
pub mod session;
