//! HPACK Huffman code (RFC 7541 Appendix B): encoded length, encoding and a
//! table-driven decoder that consumes four bits per step.

use std::sync::OnceLock;

/// Why a Huffman string could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuffmanError {
    /// The string contains the EOS symbol, which RFC 7541 5.2 forbids.
    Eos,
    /// The final bits are longer than 7 or not all ones.
    BadPadding,
}

/// `(code, bit length)` per symbol 0..=256 (256 = EOS), RFC 7541 Appendix B.
#[rustfmt::skip]
const CODES: [(u32, u8); 257] = [
    // 0
    (0x1ff8, 13), (0x7fffd8, 23), (0xfffffe2, 28), (0xfffffe3, 28),
    (0xfffffe4, 28), (0xfffffe5, 28), (0xfffffe6, 28), (0xfffffe7, 28),
    (0xfffffe8, 28), (0xffffea, 24), (0x3ffffffc, 30), (0xfffffe9, 28),
    (0xfffffea, 28), (0x3ffffffd, 30), (0xfffffeb, 28), (0xfffffec, 28),
    // 16
    (0xfffffed, 28), (0xfffffee, 28), (0xfffffef, 28), (0xffffff0, 28),
    (0xffffff1, 28), (0xffffff2, 28), (0x3ffffffe, 30), (0xffffff3, 28),
    (0xffffff4, 28), (0xffffff5, 28), (0xffffff6, 28), (0xffffff7, 28),
    (0xffffff8, 28), (0xffffff9, 28), (0xffffffa, 28), (0xffffffb, 28),
    // 32 (' ' = 32, '0' = 48, 'A' = 65, 'a' = 97)
    (0x14, 6), (0x3f8, 10), (0x3f9, 10), (0xffa, 12),
    (0x1ff9, 13), (0x15, 6), (0xf8, 8), (0x7fa, 11),
    (0x3fa, 10), (0x3fb, 10), (0xf9, 8), (0x7fb, 11),
    (0xfa, 8), (0x16, 6), (0x17, 6), (0x18, 6),
    // 48
    (0x0, 5), (0x1, 5), (0x2, 5), (0x19, 6),
    (0x1a, 6), (0x1b, 6), (0x1c, 6), (0x1d, 6),
    (0x1e, 6), (0x1f, 6), (0x5c, 7), (0xfb, 8),
    (0x7ffc, 15), (0x20, 6), (0xffb, 12), (0x3fc, 10),
    // 64
    (0x1ffa, 13), (0x21, 6), (0x5d, 7), (0x5e, 7),
    (0x5f, 7), (0x60, 7), (0x61, 7), (0x62, 7),
    (0x63, 7), (0x64, 7), (0x65, 7), (0x66, 7),
    (0x67, 7), (0x68, 7), (0x69, 7), (0x6a, 7),
    // 80
    (0x6b, 7), (0x6c, 7), (0x6d, 7), (0x6e, 7),
    (0x6f, 7), (0x70, 7), (0x71, 7), (0x72, 7),
    (0xfc, 8), (0x73, 7), (0xfd, 8), (0x1ffb, 13),
    (0x7fff0, 19), (0x1ffc, 13), (0x3ffc, 14), (0x22, 6),
    // 96
    (0x7ffd, 15), (0x3, 5), (0x23, 6), (0x4, 5),
    (0x24, 6), (0x5, 5), (0x25, 6), (0x26, 6),
    (0x27, 6), (0x6, 5), (0x74, 7), (0x75, 7),
    (0x28, 6), (0x29, 6), (0x2a, 6), (0x7, 5),
    // 112
    (0x2b, 6), (0x76, 7), (0x2c, 6), (0x8, 5),
    (0x9, 5), (0x2d, 6), (0x77, 7), (0x78, 7),
    (0x79, 7), (0x7a, 7), (0x7b, 7), (0x7ffe, 15),
    (0x7fc, 11), (0x3ffd, 14), (0x1ffd, 13), (0xffffffc, 28),
    // 128
    (0xfffe6, 20), (0x3fffd2, 22), (0xfffe7, 20), (0xfffe8, 20),
    (0x3fffd3, 22), (0x3fffd4, 22), (0x3fffd5, 22), (0x7fffd9, 23),
    (0x3fffd6, 22), (0x7fffda, 23), (0x7fffdb, 23), (0x7fffdc, 23),
    (0x7fffdd, 23), (0x7fffde, 23), (0xffffeb, 24), (0x7fffdf, 23),
    // 144
    (0xffffec, 24), (0xffffed, 24), (0x3fffd7, 22), (0x7fffe0, 23),
    (0xffffee, 24), (0x7fffe1, 23), (0x7fffe2, 23), (0x7fffe3, 23),
    (0x7fffe4, 23), (0x1fffdc, 21), (0x3fffd8, 22), (0x7fffe5, 23),
    (0x3fffd9, 22), (0x7fffe6, 23), (0x7fffe7, 23), (0xffffef, 24),
    // 160
    (0x3fffda, 22), (0x1fffdd, 21), (0xfffe9, 20), (0x3fffdb, 22),
    (0x3fffdc, 22), (0x7fffe8, 23), (0x7fffe9, 23), (0x1fffde, 21),
    (0x7fffea, 23), (0x3fffdd, 22), (0x3fffde, 22), (0xfffff0, 24),
    (0x1fffdf, 21), (0x3fffdf, 22), (0x7fffeb, 23), (0x7fffec, 23),
    // 176
    (0x1fffe0, 21), (0x1fffe1, 21), (0x3fffe0, 22), (0x1fffe2, 21),
    (0x7fffed, 23), (0x3fffe1, 22), (0x7fffee, 23), (0x7fffef, 23),
    (0xfffea, 20), (0x3fffe2, 22), (0x3fffe3, 22), (0x3fffe4, 22),
    (0x7ffff0, 23), (0x3fffe5, 22), (0x3fffe6, 22), (0x7ffff1, 23),
    // 192
    (0x3ffffe0, 26), (0x3ffffe1, 26), (0xfffeb, 20), (0x7fff1, 19),
    (0x3fffe7, 22), (0x7ffff2, 23), (0x3fffe8, 22), (0x1ffffec, 25),
    (0x3ffffe2, 26), (0x3ffffe3, 26), (0x3ffffe4, 26), (0x7ffffde, 27),
    (0x7ffffdf, 27), (0x3ffffe5, 26), (0xfffff1, 24), (0x1ffffed, 25),
    // 208
    (0x7fff2, 19), (0x1fffe3, 21), (0x3ffffe6, 26), (0x7ffffe0, 27),
    (0x7ffffe1, 27), (0x3ffffe7, 26), (0x7ffffe2, 27), (0xfffff2, 24),
    (0x1fffe4, 21), (0x1fffe5, 21), (0x3ffffe8, 26), (0x3ffffe9, 26),
    (0xffffffd, 28), (0x7ffffe3, 27), (0x7ffffe4, 27), (0x7ffffe5, 27),
    // 224
    (0xfffec, 20), (0xfffff3, 24), (0xfffed, 20), (0x1fffe6, 21),
    (0x3fffe9, 22), (0x1fffe7, 21), (0x1fffe8, 21), (0x7ffff3, 23),
    (0x3fffea, 22), (0x3fffeb, 22), (0x1ffffee, 25), (0x1ffffef, 25),
    (0xfffff4, 24), (0xfffff5, 24), (0x3ffffea, 26), (0x7ffff4, 23),
    // 240
    (0x3ffffeb, 26), (0x7ffffe6, 27), (0x3ffffec, 26), (0x3ffffed, 26),
    (0x7ffffe7, 27), (0x7ffffe8, 27), (0x7ffffe9, 27), (0x7ffffea, 27),
    (0x7ffffeb, 27), (0xffffffe, 28), (0x7ffffec, 27), (0x7ffffed, 27),
    (0x7ffffee, 27), (0x7ffffef, 27), (0x7fffff0, 27), (0x3ffffee, 26),
    // 256
    (0x3fffffff, 30),
];

