//! The in-memory twin of [`OsHost`](super::OsHost): processes that live in a table, on tokio's
//! clock (paused in tests and in the simulator, so minutes pass in milliseconds), with every
//! random choice — ports, start-up and stop delays — drawn from one seeded generator, so a
//! seed replays a run.
//!
//! What a process does is its [`Program`], looked up by the command's file name: how long it
//! takes to answer its health probe (or never), whether it exits on its own (a crash is an exit
//! by signal), how it takes SIGTERM, how much memory it uses, what state it saves. A command no
//! program is registered for fails to spawn, as a missing executable does.
//!
//! Beside the [`ProcessHost`] methods the twin lets its owner act as the world would — crash a
//! process, change its memory, kill what a dead node left — and observe it: the processes alive
//! now and a log of every start and exit ([`HostEvent`]), which the simulator's invariants read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use mindmesh_core::clock::Clock;
use mindmesh_core::config::CgroupMode;
use mindmesh_core::lifecycle::ExitStatus;
use mindmesh_core::metrics::HostSample;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{ProcessHost, SampleSource, Sig, Spawned};
use crate::cgroup::Cgroups;
use crate::error::{Result, SupervisorError};
use crate::process::{ENV_NODE_INSTANCE, ENV_PERSONA_ID, FoundProcess, SpawnPlan};
use crate::sampler::{ProcessReading, Reading};

/// Events kept for the observer between two drains; past it the oldest go (and are counted).
const MAX_EVENTS: usize = 100_000;
/// Ports handed out, as an OS's ephemeral range.
const PORTS: std::ops::Range<u16> = 20_000..60_000;
/// Tries at a port before giving up.
const PORT_TRIES: usize = 64;
/// Signal numbers, as Linux numbers them (what an exit by signal reports).
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// Wall-clock time that follows tokio's clock: with time paused (tests, the simulator) it
/// moves exactly as the twin's processes and every timer do.
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin: Instant,
    start_ms: u64,
}

impl TokioClock {
    /// A clock reading `start_ms` now.
    pub fn new(start_ms: u64) -> TokioClock {
        TokioClock { origin: Instant::now(), start_ms }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.start_ms + self.origin.elapsed().as_millis() as u64
    }
}

/// How a simulated process behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// From spawn until its health endpoint answers 2xx; None: it never does.
    pub healthy_after_ms: Option<u64>,
    /// It exits on its own this long after spawn, so (a crash is a `Signal`).
    pub exits_after: Option<(u64, ExitStatus)>,
    /// From SIGTERM to its exit; None: it ignores SIGTERM (only SIGKILL ends it).
    pub term_exit_ms: Option<u64>,
    /// Resident memory it reports.
    pub rss_bytes: u64,
    /// What its state hook returns; None: it has no hook.
    pub state: Option<Vec<u8>>,
    /// The path it serves its own metrics at, and what it answers there (other paths: 404).
    pub metrics: Option<(String, Vec<u8>)>,
    /// Delays above are stretched by up to this share, drawn from the host's seed.
    pub jitter: f64,
}

impl Program {
    /// A well-behaved server: healthy after 20 ms, stops 10 ms after SIGTERM, 64 MiB.
    pub fn server() -> Program {
        Program {
            healthy_after_ms: Some(20),
            exits_after: None,
            term_exit_ms: Some(10),
            rss_bytes: 64 * 1024 * 1024,
            state: None,
            metrics: None,
            jitter: 0.5,
        }
    }

    /// A program that never serves its health endpoint (a hung start, or no server at all).
    pub fn silent() -> Program {
        Program { healthy_after_ms: None, ..Program::server() }
    }

    pub fn exits_after(self, after_ms: u64, status: ExitStatus) -> Program {
        Program { exits_after: Some((after_ms, status)), ..self }
    }

    pub fn ignoring_term(self) -> Program {
        Program { term_exit_ms: None, ..self }
    }

    pub fn with_rss(self, rss_bytes: u64) -> Program {
        Program { rss_bytes, ..self }
    }

    pub fn with_state(self, state: Vec<u8>) -> Program {
        Program { state: Some(state), ..self }
    }

    /// It answers `GET path` with `body` (its own metrics).
    pub fn with_metrics(self, path: &str, body: impl Into<Vec<u8>>) -> Program {
        Program { metrics: Some((path.to_owned(), body.into())), ..self }
    }
}

/// A process alive in the twin, as its observer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemProcess {
    pub pid: u32,
    pub persona: String,
    /// The node instance that started it (its `MINDMESH_NODE_INSTANCE`).
    pub instance: String,
    pub port: Option<u16>,
    pub frozen: bool,
    pub rss_bytes: u64,
    /// The environment it was started with.
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEventKind {
    Spawned,
    Exited(ExitStatus),
}

