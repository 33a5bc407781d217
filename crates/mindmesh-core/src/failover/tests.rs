use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::registry::{ApplyCtx, Capacity, NodeInfo, Outcome, Proposal, ProposalId};
use crate::spec::PersonaSpec;

struct Mesh {
    reg: Registry,
    index: u64,
}

impl Mesh {
    fn new() -> Self {
        Mesh { reg: Registry::new(), index: 0 }
    }
    fn apply(&mut self, command: Command) -> Outcome {
        self.index += 1;
        let p = Proposal { id: ProposalId { node: 1, nonce: self.index }, command };
        self.reg.apply(&p, ApplyCtx { index: self.index, term: 1 })
    }
    fn node(&mut self, id: NodeId, memory_mb: u64, labels: &[(&str, &str)]) {
        let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let info = NodeInfo {
            id,
            name: format!("n{id}"),
            addrs: vec![],
            capacity: Capacity { memory_mb, cpu_percent: 400.0 },
            labels,
            api: String::new(),
        };
        assert_eq!(self.apply(Command::AddNode(info)), Outcome::Done);
    }
    fn persona(&mut self, name: &str, node: NodeId, memory_mb: u64, importance: Importance) {
        let mut spec = PersonaSpec::new(name, "srv");
        spec.requests.memory_mb = memory_mb;
        spec.importance = importance;
        assert!(!self.apply(Command::put_persona(spec, Some(node))).is_rejected());
    }
}

fn lost(ids: &[NodeId]) -> BTreeSet<NodeId> {
    ids.iter().copied().collect()
}

#[test]
fn personas_of_a_lost_node_move_to_healthy_nodes_with_room_most_important_first() {
    let mut m = Mesh::new();
    m.node(1, 1000, &[]);
    m.node(2, 1000, &[]);
    m.node(3, 300, &[]);
    m.persona("bg", 1, 200, Importance::Background);
    m.persona("sys", 1, 200, Importance::System);
    m.persona("stay", 2, 900, Importance::UserFacing);
    let p = plan(&m.reg, &lost(&[1]), |_| 2100);
    // node 2 has 100 MB left, node 3 has 300: only one fits, the system persona gets it
    assert_eq!(p.moves.len(), 2);
    let sys = p.moves.iter().find(|mv| mv.name == "sys").unwrap();
    assert_eq!((sys.from, sys.to), (Some(1), Some(3)));
    let bg = p.moves.iter().find(|mv| mv.name == "bg").unwrap();
    assert_eq!((bg.from, bg.to), (Some(1), None), "no room: pending, never left on a lost node");
    assert!(p.decisions.iter().any(|d| d.persona == "sys" && d.reason.contains("silent for 2100 ms")));
    for c in p.commands(5) {
        assert!(!m.apply(c).is_rejected());
    }
    assert_eq!(m.reg.personas["sys"].node, Some(3));
    assert_eq!(m.reg.personas["bg"].node, None);
    // node 1 comes back: the pending persona is placed there on the next pass
    let p = plan(&m.reg, &lost(&[]), |_| 0);
    assert_eq!(p.moves, vec![Reassignment { name: "bg".into(), from: None, to: Some(1) }]);
}

#[test]
fn required_labels_hold_during_failover() {
    let mut m = Mesh::new();
    m.node(1, 1000, &[("gpu", "true")]);
    m.node(2, 1000, &[]);
    m.node(3, 1000, &[("gpu", "true")]);
    let mut spec = PersonaSpec::new("vision", "srv");
    spec.placement.require.insert("gpu".into(), "true".into());
    assert!(!m.apply(Command::put_persona(spec, Some(1))).is_rejected());
    let p = plan(&m.reg, &lost(&[1]), |_| 3000);
    assert_eq!(p.moves[0].to, Some(3));
    let p = plan(&m.reg, &lost(&[1, 3]), |_| 3000);
    assert_eq!(p.moves[0].to, None, "no gpu node left: pending");
}

