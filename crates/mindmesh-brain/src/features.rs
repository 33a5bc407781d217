//! Features: what the analysts see. Every feature compares a persona with its own history,
//! with its peers or with its host, so no decision rests on an absolute number alone.
//!
//! Per persona: memory trend by regression over the current process's history with its fit
//! (stable, growing, oscillating, leaking) and a floor fit that sees through GC sawtooth;
//! latency against its own baseline and against the median of comparable peers (same model
//! first, then same kind); error rate against its own base rate (a Poisson test) and the kinds
//! of errors; idle time against its usual gaps; a queue that grows while nothing completes;
//! restarts in the last 5 minutes and hour; uptime; CPU against its own baseline and its
//! host; what it reports of itself (cache hit rate falling, KV cache near full). Per node: CPU and memory pressure. Mesh-wide: the share of personas degraded at once.
//!
//! Cost: the history older than the recent window is read through the persona's
//! [`PersonaDigest`] and its [`HistSummary`] (both cached across cycles by [`FeatureCache`],
//! the summary recomputed only when a bucket closes); each cycle reads only the recent window
//! raw, at most [`MAX_RAW_SAMPLES`] samples.

use std::collections::HashMap;

use mindmesh_core::{Importance, PersonaKind, Phase};
use serde::Serialize;

use crate::classify::{ClassMix, ErrorClass, classify_kind, classify_text};
use crate::digest::{PersonaDigest, is_collapse};
use crate::history::{self, HIGH_RATIO, HistSummary, WARMUP_MS, latency_ratio};
use crate::recent::{self, LOAD_SKIP_MS, MemoryLine};
use crate::stats::{linreg, median_of, poisson_tail};
use crate::view::{MeshView, NodeView, PersonaSeries, PersonaView, ViewEventKind};

const MIN: u64 = 60_000;
/// Read raw each cycle; everything older is in the digest.
pub const RECENT_WINDOW_MS: u64 = 30 * MIN;
/// "Now" for latency.
pub const LATENCY_RECENT_MS: u64 = 15 * MIN;
pub const CPU_RECENT_MS: u64 = 10 * MIN;
/// A host at this recent CPU (median of the last `CPU_RECENT_MS`) is saturated.
pub const CPU_SATURATED_PERCENT: f32 = 85.0;
/// Most raw samples read per persona per cycle.
pub const MAX_RAW_SAMPLES: usize = 512;
/// Shortest history on which a memory trend is called a leak.
pub const MIN_LEAK_SPAN_MS: u64 = 60 * MIN;
/// The seed's crash-loop rule: more than this many restarts in five minutes.
pub const CRASH_LOOP_RESTARTS: f32 = 3.0;
pub const CRASH_LOOP_WINDOW_MS: u64 = 5 * MIN;
/// Error events read per persona per cycle.
const MAX_EVENTS_READ: usize = 256;
/// Fewest samples a recent window covers: with coarse samples the windows widen, so one
/// sample never decides.
pub const MIN_WINDOW_SAMPLES: u64 = 12;
/// After a process starts, its first answers are not compared with its replicas' for this long
/// (caches warm, the model pages in).
pub const LIVE_WARMUP_MS: u64 = 2 * MIN;
/// A persona far above its replicas for this long is degraded (not a passing spike).
pub const REPLICA_SUSTAIN_MS: u64 = 3 * MIN;
/// A persona's baseline may not sit above its replicas' level times this: a replica that has
/// always been slow is judged against what its model does elsewhere.
pub const REPLICA_FLOOR: f32 = 1.3;
/// The shortest window errors are judged over, however little history there is.
pub const MIN_ERROR_WINDOW_MS: u64 = 3 * MIN;
/// Memory growth this close to the hard limit (minutes, from the fitted slope) must be acted on.
pub const LIMIT_SOON_MIN: f32 = 30.0;

/// The recent windows of one persona: at least their nominal length and at least
/// [`MIN_WINDOW_SAMPLES`] (half for latency and CPU) of its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Windows {
    /// Read raw; errors are judged over it, in three parts.
    pub recent_ms: u64,
    pub latency_ms: u64,
    pub cpu_ms: u64,
}

