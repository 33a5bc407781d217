//! The node daemon: opens the store, starts the supervisor and takes over what a previous
//! run left, joins (or founds) its mesh, registers the personas of its config, serves the API
//! and the gateway, and shuts down in order.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::clock::{Clock, SystemClock};
use mindmesh_core::config::NodeConfig;
use mindmesh_store::{RedbStore, StoreHandle, StoreThread};
use mindmesh_supervisor::{OsHost, SpawnGate, Supervisor, SupervisorHandle, SupervisorSettings};
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
use crate::mesh::reconcile::Reconciler;
use crate::mesh::{self};
use crate::recorder::{Latest, Recorder};
use crate::waker::Waker;

/// Reports in flight between the supervisor and the recorder; the supervisor waits beyond it.
const REPORT_QUEUE: usize = 4096;
/// File in the data dir holding the address the API is bound to (tests and scripts read it).
pub const API_ADDR_FILE: &str = "api.addr";

/// A started node. Dropping it does not stop it: call [`Node::shutdown`] or cancel the token.
pub struct Node {
    pub api_addr: SocketAddr,
    pub supervisor: SupervisorHandle,
    pub store: StoreHandle,
    shutdown: CancellationToken,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
    store_thread: StoreThread,
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
        config.validate()?;
        let data_dir = config.node.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|e| NodeError::io(format!("create {}", data_dir.display()), e))?;
        let node_name = node_name(&config);
        tracing::info!(node = %node_name, data_dir = %data_dir.display(), "starting node");

        let store_path = data_dir.join("mindmesh.redb");
        let redb = RedbStore::open(&store_path, config.store.clone())?;
        // Raft's log and state machine live in the same file, in tables of their own
        let db = redb.database();
        let (store, store_thread) = StoreHandle::spawn(Box::new(redb), REPORT_QUEUE)?;
        tracing::info!(path = %store_path.display(), "store open");

        let (reports_tx, reports_rx) = mpsc::channel(REPORT_QUEUE);
        let (seq_tx, seq_rx) = watch::channel(store.last_event_seq().await?);
        let (host_tx, host_rx) = watch::channel(None);
        let (latest_tx, latest_rx) = watch::channel(Arc::new(Latest::default()));
        let gates = GateTable::default();
        let recorder = tokio::spawn(
            Recorder::new(store.clone(), reports_rx, seq_tx, host_tx)
                .with_behaviour(gates.meters())
                .with_latest(latest_tx)
                .run(),
        );

        let instance = instance_id(&data_dir)?;
        // fencing: until the lease is known, a restarted node runs what it had only until the
        // expiry its previous run wrote; with fencing off, always
        let spawn_gate = Arc::new(SpawnGate::new(if config.mesh.fencing {
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
            instance,
            max_state_bytes: config.store.max_state_bytes,
            clock: clock.clone(),
            spawn_gate: Some(spawn_gate.clone()),
            host: Arc::new(OsHost::new(config.supervisor.health_timeout_ms)?),
            rng_seed: None,
        };
        let supervisor_stop = CancellationToken::new();
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

        let listener = tokio::net::TcpListener::bind(config.api.listen)
            .await
            .map_err(|e| NodeError::io(format!("bind the API on {}", config.api.listen), e))?;
        let api_addr = listener.local_addr().map_err(|e| NodeError::io("API address", e))?;

        // the mesh stops after the supervisor (its personas' last states are still reported)
        let mesh_stop = CancellationToken::new();
        let mesh = mesh::start(&config, &node_name, &data_dir, db, api_addr, mesh_stop.clone()).await?;

        // fencing: whether this node may run personas now (its lease, or a boot grace)
        let (may_run_tx, may_run) = watch::channel(true);
        let fence = tokio::spawn(
            Fence {
                mesh: mesh.clone(),
                supervisor: supervisor.clone(),
                data_dir: data_dir.clone(),
                clock: clock.clone(),
                may_run: may_run_tx,
                gate: spawn_gate,
                lease_ms: config.mesh.lease_ms,
            }
            .run(shutdown.clone()),
        );
        let waker = Waker::new(supervisor.clone(), store.clone()).guarded(mesh.clone(), may_run.clone());
        let forward = crate::http::forward::Forwarder::new(config.api.token.clone())?;
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
            Duration::from_millis(config.supervisor.stop_grace_ms + 1000),
        );
        let idle = tokio::spawn(crate::idle::run(
            control.clone(),
            gateway.clone(),
            supervisor.status(),
            clock.clone(),
            Duration::from_millis(config.gateway.idle_check_interval_ms),
            shutdown.clone(),
        ));

        let loops = shutdown.child_token();
        let (report_tx, report_rx) = watch::channel(None);
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
            token: config.api.token.clone().map(Into::into),
            clock: clock.clone(),
            gateway: gateway.clone(),
            control,
            mesh: mesh.clone(),
            brain: report_rx,
            forward,
            shutdown: shutdown.clone(),
        };
        let app = api::router(state, config.api.max_body_bytes);
        let api_stop = shutdown.clone();
        let api_task = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(api_stop.cancelled_owned()).await;
            if let Err(e) = served {
                tracing::error!(error = %e, "API server failed");
            }
        });
        write_api_addr(&data_dir, api_addr)?;
        tracing::info!(%api_addr, "API listening");

        let compactor =
            tokio::spawn(compact_loop(store.clone(), clock, config.store.rollup_interval_s, shutdown.clone()));

        // the supervisor stops after the API (no new requests) and before the recorder; the
        // mesh after the supervisor
        let sup_for_stop = supervisor.clone();
        let stop_chain = shutdown.clone();
        let drain_timeout = Duration::from_millis(config.gateway.drain_timeout_ms);
        let mesh_for_stop = mesh.clone();
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
            shutdown,
            tasks: vec![
                ("api", api_task),
                ("gateway", gateway_task),
                ("idle hibernation", idle),
                ("compactor", compactor),
                ("gossip", gossip),
                ("reconciler", reconciler),
                ("checkpoints", checkpointer),
                ("fencing", fence),
                ("leader", leader),
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
        let Node { supervisor, store, tasks, store_thread, .. } = self;
        drop(supervisor);
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
fn instance_id(data_dir: &Path) -> Result<String> {
    let path = data_dir.join("instance");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(id.to_owned());
        }
    }
    let id = format!("{:016x}", rand::rng().random::<u64>());
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
