//! HPACK (RFC 7541) for meshd's HTTP/2 server: a request-header decoder whose
//! dynamic table holds only the bytes its entries need, and a response encoder
//! without a dynamic table (it would cost memory on every idle connection).

use std::collections::VecDeque;

use super::huffman::{self, HuffmanError};

/// Why a header block could not be decoded: a connection error (COMPRESSION_ERROR),
/// except `ListTooLarge`, after which the table is still in sync.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HpackError {
    /// The decoded list is above `max_list`; every field was still decoded.
    #[error("header list is larger than the advertised SETTINGS_MAX_HEADER_LIST_SIZE")]
    ListTooLarge,
    /// The block ends inside an integer (an index, a length or a size update).
    #[error("header block ends inside an HPACK integer")]
    TruncatedInteger,
    /// An integer needs more than 32 bits or more than 5 continuation bytes.
    #[error("HPACK integer is too large (more than 32 bits or 5 continuation bytes)")]
    IntegerOverflow,
    /// A string literal claims more bytes than the block has left.
    #[error("string literal of {len} bytes but only {left} bytes left in the header block")]
    TruncatedString {
        /// Length the literal claims.
        len: usize,
        /// Bytes left in the block.
        left: usize,
    },
    /// A Huffman string contains the EOS symbol.
    #[error("Huffman-coded string contains the EOS symbol")]
    HuffmanEos,
    /// A Huffman string ends in more than 7 bits of padding or padding that is not all ones.
    #[error("Huffman-coded string has invalid padding (over 7 bits or not all ones)")]
    HuffmanPadding,
    /// Index 0 is reserved.
    #[error("header field index 0 is not allowed")]
    IndexZero,
    /// The index is beyond the static and dynamic tables.
    #[error("header field index {index} is beyond the table ({len} entries)")]
    IndexOutOfRange {
        /// Index received.
        index: usize,
        /// Static plus dynamic entries the table holds.
        len: usize,
    },
    /// A dynamic table size update follows a header field (RFC 7541 4.2).
    #[error("dynamic table size update after a header field")]
    LateSizeUpdate,
    /// A dynamic table size update exceeds the advertised SETTINGS_HEADER_TABLE_SIZE.
    #[error("dynamic table size update to {size} exceeds the advertised maximum {max}")]
    SizeUpdateTooLarge {
        /// Size asked for.
        size: usize,
        /// SETTINGS_HEADER_TABLE_SIZE advertised.
        max: usize,
    },
}

impl From<HuffmanError> for HpackError {
    fn from(e: HuffmanError) -> Self {
        match e {
            HuffmanError::Eos => HpackError::HuffmanEos,
            HuffmanError::BadPadding => HpackError::HuffmanPadding,
        }
    }
}

