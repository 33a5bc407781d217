//! The node daemon: opens the store, starts the supervisor and takes over what a previous
//! run left, joins (or founds) its mesh, registers the personas of its config, serves the API
//! and the gateway, and shuts down in order.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::clock::{Clock, SystemClock};
use mindmesh_core::config::NodeConfig;
use mindmesh_net::MeshHandle;
use mindmesh_net::raft::store::MemRaftStore;
use mindmesh_net::transport::TransportEvent;
use mindmesh_net::transport::mem::MemTransport;
use mindmesh_store::{RedbStore, Store, StoreHandle, StoreThread};
use mindmesh_supervisor::{OsHost, ProcessHost, SpawnGate, Supervisor, SupervisorHandle, SupervisorSettings};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::control::Control;
use crate::error::{NodeError, Result};
use crate::gateway::{self, GateTable, Gateway};
use crate::mesh::checkpoint::Checkpointer;
use crate::mesh::fence::Fence;
use crate::mesh::gossip::Gossip;
use crate::mesh::leader::Leader;
use crate::mesh::log_retention::LogRetention;
use crate::mesh::reconcile::Reconciler;
use crate::mesh::{self};
use crate::recorder::{Latest, Recorder};
use crate::waker::Waker;

/// Reports in flight between the supervisor and the recorder; the supervisor waits beyond it.
const REPORT_QUEUE: usize = 4096;
/// The store's file in the data dir (records, events, series and Raft's log and vote).
pub const STORE_FILE: &str = "mindmesh.redb";
pub use crate::local::API_ADDR_FILE;

/// What a node is built from: where its processes run, where it keeps its records, how it
/// reaches its peers, what time it is, where its randomness comes from and how its API is
/// reached. [`NodeDeps::os`] is production; the simulator gives in-memory twins of each.
pub struct NodeDeps {
    pub host: Arc<dyn ProcessHost>,
    pub store: StoreDep,
    pub mesh: MeshDep,
    pub clock: Arc<dyn Clock>,
    /// Seeds the supervisor's jitter and the node's instance id; None: from the OS.
    pub rng_seed: Option<u64>,
    pub api: ApiDep,
    /// The `mindmesh` executable, to run the fence guard beside the node (see
    /// [`crate::mesh::guard`]); None runs none (fencing then relies on the node alone).
    pub guard_exe: Option<PathBuf>,
    /// Deliberately broken rules, for the simulator to prove its checks can fail; all off in
    /// production.
    pub faults: NodeFaults,
    /// The operator's word that this node, a former member whose store is empty or missing,
    /// may start as a new member under a new identity (`node start --rejoin-as-new`); without
    /// it such a node refuses to start (see [`NodeError::StoreLost`]).
    pub rejoin_as_new: bool,
}

/// Rules a node can be told to break, so that the simulator shows its invariants catch each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeFaults {
    /// The node ignores its lease: nothing fences its personas and its spawn gate stays open,
    /// while the mesh still fails its personas over when it goes silent.
    pub ignore_lease: bool,
    /// The reconciler plans each persona once and ignores every later change of its desired
    /// state (a hibernate, a start, a budget) while the persona stays on this node.
    pub plan_once: bool,
    /// The reconciler skips every restart it plans and reports it carried out: the decision
    /// log says "executed" of a restart that never happened.
    pub skip_restarts: bool,
}

/// Where the node keeps its records (and, with redb, Raft's log).
pub enum StoreDep {
    /// `<data_dir>/mindmesh.redb`, on its own thread.
    Redb,
    /// A store in memory, run as a task of the node's runtime (the simulator).
    Memory(Box<dyn Store>),
}

/// How the node reaches its peers.
pub enum MeshDep {
    /// libp2p, as configured (Raft in the redb store).
    P2p,
    /// An in-memory transport with Raft in memory; `incarnation` tells this run from the last.
    Memory { transport: MemTransport, events: mpsc::Receiver<TransportEvent>, raft: MemRaftStore, incarnation: u64 },
}

