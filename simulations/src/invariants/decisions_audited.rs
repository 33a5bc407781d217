//! The decision log is an audit trail: an operator's decision it calls executed (by node N at
//! time T) shows its effect in the processes of node N, within a bound
//! ([`crate::SimConfig::action_bound_ms`]) of T:
//!
//! - `restart` and `wake` (the verbs restart and start): a process of the persona starts on N
//!   after the decision was taken;
//! - `hibernate` and `kill` (the verbs hibernate, stop and kill): N runs no process of the
//!   persona at some moment after the decision was taken.
//!
//! The window opens when the decision was taken, not when it was reported: a node may report a
//! decision with the step that finished just before it (the reconciler reports every decision
//! its registry entry already holds) and carry it out a moment later.
//!
//! What it leaves out, and why: decisions of the brain's analysts (a wake of a persona already
//! running changes nothing to see), budget and throttle decisions (no process effect), migrations
//! (executed where the persona lands, which may start it or not by its desired phase), and
//! every decision whose node was down or without its lease at a step of its window (a node
//! fenced or crashed may rightly not carry out what it reported, and the mesh fails its
//! personas over). Faults elsewhere do not excuse a node that held its lease throughout. The
//! converse — every start and exit has a decision, an operator or a policy behind it — is not
//! checked yet.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use mindmesh_core::action::Action;
use mindmesh_core::registry::{Actor, Verdict};
use mindmesh_net::NodeId;

use super::{Invariant, Observation};
use crate::cluster::EPOCH_MS;
use crate::processes::{ProcEvent, ProcKind};

/// Process events and unsettled nodes kept: a decision taken longer ago than this when its deadline
/// comes is not judged (its window is no longer in view).
const HISTORY_MS: u64 = 60_000;
/// Most process events kept, whatever their age.
const MAX_HISTORY: usize = 200_000;
/// Most executed decisions waiting for their deadline.
const MAX_WAITING: usize = 10_000;

/// An executed decision waiting for its deadline.
#[derive(Debug, Clone)]
struct Waiting {
    seq: u64,
    persona: String,
    action: Action,
    verb: String,
    node: NodeId,
    /// When it was taken and reported executed, in run ms.
    decided_ms: u64,
    executed_ms: u64,
}

#[derive(Debug)]
pub struct DecisionsAudited {
    bound_ms: u64,
    /// Process events of the last [`HISTORY_MS`].
    history: VecDeque<ProcEvent>,
    /// Processes running now, by (persona, node).
    running: BTreeMap<(String, NodeId), u32>,
    /// Nodes down or without their lease, by the step (run ms) they were seen so, of the last
    /// [`HISTORY_MS`].
    unsettled: VecDeque<(u64, NodeId)>,
    /// Decisions seen executed (judged or waiting), by sequence number.
    seen: BTreeSet<u64>,
    waiting: Vec<Waiting>,
}

impl DecisionsAudited {
    pub fn new(bound_ms: u64) -> Self {
        DecisionsAudited {
            bound_ms,
            history: VecDeque::new(),
            running: BTreeMap::new(),
            unsettled: VecDeque::new(),
            seen: BTreeSet::new(),
            waiting: Vec::new(),
        }
    }

