//! UDP services: one socket per service port, a session per client
//! (address, port) judged at its first datagram, a connected upstream
//! socket per session, replies sent back from the service port.
//!
//! One task per port drives the service socket and all its sessions'
//! upstream sockets, so the replies of many sessions leave in one send.
//!
//! - `batch`: `recvmmsg(2)`/`sendmmsg(2)` batches in the worker thread's buffers.
//! - `ready`: per-session wakers feeding the port's queue of ready sessions.
//! - `table`: the session table (by id and by client).
//! - `session`: the session table's decisions (re-judging at reload, idle).
//! - `listen`: the port's socket and task: client datagrams, idle sweep, reloads.
//! - `open`: a new session (verdict, limit, backend, upstream socket).
//! - `names`: backends' host names, one lookup at a time, answers kept briefly.
//! - `relay`: replies of all woken sessions, sent in one batch.

pub mod batch;
pub mod listen;
pub mod names;
mod open;
pub mod ready;
mod relay;
pub mod session;
pub mod table;