/// How the API is reached.
pub enum ApiDep {
    /// Bound on `config.api.listen`.
    Listen,
    /// Not bound: requests come through [`Node::call`]; peers are told `advertise`.
    InProcess { advertise: SocketAddr },
}

impl NodeDeps {
    /// The real world: OS processes, redb, libp2p, the API on its socket.
    pub fn os(config: &NodeConfig, clock: Arc<dyn Clock>, guard_exe: Option<PathBuf>) -> Result<NodeDeps> {
        Ok(NodeDeps {
            host: Arc::new(OsHost::new(config.supervisor.health_timeout_ms)?),
            store: StoreDep::Redb,
            mesh: MeshDep::P2p,
            clock,
            rng_seed: None,
            api: ApiDep::Listen,
            guard_exe,
            faults: NodeFaults::default(),
            rejoin_as_new: false,
        })
    }
}

/// A started node. Dropping it does not stop it: call [`Node::shutdown`] or cancel the token.
pub struct Node {
    pub api_addr: SocketAddr,
    pub supervisor: SupervisorHandle,
    pub store: StoreHandle,
    pub mesh: MeshHandle,
    /// The API as a service, for requests that do not come over a socket.
    router: axum::Router,
    shutdown: CancellationToken,
    store_failure: StoreFailure,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
    store_thread: StoreThread,
}

/// Whether a node stopped because its store failed, to ask once it has stopped.
#[derive(Debug, Clone)]
pub struct StoreFailure {
    health: mindmesh_store::StoreHealth,
    path: PathBuf,
    data_dir: PathBuf,
}

impl StoreFailure {
    /// The failure, as the error the node's process ends with; None if the store never failed.
    pub fn error(&self) -> Option<NodeError> {
        self.health.failure().map(|reason| NodeError::StoreFailed {
            path: self.path.display().to_string(),
            data_dir: self.data_dir.display().to_string(),
            reason: reason.to_string(),
        })
    }
}

impl Node {
    /// Start a node from its config; it runs until `shutdown` is cancelled.
    pub async fn start(config: NodeConfig, shutdown: CancellationToken) -> Result<Node> {
        Self::start_with_clock(config, shutdown, Arc::new(SystemClock), None).await
    }

    /// `guard_exe`: the `mindmesh` executable, to run the fence guard beside the node (see
    /// [`crate::mesh::guard`]); None runs none (fencing then relies on the node alone).
    pub async fn start_with_clock(
        config: NodeConfig,
        shutdown: CancellationToken,
        clock: Arc<dyn Clock>,
        guard_exe: Option<PathBuf>,
    ) -> Result<Node> {
        let deps = NodeDeps::os(&config, clock, guard_exe)?;
        Self::start_with(config, deps, shutdown).await
    }

    /// Start a node from its config and its dependencies; it runs until `shutdown` is
    /// cancelled. A store that fails while the node starts is reported as
    /// [`NodeError::StoreFailed`], naming the file.
    pub async fn start_with(config: NodeConfig, deps: NodeDeps, shutdown: CancellationToken) -> Result<Node> {
        let data_dir = config.node.data_dir.clone();
        Self::start_inner(config, deps, shutdown).await.map_err(|e| match e {
            NodeError::Store(se) if se.is_fatal() => NodeError::StoreFailed {
                path: data_dir.join(STORE_FILE).display().to_string(),
                data_dir: data_dir.display().to_string(),
                reason: se.to_string(),
            },
            e => e,
        })
    }

    async fn start_inner(config: NodeConfig, deps: NodeDeps, shutdown: CancellationToken) -> Result<Node> {
        config.validate()?;
        let NodeDeps {
            host,
            store: store_dep,
            mesh: mesh_dep,
            clock,
            rng_seed,
            api: api_dep,
            guard_exe,
            faults,
            rejoin_as_new,
        } = deps;
        let data_dir = config.node.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|e| NodeError::io(format!("create {}", data_dir.display()), e))?;
        let node_name = node_name(&config);
        tracing::info!(node = %node_name, data_dir = %data_dir.display(), "starting node");

