//! The supervisor task: owns every persona slot, runs each one's [`Lifecycle`] and carries
//! out its effects (spawn, signal, timers), watches exits, probes health, samples metrics
//! and enforces limits. Everything that happens goes out as [`Report`]s, in order.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mindmesh_core::clock::Clock;
use mindmesh_core::config::{LogsConfig, SupervisorConfig};
use mindmesh_core::event::{Event, EventKind};
use mindmesh_core::lifecycle::{Effect, ExitStatus, Input, Lifecycle, RestartConfig, StopGoal};
use mindmesh_core::metrics::PersonaSample;
use mindmesh_core::{Budget, BudgetPatch, Health, PersonaRecord, PersonaSpec, Phase, ProcessRecord};
use nix::sys::signal::Signal;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::cgroup::{CgroupVersion, Cgroups, PersonaCgroup};
use crate::error::{Result, SupervisorError};
use crate::handle::{Act, Command, RestoreSummary, SupervisorHandle};
use crate::health::Prober;
use crate::logs::LogBook;
use crate::process::{self, SpawnPlan};
use crate::sampler::{Reading, Sampler};
use crate::status::{PersonaStatus, Report, StatusTable};
use crate::{pidfd, throttle};

/// Where the supervisor keeps its files and how it reaches the world.
#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    pub config: SupervisorConfig,
    /// `logs/<persona>/` and `state/<persona>.state` live here.
    pub data_dir: PathBuf,
    /// Rotation of the personas' output logs.
    pub logs: LogsConfig,
    /// Marks this node's processes (persisted by the node, stable across its restarts).
    pub instance: String,
    pub max_state_bytes: u64,
    pub clock: Arc<dyn Clock>,
    /// Fencing: no process starts while it is shut (None: always open).
    pub spawn_gate: Option<Arc<SpawnGate>>,
}

/// Until when this node may start processes (Unix ms), as its fencing says. Checked at the
/// instant of every spawn — restarts by policy included — so a node waking from a freeze, or
/// whose lease just ran out, starts nothing even before its fencing task has run.
#[derive(Debug)]
pub struct SpawnGate {
    until_ms: std::sync::atomic::AtomicU64,
}

impl SpawnGate {
    pub fn new(until_ms: u64) -> Self {
        SpawnGate { until_ms: std::sync::atomic::AtomicU64::new(until_ms) }
    }