/// RFC 7541 Appendix A; index 1 is the first entry.
const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Per-entry overhead RFC 7541 4.1 adds to name + value (also RFC 9113's list size).
const ENTRY_OVERHEAD: usize = 32;

/// Size of a field as RFC 7541 4.1 and RFC 9113 6.5.2 count it.
fn field_size(name: &[u8], value: &[u8]) -> usize {
    name.len()
        .saturating_add(value.len())
        .saturating_add(ENTRY_OVERHEAD)
}

/// A dynamic table entry: name and value in one allocation, split at `name_len`.
#[derive(Debug)]
struct Entry {
    bytes: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn new(name: &[u8], value: &[u8]) -> Entry {
        let mut bytes = Vec::with_capacity(name.len().saturating_add(value.len()));
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(value);
        Entry {
            bytes: bytes.into_boxed_slice(),
            name_len: name.len(),
        }
    }

    fn field(&self) -> (&[u8], &[u8]) {
        self.bytes
            .split_at_checked(self.name_len)
            .unwrap_or((&self.bytes, &[]))
    }

    fn size(&self) -> usize {
        self.bytes.len().saturating_add(ENTRY_OVERHEAD)
    }
}

/// Decodes request header blocks; holds the dynamic table (only the bytes its entries need).
#[derive(Debug)]
pub struct Decoder {
    /// Newest entry first: dynamic index 62 is `table[0]`.
    table: VecDeque<Entry>,
    /// Sum of entry sizes.
    size: usize,
    /// Current limit, as last set by a size update.
    max_size: usize,
    /// SETTINGS_HEADER_TABLE_SIZE advertised: the ceiling for size updates.
    max_table: usize,
}

/// Delivers fields to the caller's `emit` while tracking list size and refusals.
struct Sink<F> {
    emit: F,
    max_list: usize,
    list_size: usize,
    too_large: bool,
    declined: bool,
}

impl<F: FnMut(&[u8], &[u8]) -> bool> Sink<F> {
    fn field(&mut self, name: &[u8], value: &[u8]) {
        self.list_size = self.list_size.saturating_add(field_size(name, value));
        if self.list_size > self.max_list {
            self.too_large = true;
        }
        if !self.too_large && !self.declined && !(self.emit)(name, value) {
            self.declined = true;
        }
    }
}

impl Decoder {
    /// `max_table`: the SETTINGS_HEADER_TABLE_SIZE meshd advertised (4096); size updates above it are errors.
    pub fn new(max_table: usize) -> Decoder {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: max_table,
            max_table,
        }
    }

    /// Decodes one complete block (HEADERS + CONTINUATION fragments joined), calling `emit(name, value)`
    /// per field in order. Beyond `max_list` bytes (RFC 9113 list size: name + value + 32 per field) it keeps
    /// decoding to keep the table in sync but stops emitting, and returns Err(ListTooLarge) at the end.
    /// If `emit` returns false, decoding still completes (table kept in sync) but emitting stops; the
    /// call then returns Ok(false). Ok(true) = every field emitted.
    pub fn decode(
        &mut self,
        block: &[u8],
        max_list: usize,
        emit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<bool, HpackError> {
        let mut sink = Sink {
            emit,
            max_list,
            list_size: 0,
            too_large: false,
            declined: false,
        };
        // Huffman output lands here; empty Vecs do not allocate, and they live only for this call.
        let mut name_buf = Vec::new();
        let mut value_buf = Vec::new();
        let mut rest = block;
        let mut seen_field = false;
        while let Some(&first) = rest.first() {
            if first & 0x80 != 0 {
                // 6.1 indexed field.
                let index = decode_int(&mut rest, 7)?;
                let (name, value) = self.get(index)?;
                sink.field(name, value);
                seen_field = true;
            } else if first & 0xe0 == 0x20 {
                // 6.3 dynamic table size update: only before the first field (4.2).
                if seen_field {
                    return Err(HpackError::LateSizeUpdate);
                }
                let size = decode_int(&mut rest, 5)?;
                if size > self.max_table {
                    return Err(HpackError::SizeUpdateTooLarge {
                        size,
                        max: self.max_table,
                    });
                }
                self.max_size = size;
                self.evict_to(size);
                self.release_if_empty();
            } else {
                // 6.2 literal: 01 = incremental indexing (6-bit index), 0000/0001 = without/never (4-bit).
                let indexing = first & 0x40 != 0;
                let name_index = decode_int(&mut rest, if indexing { 6 } else { 4 })?;
                let name = if name_index == 0 {
                    read_string(&mut rest, &mut name_buf)?.unwrap_or(&name_buf)
                } else {
                    self.get(name_index)?.0
                };
                let value = read_string(&mut rest, &mut value_buf)?.unwrap_or(&value_buf);
                sink.field(name, value);
                if indexing {
                    let size = field_size(name, value);
                    // Copy before evicting: `name` may point into an entry the insert evicts.
                    let entry = (size <= self.max_size).then(|| Entry::new(name, value));
                    self.insert(size, entry);
                }
                seen_field = true;
            }
        }
        if sink.too_large {
            Err(HpackError::ListTooLarge)
        } else {
            Ok(!sink.declined)
        }
    }

    /// Heap bytes the table holds now.
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        let slots = self.table.capacity() * std::mem::size_of::<Entry>();
        self.table
            .iter()
            .fold(slots, |acc, e| acc.saturating_add(e.bytes.len()))
    }

    /// Field at a 1-based HPACK index: static table first, then dynamic, newest first.
    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        if index == 0 {
            return Err(HpackError::IndexZero);
        }
        if let Some(&field) = STATIC_TABLE.get(index - 1) {
            return Ok(field);
        }
        self.table
            .get(index - 1 - STATIC_TABLE.len())
            .map(Entry::field)
            .ok_or(HpackError::IndexOutOfRange {
                index,
                len: STATIC_TABLE.len() + self.table.len(),
            })
    }

    /// Adds an entry of `size` bytes; `None` means it exceeds the table, which then empties (4.4).
    fn insert(&mut self, size: usize, entry: Option<Entry>) {
        match entry {
            Some(entry) => {
                self.evict_to(self.max_size.saturating_sub(size));
                self.table.push_front(entry);
                self.size = self.size.saturating_add(size);
            }
            None => {
                self.evict_to(0);
                self.release_if_empty();
            }
        }
    }

    /// Drops the oldest entries until the table holds at most `limit` bytes.
    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            match self.table.pop_back() {
                Some(old) => self.size = self.size.saturating_sub(old.size()),
                None => self.size = 0,
            }
        }
    }

    /// An emptied table (size update to 0, oversized entry) gives its slots back: the
    /// connection may now sit idle for a long time.
    fn release_if_empty(&mut self) {
        if self.table.is_empty() {
            self.table = VecDeque::new();
        }
    }
}

