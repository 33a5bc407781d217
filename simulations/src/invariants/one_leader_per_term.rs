//! Election safety: no two nodes are leader in the same term, over the whole run.

use std::collections::BTreeMap;

use mindmesh_net::{MeshRole, NodeId};

use super::{Invariant, Observation};

#[derive(Debug, Default)]
pub struct OneLeaderPerTerm {
    leaders: BTreeMap<u64, NodeId>,
}

impl Invariant for OneLeaderPerTerm {
    fn name(&self) -> &'static str {
        "one_leader_per_term"
    }

    fn check(&mut self, obs: &Observation<'_>) -> Result<(), String> {
        for s in obs.statuses.iter().filter(|s| s.role == MeshRole::Leader) {
            match self.leaders.get(&s.term) {
                Some(other) if *other != s.node => {
                    return Err(format!("term {}: node {} leads, but node {other} led it already", s.term, s.node));
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(s.term, s.node);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::StatusEvent;

    fn leader(node: NodeId, term: u64) -> StatusEvent {
        StatusEvent { at_ms: 0, node, term, role: MeshRole::Leader, leader: Some(node) }
    }

    fn check(inv: &mut OneLeaderPerTerm, statuses: &[StatusEvent]) -> Result<(), String> {
        inv.check(&Observation { now_ms: 0, statuses, registries: &[], acked: &[] })
    }

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let mut inv = OneLeaderPerTerm::default();
        assert!(check(&mut inv, &[leader(1, 1), leader(2, 2), leader(1, 1)]).is_ok());
        assert!(check(&mut inv, &[leader(3, 2)]).is_err());
    }
}
