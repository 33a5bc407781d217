//! Applying a committed proposal: validation and the change, with no I/O and no clock.
//! Everything a replica needs is in the proposal and the log position; a command that fails
//! validation changes nothing and answers `Rejected` with the reason.

use std::collections::VecDeque;

use super::{
    ApplyCtx, Checkpoint, Command, DecisionRecord, DesiredPhase, Execution, MAX_ADDR_LEN, MAX_CHECKPOINT_BYTES,
    MAX_DECISIONS_KEPT, MAX_DECISIONS_PER_COMMAND, MAX_MOVES_PER_COMMAND, MAX_NODE_ADDRS, MAX_NODES, MAX_PERSONAS,
    MAX_REASON_BYTES, MAX_RECENT_PROPOSALS, NodeEntry, NodeId, NodeInfo, Outcome, PersonaEntry, Proposal, Reassignment,
    Registry,
};
use crate::action::{Action, AnalystKind, Decision};
use crate::snapshot::truncate_str;
use crate::spec::{MAX_LABELS, MAX_STRING_LEN, validate_name};

impl Registry {
    /// Apply one committed proposal. A proposal id seen before answers its first outcome again.
    pub fn apply(&mut self, proposal: &Proposal, ctx: ApplyCtx) -> Outcome {
        let outcome = match self.remembered(proposal) {
            Some(first) => first,
            None => {
                let outcome = self.execute(&proposal.command, ctx);
                self.remember(proposal, &outcome);
                outcome
            }
        };
        let bytes = postcard::to_allocvec(proposal).unwrap_or_default();
        self.advance(ctx, &bytes);
        outcome
    }

    fn remembered(&self, p: &Proposal) -> Option<Outcome> {
        let recent = self.recent.get(&p.id.node)?;
        recent.iter().find(|(nonce, _)| *nonce == p.id.nonce).map(|(_, o)| o.clone())
    }

    fn remember(&mut self, p: &Proposal, outcome: &Outcome) {
        // Only nodes of the mesh (and a bounded number of strangers) get a table.
        if !self.recent.contains_key(&p.id.node) && self.recent.len() >= MAX_NODES {
            return;
        }
        let recent = self.recent.entry(p.id.node).or_default();
        if recent.len() >= MAX_RECENT_PROPOSALS {
            recent.pop_front();
        }
        recent.push_back((p.id.nonce, outcome.clone()));
    }

