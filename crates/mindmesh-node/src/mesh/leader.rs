//! The brain's loop. Every node keeps the mesh's history from gossip (so a new leader is
//! warm); the leader, every cycle, runs the brain over it and commits what it decided in one
//! entry: the decisions (all but `continue`) with the changes they ask for (a restart is a
//! generation bump, so a decision replayed restarts nothing twice). The owning nodes'
//! reconcilers carry them out and report.

use std::sync::Arc;
use std::time::Duration;

use mindmesh_brain::MeshView;
use mindmesh_brain::{Brain, CycleReport};
use mindmesh_core::BudgetPatch;
use mindmesh_core::bounds::s_to_ms;
use mindmesh_core::clock::{Clock, ScaledClock};
use mindmesh_core::config::BrainConfig;
use mindmesh_core::registry::{Command, Decided, DesiredPhase, Outcome, Registry};
use mindmesh_core::{Action, Decision};
use mindmesh_net::{MeshHandle, MeshRole};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::history::History;

/// A throttle decision without a multiplier halves the persona's share.
const DEFAULT_THROTTLE: f64 = 0.5;
/// Snapshot requests waiting for the loop: each answer copies the whole view, so a few at once.
pub const MAX_PENDING_SNAPSHOTS: usize = 4;

/// The view the brain reads, as of a moment (`mindmesh brain snapshot`).
pub struct LiveView {
    pub view: MeshView,
    pub resolution_ms: u64,
    pub at_ms: u64,
}

/// Asks the loop for a copy of its view; the answer comes on the oneshot.
pub type SnapshotRequest = oneshot::Sender<LiveView>;

pub struct Leader {
    pub mesh: MeshHandle,
    pub config: BrainConfig,
    pub clock: Arc<dyn Clock>,
    pub gossip_interval: Duration,
    /// The last cycle's report, for `status` and the API.
    pub report: watch::Sender<Option<Arc<CycleReport>>>,
    /// Requests for a copy of the view (bounded by [`MAX_PENDING_SNAPSHOTS`]).
    pub snapshots: mpsc::Receiver<SnapshotRequest>,
    /// Cycles, decisions and LLM calls, for `/metrics`.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
}

