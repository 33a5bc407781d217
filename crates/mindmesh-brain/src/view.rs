//! The brain's input: a mesh with its history. Nodes carry host series; personas carry their
//! resource and behaviour series (columnar, so a cycle over 10,000 personas with a day of
//! history stays cache-friendly), events, importance, kind, model, budget and uptime.
//!
//! Three producers fill the same type: the scenario loader (`scenario.rs`), the node from its
//! store ([`PersonaView::from_samples`], [`NodeView::from_samples`]) and a leader that keeps
//! one view and appends to it ([`PersonaView::push_sample`], [`MeshView::trim_before`]).
//!
//! Times are milliseconds on one clock (epoch for a node, trace start for a scenario).
//! Missing values are `NaN`; a column that was never measured is empty.

use mindmesh_core::event::{Event, EventKind, truncate_utf8};
use mindmesh_core::metrics::{ErrorKind, HostSample, PersonaSample};
use mindmesh_core::{Action, Budget, Importance, PersonaKind, PersonaSpec, Phase};

/// Longest event detail kept in a view: details are text a process reported.
pub const MAX_VIEW_DETAIL: usize = 512;
/// Most events kept per persona: older ones are dropped first.
pub const MAX_VIEW_EVENTS: usize = 4096;

const BYTES_PER_MB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeshView {
    pub nodes: Vec<NodeView>,
    pub personas: Vec<PersonaView>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub id: String,
    pub cpu_cores: u32,
    pub memory_total_mb: f32,
    pub series: HostSeries,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSeries {
    pub t_ms: Vec<u64>,
    /// 0–100 for the whole host.
    pub cpu_percent: Vec<f32>,
    pub memory_used_mb: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PersonaView {
    pub id: String,
    pub node: String,
    pub importance: Importance,
    pub kind: PersonaKind,
    /// What it serves: personas with the same model are each other's fairest peers.
    pub model: Option<String>,
    /// The budget in force (the spec's, or as an operator or the brain changed it).
    pub budget: Option<Budget>,
    /// What the brain may do with the budget: its starting point and bounds.
    pub envelope: crate::budget::Envelope,
    /// The hard memory limit (crossing it kills the process), if any: where a leak must be
    /// stopped before.
    pub memory_limit_mb: Option<f32>,
    /// Process uptime at the first sample of `series`, if known.
    pub uptime_ms_at_first: Option<u64>,
    /// Observed phase; a persona that is not running is already "disrupted".
    pub phase: Phase,
    pub series: PersonaSeries,
    /// Sorted by time.
    pub events: Vec<ViewEvent>,
    /// Disruptive decisions already committed for it (time, action), for the cooldown.
    pub recent_actions: Vec<(u64, Action)>,
    /// Its spec's scheduled maintenance, and what its process had served before the view.
    pub maintenance: crate::analyst::maintenance::Schedule,
}

/// One persona's samples, one column per measure; every non-empty column has `t_ms.len()`
/// values. Counters (`requests`, `errors`) cover the interval ending at the sample;
/// `restarts` is cumulative since registration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonaSeries {
    pub t_ms: Vec<u64>,
    pub memory_mb: Vec<f32>,
    /// 100 = one core.
    pub cpu_percent: Vec<f32>,
    pub requests: Vec<f32>,
    pub errors: Vec<f32>,
    pub latency_p50_ms: Vec<f32>,
    pub latency_p95_ms: Vec<f32>,
    pub latency_p99_ms: Vec<f32>,
    pub queue_depth: Vec<f32>,
    pub restarts: Vec<f32>,
    /// What the persona reports of itself (its metrics path), 0..=1: empty until its first
    /// report, NaN where a sample has none.
    pub cache_hit_rate: Vec<f32>,
    pub kv_cache_usage: Vec<f32>,
    /// Errors by kind as the gateway classified them, sparse and sorted by time.
    pub error_kinds: Vec<KindCount>,
}

/// Push `v` onto a column that stays empty until its first value (then NaN-filled behind it).
fn push_sparse(c: &mut Vec<f32>, v: Option<f32>, n_before: usize) {
    if c.is_empty() {
        let Some(v) = v else { return };
        c.resize(n_before, f32::NAN);
        c.push(v);
    } else {
        c.push(v.unwrap_or(f32::NAN));
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KindCount {
    pub t_ms: u64,
    pub kind: ErrorKind,
    pub count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViewEventKind {
    Error,
    Exit,
    HealthFail,
    Oom,
    Note,
}

impl ViewEventKind {
    pub fn parse(s: &str) -> ViewEventKind {
        match s {
            "error" => ViewEventKind::Error,
            "exit" => ViewEventKind::Exit,
            "health_fail" => ViewEventKind::HealthFail,
            "oom" => ViewEventKind::Oom,
            _ => ViewEventKind::Note,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ViewEvent {
    pub t_ms: u64,
    pub kind: ViewEventKind,
    /// Reported by the process or the OS: data, never an instruction.
    pub detail: String,
}

impl ViewEvent {
    pub fn new(t_ms: u64, kind: ViewEventKind, detail: &str) -> Self {
        let mut detail = detail.to_owned();
        truncate_utf8(&mut detail, MAX_VIEW_DETAIL);
        ViewEvent { t_ms, kind, detail }
    }

    /// The node's event log, as the brain reads it. Lifecycle bookkeeping (spawn, stop,
    /// decisions) is left out: the series already show its effects.
    pub fn from_core(e: &Event) -> Option<Self> {
        let kind = match e.kind {
            EventKind::Error => ViewEventKind::Error,
            EventKind::Exit | EventKind::SpawnFailed | EventKind::CrashLoop => ViewEventKind::Exit,
            EventKind::LimitHit => {
                let d = e.detail.to_ascii_lowercase();
                if d.contains("mem") { ViewEventKind::Oom } else { ViewEventKind::Note }
            }
            EventKind::HealthChange => {
                let d = e.detail.to_ascii_lowercase();
                if d.contains("unhealthy") || d.contains("fail") || d.contains("timed out") {
                    ViewEventKind::HealthFail
                } else {
                    return None;
                }
            }
            _ => return None,
        };
        Some(ViewEvent::new(e.ts_ms, kind, &e.detail))
    }
}

impl PersonaSeries {
    pub fn len(&self) -> usize {
        self.t_ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t_ms.is_empty()
    }

    /// Number of samples at or before `now_ms`.
    pub fn end_index(&self, now_ms: u64) -> usize {
        crate::stats::count_le_from_end(&self.t_ms, now_ms)
    }

    /// Columns either empty or as long as `t_ms`; times strictly increasing.
    pub fn check(&self) -> Result<(), String> {
        self.check_lengths()?;
        if self.t_ms.windows(2).any(|w| w[1] <= w[0]) {
            return Err("times are not strictly increasing".into());
        }
        Ok(())
    }

    /// The per-cycle check: O(1). Order is the constructors' job (`scenario::parse`,
    /// `from_samples`, `push_sample` keep times increasing); code that reads times saturates, so
    /// a hand-built view out of order gives wrong features, never a panic.
    pub fn check_lengths(&self) -> Result<(), String> {
        let n = self.t_ms.len();
        let cols: [(&str, &Vec<f32>); 11] = [
            ("memory_mb", &self.memory_mb),
            ("cpu_percent", &self.cpu_percent),
            ("requests", &self.requests),
            ("errors", &self.errors),
            ("latency_p50_ms", &self.latency_p50_ms),
            ("latency_p95_ms", &self.latency_p95_ms),
            ("latency_p99_ms", &self.latency_p99_ms),
            ("queue_depth", &self.queue_depth),
            ("restarts", &self.restarts),
            ("cache_hit_rate", &self.cache_hit_rate),
            ("kv_cache_usage", &self.kv_cache_usage),
        ];
        for (name, c) in cols {
            if !c.is_empty() && c.len() != n {
                return Err(format!("{name} has {} values for {n} times", c.len()));
            }
        }
        if self.memory_mb.is_empty() && n > 0 {
            return Err("memory_mb is missing".into());
        }
        Ok(())
    }

    fn push(&mut self, s: &PersonaSample) {
        let opt = |v: Option<f32>| v.unwrap_or(f32::NAN);
        let n_before = self.t_ms.len();
        let r = s.reported.as_ref();
        push_sparse(&mut self.cache_hit_rate, r.and_then(|r| r.cache_hit_rate), n_before);
        push_sparse(&mut self.kv_cache_usage, r.and_then(|r| r.kv_cache_usage), n_before);
        self.t_ms.push(s.ts_ms);
        self.memory_mb.push((s.rss_bytes as f64 / BYTES_PER_MB) as f32);
        self.cpu_percent.push(s.cpu_percent);
        self.requests.push(s.requests as f32);
        self.errors.push(s.errors.min(s.requests) as f32);
        self.latency_p50_ms.push(opt(s.latency_p50_ms));
        self.latency_p95_ms.push(opt(s.latency_p95_ms));
        self.latency_p99_ms.push(opt(s.latency_p99_ms));
        self.queue_depth.push(s.queue_depth as f32);
        self.restarts.push(s.restarts as f32);
        for &(kind, count) in &s.errors_by_kind {
            self.error_kinds.push(KindCount { t_ms: s.ts_ms, kind, count });
        }
    }

    /// Drop samples before `ts_ms`. Returns how many were dropped.
    fn trim_before(&mut self, ts_ms: u64) -> usize {
        let k = self.t_ms.partition_point(|&t| t < ts_ms);
        if k == 0 {
            return 0;
        }
        self.t_ms.drain(..k);
        for c in [
            &mut self.memory_mb,
            &mut self.cpu_percent,
            &mut self.requests,
            &mut self.errors,
            &mut self.latency_p50_ms,
            &mut self.latency_p95_ms,
            &mut self.latency_p99_ms,
            &mut self.queue_depth,
            &mut self.restarts,
            &mut self.cache_hit_rate,
            &mut self.kv_cache_usage,
        ] {
            if !c.is_empty() {
                c.drain(..k.min(c.len()));
            }
        }
        let j = self.error_kinds.partition_point(|e| e.t_ms < ts_ms);
        self.error_kinds.drain(..j);
        k
    }
}

/// Group samples into `resolution_ms` slots of the clock (0 or 1 = keep every sample).
fn rolled_up<T: Clone>(
    samples: &[T],
    ts: impl Fn(&T) -> u64,
    roll: impl Fn(&[T]) -> Option<T>,
    resolution_ms: u64,
) -> Vec<T> {
    if resolution_ms <= 1 {
        return samples.to_vec();
    }
    let mut out = Vec::with_capacity(samples.len());
    let mut start = 0;
    while start < samples.len() {
        let slot = ts(&samples[start]) / resolution_ms;
        let mut end = start + 1;
        while end < samples.len() && ts(&samples[end]) / resolution_ms == slot {
            end += 1;
        }
        if let Some(r) = roll(&samples[start..end]) {
            out.push(r);
        }
        start = end;
    }
    out
}

/// What a spec lets the brain do with the persona's budget: `[budget]` is the starting point,
/// `[budget.min]` / `[budget.max]` bound each field (open ones: the default envelope, lower
/// but never raise).
pub fn envelope_of(spec: &PersonaSpec) -> crate::budget::Envelope {
    crate::budget::Envelope {
        spec: Some(spec.budget.clone()),
        min: spec.envelope.min.to_patch(),
        max: spec.envelope.max.to_patch(),
    }
}

impl PersonaView {
    /// A persona as its node's store holds it: the spec, samples oldest first, its events and
    /// when its process started. Samples are rolled up to `resolution_ms` (e.g. 60,000 turns
    /// 1-s ticks into 1-minute points, which keeps a day of history small).
    pub fn from_samples(
        spec: &PersonaSpec,
        node: &str,
        phase: Phase,
        samples: &[PersonaSample],
        events: &[Event],
        started_at_ms: Option<u64>,
        resolution_ms: u64,
    ) -> Self {
        let mut samples = rolled_up(samples, |s| s.ts_ms, PersonaSample::rollup, resolution_ms);
        samples.sort_by_key(|s| s.ts_ms);
        samples.dedup_by_key(|s| s.ts_ms);
        let mut series = PersonaSeries::default();
        for s in &samples {
            series.push(s);
        }
        let uptime_ms_at_first = match (started_at_ms, series.t_ms.first()) {
            (Some(st), Some(&t0)) => Some(t0.saturating_sub(st)),
            _ => None,
        };
        let mut view_events: Vec<ViewEvent> = events.iter().filter_map(ViewEvent::from_core).collect();
        view_events.sort_by_key(|e| e.t_ms);
        if view_events.len() > MAX_VIEW_EVENTS {
            view_events.drain(..view_events.len() - MAX_VIEW_EVENTS);
        }
        PersonaView {
            id: spec.name.clone(),
            node: node.to_owned(),
            importance: spec.importance,
            kind: spec.kind,
            model: spec.model.clone(),
            budget: Some(spec.budget.clone()),
            envelope: envelope_of(spec),
            memory_limit_mb: spec.limits.memory_max_mb.map(|m| m as f32),
            uptime_ms_at_first,
            phase,
            series,
            events: view_events,
            recent_actions: Vec::new(),
            maintenance: crate::analyst::maintenance::Schedule { policy: spec.maintenance, inferences_at_first: None },
        }
    }

    /// Append one sample (newer than the last; older or equal ones are ignored).
    pub fn push_sample(&mut self, s: &PersonaSample) {
        if self.series.t_ms.last().is_some_and(|&t| s.ts_ms <= t) {
            return;
        }
        if self.series.t_ms.is_empty() {
            self.uptime_ms_at_first = None;
        }
        self.series.push(s);
    }

    pub fn push_event(&mut self, e: &Event) {
        if let Some(v) = ViewEvent::from_core(e) {
            let at = self.events.partition_point(|x| x.t_ms <= v.t_ms);
            self.events.insert(at, v);
            if self.events.len() > MAX_VIEW_EVENTS {
                self.events.remove(0);
            }
        }
    }

    /// Drop history before `ts_ms` (retention). Call it rarely (e.g. hourly): the brain's
    /// caches follow a trimmed front without recomputing.
    pub fn trim_before(&mut self, ts_ms: u64) {
        let old_first = self.series.t_ms.first().copied();
        if self.series.trim_before(ts_ms) > 0
            && let (Some(u), Some(t0), Some(&t1)) = (self.uptime_ms_at_first, old_first, self.series.t_ms.first())
        {
            self.uptime_ms_at_first = Some(u + (t1 - t0));
        }
        let j = self.events.partition_point(|e| e.t_ms < ts_ms);
        self.events.drain(..j);
        self.recent_actions.retain(|&(t, _)| t >= ts_ms);
    }
}

impl NodeView {
    pub fn from_samples(id: &str, samples: &[HostSample], resolution_ms: u64) -> Self {
        let samples = rolled_up(samples, |s| s.ts_ms, HostSample::rollup, resolution_ms);
        let mut series = HostSeries::default();
        for s in &samples {
            if series.t_ms.last().is_some_and(|&t| s.ts_ms <= t) {
                continue;
            }
            series.t_ms.push(s.ts_ms);
            series.cpu_percent.push(s.cpu_percent);
            series.memory_used_mb.push((s.memory_used_bytes as f64 / BYTES_PER_MB) as f32);
        }
        let last = samples.last();
        NodeView {
            id: id.to_owned(),
            cpu_cores: last.map_or(1, |s| s.cpu_cores.max(1)),
            memory_total_mb: last.map_or(0.0, |s| (s.memory_total_bytes as f64 / BYTES_PER_MB) as f32),
            series,
        }
    }

    pub fn push_sample(&mut self, s: &HostSample) {
        if self.series.t_ms.last().is_some_and(|&t| s.ts_ms <= t) {
            return;
        }
        self.series.t_ms.push(s.ts_ms);
        self.series.cpu_percent.push(s.cpu_percent);
        self.series.memory_used_mb.push((s.memory_used_bytes as f64 / BYTES_PER_MB) as f32);
        if s.cpu_cores > 0 {
            self.cpu_cores = s.cpu_cores;
        }
        if s.memory_total_bytes > 0 {
            self.memory_total_mb = (s.memory_total_bytes as f64 / BYTES_PER_MB) as f32;
        }
    }

    pub fn check(&self) -> Result<(), String> {
        let n = self.series.t_ms.len();
        if self.series.cpu_percent.len() != n || self.series.memory_used_mb.len() != n {
            return Err(format!("node {}: series lengths differ from its {n} times", self.id));
        }
        if self.series.t_ms.windows(2).any(|w| w[1] <= w[0]) {
            return Err(format!("node {}: times are not strictly increasing", self.id));
        }
        Ok(())
    }
}

impl MeshView {
    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Every problem that would make a persona's or node's data unusable.
    pub fn check(&self) -> Result<(), String> {
        for n in &self.nodes {
            n.check()?;
        }
        for p in &self.personas {
            p.series.check().map_err(|e| format!("persona {}: {e}", p.id))?;
        }
        Ok(())
    }

    /// Drop history before `ts_ms` everywhere (retention).
    pub fn trim_before(&mut self, ts_ms: u64) {
        for p in &mut self.personas {
            p.trim_before(ts_ms);
        }
        for n in &mut self.nodes {
            let k = n.series.t_ms.partition_point(|&t| t < ts_ms);
            n.series.t_ms.drain(..k);
            n.series.cpu_percent.drain(..k.min(n.series.cpu_percent.len()));
            n.series.memory_used_mb.drain(..k.min(n.series.memory_used_mb.len()));
        }
    }

    /// The latest sample time anywhere in the view.
    pub fn last_sample_ms(&self) -> Option<u64> {
        let p = self.personas.iter().filter_map(|p| p.series.t_ms.last().copied()).max();
        let n = self.nodes.iter().filter_map(|n| n.series.t_ms.last().copied()).max();
        p.max(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ts_ms: u64, rss_mb: u64, requests: u32) -> PersonaSample {
        PersonaSample {
            ts_ms,
            rss_bytes: rss_mb * 1024 * 1024,
            requests,
            errors: 1,
            errors_by_kind: vec![(ErrorKind::Timeout, 1)],
            latency_p50_ms: Some(100.0),
            ..Default::default()
        }
    }

    #[test]
    fn from_samples_rolls_up_and_trims_keep_uptime() {
        let spec = PersonaSpec::new("p", "x");
        let samples: Vec<_> = (0..120).map(|i| sample(1_000_000 + i * 1000, 100 + i, 2)).collect();
        let events =
            [Event::new(1_010_000, "p", EventKind::Error, "boom"), Event::new(1_020_000, "p", EventKind::Spawn, "")];
        let mut v = PersonaView::from_samples(&spec, "n", Phase::Running, &samples, &events, Some(900_000), 60_000);
        v.series.check().unwrap();
        // 1,000,000..1,119,000 spans three one-minute slots
        assert_eq!(v.series.len(), 3);
        assert_eq!(v.series.requests.iter().sum::<f32>(), 240.0);
        assert_eq!(v.events.len(), 1);
        assert_eq!(v.uptime_ms_at_first, Some(v.series.t_ms[0] - 900_000));
        let (t0, u0) = (v.series.t_ms[0], v.uptime_ms_at_first.unwrap());
        let t1 = v.series.t_ms[1];
        v.trim_before(t1);
        assert_eq!(v.series.len(), 2);
        assert_eq!(v.uptime_ms_at_first, Some(u0 + (t1 - t0)));
        assert!(v.series.error_kinds.iter().all(|k| k.t_ms >= t1));
        v.push_sample(&sample(2_000_000, 500, 1));
        v.push_sample(&sample(1_500_000, 500, 1)); // older: ignored
        assert_eq!(v.series.len(), 3);
        v.series.check().unwrap();
    }

    #[test]
    fn check_catches_ragged_columns() {
        let s = PersonaSeries { t_ms: vec![1, 2], memory_mb: vec![1.0], ..Default::default() };
        assert!(s.check().unwrap_err().contains("memory_mb"));
        let s = PersonaSeries { t_ms: vec![2, 1], memory_mb: vec![1.0, 1.0], ..Default::default() };
        assert!(s.check().is_err());
    }
}
