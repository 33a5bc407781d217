//! The embedded analyst: one decision per persona from its features, in order of urgency.
//! Each rule weighs the persona against its own history, its peers and its host; the reason
//! says which evidence decided, so a person can check it.

use std::collections::HashMap;

use mindmesh_core::{Action, AnalystKind, Decision, Importance, PersonaKind};

use crate::classify::ErrorClass;
use crate::features::{BaseFrom, Baseline, FeatureSet, MemTrend, NodeFeatures, PersonaFeatures};
use crate::view::MeshView;

const MIN: f64 = 60_000.0;
/// A persona using at least this share of a saturated host is the hog.
pub const HOG_SHARE: f32 = 0.4;
/// Relieve a host under memory pressure down to this fraction.
pub const MEMORY_RELIEF_FRAC: f32 = 0.80;
/// A process up this long is due a refresh once it drifts.
pub const REFRESH_UPTIME_MS: u64 = 24 * 3_600_000;

fn mins(ms: u64) -> String {
    let m = ms as f64 / MIN;
    if m >= 120.0 { format!("{:.1} h", m / 60.0) } else { format!("{m:.0} min") }
}

fn pct(x: f32) -> String {
    if x.is_finite() {
        if x < 0.01 && x > 0.0 { format!("{:.1}%", 100.0 * x) } else { format!("{:.0}%", 100.0 * x) }
    } else {
        "n/a".into()
    }
}

fn ratio(x: f32) -> String {
    if x.is_finite() { format!("x{x:.1}") } else { "n/a".into() }
}

/// How much data a judgement rests on, as the reason says it: "8 min (49 samples)".
pub fn evidence(span_ms: u64, samples: usize) -> String {
    format!("{} ({samples} samples)", mins(span_ms))
}

/// 0–1: how far `span_ms` goes towards the evidence a confident call wants.
fn evidence_weight(span_ms: u64, full_ms: u64) -> f32 {
    (span_ms as f32 / full_ms.max(1) as f32).clamp(0.0, 1.0)
}

/// What a latency ratio is against, for a reason.
fn baseline_name(f: &PersonaFeatures) -> String {
    let l = &f.latency;
    match l.baseline {
        Baseline::Replicas => {
            let there = [("p50", l.replica_p50_ms), ("p95", l.replica_p95_ms)]
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(k, v)| format!("{k} {v:.0} ms"))
                .collect::<Vec<_>>()
                .join(", ");
            format!("its replicas ({there} there)")
        }
        _ => "its own baseline".into(),
    }
}

/// Where an error base rate came from, for a reason.
fn base_name(f: &PersonaFeatures) -> String {
    let e = &f.errors;
    match e.base_from {
        BaseFrom::Own => format!("base {}", pct(e.rate_base)),
        BaseFrom::Peers if e.rate_own_base.is_finite() => {
            format!("its own {} all along is no baseline, the others' {} is", pct(e.rate_own_base), pct(e.rate_base))
        }
        BaseFrom::Peers => format!("no history of its own yet, the others fail {}", pct(e.rate_base)),
        BaseFrom::Default => format!("no history or peers: assumed base {}", pct(e.rate_base)),
    }
}

/// Where a migrating persona could go: another fresh node with room for its CPU and memory
/// that stays comfortable after the move. The node with the most free cores wins.
pub fn migration_target<'a>(f: &PersonaFeatures, set: &'a FeatureSet) -> Option<&'a NodeFeatures> {
    let here = f.node?;
    let need_cores = (f.cpu.recent_percent / 100.0).max(0.0);
    let need_mem = if f.memory.now_mb.is_finite() { f.memory.now_mb } else { return None };
    set.nodes
        .iter()
        .enumerate()
        .filter(|(i, n)| {
            *i != here
                && !n.stale
                && !n.memory_pressure
                && !n.cpu_saturated
                && n.free_cores() >= 1.2 * need_cores
                && n.free_memory_mb() >= 1.3 * need_mem
                && (n.memory_used_mb + need_mem) / n.memory_total_mb.max(1.0) <= 0.8
                && (n.cpu_recent_percent + 100.0 * need_cores / n.cpu_cores as f32) <= 70.0
        })
        .max_by(|a, b| a.1.free_cores().total_cmp(&b.1.free_cores()))
        .map(|(_, n)| n)
}

