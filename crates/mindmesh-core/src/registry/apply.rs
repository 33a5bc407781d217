//! Applying a committed proposal: validation and the change, with no I/O and no clock.
//! Everything a replica needs is in the proposal and the log position; a command that fails
//! validation changes nothing and answers `Rejected` with the reason.

use std::collections::VecDeque;

use super::{
    Actor, ApplyCtx, Checkpoint, Command, Decided, DecisionRecord, DesiredPhase, MAX_ADDR_LEN, MAX_CHECKPOINT_BYTES,
    MAX_DECISIONS_KEPT, MAX_DECISIONS_PER_COMMAND, MAX_MOVES_PER_COMMAND, MAX_NODE_ADDRS, MAX_NODES, MAX_PERSONAS,
    MAX_REASON_BYTES, MAX_RECENT_PROPOSALS, NodeEntry, NodeId, NodeInfo, Outcome, PersonaEntry, Proposal, Reassignment,
    Registry, Verdict,
};
use crate::action::{Action, AnalystKind, Decision};
use crate::budget::BudgetChange;
use crate::snapshot::truncate_str;
use crate::spec::{MAX_LABELS, MAX_STRING_LEN, PersonaSpec, validate_name};

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
        let outcome = self.change(cmd, ctx);
        let moved_placement = match (cmd, &outcome) {
            (_, Outcome::Rejected { .. }) => false,
            (Command::Reassign { .. }, Outcome::Moved { moved, .. }) => *moved > 0,
            (
                Command::AddNode(_)
                | Command::RemoveNode { .. }
                | Command::PutPersona { .. }
                | Command::PutPersonaV3 { .. }
                | Command::PutPersonaV4 { .. }
                | Command::RemovePersona { .. }
                | Command::AssignPersona { .. }
                | Command::Migrate { .. }
                | Command::CompleteMigration { .. }
                | Command::SetDraining { .. }
                | Command::Drain { .. },
                _,
            ) => true,
            // (a Decide's changes went through here one by one)
            _ => false,
        };
        if moved_placement {
            self.placement_index = ctx.index;
            self.adapters_follow_their_base(ctx);
        }
        outcome
    }

    /// The adapter personas whose base is `base`.
    pub(crate) fn adapters_of<'a>(&'a self, base: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.personas.values().filter(move |p| p.spec.base() == Some(base)).map(|p| p.spec.name.as_str())
    }

    /// An adapter persona runs where its base's server runs: after any change of placement,
    /// each adapter is placed where its base is (a new placement, so a new epoch: the node
    /// that had it lets it go, the base's node takes it up).
    fn adapters_follow_their_base(&mut self, ctx: ApplyCtx) {
        let moves: Vec<(String, Option<NodeId>)> = self
            .personas
            .values()
            .filter_map(|p| {
                let base = self.personas.get(p.spec.base()?)?;
                (p.node != base.node).then(|| (p.spec.name.clone(), base.node))
            })
            .collect();
        for (name, node) in moves {
            if let Some(p) = self.personas.get_mut(&name) {
                p.node = node;
                p.epoch = ctx.index;
                p.migrating_to = None;
                p.updated_index = ctx.index;
            }
        }
    }

    fn put_persona(&mut self, spec: &PersonaSpec, node: Option<NodeId>, ctx: ApplyCtx) -> Outcome {
        if let Err(e) = spec.validate() {
            return Outcome::rejected(format!("persona spec: {e}"));
        }
        if let Some(base) = spec.base() {
            match self.personas.get(base) {
                None => return Outcome::rejected(format!("adapter.base: no persona {base:?}")),
                Some(b) if b.spec.adapter.is_some() => {
                    return Outcome::rejected(format!("adapter.base: {base:?} is itself an adapter"));
                }
                Some(_) => {}
            }
            if let Some(a) = self.adapters_of(&spec.name).next() {
                return Outcome::rejected(format!("{} is the base of {a}: it cannot become an adapter", spec.name));
            }
        }
        if let Some(n) = node
            && !self.nodes.contains_key(&n)
        {
            return Outcome::rejected(format!("no node {n}"));
        }
        match self.personas.get_mut(&spec.name) {
            Some(p) => {
                p.spec = spec.clone();
                p.budget = spec.budget.clone();
                if p.node != node {
                    p.node = node;
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
                    spec: spec.clone(),
                    node,
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

    fn change(&mut self, cmd: &Command, ctx: ApplyCtx) -> Outcome {
        match cmd {
            Command::AddNode(info) => self.add_node(info, ctx),
            Command::RemoveNode { id } => self.remove_node(*id, ctx),
            Command::PutPersona { spec, node } => self.put_persona(spec, *node, ctx),
            Command::PutPersonaV4 { spec, node } => {
                let spec: PersonaSpec = (**spec).clone().into();
                self.put_persona(&spec, *node, ctx)
            }
            Command::PutPersonaV3 { spec, node } => {
                let spec: PersonaSpec = (**spec).clone().into();
                self.put_persona(&spec, *node, ctx)
            }
            Command::RemovePersona { name } if self.adapters_of(name).next().is_some() => {
                let adapters: Vec<&str> = self.adapters_of(name).collect();
                Outcome::rejected(format!("{name} is the base of {}: remove them first", adapters.join(", ")))
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
            Command::SetDraining { id, draining } => self.set_draining(*id, *draining, None, ctx),
            Command::Drain { id, draining, by } => {
                let by = draining.then(|| by.bounded(MAX_REASON_BYTES));
                self.set_draining(*id, *draining, by, ctx)
            }
            Command::Decide { decisions, at_ms } => self.decide(decisions, *at_ms, ctx),
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
                if self.decisions.binary_search_by_key(seq, |d| d.seq).is_err() {
                    return Outcome::rejected(format!("no decision {seq} (too old or never recorded)"));
                }
                self.report(std::slice::from_ref(seq), *node, *at_ms, *ok, outcome, ctx);
                Outcome::Done
            }
            Command::Report { seqs, node, at_ms, ok, outcome } => {
                if seqs.len() > MAX_DECISIONS_PER_COMMAND {
                    return Outcome::rejected(format!("at most {MAX_DECISIONS_PER_COMMAND} decisions per report"));
                }
                self.report(seqs, *node, *at_ms, *ok, outcome, ctx);
                Outcome::Done
            }
        }
    }

    fn set_draining(&mut self, id: NodeId, draining: bool, by: Option<Actor>, ctx: ApplyCtx) -> Outcome {
        match self.nodes.get_mut(&id) {
            Some(n) => {
                n.draining = draining;
                n.drained_by = by;
                n.updated_index = ctx.index;
                Outcome::Done
            }
            None => Outcome::rejected(format!("no node {id}")),
        }
    }

    /// The verdict of a node on decisions it carried out. Only a pending decision takes one:
    /// the first report stands, and a refused or superseded decision is never "executed".
    fn report(&mut self, seqs: &[u64], node: NodeId, at_ms: u64, ok: bool, outcome: &str, ctx: ApplyCtx) {
        let text = truncate_str(outcome, MAX_REASON_BYTES).to_owned();
        for seq in seqs {
            let Ok(i) = self.decisions.binary_search_by_key(seq, |d| d.seq) else { continue };
            let d = &mut self.decisions[i];
            if !d.verdict.is_pending() {
                continue;
            }
            d.verdict = if ok {
                Verdict::Executed { node, at_ms, detail: text.clone() }
            } else {
                Verdict::Failed { node, at_ms, reason: text.clone() }
            };
            d.updated_index = ctx.index;
            self.decisions_updated_index = ctx.index;
        }
    }

    /// Decisions and their changes, in one entry: each change applied or refused, each
    /// decision recorded with that verdict.
    fn decide(&mut self, entries: &[Decided], at_ms: u64, ctx: ApplyCtx) -> Outcome {
        if entries.len() > MAX_DECISIONS_PER_COMMAND {
            return Outcome::rejected(format!("at most {MAX_DECISIONS_PER_COMMAND} decisions per command"));
        }
        for e in entries {
            if let Err(reason) = check_decision(&e.decision) {
                return Outcome::rejected(reason);
            }
            // no nesting, and no decision that writes the audit trail itself
            if let Some(
                c @ (Command::Decide { .. }
                | Command::RecordDecisions { .. }
                | Command::MarkExecuted { .. }
                | Command::Report { .. }),
            ) = &e.change
            {
                return Outcome::rejected(format!("a decision cannot ask for {}", c.kind()));
            }
        }
        self.next_decision_seq = self.next_decision_seq.max(1);
        let first_seq = self.next_decision_seq;
        let mut outcomes = Vec::with_capacity(entries.len());
        for e in entries {
            let seq = self.next_decision_seq;
            let mut budget = None;
            let (outcome, verdict) = match &e.change {
                None => (Outcome::Done, Verdict::Recorded),
                Some(change) => {
                    let before = match change {
                        Command::SetBudget { name, patch } => {
                            self.personas.get(name).map(|p| (name, patch, p.budget.clone()))
                        }
                        _ => None,
                    };
                    let outcome = self.execute(change, ctx);
                    if let Some((name, patch, before)) = before
                        && !matches!(outcome, Outcome::Rejected { .. })
                    {
                        budget = self.personas.get(name).map(|p| BudgetChange::between(&before, patch, &p.budget));
                    }
                    let verdict = match &outcome {
                        Outcome::Rejected { reason } => {
                            Verdict::Refused { reason: truncate_str(reason, MAX_REASON_BYTES).to_owned() }
                        }
                        // planned on a registry that has moved on since
                        Outcome::Moved { moved: 0, stale } if *stale > 0 => Verdict::Superseded { by_seq: None },
                        _ => Verdict::initial(e.decision.action),
                    };
                    (outcome, verdict)
                }
            };
            outcomes.push(outcome);
            // an analyst saying again what it said (watching, the same throttle): counted on
            // the record it repeats, its change (if any) applied above
            if matches!(e.by, Actor::Analyst { .. })
                && !matches!(verdict, Verdict::Refused { .. })
                && self.repeat(&e.decision, at_ms)
            {
                continue;
            }
            if verdict.is_pending() {
                self.supersede(&e.decision, seq, ctx);
            }
            self.push_decision(e.decision.clone(), e.by.bounded(MAX_REASON_BYTES), &e.verb, verdict, at_ms, ctx);
            if let Some(r) = self.decisions.back_mut() {
                r.budget = budget;
            }
        }
        Outcome::Decided { first_seq, outcomes }
    }

    /// A new decision about a persona overtakes the ones about it still waiting for its node,
    /// which will only ever carry out the newest. (A throttle and a change of phase do not
    /// overtake each other: the node applies both.)
    fn supersede(&mut self, newer: &Decision, by_seq: u64, ctx: ApplyCtx) {
        if matches!(newer.action, Action::Throttle | Action::Budget) {
            return;
        }
        let mut changed = false;
        for d in self.decisions.iter_mut().rev().take(MAX_SUPERSEDE_SCAN) {
            if d.verdict.is_pending()
                && !matches!(d.decision.action, Action::Throttle | Action::Budget)
                && d.decision.persona == newer.persona
            {
                d.verdict = Verdict::Superseded { by_seq: Some(by_seq) };
                d.updated_index = ctx.index;
                changed = true;
            }
        }
        if changed {
            self.decisions_updated_index = ctx.index;
        }
    }

    /// Says `d` only again what the persona's latest record says (see [`repeated`])? Then
    /// that record counts it, and nothing is appended.
    fn repeat(&mut self, d: &Decision, at_ms: u64) -> bool {
        let Some(last) = repeated(&mut self.decisions, d, at_ms) else { return false };
        last.repeats = last.repeats.saturating_add(1);
        last.last_seen_ms = Some(at_ms);
        last.decision.reason = truncate_str(&d.reason, MAX_REASON_BYTES).to_owned();
        last.decision.confidence = d.confidence;
        last.decision.cycle = d.cycle;
        true
    }

    fn push_decision(&mut self, d: Decision, by: Actor, verb: &str, verdict: Verdict, at_ms: u64, ctx: ApplyCtx) {
        let mut decision = d;
        decision.reason = truncate_str(&decision.reason, MAX_REASON_BYTES).to_owned();
        if let Some(t) = &decision.target {
            decision.target = Some(truncate_str(t, MAX_REASON_BYTES).to_owned());
        }
        push_bounded(
            &mut self.decisions,
            DecisionRecord {
                seq: self.next_decision_seq,
                decision,
                by,
                verb: truncate_str(verb, MAX_VERB_BYTES).to_owned(),
                index: ctx.index,
                decided_at_ms: at_ms,
                verdict,
                updated_index: ctx.index,
                repeats: 0,
                last_seen_ms: None,
                budget: None,
            },
        );
        self.next_decision_seq += 1;
        self.decisions_updated_index = ctx.index;
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
                    drained_by: None,
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
            if let Err(reason) = check_decision(d) {
                return Outcome::rejected(reason);
            }
        }
        // sequence numbers start at 1, as the event log's do: "after 0" means "from the start"
        self.next_decision_seq = self.next_decision_seq.max(1);
        let first_seq = self.next_decision_seq;
        let mut appended = 0u32;
        // (entries of logs written before `Decide`: the analyst kind is all they say of who)
        for d in decisions {
            let by = Actor::from_analyst(d.analyst);
            if self.repeat(d, at_ms) {
                continue;
            }
            appended += 1;
            self.push_decision(d.clone(), by, d.action.as_str(), Verdict::initial(d.action), at_ms, ctx);
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

/// The longest verb kept (verbs are short words; a longer one is cut).
const MAX_VERB_BYTES: usize = 32;
/// How many of the newest decisions a new one looks through for pending ones it overtakes:
/// bounds the work of applying one (a failover batch records a thousand). A decision pending
/// longer than that is one its node never reported on: it stays pending.
const MAX_SUPERSEDE_SCAN: usize = 2 * MAX_DECISIONS_PER_COMMAND;

fn check_decision(d: &Decision) -> Result<(), String> {
    validate_name(&d.persona).map_err(|e| format!("decision for persona {e}"))?;
    if !d.confidence.is_finite() || d.throttle_multiplier.is_some_and(|m| !m.is_finite()) {
        return Err("decision figures must be numbers".into());
    }
    Ok(())
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
    // a budget change is a change, with its own before and after: always a line of its own
    if d.action.is_disruptive()
        || matches!(d.action, Action::Wake | Action::Budget)
        || d.analyst == AnalystKind::Operator
    {
        return None;
    }
    // (budget changes are lines of their own between the watches: a watch repeats the
    // persona's latest other record)
    let last = log.iter_mut().rev().find(|r| r.decision.persona == d.persona && r.decision.action != Action::Budget)?;
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
