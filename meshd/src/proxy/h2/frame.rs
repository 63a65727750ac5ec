//! HTTP/2 frame layer (RFC 9113 sections 4 and 6): parse and validate one frame, write frames.
//!
//! Everything here is pure: the connection driver reads bytes, calls `parse_head`, checks the
//! length against its SETTINGS_MAX_FRAME_SIZE, reads `head.len` payload bytes, calls `parse`.
//! The payload is attacker-controlled, so no function here indexes, slices or does arithmetic
//! that can panic; every malformed input maps to the error code the RFC names for it.
//! Stream states, flow-control windows and frame length limits belong to the driver.

/// The client connection preface (RFC 9113 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes in a frame header.
pub const HEAD_LEN: usize = 9;
/// Smallest value SETTINGS_MAX_FRAME_SIZE may take, and its initial value (RFC 9113 6.5.2).
pub const MIN_MAX_FRAME_SIZE: u32 = 16_384;
/// Largest value SETTINGS_MAX_FRAME_SIZE may take: the 24-bit length field (RFC 9113 6.5.2).
pub const MAX_MAX_FRAME_SIZE: u32 = 16_777_215;
/// Largest flow-control window (RFC 9113 6.9.1).
pub const MAX_WINDOW_SIZE: u32 = 0x7fff_ffff;

/// Mask that clears the reserved high bit of stream ids and window increments.
const U31: u32 = 0x7fff_ffff;

/// Frame flags.
pub mod flags {
    /// DATA, HEADERS: last frame the sender sends on this stream.
    pub const END_STREAM: u8 = 0x1;
    /// SETTINGS, PING: this frame acknowledges the peer's.
    pub const ACK: u8 = 0x1;
    /// HEADERS, PUSH_PROMISE, CONTINUATION: the field block ends in this frame.
    pub const END_HEADERS: u8 = 0x4;
    /// DATA, HEADERS, PUSH_PROMISE: a Pad Length byte leads, padding trails.
    pub const PADDED: u8 = 0x8;
    /// HEADERS: a 5-byte priority block follows the Pad Length.
    pub const PRIORITY: u8 = 0x20;
}

/// Frame type codes (RFC 9113 6).
pub mod kind {
    /// DATA (6.1).
    pub const DATA: u8 = 0x0;
    /// HEADERS (6.2).
    pub const HEADERS: u8 = 0x1;
    /// PRIORITY (6.3).
    pub const PRIORITY: u8 = 0x2;
    /// RST_STREAM (6.4).
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS (6.5).
    pub const SETTINGS: u8 = 0x4;
    /// PUSH_PROMISE (6.6).
    pub const PUSH_PROMISE: u8 = 0x5;
    /// PING (6.7).
    pub const PING: u8 = 0x6;
    /// GOAWAY (6.8).
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE (6.9).
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// CONTINUATION (6.10).
    pub const CONTINUATION: u8 = 0x9;
}

/// Error codes (RFC 9113 7), all of them: meshd sends some, reads any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[allow(dead_code)]
pub enum Reason {
    NoError = 0,
    Protocol = 1,
    Internal = 2,
    FlowControl = 3,
    SettingsTimeout = 4,
    StreamClosed = 5,
    FrameSize = 6,
    RefusedStream = 7,
    Cancel = 8,
    Compression = 9,
    Connect = 10,
    EnhanceYourCalm = 11,
    InadequateSecurity = 12,
    Http11Required = 13,
}

/// A frame header. `stream` has the reserved bit cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

/// Parses the 9 header bytes.
pub fn parse_head(b: &[u8; HEAD_LEN]) -> Head {
    let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = *b;
    Head {
        len: u32::from_be_bytes([0, l0, l1, l2]),
        kind,
        flags,
        // The reserved bit MUST be ignored on receipt (RFC 9113 4.1).
        stream: u32::from_be_bytes([s0, s1, s2, s3]) & U31,
    }
}

