//! The supervisor task: owns every persona slot, runs each one's [`Lifecycle`] and carries
//! out its effects (spawn, signal, timers), watches exits, probes health, samples metrics
//! and enforces limits. Everything that happens goes out as [`Report`]s, in order.
//!
//! One task, one state, split by job across files (all `impl Supervisor`):
//! - here: the state, start-up and the select loop
//! - [`commands`]: what the handle asks (add, remove, act, budgets, state)
//! - [`restore`]: taking over the processes a previous run left
//! - [`drive`]: feeding a lifecycle and carrying out its effects (spawn, signal, timers)
//! - [`exits`]: what comes back from the processes (exits, timers, health, saved state)
//! - [`observe`]: sampling and periodic health probes
//! - [`limits`]: CPU caps (cgroup quota or duty cycle)
//! - [`shutdown`]: stopping every process at the end
//! - [`publish`]: records, events and the status table
//! - [`adapters`]: adapter personas, which have no process: their phase and their base's

mod adapters;
mod commands;
mod drive;
mod exits;
mod limits;
mod observe;
mod pause;
mod publish;
mod restore;
mod shutdown;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::clock::Clock;
use mindmesh_core::config::{LogsConfig, SupervisorConfig};
use mindmesh_core::lifecycle::{ExitStatus, Lifecycle, RestartConfig};
use mindmesh_core::metrics::PersonaSample;
use mindmesh_core::persona_env;
use mindmesh_core::{Health, PersonaRecord, Phase};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::cgroup::{CgroupVersion, Cgroups, PersonaCgroup};
use crate::error::{Result, SupervisorError};
use crate::handle::{Command, SupervisorHandle};
use crate::host::{ProcessHost, SampleSource};
use crate::logs::LogBook;
use crate::process;
use crate::sampler::Reading;
use crate::spawn_gate::SpawnGate;
use crate::status::{Report, StatusTable};

/// Where the supervisor keeps its files and how it reaches the world.
#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    pub config: SupervisorConfig,
    /// `logs/<persona>/` and `state/<persona>.state` live here.
    pub data_dir: PathBuf,
    /// Collect the personas' output into rotated logs (None: discard it, as the in-memory
    /// host's processes have none).
    pub logs: Option<LogsConfig>,
    /// Marks this node's processes (persisted by the node, stable across its restarts).
    pub instance: String,
    pub max_state_bytes: u64,
    pub clock: Arc<dyn Clock>,
    /// Fencing: no process starts while it is shut (None: always open).
    pub spawn_gate: Option<Arc<SpawnGate>>,
    /// Where processes run: the OS ([`crate::host::OsHost`]) or its twin.
    pub host: Arc<dyn ProcessHost>,
    /// Seeds the restart jitter (the simulator replays a run from it); None: from the OS.
    pub rng_seed: Option<u64>,
}

/// How long a starting persona is probed rapidly before the normal health interval applies.
const STARTUP_PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// Command queue bound: callers wait (backpressure) beyond it.
const COMMAND_QUEUE: usize = 256;

enum Internal {
    Exited { name: String, spawn_id: u64, status: ExitStatus },
    Timer { name: String, token: u64 },
    Health { name: String, spawn_id: u64, ok: bool },
    StateSaved { name: String, spawn_id: u64, result: std::result::Result<Option<Vec<u8>>, String> },
}

struct Slot {
    record: PersonaRecord,
    life: Lifecycle,
    spawn_id: u64,
    port: Option<u16>,
    cgroup: Option<PersonaCgroup>,
    /// The process is in its memory cgroup (its hard memory limit is the kernel's to enforce).
    cg_memory: bool,
    /// The process is in its cpu cgroup (throttling is a CPU quota).
    cg_cpu: bool,
    oom_kills_seen: u64,
    health: Health,
    sample: PersonaSample,
    peak_rss_bytes: u64,
    duty_cycle: Option<crate::throttle::DutyCycle>,
    /// Frozen (the paused tier) since then; the lifecycle still says running: the process
    /// lives, and every way out of running (an exit, a stop) ends the pause.
    paused_at_ms: Option<u64>,
    /// The last cold start, spawn to healthy: the reload cost the idle policy weighs.
    ready_ms: Option<u64>,
    /// A hibernate is saving state before it stops the process.
    saving: bool,
    /// A base persona: the adapters its current process was started with, in id order.
    loaded_adapters: Vec<adapters::AdapterLoad>,
    /// An adapter persona: running (in name) since then.
    adapter_up_ms: Option<u64>,
    /// Removal waits for the process to be gone.
    remove_reply: Option<oneshot::Sender<Result<()>>>,
    waiters: Vec<(Vec<Phase>, oneshot::Sender<Result<Phase>>)>,
}