    /// Move the limit later (never earlier).
    pub fn extend(&self, until_ms: u64) {
        self.until_ms.fetch_max(until_ms, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn until_ms(&self) -> u64 {
        self.until_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn open_at(&self, now_ms: u64) -> bool {
        now_ms < self.until_ms()
    }
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
    duty_cycle: Option<CancellationToken>,
    /// A hibernate is saving state before it stops the process.
    saving: bool,
    /// Removal waits for the process to be gone.
    remove_reply: Option<oneshot::Sender<Result<()>>>,
    waiters: Vec<(Vec<Phase>, oneshot::Sender<Result<Phase>>)>,
}

pub struct Supervisor {
    settings: SupervisorSettings,
    restart_cfg: RestartConfig,
    slots: BTreeMap<String, Slot>,
    cgroups: Option<Cgroups>,
    prober: Prober,
    sampler: Sampler,
    rng: SmallRng,
    next_spawn_id: u64,
    internal_tx: mpsc::Sender<Internal>,
    reports: mpsc::Sender<Report>,
    status_tx: watch::Sender<StatusTable>,
    logs: LogBook,
    /// Reports gathered while handling one message, sent once its process work is done so
    /// a slow consumer never delays a restart.
    outbox: Vec<Report>,
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
        let cgroups = Cgroups::detect(settings.config.cgroups, &settings.instance);
        let prober = Prober::new(settings.config.health_timeout_ms)
            .map_err(|e| SupervisorError::io("health client", std::io::Error::other(e)))?;
        let (reading_tx, reading_rx) = mpsc::channel(2);
        let sampler = Sampler::spawn(reading_tx, settings.config.full_sample_every_ticks)
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
        let logs = LogBook::new(settings.data_dir.join("logs"), settings.logs.clone(), settings.clock.clone());
        let sup = Supervisor {
            logs,
            restart_cfg: settings.config.restart(),
            settings,
            slots: BTreeMap::new(),
            cgroups,
            prober,
            sampler,
            rng: SmallRng::from_os_rng(),
            next_spawn_id: 1,
            internal_tx,
            reports,
            status_tx,
            outbox: Vec::new(),
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
        self.logs.shutdown().await;
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

    // ---------------------------------------------------------------- commands

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Add { spec, start, epoch, reply } => {
                let _ = reply.send(self.add(*spec, start, epoch));
            }
            Command::Restore { records, reply } => {
                let _ = reply.send(self.restore(records));
            }
            Command::Remove { name, reply } => self.remove(&name, reply),
            Command::Act { name, act, epoch, reply } => {
                if let (Some(e), Some(slot)) = (epoch, self.slots.get_mut(&name)) {
                    slot.record.epoch = e;
                }
                let _ = reply.send(self.act(&name, act));
            }
            Command::SetBudget { name, patch, reply } => {
                let _ = reply.send(self.set_budget(&name, &patch));
            }
            Command::WaitFor { name, phases, reply } => match self.slots.get_mut(&name) {
                None => {
                    let _ = reply.send(Err(SupervisorError::NotFound(name)));
                }
                Some(slot) if phases.contains(&slot.life.phase()) => {
                    let _ = reply.send(Ok(slot.life.phase()));
                }
                Some(slot) => slot.waiters.push((phases, reply)),
            },
            Command::SaveState { name, reply } => self.save_state(&name, reply),
            Command::SavedState { name, reply } => {
                let r = if self.slots.contains_key(&name) {
                    match std::fs::read(self.state_file(&name)) {
                        Ok(b) => Ok(Some(b)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                        Err(e) => Err(SupervisorError::io("read state file", e)),
                    }
                } else {
                    Err(SupervisorError::NotFound(name))
                };
                let _ = reply.send(r);
            }
            Command::Shutdown { .. } => unreachable!("handled in run"),
        }
    }

    fn add(&mut self, spec: PersonaSpec, start: bool, epoch: u64) -> Result<()> {
        spec.validate()?;
        if self.slots.contains_key(&spec.name) {
            return Err(SupervisorError::Exists(spec.name));
        }
        if self.slots.len() >= self.settings.config.max_personas {
            return Err(SupervisorError::Full(self.settings.config.max_personas));
        }
        let now = self.now();
        let name = spec.name.clone();
        let record = PersonaRecord { epoch, ..PersonaRecord::new(spec, now) };
        self.insert_slot(record, Lifecycle::new(Default::default()));
        self.event(&name, EventKind::Added, String::new());
        if start && self.slots[&name].record.spec.budget.allowed_to_run {
            self.drive(&name, Input::Start);
        } else {
            self.changed(&name);
        }
        Ok(())
    }

    fn insert_slot(&mut self, record: PersonaRecord, mut life: Lifecycle) {
        life.set_policy(record.spec.restart);
        let name = record.spec.name.clone();
        let slot = Slot {
            record,
            life,
            spawn_id: 0,
            port: None,
            cgroup: None,
            cg_memory: false,
            cg_cpu: false,
            oom_kills_seen: 0,
            health: Health::Unknown,
            sample: PersonaSample::default(),
            peak_rss_bytes: 0,
            duty_cycle: None,
            saving: false,
            remove_reply: None,
            waiters: Vec::new(),
        };
        self.slots.insert(name, slot);
    }

    fn restore(&mut self, records: Vec<PersonaRecord>) -> RestoreSummary {
        let mut summary = RestoreSummary::default();
        let found = process::scan_instance(&self.settings.instance);
        let mut by_persona: HashMap<String, Vec<process::FoundProcess>> = HashMap::new();
        for f in found {
            by_persona.entry(f.persona.clone()).or_default().push(f);
        }
        let known: HashSet<String> = records.iter().map(|r| r.spec.name.clone()).collect();
        for (persona, procs) in &by_persona {
            if !known.contains(persona) {
                for p in procs {
                    tracing::warn!(persona, pid = p.pid, "killing a process of this node with no persona to own it");
                    process::signal_group(p.pid, Signal::SIGKILL);
                    summary.strays_killed += 1;
                }
            }
        }
        for record in records {
            let name = record.spec.name.clone();
            if self.slots.contains_key(&name) {
                continue;
            }
            let mut candidates = by_persona.remove(&name).unwrap_or_default();
            // the recorded process first: it is the one we know to be the persona
            if let Some(rec) = &record.process {
                candidates.sort_by_key(|c| !(c.pid == rec.pid && c.start_ticks == rec.start_ticks));
            }
            let wants = record.wants_running() && record.spec.budget.allowed_to_run;
            let adoptable = wants && candidates.first().is_some_and(|c| c.port.is_some());
            let restarts = record.restarts;
            let phase = if wants { Phase::Pending } else { record.phase };
            let reason = if wants { None } else { record.reason.clone() };
            let life = Lifecycle::resume(record.spec.restart, phase, None, None, restarts, reason);
            self.insert_slot(PersonaRecord { process: None, ..record }, life);
            let mut keep = None;
            if adoptable {
                let c = candidates.remove(0);
                match pidfd::open(c.pid) {
                    Some(fd) => keep = Some((c, fd)),
                    None => candidates.insert(0, c),
                }
            }
            let extra = !candidates.is_empty();
            for c in candidates {
                tracing::info!(persona = %name, pid = c.pid, "killing a leftover process");
                process::signal_group(c.pid, Signal::SIGCONT);
                process::signal_group(c.pid, Signal::SIGKILL);
            }
            match keep {
                Some((c, fd)) => {
                    self.adopt(&name, c, fd);
                    summary.adopted.push(name);
                }
                None if wants => {
                    if extra {
                        self.event(&name, EventKind::Replace, "left-over process killed; starting afresh".into());
                        summary.replaced.push(name.clone());
                    } else {
                        summary.started.push(name.clone());
                    }
                    self.drive(&name, Input::Start);
                }
                None => self.changed(&name),
            }
        }
        summary
    }

    fn adopt(&mut self, name: &str, found: process::FoundProcess, fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>) {
        let spawn_id = self.bump_spawn_id();
        let now = self.now();
        let Some(wants_memory) = self.slots.get(name).map(|s| s.record.spec.limits.memory_max_mb.is_some()) else {
            return;
        };
        let cgroup = if wants_memory { self.cgroups.as_ref().and_then(|c| c.create(name).ok()) } else { None };
        let Some(slot) = self.slots.get_mut(name) else { return };
        let restarts = slot.record.restarts;
        slot.life =
            Lifecycle::resume(slot.record.spec.restart, Phase::Running, Some(found.pid), Some(now), restarts, None);
        slot.spawn_id = spawn_id;
        slot.port = found.port;
        slot.oom_kills_seen = cgroup.as_ref().map_or(0, |c| c.oom_kills());
        if let Some(cg) = &cgroup {
            // it joined at its spawn; joining again is harmless and covers a node that died
            // between the spawn and the move
            join_in_background(name, found.pid, cg.procs_files(true, false));
        }
        slot.cg_memory = cgroup.is_some();
        slot.cg_cpu = false;
        slot.cgroup = cgroup;
        slot.record.process = Some(ProcessRecord {
            pid: found.pid,
            start_ticks: found.start_ticks,
            port: found.port.unwrap_or(0),
            started_at_ms: now,
            cgroup: slot.cgroup.as_ref().map(|c| c.path().display().to_string()),
        });
        // a node that died mid duty-cycle may have left the group stopped
        process::signal_group(found.pid, Signal::SIGCONT);
        let tx = self.internal_tx.clone();
        let persona = name.to_owned();
        tokio::spawn(async move {
            pidfd::exited(fd).await;
            let _ = tx.send(Internal::Exited { name: persona, spawn_id, status: ExitStatus::Unknown }).await;
        });
        if let Err(e) = self.logs.collect(name) {
            tracing::warn!(persona = %name, error = %e, "cannot collect the output of an adopted persona");
        }
        self.event(name, EventKind::Adopt, format!("pid {} on port {}", found.pid, found.port.unwrap_or(0)));
        self.apply_cpu_control(name);
        self.changed(name);
    }

    fn remove(&mut self, name: &str, reply: oneshot::Sender<Result<()>>) {
        let Some(slot) = self.slots.get_mut(name) else {
            let _ = reply.send(Err(SupervisorError::NotFound(name.to_owned())));
            return;
        };
        slot.remove_reply = Some(reply);
        if slot.life.phase().has_process() {
            self.drive(name, Input::Stop(StopGoal::Stop));
        } else {
            self.finish_remove(name);
        }
    }

    fn finish_remove(&mut self, name: &str) {
        let Some(mut slot) = self.slots.remove(name) else { return };
        if let Some(c) = slot.duty_cycle.take() {
            c.cancel();
        }
        if let Some(cg) = &slot.cgroup {
            cg.kill_all();
            cg.remove();
        }
        let _ = std::fs::remove_file(self.state_file(name));
        // its files stay: the node deletes them when the persona leaves the mesh, or keeps
        // them readable for a while when it moved to another node
        self.logs.release(name);
        for (_, w) in slot.waiters.drain(..) {
            let _ = w.send(Err(SupervisorError::NotFound(name.to_owned())));
        }
        let now = self.now();
        self.outbox.push(Report::Event(Event::new(now, name, EventKind::Removed, "")));
        self.outbox.push(Report::Removed(name.to_owned()));
        self.publish_status();
        if let Some(reply) = slot.remove_reply.take() {
            let _ = reply.send(Ok(()));
        }
    }

    fn act(&mut self, name: &str, act: Act) -> Result<Phase> {
        let slot = self.slots.get_mut(name).ok_or_else(|| SupervisorError::NotFound(name.to_owned()))?;
        if slot.remove_reply.is_some() {
            return Err(SupervisorError::Conflict(format!("{name} is being removed")));
        }
        let starts = matches!(act, Act::Start | Act::Restart | Act::Wake { .. });
        if starts && !slot.record.spec.budget.allowed_to_run {
            return Err(SupervisorError::Conflict(format!(
                "{name} is not allowed to run (budget.allowed_to_run = false)"
            )));
        }
        let phase = slot.life.phase();
        match act {
            Act::Start => {
                self.event(name, EventKind::Start, "operator".into());
                self.drive(name, Input::Start);
            }
            Act::Stop => {
                self.event(name, EventKind::Stop, "operator".into());
                self.drive(name, Input::Stop(StopGoal::Stop));
            }
            Act::Restart => {
                if phase.has_process() {
                    self.drive(name, Input::Stop(StopGoal::Restart));
                } else {
                    self.drive(name, Input::Start);
                }
            }
            Act::Kill { reason } => self.drive(name, Input::Stop(StopGoal::Kill { reason })),
            Act::Fence { reason } => {
                if let Some(pid) = slot.life.pid() {
                    process::signal_group(pid, Signal::SIGKILL);
                }
                if let Some(cg) = &slot.cgroup {
                    cg.kill_all();
                }
                self.event(name, EventKind::Kill, reason.clone());
                self.drive(name, Input::Stop(StopGoal::Kill { reason }));
            }
            Act::Wake { state } => {
                if let Some(blob) = state {
                    let path = self.state_file(name);
                    std::fs::write(&path, blob).map_err(|e| SupervisorError::io("write state file", e))?;
                }
                self.event(name, EventKind::Wake, String::new());
                self.drive(name, Input::Start);
            }
            Act::Hibernate => self.hibernate(name),
        }
        Ok(self.slots.get(name).map_or(Phase::Stopped, |s| s.life.phase()))
    }

    fn save_state(&mut self, name: &str, reply: oneshot::Sender<Result<Option<Vec<u8>>>>) {
        let Some(slot) = self.slots.get(name) else {
            let _ = reply.send(Err(SupervisorError::NotFound(name.to_owned())));
            return;
        };
        let (Phase::Running, Some(port)) = (slot.life.phase(), slot.port) else {
            let _ = reply.send(Err(SupervisorError::Conflict(format!("{name} is not running"))));
            return;
        };
        let prober = self.prober.clone();
        let timeout = Duration::from_millis(self.settings.config.stop_grace_ms);
        let max = self.settings.max_state_bytes;
        tokio::spawn(async move {
            let r = prober.save_state(port, timeout, max).await.map_err(SupervisorError::Probe);
            let _ = reply.send(r);
        });
    }

    /// Save state through the persona's hook (if it answers), then stop it. A persona that
    /// is not running just moves to `hibernating` with the state it last saved.
    fn hibernate(&mut self, name: &str) {
        let Some(slot) = self.slots.get_mut(name) else { return };
        if slot.saving {
            return;
        }
        match (slot.life.phase(), slot.port) {
            (Phase::Running | Phase::Starting, Some(port)) => {
                slot.saving = true;
                let spawn_id = slot.spawn_id;
                let prober = self.prober.clone();
                let tx = self.internal_tx.clone();
                let persona = name.to_owned();
                let timeout = Duration::from_millis(self.settings.config.stop_grace_ms);
                let max = self.settings.max_state_bytes;
                tokio::spawn(async move {
                    let result = prober.save_state(port, timeout, max).await;
                    let _ = tx.send(Internal::StateSaved { name: persona, spawn_id, result }).await;
                });
            }
            _ => {
                self.event(name, EventKind::Hibernate, "not running; state kept as last saved".into());
                self.drive(name, Input::Stop(StopGoal::Hibernate));
            }
        }
    }

    fn set_budget(&mut self, name: &str, patch: &BudgetPatch) -> Result<Budget> {
        let slot = self.slots.get_mut(name).ok_or_else(|| SupervisorError::NotFound(name.to_owned()))?;
        let budget = slot.record.spec.budget.patched(patch).map_err(|e| e.within("budget"))?;
        let old = std::mem::replace(&mut slot.record.spec.budget, budget.clone());
        let detail = serde_json::to_string(patch).unwrap_or_default();
        if (old.throttle_multiplier - budget.throttle_multiplier).abs() > f64::EPSILON {
            self.event(name, EventKind::Throttle, format!("multiplier {}", budget.throttle_multiplier));
        }
        self.event(name, EventKind::Budget, detail);
        self.apply_cpu_control(name);
        if !budget.allowed_to_run && self.slots[name].life.phase().has_process() {
            self.drive(name, Input::Stop(StopGoal::Stop));
        } else {
            self.changed(name);
        }
        Ok(budget)
    }

    // ---------------------------------------------------------------- lifecycle driving

    /// Feed one input to a persona's lifecycle and carry out everything it asks for.
    fn drive(&mut self, name: &str, input: Input) {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let now = self.now();
            let jitter: f64 = self.rng.random();
            let cfg = self.restart_cfg.clone();
            let Some(slot) = self.slots.get_mut(name) else { return };
            let effects = slot.life.handle(input, now, jitter, &cfg);
            for effect in effects {
                match effect {
                    Effect::Spawn if self.settings.spawn_gate.as_ref().is_some_and(|g| !g.open_at(now)) => {
                        if let Some(slot) = self.slots.get_mut(name) {
                            slot.record.epoch = 0; // started anew by the mesh once the lease is back
                        }
                        queue.push_back(Input::Refused { reason: "fenced: this node has no lease".into() });
                    }
                    Effect::Spawn => match self.spawn_process(name) {
                        Ok(pid) => queue.push_back(Input::Spawned { pid }),
                        Err(e) => queue.push_back(Input::SpawnFailed { error: e.to_string() }),
                    },
                    Effect::Terminate => {
                        if let Some(pid) = self.slots.get(name).and_then(|s| s.life.pid()) {
                            process::signal_group(pid, Signal::SIGTERM);
                            // a stopped (throttled) process cannot act on SIGTERM
                            process::signal_group(pid, Signal::SIGCONT);
                        }
                    }
                    Effect::KillGroup => {
                        if let Some(slot) = self.slots.get(name) {
                            if let Some(pid) = slot.life.pid() {
                                process::signal_group(pid, Signal::SIGKILL);
                            }
                            if let Some(cg) = &slot.cgroup {
                                cg.kill_all();
                            }
                        }
                    }
                    Effect::ArmTimer { token, at_ms } => {
                        let delay = Duration::from_millis(at_ms.saturating_sub(now));
                        let tx = self.internal_tx.clone();
                        let persona = name.to_owned();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = tx.send(Internal::Timer { name: persona, token }).await;
                        });
                    }
                    Effect::Record { kind, detail } => self.event(name, kind, detail),
                }
            }
        }
        self.changed(name);
    }

