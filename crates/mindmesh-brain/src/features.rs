//! Features: what the analysts see. Every feature compares a persona with its own history,
//! with its peers or with its host, so no decision rests on an absolute number alone.
//!
//! Per persona: memory trend by regression over the current process's history with its fit
//! (stable, growing, oscillating, leaking) and a floor fit that sees through GC sawtooth;
//! latency against its own baseline and against the median of comparable peers (same model
//! first, then same kind); error rate against its own base rate (a Poisson test) and the kinds
//! of errors; idle time against its usual gaps; a queue that grows while nothing completes;
//! restarts in the last 5 minutes and hour; uptime; CPU against its own baseline and its
//! host. Per node: CPU and memory pressure. Mesh-wide: the share of personas degraded at once.
//!
//! Cost: the history older than [`RECENT_WINDOW_MS`] is read through the persona's
//! [`PersonaDigest`] (cached across cycles by [`FeatureCache`]); only the recent window is read
//! raw, at most [`MAX_RAW_SAMPLES`] samples.

use std::collections::HashMap;

use mindmesh_core::{Importance, Phase, PersonaKind};
use serde::Serialize;

use crate::classify::{ClassMix, ErrorClass, classify_kind, classify_text};
use crate::digest::{Bucket, PersonaDigest, is_collapse};
use crate::stats::{Fit, linreg, median_of, poisson_tail, quantile_in_place};
use crate::view::{MeshView, NodeView, PersonaSeries, PersonaView, ViewEventKind};

const MIN: u64 = 60_000;
/// Read raw each cycle; everything older is in the digest.
pub const RECENT_WINDOW_MS: u64 = 30 * MIN;
/// "Now" for latency.
pub const LATENCY_RECENT_MS: u64 = 15 * MIN;
pub const CPU_RECENT_MS: u64 = 10 * MIN;
/// After a restart, latency and memory are not judged for this long.
pub const WARMUP_MS: u64 = 10 * MIN;
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
    /// Median growth of comparable peers over the same span.
    pub peer_growth_frac: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyFeatures {
    pub recent_p50_ms: f32,
    pub recent_p95_ms: f32,
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
    /// Recent p50 against same-model replicas' recent p50.
    pub replica_ratio: f32,
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
    pub rate_base: f32,
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
    pub peer_rate: f32,
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
    pub memory: MemoryFeatures,
    pub latency: LatencyFeatures,
    pub errors: ErrorFeatures,
    pub activity: ActivityFeatures,
    pub restarts: RestartFeatures,
    pub cpu: CpuFeatures,
}