/// Personas to hibernate to relieve hosts under memory pressure: idle non-system ones first,
/// then background ones, largest first, until the host is back under the relief level.
fn memory_relief(set: &FeatureSet, view: &MeshView, taken: &HashMap<usize, Decision>) -> HashMap<usize, String> {
    let mut out = HashMap::new();
    for (ni, n) in set.nodes.iter().enumerate() {
        if !n.memory_pressure || n.stale {
            continue;
        }
        let target = MEMORY_RELIEF_FRAC * n.memory_total_mb;
        let mut used = n.memory_used_mb;
        // personas already being restarted or stopped free their memory too
        for (&i, d) in taken {
            if set.personas[i].node == Some(ni) && matches!(d.action, Action::Restart | Action::Kill | Action::Migrate)
            {
                used -= set.personas[i].memory.now_mb.max(0.0) * 0.5;
            }
        }
        let mut idle: Vec<&PersonaFeatures> = Vec::new();
        let mut background: Vec<&PersonaFeatures> = Vec::new();
        for f in set.personas.iter().filter(|f| f.node == Some(ni) && f.usable() && !taken.contains_key(&f.index)) {
            if f.importance == Importance::System || !f.memory.now_mb.is_finite() {
                continue;
            }
            if f.activity.idle {
                idle.push(f);
            } else if f.importance == Importance::Background {
                background.push(f);
            }
        }
        let frac = n.memory_frac;
        for f in idle {
            used -= f.memory.now_mb;
            out.insert(
                f.index,
                format!(
                    "idle {} on {} at {} memory: hibernating frees {:.0} MB",
                    mins(f.activity.idle_for_ms.unwrap_or(0)),
                    view.nodes[ni].id,
                    pct(frac),
                    f.memory.now_mb
                ),
            );
        }
        background.sort_by(|a, b| b.memory.now_mb.total_cmp(&a.memory.now_mb));
        for f in background {
            if used <= target {
                break;
            }
            // hibernating a process that holds a sliver of the host relieves nothing
            if f.memory.now_mb < 0.03 * n.memory_total_mb {
                continue;
            }
            used -= f.memory.now_mb;
            out.insert(
                f.index,
                format!(
                    "background persona holding {:.1} GB on {} at {} memory; user-facing work keeps the room",
                    f.memory.now_mb / 1024.0,
                    view.nodes[ni].id,
                    pct(frac)
                ),
            );
        }
    }
    out
}

fn decision(f: &PersonaFeatures, view: &MeshView, action: Action, confidence: f32, reason: String) -> Decision {
    Decision::new(&view.personas[f.index].id, action, reason, confidence, AnalystKind::Builtin)
}

/// One decision per persona of the view, in view order.
pub fn decide(set: &FeatureSet, view: &MeshView) -> Vec<Decision> {
    let mut urgent: HashMap<usize, Decision> = HashMap::new();
    for f in &set.personas {
        if let Some(d) = urgent_decision(f, set, view) {
            urgent.insert(f.index, d);
        }
    }
    let relief = memory_relief(set, view, &urgent);
    let mut decisions: Vec<Decision> = set
        .personas
        .iter()
        .map(|f| {
            if let Some(d) = urgent.remove(&f.index) {
                return d;
            }
            if let Some(why) = relief.get(&f.index) {
                return decision(f, view, Action::Hibernate, 0.75, why.clone());
            }
            calm_decision(f, set, view)
        })
        .collect();
    super::maintenance::schedule(set, view, &mut decisions);
    super::allocate::allocate(set, view, &mut decisions);
    decisions
}