/// Reads a 5.1 integer with an `prefix`-bit prefix (1..=7), advancing `rest`.
fn decode_int(rest: &mut &[u8], prefix: u32) -> Result<usize, HpackError> {
    let (&first, tail) = rest.split_first().ok_or(HpackError::TruncatedInteger)?;
    *rest = tail;
    let mask = (1u8 << prefix) - 1;
    let mut value = u64::from(first & mask);
    if value < u64::from(mask) {
        return Ok(value as usize);
    }
    // Up to 5 continuation bytes (shifts 0..=28) keep the sum below 2^36: no u64 overflow.
    let mut shift = 0u32;
    loop {
        let (&b, tail) = rest.split_first().ok_or(HpackError::TruncatedInteger)?;
        *rest = tail;
        value += u64::from(b & 0x7f) << shift;
        if value > u64::from(u32::MAX) {
            return Err(HpackError::IntegerOverflow);
        }
        if b & 0x80 == 0 {
            return usize::try_from(value).map_err(|_| HpackError::IntegerOverflow);
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
    }
}

/// Reads a 5.2 string literal: `Some(raw bytes)` borrowed from the block, or `None`
/// when it was Huffman-coded and its decoding is now in `buf`.
fn read_string<'a>(rest: &mut &'a [u8], buf: &mut Vec<u8>) -> Result<Option<&'a [u8]>, HpackError> {
    let huffman = rest.first().is_some_and(|b| b & 0x80 != 0);
    let len = decode_int(rest, 7)?;
    // Checked before any allocation: a claimed length is not trusted.
    let (raw, tail) = rest
        .split_at_checked(len)
        .ok_or(HpackError::TruncatedString {
            len,
            left: rest.len(),
        })?;
    *rest = tail;
    if !huffman {
        return Ok(Some(raw));
    }
    buf.clear();
    huffman::decode(raw, buf)?;
    Ok(None)
}

