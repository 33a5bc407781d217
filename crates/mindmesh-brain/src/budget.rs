//! Budget allocation (the seed's RTOS time slices): the brain may move a persona's priority,
//! response timeout, tokens per response, concurrency and throttle — never its memory budget
//! and never whether it may run — inside the envelope its operator set.
//!
//! - **Envelope**: `[budget]` is the starting point; `[budget.min]` / `[budget.max]` bound what
//!   the brain may set. A field the operator left open may be lowered (down to a floor that
//!   keeps the persona working: half its time and tokens, one request at a time, 0.1×) but
//!   never raised above the spec. A `system` persona is never starved: nothing of it is set
//!   below its spec.
//! - **Causes** ([`cause`]): a user-facing burst, an idle persona, a host short of CPU or
//!   memory. A budget away from its spec with no cause left goes back to the spec once the
//!   cause has been clear for `hysteresis_cycles` cycles (the guardrails hold it until then).
//! - [`Envelope::clamp`] is the one place a proposed change is brought inside the envelope,
//!   for every analyst: the property test in `tests/budget_envelope.rs` throws random and
//!   adversarial plans at it.

use mindmesh_core::{Budget, BudgetPatch, Importance};
use serde::Serialize;

use crate::features::{FeatureSet, PersonaFeatures};

/// Lowest throttle the brain sets (the guardrails' floor for `throttle` too).
pub const MIN_THROTTLE: f64 = 0.1;
/// Traffic this many times its usual rate is a burst.
pub const BURST_RATIO: f32 = 1.5;
/// A burst whose requests fail this often is a retry storm: callers repeating failures, not
/// users to serve faster. Raising its priority would only feed the storm.
pub const RETRY_STORM_ERROR_RATE: f32 = 0.2;

/// A budget field the brain may adjust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Priority,
    Timeout,
    Tokens,
    Concurrency,
    Throttle,
}

impl Field {
    pub const ALL: [Field; 5] = [Field::Priority, Field::Timeout, Field::Tokens, Field::Concurrency, Field::Throttle];

    /// The budget's own name of the field (the spec's, the scenario format's).
    pub const fn name(self) -> &'static str {
        match self {
            Field::Priority => "inference_queue_priority",
            Field::Timeout => "max_response_time_ms",
            Field::Tokens => "tokens_per_response",
            Field::Concurrency => "max_concurrent_inferences",
            Field::Throttle => "throttle_multiplier",
        }
    }

    pub fn parse(s: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == s)
    }

    /// For reasons: `priority 50->90`.
    pub fn short(self) -> &'static str {
        match self {
            Field::Priority => "priority",
            Field::Timeout => "timeout_ms",
            Field::Tokens => "tokens",
            Field::Concurrency => "concurrency",
            Field::Throttle => "throttle",
        }
    }

    pub fn get(self, b: &Budget) -> f64 {
        match self {
            Field::Priority => f64::from(b.inference_queue_priority),
            Field::Timeout => b.max_response_time_ms as f64,
            Field::Tokens => f64::from(b.tokens_per_response),
            Field::Concurrency => f64::from(b.max_concurrent_inferences),
            Field::Throttle => b.throttle_multiplier,
        }
    }

    pub fn of_patch(self, p: &BudgetPatch) -> Option<f64> {
        match self {
            Field::Priority => p.inference_queue_priority.map(f64::from),
            Field::Timeout => p.max_response_time_ms.map(|v| v as f64),
            Field::Tokens => p.tokens_per_response.map(f64::from),
            Field::Concurrency => p.max_concurrent_inferences.map(f64::from),
            Field::Throttle => p.throttle_multiplier,
        }
    }

    /// Set `v` (finite, already within the field's rules) on `p`, rounded for integer fields.
    pub fn set(self, p: &mut BudgetPatch, v: f64) {
        let r = v.round();
        match self {
            Field::Priority => p.inference_queue_priority = Some(r.clamp(0.0, 100.0) as u8),
            Field::Timeout => p.max_response_time_ms = Some(r.max(1.0) as u64),
            Field::Tokens => p.tokens_per_response = Some(r.clamp(1.0, f64::from(u32::MAX)) as u32),
            Field::Concurrency => p.max_concurrent_inferences = Some(r.clamp(1.0, f64::from(u32::MAX)) as u32),
            // unrounded: an envelope's bound may be any number, and the value must stay inside
            Field::Throttle => p.throttle_multiplier = Some(v),
        }
    }

    /// The floor of a field the operator left open: low enough to give resources back, high
    /// enough that the persona still answers.
    fn floor(self, spec: f64) -> f64 {
        match self {
            Field::Priority => 0.0,
            Field::Timeout | Field::Tokens => (spec / 2.0).ceil().max(1.0),
            Field::Concurrency => 1.0,
            Field::Throttle => MIN_THROTTLE,
        }
    }

    pub fn format(self, v: f64) -> String {
        match self {
            Field::Throttle => format!("{v:.2}x"),
            _ => format!("{v:.0}"),
        }
    }
}

