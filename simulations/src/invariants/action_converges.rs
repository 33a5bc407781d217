//! Desired state holds: after an operator's verb the mesh acknowledged, within a bound
//! ([`crate::SimConfig::action_bound_ms`]), the processes of every persona it touched match
//! what the registry wants of it now — running on exactly its node if desired running and
//! allowed to run, running nowhere otherwise. A fault starting before the deadline (a crash, a
//! partition, lossy links) voids the judgement of the verbs it overlaps; [`desired_running`]
//! judges everything again once every fault is healed.
//!
//! [`desired_running`]: super::desired_running

use std::collections::BTreeSet;

use mindmesh_core::registry::{DesiredPhase, Registry};

use super::{Invariant, Observation};

/// A verb waiting to be seen carried out.
#[derive(Debug, Clone)]
struct Pending {
    what: String,
    at_ms: u64,
    personas: Vec<String>,
}

#[derive(Debug)]
pub struct ActionConverges {
    bound_ms: u64,
    pending: Vec<Pending>,
}

impl ActionConverges {
    pub fn new(bound_ms: u64) -> Self {
        ActionConverges { bound_ms, pending: Vec::new() }
    }
}

/// Where `persona` should run now by `registry`: `Ok(Some(node))`, `Ok(None)` for nowhere, or
/// `Err` while the registry itself is mid-way (pending placement, migrating).
pub fn wanted_on(registry: &Registry, persona: &str) -> Result<Option<u64>, String> {
    let Some(e) = registry.personas.get(persona) else { return Ok(None) };
    if e.migrating_to.is_some() {
        return Err(format!("{persona} is migrating"));
    }
    match (e.phase, e.node) {
        (DesiredPhase::Running, _) if !e.budget.allowed_to_run => Ok(None),
        (DesiredPhase::Running, Some(n)) => Ok(Some(n)),
        (DesiredPhase::Running, None) => Err(format!("{persona} waits for a node")),
        _ => Ok(None),
    }
}

fn converged(obs: &Observation<'_>, persona: &str) -> Result<(), String> {
    let Some((_, newest)) = obs.registries.iter().max_by_key(|(_, r)| r.applied_index) else {
        return Err("no live node".into());
    };
    let want: BTreeSet<u64> = wanted_on(newest, persona)?.into_iter().collect();
    let on = obs.procs.nodes_running(persona);
    if on == want {
        Ok(())
    } else {
        let phase = newest.personas.get(persona).map_or("removed", |e| e.phase.as_str());
        Err(format!("{persona} (desired {phase}) should run on {want:?}, runs on {on:?}"))
    }
}

impl Invariant for ActionConverges {
    fn name(&self) -> &'static str {
        "action_converges"
    }

    fn check(&mut self, obs: &Observation<'_>) -> Result<(), String> {
        if obs.disturbed {
            self.pending.clear();
        }
        for act in obs.acted {
            self.pending.push(Pending { what: act.what.clone(), at_ms: act.at_ms, personas: act.personas.clone() });
        }
        let bound_ms = self.bound_ms;
        let mut broken = None;
        self.pending.retain_mut(|p| {
            p.personas.retain(|name| converged(obs, name).is_err());
            if p.personas.is_empty() {
                return false;
            }
            if obs.now_ms > p.at_ms + bound_ms && broken.is_none() {
                let why: Vec<String> = p.personas.iter().filter_map(|n| converged(obs, n).err()).collect();
                broken = Some(format!(
                    "{} at {} ms not carried out within {bound_ms} ms: {}",
                    p.what,
                    p.at_ms,
                    why.join("; ")
                ));
            }
            true
        });
        broken.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mindmesh_core::registry::{ApplyCtx, Command, Proposal, ProposalId};
    use mindmesh_core::spec::PersonaSpec;

    use super::*;
    use crate::invariants::Acted;
    use crate::processes::{ProcEvent, ProcKind, ProcessTable};

    fn registry(phase: DesiredPhase) -> Registry {
        let mut r = Registry::default();
        let cmds = [
            Command::put_persona(PersonaSpec::new("a", "sim"), Some(1)),
            Command::SetPhase { name: "a".into(), phase, reason: None },
        ];
        for (i, command) in cmds.into_iter().enumerate() {
            let index = i as u64 + 1;
            r.apply(&Proposal { id: ProposalId { node: 1, nonce: index }, command }, ApplyCtx { index, term: 1 });
        }
        r
    }

    #[test]
    fn a_verb_not_carried_out_in_time_is_caught_and_one_carried_out_is_not() {
        let regs = [(1, Arc::new(registry(DesiredPhase::Hibernating)))];
        let mut procs = ProcessTable::default();
        procs.replay(&[ProcEvent { at_us: 0, node: 1, pid: 9, persona: "a".into(), kind: ProcKind::Start }]);
        let acted = [Acted { what: "hibernate a".into(), at_ms: 1000, personas: vec!["a".into()] }];
        let mut inv = ActionConverges::new(5000);
        let mut obs = Observation::of(1000, &[], &regs, &[], &procs);
        obs.acted = &acted;
        assert!(inv.check(&obs).is_ok(), "within the bound");
        let mut obs = Observation::of(6001, &[], &regs, &[], &procs);
        let err = inv.check(&obs).unwrap_err();
        assert!(err.contains("hibernate a") && err.contains("runs on {1}"), "{err}");
        // a fault voids it
        obs.disturbed = true;
        assert!(inv.check(&obs).is_ok());
        // carried out: no complaint
        let mut obs = Observation::of(1000, &[], &regs, &[], &procs);
        obs.acted = &acted;
        inv.check(&obs).unwrap();
        let mut stopped = ProcessTable::default();
        stopped.replay(&[
            ProcEvent { at_us: 0, node: 1, pid: 9, persona: "a".into(), kind: ProcKind::Start },
            ProcEvent {
                at_us: 1,
                node: 1,
                pid: 9,
                persona: "a".into(),
                kind: ProcKind::Exit(mindmesh_core::lifecycle::ExitStatus::Signal(15)),
            },
        ]);
        assert!(inv.check(&Observation::of(9000, &[], &regs, &[], &stopped)).is_ok());
    }
}