        let (store, store_thread, db) = match store_dep {
            StoreDep::Redb => {
                let store_path = data_dir.join(STORE_FILE);
                check_member_store(&data_dir, &store_path, rejoin_as_new)?;
                let redb = RedbStore::open(&store_path, config.store.clone()).map_err(|e| match e {
                    // held, not damaged: nothing to restore or move aside
                    mindmesh_store::StoreError::Open { path, error }
                        if matches!(
                            error.cause(),
                            mindmesh_store::StoreError::Database(redb::Error::DatabaseAlreadyOpen)
                        ) =>
                    {
                        NodeError::StoreInUse { path, data_dir: data_dir.display().to_string() }
                    }
                    mindmesh_store::StoreError::Open { path, error } => NodeError::StoreUnusable {
                        path,
                        data_dir: data_dir.display().to_string(),
                        reason: error.to_string(),
                    },
                    e => NodeError::Store(e),
                })?;
                // Raft's log and state machine live in the same file, in tables of their own;
                // a failure of the file, whoever meets it, fails the store (see watch_store)
                let db = redb.database();
                let health = redb.health();
                let (store, thread) = StoreHandle::spawn_watched(Box::new(redb), REPORT_QUEUE, health)?;
                tracing::info!(path = %store_path.display(), "store open and verified");
                (store, thread, Some(db))
            }
            StoreDep::Memory(mem) => {
                let (store, thread) = StoreHandle::spawn_in_task(mem, REPORT_QUEUE);
                (store, thread, None)
            }
        };

        let (reports_tx, reports_rx) = mpsc::channel(REPORT_QUEUE);
        let (seq_tx, seq_rx) = watch::channel(store.last_event_seq().await?);
        let (host_tx, host_rx) = watch::channel(None);
        let (latest_tx, latest_rx) = watch::channel(Arc::new(Latest::default()));
        let gates = GateTable::default();
        let telemetry = Arc::new(crate::telemetry::Telemetry::default());
        let recorder = tokio::spawn(
            Recorder::new(store.clone(), reports_rx, seq_tx, host_tx)
                .with_behaviour(gates.meters())
                .with_telemetry(telemetry.clone())
                .with_latest(latest_tx)
                .run(),
        );

        let instance = instance_id(&data_dir, rng_seed)?;
        // fencing: until the lease is known, a restarted node runs what it had only until the
        // expiry its previous run wrote; with fencing off, always
        let spawn_gate = Arc::new(SpawnGate::new(if config.mesh.fencing && !faults.ignore_lease {
            Fence::boot_grace_until_ms(&data_dir)
        } else {
            u64::MAX
        }));
        let guard = match (&guard_exe, config.mesh.fencing) {
            (Some(exe), true) => match crate::mesh::guard::spawn(exe, &data_dir, &instance) {
                Ok(child) => Some(child),
                Err(e) => {
                    tracing::warn!(error = %e, "no fence guard: a dead or frozen node's personas run on until it restarts");
                    None
                }
            },
            _ => None,
        };
        let settings = SupervisorSettings {
            config: config.supervisor.clone(),
            data_dir: data_dir.clone(),
            logs: Some(config.logs.clone()),
            instance,
            max_state_bytes: config.store.max_state_bytes,
            clock: clock.clone(),
            spawn_gate: Some(spawn_gate.clone()),
            host,
            rng_seed,
        };
        let supervisor_stop = CancellationToken::new();
        // operator actions are written to the event log by the recorder, in order with the rest
        let audit = reports_tx.clone();
        let (supervisor, supervisor_task) = Supervisor::spawn(settings, reports_tx, supervisor_stop.clone())?;
        tracing::info!(limits = supervisor.limits_enforcement(), "supervisor started");

