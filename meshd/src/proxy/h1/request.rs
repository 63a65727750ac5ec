//! A client's HTTP/1.x request head, read and rewritten for the backend in
//! one pass over the raw bytes: hop-by-hop headers stop here (RFC 9110
//! section 7.6.1), `X-Forwarded-For`, `X-Forwarded-Proto` and a request id
//! are set, the target becomes origin-form, and meshd frames the body
//! itself from what `codec` decided (RFC 9112 section 6). No header map is built.

use crate::proxy::codec::{listed_in_connection, tokens, BodyFraming, Framing, FramingFields};
use crate::proxy::headers::{write_tail, Tail};
use crate::proxy::respond::ProxyError;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Most request headers accepted (431 beyond).
pub const MAX_HEADERS: usize = 100;

/// What the proxy needs to know of a parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Length of the head in the buffer.
    pub len: usize,
    /// The client spoke HTTP/1.0.
    pub http10: bool,
    /// The client allows another request on the connection afterwards.
    pub keep_alive: bool,
    /// The client asks to switch protocols (WebSocket and the like).
    pub upgrade: bool,
    /// The client waits for `100 Continue` before sending its body.
    pub expect_continue: bool,
    /// How the request body is framed, and how meshd frames it onward.
    pub body: BodyFraming,
    /// The method is idempotent (retries allowed).
    pub idempotent: bool,
    /// The method is HEAD (the response has no body).
    pub head: bool,
    /// Where in the buffer the host the request names is: the authority
    /// of an absolute-form target, else its `Host` header.
    pub host: Option<Range<usize>>,
    /// Where in the buffer the origin-form target (path and query) is;
    /// `None` when an absolute-form target names no path (`http://host`),
    /// whose origin form, `/`, is not in the buffer.
    pub target: Option<Range<usize>>,
}

/// A request head meshd refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// Over the header count limit (the size limit is the caller's).
    #[error("over {MAX_HEADERS} request headers")]
    TooManyHeaders,
    /// Not a valid HTTP/1.x request head.
    #[error("malformed request: {0}")]
    Malformed(String),
}

impl BadRequest {
    /// The status to answer with.
    pub fn status(&self) -> u16 {
        ProxyError::from(self.clone()).code()
    }
}

impl From<BadRequest> for ProxyError {
    fn from(e: BadRequest) -> ProxyError {
        match e {
            BadRequest::TooManyHeaders => ProxyError::HeadTooLarge,
            BadRequest::Malformed(why) => ProxyError::BadRequest(why),
        }
    }
}

fn is(name: &str, expected: &str) -> bool {
    name.eq_ignore_ascii_case(expected)
}

impl Parsed {
    /// How the request body is framed.
    pub fn framing(&self) -> Framing {
        self.body.framing
    }
}

/// Who sent a request and how: what the rewrite of its head depends on.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The client's address as `X-Forwarded-For` gets it.
    pub peer: &'a [u8],
    /// It came over TLS.
    pub https: bool,
    /// It is a trusted forwarder (`--trust-forwarded`): its own
    /// `X-Forwarded-Proto` and `X-Request-Id` are kept.
    pub trusted: bool,
}

