//! Publishing step 1, pure: number each rendered config against the one
//! published before. Same revision: keep the file and its generation.
//! Changed: the next generation. The sinks (`publish::files`) do the I/O.

pub mod files;
pub mod http;

use schemas::{Generation, NodeConfig, Revision};

/// What was published before for one node, as far as numbering needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    /// Its generation.
    pub generation: Generation,
    /// Its revision.
    pub revision: Revision,
}

/// Sets `config.generation` from `previous`; returns whether the content
/// changed. A changed config gets the next generation, and at least `floor`:
/// `render` passes 1 (deterministic output), `serve` passes the clock in
/// milliseconds, so generations keep rising across restarts even when the
/// files are gone.
pub fn assign_generation(
    previous: Option<&Previous>,
    config: &mut NodeConfig,
    floor: Generation,
) -> bool {
    match previous {
        Some(p) if p.revision == config.revision => {
            config.generation = p.generation;
            false
        }
        Some(p) => {
            config.generation = p.generation.next().max(floor);
            true
        }
        None => {
            config.generation = Generation(1).max(floor);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::render;
    use crate::state::ClusterState;

    #[test]
    fn generation_moves_only_when_content_changes() {
        let mut config = render(
            &ClusterState::new(
                vec![],
                vec![crate::state::Agent {
                    hostname: "n1".into(),
                    address: None,
                    active: true,
                }],
            ),
            &schemas::PolicySet::default(),
        )
        .configs()
        .into_values()
        .next()
        .unwrap();
        let one = Generation(1);
        assert!(assign_generation(None, &mut config, one));
        assert_eq!(config.generation, Generation(1));
        let same = Previous {
            generation: Generation(7),
            revision: config.revision.clone(),
        };
        assert!(!assign_generation(Some(&same), &mut config, one));
        assert_eq!(config.generation, Generation(7));
        let other = Previous {
            generation: Generation(7),
            revision: Revision("sha256:other".into()),
        };
        assert!(assign_generation(Some(&other), &mut config, one));
        assert_eq!(config.generation, Generation(8));
        // serve passes the clock as a floor: a restart never goes back.
        assert!(assign_generation(
            Some(&other),
            &mut config,
            Generation(1_000)
        ));
        assert_eq!(config.generation, Generation(1_000));
    }
}
