//! Properties of the registry's pure apply, over arbitrary command sequences: commands drawn
//! from a few node ids and persona names (so they meet each other: assign, migrate, remove a
//! node under a persona) mixed with hostile values (unknown ids, bad names, NaN, huge sizes).

use std::collections::{BTreeMap, BTreeSet};

use mindmesh_core::action::{Action, AnalystKind, Decision};
use mindmesh_core::budget::BudgetPatch;
use mindmesh_core::registry::{
    ApplyCtx, Capacity, Command, DesiredPhase, NodeInfo, Outcome, Proposal, ProposalId, Reassignment, Registry,
    check_step,
};
use mindmesh_core::spec::PersonaSpec;
use proptest::prelude::*;

fn node_id() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 1u64..=4, 1 => any::<u64>()]
}

fn persona_name() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(vec!["a", "b", "chat", "idle"]).prop_map(String::from),
        1 => "\\PC{0,70}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-z ]{0,12}", 1 => "\\PC{0,2000}"]
}

fn state() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![8 => prop::collection::vec(any::<u8>(), 0..16), 1 => Just(vec![7u8; 1024 * 1024 + 1])]
}

fn spec() -> impl Strategy<Value = PersonaSpec> {
    (
        persona_name(),
        prop_oneof!["srv", "", " "].prop_map(String::from),
        any::<u8>(),
        prop_oneof![4 => Just(1.0), 1 => any::<f64>()],
        any::<u32>(),
    )
        .prop_map(|(name, command, priority, throttle, tokens)| {
            let mut s = PersonaSpec::new(&name, &command);
            s.budget.inference_queue_priority = priority % 128;
            s.budget.throttle_multiplier = throttle;
            s.budget.tokens_per_response = tokens;
            s
        })
}

fn node_info() -> impl Strategy<Value = NodeInfo> {
    (
        node_id(),
        prop_oneof![4 => "[a-d]", 1 => "\\PC{0,70}"],
        prop_oneof![4 => Just(400.0), 1 => any::<f64>()],
        0usize..20,
    )
        .prop_map(|(id, name, cpu, addrs)| NodeInfo {
            id,
            name,
            addrs: (0..addrs).map(|i| format!("/ip4/127.0.0.1/tcp/{i}")).collect(),
            capacity: Capacity { memory_mb: 8192, cpu_percent: cpu },
            labels: BTreeMap::new(),
            api: String::new(),
        })
}

fn decision() -> impl Strategy<Value = Decision> {
    (persona_name(), prop::sample::select(Action::ALL.to_vec()), text(), any::<f32>(), prop::option::of(any::<f64>()))
        .prop_map(|(persona, action, reason, confidence, throttle)| {
            let mut d = Decision::new(&persona, action, reason, 0.5, AnalystKind::Builtin);
            d.confidence = confidence;
            d.throttle_multiplier = throttle;
            d
        })
}

fn phase() -> impl Strategy<Value = DesiredPhase> {
    prop::sample::select(vec![
        DesiredPhase::Running,
        DesiredPhase::Hibernating,
        DesiredPhase::Killed,
        DesiredPhase::Stopped,
    ])
}

fn command() -> impl Strategy<Value = Command> {
    let n = persona_name;
    prop_oneof![
        3 => node_info().prop_map(Command::AddNode),
        1 => node_id().prop_map(|id| Command::RemoveNode { id }),
        4 => (spec(), prop::option::of(node_id())).prop_map(|(s, node)| Command::put_persona(s, node)),
        1 => n().prop_map(|name| Command::RemovePersona { name }),
        2 => (n(), prop::option::of(node_id())).prop_map(|(name, node)| Command::AssignPersona { name, node }),
        2 => (n(), phase(), prop::option::of(text())).prop_map(|(name, phase, reason)| Command::SetPhase { name, phase, reason }),
        2 => (n(), 0u64..3).prop_map(|(name, expected)| Command::BumpGeneration { name, expected }),
        1 => (n(), any::<Option<u8>>(), prop::option::of(any::<f64>())).prop_map(|(name, p, t)| Command::SetBudget {
            name,
            patch: BudgetPatch { inference_queue_priority: p, throttle_multiplier: t, ..Default::default() },
        }),
        2 => (prop::collection::vec(decision(), 0..4), any::<u64>()).prop_map(|(decisions, at_ms)| Command::RecordDecisions { decisions, at_ms }),
        1 => (0u64..6, node_id(), any::<bool>(), text()).prop_map(|(seq, node, ok, outcome)| Command::MarkExecuted { seq, node, at_ms: 1, ok, outcome }),
        2 => (n(), node_id()).prop_map(|(name, to)| Command::Migrate { name, to }),
        2 => (n(), node_id(), 0u64..40, prop::option::of(state())).prop_map(|(name, from, epoch, state)| {
            Command::CompleteMigration { name, from, epoch, state, at_ms: 1 }
        }),
        1 => (n(), node_id(), 0u64..40, state()).prop_map(|(name, node, epoch, state)| Command::Checkpoint { name, node, epoch, state, at_ms: 1 }),
        2 => prop::collection::vec((n(), prop::option::of(node_id()), prop::option::of(node_id())), 0..4).prop_map(|m| Command::Reassign {
            moves: m.into_iter().map(|(name, from, to)| Reassignment { name, from, to }).collect(),
        }),
        1 => (node_id(), any::<bool>()).prop_map(|(id, draining)| Command::SetDraining { id, draining }),
    ]
}

