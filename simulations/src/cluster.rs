//! The simulated nodes: each a real [`Node`] — supervisor, lifecycle, reconciler, fencing,
//! checkpoints, gateway, API, the leader's brain loop — built from in-memory dependencies: its
//! mesh on the in-memory network, Raft in a [`MemRaftStore`], its records in a `MemStore`, its
//! processes in a [`MemHost`], time on tokio's paused clock and one seed for every random
//! choice. A crash drops the node where it stands; its stores, data dir and host (with the
//! processes it left running) outlive it, as disks and processes outlive a killed daemon.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use mindmesh_core::config::NodeConfig;
use mindmesh_core::registry::Registry;
use mindmesh_net::mesh::Lease;
use mindmesh_net::raft::store::MemRaftStore;
use mindmesh_net::transport::mem::{MemConfig, MemNetwork, mem_addr};
use mindmesh_net::{MeshHandle, MeshRole, NetError, NodeId};
use mindmesh_node::daemon::{ApiDep, MeshDep, NodeDeps, NodeFaults, StoreDep};
use mindmesh_node::{Node, NodeError};
use mindmesh_store::MemStore;
use mindmesh_supervisor::host::{HostEventKind, MemHost, Program, TokioClock};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::SimConfig;
use crate::processes::{CRASH_SIGNAL, ProcEvent, ProcKind, micros_since};

/// The command every simulated persona runs (a server that is up 20 ms after its start).
pub const PERSONA_COMMAND: &str = "sim";
/// Wall-clock time at the start of every run (2026-01-01), so a seed replays exactly; the
/// nodes' clocks (and the times in their decision log) read it plus the run's virtual time.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    pub at_ms: u64,
    pub node: NodeId,
    pub term: u64,
    pub role: MeshRole,
    pub leader: Option<NodeId>,
}

/// Statuses buffered between two steps of the checker.
const STATUS_QUEUE: usize = 65_536;

pub(crate) struct SimNode {
    pub raft: MemRaftStore,
    store: Arc<MemStore>,
    pub host: MemHost,
    data_dir: tempfile::TempDir,
    pub node: Option<Node>,
    status_task: Option<JoinHandle<()>>,
    pub boots: u64,
}

pub(crate) struct Cluster {
    pub net: MemNetwork,
    pub nodes: BTreeMap<NodeId, SimNode>,
    seed: u64,
    cfg: SimConfig,
    cancel: CancellationToken,
    clock: TokioClock,
    status_tx: mpsc::Sender<StatusEvent>,
    pub status_rx: mpsc::Receiver<StatusEvent>,
    pub started: tokio::time::Instant,
}

pub(crate) struct Crashed {
    pub lease: Lease,
}

fn harness(e: impl std::fmt::Display) -> NetError {
    NetError::Io(std::io::Error::other(e.to_string()))
}

impl Cluster {
    pub fn new(seed: u64, cfg: &SimConfig, cancel: CancellationToken) -> Result<Self, NetError> {
        let net = MemNetwork::new(seed, MemConfig::default(), cancel.clone());
        let (status_tx, status_rx) = mpsc::channel(STATUS_QUEUE);
        let mut nodes = BTreeMap::new();
        for id in 1..=cfg.nodes {
            let host = MemHost::new(seed.wrapping_mul(0x9e37_79b9).wrapping_add(id))
                .with_program(PERSONA_COMMAND, Program::server());
            let store = MemStore::new(Default::default()).map_err(harness)?;
            let data_dir = tempfile::Builder::new().prefix(&format!("mm-sim-{seed}-{id}-")).tempdir()?;
            nodes.insert(
                id,
                SimNode {
                    raft: MemRaftStore::new(),
                    store: Arc::new(store),
                    host,
                    data_dir,
                    node: None,
                    status_task: None,
                    boots: 0,
                },
            );
        }
        Ok(Cluster {
            net,
            nodes,
            seed,
            cfg: cfg.clone(),
            cancel,
            clock: TokioClock::new(EPOCH_MS),
            status_tx,
            status_rx,
            started: tokio::time::Instant::now(),
        })
    }

    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    /// Node `id`'s config: the simulator's mesh timings, the first node founding the mesh.
    fn config(&self, id: NodeId) -> NodeConfig {
        let mut config = NodeConfig::default();
        config.node.name = format!("sim-{id}");
        config.node.data_dir = self.nodes[&id].data_dir.path().to_path_buf();
        config.mesh = self.cfg.mesh();
        config.mesh.bootstrap = id == 1;
        config.mesh.join = self.nodes.keys().filter(|n| **n != id).map(|n| mem_addr(*n)).collect();
        config
    }