impl PersonaFeatures {
    /// Latency is high against its own history for a sustained stretch.
    pub fn latency_degraded(&self) -> bool {
        let l = &self.latency;
        l.ratio >= 1.5 && l.prev_ratio >= 1.3
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

/// Digests kept across cycles, one per persona id.
#[derive(Debug, Default)]
pub struct FeatureCache {
    entries: HashMap<String, (u64, PersonaDigest)>,
    generation: u64,
}

impl FeatureCache {
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Total samples folded since creation (cost accounting).
    pub fn folded(&self) -> u64 {
        self.entries.values().map(|(_, d)| d.folded).sum()
    }
}

/// Extract every feature of `view` as of `now_ms` (samples after it are ignored).
pub fn extract(view: &MeshView, now_ms: u64, stale_after_ms: u64, cache: &mut FeatureCache) -> FeatureSet {
    cache.generation += 1;
    let generation = cache.generation;
    let mut scratch = Scratch::default();
    let node_index: HashMap<&str, usize> = view.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    let nodes: Vec<NodeFeatures> = view.nodes.iter().map(|n| node_features(n, now_ms, stale_after_ms)).collect();
    let mut personas = Vec::with_capacity(view.personas.len());
    for (index, p) in view.personas.iter().enumerate() {
        let entry = cache.entries.entry(p.id.clone()).or_default();
        entry.0 = generation;
        let node = node_index.get(p.node.as_str()).copied();
        let cores = node.map_or(1, |i| view.nodes[i].cpu_cores.max(1));
        personas.push(persona_features(p, index, node, cores, now_ms, stale_after_ms, &mut entry.1, &mut scratch));
    }
    cache.entries.retain(|_, (g, _)| *g == generation);
    peer_features(view, &mut personas);
    let mesh = mesh_features(&personas);
    FeatureSet { now_ms, personas, nodes, mesh }
}

#[derive(Default)]
struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
    /// The whole history as points: digest buckets, then chunks of the raw window.
    all: Vec<Point>,
    points: Vec<Point>,
    pairs: Vec<(f64, f64)>,
}

/// One point of a history: a digest bucket or a chunk of the raw window.
#[derive(Debug, Clone, Copy)]
struct Point {
    /// First and middle sample time.
    t_first_ms: u64,
    t_ms: u64,
    n: u32,
    mem_mean: f32,
    mem_min: f32,
    mem_max: f32,
    p50: f32,
    p95: f32,
    /// NaN when not measured.
    requests: f32,
    errors: f32,
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
            peer_growth_frac: nan,
        },
        latency: LatencyFeatures {
            recent_p50_ms: nan,
            recent_p95_ms: nan,
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
            elevated_since_ms: None,
            p_value: 1.0,
            dispersion: f32::NAN,
            elevated_parts: 0,
            elevated: false,
            burst: false,
            mix: ClassMix::default(),
            peer_rate: nan,
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
        cpu: CpuFeatures { recent_percent: nan, base_percent: nan, share_of_host: nan },
    }
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
    digest: &mut PersonaDigest,
    scratch: &mut Scratch,
) -> PersonaFeatures {
    let s = &p.series;
    if let Err(problem) = s.check() {
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
        let mut gaps: Vec<u64> = s.t_ms[from..end].windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_unstable();
        gaps.get(gaps.len() / 2).copied().unwrap_or(0)
    };
    let w = Windows::for_interval(f.interval_ms);
    f.windows = w;
    let split = s.t_ms[..end].partition_point(|&t| t + w.recent_ms <= now_ms);
    digest.update(s, split);
    let raw_start = split.max(end.saturating_sub(MAX_RAW_SAMPLES));
    let raw = raw_start..end;

    let t_first = s.t_ms[0];
    let t_last = s.t_ms[end - 1];
    f.samples = end;
    f.history_ms = t_last - t_first;
    f.stale = now_ms.saturating_sub(t_last) > stale_after_ms.max(3 * f.interval_ms);

    // --- restarts: the digest's memory plus the raw window
    let mut restarts: Vec<(u64, f32)> = digest.restarts.iter().copied().collect();
    let mut segment_start = digest.segment_start_ms;
    {
        let mut prev_r = if raw_start > 0 { col(&s.restarts, raw_start - 1) } else { f32::NAN };
        let mut prev_m = if raw_start > 0 { col(&s.memory_mb, raw_start - 1) } else { f32::NAN };
        for i in raw_start..end {
            let r = col(&s.restarts, i);
            if r.is_finite() {
                if prev_r.is_finite() && r > prev_r {
                    restarts.push((s.t_ms[i], r - prev_r));
                    segment_start = Some(s.t_ms[i]);
                }
                prev_r = r;
            }
            let m = s.memory_mb[i];
            if m.is_finite() {
                if is_collapse(prev_m, m) {
                    segment_start = Some(s.t_ms[i]);
                }
                prev_m = m;
            }
        }
    }
    let recent_sum = |w: u64| restarts.iter().filter(|(t, _)| *t + w > now_ms).map(|(_, n)| *n).sum::<f32>();
    f.restarts.last_5m = recent_sum(CRASH_LOOP_WINDOW_MS);
    f.restarts.last_1h = recent_sum(60 * MIN);
    f.restarts.last_restart_ms = restarts.last().map(|(t, _)| *t);
    let ev_from = p.events.partition_point(|e| e.t_ms + CRASH_LOOP_WINDOW_MS <= now_ms);
    let ev_to = p.events.partition_point(|e| e.t_ms <= now_ms);
    f.restarts.exits_5m = p.events[ev_from..ev_to].iter().filter(|e| e.kind == ViewEventKind::Exit).count() as u32;
    f.restarts.crash_loop = f.restarts.last_5m > CRASH_LOOP_RESTARTS
        || (s.restarts.is_empty() && f.restarts.exits_5m as f32 > CRASH_LOOP_RESTARTS);
    f.uptime_ms = match (f.restarts.last_restart_ms, p.uptime_ms_at_first) {
        (Some(r), _) => Some(now_ms.saturating_sub(r)),
        (None, Some(u)) => Some(u + (now_ms.saturating_sub(t_first))),
        _ => None,
    };
    let warm = |t: u64| restarts.iter().rev().take(8).any(|(r, _)| t >= *r && t < *r + WARMUP_MS);

    scratch.all.clear();
    scratch.all.extend(digest.buckets.iter().map(bucket_point));
    chunk_points(s, raw.clone(), digest.bucket_len().max(1), &mut scratch.all, &mut scratch.b);

    memory_features(&mut f, p, digest, raw.clone(), segment_start, now_ms, &warm, scratch);
    latency_features(&mut f, p, digest, raw.clone(), now_ms, &warm, scratch);
    error_features(&mut f, p, raw.clone(), now_ms, scratch);
    activity_features(&mut f, p, digest, raw.clone(), now_ms);

    // --- CPU
    if !s.cpu_percent.is_empty() {
        let from = s.t_ms[..end].partition_point(|&t| t + w.cpu_ms <= now_ms).max(raw_start);
        let (sum, n) = s.cpu_percent[from..end]
            .iter()
            .filter(|v| v.is_finite())
            .fold((0.0f32, 0u32), |(a, n), v| (a + v, n + 1));
        f.cpu.recent_percent = if n > 0 { sum / n as f32 } else { f32::NAN };
        f.cpu.base_percent = median_of(digest.buckets.iter().map(|b| b.cpu_mean), &mut scratch.a);
        f.cpu.share_of_host = f.cpu.recent_percent / (host_cores as f32 * 100.0);
    }
    f
}