        // local autonomy: what ran here runs again at once, leader or not
        let records = store.list_personas().await?;
        let summary = supervisor.restore(records).await?;
        tracing::info!(
            adopted = summary.adopted.len(),
            replaced = summary.replaced.len(),
            started = summary.started.len(),
            strays_killed = summary.strays_killed,
            "took over the personas of the previous run"
        );

        let (listener, api_addr) = match api_dep {
            ApiDep::Listen => {
                let listener = tokio::net::TcpListener::bind(config.api.listen)
                    .await
                    .map_err(|e| NodeError::io(format!("bind the API on {}", config.api.listen), e))?;
                let addr = listener.local_addr().map_err(|e| NodeError::io("API address", e))?;
                (Some(listener), addr)
            }
            ApiDep::InProcess { advertise } => (None, advertise),
        };

        // the mesh stops after the supervisor (its personas' last states are still reported)
        let mesh_stop = CancellationToken::new();
        let mesh_in_memory = matches!(mesh_dep, MeshDep::Memory { .. });
        let mesh = match (mesh_dep, db) {
            (MeshDep::P2p, Some(db)) => {
                mesh::start(&config, &node_name, &data_dir, db, api_addr, mesh_stop.clone()).await?
            }
            (MeshDep::P2p, None) => {
                return Err(NodeError::Deps("a mesh over libp2p keeps Raft in the redb store"));
            }
            (MeshDep::Memory { transport, events, raft, incarnation }, _) => {
                let params = mesh::params(&config, &node_name, api_addr, incarnation, rng_seed);
                let handle = mindmesh_net::start_with(transport, events, raft, params, mesh_stop.clone()).await?;
                tracing::info!(node_id = handle.node_id(), "mesh started in memory");
                handle
            }
        };

        // opened now and held: renewing it must never need a descriptor the node may lack
        let lease_file = crate::mesh::fence::LeaseFile::open(&data_dir).map_err(|e| {
            NodeError::io(format!("open {}", data_dir.join(crate::mesh::fence::LEASE_FILE).display()), e)
        })?;
        // fencing: whether this node may run personas now (its lease, or a boot grace)
        let (may_run_tx, may_run) = watch::channel(true);
        let fence = if faults.ignore_lease {
            // broken on purpose: may run, always (the watch stays open for the node's life)
            let stop = shutdown.clone();
            tokio::spawn(async move {
                stop.cancelled().await;
                drop((may_run_tx, spawn_gate, lease_file));
            })
        } else {
            tokio::spawn(
                Fence {
                    mesh: mesh.clone(),
                    supervisor: supervisor.clone(),
                    lease_file,
                    clock: clock.clone(),
                    may_run: may_run_tx,
                    gate: spawn_gate,
                    lease_ms: config.mesh.lease_ms,
                }
                .run(shutdown.clone()),
            )
        };
        // memory-aware admission of every wake: the actor starts once the control facade exists
        let (admitter, admit_inbox) = crate::admit::Admitter::channel(supervisor.status());
        let waker =
            Waker::new(supervisor.clone(), store.clone()).guarded(mesh.clone(), may_run.clone()).admitting(admitter);
        // nodes vouch for the callers whose requests they forward, with a key only members hold
        let key_path = mesh::key_path(&config, &data_dir);
        let mesh_key = match mindmesh_net::keys::MeshKey::read(&key_path) {
            Ok(key) => key,
            // a mesh in memory has no key file: its members share nothing but the process
            Err(_) if mesh_in_memory => mindmesh_net::keys::MeshKey::generate()?,
            Err(e) => return Err(NodeError::Mesh(e)),
        };
        let forward_key = crate::http::forward::ForwardKey::derive(mesh_key.to_file_string().as_bytes());
        let forward = crate::http::forward::Forwarder::new(
            forward_key.clone(),
            &node_name,
            Duration::from_millis(config.api.forward_timeout_ms),
            clock.clone(),
        )?;
        let remote = gateway::Remote {
            me: mesh.node_id(),
            registry: mesh.watch_registry(),
            forward: forward.clone(),
            may_run: may_run.clone(),
        };
        let (gateway, gateway_task) = Gateway::spawn(
            config.gateway.clone(),
            Some(remote),
            gates,
            supervisor.status(),
            waker.clone(),
            clock.clone(),
            shutdown.clone(),
        );
        let control = Control::new(
            supervisor.clone(),
            gateway.clone(),
            waker,
            Duration::from_millis(config.gateway.drain_timeout_ms),
            Duration::from_millis(config.supervisor.stop_grace_ms.saturating_add(1000)),
        );
        let capacity = tokio::spawn(
            crate::capacity::Keeper {
                config: config.node.capacity.clone(),
                control: control.clone(),
                supervisor: supervisor.clone(),
                gateway: gateway.clone(),
                host: host_rx.clone(),
                clock: clock.clone(),
                reports: audit.clone(),
                reserve_for: Duration::from_millis(config.supervisor.start_timeout_ms),
                settle_timeout: Duration::from_millis(config.supervisor.stop_grace_ms.saturating_add(1000)),
            }
            .run(admit_inbox, shutdown.clone()),
        );
        let idle = tokio::spawn(crate::idle::run(
            control.clone(),
            gateway.clone(),
            supervisor.status(),
            host_rx.clone(),
            clock.clone(),
            Duration::from_millis(config.gateway.idle_check_interval_ms),
            shutdown.clone(),
        ));