/// A process started or ended, at `at` on tokio's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEvent {
    pub at: Instant,
    pub pid: u32,
    pub persona: String,
    pub instance: String,
    pub kind: HostEventKind,
}

struct Proc {
    view: MemProcess,
    program: Program,
    start_ticks: u64,
    /// When its health endpoint starts answering.
    healthy_at: Option<Instant>,
    /// A SIGTERM came while it was frozen: it acts on it when thawed.
    term_pending: bool,
    /// Its exit came due while it was frozen: it exits when thawed.
    exit_pending: Option<ExitStatus>,
    exit_tx: watch::Sender<Option<ExitStatus>>,
}

struct Inner {
    rng: SmallRng,
    programs: HashMap<String, Program>,
    next_pid: u32,
    next_ticks: u64,
    procs: BTreeMap<u32, Proc>,
    events: Vec<HostEvent>,
    events_dropped: u64,
    /// What [`ProcessHost::node_environment`] answers.
    node_env: BTreeMap<String, String>,
}

/// The twin. Cheap to clone; clones share the processes.
#[derive(Clone)]
pub struct MemHost {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for MemHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("MemHost").field("processes", &inner.procs.len()).finish()
    }
}

impl MemHost {
    pub fn new(seed: u64) -> MemHost {
        MemHost {
            inner: Arc::new(Mutex::new(Inner {
                rng: SmallRng::seed_from_u64(seed),
                programs: HashMap::new(),
                next_pid: 1000,
                next_ticks: 1,
                procs: BTreeMap::new(),
                events: Vec::new(),
                events_dropped: 0,
                node_env: BTreeMap::new(),
            })),
        }
    }

    /// Commands named `name` (the file name of the program) run `program`.
    pub fn with_program(self, name: &str, program: Program) -> MemHost {
        self.set_program(name, program);
        self
    }

    /// The node's environment as this host reports it (what personas may inherit from).
    pub fn with_node_environment(self, env: BTreeMap<String, String>) -> MemHost {
        self.lock().node_env = env;
        self
    }

    /// Register or replace a program; processes already running keep their old behaviour.
    pub fn set_program(&self, name: &str, program: Program) {
        self.lock().programs.insert(name.to_owned(), program);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // a panic while holding the lock leaves plain data behind: keep going with it
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The processes alive now, by pid.
    pub fn processes(&self) -> Vec<MemProcess> {
        self.lock().procs.values().map(|p| p.view.clone()).collect()
    }

    /// Every start and exit since the last call, oldest first, and how many were dropped
    /// because nobody drained them in time.
    pub fn drain_events(&self) -> (Vec<HostEvent>, u64) {
        let mut inner = self.lock();
        let dropped = std::mem::take(&mut inner.events_dropped);
        (std::mem::take(&mut inner.events), dropped)
    }

    /// The process crashes now: it exits by `signal` (a segfault is 11).
    pub fn crash(&self, pid: u32, signal: i32) -> bool {
        self.exit(pid, ExitStatus::Signal(signal))
    }

    /// Crash the process of `persona` that `instance` started, if there is one.
    pub fn crash_persona(&self, instance: &str, persona: &str, signal: i32) -> bool {
        let pid = self
            .lock()
            .procs
            .values()
            .find(|p| p.view.instance == instance && p.view.persona == persona)
            .map(|p| p.view.pid);
        pid.is_some_and(|pid| self.crash(pid, signal))
    }

    /// Kill every process `instance` started (what a node's fence guard does when its lease
    /// runs out with the node dead); how many there were.
    pub fn kill_instance(&self, instance: &str) -> usize {
        let pids: Vec<u32> =
            self.lock().procs.values().filter(|p| p.view.instance == instance).map(|p| p.view.pid).collect();
        pids.into_iter().filter(|pid| self.exit(*pid, ExitStatus::Signal(SIGKILL))).count()
    }

    /// The process now uses `rss_bytes` of memory.
    pub fn set_rss(&self, pid: u32, rss_bytes: u64) -> bool {
        match self.lock().procs.get_mut(&pid) {
            Some(p) => {
                p.view.rss_bytes = rss_bytes;
                true
            }
            None => false,
        }
    }

    /// End `pid` with `status`: out of the table, its exit announced. False if already gone.
    fn exit(&self, pid: u32, status: ExitStatus) -> bool {
        let mut inner = self.lock();
        let Some(p) = inner.procs.remove(&pid) else { return false };
        let _ = p.exit_tx.send(Some(status));
        let event = HostEvent {
            at: Instant::now(),
            pid,
            persona: p.view.persona,
            instance: p.view.instance,
            kind: HostEventKind::Exited(status),
        };
        inner.record(event);
        true
    }

    /// Exit `pid` with `status` after `after`, unless it is gone (or replaced) by then.
    fn exit_later(&self, pid: u32, start_ticks: u64, after: Duration, status: ExitStatus) {
        let host = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let frozen = {
                let mut inner = host.lock();
                match inner.procs.get_mut(&pid).filter(|p| p.start_ticks == start_ticks) {
                    None => return,
                    Some(p) if p.view.frozen => {
                        p.exit_pending = Some(status);
                        true
                    }
                    Some(_) => false,
                }
            };
            if !frozen {
                host.exit(pid, status);
            }
        });
    }

    fn on_term(&self, pid: u32) {
        let mut inner = self.lock();
        let Some(p) = inner.procs.get_mut(&pid) else { return };
        if p.view.frozen {
            p.term_pending = true;
            return;
        }
        let Some(ms) = p.program.term_exit_ms else { return };
        let (ticks, jitter) = (p.start_ticks, p.program.jitter);
        let after = inner.stretch(ms, jitter);
        drop(inner);
        self.exit_later(pid, ticks, after, ExitStatus::Signal(SIGTERM));
    }
}

