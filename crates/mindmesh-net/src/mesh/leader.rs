//! What only the leader does: commit a proposal, admit a node as a learner, take a node out,
//! and keep the number of voters at its target. Any node calls [`execute`] when it believes it
//! leads; a node that does not answers `NotLeader` with the leader it knows.

use std::collections::{BTreeMap, BTreeSet};

use mindmesh_core::registry::{Command, Outcome, Proposal};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use tracing::{info, warn};

use super::ctx::Ctx;
use crate::NodeId;
use crate::raft::MeshNode;
use crate::rpc::{JoinRequest, LeaderError, LeaderReply, MeshRequest};
use crate::transport::Transport;

/// A learner within this many entries of the leader's log counts as caught up.
const CATCHUP_LAG: u64 = 100;

pub(crate) fn not_leader<T: Transport>(ctx: &Ctx<T>) -> LeaderError {
    let m = ctx.raft.metrics().borrow().clone();
    let leader = m.current_leader.filter(|l| *l != ctx.me);
    let leader_node = leader.and_then(|l| m.membership_config.membership().get_node(&l).cloned());
    LeaderError::NotLeader { leader, leader_node }
}

pub(crate) fn is_leader<T: Transport>(ctx: &Ctx<T>) -> bool {
    let m = ctx.raft.metrics();
    let m = m.borrow();
    m.state == ServerState::Leader && m.current_leader == Some(ctx.me)
}

fn write_error<T: Transport>(ctx: &Ctx<T>, e: RaftError<NodeId, ClientWriteError<NodeId, MeshNode>>) -> LeaderError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            LeaderError::NotLeader { leader: f.leader_id.filter(|l| *l != ctx.me), leader_node: f.leader_node }
        }
        other => LeaderError::Failed(other.to_string()),
    }
}

/// Run a leader operation on this node. `from` is the node that asked (itself for local calls).
pub(crate) async fn execute<T: Transport>(
    ctx: &Ctx<T>,
    from: NodeId,
    req: MeshRequest,
) -> Result<LeaderReply, LeaderError> {
    if !is_leader(ctx) {
        return Err(not_leader(ctx));
    }
    match req {
        MeshRequest::Propose(p) => propose_at(ctx, p).await.map(|(o, index)| LeaderReply::Proposed(o, index)),
        MeshRequest::Join(j) => {
            if j.node != from {
                return Err(LeaderError::Failed(format!("node {from} cannot join on behalf of node {}", j.node)));
            }
            join(ctx, j).await.map(|()| LeaderReply::Joined)
        }
        MeshRequest::Leave { node } => leave(ctx, node).await.map(|()| LeaderReply::Left),
        MeshRequest::Renew => {
            // only members hold leases: a stranger's renewals would grow the table of when
            // each node was last heard without bound
            let member = ctx.raft.metrics().borrow().membership_config.membership().get_node(&from).is_some();
            if !member {
                return Err(LeaderError::Failed(format!("node {from} is not a member of this mesh")));
            }
            let age = super::lease::quorum_age_ms(ctx);
            if age.is_none_or(|a| a > ctx.cfg.max_quorum_age_ms()) {
                return Err(LeaderError::Failed(format!("no recent quorum (last ack {age:?} ms ago)")));
            }
            if !ctx.failover.renewal(from, ctx.now_ms()) {
                return Err(LeaderError::Failed(format!("node {from} was declared lost; its personas are moving")));
            }
            // not what it has applied: a failover it is still committing must be covered too
            let log_index = ctx.raft.metrics().borrow().last_log_index.unwrap_or(0);
            Ok(LeaderReply::Renewed { log_index })
        }
        other => Err(LeaderError::Failed(format!("{} is not a leader operation", other.kind()))),
    }
}

async fn propose<T: Transport>(ctx: &Ctx<T>, p: Proposal) -> Result<Outcome, LeaderError> {
    propose_at(ctx, p).await.map(|(o, _)| o)
}

