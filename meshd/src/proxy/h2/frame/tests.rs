#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
use super::*;

/// Raw bytes of one frame: header computed from the payload length.
fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let len = u32::try_from(payload.len()).unwrap();
    let [_, l0, l1, l2] = len.to_be_bytes();
    out.extend_from_slice(&[l0, l1, l2, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits raw bytes into head and payload and parses them, as the driver does.
fn parse_raw(bytes: &[u8]) -> Result<Frame<'_>, FrameError> {
    let (head, payload) = bytes.split_first_chunk::<HEAD_LEN>().unwrap();
    let head = parse_head(head);
    assert_eq!(head.len as usize, payload.len(), "test frame length");
    parse(head, payload)
}

/// Parses a buffer holding several whole frames.
fn parse_all(mut bytes: &[u8]) -> Vec<(Head, Frame<'_>)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (head, rest) = bytes.split_first_chunk::<HEAD_LEN>().unwrap();
        let head = parse_head(head);
        let (payload, rest) = rest.split_at(head.len as usize);
        frames.push((head, parse(head, payload).unwrap()));
        bytes = rest;
    }
    frames
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const C: fn(Reason) -> FrameError = FrameError::Connection;
use kind::*;
use Reason::*;
const PAD: u8 = flags::PADDED;
const PRI: u8 = flags::PRIORITY;

#[test]
fn preface_and_head() {
    assert_eq!(PREFACE.len(), 24);
    assert_eq!(&PREFACE[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    // 24-bit length, reserved stream bit ignored on receipt (RFC 9113 4.1).
    let head = parse_head(&[0xff, 0xff, 0xff, 0x42, 0xa5, 0xff, 0xff, 0xff, 0xff]);
    let want = Head {
        len: 0xff_ffff,
        kind: 0x42,
        flags: 0xa5,
        stream: 0x7fff_ffff,
    };
    assert_eq!(head, want);
    let mut out = Vec::new();
    write_head(&mut out, want);
    assert_eq!(out, [0xff, 0xff, 0xff, 0x42, 0xa5, 0x7f, 0xff, 0xff, 0xff]);
}

/// Every validation rule, one row each, named by its RFC 9113 section.
#[test]
fn validation_rules() {
    let s = |id, r| FrameError::Stream(id, r);
    let mfs = |v: u32| [&[0u8, 5][..], &v.to_be_bytes()].concat();
    #[rustfmt::skip]
    let rows: Vec<(&str, Vec<u8>, FrameError)> = vec![
        ("6.1 DATA on stream 0", raw(DATA, 0, 0, b"x"), C(Protocol)),
        ("6.2 HEADERS on stream 0", raw(HEADERS, 4, 0, b"\x82"), C(Protocol)),
        ("6.3 PRIORITY on stream 0", raw(PRIORITY, 0, 0, &[0, 0, 0, 1, 9]), C(Protocol)),
        ("6.3 PRIORITY on stream 0 beats length", raw(PRIORITY, 0, 0, &[0]), C(Protocol)),
        ("6.4 RST_STREAM on stream 0", raw(RST_STREAM, 0, 0, &[0, 0, 0, 8]), C(Protocol)),
        ("6.6 PUSH_PROMISE on stream 0", raw(PUSH_PROMISE, 4, 0, &[0, 0, 0, 2]), C(Protocol)),
        ("6.10 CONTINUATION on stream 0", raw(CONTINUATION, 4, 0, b"\x82"), C(Protocol)),
        ("6.5 SETTINGS on a stream", raw(SETTINGS, 0, 1, b""), C(Protocol)),
        ("6.7 PING on a stream", raw(PING, 0, 1, &[0; 8]), C(Protocol)),
        ("6.8 GOAWAY on a stream", raw(GOAWAY, 0, 1, &[0; 8]), C(Protocol)),
        ("4.2 DATA PADDED without Pad Length", raw(DATA, PAD, 1, b""), C(FrameSize)),
        ("6.1 DATA padding = rest + 1", raw(DATA, PAD, 1, &[3, b'a', b'b']), C(Protocol)),
        ("6.1 DATA padding only, too long", raw(DATA, PAD, 1, &[1]), C(Protocol)),
        ("6.1 DATA padding 255, len 1", raw(DATA, PAD, 1, &[255]), C(Protocol)),
        ("4.2 HEADERS PADDED without Pad Length", raw(HEADERS, PAD | 4, 1, b""), C(FrameSize)),
        ("6.2 HEADERS padding too long", raw(HEADERS, PAD | 4, 1, &[2, 0x82]), C(Protocol)),
        ("6.2 HEADERS PRIORITY, 4 bytes", raw(HEADERS, PRI | 4, 1, &[0, 0, 0, 3]), C(FrameSize)),
        ("6.2 HEADERS PRIORITY empty", raw(HEADERS, PRI | 4, 1, b""), C(FrameSize)),
        ("6.2 HEADERS PADDED+PRIORITY, 4 after pad", raw(HEADERS, PAD | PRI | 4, 1, &[0, 0, 0, 0, 3]), C(FrameSize)),
        ("6.2 HEADERS padding eats priority", raw(HEADERS, PAD | PRI | 4, 1, &[1, 0, 0, 0, 3, 15]), C(Protocol)),
        ("6.2 HEADERS depends on itself", raw(HEADERS, PRI | 4, 3, &[0, 0, 0, 3, 15, 0x82]), s(3, Protocol)),
        ("6.2 HEADERS exclusive on itself", raw(HEADERS, PRI | 4, 3, &[0x80, 0, 0, 3, 15]), s(3, Protocol)),
        ("6.3 PRIORITY depends on itself", raw(PRIORITY, 0, 5, &[0, 0, 0, 5, 0]), s(5, Protocol)),
        ("6.3 PRIORITY 4 bytes", raw(PRIORITY, 0, 5, &[0, 0, 0, 1]), s(5, FrameSize)),
        ("6.3 PRIORITY 6 bytes", raw(PRIORITY, 0, 5, &[0, 0, 0, 1, 0, 0]), s(5, FrameSize)),
        ("6.4 RST_STREAM 3 bytes", raw(RST_STREAM, 0, 1, &[0, 0, 8]), C(FrameSize)),
        ("6.4 RST_STREAM 5 bytes", raw(RST_STREAM, 0, 1, &[0, 0, 0, 8, 0]), C(FrameSize)),
        ("6.5 SETTINGS ACK with payload", raw(SETTINGS, 1, 0, &[0, 3, 0, 0, 0, 1]), C(FrameSize)),
        ("6.5 SETTINGS len 5", raw(SETTINGS, 0, 0, &[0, 3, 0, 0, 0]), C(FrameSize)),
        ("6.5 SETTINGS len 7", raw(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 1, 0]), C(FrameSize)),
        ("6.5.2 ENABLE_PUSH 2", raw(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]), C(Protocol)),
        ("6.5.2 INITIAL_WINDOW_SIZE 2^31", raw(SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]), C(FlowControl)),
        ("6.5.2 MAX_FRAME_SIZE 16383", raw(SETTINGS, 0, 0, &mfs(16_383)), C(Protocol)),
        ("6.5.2 MAX_FRAME_SIZE 2^24", raw(SETTINGS, 0, 0, &mfs(1 << 24)), C(Protocol)),
        ("6.5.2 MAX_FRAME_SIZE 0", raw(SETTINGS, 0, 0, &mfs(0)), C(Protocol)),
        ("6.5.2 bad second parameter", raw(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 9, 0, 2, 0, 0, 0, 7]), C(Protocol)),
        ("RFC 8441 3 ENABLE_CONNECT_PROTOCOL 2", raw(SETTINGS, 0, 0, &[0, 8, 0, 0, 0, 2]), C(Protocol)),
        ("6.7 PING 7 bytes", raw(PING, 0, 0, &[0; 7]), C(FrameSize)),
        ("6.7 PING 9 bytes", raw(PING, 1, 0, &[0; 9]), C(FrameSize)),
        ("6.8 GOAWAY 7 bytes", raw(GOAWAY, 0, 0, &[0; 7]), C(FrameSize)),
        ("6.9 WINDOW_UPDATE 3 bytes", raw(WINDOW_UPDATE, 0, 0, &[0, 0, 1]), C(FrameSize)),
        ("6.9 WINDOW_UPDATE 5 bytes on a stream", raw(WINDOW_UPDATE, 0, 7, &[0, 0, 0, 1, 0]), C(FrameSize)),
        ("6.9 WINDOW_UPDATE 0 on connection", raw(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0]), C(Protocol)),
        ("6.9 WINDOW_UPDATE 0 on stream", raw(WINDOW_UPDATE, 0, 7, &[0, 0, 0, 0]), s(7, Protocol)),
        ("6.9 WINDOW_UPDATE reserved bit only", raw(WINDOW_UPDATE, 0, 7, &[0x80, 0, 0, 0]), s(7, Protocol)),
        ("6.9 WINDOW_UPDATE reserved bit only, conn", raw(WINDOW_UPDATE, 0, 0, &[0x80, 0, 0, 0]), C(Protocol)),
        ("6.6 PUSH_PROMISE without promised id", raw(PUSH_PROMISE, 4, 1, &[0, 0, 2]), C(FrameSize)),
        ("6.6 PUSH_PROMISE padding too long", raw(PUSH_PROMISE, PAD | 4, 1, &[1, 0, 0, 0, 2]), C(Protocol)),
    ];
    for (name, bytes, want) in &rows {
        assert_eq!(parse_raw(bytes), Err(*want), "{name}");
    }
}

