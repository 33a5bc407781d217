//! The RTOS-style compute budget of a persona (the seed's `PersonaComputeBudget`).

use serde::{Deserialize, Serialize};

use crate::bounds;
use crate::error::{CoreError, Result};

/// What a persona may consume. Enforced by the gateway (time, tokens, priority, concurrency,
/// throttle, allowed) and judged by the brain (memory); the hard kill limit is in `Limits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budget {
    /// A request through the gateway fails with a timeout past this.
    pub max_response_time_ms: u64,
    /// `max_tokens` of a request is clamped to this.
    pub tokens_per_response: u32,
    /// 0–[`MAX_QUEUE_PRIORITY`]; the shared gateway queue serves higher first.
    pub inference_queue_priority: u8,
    /// The memory the persona is expected to stay within (the brain judges against it).
    pub max_memory_mb: u64,
    /// Requests in flight at once; the excess queues.
    pub max_concurrent_inferences: u32,
    /// Scales concurrency and queue service rate: 0.5 = half speed, 2.0 = double priority.
    pub throttle_multiplier: f64,
    /// false: every request is refused with a clear error and the persona is not started.
    pub allowed_to_run: bool,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_response_time_ms: 30_000,
            tokens_per_response: 4096,
            inference_queue_priority: 50,
            max_memory_mb: 2048,
            max_concurrent_inferences: 4,
            throttle_multiplier: 1.0,
            allowed_to_run: true,
        }
    }
}

/// Upper bound on the throttle multiplier: beyond it, "priority" stops meaning anything.
pub const MAX_THROTTLE_MULTIPLIER: f64 = 10.0;
/// Highest queue priority (the lowest is 0). The CLI takes its ranges from here too.
pub const MAX_QUEUE_PRIORITY: u8 = 100;

impl Budget {
    /// The first of [`Budget::problems`], if any.
    pub fn validate(&self) -> Result<()> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every value that breaks its rule, each naming its field.
    pub fn problems(&self) -> Vec<CoreError> {
        [
            bounds::within("max_response_time_ms", self.max_response_time_ms, 1, bounds::MAX_RESPONSE_TIME_MS),
            bounds::within(
                "tokens_per_response",
                u64::from(self.tokens_per_response),
                1,
                u64::from(bounds::MAX_TOKENS),
            ),
            bounds::within("max_memory_mb", self.max_memory_mb, 1, bounds::MAX_MEMORY_MB),
            bounds::within(
                "max_concurrent_inferences",
                u64::from(self.max_concurrent_inferences),
                1,
                u64::from(bounds::MAX_CONCURRENT_INFERENCES),
            ),
            check_queue_priority(i64::from(self.inference_queue_priority)).map(|_| ()),
            check_throttle_multiplier(self.throttle_multiplier).map(|_| ()),
        ]
        .into_iter()
        .filter_map(Result::err)
        .collect()
    }

    /// Apply a partial change; the result is validated as a whole so a bad patch changes nothing.
    pub fn patched(&self, patch: &BudgetPatch) -> Result<Budget> {
        let mut b = self.clone();
        if let Some(v) = patch.max_response_time_ms {
            b.max_response_time_ms = v;
        }
        if let Some(v) = patch.tokens_per_response {
            b.tokens_per_response = v;
        }
        if let Some(v) = patch.inference_queue_priority {
            b.inference_queue_priority = v;
        }
        if let Some(v) = patch.max_memory_mb {
            b.max_memory_mb = v;
        }
        if let Some(v) = patch.max_concurrent_inferences {
            b.max_concurrent_inferences = v;
        }
        if let Some(v) = patch.throttle_multiplier {
            b.throttle_multiplier = v;
        }
        if let Some(v) = patch.allowed_to_run {
            b.allowed_to_run = v;
        }
        b.validate()?;
        Ok(b)
    }
}

/// A partial budget: the fields an operator or a decision changes at run time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetPatch {
    pub max_response_time_ms: Option<u64>,
    pub tokens_per_response: Option<u32>,
    pub inference_queue_priority: Option<u8>,
    pub max_memory_mb: Option<u64>,
    pub max_concurrent_inferences: Option<u32>,
    pub throttle_multiplier: Option<f64>,
    pub allowed_to_run: Option<bool>,
}

impl BudgetPatch {
    pub fn is_empty(&self) -> bool {
        *self == BudgetPatch::default()
    }

    /// Check each value the patch sets by the budget's own rules, as a node would when it
    /// applies it. No rule relates two fields, so checking against the default budget judges
    /// each value alone; the CLI checks its flags with this, so its ranges are the node's.
    pub fn check(&self) -> Result<()> {
        Budget::default().patched(self).map(|_| ())
    }
}

