//! What the node counts for `/metrics` beyond what the gateway and the mesh keep themselves:
//! restarts by reason and events by kind (from the recorder), spawn-to-ready times (from the
//! supervisor's status table), and the brain's cycles, decisions and LLM calls (from the
//! leader loop).
//!
//! Every label takes values from a fixed set (reasons, event kinds, actions, analysts, error
//! kinds of the brain) or is a persona of this node's status table, which the node bounds;
//! personas that leave the table leave these maps at the next scrape. No label ever holds a
//! request, an error's text or anything a persona says.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mindmesh_brain::CycleReport;
use mindmesh_core::clock::Clock;
use mindmesh_core::event::{Event, EventKind};
use mindmesh_core::telemetry::{self, Histogram, HistogramSnapshot};
use mindmesh_core::{Action, AnalystKind, Phase};
use mindmesh_supervisor::StatusTable;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Why a persona was restarted automatically, as its `Restart` event says.
pub const RESTART_REASONS: [&str; 5] = ["exit_code", "signal", "limit", "spawn_failed", "other"];

/// The reason of a `Restart` event's detail (`restart #N in D ms after WHY`, written by
/// `mindmesh_core::lifecycle`): WHY is the exit status, `spawn failed: …`, or a hard limit's
/// text. The tests below drive the lifecycle itself, so a changed wording fails here.
pub fn restart_reason(detail: &str) -> &'static str {
    let Some((_, why)) = detail.split_once(" after ") else { return "other" };
    if why.starts_with("exit code") {
        "exit_code"
    } else if why.starts_with("signal") {
        "signal"
    } else if why.starts_with("spawn failed") {
        "spawn_failed"
    } else if why.starts_with("unknown status") {
        "other"
    } else {
        "limit"
    }
}

/// Analysts in a fixed order, for the decision counters.
const ANALYSTS: [AnalystKind; 6] = [
    AnalystKind::Builtin,
    AnalystKind::Llm,
    AnalystKind::Naive,
    AnalystKind::Operator,
    AnalystKind::Local,
    AnalystKind::Failover,
];

/// Kinds of the brain's LLM errors (`BrainError::kind`), listed so each series exists from the
/// start (an alert's `increase()` misses a series' first sample).
pub const LLM_FALLBACK_KINDS: [&str; 4] = ["timeout", "http", "invalid", "client"];

pub struct Telemetry {
    spawn_ready: Histogram,
    per_persona: Mutex<BTreeMap<String, PersonaCounts>>,
    events: Mutex<BTreeMap<&'static str, u64>>,
    pub brain: BrainTelemetry,
}

/// One persona's counters since this node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PersonaCounts {
    /// By [`RESTART_REASONS`].
    pub restarts: [u64; RESTART_REASONS.len()],
    pub crash_loops: u64,
    /// Evicted to a deeper tier to make room for another persona.
    pub evictions: u64,
    /// Refused a start or wake for want of memory (its callers got 503).
    pub no_room: u64,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            spawn_ready: Histogram::new(telemetry::SPAWN_READY_S),
            per_persona: Mutex::default(),
            events: Mutex::default(),
            brain: BrainTelemetry::default(),
        }
    }
}

impl Telemetry {
    /// An event the recorder stored.
    pub fn event(&self, e: &Event) {
        *lock(&self.events).entry(e.kind.as_str()).or_default() += 1;
        let mut per = lock(&self.per_persona);
        match e.kind {
            EventKind::Restart => {
                let i = RESTART_REASONS.iter().position(|r| *r == restart_reason(&e.detail)).unwrap_or(4);
                per.entry(e.persona.clone()).or_default().restarts[i] += 1;
            }
            EventKind::CrashLoop => per.entry(e.persona.clone()).or_default().crash_loops += 1,
            EventKind::Evict => per.entry(e.persona.clone()).or_default().evictions += 1,
            EventKind::NoRoom => per.entry(e.persona.clone()).or_default().no_room += 1,
            EventKind::Removed => {
                per.remove(&e.persona);
            }
            _ => {}
        }
    }

