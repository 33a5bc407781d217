//! What must hold of a registry after any sequence of applied proposals, however hostile: the
//! property tests, the fuzz target and the corpus replay all check these, so a violation found
//! by one is named the same way by the others.

use super::{MAX_DECISIONS_KEPT, MAX_NODES, MAX_PERSONAS, MAX_RECENT_PROPOSALS, Outcome, Registry};

impl Registry {
    /// Invariants of one registry state. `Err` names the first one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.nodes.len() > MAX_NODES || self.personas.len() > MAX_PERSONAS {
            return Err(format!("{} nodes, {} personas: over the bounds", self.nodes.len(), self.personas.len()));
        }
        for (id, n) in &self.nodes {
            if n.info.id != *id {
                return Err(format!("node {id} is filed under another id ({})", n.info.id));
            }
            if n.joined_index > n.updated_index || n.updated_index > self.applied_index {
                return Err(format!("node {id}: indexes out of order"));
            }
        }
        for (name, p) in &self.personas {
            if p.spec.name != *name {
                return Err(format!("persona {name:?} is filed under another name ({:?})", p.spec.name));
            }
            // one owner: the node it is assigned to (and the one it migrates to) are members
            if let Some(n) = p.node
                && !self.nodes.contains_key(&n)
            {
                return Err(format!("persona {name} is assigned to node {n}, which is not in the registry"));
            }
            if let Some(n) = p.migrating_to
                && (!self.nodes.contains_key(&n) || p.node == Some(n) || p.node.is_none())
            {
                return Err(format!("persona {name} migrates to node {n} from {:?}", p.node));
            }
            if p.epoch > self.applied_index || p.created_index > p.epoch || p.updated_index > self.applied_index {
                return Err(format!(
                    "persona {name}: epoch {} / created {} / updated {} against applied index {}",
                    p.epoch, p.created_index, p.updated_index, self.applied_index
                ));
            }
            if let Err(e) = p.spec.validate() {
                return Err(format!("persona {name} holds an invalid spec: {e}"));
            }
            if let Err(e) = p.budget.validate() {
                return Err(format!("persona {name} holds an invalid budget: {e}"));
            }
        }
        if self.decisions.len() > MAX_DECISIONS_KEPT {
            return Err(format!("{} decisions kept", self.decisions.len()));
        }
        let mut last = 0;
        for d in &self.decisions {
            if d.seq <= last || d.seq >= self.next_decision_seq.max(1) {
                return Err(format!(
                    "decision seq {} out of order (after {last}, next {})",
                    d.seq, self.next_decision_seq
                ));
            }
            last = d.seq;
            if d.index > d.updated_index || d.updated_index > self.decisions_updated_index {
                return Err(format!("decision {}: indexes out of order", d.seq));
            }
        }
        if self.recent.values().any(|r| r.len() > MAX_RECENT_PROPOSALS) || self.recent.len() > MAX_NODES {
            return Err("the deduplication table outgrew its bounds".into());
        }
        Ok(())
    }
}

/// Invariants of one step from `before` to `after`, which applying a proposal at `index`
/// answered with `outcome`. `Err` names the first one broken.
pub fn check_step(before: &Registry, after: &Registry, index: u64, outcome: &Outcome) -> Result<(), String> {
    if after.applied_index != index {
        return Err(format!("applied index {} after applying entry {index}", after.applied_index));
    }
    if after.next_decision_seq < before.next_decision_seq {
        return Err("decision sequence numbers went back".into());
    }
    for (name, b) in &before.personas {
        let Some(a) = after.personas.get(name) else { continue };
        // fencing: an epoch never goes back, and a new owner always comes with a new epoch, so
        // a process started by the old owner is stale everywhere
        if a.epoch < b.epoch || a.generation < b.generation {
            return Err(format!(
                "persona {name}: epoch {} → {}, generation {} → {}",
                b.epoch, a.epoch, b.generation, a.generation
            ));
        }
        if a.node != b.node && a.epoch == b.epoch {
            return Err(format!(
                "persona {name} moved from {:?} to {:?} under the same epoch {}",
                b.node, a.node, a.epoch
            ));
        }
        if a.generation != b.generation && a.epoch == b.epoch {
            return Err(format!("persona {name} restarted under the same epoch {}", a.epoch));
        }
    }
    // the audit trail is append-only: a record never changes but for its verdict and, when
    // the same decision is said again (a repeat it counts), its latest reason; a verdict other
    // than pending is final (a refused decision is never "executed" later)
    for a in &after.decisions {
        let Some(b) = before.decision(a.seq) else { continue };
        let who_what = |r: &super::DecisionRecord| {
            let d = &r.decision;
            (d.persona.clone(), d.action, d.target.clone(), d.analyst, r.by.clone(), r.verb.clone(), r.index)
        };
        let repeated = a.repeats > b.repeats;
        if who_what(a) != who_what(b) || (!repeated && a.decision != b.decision) {
            return Err(format!("decision {} was rewritten", a.seq));
        }
        if a.repeats < b.repeats {
            return Err(format!("decision {}: its repeats went back", a.seq));
        }
        if !b.verdict.is_pending() && a.verdict != b.verdict {
            return Err(format!("decision {}: verdict {:?} changed to {:?}", a.seq, b.verdict, a.verdict));
        }
    }
    if outcome.is_rejected()
        && (after.nodes != before.nodes || after.personas != before.personas || after.decisions != before.decisions)
    {
        return Err(format!("a rejected command changed the registry: {outcome:?}"));
    }
    Ok(())
}
