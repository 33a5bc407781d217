//! What a node must do to bring one of its personas to what the registry wants: a pure plan
//! from the registry's entry and what the node has. Edge-triggered by design: the node plans
//! when an entry changes (and once for every entry at start), so what the node does on its own
//! between changes — restarts by policy, killing a crash loop, idle hibernation, waking on a
//! request — stands until an operator or a decision changes the entry.

use crate::budget::{Budget, BudgetPatch};
use crate::phase::Phase;
use crate::registry::{DesiredPhase, PersonaEntry};
use crate::spec::PersonaSpec;

/// What the node has of a persona.
#[derive(Debug, Clone, PartialEq)]
pub struct Local<'a> {
    pub phase: Phase,
    /// The registry epoch it was last started at.
    pub epoch: u64,
    pub budget: &'a Budget,
    pub spec: Option<&'a PersonaSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Register it here (with the entry's spec and budget), started or not.
    Add {
        start: bool,
    },
    /// Forget it here (drained and stopped first).
    Remove,
    SetBudget(BudgetPatch),
    /// Start it (again), at the entry's epoch; a hibernating one wakes with its saved state.
    Start,
    /// Restart the running process, at the entry's epoch.
    Restart,
    Stop,
    Hibernate,
    /// Freeze the running process (the paused tier).
    Pause,
    /// Thaw a paused process, at the entry's epoch.
    Resume,
    Kill {
        reason: String,
    },
}

/// The steps, in order, that bring `local` to `entry` (which is assigned to this node).
pub fn plan(entry: &PersonaEntry, local: Option<&Local<'_>>) -> Vec<Step> {
    let Some(local) = local else { return from_nothing(entry) };
    let spec_changed = local.spec.is_some_and(|s| !same_spec(s, &entry.spec));
    if spec_changed {
        let mut steps = vec![Step::Remove];
        steps.extend(from_nothing(entry));
        return steps;
    }
    let mut steps = Vec::new();
    if *local.budget != entry.budget {
        steps.push(Step::SetBudget(full_patch(&entry.budget)));
    }
    let down = !local.phase.has_process() && local.phase != Phase::Backoff;
    match entry.phase {
        DesiredPhase::Running => {
            if local.phase == Phase::Paused {
                // the same process goes on: a thaw, not a restart (which would pay a cold start)
                steps.push(Step::Resume);
            } else if entry.epoch > local.epoch {
                steps.push(if down { Step::Start } else { Step::Restart });
            } else if regains_the_right_to_run(entry, local) {
                // the budget stopped it, not the mesh: giving the right back restores the phase
                steps.push(Step::Start);
            }
        }
        DesiredPhase::Stopped => {
            if !down || local.phase == Phase::Pending {
                steps.push(Step::Stop);
            }
        }
        DesiredPhase::Hibernating => {
            if local.phase != Phase::Hibernating {
                steps.push(Step::Hibernate);
            }
        }
        DesiredPhase::Paused => {
            if local.phase != Phase::Paused {
                // a persona down here has nothing to freeze: it hibernates (stopped) instead
                steps.push(if local.phase.has_process() { Step::Pause } else { Step::Hibernate });
            }
        }
        DesiredPhase::Killed => {
            if local.phase != Phase::Killed {
                steps.push(Step::Kill { reason: kill_reason(entry) });
            }
        }
    }
    steps
}

/// Stopped here because its budget took away the right to run (`allowed_to_run = false`
/// stops the process), and the entry gives it back.
fn regains_the_right_to_run(entry: &PersonaEntry, local: &Local<'_>) -> bool {
    entry.budget.allowed_to_run && !local.budget.allowed_to_run && local.phase == Phase::Stopped
}

fn from_nothing(entry: &PersonaEntry) -> Vec<Step> {
    match entry.phase {
        DesiredPhase::Running => vec![Step::Add { start: true }],
        DesiredPhase::Stopped => vec![Step::Add { start: false }, Step::Stop],
        // nothing to freeze yet: the deeper tier, woken by a request as any other
        DesiredPhase::Hibernating | DesiredPhase::Paused => vec![Step::Add { start: false }, Step::Hibernate],
        DesiredPhase::Killed => vec![Step::Add { start: false }, Step::Kill { reason: kill_reason(entry) }],
    }
}

fn kill_reason(entry: &PersonaEntry) -> String {
    entry.reason.clone().unwrap_or_else(|| "killed by the mesh".to_owned())
}

/// Specs equal but for the budget (which changes at run time without a new process).
pub fn same_spec(a: &PersonaSpec, b: &PersonaSpec) -> bool {
    let mut a = a.clone();
    a.budget = b.budget.clone();
    a == *b
}

