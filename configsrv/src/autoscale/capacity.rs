//! Autoscaling, the room: how many more instances of an app fit in the
//! unreserved free resources of Mesos' active agents (`GET /master/state`).
//! Pure: a body in, a count out.

use crate::error::SourceError;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
struct MasterState {
    #[serde(default)]
    slaves: Vec<Agent>,
}

/// Scalar resources by name (`cpus`, `mem`); ranges such as `ports` are skipped.
#[derive(Debug, Default, Deserialize)]
struct Resources(BTreeMap<String, serde_json::Value>);

impl Resources {
    fn get(&self, name: &str) -> f64 {
        self.0
            .get(name)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    }
}

#[derive(Debug, Deserialize)]
struct Agent {
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    unreserved_resources: Resources,
    #[serde(default)]
    used_resources: Resources,
    /// By role.
    #[serde(default)]
    reserved_resources: BTreeMap<String, Resources>,
}

fn yes() -> bool {
    true
}

/// One agent's unreserved resources not in use: what a Marathon app
/// without a role can still get there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Free {
    /// CPUs.
    pub cpus: f64,
    /// Memory, MiB.
    pub mem: f64,
}

/// Every active agent's free unreserved resources in a `/master/state` body.
pub fn free_resources(origin: &str, body: &[u8]) -> Result<Vec<Free>, SourceError> {
    let state: MasterState =
        serde_json::from_slice(body).map_err(|e| SourceError::json(origin, &e))?;
    Ok(state
        .slaves
        .iter()
        .filter(|a| a.active)
        .map(|a| {
            // `used` counts reserved and unreserved use together; tasks of a
            // role run on its reservation first, so only use beyond the
            // reservations eats into the unreserved pool.
            let unreserved_used = |name: &str| {
                let reserved: f64 = a.reserved_resources.values().map(|r| r.get(name)).sum();
                (a.used_resources.get(name) - reserved).max(0.0)
            };
            Free {
                cpus: (a.unreserved_resources.get("cpus") - unreserved_used("cpus")).max(0.0),
                mem: (a.unreserved_resources.get("mem") - unreserved_used("mem")).max(0.0),
            }
        })
        .collect())
}

/// How many instances of `cpus` and `mem` fit, agent by agent (an instance
/// never spans agents).
pub fn fits(agents: &[Free], cpus: f64, mem: f64) -> u32 {
    let per = |free: f64, need: f64| {
        if need > 0.0 {
            (free / need + 1e-9).floor()
        } else {
            f64::from(u32::MAX)
        }
    };
    let total: f64 = agents
        .iter()
        .map(|a| per(a.cpus, cpus).min(per(a.mem, mem)).max(0.0))
        .sum();
    total.min(f64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../../shared/fixtures/mesos/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn reserved_use_does_not_eat_the_unreserved_pool() {
        // Mesos 1.2: agent 10.0.2.121 has 2.5 unreserved cpus; of its 2.51
        // used, 1.5 sit on the kafka role's reservation.
        let free = free_resources("state", &fixture("master-state-1.2.0.json")).unwrap();
        assert_eq!(free.len(), 2);
        assert!((free[0].cpus - 1.49).abs() < 1e-9, "{free:?}");
        assert!(
            (free[0].mem - (11458.0 - (3822.0 - 2560.0))).abs() < 1e-9,
            "{free:?}"
        );
    }

    #[test]
    fn every_fixture_reads() {
        for f in [
            "master-state.json",
            "master-state-0.28.json",
            "master-slaves.json",
        ] {
            let free = free_resources(f, &fixture(f)).unwrap();
            assert!(!free.is_empty(), "{f}");
            assert!(free.iter().all(|a| a.cpus >= 0.0 && a.mem >= 0.0), "{f}");
        }
    }

    #[test]
    fn instances_fit_per_agent_never_across_two() {
        let agents = [
            Free {
                cpus: 1.5,
                mem: 1000.0,
            },
            Free {
                cpus: 0.7,
                mem: 4000.0,
            },
        ];
        // 1 cpu each: one on the first, none on the second (0.5 + 0.7 left over).
        assert_eq!(fits(&agents, 1.0, 100.0), 1);
        // 0.5 cpu, 512 MiB: memory bounds the first at 1, cpu the second at 1.
        assert_eq!(fits(&agents, 0.5, 512.0), 2);
        assert_eq!(fits(&agents, 4.0, 10.0), 0);
        assert_eq!(fits(&[], 0.1, 10.0), 0);
        // Inactive agents are not counted.
        let body = br#"{"slaves":[{"active":false,"unreserved_resources":{"cpus":8,"mem":8000},"used_resources":{"cpus":0,"mem":0}}]}"#;
        assert!(free_resources("s", body).unwrap().is_empty());
    }
}
