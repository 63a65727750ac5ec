//! Header rules of the HTTP proxy: hop-by-hop headers stop here (RFC 9110
//! section 7.6.1), `X-Forwarded-For`, `X-Forwarded-Proto` and a request id
//! are added, and an HTTP/2 request becomes an HTTP/1.1 one for the backend.

use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Request, Version};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether a request asks to switch protocols (WebSocket and the like).
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && has_token(req.headers(), "upgrade")
}

fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers; an upgrade keeps `Connection: upgrade` and `Upgrade`.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most requests carry none: one pass over the names spares the removals.
    if !keep_upgrade && !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            if !(keep_upgrade && name == header::UPGRADE) {
                headers.remove(name);
            }
        }
        headers.remove(header::CONNECTION);
    }
    for name in [
        KEEP_ALIVE,
        PROXY_CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// A fresh request id: sixteen random hex digits.
pub fn request_id_bytes() -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut n = fastrand::u64(..);
    for b in buf.iter_mut().rev() {
        *b = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    buf
}

fn request_id() -> HeaderValue {
    // Sixteen hex digits are always a valid header value.
    HeaderValue::from_bytes(&request_id_bytes()).unwrap_or(HeaderValue::from_static("0"))
}

/// Readies a client's request for a backend.
pub fn prepare_request(
    parts: &mut http::request::Parts,
    peer: &HeaderValue,
    upgrade: bool,
    https: bool,
) {
    let headers = &mut parts.headers;
    if parts.version == Version::HTTP_2 && !headers.contains_key(header::HOST) {
        if let Some(host) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(header::HOST, host);
        }
    }
    strip_hop_by_hop(headers, upgrade);
    let xff = match headers.get(&X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + peer.len());
            v.extend_from_slice(prev);
            v.extend_from_slice(b", ");
            v.extend_from_slice(peer.as_bytes());
            HeaderValue::from_bytes(&v).unwrap_or_else(|_| peer.clone())
        }
        None => peer.clone(),
    };
    headers.insert(X_FORWARDED_FOR, xff);
    let proto = HeaderValue::from_static(if https { "https" } else { "http" });
    headers.entry(X_FORWARDED_PROTO).or_insert(proto);
    headers.entry(X_REQUEST_ID).or_insert_with(request_id);
    // Backends get origin-form over HTTP/1.1, whatever the client spoke.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        if let Some(pq) = parts.uri.path_and_query() {
            if let Ok(uri) = pq.as_str().parse() {
                parts.uri = uri;
            }
        }
    }
    parts.version = Version::HTTP_11;
}

/// Readies a backend's response for the client.
pub fn prepare_response(parts: &mut http::response::Parts) {
    strip_hop_by_hop(&mut parts.headers, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = Request::builder().version(version).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn hop_by_hop_headers_stop_here_and_forwarding_headers_are_added() {
        let mut p = request(
            Version::HTTP_11,
            "/a?b=1",
            &[
                ("connection", "keep-alive, x-secret"),
                ("x-secret", "1"),
                ("keep-alive", "5"),
                ("te", "trailers"),
                ("x-forwarded-for", "198.51.100.7"),
                ("host", "web"),
            ],
        );
        prepare_request(&mut p, &HeaderValue::from_static("127.0.2.1"), false, false);
        for gone in ["connection", "x-secret", "keep-alive", "te"] {
            assert!(!p.headers.contains_key(gone), "{gone}");
        }
        assert_eq!(p.headers["x-forwarded-for"], "198.51.100.7, 127.0.2.1");
        assert_eq!(p.headers["x-forwarded-proto"], "http");
        assert_eq!(p.headers["x-request-id"].len(), 16);
        assert_eq!(p.headers["host"], "web");
    }

    #[test]
    fn h2_requests_become_origin_form_http11_with_a_host() {
        let mut p = request(Version::HTTP_2, "http://shop.example:10000/cart?x=1", &[]);
        prepare_request(&mut p, &HeaderValue::from_static("127.0.2.1"), false, false);
        assert_eq!(p.version, Version::HTTP_11);
        assert_eq!(p.uri.to_string(), "/cart?x=1");
        assert_eq!(p.headers["host"], "shop.example:10000");
    }

    #[test]
    fn upgrades_keep_their_connection_and_upgrade_headers() {
        let req = Request::builder()
            .uri("/ws")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(is_upgrade(&req));
        let mut p = req.into_parts().0;
        prepare_request(&mut p, &HeaderValue::from_static("127.0.2.1"), true, false);
        assert_eq!(p.headers["connection"], "upgrade");
        assert_eq!(p.headers["upgrade"], "websocket");
    }
}