impl Inner {
    fn record(&mut self, event: HostEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.remove(0);
            self.events_dropped += 1;
        }
        self.events.push(event);
    }

    /// `ms` stretched by up to `jitter` of itself.
    fn stretch(&mut self, ms: u64, jitter: f64) -> Duration {
        let extra = if jitter > 0.0 { self.rng.random_range(0.0..=jitter) } else { 0.0 };
        Duration::from_micros((ms as f64 * 1000.0 * (1.0 + extra)) as u64)
    }

    fn by_port(&self, port: u16) -> Option<&Proc> {
        self.procs.values().find(|p| p.view.port == Some(port))
    }
}

/// Follows readings requests with readings of the twin's processes.
struct MemSampler {
    host: MemHost,
    out: mpsc::Sender<Reading>,
}

impl SampleSource for MemSampler {
    fn request(&self, ts_ms: u64, pids: Vec<u32>) -> bool {
        let processes = {
            let inner = self.host.lock();
            pids.iter()
                .filter_map(|pid| inner.procs.get(pid))
                .map(|p| {
                    let cpu_percent = if p.view.frozen { 0.0 } else { 1.0 };
                    (p.view.pid, ProcessReading { rss_bytes: p.view.rss_bytes, cpu_percent, ..Default::default() })
                })
                .collect()
        };
        self.out.try_send(Reading { ts_ms, processes, host: HostSample::default() }).is_ok()
    }
}

impl ProcessHost for MemHost {
    /// Only the programs this host was given exist, as for [`ProcessHost::spawn`].
    fn check_program(
        &self,
        _command: &str,
        resolved: &std::path::Path,
        _working_dir: Option<&std::path::Path>,
    ) -> std::result::Result<(), String> {
        let name = resolved.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if self.lock().programs.contains_key(name) {
            Ok(())
        } else {
            Err(format!("{}: no such file", resolved.display()))
        }
    }

    fn spawn(&self, plan: &SpawnPlan) -> Result<Spawned> {
        let name = plan.program.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let mut inner = self.lock();
        let Some(program) = inner.programs.get(&name).cloned() else {
            let e = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
            return Err(SupervisorError::io(format!("spawn {}", plan.program.display()), e));
        };
        let pid = inner.next_pid;
        inner.next_pid += 1;
        let start_ticks = inner.next_ticks;
        inner.next_ticks += 1;
        let now = Instant::now();
        let healthy_at = program.healthy_after_ms.map(|ms| now + inner.stretch(ms, program.jitter));
        let exits_after = program.exits_after.map(|(ms, status)| (inner.stretch(ms, program.jitter), status));
        let instance = plan.env.get(ENV_NODE_INSTANCE).cloned().unwrap_or_default();
        let persona = plan.env.get(ENV_PERSONA_ID).cloned().unwrap_or_else(|| plan.persona.clone());
        let port = plan.env.get(crate::process::ENV_PORT).and_then(|p| p.parse().ok());
        let (exit_tx, mut exit_rx) = watch::channel(None);
        let view = MemProcess {
            pid,
            persona: persona.clone(),
            instance: instance.clone(),
            port,
            frozen: false,
            rss_bytes: program.rss_bytes,
            env: plan.env.clone(),
        };
        inner.procs.insert(
            pid,
            Proc { view, program, start_ticks, healthy_at, term_pending: false, exit_pending: None, exit_tx },
        );
        inner.record(HostEvent { at: now, pid, persona, instance, kind: HostEventKind::Spawned });
        drop(inner);
        if let Some((after, status)) = exits_after {
            self.exit_later(pid, start_ticks, after, status);
        }
        let exited = Box::pin(async move {
            match exit_rx.wait_for(Option::is_some).await {
                Ok(status) => status.unwrap_or(ExitStatus::Unknown),
                Err(_) => ExitStatus::Unknown,
            }
        });
        Ok(Spawned { pid, start_ticks, exited })
    }

