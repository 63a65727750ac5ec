//! A request's decoded header fields, checked against RFC 9113 section 8
//! and written straight into the HTTP/1.1 head its backend gets, in one
//! pass: no header map, no URI parse. Whatever is let through here ends up
//! in that head, so a field that HTTP/2 would carry but HTTP/1.1 would read
//! differently (a CR or LF in a value, a space or `#` in the path, a
//! second `Host`, a `Transfer-Encoding`) makes the request malformed. The
//! head's rules are those of `headers` (hop-by-hop fields stop here,
//! `X-Forwarded-*` and the request id are meshd's unless the client is a
//! trusted forwarder), and its tail is written by the same `write_tail`.

use crate::proxy::codec::{parse_length, BodyFraming};
use crate::proxy::headers::{write_tail, Tail};
use hyper::Method;
use std::ops::Range;

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
    /// `Host` names another authority than `:authority`, or comes twice.
    #[error("host and :authority differ, or host repeated")]
    HostMismatch,
}

/// A request head as it is decoded, field by field.
#[derive(Debug)]
pub struct Fields {
    /// The client is a trusted forwarder (its `X-Forwarded-Proto` and
    /// `X-Request-Id` are kept).
    trusted: bool,
    method: Option<Method>,
    /// `:scheme`, `:authority` and `:path` values, until the request line
    /// is written (they may come in any order).
    pseudo: Vec<u8>,
    scheme: Option<Range<usize>>,
    authority: Option<Range<usize>>,
    path: Option<Range<usize>>,
    /// The backend's head: the request line, once the first regular field
    /// comes, then the fields that pass.
    head: Vec<u8>,
    /// Where the request line's target is in `head`.
    target: Range<usize>,
    /// Where the `Host` value is in `head`.
    host: Option<Range<usize>>,
    /// `X-Forwarded-For` values so far, joined with ", ".
    forwarded_for: Vec<u8>,
    /// `Cookie` fields, joined with "; " for HTTP/1.1 (RFC 9113 8.2.3).
    cookie: Vec<u8>,
    keep_proto: bool,
    keep_id: bool,
    content_length: Option<u64>,
    error: Option<Malformed>,
}

/// A checked request head, most of the backend's HTTP/1.1 head written.
#[derive(Debug)]
pub struct Head {
    /// Its method.
    pub method: Method,
    /// The declared body length, if any.
    pub content_length: Option<u64>,
    head: Vec<u8>,
    target: Range<usize>,
    host: Option<Range<usize>>,
    forwarded_for: Vec<u8>,
    keep_proto: bool,
    keep_id: bool,
}

