//! What the mesh's tasks share: handles (Raft, transport, registry watch), the config, and the
//! two small atomics that are not worth an actor (the time of the last contact with a leader,
//! and the proposal counter).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mindmesh_core::config::mesh::MeshConfig;
use mindmesh_core::registry::{Capacity, NodeInfo, ProposalId, Registry};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::NodeId;
use crate::raft::{MeshNode, Raft};
use crate::transport::Transport;

/// What a node says about itself when it joins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeProfile {
    pub name: String,
    pub capacity: Capacity,
    pub labels: std::collections::BTreeMap<String, String>,
    /// The node's HTTP API and gateway address, published in the registry.
    pub api: String,
}

#[derive(Clone)]
pub(crate) struct Ctx<T: Transport> {
    pub me: NodeId,
    pub raft: Raft,
    pub transport: T,
    pub cfg: Arc<MeshConfig>,
    pub profile: Arc<NodeProfile>,
    /// How other members reach this node (in the Raft membership).
    pub mesh_node: Arc<MeshNode>,
    pub registry: watch::Receiver<Arc<Registry>>,
    pub started: Instant,
    /// `now_ms() + 1` of the last append from a leader that accepted us (0: never).
    contact_ms: Arc<AtomicU64>,
    nonce_base: u64,
    nonce_counter: Arc<AtomicU64>,
    /// This node's lease (fencing).
    pub lease: Arc<super::lease::LeaseClock>,
    wall_offset_ms: u64,
    /// The leader's record of when it last heard from each node (failover).
    pub failover: Arc<super::failover::Heard>,
}

impl<T: Transport> Ctx<T> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        raft: Raft,
        transport: T,
        cfg: MeshConfig,
        profile: NodeProfile,
        mesh_node: MeshNode,
        registry: watch::Receiver<Arc<Registry>>,
        nonce_base: u64,
        wall_offset_ms: u64,
    ) -> Self {
        Ctx {
            me: transport.local_id(),
            raft,
            transport,
            cfg: Arc::new(cfg),
            profile: Arc::new(profile),
            mesh_node: Arc::new(mesh_node),
            registry,
            started: Instant::now(),
            contact_ms: Arc::new(AtomicU64::new(0)),
            nonce_base,
            nonce_counter: Arc::new(AtomicU64::new(0)),
            lease: Arc::new(super::lease::LeaseClock::default()),
            wall_offset_ms,
            failover: Arc::new(super::failover::Heard::default()),
        }
    }

    /// Wall-clock milliseconds for records people read (decision times): the mesh clock plus
    /// the offset `Ctx::new` was given (0 in the simulator, which must replay exactly).
    pub fn wall_ms(&self) -> u64 {
        self.wall_offset_ms + self.now_ms()
    }

    /// Milliseconds since the mesh started, on tokio's clock (virtual in the simulator).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn leader_contact(&self) {
        self.contact_ms.store(self.now_ms() + 1, Ordering::Relaxed);
    }

    /// Milliseconds since a leader last reached this node, if ever.
    pub fn leader_contact_age_ms(&self) -> Option<u64> {
        match self.contact_ms.load(Ordering::Relaxed) {
            0 => None,
            t => Some(self.now_ms().saturating_sub(t - 1)),
        }
    }

    /// A fresh proposal id: a per-start random base plus a counter, so ids never repeat within
    /// a run and collide across runs with negligible probability.
    pub fn next_proposal_id(&self) -> ProposalId {
        let n = self.nonce_counter.fetch_add(1, Ordering::Relaxed);
        ProposalId { node: self.me, nonce: self.nonce_base.wrapping_add(n) }
    }

    /// This node as the registry should know it.
    pub fn node_info(&self) -> NodeInfo {
        NodeInfo {
            id: self.me,
            name: self.profile.name.clone(),
            addrs: self.mesh_node.addrs.clone(),
            capacity: self.profile.capacity.clone(),
            labels: self.profile.labels.clone(),
            api: self.profile.api.clone(),
        }
    }
}
