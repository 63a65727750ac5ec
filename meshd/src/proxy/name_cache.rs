//! Response header names as a backend spelled them last time. A backend
//! sends the same names in the same order on every response (`Server`,
//! `Date`, `Content-Type`, `Content-Length` ...); turning each into a
//! `HeaderName` lowercases it into a scratch buffer and matches it against
//! the standard names (~150 instructions a name). This thread keeps, per
//! position in the head, the raw name it saw last and what it became: a
//! name spelled as last time costs a comparison and a copy.

use hyper::header::{HeaderName, InvalidHeaderName};
use std::cell::RefCell;

/// Positions remembered: the first this many fields of a head.
const POSITIONS: usize = 24;

/// Longest raw name remembered (longer ones are parsed each time).
const MAX_NAME: usize = 64;

thread_local! {
    static LAST: RefCell<Vec<(Box<[u8]>, HeaderName)>> = const { RefCell::new(Vec::new()) };
}

/// The `HeaderName` for raw name `raw`, the `i`-th field of a head: what
/// `HeaderName::from_bytes` gives, from this thread's memory when the
/// field at `i` was spelled the same last time.
pub fn header_name(i: usize, raw: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
    if i >= POSITIONS || raw.len() > MAX_NAME {
        return HeaderName::from_bytes(raw);
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((seen, name)) = last.get(i) {
            if **seen == *raw {
                return Ok(name.clone());
            }
        }
        let name = HeaderName::from_bytes(raw)?;
        let entry = (Box::from(raw), name.clone());
        if i < last.len() {
            last[i] = entry;
        } else if i == last.len() {
            last.push(entry);
        }
        Ok(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_what_from_bytes_gives_whatever_came_before() {
        let heads: [&[&[u8]]; 4] = [
            &[b"Server", b"Date", b"Content-Type", b"X-Custom"],
            &[b"Server", b"Date", b"Content-Type", b"X-Custom"],
            &[b"server", b"DATE", b"x-other", b"X-Custom", b"Vary"],
            &[b"Server", b"Date", b"Content-Type", b"X-Custom"],
        ];
        for head in heads {
            for (i, raw) in head.iter().enumerate() {
                let name = header_name(i, raw).unwrap();
                assert_eq!(name, HeaderName::from_bytes(raw).unwrap(), "{i}");
            }
        }
    }

    #[test]
    fn invalid_names_are_refused_every_time() {
        for _ in 0..2 {
            assert!(header_name(0, b"bad name").is_err());
            assert!(header_name(1, b"").is_err());
        }
        assert_eq!(header_name(0, b"Via").unwrap(), "via");
    }

    #[test]
    fn far_positions_and_long_names_are_parsed_each_time() {
        let long = vec![b'x'; MAX_NAME + 1];
        assert_eq!(header_name(0, &long).unwrap().as_str().len(), MAX_NAME + 1);
        assert_eq!(header_name(POSITIONS, b"ETag").unwrap(), "etag");
    }
}