impl Fields {
    /// An empty head; `trusted`: the client is a trusted forwarder.
    pub fn new(trusted: bool) -> Fields {
        Fields {
            trusted,
            method: None,
            pseudo: Vec::new(),
            scheme: None,
            authority: None,
            path: None,
            head: Vec::new(),
            target: 0..0,
            host: None,
            forwarded_for: Vec::new(),
            cookie: Vec::new(),
            keep_proto: false,
            keep_id: false,
            content_length: None,
            error: None,
        }
    }

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
            return self.take_pseudo(pseudo, value);
        }
        if self.head.is_empty() {
            self.request_line()?;
        }
        if name.is_empty() || !name.iter().all(|&b| is_lower_tchar(b)) {
            return Err(Malformed::Name);
        }
        check_value(name, value)?;
        match name {
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
            | b"upgrade" => {
                return Err(Malformed::ConnectionSpecific(
                    String::from_utf8_lossy(name).into_owned(),
                ))
            }
            b"te" if value != b"trailers" => {
                return Err(Malformed::ConnectionSpecific("te".into()))
            }
            // Hop-by-hop, or framing meshd writes itself.
            b"te" | b"trailer" | b"http2-settings" => return Ok(()),
            b"content-length" => {
                let n = parse_length(value).ok_or(Malformed::ContentLength)?;
                if self.content_length.is_some_and(|m| m != n) {
                    return Err(Malformed::ContentLength);
                }
                self.content_length = Some(n);
                return Ok(());
            }
            b"cookie" => {
                if !self.cookie.is_empty() {
                    self.cookie.extend_from_slice(b"; ");
                }
                self.cookie.extend_from_slice(value);
                return Ok(());
            }
            b"x-forwarded-for" => {
                self.forwarded_for.extend_from_slice(value);
                self.forwarded_for.extend_from_slice(b", ");
                return Ok(());
            }
            b"x-forwarded-proto" | b"x-request-id" if !self.trusted => return Ok(()),
            b"x-forwarded-proto" => self.keep_proto = true,
            b"x-request-id" => self.keep_id = true,
            b"host" => {
                // A backend may route by any Host line: one, matching
                // `:authority`, or the request is refused.
                let same = self.authority.clone().map(|a| {
                    self.pseudo
                        .get(a)
                        .is_some_and(|a| a.eq_ignore_ascii_case(value))
                });
                if self.host.is_some() || same == Some(false) {
                    return Err(Malformed::HostMismatch);
                }
                // Without `:authority` it stands in for one: the same bytes only.
                if !value.iter().all(|&b| is_authority_char(b)) {
                    return Err(Malformed::Value("host".into()));
                }
                let start = self.head.len() + b"host: ".len();
                self.host = Some(start..start + value.len());
            }
            _ => {}
        }
        self.head.extend_from_slice(name);
        self.head.extend_from_slice(b": ");
        self.head.extend_from_slice(value);
        self.head.extend_from_slice(b"\r\n");
        Ok(())
    }

    fn take_pseudo(&mut self, pseudo: &[u8], value: &[u8]) -> Result<(), Malformed> {
        if !self.head.is_empty() {
            return Err(Malformed::Pseudo("after a regular field"));
        }
        if pseudo == b"method" {
            if self.method.is_some() {
                return Err(Malformed::Pseudo(":method repeated"));
            }
            let m = Method::from_bytes(value).map_err(|_| Malformed::Value(":method".into()))?;
            self.method = Some(m);
            return Ok(());
        }
        let (slot, allowed): (_, fn(u8) -> bool) = match pseudo {
            b"scheme" => (&mut self.scheme, is_scheme_char),
            b"authority" => (&mut self.authority, is_authority_char),
            b"path" => (&mut self.path, is_path_char),
            _ => return Err(Malformed::Pseudo("unknown pseudo-header")),
        };
        if slot.is_some() {
            return Err(Malformed::Pseudo("repeated"));
        }
        // These go into the request line and `Host`: only what those may
        // hold (no userinfo in an authority, RFC 9113 8.3.1; no fragment).
        if value.is_empty() || !value.iter().all(|&b| allowed(b)) {
            return Err(Malformed::Value(format!(
                ":{}",
                String::from_utf8_lossy(pseudo)
            )));
        }
        if self.pseudo.capacity() == 0 {
            // Room for the usual three at once, not grown a piece at a time.
            self.pseudo.reserve(128);
        }
        let start = self.pseudo.len();
        self.pseudo.extend_from_slice(value);
        *slot = Some(start..self.pseudo.len());
        Ok(())
    }

    /// Writes the request line, once every pseudo-header is in.
    fn request_line(&mut self) -> Result<(), Malformed> {
        let method = self
            .method
            .as_ref()
            .ok_or(Malformed::Pseudo(":method missing"))?;
        if *method == Method::CONNECT {
            // No extended CONNECT is offered, and a tunnel is not a request.
            return Err(Malformed::Pseudo("CONNECT is not served"));
        }
        if self.scheme.is_none() {
            return Err(Malformed::Pseudo(":scheme missing"));
        }
        let path = self
            .path
            .clone()
            .and_then(|p| self.pseudo.get(p))
            .ok_or(Malformed::Pseudo(":path missing"))?;
        if path.first() != Some(&b'/') && !(path == b"*" && *method == Method::OPTIONS) {
            return Err(Malformed::Pseudo(":path is not origin-form"));
        }
        // The head and its tail are written into one allocation.
        self.head.reserve(512 + self.pseudo.len());
        self.head.extend_from_slice(method.as_str().as_bytes());
        self.head.push(b' ');
        let start = self.head.len();
        self.head.extend_from_slice(path);
        self.target = start..self.head.len();
        self.head.extend_from_slice(b" HTTP/1.1\r\n");
        Ok(())
    }

    /// The head, once every field is in; `Err` when malformed.
    pub fn finish(mut self) -> Result<Head, Malformed> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.head.is_empty() {
            self.request_line()?;
        }
        if !self.cookie.is_empty() {
            self.head.extend_from_slice(b"cookie: ");
            self.head.extend_from_slice(&self.cookie);
            self.head.extend_from_slice(b"\r\n");
        }
        if self.host.is_none() {
            if let Some(a) = self.authority.clone().and_then(|a| self.pseudo.get(a)) {
                self.head.extend_from_slice(b"host: ");
                let start = self.head.len();
                self.head.extend_from_slice(a);
                self.host = Some(start..self.head.len());
                self.head.extend_from_slice(b"\r\n");
            }
        }
        Ok(Head {
            method: self.method.ok_or(Malformed::Pseudo(":method missing"))?,
            content_length: self.content_length,
            head: self.head,
            target: self.target,
            host: self.host,
            forwarded_for: self.forwarded_for,
            keep_proto: self.keep_proto,
            keep_id: self.keep_id,
        })
    }
}

impl Head {
    /// The host it names (`Host`, else `:authority`), as sent.
    pub fn host(&self) -> Option<&str> {
        let h = self.head.get(self.host.clone()?)?;
        std::str::from_utf8(h).ok()
    }

    /// Its target, origin-form (or `*`).
    pub fn path_and_query(&self) -> &str {
        self.head
            .get(self.target.clone())
            .and_then(|p| std::str::from_utf8(p).ok())
            .unwrap_or("/")
    }

    /// The whole HTTP/1.1 head for the backend: `X-Forwarded-For` with the
    /// client (`peer`) added, `X-Forwarded-Proto`, the request id, meshd's
    /// framing of the body, and the blank line.
    pub fn into_backend_head(self, peer: &[u8], https: bool, body: &BodyFraming) -> Vec<u8> {
        let mut out = self.head;
        let forwarded_for = self.forwarded_for.strip_suffix(b", ");
        let tail = Tail {
            keep_proto: self.keep_proto,
            keep_id: self.keep_id,
            https,
            body,
            upgrade: false,
        };
        write_tail(&mut out, forwarded_for.into_iter(), peer, tail);
        out
    }
}

/// A token character (RFC 9110 5.6.2), lowercase: HTTP/2 field names are.
fn is_lower_tchar(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 3986 3.1.
fn is_scheme_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

/// RFC 3986 3.2.2-3 (reg-name, IP literal, port), without `@` (userinfo).
fn is_authority_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
        )
}

/// Visible ASCII but `#`: a request target has no fragment, and nothing
/// that would end the request line.
fn is_path_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && b != b'#'
}

/// RFC 9113 8.2.1: no NUL, CR or LF, no whitespace at either end; and no
/// other control byte, which HTTP/1.1 would not take either.
fn check_value(name: &[u8], value: &[u8]) -> Result<(), Malformed> {
    let bad_end = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    if bad_end(value.first())
        || bad_end(value.last())
        || value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(Malformed::Value(String::from_utf8_lossy(name).into_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
