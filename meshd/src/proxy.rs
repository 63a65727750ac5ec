//! Carrying traffic once a connection is allowed: `tcp` copies bytes, `http`
//! proxies requests; `connect`, `tunnel`, `headers` and `body` serve both.

pub mod alarms;
pub mod body;
pub mod buffers;
pub mod cancel;
pub mod codec;
pub mod conn;
pub mod connect;
pub mod copy;
pub mod deadline;
pub mod edge;
pub mod forward;
pub mod h1;
pub mod h2;
pub mod headers;
pub mod http;
pub mod name_cache;
pub mod park;
pub mod respond;
pub mod rtt;
pub mod splice;
pub mod stream;
pub mod tcp;
pub mod tunnel;
pub mod upstream;