fn chunk_points(s: &PersonaSeries, raw: std::ops::Range<usize>, chunk: usize, out: &mut Vec<Point>, tmp: &mut Vec<f32>) {
    let mut i = raw.start;
    while i < raw.end {
        let j = (i + chunk).min(raw.end);
        let (mut sum, mut n, mut lo, mut hi) = (0.0f64, 0u32, f32::INFINITY, f32::NEG_INFINITY);
        let (mut req, mut err) = (0.0f32, 0.0f32);
        for k in i..j {
            let m = s.memory_mb[k];
            if m.is_finite() {
                sum += f64::from(m);
                n += 1;
                lo = lo.min(m);
                hi = hi.max(m);
            }
            let r = col(&s.requests, k);
            if r.is_finite() {
                req += r;
                err += col(&s.errors, k).min(r).max(0.0);
            }
        }
        let p50 = median_of((i..j).map(|k| col(&s.latency_p50_ms, k)), tmp);
        let p95 = median_of((i..j).map(|k| col(&s.latency_p95_ms, k)), tmp);
        out.push(Point {
            t_first_ms: s.t_ms[i],
            t_ms: s.t_ms[i] + (s.t_ms[j - 1] - s.t_ms[i]) / 2,
            n: (j - i) as u32,
            mem_mean: if n > 0 { (sum / f64::from(n)) as f32 } else { f32::NAN },
            mem_min: if n > 0 { lo } else { f32::NAN },
            mem_max: if n > 0 { hi } else { f32::NAN },
            p50,
            p95,
            requests: if s.requests.is_empty() { f32::NAN } else { req },
            errors: if s.requests.is_empty() { f32::NAN } else { err },
        });
        i = j;
    }
}

fn bucket_point(b: &Bucket) -> Point {
    Point {
        t_first_ms: b.t_first_ms,
        t_ms: b.t_mid_ms(),
        n: b.n,
        mem_mean: b.mem_mean,
        mem_min: b.mem_min,
        mem_max: b.mem_max,
        p50: b.p50_med,
        p95: b.p95_med,
        requests: b.requests,
        errors: b.errors,
    }
}