        let loops = shutdown.child_token();
        let (report_tx, report_rx) = watch::channel(None);
        let (snapshot_tx, snapshot_rx) = tokio::sync::mpsc::channel(crate::mesh::leader::MAX_PENDING_SNAPSHOTS);
        let gossip = tokio::spawn(
            Gossip {
                mesh: mesh.clone(),
                node_name: node_name.clone(),
                status: supervisor.status(),
                latest: latest_rx,
                host: host_rx.clone(),
                clock: clock.clone(),
                interval: Duration::from_millis(config.mesh.gossip_interval_ms),
            }
            .run(loops.clone()),
        );
        let reconciler = tokio::spawn(
            Reconciler {
                mesh: mesh.clone(),
                supervisor: supervisor.clone(),
                control: control.clone(),
                store: store.clone(),
                clock: clock.clone(),
                may_run: may_run.clone(),
                plan_once: faults.plan_once,
                skip_restarts: faults.skip_restarts,
            }
            .run(loops.clone()),
        );
        let checkpointer = tokio::spawn(
            Checkpointer {
                mesh: mesh.clone(),
                supervisor: supervisor.clone(),
                store: store.clone(),
                clock: clock.clone(),
                interval: Duration::from_millis(config.mesh.checkpoint_interval_ms),
                max_bytes: config.mesh.max_checkpoint_bytes,
                may_run: may_run.clone(),
            }
            .run(loops.clone()),
        );
        let leader = tokio::spawn(
            Leader {
                mesh: mesh.clone(),
                config: brain_config(&config),
                clock: clock.clone(),
                gossip_interval: Duration::from_millis(config.mesh.gossip_interval_ms),
                report: report_tx,
                snapshots: snapshot_rx,
                telemetry: telemetry.clone(),
            }
            .run(loops.clone()),
        );
        let spawn_watch =
            tokio::spawn(telemetry.clone().watch_spawns(supervisor.status(), clock.clone(), loops.clone()));
        let log_retention = tokio::spawn(
            LogRetention {
                mesh: mesh.clone(),
                supervisor: supervisor.clone(),
                root: data_dir.join("logs"),
                retention_ms: config.logs.retention_s.saturating_mul(1000),
                clock: clock.clone(),
            }
            .run(loops.clone()),
        );
        let register =
            tokio::spawn(mesh::register_config_personas(mesh.clone(), config.personas.clone(), loops.clone()));

