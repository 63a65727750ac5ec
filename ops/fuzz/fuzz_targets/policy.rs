//! A policy file of arbitrary bytes: strict parse, then the strict and the
//! lenient merge of it (`palisade_fuzz::check_policy`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(source) = std::str::from_utf8(data) {
        palisade_fuzz::check_policy(source);
    }
});