/// Parses the request head at the front of `buf` and writes the head the
/// backend gets into `out`. `Ok(None)`: the head is not complete yet.
pub fn rewrite(
    buf: &[u8],
    client: Client<'_>,
    out: &mut Vec<u8>,
) -> Result<Option<Parsed>, BadRequest> {
    // Left uninitialised: filling 100 empty slots on every request costs
    // more than parsing a short head.
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(BadRequest::TooManyHeaders),
        Err(e) => return Err(BadRequest::Malformed(e.to_string())),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(BadRequest::Malformed("incomplete request line".into()));
    };
    let http10 = version == 0;
    let headers = &*req.headers;

    // First pass: what the framing, the connection and the rewrite depend on.
    let (mut close, mut keep_alive_token, mut upgrade_token, mut lists_names) =
        (false, false, false, false);
    let (mut has_upgrade, mut h2c, mut has_xfp, mut has_rid, mut expect_continue) =
        (false, false, false, false, false);
    let mut host_header: Option<&[u8]> = None;
    let mut hosts = 0;
    let mut framing = FramingFields::default();
    for h in headers {
        let name = h.name;
        if is(name, "connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive_token = true;
                } else if t.eq_ignore_ascii_case(b"upgrade") {
                    upgrade_token = true;
                } else if !t.is_empty() {
                    lists_names = true;
                }
            }
        } else if framing.take(name.as_bytes(), h.value) {
        } else if is(name, "upgrade") {
            has_upgrade = true;
            // h2c would hand the connection to a protocol meshd does not
            // read past: the request is served as HTTP/1.1 instead.
            h2c |= tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"h2c"));
        } else if is(name, "x-forwarded-proto") {
            has_xfp = true;
        } else if is(name, "x-request-id") {
            has_rid = true;
        } else if is(name, "host") {
            hosts += 1;
            host_header.get_or_insert(h.value);
        } else if is(name, "expect") {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    // RFC 9112 section 3.2: one Host, and in HTTP/1.1 always one.
    if hosts > 1 {
        return Err(BadRequest::Malformed("more than one host header".into()));
    }
    if hosts == 0 && !http10 {
        return Err(BadRequest::Malformed("no host header".into()));
    }
    // RFC 9112 section 3.2.2: an absolute-form target's authority is the
    // host, whatever `Host` says; the backend gets it as `Host`.
    let absolute = authority(target);
    if absolute.is_some_and(|a| a.contains(&b'@')) {
        return Err(BadRequest::Malformed(
            "user info in the request target".into(),
        ));
    }
    let body = framing
        .request(http10)
        .map_err(|e| BadRequest::Malformed(e.to_string()))?;
    let upgrade = !http10 && upgrade_token && has_upgrade && !h2c;
    let keep_alive = if http10 {
        keep_alive_token && !close
    } else {
        !close
    };
    let expect_continue = expect_continue && !http10 && body.framing != Framing::Empty;

    // Second pass: the backend's head.
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    // An absolute target with a query but no path (`http://h?q`) becomes
    // `/?q`: the query is the backend's to see.
    let origin = origin_form(target);
    if origin.starts_with('?') {
        out.push(b'/');
    }
    out.extend_from_slice(origin.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(a) = absolute {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    // Kept fields in canonical form leave as the bytes they came in, each
    // run of them in one copy (four copies per field cost ~370 instructions
    // of a short request).
    let mut run: Option<Range<usize>> = None;
    for h in headers {
        let name = h.name;
        if is(name, "x-forwarded-for") {
            forwarded_for.push(h.value);
            continue;
        }
        let hop = is(name, "connection")
            || is(name, "keep-alive")
            || is(name, "proxy-connection")
            || is(name, "te")
            || is(name, "trailer")
            || is(name, "transfer-encoding")
            || is(name, "content-length")
            || is(name, "http2-settings")
            || (absolute.is_some() && is(name, "host"))
            || (is(name, "upgrade") && !upgrade)
            || (is(name, "expect") && expect_continue)
            || (!client.trusted && (is(name, "x-forwarded-proto") || is(name, "x-request-id")))
            || (lists_names
                && !(upgrade && is(name, "upgrade"))
                && listed_in_connection(headers, name.as_bytes()));
        if hop {
            continue;
        }
        let line = canonical_line(buf, h);
        match (&mut run, line) {
            (Some(r), Some(line)) if r.end == line.start => r.end = line.end,
            (_, Some(line)) => {
                if let Some(r) = run.replace(line) {
                    out.extend_from_slice(&buf[r]);
                }
            }
            (_, None) => {
                if let Some(r) = run.take() {
                    out.extend_from_slice(&buf[r]);
                }
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(h.value);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    if let Some(r) = run {
        out.extend_from_slice(&buf[r]);
    }
    let tail = Tail {
        keep_proto: client.trusted && has_xfp,
        keep_id: client.trusted && has_rid,
        https: client.https,
        body: &body,
        upgrade,
    };
    write_tail(out, forwarded_for.into_iter(), client.peer, tail);

    let idempotent = matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    );
    Ok(Some(Parsed {
        len,
        http10,
        keep_alive,
        upgrade,
        expect_continue,
        body,
        idempotent,
        head: method == "HEAD",
        host: absolute.or(host_header).map(|h| span(buf, h)),
        target: (!origin.starts_with('?'))
            .then(|| within(buf, origin.as_bytes()))
            .flatten(),
    }))
}

/// Where field `h`'s line lies in `buf` when its bytes there are exactly
/// what meshd would write for it (`name: value\r\n`); `None` for any other
/// spelling (no space or more than one, a bare LF), which is rewritten.
fn canonical_line(buf: &[u8], h: &httparse::Header<'_>) -> Option<Range<usize>> {
    let name = within(buf, h.name.as_bytes())?;
    let value = within(buf, h.value)?;
    let canonical = value.start == name.end + 2
        && buf.get(name.end..value.start) == Some(b": ".as_slice())
        && buf.get(value.end..value.end + 2) == Some(b"\r\n".as_slice());
    canonical.then_some(name.start..value.end + 2)
}

/// Where `part` lies in `buf`, if it is a slice of it.
fn within(buf: &[u8], part: &[u8]) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    (start + part.len() <= buf.len()).then(|| start..start + part.len())
}

/// Where `part`, a slice of `buf`, lies in it.
fn span(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

/// The authority of an absolute-form target (`http://host:port/path`).
fn authority(target: &str) -> Option<&[u8]> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let rest = target
            .get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .map(|_| &target[scheme.len()..])?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        (end > 0).then(|| &rest.as_bytes()[..end])
    })
}

/// Backends get origin-form: `http://host/path?q` becomes `/path?q`.
fn origin_form(target: &str) -> &str {
    for scheme in ["http://", "https://"] {
        if target.len() > scheme.len()
            && target.as_bytes()[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
        {
            let rest = &target[scheme.len()..];
            // `/path?q` as it is; a bare `?q` too (the caller puts the `/`
            // before it); nothing at all is `/`.
            return match rest.find(['/', '?']) {
                Some(i) => &rest[i..],
                None => "/",
            };
        }
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNTRUSTED: Client<'static> = Client {
        peer: b"127.0.2.1",
        https: false,
        trusted: false,
    };

    fn run(raw: &str) -> (Parsed, String) {
        run_as(raw, UNTRUSTED)
    }

    fn run_as(raw: &str, client: Client<'_>) -> (Parsed, String) {
        let mut out = Vec::new();
        let p = rewrite(raw.as_bytes(), client, &mut out)
            .expect("valid")
            .expect("complete");
        (p, String::from_utf8(out).unwrap())
    }

    use crate::proxy::headers::values as header;

    #[test]
    fn kept_fields_leave_in_canonical_form_whatever_their_spelling() {
        // Canonical lines (copied as runs), others spelled oddly (rewritten),
        // and dropped ones between them.
        let raw = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB:2\r\nC:  3\r\nConnection: x-gone\r\nD: 4\nX-Gone: 1\r\nE: 5\r\nF: \r\nTE: trailers\r\nG: 7\r\n\r\n";
        let (_, out) = run(raw);
        let fields = out
            .split_once("\r\n")
            .unwrap()
            .1
            .split_once("x-forwarded-for")
            .unwrap()
            .0;
        assert_eq!(
            fields,
            "Host: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: \r\nG: 7\r\n"
        );
    }

    #[test]
    fn the_host_and_target_an_edge_routes_by_are_found_in_the_head() {
        let at = |raw: &str, r: Option<Range<usize>>| r.map(|r| raw[r].to_owned());
        let raw = "GET /shop/cart?x=1 HTTP/1.1\r\nAccept: */*\r\nHost: Shop.Test:8080\r\n\r\n";
        let (p, _) = run(raw);
        assert_eq!(at(raw, p.host.clone()).as_deref(), Some("Shop.Test:8080"));
        assert_eq!(&raw[p.target.unwrap()], "/shop/cart?x=1");

        // Absolute form: the authority names the host unless a Host header does.
        let raw = "GET http://api.test:81/v1?q HTTP/1.0\r\n\r\n";
        let (p, _) = run(raw);
        assert_eq!(at(raw, p.host.clone()).as_deref(), Some("api.test:81"));
        assert_eq!(&raw[p.target.unwrap()], "/v1?q");
        let raw = "GET http://api.test/v1 HTTP/1.1\r\nHost: other.test\r\n\r\n";
        let (p, head) = run(raw);
        assert_eq!(at(raw, p.host).as_deref(), Some("api.test"));
        assert_eq!(header(&head, "host"), ["api.test"]);

        let raw = "GET / HTTP/1.0\r\n\r\n";
        assert_eq!(run(raw).0.host, None);
    }

    #[test]
    fn hop_by_hop_headers_stop_here_and_forwarding_headers_are_added() {
        let (p, head) = run(
            "GET /a?b=1 HTTP/1.1\r\nHost: web\r\nConnection: keep-alive, X-Secret\r\n\
             X-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 198.51.100.7\r\n\r\n",
        );
        assert!(head.starts_with("GET /a?b=1 HTTP/1.1\r\n"), "{head}");
        for gone in ["connection", "x-secret", "keep-alive", "te"] {
            assert!(header(&head, gone).is_empty(), "{gone} in {head}");
        }
        assert_eq!(
            header(&head, "x-forwarded-for"),
            ["198.51.100.7, 127.0.2.1"]
        );
        assert_eq!(header(&head, "x-forwarded-proto"), ["http"]);
        assert_eq!(header(&head, "x-request-id")[0].len(), 16);
        assert_eq!(header(&head, "host"), ["web"]);
        assert!(head.ends_with("\r\n\r\n"));
        assert_eq!(
            head.matches("\r\n\r\n").count(),
            1,
            "one blank line: {head}"
        );
        assert!(p.keep_alive && !p.http10 && p.idempotent && !p.upgrade);
        assert_eq!(p.framing(), Framing::Empty);
    }

    #[test]
    fn a_request_id_and_proto_are_kept_only_from_trusted_forwarders() {
        let raw =
            "GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc\r\nX-Forwarded-Proto: https\r\n\r\n";
        let trusted = Client {
            trusted: true,
            ..UNTRUSTED
        };
        let (_, head) = run_as(raw, trusted);
        assert_eq!(header(&head, "x-request-id"), ["abc"]);
        assert_eq!(header(&head, "x-forwarded-proto"), ["https"]);
        let (_, head) = run(raw);
        let id = header(&head, "x-request-id");
        assert!(id.len() == 1 && id[0] != "abc", "{head}");
        assert_eq!(header(&head, "x-forwarded-proto"), ["http"]);
    }

    #[test]
    fn host_must_be_there_once_and_connection_cannot_remove_framing() {
        let bad = |raw: &str| rewrite(raw.as_bytes(), UNTRUSTED, &mut Vec::new()).unwrap_err();
        assert_eq!(
            bad("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n").status(),
            400
        );
        assert_eq!(bad("GET / HTTP/1.1\r\n\r\n").status(), 400);
        let (p, head) = run(
            "POST / HTTP/1.1\r\nHost: h\r\nConnection: content-length, host, x-a\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n",
        );
        assert_eq!(p.framing(), Framing::Length(3));
        assert_eq!(header(&head, "content-length"), ["3"]);
        assert_eq!(header(&head, "host"), ["h"]);
        assert!(header(&head, "x-a").is_empty());
    }

    #[test]
    fn an_h2c_upgrade_is_not_an_upgrade() {
        let (p, head) = run(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMA\r\n\r\n",
        );
        assert!(!p.upgrade);
        for gone in ["upgrade", "http2-settings", "connection"] {
            assert!(header(&head, gone).is_empty(), "{gone} in {head}");
        }
    }

    #[test]
    fn bodies_keep_their_framing() {
        let (p, head) = run("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(p.framing(), Framing::Length(5));
        assert_eq!(header(&head, "content-length"), ["5"]);
        assert!(!p.idempotent);
        let (p, head) =
            run("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(p.framing(), Framing::Chunked);
        assert_eq!(header(&head, "transfer-encoding"), ["gzip, chunked"]);
        let (p, head) =
            run("PUT /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert!(p.expect_continue);
        assert!(header(&head, "expect").is_empty());
    }

    #[test]
    fn smuggling_shapes_and_bad_lengths_are_refused() {
        let bad = |raw: &str| rewrite(raw.as_bytes(), UNTRUSTED, &mut Vec::new()).unwrap_err();
        assert_eq!(
            bad("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
                .status(),
            400
        );
        assert_eq!(
            bad("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n")
                .status(),
            400
        );
        assert_eq!(
            bad("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n").status(),
            400
        );
        assert_eq!(
            bad("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n").status(),
            400
        );
        assert_eq!(bad("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n").status(), 400);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("h{i}: v\r\n")).collect();
        assert_eq!(
            bad(&format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")).status(),
            431
        );
    }

    #[test]
    fn partial_heads_wait_for_more() {
        let mut out = Vec::new();
        assert_eq!(
            rewrite(b"GET / HTTP/1.1\r\nHost: x\r\n", UNTRUSTED, &mut out),
            Ok(None)
        );
    }

    #[test]
    fn http10_closes_unless_asked_and_absolute_targets_become_origin_form() {
        let (p, head) = run("GET http://shop.example:10000/cart?x=1 HTTP/1.0\r\n\r\n");
        assert!(p.http10 && !p.keep_alive);
        assert!(head.starts_with("GET /cart?x=1 HTTP/1.1\r\n"), "{head}");
        let (p, _) = run("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(p.keep_alive);
        let (p, _) = run("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert!(!p.keep_alive);
        assert_eq!(origin_form("http://a.example"), "/");
        let (p, head) = run("GET http://a.example?q=1 HTTP/1.1\r\nHost: a.example\r\n\r\n");
        assert!(head.starts_with("GET /?q=1 HTTP/1.1\r\n"), "{head}");
        assert_eq!(p.target, None, "a target with no path routes as /");
        assert_eq!(origin_form("*"), "*");
    }

    #[test]
    fn upgrades_keep_their_connection_and_upgrade_headers() {
        let (p, head) =
            run("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(p.upgrade);
        assert_eq!(header(&head, "connection"), ["upgrade"]);
        assert_eq!(header(&head, "upgrade"), ["websocket"]);
        let (p, head) = run("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n");
        assert!(!p.upgrade);
        assert!(header(&head, "upgrade").is_empty());
    }

    #[test]
    fn an_absolute_target_without_a_path_has_no_span_in_the_buffer() {
        // Found by ops/fuzz (h1_request): the origin form `/` is not in the
        // buffer, and its span was computed from a pointer outside it.
        for (raw, line) in [
            (
                "GET http://x HTTP/1.1\r\nHost: y\r\n\r\n",
                "GET / HTTP/1.1\r\n",
            ),
            // The query is kept: `/?q`, not `/`.
            (
                "GET https://x?q HTTP/1.1\r\nHost: y\r\n\r\n",
                "GET /?q HTTP/1.1\r\n",
            ),
        ] {
            let (p, head) = run(raw);
            assert_eq!(p.target, None, "{raw:?}");
            assert!(head.starts_with(line), "{head}");
            assert!(p.host.is_some_and(|h| h.end <= p.len));
        }
    }
}