/// What the operator lets the brain do with one persona's budget.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Envelope {
    /// The starting point (the spec's `[budget]`): what the brain gives back to. None: the
    /// budget in force is the starting point.
    pub spec: Option<Budget>,
    /// `[budget.min]`: the lowest the brain may set each field (open: the floor).
    pub min: BudgetPatch,
    /// `[budget.max]`: the highest (open: the spec; the brain never raises above it unasked).
    pub max: BudgetPatch,
}

impl Envelope {
    /// The starting point of `field`, given the budget in force.
    pub fn start(&self, in_force: &Budget, field: Field) -> f64 {
        field.get(self.spec.as_ref().unwrap_or(in_force))
    }

    /// The range the brain may set `field` within: always holds the starting point, always
    /// within the field's own rules.
    pub fn bounds(&self, in_force: &Budget, field: Field, importance: Importance) -> (f64, f64) {
        let s = self.start(in_force, field);
        let valid = |v: f64| match field {
            Field::Priority => v.clamp(0.0, f64::from(mindmesh_core::budget::MAX_QUEUE_PRIORITY)),
            Field::Throttle => v.clamp(MIN_THROTTLE, mindmesh_core::budget::MAX_THROTTLE_MULTIPLIER),
            Field::Timeout => v.clamp(1.0, mindmesh_core::bounds::MAX_RESPONSE_TIME_MS as f64),
            Field::Tokens => v.clamp(1.0, f64::from(mindmesh_core::bounds::MAX_TOKENS)),
            Field::Concurrency => v.clamp(1.0, f64::from(mindmesh_core::bounds::MAX_CONCURRENT_INFERENCES)),
        };
        let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
        let hi = valid(finite(field.of_patch(&self.max)).unwrap_or(s).max(s));
        let mut lo = valid(finite(field.of_patch(&self.min)).unwrap_or_else(|| field.floor(s)).min(s));
        if importance == Importance::System {
            // the system class is never starved: the brain may give it more, never less
            lo = lo.max(s.min(hi));
        }
        (lo.min(hi), hi)
    }

    /// `patch` brought inside the envelope: only the five adjustable fields, each clamped to
    /// its bounds, non-finite values dropped, and fields already at the value in force left
    /// out. The one gate every analyst's budget change goes through.
    pub fn clamp(&self, in_force: &Budget, patch: &BudgetPatch, importance: Importance) -> BudgetPatch {
        let mut out = BudgetPatch::default();
        for field in Field::ALL {
            let Some(v) = field.of_patch(patch).filter(|v| v.is_finite()) else { continue };
            let (lo, hi) = self.bounds(in_force, field, importance);
            let mut one = BudgetPatch::default();
            field.set(&mut one, v.clamp(lo, hi));
            let Some(set) = field.of_patch(&one) else { continue };
            // rounding may step just outside (a throttle of 0.105 to 0.11 is fine; 0.1 stays 0.1)
            let set = set.clamp(lo, hi);
            if (set - field.get(in_force)).abs() > 1e-9 {
                field.set(&mut out, set);
            }
        }
        out
    }

    /// Whether `v` of `field` is inside the envelope.
    pub fn holds(&self, in_force: &Budget, field: Field, v: f64, importance: Importance) -> bool {
        let (lo, hi) = self.bounds(in_force, field, importance);
        v.is_finite() && v >= lo - 1e-9 && v <= hi + 1e-9
    }
}