/// Commit a proposal; its outcome and the log index it was committed at.
async fn propose_at<T: Transport>(ctx: &Ctx<T>, p: Proposal) -> Result<(Outcome, u64), LeaderError> {
    ctx.raft.client_write(p).await.map(|r| (r.data, r.log_id.index)).map_err(|e| write_error(ctx, e))
}

async fn join<T: Transport>(ctx: &Ctx<T>, j: JoinRequest) -> Result<(), LeaderError> {
    let membership = ctx.raft.metrics().borrow().membership_config.membership().clone();
    match membership.get_node(&j.node) {
        Some(known) if *known == j.mesh_node => {}
        Some(_) => {
            // the same identity with new addresses (a restart): update how to reach it
            let nodes = BTreeMap::from([(j.node, j.mesh_node.clone())]);
            ctx.raft.change_membership(ChangeMembers::SetNodes(nodes), true).await.map_err(|e| write_error(ctx, e))?;
            info!(node = j.node, name = %j.info.name, "member's addresses updated");
        }
        None => {
            ctx.raft.add_learner(j.node, j.mesh_node.clone(), false).await.map_err(|e| write_error(ctx, e))?;
            info!(node = j.node, name = %j.info.name, "node joined as a learner");
        }
    }
    let outcome = propose(ctx, Proposal { id: ctx.next_proposal_id(), command: Command::AddNode(j.info) }).await?;
    match outcome {
        Outcome::Rejected { reason } => Err(LeaderError::Failed(reason)),
        _ => Ok(()),
    }
}

async fn leave<T: Transport>(ctx: &Ctx<T>, node: NodeId) -> Result<(), LeaderError> {
    let membership = ctx.raft.metrics().borrow().membership_config.membership().clone();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    if voters.contains(&node) && voters.len() == 1 {
        return Err(LeaderError::Failed("the last voter cannot leave; stop the mesh instead".into()));
    }
    // registry first: once out of the membership, a leaving leader could no longer write it
    if ctx.registry.borrow().nodes.contains_key(&node) {
        let p = Proposal { id: ctx.next_proposal_id(), command: Command::RemoveNode { id: node } };
        propose(ctx, p).await?;
    }
    let change = if voters.contains(&node) {
        Some(ChangeMembers::RemoveVoters(BTreeSet::from([node])))
    } else if membership.get_node(&node).is_some() {
        Some(ChangeMembers::RemoveNodes(BTreeSet::from([node])))
    } else {
        None
    };
    if let Some(change) = change {
        ctx.raft.change_membership(change, false).await.map_err(|e| write_error(ctx, e))?;
        info!(node, "node left the mesh");
    }
    Ok(())
}

/// Promote caught-up learners until the voters reach their target: `voters` from the config,
/// at most the number of members, and odd (an even count adds no fault tolerance: 4 voters
/// survive one failure, as 3 do, and need one more for every quorum).
pub(crate) async fn keep_voters<T: Transport>(ctx: &Ctx<T>) {
    if !is_leader(ctx) {
        return;
    }
    let m = ctx.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    if membership.get_joint_config().len() > 1 {
        return; // a change is under way
    }
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let members = membership.nodes().count();
    let mut target = ctx.cfg.voters.min(members);
    if target > 1 && target.is_multiple_of(2) {
        target -= 1;
    }
    if voters.len() >= target {
        return;
    }
    let last = m.last_log_index.unwrap_or(0);
    let replication = m.replication.clone().unwrap_or_default();
    let ready: BTreeSet<NodeId> = membership
        .learner_ids()
        .filter(|id| replication.get(id).copied().flatten().is_some_and(|matched| matched.index + CATCHUP_LAG >= last))
        .take(target - voters.len())
        .collect();
    if ready.is_empty() {
        return;
    }
    match ctx.raft.change_membership(ChangeMembers::AddVoterIds(ready.clone()), true).await {
        Ok(_) => info!(promoted = ?ready, "learners promoted to voters"),
        Err(e) => warn!(error = %e, "promotion failed; will retry"),
    }
}
