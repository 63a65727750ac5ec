//! Request header blocks as meshd decodes them: several blocks through one
//! `hpack::Decoder` (its dynamic table carried from block to block), each
//! block's fields collected by `request::Fields` and `finish()`ed. A head
//! that `finish` accepts becomes an HTTP/1.1 head: no CR, LF or NUL may be
//! anywhere in its method, target or fields, one Host at most, no userinfo.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd::proxy::h2::hpack::Decoder;
use meshd::proxy::h2::request::Fields;

/// Bytes an HTTP/1.1 head cannot carry inside a field.
fn clean(bytes: &[u8]) -> bool {
    !bytes.iter().any(|b| matches!(b, b'\r' | b'\n' | b'\0'))
}

fuzz_target!(|data: &[u8]| {
    // First byte: the header list limit (small ones reach ListTooLarge).
    let Some((&limit, mut rest)) = data.split_first() else {
        return;
    };
    let max_list = 64 + usize::from(limit) * 512;
    let mut decoder = Decoder::new(4096);
    // Then blocks, each behind a two-byte length.
    while let Some((len, after)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len)).min(after.len());
        let (block, next) = after.split_at(len);
        rest = next;
        let mut fields = Fields::default();
        let decoded = decoder.decode(block, max_list, |n, v| fields.field(n, v));
        if decoded.is_err() {
            // meshd ends the connection (or answers 431) here: no head goes on.
            continue;
        }
        let Ok(head) = fields.finish() else {
            continue;
        };
        let p = &head.parts;
        assert!(clean(p.method.as_str().as_bytes()), "method {:?}", p.method);
        assert!(clean(p.uri.to_string().as_bytes()), "uri {:?}", p.uri);
        assert!(
            !p.uri.to_string().contains(' '),
            "a space in the target splits the request line: {:?}",
            p.uri
        );
        // One Host at most, and no userinfo: a backend routes by either.
        assert!(p.headers.get_all("host").iter().count() <= 1, "two hosts");
        assert!(
            p.uri.authority().is_none_or(|a| !a.as_str().contains('@')),
            "userinfo in {:?}",
            p.uri
        );
        for (name, value) in &p.headers {
            assert!(clean(name.as_str().as_bytes()), "name {name:?}");
            assert!(clean(value.as_bytes()), "{name}: {value:?}");
        }
    }
});