/// Failures that need action whatever the host does: crash loops, permanent errors, hangs,
/// leaks, error bursts, own latency degradation, a CPU hog.
fn urgent_decision(f: &PersonaFeatures, set: &FeatureSet, view: &MeshView) -> Option<Decision> {
    if !f.usable() {
        return None;
    }
    let d = |action, confidence, reason: String| Some(decision(f, view, action, confidence, reason));
    let r = &f.restarts;
    if r.crash_loop {
        return d(
            Action::Kill,
            0.95,
            format!(
                "crash loop: {:.0} restarts in the last 5 min ({} exits), more than 3: restarting again will not help",
                r.last_5m.max(r.exits_5m as f32),
                r.exits_5m
            ),
        );
    }
    let e = &f.errors;
    let failing = e.rate_last10 >= 0.5 && e.errors_window >= 10.0;
    let permanent = e.mix.share(ErrorClass::Permanent);
    if failing && permanent >= 0.6 {
        if e.peer_rate >= 0.5 {
            return d(
                Action::Investigate,
                0.8,
                format!(
                    "{} of requests fail, {}, and peers fail as much ({}): a shared credential or quota problem for an operator",
                    pct(e.rate_last10),
                    e.mix.describe(),
                    pct(e.peer_rate)
                ),
            );
        }
        return d(
            Action::Kill,
            0.9,
            format!(
                "{} of requests fail in the last 10 min (base {}), {}: a restart cannot fix credentials or quota; peers {}",
                pct(e.rate_last10),
                pct(e.rate_base),
                e.mix.describe(),
                pct(e.peer_rate)
            ),
        );
    }
    let a = &f.activity;
    if a.unresponsive {
        return d(
            Action::Restart,
            0.85,
            format!(
                "hung: no request completed for {} (usually {:.1}/min), queue {:.0} -> {:.0}, {} failed health checks",
                mins(a.stalled_samples as u64 * f.interval_ms),
                a.base_requests_per_min,
                a.queue_first,
                a.queue_last,
                a.health_fails
            ),
        );
    }
    let m = &f.memory;
    if f.activity.idle
        && f.importance == Importance::Background
        && (m.trend == MemTrend::Leaking || m.growth_needs_action())
    {
        // idle and leaking: hibernating frees all it holds and nobody waits for it; a restart
        // would only bring it back to leak for no one. (User-facing and system personas stay
        // warm: they are restarted below like any leaker.)
        return d(
            Action::Hibernate,
            0.8,
            format!(
                "idle {} and its memory grows ({:+.1} MB/min, now {:.0} MB{}): hibernating frees all of it, a restart would leak again for no one",
                mins(f.activity.idle_for_ms.unwrap_or(0)),
                if m.trend == MemTrend::Leaking {
                    m.slope_mb_per_min
                } else {
                    m.recent.map_or(m.slope_mb_per_min, |r| r.slope_mb_per_min)
                },
                m.now_mb,
                match m.budget_mb {
                    Some(b) if m.over_budget() => format!(", over its {b:.0} MB budget"),
                    _ => String::new(),
                }
            ),
        );
    }
    if m.trend == MemTrend::Leaking {
        let peers_flat = !m.peer_growth_frac.is_finite() || m.peer_growth_frac < 0.5 * m.growth_frac;
        let fit = m.fit_r2.max(m.floor_r2);
        let confidence = (0.55 + 0.3 * fit + if peers_flat { 0.1 } else { 0.0 }).min(0.95);
        let budget = match m.minutes_to_budget {
            Some(t) if t < 24.0 * 60.0 => format!("; budget reached in about {}", mins((t as f64 * MIN) as u64)),
            _ => String::new(),
        };
        return d(
            Action::Restart,
            confidence,
            format!(
                "memory leak: {:+.1} MB/min for {} (fit {:.2}, {:+.0}%, now {:.0} MB); peers {}{}",
                m.slope_mb_per_min,
                mins(m.growth_span_ms),
                fit,
                100.0 * m.growth_frac,
                m.now_mb,
                if m.peer_growth_frac.is_finite() {
                    format!("{:+.0}%", 100.0 * m.peer_growth_frac)
                } else {
                    "unknown".into()
                },
                budget
            ),
        );
    }
    if m.growth_needs_action()
        && let Some(line) = m.recent
    {
        // too young (or too recent) for `leaking`, but over its budget or near its hard limit
        // and still climbing: acting now beats the hard limit's kill
        let weight = evidence_weight(line.span_ms, 15 * 60_000);
        let confidence = (0.5 + 0.25 * line.r2 + 0.15 * weight).min(0.9);
        let budget = match m.budget_mb {
            Some(b) if m.over_budget() => format!(", over its {b:.0} MB budget"),
            Some(b) => format!(", its {b:.0} MB budget"),
            None => String::new(),
        };
        let limit = match (m.limit_mb, m.minutes_to_limit) {
            (Some(l), Some(t)) => format!("; hard limit {l:.0} MB in about {}", mins((t as f64 * MIN) as u64)),
            _ => "; no hard limit, the host's memory is the limit".into(),
        };
        return d(
            Action::Restart,
            confidence,
            format!(
                "memory {:+.1} MB/min over the last {} (fit {:.2}), now {:.0} MB{budget}{limit}: restart before it is killed",
                line.slope_mb_per_min,
                evidence(line.span_ms, line.samples),
                line.r2,
                m.now_mb
            ),
        );
    }
    if e.burst {
        let shared = e.peer_rate.is_finite() && e.peer_rate >= 0.02 && e.peer_rate >= 0.5 * e.rate_window;
        let detail = format!(
            "{} errors over {} ({} requests; {}, peers {}), {}",
            pct(e.rate_window),
            mins(e.window_ms),
            e.requests_window,
            base_name(f),
            pct(e.peer_rate),
            e.mix.describe()
        );
        if shared {
            return d(Action::Investigate, 0.7, format!("{detail}: peers fail as often, the cause is shared"));
        }
        if e.mix.share(ErrorClass::ClientEdge) >= 0.5 {
            return d(Action::Continue, 0.8, format!("{detail}: client errors that a restart cannot change"));
        }
        // rate limits are the upstream asking for less: sending less is the first remedy, even
        // when they are only part of the failures (more traffic makes the rest worse too)
        let limited = e.mix.share(ErrorClass::RateLimited);
        if limited >= 0.5 || (limited >= 0.25 && f.throttle_multiplier >= 0.99) {
            if f.throttle_multiplier < 0.99 {
                return d(
                    Action::Investigate,
                    0.6,
                    format!(
                        "{detail}: already throttled to x{:.2} and the upstream still rate-limits: an operator should look at its quota",
                        f.throttle_multiplier
                    ),
                );
            }
            let mut dec =
                decision(f, view, Action::Throttle, 0.7, format!("{detail}: the upstream rate-limits, send less"));
            dec.throttle_multiplier = Some(0.5);
            return Some(dec);
        }
        if permanent >= 0.5 {
            return d(Action::Investigate, 0.75, format!("{detail}: credential or quota failures need an operator"));
        }
        let confidence = if e.p_value < 1e-8 && e.elevated_parts == 3 { 0.8 } else { 0.65 };
        return d(
            Action::Restart,
            confidence,
            format!("{detail}: transient failures of this process alone, a restart is the remedy"),
        );
    }
    let l = &f.latency;
    let node = f.node.map(|i| &set.nodes[i]);
    if f.latency_degraded() && l.degraded_for_ms >= 15 * 60_000 && !l.warming_up {
        let peers_slow = l.peer_ratio.is_finite() && l.peer_ratio >= 1.3;
        let mesh_slow = set.mesh.degraded_share >= 0.5 && set.mesh.judged >= 3;
        let detail = format!(
            "latency {} against {} for {} (p95 {:.0} ms, baseline {:.0} ms); peers {}",
            ratio(l.ratio),
            baseline_name(f),
            mins(l.degraded_for_ms),
            l.recent_p95_ms,
            l.base_p95_ms,
            ratio(l.peer_ratio)
        );
        if peers_slow || mesh_slow {
            return d(
                Action::Investigate,
                0.75,
                format!(
                    "{detail}; {:.0}% of the mesh is degraded at once: the cause is shared, restarting one helps nothing",
                    100.0 * set.mesh.degraded_share
                ),
            );
        }
        let a = &f.activity;
        if a.base_requests_per_min > 0.0 && a.requests_per_min >= 1.5 * a.base_requests_per_min {
            return d(
                Action::Investigate,
                0.6,
                format!(
                    "{detail}; its traffic is up x{:.1} ({:.1}/min, usually {:.1}/min): load, not a fault of the process",
                    a.requests_per_min / a.base_requests_per_min,
                    a.requests_per_min,
                    a.base_requests_per_min
                ),
            );
        }
        if node.is_some_and(|n| n.cpu_saturated) && f.cpu.share_of_host < HOG_SHARE {
            return d(
                Action::Continue,
                0.7,
                format!("{detail}; its host is saturated by others, that is handled there"),
            );
        }
        let confidence = (0.6 + 0.1 * (l.ratio - 1.5).min(2.0) + if l.peer_ratio < 1.1 { 0.1 } else { 0.0 }).min(0.9);
        return d(Action::Restart, confidence, format!("{detail}: this process alone is slower"));
    }
    if let Some(n) = node
        && n.cpu_saturated
        && f.cpu.share_of_host >= HOG_SHARE
    {
        let detail = format!(
            "uses {:.0}% CPU, {} of {} ({} cores) at {:.0}% CPU (usually {})",
            f.cpu.recent_percent,
            pct(f.cpu.share_of_host),
            view.nodes[f.node.unwrap_or(0)].id,
            n.cpu_cores,
            n.cpu_recent_percent,
            if n.cpu_base_percent.is_finite() { format!("{:.0}%", n.cpu_base_percent) } else { "unknown yet".into() }
        );
        if f.importance != Importance::Background {
            return d(Action::Investigate, 0.6, format!("{detail}; not background work, an operator decides"));
        }
        if let Some(t) = migration_target(f, set) {
            let mut dec = decision(
                f,
                view,
                Action::Migrate,
                0.75,
                format!(
                    "background {detail}; {} has {:.0} free cores and {:.1} GB free memory",
                    t.id,
                    t.free_cores(),
                    t.free_memory_mb() / 1024.0
                ),
            );
            dec.target = Some(t.id.clone());
            return Some(dec);
        }
        let mut dec = decision(
            f,
            view,
            Action::Throttle,
            0.8,
            format!("background {detail}; no other host has room: throttle it"),
        );
        dec.throttle_multiplier = Some(0.5);
        return Some(dec);
    }
    None
}