/// Appends a frame header. `len` must fit 24 bits (asserted in debug builds; release keeps the
/// low 24) and `stream` loses its reserved bit.
pub fn write_head(out: &mut Vec<u8>, head: Head) {
    debug_assert!(
        head.len <= MAX_MAX_FRAME_SIZE,
        "frame length {} over 24 bits",
        head.len
    );
    let [_, l0, l1, l2] = head.len.to_be_bytes();
    out.extend_from_slice(&[l0, l1, l2, head.kind, head.flags]);
    out.extend_from_slice(&(head.stream & U31).to_be_bytes());
}

/// `write_head` with the fields in wire order, to keep the writers short.
fn put(out: &mut Vec<u8>, len: u32, kind: u8, flags: u8, stream: u32) {
    write_head(
        out,
        Head {
            len,
            kind,
            flags,
            stream,
        },
    );
}

/// One SETTINGS parameter, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    HeaderTableSize(u32),
    EnablePush(bool),
    MaxConcurrentStreams(u32),
    InitialWindowSize(u32),
    MaxFrameSize(u32),
    MaxHeaderListSize(u32),
    EnableConnectProtocol(bool),
    Unknown(u16, u32),
}

impl Setting {
    /// Decodes and validates one identifier/value pair (RFC 9113 6.5.2, RFC 8441 3).
    fn decode(id: u16, value: u32) -> Result<Setting, FrameError> {
        let flag = |v: u32| match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(FrameError::Connection(Reason::Protocol)),
        };
        Ok(match id {
            0x1 => Setting::HeaderTableSize(value),
            0x2 => Setting::EnablePush(flag(value)?),
            0x3 => Setting::MaxConcurrentStreams(value),
            0x4 if value > MAX_WINDOW_SIZE => {
                return Err(FrameError::Connection(Reason::FlowControl))
            }
            0x4 => Setting::InitialWindowSize(value),
            0x5 if !(MIN_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value) => {
                return Err(FrameError::Connection(Reason::Protocol))
            }
            0x5 => Setting::MaxFrameSize(value),
            0x6 => Setting::MaxHeaderListSize(value),
            0x8 => Setting::EnableConnectProtocol(flag(value)?),
            // Unknown identifiers MUST be ignored (RFC 9113 6.5.2); the caller decides.
            _ => Setting::Unknown(id, value),
        })
    }

    /// The identifier and value as sent on the wire.
    pub fn encode(self) -> (u16, u32) {
        match self {
            Setting::HeaderTableSize(v) => (0x1, v),
            Setting::EnablePush(b) => (0x2, u32::from(b)),
            Setting::MaxConcurrentStreams(v) => (0x3, v),
            Setting::InitialWindowSize(v) => (0x4, v),
            Setting::MaxFrameSize(v) => (0x5, v),
            Setting::MaxHeaderListSize(v) => (0x6, v),
            Setting::EnableConnectProtocol(b) => (0x8, u32::from(b)),
            Setting::Unknown(id, v) => (id, v),
        }
    }
}

/// Stream dependency from a PRIORITY frame or the HEADERS priority block.
///
/// `weight` is the wire byte: the effective weight is `weight + 1` (RFC 7540 5.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    pub dependency: u32,
    pub exclusive: bool,
    pub weight: u8,
}

impl Priority {
    /// Decodes the 5-byte block: E bit, 31-bit dependency, weight.
    fn decode(b: [u8; 5]) -> Priority {
        let [d0, d1, d2, d3, weight] = b;
        let dep = u32::from_be_bytes([d0, d1, d2, d3]);
        Priority {
            dependency: dep & U31,
            exclusive: dep & !U31 != 0,
            weight,
        }
    }
}

/// A frame, borrowed from the payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `flow_len` is the whole payload incl. padding: what flow control counts (RFC 9113 6.1).
    Data {
        stream: u32,
        end_stream: bool,
        data: &'a [u8],
        flow_len: u32,
    },
    Headers {
        stream: u32,
        end_stream: bool,
        end_headers: bool,
        priority: Option<Priority>,
        fragment: &'a [u8],
    },
    Priority {
        stream: u32,
        priority: Priority,
    },
    RstStream {
        stream: u32,
        code: u32,
    },
    /// `params` is validated: iterate with `settings()`.
    Settings {
        ack: bool,
        params: &'a [u8],
    },
    /// A server MUST answer it with a connection PROTOCOL_ERROR (RFC 9113 8.4); the driver does.
    PushPromise {
        stream: u32,
    },
    Ping {
        ack: bool,
        payload: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: u32,
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        end_headers: bool,
        fragment: &'a [u8],
    },
    /// Unknown types are ignored (RFC 9113 4.1, 5.5).
    Unknown,
}

