//! Decision scenarios, format `mindmesh-scenario/1` (see `simulations/scenarios/FORMAT.md`): a
//! stretch of mesh history and the actions a good supervisor would take at its end. Loading is
//! strict about structure — the format tag, lengths, references, known actions — and every
//! error names the file and the reason.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use mindmesh_core::metrics::ErrorKind;
use mindmesh_core::spec::{Limits, Maintenance};
use mindmesh_core::{Action, Budget, BudgetPatch, Importance, PersonaKind, Phase};
use serde::{Deserialize, Serialize};

use crate::error::BrainError;
use crate::view::{HostSeries, KindCount, MeshView, NodeView, PersonaSeries, PersonaView, ViewEvent, ViewEventKind};

pub const FORMAT: &str = "mindmesh-scenario/1";
/// Largest scenario file read.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Deserialize, Serialize)]
struct FileScenario {
    format: String,
    name: String,
    #[serde(default)]
    description: String,
    interval_s: f64,
    nodes: Vec<FileNode>,
    personas: Vec<FilePersona>,
    /// Absent in an unlabelled file (a live moment from `mindmesh brain snapshot`): its
    /// decisions are shown, not scored.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    expect: BTreeMap<String, FileExpect>,
}

#[derive(Debug, Deserialize, Serialize)]
struct FileNode {
    id: String,
    cpu_cores: u32,
    memory_mb: f64,
    series: FileNodeSeries,
}

#[derive(Debug, Deserialize, Serialize)]
struct FileNodeSeries {
    t: Vec<f64>,
    cpu_percent: Vec<Option<f64>>,
    memory_used_mb: Vec<Option<f64>>,
}

#[derive(Debug, Deserialize, Serialize)]
struct FilePersona {
    id: String,
    node: String,
    #[serde(default)]
    importance: Importance,
    #[serde(default)]
    kind: PersonaKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uptime_s_at_start: Option<f64>,
    /// The budget in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    budget: Option<Budget>,
    /// The starting point the brain gives back to (the spec's `[budget]`), when the budget in
    /// force differs from it; absent: `budget` is the starting point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    budget_spec: Option<Budget>,
    /// The envelope (`[budget.min]` / `[budget.max]`); absent fields: the default envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    budget_min: Option<BudgetPatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    budget_max: Option<BudgetPatch>,
    /// Scheduled maintenance (the spec's `[maintenance]`): restart after so many inferences
    /// or seconds of uptime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    maintenance: Option<Maintenance>,
    /// Inferences the process had served at `t = 0` (with `uptime_s_at_start`, what it had
    /// done before the trace); unknown: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inferences_at_start: Option<f64>,
    /// Hard limits (`memory_max_mb`: crossing it kills the process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limits: Option<Limits>,
    /// The observed phase (a live moment: a hibernating persona); running when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phase: Option<Phase>,
    series: FilePersonaSeries,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    events: Vec<FileEvent>,
    /// Errors by kind as the gateway classified them (a live moment), sparse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    error_kinds: Vec<FileKindCount>,
    /// Disruptive decisions and throttles already committed (a live moment), for the cooldown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    recent_actions: Vec<FileAction>,
}

#[derive(Debug, Deserialize, Serialize)]
struct FileKindCount {
    t: f64,
    kind: ErrorKind,
    count: u32,
}

#[derive(Debug, Deserialize, Serialize)]
struct FileAction {
    t: f64,
    action: Action,
}

#[derive(Debug, Deserialize, Serialize)]
struct FilePersonaSeries {
    t: Vec<f64>,
    memory_mb: Vec<Option<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpu_percent: Option<Vec<Option<f64>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requests: Option<Vec<Option<f64>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<Option<f64>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latency_p50_ms: Option<Vec<Option<f64>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latency_p95_ms: Option<Vec<Option<f64>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latency_p99_ms: Option<Vec<Option<f64>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queue_depth: Option<Vec<Option<f64>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restarts: Option<Vec<Option<f64>>>,
    /// What the persona reported of itself (0..=1); scenarios before these columns have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cache_hit_rate: Option<Vec<Option<f64>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kv_cache_usage: Option<Vec<Option<f64>>>,
}

