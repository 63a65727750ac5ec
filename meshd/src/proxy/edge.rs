//! The shared edge listeners: one HTTP and one HTTPS port for every app
//! that declares a `vhost`. A request goes to the app whose host name it
//! names (`Host`, `:authority`, or the TLS SNI for the certificate), longest
//! path prefix first; unknown hosts get 404 with no backend touched. The
//! allow-list applies per request (outside clients match CIDR rules).

use super::http::Conn;
use super::respond::ProxyError;
use crate::authz::Decision;
use crate::snapshot::Route;
use hyper::Request;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// The host a request names, lowercased, without a port.
pub fn request_host<B>(req: &Request<B>) -> Option<String> {
    host_of(req.headers(), req.uri())
}

/// The host named by `Host`, else by the URI's authority, normalized.
fn host_of(headers: &hyper::HeaderMap, uri: &hyper::Uri) -> Option<String> {
    let raw = headers
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))?;
    Some(normalize_host(raw))
}

/// A `Host` value or authority, lowercased, without a port or IPv6 brackets.
pub fn normalize_host(raw: &str) -> String {
    let host = match raw.rsplit_once(':') {
        Some((h, port))
            if port.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(']')
                || raw.starts_with('[') =>
        {
            h.trim_start_matches('[').trim_end_matches(']')
        }
        _ => raw,
    };
    host.to_ascii_lowercase()
}

/// Picks the route for a request naming `host` (normalized) and
/// `path_and_query` (origin-form), with its verdict, or says why not.
pub fn choose_by(
    conn: &Conn,
    host: Option<String>,
    path_and_query: &str,
) -> Result<(Arc<Route>, Decision), ProxyError> {
    let snapshot = conn.runtime.load().ok_or(ProxyError::NoConfig)?;
    let host = host.ok_or(ProxyError::NoHost)?;
    let path = path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p);
    let route = snapshot
        .edge
        .get(&host)
        .and_then(|entries| {
            entries
                .iter()
                .find(|(prefix, _)| path.starts_with(prefix.as_str()))
        })
        .and_then(|(_, key)| snapshot.routes.get(key))
        .cloned()
        .ok_or_else(|| ProxyError::NoRoute {
            host: host.clone(),
            path: path.to_owned(),
        })?;
    if !conn.https && route.tls.as_ref().is_some_and(|t| t.redirect_https) {
        return Err(ProxyError::Redirect(format!(
            "https://{host}{path_and_query}"
        )));
    }
    let (decision, counter) = route.authorize(&snapshot, conn.ip);
    counter.increment(1);
    Ok((route, decision))
}

/// The `Strict-Transport-Security` max-age to send for `route`, if any:
/// only to clients that came over TLS.
pub fn hsts(conn: &Conn, route: &Route) -> Option<u64> {
    route
        .tls
        .as_ref()
        .and_then(|t| t.hsts)
        .filter(|_| conn.https)
}

/// Chooses the edge certificate by SNI from the running snapshot.
#[derive(Debug)]
pub struct EdgeCerts {
    /// The running config and its certificates.
    pub runtime: Arc<crate::swap::Runtime>,
}

impl ResolvesServerCert for EdgeCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name()?.to_ascii_lowercase();
        let snapshot = self.runtime.load()?;
        let (cert, key) = snapshot.edge_tls.get(&sni)?;
        self.runtime.certs.certified(cert, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str) -> Option<String> {
        request_host(&Request::get("/").header("host", h).body(()).unwrap())
    }

    #[test]
    fn hosts_are_lowercased_without_ports() {
        assert_eq!(
            host("Shop.Example.com:8443").as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(
            host("shop.example.com").as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(host("[::1]:80").as_deref(), Some("::1"));
        let h2 = Request::get("https://api.example.com/x").body(()).unwrap();
        assert_eq!(request_host(&h2).as_deref(), Some("api.example.com"));
    }
}
