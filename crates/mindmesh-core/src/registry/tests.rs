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
    assert!(
        matches!(r.decision(1).unwrap().verdict, Verdict::Executed { node: 1, .. }),
        "the first report stands: {:?}",
        r.decision(1).unwrap().verdict
    );
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

fn operator(token: &str) -> Actor {
    Actor::Operator { token: token.into(), via: None }
}

fn asked(action: Action, verb: &str, change: Option<Command>) -> Decided {
    let d = Decision::new("chat", action, format!("operator: {verb}"), 1.0, AnalystKind::Operator);
    Decided { decision: d, by: operator("alice"), verb: verb.into(), change }
}

#[test]
fn a_refused_change_is_logged_as_refused_and_never_becomes_executed() {
    let mut r = seeded();
    // chat runs on node 1: a migrate there is refused (the API's 409)
    let mut d = asked(Action::Migrate, "migrate", Some(Command::Migrate { name: "chat".into(), to: 1 }));
    d.decision.target = Some("a".into());
    let out = r.apply(&prop(1, 10, Command::Decide { decisions: vec![d], at_ms: 5 }), ctx(4));
    let Outcome::Decided { first_seq: 1, outcomes } = &out else { panic!("{out:?}") };
    assert!(outcomes[0].is_rejected(), "{out:?}");
    let rec = r.decision(1).unwrap();
    assert!(matches!(&rec.verdict, Verdict::Refused { reason } if reason.contains("already runs")), "{rec:?}");
    assert_eq!((rec.verb.as_str(), &rec.by), ("migrate", &operator("alice")));
    assert_eq!(r.personas["chat"].migrating_to, None, "the refused change changed nothing");
    // the node reconciles the persona for another reason and reports: the refusal stands
    let report = Command::Report { seqs: vec![1], node: 1, at_ms: 9, ok: true, outcome: "started".into() };
    r.apply(&prop(1, 11, report), ctx(5));
    let mark = Command::MarkExecuted { seq: 1, node: 1, at_ms: 9, ok: true, outcome: "started".into() };
    r.apply(&prop(1, 12, mark), ctx(6));
    assert!(matches!(r.decision(1).unwrap().verdict, Verdict::Refused { .. }));
}

#[test]
fn the_verb_is_kept_as_asked_and_who_asked_with_it() {
    let mut r = seeded();
    let stop = Command::SetPhase { name: "chat".into(), phase: DesiredPhase::Stopped, reason: None };
    let start = Command::SetPhase { name: "chat".into(), phase: DesiredPhase::Running, reason: None };
    r.apply(
        &prop(1, 10, Command::Decide { decisions: vec![asked(Action::Kill, "stop", Some(stop))], at_ms: 5 }),
        ctx(4),
    );
    r.apply(
        &prop(1, 11, Command::Decide { decisions: vec![asked(Action::Wake, "start", Some(start))], at_ms: 6 }),
        ctx(5),
    );
    let verbs: Vec<&str> = r.decisions.iter().map(|d| d.verb.as_str()).collect();
    assert_eq!(verbs, ["stop", "start"]);
    assert!(r.decisions.iter().all(|d| d.by.describe() == "operator alice"));
    // the start overtook the stop before the node carried it out
    assert_eq!(r.decision(1).unwrap().verdict, Verdict::Superseded { by_seq: Some(2) });
    assert_eq!(r.decision(2).unwrap().verdict, Verdict::Pending);
    assert_eq!((r.decision(1).unwrap().updated_index, r.decisions_updated_index), (5, 5));
    assert_eq!(r.decisions_updated_since(4).map(|d| d.seq).collect::<Vec<_>>(), vec![1, 2]);
    let report = Command::Report { seqs: vec![1, 2], node: 1, at_ms: 9, ok: true, outcome: "started".into() };
    r.apply(&prop(1, 12, report), ctx(6));
    assert_eq!(r.decision(1).unwrap().verdict, Verdict::Superseded { by_seq: Some(2) });
    assert!(matches!(r.decision(2).unwrap().verdict, Verdict::Executed { node: 1, at_ms: 9, .. }));
    assert_eq!(r.decisions_updated_since(5).map(|d| d.seq).collect::<Vec<_>>(), vec![2]);
}

