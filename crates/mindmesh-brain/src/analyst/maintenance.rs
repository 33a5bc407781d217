//! Scheduled maintenance, the seed's "restart after N inferences or N hours": a persona whose
//! spec has `[maintenance]` is restarted once its process has served `restart_after_inferences`
//! inferences or been up `restart_after_s` seconds, whichever comes first. A policy, not a
//! symptom: the decision's reason names the policy and the fact that met it.
//!
//! What the process has done since it started is read from the view, as a lower bound: the
//! inferences are the gateway's request counts summed from the process's start (plus what it
//! had served before the view begins, when known), the uptime is the features' (or, where the
//! start is not in the view, at least the view's span). A bound is therefore met late, never
//! early: a persona near but below its bound continues.
//!
//! The restart goes through the guardrails like any other (hysteresis: the fact must have
//! held for the last cycles; cooldown; the caps), and is put off while the persona is serving
//! a user-facing burst: restarting it then would drop the users the burst is made of, and the
//! bound is a schedule, not a fault, so it can wait for the burst to end.

use mindmesh_core::spec::Maintenance;
use mindmesh_core::{Action, AnalystKind, Decision};
use serde::Serialize;

use crate::budget::{self, Cause};
use crate::features::{FeatureSet, PersonaFeatures};
use crate::view::{MeshView, PersonaView};

/// A persona's maintenance schedule as the brain reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Schedule {
    /// The spec's `[maintenance]` (both open: no schedule).
    pub policy: Maintenance,
    /// Inferences the process had served before the first sample of the view, if known (a
    /// scenario's `inferences_at_start`); unknown counts as none (a lower bound).
    pub inferences_at_first: Option<u64>,
}

/// A maintenance bound the persona's process has met.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Due {
    /// "10,000 inferences since start ≥ restart_after_inferences 10,000".
    pub fact: String,
}

/// `12345` → `12,345`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn hours(ms: u64) -> String {
    format!("{:.1} h", ms as f64 / 3_600_000.0)
}

/// Inferences the current process has served by `now_ms`, at least: the requests of the
/// samples after its start (the sample that shows a restart also counts the old process's
/// last requests: left out), plus those before the view when the process is older than it.
/// None when the view has no request counts. O(samples since the start): only personas with
/// a schedule are asked.
pub fn inferences_since_start(f: &PersonaFeatures, p: &PersonaView, now_ms: u64) -> Option<u64> {
    let s = &p.series;
    let end = s.end_index(now_ms).min(s.requests.len());
    if end == 0 {
        return None;
    }
    let t_first = s.t_ms[0];
    let (from, before) = match f.process_start_ms {
        Some(start) if start > t_first => (s.t_ms[..end].partition_point(|&t| t <= start), 0),
        _ => (0, p.maintenance.inferences_at_first.unwrap_or(0)),
    };
    let served: f64 = s.requests[from..end].iter().filter(|r| r.is_finite() && **r > 0.0).map(|&r| f64::from(r)).sum();
    Some(before.saturating_add(served as u64))
}

/// How long the current process has been up at `now_ms`, at least.
pub fn uptime_ms(f: &PersonaFeatures, p: &PersonaView, now_ms: u64) -> Option<u64> {
    f.uptime_ms
        .or_else(|| f.process_start_ms.map(|start| now_ms.saturating_sub(start)))
        .or_else(|| p.series.t_ms.first().map(|&t| now_ms.saturating_sub(t)))
}

/// The bound the persona's process has met, if any (on usable data only).
pub fn due(f: &PersonaFeatures, p: &PersonaView, now_ms: u64) -> Option<Due> {
    let policy = p.maintenance.policy;
    if policy.is_empty() || !f.usable() {
        return None;
    }
    if let Some(bound) = policy.restart_after_inferences
        && let Some(n) = inferences_since_start(f, p, now_ms)
        && n >= bound
    {
        let fact = format!("{} inferences since start ≥ restart_after_inferences {}", thousands(n), thousands(bound));
        return Some(Due { fact });
    }
    if let Some(bound_s) = policy.restart_after_s
        && let Some(up) = uptime_ms(f, p, now_ms)
        && up >= mindmesh_core::bounds::s_to_ms(bound_s)
    {
        let fact = format!(
            "up {} since start ≥ restart_after_s {} ({})",
            hours(up),
            thousands(bound_s),
            hours(mindmesh_core::bounds::s_to_ms(bound_s))
        );
        return Some(Due { fact });
    }
    None
}

/// Honour the schedule: a persona whose bound is met and that nothing else needs acting on
/// (its decision is `continue`) is restarted, unless it is serving a user-facing burst (then
/// its reason says the restart waits, and why). Runs before the allocation policy, which
/// leaves restarts alone.
pub fn schedule(set: &FeatureSet, view: &MeshView, decisions: &mut [Decision]) {
    for (f, d) in set.personas.iter().zip(decisions.iter_mut()) {
        let Some(due) = &f.maintenance_due else { continue };
        if d.action != Action::Continue {
            continue;
        }
        if budget::cause(f, set) == Some(Cause::Burst) {
            d.reason = format!(
                "{}; scheduled maintenance due ({}) waits: it is serving a user-facing burst, and a restart now would drop those users",
                d.reason, due.fact
            );
            continue;
        }
        *d = Decision::new(
            &view.personas[f.index].id,
            Action::Restart,
            format!("scheduled maintenance: {}", due.fact),
            0.8,
            AnalystKind::Builtin,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn numbers_read_in_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