/// Why a frame is refused: a connection error, or an error on one stream only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("connection error {0:?}")]
    Connection(Reason),
    #[error("stream {0} error {1:?}")]
    Stream(u32, Reason),
}

use FrameError::{Connection, Stream};

/// Parses and validates one whole frame's payload (`payload.len() == head.len`).
///
/// A length mismatch is the caller's bug and yields `Connection(Internal)`. Unknown flags are
/// ignored (RFC 9113 4.1). A `Stream` error on HEADERS leaves the field block undecoded: HPACK
/// state must stay in sync, so the driver feeds `headers_fragment` to its decoder first.
pub fn parse(head: Head, payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    if u32::try_from(payload.len()).ok() != Some(head.len) {
        return Err(Connection(Reason::Internal));
    }
    let Head {
        kind,
        flags,
        stream,
        ..
    } = head;
    let has = |flag: u8| flags & flag != 0;
    // Frames that belong to a stream on stream 0, and connection frames on a stream (RFC 9113 6).
    let needs_stream = matches!(
        kind,
        kind::DATA
            | kind::HEADERS
            | kind::PRIORITY
            | kind::RST_STREAM
            | kind::PUSH_PROMISE
            | kind::CONTINUATION
    );
    let needs_zero = matches!(kind, kind::SETTINGS | kind::PING | kind::GOAWAY);
    if (needs_stream && stream == 0) || (needs_zero && stream != 0) {
        return Err(Connection(Reason::Protocol));
    }
    match kind {
        kind::DATA => Ok(Frame::Data {
            stream,
            end_stream: has(flags::END_STREAM),
            data: unpad(flags, payload, 0)?.1,
            flow_len: head.len,
        }),
        kind::HEADERS => {
            let (priority, fragment) = headers_parts(flags, payload)?;
            if let Some(p) = priority {
                if p.dependency == stream {
                    // A stream cannot depend on itself (RFC 7540 5.3.1; RFC 9113 deprecates the
                    // scheme but keeps the frame layout, and h2spec still checks this rule).
                    return Err(Stream(stream, Reason::Protocol));
                }
            }
            Ok(Frame::Headers {
                stream,
                end_stream: has(flags::END_STREAM),
                end_headers: has(flags::END_HEADERS),
                priority,
                fragment,
            })
        }
        kind::PRIORITY => {
            let block =
                <[u8; 5]>::try_from(payload).map_err(|_| Stream(stream, Reason::FrameSize))?;
            let priority = Priority::decode(block);
            if priority.dependency == stream {
                return Err(Stream(stream, Reason::Protocol));
            }
            Ok(Frame::Priority { stream, priority })
        }
        kind::RST_STREAM => Ok(Frame::RstStream {
            stream,
            code: u32::from_be_bytes(exact(payload)?),
        }),
        kind::SETTINGS => {
            let ack = has(flags::ACK);
            if ack && !payload.is_empty() {
                return Err(Connection(Reason::FrameSize));
            }
            if !payload.len().is_multiple_of(6) {
                return Err(Connection(Reason::FrameSize));
            }
            for pair in pairs(payload) {
                let (id, value) = split_pair(pair);
                Setting::decode(id, value)?;
            }
            Ok(Frame::Settings {
                ack,
                params: payload,
            })
        }
        kind::PUSH_PROMISE => {
            // Validated like any field-block frame so errors carry their RFC code; the 4 fixed
            // bytes are the promised stream id, of no use to a server that refuses the frame.
            unpad(flags, payload, 4)?;
            Ok(Frame::PushPromise { stream })
        }
        kind::PING => Ok(Frame::Ping {
            ack: has(flags::ACK),
            payload: exact(payload)?,
        }),
        kind::GOAWAY => {
            // Debug data after the 8 fixed bytes is opaque and ignored.
            let fixed = payload
                .first_chunk::<8>()
                .ok_or(Connection(Reason::FrameSize))?;
            let [l0, l1, l2, l3, c0, c1, c2, c3] = *fixed;
            Ok(Frame::GoAway {
                last_stream: u32::from_be_bytes([l0, l1, l2, l3]) & U31,
                code: u32::from_be_bytes([c0, c1, c2, c3]),
            })
        }
        kind::WINDOW_UPDATE => {
            let increment = u32::from_be_bytes(exact(payload)?) & U31;
            match (increment, stream) {
                (0, 0) => Err(Connection(Reason::Protocol)),
                (0, id) => Err(Stream(id, Reason::Protocol)),
                _ => Ok(Frame::WindowUpdate { stream, increment }),
            }
        }
        kind::CONTINUATION => Ok(Frame::Continuation {
            stream,
            end_headers: has(flags::END_HEADERS),
            fragment: payload,
        }),
        _ => Ok(Frame::Unknown),
    }
}

