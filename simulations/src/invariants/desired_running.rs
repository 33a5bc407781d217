//! Liveness of failover (b): once every fault is healed, within the failover bound
//! ([`crate::SimConfig::failover_bound_ms`]), every persona the registry wants running runs on
//! exactly the node it places it on — and from then on stays so, at every step.
//!
//! The registry judged is the newest one applied by a live node. A change not yet applied by
//! every live node is not judged yet (a node acts on the registry it holds); the run's final
//! catch-up check fails a node that never applies it. Past the bound, a shortfall may last
//! [`GRACE_MS`]: a persona written after the heal without a node waits for the leader's
//! placement (its failover loop ticks every 200 ms), and a node acts on a registry change a
//! moment after applying it.

use std::collections::BTreeSet;

use mindmesh_core::registry::DesiredPhase;

use super::{Invariant, Observation};

/// How long, past the bound, a shortfall may last (see the module's documentation).
pub const GRACE_MS: u64 = 500;

#[derive(Debug)]
pub struct DesiredRunning {
    bound_ms: u64,
    /// Since when the judgement has failed, without a break.
    failing_since_ms: Option<u64>,
}

impl DesiredRunning {
    pub fn new(bound_ms: u64) -> Self {
        DesiredRunning { bound_ms, failing_since_ms: None }
    }
}

impl Invariant for DesiredRunning {
    fn name(&self) -> &'static str {
        "desired_running"
    }

    fn check(&mut self, obs: &Observation<'_>) -> Result<(), String> {
        let Some(healed) = obs.healed_at_ms.filter(|h| obs.now_ms >= h + self.bound_ms) else {
            return Ok(());
        };
        match judge(obs) {
            Ok(()) => {
                self.failing_since_ms = None;
                Ok(())
            }
            Err(e) => {
                let since = *self.failing_since_ms.get_or_insert(obs.now_ms);
                if obs.now_ms - since > GRACE_MS {
                    Err(format!(
                        "{e}, {} ms after healing (bound {} ms, for {} ms)",
                        obs.now_ms - healed,
                        self.bound_ms,
                        obs.now_ms - since
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Does every persona desired running run exactly where the registry places it, and nothing
/// else run anywhere, now?
pub fn judge(obs: &Observation<'_>) -> Result<(), String> {
    let Some((_, newest)) = obs.registries.iter().max_by_key(|(_, r)| r.applied_index) else {
        return Err("no live node".into());
    };
    let settled = obs.registries.iter().map(|(_, r)| r.applied_index).min().unwrap_or(0);
    for (name, p) in &newest.personas {
        if p.updated_index > settled {
            continue;
        }
        let on = obs.procs.nodes_running(name);
        match (p.phase, p.node) {
            (DesiredPhase::Running, None) => return Err(format!("persona {name} is pending, run by {on:?}")),
            // an operator took away its right to run: it runs nowhere
            (DesiredPhase::Running, _) if !p.budget.allowed_to_run && !on.is_empty() => {
                return Err(format!("persona {name}, not allowed to run, runs on {on:?}"));
            }
            (DesiredPhase::Running, _) if !p.budget.allowed_to_run => {}
            (DesiredPhase::Running, Some(n)) if on != BTreeSet::from([n]) => {
                return Err(format!("persona {name}, placed on node {n}, runs on {on:?}"));
            }
            (DesiredPhase::Running, Some(_)) => {}
            (phase, _) if !on.is_empty() => {
                return Err(format!("persona {name}, desired {}, runs on {on:?}", phase.as_str()));
            }
            _ => {}
        }
    }
    // what runs but the registry no longer knows (removed personas)
    if let Some((name, on)) = obs.procs.running().find(|(name, _)| !newest.personas.contains_key(*name)) {
        return Err(format!("persona {name}, not in the registry, runs on {on:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mindmesh_core::registry::{ApplyCtx, Command, Proposal, ProposalId, Registry};
    use mindmesh_core::spec::PersonaSpec;

    use super::*;
    use crate::processes::{ProcEvent, ProcKind, ProcessTable};

    fn registry_with(placed: &[(&str, u64)]) -> Registry {
        let mut r = Registry::default();
        let mut index = 0;
        let mut apply = |r: &mut Registry, command: Command| {
            index += 1;
            r.apply(&Proposal { id: ProposalId { node: 1, nonce: index }, command }, ApplyCtx { index, term: 1 });
        };
        for id in 1..=3 {
            let info = mindmesh_core::registry::NodeInfo {
                id,
                name: format!("n{id}"),
                addrs: vec![],
                capacity: Default::default(),
                labels: Default::default(),
                api: String::new(),
            };
            apply(&mut r, Command::AddNode(info));
        }
        for (name, node) in placed {
            apply(&mut r, Command::put_persona(PersonaSpec::new(name, "sim"), Some(*node)));
        }
        r
    }

    fn start(name: &str, node: u64) -> ProcEvent {
        ProcEvent { at_us: 0, node, pid: 1, persona: name.into(), kind: ProcKind::Start }
    }

    #[test]
    fn judged_only_past_the_bound_after_healing() {
        let regs = [(1, Arc::new(registry_with(&[("a", 1)])))];
        let procs = ProcessTable::default();
        let mut inv = DesiredRunning::new(5000);
        let mut obs = Observation::of(10_000, &[], &regs, &[], &procs);
        assert!(inv.check(&obs).is_ok(), "not healed yet: not judged");
        obs.healed_at_ms = Some(6000);
        assert!(inv.check(&obs).is_ok(), "within the bound");
        obs.healed_at_ms = Some(5000);
        assert!(inv.check(&obs).is_ok(), "past the bound, a moment's grace");
        obs.now_ms += GRACE_MS + 1;
        let err = inv.check(&obs).unwrap_err();
        assert!(err.contains("persona a, placed on node 1, runs on {}"), "{err}");
    }

    #[test]
    fn each_persona_runs_where_placed_and_only_there() {
        let regs =
            [(1, Arc::new(registry_with(&[("a", 1), ("b", 2)]))), (2, Arc::new(registry_with(&[("a", 1), ("b", 2)])))];
        let mut procs = ProcessTable::default();
        procs.replay(&[start("a", 1), start("b", 2)]);
        assert_eq!(judge(&Observation::of(0, &[], &regs, &[], &procs)), Ok(()));
        procs.replay(&[start("b", 3)]);
        assert!(judge(&Observation::of(0, &[], &regs, &[], &procs)).unwrap_err().contains("runs on {2, 3}"));
        let mut procs = ProcessTable::default();
        procs.replay(&[start("a", 1), start("b", 2), start("c", 2)]);
        assert!(judge(&Observation::of(0, &[], &regs, &[], &procs)).unwrap_err().contains("not in the registry"));
    }

    #[test]
    fn a_change_some_node_has_not_applied_is_not_judged_yet() {
        let behind = registry_with(&[("a", 1)]);
        let ahead = registry_with(&[("a", 1), ("b", 2)]);
        let regs = [(1, Arc::new(ahead)), (2, Arc::new(behind))];
        let mut procs = ProcessTable::default();
        procs.replay(&[start("a", 1)]);
        assert_eq!(judge(&Observation::of(0, &[], &regs, &[], &procs)), Ok(()));
    }
}
