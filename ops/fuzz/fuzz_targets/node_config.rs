//! A node config of arbitrary bytes: strict parse and the cross-field
//! checks. A config that passes has no problems when checked in memory, and
//! writes out to text that parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schemas::node_config::validate::problems;
use schemas::parse_node_config;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = parse_node_config("fuzz.yaml", source) else {
        return;
    };
    assert_eq!(problems(&config), Vec::<String>::new());
    let text = config.to_yaml();
    let again = parse_node_config("written.yaml", &text)
        .unwrap_or_else(|e| panic!("written config does not parse back: {e:?}\n{text}"));
    assert_eq!(
        config, again,
        "written config reads back different:\n{text}"
    );
    let _ = config.content_revision();
});
