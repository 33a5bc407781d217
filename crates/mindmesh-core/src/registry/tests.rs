use std::collections::BTreeMap;

use super::*;
use crate::action::{Action, AnalystKind, Decision};
use crate::budget::BudgetPatch;

fn ctx(index: u64) -> ApplyCtx {
    ApplyCtx { index, term: 1 }
}

fn prop(node: NodeId, nonce: u64, command: Command) -> Proposal {
    Proposal { id: ProposalId { node, nonce }, command }
}

fn node(id: NodeId, name: &str) -> Command {
    Command::AddNode(NodeInfo {
        id,
        name: name.into(),
        addrs: vec![format!("/ip4/127.0.0.1/tcp/{id}")],
        capacity: Capacity { memory_mb: 8192, cpu_percent: 400.0 },
        labels: BTreeMap::new(),
        api: String::new(),
    })
}

/// A registry with nodes 1 and 2 and persona "chat" on node 1, at index 3.
fn seeded() -> Registry {
    let mut r = Registry::new();
    assert_eq!(r.apply(&prop(1, 1, node(1, "a")), ctx(1)), Outcome::Done);
    assert_eq!(r.apply(&prop(1, 2, node(2, "b")), ctx(2)), Outcome::Done);
    let put = Command::put_persona(PersonaSpec::new("chat", "srv"), Some(1));
    assert_eq!(r.apply(&prop(1, 3, put), ctx(3)), Outcome::Persona { generation: 0, epoch: 3 });
    r
}

#[test]
fn node_ids_are_stable_and_never_zero() {
    assert_eq!(node_id_from_bytes(b"peer"), node_id_from_bytes(b"peer"));
    assert_ne!(node_id_from_bytes(b"peer-a"), node_id_from_bytes(b"peer-b"));
    // FNV-1a 64 of the empty input is its offset basis: pins the function across versions
    assert_eq!(node_id_from_bytes(b""), 0xcbf2_9ce4_8422_2325);
}

#[test]
fn restart_is_a_conditional_generation_bump_with_a_new_epoch() {
    let mut r = seeded();
    let bump = Command::BumpGeneration { name: "chat".into(), expected: 0 };
    assert_eq!(r.apply(&prop(1, 10, bump.clone()), ctx(4)), Outcome::Persona { generation: 1, epoch: 4 });
    // the same decision proposed again by another path: refused, restarts nothing
    assert!(r.apply(&prop(2, 11, bump), ctx(5)).is_rejected());
    assert_eq!(r.personas["chat"].generation, 1);
}

#[test]
fn a_retried_proposal_answers_its_first_outcome() {
    let mut r = seeded();
    let rec = Command::RecordDecisions {
        decisions: vec![Decision::new("chat", Action::Restart, "leaking", 0.9, AnalystKind::Builtin)],
        at_ms: 42,
    };
    let first = r.apply(&prop(2, 77, rec.clone()), ctx(4));
    assert_eq!(first, Outcome::Decisions { first_seq: 1, count: 1 }, "sequence numbers start at 1");
    assert_eq!(r.apply(&prop(2, 77, rec), ctx(5)), first);
    assert_eq!(r.decisions.len(), 1);
    assert_eq!(r.applied_index, 5);
}

#[test]
fn decisions_are_logged_executed_once_and_bounded() {
    let mut r = seeded();
    let d = Decision::new("chat", Action::Hibernate, "x".repeat(5000), 0.5, AnalystKind::Llm);
    r.apply(&prop(1, 20, Command::RecordDecisions { decisions: vec![d.clone(); 3], at_ms: 7 }), ctx(4));
    assert_eq!(r.decisions[0].decision.reason.len(), MAX_REASON_BYTES);
    let mark = |nonce, node, ok| {
        prop(node, nonce, Command::MarkExecuted { seq: 1, node, at_ms: 9, ok, outcome: "hibernated".into() })
    };
    assert_eq!(r.apply(&mark(21, 1, true), ctx(5)), Outcome::Done);
    r.apply(&mark(22, 2, false), ctx(6));
    let e = r.decision(1).unwrap().executed.as_ref().unwrap();
    assert_eq!((e.node, e.ok), (1, true), "the first report stands");
    assert!(
        r.apply(
            &prop(1, 23, Command::MarkExecuted { seq: 99, node: 1, at_ms: 0, ok: true, outcome: String::new() }),
            ctx(7)
        )
        .is_rejected()
    );
    assert_eq!(r.decisions_since(2).map(|d| d.seq).collect::<Vec<_>>(), vec![2, 3]);

    let many = Command::RecordDecisions { decisions: vec![d; MAX_DECISIONS_PER_COMMAND], at_ms: 8 };
    for i in 0..(MAX_DECISIONS_KEPT / MAX_DECISIONS_PER_COMMAND + 1) {
        r.apply(&prop(1, 100 + i as u64, many.clone()), ctx(10 + i as u64));
    }
    assert_eq!(r.decisions.len(), MAX_DECISIONS_KEPT);
    assert_eq!(r.decisions.back().unwrap().seq + 1, r.next_decision_seq);
}

