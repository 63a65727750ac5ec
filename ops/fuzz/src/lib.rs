//! What the fuzz targets share: the HTTP/1 request check (raw and
//! structured inputs go through the same one) and body decoding.

use bytes::{Buf, BytesMut};
use meshd::proxy::codec::{Decoder, Framing};
use meshd::proxy::h1::request::{rewrite, Client};
use std::task::{Context, Poll, Waker};

/// Reads a body framed as `framing` from `bytes` (the first `split` of
/// them already buffered, the rest arriving from the reader), as meshd
/// does. Returns the data length, or `None` when the body is refused or cut short.
pub fn decode(framing: Framing, bytes: &[u8], split: usize) -> Option<u64> {
    let split = split.min(bytes.len());
    let mut buf = BytesMut::from(&bytes[..split]);
    let mut rest: &[u8] = &bytes[split..];
    let mut decoder = Decoder::new(framing);
    let mut cx = Context::from_waker(Waker::noop());
    let mut total = 0u64;
    loop {
        match decoder.poll_data(&mut buf, &mut rest, &mut cx) {
            Poll::Ready(None) => return Some(total),
            Poll::Ready(Some(Ok(n))) => {
                assert!(n > 0 && n <= buf.len(), "decoder said {n} of {}", buf.len());
                total += n as u64;
                buf.advance(n);
            }
            Poll::Ready(Some(Err(_))) => return None,
            // A slice reader is always ready.
            Poll::Pending => panic!("decoder pending on a slice"),
        }
    }
}

/// Values of header `name` in a parsed head.
fn values<'a>(headers: &[httparse::Header<'a>], name: &str) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
        .collect()
}

/// Rewrites the request at the front of `data` as meshd would for each kind
/// of client, checks the head the backend would get, and decodes the body after it.
pub fn check_request(data: &[u8]) {
    let clients = [
        Client {
            peer: b"10.0.0.1",
            https: false,
            trusted: false,
        },
        Client {
            peer: b"fd00::1",
            https: true,
            trusted: true,
        },
    ];
    for client in clients {
        let mut out = Vec::new();
        let Ok(Some(parsed)) = rewrite(data, client, &mut out) else {
            continue;
        };
        assert!(parsed.len <= data.len());
        if let Some(host) = &parsed.host {
            assert!(host.end <= parsed.len, "host {host:?} outside the head");
        }
        if let Some(target) = &parsed.target {
            assert!(
                target.end <= parsed.len,
                "target {target:?} outside the head"
            );
        }

        let mut slots = [httparse::EMPTY_HEADER; 256];
        let mut again = httparse::Request::new(&mut slots);
        let len = match again.parse(&out) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!(
                "rewritten head does not parse: {other:?}\n{}",
                String::from_utf8_lossy(&out)
            ),
        };
        assert_eq!(len, out.len(), "bytes after the rewritten head");
        let lengths = values(again.headers, "content-length");
        let codings = values(again.headers, "transfer-encoding");
        let shown = || String::from_utf8_lossy(&out).into_owned();
        match parsed.framing() {
            Framing::Length(n) => {
                assert_eq!(lengths, [n.to_string().as_bytes()], "{}", shown());
                assert!(codings.is_empty(), "{}", shown());
            }
            Framing::Chunked => {
                assert!(lengths.is_empty(), "{}", shown());
                assert_eq!(codings.len(), 1, "{}", shown());
                assert!(codings[0].ends_with(b"chunked"), "{}", shown());
            }
            Framing::Empty => {
                assert!(codings.is_empty(), "{}", shown());
                assert!(lengths.len() <= 1, "{}", shown());
            }
            Framing::Close => panic!("a request framed by close"),
        }
        // One host, whether the target's authority or the client's `Host`.
        let hosts = values(again.headers, "host").len();
        assert!(hosts <= 1 && (parsed.http10 || hosts == 1), "{}", shown());

        let body = &data[parsed.len..];
        for split in [body.len(), body.len() / 2, 0] {
            if let (Some(got), Framing::Length(n)) =
                (decode(parsed.framing(), body, split), parsed.framing())
            {
                assert_eq!(got, n, "a length-framed body ended early");
            }
        }
    }
}

/// Parses `source` as a policy file and merges it, strictly and leniently:
/// whatever the text, no panic, and the two merges agree on a sound file.
pub fn check_policy(source: &str) {
    use schemas::{parse_policy_file, PolicySet};
    let parsed = parse_policy_file("fuzz.yaml", source);
    let strict = PolicySet::from_files([("fuzz.yaml", source)]);
    let lenient = PolicySet::from_files_lenient([("fuzz.yaml", source)]);
    if parsed.is_err() {
        assert!(strict.is_err(), "a file the parser refuses merged cleanly");
    }
    if let Ok(set) = &strict {
        assert!(lenient.errors.is_empty(), "{:?}", lenient.errors);
        assert!(lenient.broken_files.is_empty() && lenient.broken_apps.is_empty());
        assert_eq!(set.apps, lenient.set.apps);
    }
    // The same file twice: every app is in two files.
    let _ = PolicySet::from_files_lenient([("a.yaml", source), ("b.yaml", source)]);
}
