use super::*;
use crate::proxy::codec::Framing;
use crate::proxy::headers::values;

fn parse(fields: &[(&str, &str)], trusted: bool) -> Result<Head, Malformed> {
    let mut f = Fields::new(trusted);
    for (n, v) in fields {
        f.field(n.as_bytes(), v.as_bytes());
    }
    f.finish()
}

fn head(fields: &[(&str, &str)]) -> Result<Head, Malformed> {
    parse(fields, false)
}

/// The backend's head, as text.
fn backend(h: Head, chunked: bool) -> String {
    let body = BodyFraming {
        framing: if chunked {
            Framing::Chunked
        } else {
            Framing::Empty
        },
        declared: None,
        codings: None,
    };
    String::from_utf8(h.into_backend_head(b"127.0.2.1", false, &body)).unwrap()
}

const GET: [(&str, &str); 4] = [
    (":method", "GET"),
    (":scheme", "http"),
    (":authority", "web.test"),
    (":path", "/a?b=1"),
];

#[test]
fn a_plain_get_becomes_an_origin_form_http11_head_with_a_host() {
    let mut fields = GET.to_vec();
    fields.push(("cookie", "a=1"));
    fields.push(("accept", "*/*"));
    fields.push(("cookie", "b=2"));
    let h = head(&fields).unwrap();
    assert_eq!(h.method, Method::GET);
    assert_eq!(h.path_and_query(), "/a?b=1");
    assert_eq!(h.host(), Some("web.test"));
    let b = backend(h, true);
    assert!(b.starts_with("GET /a?b=1 HTTP/1.1\r\n"), "{b}");
    assert_eq!(values(&b, "cookie"), ["a=1; b=2"]);
    assert_eq!(values(&b, "accept"), ["*/*"]);
    assert_eq!(values(&b, "host"), ["web.test"]);
    assert_eq!(values(&b, "transfer-encoding"), ["chunked"]);
    assert!(b.ends_with("\r\n\r\n"));
    assert_eq!(b.matches("\r\n\r\n").count(), 1, "one blank line: {b}");
}

#[test]
fn hop_by_hop_fields_stop_here_and_forwarding_fields_are_meshds() {
    let mut fields = GET.to_vec();
    fields.extend([
        ("te", "trailers"),
        ("trailer", "x-sum"),
        ("content-length", "0"),
        ("x-forwarded-for", "198.51.100.7"),
        ("x-forwarded-for", "198.51.100.8"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "given"),
    ]);
    let b = backend(head(&fields).unwrap(), false);
    for gone in ["te", "trailer", "content-length"] {
        assert!(values(&b, gone).is_empty(), "{gone} in {b}");
    }
    assert_eq!(
        values(&b, "x-forwarded-for"),
        ["198.51.100.7, 198.51.100.8, 127.0.2.1"]
    );
    assert_eq!(values(&b, "x-forwarded-proto"), ["http"]);
    let id = values(&b, "x-request-id");
    assert!(
        id.len() == 1 && id[0].len() == 16 && id[0] != "given",
        "{b}"
    );
    // A trusted forwarder's are kept.
    let b = backend(parse(&fields, true).unwrap(), false);
    assert_eq!(values(&b, "x-forwarded-proto"), ["https"]);
    assert_eq!(values(&b, "x-request-id"), ["given"]);
}

#[test]
fn a_host_field_stands_for_a_missing_authority() {
    let fields = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        ("host", "shop.test:8080"),
    ];
    let h = head(&fields).unwrap();
    assert_eq!(h.host(), Some("shop.test:8080"));
    assert_eq!(values(&backend(h, false), "host"), ["shop.test:8080"]);
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
        ("proxy-connection", "1"),
        ("upgrade", "websocket"),
        ("te", "gzip"),
        ("content-length", "1x"),
        ("Upper", "x"),
        ("bad name", "x"),
        ("bad:name", "x"),
        ("", "x"),
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
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/a#frag"),
        ],
        &[(":method", "GET"), (":scheme", "http"), (":path", "a")],
        &[(":method", "GET"), (":scheme", "http"), (":path", "")],
        &[(":method", "CONNECT"), (":authority", "x:1")],
        &[(":method", "G T"), (":scheme", "http"), (":path", "/")],
        &[(":method", "GET"), (":scheme", "ht tp"), (":path", "/")],
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "u@h"),
            (":path", "/"),
        ],
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "h/x"),
            (":path", "/"),
        ],
    ];
    for fields in bad {
        assert!(head(fields).is_err(), "{fields:?} let through");
    }
    let options = [(":method", "OPTIONS"), (":scheme", "http"), (":path", "*")];
    assert_eq!(head(&options).unwrap().path_and_query(), "*");
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
    let b = backend(head(&fields).unwrap(), false);
    assert_eq!(values(&b, "host"), ["WEB.test"]);
}

#[test]
fn host_comes_once() {
    // With :authority or without, one Host matching is not enough: the
    // backend would get both lines.
    let mut fields = GET.to_vec();
    fields.push(("host", "web.test"));
    fields.push(("host", "other.test"));
    assert_eq!(head(&fields).unwrap_err(), Malformed::HostMismatch);
    let no_authority = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        ("host", "a.test"),
        ("host", "b.test"),
    ];
    assert_eq!(head(&no_authority).unwrap_err(), Malformed::HostMismatch);
}

#[test]
fn host_without_authority_holds_an_authority_only() {
    // Found by the h2_hpack fuzz target: with no :authority, a Host with
    // userinfo (or bytes no authority has) went to the backend as it came.
    for host in ["u@other.test", "web.test/x", "web.test\u{a7}"] {
        let fields = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            ("host", host),
        ];
        assert!(head(&fields).is_err(), "host {host:?} let through");
    }
    let fields = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        ("host", "web.test:8080"),
    ];
    assert_eq!(head(&fields).unwrap().host(), Some("web.test:8080"));
}