#[test]
fn length_mismatch_is_internal_not_panic() {
    let head = Head {
        len: 8,
        kind: PING,
        flags: 0,
        stream: 0,
    };
    assert_eq!(parse(head, &[0; 7]), Err(C(Internal)));
    assert_eq!(parse(head, &[0; 9]), Err(C(Internal)));
    let head = Head {
        len: 2,
        kind: HEADERS,
        flags: 0,
        stream: 1,
    };
    assert_eq!(headers_fragment(head, &[0; 3]), Err(C(Internal)));
}

#[test]
fn boundaries_that_are_accepted() {
    let ok = |b: Vec<u8>| parse_raw(&b).map(|_| ()).map_err(|e| (e, b));
    let mfs = |v: u32| [&[0u8, 5][..], &v.to_be_bytes()].concat();
    ok(raw(DATA, PAD, 1, &[0])).unwrap();
    ok(raw(DATA, PAD, 1, &[2, 0, 0])).unwrap();
    ok(raw(HEADERS, PAD | PRI, 1, &[0, 0, 0, 0, 3, 15])).unwrap();
    ok(raw(SETTINGS, 0, 0, &[0, 4, 0x7f, 0xff, 0xff, 0xff])).unwrap();
    ok(raw(SETTINGS, 0, 0, &mfs(16_384))).unwrap();
    ok(raw(SETTINGS, 0, 0, &mfs(16_777_215))).unwrap();
    ok(raw(SETTINGS, 1, 0, b"")).unwrap();
    ok(raw(GOAWAY, 0, 0, b"\0\0\0\x01\0\0\0\x02debug data")).unwrap();
    ok(raw(PRIORITY, 0, 5, &[0, 0, 0, 0, 0])).unwrap();
    // Unknown types are ignored whatever their stream, flags and payload (4.1, 5.5).
    assert_eq!(parse_raw(&raw(0xa, 0xff, 0, b"junk")), Ok(Frame::Unknown));
    assert_eq!(parse_raw(&raw(0xff, 0, 3, b"")), Ok(Frame::Unknown));
}