#[allow(clippy::too_many_arguments)]
fn memory_features(
    f: &mut PersonaFeatures,
    p: &PersonaView,
    digest: &PersonaDigest,
    raw: std::ops::Range<usize>,
    segment_start: Option<u64>,
    now_ms: u64,
    warm: &dyn Fn(u64) -> bool,
    scratch: &mut Scratch,
) {
    let s = &p.series;
    let m = &mut f.memory;
    let tail = raw.end.saturating_sub(3).max(raw.start)..raw.end;
    m.now_mb = median_of(tail.map(|i| s.memory_mb[i]), &mut scratch.a);
    m.budget_mb = p.budget.as_ref().map(|b| b.max_memory_mb as f32);

    // highest level before the recent window, in this process's life
    let seg_from = segment_start.map_or(0, |t| t + WARMUP_MS);
    m.hist_high_mb = {
        scratch.a.clear();
        scratch.a.extend(digest.buckets.iter().filter(|b| b.t_first_ms >= seg_from).map(|b| b.mem_max));
        quantile_in_place(&mut scratch.a, 0.95)
    };
    if m.hist_high_mb.is_finite() && m.hist_high_mb > 0.0 && m.now_mb.is_finite() {
        m.spike_frac = (m.now_mb / m.hist_high_mb - 1.0).max(0.0);
    }

    // points of the current process's life, after its warm-up
    let pts = &mut scratch.points;
    pts.clear();
    pts.extend(scratch.all.iter().filter(|pt| pt.t_first_ms >= seg_from && pt.mem_mean.is_finite() && !warm(pt.t_ms)));
    if pts.len() < 5 {
        return;
    }
    let t0 = pts[0].t_ms;
    let x = |t: u64| (t - t0) as f64 / MIN as f64;
    let Some(full) = linreg(pts.iter().map(|pt| (x(pt.t_ms), f64::from(pt.mem_mean), f64::from(pt.n)))) else {
        return;
    };
    // where growth starts: a leak that began an hour ago in a day of history is judged on that
    // hour, and a one-time step (a cache filling) shows no growth after it
    let mut from = 0;
    if full.slope > 0.0 && pts.len() >= 8 {
        scratch.pairs.clear();
        scratch.pairs.extend(pts.iter().map(|pt| (x(pt.t_ms), f64::from(pt.mem_mean))));
        from = crate::stats::hinge_start(&scratch.pairs, (pts.len() / 6).max(4)).unwrap_or(0);
    }
    let seg = &pts[from..];
    let fit = linreg(seg.iter().map(|pt| (x(pt.t_ms), f64::from(pt.mem_mean), f64::from(pt.n)))).unwrap_or(full);
    let seg_t0 = seg[0].t_ms;
    m.span_ms = pts[pts.len() - 1].t_ms - t0;
    m.growth_span_ms = seg[seg.len() - 1].t_ms - seg_t0;
    m.slope_mb_per_min = fit.slope as f32;
    m.fit_r2 = fit.r2 as f32;
    let span_min = m.growth_span_ms as f64 / MIN as f64;
    let start_level = fit.at(x(seg_t0)).max(1.0);
    m.growth_frac = (fit.slope * span_min / start_level) as f32;

    // floor: the lowest point of consecutive groups, so a sawtooth on a rising floor shows
    let groups = (seg.len() / 3).clamp(4, 16).min(seg.len());
    let per = seg.len().div_ceil(groups);
    let floors: Vec<(f64, f64, f64)> = seg
        .chunks(per)
        .map(|c| {
            let lo = c.iter().map(|pt| pt.mem_min).fold(f32::INFINITY, f32::min);
            let tm = c[c.len() / 2].t_ms;
            (x(tm), f64::from(lo), 1.0)
        })
        .collect();
    let floor = linreg(floors.iter().copied());
    m.floor_slope_mb_per_min = floor.map_or(f32::NAN, |fl| fl.slope as f32);
    m.floor_r2 = floor.map_or(f32::NAN, |fl| fl.r2 as f32);

    // persistence: both halves of the growth grow at a comparable rate
    let half = seg.len() / 2;
    let half_fit = |ps: &[Point]| linreg(ps.iter().map(|pt| (x(pt.t_ms), f64::from(pt.mem_mean), f64::from(pt.n))));
    m.persistent = match (half_fit(&seg[..half]), half_fit(&seg[half..])) {
        (Some(a), Some(b)) => fit.slope > 0.0 && a.slope >= 0.4 * fit.slope && b.slope >= 0.4 * fit.slope,
        _ => false,
    };

    // swing within buckets and around the trend, relative to the level
    scratch.a.clear();
    scratch.a.extend(pts.iter().filter(|pt| pt.mem_mean > 0.0).map(|pt| (pt.mem_max - pt.mem_min) / pt.mem_mean));
    let swing = quantile_in_place(&mut scratch.a, 0.5);
    let level = full.at(x(pts[pts.len() / 2].t_ms)).max(1.0);
    m.swing_frac = swing.max((2.0 * full.resid_sd / level) as f32);

    let rise_mb = fit.slope * span_min;
    let fitted = fit.r2.max(floor.filter(|fl| fl.slope > 0.0).map_or(0.0, |fl| fl.r2));
    if let Some(b) = m.budget_mb
        && fit.slope > 0.0
        && m.now_mb.is_finite()
    {
        m.minutes_to_budget = Some(((f64::from(b) - f64::from(m.now_mb)) / fit.slope).max(0.0) as f32);
    }
    // steady, persistent, well-fitted growth over an hour or more that is large against the
    // process's own size — or that will reach its memory budget within two hours
    let steady = m.growth_span_ms >= MIN_LEAK_SPAN_MS && m.persistent && rise_mb >= 5.0 * fit.resid_sd;
    let large = m.growth_frac >= 0.15 && fitted >= 0.85;
    let budget_soon = m.growth_frac >= 0.05 && fitted >= 0.9 && m.minutes_to_budget.is_some_and(|t| t <= 120.0);
    m.trend = if m.span_ms < 30 * MIN {
        MemTrend::Unknown
    } else if steady && (large || budget_soon) {
        MemTrend::Leaking
    } else if m.growth_span_ms >= 30 * MIN && m.growth_frac >= 0.04 && m.persistent && fitted >= 0.6 {
        MemTrend::Growing
    } else if m.swing_frac >= 0.08 {
        MemTrend::Oscillating
    } else {
        MemTrend::Stable
    };
    let _ = now_ms;
}