#[derive(Debug, Deserialize, Serialize)]
struct FileEvent {
    t: f64,
    kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    detail: String,
}

#[derive(Debug, Deserialize, Serialize)]
struct FileExpect {
    accept: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    migrate_to: Option<Vec<String>>,
    /// Budget field name -> the acceptable directions of its change (`up`, `down`, `same`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    budget: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    why: String,
}

/// The actions that are right for one persona at the end of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    pub accept: Vec<Action>,
    pub migrate_to: Option<Vec<String>>,
    /// Acceptable directions of each named budget field (unnamed fields: any).
    pub budget: BTreeMap<crate::budget::Field, Vec<crate::budget::Direction>>,
    pub why: String,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub path: PathBuf,
    pub interval_ms: u64,
    /// The last sample time: the scenario is judged as of it.
    pub end_ms: u64,
    pub view: MeshView,
    /// By persona id; one for every persona, or none at all in an unlabelled scenario.
    pub expect: BTreeMap<String, Expectation>,
}

impl Scenario {
    /// Sample times before the end at which a brain is primed so hysteresis sees the history:
    /// the `cycles - 1` samples before the last, oldest first.
    pub fn priming_times(&self, cycles: u32) -> Vec<u64> {
        let t = self.view.personas.first().map(|p| &p.series.t_ms).or(self.view.nodes.first().map(|n| &n.series.t_ms));
        let Some(t) = t else { return Vec::new() };
        let n = t.len();
        let k = (cycles.saturating_sub(1) as usize).min(n.saturating_sub(1));
        t[n - 1 - k..n - 1].to_vec()
    }
}

/// Latest time a scenario may name, in seconds from its start (about 31 years): far beyond any
/// history, and small enough that a time plus any window the brain adds stays in range.
const MAX_TIME_S: f64 = 1e9;

fn ms(t_s: f64) -> u64 {
    (t_s * 1000.0).round() as u64
}

fn times(path: &Path, what: &str, t: &[f64]) -> Result<Vec<u64>, BrainError> {
    if t.is_empty() {
        return Err(BrainError::scenario(path, format!("{what}.t is empty")));
    }
    if t.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(BrainError::scenario(path, format!("{what}.t holds a negative or non-finite time")));
    }
    if t.iter().any(|v| *v > MAX_TIME_S) {
        return Err(BrainError::scenario(path, format!("{what}.t holds a time past {MAX_TIME_S} s")));
    }
    if t.windows(2).any(|w| w[1] <= w[0]) {
        return Err(BrainError::scenario(path, format!("{what}.t is not strictly increasing")));
    }
    Ok(t.iter().map(|&v| ms(v)).collect())
}

fn column(path: &Path, what: &str, name: &str, n: usize, c: Option<&Vec<Option<f64>>>) -> Result<Vec<f32>, BrainError> {
    let Some(c) = c else { return Ok(Vec::new()) };
    if c.len() != n {
        return Err(BrainError::scenario(path, format!("{what}.{name} has {} values for {n} times", c.len())));
    }
    Ok(c.iter().map(|v| v.map_or(f32::NAN, |x| x as f32)).collect())
}

/// A column of shares: every value within 0..=1 (or missing), as a persona's report must be.
fn share_column(
    path: &Path,
    what: &str,
    name: &str,
    n: usize,
    c: Option<&Vec<Option<f64>>>,
) -> Result<Vec<f32>, BrainError> {
    let v = column(path, what, name, n, c)?;
    if v.iter().any(|x| !x.is_nan() && !(0.0..=1.0).contains(x)) {
        return Err(BrainError::scenario(path, format!("{what}.{name} has a value outside 0..=1")));
    }
    Ok(v)
}

