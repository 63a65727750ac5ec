//! configsrv's Prometheus text parser over arbitrary bytes (what a meshd
//! admin endpoint, or anything answering in its place, may send). No panic;
//! what parses is reduced without a panic too, and written back it parses
//! to the same samples.
#![no_main]

use configsrv::observe::prom_text::parse;
use configsrv::observe::sample::{reduce, status};
use libfuzzer_sys::fuzz_target;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fuzz_target!(|data: &[u8]| {
    let _ = status(data);
    let Ok(samples) = parse(data) else {
        return;
    };
    let _ = reduce(&samples);
    let mut text = String::new();
    for s in &samples {
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let value = if s.value.is_nan() {
            "NaN".to_owned()
        } else if s.value == f64::INFINITY {
            "+Inf".to_owned()
        } else if s.value == f64::NEG_INFINITY {
            "-Inf".to_owned()
        } else {
            format!("{:?}", s.value)
        };
        text.push_str(&format!("{}{{{}}} {value}\n", s.name, labels.join(",")));
    }
    let again = parse(text.as_bytes()).expect("what parsed, written back, parses");
    assert_eq!(again.len(), samples.len());
    for (a, b) in again.iter().zip(&samples) {
        assert_eq!((&a.name, &a.labels), (&b.name, &b.labels));
        assert!(a.value == b.value || (a.value.is_nan() && b.value.is_nan()));
    }
});
