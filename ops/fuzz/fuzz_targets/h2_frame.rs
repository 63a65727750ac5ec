//! A client's bytes after the HTTP/2 preface, cut into frames as meshd's
//! connection task cuts them: `frame::parse_head`, then `frame::parse` on
//! the payload, SETTINGS parameters iterated, a HEADERS frame's fragment
//! taken as the driver does when `parse` refused it for one stream only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd::proxy::h2::frame::{self, Frame, FrameError, HEAD_LEN};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Some((head, after)) = rest.split_first_chunk::<HEAD_LEN>() {
        let mut head = frame::parse_head(head);
        // A frame cut short by the input's end is parsed at the length it
        // has, so the last frame of every input reaches `parse` too.
        let len = (head.len as usize).min(after.len());
        head.len = len as u32;
        let (payload, next) = after.split_at(len);
        rest = next;
        // An unvalidated payload must iterate too (it skips what is invalid).
        for _ in frame::settings(payload) {}
        match frame::parse(head, payload) {
            Ok(Frame::Settings { params, .. }) => {
                let n = frame::settings(params).count();
                // `parse` validated every parameter: none may be skipped.
                assert_eq!(n, params.len() / 6, "validated SETTINGS lost a parameter");
            }
            Ok(Frame::Data { data, flow_len, .. }) => {
                assert!(data.len() <= flow_len as usize, "DATA longer than its frame");
            }
            Ok(Frame::Headers { fragment, .. }) | Ok(Frame::Continuation { fragment, .. }) => {
                assert!(fragment.len() <= payload.len());
            }
            Ok(_) => {}
            Err(FrameError::Stream(..)) if head.kind == frame::kind::HEADERS => {
                let _ = frame::headers_fragment(head, payload);
            }
            Err(_) => {}
        }
    }
});