    pub fn events(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.events).clone()
    }

    /// The counts of each of `personas` (zero for those without any), forgetting personas that
    /// are no longer there: the series of a removed persona end with it.
    pub fn personas<'a>(&self, personas: impl Iterator<Item = &'a str>) -> Vec<(String, PersonaCounts)> {
        let mut per = lock(&self.per_persona);
        let rows: Vec<(String, PersonaCounts)> =
            personas.map(|p| (p.to_owned(), per.get(p).copied().unwrap_or_default())).collect();
        per.retain(|k, _| rows.iter().any(|(p, _)| p == k));
        rows
    }

    pub fn spawn_ready(&self) -> HistogramSnapshot {
        self.spawn_ready.snapshot()
    }

    /// Watch the status table: a persona seen running under a spawn not counted yet counts the
    /// time since its process started. The watch keeps only the latest table, so a short
    /// `starting` may never be seen; the spawn id is what tells a new process. Processes
    /// started before this watch (adopted from an earlier run of the node) count nothing.
    pub async fn watch_spawns(
        self: Arc<Self>,
        mut status: watch::Receiver<StatusTable>,
        clock: Arc<dyn Clock>,
        cancel: CancellationToken,
    ) {
        let since_ms = clock.now_ms();
        let mut counted: HashMap<String, u64> = HashMap::new();
        loop {
            let table = status.borrow_and_update().clone();
            let now_ms = clock.now_ms();
            for s in table.values() {
                if s.phase != Phase::Running || counted.get(&s.name) == Some(&s.spawn_id) {
                    continue;
                }
                counted.insert(s.name.clone(), s.spawn_id);
                if let Some(at) = s.started_at_ms.filter(|&at| at >= since_ms) {
                    self.spawn_ready.observe(Duration::from_millis(now_ms.saturating_sub(at)));
                }
            }
            counted.retain(|n, _| table.contains_key(n));
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = status.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// The brain's figures on this node (only a leader runs cycles).
pub struct BrainTelemetry {
    cycles: AtomicU64,
    cycle_duration: Histogram,
    /// `[action][analyst]`, by `Action::ALL` and [`ANALYSTS`].
    decisions: [[AtomicU64; ANALYSTS.len()]; Action::ALL.len()],
    fallbacks: Mutex<BTreeMap<&'static str, u64>>,
    llm_duration: Histogram,
    llm_calls: Mutex<BTreeMap<&'static str, u64>>,
    last_cycle_ms: AtomicU64,
    /// 0–100, as the report has it.
    system_health: AtomicU64,
}

impl Default for BrainTelemetry {
    fn default() -> Self {
        BrainTelemetry {
            cycles: AtomicU64::new(0),
            cycle_duration: Histogram::new(telemetry::BRAIN_S),
            decisions: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            fallbacks: Mutex::new(LLM_FALLBACK_KINDS.iter().map(|k| (*k, 0)).collect()),
            llm_duration: Histogram::new(telemetry::BRAIN_S),
            llm_calls: Mutex::default(),
            last_cycle_ms: AtomicU64::new(0),
            system_health: AtomicU64::new(100),
        }
    }
}

/// [`BrainTelemetry`] read at one moment.
pub struct BrainSnapshot {
    pub cycles_total: u64,
    pub cycle_duration: HistogramSnapshot,
    /// `(action, analyst, count)`, every combination.
    pub decisions: Vec<(&'static str, &'static str, u64)>,
    pub fallbacks: BTreeMap<&'static str, u64>,
    pub llm_duration: HistogramSnapshot,
    pub llm_calls: BTreeMap<&'static str, u64>,
    pub last_cycle_ms: Option<u64>,
    pub system_health: u64,
}

impl BrainTelemetry {
    /// One cycle the leader ran, and how long its analysis took (real time, whatever the
    /// brain's clock).
    pub fn cycle(&self, report: &CycleReport, took: Duration) {
        self.cycles.fetch_add(1, Ordering::Relaxed);
        self.cycle_duration.observe(took);
        for d in &report.decisions {
            let a = Action::ALL.iter().position(|x| *x == d.action);
            let k = ANALYSTS.iter().position(|x| *x == d.analyst);
            if let (Some(a), Some(k)) = (a, k) {
                self.decisions[a][k].fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(f) = &report.fallback {
            *lock(&self.fallbacks).entry(f.kind).or_default() += 1;
        }
        if let Some(llm) = &report.llm {
            self.llm_duration.observe(Duration::from_millis(llm.latency_ms));
            *lock(&self.llm_calls).entry(llm.outcome).or_default() += 1;
        }
        self.last_cycle_ms.store(report.now_ms, Ordering::Relaxed);
        self.system_health.store(u64::from(report.system_health), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> BrainSnapshot {
        let mut decisions = Vec::with_capacity(Action::ALL.len() * ANALYSTS.len());
        for (a, row) in Action::ALL.iter().zip(&self.decisions) {
            for (k, n) in ANALYSTS.iter().zip(row) {
                decisions.push((a.as_str(), k.as_str(), n.load(Ordering::Relaxed)));
            }
        }
        BrainSnapshot {
            cycles_total: self.cycles.load(Ordering::Relaxed),
            cycle_duration: self.cycle_duration.snapshot(),
            decisions,
            fallbacks: lock(&self.fallbacks).clone(),
            llm_duration: self.llm_duration.snapshot(),
            llm_calls: lock(&self.llm_calls).clone(),
            last_cycle_ms: Some(self.last_cycle_ms.load(Ordering::Relaxed)).filter(|&t| t > 0),
            system_health: self.system_health.load(Ordering::Relaxed),
        }
    }
}

/// A poisoned counter map still counts: the panic that poisoned it did not corrupt a `u64`.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use mindmesh_core::lifecycle::{Effect, ExitStatus, Input, Lifecycle, RestartConfig};
    use mindmesh_core::spec::RestartPolicy;

    use super::*;

    /// The `Restart` details the lifecycle writes for each cause.
    fn restart_detail(cause: impl FnOnce(&mut Lifecycle, &RestartConfig) -> Vec<Effect>) -> String {
        let cfg = RestartConfig::default();
        let mut life = Lifecycle::new(RestartPolicy::Always);
        life.handle(Input::Start, 0, 0.0, &cfg);
        life.handle(Input::Spawned { pid: 7 }, 1, 0.0, &cfg);
        let fx = cause(&mut life, &cfg);
        fx.into_iter()
            .find_map(|e| match e {
                Effect::Record { kind: EventKind::Restart, detail } => Some(detail),
                _ => None,
            })
            .expect("a restart")
    }

    #[test]
    fn restart_reasons_follow_the_lifecycle_s_wording() {
        let exit = |status| move |l: &mut Lifecycle, c: &RestartConfig| l.handle(Input::Exited { status }, 10, 0.0, c);
        assert_eq!(restart_reason(&restart_detail(exit(ExitStatus::Code(3)))), "exit_code");
        assert_eq!(restart_reason(&restart_detail(exit(ExitStatus::Signal(9)))), "signal");
        assert_eq!(restart_reason(&restart_detail(exit(ExitStatus::Unknown))), "other");
        let limit = restart_detail(|l, c| {
            l.handle(Input::LimitExceeded { reason: "memory 900 MB over hard limit 512 MB".into() }, 5, 0.0, c);
            l.handle(Input::Exited { status: ExitStatus::Signal(9) }, 10, 0.0, c)
        });
        assert_eq!(restart_reason(&limit), "limit", "{limit}");
        let cfg = RestartConfig::default();
        let mut life = Lifecycle::new(RestartPolicy::Always);
        life.handle(Input::Start, 0, 0.0, &cfg);
        let spawn = life
            .handle(Input::SpawnFailed { error: "no such file".into() }, 1, 0.0, &cfg)
            .into_iter()
            .find_map(|e| match e {
                Effect::Record { kind: EventKind::Restart, detail } => Some(detail),
                _ => None,
            })
            .expect("a restart");
        assert_eq!(restart_reason(&spawn), "spawn_failed", "{spawn}");
        assert_eq!(restart_reason("garbage"), "other");
    }

    #[test]
    fn persona_counts_follow_events_and_forget_removed_personas() {
        let t = Telemetry::default();
        let ev = |persona: &str, kind, detail: &str| Event {
            seq: 0,
            ts_ms: 0,
            persona: persona.into(),
            kind,
            detail: detail.into(),
        };
        t.event(&ev("a", EventKind::Restart, "restart #1 in 100 ms after exit code 1"));
        t.event(&ev("a", EventKind::Restart, "restart #2 in 200 ms after signal 9 (SIGKILL)"));
        t.event(&ev("a", EventKind::CrashLoop, "crash loop"));
        t.event(&ev("b", EventKind::Restart, "restart #1 in 100 ms after exit code 1"));
        let rows = t.personas(["a", "c"].into_iter());
        assert_eq!(rows[0].1, PersonaCounts { restarts: [1, 1, 0, 0, 0], crash_loops: 1, ..Default::default() });
        assert_eq!(rows[1].1, PersonaCounts::default(), "a persona without restarts has zeros");
        assert!(t.personas(["b"].into_iter())[0].1 == PersonaCounts::default(), "b was forgotten");
        assert_eq!(t.events().get("restart"), Some(&3));
    }
}
