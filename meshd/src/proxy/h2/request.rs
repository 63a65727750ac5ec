//! A request's decoded header fields checked against RFC 9113 section 8
//! and made into the head the proxy forwards. Whatever is let through here
//! ends up in an HTTP/1.1 head to a backend, so a field that HTTP/2 would
//! carry but HTTP/1.1 would read differently (a CR or LF in a value, a
//! space in the path, a `Transfer-Encoding`) makes the request malformed.

use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Uri, Version};

/// Why a request is malformed (answered with RST_STREAM PROTOCOL_ERROR).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// A pseudo-header is unknown, repeated, missing or after a regular field.
    #[error("pseudo-header: {0}")]
    Pseudo(&'static str),
    /// A field name is not a lowercase token.
    #[error("invalid field name")]
    Name,
    /// A field value holds a byte HTTP forbids, or starts or ends with whitespace.
    #[error("invalid value for {0}")]
    Value(String),
    /// A connection-specific field (RFC 9113 8.2.2).
    #[error("connection-specific field {0}")]
    ConnectionSpecific(String),
    /// `Content-Length` is not a number, or its copies differ.
    #[error("invalid content-length")]
    ContentLength,
    /// `Host` names another authority than `:authority`.
    #[error("host and :authority differ")]
    HostMismatch,
}

/// A request head as decoded, field by field.
#[derive(Debug, Default)]
pub struct Fields {
    method: Option<Method>,
    scheme: Option<Box<[u8]>>,
    authority: Option<Box<[u8]>>,
    path: Option<Box<[u8]>>,
    headers: HeaderMap,
    /// `Cookie` fields, joined with "; " for HTTP/1.1 (RFC 9113 8.2.3).
    cookie: Vec<u8>,
    content_length: Option<u64>,
    regular_seen: bool,
    error: Option<Malformed>,
}

/// A checked request head.
#[derive(Debug)]
pub struct Head {
    /// Method, URI (scheme, authority, path) and fields.
    pub parts: http::request::Parts,
    /// The declared body length, if any.
    pub content_length: Option<u64>,
}

impl Fields {
    /// Takes one decoded field; false once the request is known malformed
    /// (the decoder then only keeps its table in step).
    pub fn field(&mut self, name: &[u8], value: &[u8]) -> bool {
        if let Err(e) = self.take(name, value) {
            self.error = Some(e);
            return false;
        }
        true
    }

    fn take(&mut self, name: &[u8], value: &[u8]) -> Result<(), Malformed> {
        if let Some(pseudo) = name.strip_prefix(b":") {
            if self.regular_seen {
                return Err(Malformed::Pseudo("after a regular field"));
            }
            let slot = match pseudo {
                b"method" => {
                    if self.method.is_some() {
                        return Err(Malformed::Pseudo(":method repeated"));
                    }
                    let m = Method::from_bytes(value)
                        .map_err(|_| Malformed::Value(":method".into()))?;
                    self.method = Some(m);
                    return Ok(());
                }
                b"scheme" => &mut self.scheme,
                b"authority" => &mut self.authority,
                b"path" => &mut self.path,
                _ => return Err(Malformed::Pseudo("unknown pseudo-header")),
            };
            if slot.is_some() {
                return Err(Malformed::Pseudo("repeated"));
            }
            // Visible ASCII only: these go into the request line and Host.
            // No userinfo in an authority (RFC 9113 8.3.1): `user@host`
            // would reach the backend's Host as such.
            let at = if pseudo == b"authority" { b'@' } else { 0 };
            if value.is_empty() || !value.iter().all(|&b| (0x21..0x7f).contains(&b) && b != at) {
                return Err(Malformed::Value(String::from_utf8_lossy(name).into_owned()));
            }
            *slot = Some(value.into());
            return Ok(());
        }
        self.regular_seen = true;
        if name.is_empty() || name.iter().any(u8::is_ascii_uppercase) {
            return Err(Malformed::Name);
        }
        let name = HeaderName::from_bytes(name).map_err(|_| Malformed::Name)?;
        check_value(&name, value)?;
        if is_connection_specific(&name) {
            return Err(Malformed::ConnectionSpecific(name.as_str().to_owned()));
        }
        if name == hyper::header::TE && value != b"trailers" {
            return Err(Malformed::ConnectionSpecific("te".into()));
        }
        if name == hyper::header::COOKIE {
            if !self.cookie.is_empty() {
                self.cookie.extend_from_slice(b"; ");
            }
            self.cookie.extend_from_slice(value);
            return Ok(());
        }
        if name == hyper::header::CONTENT_LENGTH {
            let n = super::super::codec::parse_length(value).ok_or(Malformed::ContentLength)?;
            if self.content_length.is_some_and(|m| m != n) {
                return Err(Malformed::ContentLength);
            }
            if self.content_length.is_some() {
                return Ok(());
            }
            self.content_length = Some(n);
        }
        let value =
            HeaderValue::from_bytes(value).map_err(|_| Malformed::Value(name.to_string()))?;
        self.headers.append(name, value);
        Ok(())
    }