/// No failure: idle personas, long-running drift, watch-worthy signs, or nothing to do.
fn calm_decision(f: &PersonaFeatures, set: &FeatureSet, view: &MeshView) -> Decision {
    let d = |action, confidence, reason: String| decision(f, view, action, confidence, reason);
    if !f.usable() {
        let why = if let Some(p) = &f.data_problem {
            format!("no usable data ({p}): no action")
        } else if f.stale {
            "data is stale: no action".to_string()
        } else {
            format!("{}: nothing to judge", f.phase)
        };
        return d(Action::Continue, 0.5, why);
    }
    let node = f.node.map(|i| &set.nodes[i]);
    let a = &f.activity;
    // idle is no excuse for memory: a persona kept warm while it grows or sits over its budget
    // is watched like a busy one (an idle background one is hibernated, which frees it all)
    if a.idle
        && f.importance != Importance::Background
        && let Some(watch) = memory_watch(f)
    {
        return d(Action::Investigate, watch.0, format!("idle {}, but {}", mins(a.idle_for_ms.unwrap_or(0)), watch.1));
    }
    if a.idle {
        let idle = format!(
            "idle {} (its usual gap is under {})",
            mins(a.idle_for_ms.unwrap_or(0)),
            mins(a.idle_threshold_ms / 4)
        );
        match f.importance {
            Importance::Background => {
                return d(
                    Action::Hibernate,
                    0.75,
                    format!("background persona {idle}: hibernating frees its resources"),
                );
            }
            Importance::UserFacing => {
                return d(
                    Action::Continue,
                    0.6,
                    format!("user-facing persona {idle}; its host has room, keep it warm"),
                );
            }
            Importance::System => return d(Action::Continue, 0.7, format!("system persona {idle}; stays up")),
        }
    }
    let l = &f.latency;
    let m = &f.memory;
    // a long-running process that drifts is due a refresh
    if f.uptime_ms.is_some_and(|u| u >= REFRESH_UPTIME_MS) && !l.warming_up {
        let lat_drift = (l.ratio >= 1.25 && l.prev_ratio >= 1.15) || (l.trend_ratio >= 1.3 && l.trend_r2 >= 0.3);
        let mem_drift = matches!(m.trend, MemTrend::Growing | MemTrend::Leaking);
        let shared = l.peer_ratio.is_finite() && l.peer_ratio >= 1.2;
        if (lat_drift || mem_drift) && !shared && f.importance != Importance::System {
            return d(
                Action::Restart,
                0.6,
                format!(
                    "up {:.0} h and drifting: latency {} (trend {}), memory {:+.0}% ({}); peers {}: a scheduled refresh",
                    f.uptime_ms.unwrap_or(0) as f64 / 3_600_000.0,
                    ratio(l.ratio),
                    ratio(l.trend_ratio),
                    100.0 * m.growth_frac.max(0.0),
                    m.trend.as_str(),
                    ratio(l.peer_ratio)
                ),
            );
        }
    }
    if f.restarts.last_1h >= 2.0 {
        return d(
            Action::Investigate,
            0.6,
            format!(
                "{:.0} restarts in the last hour (not a crash loop yet): find out why before it becomes one",
                f.restarts.last_1h
            ),
        );
    }
    if m.trend != MemTrend::Leaking && m.spike_frac >= 0.15 {
        return d(
            Action::Investigate,
            0.6,
            format!(
                "memory {:.0} MB is {} above its usual peak ({:.0} MB) but only recently: too short to call a leak, watch it",
                m.now_mb,
                pct(m.spike_frac),
                m.hist_high_mb
            ),
        );
    }
    if f.latency_degraded() && !l.warming_up {
        return d(
            Action::Investigate,
            0.55,
            format!(
                "latency {} against {} (p95 {:.0} ms), for {} only: watching",
                ratio(l.ratio),
                baseline_name(f),
                l.recent_p95_ms,
                mins(l.degraded_for_ms)
            ),
        );
    }
    if let Some((confidence, why)) = memory_watch(f) {
        return d(Action::Investigate, confidence, why);
    }
    // healthy: say why
    let mut notes = vec![format!("memory {}", m.trend.as_str())];
    match l.baseline {
        Baseline::Own if l.ratio.is_finite() => {
            notes.push(format!("latency {} own, peers {}", ratio(l.ratio), ratio(l.peer_ratio)))
        }
        _ if l.replica_ratio.is_finite() => notes.push(format!("latency {} its replicas'", ratio(l.replica_ratio))),
        _ => {}
    }
    if f.errors.rate_window.is_finite() {
        notes.push(format!("errors {}", pct(f.errors.rate_window)));
    }
    if l.warming_up {
        notes.push("warming up after a restart".into());
    }
    if let Some(n) = node
        && (n.memory_pressure || n.cpu_saturated)
    {
        notes.push(format!(
            "host under pressure but this {} persona is active",
            match f.importance {
                Importance::System => "system",
                Importance::UserFacing => "user-facing",
                Importance::Background => "background",
            }
        ));
    }
    if f.kind == PersonaKind::Local && m.now_mb >= 2048.0 && m.trend == MemTrend::Stable {
        notes.push(format!("{:.1} GB is normal for a local model", m.now_mb / 1024.0));
    }
    // what the judgement rests on: a persona minutes old is judged against its peers and its
    // host; its own past only once there is one
    let own_history = f.history_ms >= 30 * 60_000;
    if !own_history {
        notes.push(format!("{} of history: own baselines from 30 min", evidence(f.history_ms, f.samples)));
    }
    let against = if own_history { "its own history, its peers and its host" } else { "its peers and its host" };
    let confidence = if own_history { 0.8 } else { 0.55 + 0.25 * evidence_weight(f.history_ms, 30 * 60_000) };
    d(Action::Continue, confidence, format!("healthy against {against} ({})", notes.join("; ")))
}