const EOS: usize = 256;

/// The code of byte `b`; every byte has one, so the lookup cannot miss.
#[cfg(test)]
fn code(b: u8) -> (u32, u8) {
    // `CODES` has 257 entries, so any u8 index is in range.
    CODES.get(usize::from(b)).copied().unwrap_or((0, 0))
}

/// Bytes `src` takes once Huffman-encoded (padding included). meshd sends
/// values raw (CPU matters more than bytes here): the tests use it.
#[cfg(test)]
pub fn encoded_len(src: &[u8]) -> usize {
    let bits: usize = src.iter().map(|&b| usize::from(code(b).1)).sum();
    bits.div_ceil(8)
}

/// Appends the Huffman encoding of `src` to `out`, padded with ones (the EOS prefix).
#[cfg(test)]
pub fn encode(src: &[u8], out: &mut Vec<u8>) {
    out.reserve(encoded_len(src));
    // Bits wait in the low end of `acc`; at most 7 + 30 of them, so a u64 never overflows.
    let mut acc: u64 = 0;
    let mut nbits: u32 = 0;
    for &b in src {
        let (c, len) = code(b);
        acc = (acc << len) | u64::from(c);
        nbits += u32::from(len);
        while nbits >= 8 {
            nbits -= 8;
            out.push((acc >> nbits) as u8);
        }
    }
    if nbits > 0 {
        let pad = 8 - nbits;
        out.push(((acc << pad) | ((1u64 << pad) - 1)) as u8);
    }
}

