//! `MeshStatus`: this node's part in the mesh, from Raft's metrics and the lease clock.

use std::sync::Arc;

use openraft::ServerState;

use crate::NodeId;
use crate::raft::MeshNode;

/// This node's part in consensus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshRole {
    Leader,
    Candidate,
    /// A voter following a leader.
    Follower,
    /// Replicated to, without a vote.
    Learner,
    /// Not in the membership yet.
    Joining,
    Shutdown,
}

impl MeshRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MeshRole::Leader => "leader",
            MeshRole::Candidate => "candidate",
            MeshRole::Follower => "follower",
            MeshRole::Learner => "learner",
            MeshRole::Joining => "joining",
            MeshRole::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MeshStatus {
    pub node_id: NodeId,
    pub role: MeshRole,
    pub term: u64,
    pub leader: Option<NodeId>,
    /// Voters and learners with how to reach them, from the last membership this node saw.
    pub voters: Members,
    pub learners: Members,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    /// Milliseconds since this node last heard from a leader that accepted it (a follower or
    /// learner), or since a quorum last acknowledged it (the leader). The lease of issue 6
    /// lapses when this passes the lease duration.
    pub leader_contact_age_ms: Option<u64>,
    pub connected_peers: usize,
}

/// Members with how to reach them, shared between statuses.
pub type Members = Arc<[(NodeId, MeshNode)]>;

/// Voters and learners of one membership, kept until the membership changes: building them
/// on every metrics update (each heartbeat) was a tenth of a simulation's time.
#[derive(Debug)]
pub(crate) struct MembersCache {
    log_id: Option<crate::raft::LogId>,
    built: bool,
    voters: Members,
    learners: Members,
}

impl Default for MembersCache {
    fn default() -> Self {
        MembersCache { log_id: None, built: false, voters: Arc::new([]), learners: Arc::new([]) }
    }
}

impl MembersCache {
    fn get(&mut self, m: &openraft::RaftMetrics<NodeId, MeshNode>) -> (Members, Members) {
        let log_id = *m.membership_config.log_id();
        if !self.built || self.log_id != log_id {
            let membership = m.membership_config.membership();
            let node = |id: &NodeId| membership.get_node(id).cloned().unwrap_or_default();
            self.voters = membership.voter_ids().map(|id| (id, node(&id))).collect();
            self.learners = membership.learner_ids().map(|id| (id, node(&id))).collect();
            self.log_id = log_id;
            self.built = true;
        }
        (self.voters.clone(), self.learners.clone())
    }
}

impl MeshStatus {
    pub(crate) fn from_metrics(
        me: NodeId,
        m: &openraft::RaftMetrics<NodeId, MeshNode>,
        cache: &mut MembersCache,
        contact_age_ms: Option<u64>,
        connected_peers: usize,
    ) -> Self {
        let (voters, learners) = cache.get(m);
        let role = match m.state {
            ServerState::Leader => MeshRole::Leader,
            ServerState::Candidate => MeshRole::Candidate,
            ServerState::Shutdown => MeshRole::Shutdown,
            _ if voters.iter().any(|(id, _)| *id == me) => MeshRole::Follower,
            _ if learners.iter().any(|(id, _)| *id == me) => MeshRole::Learner,
            _ => MeshRole::Joining,
        };
        let leader_contact_age_ms = if role == MeshRole::Leader { m.millis_since_quorum_ack } else { contact_age_ms };
        MeshStatus {
            node_id: me,
            role,
            term: m.current_term,
            leader: m.current_leader,
            voters,
            learners,
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|l| l.index),
            leader_contact_age_ms,
            connected_peers,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.role == MeshRole::Leader
    }
}
