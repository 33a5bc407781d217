//! The built-in allocation policy: after the built-in analyst has chosen each persona's action,
//! each persona's budget is moved toward what its situation asks for — a user-facing burst
//! gets priority and time, an idle persona gives its priority back, background work is slowed
//! first when its host is short of CPU (largest consumers first) or memory — and back to its
//! starting point once the cause has gone. The move rides on the decision (`budget`) and its
//! reason says which fact drove it and each field's before and after.

use std::collections::HashMap;

use mindmesh_core::{Action, Budget, BudgetPatch, Decision, Importance};

use crate::budget::{self, Cause, Envelope, Field};
use crate::classify::ErrorClass;
use crate::features::{FeatureSet, PersonaFeatures};
use crate::view::MeshView;

/// The seed's "increase priority to 90": what a user-facing burst asks for, within its envelope.
pub const BURST_PRIORITY: f64 = 90.0;
/// "extend timeout to 45 s" from 30 s: the burst's timeout against the start.
pub const BURST_TIMEOUT_FACTOR: f64 = 1.5;
/// "reduce priority to 10": what an idle persona keeps.
pub const IDLE_PRIORITY: f64 = 10.0;
/// "all background personas to 25 % throttle until clear".
pub const CPU_THROTTLE: f64 = 0.25;
/// "throttle to 0.5x" under memory pressure.
pub const MEMORY_THROTTLE: f64 = 0.5;
/// Slow background work on a saturated host until it is projected back under this CPU share.
pub const CPU_RELIEF_PERCENT: f32 = 80.0;
/// A host at this CPU is pegged: what its processes would use is unknown (more than it has),
/// and CPU freed by slowing one background persona is taken at once by the others.
pub const CPU_PEGGED_PERCENT: f32 = 95.0;
/// On a pegged host, background personas using at least this share of it are all slowed.
pub const BUSY_SHARE: f32 = 0.01;

/// Background personas to slow on each CPU-saturated host, largest consumers first, until the
/// host is projected under [`CPU_RELIEF_PERCENT`]; by persona index, with the fact that chose it.
fn cpu_relief(set: &FeatureSet, view: &MeshView) -> HashMap<usize, String> {
    let mut out = HashMap::new();
    for (ni, n) in set.nodes.iter().enumerate() {
        if !n.cpu_saturated || n.stale {
            continue;
        }
        let mut background: Vec<&PersonaFeatures> = set
            .personas
            .iter()
            .filter(|f| f.node == Some(ni) && f.usable() && f.importance == Importance::Background)
            .filter(|f| f.cpu.recent_percent.is_finite())
            .collect();
        background.sort_by(|a, b| b.cpu.recent_percent.total_cmp(&a.cpu.recent_percent));
        let mut host = n.cpu_recent_percent;
        // on a pegged host the projection below is wrong: the other background personas,
        // starved until now, take what one gives back (by the projection, four personas flooding
        // `mindmesh bench qos`'s 2 cores would be slowed two at a time, a cycle lost per step:
        // a unit test, not a measurement). Slow every busy one; the largest still come first
        // in the reasons.
        let pegged = host >= CPU_PEGGED_PERCENT;
        for (rank, f) in background.into_iter().enumerate() {
            let done = if pegged { f.cpu.share_of_host < BUSY_SHARE } else { host <= CPU_RELIEF_PERCENT };
            if done && rank > 0 {
                break;
            }
            // slowing to CPU_THROTTLE frees about the rest of its share
            host -= f.cpu.share_of_host.max(0.0) * 100.0 * (1.0 - CPU_THROTTLE as f32);
            out.insert(
                f.index,
                format!(
                    "{} at {:.0}% CPU: background work is slowed first, largest first ({} uses {:.0}% CPU, #{} here)",
                    view.nodes[ni].id,
                    n.cpu_recent_percent,
                    f.id,
                    f.cpu.recent_percent,
                    rank + 1
                ),
            );
        }
    }
    out
}

/// Rate limits in its errors: its throttle is the remedy the analyst chose, not to be undone.
fn rate_limited(f: &PersonaFeatures) -> bool {
    let e = &f.errors;
    (e.burst || e.elevated) && e.mix.share(ErrorClass::RateLimited) >= 0.25
}