/// The field block fragment of a HEADERS frame without the self-dependency check, so the driver
/// can keep HPACK in sync when `parse` returned a stream error for that frame.
pub fn headers_fragment(head: Head, payload: &[u8]) -> Result<&[u8], FrameError> {
    if head.kind != kind::HEADERS || u32::try_from(payload.len()).ok() != Some(head.len) {
        return Err(Connection(Reason::Internal));
    }
    Ok(headers_parts(head.flags, payload)?.1)
}

/// Splits a HEADERS payload: [Pad Length] [priority block] fragment [padding] (RFC 9113 6.2).
fn headers_parts(flags: u8, payload: &[u8]) -> Result<(Option<Priority>, &[u8]), FrameError> {
    if flags & flags::PRIORITY == 0 {
        return Ok((None, unpad(flags, payload, 0)?.1));
    }
    let (block, fragment) = unpad(flags, payload, 5)?;
    let block = <[u8; 5]>::try_from(block).map_err(|_| Connection(Reason::FrameSize))?;
    Ok((Some(Priority::decode(block)), fragment))
}

/// Removes the Pad Length byte and the trailing padding (RFC 9113 6.1) and splits off the first
/// `fixed` bytes of mandatory fields. Returns (fixed fields, content between them and padding).
///
/// Missing mandatory bytes are a FRAME_SIZE_ERROR (4.2: "too small to contain mandatory frame
/// data"); padding that would overlap them or run past the end is a PROTOCOL_ERROR (6.1).
fn unpad(flags: u8, payload: &[u8], fixed: usize) -> Result<(&[u8], &[u8]), FrameError> {
    let (pad, rest) = if flags & flags::PADDED == 0 {
        (0, payload)
    } else {
        let (&pad, rest) = payload.split_first().ok_or(Connection(Reason::FrameSize))?;
        (usize::from(pad), rest)
    };
    let (fields, rest) = rest
        .split_at_checked(fixed)
        .ok_or(Connection(Reason::FrameSize))?;
    let keep = rest
        .len()
        .checked_sub(pad)
        .ok_or(Connection(Reason::Protocol))?;
    let content = rest.get(..keep).ok_or(Connection(Reason::Protocol))?;
    Ok((fields, content))
}

/// A payload that must be exactly N bytes; any other length is a connection FRAME_SIZE_ERROR
/// (RFC 9113 6.4, 6.7, 6.9).
fn exact<const N: usize>(payload: &[u8]) -> Result<[u8; N], FrameError> {
    <[u8; N]>::try_from(payload).map_err(|_| Connection(Reason::FrameSize))
}

/// The whole 6-byte SETTINGS entries of `params` (`as_chunks` needs a newer Rust than 1.85).
fn pairs(params: &[u8]) -> impl Iterator<Item = [u8; 6]> + '_ {
    params
        .chunks_exact(6)
        .filter_map(|c| <[u8; 6]>::try_from(c).ok())
}