#[test]
fn fields_are_extracted() {
    let data = raw(
        DATA,
        PAD | flags::END_STREAM | 0x40,
        0x8000_0001,
        &[2, b'h', b'i', 0, 0],
    );
    let want = Frame::Data {
        stream: 1,
        end_stream: true,
        data: b"hi",
        flow_len: 5,
    };
    assert_eq!(parse_raw(&data), Ok(want));

    let payload = [1, 0x80, 0, 0, 7, 200, 0x82, 0x86, 0];
    let headers = raw(HEADERS, PAD | PRI | flags::END_HEADERS, 9, &payload);
    let priority = Some(Priority {
        dependency: 7,
        exclusive: true,
        weight: 200,
    });
    let want = Frame::Headers {
        stream: 9,
        end_stream: false,
        end_headers: true,
        priority,
        fragment: &[0x82, 0x86],
    };
    assert_eq!(parse_raw(&headers), Ok(want));

    // The self-dependent HEADERS is refused, but its fragment is still there for HPACK.
    let bytes = raw(HEADERS, PRI, 3, &[0, 0, 0, 3, 15, 0x82]);
    let head = parse_head(bytes.first_chunk().unwrap());
    assert_eq!(headers_fragment(head, &bytes[9..]), Ok(&[0x82][..]));

    let cont = raw(CONTINUATION, flags::END_HEADERS, 9, &[0x84]);
    let want = Frame::Continuation {
        stream: 9,
        end_headers: true,
        fragment: &[0x84],
    };
    assert_eq!(parse_raw(&cont), Ok(want));

    let prio = raw(PRIORITY, 0, 5, &[0xff, 0xff, 0xff, 0xff, 3]);
    let priority = Priority {
        dependency: 0x7fff_ffff,
        exclusive: true,
        weight: 3,
    };
    assert_eq!(
        parse_raw(&prio),
        Ok(Frame::Priority {
            stream: 5,
            priority
        })
    );

    let goaway = raw(GOAWAY, 0, 0, &[0x80, 0, 0, 9, 0, 0, 0, 0xb, 1, 2]);
    assert_eq!(
        parse_raw(&goaway),
        Ok(Frame::GoAway {
            last_stream: 9,
            code: 11
        })
    );

    let wu = raw(WINDOW_UPDATE, 0, 3, &[0xff, 0xff, 0xff, 0xff]);
    let want = Frame::WindowUpdate {
        stream: 3,
        increment: 0x7fff_ffff,
    };
    assert_eq!(parse_raw(&wu), Ok(want));

    let pp = raw(PUSH_PROMISE, PAD | 4, 1, &[1, 0, 0, 0, 2, 0x82, 0]);
    assert_eq!(parse_raw(&pp), Ok(Frame::PushPromise { stream: 1 }));

    let rst = raw(RST_STREAM, 0, 1, &[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(
        parse_raw(&rst),
        Ok(Frame::RstStream {
            stream: 1,
            code: 0xdead_beef
        })
    );
}

/// Frames serialized by Python hyperframe 6.1.0 (an independent implementation) parse to the
/// fields it was given, e.g. `HeadersFrame(3, data=b'\x82\x86\x84', flags=[...],
/// pad_length=4, depends_on=1, stream_weight=255, exclusive=True).serialize().hex()`.
#[test]
fn parses_hyperframe_output() {
    let headers = hex("00000d012d000000030480000001ff82868400000000");
    let priority = Some(Priority {
        dependency: 1,
        exclusive: true,
        weight: 255,
    });
    let want = Frame::Headers {
        stream: 3,
        end_stream: true,
        end_headers: true,
        priority,
        fragment: &[0x82, 0x86, 0x84],
    };
    assert_eq!(parse_raw(&headers), Ok(want));
    let data = hex("00000800080000000503626f6479000000");
    let want = Frame::Data {
        stream: 5,
        end_stream: false,
        data: b"body",
        flow_len: 8,
    };
    assert_eq!(parse_raw(&data), Ok(want));
    let prio = hex("0000050200000000070000000310");
    let priority = Priority {
        dependency: 3,
        exclusive: false,
        weight: 16,
    };
    assert_eq!(
        parse_raw(&prio),
        Ok(Frame::Priority {
            stream: 7,
            priority
        })
    );
    let push = hex("000008050c000000010200000002820000");
    assert_eq!(parse_raw(&push), Ok(Frame::PushPromise { stream: 1 }));
}

#[test]
fn settings_iterate_in_order() {
    let payload = [0, 1, 0, 0, 0x10, 0, 0, 0x99, 0, 0, 0, 7, 0, 2, 0, 0, 0, 1];
    let bytes = raw(SETTINGS, 0, 0, &payload);
    let Ok(Frame::Settings { ack: false, params }) = parse_raw(&bytes) else {
        panic!("not settings");
    };
    let got: Vec<_> = settings(params).collect();
    let want = [
        Setting::HeaderTableSize(4096),
        Setting::Unknown(0x99, 7),
        Setting::EnablePush(true),
    ];
    assert_eq!(got, want);
    // Unvalidated input: the bad entry and the partial tail are skipped, not panicked on.
    let got: Vec<_> = settings(&[0, 2, 0, 0, 0, 5, 0, 3, 0, 0, 0, 1, 0xff]).collect();
    assert_eq!(got, [Setting::MaxConcurrentStreams(1)]);
}

fn all_settings() -> Vec<Setting> {
    vec![
        Setting::HeaderTableSize(4096),
        Setting::EnablePush(false),
        Setting::MaxConcurrentStreams(100),
        Setting::InitialWindowSize(65_535),
        Setting::MaxFrameSize(16_384),
        Setting::MaxHeaderListSize(8192),
        Setting::EnableConnectProtocol(true),
        Setting::Unknown(0x99, 7),
    ]
}

type Writer = Box<dyn Fn(&mut Vec<u8>)>;

/// Expected bytes produced offline with Python hyperframe 6.1.0, e.g.
/// `SettingsFrame(0, settings={1: 4096, ...}).serialize().hex()`.
#[test]
fn writers_match_hyperframe() {
    let cases: Vec<(&str, Writer)> = vec![
        (
            "00003004000000000000010000100000020000000000030000006400040000ffff\
             000500004000000600002000000800000001009900000007",
            Box::new(|o| write_settings(o, &all_settings())),
        ),
        ("000000040100000000", Box::new(write_settings_ack)),
        (
            "0000080601000000000102030405060708",
            Box::new(|o| write_ping_ack(o, [1, 2, 3, 4, 5, 6, 7, 8])),
        ),
        (
            "0000080700000000007fffffff0000000b",
            Box::new(|o| write_goaway(o, 0x7fff_ffff, EnhanceYourCalm)),
        ),
        (
            "0000080700000000000000000500000000",
            Box::new(|o| write_goaway(o, 5, NoError)),
        ),
        (
            "00000403000000000300000008",
            Box::new(|o| write_rst(o, 3, Cancel)),
        ),
        (
            "0000040800000000007fffffff",
            Box::new(|o| write_window_update(o, 0, 0x7fff_ffff)),
        ),
        (
            "00000408000000000700000001",
            Box::new(|o| write_window_update(o, 7, 1)),
        ),
        // Reserved bits are cleared on send (RFC 9113 4.1, 6.8, 6.9): same bytes as above.
        (
            "0000080700000000007fffffff0000000b",
            Box::new(|o| write_goaway(o, u32::MAX, EnhanceYourCalm)),
        ),
        (
            "00000408000000000700000001",
            Box::new(|o| write_window_update(o, 0x8000_0007, 0x8000_0001)),
        ),
        (
            "000005000100000009",
            Box::new(|o| write_data_head(o, 9, 5, true)),
        ),
        (
            "000005000000000009",
            Box::new(|o| write_data_head(o, 9, 5, false)),
        ),
        (
            "000003010500000001828684",
            Box::new(|o| write_headers(o, 1, &[0x82, 0x86, 0x84], true, 16_384)),
        ),
        (
            "000000010400000003",
            Box::new(|o| write_headers(o, 3, b"", false, 16_384)),
        ),
    ];
    for (want, write) in cases {
        // Writers append: existing bytes stay in front.
        let mut out = vec![0xee];
        write(&mut out);
        assert_eq!(out[1..], hex(want), "{want}");
    }
}

#[test]
fn writers_round_trip_through_parse() {
    let mut out = Vec::new();
    write_settings(&mut out, &all_settings());
    write_settings_ack(&mut out);
    write_ping_ack(&mut out, *b"pingpong");
    write_goaway(&mut out, 0xffff_ffff, Protocol);
    write_rst(&mut out, 5, RefusedStream);
    write_window_update(&mut out, 0, 1);
    write_window_update(&mut out, 0x8000_0005, 0xffff_ffff);
    write_data_head(&mut out, 5, 3, true);
    out.extend_from_slice(b"abc");
    write_headers(&mut out, 7, &[0x82, 0x87], false, 0);
    let frames: Vec<Frame<'_>> = parse_all(&out).into_iter().map(|(_, f)| f).collect();
    let Frame::Settings { ack: false, params } = frames[0] else {
        panic!("{:?}", frames[0]);
    };
    assert_eq!(settings(params).collect::<Vec<_>>(), all_settings());
    let want = [
        Frame::Settings {
            ack: true,
            params: &[],
        },
        Frame::Ping {
            ack: true,
            payload: *b"pingpong",
        },
        Frame::GoAway {
            last_stream: 0x7fff_ffff,
            code: 1,
        },
        Frame::RstStream { stream: 5, code: 7 },
        Frame::WindowUpdate {
            stream: 0,
            increment: 1,
        },
        Frame::WindowUpdate {
            stream: 5,
            increment: 0x7fff_ffff,
        },
        Frame::Data {
            stream: 5,
            end_stream: true,
            data: b"abc",
            flow_len: 3,
        },
        Frame::Headers {
            stream: 7,
            end_stream: false,
            end_headers: true,
            priority: None,
            fragment: &[0x82, 0x87],
        },
    ];
    assert_eq!(frames[1..], want);
}

/// Writes a block, checks each frame's type and flags, and returns the reassembled block.
fn split(block: &[u8], end_stream: bool, max_frame: u32) -> (Vec<u32>, Vec<u8>) {
    let mut out = Vec::new();
    write_headers(&mut out, 11, block, end_stream, max_frame);
    let frames = parse_all(&out);
    let (mut lens, mut joined) = (Vec::new(), Vec::new());
    for (i, (head, frame)) in frames.iter().enumerate() {
        let last = i + 1 == frames.len();
        lens.push(head.len);
        let fragment = match *frame {
            Frame::Headers {
                stream: 11,
                end_stream: es,
                end_headers,
                priority: None,
                fragment,
            } if i == 0 => {
                assert_eq!((es, end_headers), (end_stream, last));
                fragment
            }
            Frame::Continuation {
                stream: 11,
                end_headers,
                fragment,
            } if i > 0 => {
                assert_eq!(end_headers, last);
                assert_eq!(head.flags & flags::END_STREAM, 0);
                fragment
            }
            ref other => panic!("frame {i}: {other:?}"),
        };
        joined.extend_from_slice(fragment);
    }
    (lens, joined)
}

#[test]
fn write_headers_splits_at_max_frame() {
    let block: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let cases: &[(usize, u32, &[u32])] = &[
        (0, 16_384, &[0]),
        (1, 16_384, &[1]),
        (16_384, 16_384, &[16_384]),
        (16_385, 16_384, &[16_384, 1]),
        (32_768, 16_384, &[16_384, 16_384]),
        (32_769, 16_384, &[16_384, 16_384, 1]),
        (40_000, 20_000, &[20_000, 20_000]),
        (40_000, 40_000, &[40_000]),
        // Out-of-range limits are clamped: no endless loop on 0, no 24-bit overflow.
        (16_385, 0, &[16_384, 1]),
        (40_000, u32::MAX, &[40_000]),
    ];
    for &(n, max, want) in cases {
        for end_stream in [false, true] {
            let (lens, joined) = split(&block[..n], end_stream, max);
            assert_eq!(lens, want, "block {n} max {max}");
            assert_eq!(joined, &block[..n]);
        }
    }
    // Frame headers for the one-over case, from hyperframe: HEADERS(5, END_STREAM) with
    // 16384 bytes, then CONTINUATION(5, END_HEADERS) with 1.
    let mut out = Vec::new();
    write_headers(&mut out, 5, &block[..16_385], true, 16_384);
    assert_eq!(out[..9], hex("004000010100000005"));
    assert_eq!(
        out[9 + 16_384..],
        [hex("000001090400000005"), vec![block[16_384]]].concat()
    );
}

#[test]
fn write_settings_caps_one_frame() {
    let many = vec![Setting::MaxConcurrentStreams(1); MAX_SETTINGS + 5];
    let mut out = Vec::new();
    write_settings(&mut out, &many);
    let head = parse_head(out.first_chunk().unwrap());
    assert_eq!(head.len as usize, MAX_SETTINGS * 6);
    assert!(head.len <= MIN_MAX_FRAME_SIZE);
    assert_eq!(out.len(), HEAD_LEN + MAX_SETTINGS * 6);
}

#[test]
fn random_input_never_panics() {
    // Seeded: a failure reproduces.
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut accepted = 0;
    for _ in 0..200_000 {
        let mut head_bytes = [0u8; HEAD_LEN];
        head_bytes.iter_mut().for_each(|b| *b = rng.u64(..) as u8);
        let mut head = parse_head(&head_bytes);
        assert!(head.len <= MAX_MAX_FRAME_SIZE && head.stream <= U31);
        // Bias towards known types, small streams and small payloads to reach deep paths.
        if rng.u64(..8) != 0 {
            head.kind = rng.u64(..11) as u8;
        }
        if rng.u64(..3) == 0 {
            head.stream = rng.u64(..3) as u32;
        }
        let len = match rng.u64(..4) {
            0 => rng.u64(..4),
            1 => 4 + rng.u64(..6),
            _ => rng.u64(..300),
        } as usize;
        let mut payload: Vec<u8> = (0..len).map(|_| rng.u64(..) as u8).collect();
        if let Some(first) = payload.first_mut() {
            if rng.u64(..2) == 0 {
                *first %= 8; // plausible pad lengths
            }
        }
        // Also call with a wrong length now and then: must not panic either.
        head.len = if rng.u64(..50) == 0 {
            rng.u64(..) as u32
        } else {
            len as u32
        };
        let _ = headers_fragment(head, &payload);
        match parse(head, &payload) {
            Ok(Frame::Data { data, flow_len, .. }) => {
                assert_eq!(flow_len as usize, payload.len());
                assert!(data.len() <= payload.len());
                accepted += 1;
            }
            Ok(Frame::Headers {
                fragment,
                stream,
                priority,
                ..
            }) => {
                assert!(fragment.len() <= payload.len());
                assert_ne!(priority.map(|p| p.dependency), Some(stream));
                accepted += 1;
            }
            Ok(Frame::Settings { params, .. }) => {
                assert_eq!(settings(params).count(), params.len() / 6);
                accepted += 1;
            }
            Ok(_) => accepted += 1,
            Err(FrameError::Stream(id, _)) => assert_eq!(id, head.stream),
            Err(FrameError::Connection(_)) => {}
        }
    }
    // The loop must exercise the accepting paths, not only the error paths.
    assert!(accepted > 20_000, "accepted {accepted}");
}
