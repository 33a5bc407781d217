//! Guardrails: rules applied after any analyst (LLM, built-in) before a decision is
//! committed. Pure logic over the features and a small state kept across cycles.
//!
//! In order: schema (a valid action for a known persona, a real migration target, a sane
//! throttle), no action on stale or unusable data, `system` personas never killed or
//! hibernated automatically, hysteresis (the condition behind a disruptive action must have
//! been seen in the last N cycles, unless it is a crash loop or a permanent error), a cooldown
//! per persona, and caps on disruptive actions per cycle and on the share of the mesh
//! disrupted at once. A rule that changes a decision says so in the reason.

use std::collections::HashMap;

use mindmesh_core::config::GuardrailConfig;
use mindmesh_core::{Action, BudgetPatch, Decision, Importance, Phase};
use serde::Serialize;

use crate::analyst::builtin::{HOG_SHARE, REFRESH_UPTIME_MS};
use crate::budget::{self, Field};
use crate::classify::ErrorClass;
use crate::features::{FeatureSet, MemTrend, PersonaFeatures};
use crate::view::MeshView;

/// Longest reason kept on a decision.
pub const MAX_REASON_LEN: usize = 600;

/// What, in a persona's features, could justify disrupting it — whoever proposes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Condition {
    pub label: Option<&'static str>,
    /// Crash loops and permanent errors need no persistence.
    pub exempt: bool,
}

