//! N mesh nodes in one process on the in-memory network. A node is its Raft store (which
//! outlives crashes), its mesh, a watcher recording every status it publishes, and its
//! simulated persona processes ([`crate::processes`]), which report to the run's process table.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use mindmesh_core::registry::Registry;
use mindmesh_net::mesh::Lease;
use mindmesh_net::raft::store::MemRaftStore;
use mindmesh_net::transport::mem::{MemConfig, MemNetwork, mem_addr};
use mindmesh_net::{MeshHandle, MeshParams, MeshRole, NetError, NodeId, NodeProfile, start_with};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::SimConfig;
use crate::processes::{self, NodeProcs, ProcCmd, ProcEvent};

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
    procs: Option<mpsc::Sender<ProcCmd>>,
    pub boots: u64,
}

pub(crate) struct Cluster {
    pub net: MemNetwork,
    pub nodes: BTreeMap<NodeId, SimNode>,
    seed: u64,
    cfg: SimConfig,
    cancel: CancellationToken,
    status_tx: mpsc::Sender<StatusEvent>,
    pub status_rx: mpsc::Receiver<StatusEvent>,
    proc_tx: mpsc::Sender<ProcEvent>,
    pub proc_rx: mpsc::Receiver<ProcEvent>,
    /// Process events that did not fit their queue.
    pub proc_dropped: Arc<AtomicU64>,
    pub started: tokio::time::Instant,
}

/// A crashed node's last lease, which bounds how long its processes outlive it.
pub(crate) struct Crashed {
    pub boots: u64,
    pub lease: Lease,
}

impl Cluster {
    pub fn new(seed: u64, cfg: &SimConfig, cancel: CancellationToken) -> Self {
        let net = MemNetwork::new(seed, MemConfig::default(), cancel.clone());
        let (status_tx, status_rx) = mpsc::channel(STATUS_QUEUE);
        let (proc_tx, proc_rx) = mpsc::channel(processes::EVENT_QUEUE);
        let nodes = (1..=cfg.nodes)
            .map(|id| {
                (id, SimNode { store: MemRaftStore::new(), handle: None, tasks: Vec::new(), procs: None, boots: 0 })
            })
            .collect();
        Cluster {
            net,
            nodes,
            seed,
            cfg: cfg.clone(),
            cancel,
            status_tx,
            status_rx,
            proc_tx,
            proc_rx,
            proc_dropped: Arc::new(AtomicU64::new(0)),
            started: tokio::time::Instant::now(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn params(&self, id: NodeId, boots: u64) -> MeshParams {
        let mut config = self.cfg.mesh();
        config.bootstrap = id == 1;
        config.join = self.nodes.keys().filter(|n| **n != id).map(|n| mem_addr(*n)).collect();
        MeshParams {
            config,
            profile: NodeProfile { name: format!("sim-{id}"), ..Default::default() },
            incarnation: boots,
            seed: Some(self.seed.wrapping_mul(31).wrapping_add(id).wrapping_add(boots << 32)),
        }
    }

    /// Start (or restart) a node on its store, with its processes.
    pub async fn boot(&mut self, id: NodeId) -> Result<(), NetError> {
        let boots = self.nodes[&id].boots + 1;
        let params = self.params(id, boots);
        let (transport, events) = self.net.attach(id).await?;
        let store = self.nodes[&id].store.clone();
        let handle = start_with(transport, events, store, params, self.cancel.child_token()).await?;
        let (cmd_tx, cmd_rx) = mpsc::channel(processes::COMMAND_QUEUE);
        let procs = NodeProcs {
            mesh: handle.clone(),
            me: id,
            boots,
            seed: self.seed,
            started: self.started,
            broken_fencing: self.cfg.broken_fencing,
            restart_backoff_ms: self.cfg.restart_backoff_ms,
            commands: cmd_rx,
            events: self.proc_tx.clone(),
            dropped: self.proc_dropped.clone(),
        };
        let tasks = vec![
            tokio::spawn(watch_status(handle.clone(), self.status_tx.clone(), self.started)),
            tokio::spawn(procs.run()),
        ];
        let node = self.nodes.get_mut(&id).expect("known node");
        node.handle = Some(handle);
        node.tasks = tasks;
        node.procs = Some(cmd_tx);
        node.boots = boots;
        Ok(())
    }

    /// Crash a node: off the network at once, its tasks gone; its store stays (unless
    /// `wipe`: the deliberate breakage that shows the checker can fail). Its persona processes
    /// are left to the caller: they outlive the node until its lease's expiry.
    pub async fn crash(&mut self, id: NodeId, wipe: bool) -> Result<Option<Crashed>, NetError> {
        self.net.crash(id).await?;
        let node = self.nodes.get_mut(&id).expect("known node");
        if wipe {
            node.store = MemRaftStore::new();
        }
        for t in node.tasks.drain(..) {
            t.abort();
        }
        node.procs = None;
        let crashed = node.handle.as_ref().map(|h| Crashed { boots: node.boots, lease: h.lease() });
        if let Some(h) = node.handle.take() {
            h.shutdown().await;
        }
        Ok(crashed)
    }

    /// Crash a persona running on a live node (its node restarts it after a backoff).
    pub fn crash_persona(&self, id: NodeId, persona: &str) -> bool {
        let Some(tx) = self.nodes.get(&id).and_then(|n| n.procs.as_ref()) else { return false };
        tx.try_send(ProcCmd::Crash { persona: persona.to_owned() }).is_ok()
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
