//! openraft for the registry: the type config, the node record kept in the membership, the
//! configuration from `[mesh]`, storage behind [`store::RaftStore`], and the network over the
//! [`crate::transport::Transport`].

pub mod log;
pub mod network;
pub mod redb_store;
pub mod sm;
pub mod store;

use std::io::Cursor;
use std::time::Duration;

use mindmesh_core::config::mesh::MeshConfig;
use mindmesh_core::registry::{NodeId, Outcome, Proposal};
use openraft::{SnapshotPolicy, StorageError, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::NetError;
use crate::runtime::MeshRuntime;

/// What the membership keeps about a node: enough for any member to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshNode {
    pub name: String,
    /// The libp2p peer id (empty on the in-memory network).
    pub peer_id: String,
    pub addrs: Vec<String>,
}

openraft::declare_raft_types!(
    /// The mesh's Raft: proposals to the registry in, outcomes out.
    pub TypeConfig:
        D = Proposal,
        R = Outcome,
        NodeId = NodeId,
        Node = MeshNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = MeshRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Membership = openraft::Membership<NodeId, MeshNode>;
pub type StoredMembership = openraft::StoredMembership<NodeId, MeshNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, MeshNode>;

/// Version tag of what the Raft store and RPCs encode.
pub const RAFT_WIRE_VERSION: u8 = 1;
/// Largest stored log entry decoded.
pub const MAX_ENTRY_BYTES: usize = 4 * 1024 * 1024;

/// openraft's config from the `[mesh]` section.
pub fn raft_config(cfg: &MeshConfig) -> Result<openraft::Config, NetError> {
    openraft::Config {
        cluster_name: "mindmesh".into(),
        heartbeat_interval: cfg.heartbeat_ms,
        election_timeout_min: cfg.election_timeout_min_ms,
        election_timeout_max: cfg.election_timeout_max_ms,
        install_snapshot_timeout: cfg.rpc_timeout_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_after_logs),
        // a chunk and its envelope must fit one request frame
        snapshot_max_chunk_size: (cfg.max_rpc_bytes / 2) as u64,
        max_in_snapshot_log_to_keep: cfg.snapshot_logs_kept,
        ..openraft::Config::default()
    }
    .validate()
    .map_err(|e| NetError::Config(format!("raft: {e}")))
}

/// The deadline openraft gives an RPC, bounded by ours.
pub(crate) fn rpc_deadline(option_ttl: Duration, cfg_ms: u64) -> Duration {
    option_ttl.min(Duration::from_millis(cfg_ms)).max(Duration::from_millis(1))
}

pub(crate) fn store_err(e: &NetError, write: bool) -> StorageError<NodeId> {
    if write { StorageIOError::write_logs(e).into() } else { StorageIOError::read_logs(e).into() }
}