fn latency_features(
    f: &mut PersonaFeatures,
    p: &PersonaView,
    digest: &PersonaDigest,
    raw: std::ops::Range<usize>,
    now_ms: u64,
    warm: &dyn Fn(u64) -> bool,
    scratch: &mut Scratch,
) {
    let s = &p.series;
    if s.latency_p50_ms.is_empty() && s.latency_p95_ms.is_empty() {
        return;
    }
    let l = &mut f.latency;
    let ts = &s.t_ms;
    let w = f.windows;
    let recent_from = ts[raw.clone()].partition_point(|&t| t + w.latency_ms <= now_ms) + raw.start;
    let window = |r: std::ops::Range<usize>, c: &[f32], tmp: &mut Vec<f32>| {
        tmp.clear();
        tmp.extend(r.filter(|&i| !warm(ts[i])).map(|i| col(c, i)).filter(|v| v.is_finite()));
        if tmp.len() >= 3 { crate::stats::median_in_place(tmp) } else { f32::NAN }
    };
    l.recent_p50_ms = window(recent_from..raw.end, &s.latency_p50_ms, &mut scratch.a);
    l.recent_p95_ms = window(recent_from..raw.end, &s.latency_p95_ms, &mut scratch.a);
    let prev_p50 = window(raw.start..recent_from, &s.latency_p50_ms, &mut scratch.a);
    let prev_p95 = window(raw.start..recent_from, &s.latency_p95_ms, &mut scratch.a);
    l.warming_up = f.restarts.last_restart_ms.is_some_and(|r| r + WARMUP_MS > now_ms);

    // the history as points, warm-ups left out
    let pts = &mut scratch.points;
    pts.clear();
    pts.extend(scratch.all.iter().filter(|pt| (pt.p50.is_finite() || pt.p95.is_finite()) && !warm(pt.t_ms)));
    let hist_end = pts.partition_point(|pt| pt.t_first_ms + w.recent_ms <= now_ms);
    // a step up in the history (a mean shift of the log p50) splits "normal" from "now":
    // the baseline is the level before it, however long the degradation has lasted
    scratch.pairs.clear();
    scratch.pairs.extend(pts.iter().map(|pt| (f64::from(pt.p50.max(1e-3)).ln(), if pt.p50.is_finite() { 1.0 } else { 0.0 })));
    let step = crate::stats::mean_shift(&scratch.pairs, (pts.len() / 8).max(3))
        .filter(|sh| sh.after - sh.before >= 1.3f64.ln() && sh.gain >= 0.3);
    let base_range = match step {
        Some(sh) => 0..sh.split,
        None => 0..hist_end,
    };
    if base_range.len() >= 3 {
        l.base_p50_ms = median_of(pts[base_range.clone()].iter().map(|pt| pt.p50), &mut scratch.a);
        l.base_p95_ms = median_of(pts[base_range].iter().map(|pt| pt.p95), &mut scratch.a);
    }
    let ratio = |p50: f32, p95: f32, b50: f32, b95: f32| {
        let r50 = p50 / b50;
        let r95 = p95 / b95;
        match (r50.is_finite() && r50 > 0.0, r95.is_finite() && r95 > 0.0) {
            (true, true) => (r50 * r95).sqrt(),
            (true, false) => r50,
            (false, true) => r95,
            _ => f32::NAN,
        }
    };
    l.ratio = ratio(l.recent_p50_ms, l.recent_p95_ms, l.base_p50_ms, l.base_p95_ms);
    l.prev_ratio = ratio(prev_p50, prev_p95, l.base_p50_ms, l.base_p95_ms);
    if l.ratio >= 1.35 {
        l.degraded_for_ms = match step {
            Some(sh) if l.prev_ratio >= 1.35 => now_ms.saturating_sub(pts[sh.split].t_first_ms),
            _ if l.prev_ratio >= 1.35 => w.recent_ms,
            _ => w.latency_ms / 2,
        };
    }
    if let Some(budget) = &p.budget {
        l.over_budget = l.recent_p95_ms.is_finite() && l.recent_p95_ms > budget.max_response_time_ms as f32;
    }
    // gradual drift of the p50 over the whole history
    pts.retain(|pt| pt.p50.is_finite());
    if pts.len() >= 6 {
        let t0 = pts[0].t_ms;
        let fit: Option<Fit> = linreg(pts.iter().map(|pt| ((pt.t_ms - t0) as f64 / MIN as f64, f64::from(pt.p50), 1.0)));
        if let Some(fit) = fit {
            let x_end = (pts[pts.len() - 1].t_ms - t0) as f64 / MIN as f64;
            let (a, b) = (fit.at(0.0), fit.at(x_end));
            if a > 0.0 && b > 0.0 {
                l.trend_ratio = (b / a) as f32;
                l.trend_r2 = fit.r2 as f32;
            }
        }
    }
    let _ = digest;
}

