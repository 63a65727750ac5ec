//! Header rules of the HTTP proxy: hop-by-hop headers stop here (RFC 9110
//! section 7.6.1), `X-Forwarded-For`, `X-Forwarded-Proto` and a request id
//! are set, and an HTTP/2 request becomes an HTTP/1.1 one for the backend.

use super::codec::BodyFraming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::HeaderMap;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Hop-by-hop fields, and the framing fields meshd writes itself.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "content-length"
            | "upgrade"
            | "http2-settings"
    )
}

/// Fields a client may set only when it is a trusted forwarder.
fn is_forwarding(name: &HeaderName) -> bool {
    *name == X_FORWARDED_PROTO || *name == X_REQUEST_ID
}

/// A fresh request id: sixteen random hex digits.
pub fn request_id_bytes() -> [u8; 16] {
    hex16(fastrand::u64(..))
}

/// Two lowercase hex digits for each byte value: a request id is written a
/// byte at a time (half the steps, and no shift per digit: 99 -> ~40
/// instructions a request).
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    t
};

/// `n` as sixteen lowercase hex digits.
fn hex16(n: u64) -> [u8; 16] {
    let mut buf = [0u8; 16];
    for (pair, b) in buf.chunks_exact_mut(2).zip(n.to_be_bytes()) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
    }
    buf
}

/// What the end of a backend's request head depends on.
#[derive(Debug, Clone, Copy)]
pub struct Tail<'a> {
    /// A trusted forwarder's `X-Forwarded-Proto` was kept.
    pub keep_proto: bool,
    /// A trusted forwarder's `X-Request-Id` was kept.
    pub keep_id: bool,
    /// The client came over TLS.
    pub https: bool,
    /// How meshd frames the body.
    pub body: &'a BodyFraming,
    /// The request switches protocols.
    pub upgrade: bool,
}