    fn execute(&mut self, cmd: &Command, ctx: ApplyCtx) -> Outcome {
        match cmd {
            Command::AddNode(info) => self.add_node(info, ctx),
            Command::RemoveNode { id } => self.remove_node(*id, ctx),
            Command::PutPersona { spec, node } => {
                if let Err(e) = spec.validate() {
                    return Outcome::rejected(format!("persona spec: {e}"));
                }
                if let Some(n) = node
                    && !self.nodes.contains_key(n)
                {
                    return Outcome::rejected(format!("no node {n}"));
                }
                match self.personas.get_mut(&spec.name) {
                    Some(p) => {
                        p.spec = (**spec).clone();
                        p.budget = spec.budget.clone();
                        if p.node != *node {
                            p.node = *node;
                            p.epoch = ctx.index;
                            p.migrating_to = None;
                        }
                        p.updated_index = ctx.index;
                        Outcome::Persona { generation: p.generation, epoch: p.epoch }
                    }
                    None => {
                        if self.personas.len() >= MAX_PERSONAS {
                            return Outcome::rejected(format!("the mesh holds at most {MAX_PERSONAS} personas"));
                        }
                        let entry = PersonaEntry {
                            spec: (**spec).clone(),
                            node: *node,
                            phase: DesiredPhase::Running,
                            reason: None,
                            budget: spec.budget.clone(),
                            generation: 0,
                            epoch: ctx.index,
                            checkpoint: None,
                            migrating_to: None,
                            created_index: ctx.index,
                            updated_index: ctx.index,
                        };
                        self.personas.insert(spec.name.clone(), entry);
                        Outcome::Persona { generation: 0, epoch: ctx.index }
                    }
                }
            }
            Command::RemovePersona { name } => match self.personas.remove(name) {
                Some(_) => Outcome::Done,
                None => Outcome::rejected(format!("no persona {name:?}")),
            },
            Command::AssignPersona { name, node } => {
                if let Some(n) = node
                    && !self.nodes.contains_key(n)
                {
                    return Outcome::rejected(format!("no node {n}"));
                }
                self.with_persona(name, ctx, |p| {
                    if p.node != *node {
                        p.node = *node;
                        p.epoch = ctx.index;
                        p.migrating_to = None;
                    }
                    Ok(())
                })
            }
            Command::Reassign { moves } => self.reassign(moves, ctx),
            Command::Migrate { name, to } => {
                if !self.nodes.contains_key(to) {
                    return Outcome::rejected(format!("no node {to}"));
                }
                self.with_persona(name, ctx, |p| match p.node {
                    Some(n) if n == *to => Err(format!("{name} already runs on that node")),
                    Some(_) => {
                        p.migrating_to = Some(*to);
                        Ok(())
                    }
                    // nothing runs it: nothing to drain, place it at once
                    None => {
                        p.node = Some(*to);
                        p.epoch = ctx.index;
                        Ok(())
                    }
                })
            }
            Command::CompleteMigration { name, from, epoch, state, at_ms } => {
                if state.as_ref().is_some_and(|s| s.len() > MAX_CHECKPOINT_BYTES) {
                    return Outcome::rejected(format!("state over {MAX_CHECKPOINT_BYTES} bytes"));
                }
                let nodes = &self.nodes;
                let Some(p) = self.personas.get_mut(name) else {
                    return Outcome::rejected(format!("no persona {name:?}"));
                };
                let Some(to) = p.migrating_to else {
                    return Outcome::rejected(format!("{name} is not migrating"));
                };
                if p.node != Some(*from) || p.epoch != *epoch {
                    return Outcome::rejected(format!("{name} is no longer run by that node at that epoch"));
                }
                if let Some(state) = state {
                    p.checkpoint = Some(Checkpoint { state: state.clone(), epoch: *epoch, node: *from, at_ms: *at_ms });
                }
                // the target may have left meanwhile: then the persona waits for placement
                p.node = nodes.contains_key(&to).then_some(to);
                p.migrating_to = None;
                p.epoch = ctx.index;
                p.updated_index = ctx.index;
                Outcome::Persona { generation: p.generation, epoch: p.epoch }
            }
            Command::Checkpoint { name, node, epoch, state, at_ms } => {
                if state.len() > MAX_CHECKPOINT_BYTES {
                    return Outcome::rejected(format!("state over {MAX_CHECKPOINT_BYTES} bytes"));
                }
                self.with_persona(name, ctx, |p| {
                    if p.node != Some(*node) || p.epoch != *epoch {
                        return Err(format!("a checkpoint of {name} from a node or epoch that no longer runs it"));
                    }
                    p.checkpoint = Some(Checkpoint { state: state.clone(), epoch: *epoch, node: *node, at_ms: *at_ms });
                    Ok(())
                })
            }
            Command::SetDraining { id, draining } => match self.nodes.get_mut(id) {
                Some(n) => {
                    n.draining = *draining;
                    n.updated_index = ctx.index;
                    Outcome::Done
                }
                None => Outcome::rejected(format!("no node {id}")),
            },
            Command::SetPhase { name, phase, reason } => self.with_persona(name, ctx, |p| {
                // Coming back to running is a new start, so a new epoch.
                if *phase == DesiredPhase::Running && p.phase != DesiredPhase::Running {
                    p.epoch = ctx.index;
                }
                p.phase = *phase;
                p.reason = reason.as_deref().map(|r| truncate_str(r, MAX_REASON_BYTES).to_owned());
                Ok(())
            }),
            Command::BumpGeneration { name, expected } => self.with_persona(name, ctx, |p| {
                if p.generation != *expected {
                    return Err(format!("generation is {}, not {expected}: already restarted", p.generation));
                }
                p.generation += 1;
                p.epoch = ctx.index;
                Ok(())
            }),
            Command::SetBudget { name, patch } => self.with_persona(name, ctx, |p| {
                p.budget = p.budget.patched(patch).map_err(|e| format!("budget: {e}"))?;
                Ok(())
            }),
            Command::RecordDecisions { decisions, at_ms } => self.record_decisions(decisions, *at_ms, ctx),
            Command::MarkExecuted { seq, node, at_ms, ok, outcome } => {
                let Ok(i) = self.decisions.binary_search_by_key(seq, |d| d.seq) else {
                    return Outcome::rejected(format!("no decision {seq} (too old or never recorded)"));
                };
                let d = &mut self.decisions[i];
                // The first report stands: a replayed report changes nothing.
                if d.executed.is_none() {
                    d.executed = Some(Execution {
                        node: *node,
                        at_ms: *at_ms,
                        ok: *ok,
                        outcome: truncate_str(outcome, MAX_REASON_BYTES).to_owned(),
                    });
                }
                Outcome::Done
            }
        }
    }