/// A brain cycle used to take 1 + n entries (the decisions, then one command each) and n more
/// for the reports; a `Decide` is one entry, whatever n.
#[test]
fn a_cycle_of_decisions_commits_as_one_entry() {
    let cycle = |r: &Registry| -> Vec<Decided> {
        let mut t = Decision::new("chat", Action::Throttle, "cpu", 0.8, AnalystKind::Llm);
        t.throttle_multiplier = Some(0.5);
        let patch = BudgetPatch { throttle_multiplier: Some(0.5), ..BudgetPatch::default() };
        let restart = Decision::new("chat", Action::Restart, "leak", 0.9, AnalystKind::Llm);
        let bump = Command::BumpGeneration { name: "chat".into(), expected: r.personas["chat"].generation };
        let look = Decision::new("chat", Action::Investigate, "odd", 0.4, AnalystKind::Llm);
        vec![
            Decided::analyst(t, Some(Command::SetBudget { name: "chat".into(), patch })),
            Decided::analyst(restart, Some(bump)),
            Decided::analyst(look, None),
        ]
    };
    // before: one entry for the record, one per change
    let mut old = seeded();
    let decided = cycle(&old);
    let mut index = old.applied_index;
    let mut nonce = 100;
    let mut step = |r: &mut Registry, c: Command| {
        index += 1;
        nonce += 1;
        r.apply(&prop(1, nonce, c), ctx(index))
    };
    let decisions = decided.iter().map(|d| d.decision.clone()).collect();
    step(&mut old, Command::RecordDecisions { decisions, at_ms: 5 });
    for d in decided.iter().filter_map(|d| d.change.clone()) {
        step(&mut old, d);
    }
    let before = old.applied_index - 3;
    // after: one
    let mut new = seeded();
    let out = new.apply(&prop(1, 100, Command::Decide { decisions: cycle(&new), at_ms: 5 }), ctx(4));
    let after = new.applied_index - 3;
    assert_eq!((before, after), (1 + 2, 1), "entries for a cycle of 3 decisions, 2 with changes");
    assert!(matches!(&out, Outcome::Decided { first_seq: 1, outcomes } if outcomes.len() == 3), "{out:?}");
    assert_eq!(new.personas["chat"].generation, 1);
    assert_eq!(new.personas["chat"].budget.throttle_multiplier, 0.5);
    let verdicts: Vec<&str> = new.decisions.iter().map(|d| d.verdict.as_str()).collect();
    assert_eq!(verdicts, ["pending", "pending", "recorded"], "a throttle is not overtaken by a restart");
    assert!(new.decisions.iter().all(|d| d.by.describe() == "llm"));
}

#[test]
fn a_decision_cannot_nest_or_write_the_trail_itself() {
    let mut r = seeded();
    let mark = Command::MarkExecuted { seq: 1, node: 1, at_ms: 0, ok: true, outcome: String::new() };
    let d = asked(Action::Wake, "start", Some(mark));
    assert!(r.apply(&prop(1, 10, Command::Decide { decisions: vec![d], at_ms: 5 }), ctx(4)).is_rejected());
    assert!(r.decisions.is_empty());
}

/// A snapshot written before the audit trail (wire version 2) still decodes, and says what it
/// can: the analyst kind as who, the action as the verb, its execution as the verdict.
#[test]
fn a_version_2_snapshot_still_decodes() {
    let mut r = seeded();
    let d = Decision::new("chat", Action::Restart, "leak", 0.9, AnalystKind::Builtin);
    r.apply(&prop(1, 10, Command::RecordDecisions { decisions: vec![d.clone(), d], at_ms: 5 }), ctx(4));
    let old = legacy::tests_v2(&r, &[(1, true)]);
    let bytes = crate::wire::encode(2, &old).unwrap();
    let back = Registry::decode(&bytes).unwrap();
    assert_eq!(back.personas, r.personas);
    assert_eq!((back.applied_index, back.digest, back.next_decision_seq), (4, r.digest, 3));
    assert!(matches!(back.decision(1).unwrap().verdict, Verdict::Executed { node: 1, .. }));
    assert_eq!(back.decision(2).unwrap().verdict, Verdict::Pending);
    assert_eq!(
        (back.decision(2).unwrap().verb.as_str(), back.decision(2).unwrap().by.describe()),
        ("restart", "builtin".into())
    );
    assert_eq!(Registry::decode(&back.encode().unwrap()).unwrap(), back);
}