    fn absorb(&mut self, obs: &Observation<'_>) {
        for ev in obs.events {
            let key = (ev.persona.clone(), ev.node);
            match ev.kind {
                ProcKind::Start => *self.running.entry(key).or_default() += 1,
                ProcKind::Exit(_) => {
                    if let Some(n) = self.running.get_mut(&key) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.running.remove(&key);
                        }
                    }
                }
            }
            self.history.push_back(ev.clone());
        }
        let horizon_us = obs.now_us.saturating_sub(HISTORY_MS * 1000);
        while self.history.front().is_some_and(|e| e.at_us < horizon_us) || self.history.len() > MAX_HISTORY {
            self.history.pop_front();
        }
        self.unsettled.extend(obs.unsettled.iter().map(|id| (obs.now_ms, *id)));
        let horizon_ms = obs.now_ms.saturating_sub(HISTORY_MS);
        while self.unsettled.front().is_some_and(|(t, _)| *t < horizon_ms) {
            self.unsettled.pop_front();
        }
    }

    /// The operator decisions the newest registry says were executed, not seen before.
    fn collect(&mut self, obs: &Observation<'_>) {
        let Some((_, newest)) = obs.registries.iter().max_by_key(|(_, r)| r.applied_index) else { return };
        for d in &newest.decisions {
            let Verdict::Executed { node, at_ms, .. } = &d.verdict else { continue };
            if !matches!(d.by, Actor::Operator { .. })
                || !matches!(d.decision.action, Action::Restart | Action::Wake | Action::Hibernate | Action::Kill)
                || !self.seen.insert(d.seq)
            {
                continue;
            }
            if self.waiting.len() >= MAX_WAITING {
                continue;
            }
            self.waiting.push(Waiting {
                seq: d.seq,
                persona: d.decision.persona.clone(),
                action: d.decision.action,
                verb: d.verb.clone(),
                node: *node,
                decided_ms: d.decided_at_ms.saturating_sub(EPOCH_MS),
                executed_ms: at_ms.saturating_sub(EPOCH_MS),
            });
        }
        // the log keeps a bounded tail: what fell out of it is never looked at again
        if let Some(oldest) = newest.decisions.front() {
            self.seen = self.seen.split_off(&oldest.seq);
        }
    }

    /// Whether the processes show `w`'s effect on its node between its decision and `until_ms`.
    fn carried_out(&self, w: &Waiting, until_ms: u64) -> bool {
        let (from_us, until_us) = (w.decided_ms * 1000, until_ms * 1000);
        let events = self.history.iter().filter(|e| e.persona == w.persona && e.node == w.node && e.at_us >= from_us);
        match w.action {
            Action::Restart | Action::Wake => events.filter(|e| e.at_us <= until_us).any(|e| e.kind == ProcKind::Start),
            _ => {
                // processes there when the decision was taken: those now, less the later changes
                let now = i64::from(self.running.get(&(w.persona.clone(), w.node)).copied().unwrap_or(0));
                let later: Vec<&ProcEvent> = events.collect();
                let delta: i64 = later.iter().map(|e| if e.kind == ProcKind::Start { 1 } else { -1 }).sum();
                let mut count = (now - delta).max(0);
                if count == 0 {
                    return true;
                }
                for e in later.iter().take_while(|e| e.at_us <= until_us) {
                    count += if e.kind == ProcKind::Start { 1 } else { -1 };
                    if count <= 0 {
                        return true;
                    }
                }
                false
            }
        }
    }
}

