//! Election safety: no two nodes are leader in the same term, over the whole run.
//!
//! This is standard Raft's rule, as issue 6 states it. openraft's default leader ids (its
//! "advanced" mode, without the `single-term-leader` feature) order candidates of one term by
//! node id, so a quorum may elect a second leader in a term; log ids carry the node id, so no
//! commit is at risk (`committed_not_lost` and `replicas_agree` check that), but this invariant
//! then fails — rarely (about one seed in 500) — and its message says so.

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
                    return Err(format!(
                        "term {}: node {} leads, but node {other} led it already (openraft's default leader \
                         ids allow one leader per term and node id; its `single-term-leader` mode, standard \
                         Raft's, does not)",
                        s.term, s.node
                    ));
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
    use crate::processes::ProcessTable;

    fn leader(node: NodeId, term: u64) -> StatusEvent {
        StatusEvent { at_ms: 0, node, term, role: MeshRole::Leader, leader: Some(node) }
    }

    fn check(inv: &mut OneLeaderPerTerm, statuses: &[StatusEvent]) -> Result<(), String> {
        inv.check(&Observation::of(0, statuses, &[], &[], &ProcessTable::default()))
    }

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let mut inv = OneLeaderPerTerm::default();
        assert!(check(&mut inv, &[leader(1, 1), leader(2, 2), leader(1, 1)]).is_ok());
        assert!(check(&mut inv, &[leader(3, 2)]).is_err());
    }
}
