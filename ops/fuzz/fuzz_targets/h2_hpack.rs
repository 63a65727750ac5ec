//! Request header blocks as meshd decodes them: several blocks through one
//! `hpack::Decoder` (its dynamic table carried from block to block), each
//! block's fields collected by `request::Fields` and `finish()`ed, and the
//! head written out for the backend (`into_backend_head`). That HTTP/1.1
//! head must parse again (httparse) as one whole request: no CR, LF or NUL
//! inside it, no space in its target, one Host at most and no userinfo in
//! it, the method as decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd::proxy::codec::{BodyFraming, Framing};
use meshd::proxy::h2::hpack::Decoder;
use meshd::proxy::h2::request::Fields;

fuzz_target!(|data: &[u8]| {
    // First byte: the header list limit (small ones reach ListTooLarge),
    // and whether the client is a trusted forwarder.
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let max_list = 64 + usize::from(first >> 1) * 512;
    let trusted = first & 1 == 1;
    let mut decoder = Decoder::new(4096);
    // Then blocks, each behind a two-byte length.
    while let Some((len, after)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len)).min(after.len());
        let (block, next) = after.split_at(len);
        rest = next;
        let mut fields = Fields::new(trusted);
        let decoded = decoder.decode(block, max_list, |n, v| fields.field(n, v));
        if decoded.is_err() {
            // meshd ends the connection (or answers 431) here: no head goes on.
            continue;
        }
        let Ok(head) = fields.finish() else {
            continue;
        };
        let method = head.method.clone();
        let target = head.path_and_query().to_owned();
        let framing = BodyFraming {
            framing: match head.content_length {
                Some(n) => Framing::Length(n),
                None => Framing::Chunked,
            },
            declared: None,
            codings: None,
        };
        let wire = head.into_backend_head(b"127.0.0.1", false, &framing);
        check(&wire, method.as_str(), &target);
    }
});

/// The backend's head parses as one whole request, as meshd meant it.
fn check(wire: &[u8], method: &str, target: &str) {
    let text = String::from_utf8_lossy(wire);
    assert!(!wire.contains(&0), "NUL in {text:?}");
    assert!(!target.contains(' '), "space in the target {target:?}");
    let mut headers = vec![httparse::EMPTY_HEADER; 4096];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = req.parse(wire);
    assert!(
        matches!(parsed, Ok(httparse::Status::Complete(n)) if n == wire.len()),
        "{parsed:?}: {text:?}"
    );
    assert_eq!(req.method, Some(method), "{text:?}");
    assert_eq!(req.path, Some(target), "{text:?}");
    let hosts: Vec<&[u8]> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| h.value)
        .collect();
    assert!(hosts.len() <= 1, "two hosts: {text:?}");
    assert!(hosts.iter().all(|h| !h.contains(&b'@')), "userinfo: {text:?}");
    for h in req.headers.iter() {
        assert!(
            !h.value.iter().any(|b| matches!(b, b'\r' | b'\n' | b'\0')),
            "{text:?}"
        );
    }
}