/// Splits a 6-byte SETTINGS entry into identifier and value.
fn split_pair(pair: [u8; 6]) -> (u16, u32) {
    let [i0, i1, v0, v1, v2, v3] = pair;
    (
        u16::from_be_bytes([i0, i1]),
        u32::from_be_bytes([v0, v1, v2, v3]),
    )
}

/// The parameters of a validated SETTINGS payload, in order (each already checked by `parse`).
///
/// Given an unvalidated payload it skips invalid entries and a trailing partial one.
pub fn settings(params: &[u8]) -> impl Iterator<Item = Setting> + '_ {
    pairs(params).filter_map(|pair| {
        let (id, value) = split_pair(pair);
        Setting::decode(id, value).ok()
    })
}

/// Most parameters one SETTINGS frame carries: the peer accepts at least 16384-byte frames.
const MAX_SETTINGS: usize = MIN_MAX_FRAME_SIZE as usize / 6;

/// Appends one SETTINGS frame. Parameters past the first 2730 are dropped: more would not fit in
/// a frame every peer accepts, and splitting would change how many ACKs come back.
pub fn write_settings(out: &mut Vec<u8>, params: &[Setting]) {
    let params = params.get(..MAX_SETTINGS).unwrap_or(params);
    let len = u32::try_from(params.len().saturating_mul(6)).unwrap_or(0);
    put(out, len, kind::SETTINGS, 0, 0);
    for p in params {
        let (id, value) = p.encode();
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// Appends an empty SETTINGS frame with ACK.
pub fn write_settings_ack(out: &mut Vec<u8>) {
    put(out, 0, kind::SETTINGS, flags::ACK, 0);
}

/// Appends a PING with ACK echoing `payload`.
pub fn write_ping_ack(out: &mut Vec<u8>, payload: [u8; 8]) {
    put(out, 8, kind::PING, flags::ACK, 0);
    out.extend_from_slice(&payload);
}

/// Appends a GOAWAY without debug data.
pub fn write_goaway(out: &mut Vec<u8>, last_stream: u32, reason: Reason) {
    put(out, 8, kind::GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & U31).to_be_bytes());
    out.extend_from_slice(&(reason as u32).to_be_bytes());
}

/// Appends a RST_STREAM.
pub fn write_rst(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    put(out, 4, kind::RST_STREAM, 0, stream);
    out.extend_from_slice(&(reason as u32).to_be_bytes());
}

/// Appends a WINDOW_UPDATE; the increment's reserved bit is cleared (callers send 1..=2^31-1).
pub fn write_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    put(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&(increment & U31).to_be_bytes());
}

/// DATA frame header only (the caller appends `len` payload bytes).
pub fn write_data_head(out: &mut Vec<u8>, stream: u32, len: u32, end_stream: bool) {
    let flags = if end_stream { flags::END_STREAM } else { 0 };
    put(out, len, kind::DATA, flags, stream);
}

/// HEADERS (+ CONTINUATION frames when `block` exceeds `max_frame`), END_HEADERS on the last.
///
/// `max_frame` is the peer's SETTINGS_MAX_FRAME_SIZE; it is clamped to the legal range so a
/// bad value can neither loop forever (0) nor overflow the 24-bit length.
pub fn write_headers(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame: u32,
) {
    let max = max_frame.clamp(MIN_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE) as usize;
    let mut chunks = block.chunks(max).peekable();
    let mut kind = kind::HEADERS;
    // END_STREAM belongs on HEADERS only; CONTINUATION defines just END_HEADERS (RFC 9113 6.10).
    let mut flags = if end_stream { flags::END_STREAM } else { 0 };
    loop {
        let chunk = chunks.next().unwrap_or_default();
        let last = chunks.peek().is_none();
        if last {
            flags |= flags::END_HEADERS;
        }
        // chunk.len() <= max <= 2^24-1, so the conversion cannot fail.
        let len = u32::try_from(chunk.len()).unwrap_or(MAX_MAX_FRAME_SIZE);
        put(out, len, kind, flags, stream);
        out.extend_from_slice(chunk);
        if last {
            return;
        }
        kind = kind::CONTINUATION;
        flags = 0;
    }
}

#[cfg(test)]
mod tests;