/// What the persona's budget should be now, field by field (None: its starting point), and the
/// fact that drove it.
fn target(
    f: &PersonaFeatures,
    set: &FeatureSet,
    view: &MeshView,
    in_force: &Budget,
    env: &Envelope,
    relief: &HashMap<usize, String>,
) -> (BudgetPatch, String) {
    let mut t = BudgetPatch::default();
    let start = |field| env.start(in_force, field);
    let bounds = |field| env.bounds(in_force, field, f.importance);
    let why = match budget::cause(f, set) {
        Some(Cause::Burst) => {
            let (ratio, now, base) = budget::traffic(f).unwrap_or((f32::NAN, f32::NAN, f32::NAN));
            t.inference_queue_priority =
                Some(start(Field::Priority).max(BURST_PRIORITY.min(bounds(Field::Priority).1)) as u8);
            t.max_response_time_ms = Some(
                (start(Field::Timeout) * BURST_TIMEOUT_FACTOR).min(bounds(Field::Timeout).1).max(start(Field::Timeout))
                    as u64,
            );
            format!(
                "user-facing burst: traffic x{ratio:.1} its usual ({now:.1}/min, usually {base:.1}/min), errors {:.0}%: more priority and time, within its envelope",
                100.0 * f.errors.rate_last10.max(0.0)
            )
        }
        Some(Cause::Idle) => {
            t.inference_queue_priority = Some(start(Field::Priority).min(IDLE_PRIORITY) as u8);
            format!("idle {} min: gives its priority back", f.activity.idle_for_ms.unwrap_or(0) / 60_000)
        }
        Some(Cause::HostCpu) => match relief.get(&f.index) {
            Some(why) => {
                t.throttle_multiplier = Some(CPU_THROTTLE);
                why.clone()
            }
            None => {
                // enough is freed by the larger consumers: keep what it has
                t.throttle_multiplier = Some(in_force.throttle_multiplier.min(start(Field::Throttle)));
                "its host's CPU is saturated; larger background consumers are slowed first".into()
            }
        },
        Some(Cause::HostMemory) => {
            let n = f.node.map_or("its host", |i| view.nodes[i].id.as_str());
            t.throttle_multiplier = Some(MEMORY_THROTTLE);
            format!(
                "{n} under memory pressure: background work slowed to {MEMORY_THROTTLE}x (its memory {:.0} MB)",
                f.memory.now_mb
            )
        }
        None if budget::demand_settled(f, set) => format!(
            "its own demand fell back (CPU {:.0}% of a core in its last samples, at most {:.0}% of the {:.0}% its {:.2}x throttle lets through): back to its starting budget",
            f.cpu.now_percent,
            100.0 * budget::SETTLED_SHARE_OF_THROTTLE,
            100.0 * f.throttle_multiplier,
            f.throttle_multiplier
        ),
        None => "its cause has cleared: back to its starting budget".into(),
    };
    if rate_limited(f) {
        // the upstream asks for less: whatever the throttle is, it stays
        t.throttle_multiplier = Some(in_force.throttle_multiplier);
    }
    (t, why)
}

/// Move each persona's budget (on its decision) toward what its situation asks for.
pub fn allocate(set: &FeatureSet, view: &MeshView, decisions: &mut [Decision]) {
    let relief = cpu_relief(set, view);
    for (f, d) in set.personas.iter().zip(decisions.iter_mut()) {
        let p = &view.personas[f.index];
        let Some(in_force) = p.budget.as_ref() else { continue };
        // a persona not running, or judged on unusable data, keeps its budget as it is
        if !f.usable() || matches!(d.action, Action::Kill | Action::Restart | Action::Migrate) {
            continue;
        }
        let env = &p.envelope;
        let (t, why) = target(f, set, view, in_force, env, &relief);
        let mut want = BudgetPatch::default();
        for field in Field::ALL {
            // a throttle decision owns the throttle; a hibernating persona serves nothing to slow
            if field == Field::Throttle && matches!(d.action, Action::Throttle | Action::Hibernate) {
                continue;
            }
            let v = field.of_patch(&t).unwrap_or_else(|| env.start(in_force, field));
            if (v - field.get(in_force)).abs() > 1e-9 {
                field.set(&mut want, v);
            }
        }
        let patch = env.clamp(in_force, &want, f.importance);
        if patch.is_empty() {
            continue;
        }
        d.reason = format!("{}; budget {}: {why}", d.reason, budget::describe(in_force, &patch));
        d.budget = Some(patch);
    }
}