#[test]
fn a_drain_migrates_a_few_at_a_time_and_healthy_nodes_see_no_moves() {
    let mut m = Mesh::new();
    m.node(1, 10_000, &[]);
    m.node(2, 10_000, &[]);
    for i in 0..10 {
        m.persona(&format!("p{i}"), 1, 10, Importance::UserFacing);
    }
    assert!(plan(&m.reg, &lost(&[]), |_| 0).is_empty());
    assert_eq!(m.apply(Command::SetDraining { id: 1, draining: true }), Outcome::Done);
    let p = plan(&m.reg, &lost(&[]), |_| 0);
    assert_eq!(p.migrations.len(), MAX_PARALLEL_DRAIN);
    assert!(p.migrations.iter().all(|(_, to)| *to == 2));
    for c in p.commands(1) {
        assert!(!m.apply(c).is_rejected());
    }
    assert!(plan(&m.reg, &lost(&[]), |_| 0).migrations.is_empty(), "no more until those complete");
}

/// An operator's drain is logged in the operator's name, as a drain — not as the failover
/// planner's; a failover move the registry made stale meanwhile is logged as superseded.
#[test]
fn a_drain_is_logged_as_the_operators_and_a_stale_move_as_superseded() {
    use crate::registry::{Actor, Verdict};
    let mut m = Mesh::new();
    m.node(1, 10_000, &[]);
    m.node(2, 10_000, &[]);
    m.node(3, 10_000, &[]);
    m.persona("p", 1, 10, Importance::UserFacing);
    m.persona("q", 3, 10, Importance::UserFacing);
    let alice = Actor::Operator { token: "alice".into(), via: Some("n2".into()) };
    assert_eq!(m.apply(Command::Drain { id: 1, draining: true, by: alice.clone() }), Outcome::Done);
    for c in plan(&m.reg, &lost(&[]), |_| 0).commands(7) {
        assert!(!m.apply(c).is_rejected());
    }
    let d = m.reg.decisions.back().unwrap();
    assert_eq!((d.verb.as_str(), &d.by, d.decision.analyst), ("drain", &alice, AnalystKind::Operator));
    assert!(d.decision.reason.contains("by operator alice via n2"), "{}", d.decision.reason);
    assert_eq!(d.verdict, Verdict::Pending);

    // node 3 is lost; before the plan commits, q is moved elsewhere by someone else
    let p = plan(&m.reg, &lost(&[3]), |_| 5000);
    assert_eq!(p.by[0], (Actor::Failover, "failover"));
    m.apply(Command::AssignPersona { name: "q".into(), node: Some(2) });
    for c in p.commands(8) {
        m.apply(c);
    }
    let d = m.reg.decisions.back().unwrap();
    assert_eq!((d.decision.persona.as_str(), &d.verdict), ("q", &Verdict::Superseded { by_seq: None }));
}

#[test]
fn the_leader_plans_again_only_when_placement_or_the_lost_nodes_change() {
    let mut m = Mesh::new();
    m.node(1, 10_000, &[]);
    m.node(2, 10_000, &[]);
    m.persona("p", 1, 10, Importance::UserFacing);
    let mut replan = Replan::default();
    assert!(replan.needed(&m.reg, &lost(&[])));
    assert!(!replan.needed(&m.reg, &lost(&[])), "nothing changed");
    // a checkpoint, a phase change, a decision: none changes a plan
    m.apply(Command::Checkpoint {
        name: "p".into(),
        node: 1,
        epoch: m.reg.personas["p"].epoch,
        state: vec![1],
        at_ms: 1,
    });
    m.apply(Command::SetPhase { name: "p".into(), phase: crate::registry::DesiredPhase::Hibernating, reason: None });
    assert!(!replan.needed(&m.reg, &lost(&[])));
    assert!(replan.needed(&m.reg, &lost(&[1])), "a node lost");
    for c in plan(&m.reg, &lost(&[1]), |_| 0).commands(1) {
        m.apply(c);
    }
    assert!(replan.needed(&m.reg, &lost(&[1])), "the plan's moves committed");
    assert!(plan(&m.reg, &lost(&[1]), |_| 0).is_empty());
    assert!(!replan.needed(&m.reg, &lost(&[1])));
    replan.forget();
    assert!(replan.needed(&m.reg, &lost(&[1])));
}