/// A log entry: a proposal (from a few proposers with few nonces, so retries happen), a blank
/// entry or a membership change.
#[derive(Debug, Clone)]
enum Entry {
    Proposal(Proposal),
    Blank,
    Membership(BTreeSet<u64>, BTreeSet<u64>),
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        20 => (1u64..=4, 0u64..12, command()).prop_map(|(node, nonce, command)| Entry::Proposal(Proposal { id: ProposalId { node, nonce }, command })),
        1 => Just(Entry::Blank),
        1 => (prop::collection::btree_set(node_id(), 0..4), prop::collection::btree_set(node_id(), 0..4)).prop_map(|(v, l)| Entry::Membership(v, l)),
    ]
}

fn apply(reg: &mut Registry, e: &Entry, index: u64) -> Outcome {
    let ctx = ApplyCtx { index, term: 1 + index / 10 };
    match e {
        Entry::Proposal(p) => reg.apply(p, ctx),
        Entry::Blank => {
            reg.apply_blank(ctx);
            Outcome::Done
        }
        Entry::Membership(v, l) => {
            reg.apply_membership(ctx, v.iter().copied(), l.iter().copied());
            Outcome::Done
        }
    }
}

fn run(entries: &[Entry]) -> Registry {
    let mut reg = Registry::new();
    for (i, e) in entries.iter().enumerate() {
        apply(&mut reg, e, i as u64 + 1);
    }
    reg
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Any sequence applies without a panic, and after every step the registry's invariants
    /// hold (members only as owners, indexes in order, bounds) as do the step's (epochs and
    /// generations never go back, a move always brings a new epoch, a rejection changes nothing).
    #[test]
    fn apply_never_panics_and_keeps_every_invariant(entries in prop::collection::vec(entry(), 0..80)) {
        let mut reg = Registry::new();
        for (i, e) in entries.iter().enumerate() {
            let index = i as u64 + 1;
            let before = reg.clone();
            let outcome = apply(&mut reg, e, index);
            if let Err(broken) = check_step(&before, &reg, index, &outcome).and_then(|()| reg.check_invariants()) {
                prop_assert!(false, "entry {index} {e:?}: {broken}");
            }
        }
    }

    /// Two replicas that apply the same log hold the same registry, digest included.
    #[test]
    fn apply_is_deterministic(entries in prop::collection::vec(entry(), 0..80)) {
        let (a, b) = (run(&entries), run(&entries));
        prop_assert_eq!(a.digest, b.digest);
        prop_assert_eq!(a, b);
    }

    /// One owner per epoch: over the whole log, each (persona, epoch) names one node, so a
    /// process started under an epoch is either the owner's or stale.
    #[test]
    fn an_epoch_has_one_owner(entries in prop::collection::vec(entry(), 0..80)) {
        let mut reg = Registry::new();
        let mut owner: BTreeMap<(String, u64), Option<u64>> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            apply(&mut reg, e, i as u64 + 1);
            for (name, p) in &reg.personas {
                // a removed and re-created persona starts a new history at a new index
                let seen = owner.entry((name.clone(), p.epoch)).or_insert(p.node);
                prop_assert_eq!(*seen, p.node, "persona {} at epoch {}", name, p.epoch);
            }
        }
    }

    /// A snapshot restores the same registry, and the restored one goes on exactly as the
    /// original does.
    #[test]
    fn a_snapshot_restores_the_same_registry(
        entries in prop::collection::vec(entry(), 0..60),
        more in prop::collection::vec(entry(), 0..20),
    ) {
        let mut reg = run(&entries);
        let mut restored = Registry::decode(&reg.encode().unwrap()).unwrap();
        prop_assert_eq!(&restored, &reg);
        for (i, e) in more.iter().enumerate() {
            let index = entries.len() as u64 + i as u64 + 1;
            let a = apply(&mut reg, e, index);
            let b = apply(&mut restored, e, index);
            prop_assert_eq!(a, b);
        }
        prop_assert_eq!(restored, reg);
    }

    /// A proposal applied again (a retry after a lost answer) answers its first outcome and
    /// changes nothing but the log position.
    #[test]
    fn a_retried_proposal_changes_nothing(entries in prop::collection::vec(entry(), 1..60), pick in any::<prop::sample::Index>()) {
        let mut reg = run(&entries);
        let proposals: Vec<(usize, &Proposal)> = entries.iter().enumerate().filter_map(|(i, e)| match e {
            Entry::Proposal(p) => Some((i, p)),
            _ => None,
        }).collect();
        prop_assume!(!proposals.is_empty());
        let (_, p) = proposals[pick.index(proposals.len())];
        // Known limit: removing a node forgets its proposals (so departed nodes do not hold
        // deduplication tables forever); a node removed and re-added could have a retry of an
        // old proposal applied again. The window of 64 per node is not reached here.
        prop_assume!(!entries.iter().any(|e| matches!(e, Entry::Proposal(q) if matches!(q.command, Command::RemoveNode { id } if id == p.id.node))));
        let before = reg.clone();
        let again = reg.apply(p, ApplyCtx { index: entries.len() as u64 + 1, term: 9 });
        let mut replay = Registry::new();
        let mut first = None;
        for (i, e) in entries.iter().enumerate() {
            let o = apply(&mut replay, e, i as u64 + 1);
            if let Entry::Proposal(q) = e && q.id == p.id && first.is_none() {
                first = Some(o);
            }
        }
        prop_assert_eq!(Some(again), first);
        prop_assert_eq!(&reg.nodes, &before.nodes);
        prop_assert_eq!(&reg.personas, &before.personas);
        prop_assert_eq!(&reg.decisions, &before.decisions);
    }
}