impl BudgetPatch {
    /// The values `b` holds for the fields `like` sets (the others left unset).
    pub fn values_of(b: &Budget, like: &BudgetPatch) -> BudgetPatch {
        BudgetPatch {
            max_response_time_ms: like.max_response_time_ms.map(|_| b.max_response_time_ms),
            tokens_per_response: like.tokens_per_response.map(|_| b.tokens_per_response),
            inference_queue_priority: like.inference_queue_priority.map(|_| b.inference_queue_priority),
            max_memory_mb: like.max_memory_mb.map(|_| b.max_memory_mb),
            max_concurrent_inferences: like.max_concurrent_inferences.map(|_| b.max_concurrent_inferences),
            throttle_multiplier: like.throttle_multiplier.map(|_| b.throttle_multiplier),
            allowed_to_run: like.allowed_to_run.map(|_| b.allowed_to_run),
        }
    }
}

/// One side of the envelope an operator gives the brain (`[budget.min]` or `[budget.max]` of
/// a persona spec): the five fields the brain may adjust, each open (`None`) or bounded. The
/// memory budget and `allowed_to_run` are an operator's alone, so they have no bound here
/// (naming one is an unknown field).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetBound {
    pub max_response_time_ms: Option<u64>,
    pub tokens_per_response: Option<u32>,
    pub inference_queue_priority: Option<u8>,
    pub max_concurrent_inferences: Option<u32>,
    pub throttle_multiplier: Option<f64>,
}

impl BudgetBound {
    pub fn is_empty(&self) -> bool {
        *self == BudgetBound::default()
    }

    /// As a partial budget (the brain's envelope takes its bounds as one).
    pub fn to_patch(&self) -> BudgetPatch {
        BudgetPatch {
            max_response_time_ms: self.max_response_time_ms,
            tokens_per_response: self.tokens_per_response,
            inference_queue_priority: self.inference_queue_priority,
            max_concurrent_inferences: self.max_concurrent_inferences,
            throttle_multiplier: self.throttle_multiplier,
            ..BudgetPatch::default()
        }
    }

    /// The adjustable fields of a partial budget (its memory and allowed-to-run dropped).
    pub fn from_patch(p: &BudgetPatch) -> BudgetBound {
        BudgetBound {
            max_response_time_ms: p.max_response_time_ms,
            tokens_per_response: p.tokens_per_response,
            inference_queue_priority: p.inference_queue_priority,
            max_concurrent_inferences: p.max_concurrent_inferences,
            throttle_multiplier: p.throttle_multiplier,
        }
    }

    /// `b` with the bound's values set, unchecked.
    fn applied_to(&self, mut b: Budget) -> Budget {
        if let Some(v) = self.max_response_time_ms {
            b.max_response_time_ms = v;
        }
        if let Some(v) = self.tokens_per_response {
            b.tokens_per_response = v;
        }
        if let Some(v) = self.inference_queue_priority {
            b.inference_queue_priority = v;
        }
        if let Some(v) = self.max_concurrent_inferences {
            b.max_concurrent_inferences = v;
        }
        if let Some(v) = self.throttle_multiplier {
            b.throttle_multiplier = v;
        }
        b
    }

    /// (field name, bound if set, the budget's value) for each field, to compare as numbers.
    fn sides(&self, b: &Budget) -> [(&'static str, Option<f64>, f64); 5] {
        [
            ("max_response_time_ms", self.max_response_time_ms.map(|v| v as f64), b.max_response_time_ms as f64),
            ("tokens_per_response", self.tokens_per_response.map(f64::from), f64::from(b.tokens_per_response)),
            (
                "inference_queue_priority",
                self.inference_queue_priority.map(f64::from),
                f64::from(b.inference_queue_priority),
            ),
            (
                "max_concurrent_inferences",
                self.max_concurrent_inferences.map(f64::from),
                f64::from(b.max_concurrent_inferences),
            ),
            ("throttle_multiplier", self.throttle_multiplier, b.throttle_multiplier),
        ]
    }
}

/// What the operator lets the brain do with a persona's budget: `[budget]` is its starting
/// point, `[budget.min]` the lowest and `[budget.max]` the highest the brain may set each
/// field. A field `max` leaves open is never raised above the spec; one `min` leaves open may
/// be lowered to a floor the brain knows (its `budget` module).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetEnvelope {
    pub min: BudgetBound,
    pub max: BudgetBound,
}

impl BudgetEnvelope {
    pub fn is_empty(&self) -> bool {
        self.min.is_empty() && self.max.is_empty()
    }

