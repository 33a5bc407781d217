//! Anomalies (the seed's `AnomalyMetrics`): what is wrong with a persona, typed, with a
//! severity and a description; a health score 0–100 per persona and one for the mesh.

use mindmesh_core::Importance;
use serde::Serialize;

use crate::classify::ErrorClass;
use crate::features::{Baseline, FeatureSet, MemTrend, PersonaFeatures};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    MemorySpike,
    LatencyDegradation,
    ErrorBurst,
    Unresponsive,
    Thrashing,
    ResourceLeak,
    CrashLoop,
    /// Memory reaches its budget or hard limit within [`FORECAST_HORIZON_MIN`] at its fitted
    /// growth; the anomaly carries the horizon.
    MemoryForecast,
}

impl AnomalyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::MemorySpike => "memory_spike",
            AnomalyKind::LatencyDegradation => "latency_degradation",
            AnomalyKind::ErrorBurst => "error_burst",
            AnomalyKind::Unresponsive => "unresponsive",
            AnomalyKind::Thrashing => "thrashing",
            AnomalyKind::ResourceLeak => "resource_leak",
            AnomalyKind::CrashLoop => "crash_loop",
            AnomalyKind::MemoryForecast => "memory_forecast",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    fn penalty(self) -> i32 {
        match self {
            Severity::Low => 8,
            Severity::Medium => 18,
            Severity::High => 35,
            Severity::Critical => 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub severity: Severity,
    pub description: String,
    /// Minutes until what it forecasts happens (a [`AnomalyKind::MemoryForecast`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub horizon_min: Option<f32>,
}

/// A memory forecast this close is an anomaly (the seed's "time until memory reaches its
/// budget"): far enough ahead to act calmly, near enough that the fit still holds.
pub const FORECAST_HORIZON_MIN: f32 = 60.0;
/// A forecast this close is severe.
pub const FORECAST_SOON_MIN: f32 = 15.0;

/// When a persona's memory reaches its budget or hard limit at its fitted growth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemoryForecast {
    /// `budget` or `hard limit`.
    pub level: &'static str,
    pub level_mb: f32,
    pub horizon_min: f32,
    pub slope_mb_per_min: f32,
    /// What the slope was fitted over: the recent line's samples, or the history's span.
    pub samples: Option<usize>,
    pub span_ms: u64,
    pub r2: f32,
}

impl MemoryForecast {
    /// `memory reaches its budget 2048 MB in ~14 min (slope +3.1 MB/min, fitted over 42 samples
    /// in 21 min, r2 0.97)`.
    pub fn describe(&self) -> String {
        let over = match self.samples {
            Some(n) => format!("{n} samples in {}", minutes(self.span_ms)),
            None => format!("its history, {}", minutes(self.span_ms)),
        };
        format!(
            "memory reaches its {} {:.0} MB in ~{} (slope {:+.1} MB/min, fitted over {over}, r2 {:.2})",
            self.level,
            self.level_mb,
            minutes((self.horizon_min.max(0.0) * 60_000.0) as u64),
            self.slope_mb_per_min,
            self.r2
        )
    }
}

/// The soonest of its budget and hard limit that its memory reaches within
/// [`FORECAST_HORIZON_MIN`], when its growth is real: the recent line grows (steady, well
/// fitted, out of the noise: `growing_now`), or the history's trend is growth. A level already
/// passed is not forecast (over its budget is said elsewhere), and a flat series, however noisy
/// or close to its budget, forecasts nothing: its fitted slope is noise, and the horizon of
/// noise is meaningless.
pub fn memory_forecast(m: &crate::features::MemoryFeatures) -> Option<MemoryForecast> {
    if !m.now_mb.is_finite() {
        return None;
    }
    let (slope, samples, span_ms, r2) = match m.recent {
        Some(r) if m.growing_now => (r.slope_mb_per_min, Some(r.samples), r.span_ms, r.r2),
        _ if matches!(m.trend, MemTrend::Growing | MemTrend::Leaking) => {
            (m.slope_mb_per_min, None, m.growth_span_ms.max(m.span_ms), m.fit_r2.max(m.floor_r2))
        }
        _ => return None,
    };
    if !slope.is_finite() || slope <= 0.0 {
        return None;
    }
    [("budget", m.budget_mb), ("hard limit", m.limit_mb)]
        .into_iter()
        .filter_map(|(level, mb)| {
            let mb = mb.filter(|l| l.is_finite() && *l > m.now_mb)?;
            let horizon_min = (mb - m.now_mb) / slope;
            (horizon_min <= FORECAST_HORIZON_MIN).then_some(MemoryForecast {
                level,
                level_mb: mb,
                horizon_min,
                slope_mb_per_min: slope,
                samples,
                span_ms,
                r2,
            })
        })
        .min_by(|a, b| a.horizon_min.total_cmp(&b.horizon_min))
}