    fn add_node(&mut self, info: &NodeInfo, ctx: ApplyCtx) -> Outcome {
        if let Err(e) = validate_name(&info.name) {
            return Outcome::rejected(format!("node {e}"));
        }
        if info.addrs.len() > MAX_NODE_ADDRS || info.addrs.iter().chain([&info.api]).any(|a| a.len() > MAX_ADDR_LEN) {
            return Outcome::rejected(format!("at most {MAX_NODE_ADDRS} addresses of {MAX_ADDR_LEN} bytes"));
        }
        if info.labels.len() > MAX_LABELS
            || info.labels.iter().any(|(k, v)| k.len() > MAX_STRING_LEN || v.len() > MAX_STRING_LEN)
        {
            return Outcome::rejected(format!("at most {MAX_LABELS} labels of {MAX_STRING_LEN} bytes"));
        }
        if !info.capacity.cpu_percent.is_finite() || info.capacity.cpu_percent < 0.0 {
            return Outcome::rejected("capacity.cpu_percent must be a non-negative number");
        }
        if let Some(other) = self.nodes.values().find(|n| n.info.name == info.name && n.info.id != info.id) {
            return Outcome::rejected(format!(
                "node name {:?} is taken by node {}; remove that node first",
                info.name, other.info.id
            ));
        }
        match self.nodes.get_mut(&info.id) {
            Some(n) => {
                // (a node that joins again stays draining until an operator says otherwise)
                n.info = info.clone();
                n.updated_index = ctx.index;
            }
            None => {
                if self.nodes.len() >= MAX_NODES {
                    return Outcome::rejected(format!("the mesh holds at most {MAX_NODES} nodes"));
                }
                let entry = NodeEntry {
                    info: info.clone(),
                    joined_index: ctx.index,
                    updated_index: ctx.index,
                    draining: false,
                };
                self.nodes.insert(info.id, entry);
            }
        }
        Outcome::Done
    }

    fn remove_node(&mut self, id: NodeId, ctx: ApplyCtx) -> Outcome {
        if self.nodes.remove(&id).is_none() {
            return Outcome::rejected(format!("no node {id}"));
        }
        self.recent.remove(&id);
        // Its personas wait for placement elsewhere, under a new epoch.
        for p in self.personas.values_mut() {
            if p.node == Some(id) {
                p.node = None;
                p.epoch = ctx.index;
                p.migrating_to = None;
                p.updated_index = ctx.index;
            } else if p.migrating_to == Some(id) {
                p.migrating_to = None;
                p.updated_index = ctx.index;
            }
        }
        Outcome::Done
    }

