//! The mesh a node runs: one call starts it ([`start`] over libp2p, [`start_with`] over any
//! transport and store), and a cloneable [`MeshHandle`] is how the node talks to it.
//!
//! Tasks: the transport's actor (libp2p only), the mesh actor (events, gossip view, status,
//! commands; [`actor`]), the membership loop ([`maintain`]) and openraft's own tasks. One
//! `CancellationToken` stops them all; [`MeshHandle::shutdown`] waits until they have.

mod actor;
mod client;
mod ctx;
mod failover;
mod leader;
mod lease;
mod maintain;
mod server;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::clock::{Clock, SystemClock};
use mindmesh_core::config::mesh::MeshConfig;
use mindmesh_core::mesh_view::{MeshView, NodeView};
use mindmesh_core::registry::{Command, Outcome, Registry};
use mindmesh_core::snapshot::NodeSnapshot;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use ctx::NodeProfile;
pub use lease::Lease;
pub use status::{MeshRole, MeshStatus};

use crate::keys::{MESH_KEY_FILE, MeshKey, load_or_create_identity};
use crate::raft::log::LogStore;
use crate::raft::network::RaftNet;
use crate::raft::redb_store::RedbRaftStore;
use crate::raft::sm::StateMachineStore;
use crate::raft::store::{MemRaftStore, RaftStore};
use crate::raft::{MeshNode, Raft, raft_config};
use crate::transport::p2p::{self, P2pConfig};
use crate::transport::{PeerInfo, Transport, TransportEvent};
use crate::{NetError, NodeId};

/// Commands queued for the mesh actor.
const COMMAND_QUEUE: usize = 256;

/// What [`start_with`] needs besides a transport and a store.
#[derive(Debug, Clone)]
pub struct MeshParams {
    pub config: MeshConfig,
    pub profile: NodeProfile,
    /// Distinguishes runs of this node in its gossip: its start time, or a restart count.
    pub incarnation: u64,
    /// Seeds the join jitter and proposal ids (the simulator); None: the OS.
    pub seed: Option<u64>,
}

/// What [`start`] needs: the node's config and data dir.
#[derive(Clone)]
pub struct MeshStart {
    pub config: MeshConfig,
    pub profile: NodeProfile,
    /// Holds `node.key` (the identity) and, by default, `mesh.key`.
    pub data_dir: PathBuf,
    /// The node's store: Raft's tables go into it. None keeps Raft in memory (tests only: a
    /// restarted node would have lost its log).
    pub db: Option<Arc<redb::Database>>,
    /// The mesh key; None reads `config.key_file` (default `<data_dir>/mesh.key`).
    pub mesh_key: Option<MeshKey>,
}

/// Start the mesh over libp2p.
pub async fn start(opts: MeshStart, cancel: CancellationToken) -> Result<MeshHandle, NetError> {
    let cfg = &opts.config;
    cfg.validate()?;
    let keypair = load_or_create_identity(&opts.data_dir)?;
    let mesh_key = match opts.mesh_key {
        Some(k) => k,
        None => {
            let path = match &cfg.key_file {
                Some(p) if p.is_absolute() => p.clone(),
                Some(p) => opts.data_dir.join(p),
                None => opts.data_dir.join(MESH_KEY_FILE),
            };
            MeshKey::read(&path)?
        }
    };
    let parse = |field: &str, addrs: &[String]| -> Result<Vec<libp2p::Multiaddr>, NetError> {
        addrs.iter().map(|a| a.parse().map_err(|e| NetError::Config(format!("{field} {a:?}: {e}")))).collect()
    };
    let mut p2p_cfg = P2pConfig::new(keypair, mesh_key);
    p2p_cfg.listen = parse("listen", &cfg.listen)?;
    p2p_cfg.advertise = parse("advertise", &cfg.advertise)?;
    p2p_cfg.mdns = cfg.mdns;
    p2p_cfg.connect_timeout = Duration::from_millis(cfg.connect_timeout_ms);
    p2p_cfg.max_gossip_bytes = cfg.max_gossip_bytes;
    p2p_cfg.max_rpc_bytes = cfg.max_rpc_bytes;
    p2p_cfg.request_timeout = Duration::from_millis(cfg.propose_timeout_ms.max(cfg.rpc_timeout_ms) * 2);
    info!(fingerprint = %mesh_key.fingerprint(), "mesh key loaded");
    let (transport, events, _task) = p2p::start(p2p_cfg, cancel.clone()).await?;
    let params = MeshParams {
        config: opts.config.clone(),
        profile: opts.profile.clone(),
        incarnation: SystemClock.now_ms(),
        seed: None,
    };
    match opts.db {
        Some(db) => start_with(transport, events, RedbRaftStore::open(db)?, params, cancel).await,
        None => start_with(transport, events, MemRaftStore::new(), params, cancel).await,
    }
}

