//! A registry for the mesh module's unit tests: one node, "a" (id 1), running the named personas.

use mindmesh_core::PersonaSpec;
use mindmesh_core::registry::{ApplyCtx, Capacity, Command, NodeInfo, Proposal, ProposalId, Registry};

pub(crate) fn one_node(personas: &[&str]) -> Registry {
    let mut r = Registry::new();
    let mut index = 0;
    let mut apply = |r: &mut Registry, command| {
        index += 1;
        let prop = Proposal { id: ProposalId { node: 1, nonce: index }, command };
        r.apply(&prop, ApplyCtx { index, term: 1 });
    };
    let info = NodeInfo {
        id: 1,
        name: "a".into(),
        addrs: vec![],
        capacity: Capacity::default(),
        labels: Default::default(),
        api: String::new(),
    };
    apply(&mut r, Command::AddNode(info));
    for name in personas {
        apply(&mut r, Command::put_persona(PersonaSpec::new(name, "x"), Some(1)));
    }
    r
}
