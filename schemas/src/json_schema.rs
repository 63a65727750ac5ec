//! The JSON Schemas of both formats, generated from the types. The checked-in
//! copies live in `schemas/json/`; a test fails when they are stale.

use crate::node_config::NodeConfig;
use crate::policy::Policy;

/// `(file name, schema text)` for every format, in a stable order.
pub fn all() -> Vec<(&'static str, String)> {
    let render = |schema: schemars::Schema| {
        let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
        text.push('\n');
        text
    };
    vec![
        ("policy.schema.json", render(schemars::schema_for!(Policy))),
        (
            "node-config.schema.json",
            render(schemars::schema_for!(NodeConfig)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Run with `PALISADE_UPDATE_SCHEMAS=1` to rewrite the checked-in files.
    #[test]
    fn checked_in_schemas_are_current() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("json");
        let update = std::env::var_os("PALISADE_UPDATE_SCHEMAS").is_some();
        for (name, text) in super::all() {
            let path = dir.join(name);
            if update {
                std::fs::create_dir_all(&dir).expect("create schemas/json");
                std::fs::write(&path, &text).expect("write schema");
                continue;
            }
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == text,
                "{} is stale; regenerate with `PALISADE_UPDATE_SCHEMAS=1 cargo test -p palisade-schemas`",
                path.display()
            );
        }
    }
}