/// Parse one scenario from its text; `path` only names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, BrainError> {
    let f: FileScenario =
        mindmesh_core::spec::parse_json(text).map_err(|e| BrainError::scenario(path, e.to_string()))?;
    if f.format != FORMAT {
        return Err(BrainError::scenario(path, format!("format is {:?}, expected {FORMAT:?}", f.format)));
    }
    if !(f.interval_s.is_finite() && f.interval_s > 0.0) {
        return Err(BrainError::scenario(path, "interval_s must be positive"));
    }
    if f.nodes.is_empty() || f.personas.is_empty() {
        return Err(BrainError::scenario(path, "a scenario needs at least one node and one persona"));
    }
    let mut nodes = Vec::with_capacity(f.nodes.len());
    let mut node_ids = HashSet::new();
    for n in &f.nodes {
        let what = format!("node {}", n.id);
        if !node_ids.insert(n.id.as_str()) {
            return Err(BrainError::scenario(path, format!("node id {:?} appears twice", n.id)));
        }
        let t = times(path, &what, &n.series.t)?;
        let cpu = column(path, &what, "cpu_percent", t.len(), Some(&n.series.cpu_percent))?;
        let mem = column(path, &what, "memory_used_mb", t.len(), Some(&n.series.memory_used_mb))?;
        if !(n.memory_mb.is_finite() && n.memory_mb > 0.0) || n.cpu_cores == 0 {
            return Err(BrainError::scenario(path, format!("{what}: cpu_cores and memory_mb must be positive")));
        }
        nodes.push(NodeView {
            id: n.id.clone(),
            cpu_cores: n.cpu_cores,
            memory_total_mb: n.memory_mb as f32,
            series: HostSeries { t_ms: t, cpu_percent: cpu, memory_used_mb: mem },
        });
    }
    let mut personas = Vec::with_capacity(f.personas.len());
    let mut persona_ids = HashSet::new();
    for p in &f.personas {
        let what = format!("persona {}", p.id);
        if !persona_ids.insert(p.id.as_str()) {
            return Err(BrainError::scenario(path, format!("persona id {:?} appears twice", p.id)));
        }
        if !node_ids.contains(p.node.as_str()) {
            return Err(BrainError::scenario(path, format!("{what} is on unknown node {:?}", p.node)));
        }
        for (name, b) in [("budget", &p.budget), ("budget_spec", &p.budget_spec)] {
            if let Some(b) = b {
                b.validate().map_err(|e| BrainError::scenario(path, format!("{what}: {}", e.within(name))))?;
            }
        }
        for (name, b) in [("budget_min", &p.budget_min), ("budget_max", &p.budget_max)] {
            if let Some(b) = b {
                b.check().map_err(|e| BrainError::scenario(path, format!("{what}: {}", e.within(name))))?;
            }
        }
        let s = &p.series;
        let t = times(path, &what, &s.t)?;
        let n = t.len();
        let mut series = PersonaSeries {
            memory_mb: column(path, &what, "memory_mb", n, Some(&s.memory_mb))?,
            cpu_percent: column(path, &what, "cpu_percent", n, s.cpu_percent.as_ref())?,
            requests: column(path, &what, "requests", n, s.requests.as_ref())?,
            errors: column(path, &what, "errors", n, s.errors.as_ref())?,
            latency_p50_ms: column(path, &what, "latency_p50_ms", n, s.latency_p50_ms.as_ref())?,
            latency_p95_ms: column(path, &what, "latency_p95_ms", n, s.latency_p95_ms.as_ref())?,
            latency_p99_ms: column(path, &what, "latency_p99_ms", n, s.latency_p99_ms.as_ref())?,
            queue_depth: column(path, &what, "queue_depth", n, s.queue_depth.as_ref())?,
            restarts: column(path, &what, "restarts", n, s.restarts.as_ref())?,
            cache_hit_rate: share_column(path, &what, "cache_hit_rate", n, s.cache_hit_rate.as_ref())?,
            kv_cache_usage: share_column(path, &what, "kv_cache_usage", n, s.kv_cache_usage.as_ref())?,
            t_ms: t,
            error_kinds: Vec::new(),
        };
        // errors are among the requests
        if !series.requests.is_empty() && !series.errors.is_empty() {
            for i in 0..n {
                if series.errors[i] > series.requests[i] {
                    series.errors[i] = series.requests[i];
                }
            }
        }
        let mut events: Vec<ViewEvent> = p
            .events
            .iter()
            .filter(|e| e.t.is_finite() && (0.0..=MAX_TIME_S).contains(&e.t))
            .map(|e| ViewEvent::new(ms(e.t), ViewEventKind::parse(&e.kind), &e.detail))
            .collect();
        events.sort_by_key(|e| e.t_ms);
        let mut kinds: Vec<KindCount> = p
            .error_kinds
            .iter()
            .filter(|k| k.t.is_finite() && (0.0..=MAX_TIME_S).contains(&k.t))
            .map(|k| KindCount { t_ms: ms(k.t), kind: k.kind, count: k.count })
            .collect();
        kinds.sort_by_key(|k| k.t_ms);
        series.error_kinds = kinds;
        let mut recent_actions: Vec<(u64, Action)> = p
            .recent_actions
            .iter()
            .filter(|a| a.t.is_finite() && (0.0..=MAX_TIME_S).contains(&a.t))
            .map(|a| (ms(a.t), a.action))
            .collect();
        recent_actions.sort_by_key(|a| a.0);
        personas.push(PersonaView {
            id: p.id.clone(),
            node: p.node.clone(),
            importance: p.importance,
            kind: p.kind,
            model: p.model.clone(),
            budget: p.budget.clone(),
            envelope: crate::budget::Envelope {
                spec: p.budget_spec.clone().or_else(|| p.budget.clone()),
                min: p.budget_min.clone().unwrap_or_default(),
                max: p.budget_max.clone().unwrap_or_default(),
            },
            memory_limit_mb: p.limits.as_ref().and_then(|l| l.memory_max_mb).map(|m| m as f32),
            uptime_ms_at_first: p.uptime_s_at_start.filter(|u| u.is_finite() && (0.0..=MAX_TIME_S).contains(u)).map(ms),
            phase: p.phase.unwrap_or(Phase::Running),
            series,
            events,
            recent_actions,
            maintenance: crate::analyst::maintenance::Schedule {
                policy: p.maintenance.unwrap_or_default(),
                inferences_at_first: p
                    .inferences_at_start
                    .filter(|n| n.is_finite() && *n >= 0.0)
                    .map(|n| n.min(mindmesh_core::bounds::MAX_INFERENCES as f64) as u64),
            },
        });
    }
    let mut expect = BTreeMap::new();
    for (id, e) in &f.expect {
        if !persona_ids.contains(id.as_str()) {
            return Err(BrainError::scenario(path, format!("expect names unknown persona {id:?}")));
        }
        if e.accept.is_empty() {
            return Err(BrainError::scenario(path, format!("expect.{id}.accept is empty")));
        }
        let mut accept = Vec::new();
        for a in &e.accept {
            accept.push(
                Action::parse(a)
                    .ok_or_else(|| BrainError::scenario(path, format!("expect.{id}: unknown action {a:?}")))?,
            );
        }
        if let Some(targets) = &e.migrate_to
            && let Some(t) = targets.iter().find(|t| !node_ids.contains(t.as_str()))
        {
            return Err(BrainError::scenario(path, format!("expect.{id}.migrate_to names unknown node {t:?}")));
        }
        let mut budget = BTreeMap::new();
        for (field, dirs) in &e.budget {
            let f = crate::budget::Field::parse(field)
                .ok_or_else(|| BrainError::scenario(path, format!("expect.{id}.budget: unknown field {field:?}")))?;
            let dirs = dirs
                .iter()
                .map(|d| {
                    crate::budget::Direction::parse(d).ok_or_else(|| {
                        BrainError::scenario(path, format!("expect.{id}.budget.{field}: {d:?} is not up, down or same"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if dirs.is_empty() {
                return Err(BrainError::scenario(path, format!("expect.{id}.budget.{field} is empty")));
            }
            budget.insert(f, dirs);
        }
        expect.insert(id.clone(), Expectation { accept, migrate_to: e.migrate_to.clone(), budget, why: e.why.clone() });
    }
    // labels are all or nothing: a labelled file that misses a persona is a mistake
    if !expect.is_empty()
        && let Some(p) = personas.iter().find(|p| !expect.contains_key(&p.id))
    {
        return Err(BrainError::scenario(path, format!("expect has no entry for persona {:?}", p.id)));
    }
    let view = MeshView { nodes, personas };
    let end_ms = view.last_sample_ms().unwrap_or(0);
    Ok(Scenario {
        name: f.name,
        description: f.description,
        path: path.to_owned(),
        interval_ms: ms(f.interval_s),
        end_ms,
        view,
        expect,
    })
}

impl Scenario {
    /// No `expect`: a moment to replay, not to score.
    pub fn is_labelled(&self) -> bool {
        !self.expect.is_empty()
    }
}

fn col(c: &[f32]) -> Option<Vec<Option<f64>>> {
    (!c.is_empty()).then(|| c.iter().map(|&v| v.is_finite().then_some(f64::from(v))).collect())
}

/// A view as an unlabelled `mindmesh-scenario/1` (for `mindmesh brain snapshot`): times
/// become seconds from the earliest sample, so `parse` gives back the same view shifted to
/// start at 0. Personas and nodes without samples are left out (a scenario needs some);
/// committed actions older than the first sample too (their cooldown is long over).
pub fn export(view: &MeshView, name: &str, description: &str, interval_ms: u64) -> serde_json::Value {
    let firsts = view
        .nodes
        .iter()
        .filter_map(|n| n.series.t_ms.first())
        .chain(view.personas.iter().filter_map(|p| p.series.t_ms.first()));
    let t0 = firsts.copied().min().unwrap_or(0);
    let secs = |t_ms: u64| t_ms.saturating_sub(t0) as f64 / 1000.0;
    let times = |t: &[u64]| t.iter().map(|&t| secs(t)).collect::<Vec<f64>>();
    let nodes = view
        .nodes
        .iter()
        .filter(|n| !n.series.t_ms.is_empty())
        .map(|n| FileNode {
            id: n.id.clone(),
            cpu_cores: n.cpu_cores.max(1),
            memory_mb: f64::from(n.memory_total_mb),
            series: FileNodeSeries {
                t: times(&n.series.t_ms),
                cpu_percent: col(&n.series.cpu_percent).unwrap_or_else(|| vec![None; n.series.t_ms.len()]),
                memory_used_mb: col(&n.series.memory_used_mb).unwrap_or_else(|| vec![None; n.series.t_ms.len()]),
            },
        })
        .collect::<Vec<_>>();
    let node_ids: HashSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    let personas = view
        .personas
        .iter()
        .filter(|p| !p.series.t_ms.is_empty() && node_ids.contains(p.node.as_str()))
        .map(|p| {
            let s = &p.series;
            FilePersona {
                id: p.id.clone(),
                node: p.node.clone(),
                importance: p.importance,
                kind: p.kind,
                model: p.model.clone(),
                uptime_s_at_start: p.uptime_ms_at_first.map(|u| u as f64 / 1000.0),
                budget: p.budget.clone(),
                budget_spec: p.envelope.spec.clone().filter(|s| Some(s) != p.budget.as_ref()),
                budget_min: Some(p.envelope.min.clone()).filter(|b| !b.is_empty()),
                budget_max: Some(p.envelope.max.clone()).filter(|b| !b.is_empty()),
                maintenance: Some(p.maintenance.policy).filter(|m| !m.is_empty()),
                inferences_at_start: p.maintenance.inferences_at_first.map(|n| n as f64),
                limits: p
                    .memory_limit_mb
                    .map(|m| Limits { memory_max_mb: Some(m.round() as u64), ..Limits::default() }),
                phase: (p.phase != Phase::Running).then_some(p.phase),
                series: FilePersonaSeries {
                    t: times(&s.t_ms),
                    memory_mb: col(&s.memory_mb).unwrap_or_else(|| vec![None; s.t_ms.len()]),
                    cpu_percent: col(&s.cpu_percent),
                    requests: col(&s.requests),
                    errors: col(&s.errors),
                    latency_p50_ms: col(&s.latency_p50_ms),
                    latency_p95_ms: col(&s.latency_p95_ms),
                    latency_p99_ms: col(&s.latency_p99_ms),
                    queue_depth: col(&s.queue_depth),
                    restarts: col(&s.restarts),
                    cache_hit_rate: col(&s.cache_hit_rate),
                    kv_cache_usage: col(&s.kv_cache_usage),
                },
                events: p
                    .events
                    .iter()
                    .filter(|e| e.t_ms >= t0)
                    .map(|e| FileEvent { t: secs(e.t_ms), kind: event_kind(e.kind).into(), detail: e.detail.clone() })
                    .collect(),
                error_kinds: s
                    .error_kinds
                    .iter()
                    .filter(|k| k.t_ms >= t0)
                    .map(|k| FileKindCount { t: secs(k.t_ms), kind: k.kind, count: k.count })
                    .collect(),
                recent_actions: p
                    .recent_actions
                    .iter()
                    .filter(|(t, _)| *t >= t0)
                    .map(|&(t, action)| FileAction { t: secs(t), action })
                    .collect(),
            }
        })
        .collect();
    let file = FileScenario {
        format: FORMAT.into(),
        name: name.into(),
        description: description.into(),
        interval_s: interval_ms.max(1) as f64 / 1000.0,
        nodes,
        personas,
        expect: BTreeMap::new(),
    };
    serde_json::to_value(&file).unwrap_or(serde_json::Value::Null)
}

fn event_kind(k: ViewEventKind) -> &'static str {
    match k {
        ViewEventKind::Error => "error",
        ViewEventKind::Exit => "exit",
        ViewEventKind::HealthFail => "health_fail",
        ViewEventKind::Oom => "oom",
        ViewEventKind::Note => "note",
    }
}

pub fn load_file(path: &Path) -> Result<Scenario, BrainError> {
    use std::io::Read;
    // the read stops past the limit: a device or a FIFO has no size to check beforehand
    let file = std::fs::File::open(path).map_err(|e| BrainError::scenario(path, e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| BrainError::scenario(path, e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(BrainError::scenario(path, format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| BrainError::scenario(path, "not UTF-8 text".to_owned()))?;
    parse(path, &text)
}

/// Every `*.json` in `dir`, sorted by file name. All unreadable files are reported, each with
/// its reason.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, Vec<BrainError>> {
    let entries = std::fs::read_dir(dir).map_err(|e| vec![BrainError::scenario(dir, e.to_string())])?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(vec![BrainError::scenario(dir, "no *.json scenario files")]);
    }
    let (mut ok, mut errors) = (Vec::new(), Vec::new());
    for p in paths {
        match load_file(&p) {
            Ok(s) => ok.push(s),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(ok) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
      "format": "mindmesh-scenario/1", "name": "t", "interval_s": 60,
      "nodes": [{"id": "a", "cpu_cores": 4, "memory_mb": 8192,
                 "series": {"t": [0, 60, 120], "cpu_percent": [1, 2, 3], "memory_used_mb": [10, 10, 10]}}],
      "personas": [{"id": "p", "node": "a", "importance": "system", "kind": "local", "uptime_s_at_start": 30,
                    "budget": {"max_memory_mb": 100},
                    "series": {"t": [0, 60, 120], "memory_mb": [1, 2, 3], "latency_p50_ms": [null, 5, 6],
                               "requests": [0, 1, 1], "errors": [0, 3, 0]},
                    "events": [{"t": 100, "kind": "error", "detail": "x"}, {"t": 50, "kind": "weird"}]}],
      "expect": {"p": {"accept": ["continue", "investigate"], "why": "fine"}}
    }"#;

    #[test]
    fn parses_the_documented_shape() {
        let s = parse(Path::new("t.json"), GOOD).unwrap();
        assert_eq!(s.end_ms, 120_000);
        let p = &s.view.personas[0];
        assert_eq!(p.importance, Importance::System);
        assert!(p.series.latency_p50_ms[0].is_nan());
        assert!(p.series.cpu_percent.is_empty());
        assert_eq!(p.series.errors[1], 1.0, "errors clamped to requests");
        assert_eq!(p.events[0].kind, ViewEventKind::Note);
        assert_eq!(p.uptime_ms_at_first, Some(30_000));
        assert_eq!(s.expect["p"].accept, vec![Action::Continue, Action::Investigate]);
        assert_eq!(s.priming_times(3), vec![0, 60_000]);
    }

    #[test]
    fn an_export_parses_back_to_the_same_view_unlabelled() {
        let mut s = parse(Path::new("t.json"), GOOD).unwrap();
        // what only a live view has: gateway error kinds, a phase, committed actions
        let p = &mut s.view.personas[0];
        p.series.error_kinds = vec![KindCount { t_ms: 60_000, kind: ErrorKind::Upstream4xx(429), count: 2 }];
        p.phase = Phase::Hibernating;
        p.recent_actions = vec![(60_000, Action::Throttle)];
        p.memory_limit_mb = Some(512.0);
        let file = export(&s.view, "snap", "a moment", 60_000);
        assert!(file.get("expect").is_none(), "unlabelled: {file}");
        let back = parse(Path::new("snap.json"), &file.to_string()).unwrap();
        assert!(!back.is_labelled());
        // NaN (a missing value) is not equal to itself: compare what they print
        assert_eq!(format!("{:?}", back.view), format!("{:?}", s.view));
        assert_eq!((back.end_ms, back.interval_ms), (s.end_ms, 60_000));
        // a labelled file must still label every persona
        let two = GOOD.replace(
            r#""personas": [{"id": "p""#,
            r#""personas": [{"id": "q", "node": "a", "series": {"t": [0], "memory_mb": [1]}}, {"id": "p""#,
        );
        assert!(parse(Path::new("x.json"), &two).unwrap_err().to_string().contains("no entry for persona"));
    }

    #[test]
    fn errors_name_file_and_reason() {
        let bad = [
            (GOOD.replace("mindmesh-scenario/1", "v2"), "format"),
            (GOOD.replace("\"memory_mb\": [1, 2, 3]", "\"memory_mb\": [1, 2]"), "memory_mb has 2 values"),
            (GOOD.replace("\"node\": \"a\"", "\"node\": \"z\""), "unknown node"),
            (GOOD.replace("\"continue\", \"investigate\"", "\"reboot\""), "unknown action"),
            (GOOD.replace("\"t\": [0, 60, 120], \"memory_mb\"", "\"t\": [0, 120, 60], \"memory_mb\""), "increasing"),
            (GOOD.replace("\"p\": {\"accept\"", "\"q\": {\"accept\""), "unknown persona"),
            ("{".to_string(), "EOF"),
        ];
        for (text, want) in bad {
            let e = parse(Path::new("dir/x.json"), &text).unwrap_err().to_string();
            assert!(e.contains("dir/x.json") && e.contains(want), "{e} (wanted {want})");
        }
    }
}