    fn spawn_process(&mut self, name: &str) -> Result<u32> {
        let spawn_id = self.bump_spawn_id();
        let port = self.free_port()?;
        let state_file = self.state_file(name);
        let now = self.now();
        let slot = self.slots.get(name).ok_or_else(|| SupervisorError::NotFound(name.to_owned()))?;
        let memory_limit = slot.record.spec.limits.memory_max_mb.map(|mb| mb * 1024 * 1024);
        let cgroup = match (&self.cgroups, memory_limit) {
            (Some(c), Some(limit)) => {
                let cg = c.create(name).map_err(|e| SupervisorError::io("create cgroup", e))?;
                cg.set_memory_max(Some(limit)).map_err(|e| SupervisorError::io("set memory limit", e))?;
                Some(cg)
            }
            _ => None,
        };
        let slot = self.slots.get_mut(name).ok_or_else(|| SupervisorError::NotFound(name.to_owned()))?;
        let spec = &slot.record.spec;
        let mut env = spec.env.clone();
        env.insert(process::ENV_PORT.into(), port.to_string());
        env.insert(process::ENV_PERSONA_ID.into(), spec.name.clone());
        env.insert(process::ENV_NODE_INSTANCE.into(), self.settings.instance.clone());
        if state_file.exists() {
            env.insert(process::ENV_STATE_FILE.into(), state_file.display().to_string());
        }
        let plan = SpawnPlan {
            persona: spec.name.clone(),
            program: process::resolve_program(&spec.command),
            args: spec.expanded_args(port),
            env,
            working_dir: spec.working_dir.clone(),
        };
        let outputs =
            self.logs.outputs(name).map_err(|e| SupervisorError::io(format!("open the logs of {name}"), e))?;
        let mut child = process::spawn(&plan, outputs)?;
        let pid = child.id().ok_or_else(|| SupervisorError::Conflict("spawned child has no pid".into()))?;
        if let Some(cg) = &cgroup {
            join_in_background(name, pid, cg.procs_files(true, false));
        }
        slot.spawn_id = spawn_id;
        slot.port = Some(port);
        slot.health = Health::Unknown;
        slot.peak_rss_bytes = 0;
        slot.oom_kills_seen = cgroup.as_ref().map_or(0, |c| c.oom_kills());
        slot.cg_memory = cgroup.is_some();
        slot.cg_cpu = false;
        slot.record.process = Some(ProcessRecord {
            pid,
            start_ticks: process::start_ticks(pid).unwrap_or(0),
            port,
            started_at_ms: now,
            cgroup: cgroup.as_ref().map(|c| c.path().display().to_string()),
        });
        slot.cgroup = cgroup;
        let probe_path = slot.record.spec.health_path.clone();
        let tx = self.internal_tx.clone();
        let persona = name.to_owned();
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => exit_status(s),
                Err(e) => {
                    tracing::warn!(persona, error = %e, "wait for child failed");
                    ExitStatus::Unknown
                }
            };
            let _ = tx.send(Internal::Exited { name: persona, spawn_id, status }).await;
        });
        if let Some(path) = probe_path {
            self.startup_probe(name, spawn_id, port, path);
        }
        self.apply_cpu_control_to(name, pid);
        Ok(pid)
    }

    /// Probe a starting persona often until it answers (bounded by the start timeout), so a
    /// wake or restart is seen healthy within tens of milliseconds.
    fn startup_probe(&self, name: &str, spawn_id: u64, port: u16, path: String) {
        let prober = self.prober.clone();
        let tx = self.internal_tx.clone();
        let persona = name.to_owned();
        let attempts = (self.settings.config.start_timeout_ms / STARTUP_PROBE_INTERVAL.as_millis() as u64).max(1);
        tokio::spawn(async move {
            for _ in 0..attempts {
                tokio::time::sleep(STARTUP_PROBE_INTERVAL).await;
                if prober.probe(port, &path).await {
                    let _ = tx.send(Internal::Health { name: persona, spawn_id, ok: true }).await;
                    return;
                }
                if tx.is_closed() {
                    return;
                }
            }
            let _ = tx.send(Internal::Health { name: persona, spawn_id, ok: false }).await;
        });
    }

    // ---------------------------------------------------------------- internal events

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Exited { name, spawn_id, status } => {
                let Some(slot) = self.slots.get_mut(&name) else { return };
                if slot.spawn_id != spawn_id {
                    return;
                }
                if let Some(c) = slot.duty_cycle.take() {
                    c.cancel();
                }
                let pid = slot.life.pid();
                let oom = slot
                    .cgroup
                    .as_ref()
                    .filter(|_| slot.cg_memory)
                    .map(|c| c.oom_kills())
                    .filter(|&n| n > slot.oom_kills_seen);
                // no orphan survives its persona: the rest of its group goes with it
                if let Some(pid) = pid {
                    process::signal_group(pid, Signal::SIGKILL);
                }
                if let Some(cg) = &slot.cgroup {
                    cg.kill_all();
                }
                slot.record.process = None;
                slot.port = None;
                slot.health = Health::Unknown;
                slot.saving = false;
                // figures of a gone process would read as a live one's
                slot.sample = PersonaSample::default();
                if let Some(n) = oom {
                    slot.oom_kills_seen = n;
                    let limit = slot.record.spec.limits.memory_max_mb.unwrap_or(0);
                    let reason = format!("memory over hard limit {limit} MB (cgroup OOM kill)");
                    self.drive(&name, Input::LimitExceeded { reason });
                }
                self.drive(&name, Input::Exited { status });
            }
            Internal::Timer { name, token } => self.drive(&name, Input::Timer { token }),
            Internal::Health { name, spawn_id, ok } => {
                let Some(slot) = self.slots.get_mut(&name) else { return };
                if slot.spawn_id != spawn_id || !slot.life.phase().has_process() {
                    return;
                }
                let health = if ok { Health::Healthy } else { Health::Unhealthy };
                if slot.health != health {
                    let was = slot.health;
                    slot.health = health;
                    if ok {
                        slot.life.mark_running();
                    }
                    if was != Health::Unknown || !ok {
                        self.event(&name, EventKind::HealthChange, format!("{was:?} -> {health:?}").to_lowercase());
                    }
                    self.changed(&name);
                }
            }
            Internal::StateSaved { name, spawn_id, result } => {
                let Some(slot) = self.slots.get_mut(&name) else { return };
                slot.saving = false;
                if slot.spawn_id != spawn_id {
                    return;
                }
                match result {
                    Ok(Some(blob)) => {
                        let path = self.state_file(&name);
                        if let Err(e) = std::fs::write(&path, &blob) {
                            self.event(&name, EventKind::Error, format!("cannot keep state: {e}"));
                        }
                        self.event(&name, EventKind::StateSaved, format!("{} bytes", blob.len()));
                        self.outbox.push(Report::State { persona: name.clone(), blob });
                    }
                    Ok(None) => self.event(&name, EventKind::Hibernate, "no state hook; nothing saved".into()),
                    Err(e) => self.event(&name, EventKind::Error, format!("state save failed: {e}")),
                }
                self.event(&name, EventKind::Hibernate, String::new());
                self.drive(&name, Input::Stop(StopGoal::Hibernate));
            }
        }
    }

    fn request_sample(&mut self) {
        let pids: Vec<u32> = self.slots.values().filter_map(|s| s.life.pid()).collect();
        let now = self.now();
        if !self.sampler.request(now, pids) {
            tracing::debug!("sampler busy; tick skipped");
        }
    }

    fn on_reading(&mut self, reading: Reading) {
        let mut samples = Vec::with_capacity(self.slots.len());
        let mut over_limit = Vec::new();
        for (name, slot) in &mut self.slots {
            let Some(pid) = slot.life.pid() else { continue };
            let Some(r) = reading.processes.get(&pid) else { continue };
            slot.peak_rss_bytes = slot.peak_rss_bytes.max(r.rss_bytes);
            slot.sample = PersonaSample {
                ts_ms: reading.ts_ms,
                rss_bytes: r.rss_bytes,
                peak_rss_bytes: slot.peak_rss_bytes,
                cpu_percent: r.cpu_percent,
                disk_read_bytes: r.disk_read_bytes,
                disk_written_bytes: r.disk_written_bytes,
                restarts: slot.life.restarts(),
                healthy: match slot.health {
                    Health::Unknown => None,
                    h => Some(h == Health::Healthy),
                },
                ..PersonaSample::default()
            };
            samples.push((name.clone(), slot.sample.clone()));
            // without a memory cgroup the node is the limit's enforcer
            if !slot.cg_memory
                && let Some(limit_mb) = slot.record.spec.limits.memory_max_mb
                && r.rss_bytes > limit_mb * 1024 * 1024
            {
                over_limit.push((
                    name.clone(),
                    format!("rss {} MB over hard limit {limit_mb} MB (measured)", r.rss_bytes / (1024 * 1024)),
                ));
            }
        }
        for (name, reason) in over_limit {
            self.drive(&name, Input::LimitExceeded { reason });
        }
        self.outbox.push(Report::Samples { ts_ms: reading.ts_ms, personas: samples, host: reading.host });
        self.publish_status();
    }

    fn probe_all(&mut self) {
        for (name, slot) in &self.slots {
            let (Some(port), Some(path)) = (slot.port, slot.record.spec.health_path.clone()) else { continue };
            // starting personas are probed by their start-up prober
            if slot.life.phase() != Phase::Running {
                continue;
            }
            let prober = self.prober.clone();
            let tx = self.internal_tx.clone();
            let persona = name.clone();
            let spawn_id = slot.spawn_id;
            tokio::spawn(async move {
                let ok = prober.probe(port, &path).await;
                let _ = tx.send(Internal::Health { name: persona, spawn_id, ok }).await;
            });
        }
    }

    // ---------------------------------------------------------------- limits

    /// The CPU ceiling in percent of one core: the hard limit, scaled down by a throttle
    /// multiplier below 1 (a multiplier above 1 is a gateway priority boost, not more CPU).
    fn cpu_cap_percent(spec: &PersonaSpec) -> Option<f64> {
        let m = spec.budget.throttle_multiplier;
        let hard = spec.limits.cpu_max_percent;
        if m < 1.0 { Some(m * hard.unwrap_or(100.0)) } else { hard }
    }

    fn apply_cpu_control(&mut self, name: &str) {
        if let Some(pid) = self.slots.get(name).and_then(|s| s.life.pid()) {
            self.apply_cpu_control_to(name, pid);
        }
    }

    fn apply_cpu_control_to(&mut self, name: &str, pgid: u32) {
        let Some(slot) = self.slots.get_mut(name) else { return };
        let cap = Self::cpu_cap_percent(&slot.record.spec);
        if let Some(c) = slot.duty_cycle.take() {
            c.cancel();
        }
        if let Some(cgroups) = &self.cgroups {
            // a process joins its cpu cgroup only once it has a cap to enforce
            if cap.is_some() && !slot.cg_cpu {
                if slot.cgroup.is_none() {
                    match cgroups.create(name) {
                        Ok(cg) => slot.cgroup = Some(cg),
                        Err(e) => tracing::warn!(persona = name, error = %e, "cannot create a cgroup"),
                    }
                }
                if let Some(cg) = &slot.cgroup {
                    join_in_background(name, pgid, cg.procs_files(false, true));
                    slot.cg_cpu = true;
                }
            }
            if slot.cg_cpu
                && let Some(cg) = &slot.cgroup
                && let Err(e) = cg.set_cpu_max(cap)
            {
                tracing::warn!(persona = name, error = %e, "cannot set cpu limit");
            }
            if slot.cg_cpu {
                return;
            }
        }
        if let Some(cap) = cap.filter(|c| *c < 100.0) {
            let token = CancellationToken::new();
            throttle::spawn_duty_cycle(pgid, cap / 100.0, token.clone());
            slot.duty_cycle = Some(token);
        }
    }

    // ---------------------------------------------------------------- shutdown

    /// SIGTERM every process group, wait out the grace period for exits, SIGKILL the rest.
    /// Recorded phases stay as they were: a node restart brings back what was running.
    async fn stop_all(&mut self, internal: &mut mpsc::Receiver<Internal>) {
        let mut alive: HashMap<String, u64> = HashMap::new();
        for (name, slot) in &mut self.slots {
            if let Some(c) = slot.duty_cycle.take() {
                c.cancel();
            }
            if let Some(pid) = slot.life.pid() {
                process::signal_group(pid, Signal::SIGTERM);
                process::signal_group(pid, Signal::SIGCONT);
                alive.insert(name.clone(), slot.spawn_id);
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.settings.config.stop_grace_ms);
        while !alive.is_empty() {
            match tokio::time::timeout_at(deadline, internal.recv()).await {
                Ok(Some(Internal::Exited { name, spawn_id, .. })) => {
                    if alive.get(&name) == Some(&spawn_id) {
                        alive.remove(&name);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        for name in alive.keys() {
            if let Some(pid) = self.slots.get(name).and_then(|s| s.life.pid()) {
                tracing::warn!(persona = %name, pid, "did not stop within the grace period; SIGKILL");
                process::signal_group(pid, Signal::SIGKILL);
            }
        }
        let names: Vec<String> = self.slots.keys().cloned().collect();
        for name in names {
            let slot = self.slots.get_mut(&name).expect("listed above");
            if let Some(cg) = &slot.cgroup {
                cg.kill_all();
                cg.remove();
            }
            if slot.record.process.take().is_some() {
                slot.record.updated_ms = self.settings.clock.now_ms();
                self.outbox.push(Report::Record(Box::new(slot.record.clone())));
            }
        }
    }

    // ---------------------------------------------------------------- bookkeeping

    fn now(&self) -> u64 {
        self.settings.clock.now_ms()
    }

    fn bump_spawn_id(&mut self) -> u64 {
        self.next_spawn_id += 1;
        self.next_spawn_id
    }

    fn state_file(&self, name: &str) -> PathBuf {
        self.settings.data_dir.join("state").join(format!("{name}.state"))
    }

    /// A port for a new process: the OS picks a free one; ports of our running personas are
    /// never handed out twice.
    fn free_port(&self) -> Result<u16> {
        let in_use: HashSet<u16> = self.slots.values().filter_map(|s| s.port).collect();
        for _ in 0..16 {
            let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| SupervisorError::io("pick a port", e))?;
            let port = l.local_addr().map_err(|e| SupervisorError::io("pick a port", e))?.port();
            if !in_use.contains(&port) {
                return Ok(port);
            }
        }
        Err(SupervisorError::Conflict("no free port found".into()))
    }

    fn event(&mut self, name: &str, kind: EventKind, detail: String) {
        let now = self.now();
        tracing::info!(persona = name, kind = kind.as_str(), %detail, "event");
        self.outbox.push(Report::Event(Event::new(now, name, kind, detail)));
    }

    /// Sync the durable record with the lifecycle, emit it, publish status, wake waiters,
    /// and finish a removal once the process is gone.
    fn changed(&mut self, name: &str) {
        let now = self.now();
        let Some(slot) = self.slots.get_mut(name) else { return };
        if slot.record.spec.health_path.is_none() && slot.life.pid().is_some() {
            // nothing to probe: up once spawned
            slot.life.mark_running();
        }
        let phase = slot.life.phase();
        if !slot.life.phase().has_process() {
            slot.record.process = None;
        }
        slot.record.phase = phase;
        slot.record.reason = slot.life.reason().map(str::to_owned);
        slot.record.restarts = slot.life.restarts();
        slot.record.updated_ms = now;
        let record = slot.record.clone();
        let mut i = 0;
        while i < slot.waiters.len() {
            if slot.waiters[i].0.contains(&phase) {
                let (_, tx) = slot.waiters.swap_remove(i);
                let _ = tx.send(Ok(phase));
            } else {
                i += 1;
            }
        }
        let removing = slot.remove_reply.is_some() && !phase.has_process();
        self.outbox.push(Report::Record(Box::new(record)));
        if removing {
            self.finish_remove(name);
        } else {
            self.publish_status();
        }
    }

    fn publish_status(&self) {
        let table: BTreeMap<String, PersonaStatus> = self
            .slots
            .iter()
            .map(|(name, s)| {
                let spec = &s.record.spec;
                let status = PersonaStatus {
                    name: name.clone(),
                    phase: s.life.phase(),
                    reason: s.life.reason().map(str::to_owned),
                    pid: s.life.pid(),
                    port: s.port.filter(|_| s.life.phase().has_process()),
                    restarts: s.life.restarts(),
                    generation: s.record.generation,
                    epoch: s.record.epoch,
                    health: s.health,
                    importance: spec.importance,
                    model: spec.model.clone(),
                    budget: spec.budget.clone(),
                    rss_bytes: s.sample.rss_bytes,
                    peak_rss_bytes: s.peak_rss_bytes,
                    cpu_percent: s.sample.cpu_percent,
                    started_at_ms: s.record.process.as_ref().map(|p| p.started_at_ms),
                    spawn_id: s.spawn_id,
                    hibernate_after_idle_s: spec.hibernate_after_idle_s,
                };
                (name.clone(), status)
            })
            .collect();
        self.status_tx.send_replace(Arc::new(table));
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

fn exit_status(s: std::process::ExitStatus) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => ExitStatus::Code(c),
        (None, Some(sig)) => ExitStatus::Signal(sig),
        _ => ExitStatus::Unknown,
    }
}
