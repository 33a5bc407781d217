//! Answering what peers ask: Raft RPCs go to the local Raft, leader operations to
//! [`leader::execute`]. An append from the leader of the current term renews this node's
//! contact time, the basis of its lease (issue 6's fencing).

use openraft::raft::AppendEntriesResponse;
use tracing::{debug, warn};

use super::ctx::Ctx;
use super::leader;
use crate::NodeId;
use crate::rpc::{self, LeaderError, MeshRequest, MeshResponse};
use crate::transport::{Reply, Transport};

/// Decode, handle and answer one request. Returns false when the bytes were not a valid
/// request, or one its sender may not make (the caller scores the sender down).
pub(crate) async fn serve<T: Transport>(ctx: Ctx<T>, from: NodeId, data: Vec<u8>, reply: Reply) -> bool {
    let (valid, response) = match rpc::decode::<MeshRequest>(&data, ctx.cfg.max_rpc_bytes) {
        Ok(req) => match impersonation(from, &req) {
            None => (true, handle(&ctx, from, req).await),
            Some(why) => {
                warn!(from, request = req.kind(), "{why}: refused");
                (false, MeshResponse::Refused(why))
            }
        },
        Err(e) => {
            debug!(from, error = %e, "malformed request");
            (false, MeshResponse::Refused(e.to_string()))
        }
    };
    match rpc::encode(&response) {
        Ok(bytes) => {
            if let Err(e) = reply.send(bytes) {
                debug!(from, error = %e, "answer not sent");
            }
        }
        Err(e) => debug!(from, error = %e, "answer not encodable"),
    }
    valid
}

/// A request that speaks for another node than its sender. The sender's id comes from the
/// connection (noise-authenticated), so a member holding the mesh key can only campaign, lead
/// and propose in its own name: it cannot pose as the leader (appends, snapshots), stand as
/// another candidate, or file proposals under another node's ids (which would answer that
/// node's own later proposal from the deduplication table). `Leave` may name another node:
/// an operator removes a dead one through any member.
fn impersonation(from: NodeId, req: &MeshRequest) -> Option<String> {
    let claimed = match req {
        MeshRequest::AppendEntries(r) => r.vote.leader_id().voted_for(),
        MeshRequest::Vote(r) => r.vote.leader_id().voted_for(),
        MeshRequest::InstallSnapshot(r) => r.vote.leader_id().voted_for(),
        MeshRequest::Propose(p) => Some(p.id.node),
        MeshRequest::Join(j) => Some(j.node),
        MeshRequest::Leave { .. } | MeshRequest::Renew => None,
    };
    claimed.filter(|c| *c != from).map(|c| format!("node {from} sent a {} in the name of node {c}", req.kind()))
}

async fn handle<T: Transport>(ctx: &Ctx<T>, from: NodeId, req: MeshRequest) -> MeshResponse {
    match req {
        MeshRequest::AppendEntries(r) => {
            let res = ctx.raft.append_entries(r).await;
            // any answer but "I have seen a higher vote" means the sender leads our term
            if matches!(&res, Ok(a) if !matches!(a, AppendEntriesResponse::HigherVote(_))) {
                ctx.leader_contact();
            }
            MeshResponse::AppendEntries(res)
        }
        MeshRequest::Vote(r) => MeshResponse::Vote(ctx.raft.vote(r).await),
        MeshRequest::InstallSnapshot(r) => {
            let res = ctx.raft.install_snapshot(r).await;
            if res.is_ok() {
                ctx.leader_contact();
            }
            MeshResponse::InstallSnapshot(res)
        }
        op @ (MeshRequest::Propose(_) | MeshRequest::Join(_) | MeshRequest::Leave { .. } | MeshRequest::Renew) => {
            // the caller waits at most an RPC timeout; a leader cut off from its quorum would
            // hold this request (and its slot) until the cut heals
            let wait = std::time::Duration::from_millis(ctx.cfg.rpc_timeout_ms);
            match tokio::time::timeout(wait, leader::execute(ctx, from, op)).await {
                Ok(answer) => MeshResponse::Leader(answer),
                Err(_) => MeshResponse::Leader(Err(LeaderError::NotLeader { leader: None, leader_node: None })),
            }
        }
    }
}