#[test]
fn an_unchanged_watch_is_counted_not_appended() {
    let mut r = seeded();
    let watch = |reason: &str| Decision::new("chat", Action::Investigate, reason, 0.6, AnalystKind::Builtin);
    let rec = |d: Decision, at_ms| Command::RecordDecisions { decisions: vec![d], at_ms };
    r.apply(&prop(1, 101, rec(watch("memory 300 MB over budget"), 10_000)), ctx(4));
    let again = r.apply(&prop(1, 102, rec(watch("memory 310 MB over budget"), 20_000)), ctx(5));
    assert_eq!(again, Outcome::Decisions { first_seq: 2, count: 0 });
    r.apply(&prop(1, 103, rec(watch("memory 320 MB over budget"), 30_000)), ctx(6));
    assert_eq!(r.decisions.len(), 1);
    let only = &r.decisions[0];
    assert_eq!((only.repeats, only.last_seen_ms, only.decided_at_ms), (2, Some(30_000), 10_000));
    assert_eq!(only.decision.reason, "memory 320 MB over budget", "the latest reason");

    // a change is recorded, and so is every disruptive decision
    let restart = Decision::new("chat", Action::Restart, "leak", 0.9, AnalystKind::Builtin);
    r.apply(&prop(1, 104, rec(restart.clone(), 40_000)), ctx(7));
    r.apply(&prop(1, 105, rec(restart, 50_000)), ctx(8));
    r.apply(&prop(1, 106, rec(watch("after the restart"), 60_000)), ctx(9));
    assert_eq!(r.decisions.len(), 4);
    // the same watch after a long quiet spell starts a new record
    r.apply(&prop(1, 107, rec(watch("again, later"), 60_000 + 6 * 60_000)), ctx(10));
    assert_eq!(r.decisions.len(), 5);
    // an operator's decision is never folded into another
    let op = Decision::new("chat", Action::Investigate, "operator: look", 1.0, AnalystKind::Operator);
    r.apply(&prop(1, 108, rec(op.clone(), 500_000)), ctx(11));
    r.apply(&prop(1, 109, rec(op, 500_001)), ctx(12));
    assert_eq!(r.decisions.len(), 7);
}

#[test]
fn invalid_commands_change_nothing() {
    let mut r = seeded();
    let before = r.clone();
    let bad_budget = Command::SetBudget {
        name: "chat".into(),
        patch: BudgetPatch {
            inference_queue_priority: Some(90),
            throttle_multiplier: Some(-1.0),
            ..Default::default()
        },
    };
    let cmds = [
        bad_budget,
        Command::SetPhase { name: "ghost".into(), phase: DesiredPhase::Killed, reason: None },
        Command::AssignPersona { name: "chat".into(), node: Some(99) },
        Command::put_persona(PersonaSpec::new("Bad Name", "x"), None),
        node(3, "a"), // name taken by node 1
        Command::RemoveNode { id: 42 },
    ];
    for (i, c) in cmds.into_iter().enumerate() {
        let kind = c.kind();
        assert!(r.apply(&prop(1, 50 + i as u64, c), ctx(4 + i as u64)).is_rejected(), "{kind}");
    }
    assert_eq!(r.personas, before.personas);
    assert_eq!(r.nodes, before.nodes);
}

#[test]
fn placement_phase_and_removal_move_the_epoch() {
    let mut r = seeded();
    let assign = Command::AssignPersona { name: "chat".into(), node: Some(2) };
    assert_eq!(r.apply(&prop(1, 30, assign), ctx(4)), Outcome::Persona { generation: 0, epoch: 4 });
    let hib = Command::SetPhase { name: "chat".into(), phase: DesiredPhase::Hibernating, reason: Some("idle".into()) };
    assert_eq!(r.apply(&prop(1, 31, hib), ctx(5)), Outcome::Persona { generation: 0, epoch: 4 });
    let wake = Command::SetPhase { name: "chat".into(), phase: DesiredPhase::Running, reason: None };
    assert_eq!(r.apply(&prop(1, 32, wake), ctx(6)), Outcome::Persona { generation: 0, epoch: 6 });
    assert_eq!(r.apply(&prop(1, 33, Command::RemoveNode { id: 2 }), ctx(7)), Outcome::Done);
    let p = &r.personas["chat"];
    assert_eq!((p.node, p.epoch), (None, 7));
    let budget = Command::SetBudget {
        name: "chat".into(),
        patch: BudgetPatch { inference_queue_priority: Some(90), ..Default::default() },
    };
    r.apply(&prop(1, 34, budget), ctx(8));
    assert_eq!(r.personas["chat"].budget.inference_queue_priority, 90);
    assert_eq!(r.personas_on(1).count(), 0);
}