pub struct Supervisor {
    settings: SupervisorSettings,
    restart_cfg: RestartConfig,
    slots: BTreeMap<String, Slot>,
    cgroups: Option<Cgroups>,
    host: Arc<dyn ProcessHost>,
    sampler: Box<dyn SampleSource>,
    rng: SmallRng,
    next_spawn_id: u64,
    internal_tx: mpsc::Sender<Internal>,
    reports: mpsc::Sender<Report>,
    status_tx: watch::Sender<StatusTable>,
    logs: Option<LogBook>,
    /// Reports gathered while handling one message, sent once its process work is done so
    /// a slow consumer never delays a restart.
    outbox: Vec<Report>,
    /// What every persona inherits from the node: its allowlisted variables, read once at
    /// start (see `mindmesh_core::persona_env`).
    inherited_env: BTreeMap<String, String>,
    /// `MINDMESH_EXE`: the node's own executable.
    node_exe: String,
}

impl Supervisor {
    /// Start the supervisor task. Reports (records, events, samples) go to `reports`.
    pub fn spawn(
        settings: SupervisorSettings,
        reports: mpsc::Sender<Report>,
        shutdown: CancellationToken,
    ) -> Result<(SupervisorHandle, tokio::task::JoinHandle<()>)> {
        for sub in ["logs", "state"] {
            let dir = settings.data_dir.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| SupervisorError::io(format!("create {}", dir.display()), e))?;
        }
        let cgroups = settings.host.cgroups(settings.config.cgroups, &settings.instance);
        let (reading_tx, reading_rx) = mpsc::channel(2);
        let sampler = settings
            .host
            .sampler(reading_tx, settings.config.full_sample_every_ticks)
            .map_err(|e| SupervisorError::io("sampler thread", e))?;
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let internal_capacity = settings.config.max_personas * 4 + 64;
        let (internal_tx, internal_rx) = mpsc::channel(internal_capacity);
        let (status_tx, status_rx) = watch::channel(StatusTable::default());
        let limits = match cgroups.as_ref().map(Cgroups::version) {
            Some(CgroupVersion::V1) => "cgroup v1",
            Some(CgroupVersion::V2) => "cgroup v2",
            None => "measured + signals",
        };
        let host = settings.host.clone();
        let inherited_env = persona_env::inherited(host.node_environment(), &settings.config.env_passthrough);
        tracing::debug!(vars = ?inherited_env.keys().collect::<Vec<_>>(), "personas inherit these variables");
        let node_exe = host.node_exe().unwrap_or_default();
        let rng = settings.rng_seed.map_or_else(SmallRng::from_os_rng, SmallRng::seed_from_u64);
        let logs = settings
            .logs
            .clone()
            .filter(|_| host.captures_output())
            .map(|cfg| LogBook::new(settings.data_dir.join("logs"), cfg, settings.clock.clone()));
        let sup = Supervisor {
            logs,
            restart_cfg: settings.config.restart(),
            settings,
            slots: BTreeMap::new(),
            cgroups,
            host,
            sampler,
            rng,
            next_spawn_id: 1,
            internal_tx,
            reports,
            status_tx,
            outbox: Vec::new(),
            inherited_env,
            node_exe,
        };
        let task = tokio::spawn(sup.run(rx, internal_rx, reading_rx, shutdown));
        Ok((SupervisorHandle { tx, status: status_rx, limits }, task))
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut internal: mpsc::Receiver<Internal>,
        mut readings: mpsc::Receiver<Reading>,
        shutdown: CancellationToken,
    ) {
        let mut metrics_tick = tokio::time::interval(Duration::from_millis(self.settings.config.metrics_interval_ms));
        metrics_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut health_tick = tokio::time::interval(Duration::from_millis(self.settings.config.health_interval_ms));
        health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                Some(msg) = internal.recv() => self.on_internal(msg),
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown { reply }) => {
                        self.stop_all(&mut internal).await;
                        let _ = reply.send(());
                        break;
                    }
                    Some(cmd) => self.on_command(cmd),
                    None => {
                        self.stop_all(&mut internal).await;
                        break;
                    }
                },
                Some(reading) = readings.recv() => self.on_reading(reading),
                _ = metrics_tick.tick() => self.request_sample(),
                _ = health_tick.tick() => self.probe_all(),
                _ = shutdown.cancelled() => {
                    self.stop_all(&mut internal).await;
                    break;
                }
            }
            self.flush().await;
        }
        self.flush().await;
        if let Some(c) = &self.cgroups {
            c.remove_base();
        }
        if let Some(logs) = &mut self.logs {
            logs.shutdown().await;
        }
        tracing::info!("supervisor stopped");
    }

    async fn flush(&mut self) {
        for report in self.outbox.drain(..) {
            if self.reports.send(report).await.is_err() {
                tracing::warn!("report consumer gone; dropping reports");
                break;
            }
        }
    }
}

/// Move a process into cgroups on a blocking thread: in cgroup v1 each move waits for an RCU
/// grace period, which must not hold up the supervisor (or the next restart).
fn join_in_background(persona: &str, pid: u32, files: Vec<PathBuf>) {
    if files.is_empty() {
        return;
    }
    let persona = persona.to_owned();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = process::join_cgroup(pid, &files) {
            tracing::warn!(persona, pid, error = %e, "cannot move the process into its cgroup");
        }
    });
}
