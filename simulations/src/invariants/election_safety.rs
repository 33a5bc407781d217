//! Election safety as openraft defines it: a leader is a leader id `(term, node id)`, and
//! within a term leadership only ever passes up the node ids.
//!
//! openraft 0.9's default ("advanced") leader ids order the candidates of one term by node id.
//! A node that voted for `(T, m)` still grants `(T, n)` when `n > m`, never when `n < m`. So a
//! term may see a second leader, with a higher id, but never a lower one after a higher. Log
//! ids carry the whole leader id, so two leaders of one term never share a log id. The Raft
//! property that election safety protects (at most one log per log id, so committed entries
//! are never lost) is checked by `committed_not_lost` and `replicas_agree`. This invariant
//! checks the rule that makes it hold.
//!
//! Standard Raft's rule (one leader per term, openraft's `single-term-leader`) was tried on
//! seed 249 and rejected. openraft 0.9 draws each node's election timeout once at start and
//! checks it on a tick of 1.5 heartbeats. So candidates that collide once can collide every
//! round. Without the node-id tie-break, that seed split its votes four ways for 39
//! consecutive terms. See docs/failover.md.

use std::collections::BTreeMap;

use mindmesh_net::{MeshRole, NodeId};

use super::{Invariant, Observation};

#[derive(Debug, Default)]
pub struct ElectionSafety {
    /// The highest node id that has become leader of each term.
    highest: BTreeMap<u64, NodeId>,
    /// The term each node leads now, as its last status said.
    leading: BTreeMap<NodeId, u64>,
}

impl Invariant for ElectionSafety {
    fn name(&self) -> &'static str {
        "election_safety"
    }

    fn check(&mut self, obs: &Observation<'_>) -> Result<(), String> {
        for s in obs.statuses {
            if s.role != MeshRole::Leader {
                self.leading.remove(&s.node);
                continue;
            }
            // only the moment a node becomes leader counts: a deposed leader that has not yet
            // heard of its successor still says "leader", which is no new election
            if self.leading.insert(s.node, s.term) == Some(s.term) {
                continue;
            }
            let highest = self.highest.entry(s.term).or_insert(s.node);
            if s.node < *highest {
                return Err(format!(
                    "term {}: node {} became leader after node {} had led it (a leader id (term, node id) \
                     must only ascend)",
                    s.term, s.node, highest
                ));
            }
            *highest = s.node;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::StatusEvent;
    use crate::processes::ProcessTable;

    fn status(node: NodeId, term: u64, role: MeshRole) -> StatusEvent {
        StatusEvent { at_ms: 0, node, term, role, leader: (role == MeshRole::Leader).then_some(node) }
    }

    fn leader(node: NodeId, term: u64) -> StatusEvent {
        status(node, term, MeshRole::Leader)
    }

    fn check(inv: &mut ElectionSafety, statuses: &[StatusEvent]) -> Result<(), String> {
        inv.check(&Observation::of(0, statuses, &[], &[], &ProcessTable::default()))
    }

    #[test]
    fn a_terms_leaders_may_only_ascend_by_node_id() {
        let mut inv = ElectionSafety::default();
        assert!(check(&mut inv, &[leader(1, 1), leader(2, 2), leader(1, 1)]).is_ok(), "repeated statuses");
        assert!(check(&mut inv, &[leader(3, 2)]).is_ok(), "a higher id may take over a term");
        assert!(check(&mut inv, &[leader(2, 2)]).is_ok(), "the deposed leader has not heard yet");
        let again = [status(2, 2, MeshRole::Follower), leader(2, 2)];
        assert!(check(&mut inv, &again).unwrap_err().contains("node 2 became leader after node 3"));
        let mut inv = ElectionSafety::default();
        assert!(check(&mut inv, &[leader(5, 7), leader(4, 7)]).is_err(), "a lower id after a higher one");
    }
}
