//! Reload step 2, pure: file text -> a NodeConfig to apply, or why not.
//! Only a valid file for this node with a newer generation is applied, and
//! only one whose generation a configsrv could have made by now.

use crate::error::ReloadError;
use schemas::{Generation, NodeConfig, NodeName, Revision};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far a generation may run ahead of this node's clock. `configsrv
/// serve` numbers a changed config `max(previous + 1, now in ms)`, and
/// `configsrv render` counts up from 1, so a real generation is at most "now"
/// on configsrv's clock: the lead only absorbs clock skew between machines.
/// Beyond it a generation could pin the node for good (meshd takes only
/// newer ones), so it is refused.
pub const MAX_GENERATION_LEAD: Duration = Duration::from_secs(24 * 3600);

/// The highest generation accepted at `now`: now in ms since 1970, plus the lead.
pub fn generation_ceiling(now: SystemTime) -> Generation {
    let ms = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let ceiling = ms.saturating_add(MAX_GENERATION_LEAD.as_millis());
    Generation(u64::try_from(ceiling).unwrap_or(u64::MAX))
}

/// What to do with a file that was read.
#[derive(Debug)]
pub enum Loaded {
    /// A newer valid config: swap it in.
    Apply(Box<NodeConfig>),
    /// The very config that runs: nothing to do, nothing to report.
    Same,
}

/// Checks `text` (the contents of `file`) against what runs now and the
/// highest generation accepted now (`generation_ceiling`).
pub fn load(
    node: &NodeName,
    file: &str,
    text: &str,
    running: Option<(Generation, &Revision)>,
    ceiling: Generation,
) -> Result<Loaded, ReloadError> {
    let config = schemas::parse_node_config(file, text).map_err(ReloadError::Invalid)?;
    if &config.node != node {
        return Err(ReloadError::WrongNode {
            file: file.to_owned(),
            expected: node.clone(),
            found: config.node,
        });
    }
    if config.generation > ceiling {
        return Err(ReloadError::TooFarAhead {
            file: file.to_owned(),
            found: config.generation.0,
            ceiling: ceiling.0,
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

    const MAX: Generation = Generation(u64::MAX);

    fn text(node: &str, generation: u64, revision: &str) -> String {
        format!("apiVersion: palisade/v1\nkind: NodeConfig\nnode: {node}\naddress: 127.0.0.2\ngeneration: {generation}\nrevision: {revision}\n")
    }

    #[test]
    fn newer_valid_config_is_applied() {
        let n: NodeName = "n1".parse().unwrap();
        let r = Revision("a".into());
        assert!(matches!(
            load(&n, "f", &text("n1", 2, "b"), Some((Generation(1), &r)), MAX),
            Ok(Loaded::Apply(_))
        ));
        assert!(matches!(
            load(&n, "f", &text("n1", 1, "a"), None, MAX),
            Ok(Loaded::Apply(_))
        ));
    }

    #[test]
    fn the_running_file_read_again_is_no_event() {
        let n: NodeName = "n1".parse().unwrap();
        let r = Revision("a".into());
        assert!(matches!(
            load(&n, "f", &text("n1", 3, "a"), Some((Generation(3), &r)), MAX),
            Ok(Loaded::Same)
        ));
    }

    #[test]
    fn older_other_node_or_invalid_files_are_refused() {
        let n: NodeName = "n1".parse().unwrap();
        let r = Revision("a".into());
        let older = load(&n, "f", &text("n1", 2, "b"), Some((Generation(3), &r)), MAX).unwrap_err();
        assert!(
            older
                .to_string()
                .contains("generation 2 is not newer than the running generation 3"),
            "{older}"
        );
        let other = load(&n, "f", &text("n2", 4, "b"), None, MAX).unwrap_err();
        assert!(matches!(other, ReloadError::WrongNode { .. }));
        let broken = load(
            &n,
            "f",
            "apiVersion: palisade/v1\nkind: NodeConfig\nnode: [",
            None,
            MAX,
        )
        .unwrap_err();
        assert!(broken.to_string().starts_with("f:"), "{broken}");
    }

    #[test]
    fn a_generation_no_configsrv_clock_could_make_is_refused() {
        let n: NodeName = "n1".parse().unwrap();
        let now = UNIX_EPOCH + Duration::from_millis(1_800_000_000_000);
        let ceiling = generation_ceiling(now);
        assert_eq!(ceiling, Generation(1_800_000_000_000 + 86_400_000));
        // configsrv's own numbers: small counts (render) and the clock (serve).
        for ok in [1, 1_800_000_000_000, ceiling.0] {
            assert!(
                matches!(
                    load(&n, "f", &text("n1", ok, "a"), None, ceiling),
                    Ok(Loaded::Apply(_))
                ),
                "{ok}"
            );
        }
        let err = load(&n, "f", &text("n1", u64::MAX, "a"), None, ceiling).unwrap_err();
        assert!(matches!(err, ReloadError::TooFarAhead { .. }), "{err}");
        assert!(err.to_string().contains("ahead"), "{err}");
        assert_eq!(
            generation_ceiling(UNIX_EPOCH - Duration::from_secs(1)),
            Generation(86_400_000)
        );
    }
}