/// `priority 50->90, timeout_ms 30000->45000`: the before and after of each field a patch sets.
pub fn describe(in_force: &Budget, patch: &BudgetPatch) -> String {
    Field::ALL
        .into_iter()
        .filter_map(|f| {
            f.of_patch(patch).map(|v| format!("{} {}->{}", f.short(), f.format(f.get(in_force)), f.format(v)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `priority 50->10, throttle 1.00x->0.25x`: a recorded change's before and after, field by
/// field (the fields both sides name).
pub fn describe_change(before: &BudgetPatch, after: &BudgetPatch) -> String {
    Field::ALL
        .into_iter()
        .filter_map(|f| {
            Some(format!("{} {}->{}", f.short(), f.format(f.of_patch(before)?), f.format(f.of_patch(after)?)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a patch moves every field it sets toward the starting point (a give-back or a
/// revert), never away from it.
pub fn is_return(env: &Envelope, in_force: &Budget, patch: &BudgetPatch) -> bool {
    Field::ALL.into_iter().all(|f| match f.of_patch(patch) {
        None => true,
        Some(v) => {
            let s = env.start(in_force, f);
            (v - s).abs() <= (f.get(in_force) - s).abs() + 1e-9
        }
    })
}

/// Which way a decision moved one budget field, as a scenario's `expect.budget` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Up,
    Down,
    Same,
}

impl Direction {
    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "up" => Some(Direction::Up),
            "down" => Some(Direction::Down),
            "same" => Some(Direction::Same),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Same => "same",
        }
    }

    /// How `patch` moves `field` from the budget in force (no budget known: nothing moves).
    pub fn of(field: Field, in_force: Option<&Budget>, patch: Option<&BudgetPatch>) -> Direction {
        let (Some(b), Some(v)) = (in_force, patch.and_then(|p| field.of_patch(p))) else { return Direction::Same };
        let was = field.get(b);
        if v > was + 1e-9 {
            Direction::Up
        } else if v < was - 1e-9 {
            Direction::Down
        } else {
            Direction::Same
        }
    }
}

/// Why a persona's budget should differ from its starting point this cycle, if it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A user-facing persona serving well above its usual traffic, and not a retry storm.
    Burst,
    /// Nobody has asked for a while: it gives back.
    Idle,
    /// Its host's CPU is saturated and it is background work.
    HostCpu,
    /// Its host is under memory pressure and it is background work.
    HostMemory,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Burst => "user-facing burst",
            Cause::Idle => "idle",
            Cause::HostCpu => "host CPU saturated",
            Cause::HostMemory => "host memory pressure",
        }
    }
}

/// Traffic against its usual: (ratio, now per min, usual per min), when both are known.
pub fn traffic(f: &PersonaFeatures) -> Option<(f32, f32, f32)> {
    let a = &f.activity;
    (a.base_requests_per_min.is_finite() && a.base_requests_per_min > 0.0 && a.requests_per_min.is_finite())
        .then(|| (a.requests_per_min / a.base_requests_per_min, a.requests_per_min, a.base_requests_per_min))
}

/// Its requests are up, but failing: callers retrying, not users to serve faster.
pub fn retry_storm(f: &PersonaFeatures) -> bool {
    let e = &f.errors;
    e.burst || [e.rate_last10, e.rate_window].iter().any(|r| r.is_finite() && *r >= RETRY_STORM_ERROR_RATE)
}

/// The cause that should shape this persona's budget now, in order of precedence.
pub fn cause(f: &PersonaFeatures, set: &FeatureSet) -> Option<Cause> {
    if !f.usable() {
        return None;
    }
    let node = f.node.map(|i| &set.nodes[i]).filter(|n| !n.stale);
    if f.importance == Importance::UserFacing
        && let Some((ratio, now, base)) = traffic(f)
        && ratio >= BURST_RATIO
        && now >= base + 2.0
        && !retry_storm(f)
    {
        return Some(Cause::Burst);
    }
    if f.activity.idle && f.importance != Importance::System {
        return Some(Cause::Idle);
    }
    if f.importance == Importance::Background {
        if node.is_some_and(|n| n.cpu_saturated || released_would_saturate(f, n)) {
            return Some(Cause::HostCpu);
        }
        // only work that holds a share of the memory or grows: slowing a persona that holds a
        // sliver relieves nothing (the pressure is someone else's)
        if let Some(n) = node
            && n.memory_pressure
            && (f.memory.growing_now || f.memory.now_mb >= 0.03 * n.memory_total_mb)
        {
            return Some(Cause::HostMemory);
        }
    }
    None
}

/// A throttled persona whose host is clear only because of the throttle: released to full
/// speed at its present demand (its CPU now scaled by 1/throttle), the host would be saturated
/// again. Without this the throttle is its own cause's cure, the cause looks clear, the budget
/// goes back, the host saturates, and the brain flaps with the flood (as `mindmesh bench qos`'s
/// flood would; unit-tested in `tests/budget_envelope.rs`).
///
/// Its demand is its CPU *now* ([`crate::features::CpuFeatures::now_percent`], its last two
/// samples), not the CPU window's average: the host's figure is a median of its last samples,
/// and projecting a host that has already cleared with the persona's six-sample average kept a
/// throttle held for three more samples after its flood had ended (`bench qos`: budgets back
/// 3.8 cycles after the flood, against a goal of 2).
pub fn released_would_saturate(f: &PersonaFeatures, n: &crate::features::NodeFeatures) -> bool {
    let m = f64::from(f.throttle_multiplier);
    if n.stale || !m.is_finite() || m <= 0.0 || m >= 0.999 {
        return false;
    }
    let Some(own) = own_share_now(f, n) else { return false };
    let host = f64::from(n.cpu_recent_percent);
    host.is_finite() && host + 100.0 * own * (1.0 / m - 1.0) >= f64::from(crate::features::CPU_SATURATED_PERCENT)
}

/// Its CPU now as a share of its host (the window's share when the last samples are missing).
fn own_share_now(f: &PersonaFeatures, n: &crate::features::NodeFeatures) -> Option<f64> {
    let now = f64::from(f.cpu.now_percent) / (f64::from(n.cpu_cores.max(1)) * 100.0);
    [now, f64::from(f.cpu.share_of_host)].into_iter().find(|v| v.is_finite()).map(|v| v.max(0.0))
}

/// A throttled persona uses at most this share of what its throttle lets it use when its
/// demand has settled: the band between this and the throttle's ceiling is the hysteresis (a
/// persona still at its ceiling is held by [`released_would_saturate`]; one in between waits
/// out the guardrails' cycles).
pub const SETTLED_SHARE_OF_THROTTLE: f32 = 0.5;

/// The cause of a CPU throttle has gone by its own signal: the persona is throttled, its host
/// is neither saturated nor short of memory, and in each of its last two samples it used at
/// most [`SETTLED_SHARE_OF_THROTTLE`] of the CPU its throttle lets through (a throttle of m
/// lets through m of one core, less under a hard limit, which the features do not carry: a
/// persona under a hard limit below half a core may read as settled while at its ceiling, and
/// then the host projection still holds it). Its demand, unlike the host's CPU, does not fall
/// because of the throttle — a flood still on keeps it at its ceiling — so the guardrails give
/// the throttle back on it at once, without counting calm cycles of a host the throttle keeps
/// calm. Flapping is kept off by the band above and by the two samples.
pub fn demand_settled(f: &PersonaFeatures, set: &FeatureSet) -> bool {
    let m = f.throttle_multiplier;
    let Some(n) = f.node.map(|i| &set.nodes[i]).filter(|n| !n.stale) else { return false };
    if !f.usable() || !m.is_finite() || m >= 0.999 || n.cpu_saturated || n.memory_pressure || f.memory.growing_now {
        return false;
    }
    f.cpu.now_percent.is_finite()
        && f.cpu.now_percent <= SETTLED_SHARE_OF_THROTTLE * m * 100.0
        && !released_would_saturate(f, n)
}

/// The brain's latest value of each field, folded in order from its budget decisions' `after`
/// values (the decision log's fields; records older than registry wire version 4 carry none).
/// A field the brain never set is left unset.
pub fn brain_values<'a>(afters: impl IntoIterator<Item = &'a BudgetPatch>) -> BudgetPatch {
    let mut out = BudgetPatch::default();
    for after in afters {
        for f in Field::ALL {
            if let Some(v) = f.of_patch(after) {
                f.set(&mut out, v);
            }
        }
    }
    out
}

/// The starting point the brain gives back to: the spec's budget, except where an operator
/// changed a field since (by [`source`]): that value is the operator's word, never undone by
/// the brain.
pub fn start_point(in_force: &Budget, spec: &Budget, brain: &BudgetPatch) -> Budget {
    let mut patch = BudgetPatch::default();
    for f in Field::ALL {
        if source(f, in_force, spec, brain) == Source::Operator {
            f.set(&mut patch, f.get(in_force));
        }
    }
    spec.patched(&patch).unwrap_or_else(|_| in_force.clone())
}

/// Where a field of the budget in force comes from, as `mindmesh persona show` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Its value is the spec's.
    Spec,
    /// The brain's latest budget decision setting the field set it to this value.
    Brain,
    /// Neither: an operator changed it (`persona budget`, `persona throttle`).
    Operator,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Spec => "spec",
            Source::Brain => "brain",
            Source::Operator => "operator",
        }
    }
}

/// The source of `field`'s value in force: the spec's, or set by the brain when its latest
/// value of the field ([`brain_values`]) is the one in force, else an operator's.
pub fn source(field: Field, in_force: &Budget, spec: &Budget, brain: &BudgetPatch) -> Source {
    let v = field.get(in_force);
    if (v - field.get(spec)).abs() <= 1e-9 {
        return Source::Spec;
    }
    match field.of_patch(brain) {
        Some(b) if (b - v).abs() <= 1e-9 => Source::Brain,
        _ => Source::Operator,
    }
}
