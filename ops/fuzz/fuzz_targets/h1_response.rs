//! A backend's bytes as meshd's upstream side reads them: the response head
//! (`upstream::parse_response_head`, every way meshd takes it: raw for an
//! HTTP/1.1 client, as an HPACK block or a header map for HTTP/2), its framing
//! (`codec::FramingFields::response`), then the body with `codec::Decoder`.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use meshd::proxy::codec::Framing;
use meshd::proxy::h2::hpack::Decoder;
use meshd::proxy::upstream::{parse_response_head, HeadInto};

fuzz_target!(|data: &[u8]| {
    for expect_body in [true, false] {
        for way in 0..3 {
            let (raw, hpack) = (way == 0, way == 1);
            let mut buf = BytesMut::from(data);
            let mut out = Vec::new();
            let into = match way {
                0 => HeadInto::Http1(&mut out),
                1 => HeadInto::Hpack(&mut out),
                _ => HeadInto::Map,
            };
            let Ok(Some(head)) = parse_response_head(&mut buf, expect_body, into) else {
                continue;
            };
            assert!(buf.len() < data.len(), "the head's bytes were not taken");
            let framing = head.body.framing;
            if !expect_body {
                assert_eq!(framing, Framing::Empty);
            }
            if hpack {
                // The block decodes, with lowercase names, no framing field
                // but meshd's one content-length, and no byte HTTP/2 forbids.
                let mut lengths = Vec::new();
                let decoded = Decoder::new(4096).decode(&out, usize::MAX, |n, v| {
                    assert!(!n.iter().any(u8::is_ascii_uppercase), "{n:?}");
                    assert!(!v.iter().any(|b| matches!(b, b'\0' | b'\r' | b'\n')), "{v:?}");
                    assert_ne!(n, b"transfer-encoding");
                    if n == b"content-length" {
                        lengths.push(v.to_vec());
                    }
                    true
                });
                assert_eq!(decoded, Ok(true));
                assert!(lengths.len() <= 1, "{lengths:?}");
                if let Framing::Length(n) = framing {
                    assert_eq!(lengths, [n.to_string().into_bytes()]);
                }
            } else if raw {
                out.extend_from_slice(b"\r\n");
                let mut slots = [httparse::EMPTY_HEADER; 128];
                let mut again = httparse::Response::new(&mut slots);
                match again.parse(&out) {
                    Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len()),
                    other => panic!(
                        "rewritten head does not parse: {other:?}\n{}",
                        String::from_utf8_lossy(&out)
                    ),
                }
                assert!(
                    !again.headers.iter().any(|h| {
                        h.name.eq_ignore_ascii_case("content-length")
                            || h.name.eq_ignore_ascii_case("transfer-encoding")
                    }),
                    "a framing field was copied:\n{}",
                    String::from_utf8_lossy(&out)
                );
            } else {
                let lengths: Vec<_> = head.headers.get_all("content-length").iter().collect();
                assert!(head.headers.get("transfer-encoding").is_none());
                if let Framing::Length(n) = framing {
                    assert_eq!(lengths.len(), 1, "{:?}", head.headers);
                    assert_eq!(lengths[0].as_bytes(), n.to_string().as_bytes());
                }
                assert!(lengths.len() <= 1, "{:?}", head.headers);
            }
            let rest = buf.to_vec();
            for split in [rest.len(), rest.len() / 2, 0] {
                if let (Some(got), Framing::Length(n)) =
                    (palisade_fuzz::decode(framing, &rest, split), framing)
                {
                    assert_eq!(got, n);
                }
            }
        }
    }
});