/// One step of the nibble decoder: from a state, after four more bits.
#[derive(Clone, Copy, Default)]
struct Step {
    /// State (internal tree node) after the four bits.
    next: u8,
    /// A symbol was completed within the four bits (at most one: codes are >= 5 bits).
    emit: bool,
    /// The symbol completed, when `emit`.
    sym: u8,
    /// The four bits complete EOS: the string is invalid.
    fail: bool,
}

/// Decoder tables, built once: 256 internal tree nodes x 16 nibbles.
struct Tables {
    steps: Vec<[Step; 16]>,
    /// Whether input may end in this state: root, or an all-ones path of at most 7 bits.
    accept: Vec<bool>,
}

/// Tree node while building: children are `Node(index)` or `Leaf(symbol)`.
#[derive(Clone, Copy)]
enum Child {
    Missing,
    Node(usize),
    Leaf(usize),
}

fn build() -> Tables {
    // Internal nodes with their two children, depth and whether their path is all ones.
    let mut nodes: Vec<([Child; 2], u8, bool)> = vec![([Child::Missing; 2], 0, true)];
    for (sym, &(c, len)) in CODES.iter().enumerate() {
        let mut cur = 0usize;
        for i in (0..len).rev() {
            let bit = ((c >> i) & 1) as usize;
            let Some(&(children, depth, ones)) = nodes.get(cur) else {
                break;
            };
            let slot = children.get(bit).copied().unwrap_or(Child::Missing);
            if i == 0 {
                if let Some(n) = nodes.get_mut(cur).and_then(|n| n.0.get_mut(bit)) {
                    *n = Child::Leaf(sym);
                }
            } else if let Child::Node(next) = slot {
                cur = next;
            } else {
                let next = nodes.len();
                nodes.push(([Child::Missing; 2], depth + 1, ones && bit == 1));
                if let Some(n) = nodes.get_mut(cur).and_then(|n| n.0.get_mut(bit)) {
                    *n = Child::Node(next);
                }
                cur = next;
            }
        }
    }
    let mut steps = vec![[Step::default(); 16]; nodes.len()];
    for (state, row) in steps.iter_mut().enumerate() {
        for (nibble, step) in row.iter_mut().enumerate() {
            let mut cur = state;
            for i in (0..4).rev() {
                let bit = (nibble >> i) & 1;
                let child = nodes
                    .get(cur)
                    .and_then(|n| n.0.get(bit))
                    .copied()
                    .unwrap_or(Child::Missing);
                match child {
                    Child::Node(n) => cur = n,
                    Child::Leaf(sym) if sym != EOS => {
                        step.emit = true;
                        step.sym = sym as u8;
                        cur = 0;
                    }
                    // EOS, or a hole (none in a complete code): the string is invalid.
                    _ => step.fail = true,
                }
            }
            step.next = cur as u8;
        }
    }
    let accept = nodes
        .iter()
        .map(|&(_, depth, ones)| depth == 0 || (ones && depth <= 7))
        .collect();
    Tables { steps, accept }
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(build)
}