    fn signal_group(&self, pgid: u32, sig: Sig) {
        match sig {
            Sig::Kill => {
                self.exit(pgid, ExitStatus::Signal(SIGKILL));
            }
            Sig::Term => self.on_term(pgid),
            Sig::Stop => {
                if let Some(p) = self.lock().procs.get_mut(&pgid) {
                    p.view.frozen = true;
                }
            }
            Sig::Cont => {
                let (term, exit) = {
                    let mut inner = self.lock();
                    let Some(p) = inner.procs.get_mut(&pgid) else { return };
                    p.view.frozen = false;
                    (std::mem::take(&mut p.term_pending), p.exit_pending.take())
                };
                if let Some(status) = exit {
                    self.exit(pgid, status);
                } else if term {
                    self.on_term(pgid);
                }
            }
        }
    }

    fn group_alive(&self, pgid: u32) -> bool {
        self.lock().procs.contains_key(&pgid)
    }

    fn watch_exit(&self, pid: u32) -> Option<BoxFuture<'static, ()>> {
        let mut rx = self.lock().procs.get(&pid)?.exit_tx.subscribe();
        Some(Box::pin(async move {
            let _ = rx.wait_for(Option::is_some).await;
        }))
    }

    fn scan_instance(&self, instance: &str) -> Vec<FoundProcess> {
        self.lock()
            .procs
            .values()
            .filter(|p| p.view.instance == instance)
            .map(|p| FoundProcess {
                pid: p.view.pid,
                start_ticks: p.start_ticks,
                persona: p.view.persona.clone(),
                port: p.view.port,
            })
            .collect()
    }

    fn free_port(&self, in_use: &HashSet<u16>) -> Result<u16> {
        let mut inner = self.lock();
        for _ in 0..PORT_TRIES {
            let port = inner.rng.random_range(PORTS);
            if !in_use.contains(&port) && inner.by_port(port).is_none() {
                return Ok(port);
            }
        }
        Err(SupervisorError::Conflict("no free port found".into()))
    }

    fn probe(&self, port: u16, path: &str) -> BoxFuture<'static, bool> {
        let now = Instant::now();
        let ok = path.starts_with('/')
            && self.lock().by_port(port).is_some_and(|p| !p.view.frozen && p.healthy_at.is_some_and(|at| at <= now));
        Box::pin(futures::future::ready(ok))
    }

    fn save_state(
        &self,
        port: u16,
        _timeout: Duration,
        max_bytes: u64,
    ) -> BoxFuture<'static, std::result::Result<Option<Vec<u8>>, String>> {
        let r = match self.lock().by_port(port) {
            None => Err("connection refused".to_owned()),
            Some(p) if p.view.frozen => Err("operation timed out".to_owned()),
            Some(p) => match &p.program.state {
                None => Ok(None),
                Some(s) if s.len() as u64 > max_bytes => Err(format!("state larger than {max_bytes} bytes")),
                Some(s) => Ok(Some(s.clone())),
            },
        };
        Box::pin(futures::future::ready(r))
    }

    fn fetch_metrics(
        &self,
        port: u16,
        path: &str,
        _timeout: Duration,
        max_bytes: u64,
    ) -> BoxFuture<'static, std::result::Result<Option<Vec<u8>>, String>> {
        let r = match self.lock().by_port(port) {
            None => Err("connection refused".to_owned()),
            Some(_) if !path.starts_with('/') => Err("bad path".to_owned()),
            Some(p) if p.view.frozen => Err("operation timed out".to_owned()),
            Some(p) => match &p.program.metrics {
                Some((at, _)) if at != path => Ok(None),
                None => Ok(None),
                Some((_, b)) if b.len() as u64 > max_bytes => Err(format!("metrics larger than {max_bytes} bytes")),
                Some((_, b)) => Ok(Some(b.clone())),
            },
        };
        Box::pin(futures::future::ready(r))
    }

    fn sampler(&self, out: mpsc::Sender<Reading>, _full_every_ticks: u32) -> std::io::Result<Box<dyn SampleSource>> {
        Ok(Box::new(MemSampler { host: self.clone(), out }))
    }

    fn cgroups(&self, _mode: CgroupMode, _instance: &str) -> Option<Cgroups> {
        None
    }

    fn node_environment(&self) -> BTreeMap<String, String> {
        self.lock().node_env.clone()
    }

    fn node_exe(&self) -> Option<String> {
        None
    }

    /// A twin's process has no output to collect.
    fn captures_output(&self) -> bool {
        false
    }
}