fn error_features(
    f: &mut PersonaFeatures,
    p: &PersonaView,
    raw: std::ops::Range<usize>,
    now_ms: u64,
    scratch: &mut Scratch,
) {
    let s = &p.series;
    if s.requests.is_empty() || s.errors.is_empty() {
        return;
    }
    // the window holds enough evidence: at least the recent window, long enough for about
    // 300 requests at the current rate, at most two hours
    let recent_ms = f.windows.recent_ms;
    let (interval_ms, part10_ms) = (f.interval_ms, f.windows.part_ms());
    let e = &mut f.errors;
    let (raw_req, raw_span_ms) = {
        let r: f32 = raw.clone().map(|i| col(&s.requests, i)).filter(|v| v.is_finite()).sum();
        let span = s.t_ms[raw.end - 1].saturating_sub(s.t_ms[raw.start]) + interval_ms;
        (r, span.max(1))
    };
    let per_ms = f64::from(raw_req) / raw_span_ms as f64;
    let window_ms = if per_ms > 0.0 { (300.0 / per_ms) as u64 } else { recent_ms }.clamp(recent_ms, 120 * MIN);
    e.window_ms = window_ms;
    let part_ms = (window_ms / 3).max(1);
    let part = |t: u64| -> usize {
        let age = now_ms.saturating_sub(t);
        (2 - (age / part_ms).min(2)) as usize
    };
    // parts from the history points (digest buckets, raw chunks) by their middle time
    let mut parts = [(0.0f32, 0.0f32); 3];
    for pt in scratch.all.iter().filter(|pt| pt.t_ms + window_ms > now_ms && pt.requests.is_finite()) {
        let k = part(pt.t_ms);
        parts[k].0 += pt.requests;
        parts[k].1 += pt.errors.min(pt.requests);
    }
    e.requests_window = parts.iter().map(|p| p.0).sum();
    e.errors_window = parts.iter().map(|p| p.1).sum();
    e.rate_window = if e.requests_window > 0.0 { e.errors_window / e.requests_window } else { f32::NAN };
    // the last ten minutes (or part of the recent window), raw
    {
        let from = s.t_ms[raw.clone()].partition_point(|&t| t + part10_ms <= now_ms) + raw.start;
        let (r, er) = (from..raw.end)
            .map(|i| (col(&s.requests, i), col(&s.errors, i)))
            .filter(|(r, er)| r.is_finite() && er.is_finite())
            .fold((0.0f32, 0.0f32), |(a, b), (r, er)| (a + r, b + er.min(r)));
        e.rate_last10 = if r > 0.0 { er / r } else { f32::NAN };
    }
    // the persona's own base rate: the level before a step up in its error rate, if there is
    // one (a long burst must not become its own baseline), else its whole history
    let pts = &mut scratch.points;
    pts.clear();
    pts.extend(scratch.all.iter().filter(|pt| pt.requests.is_finite() && pt.requests > 0.0));
    scratch.pairs.clear();
    scratch.pairs.extend(pts.iter().map(|pt| (f64::from(pt.errors / pt.requests), f64::from(pt.requests))));
    let step = crate::stats::mean_shift(&scratch.pairs, (pts.len() / 8).max(3))
        .filter(|sh| sh.after >= 2.0 * sh.before + 0.005 && sh.gain >= 0.2);
    let hist_end = pts.partition_point(|pt| pt.t_first_ms + window_ms <= now_ms);
    let base_pts = match step {
        Some(sh) => &pts[..sh.split],
        None => &pts[..hist_end],
    };
    let (req_b, err_b) = base_pts.iter().fold((0.0f32, 0.0f32), |(r, er), pt| (r + pt.requests, er + pt.errors));
    e.rate_base = if req_b >= 50.0 { err_b / req_b } else { f32::NAN };
    e.elevated_since_ms = step.map(|sh| pts[sh.split].t_first_ms);
    // what would be expected at the persona's own base rate (floored: a spotless history
    // must not make one error look alarming)
    let base = if e.rate_base.is_finite() { e.rate_base.max(0.002) } else { 0.01 };
    e.p_value = poisson_tail(f64::from(e.errors_window), f64::from(e.requests_window * base));
    let part_threshold = (2.0 * base).max(0.015);
    // ten minutes are "elevated" when their errors are unlikely at the base rate: a stray
    // error or two in a quiet persona is not
    let elevated = |(r, er): &(f32, f32)| {
        *r > 0.0
            && *er >= 2.0
            && er / r >= part_threshold
            && poisson_tail(f64::from(*er), f64::from(*r * base)) < 0.01
    };
    e.elevated_parts = parts.iter().filter(|p| elevated(p)).count() as u8;
    // a burst is current and lasting: every third of the window is elevated, the last included
    let current = elevated(&parts[2]);
    // and steady like a failure rate, not one clump of a few minutes: a binomial dispersion
    // test over the samples since the rate stepped up (about 1 when steady, far above for a clump)
    {
        let since = e.elevated_since_ms.unwrap_or(0).max(now_ms.saturating_sub(window_ms));
        let from = s.t_ms[raw.clone()].partition_point(|&t| t < since) + raw.start;
        let sample = |i: usize| {
            let (r, er) = (col(&s.requests, i), col(&s.errors, i));
            (r.is_finite() && er.is_finite() && r > 0.0).then(|| (f64::from(r), f64::from(er.min(r))))
        };
        let (n, k, tot_r, tot_e) = (from..raw.end)
            .filter_map(sample)
            .fold((0usize, 0.0f64, 0.0f64, 0.0f64), |(n, k, r, er), (ri, ei)| (n + 1, k + 1.0, r + ri, er + ei));
        let _ = k;
        if n >= 4 && tot_e > 0.0 {
            let p = (tot_e / tot_r).clamp(1e-6, 1.0 - 1e-6);
            let chi2: f64 = (from..raw.end)
                .filter_map(sample)
                .map(|(ri, ei)| (ei - ri * p).powi(2) / (ri * p * (1.0 - p)))
                .sum();
            e.dispersion = (chi2 / (n - 1) as f64) as f32;
        }
    }
    // looser: errors are up, for hysteresis to count while the evidence firms up
    e.elevated = e.errors_window >= 5.0
        && e.p_value < 1e-3
        && e.rate_window >= (2.0 * base).max(0.02)
        && e.elevated_parts >= 1;
    e.burst = e.errors_window >= 5.0
        && e.rate_window >= (3.0 * base).max(0.03)
        && e.dispersion <= 4.0
        && e.p_value < 1e-4
        && e.elevated_parts == 3
        && current;

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

fn activity_features(f: &mut PersonaFeatures, p: &PersonaView, digest: &PersonaDigest, raw: std::ops::Range<usize>, now_ms: u64) {
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
    let last_active = if run_start > raw.start {
        Some(s.t_ms[run_start - 1])
    } else {
        digest.last_active_ms
    };
    // gaps between active samples in the raw window, before the current run
    let mut max_gap = digest.max_gap_ms;
    let mut prev = digest.last_active_ms;
    for i in raw.start..run_start {
        if col(&s.requests, i) > 0.0 {
            if let Some(pv) = prev {
                max_gap = max_gap.max(s.t_ms[i] - pv);
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
    // request rates: recent (15 min) and the history's
    let recent_from = s.t_ms[raw.clone()].partition_point(|&t| t + f.windows.latency_ms <= now_ms) + raw.start;
    if raw.end > recent_from {
        let req: f32 = (recent_from..raw.end).map(|i| col(&s.requests, i)).filter(|v| v.is_finite()).sum();
        let span = (raw.end - recent_from) as f32 * f.interval_ms.max(1) as f32 / MIN as f32;
        a.requests_per_min = req / span.max(1e-3);
    }
    let (req_b, n_b) = digest
        .buckets
        .iter()
        .filter(|b| b.requests.is_finite())
        .fold((0.0f32, 0u32), |(r, n), b| (r + b.requests, n + b.n));
    if n_b > 0 {
        a.base_requests_per_min = req_b / (n_b as f32 * f.interval_ms.max(1) as f32 / MIN as f32);
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
    a.idle = last_active.is_some()
        && !a.unresponsive
        && a.idle_for_ms.is_some_and(|t| t >= a.idle_threshold_ms)
        && !(a.queue_last > 0.0)
        && a.health_fails == 0;
}

fn node_features(n: &NodeView, now_ms: u64, stale_after_ms: u64) -> NodeFeatures {
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
    if n.check().is_err() || end == 0 {
        return out;
    }
    let interval = if end >= 2 { (s.t_ms[end - 1] - s.t_ms[0]) / (end as u64 - 1) } else { 0 };
    out.stale = now_ms.saturating_sub(s.t_ms[end - 1]) > stale_after_ms.max(3 * interval);
    // a day back at most
    let day_from = s.t_ms[..end].partition_point(|&t| t + 24 * 60 * MIN <= now_ms);
    let recent = s.t_ms[..end].partition_point(|&t| t + CPU_RECENT_MS <= now_ms).min(end - 1);
    let hist_end = s.t_ms[..end].partition_point(|&t| t + RECENT_WINDOW_MS <= now_ms);
    let mut tmp: Vec<f32> = s.cpu_percent[recent..end].to_vec();
    out.cpu_recent_percent = crate::stats::median_in_place(&mut tmp);
    if hist_end > day_from + 5 {
        let mut tmp: Vec<f32> = s.cpu_percent[day_from..hist_end].to_vec();
        out.cpu_base_percent = crate::stats::median_in_place(&mut tmp);
    }
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
        linreg((mem_from..end).map(|i| ((s.t_ms[i] - s.t_ms[mem_from]) as f64 / MIN as f64, f64::from(s.memory_used_mb[i]), 1.0)))
    {
        out.memory_slope_mb_per_min = fit.slope as f32;
    }
    let minutes_to_95 = if out.memory_slope_mb_per_min > 0.0 {
        (0.95 * n.memory_total_mb - out.memory_used_mb) / out.memory_slope_mb_per_min
    } else {
        f32::INFINITY
    };
    out.memory_pressure = out.memory_frac >= 0.85 || (out.memory_frac >= 0.75 && minutes_to_95 <= 30.0);
    out.cpu_saturated = out.cpu_recent_percent >= 85.0;
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
fn peer_features(view: &MeshView, personas: &mut [PersonaFeatures]) {
    let n = personas.len();
    let lat: Vec<f32> = personas.iter().map(|f| if f.usable() { f.latency.ratio } else { f32::NAN }).collect();
    let err: Vec<f32> = personas.iter().map(|f| if f.usable() { f.errors.rate_window } else { f32::NAN }).collect();
    let mem: Vec<f32> = personas
        .iter()
        .map(|f| if f.usable() && f.memory.trend != MemTrend::Unknown { f.memory.growth_frac } else { f32::NAN })
        .collect();
    let p50: Vec<f32> = personas.iter().map(|f| if f.usable() { f.latency.recent_p50_ms } else { f32::NAN }).collect();

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
    }
    let group = |idx: &[usize]| Group { lat: sorted(idx, &lat), err: sorted(idx, &err), mem: sorted(idx, &mem), p50: sorted(idx, &p50) };
    let model_groups: HashMap<&str, Group> =
        by_model.iter().filter(|(_, v)| v.len() >= 2).map(|(k, v)| (*k, group(v))).collect();
    let kind_groups: HashMap<PersonaKind, Group> = by_kind.iter().map(|(k, v)| (*k, group(v))).collect();
    let all_group = group(&all);

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
        if let Some(g) = model
            && let Some(v) = others(&g.p50, p50[i], 1)
        {
            f.latency.replica_ratio = p50[i] / v;
        }
    }
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