pub fn condition(f: &PersonaFeatures, set: &FeatureSet) -> Condition {
    if !f.usable() {
        return Condition::default();
    }
    let some = |label| Condition { label: Some(label), exempt: false };
    if f.restarts.crash_loop {
        return Condition { label: Some("crash loop"), exempt: true };
    }
    let e = &f.errors;
    if e.rate_last10 >= 0.5 && e.errors_window >= 10.0 && e.mix.share(ErrorClass::Permanent) >= 0.6 {
        return Condition { label: Some("permanent errors"), exempt: true };
    }
    let node = f.node.map(|i| &set.nodes[i]);
    let m = &f.memory;
    let l = &f.latency;
    if f.activity.unresponsive {
        some("unresponsive")
    } else if m.trend == MemTrend::Leaking {
        some("memory leak")
    } else if m.growth_needs_action() {
        some("memory growing past its budget")
    } else if e.burst || e.elevated {
        some("error burst")
    } else if f.latency_degraded() {
        some("latency degradation")
    } else if node.is_some_and(|n| n.cpu_saturated) && f.cpu.share_of_host >= HOG_SHARE {
        some("host CPU hog")
    } else if f.activity.idle {
        some("idle")
    } else if node.is_some_and(|n| n.memory_pressure) && f.importance != Importance::System {
        some("host memory pressure")
    } else if m.spike_frac >= 0.15 {
        some("memory spike")
    } else if f.uptime_ms.is_some_and(|u| u >= REFRESH_UPTIME_MS)
        && (matches!(m.trend, MemTrend::Growing) || l.ratio >= 1.25 || l.trend_ratio >= 1.3)
    {
        some("long uptime with drift")
    } else if m.budget_mb.is_some_and(|b| m.now_mb > b) {
        some("over memory budget")
    } else if f.maintenance_due.is_some() {
        some("scheduled maintenance due")
    } else {
        Condition::default()
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Streak {
    generation: u64,
    count: u32,
}

/// What the guardrails remember between cycles.
#[derive(Debug, Default)]
pub struct GuardState {
    streaks: HashMap<String, Streak>,
    /// Consecutive cycles without a budget cause: a budget goes back to its start only after
    /// `hysteresis_cycles` of them.
    calm: HashMap<String, Streak>,
    last_disruptive_ms: HashMap<String, (u64, Action)>,
    generation: u64,
}

impl GuardState {
    /// Record this cycle's conditions (call once per cycle, before [`apply`]).
    pub fn observe(&mut self, set: &FeatureSet, conditions: &[Condition]) {
        self.generation += 1;
        let g = self.generation;
        for (f, c) in set.personas.iter().zip(conditions) {
            if c.label.is_some() {
                let s = self.streaks.entry(f.id.clone()).or_default();
                s.count = if s.generation + 1 == g { s.count + 1 } else { 1 };
                s.generation = g;
            }
        }
        self.streaks.retain(|_, s| s.generation == g);
        for f in &set.personas {
            if budget::cause(f, set).is_none() {
                let s = self.calm.entry(f.id.clone()).or_default();
                s.count = if s.generation + 1 == g { s.count + 1 } else { 1 };
                s.generation = g;
            }
        }
        self.calm.retain(|_, s| s.generation == g);
        // forget cooldowns of personas that left the mesh
        if self.last_disruptive_ms.len() > set.personas.len() {
            let ids: std::collections::HashSet<&str> = set.personas.iter().map(|f| f.id.as_str()).collect();
            self.last_disruptive_ms.retain(|k, _| ids.contains(k.as_str()));
        }
    }

    /// Consecutive cycles (this one included) in which the persona had no budget cause.
    pub fn calm(&self, persona: &str) -> u32 {
        self.calm.get(persona).filter(|s| s.generation == self.generation).map_or(0, |s| s.count)
    }

    /// Consecutive cycles (this one included) in which the persona showed a condition.
    pub fn streak(&self, persona: &str) -> u32 {
        self.streaks.get(persona).filter(|s| s.generation == self.generation).map_or(0, |s| s.count)
    }
}

/// A decision a guardrail changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardChange {
    pub persona: String,
    pub rule: &'static str,
    pub from: Action,
    pub to: Action,
}

fn change(d: &mut Decision, changes: &mut Vec<GuardChange>, rule: &'static str, to: Action, why: String) {
    changes.push(GuardChange { persona: d.persona.clone(), rule, from: d.action, to });
    let proposed = d.action;
    d.reason = format!("guardrail {rule}: {proposed} -> {to}, {why}. Proposed because: {}", d.reason);
    d.action = to;
    if to != Action::Migrate {
        d.target = None;
    }
    if to != Action::Throttle {
        d.throttle_multiplier = None;
    }
}

/// A proposed budget change as the guardrails let it through: only the adjustable fields, each
/// inside the persona's envelope ([`budget::Envelope::clamp`]); none on stale or unusable data
/// or for a persona that is not running; a move back toward its start only once its cause has
/// been clear for `hysteresis_cycles` cycles. What a rule changed is said in the reason.
fn guard_budget(
    cfg: &GuardrailConfig,
    state: &GuardState,
    f: &PersonaFeatures,
    set: &FeatureSet,
    p: &crate::view::PersonaView,
    patch: &BudgetPatch,
    reason: &mut String,
) -> Option<BudgetPatch> {
    if f.data_problem.is_some() || f.stale || p.phase != Phase::Running {
        return None;
    }
    let in_force = p.budget.as_ref()?;
    let out = p.envelope.clamp(in_force, patch, p.importance);
    let mut cut: Vec<String> = Field::ALL
        .into_iter()
        .filter_map(|field| {
            let asked = field.of_patch(patch)?;
            match field.of_patch(&out) {
                Some(v) if (v - asked).abs() <= 1e-6 * asked.abs().max(1.0) => None,
                Some(v) => Some(format!("{} {asked} -> {v}", field.short())),
                None if (asked - field.get(in_force)).abs() <= 1e-9 => None,
                None => Some(format!("{} {asked} refused", field.short())),
            }
        })
        .collect();
    if patch.max_memory_mb.is_some() || patch.allowed_to_run.is_some() {
        cut.push("memory budget and allowed-to-run are an operator's".into());
    }
    if !cut.is_empty() {
        reason.push_str(&format!("; guardrail envelope: {}", cut.join(", ")));
    }
    if out.is_empty() {
        return None;
    }
    if budget::cause(f, set).is_none() && budget::is_return(&p.envelope, in_force, &out) {
        let calm = state.calm(&f.id);
        if calm < cfg.hysteresis_cycles
            && let Some(m) = out.throttle_multiplier
            && budget::demand_settled(f, set)
        {
            // the throttle's cause ended by its own signal (the persona's demand, which the
            // throttle does not lower), not by a host the throttle itself keeps calm: the
            // throttle goes back now; any other field waits out the cycles as usual
            let rest = BudgetPatch { throttle_multiplier: None, ..out.clone() };
            if !rest.is_empty() {
                reason.push_str(&format!(
                    "; guardrail hysteresis: only the throttle goes back now, its other fields wait, its cause clear for {calm} of the last {} cycles",
                    cfg.hysteresis_cycles
                ));
            }
            return Some(BudgetPatch { throttle_multiplier: Some(m), ..BudgetPatch::default() });
        }
        if calm < cfg.hysteresis_cycles {
            reason.push_str(&format!(
                "; guardrail hysteresis: budget back toward its start waits, its cause clear for {calm} of the last {} cycles",
                cfg.hysteresis_cycles
            ));
            return None;
        }
    }
    Some(out)
}

/// How urgent a disruptive decision is when the caps force a choice.
fn priority(d: &Decision, c: &Condition) -> u32 {
    let base = match d.action {
        Action::Kill => 50,
        Action::Restart => 40,
        Action::Migrate => 30,
        Action::Hibernate => 20,
        _ => 0,
    };
    base + if c.exempt { 100 } else { 0 }
}

/// Apply every guardrail to `decisions` (one per persona of `set`, in order). Returns the
/// final decisions and the changes made.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    cfg: &GuardrailConfig,
    state: &mut GuardState,
    set: &FeatureSet,
    view: &MeshView,
    conditions: &[Condition],
    mut decisions: Vec<Decision>,
    now_ms: u64,
) -> (Vec<Decision>, Vec<GuardChange>) {
    let mut changes = Vec::new();
    for (i, d) in decisions.iter_mut().enumerate() {
        let f = &set.personas[i];
        let p = &view.personas[f.index];
        let c = conditions[i];
        // --- schema
        if !d.confidence.is_finite() {
            d.confidence = 0.0;
        }
        d.confidence = d.confidence.clamp(0.0, 1.0);
        if d.reason.trim().is_empty() {
            d.reason = "no reason given".into();
        }
        mindmesh_core::event::truncate_utf8(&mut d.reason, MAX_REASON_LEN);
        if d.action == Action::Migrate {
            let ok =
                d.target.as_deref().is_some_and(|t| t != p.node && set.nodes.iter().any(|n| n.id == t && !n.stale));
            if !ok {
                let why = format!("{:?} is not another live node", d.target.as_deref().unwrap_or(""));
                change(d, &mut changes, "schema", Action::Investigate, why);
            }
        }
        if d.action == Action::Throttle {
            let m = d.throttle_multiplier.unwrap_or(0.5);
            d.throttle_multiplier = Some(if m.is_finite() { m.clamp(0.1, 0.9) } else { 0.5 });
        }
        // --- budget: inside its envelope, on good data, back to its start only with hysteresis
        if let Some(patch) = d.budget.take() {
            d.budget = guard_budget(cfg, state, f, set, p, &patch, &mut d.reason);
        }
        if d.action == Action::Budget && d.budget.is_none() {
            change(d, &mut changes, "schema", Action::Continue, "no budget change inside its envelope".into());
        }
        if d.action == Action::Wake && !p.phase.is_hibernated() {
            change(d, &mut changes, "schema", Action::Continue, format!("it is {}, not hibernating", p.phase));
        }
        // --- stale or unusable data, or not running
        if f.data_problem.is_some() || f.stale {
            if d.action != Action::Continue {
                let why = match &f.data_problem {
                    Some(p) => format!("its data is unusable ({p})"),
                    None => "its data is stale".to_string(),
                };
                change(d, &mut changes, "stale-data", Action::Continue, why);
            }
            continue;
        }
        if p.phase != Phase::Running && !matches!(d.action, Action::Continue | Action::Investigate | Action::Wake) {
            change(d, &mut changes, "not-running", Action::Continue, format!("it is {}", p.phase));
            continue;
        }
        // --- system personas stay up
        if p.importance == Importance::System && matches!(d.action, Action::Kill | Action::Hibernate) {
            change(
                d,
                &mut changes,
                "system-persona",
                Action::Investigate,
                "system personas are never stopped automatically; an operator decides".into(),
            );
        }
        if !d.action.is_disruptive() {
            continue;
        }
        // --- hysteresis
        let streak = state.streak(&f.id);
        if !c.exempt && streak < cfg.hysteresis_cycles {
            let why = match c.label {
                Some(l) => format!("{l} seen in {streak} of the last {} cycles; watching", cfg.hysteresis_cycles),
                None => "no condition in its data supports it".into(),
            };
            change(d, &mut changes, "hysteresis", Action::Investigate, why);
            continue;
        }
        // --- cooldown
        let cooldown_ms = mindmesh_core::bounds::s_to_ms(cfg.cooldown_s);
        let own = state.last_disruptive_ms.get(&f.id).copied();
        let committed = p.recent_actions.iter().filter(|(_, a)| a.is_disruptive()).max_by_key(|(t, _)| *t).copied();
        let last = match (own, committed) {
            (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        if let Some((t, a)) = last
            && now_ms < t + cooldown_ms
            && !(c.exempt && d.action == Action::Kill)
        {
            let why = format!("{a} {} s ago, cooldown {} s", (now_ms.saturating_sub(t)) / 1000, cfg.cooldown_s);
            change(d, &mut changes, "cooldown", Action::Investigate, why);
        }
    }

    // --- caps: per cycle and on the share of the mesh disrupted at once
    let total = view.personas.len();
    let already =
        view.personas.iter().filter(|p| matches!(p.phase, Phase::Starting | Phase::Backoff | Phase::Stopping)).count();
    let share_cap = ((cfg.max_disrupted_share * total as f64).floor() as usize).max(1);
    let room = share_cap.saturating_sub(already).min(cfg.max_disruptive_per_cycle);
    let mut disruptive: Vec<usize> = (0..decisions.len()).filter(|&i| decisions[i].action.is_disruptive()).collect();
    disruptive.sort_by(|&a, &b| {
        priority(&decisions[b], &conditions[b])
            .cmp(&priority(&decisions[a], &conditions[a]))
            .then(decisions[b].confidence.total_cmp(&decisions[a].confidence))
    });
    let mut kept = 0;
    for i in disruptive {
        let crash_or_permanent = conditions[i].exempt && decisions[i].action == Action::Kill;
        if kept < room || crash_or_permanent {
            // stopping a crash loop or a permanently failing persona takes no room from others
            if !crash_or_permanent {
                kept += 1;
            }
            state.last_disruptive_ms.insert(decisions[i].persona.clone(), (now_ms, decisions[i].action));
        } else {
            let why = format!(
                "at most {} disruptive actions this cycle and {} of {} personas disrupted at once ({} already)",
                cfg.max_disruptive_per_cycle, share_cap, total, already
            );
            change(&mut decisions[i], &mut changes, "cap", Action::Investigate, why);
        }
    }
    (decisions, changes)
}