        let state = ApiState {
            node_name: node_name.clone().into(),
            version: env!("CARGO_PKG_VERSION"),
            started_ms: clock.now_ms(),
            api_addr: api_addr.to_string().into(),
            data_dir: data_dir.display().to_string().into(),
            supervisor: supervisor.clone(),
            store: store.clone(),
            last_event_seq: seq_rx,
            host: host_rx,
            clock: clock.clone(),
            gateway: gateway.clone(),
            control,
            mesh: mesh.clone(),
            brain: report_rx,
            snapshot: snapshot_tx,
            telemetry: telemetry.clone(),
            forward,
            shutdown: shutdown.clone(),
        };
        // the local operator's credential: a token file and a socket of the node's user
        let (local_token, local_listener) = if config.api.local_token && listener.is_some() {
            let token = crate::local::ensure_token(&data_dir).map_err(|e| {
                NodeError::io(format!("write {}", data_dir.join(crate::local::LOCAL_TOKEN_FILE).display()), e)
            })?;
            let socket = data_dir.join(crate::local::LOCAL_SOCKET_FILE);
            let listener = match api::server::bind_local(&socket) {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!(path = %socket.display(), error = %e, "no local socket: the CLI uses TCP and the token file");
                    None
                }
            };
            (Some(token), listener)
        } else {
            (None, None)
        };
        let advertised = mesh::advertised_api(&config, api_addr);
        let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let door = api::policy::Door {
            hosts: Arc::new(api::policy::HostAllow::new(
                [node_name.as_str(), advertised.as_str(), host_name.trim()],
                &config.api.allowed_hosts,
            )),
            credentials: api::auth::Credentials::new(&config.api, local_token),
            forward_key,
            max_body_bytes: config.api.max_body_bytes,
            clock: clock.clone(),
            audit,
            local_token_hint: config.api.local_token.then(|| api::policy::token_hint(&data_dir)),
            sessions: crate::http::session::Sessions::default(),
        };
        let login = crate::ui::Login {
            credentials: door.credentials.clone(),
            sessions: door.sessions.clone(),
            port: api_addr.port(),
            streams: crate::ui::live::Streams::default(),
        };
        let app = api::router(state, door, crate::ui::routes(login));
        let limits = api::server::Limits::from_config(&config.api).fitted_to_fd_limit();
        tracing::info!(max_tcp = limits.max_tcp, max_local = limits.max_local, "API connection caps");
        let api_stop = shutdown.clone();
        let router = app.clone();
        let api_task = match listener {
            Some(listener) => {
                let api_dir = data_dir.clone();
                let with_socket = local_listener.is_some();
                let task = tokio::spawn(async move {
                    api::server::serve(listener, local_listener, app, limits, api_stop).await;
                    crate::local::unregister(&api_dir, api_addr);
                    if with_socket {
                        let _ = std::fs::remove_file(api_dir.join(crate::local::LOCAL_SOCKET_FILE));
                    }
                });
                write_api_addr(&data_dir, api_addr)?;
                crate::local::register(&data_dir, api_addr);
                tracing::info!(%api_addr, "API listening");
                task
            }
            // in process: requests come through Node::call
            None => tokio::spawn(async move { api_stop.cancelled().await }),
        };

        let compactor =
            tokio::spawn(compact_loop(store.clone(), clock, config.store.rollup_interval_s, shutdown.clone()));
        let store_watch = tokio::spawn(watch_store(store.health().subscribe(), shutdown.clone()));
        let store_failure = StoreFailure {
            health: store.health().clone(),
            path: data_dir.join(STORE_FILE),
            data_dir: data_dir.clone(),
        };

        // the supervisor stops after the API (no new requests) and before the recorder; the
        // mesh after the supervisor
        let sup_for_stop = supervisor.clone();
        let stop_chain = shutdown.clone();
        let drain_timeout = Duration::from_millis(config.gateway.drain_timeout_ms);
        let mesh_for_stop = mesh.clone();
        let mesh_handle = mesh.clone();
        let stopper = tokio::spawn(async move {
            stop_chain.cancelled().await;
            // answers in flight finish before their personas stop
            let _drained = gateway.drain_all(drain_timeout).await;
            sup_for_stop.shutdown().await;
            supervisor_stop.cancel();
            mesh_for_stop.shutdown().await;
            // its personas are stopped: nothing left to guard
            if let Some(mut g) = guard {
                let _ = g.kill();
                let _ = tokio::task::spawn_blocking(move || g.wait()).await;
            }
        });

        Ok(Node {
            api_addr,
            supervisor,
            store,
            mesh: mesh_handle,
            router,
            shutdown,
            store_failure,
            tasks: vec![
                ("store watch", store_watch),
                ("api", api_task),
                ("gateway", gateway_task),
                ("idle hibernation", idle),
                ("capacity", capacity),
                ("compactor", compactor),
                ("gossip", gossip),
                ("reconciler", reconciler),
                ("checkpoints", checkpointer),
                ("fencing", fence),
                ("leader", leader),
                ("log retention", log_retention),
                ("spawn watch", spawn_watch),
                ("registration", register),
                ("stopper", stopper),
                ("supervisor", supervisor_task),
                ("recorder", recorder),
            ],
            store_thread,
        })
    }

    /// Wait until the node has stopped (after its shutdown token was cancelled), joining its
    /// tasks in order: API, background loops, supervisor (personas stopped), recorder (every
    /// report written).
    pub async fn wait(self) {
        let Node { supervisor, store, tasks, store_thread, router, .. } = self;
        // the router's door holds a sender of the recorder's queue (operator events): the
        // recorder ends only when every sender is gone
        drop((supervisor, router));
        for (name, task) in tasks {
            if let Err(e) = task.await {
                tracing::error!(task = name, error = %e, "task failed");
            }
            tracing::debug!(task = name, "stopped");
        }
        store.close().await;
        store_thread.join().await;
        tracing::info!("node stopped");
    }

    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Whether the node stopped (or is stopping) because its store failed; keep it before
    /// [`Node::wait`] to ask once the node has stopped.
    pub fn store_failure(&self) -> StoreFailure {
        self.store_failure.clone()
    }

    /// Serve one API request in process, as if it had come over the socket (the simulator's
    /// operator and its clients).
    /// The caller is this host's operator, as through the local socket.
    pub async fn call(&self, mut req: axum::extract::Request) -> axum::response::Response {
        use tower::ServiceExt;
        req.extensions_mut().insert(api::server::Peer::Local { uid: 0 });
        match self.router.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }

    /// Die at once, as under kill -9: every task stops where it is, nothing is stopped in
    /// order, the personas' processes are left running and the mesh goes silent (the
    /// simulator's crash; its host and stores outlive it).
    pub async fn crash(self) {
        let Node { tasks, mesh, store_thread, store, supervisor, .. } = self;
        for (_, task) in &tasks {
            task.abort();
        }
        for (_, task) in tasks {
            let _ = task.await;
        }
        drop((store, supervisor));
        mesh.shutdown().await;
        store_thread.abandon();
    }
}