/// A budget change between two cycles' watches is a line of its own and does not break the
/// watch's count (the quiet log counts the watch on its record).
#[test]
fn a_budget_change_between_watches_keeps_the_watch_one_line() {
    let mut r = seeded();
    let watch = |reason: &str| {
        Decided::analyst(Decision::new("chat", Action::Investigate, reason, 0.6, AnalystKind::Builtin), None)
    };
    let budget = Decided::analyst(
        Decision::new("chat", Action::Budget, "budget priority 50->10: idle", 0.6, AnalystKind::Builtin),
        None,
    );
    r.apply(&prop(1, 10, Command::Decide { decisions: vec![watch("over budget")], at_ms: 1_000 }), ctx(4));
    r.apply(&prop(1, 11, Command::Decide { decisions: vec![budget.clone()], at_ms: 2_000 }), ctx(5));
    r.apply(&prop(1, 12, Command::Decide { decisions: vec![watch("over budget, idle")], at_ms: 3_000 }), ctx(6));
    r.apply(&prop(1, 13, Command::Decide { decisions: vec![budget], at_ms: 4_000 }), ctx(7));
    let actions: Vec<(Action, u32)> = r.decisions.iter().map(|d| (d.decision.action, d.repeats)).collect();
    assert_eq!(actions, [(Action::Investigate, 1), (Action::Budget, 0), (Action::Budget, 0)]);
}

/// A snapshot written before adapter personas (wire version 3) still decodes, whole.
#[test]
fn a_version_3_snapshot_still_decodes() {
    let mut r = seeded();
    let mut spec = PersonaSpec::new("tuned", "srv");
    spec.budget.inference_queue_priority = 80;
    spec.hibernate_after_idle_s = Some(60);
    r.apply(&prop(1, 10, Command::put_persona(spec, Some(2))), ctx(4));
    let d = Decision::new("chat", Action::Restart, "leak", 0.9, AnalystKind::Builtin);
    r.apply(&prop(1, 11, Command::RecordDecisions { decisions: vec![d], at_ms: 5 }), ctx(5));
    let bytes = crate::wire::encode(3, &legacy::tests_v3(&r)).unwrap();
    let back = Registry::decode(&bytes).unwrap();
    assert_eq!(back, r, "every field, the specs' new ones at their defaults");
    assert_eq!(back.personas["tuned"].spec.budget.inference_queue_priority, 80);
    assert_eq!(Registry::decode(&back.encode().unwrap()).unwrap(), back);
}

/// A `PutPersona` entry of a version 3 log (variant 2, the old spec) still applies.
#[test]
fn a_version_3_put_persona_entry_still_decodes_and_applies() {
    let mut spec = PersonaSpec::new("old", "srv");
    spec.args = vec!["--port".into(), "${MINDMESH_PORT}".into()];
    let v3 = Proposal {
        id: ProposalId { node: 1, nonce: 9 },
        command: Command::PutPersonaV3 { spec: Box::new((&spec).into()), node: Some(1) },
    };
    // the variant index of PutPersona in version 3 was 2: the frozen layout must keep it there
    let bytes = crate::wire::encode(3, &v3).unwrap();
    assert_eq!(bytes[3], 2, "variant 2, after the tag and the id's two one-byte varints");
    let decoded: Proposal = crate::wire::decode(3, &bytes, MAX_PROPOSAL_BYTES).unwrap();
    let mut r = seeded();
    assert!(matches!(r.apply(&decoded, ctx(4)), Outcome::Persona { .. }));
    assert_eq!(r.personas["old"].spec, spec);
}