    fn record_decisions(&mut self, decisions: &[crate::action::Decision], at_ms: u64, ctx: ApplyCtx) -> Outcome {
        if decisions.len() > MAX_DECISIONS_PER_COMMAND {
            return Outcome::rejected(format!("at most {MAX_DECISIONS_PER_COMMAND} decisions per command"));
        }
        for d in decisions {
            if let Err(e) = validate_name(&d.persona) {
                return Outcome::rejected(format!("decision for persona {e}"));
            }
            if !d.confidence.is_finite() || d.throttle_multiplier.is_some_and(|m| !m.is_finite()) {
                return Outcome::rejected("decision figures must be numbers");
            }
        }
        // sequence numbers start at 1, as the event log's do: "after 0" means "from the start"
        self.next_decision_seq = self.next_decision_seq.max(1);
        let first_seq = self.next_decision_seq;
        let mut appended = 0u32;
        for d in decisions {
            let mut decision = d.clone();
            decision.reason = truncate_str(&decision.reason, MAX_REASON_BYTES).to_owned();
            if let Some(t) = &decision.target {
                decision.target = Some(truncate_str(t, MAX_REASON_BYTES).to_owned());
            }
            if let Some(last) = repeated(&mut self.decisions, &decision, at_ms) {
                last.repeats = last.repeats.saturating_add(1);
                last.last_seen_ms = Some(at_ms);
                last.decision.reason = decision.reason;
                last.decision.confidence = decision.confidence;
                last.decision.cycle = decision.cycle;
                continue;
            }
            appended += 1;
            push_bounded(
                &mut self.decisions,
                DecisionRecord {
                    seq: self.next_decision_seq,
                    decision,
                    index: ctx.index,
                    decided_at_ms: at_ms,
                    executed: None,
                    repeats: 0,
                    last_seen_ms: None,
                },
            );
            self.next_decision_seq += 1;
        }
        Outcome::Decisions { first_seq, count: appended }
    }

    fn reassign(&mut self, moves: &[Reassignment], ctx: ApplyCtx) -> Outcome {
        if moves.len() > MAX_MOVES_PER_COMMAND {
            return Outcome::rejected(format!("at most {MAX_MOVES_PER_COMMAND} moves per command"));
        }
        if let Some(n) = moves.iter().filter_map(|m| m.to).find(|n| !self.nodes.contains_key(n)) {
            return Outcome::rejected(format!("no node {n}"));
        }
        let (mut moved, mut stale) = (0, 0);
        for m in moves {
            match self.personas.get_mut(&m.name) {
                Some(p) if p.node == m.from => {
                    if p.node != m.to {
                        p.node = m.to;
                        p.epoch = ctx.index;
                        p.migrating_to = None;
                        p.updated_index = ctx.index;
                    }
                    moved += 1;
                }
                _ => stale += 1,
            }
        }
        Outcome::Moved { moved, stale }
    }

    fn with_persona(
        &mut self,
        name: &str,
        ctx: ApplyCtx,
        change: impl FnOnce(&mut PersonaEntry) -> Result<(), String>,
    ) -> Outcome {
        let Some(p) = self.personas.get_mut(name) else {
            return Outcome::rejected(format!("no persona {name:?}"));
        };
        // Change a copy so a refused change leaves nothing half done.
        let mut next = p.clone();
        match change(&mut next) {
            Ok(()) => {
                next.updated_index = ctx.index;
                let outcome = Outcome::Persona { generation: next.generation, epoch: next.epoch };
                *p = next;
                outcome
            }
            Err(reason) => Outcome::rejected(reason),
        }
    }
}

/// How long a repeated decision may go unseen and still be the same record: longer than
/// any cycle, shorter than a persona's recovery and relapse.
const QUIET_GAP_MS: u64 = 5 * 60_000;

/// The persona's latest record when `d` only says it again: an analyst's non-disruptive
/// decision (watching, throttled) with the same action and target. A change of action, any
/// disruptive one and any operator's are always appended: they are what the log is for. A
/// record not seen again for [`QUIET_GAP_MS`] is closed (the persona was fine in between, or
/// nobody led): the next one starts a new record.
fn repeated<'a>(log: &'a mut VecDeque<DecisionRecord>, d: &Decision, at_ms: u64) -> Option<&'a mut DecisionRecord> {
    if d.action.is_disruptive() || d.action == Action::Wake || d.analyst == AnalystKind::Operator {
        return None;
    }
    let last = log.iter_mut().rev().find(|r| r.decision.persona == d.persona)?;
    let same =
        last.decision.action == d.action && last.decision.target == d.target && last.decision.analyst == d.analyst;
    let recent = at_ms.saturating_sub(last.last_seen_ms.unwrap_or(last.decided_at_ms)) <= QUIET_GAP_MS;
    (same && recent).then_some(last)
}

fn push_bounded(log: &mut VecDeque<DecisionRecord>, d: DecisionRecord) {
    if log.len() >= MAX_DECISIONS_KEPT {
        log.pop_front();
    }
    log.push_back(d);
}