/// Appends a 5.1 integer: `flags` fill the bits above the `prefix`-bit prefix (1..=7).
fn encode_int(out: &mut Vec<u8>, flags: u8, prefix: u32, value: usize) {
    let mask = (1u8 << prefix) - 1;
    if value < usize::from(mask) {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask);
    let mut rest = value - usize::from(mask);
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Appends a raw (not Huffman) string literal.
fn encode_str(out: &mut Vec<u8>, s: &[u8]) {
    encode_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// Appends `:status` (indexed when 200/204/206/304/400/404/500, else literal with name index 8).
pub fn encode_status(out: &mut Vec<u8>, status: u16) {
    let index = match status {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => 0,
    };
    if index != 0 {
        out.push(0x80 | index);
        return;
    }
    // Decimal digits without allocating; u16 has at most 5.
    let mut digits = [0u8; 5];
    let mut start = digits.len();
    let mut n = status;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
        start -= 1;
        if n == 0 {
            break;
        }
    }
    encode_int(out, 0x00, 4, 8);
    encode_str(out, digits.get(start..).unwrap_or(&[]));
}

/// The static table's first index for `name` (RFC 7541 Appendix A): a
/// `match`, which the compiler turns into a dispatch on length and bytes,
/// where a scan of the table compared up to 61 names for every field.
fn static_name_index(name: &[u8]) -> Option<usize> {
    Some(match name {
        b":authority" => 1,
        b":method" => 2,
        b":path" => 4,
        b":scheme" => 6,
        b":status" => 8,
        b"accept-charset" => 15,
        b"accept-encoding" => 16,
        b"accept-language" => 17,
        b"accept-ranges" => 18,
        b"accept" => 19,
        b"access-control-allow-origin" => 20,
        b"age" => 21,
        b"allow" => 22,
        b"authorization" => 23,
        b"cache-control" => 24,
        b"content-disposition" => 25,
        b"content-encoding" => 26,
        b"content-language" => 27,
        b"content-length" => 28,
        b"content-location" => 29,
        b"content-range" => 30,
        b"content-type" => 31,
        b"cookie" => 32,
        b"date" => 33,
        b"etag" => 34,
        b"expect" => 35,
        b"expires" => 36,
        b"from" => 37,
        b"host" => 38,
        b"if-match" => 39,
        b"if-modified-since" => 40,
        b"if-none-match" => 41,
        b"if-range" => 42,
        b"if-unmodified-since" => 43,
        b"last-modified" => 44,
        b"link" => 45,
        b"location" => 46,
        b"max-forwards" => 47,
        b"proxy-authenticate" => 48,
        b"proxy-authorization" => 49,
        b"range" => 50,
        b"referer" => 51,
        b"refresh" => 52,
        b"retry-after" => 53,
        b"server" => 54,
        b"set-cookie" => 55,
        b"strict-transport-security" => 56,
        b"transfer-encoding" => 57,
        b"user-agent" => 58,
        b"vary" => 59,
        b"via" => 60,
        b"www-authenticate" => 61,
        _ => return None,
    })
}

/// Appends one field as "literal without indexing" (name by static-table index when the name is in the
/// static table, else literal name); values raw (not Huffman: CPU matters more than bytes on loopback).
/// No dynamic table in the encoder: it would cost memory per idle connection.
pub fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    match static_name_index(name) {
        Some(i) => encode_int(out, 0x00, 4, i),
        None => {
            out.push(0x00);
            encode_str(out, name);
        }
    }
    encode_str(out, value);
}

/// `encode_field` for a name as an HTTP/1.1 backend spelled it: HTTP/2
/// field names are lowercase (RFC 9113 8.2.1).
pub fn encode_field_folded(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    if !name.iter().any(u8::is_ascii_uppercase) {
        return encode_field(out, name, value);
    }
    // Names this long are rare: they take an allocation.
    let mut small = [0u8; 64];
    let owned;
    let lower: &[u8] = match small.get_mut(..name.len()) {
        Some(room) => {
            for (d, s) in room.iter_mut().zip(name) {
                *d = s.to_ascii_lowercase();
            }
            room
        }
        None => {
            owned = name.to_ascii_lowercase();
            &owned
        }
    };
    encode_field(out, lower, value);
}

/// Appends `content-length: n`.
pub fn encode_content_length(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    encode_field(out, b"content-length", digits.get(at..).unwrap_or_default());
}

// In tests a panic is a failure, which is what we want.
#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests;
