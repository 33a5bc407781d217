//! Durability of commits: a write the mesh acknowledged was committed at some log index; every
//! replica that has applied that index must hold it — through crashes, restarts and new leaders.

use super::{Invariant, Observation};

#[derive(Debug, Default)]
pub struct CommittedNotLost;

impl Invariant for CommittedNotLost {
    fn name(&self) -> &'static str {
        "committed_not_lost"
    }

    fn check(&mut self, obs: &Observation<'_>) -> Result<(), String> {
        for (node, r) in obs.registries {
            for w in obs.acked.iter().filter(|w| w.index <= r.applied_index) {
                if !r.personas.contains_key(&w.name) {
                    return Err(format!(
                        "node {node} applied up to {} but lacks {:?}, committed at {}",
                        r.applied_index, w.name, w.index
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mindmesh_core::registry::Registry;

    use super::*;
    use crate::invariants::Acked;
    use crate::processes::ProcessTable;

    #[test]
    fn a_replica_past_a_commit_without_it_is_caught() {
        let mut r = Registry::default();
        r.applied_index = 10;
        let acked = [Acked { name: "w-1".into(), index: 7 }];
        let regs = [(1, Arc::new(r))];
        let procs = ProcessTable::default();
        let obs = Observation::of(0, &[], &regs, &acked, &procs);
        assert!(CommittedNotLost.check(&obs).is_err());
        let mut behind = Registry::default();
        behind.applied_index = 5;
        let behind = [(1, Arc::new(behind))];
        let obs = Observation::of(0, &[], &behind, &acked, &procs);
        assert!(CommittedNotLost.check(&obs).is_ok(), "a replica behind the commit is not judged yet");
    }
}