    /// Every problem against the starting point `spec`, each naming its field (`min.…` or
    /// `max.…`): each bound by its field's own rule, and `min <= spec <= max` field by field
    /// (so the brain's range always holds the starting point it gives back to).
    pub fn problems(&self, spec: &Budget) -> Vec<CoreError> {
        let mut out = Vec::new();
        for (side, bound) in [("min", &self.min), ("max", &self.max)] {
            // each value by the budget's own rules (no rule relates two fields)
            let broken = bound.applied_to(Budget::default()).problems();
            for (field, v, s) in bound.sides(spec) {
                let Some(v) = v else { continue };
                if let Some(e) = broken.iter().find(|e| e.field() == Some(field)) {
                    out.push(e.clone().within(side));
                    continue;
                }
                let fmt = |x: f64| if field == "throttle_multiplier" { format!("{x}") } else { format!("{x:.0}") };
                if side == "min" && v > s {
                    out.push(CoreError::invalid(
                        format!("min.{field}"),
                        format!(
                            "{} is above the budget's {}: the floor must not be above the starting point",
                            fmt(v),
                            fmt(s)
                        ),
                    ));
                }
                if side == "max" && v < s {
                    out.push(CoreError::invalid(
                        format!("max.{field}"),
                        format!(
                            "{} is below the budget's {}: the ceiling must not be below the starting point",
                            fmt(v),
                            fmt(s)
                        ),
                    ));
                }
            }
        }
        out
    }
}

/// A budget change as the registry carried it out: each field the change set, as it was and
/// as it became. Kept on the decision's record, so the log, the API and the brain read the
/// values as fields rather than out of the reason text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetChange {
    pub before: BudgetPatch,
    pub after: BudgetPatch,
}

impl BudgetChange {
    /// The change `patch` made from `before` to `after`.
    pub fn between(before: &Budget, patch: &BudgetPatch, after: &Budget) -> BudgetChange {
        BudgetChange { before: BudgetPatch::values_of(before, patch), after: BudgetPatch::values_of(after, patch) }
    }
}

/// The queue priority rule, on any integer (the CLI reads a flag as one before it knows it
/// fits): within 0..=[`MAX_QUEUE_PRIORITY`].
pub fn check_queue_priority(v: i64) -> Result<u8> {
    match u8::try_from(v) {
        Ok(p) if p <= MAX_QUEUE_PRIORITY => Ok(p),
        _ => Err(CoreError::invalid(
            "inference_queue_priority",
            format!("must be within 0..={MAX_QUEUE_PRIORITY}, got {v}"),
        )),
    }
}

/// The throttle multiplier rule: finite, above 0, at most [`MAX_THROTTLE_MULTIPLIER`].
pub fn check_throttle_multiplier(m: f64) -> Result<f64> {
    if !m.is_finite() || m <= 0.0 || m > MAX_THROTTLE_MULTIPLIER {
        return Err(CoreError::invalid(
            "throttle_multiplier",
            format!("must be > 0 and <= {MAX_THROTTLE_MULTIPLIER}, got {m}"),
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        Budget::default().validate().unwrap();
    }

    #[test]
    fn zero_and_out_of_range_values_name_their_field() {
        let b = Budget { max_concurrent_inferences: 0, ..Budget::default() };
        assert_eq!(b.validate().unwrap_err().field(), Some("max_concurrent_inferences"));
        let b = Budget { inference_queue_priority: 101, ..Budget::default() };
        assert_eq!(b.validate().unwrap_err().field(), Some("inference_queue_priority"));
        let b = Budget { throttle_multiplier: -0.5, ..Budget::default() };
        assert_eq!(b.validate().unwrap_err().field(), Some("throttle_multiplier"));
    }

    #[test]
    fn a_change_keeps_the_fields_it_set_before_and_after() {
        let b = Budget::default();
        let patch =
            BudgetPatch { inference_queue_priority: Some(10), throttle_multiplier: Some(0.25), ..Default::default() };
        let after = b.patched(&patch).unwrap();
        let c = BudgetChange::between(&b, &patch, &after);
        assert_eq!(
            c.before,
            BudgetPatch { inference_queue_priority: Some(50), throttle_multiplier: Some(1.0), ..Default::default() }
        );
        assert_eq!(c.after, patch);
    }

    #[test]
    fn a_bad_patch_changes_nothing() {
        let b = Budget::default();
        let bad =
            BudgetPatch { inference_queue_priority: Some(90), throttle_multiplier: Some(0.0), ..Default::default() };
        assert!(b.patched(&bad).is_err());
        // past a bound: refused (u64::MAX ms overflowed the gateway's deadline)
        let huge = BudgetPatch { max_response_time_ms: Some(u64::MAX), ..Default::default() };
        assert_eq!(b.patched(&huge).unwrap_err().field(), Some("max_response_time_ms"));
        let huge = BudgetPatch { max_memory_mb: Some(crate::bounds::MAX_MEMORY_MB + 1), ..Default::default() };
        assert_eq!(b.patched(&huge).unwrap_err().field(), Some("max_memory_mb"));
        let good = BudgetPatch { inference_queue_priority: Some(90), ..Default::default() };
        assert_eq!(b.patched(&good).unwrap().inference_queue_priority, 90);
    }
}
