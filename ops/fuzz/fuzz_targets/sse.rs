//! The event-stream framer over arbitrary bytes, fed whole and in pieces.
//! The first byte picks the limit and the split size; every way of cutting
//! the same stream yields the same events (or the same overflow).
#![no_main]

use configsrv::sources::marathon::events::{parse_event, Frame, SseParser, TooLarge};
use libfuzzer_sys::fuzz_target;

fn run(limit: usize, stream: &[u8], step: usize) -> (Vec<Frame>, Option<TooLarge>) {
    let mut parser = SseParser::new(limit);
    let mut frames = Vec::new();
    for piece in stream.chunks(step.max(1)) {
        match parser.push(piece) {
            Ok(f) => frames.extend(f),
            Err(e) => return (frames, Some(e)),
        }
    }
    (frames, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, stream)) = data.split_first() else {
        return;
    };
    let limit = if knob & 0x80 == 0 {
        1 << 20
    } else {
        usize::from(knob & 0x3f) + 1
    };
    let step = usize::from(knob & 0x0f) + 1;
    let whole = run(limit, stream, stream.len());
    let pieces = run(limit, stream, step);
    let bytewise = run(limit, stream, 1);
    for frame in &whole.0 {
        assert!(
            frame.data.len() <= limit,
            "an event over the limit got through"
        );
        let _ = parse_event(&frame.data);
    }
    // Where the stream is cut cannot decide whether it overflows.
    assert_eq!(whole.1.is_some(), pieces.1.is_some());
    assert_eq!(whole.1.is_some(), bytewise.1.is_some());
    if whole.1.is_none() {
        assert_eq!(whole.0, pieces.0);
        assert_eq!(whole.0, bytewise.0);
    }
});
