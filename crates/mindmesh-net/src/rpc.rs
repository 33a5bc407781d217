//! What nodes ask each other over request/response, encoded as versioned postcard: Raft's own
//! RPCs, and the operations only the leader performs (a write, a join, a leave), which any
//! node forwards to the leader it knows.

use mindmesh_core::registry::{NodeInfo, Outcome, Proposal};
use mindmesh_core::wire;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::raft::{MeshNode, TypeConfig};
use crate::{NetError, NodeId};

/// Version tag of mesh RPCs.
pub const RPC_WIRE_VERSION: u8 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MeshRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Leader only: commit a proposal to the registry.
    Propose(Proposal),
    /// Leader only: add a node as a learner and record it in the registry.
    Join(JoinRequest),
    /// Leader only: take a node out of the membership and the registry.
    Leave {
        node: NodeId,
    },
    /// Leader only: renew the asking node's lease. The leader answers only while a quorum
    /// acknowledged it recently, and notes when it heard from the node (failover's clock).
    Renew,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node: NodeId,
    /// How members reach it.
    pub mesh_node: MeshNode,
    /// What it offers (capacity, labels), for the registry.
    pub info: NodeInfo,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum MeshResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Leader(Result<LeaderReply, LeaderError>),
    /// The request could not be read.
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LeaderReply {
    /// The outcome and the log index the command was committed at.
    Proposed(Outcome, u64),
    Joined,
    Left,
    /// The lease is renewed, valid once the asker has applied the registry up to this index
    /// (the leader's last log index when it answered, entries not yet committed included —
    /// such as the moves of a failover it is committing): a node back from a partition must
    /// not act on a registry older than its lease.
    Renewed {
        log_index: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LeaderError {
    /// Ask this one instead (when known).
    NotLeader {
        leader: Option<NodeId>,
        leader_node: Option<MeshNode>,
    },
    Failed(String),
}

impl MeshRequest {
    pub fn kind(&self) -> &'static str {
        match self {
            MeshRequest::AppendEntries(_) => "append_entries",
            MeshRequest::Vote(_) => "vote",
            MeshRequest::InstallSnapshot(_) => "install_snapshot",
            MeshRequest::Propose(_) => "propose",
            MeshRequest::Join(_) => "join",
            MeshRequest::Leave { .. } => "leave",
            MeshRequest::Renew => "renew",
        }
    }
}

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, NetError> {
    Ok(wire::encode(RPC_WIRE_VERSION, v)?)
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], max_len: usize) -> Result<T, NetError> {
    Ok(wire::decode(RPC_WIRE_VERSION, bytes, max_len)?)
}