impl Leader {
    pub async fn run(mut self, stop: CancellationToken) {
        if self.config.time_speed != 1.0 {
            tracing::warn!(
                speed = self.config.time_speed,
                "the brain's clock runs faster than real time (tests, demos)"
            );
            self.clock = Arc::new(ScaledClock::new(self.clock.clone(), self.config.time_speed));
        }
        let mut history =
            History::new(s_to_ms(self.config.history_resolution_s), s_to_ms(self.config.history_window_s));
        let mut brain = Brain::from_config(self.config.clone());
        let mut observe = tokio::time::interval(self.gossip_interval);
        observe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut cycle = tokio::time::interval(Duration::from_secs(self.config.cycle_s));
        cycle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        cycle.tick().await; // the first tick is immediate: give the history a cycle first
        let mut leading = false;
        let resolution_ms = s_to_ms(self.config.history_resolution_s);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(reply) = self.snapshots.recv() => {
                    // the view as the next cycle would read it: copied on demand, never kept
                    let live = LiveView { view: history.view().clone(), resolution_ms, at_ms: self.clock.now_ms() };
                    let _ = reply.send(live);
                }
                _ = observe.tick() => {
                    let Ok(rows) = self.mesh.mesh_view().await else { break };
                    let registry = self.mesh.registry();
                    history.observe(&rows, &registry, self.clock.now_ms());
                }
                _ = cycle.tick() => {
                    let now = self.clock.now_ms();
                    if self.mesh.status().role != MeshRole::Leader {
                        leading = false;
                        continue;
                    }
                    let registry = self.mesh.registry();
                    history.set_recent_actions(&registry);
                    if !leading {
                        // count persistence from the history already gathered, not from zero
                        brain.prime(history.view(), now);
                        leading = true;
                        tracing::info!("leading: the brain analyses the mesh every {} s", self.config.cycle_s);
                    }
                    // an LLM call can take its whole timeout (a stuck model server): a
                    // stopping node drops it rather than wait
                    let began = std::time::Instant::now();
                    let report = tokio::select! {
                        _ = stop.cancelled() => break,
                        report = brain.analyse(history.view(), now) => report,
                    };
                    self.telemetry.brain.cycle(&report, began.elapsed());
                    if let Some(f) = &report.fallback {
                        tracing::warn!(reason = %f.reason, "the LLM analyst fell back to the built-in one this cycle");
                    }
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        () = self.commit(&report, &registry, now) => {}
                    }
                    self.report.send_replace(Some(Arc::new(report)));
                }
            }
        }
    }

    async fn commit(&self, report: &CycleReport, registry: &Registry, now_ms: u64) {
        let Some(cmd) = cycle_command(&report.decisions, registry, self.config.act, now_ms) else { return };
        let mut personas = Vec::new();
        if let Command::Decide { decisions, .. } = &cmd {
            for d in decisions {
                let d = &d.decision;
                tracing::info!(persona = %d.persona, action = %d.action, reason = %d.reason, "decision");
                personas.push(d.persona.clone());
            }
        }
        match self.mesh.propose(cmd).await {
            Ok(Outcome::Decided { outcomes, .. }) => {
                for (persona, o) in personas.iter().zip(&outcomes) {
                    if let Outcome::Rejected { reason } = o {
                        tracing::info!(%persona, %reason, "decision refused by the registry (logged as refused)");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot commit the cycle's decisions; nothing carried out"),
        }
    }
}

/// A cycle's decisions (all but `continue`, and only about personas the mesh has) with the
/// changes they ask for, as ONE registry entry — each change applied or refused there, and
/// its decision logged with that verdict. A brain that only advises (`act = false`) records
/// them without changes.
pub fn cycle_command(decisions: &[Decision], registry: &Registry, act: bool, now_ms: u64) -> Option<Command> {
    let decisions: Vec<Decided> = decisions
        .iter()
        .filter(|d| registry.personas.contains_key(&d.persona))
        .flat_map(|d| {
            // a budget change rides on any action; it is logged (and undone) as a decision of
            // its own, so `decisions` shows it with its before and after
            let budget = d.budget.as_ref().filter(|b| !b.is_empty() && d.action != Action::Budget).map(|_| {
                let mut b = d.clone();
                b.action = Action::Budget;
                b
            });
            let main =
                (d.action != Action::Continue && (d.action != Action::Budget || d.budget.is_some())).then(|| d.clone());
            main.into_iter().chain(budget)
        })
        .take(mindmesh_core::registry::MAX_DECISIONS_PER_COMMAND)
        .map(|d| {
            let change = if act { command_for(&d, registry) } else { None };
            Decided::analyst(d, change)
        })
        .collect();
    (!decisions.is_empty()).then_some(Command::Decide { decisions, at_ms: now_ms })
}

/// The registry change a decision asks for; `None` for those that are only recorded.
pub fn command_for(d: &Decision, registry: &Registry) -> Option<Command> {
    let entry = registry.personas.get(&d.persona)?;
    let name = d.persona.clone();
    Some(match d.action {
        Action::Restart => Command::BumpGeneration { name, expected: entry.generation },
        Action::Hibernate => {
            Command::SetPhase { name, phase: DesiredPhase::Hibernating, reason: Some(d.reason.clone()) }
        }
        Action::Wake => Command::SetPhase { name, phase: DesiredPhase::Running, reason: None },
        Action::Kill => Command::SetPhase { name, phase: DesiredPhase::Killed, reason: Some(d.reason.clone()) },
        Action::Throttle => Command::SetBudget {
            name,
            patch: BudgetPatch {
                throttle_multiplier: Some(d.throttle_multiplier.unwrap_or(DEFAULT_THROTTLE)),
                ..BudgetPatch::default()
            },
        },
        // through the registry's migration: drain, state saved, released, started there
        Action::Migrate => {
            let target = registry.node_by_name(d.target.as_deref()?)?;
            Command::Migrate { name, to: target.info.id }
        }
        Action::Budget => Command::SetBudget { name, patch: d.budget.clone()? },
        Action::Continue | Action::Investigate => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mindmesh_core::AnalystKind;
    use mindmesh_core::registry::{ApplyCtx, Proposal, ProposalId, Verdict};

    fn registry() -> Registry {
        crate::mesh::test_registry::one_node(&["desk", "batch"])
    }

    fn with_budget(persona: &str, action: Action, priority: u8) -> Decision {
        let mut d = Decision::new(
            persona,
            action,
            format!("idle; budget priority 50->{priority}: idle"),
            0.7,
            AnalystKind::Builtin,
        );
        d.budget = Some(BudgetPatch { inference_queue_priority: Some(priority), ..BudgetPatch::default() });
        d
    }

    /// A budget change is committed as a `budget` decision of its own with its `SetBudget`,
    /// beside the action it rode on; a `continue` with one is only the budget decision.
    #[test]
    fn a_budget_change_is_a_decision_of_its_own() {
        let mut reg = registry();
        let decisions = [with_budget("desk", Action::Continue, 10), with_budget("batch", Action::Hibernate, 10)];
        let Some(Command::Decide { decisions: entries, .. }) = cycle_command(&decisions, &reg, true, 5) else {
            panic!("a command")
        };
        let kinds: Vec<(&str, Action)> =
            entries.iter().map(|e| (e.decision.persona.as_str(), e.decision.action)).collect();
        assert_eq!(kinds, [("desk", Action::Budget), ("batch", Action::Hibernate), ("batch", Action::Budget)]);
        for e in &entries {
            let want_budget = e.decision.action == Action::Budget;
            assert_eq!(matches!(e.change, Some(Command::SetBudget { .. })), want_budget, "{:?}", e.change);
        }
        let cmd = Command::Decide { decisions: entries, at_ms: 5 };
        reg.apply(&Proposal { id: ProposalId { node: 1, nonce: 9 }, command: cmd }, ApplyCtx { index: 9, term: 1 });
        assert_eq!(reg.personas["desk"].budget.inference_queue_priority, 10);
        assert_eq!(reg.personas["batch"].budget.inference_queue_priority, 10);
        let budget_records: Vec<_> = reg.decisions.iter().filter(|r| r.decision.action == Action::Budget).collect();
        assert_eq!(budget_records.len(), 2);
        for r in budget_records {
            assert!(r.decision.reason.contains("priority 50->10"), "before and after: {}", r.decision.reason);
            assert_eq!(r.verdict, Verdict::Pending, "the node carries it out");
        }
        // an advising brain records, changes nothing
        let Some(Command::Decide { decisions: entries, .. }) = cycle_command(&decisions, &reg, false, 6) else {
            panic!("a command")
        };
        assert!(entries.iter().all(|e| e.change.is_none()));
    }
}