/// A patch that sets every field of the budget.
pub fn full_patch(b: &Budget) -> BudgetPatch {
    BudgetPatch {
        max_response_time_ms: Some(b.max_response_time_ms),
        tokens_per_response: Some(b.tokens_per_response),
        inference_queue_priority: Some(b.inference_queue_priority),
        max_memory_mb: Some(b.max_memory_mb),
        max_concurrent_inferences: Some(b.max_concurrent_inferences),
        throttle_multiplier: Some(b.throttle_multiplier),
        allowed_to_run: Some(b.allowed_to_run),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(phase: DesiredPhase, epoch: u64) -> PersonaEntry {
        let spec = PersonaSpec::new("p", "srv");
        PersonaEntry {
            budget: spec.budget.clone(),
            spec,
            node: Some(1),
            phase,
            reason: None,
            generation: 0,
            epoch,
            checkpoint: None,
            migrating_to: None,
            created_index: 1,
            updated_index: epoch,
        }
    }

    fn local<'a>(phase: Phase, epoch: u64, e: &'a PersonaEntry) -> Local<'a> {
        Local { phase, epoch, budget: &e.budget, spec: Some(&e.spec) }
    }

    #[test]
    fn a_new_entry_is_added_in_its_phase() {
        assert_eq!(plan(&entry(DesiredPhase::Running, 3), None), vec![Step::Add { start: true }]);
        assert_eq!(plan(&entry(DesiredPhase::Hibernating, 3), None), vec![Step::Add { start: false }, Step::Hibernate]);
    }

    #[test]
    fn only_a_new_epoch_starts_a_persona_the_node_stopped_on_its_own() {
        let e = entry(DesiredPhase::Running, 5);
        // killed by the node for a crash loop, at the epoch the registry still has: stays down
        assert!(plan(&e, Some(&local(Phase::Killed, 5, &e))).is_empty());
        // an operator or decision restarts it: a new epoch
        let e2 = entry(DesiredPhase::Running, 9);
        assert_eq!(plan(&e2, Some(&local(Phase::Killed, 5, &e2))), vec![Step::Start]);
        assert_eq!(plan(&e2, Some(&local(Phase::Running, 5, &e2))), vec![Step::Restart]);
        assert_eq!(plan(&e2, Some(&local(Phase::Backoff, 5, &e2))), vec![Step::Restart]);
        assert!(plan(&e2, Some(&local(Phase::Running, 9, &e2))).is_empty(), "replayed: nothing twice");
    }

    #[test]
    fn down_phases_are_brought_about() {
        let e = entry(DesiredPhase::Stopped, 5);
        assert_eq!(plan(&e, Some(&local(Phase::Running, 5, &e))), vec![Step::Stop]);
        assert_eq!(plan(&e, Some(&local(Phase::Backoff, 5, &e))), vec![Step::Stop]);
        assert!(plan(&e, Some(&local(Phase::Failed, 5, &e))).is_empty());
        let e = entry(DesiredPhase::Killed, 5);
        assert_eq!(
            plan(&e, Some(&local(Phase::Running, 5, &e))),
            vec![Step::Kill { reason: "killed by the mesh".into() }]
        );
        let e = entry(DesiredPhase::Hibernating, 5);
        assert!(plan(&e, Some(&local(Phase::Hibernating, 5, &e))).is_empty());
    }

    #[test]
    fn the_paused_tier_freezes_and_thaws_the_same_process() {
        let e = entry(DesiredPhase::Paused, 5);
        assert_eq!(plan(&e, Some(&local(Phase::Running, 5, &e))), vec![Step::Pause]);
        assert!(plan(&e, Some(&local(Phase::Paused, 5, &e))).is_empty());
        // nothing to freeze: the deeper tier
        assert_eq!(plan(&e, Some(&local(Phase::Stopped, 5, &e))), vec![Step::Hibernate]);
        assert_eq!(plan(&e, None), vec![Step::Add { start: false }, Step::Hibernate]);
        // a wake (a new epoch) thaws rather than restarts
        let e = entry(DesiredPhase::Running, 9);
        assert_eq!(plan(&e, Some(&local(Phase::Paused, 5, &e))), vec![Step::Resume]);
        // a deeper tier asked of a paused persona
        let e = entry(DesiredPhase::Hibernating, 9);
        assert_eq!(plan(&e, Some(&local(Phase::Paused, 5, &e))), vec![Step::Hibernate]);
    }

    #[test]
    fn the_right_to_run_given_back_restores_the_wanted_phase() {
        let e = entry(DesiredPhase::Running, 5);
        let mut barred = e.budget.clone();
        barred.allowed_to_run = false;
        let l = Local { phase: Phase::Stopped, epoch: 5, budget: &barred, spec: Some(&e.spec) };
        assert_eq!(plan(&e, Some(&l)), vec![Step::SetBudget(full_patch(&e.budget)), Step::Start]);
        // what the mesh wants down stays down
        let stopped = entry(DesiredPhase::Stopped, 5);
        let l = Local { phase: Phase::Stopped, epoch: 5, budget: &barred, spec: Some(&stopped.spec) };
        assert_eq!(plan(&stopped, Some(&l)), vec![Step::SetBudget(full_patch(&stopped.budget))]);
        let hib = entry(DesiredPhase::Hibernating, 5);
        let l = Local { phase: Phase::Hibernating, epoch: 5, budget: &barred, spec: Some(&hib.spec) };
        assert_eq!(plan(&hib, Some(&l)), vec![Step::SetBudget(full_patch(&hib.budget))]);
        // a crash loop the node killed is not lifted by a budget change
        let l = Local { phase: Phase::Killed, epoch: 5, budget: &barred, spec: Some(&e.spec) };
        assert_eq!(plan(&e, Some(&l)), vec![Step::SetBudget(full_patch(&e.budget))]);
    }

    #[test]
    fn budget_changes_patch_and_spec_changes_replace() {
        let mut e = entry(DesiredPhase::Running, 5);
        let old = e.budget.clone();
        e.budget.throttle_multiplier = 0.5;
        let l = Local { phase: Phase::Running, epoch: 5, budget: &old, spec: Some(&e.spec) };
        assert_eq!(plan(&e, Some(&l)), vec![Step::SetBudget(full_patch(&e.budget))]);
        let other = PersonaSpec::new("p", "other-binary");
        let l = Local { phase: Phase::Running, epoch: 5, budget: &e.budget, spec: Some(&other) };
        assert_eq!(plan(&e, Some(&l)), vec![Step::Remove, Step::Add { start: true }]);
    }
}