#[test]
fn adapters_need_a_base_follow_it_and_keep_it() {
    let mut r = seeded();
    let adapter = |name: &str, base: &str| PersonaSpec::adapter(name, base, format!("/m/{name}.gguf"), 1.0);
    assert!(r.apply(&prop(1, 10, Command::put_persona(adapter("a", "none"), None)), ctx(4)).is_rejected());
    // placed where its base is, whatever the proposal said
    assert!(!r.apply(&prop(1, 11, Command::put_persona(adapter("a", "chat"), Some(2))), ctx(5)).is_rejected());
    assert_eq!(r.personas["a"].node, Some(1));
    // an adapter of an adapter, and a base turned adapter, are refused
    assert!(r.apply(&prop(1, 12, Command::put_persona(adapter("b", "a"), None)), ctx(6)).is_rejected());
    r.apply(&prop(1, 13, Command::put_persona(PersonaSpec::new("other", "srv"), Some(2))), ctx(7));
    assert!(r.apply(&prop(1, 14, Command::put_persona(adapter("chat", "other"), None)), ctx(8)).is_rejected());
    // the base moves: its adapter moves with it, at a new epoch
    r.apply(&prop(1, 15, Command::AssignPersona { name: "chat".into(), node: Some(2) }), ctx(9));
    assert_eq!((r.personas["a"].node, r.personas["a"].epoch), (Some(2), 9));
    // a base with adapters is not removed from under them
    assert!(r.apply(&prop(1, 16, Command::RemovePersona { name: "chat".into() }), ctx(10)).is_rejected());
    assert!(!r.apply(&prop(1, 17, Command::RemovePersona { name: "a".into() }), ctx(11)).is_rejected());
    assert!(!r.apply(&prop(1, 18, Command::RemovePersona { name: "chat".into() }), ctx(12)).is_rejected());
}

/// A budget change carried out keeps the values it changed, before and after, on its record
/// (fields, not reason text); a refused one and a decision without a budget keep none.
#[test]
fn a_budget_decision_records_its_before_and_after() {
    let mut r = seeded();
    let budget = |prio: u8, throttle: f64| {
        let d = Decision::new("chat", Action::Budget, "idle", 0.7, AnalystKind::Builtin);
        let patch = BudgetPatch {
            inference_queue_priority: Some(prio),
            throttle_multiplier: Some(throttle),
            ..BudgetPatch::default()
        };
        Decided::analyst(d, Some(Command::SetBudget { name: "chat".into(), patch }))
    };
    let look = Decided::analyst(Decision::new("chat", Action::Investigate, "odd", 0.4, AnalystKind::Builtin), None);
    let refused = budget(10, 0.0);
    let cmd = Command::Decide { decisions: vec![budget(10, 0.25), look, refused], at_ms: 5 };
    r.apply(&prop(1, 100, cmd), ctx(4));
    let change = r.decision(1).unwrap().budget.clone().expect("a budget change recorded");
    let patch = |p: u8, t: f64| BudgetPatch {
        inference_queue_priority: Some(p),
        throttle_multiplier: Some(t),
        ..BudgetPatch::default()
    };
    assert_eq!((change.before, change.after), (patch(50, 1.0), patch(10, 0.25)));
    assert_eq!(r.decision(2).unwrap().budget, None, "no budget change");
    assert!(matches!(r.decision(3).unwrap().verdict, Verdict::Refused { .. }));
    assert_eq!(r.decision(3).unwrap().budget, None, "refused: nothing changed");
    // and it survives the snapshot (the wire format holds it)
    let back = Registry::decode(&r.encode().unwrap()).unwrap();
    assert_eq!(back.decision(1).unwrap().budget, r.decision(1).unwrap().budget);
}

