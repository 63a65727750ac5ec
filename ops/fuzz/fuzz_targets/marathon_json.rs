//! Marathon's JSON of arbitrary bytes, read the ways configsrv reads it:
//! `/v2/apps` (and single-app) bodies into apps, `/v2/tasks` bodies, and
//! event payloads. Errors are fine; panics are not.
#![no_main]

use configsrv::sources::marathon::{events::parse_event, model::MarathonTask, parse_apps};
use libfuzzer_sys::fuzz_target;

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct TasksResponse {
    tasks: Vec<MarathonTask>,
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_apps("fuzz", data);
    let _ = serde_json::from_slice::<TasksResponse>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_event(text);
    }
});
