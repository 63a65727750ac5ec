//! Reload step 2, pure: file text -> a NodeConfig to apply, or why not.
//! Only a valid file for this node with a newer generation is applied.

use crate::error::ReloadError;
use schemas::{Generation, NodeConfig, NodeName, Revision};

/// What to do with a file that was read.
#[derive(Debug)]
pub enum Loaded {
    /// A newer valid config: swap it in.
    Apply(Box<NodeConfig>),
    /// The very config that runs: nothing to do, nothing to report.
    Same,
}

/// Checks `text` (the contents of `file`) against what runs now.
pub fn load(
    node: &NodeName,
    file: &str,
    text: &str,
    running: Option<(Generation, &Revision)>,
) -> Result<Loaded, ReloadError> {
    let config = schemas::parse_node_config(file, text).map_err(ReloadError::Invalid)?;
    if &config.node != node {
        return Err(ReloadError::WrongNode {
            file: file.to_owned(),
            expected: node.clone(),
            found: config.node,
        });
    }
    match running {
        Some((generation, revision))
            if config.generation == generation && &config.revision == revision =>
        {
            Ok(Loaded::Same)
        }
        Some((generation, _)) if config.generation <= generation => {
            Err(ReloadError::not_newer(file, config.generation, generation))
        }
        _ => Ok(Loaded::Apply(Box::new(config))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(node: &str, generation: u64, revision: &str) -> String {
        format!("apiVersion: palisade/v1\nkind: NodeConfig\nnode: {node}\naddress: 127.0.0.2\ngeneration: {generation}\nrevision: {revision}\n")
    }

    #[test]
    fn newer_valid_config_is_applied() {
        let n: NodeName = "n1".parse().unwrap();
        let r = Revision("a".into());
        assert!(matches!(
            load(&n, "f", &text("n1", 2, "b"), Some((Generation(1), &r))),
            Ok(Loaded::Apply(_))
        ));
        assert!(matches!(
            load(&n, "f", &text("n1", 1, "a"), None),
            Ok(Loaded::Apply(_))
        ));
    }

    #[test]
    fn the_running_file_read_again_is_no_event() {
        let n: NodeName = "n1".parse().unwrap();
        let r = Revision("a".into());
        assert!(matches!(
            load(&n, "f", &text("n1", 3, "a"), Some((Generation(3), &r))),
            Ok(Loaded::Same)
        ));
    }

    #[test]
    fn older_other_node_or_invalid_files_are_refused() {
        let n: NodeName = "n1".parse().unwrap();
        let r = Revision("a".into());
        let older = load(&n, "f", &text("n1", 2, "b"), Some((Generation(3), &r))).unwrap_err();
        assert!(
            older
                .to_string()
                .contains("generation 2 is not newer than the running generation 3"),
            "{older}"
        );
        let other = load(&n, "f", &text("n2", 4, "b"), None).unwrap_err();
        assert!(matches!(other, ReloadError::WrongNode { .. }));
        let broken = load(
            &n,
            "f",
            "apiVersion: palisade/v1\nkind: NodeConfig\nnode: [",
            None,
        )
        .unwrap_err();
        assert!(broken.to_string().starts_with("f:"), "{broken}");
    }
}