/// Ends a backend's request head: `X-Forwarded-For` with the client added
/// to what it said, `X-Forwarded-Proto` and a request id of meshd's own
/// unless a trusted forwarder's were kept, the body's framing (meshd's,
/// never the client's), the upgrade, and the blank line.
pub fn write_tail<'a>(
    out: &mut Vec<u8>,
    forwarded_for: impl Iterator<Item = &'a [u8]>,
    peer: &[u8],
    t: Tail<'_>,
) {
    out.extend_from_slice(b"x-forwarded-for: ");
    for v in forwarded_for {
        out.extend_from_slice(v);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(peer);
    out.extend_from_slice(b"\r\n");
    if !t.keep_proto {
        out.extend_from_slice(if t.https {
            b"x-forwarded-proto: https\r\n".as_slice()
        } else {
            b"x-forwarded-proto: http\r\n".as_slice()
        });
    }
    if !t.keep_id {
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(&request_id_bytes());
        out.extend_from_slice(b"\r\n");
    }
    t.body.write(out, true);
    if t.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The values of header `name` in a raw head (tests read heads with it).
#[cfg(test)]
pub fn values<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

/// Writes the HTTP/1.1 head a backend gets for a request that came over
/// HTTP/2, straight from its parts: the header
/// map is read, never changed. Hop-by-hop headers stop here; the target
/// becomes origin-form; an HTTP/2 request's authority becomes `Host`;
/// `X-Forwarded-For` gets the client, `X-Forwarded-Proto` and a request id
/// are set (a trusted forwarder's kept); the body's length, when known,
/// goes as `Content-Length`, else the body goes chunked.
pub fn backend_head(
    parts: &http::request::Parts,
    peer: &[u8],
    https: bool,
    trusted: bool,
    body: &BodyFraming,
) -> Vec<u8> {
    let headers = &parts.headers;
    let mut out = Vec::with_capacity(256 + headers.len() * 32);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let lists_names = headers.contains_key(header::CONNECTION);
    // Which fields are there is noted in the one pass over them: a map
    // lookup each would hash every name again (~100 instructions each).
    let (mut has_host, mut has_xff, mut has_proto, mut has_id) = (false, false, false, false);
    for (name, value) in headers {
        if *name == header::HOST {
            has_host = true;
        } else if *name == X_FORWARDED_FOR {
            has_xff = true;
            continue;
        } else if *name == X_FORWARDED_PROTO {
            has_proto = true;
        } else if *name == X_REQUEST_ID {
            has_id = true;
        }
        if is_hop_by_hop(name)
            || (!trusted && is_forwarding(name))
            || (*name != header::HOST && lists_names && has_token(headers, name.as_str()))
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_host {
        if let Some(authority) = parts.uri.authority() {
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(authority.as_str().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    let forwarded_for = has_xff
        .then(|| headers.get_all(&X_FORWARDED_FOR))
        .into_iter()
        .flatten()
        .map(HeaderValue::as_bytes);
    let tail = Tail {
        keep_proto: trusted && has_proto,
        keep_id: trusted && has_id,
        https,
        body,
        upgrade: false,
    };
    write_tail(&mut out, forwarded_for, peer, tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::codec::Framing;
    use hyper::{Request, Version};

    fn head(req: Request<()>, chunked: bool) -> String {
        let parts = req.into_parts().0;
        let body = BodyFraming {
            framing: if chunked {
                Framing::Chunked
            } else {
                Framing::Empty
            },
            declared: None,
            codings: None,
        };
        let out = backend_head(&parts, b"127.0.2.1", false, true, &body);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn request_ids_are_sixteen_lowercase_hex_digits() {
        for n in [
            0,
            1,
            0xfe,
            0x0123_4567_89ab_cdef,
            u64::MAX,
            fastrand::u64(..),
        ] {
            assert_eq!(hex16(n), format!("{n:016x}").as_bytes(), "{n:x}");
        }
    }

    #[test]
    fn hop_by_hop_headers_stop_here_and_forwarding_headers_are_added() {
        let req = Request::builder()
            .uri("/a?b=1")
            .header("connection", "keep-alive, x-secret")
            .header("x-secret", "1")
            .header("keep-alive", "5")
            .header("te", "trailers")
            .header("x-forwarded-for", "198.51.100.7")
            .header("host", "web")
            .body(())
            .unwrap();
        let h = head(req, false);
        assert!(h.starts_with("GET /a?b=1 HTTP/1.1\r\n"), "{h}");
        for gone in ["connection", "x-secret", "keep-alive", "te"] {
            assert!(values(&h, gone).is_empty(), "{gone} in {h}");
        }
        assert_eq!(values(&h, "x-forwarded-for"), ["198.51.100.7, 127.0.2.1"]);
        assert_eq!(values(&h, "x-forwarded-proto"), ["http"]);
        assert_eq!(values(&h, "x-request-id")[0].len(), 16);
        assert_eq!(values(&h, "host"), ["web"]);
        assert!(h.ends_with("\r\n\r\n"));
        assert_eq!(h.matches("\r\n\r\n").count(), 1, "one blank line: {h}");
    }

    #[test]
    fn h2_requests_become_origin_form_http11_with_a_host() {
        let req = Request::builder()
            .version(Version::HTTP_2)
            .uri("http://shop.example:10000/cart?x=1")
            .header("x-request-id", "given")
            .body(())
            .unwrap();
        let h = head(req, true);
        assert!(h.starts_with("GET /cart?x=1 HTTP/1.1\r\n"), "{h}");
        assert_eq!(values(&h, "host"), ["shop.example:10000"]);
        assert_eq!(values(&h, "x-request-id"), ["given"]);
        assert_eq!(values(&h, "transfer-encoding"), ["chunked"]);
    }

    #[test]
    fn an_untrusted_clients_forwarding_fields_are_replaced() {
        let parts = Request::builder()
            .uri("/")
            .header("x-forwarded-proto", "https")
            .header("x-request-id", "forged")
            .header("host", "web")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let body = BodyFraming {
            framing: Framing::Empty,
            declared: None,
            codings: None,
        };
        let h = String::from_utf8(backend_head(&parts, b"127.0.2.1", false, false, &body)).unwrap();
        assert_eq!(values(&h, "x-forwarded-proto"), ["http"]);
        assert_eq!(values(&h, "x-forwarded-for"), ["127.0.2.1"]);
        let id = values(&h, "x-request-id");
        assert!(id.len() == 1 && id[0] != "forged", "{h}");
        assert_eq!(values(&h, "host"), ["web"]);
    }
}
