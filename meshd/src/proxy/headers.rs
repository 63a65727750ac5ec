//! The end of every backend request head, whichever server read the
//! request (`h1::request`, `h2::request`, where hop-by-hop fields stop):
//! `X-Forwarded-For`, `X-Forwarded-Proto` and a request id.

use super::codec::BodyFraming;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
