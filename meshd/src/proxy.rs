//! Carrying traffic once a connection is allowed: `tcp` copies bytes, `http`
//! proxies requests; `connect`, `tunnel`, `headers` and `body` serve both.

pub mod body;
pub mod connect;
pub mod edge;
pub mod headers;
pub mod http;
pub mod stream;
pub mod tcp;
pub mod tunnel;
pub mod upstream;
