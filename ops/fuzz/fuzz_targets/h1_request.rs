//! A client's bytes as meshd's HTTP/1 request path reads them: the head is
//! rewritten for the backend (which must parse again, with exactly the
//! framing meshd decided), then the body after it is decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| palisade_fuzz::check_request(data));