/// Start the mesh over any transport and Raft store (the simulator: the in-memory network).
pub async fn start_with<T: Transport, S: RaftStore>(
    transport: T,
    events: mpsc::Receiver<TransportEvent>,
    store: S,
    params: MeshParams,
    cancel: CancellationToken,
) -> Result<MeshHandle, NetError> {
    params.config.validate()?;
    let me = transport.local_id();
    let mut rng = match params.seed {
        Some(s) => SmallRng::seed_from_u64(s ^ me),
        None => SmallRng::from_os_rng(),
    };
    let listen_addrs = transport.listen_addrs().await?;
    let mesh_node =
        MeshNode { name: params.profile.name.clone(), peer_id: transport.local_peer_id(), addrs: listen_addrs.clone() };

    let (sm, registry_tx) = StateMachineStore::open(store.clone()).await?;
    let registry = registry_tx.subscribe();
    let net = RaftNet {
        transport: transport.clone(),
        rpc_timeout_ms: params.config.rpc_timeout_ms,
        heartbeat_ms: params.config.heartbeat_ms,
        max_rpc_bytes: params.config.max_rpc_bytes,
    };
    let raft = Raft::new(me, Arc::new(raft_config(&params.config)?), net, LogStore::new(store), sm)
        .await
        .map_err(|e| NetError::Raft(e.to_string()))?;

    // after a restart, reach the members we knew without waiting to be contacted
    let known: Vec<(NodeId, MeshNode)> = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .filter(|(id, _)| **id != me)
        .map(|(id, n)| (*id, n.clone()))
        .collect();
    for (id, n) in known {
        let _ = transport.add_peer(PeerInfo { node_id: id, peer_id: n.peer_id, addrs: n.addrs }).await;
    }

    let ctx = ctx::Ctx::new(
        raft.clone(),
        transport,
        params.config.clone(),
        params.profile,
        mesh_node,
        registry.clone(),
        rng.random(),
        // the simulator (seeded) replays exactly: no wall clock in what it commits
        if params.seed.is_some() { 0 } else { SystemClock.now_ms() },
    );
    let status0 = MeshStatus::from_metrics(me, &raft.metrics().borrow(), &mut Default::default(), None, 0);
    let (status_tx, status_rx) = watch::channel(status0);
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let (stopped_tx, stopped_rx) = watch::channel(false);
    let maintain_cancel = cancel.child_token();

    let actor = actor::Actor {
        ctx: ctx.clone(),
        commands: cmd_rx,
        events,
        status: status_tx,
        maintain: maintain_cancel.clone(),
        incarnation: params.incarnation,
        view: MeshView::new(),
        seq: 0,
        tasks: JoinSet::new(),
        invalid: BTreeMap::new(),
        invalid_since_ms: 0,
        connected: BTreeSet::new(),
        members: Default::default(),
    };
    let actor_cancel = cancel.clone();
    tokio::spawn(async move {
        actor.run(actor_cancel).await;
        let _ = stopped_tx.send(true);
    });
    tokio::spawn(maintain::election_grace(ctx.clone(), cancel.clone()));
    let enforced = params.config.fencing;
    let (lease_tx, lease_rx) = watch::channel(Lease { held: !enforced, until: None, enforced });
    if enforced {
        tokio::spawn(lease::run(ctx.clone(), lease_tx, cancel.clone()));
    } else {
        // With fencing off the lease never changes, but its watch must stay open for the
        // mesh's life: the node's fencing task ends when it closes, and with it the permission
        // its reconciler waits on — a node with `fencing = false` then never started a persona
        // (found by the simulator once it ran real nodes).
        let cancel = cancel.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            drop(lease_tx);
        });
    }
    tokio::spawn(failover::run(ctx.clone(), cancel.clone()));
    tokio::spawn(maintain::run(ctx, params.config.bootstrap, rng, maintain_cancel));
    info!(node = me, addrs = ?listen_addrs, bootstrap = params.config.bootstrap, "mesh started");

    Ok(MeshHandle {
        node_id: me,
        tx: cmd_tx,
        status: status_rx,
        registry,
        stopped: stopped_rx,
        cancel,
        listen_addrs: Arc::new(listen_addrs),
        lease: lease_rx,
        commits: Arc::new(CommitStats::default()),
    })
}

/// How this node's proposals fared, for `/metrics`: counted by outcome, and the time the
/// committed ones took (forwarding to the leader and retries through elections included).
#[derive(Debug)]
pub struct CommitStats {
    pub duration: mindmesh_core::telemetry::Histogram,
    pub committed: std::sync::atomic::AtomicU64,
    /// Refused by the registry's rules (a valid answer, not a fault of the mesh).
    pub rejected: std::sync::atomic::AtomicU64,
    /// No leader within the timeout, busy, shut down.
    pub failed: std::sync::atomic::AtomicU64,
}

impl Default for CommitStats {
    fn default() -> Self {
        CommitStats {
            duration: mindmesh_core::telemetry::Histogram::new(mindmesh_core::telemetry::COMMIT_S),
            committed: Default::default(),
            rejected: Default::default(),
            failed: Default::default(),
        }
    }
}