/// A store that fails (an I/O error, damage, a panic in redb) stops the node: it can no
/// longer persist what it would acknowledge, so it stops its personas (as on any shutdown: the
/// mesh places them elsewhere) and exits, rather than run on as a zombie that answers 2xx to
/// work it forgets.
async fn watch_store(mut failure: watch::Receiver<Option<Arc<str>>>, stop: CancellationToken) {
    tokio::select! {
        _ = stop.cancelled() => {}
        seen = failure.wait_for(Option::is_some) => {
            if seen.is_ok() {
                tracing::error!("the store failed: stopping this node and its personas");
                stop.cancel();
            }
        }
    }
}

/// The store of a former mesh member must not be new by accident: its Raft vote and log were
/// in it, and a voter that forgot its vote can vote twice in one term. A missing or empty file
/// beside the node's identity file (made when it first started its mesh, after its store) is
/// refused, unless the operator says to start as a new member: then the identity is moved
/// aside, so the node joins under a new id and its old one's votes are never contradicted.
fn check_member_store(data_dir: &Path, store_path: &Path, rejoin_as_new: bool) -> Result<()> {
    let state = match std::fs::metadata(store_path) {
        Ok(m) if m.len() == 0 => "empty",
        Ok(_) => {
            if rejoin_as_new {
                tracing::info!(path = %store_path.display(), "--rejoin-as-new: the store is there; nothing to do");
            }
            return Ok(());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "missing",
        // unreadable: the open says what is wrong
        Err(_) => return Ok(()),
    };
    let identity = data_dir.join(mindmesh_net::keys::IDENTITY_FILE);
    if !identity.exists() {
        return Ok(()); // a node that never started its mesh: new indeed
    }
    if !rejoin_as_new {
        return Err(NodeError::StoreLost {
            path: store_path.display().to_string(),
            state,
            identity: identity.display().to_string(),
            data_dir: data_dir.display().to_string(),
        });
    }
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let aside = data_dir.join(format!("{}.before-rejoin-{now_ms}", mindmesh_net::keys::IDENTITY_FILE));
    std::fs::rename(&identity, &aside)
        .map_err(|e| NodeError::io(format!("move {} aside to {}", identity.display(), aside.display()), e))?;
    tracing::warn!(
        store = %store_path.display(),
        old_identity = %aside.display(),
        "--rejoin-as-new: the store is {state}; starting as a new member under a new identity"
    );
    Ok(())
}

async fn compact_loop(store: StoreHandle, clock: Arc<dyn Clock>, interval_s: u64, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(interval_s.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => match store.compact(clock.now_ms()).await {
                Ok(r) => tracing::debug!(?r, "store compacted"),
                Err(e) => tracing::warn!(error = %e, "compaction failed"),
            },
        }
    }
}