/// Bytes from a hex fixture (written by the version 4 code itself, before version 5 existed).
fn fixture(hex: &str) -> Vec<u8> {
    let hex = hex.trim();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// The spec the version 4 fixtures hold.
fn v4_fixture_spec() -> PersonaSpec {
    let mut spec = PersonaSpec::new("tuned", "srv");
    spec.args = vec!["--port".into(), "${MINDMESH_PORT}".into()];
    spec.budget.inference_queue_priority = 80;
    spec.hibernate_after_idle_s = Some(60);
    spec.sleep = Some(crate::spec::SleepHooks::default());
    spec.metrics_path = Some("/mindmesh/metrics".into());
    spec
}

/// A snapshot the version 4 code wrote (commit 08e80ff) still decodes, whole: the same
/// registry rebuilt today, its specs' new fields at their defaults.
#[test]
fn a_version_4_snapshot_written_by_version_4_still_decodes() {
    let bytes = fixture(include_str!("testdata/v4_snapshot.hex"));
    assert_eq!(bytes[0], 4);
    let back = Registry::decode(&bytes).unwrap();
    let mut r = seeded();
    r.apply(&prop(1, 10, Command::put_persona(v4_fixture_spec(), Some(2))), ctx(4));
    let d = Decision::new("chat", Action::Restart, "leak", 0.9, AnalystKind::Builtin);
    r.apply(&prop(1, 11, Command::RecordDecisions { decisions: vec![d], at_ms: 5 }), ctx(5));
    // the digest chains the entries' bytes, which are version 5's now: compare the rest
    let digest = back.digest;
    assert_eq!(Registry { digest, ..r.clone() }, back);
    assert_eq!(back.personas["tuned"].spec.envelope, crate::BudgetEnvelope::default());
    // and the frozen layout writes exactly those bytes
    assert_eq!(crate::wire::encode(4, &legacy::tests_v4(&back)).unwrap(), bytes);
    assert_eq!(Registry::decode(&back.encode().unwrap()).unwrap(), back);
}

/// A `PutPersona` entry of a version 4 log (the version 4 code's own bytes) decodes as
/// `PutPersonaV4` and applies, its spec brought up to date.
#[test]
fn a_version_4_put_persona_entry_still_decodes_and_applies() {
    let bytes = fixture(include_str!("testdata/v4_put_persona.hex"));
    let decoded: Proposal = crate::wire::decode(4, &bytes, MAX_PROPOSAL_BYTES).unwrap();
    assert!(matches!(decoded.command, Command::PutPersonaV4 { .. }), "{:?}", decoded.command.kind());
    let mut r = seeded();
    assert!(matches!(r.apply(&decoded, ctx(4)), Outcome::Persona { .. }));
    assert_eq!(r.personas["tuned"].spec, v4_fixture_spec());
    // a new entry is the new variant, appended after every old one
    let new = prop(1, 9, Command::put_persona(v4_fixture_spec(), Some(1))).encode().unwrap();
    assert_eq!(new[0], REGISTRY_WIRE_VERSION);
    assert!(new[3] > bytes[3], "variant {} after the version 4 one ({})", new[3], bytes[3]);
    let back: Proposal = crate::wire::decode(REGISTRY_WIRE_VERSION, &new, MAX_PROPOSAL_BYTES).unwrap();
    assert!(matches!(back.command, Command::PutPersona { .. }));
}

/// The envelope and maintenance survive the registry's wire and its apply.
#[test]
fn a_version_5_spec_keeps_its_envelope_and_maintenance() {
    let mut spec = PersonaSpec::new("chat2", "srv");
    spec.envelope.max.inference_queue_priority = Some(90);
    spec.envelope.min.throttle_multiplier = Some(0.5);
    spec.maintenance.restart_after_inferences = Some(10_000);
    let mut r = seeded();
    assert!(!r.apply(&prop(1, 10, Command::put_persona(spec.clone(), Some(1))), ctx(4)).is_rejected());
    let back = Registry::decode(&r.encode().unwrap()).unwrap();
    assert_eq!(back.personas["chat2"].spec, spec);
    // a bound the spec's budget breaks is refused, naming the field
    spec.envelope.max.inference_queue_priority = Some(40);
    match r.apply(&prop(1, 11, Command::put_persona(spec, Some(1))), ctx(5)) {
        Outcome::Rejected { reason } => assert!(reason.contains("budget.max.inference_queue_priority"), "{reason}"),
        o => panic!("{o:?}"),
    }
}