/// A persona's health as the status page and API show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersonaHealth {
    pub persona: String,
    /// 0–100.
    pub score: u8,
    /// How much history the score rests on, 0–1.
    pub confidence: f32,
    pub anomalies: Vec<Anomaly>,
}

fn pct(x: f32) -> String {
    format!("{:.0}%", 100.0 * x)
}

fn minutes(ms: u64) -> String {
    let m = ms as f64 / 60_000.0;
    if m >= 120.0 { format!("{:.1} h", m / 60.0) } else { format!("{m:.0} min") }
}

/// Every anomaly visible in a persona's features.
pub fn detect(f: &PersonaFeatures, set: &FeatureSet) -> Vec<Anomaly> {
    let mut out = Vec::new();
    if !f.usable() {
        return out;
    }
    let mut push =
        |kind, severity, description: String| out.push(Anomaly { kind, severity, description, horizon_min: None });
    if f.restarts.crash_loop {
        push(
            AnomalyKind::CrashLoop,
            Severity::Critical,
            format!("{:.0} restarts in the last 5 min ({} exits)", f.restarts.last_5m, f.restarts.exits_5m),
        );
    } else if f.restarts.last_1h >= 2.0 {
        push(AnomalyKind::Thrashing, Severity::Medium, format!("{:.0} restarts in the last hour", f.restarts.last_1h));
    }
    let m = &f.memory;
    if m.trend == MemTrend::Leaking {
        let sev = if m.minutes_to_budget.is_some_and(|t| t < 60.0) { Severity::Critical } else { Severity::High };
        push(
            AnomalyKind::ResourceLeak,
            sev,
            format!(
                "memory {:+.1} MB/min for {} (fit {:.2}, {:+.0}%)",
                m.slope_mb_per_min,
                minutes(m.growth_span_ms),
                m.fit_r2.max(m.floor_r2),
                100.0 * m.growth_frac
            ),
        );
    } else if m.growing_now
        && let Some(line) = m.recent
    {
        let sev = if m.minutes_to_limit.is_some_and(|t| t < 15.0) {
            Severity::Critical
        } else if m.over_budget() {
            Severity::High
        } else {
            Severity::Medium
        };
        let budget = match m.budget_mb {
            Some(b) => format!(", budget {b:.0} MB"),
            None => String::new(),
        };
        let limit = match (m.limit_mb, m.minutes_to_limit) {
            (Some(l), Some(t)) => format!(", hard limit {l:.0} MB in {}", minutes((t * 60_000.0) as u64)),
            _ => String::new(),
        };
        push(
            AnomalyKind::ResourceLeak,
            sev,
            format!(
                "memory {:+.1} MB/min for {} ({} samples, fit {:.2}), now {:.0} MB{budget}{limit}",
                line.slope_mb_per_min,
                minutes(line.span_ms),
                line.samples,
                line.r2,
                m.now_mb
            ),
        );
    } else if m.spike_frac >= 0.15 {
        let sev = if m.spike_frac >= 0.5 { Severity::High } else { Severity::Medium };
        push(
            AnomalyKind::MemorySpike,
            sev,
            format!(
                "memory {:.0} MB, {} above its usual peak of {:.0} MB",
                m.now_mb,
                pct(m.spike_frac),
                m.hist_high_mb
            ),
        );
    }
    let l = &f.latency;
    if f.latency_degraded() {
        let sev = if l.over_budget || l.ratio >= 3.0 {
            Severity::High
        } else if l.ratio >= 1.8 {
            Severity::Medium
        } else {
            Severity::Low
        };
        let against = match l.baseline {
            Baseline::Replicas => "its replicas",
            _ => "its own baseline",
        };
        push(
            AnomalyKind::LatencyDegradation,
            sev,
            format!("latency x{:.1} against {against} for {}", l.ratio, minutes(l.degraded_for_ms)),
        );
    } else if l.replica_ratio >= 1.6 && !l.warming_up {
        push(
            AnomalyKind::LatencyDegradation,
            Severity::Low,
            format!("p50 x{:.1} against its replicas", l.replica_ratio),
        );
    }
    let e = &f.errors;
    let failing = e.rate_last10 >= 0.5 && e.errors_window >= 10.0;
    if e.burst || failing {
        let permanent = e.mix.share(ErrorClass::Permanent) >= 0.6;
        let sev = if failing && permanent {
            Severity::Critical
        } else if e.rate_window >= 0.2 {
            Severity::High
        } else {
            Severity::Medium
        };
        push(
            AnomalyKind::ErrorBurst,
            sev,
            format!(
                "{} errors in {} (base {}), {}",
                pct(e.rate_window),
                minutes(e.window_ms),
                if e.rate_base.is_finite() { pct(e.rate_base) } else { "unknown".into() },
                e.mix.describe()
            ),
        );
    }
    if !(e.burst || failing) && e.elevated {
        // up, not yet a burst to act on: the score says so while the decision waits
        push(
            AnomalyKind::ErrorBurst,
            Severity::Low,
            format!(
                "errors up: {} in {} (base {}), {}",
                pct(e.rate_window),
                minutes(e.window_ms),
                pct(e.rate_base),
                e.mix.describe()
            ),
        );
    }
    if m.over_budget() && !m.growing_now && m.trend != MemTrend::Leaking {
        push(
            AnomalyKind::MemorySpike,
            Severity::Low,
            format!("memory {:.0} MB over its {:.0} MB budget", m.now_mb, m.budget_mb.unwrap_or(0.0)),
        );
    }
    let a = &f.activity;
    if a.unresponsive {
        push(
            AnomalyKind::Unresponsive,
            Severity::Critical,
            format!(
                "no request completed for {}, queue {:.0} -> {:.0}, {} failed health checks",
                minutes(a.stalled_samples as u64 * f.interval_ms),
                a.queue_first,
                a.queue_last,
                a.health_fails
            ),
        );
    }
    let c = &f.cpu;
    let busy_without_work = c.recent_percent >= 2.0 * c.base_percent
        && c.recent_percent >= 20.0
        && a.base_requests_per_min >= 1.0
        && a.requests_per_min <= 0.5 * a.base_requests_per_min
        && !a.unresponsive;
    let host_pressure = f.node.is_some_and(|n| set.nodes[n].memory_pressure);
    if busy_without_work || (host_pressure && m.swing_frac >= 0.3) {
        push(
            AnomalyKind::Thrashing,
            Severity::Medium,
            if busy_without_work {
                format!(
                    "CPU {:.0}% (usually {:.0}%) while completing {:.1}/min (usually {:.1}/min)",
                    c.recent_percent, c.base_percent, a.requests_per_min, a.base_requests_per_min
                )
            } else {
                format!("memory swings {} on a host under memory pressure", pct(m.swing_frac))
            },
        );
    }
    if let Some(fc) = memory_forecast(m) {
        let severity = if fc.horizon_min <= FORECAST_SOON_MIN { Severity::High } else { Severity::Medium };
        out.push(Anomaly {
            kind: AnomalyKind::MemoryForecast,
            severity,
            description: fc.describe(),
            horizon_min: Some(fc.horizon_min),
        });
    }
    out
}