/// The configured name, else the host name made into a valid name (lower case, `-` for
/// anything else), since it names the node in the registry.
fn node_name(config: &NodeConfig) -> String {
    if !config.node.name.is_empty() {
        return config.node.name.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut name: String =
        host.trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c.to_ascii_lowercase() } else { '-' }
            })
            .take(mindmesh_core::spec::MAX_NAME_LEN)
            .collect();
    name = name.trim_start_matches(['-', '_', '.']).to_owned();
    if name.is_empty() { "node".to_owned() } else { name }
}

/// The `[brain]` section with `MINDMESH_LLM_*` from the environment applied.
fn brain_config(config: &NodeConfig) -> mindmesh_core::config::BrainConfig {
    let mut b = config.brain.clone();
    if let Err(e) = b.apply_env(|k| std::env::var(k).ok()) {
        tracing::warn!(error = %e, "ignoring MINDMESH_LLM_* settings");
        return config.brain.clone();
    }
    b
}

/// A random id kept in the data dir: it marks this node's processes across its restarts.
fn instance_id(data_dir: &Path, seed: Option<u64>) -> Result<String> {
    let path = data_dir.join("instance");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(id.to_owned());
        }
    }
    let id = format!("{:016x}", seed.unwrap_or_else(|| rand::rng().random::<u64>()));
    write_atomically(&path, id.as_bytes())?;
    Ok(id)
}

fn write_api_addr(data_dir: &Path, addr: SocketAddr) -> Result<()> {
    write_atomically(&data_dir.join(API_ADDR_FILE), addr.to_string().as_bytes())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp: PathBuf = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| NodeError::io(format!("write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| NodeError::io(format!("rename to {}", path.display()), e))
}