/// Memory worth watching although nothing needs doing yet: growing now far from any limit, or
/// over its budget. The confidence and the reason of an `investigate`.
fn memory_watch(f: &PersonaFeatures) -> Option<(f32, String)> {
    let m = &f.memory;
    if let Some(fc) = crate::anomaly::memory_forecast(m) {
        // the forecast anomaly: a level within the hour at its fitted growth; watched (the
        // restart comes once it is over its budget or near its hard limit, above)
        let weight = evidence_weight(fc.span_ms, 15 * 60_000);
        return Some((
            (0.55 + 0.1 * weight + 0.1 * fc.r2.clamp(0.0, 1.0)).min(0.8),
            format!("{}, now {:.0} MB: watching it get there", fc.describe(), m.now_mb),
        ));
    }
    if m.growing_now
        && let Some(line) = m.recent
    {
        let to_budget = match (m.budget_mb, m.minutes_to_budget) {
            (Some(b), Some(t)) => format!("; its {b:.0} MB budget in about {}", mins((t as f64 * MIN) as u64)),
            _ => String::new(),
        };
        return Some((
            0.5 + 0.1 * evidence_weight(line.span_ms, 15 * 60_000),
            format!(
                "memory {:+.1} MB/min over the last {} (fit {:.2}), now {:.0} MB{to_budget}: growing, not yet near a limit; watching",
                line.slope_mb_per_min,
                evidence(line.span_ms, line.samples),
                line.r2,
                m.now_mb
            ),
        ));
    }
    if let Some(b) = m.budget_mb
        && m.now_mb.is_finite()
        && m.now_mb > 1.1 * b
    {
        let trend = match m.trend {
            MemTrend::Unknown => "too little data yet to tell whether it grows".to_string(),
            MemTrend::Growing | MemTrend::Leaking => "growing slowly".to_string(),
            t => format!("{}, not growing", t.as_str()),
        };
        return Some((0.6, format!("memory {:.0} MB is over its {:.0} MB budget ({trend})", m.now_mb, b)));
    }
    None
}
