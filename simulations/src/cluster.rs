//! N mesh nodes in one process on the in-memory network. A node is its Raft store (which
//! outlives crashes), its mesh, a watcher recording every status it publishes, and simulated
//! processes: the personas the registry places on it, reported in its gossip.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::config::mesh::MeshConfig;
use mindmesh_core::metrics::HostSample;
use mindmesh_core::phase::{Health, Phase};
use mindmesh_core::registry::Registry;
use mindmesh_core::snapshot::{NodeSnapshot, PersonaFigures};
use mindmesh_net::raft::store::MemRaftStore;
use mindmesh_net::transport::mem::{MemConfig, MemNetwork, mem_addr};
use mindmesh_net::{MeshHandle, MeshParams, MeshRole, NetError, NodeId, NodeProfile, start_with};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A status a node published, as the watcher saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    pub at_ms: u64,
    pub node: NodeId,
    pub term: u64,
    pub role: MeshRole,
    pub leader: Option<NodeId>,
}

/// Status events buffered between two steps.
const STATUS_QUEUE: usize = 65_536;

pub(crate) struct SimNode {
    pub store: MemRaftStore,
    pub handle: Option<MeshHandle>,
    tasks: Vec<JoinHandle<()>>,
    boots: u64,
}

pub(crate) struct Cluster {
    pub net: MemNetwork,
    pub nodes: BTreeMap<NodeId, SimNode>,
    seed: u64,
    cancel: CancellationToken,
    status_tx: mpsc::Sender<StatusEvent>,
    pub status_rx: mpsc::Receiver<StatusEvent>,
    started: tokio::time::Instant,
}

impl Cluster {
    pub fn new(seed: u64, n: u64, cancel: CancellationToken) -> Self {
        let net = MemNetwork::new(seed, MemConfig::default(), cancel.clone());
        let (status_tx, status_rx) = mpsc::channel(STATUS_QUEUE);
        let nodes = (1..=n)
            .map(|id| (id, SimNode { store: MemRaftStore::new(), handle: None, tasks: Vec::new(), boots: 0 }))
            .collect();
        Cluster { net, nodes, seed, cancel, status_tx, status_rx, started: tokio::time::Instant::now() }
    }

    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn params(&self, id: NodeId, boots: u64) -> MeshParams {
        let mut config = MeshConfig { bootstrap: id == 1, ..MeshConfig::default() };
        config.join = self.nodes.keys().filter(|n| **n != id).map(|n| mem_addr(*n)).collect();
        config.join_backoff_initial_ms = 100;
        config.join_backoff_max_ms = 1000;
        // snapshot and purge often, so nodes back from a crash or a partition are caught up by
        // snapshot installation as well as by the log
        config.snapshot_after_logs = 20;
        config.snapshot_logs_kept = 5;
        MeshParams {
            config,
            profile: NodeProfile { name: format!("sim-{id}"), ..Default::default() },
            incarnation: boots,
            seed: Some(self.seed.wrapping_mul(31).wrapping_add(id).wrapping_add(boots << 32)),
        }
    }

    /// Start (or restart) a node on its store.
    pub async fn boot(&mut self, id: NodeId) -> Result<(), NetError> {
        let boots = self.nodes[&id].boots + 1;
        let params = self.params(id, boots);
        let (transport, events) = self.net.attach(id).await?;
        let store = self.nodes[&id].store.clone();
        let handle = start_with(transport, events, store, params, self.cancel.child_token()).await?;
        let tasks = vec![
            tokio::spawn(watch_status(handle.clone(), self.status_tx.clone(), self.started)),
            tokio::spawn(processes(handle.clone(), id)),
        ];
        let node = self.nodes.get_mut(&id).expect("known node");
        node.handle = Some(handle);
        node.tasks = tasks;
        node.boots = boots;
        Ok(())
    }

    /// Crash a node: off the network at once, its tasks gone; its store stays (unless
    /// `wipe`: the deliberate breakage that shows the checker can fail).
    pub async fn crash(&mut self, id: NodeId, wipe: bool) -> Result<(), NetError> {
        self.net.crash(id).await?;
        let node = self.nodes.get_mut(&id).expect("known node");
        if wipe {
            node.store = MemRaftStore::new();
        }
        for t in node.tasks.drain(..) {
            t.abort();
        }
        if let Some(h) = node.handle.take() {
            h.shutdown().await;
        }
        Ok(())
    }

    pub fn live(&self) -> impl Iterator<Item = (NodeId, &MeshHandle)> {
        self.nodes.iter().filter_map(|(id, n)| n.handle.as_ref().map(|h| (*id, h)))
    }

    pub fn down(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|(_, n)| n.handle.is_none()).map(|(id, _)| *id).collect()
    }

    pub fn handle(&self, id: NodeId) -> Option<&MeshHandle> {
        self.nodes.get(&id).and_then(|n| n.handle.as_ref())
    }

    /// The leader most live nodes follow, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.live().find(|(_, h)| h.status().role == MeshRole::Leader).map(|(id, _)| id)
    }

    pub fn registries(&self) -> Vec<(NodeId, Arc<Registry>)> {
        self.live().map(|(id, h)| (id, h.registry())).collect()
    }
}

/// Record every status a node publishes, with the virtual time.
async fn watch_status(h: MeshHandle, tx: mpsc::Sender<StatusEvent>, started: tokio::time::Instant) {
    let mut rx = h.watch_status();
    loop {
        let ev = {
            let s = rx.borrow_and_update();
            StatusEvent {
                at_ms: started.elapsed().as_millis() as u64,
                node: s.node_id,
                term: s.term,
                role: s.role,
                leader: s.leader,
            }
        };
        if tx.try_send(ev).is_err() {
            // the run judges an overflowing queue as an error of the harness
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The simulated supervisor: every gossip tick, the personas the registry places here are
/// "running", with figures derived from their names, and gossiped as this node's snapshot.
async fn processes(h: MeshHandle, me: NodeId) {
    let mut tick = tokio::time::interval(Duration::from_millis(1000));
    loop {
        tick.tick().await;
        let registry = h.registry();
        let personas = registry
            .personas_on(me)
            .map(|(name, p)| PersonaFigures {
                name: name.clone(),
                phase: Phase::Running,
                health: Health::Healthy,
                pid: Some(1000 + (p.created_index % 30_000) as u32),
                generation: p.generation,
                epoch: p.epoch,
                rss_bytes: 64 << 20,
                cpu_percent: 5.0,
                ..Default::default()
            })
            .collect();
        let snapshot = NodeSnapshot {
            node_id: me,
            node_name: format!("sim-{me}"),
            incarnation: 0,
            seq: 0,
            ts_ms: 0,
            host: HostSample { cpu_cores: 4, memory_total_bytes: 16 << 30, ..Default::default() },
            personas,
        };
        if h.publish_snapshot(snapshot).await.is_err() {
            return;
        }
    }
}