/// How the node talks to its mesh. Cheap to clone.
#[derive(Clone)]
pub struct MeshHandle {
    node_id: NodeId,
    tx: mpsc::Sender<actor::MeshCommand>,
    status: watch::Receiver<MeshStatus>,
    registry: watch::Receiver<Arc<Registry>>,
    stopped: watch::Receiver<bool>,
    cancel: CancellationToken,
    listen_addrs: Arc<Vec<String>>,
    lease: watch::Receiver<Lease>,
    commits: Arc<CommitStats>,
}

impl std::fmt::Debug for MeshHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MeshHandle({})", self.node_id)
    }
}

impl MeshHandle {
    /// This node's Raft id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Where other nodes reach this one (to pass as their `join`).
    pub fn listen_addrs(&self) -> &[String] {
        &self.listen_addrs
    }

    /// Leader, term, role, members, lease clock — now.
    pub fn status(&self) -> MeshStatus {
        self.status.borrow().clone()
    }

    /// Changes of [`MeshHandle::status`].
    pub fn watch_status(&self) -> watch::Receiver<MeshStatus> {
        self.status.clone()
    }

    /// This node's lease: while it is not held, the node must run no persona (fencing).
    pub fn lease(&self) -> Lease {
        *self.lease.borrow()
    }

    /// Changes of [`MeshHandle::lease`] (held or not).
    pub fn watch_lease(&self) -> watch::Receiver<Lease> {
        self.lease.clone()
    }

    /// The registry as this node has applied it (may lag the leader by a heartbeat).
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.borrow().clone()
    }

    /// Every applied change of the registry.
    pub fn watch_registry(&self) -> watch::Receiver<Arc<Registry>> {
        self.registry.clone()
    }

    /// Commit a command to the registry from any node (forwarded to the leader, retried
    /// through elections within `propose_timeout_ms`). A command the registry refuses is
    /// `NetError::Rejected`.
    pub async fn propose(&self, command: Command) -> Result<Outcome, NetError> {
        use std::sync::atomic::Ordering::Relaxed;
        let began = std::time::Instant::now();
        let (reply, rx) = oneshot::channel();
        let sent = self.send(actor::MeshCommand::Propose { command, reply }).await;
        let result = match sent {
            Ok(()) => rx.await.map_err(|_| NetError::Shutdown).and_then(|r| r),
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => {
                self.commits.duration.observe(began.elapsed());
                self.commits.committed.fetch_add(1, Relaxed);
            }
            Err(NetError::Rejected(_)) => {
                self.commits.rejected.fetch_add(1, Relaxed);
            }
            Err(_) => {
                self.commits.failed.fetch_add(1, Relaxed);
            }
        }
        result
    }

    /// How this node's proposals fared so far.
    pub fn commit_stats(&self) -> &CommitStats {
        &self.commits
    }

    /// Gossip this node's snapshot. The mesh fills in `node_id`, `incarnation` and `seq`.
    pub async fn publish_snapshot(&self, snapshot: NodeSnapshot) -> Result<(), NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(actor::MeshCommand::Publish { snapshot, reply }).await?;
        rx.await.map_err(|_| NetError::Shutdown)?
    }

    /// Every node's last snapshot with its age and staleness (this node included).
    pub async fn mesh_view(&self) -> Result<Vec<NodeView>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(actor::MeshCommand::View { reply }).await?;
        rx.await.map_err(|_| NetError::Shutdown)
    }

    /// Leave the mesh cleanly: the leader takes this node out of the registry and the
    /// membership (it hands over first if this node leads), then the mesh stops here. A removed
    /// node never learns of its removal from Raft (replication to it ends), so stopping is what
    /// keeps it from disturbing the members with elections.
    pub async fn leave(&self) -> Result<(), NetError> {
        self.remove(self.node_id).await?;
        self.shutdown().await;
        Ok(())
    }

    /// Take another node out of the mesh (an operator removing a dead node).
    pub async fn remove_node(&self, node: NodeId) -> Result<(), NetError> {
        self.remove(node).await
    }

    async fn remove(&self, node: NodeId) -> Result<(), NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(actor::MeshCommand::Leave { node, reply }).await?;
        rx.await.map_err(|_| NetError::Shutdown)?
    }

    /// Wait until some leader is known; its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, NetError> {
        let mut status = self.status.clone();
        let fut = status.wait_for(|s| s.leader.is_some());
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(s)) => s.leader.ok_or(NetError::NoLeader),
            Ok(Err(_)) => Err(NetError::Shutdown),
            Err(_) => Err(NetError::NoLeader),
        }
    }

    /// Stop every task of the mesh and wait until they have stopped.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        self.stopped().await;
    }

    /// Wait until the mesh has stopped (shut down, or its transport died).
    pub async fn stopped(&self) {
        let mut s = self.stopped.clone();
        let _ = s.wait_for(|stopped| *stopped).await;
    }

    async fn send(&self, cmd: actor::MeshCommand) -> Result<(), NetError> {
        self.tx.send(cmd).await.map_err(|_| NetError::Shutdown)
    }
}