#[test]
fn membership_sets_roles() {
    let mut r = seeded();
    r.apply_membership(ctx(4), [1], [1, 2]);
    assert_eq!(r.role(1), Some(Role::Voter));
    assert_eq!(r.role(2), Some(Role::Learner));
    assert_eq!(r.role(3), None);
}

#[test]
fn replicas_applying_the_same_log_agree_and_snapshots_roundtrip() {
    let (a, mut b) = (seeded(), seeded());
    assert_eq!(a.digest, b.digest);
    let bytes = a.encode().unwrap();
    let back = Registry::decode(&bytes).unwrap();
    assert_eq!(back, a);
    b.apply_blank(ctx(4));
    assert_ne!(a.digest, b.digest);
    assert!(Registry::decode(&bytes[..bytes.len() / 2]).is_err());
}

#[test]
fn a_checkpoint_is_taken_only_from_the_node_and_epoch_that_run_it() {
    let mut r = seeded();
    let cp = |node, epoch| Command::Checkpoint { name: "chat".into(), node, epoch, state: b"s1".to_vec(), at_ms: 7 };
    assert!(r.apply(&prop(2, 20, cp(2, 3)), ctx(4)).is_rejected(), "another node's state is stale");
    assert!(r.apply(&prop(1, 21, cp(1, 2)), ctx(5)).is_rejected(), "an older epoch's state is stale");
    assert!(!r.apply(&prop(1, 22, cp(1, 3)), ctx(6)).is_rejected());
    assert_eq!(r.personas["chat"].checkpoint.as_ref().unwrap().state, b"s1");
}

#[test]
fn a_migration_moves_only_once_the_source_released_at_its_epoch() {
    let mut r = seeded();
    let mig = Command::Migrate { name: "chat".into(), to: 2 };
    assert!(!r.apply(&prop(1, 30, mig), ctx(4)).is_rejected());
    let p = &r.personas["chat"];
    assert_eq!((p.node, p.migrating_to, p.epoch), (Some(1), Some(2), 3), "still on the source until it releases");
    let done = |from, epoch| Command::CompleteMigration {
        name: "chat".into(),
        from,
        epoch,
        state: Some(b"mem".to_vec()),
        at_ms: 9,
    };
    assert!(r.apply(&prop(2, 31, done(2, 3)), ctx(5)).is_rejected(), "only the source releases");
    assert!(r.apply(&prop(1, 32, done(1, 1)), ctx(6)).is_rejected(), "a stale epoch releases nothing");
    assert_eq!(r.apply(&prop(1, 33, done(1, 3)), ctx(7)), Outcome::Persona { generation: 0, epoch: 7 });
    let p = &r.personas["chat"];
    assert_eq!((p.node, p.migrating_to), (Some(2), None));
    assert_eq!(p.checkpoint.as_ref().unwrap().state, b"mem");
    // to where it already is: refused
    assert!(r.apply(&prop(1, 34, Command::Migrate { name: "chat".into(), to: 2 }), ctx(8)).is_rejected());
}

#[test]
fn a_reassignment_planned_on_an_old_registry_changes_nothing() {
    let mut r = seeded();
    let moves = vec![
        Reassignment { name: "chat".into(), from: Some(2), to: Some(1) },
        Reassignment { name: "ghost".into(), from: None, to: Some(1) },
    ];
    assert_eq!(r.apply(&prop(1, 40, Command::Reassign { moves }), ctx(4)), Outcome::Moved { moved: 0, stale: 2 });
    let moves = vec![Reassignment { name: "chat".into(), from: Some(1), to: Some(2) }];
    assert_eq!(r.apply(&prop(1, 41, Command::Reassign { moves }), ctx(5)), Outcome::Moved { moved: 1, stale: 0 });
    assert_eq!((r.personas["chat"].node, r.personas["chat"].epoch), (Some(2), 5), "a move is a new epoch");
}