    /// The head, once every field is in; `Err` when malformed.
    pub fn finish(self) -> Result<Head, Malformed> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let method = self.method.ok_or(Malformed::Pseudo(":method missing"))?;
        if method == Method::CONNECT {
            // No extended CONNECT is offered, and a tunnel is not a request.
            return Err(Malformed::Pseudo("CONNECT is not served"));
        }
        let scheme = self.scheme.ok_or(Malformed::Pseudo(":scheme missing"))?;
        let path = self.path.ok_or(Malformed::Pseudo(":path missing"))?;
        if path.first() != Some(&b'/') && !(&*path == b"*" && method == Method::OPTIONS) {
            return Err(Malformed::Pseudo(":path is not origin-form"));
        }
        let mut headers = self.headers;
        if let Some(authority) = &self.authority {
            if let Some(host) = headers.get(hyper::header::HOST) {
                if !host.as_bytes().eq_ignore_ascii_case(authority) {
                    return Err(Malformed::HostMismatch);
                }
            }
        }
        if !self.cookie.is_empty() {
            let v = HeaderValue::from_bytes(&self.cookie)
                .map_err(|_| Malformed::Value("cookie".into()))?;
            headers.insert(hyper::header::COOKIE, v);
        }
        // A URI with a scheme needs an authority; without one (Host may
        // name it) and for `*` the target stands alone, as in HTTP/1.1.
        let mut uri = Uri::builder();
        if let Some(a) = self.authority.as_ref().filter(|_| &*path != b"*") {
            uri = uri.scheme(&*scheme).authority(&**a);
        }
        let uri = uri
            .path_and_query(&*path)
            .build()
            .map_err(|_| Malformed::Pseudo("invalid :scheme, :authority or :path"))?;
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = method;
        parts.uri = uri;
        parts.version = Version::HTTP_2;
        parts.headers = headers;
        Ok(Head {
            parts,
            content_length: self.content_length,
        })
    }
}

/// RFC 9113 8.2.1: no NUL, CR or LF, no whitespace at either end; and no
/// other control byte, which HTTP/1.1 would not take either.
fn check_value(name: &HeaderName, value: &[u8]) -> Result<(), Malformed> {
    let bad_end = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    if bad_end(value.first())
        || bad_end(value.last())
        || value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(Malformed::Value(name.as_str().to_owned()));
    }
    Ok(())
}

fn is_connection_specific(name: &HeaderName) -> bool {
    use hyper::header;
    *name == header::CONNECTION
        || *name == header::TRANSFER_ENCODING
        || *name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(fields: &[(&str, &str)]) -> Result<Head, Malformed> {
        let mut f = Fields::default();
        for (n, v) in fields {
            f.field(n.as_bytes(), v.as_bytes());
        }
        f.finish()
    }

    const GET: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "web.test"),
        (":path", "/a?b=1"),
    ];

    #[test]
    fn a_plain_get_becomes_parts() {
        let mut fields = GET.to_vec();
        fields.push(("cookie", "a=1"));
        fields.push(("accept", "*/*"));
        fields.push(("cookie", "b=2"));
        let h = head(&fields).unwrap();
        assert_eq!(h.parts.method, Method::GET);
        assert_eq!(h.parts.uri.path_and_query().unwrap().as_str(), "/a?b=1");
        assert_eq!(h.parts.uri.authority().unwrap().as_str(), "web.test");
        assert_eq!(h.parts.headers["cookie"], "a=1; b=2");
        assert_eq!(h.parts.headers["accept"], "*/*");
    }

    #[test]
    fn smuggling_shapes_are_malformed() {
        let cases: &[(&str, &str)] = &[
            ("x-a", "one\r\nx-b: two"),
            ("x-a", "nul\0"),
            ("x-a", " padded"),
            ("x-a", "padded\t"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            ("keep-alive", "1"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
            ("content-length", "1x"),
            ("Upper", "x"),
            ("bad name", "x"),
            ("host", "other.test"),
        ];
        for (n, v) in cases {
            let mut fields = GET.to_vec();
            fields.push((n, v));
            assert!(head(&fields).is_err(), "{n}: {v:?} let through");
        }
    }

    #[test]
    fn pseudo_header_rules() {
        let bad: &[&[(&str, &str)]] = &[
            &[(":method", "GET"), (":scheme", "http")],
            &[(":method", "GET"), (":path", "/")],
            &[(":scheme", "http"), (":path", "/")],
            &[
                (":method", "GET"),
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":path", "/"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                ("a", "b"),
                (":path", "/"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":status", "200"),
            ],
            &[(":method", "GET"), (":scheme", "http"), (":path", "/a b")],
            &[(":method", "GET"), (":scheme", "http"), (":path", "a")],
            &[(":method", "GET"), (":scheme", "http"), (":path", "")],
            &[(":method", "CONNECT"), (":authority", "x:1")],
            &[(":method", "G T"), (":scheme", "http"), (":path", "/")],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "u@h"),
                (":path", "/"),
            ],
        ];
        for fields in bad {
            assert!(head(fields).is_err(), "{fields:?} let through");
        }
        let options = [(":method", "OPTIONS"), (":scheme", "http"), (":path", "*")];
        assert!(head(&options).is_ok());
    }

    #[test]
    fn content_length_copies_must_agree() {
        let mut fields = GET.to_vec();
        fields.push(("content-length", "5"));
        fields.push(("content-length", "5"));
        assert_eq!(head(&fields).unwrap().content_length, Some(5));
        fields.push(("content-length", "6"));
        assert_eq!(head(&fields).unwrap_err(), Malformed::ContentLength);
    }

    #[test]
    fn host_matching_authority_is_kept() {
        let mut fields = GET.to_vec();
        fields.push(("host", "WEB.test"));
        assert!(head(&fields).is_ok());
    }
}
