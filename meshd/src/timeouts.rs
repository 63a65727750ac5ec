//! Per-service timeouts with meshd's defaults filled in at reload.

use schemas::Timeouts;
use std::time::Duration;

/// Connecting to one backend.
pub const CONNECT: Duration = Duration::from_secs(2);
/// A client's request header.
pub const REQUEST_HEADER: Duration = Duration::from_secs(10);
/// An idle keep-alive client connection.
pub const IDLE: Duration = Duration::from_secs(60);
/// The backend's response header.
pub const RESPONSE: Duration = Duration::from_secs(30);
/// A TCP connection or tunnel with no bytes either way.
pub const TUNNEL_IDLE: Duration = Duration::from_secs(3600);
/// A UDP session with no datagram either way.
pub const UDP_IDLE: Duration = Duration::from_secs(30);

/// Every timeout of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// Backend connect.
    pub connect: Duration,
    /// Client request header.
    pub request_header: Duration,
    /// Idle client keep-alive.
    pub idle: Duration,
    /// Backend response header.
    pub response: Duration,
    /// Quiet tunnel.
    pub tunnel_idle: Duration,
    /// Quiet UDP session.
    pub udp_idle: Duration,
}

impl Resolved {
    /// meshd's defaults, for a service that sets none.
    pub const DEFAULT: Resolved = Resolved {
        connect: CONNECT,
        request_header: REQUEST_HEADER,
        idle: IDLE,
        response: RESPONSE,
        tunnel_idle: TUNNEL_IDLE,
        udp_idle: UDP_IDLE,
    };
}

impl From<&Timeouts> for Resolved {
    fn from(t: &Timeouts) -> Resolved {
        let or = |v: Option<schemas::duration::Duration>, d| v.map_or(d, |v| v.0);
        Resolved {
            connect: or(t.connect, CONNECT),
            request_header: or(t.request_header, REQUEST_HEADER),
            idle: or(t.idle, IDLE),
            response: or(t.response, RESPONSE),
            tunnel_idle: or(t.tunnel_idle, TUNNEL_IDLE),
            udp_idle: or(t.udp_idle, UDP_IDLE),
        }
    }
}