impl Windows {
    pub fn for_interval(interval_ms: u64) -> Self {
        Windows {
            recent_ms: RECENT_WINDOW_MS.max(MIN_WINDOW_SAMPLES * interval_ms),
            latency_ms: LATENCY_RECENT_MS.max(MIN_WINDOW_SAMPLES / 2 * interval_ms),
            cpu_ms: CPU_RECENT_MS.max(MIN_WINDOW_SAMPLES / 2 * interval_ms),
        }
    }
    pub fn part_ms(&self) -> u64 {
        self.recent_ms / 3
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemTrend {
    /// Too little history since the process started.
    Unknown,
    Stable,
    Growing,
    /// Swings (GC, KV cache, load) around a flat level.
    Oscillating,
    /// Steady, well-fitted, persistent growth over a long span.
    Leaking,
}

impl MemTrend {
    pub fn as_str(self) -> &'static str {
        match self {
            MemTrend::Unknown => "unknown",
            MemTrend::Stable => "stable",
            MemTrend::Growing => "growing",
            MemTrend::Oscillating => "oscillating",
            MemTrend::Leaking => "leaking",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerGroup {
    None,
    SameModel,
    SameKind,
    All,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryFeatures {
    pub now_mb: f32,
    pub trend: MemTrend,
    pub slope_mb_per_min: f32,
    pub fit_r2: f32,
    pub floor_slope_mb_per_min: f32,
    pub floor_r2: f32,
    /// History since the process started (after warm-up).
    pub span_ms: u64,
    /// The part of it since memory started to grow (all of it for a steady line).
    pub growth_span_ms: u64,
    /// Fitted growth over the growth span, relative to its fitted start.
    pub growth_frac: f32,
    /// Both halves of the growth span grow at a comparable rate.
    pub persistent: bool,
    /// Typical swing within a bucket, relative to the level.
    pub swing_frac: f32,
    /// Highest level in the history before the recent window (95th percentile of peaks).
    pub hist_high_mb: f32,
    /// How far above that the current level is (0 when within).
    pub spike_frac: f32,
    pub budget_mb: Option<f32>,
    pub minutes_to_budget: Option<f32>,
    /// The hard limit, and when the fitted growth reaches it.
    pub limit_mb: Option<f32>,
    pub minutes_to_limit: Option<f32>,
    /// Median growth of comparable peers over the same span.
    pub peer_growth_frac: f32,
    /// A line through the current process's recent samples: the data at hand, judged before
    /// the history has anything to say (and after, for growth that started lately).
    pub recent: Option<MemoryLine>,
    /// The recent line grows steadily, beyond the process's usual range.
    pub growing_now: bool,
}

impl MemoryFeatures {
    /// Above its memory budget now.
    pub fn over_budget(&self) -> bool {
        self.budget_mb.is_some_and(|b| self.now_mb.is_finite() && self.now_mb > b)
    }

    /// Growing now, and past its budget or close to its hard limit: a restart is due before
    /// the limit kills it.
    pub fn growth_needs_action(&self) -> bool {
        self.growing_now && (self.over_budget() || self.minutes_to_limit.is_some_and(|t| t <= LIMIT_SOON_MIN))
    }
}

/// What a persona's latency is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// Nothing yet: no history of its own and no replicas.
    None,
    /// Its own history.
    Own,
    /// Its same-model replicas' recent level (times [`REPLICA_FLOOR`]): its own history is too
    /// short, or sits above what its model does elsewhere.
    Replicas,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyFeatures {
    pub recent_p50_ms: f32,
    pub recent_p95_ms: f32,
    /// The 15 minutes before the recent window.
    pub prev_p50_ms: f32,
    pub prev_p95_ms: f32,
    pub baseline: Baseline,
    pub base_p50_ms: f32,
    pub base_p95_ms: f32,
    /// Recent against own baseline (geometric mean of the p50 and p95 ratios); NaN if unknown.
    pub ratio: f32,
    /// The same for the 15 minutes before.
    pub prev_ratio: f32,
    /// How long the ratio has been high (0 if it is not).
    pub degraded_for_ms: u64,
    /// Fitted end over fitted start of the p50 over the whole history, and its fit.
    pub trend_ratio: f32,
    pub trend_r2: f32,
    /// Median ratio of comparable peers.
    pub peer_ratio: f32,
    pub peer_group: PeerGroup,
    /// Recent against same-model replicas' recent (geometric mean of p50 and p95 ratios).
    pub replica_ratio: f32,
    pub replica_p50_ms: f32,
    pub replica_p95_ms: f32,
    pub over_budget: bool,
    pub warming_up: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorFeatures {
    /// The window errors are judged over: enough for about 300 requests, 30 min to 2 h.
    pub window_ms: u64,
    pub requests_window: f32,
    pub errors_window: f32,
    pub rate_window: f32,
    pub rate_last10: f32,
    /// The base rate the window is judged against (see `base_from`).
    pub rate_base: f32,
    pub base_from: BaseFrom,
    /// Its own history's base rate (before a step up), if there is enough history.
    pub rate_own_base: f32,
    /// When the error rate stepped up to its current level, if it did.
    pub elevated_since_ms: Option<u64>,
    /// Probability of at least this many errors at the base rate.
    pub p_value: f64,
    /// Binomial dispersion of the errors since the rate stepped up: about 1 for a steady
    /// failure rate, far above for a clump of a few minutes.
    pub dispersion: f32,
    /// Of the three 10-minute parts of the window, how many are elevated.
    pub elevated_parts: u8,
    /// Errors are up against the base rate (looser than `burst`).
    pub elevated: bool,
    /// A current, spread, significant rise over the base rate and peers' — the analyst acts on it.
    pub burst: bool,
    #[serde(serialize_with = "ser_mix")]
    pub mix: ClassMix,
    /// Median rate of comparable peers (same model, then same kind, then everyone).
    pub peer_rate: f32,
    /// Median rate of the rest of the mesh, each model counted once (its own excluded).
    pub mesh_rate: f32,
    /// (requests, errors) in each third of the window, oldest first.
    #[serde(skip)]
    pub parts: [(f32, f32); 3],
}

/// Where an error base rate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseFrom {
    /// Its own history (before a step up).
    Own,
    /// Its peers' (same model, then same kind, then the mesh): its own history is too short,
    /// or has failed far more than they do from the start — a bad start is not a baseline.
    Peers,
    /// Neither: an assumed 1%.
    Default,
}

/// The base rate assumed with no history and no peers.
pub const DEFAULT_ERROR_BASE: f32 = 0.01;

/// Judge the window's errors against `base`: how surprising they are, whether every third is
/// elevated, and so whether errors are up (`elevated`) or a burst to act on (`burst`). A base
/// that is not the persona's own asks for more (at least 5% failing) before calling a burst.
fn judge_errors(e: &mut ErrorFeatures, base: f32, from: BaseFrom) {
    e.rate_base = base;
    e.base_from = from;
    if e.requests_window.is_nan() || e.requests_window <= 0.0 {
        return;
    }
    // floored: a spotless history must not make one error look alarming
    let base = base.max(0.002);
    e.p_value = poisson_tail(f64::from(e.errors_window), f64::from(e.requests_window * base));
    let part_threshold = (2.0 * base).max(0.015);
    // a third is "elevated" when its errors are unlikely at the base rate: a stray error or
    // two in a quiet persona is not
    let elevated = |(r, er): &(f32, f32)| {
        *r > 0.0 && *er >= 2.0 && er / r >= part_threshold && poisson_tail(f64::from(*er), f64::from(*r * base)) < 0.01
    };
    e.elevated_parts = e.parts.iter().filter(|p| elevated(p)).count() as u8;
    // a burst is current and lasting: every third of the window is elevated, the last included
    let current = elevated(&e.parts[2]);
    let (min_elevated, min_burst) = if from == BaseFrom::Own { (0.02, 0.03) } else { (0.04, 0.05) };
    // looser: errors are up, for hysteresis to count while the evidence firms up
    e.elevated = e.errors_window >= 5.0
        && e.p_value < 1e-3
        && e.rate_window >= (2.0 * base).max(min_elevated)
        && e.elevated_parts >= 1;
    e.burst = e.errors_window >= 5.0
        && e.rate_window >= (3.0 * base).max(min_burst)
        && e.dispersion <= 4.0
        && e.p_value < 1e-4
        && e.elevated_parts == 3
        && current;
}

fn ser_mix<S: serde::Serializer>(m: &ClassMix, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&m.describe())
}

#[derive(Debug, Clone, Serialize)]
pub struct ActivityFeatures {
    /// Since the last completed request; None if requests are not measured.
    pub idle_for_ms: Option<u64>,
    pub idle_threshold_ms: u64,
    pub idle: bool,
    /// Trailing samples without completions, the queue at their start and end.
    pub stalled_samples: usize,
    pub queue_first: f32,
    pub queue_last: f32,
    pub health_fails: u32,
    pub unresponsive: bool,
    pub requests_per_min: f32,
    pub base_requests_per_min: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestartFeatures {
    pub last_5m: f32,
    pub last_1h: f32,
    pub last_restart_ms: Option<u64>,
    pub exits_5m: u32,
    pub crash_loop: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuFeatures {
    pub recent_percent: f32,
    pub base_percent: f32,
    /// Recent CPU as a share of its host's capacity.
    pub share_of_host: f32,
    /// What it uses now: the higher of its last [`CPU_NOW_SAMPLES`] samples (percent of one
    /// core). `recent_percent` averages the CPU window (six samples at least) and lags a flood's
    /// end by that much; this follows it within two samples, and one quiet reading is not
    /// taken for the end (the give-back of a CPU throttle keys on it, `budget::demand_settled`).
    pub now_percent: f32,
}

/// Samples [`CpuFeatures::now_percent`] spans.
pub const CPU_NOW_SAMPLES: usize = 2;

/// A share of its cache hits this far below its usual (and at most this share of it) is
/// falling: its working set no longer fits, or its traffic changed.
pub const CACHE_HIT_FALL: f32 = 0.15;
pub const CACHE_HIT_FALL_RATIO: f32 = 0.7;
/// KV-cache use at or above this is full: new requests wait for room or evict others.
pub const KV_CACHE_FULL: f32 = 0.95;
/// Fewest reports each window needs before a fall is called.
const MIN_REPORTS: usize = 3;

/// What the persona reports of itself (its metrics path), over the recent window: its cache
/// hit rate now (the latency window) against before it in the raw window, and its KV-cache use.
#[derive(Debug, Clone, Serialize)]
pub struct ReportedFeatures {
    pub cache_hit_rate_now: f32,
    pub cache_hit_rate_before: f32,
    pub cache_hit_falling: bool,
    pub kv_cache_usage_now: f32,
    pub kv_cache_full: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PersonaFeatures {
    pub id: String,
    #[serde(skip)]
    pub index: usize,
    #[serde(skip)]
    pub node: Option<usize>,
    pub importance: Importance,
    pub kind: PersonaKind,
    pub phase: Phase,
    /// Why the data cannot be used, if so.
    pub data_problem: Option<String>,
    pub samples: usize,
    pub interval_ms: u64,
    pub windows: Windows,
    pub history_ms: u64,
    pub stale: bool,
    pub uptime_ms: Option<u64>,
    /// When the current process started, if the data says (a restart, a collapse of memory, a
    /// committed restart, or the uptime at the first sample).
    pub process_start_ms: Option<u64>,
    /// The budget's throttle multiplier (1 when unknown): below 1 it is already throttled.
    pub throttle_multiplier: f32,
    /// First raw (not digested) sample.
    #[serde(skip)]
    pub raw_start: usize,
    pub memory: MemoryFeatures,
    pub latency: LatencyFeatures,
    pub errors: ErrorFeatures,
    pub activity: ActivityFeatures,
    pub restarts: RestartFeatures,
    pub cpu: CpuFeatures,
    /// None: the persona reports nothing of itself.
    pub reported: Option<ReportedFeatures>,
    /// The scheduled maintenance bound its process has met (its spec's `[maintenance]`).
    pub maintenance_due: Option<crate::analyst::maintenance::Due>,
}

impl PersonaFeatures {
    /// Latency is high against its own history for a sustained stretch.
    pub fn latency_degraded(&self) -> bool {
        let l = &self.latency;
        match l.baseline {
            // high now and in the 15 minutes before
            Baseline::Own => l.ratio >= 1.5 && l.prev_ratio >= 1.3,
            // far above its replicas, for longer than a passing spike
            Baseline::Replicas => l.ratio >= 1.5 && l.degraded_for_ms >= REPLICA_SUSTAIN_MS,
            Baseline::None => false,
        }
    }

    pub fn usable(&self) -> bool {
        self.data_problem.is_none() && !self.stale && self.phase == Phase::Running
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeFeatures {
    pub id: String,
    pub cpu_cores: u32,
    pub cpu_recent_percent: f32,
    pub cpu_base_percent: f32,
    pub memory_total_mb: f32,
    pub memory_used_mb: f32,
    pub memory_frac: f32,
    pub memory_slope_mb_per_min: f32,
    pub memory_pressure: bool,
    pub cpu_saturated: bool,
    pub stale: bool,
}

impl NodeFeatures {
    pub fn free_memory_mb(&self) -> f32 {
        (self.memory_total_mb - self.memory_used_mb).max(0.0)
    }
    pub fn free_cores(&self) -> f32 {
        self.cpu_cores as f32 * (1.0 - self.cpu_recent_percent / 100.0).max(0.0)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MeshFeatures {
    pub personas: usize,
    pub judged: usize,
    pub degraded: usize,
    /// Share of judged personas degraded at once: high means a shared cause.
    pub degraded_share: f32,
    pub median_latency_ratio: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct FeatureSet {
    pub now_ms: u64,
    pub personas: Vec<PersonaFeatures>,
    pub nodes: Vec<NodeFeatures>,
    pub mesh: MeshFeatures,
}

/// What the brain keeps per persona between cycles: its digest and the summary of its closed
/// history (recomputed when the digest's buckets change).
#[derive(Debug, Default)]
struct Entry {
    id: String,
    digest: PersonaDigest,
    summary: Option<HistSummary>,
}

/// Digests and history summaries kept across cycles, one per persona. Kept in view order, so
/// a view whose personas did not change costs no hashing; a changed one is matched by id.
#[derive(Debug, Default)]
pub struct FeatureCache {
    slots: Vec<Entry>,
    /// Per node: when its usual CPU was last computed, and the value (a day's median moves
    /// slowly; recomputed every few minutes).
    node_bases: HashMap<String, (u64, f32)>,
    /// History summaries computed since creation (cost accounting).
    pub summaries: u64,
}

impl FeatureCache {
    pub fn len(&self) -> usize {
        self.slots.len()
    }
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
    /// Total samples folded since creation (cost accounting).
    pub fn folded(&self) -> u64 {
        self.slots.iter().map(|e| e.digest.folded).sum()
    }

    /// Line the slots up with the view's personas: keep what matches by id, start the rest.
    fn align(&mut self, view: &MeshView) {
        let same =
            self.slots.len() == view.personas.len() && self.slots.iter().zip(&view.personas).all(|(e, p)| e.id == p.id);
        if same {
            return;
        }
        let mut old: HashMap<String, Entry> = self.slots.drain(..).map(|e| (e.id.clone(), e)).collect();
        self.slots = view
            .personas
            .iter()
            .map(|p| {
                old.remove(&p.id).unwrap_or_else(|| Entry {
                    id: p.id.clone(),
                    digest: PersonaDigest::with_phase(phase_of(&p.id)),
                    summary: None,
                })
            })
            .collect();
    }
}

/// A stable phase for a persona's bucket boundaries.
fn phase_of(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// Extract every feature of `view` as of `now_ms` (samples after it are ignored).
pub fn extract(view: &MeshView, now_ms: u64, stale_after_ms: u64, cache: &mut FeatureCache) -> FeatureSet {
    cache.align(view);
    let mut scratch = Scratch::default();
    let node_index: HashMap<&str, usize> = view.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    let nodes: Vec<NodeFeatures> = view
        .nodes
        .iter()
        .map(|n| {
            let base = cache.node_bases.entry(n.id.clone()).or_insert((0, f32::NAN));
            node_features(n, now_ms, stale_after_ms, base)
        })
        .collect();
    if cache.node_bases.len() > view.nodes.len() {
        cache.node_bases.retain(|id, _| view.nodes.iter().any(|n| &n.id == id));
    }
    let mut personas = Vec::with_capacity(view.personas.len());
    for (index, (p, entry)) in view.personas.iter().zip(cache.slots.iter_mut()).enumerate() {
        let node = node_index.get(p.node.as_str()).copied();
        let cores = node.map_or(1, |i| view.nodes[i].cpu_cores.max(1));
        let before = entry.summary.as_ref().map(|h| h.version);
        personas.push(persona_features(p, index, node, cores, now_ms, stale_after_ms, entry, &mut scratch));
        if entry.summary.as_ref().map(|h| h.version) != before {
            cache.summaries += 1;
        }
    }
    peer_features(view, &mut personas, now_ms);
    let mesh = mesh_features(&personas);
    FeatureSet { now_ms, personas, nodes, mesh }
}

#[derive(Default)]
struct Scratch {
    a: Vec<f32>,
    restarts: Vec<(u64, f32)>,
    history: history::Scratch,
}

fn empty_persona(p: &PersonaView, index: usize, node: Option<usize>, problem: Option<String>) -> PersonaFeatures {
    let nan = f32::NAN;
    PersonaFeatures {
        id: p.id.clone(),
        index,
        node,
        importance: p.importance,
        kind: p.kind,
        phase: p.phase,
        data_problem: problem,
        samples: 0,
        interval_ms: 0,
        windows: Windows::for_interval(0),
        history_ms: 0,
        stale: false,
        uptime_ms: None,
        process_start_ms: None,
        throttle_multiplier: p.budget.as_ref().map_or(1.0, |b| b.throttle_multiplier as f32),
        raw_start: 0,
        memory: MemoryFeatures {
            now_mb: nan,
            trend: MemTrend::Unknown,
            slope_mb_per_min: nan,
            fit_r2: nan,
            floor_slope_mb_per_min: nan,
            floor_r2: nan,
            span_ms: 0,
            growth_span_ms: 0,
            growth_frac: nan,
            persistent: false,
            swing_frac: nan,
            hist_high_mb: nan,
            spike_frac: 0.0,
            budget_mb: None,
            minutes_to_budget: None,
            limit_mb: None,
            minutes_to_limit: None,
            peer_growth_frac: nan,
            recent: None,
            growing_now: false,
        },
        latency: LatencyFeatures {
            recent_p50_ms: nan,
            recent_p95_ms: nan,
            prev_p50_ms: nan,
            prev_p95_ms: nan,
            baseline: Baseline::None,
            base_p50_ms: nan,
            base_p95_ms: nan,
            ratio: nan,
            prev_ratio: nan,
            degraded_for_ms: 0,
            trend_ratio: nan,
            trend_r2: nan,
            peer_ratio: nan,
            peer_group: PeerGroup::None,
            replica_ratio: nan,
            replica_p50_ms: nan,
            replica_p95_ms: nan,
            over_budget: false,
            warming_up: false,
        },
        errors: ErrorFeatures {
            window_ms: 0,
            requests_window: 0.0,
            errors_window: 0.0,
            rate_window: nan,
            rate_last10: nan,
            rate_base: nan,
            base_from: BaseFrom::Default,
            rate_own_base: nan,
            elevated_since_ms: None,
            p_value: 1.0,
            dispersion: f32::NAN,
            elevated_parts: 0,
            elevated: false,
            burst: false,
            mix: ClassMix::default(),
            peer_rate: nan,
            mesh_rate: nan,
            parts: [(0.0, 0.0); 3],
        },
        activity: ActivityFeatures {
            idle_for_ms: None,
            idle_threshold_ms: 0,
            idle: false,
            stalled_samples: 0,
            queue_first: nan,
            queue_last: nan,
            health_fails: 0,
            unresponsive: false,
            requests_per_min: nan,
            base_requests_per_min: nan,
        },
        restarts: RestartFeatures { last_5m: 0.0, last_1h: 0.0, last_restart_ms: None, exits_5m: 0, crash_loop: false },
        cpu: CpuFeatures { recent_percent: nan, base_percent: nan, share_of_host: nan, now_percent: nan },
        reported: None,
        maintenance_due: None,
    }
}

/// An empty queue, or one not measured.
fn no_waiting_work(queue: f32) -> bool {
    queue.is_nan() || queue <= 0.0
}

fn col(c: &[f32], i: usize) -> f32 {
    c.get(i).copied().unwrap_or(f32::NAN)
}

#[allow(clippy::too_many_arguments)]
fn persona_features(
    p: &PersonaView,
    index: usize,
    node: Option<usize>,
    host_cores: u32,
    now_ms: u64,
    stale_after_ms: u64,
    entry: &mut Entry,
    scratch: &mut Scratch,
) -> PersonaFeatures {
    let s = &p.series;
    if let Err(problem) = s.check_lengths() {
        return empty_persona(p, index, node, Some(problem));
    }
    let end = s.end_index(now_ms);
    if end == 0 {
        return empty_persona(p, index, node, Some("no samples yet".into()));
    }
    let mut f = empty_persona(p, index, node, None);
    // the sampling interval: the median of the last gaps, robust to holes
    f.interval_ms = {
        let from = end.saturating_sub(9);
        let mut gaps = [0u64; 8];
        let k = (end - from).saturating_sub(1);
        for (g, w) in gaps.iter_mut().zip(s.t_ms[from..end].windows(2)) {
            *g = w[1].saturating_sub(w[0]);
        }
        gaps[..k].sort_unstable();
        if k > 0 { gaps[k / 2] } else { 0 }
    };
    let w = Windows::for_interval(f.interval_ms);
    f.windows = w;
    // samples older than the recent window go to the digest
    let split = match now_ms.checked_sub(w.recent_ms) {
        Some(cut) => crate::stats::count_le_from_end(&s.t_ms[..end], cut),
        None => 0,
    };
    entry.digest.update(s, split);
    let digest = &entry.digest;
    if entry.summary.as_ref().is_none_or(|h| h.version != digest.version()) {
        entry.summary = Some(history::summarize(digest, f.interval_ms, &mut scratch.history));
    }
    let Some(hist) = entry.summary.as_ref() else { return f };
    let raw_start = split.max(end.saturating_sub(MAX_RAW_SAMPLES));
    let raw = raw_start..end;

    let t_first = s.t_ms[0];
    let t_last = s.t_ms[end - 1];
    f.samples = end;
    f.history_ms = t_last.saturating_sub(t_first);
    f.stale = now_ms.saturating_sub(t_last) > stale_after_ms.max(3 * f.interval_ms);

    // --- restarts: the digest's memory plus the raw window
    let restarts = &mut scratch.restarts;
    restarts.clear();
    restarts.extend(digest.restarts.iter().copied());
    let mut new_process_in_window = false;
    let mut last_boundary_ms: Option<u64> = None;
    // scan the window only if the restart counter moved or memory fell below half its usual
    // peak somewhere: most cycles neither happens
    let counter_moved =
        raw_start > 0 && !s.restarts.is_empty() && col(&s.restarts, end - 1) != col(&s.restarts, raw_start - 1);
    let low_mem = s.memory_mb[raw.clone()].iter().rev().take(3).any(|&m| m < 0.5 * hist.memory.high_mb)
        || !hist.memory.high_mb.is_finite();
    if counter_moved || low_mem || raw_start == 0 {
        let mut prev_r = if raw_start > 0 { col(&s.restarts, raw_start - 1) } else { f32::NAN };
        let mut prev_m = if raw_start > 0 { col(&s.memory_mb, raw_start - 1) } else { f32::NAN };
        for i in raw_start..end {
            let r = col(&s.restarts, i);
            if r.is_finite() {
                if prev_r.is_finite() && r > prev_r {
                    restarts.push((s.t_ms[i], r - prev_r));
                    new_process_in_window = true;
                    last_boundary_ms = Some(s.t_ms[i]);
                }
                prev_r = r;
            }
            let m = s.memory_mb[i];
            if m.is_finite() {
                if is_collapse(prev_m, m) {
                    new_process_in_window = true;
                    last_boundary_ms = Some(s.t_ms[i]);
                }
                prev_m = m;
            }
        }
    }
    let recent_sum = |w: u64| restarts.iter().filter(|(t, _)| *t + w > now_ms).map(|(_, n)| *n).sum::<f32>();
    f.restarts.last_5m = recent_sum(CRASH_LOOP_WINDOW_MS);
    f.restarts.last_1h = recent_sum(60 * MIN);
    f.restarts.last_restart_ms = restarts.last().map(|(t, _)| *t);
    let ev_from = p.events.partition_point(|e| e.t_ms.saturating_add(CRASH_LOOP_WINDOW_MS) <= now_ms);
    let ev_to = p.events.partition_point(|e| e.t_ms <= now_ms);
    f.restarts.exits_5m = p.events[ev_from..ev_to].iter().filter(|e| e.kind == ViewEventKind::Exit).count() as u32;
    f.restarts.crash_loop = f.restarts.last_5m > CRASH_LOOP_RESTARTS
        || (s.restarts.is_empty() && f.restarts.exits_5m as f32 > CRASH_LOOP_RESTARTS);
    f.uptime_ms = match (f.restarts.last_restart_ms, p.uptime_ms_at_first) {
        (Some(r), _) => Some(now_ms.saturating_sub(r)),
        (None, Some(u)) => Some(u + (now_ms.saturating_sub(t_first))),
        _ => None,
    };
    // the current process: the latest start the data shows
    let committed_restart = p
        .recent_actions
        .iter()
        .filter(|(t, a)| *t <= now_ms && matches!(a, mindmesh_core::Action::Restart))
        .map(|(t, _)| *t)
        .max();
    let from_uptime = p.uptime_ms_at_first.and_then(|u| t_first.checked_sub(u));
    f.process_start_ms = [last_boundary_ms, digest.segment_start_ms, committed_restart, from_uptime]
        .into_iter()
        .flatten()
        .filter(|&t| t <= now_ms)
        .max();
    f.raw_start = raw_start;
    let restarts: &[(u64, f32)] = restarts;
    let warm = |t: u64| restarts.iter().rev().take(8).any(|(r, _)| t >= *r && t < *r + WARMUP_MS);

    memory_features(&mut f, p, hist, raw.clone(), new_process_in_window, &mut scratch.a);
    latency_features(&mut f, p, hist, raw.clone(), now_ms, &warm, &mut scratch.a);
    error_features(&mut f, p, digest, hist, raw.clone(), now_ms);
    activity_features(&mut f, p, digest, hist, raw.clone(), now_ms);

    // --- CPU
    if !s.cpu_percent.is_empty() {
        let from = (raw_start + s.t_ms[raw.clone()].partition_point(|&t| t + w.cpu_ms <= now_ms)).min(end);
        let (sum, n) =
            s.cpu_percent[from..end].iter().filter(|v| v.is_finite()).fold((0.0f32, 0u32), |(a, n), v| (a + v, n + 1));
        f.cpu.recent_percent = if n > 0 { sum / n as f32 } else { f32::NAN };
        f.cpu.base_percent = hist.cpu_base_percent;
        f.cpu.share_of_host = f.cpu.recent_percent / (host_cores as f32 * 100.0);
        let last = &s.cpu_percent[end.saturating_sub(CPU_NOW_SAMPLES).max(raw_start)..end];
        if last.len() == CPU_NOW_SAMPLES && last.iter().all(|v| v.is_finite()) {
            f.cpu.now_percent = last.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        }
    }
    let split_at = (raw_start + s.t_ms[raw.clone()].partition_point(|&t| t + w.latency_ms <= now_ms)).min(end);
    f.reported = reported_features(s, raw_start, split_at, end);
    f.maintenance_due = crate::analyst::maintenance::due(&f, p, now_ms);
    f
}

/// The persona's own figures: `before` is the raw window up to `split`, `now` from it to `end`.
fn reported_features(s: &PersonaSeries, raw_start: usize, split: usize, end: usize) -> Option<ReportedFeatures> {
    if s.cache_hit_rate.is_empty() && s.kv_cache_usage.is_empty() {
        return None;
    }
    let mean = |c: &[f32], r: std::ops::Range<usize>| {
        let v: Vec<f32> = c.get(r).unwrap_or_default().iter().copied().filter(|x| x.is_finite()).collect();
        (if v.is_empty() { f32::NAN } else { v.iter().sum::<f32>() / v.len() as f32 }, v.len())
    };
    let (now, n_now) = mean(&s.cache_hit_rate, split..end);
    let (before, n_before) = mean(&s.cache_hit_rate, raw_start..split);
    // the last few reports: KV use swings with every request
    let kv_from = s.kv_cache_usage.get(..end).map_or(end, |c| {
        c.iter().enumerate().rev().filter(|(_, x)| x.is_finite()).nth(2).map_or(raw_start, |(i, _)| i)
    });
    let (kv, _) = mean(&s.kv_cache_usage, kv_from.max(raw_start)..end);
    Some(ReportedFeatures {
        cache_hit_rate_now: now,
        cache_hit_rate_before: before,
        cache_hit_falling: n_now >= MIN_REPORTS
            && n_before >= MIN_REPORTS
            && before - now >= CACHE_HIT_FALL
            && now <= before * CACHE_HIT_FALL_RATIO,
        kv_cache_usage_now: kv,
        kv_cache_full: kv >= KV_CACHE_FULL,
    })
}

fn memory_features(
    f: &mut PersonaFeatures,
    p: &PersonaView,
    hist: &HistSummary,
    raw: std::ops::Range<usize>,
    new_process_in_window: bool,
    tmp: &mut Vec<f32>,
) {
    let s = &p.series;
    let process_start = f.process_start_ms;
    let m = &mut f.memory;
    let tail = raw.end.saturating_sub(3).max(raw.start)..raw.end;
    m.now_mb = median_of(tail.map(|i| s.memory_mb[i]), tmp);
    m.budget_mb = p.budget.as_ref().map(|b| b.max_memory_mb as f32);
    m.limit_mb = p.memory_limit_mb.filter(|l| l.is_finite() && *l > 0.0);
    let h = &hist.memory;
    m.hist_high_mb = h.high_mb;
    if h.high_mb.is_finite() && h.high_mb > 0.0 && m.now_mb.is_finite() {
        m.spike_frac = (m.now_mb / h.high_mb - 1.0).max(0.0);
    }
    // the data at hand: the current process's raw samples, after its first minute of loading
    let from = match process_start {
        Some(t) => s.t_ms[raw.clone()].partition_point(|&x| x < t + LOAD_SKIP_MS) + raw.start,
        None => raw.start,
    };
    m.recent = recent::memory_line(&s.t_ms, &s.memory_mb, from, raw.end);
    // growth beyond the usual range (a sawtooth climbing to its usual peak is not growth)
    m.growing_now = m.recent.is_some_and(|r| r.growing)
        && (new_process_in_window || !h.high_mb.is_finite() || m.now_mb > 1.05 * h.high_mb);
    if !new_process_in_window {
        // a new process since the history ended is too young for the history's trend
        m.span_ms = h.span_ms;
        m.growth_span_ms = h.growth_span_ms;
        m.slope_mb_per_min = h.slope_mb_per_min;
        m.fit_r2 = h.fit_r2;
        m.floor_slope_mb_per_min = h.floor_slope_mb_per_min;
        m.floor_r2 = h.floor_r2;
        m.growth_frac = h.growth_frac;
        m.persistent = h.persistent;
        m.swing_frac = h.swing_frac;
    }
    let from_history = !new_process_in_window && m.fit_r2.is_finite() && m.span_ms >= 30 * MIN;
    // the slope that says when a limit is reached: the recent line while it grows, else the
    // history's
    let slope = match m.recent {
        Some(r) if m.growing_now => r.slope_mb_per_min,
        _ if from_history => m.slope_mb_per_min,
        _ => f32::NAN,
    };
    let minutes_to = |level: Option<f32>| match level {
        Some(l) if slope > 0.0 && m.now_mb.is_finite() => Some(((l - m.now_mb) / slope).max(0.0)),
        _ => None,
    };
    m.minutes_to_budget = minutes_to(m.budget_mb);
    m.minutes_to_limit = minutes_to(m.limit_mb);
    if !from_history {
        // too little history for the long view: the recent line says what it can
        m.trend = match m.recent {
            None => MemTrend::Unknown,
            Some(r) if r.growing => MemTrend::Growing,
            Some(r) if r.swing_frac >= 0.08 => MemTrend::Oscillating,
            Some(_) => MemTrend::Stable,
        };
        return;
    }
    let floor_r2 = if h.floor_slope_mb_per_min > 0.0 && h.floor_r2.is_finite() { h.floor_r2 } else { 0.0 };
    let fitted = m.fit_r2.max(floor_r2);
    // steady, persistent, well-fitted growth over an hour or more that is large against the
    // process's own size — or that will reach its memory budget within two hours
    let steady = m.growth_span_ms >= MIN_LEAK_SPAN_MS && m.persistent && h.rises_clearly;
    let large = m.growth_frac >= 0.15 && fitted >= 0.85;
    let hist_to_budget = match m.budget_mb {
        Some(b) if m.slope_mb_per_min > 0.0 && m.now_mb.is_finite() => {
            Some(((b - m.now_mb) / m.slope_mb_per_min).max(0.0))
        }
        _ => None,
    };
    let budget_soon = m.growth_frac >= 0.05 && fitted >= 0.9 && hist_to_budget.is_some_and(|t| t <= 120.0);
    m.trend = if steady && (large || budget_soon) {
        MemTrend::Leaking
    } else if m.growth_span_ms >= 30 * MIN && m.growth_frac >= 0.04 && m.persistent && fitted >= 0.6 {
        MemTrend::Growing
    } else if m.swing_frac >= 0.08 {
        MemTrend::Oscillating
    } else {
        MemTrend::Stable
    };
}

fn latency_features(
    f: &mut PersonaFeatures,
    p: &PersonaView,
    hist: &HistSummary,
    raw: std::ops::Range<usize>,
    now_ms: u64,
    warm: &dyn Fn(u64) -> bool,
    tmp: &mut Vec<f32>,
) {
    let s = &p.series;
    if s.latency_p50_ms.is_empty() && s.latency_p95_ms.is_empty() {
        return;
    }
    let w = f.windows;
    let l = &mut f.latency;
    let ts = &s.t_ms;
    let recent_from = ts[raw.clone()].partition_point(|&t| t + w.latency_ms <= now_ms) + raw.start;
    let mut window = |r: std::ops::Range<usize>, c: &[f32]| {
        tmp.clear();
        tmp.extend(r.filter(|&i| !warm(ts[i])).map(|i| col(c, i)).filter(|v| v.is_finite()));
        if tmp.len() >= 3 { crate::stats::median_in_place(tmp) } else { f32::NAN }
    };
    l.recent_p50_ms = window(recent_from..raw.end, &s.latency_p50_ms);
    l.recent_p95_ms = window(recent_from..raw.end, &s.latency_p95_ms);
    let prev_p50 = window(raw.start..recent_from, &s.latency_p50_ms);
    let prev_p95 = window(raw.start..recent_from, &s.latency_p95_ms);
    l.prev_p50_ms = prev_p50;
    l.prev_p95_ms = prev_p95;
    l.warming_up = f.restarts.last_restart_ms.is_some_and(|r| r + WARMUP_MS > now_ms);
    let h = &hist.latency;
    l.base_p50_ms = h.base_p50_ms;
    l.base_p95_ms = h.base_p95_ms;
    if h.base_p50_ms.is_finite() || h.base_p95_ms.is_finite() {
        l.baseline = Baseline::Own;
    }
    l.ratio = latency_ratio(l.recent_p50_ms, l.recent_p95_ms, l.base_p50_ms, l.base_p95_ms);
    l.prev_ratio = latency_ratio(prev_p50, prev_p95, l.base_p50_ms, l.base_p95_ms);
    if l.ratio >= HIGH_RATIO {
        l.degraded_for_ms = if l.prev_ratio >= HIGH_RATIO {
            // high through the recent window; and before it, as long as the history says
            let since = h.high_since_ms.unwrap_or(now_ms.saturating_sub(w.recent_ms));
            now_ms.saturating_sub(since.min(now_ms.saturating_sub(w.recent_ms)))
        } else {
            w.latency_ms / 2
        };
    }
    if let Some(budget) = &p.budget {
        l.over_budget = l.recent_p95_ms.is_finite() && l.recent_p95_ms > budget.max_response_time_ms as f32;
    }
    l.trend_ratio = h.trend_ratio;
    l.trend_r2 = h.trend_r2;
}

fn error_features(
    f: &mut PersonaFeatures,
    p: &PersonaView,
    digest: &PersonaDigest,
    hist: &HistSummary,
    raw: std::ops::Range<usize>,
    now_ms: u64,
) {
    let s = &p.series;
    // no raw samples in reach (a persona whose samples stopped long ago): nothing recent to judge
    if s.requests.is_empty() || s.errors.is_empty() || raw.is_empty() {
        return;
    }
    let recent_ms = f.windows.recent_ms;
    let (interval_ms, part10_ms) = (f.interval_ms, f.windows.part_ms());
    let e = &mut f.errors;
    let sample = |i: usize| {
        let (r, er) = (col(&s.requests, i), col(&s.errors, i));
        (r.is_finite() && er.is_finite()).then(|| (r, er.min(r).max(0.0)))
    };
    // the window holds enough evidence: at least the recent window, long enough for about
    // 300 requests at the current rate, at most two hours
    let raw_req: f32 = raw.clone().filter_map(sample).map(|(r, _)| r).sum();
    let raw_span_ms = (s.t_ms[raw.end - 1].saturating_sub(s.t_ms[raw.start]) + interval_ms).max(1);
    let per_ms = f64::from(raw_req) / raw_span_ms as f64;
    let mut window_ms = if per_ms > 0.0 { (300.0 / per_ms) as u64 } else { recent_ms }.clamp(recent_ms, 120 * MIN);
    // no longer than the data at hand: a persona that started ten minutes ago is judged on
    // those ten minutes, in thirds, not on a window two thirds empty
    let avail_ms = now_ms.saturating_sub(s.t_ms[0]) + interval_ms;
    if avail_ms < window_ms {
        window_ms = avail_ms.max(MIN_ERROR_WINDOW_MS);
    }
    e.window_ms = window_ms;
    let part_ms = (window_ms / 3).max(1);
    let part = |t: u64| -> usize { (2 - (now_ms.saturating_sub(t) / part_ms).min(2)) as usize };
    // parts: raw samples, and the history's buckets (by their middle) where the window reaches
    let mut parts = [(0.0f32, 0.0f32); 3];
    for i in raw.clone() {
        if let Some((r, er)) = sample(i) {
            let k = part(s.t_ms[i]);
            parts[k].0 += r;
            parts[k].1 += er;
        }
    }
    if window_ms > recent_ms {
        let open = digest.open_counts();
        for (t_mid, r, er) in digest
            .buckets
            .iter()
            .rev()
            .map(|b| (b.t_mid_ms(), b.requests, b.errors))
            .take_while(|(t, _, _)| t + window_ms > now_ms)
            .chain(open)
        {
            if r.is_finite() && t_mid + window_ms > now_ms {
                let k = part(t_mid);
                parts[k].0 += r;
                parts[k].1 += er.min(r);
            }
        }
    }
    e.requests_window = parts.iter().map(|p| p.0).sum();
    e.errors_window = parts.iter().map(|p| p.1).sum();
    e.rate_window = if e.requests_window > 0.0 { e.errors_window / e.requests_window } else { f32::NAN };
    // the last ten minutes (a third of the recent window), raw
    let last_from = s.t_ms[raw.clone()].partition_point(|&t| t + part10_ms <= now_ms) + raw.start;
    let (r10, e10) = (last_from..raw.end).filter_map(sample).fold((0.0f32, 0.0f32), |(a, b), (r, er)| (a + r, b + er));
    e.rate_last10 = if r10 > 0.0 { e10 / r10 } else { f32::NAN };
    e.rate_own_base = hist.errors.rate_base;
    e.elevated_since_ms = hist.errors.step_since_ms;
    e.parts = parts;
    // steady like a failure rate, not one clump of a few minutes: a binomial dispersion test
    // over the raw samples since the rate stepped up (about 1 when steady, far above for a
    // clump)
    {
        let since = e.elevated_since_ms.unwrap_or(0).max(now_ms.saturating_sub(window_ms));
        let from = s.t_ms[raw.clone()].partition_point(|&t| t < since) + raw.start;
        let (n, tot_r, tot_e) = (from..raw.end)
            .filter_map(sample)
            .filter(|(r, _)| *r > 0.0)
            .fold((0usize, 0.0f64, 0.0f64), |(n, r, er), (ri, ei)| (n + 1, r + f64::from(ri), er + f64::from(ei)));
        if n >= 4 && tot_e > 0.0 {
            let pr = (tot_e / tot_r).clamp(1e-6, 1.0 - 1e-6);
            let chi2: f64 = (from..raw.end)
                .filter_map(sample)
                .filter(|(r, _)| *r > 0.0)
                .map(|(ri, ei)| {
                    let (ri, ei) = (f64::from(ri), f64::from(ei));
                    (ei - ri * pr).powi(2) / (ri * pr * (1.0 - pr))
                })
                .sum();
            e.dispersion = (chi2 / (n - 1) as f64) as f32;
        }
    }
    // against its own base rate for now; the peers' floor is applied once every persona's
    // rate is known (`peer_features`)
    let (base, from) = if e.rate_own_base.is_finite() {
        (e.rate_own_base, BaseFrom::Own)
    } else {
        (DEFAULT_ERROR_BASE, BaseFrom::Default)
    };
    judge_errors(e, base, from);

    // kinds: the gateway's measurements and the reported texts in the window
    let from = now_ms.saturating_sub(window_ms);
    let k_from = s.error_kinds.partition_point(|k| k.t_ms <= from);
    let k_to = s.error_kinds.partition_point(|k| k.t_ms <= now_ms);
    for k in &s.error_kinds[k_from..k_to] {
        e.mix.add(classify_kind(k.kind), k.count as f32);
    }
    let ev_from = p.events.partition_point(|ev| ev.t_ms <= from);
    let ev_to = p.events.partition_point(|ev| ev.t_ms <= now_ms);
    let first = ev_to.saturating_sub(MAX_EVENTS_READ).max(ev_from);
    for ev in &p.events[first..ev_to] {
        match ev.kind {
            ViewEventKind::Error => e.mix.add(classify_text(&ev.detail), 1.0),
            ViewEventKind::Oom => e.mix.add(ErrorClass::Crash, 1.0),
            _ => {}
        }
    }
}

fn activity_features(
    f: &mut PersonaFeatures,
    p: &PersonaView,
    digest: &PersonaDigest,
    hist: &HistSummary,
    raw: std::ops::Range<usize>,
    now_ms: u64,
) {
    let s = &p.series;
    if s.requests.is_empty() {
        return;
    }
    let a = &mut f.activity;
    // trailing run without completions
    let mut run_start = raw.end;
    while run_start > raw.start && col(&s.requests, run_start - 1) == 0.0 {
        run_start -= 1;
    }
    a.stalled_samples = raw.end - run_start;
    let last_active = if run_start > raw.start { Some(s.t_ms[run_start - 1]) } else { digest.last_active_ms };
    // gaps between active samples in the raw window, before the current run
    let mut max_gap = digest.max_gap_ms;
    let mut prev = digest.last_active_ms;
    for i in raw.start..run_start {
        if col(&s.requests, i) > 0.0 {
            if let Some(pv) = prev {
                max_gap = max_gap.max(s.t_ms[i].saturating_sub(pv));
            }
            prev = Some(s.t_ms[i]);
        }
    }
    a.idle_threshold_ms = (4 * max_gap).clamp(10 * MIN, 60 * MIN);
    a.idle_for_ms = Some(now_ms.saturating_sub(last_active.unwrap_or(s.t_ms[0])));
    if a.stalled_samples > 0 {
        a.queue_first = col(&s.queue_depth, run_start);
        a.queue_last = col(&s.queue_depth, raw.end - 1);
        let run_t = s.t_ms[run_start];
        let from = p.events.partition_point(|e| e.t_ms < run_t.saturating_sub(f.interval_ms));
        let to = p.events.partition_point(|e| e.t_ms <= now_ms);
        a.health_fails = p.events[from..to].iter().filter(|e| e.kind == ViewEventKind::HealthFail).count() as u32;
    }
    // request rates: recent and the history's
    let recent_from = s.t_ms[raw.clone()].partition_point(|&t| t + f.windows.latency_ms <= now_ms) + raw.start;
    if raw.end > recent_from {
        let req: f32 = (recent_from..raw.end).map(|i| col(&s.requests, i)).filter(|v| v.is_finite()).sum();
        let span = (raw.end - recent_from) as f32 * f.interval_ms.max(1) as f32 / MIN as f32;
        a.requests_per_min = req / span.max(1e-3);
    }
    a.base_requests_per_min = hist.requests_per_min;
    if !a.base_requests_per_min.is_finite() && run_start > raw.start {
        // no history yet: its rate before the current run without completions
        let req: f32 = (raw.start..run_start).map(|i| col(&s.requests, i)).filter(|v| v.is_finite()).sum();
        let span_ms = s.t_ms[run_start - 1].saturating_sub(s.t_ms[raw.start]) + f.interval_ms;
        if span_ms >= 3 * MIN {
            a.base_requests_per_min = req / (span_ms as f32 / MIN as f32);
        }
    }
    let stalled_ms = a.stalled_samples as u64 * f.interval_ms;
    let queue_grows = a.queue_last >= 3.0 && a.queue_last >= a.queue_first + 3.0;
    // nothing completed for long enough that its usual traffic would have completed several
    let expected = a.base_requests_per_min * stalled_ms as f32 / MIN as f32;
    let was_active = last_active.is_some() && expected >= 5.0;
    a.unresponsive = was_active
        && a.stalled_samples >= 3
        && stalled_ms >= 3 * MIN
        && (queue_grows || a.health_fails >= 2 || (a.queue_last >= 1.0 && a.health_fails >= 1));
    // never asked since its process started, for longer than the idle threshold, counts too
    let process_from = f.process_start_ms.unwrap_or(s.t_ms[0]).max(s.t_ms[0]);
    let never_active = last_active.is_none() && now_ms.saturating_sub(process_from) >= a.idle_threshold_ms;
    if last_active.is_none() {
        a.idle_for_ms = Some(now_ms.saturating_sub(process_from));
    }
    a.idle = (last_active.is_some() || never_active)
        && !a.unresponsive
        && a.idle_for_ms.is_some_and(|t| t >= a.idle_threshold_ms)
        // an unknown queue (NaN) does not count as waiting work
        && no_waiting_work(a.queue_last)
        && a.health_fails == 0;
}

/// How often a node's usual CPU is recomputed.
const NODE_BASE_REFRESH_MS: u64 = 5 * MIN;

fn node_features(n: &NodeView, now_ms: u64, stale_after_ms: u64, base: &mut (u64, f32)) -> NodeFeatures {
    let s = &n.series;
    let end = s.t_ms.partition_point(|&t| t <= now_ms);
    let mut out = NodeFeatures {
        id: n.id.clone(),
        cpu_cores: n.cpu_cores.max(1),
        cpu_recent_percent: f32::NAN,
        cpu_base_percent: f32::NAN,
        memory_total_mb: n.memory_total_mb,
        memory_used_mb: f32::NAN,
        memory_frac: f32::NAN,
        memory_slope_mb_per_min: f32::NAN,
        memory_pressure: false,
        cpu_saturated: false,
        stale: true,
    };
    let lengths_ok = s.cpu_percent.len() == s.t_ms.len() && s.memory_used_mb.len() == s.t_ms.len();
    if !lengths_ok || end == 0 {
        return out;
    }
    let interval = if end >= 2 { s.t_ms[end - 1].saturating_sub(s.t_ms[end - 2]) } else { 0 };
    out.stale = now_ms.saturating_sub(s.t_ms[end - 1]) > stale_after_ms.max(3 * interval);
    let recent = s.t_ms[..end].partition_point(|&t| t + CPU_RECENT_MS <= now_ms).min(end - 1);
    let mut tmp: Vec<f32> = s.cpu_percent[recent..end].to_vec();
    out.cpu_recent_percent = crate::stats::median_in_place(&mut tmp);
    // as of the start of the current 5-minute slot: the same whichever cycle computes it
    let slot = now_ms - now_ms % NODE_BASE_REFRESH_MS;
    if base.0 != slot + 1 {
        base.1 = f32::NAN;
        let to = s.t_ms[..end].partition_point(|&t| t + RECENT_WINDOW_MS <= slot);
        let from = s.t_ms[..to].partition_point(|&t| t + 24 * 60 * MIN <= slot);
        if to > from + 5 {
            // a usual level needs no more than a few hundred evenly spread samples
            let step = (to - from).div_ceil(256).max(1);
            let mut tmp: Vec<f32> = s.cpu_percent[from..to].iter().step_by(step).copied().collect();
            base.1 = crate::stats::median_in_place(&mut tmp);
        }
        base.0 = slot + 1;
    }
    out.cpu_base_percent = base.1;
    let tail = end.saturating_sub(3);
    let used = s.memory_used_mb[tail..end].iter().filter(|v| v.is_finite()).copied().collect::<Vec<_>>();
    if !used.is_empty() {
        out.memory_used_mb = used.iter().sum::<f32>() / used.len() as f32;
    }
    if n.memory_total_mb > 0.0 {
        out.memory_frac = out.memory_used_mb / n.memory_total_mb;
    }
    let mem_from = s.t_ms[..end].partition_point(|&t| t + RECENT_WINDOW_MS <= now_ms);
    if let Some(fit) =
        linreg((mem_from..end).map(|i| {
            (s.t_ms[i].saturating_sub(s.t_ms[mem_from]) as f64 / MIN as f64, f64::from(s.memory_used_mb[i]), 1.0)
        }))
    {
        out.memory_slope_mb_per_min = fit.slope as f32;
    }
    let minutes_to_95 = if out.memory_slope_mb_per_min > 0.0 {
        (0.95 * n.memory_total_mb - out.memory_used_mb) / out.memory_slope_mb_per_min
    } else {
        f32::INFINITY
    };
    out.memory_pressure = out.memory_frac >= 0.85 || (out.memory_frac >= 0.75 && minutes_to_95 <= 30.0);
    out.cpu_saturated = out.cpu_recent_percent >= CPU_SATURATED_PERCENT;
    out
}

/// Median of `sorted` without one occurrence of `x` (which it must contain).
fn median_excluding(sorted: &[f32], x: f32) -> f32 {
    let n = sorted.len();
    if n < 2 {
        return f32::NAN;
    }
    let pos = sorted.partition_point(|v| *v < x).min(n - 1);
    let at = |i: usize| if i < pos { sorted[i] } else { sorted[i + 1] };
    let m = n - 1;
    if m % 2 == 1 { at(m / 2) } else { 0.5 * (at(m / 2 - 1) + at(m / 2)) }
}

fn median_vec(mut v: Vec<f32>) -> f32 {
    crate::stats::median_in_place(&mut v)
}

/// Peer comparisons: same model first (replicas), then same kind, then everyone.
fn peer_features(view: &MeshView, personas: &mut [PersonaFeatures], now_ms: u64) {
    let n = personas.len();
    let lat: Vec<f32> = personas.iter().map(|f| if f.usable() { f.latency.ratio } else { f32::NAN }).collect();
    let err: Vec<f32> = personas.iter().map(|f| if f.usable() { f.errors.rate_window } else { f32::NAN }).collect();
    let mem: Vec<f32> = personas
        .iter()
        .map(|f| if f.usable() && f.memory.trend != MemTrend::Unknown { f.memory.growth_frac } else { f32::NAN })
        .collect();
    let p50: Vec<f32> = personas.iter().map(|f| if f.usable() { f.latency.recent_p50_ms } else { f32::NAN }).collect();
    let p95: Vec<f32> = personas.iter().map(|f| if f.usable() { f.latency.recent_p95_ms } else { f32::NAN }).collect();

    let mut by_model: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_kind: HashMap<PersonaKind, Vec<usize>> = HashMap::new();
    for (i, p) in view.personas.iter().enumerate().take(n) {
        if let Some(m) = &p.model {
            by_model.entry(m.as_str()).or_default().push(i);
        }
        by_kind.entry(p.kind).or_default().push(i);
    }
    let all: Vec<usize> = (0..n).collect();
    // sorted finite values per group, computed once
    let sorted = |idx: &[usize], v: &[f32]| {
        let mut s: Vec<f32> = idx.iter().map(|&i| v[i]).filter(|x| x.is_finite()).collect();
        s.sort_by(f32::total_cmp);
        s
    };
    struct Group {
        lat: Vec<f32>,
        err: Vec<f32>,
        mem: Vec<f32>,
        p50: Vec<f32>,
        p95: Vec<f32>,
    }
    let group = |idx: &[usize]| Group {
        lat: sorted(idx, &lat),
        err: sorted(idx, &err),
        mem: sorted(idx, &mem),
        p50: sorted(idx, &p50),
        p95: sorted(idx, &p95),
    };
    let model_groups: HashMap<&str, Group> =
        by_model.iter().filter(|(_, v)| v.len() >= 2).map(|(k, v)| (*k, group(v))).collect();
    let kind_groups: HashMap<PersonaKind, Group> = by_kind.iter().map(|(k, v)| (*k, group(v))).collect();
    let all_group = group(&all);
    // the mesh's usual error rate, counting each model once: replicas failing alike are one
    // shared cause, not a majority that makes failing look normal
    let unit_err: Vec<f32> = (0..n)
        .map(|i| match view.personas[i].model.as_deref().and_then(|m| model_groups.get(m)) {
            Some(g) => median_vec(g.err.clone()),
            None => err[i],
        })
        .collect();
    let mut units_sorted: Vec<f32> = {
        let mut seen_models = std::collections::HashSet::new();
        (0..n)
            .filter(|&i| match view.personas[i].model.as_deref() {
                Some(m) if model_groups.contains_key(m) => seen_models.insert(m),
                _ => true,
            })
            .map(|i| unit_err[i])
            .filter(|v| v.is_finite())
            .collect()
    };
    units_sorted.sort_by(f32::total_cmp);

    // median of the others in the group, or None if fewer than `min_others` others
    let others = |sorted: &[f32], own: f32, min_others: usize| -> Option<f32> {
        let count = sorted.len() - usize::from(own.is_finite());
        if count < min_others {
            return None;
        }
        Some(if own.is_finite() { median_excluding(sorted, own) } else { median_vec(sorted.to_vec()) })
    };
    for (i, f) in personas.iter_mut().enumerate() {
        let p = &view.personas[i];
        let model = p.model.as_deref().and_then(|m| model_groups.get(m));
        let kind = kind_groups.get(&p.kind);
        let pick = |get: &dyn Fn(&Group) -> &Vec<f32>, own: f32| -> (f32, PeerGroup) {
            if let Some(g) = model
                && let Some(v) = others(get(g), own, 1)
            {
                return (v, PeerGroup::SameModel);
            }
            if let Some(g) = kind
                && let Some(v) = others(get(g), own, 2)
            {
                return (v, PeerGroup::SameKind);
            }
            match others(get(&all_group), own, 2) {
                Some(v) => (v, PeerGroup::All),
                None => (f32::NAN, PeerGroup::None),
            }
        };
        let (r, g) = pick(&|g| &g.lat, lat[i]);
        f.latency.peer_ratio = r;
        f.latency.peer_group = g;
        f.errors.peer_rate = pick(&|g| &g.err, err[i]).0;
        f.memory.peer_growth_frac = pick(&|g| &g.mem, mem[i]).0;
        if let Some(g) = model {
            let r50 = others(&g.p50, p50[i], 1).unwrap_or(f32::NAN);
            let r95 = others(&g.p95, p95[i], 1).unwrap_or(f32::NAN);
            f.latency.replica_p50_ms = r50;
            f.latency.replica_p95_ms = r95;
            f.latency.replica_ratio = latency_ratio(p50[i], p95[i], r50, r95);
            if f.usable() {
                replica_floor(f, p, now_ms);
            }
        }
        f.errors.mesh_rate = others(&units_sorted, unit_err[i], 1).unwrap_or(f32::NAN);
        if f.usable() {
            error_floor(&mut f.errors);
        }
    }
}

/// A persona's latency baseline may not sit above its replicas' level: with no history of its
/// own, or one that has always been far slower than its model elsewhere, it is judged against
/// [`REPLICA_FLOOR`] times the replicas' recent p50/p95, and how long it has been far above
/// that is walked back through its recent samples.
fn replica_floor(f: &mut PersonaFeatures, p: &PersonaView, now_ms: u64) {
    let l = &mut f.latency;
    let (b50, b95) = (REPLICA_FLOOR * l.replica_p50_ms, REPLICA_FLOOR * l.replica_p95_ms);
    let floor = latency_ratio(b50, b95, b50, b95);
    if !floor.is_finite() {
        return;
    }
    // its own baseline against the floor (> 1: its own history is slower than its replicas allow)
    let own = latency_ratio(l.base_p50_ms, l.base_p95_ms, b50, b95);
    if own.is_finite() && own <= 1.0 {
        return;
    }
    l.baseline = Baseline::Replicas;
    l.base_p50_ms = b50;
    l.base_p95_ms = b95;
    l.ratio = latency_ratio(l.recent_p50_ms, l.recent_p95_ms, b50, b95);
    l.prev_ratio = latency_ratio(l.prev_p50_ms, l.prev_p95_ms, b50, b95);
    l.degraded_for_ms = 0;
    if l.ratio >= HIGH_RATIO {
        let s = &p.series;
        let end = s.end_index(now_ms);
        let start = f.process_start_ms;
        let since = recent::high_since(
            &s.t_ms,
            f.raw_start,
            end,
            |i| latency_ratio(col(&s.latency_p50_ms, i), col(&s.latency_p95_ms, i), b50, b95),
            1.0,
            HIGH_RATIO,
            |t| start.is_some_and(|st| t >= st && t < st + LIVE_WARMUP_MS),
        );
        if let Some(since) = since {
            l.degraded_for_ms = now_ms.saturating_sub(since);
        }
    }
}

/// The error base rate a persona is judged against: its own, unless it has none yet or it has
/// failed far more than the others all along — then the lower of its peers' (same model, then
/// same kind, then the mesh) and the mesh's: replicas failing alike from the start do not make
/// failing normal, they make it shared.
fn error_floor(e: &mut ErrorFeatures) {
    let floor = [e.peer_rate, e.mesh_rate].into_iter().filter(|r| r.is_finite()).fold(f32::NAN, f32::min);
    let floor = if floor.is_finite() { floor.max(0.002) } else { f32::NAN };
    let (base, from) = if e.rate_own_base.is_finite() {
        if floor.is_finite() && e.rate_own_base > 2.0 * floor + 0.01 {
            (floor, BaseFrom::Peers)
        } else {
            return;
        }
    } else if floor.is_finite() {
        (floor, BaseFrom::Peers)
    } else {
        return;
    };
    judge_errors(e, base, from);
}

fn mesh_features(personas: &[PersonaFeatures]) -> MeshFeatures {
    let judged: Vec<&PersonaFeatures> = personas.iter().filter(|f| f.usable() && f.latency.ratio.is_finite()).collect();
    let degraded = judged.iter().filter(|f| f.latency_degraded() || f.errors.burst).count();
    let ratios: Vec<f32> = judged.iter().map(|f| f.latency.ratio).collect();
    MeshFeatures {
        personas: personas.len(),
        judged: judged.len(),
        degraded,
        degraded_share: if judged.is_empty() { 0.0 } else { degraded as f32 / judged.len() as f32 },
        median_latency_ratio: median_vec(ratios),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_excluding_one() {
        let v = [1.0, 2.0, 3.0, 4.0, 100.0];
        assert_eq!(median_excluding(&v, 100.0), 2.5);
        assert_eq!(median_excluding(&v, 1.0), 3.5);
        assert_eq!(median_excluding(&v, 3.0), 3.0);
        assert!(median_excluding(&[5.0], 5.0).is_nan());
    }
}

#[cfg(test)]
mod reported_tests {
    use mindmesh_core::metrics::PersonaSample;
    use mindmesh_core::reported::ReportedMetrics;
    use mindmesh_core::spec::PersonaSpec;

    use super::*;

    /// One persona sampled every 10 s for 30 minutes; `report(i)` is what it reported at i.
    fn features(report: impl Fn(u64) -> Option<(f32, f32)>) -> PersonaFeatures {
        let spec = PersonaSpec::new("llama", "srv");
        let samples: Vec<PersonaSample> = (0..180u64)
            .map(|i| PersonaSample {
                ts_ms: i * 10_000,
                rss_bytes: 500 << 20,
                requests: 5,
                reported: report(i).map(|(hit, kv)| ReportedMetrics {
                    cache_hit_rate: Some(hit),
                    kv_cache_usage: Some(kv),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        let p = PersonaView::from_samples(&spec, "n1", Phase::Running, &samples, &[], Some(0), 0);
        let view = MeshView { nodes: Vec::new(), personas: vec![p] };
        let now = 180 * 10_000;
        extract(&view, now, 60_000, &mut FeatureCache::default()).personas.remove(0)
    }

    #[test]
    fn a_falling_cache_hit_rate_and_a_full_kv_cache_are_seen() {
        // 80 % hits for the first quarter hour, 30 % since; the KV cache fills at the end
        let f = features(|i| Some(if i < 90 { (0.8, 0.3) } else { (0.3, if i >= 177 { 0.99 } else { 0.5 }) }));
        let r = f.reported.expect("reported figures");
        assert!((r.cache_hit_rate_before - 0.8).abs() < 0.05, "{r:?}");
        assert!((r.cache_hit_rate_now - 0.3).abs() < 0.05, "{r:?}");
        assert!(r.cache_hit_falling && r.kv_cache_full, "{r:?}");
        // steady figures: nothing called
        let r = features(|_| Some((0.8, 0.4))).reported.unwrap();
        assert!(!r.cache_hit_falling && !r.kv_cache_full, "{r:?}");
        // a persona that reports nothing has no such features; one that began reporting late
        // is judged on what it reported
        assert!(features(|_| None).reported.is_none());
        let r = features(|i| (i >= 170).then_some((0.5, 0.2))).reported.unwrap();
        assert!(!r.cache_hit_falling && (r.kv_cache_usage_now - 0.2).abs() < 1e-6, "{r:?}");
    }
}
