//! The leader's failover and placement plan, pure: from the registry and the nodes the leader
//! has declared lost, what moves — personas of lost nodes to healthy ones (by capacity and
//! labels, most important first), pending personas to any node that now fits, and personas of
//! draining nodes, a few at a time, through migrations that carry their state.
//!
//! Fencing makes the moves safe: a node is declared lost only after it has been silent longer
//! than its lease, and a node whose lease ran out has already stopped its personas
//! (`docs/failover.md` has the timing argument).

use std::collections::BTreeSet;

use crate::action::{Action, AnalystKind, Decision};
use crate::placement::{self, NodeLoad};
use crate::registry::{Actor, Command, Decided, NodeId, Reassignment, Registry};
use crate::spec::Importance;

/// Migrations off draining nodes in flight at once (like `nomad node drain`'s max_parallel).
pub const MAX_PARALLEL_DRAIN: usize = 4;
/// Personas a single plan moves; the rest wait for the next tick.
pub const MAX_MOVES_PER_PLAN: usize = crate::registry::MAX_MOVES_PER_COMMAND;

/// What one planning pass decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailoverPlan {
    /// One batch of reassignments (failover, pending placement).
    pub moves: Vec<Reassignment>,
    /// Migrations to start (drains).
    pub migrations: Vec<(String, NodeId)>,
    /// Why, for the decision log: one per moved or migrating persona, the moves' first.
    pub decisions: Vec<Decision>,
    /// Who asked for each decision and the verb (`failover`, `place`, `drain`), in step.
    pub by: Vec<(Actor, &'static str)>,
}

impl FailoverPlan {
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty() && self.migrations.is_empty()
    }

    /// The commands to propose: each decision with its move, a thousand to an entry, so the
    /// log says why of every move, and says "superseded" of a move the registry had already
    /// made stale.
    pub fn commands(&self, at_ms: u64) -> Vec<Command> {
        let changes = self
            .moves
            .iter()
            .map(|m| Command::Reassign { moves: vec![m.clone()] })
            .chain(self.migrations.iter().map(|(name, to)| Command::Migrate { name: name.clone(), to: *to }));
        let decided: Vec<Decided> = self
            .decisions
            .iter()
            .zip(&self.by)
            .zip(changes)
            .map(|((d, (by, verb)), change)| Decided {
                decision: d.clone(),
                by: by.clone(),
                verb: (*verb).to_owned(),
                change: Some(change),
            })
            .collect();
        decided
            .chunks(crate::registry::MAX_DECISIONS_PER_COMMAND)
            .map(|chunk| Command::Decide { decisions: chunk.to_vec(), at_ms })
            .collect()
    }
}

/// Whether the leader must plan again: only when what a plan is made from has changed since
/// the last one — the registry's placement (nodes, where personas are or go) or the set of
/// lost nodes. Planning a 100,000-persona registry every tick cost the leader a core.
#[derive(Debug, Clone, Default)]
pub struct Replan {
    last: Option<(u64, BTreeSet<NodeId>)>,
}

impl Replan {
    /// True (and remembered) if the registry's placement or `lost` changed since the last
    /// call that answered true.
    pub fn needed(&mut self, registry: &Registry, lost: &BTreeSet<NodeId>) -> bool {
        if self.last.as_ref().is_some_and(|(index, l)| *index == registry.placement_index && l == lost) {
            return false;
        }
        self.last = Some((registry.placement_index, lost.clone()));
        true
    }

    /// Plan on the next tick whatever happened (a plan not committed, a new term).
    pub fn forget(&mut self) {
        self.last = None;
    }
}