/// 100 minus the anomalies' weight.
pub fn score(anomalies: &[Anomaly]) -> u8 {
    let penalty: i32 = anomalies.iter().map(|a| a.severity.penalty()).sum();
    (100 - penalty).clamp(0, 100) as u8
}

/// How much history a score rests on: two hours of samples is full confidence.
pub fn confidence(f: &PersonaFeatures) -> f32 {
    if !f.usable() {
        return 0.0;
    }
    (0.3 + 0.7 * (f.history_ms as f32 / (2.0 * 3_600_000.0))).min(1.0)
}

/// The mesh: personas weighted by importance, less for hosts under pressure and for a
/// mesh-wide slowdown.
pub fn system_health(set: &FeatureSet, health: &[PersonaHealth]) -> u8 {
    let (mut sum, mut w) = (0.0f32, 0.0f32);
    for (f, h) in set.personas.iter().zip(health) {
        let weight = match f.importance {
            Importance::System => 3.0,
            Importance::UserFacing => 2.0,
            Importance::Background => 1.0,
        };
        sum += weight * f32::from(h.score);
        w += weight;
    }
    let mut s = if w > 0.0 { sum / w } else { 100.0 };
    if !set.nodes.is_empty() {
        let strained = set.nodes.iter().filter(|n| n.memory_pressure || n.cpu_saturated).count();
        s -= 20.0 * strained as f32 / set.nodes.len() as f32;
    }
    s -= 20.0 * set.mesh.degraded_share;
    s.clamp(0.0, 100.0).round() as u8
}