    pub async fn boot(&mut self, id: NodeId) -> Result<(), NetError> {
        let boots = self.nodes[&id].boots + 1;
        let config = self.config(id);
        let (transport, events) = self.net.attach(id).await?;
        let n = &self.nodes[&id];
        let deps = NodeDeps {
            host: Arc::new(n.host.clone()),
            store: StoreDep::Memory(Box::new(n.store.clone())),
            mesh: MeshDep::Memory { transport, events, raft: n.raft.clone(), incarnation: boots },
            clock: Arc::new(self.clock.clone()),
            rng_seed: Some(self.seed.wrapping_mul(31).wrapping_add(id).wrapping_add(boots << 32)),
            api: ApiDep::InProcess { advertise: SocketAddr::from(([10, 0, 0, id as u8], 7700)) },
            guard_exe: None,
            faults: NodeFaults {
                ignore_lease: self.cfg.broken_fencing,
                plan_once: self.cfg.broken_desired,
                skip_restarts: self.cfg.broken_audit,
            },
            rejoin_as_new: false,
        };
        let node = Node::start_with(config, deps, self.cancel.child_token()).await.map_err(|e| match e {
            NodeError::Mesh(e) => e,
            other => harness(other),
        })?;
        let status = tokio::spawn(watch_status(node.mesh.clone(), self.status_tx.clone(), self.started));
        let n = self.nodes.get_mut(&id).expect("known node");
        n.node = Some(node);
        n.status_task = Some(status);
        n.boots = boots;
        Ok(())
    }

    /// Kill node `id` as kill -9 would; its processes run on. `wipe` forgets its Raft store.
    pub async fn crash(&mut self, id: NodeId, wipe: bool) -> Result<Option<Crashed>, NetError> {
        self.net.crash(id).await?;
        let n = self.nodes.get_mut(&id).expect("known node");
        if wipe {
            n.raft = MemRaftStore::new();
        }
        if let Some(t) = n.status_task.take() {
            t.abort();
        }
        let Some(node) = n.node.take() else { return Ok(None) };
        let crashed = Crashed { lease: node.mesh.lease() };
        node.crash().await;
        Ok(Some(crashed))
    }

    /// Crash a persona's process on node `id`, if it runs one.
    pub fn crash_persona(&self, id: NodeId, persona: &str) -> bool {
        let Some(n) = self.nodes.get(&id) else { return false };
        n.host.processes().into_iter().any(|p| p.persona == persona && n.host.crash(p.pid, CRASH_SIGNAL))
    }

    /// What node `id`'s fence guard does at its lease's expiry when the node is dead: kill
    /// every process the node started.
    pub fn guard_kills(&self, id: NodeId) -> usize {
        let n = &self.nodes[&id];
        let mut killed = 0;
        for p in n.host.processes() {
            if n.host.crash(p.pid, 9) {
                killed += 1;
            }
        }
        killed
    }

    /// Every process start and exit on every host since the last call, in time order.
    pub fn drain_process_events(&self) -> Result<Vec<ProcEvent>, String> {
        let mut all = Vec::new();
        for (id, n) in &self.nodes {
            let (events, dropped) = n.host.drain_events();
            if dropped > 0 {
                return Err(format!("node {id}: {dropped} process events dropped"));
            }
            all.extend(events.into_iter().map(|e| ProcEvent {
                at_us: micros_since(self.started, e.at),
                node: *id,
                pid: e.pid,
                persona: e.persona,
                kind: match e.kind {
                    HostEventKind::Spawned => ProcKind::Start,
                    HostEventKind::Exited(s) => ProcKind::Exit(s),
                },
            }));
        }
        // stable: events of one host keep their order
        all.sort_by_key(|e| e.at_us);
        Ok(all)
    }

    pub fn live(&self) -> impl Iterator<Item = (NodeId, &MeshHandle)> {
        self.nodes.iter().filter_map(|(id, n)| n.node.as_ref().map(|node| (*id, &node.mesh)))
    }

    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(&id).and_then(|n| n.node.as_ref())
    }

    pub fn down(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|(_, n)| n.node.is_none()).map(|(id, _)| *id).collect()
    }

    pub fn handle(&self, id: NodeId) -> Option<&MeshHandle> {
        self.nodes.get(&id).and_then(|n| n.node.as_ref()).map(|n| &n.mesh)
    }

    /// The leader most live nodes follow, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.live().find(|(_, h)| h.status().role == MeshRole::Leader).map(|(id, _)| id)
    }

    pub fn registries(&self) -> Vec<(NodeId, Arc<Registry>)> {
        self.live().map(|(id, h)| (id, h.registry())).collect()
    }

    /// Stop every live node in order (the end of a run).
    pub async fn shutdown(&mut self) {
        for n in self.nodes.values_mut() {
            if let Some(t) = n.status_task.take() {
                t.abort();
            }
            if let Some(node) = n.node.take() {
                node.crash().await;
            }
        }
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
