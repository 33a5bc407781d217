//! Where a request for a model goes. The one place that decides: a persona of this node, a
//! persona the registry places on another node (forwarded there), one on its way (being
//! placed, migrating, not started here yet: the request waits), or nobody. The registry's
//! placement wins over a process still running here: a persona that moved away is served by
//! its new node, never by the stale process (fencing at the gateway), and a fenced node serves
//! nothing of its own.

use std::collections::BTreeMap;

use mindmesh_core::registry::{NodeId, Registry};
use mindmesh_supervisor::PersonaStatus;

#[derive(Debug, Clone, PartialEq)]
pub enum Route<'a> {
    /// A persona this node supervises, in whatever phase it is.
    Local(&'a PersonaStatus),
    /// A persona on another node: its API and gateway address.
    Remote { api: String },
    /// Placed nowhere yet, migrating, or placed here but not started yet: wait for the
    /// registry (or this node) to catch up.
    Wait,
    /// Placed here, but this node has lost its lease: it may serve nothing.
    Fenced,
    /// No persona by that name.
    Unknown,
}

/// What the gateway knows of the mesh.
#[derive(Debug, Clone, Copy)]
pub struct MeshRoute<'r> {
    pub registry: &'r Registry,
    pub me: NodeId,
    /// False while this node is fenced.
    pub may_run: bool,
}

/// The model of an OpenAI request names a persona.
pub fn route<'a>(local: &'a BTreeMap<String, PersonaStatus>, mesh: Option<MeshRoute<'_>>, model: &str) -> Route<'a> {
    let here = || local.get(model).map_or(Route::Unknown, Route::Local);
    let Some(m) = mesh else { return here() };
    let Some(entry) = m.registry.personas.get(model) else { return here() };
    match entry.node {
        Some(node) if node != m.me => {
            Route::Remote { api: m.registry.nodes.get(&node).map(|n| n.info.api.clone()).unwrap_or_default() }
        }
        None => Route::Wait,
        Some(_) if entry.migrating_to.is_some() => Route::Wait,
        Some(_) if !m.may_run => Route::Fenced,
        Some(_) => match local.get(model) {
            // just added here, not started yet (a move arriving): wait for it
            Some(s) if s.phase == mindmesh_core::Phase::Pending => Route::Wait,
            Some(s) => Route::Local(s),
            None => Route::Wait,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mindmesh_core::registry::{ApplyCtx, Capacity, Command, NodeInfo, Proposal, ProposalId};
    use mindmesh_core::spec::PersonaSpec;

    fn registry(node: Option<NodeId>, migrating: bool) -> Registry {
        let mut r = Registry::new();
        let mut i = 0;
        let mut apply = |r: &mut Registry, c: Command| {
            i += 1;
            r.apply(&Proposal { id: ProposalId { node: 1, nonce: i }, command: c }, ApplyCtx { index: i, term: 1 })
        };
        for id in [1, 2] {
            let info = NodeInfo {
                id,
                name: format!("n{id}"),
                addrs: vec![],
                capacity: Capacity::default(),
                labels: Default::default(),
                api: format!("127.0.0.1:{id}"),
            };
            apply(&mut r, Command::AddNode(info));
        }
        apply(&mut r, Command::put_persona(PersonaSpec::new("p", "x"), node));
        if migrating {
            apply(&mut r, Command::Migrate { name: "p".into(), to: 2 });
        }
        r
    }

    fn status() -> BTreeMap<String, PersonaStatus> {
        let s = PersonaStatus { name: "p".into(), phase: mindmesh_core::Phase::Running, ..Default::default() };
        BTreeMap::from([("p".to_owned(), s)])
    }

    #[test]
    fn the_registry_placement_wins_over_a_stale_local_process() {
        let local = status();
        let reg = registry(Some(2), false);
        let m = MeshRoute { registry: &reg, me: 1, may_run: true };
        assert_eq!(route(&local, Some(m), "p"), Route::Remote { api: "127.0.0.1:2".into() });
    }

    #[test]
    fn moving_pending_and_fenced_personas_are_not_served_here() {
        let local = status();
        let reg = registry(Some(1), true);
        assert_eq!(route(&local, Some(MeshRoute { registry: &reg, me: 1, may_run: true }), "p"), Route::Wait);
        let reg = registry(None, false);
        assert_eq!(route(&local, Some(MeshRoute { registry: &reg, me: 1, may_run: true }), "p"), Route::Wait);
        let reg = registry(Some(1), false);
        assert_eq!(route(&local, Some(MeshRoute { registry: &reg, me: 1, may_run: false }), "p"), Route::Fenced);
        assert!(matches!(
            route(&local, Some(MeshRoute { registry: &reg, me: 1, may_run: true }), "p"),
            Route::Local(_)
        ));
        assert_eq!(route(&BTreeMap::new(), Some(MeshRoute { registry: &reg, me: 1, may_run: true }), "p"), Route::Wait);
        assert_eq!(route(&local, None, "q"), Route::Unknown);
    }
}
