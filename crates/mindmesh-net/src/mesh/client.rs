//! Getting a leader operation done from any node: run it here if this node leads, else send it
//! to the leader this node knows (or the one the answer names), and wait out elections, all
//! within the propose deadline. A retried proposal keeps its id, so the registry applies it once.

use std::time::Duration;

use mindmesh_core::registry::{Command, Outcome, Proposal};
use tokio::time::Instant;
use tracing::debug;

use super::ctx::Ctx;
use super::leader;
use crate::raft::MeshNode;
use crate::rpc::{self, LeaderError, LeaderReply, MeshRequest, MeshResponse};
use crate::transport::{PeerInfo, Transport};
use crate::{NetError, NodeId};

const BACKOFF_INITIAL: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(250);
/// Hops followed before giving up on a chain of stale leader hints.
const MAX_ATTEMPTS: usize = 64;

/// Commit a command to the registry. A command the registry refuses is an error. Returns
/// once this node has applied it too (read your writes), or at the propose deadline.
pub(crate) async fn propose<T: Transport>(ctx: &Ctx<T>, command: Command) -> Result<Outcome, NetError> {
    let p = Proposal { id: ctx.next_proposal_id(), command };
    p.encode()?; // refuse an oversized command here, not at every hop
    let (outcome, index) = match leader_call(ctx, MeshRequest::Propose(p), None).await? {
        LeaderReply::Proposed(o, index) => (o, index),
        other => return Err(NetError::Protocol(format!("unexpected answer {other:?}"))),
    };
    let mut registry = ctx.registry.clone();
    let wait = Duration::from_millis(ctx.cfg.propose_timeout_ms);
    let _ = tokio::time::timeout(wait, registry.wait_for(|r| r.applied_index >= index)).await;
    match outcome {
        Outcome::Rejected { reason } => Err(NetError::Rejected(reason)),
        o => Ok(o),
    }
}

/// Send a leader operation to the leader, starting with `first` if given (a joining node knows
/// no leader yet, only the peer it dialled).
pub(crate) async fn leader_call<T: Transport>(
    ctx: &Ctx<T>,
    req: MeshRequest,
    first: Option<NodeId>,
) -> Result<LeaderReply, NetError> {
    let timeout = Duration::from_millis(ctx.cfg.propose_timeout_ms);
    let deadline = Instant::now() + timeout;
    let mut hint = first;
    let mut backoff = BACKOFF_INITIAL;
    let mut last_err = NetError::NoLeader;
    for _ in 0..MAX_ATTEMPTS {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        // a joining node knows no leader: it keeps asking the peer it dialled, which answers
        // with the leader once one is elected
        let target = hint.take().or_else(|| ctx.raft.metrics().borrow().current_leader).or(first);
        let answer = match target {
            None => Err(LeaderError::NotLeader { leader: None, leader_node: None }),
            // a leader cut off from its quorum still thinks it leads and cannot commit until
            // the cut heals: give up at the deadline rather than hold the caller that long
            Some(t) if t == ctx.me => {
                match tokio::time::timeout(deadline - now, leader::execute(ctx, ctx.me, req.clone())).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        debug!("this node leads but nothing committed before the deadline");
                        break;
                    }
                }
            }
            Some(t) => match remote(ctx, t, &req, deadline - now).await {
                Ok(a) => a,
                Err(e) if e.is_retryable() => {
                    debug!(target = t, error = %e, "leader unreachable; retrying");
                    last_err = e;
                    Err(LeaderError::NotLeader { leader: None, leader_node: None })
                }
                Err(e) => return Err(e),
            },
        };
        match answer {
            Ok(reply) => return Ok(reply),
            Err(LeaderError::Failed(reason)) => return Err(NetError::Raft(reason)),
            Err(LeaderError::NotLeader { leader: Some(l), leader_node }) if Some(l) != target => {
                if let Some(node) = leader_node {
                    learn(ctx, l, &node).await;
                }
                hint = Some(l);
            }
            Err(LeaderError::NotLeader { .. }) => {
                // no leader known (an election): wait a little
                let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    Err(match last_err {
        NetError::NoLeader => NetError::Timeout(timeout.as_millis() as u64),
        e => e,
    })
}

pub(crate) async fn remote<T: Transport>(
    ctx: &Ctx<T>,
    target: NodeId,
    req: &MeshRequest,
    left: Duration,
) -> Result<Result<LeaderReply, LeaderError>, NetError> {
    let deadline = left.min(Duration::from_millis(ctx.cfg.rpc_timeout_ms));
    let bytes = ctx.transport.request(target, rpc::encode(req)?, deadline).await?;
    match rpc::decode::<MeshResponse>(&bytes, ctx.cfg.max_rpc_bytes)? {
        MeshResponse::Leader(r) => Ok(r),
        MeshResponse::Refused(why) => Err(NetError::Protocol(format!("node {target} refused: {why}"))),
        other => Err(NetError::Protocol(format!("node {target} answered {other:?}"))),
    }
}

async fn learn<T: Transport>(ctx: &Ctx<T>, node: NodeId, info: &MeshNode) {
    let peer = PeerInfo { node_id: node, peer_id: info.peer_id.clone(), addrs: info.addrs.clone() };
    if let Err(e) = ctx.transport.add_peer(peer).await {
        debug!(node, error = %e, "leader's address unusable");
    }
}