impl Invariant for DecisionsAudited {
    fn name(&self) -> &'static str {
        "decisions_audited"
    }

    fn check(&mut self, obs: &Observation<'_>) -> Result<(), String> {
        self.absorb(obs);
        self.collect(obs);
        let bound_ms = self.bound_ms;
        let mut due = Vec::new();
        self.waiting.retain(|w| {
            let is_due = obs.now_ms > w.executed_ms + bound_ms;
            if is_due {
                due.push(w.clone());
            }
            !is_due
        });
        for w in due {
            let until_ms = w.executed_ms + bound_ms;
            let faulted = self.unsettled.iter().any(|(t, id)| *id == w.node && (w.decided_ms..=until_ms).contains(t));
            let out_of_view = w.decided_ms < obs.now_ms.saturating_sub(HISTORY_MS);
            if faulted || out_of_view {
                tracing::debug!(seq = w.seq, verb = %w.verb, persona = %w.persona, faulted, "audit: not judged");
                continue;
            }
            if self.carried_out(&w, until_ms) {
                tracing::debug!(seq = w.seq, verb = %w.verb, persona = %w.persona, "audit: carried out");
                continue;
            }
            let effect = match w.action {
                Action::Restart | Action::Wake => "no process of it started there",
                _ => "a process of it ran there throughout",
            };
            return Err(format!(
                "decision {} ({} {}, {:?}) taken at {} ms is logged as executed by node {} at {} ms, but {effect} until \
                 {until_ms} ms",
                w.seq, w.verb, w.persona, w.action, w.decided_ms, w.node, w.executed_ms
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mindmesh_core::action::{AnalystKind, Decision};
    use mindmesh_core::lifecycle::ExitStatus;
    use mindmesh_core::registry::{ApplyCtx, Command, Decided, Proposal, ProposalId, Registry};
    use mindmesh_core::spec::PersonaSpec;

    use super::*;
    use crate::processes::ProcessTable;

    /// A registry with persona `a` on node 1 and an operator's `verb` on it executed by node 1
    /// at `executed_ms`, decided at `decided_ms`.
    fn registry(verb: &str, action: Action, decided_ms: u64, executed_ms: u64) -> Registry {
        let mut r = Registry::default();
        let decision = Decision::new("a", action, format!("operator: {verb}"), 1.0, AnalystKind::Operator);
        let decided = Decided {
            decision,
            by: Actor::Operator { token: "t".into(), via: None },
            verb: verb.into(),
            change: Some(Command::BumpGeneration { name: "a".into(), expected: 0 }),
        };
        let cmds = [
            Command::put_persona(PersonaSpec::new("a", "sim"), None),
            Command::Decide { decisions: vec![decided], at_ms: EPOCH_MS + decided_ms },
            Command::Report { seqs: vec![1], node: 1, at_ms: EPOCH_MS + executed_ms, ok: true, outcome: "x".into() },
        ];
        for (i, command) in cmds.into_iter().enumerate() {
            let index = i as u64 + 1;
            r.apply(&Proposal { id: ProposalId { node: 1, nonce: index }, command }, ApplyCtx { index, term: 1 });
        }
        assert!(matches!(r.decisions.back().map(|d| &d.verdict), Some(Verdict::Executed { .. })), "{r:?}");
        r
    }

    fn ev(at_ms: u64, pid: u32, kind: ProcKind) -> ProcEvent {
        ProcEvent { at_us: at_ms * 1000, node: 1, pid, persona: "a".into(), kind }
    }
    const TERM: ProcKind = ProcKind::Exit(ExitStatus::Signal(15));

    /// Steps of the checker at `times`, feeding each the events up to it.
    fn run(inv: &mut DecisionsAudited, reg: Registry, events: &[ProcEvent], times: &[u64]) -> Result<(), String> {
        let regs = [(1, Arc::new(reg))];
        let procs = ProcessTable::default();
        let mut fed = 0;
        for &t in times {
            let upto = events.iter().take_while(|e| e.at_us <= t * 1000).count();
            let mut obs = Observation::of(t, &[], &regs, &[], &procs);
            obs.events = &events[fed..upto];
            fed = upto;
            inv.check(&obs)?;
        }
        Ok(())
    }

    #[test]
    fn an_executed_restart_without_a_start_is_caught_and_one_with_it_is_not() {
        let reg = || registry("restart", Action::Restart, 1000, 1100);
        let before = [ev(0, 1, ProcKind::Start)];
        let err = run(&mut DecisionsAudited::new(5000), reg(), &before, &[500, 1200, 7000]).unwrap_err();
        assert!(err.contains("restart a") && err.contains("no process of it started"), "{err}");
        let restarted = [ev(0, 1, ProcKind::Start), ev(1150, 1, TERM), ev(1160, 2, ProcKind::Start)];
        run(&mut DecisionsAudited::new(5000), reg(), &restarted, &[500, 1200, 7000]).unwrap();
        // a start before the decision is not its effect
        let early = [ev(0, 1, ProcKind::Start), ev(900, 1, TERM), ev(950, 2, ProcKind::Start)];
        assert!(run(&mut DecisionsAudited::new(5000), reg(), &early, &[500, 1200, 7000]).is_err());
    }

    #[test]
    fn an_executed_stop_with_the_process_running_on_is_caught() {
        let reg = || registry("stop", Action::Kill, 1000, 1100);
        let err =
            run(&mut DecisionsAudited::new(5000), reg(), &[ev(0, 1, ProcKind::Start)], &[500, 1200, 7000]).unwrap_err();
        assert!(err.contains("ran there throughout"), "{err}");
        let stopped = [ev(0, 1, ProcKind::Start), ev(1500, 1, TERM)];
        run(&mut DecisionsAudited::new(5000), reg(), &stopped, &[500, 1200, 7000]).unwrap();
        // nothing ran there when it was decided: nothing to stop
        run(&mut DecisionsAudited::new(5000), reg(), &[], &[500, 1200, 7000]).unwrap();
        // stopped, then started again by a later decision: the stop still happened
        let again = [ev(0, 1, ProcKind::Start), ev(1500, 1, TERM), ev(3000, 2, ProcKind::Start)];
        run(&mut DecisionsAudited::new(5000), reg(), &again, &[500, 1200, 3100, 7000]).unwrap();
    }

    #[test]
    fn a_node_without_its_lease_in_the_window_is_not_judged() {
        let mut inv = DecisionsAudited::new(5000);
        let regs = [(1, Arc::new(registry("restart", Action::Restart, 1000, 1100)))];
        let procs = ProcessTable::default();
        let mut obs = Observation::of(2000, &[], &regs, &[], &procs);
        let unleased = BTreeSet::from([1]);
        obs.unsettled = &unleased;
        inv.check(&obs).unwrap();
        inv.check(&Observation::of(7000, &[], &regs, &[], &procs)).unwrap();
    }
}