/// Appends the decoding of `src` to `out`; on error `out` holds a partial result.
pub fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let t = tables();
    // Shortest code is 5 bits: this bound avoids regrowth without over-reserving much.
    out.reserve(src.len().saturating_mul(8) / 5);
    let mut state = 0usize;
    for &b in src {
        for nibble in [b >> 4, b & 0x0f] {
            let step = t
                .steps
                .get(state)
                .and_then(|row| row.get(usize::from(nibble)))
                .copied()
                .unwrap_or(Step {
                    fail: true,
                    ..Step::default()
                });
            if step.fail {
                return Err(HuffmanError::Eos);
            }
            if step.emit {
                out.push(step.sym);
            }
            state = usize::from(step.next);
        }
    }
    if t.accept.get(state).copied().unwrap_or(false) {
        Ok(())
    } else {
        Err(HuffmanError::BadPadding)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)] // In tests a panic is a failure, which is what we want.
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn dec(src: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(src, &mut out).map(|()| out)
    }

    /// Bytes 0..=255 in one string, Huffman-encoded by Python's hpack 4.2.0: every code
    /// of Appendix B but EOS (the padding test covers EOS).
    const ALL_BYTES: &str = "ffc7fffd8fffffe2fffffe3fffffe4fffffe5fffffe6fffffe7fffffe8ffffeafffffff3fffffa7fffffabffffffdfffffebfffffecfffffedfffffeefffffefffffff0ffffff1ffffff2fffffffbfffffcffffffd3fffffd7fffffdbfffffdffffffe3fffffe7fffffebfffffed4fe3f9ffaffcabf1febfafefe7fdfd2cbb00089969b71d79fb9f7fff20ffbff3ff50ddbd7f061c58f265cd9f469d5af66dddbf871e5f9cff7ff7fffc3ff9ffe45fff4719242cb34e6e9d68a6a3d7dac426defe3cfaf7fffbfe7ffbffdffffffcfffe6ffff4bfff9ffffa3fffd3ffff53fffd5ffffb3fffeb7fffdaffffb7ffff73fffeeffffdeffffebffffbfffffd9ffffdbfffebffffe0ffffeeffffc3ffff8bffff1ffffe4fffee7fffb1ffff97fffd9ffffcdffff9fffffbffffdafffeeffff4ffffb7fffee7fffe8ffffd3fffdeffffd5fffeeffffbdffffe1fffdfffff7fffff5ffffecffff07fff87fffe0ffff17fffedffff87ffff77fffeffffeaffff8bfffe3ffff93ffff87fffcbffff37ffff1fffff83ffffe1fffebfffe3ffff3fffff2ffffa3ffffd9fffff17ffffc7fffff27ffffdefffffbffffff2fffff8fffffb7fff97fff8fffffe6fffffc1fffff87ffffe7fffffc5ffffe5fffe4ffff2fffffd1fffff4ffffffefffffe3fffffc9fffff97fffb3ffffcffffb7fffcdffff4ffff9ffffd1ffffcffffeaffffafffffddffffeffffff4fffff5fffffabffffa7ffffd7fffff9bffffecfffffb7fffff3fffffe8fffffd3fffffabfffff5fffffff7ffffecfffffdbfffffbbfffff7ffffff0fffffbbf";

    #[test]
    fn all_byte_codes_match_python_hpack() {
        let all: Vec<u8> = (0..=255).collect();
        let mut out = Vec::new();
        encode(&all, &mut out);
        assert_eq!(out, hex(ALL_BYTES));
        assert_eq!(encoded_len(&all), out.len());
        assert_eq!(dec(&out), Ok(all));
    }

    #[test]
    fn rfc_c4_strings() {
        let cases: [(&str, &[u8]); 4] = [
            ("f1e3c2e5f23a6ba0ab90f4ff", b"www.example.com"),
            ("a8eb10649cbf", b"no-cache"),
            ("25a849e95ba97d7f", b"custom-key"),
            ("25a849e95bb8e8b4bf", b"custom-value"),
        ];
        for (h, s) in cases {
            assert_eq!(dec(&hex(h)).as_deref(), Ok(s));
            let mut out = Vec::new();
            encode(s, &mut out);
            assert_eq!(out, hex(h));
        }
    }

    #[test]
    fn every_single_byte_and_pair_round_trips() {
        let mut out = Vec::new();
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for s in [&[a][..], &[a, b][..]] {
                    out.clear();
                    encode(s, &mut out);
                    assert_eq!(out.len(), encoded_len(s));
                    assert_eq!(dec(&out).as_deref(), Ok(s));
                }
            }
        }
    }

    #[test]
    fn padding_and_eos() {
        assert_eq!(dec(&[]), Ok(vec![]));
        // "0" is 00000: 111 padding is fine, 110 is not, 8+ bits of ones is too long.
        assert_eq!(dec(&[0x07]), Ok(b"0".to_vec()));
        assert_eq!(dec(&[0x06]), Err(HuffmanError::BadPadding));
        assert_eq!(dec(&[0x07, 0xff]), Err(HuffmanError::BadPadding));
        // Seven ones alone is valid padding of an empty string; eight is not.
        assert_eq!(dec(&[0xff]), Err(HuffmanError::BadPadding));
        // EOS (30 ones) anywhere is an error, even when followed by valid bits.
        assert_eq!(dec(&[0xff, 0xff, 0xff, 0xff]), Err(HuffmanError::Eos));
        assert_eq!(dec(&[0x07, 0xff, 0xff, 0xff, 0xfc]), Err(HuffmanError::Eos));
        // A 29-ones prefix is not EOS but is bad padding.
        assert_eq!(
            dec(&[0xff, 0xff, 0xff, 0xf8]),
            Err(HuffmanError::BadPadding)
        );
    }
}