/// Plan one pass. `lost` are nodes silent past the failover delay; `silent_ms` says for how
/// long (for the reasons).
pub fn plan(registry: &Registry, lost: &BTreeSet<NodeId>, silent_ms: impl Fn(NodeId) -> u64) -> FailoverPlan {
    let mut loads = placement::loads(registry, |id| !lost.contains(&id));
    let index_of = |loads: &[NodeLoad], id: NodeId| loads.iter().position(|n| n.id == id);
    let name_of = |id: NodeId| registry.nodes.get(&id).map_or_else(|| id.to_string(), |n| n.info.name.clone());
    let mut out = FailoverPlan::default();

    // personas that must find a node: those of lost nodes, and the pending ones (not adapters:
    // the registry places each where its base is)
    let mut homeless: Vec<(&String, Option<NodeId>)> = registry
        .personas
        .iter()
        .filter(|(_, p)| p.spec.adapter.is_none())
        .filter(|(_, p)| match p.node {
            Some(n) => lost.contains(&n) || !registry.nodes.contains_key(&n),
            None => true,
        })
        .map(|(name, p)| (name, p.node))
        .collect();
    // the most important first, so they get the room there is
    homeless.sort_by_key(|(name, _)| rank(registry.personas[*name].spec.importance));
    for (name, from) in homeless {
        if out.moves.len() >= MAX_MOVES_PER_PLAN {
            break;
        }
        let spec = &registry.personas[name].spec;
        match placement::place_index(spec, &loads) {
            Ok(i) => {
                loads[i].add(spec);
                let to = loads[i].id;
                out.moves.push(Reassignment { name: name.clone(), from, to: Some(to) });
                let why = match from {
                    Some(n) => format!(
                        "failover: node {} silent for {} ms; moved to {}",
                        name_of(n),
                        silent_ms(n),
                        loads[i].name
                    ),
                    None => format!("placed on {} (was pending)", loads[i].name),
                };
                out.decisions.push(decision(name, &loads[i].name, why));
                out.by.push(match from {
                    Some(_) => (Actor::Failover, "failover"),
                    None => (Actor::Policy { name: "placement".into() }, "place"),
                });
            }
            Err(e) => {
                if let Some(n) = from {
                    // it cannot stay on a lost node: it waits, pending, for room
                    out.moves.push(Reassignment { name: name.clone(), from, to: None });
                    let why = format!("failover: node {} silent for {} ms; pending: {e}", name_of(n), silent_ms(n));
                    out.decisions.push(Decision::new(name, Action::Investigate, why, 1.0, AnalystKind::Failover));
                    out.by.push((Actor::Failover, "failover"));
                }
            }
        }
    }

    // drains: a few migrations at a time
    let in_flight = registry.personas.values().filter(|p| p.migrating_to.is_some()).count();
    let mut budget = MAX_PARALLEL_DRAIN.saturating_sub(in_flight);
    for (name, p) in &registry.personas {
        if budget == 0 {
            break;
        }
        let Some(node) = p.node else { continue };
        let Some(drained) = registry.nodes.get(&node).filter(|n| n.draining) else { continue };
        if p.migrating_to.is_some() || lost.contains(&node) {
            continue;
        }
        let Some(_) = index_of(&loads, node) else { continue };
        if let Ok(i) = placement::place_index(&p.spec, &loads) {
            loads[i].add(&p.spec);
            out.migrations.push((name.clone(), loads[i].id));
            // in the name of whoever drained the node (an operator, as the log must say)
            let by = drained.drained_by.clone().unwrap_or(Actor::Policy { name: "drain".into() });
            let why = format!("drain of {} (by {}): migrating to {}", name_of(node), by.describe(), loads[i].name);
            let mut d = decision(name, &loads[i].name, why);
            if matches!(by, Actor::Operator { .. }) {
                d.analyst = AnalystKind::Operator;
            }
            out.decisions.push(d);
            out.by.push((by, "drain"));
            budget -= 1;
        }
    }
    out
}

fn decision(persona: &str, target: &str, reason: String) -> Decision {
    let mut d = Decision::new(persona, Action::Migrate, reason, 1.0, AnalystKind::Failover);
    d.target = Some(target.to_owned());
    d
}

fn rank(i: Importance) -> u8 {
    match i {
        Importance::System => 0,
        Importance::UserFacing => 1,
        Importance::Background => 2,
    }
}

#[cfg(test)]
mod tests;
