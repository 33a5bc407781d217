//! The brain never moves a budget outside its envelope, whoever proposes the move: random plans
//! from the LLM twin (adversarial ones included: priorities past the envelope, a memory budget,
//! `allowed_to_run = false`, a system persona starved) and the built-in analyst on random
//! situations. Every budget change that leaves the brain is inside the envelope of its persona,
//! touches only the five adjustable fields, and never lowers a system persona below its spec.

use std::sync::Arc;

use mindmesh_brain::budget::{Envelope, Field};
use mindmesh_brain::llm::{Reply, ScriptedLlm};
use mindmesh_brain::synth::{self, Memory, Rng};
use mindmesh_brain::view::MeshView;
use mindmesh_brain::{Brain, CycleReport};
use mindmesh_core::config::BrainConfig;
use mindmesh_core::{Budget, BudgetPatch, Importance, PersonaKind};
use proptest::prelude::*;
use serde_json::{Value, json};

const MIN: u64 = 60_000;
const T0: u64 = 1_700_000_000_000;
const N: usize = 90;
const PERSONAS: usize = 4;

fn importance(k: u8) -> Importance {
    match k % 3 {
        0 => Importance::System,
        1 => Importance::UserFacing,
        _ => Importance::Background,
    }
}

/// A budget within the core's rules, from raw numbers.
fn budget(prio: u8, timeout_ms: u64, tokens: u32, conc: u32, throttle: f64) -> Budget {
    Budget {
        inference_queue_priority: prio % 101,
        max_response_time_ms: timeout_ms.clamp(1, 600_000),
        tokens_per_response: tokens.clamp(1, 100_000),
        max_concurrent_inferences: conc.clamp(1, 64),
        throttle_multiplier: throttle.clamp(0.1, 4.0),
        ..Budget::default()
    }
}

fn arb_budget() -> impl Strategy<Value = Budget> {
    (any::<u8>(), 1u64..600_000, 1u32..100_000, 1u32..64, 0.1f64..4.0).prop_map(|(p, t, k, c, m)| budget(p, t, k, c, m))
}

/// A patch with any subset of fields, values anywhere (the envelope's min and max, or a plan).
fn arb_patch() -> impl Strategy<Value = BudgetPatch> {
    (
        proptest::option::of(any::<u8>()),
        proptest::option::of(1u64..3_600_000),
        proptest::option::of(1u32..1_000_000),
        proptest::option::of(1u32..65_536),
        proptest::option::of(0.01f64..12.0),
    )
        .prop_map(|(p, t, k, c, m)| BudgetPatch {
            inference_queue_priority: p.map(|p| p % 101),
            max_response_time_ms: t,
            tokens_per_response: k,
            max_concurrent_inferences: c,
            throttle_multiplier: m,
            ..BudgetPatch::default()
        })
}

#[derive(Debug, Clone)]
struct Case {
    importance: Vec<u8>,
    in_force: Vec<Budget>,
    spec: Vec<Budget>,
    min: Vec<BudgetPatch>,
    max: Vec<BudgetPatch>,
    /// What the LLM answers for each persona (its `budget`, an object or a list, raw JSON).
    plans: Vec<Value>,
    actions: Vec<u8>,
    idle: Vec<bool>,
    seed: u64,
}

fn arb_plan() -> impl Strategy<Value = Value> {
    prop_oneof![
        // anything in range of the core's rules
        arb_patch().prop_map(|p| serde_json::to_value(p).unwrap()),
        // the adversary: memory, allowed_to_run, extremes
        (any::<u8>(), any::<bool>(), 1u64..2_000_000).prop_map(|(p, run, mem)| json!({
            "inference_queue_priority": p % 101,
            "allowed_to_run": run,
            "max_memory_mb": mem,
            "throttle_multiplier": 10.0,
            "max_concurrent_inferences": 65_536,
            "max_response_time_ms": 3_600_000,
        })),
        Just(json!({"inference_queue_priority": 0, "throttle_multiplier": 0.1, "max_concurrent_inferences": 1})),
        Just(Value::Null),
        // the form the prompt asks for: a list of {field, value, reason}, any field by either
        // name, values anywhere (negative, huge, fractional), the memory budget too
        proptest::collection::vec((0usize..11, -1e12f64..1e12, prop_oneof![Just(1.0f64), Just(1e-6), Just(1e6)]), 0..6)
            .prop_map(|changes| {
                const NAMES: [&str; 11] = [
                    "inference_queue_priority",
                    "max_response_time_ms",
                    "tokens_per_response",
                    "max_concurrent_inferences",
                    "throttle_multiplier",
                    "priority",
                    "timeout_ms",
                    "tokens",
                    "concurrency",
                    "throttle",
                    "max_memory_mb",
                ];
                let mut seen = std::collections::HashSet::new();
                Value::Array(
                    changes
                        .into_iter()
                        .filter(|(k, _, _)| seen.insert(*k))
                        .map(|(k, v, scale)| json!({"field": NAMES[k], "value": v * scale, "reason": "the adversary"}))
                        .collect(),
                )
            }),
    ]
}

fn arb_case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(any::<u8>(), PERSONAS),
        proptest::collection::vec(arb_budget(), PERSONAS),
        proptest::collection::vec(arb_budget(), PERSONAS),
        proptest::collection::vec(arb_patch(), PERSONAS),
        proptest::collection::vec(arb_patch(), PERSONAS),
        proptest::collection::vec(arb_plan(), PERSONAS),
        proptest::collection::vec(any::<u8>(), PERSONAS),
        proptest::collection::vec(any::<bool>(), PERSONAS),
        any::<u64>(),
    )
        .prop_map(|(importance, in_force, spec, min, max, plans, actions, idle, seed)| Case {
            importance,
            in_force,
            spec,
            min,
            max,
            plans,
            actions,
            idle,
            seed,
        })
}

fn view(c: &Case) -> MeshView {
    let mut rng = Rng::new(c.seed);
    let personas = (0..PERSONAS)
        .map(|i| {
            let mut p =
                synth::persona(&format!("p{i}"), "a", PersonaKind::Api, 300.0, Memory::Flat, N, MIN, T0, &mut rng);
            p.importance = importance(c.importance[i]);
            p.budget = Some(c.in_force[i].clone());
            p.envelope = Envelope { spec: Some(c.spec[i].clone()), min: c.min[i].clone(), max: c.max[i].clone() };
            if c.idle[i] {
                // nobody asked for the last 40 minutes
                let s = &mut p.series;
                for k in N - 40..N {
                    s.requests[k] = 0.0;
                    s.errors[k] = 0.0;
                }
            }
            p
        })
        .collect();
    MeshView { nodes: vec![synth::node("a", N, MIN, T0, &mut rng)], personas }
}

fn answer(c: &Case) -> Reply {
    const ACTIONS: [&str; 4] = ["budget", "continue", "throttle", "investigate"];
    let items: Vec<Value> = (0..PERSONAS)
        .map(|i| {
            let mut item = json!({
                "persona": format!("p{i}"),
                "reason": "the adversary wants this",
                "action": ACTIONS[c.actions[i] as usize % ACTIONS.len()],
                "target": null,
                "confidence": 0.9,
            });
            if !c.plans[i].is_null() {
                item["budget"] = c.plans[i].clone();
            }
            item
        })
        .collect();
    Reply::content(json!({ "decisions": items }).to_string())
}

/// Every budget change in `r` is inside its persona's envelope.
fn check(c: &Case, v: &MeshView, r: &CycleReport) -> Result<(), TestCaseError> {
    for d in &r.decisions {
        let Some(b) = &d.budget else { continue };
        let i: usize = d.persona[1..].parse().unwrap();
        let p = &v.personas[i];
        let in_force = p.budget.as_ref().unwrap();
        prop_assert!(b.max_memory_mb.is_none() && b.allowed_to_run.is_none(), "{}: {b:?}", d.persona);
        prop_assert!(!b.is_empty(), "an empty change is no change: {}", d.reason);
        for f in Field::ALL {
            let Some(x) = f.of_patch(b) else { continue };
            prop_assert!(
                p.envelope.holds(in_force, f, x, p.importance),
                "{} {}: {x} outside {:?} (case {c:?}; {})",
                d.persona,
                f.name(),
                p.envelope.bounds(in_force, f, p.importance),
                d.reason
            );
            if p.importance == Importance::System {
                prop_assert!(
                    x >= p.envelope.start(in_force, f).min(f.get(in_force)) - 1e-9,
                    "system starved: {}",
                    d.reason
                );
            }
        }
        // what the budget becomes is one the core accepts
        prop_assert!(in_force.patched(b).is_ok(), "{}: {b:?}", d.persona);
    }
    Ok(())
}

fn run(brain: &mut Brain, v: &MeshView) -> CycleReport {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let end = v.last_sample_ms().unwrap();
    for k in (1..4).rev() {
        brain.prime(v, end - k * MIN);
    }
    rt.block_on(brain.analyse(v, end))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_llm_plan_moves_a_budget_outside_its_envelope(c in arb_case()) {
        let v = view(&c);
        let mut brain = Brain::with_llm(BrainConfig::default(), Arc::new(ScriptedLlm::new(vec![answer(&c)])));
        let r = run(&mut brain, &v);
        check(&c, &v, &r)?;
    }

    #[test]
    fn the_builtin_analyst_stays_inside_every_envelope(c in arb_case()) {
        let v = view(&c);
        let mut brain = Brain::builtin(BrainConfig::default());
        let r = run(&mut brain, &v);
        check(&c, &v, &r)?;
    }

    #[test]
    fn clamp_lands_inside_and_keeps_the_start_reachable(b in arb_budget(), s in arb_budget(), min in arb_patch(), max in arb_patch(), plan in arb_patch(), k in any::<u8>()) {
        let env = Envelope { spec: Some(s), min, max };
        let imp = importance(k);
        let out = env.clamp(&b, &plan, imp);
        for f in Field::ALL {
            let (lo, hi) = env.bounds(&b, f, imp);
            prop_assert!(lo <= hi, "{}: {lo} > {hi}", f.name());
            prop_assert!(env.holds(&b, f, env.start(&b, f), imp), "{}: the start is always allowed", f.name());
            if let Some(x) = f.of_patch(&out) {
                prop_assert!(env.holds(&b, f, x, imp), "{}: {x} outside {lo}..{hi}", f.name());
            }
        }
        prop_assert!(b.patched(&out).is_ok());
    }
}

/// A budget the brain moved goes back to its start when its cause has gone — but only after
/// the cause has been clear for `hysteresis_cycles` cycles, and the reason says so meanwhile.
#[tokio::test]
async fn a_budget_returns_to_its_start_with_hysteresis() {
    let mut rng = Rng::new(7);
    let mut p = synth::persona("chat", "a", PersonaKind::Api, 300.0, Memory::Flat, N, MIN, T0, &mut rng);
    let spec = Budget::default();
    // given back while it was idle; now busy again (no cause)
    p.budget = Some(Budget { inference_queue_priority: 10, ..spec.clone() });
    p.envelope = Envelope { spec: Some(spec.clone()), ..Envelope::default() };
    let v = MeshView { nodes: vec![synth::node("a", N, MIN, T0, &mut rng)], personas: vec![p] };
    let end = v.last_sample_ms().unwrap();
    let mut brain = Brain::builtin(BrainConfig::default());
    let r = brain.analyse(&v, end).await;
    let d = &r.decisions[0];
    assert_eq!(d.budget, None, "held: {}", d.reason);
    assert!(d.reason.contains("guardrail hysteresis: budget back toward its start waits"), "{}", d.reason);
    let _ = brain.analyse(&v, end).await;
    let r = brain.analyse(&v, end).await;
    let d = &r.decisions[0];
    assert_eq!(d.budget.as_ref().and_then(|b| b.inference_queue_priority), Some(50), "{}", d.reason);
    assert!(d.reason.contains("priority 10->50") && d.reason.contains("cleared"), "{}", d.reason);
}

/// `persona show` tells spec, brain and operator apart by the `after` values of the brain's
/// budget decisions (fields of the decision log, not its reason text).
#[test]
fn the_source_of_a_value_in_force() {
    use mindmesh_brain::budget::{Source, brain_values, source};
    let spec = Budget::default();
    let now = Budget { inference_queue_priority: 10, throttle_multiplier: 0.25, ..spec.clone() };
    let prio = |p| BudgetPatch { inference_queue_priority: Some(p), ..BudgetPatch::default() };
    let said = brain_values([&prio(10)]);
    assert_eq!(source(Field::Priority, &now, &spec, &said), Source::Brain);
    assert_eq!(source(Field::Throttle, &now, &spec, &said), Source::Operator, "the brain never set 0.25x");
    assert_eq!(source(Field::Timeout, &now, &spec, &said), Source::Spec);
    // an earlier decision's throttle still in force is the brain's, whatever came later
    let throttle = BudgetPatch { throttle_multiplier: Some(0.25), ..BudgetPatch::default() };
    let said = brain_values([&throttle, &prio(10)]);
    assert_eq!(source(Field::Throttle, &now, &spec, &said), Source::Brain);
    // the brain set 10, then gave 50 back: a 10 in force now is an operator's
    let said = brain_values([&prio(10), &prio(50)]);
    assert_eq!(source(Field::Priority, &now, &spec, &said), Source::Operator);
    assert_eq!(source(Field::Priority, &now, &spec, &BudgetPatch::default()), Source::Operator);
}

/// The brain gives back to the spec, never undoing an operator's change: a value the brain
/// did not set is the operator's, and is the new starting point.
#[test]
fn an_operators_change_is_the_new_start() {
    use mindmesh_brain::budget::start_point;
    let spec = Budget { throttle_multiplier: 0.5, ..Budget::default() };
    // the operator set 1.0x; the brain lowered the priority
    let now = Budget { throttle_multiplier: 1.0, inference_queue_priority: 10, ..spec.clone() };
    let said = BudgetPatch { inference_queue_priority: Some(10), ..BudgetPatch::default() };
    let start = start_point(&now, &spec, &said);
    assert_eq!((start.throttle_multiplier, start.inference_queue_priority), (1.0, 50));
    assert_eq!(start_point(&spec, &spec, &BudgetPatch::default()), spec);
}

/// A mesh of one 2-core host `host_cpu` busy in its last samples, four background personas
/// each using `own_cpu` % (of one core), all with a budget `in_force` and the default spec.
fn flooded_host(host_cpu: f32, own_cpu: f32, in_force: &Budget) -> MeshView {
    let mut rng = Rng::new(11);
    let mut node = synth::node("a", N, MIN, T0, &mut rng);
    node.cpu_cores = 2;
    for v in node.series.cpu_percent.iter_mut().skip(N - 15) {
        *v = host_cpu;
    }
    let personas = (0..4)
        .map(|i| {
            let mut p =
                synth::persona(&format!("batch-{i}"), "a", PersonaKind::Api, 300.0, Memory::Flat, N, MIN, T0, &mut rng);
            p.importance = Importance::Background;
            for v in p.series.cpu_percent.iter_mut().skip(N - 15) {
                *v = own_cpu + i as f32;
            }
            p.budget = Some(in_force.clone());
            p.envelope = Envelope { spec: Some(Budget::default()), ..Envelope::default() };
            p
        })
        .collect();
    MeshView { nodes: vec![node], personas }
}

/// The set-up of `mindmesh bench qos`: on a pegged host, slowing the largest background persona
/// frees nothing (the others take it), so every busy one is slowed in the same cycle; and a
/// throttle that is all that keeps the host clear is held, not given back (no flapping).
#[tokio::test]
async fn a_flood_is_throttled_at_once_and_held_while_it_lasts() {
    let v = flooded_host(100.0, 45.0, &Budget::default());
    let end = v.last_sample_ms().unwrap();
    let r = Brain::builtin(BrainConfig::default()).analyse(&v, end).await;
    for d in &r.decisions {
        assert_eq!(d.budget.as_ref().and_then(|b| b.throttle_multiplier), Some(0.25), "{}: {}", d.persona, d.reason);
    }
    // throttled, the host is at 70 %: released, each would take three times its 12 % again
    let throttled = Budget { throttle_multiplier: 0.25, ..Budget::default() };
    let v = flooded_host(70.0, 24.0, &throttled);
    let mut brain = Brain::builtin(BrainConfig::default());
    for _ in 0..4 {
        let r = brain.analyse(&v, end).await;
        for d in &r.decisions {
            assert_eq!(d.budget, None, "{} held at 0.25x: {}", d.persona, d.reason);
        }
    }
    // the flood is over (each uses 2 %): back to the spec once the hysteresis has passed
    let v = flooded_host(20.0, 2.0, &throttled);
    let mut brain = Brain::builtin(BrainConfig::default());
    let mut back = false;
    for _ in 0..4 {
        let r = brain.analyse(&v, end).await;
        back |= r.decisions.iter().all(|d| d.budget.as_ref().and_then(|b| b.throttle_multiplier) == Some(1.0));
    }
    assert!(back, "given back after the flood");
}

/// `mindmesh bench qos`'s timeline as the brain sees it (one sample a real second at
/// `time_speed = 300`: 5 minutes apart; a cycle every 2 samples): a 2-core host and four
/// background personas throttled to 0.25x, trickling (2 % of a core) until sample `from`, then
/// flooding (`flood_own` % of a core and up; the host at `flood_host`) until `to`, then
/// trickling again with the host at 25 %.
fn throttled_flood(from: usize, to: usize, flood_host: f32, flood_own: f32) -> MeshView {
    const N: usize = 100;
    let interval = 5 * MIN;
    let mut rng = Rng::new(13);
    let mut node = synth::node("a", N, interval, T0, &mut rng);
    node.cpu_cores = 2;
    for (i, v) in node.series.cpu_percent.iter_mut().enumerate() {
        *v = if (from..to).contains(&i) { flood_host } else { 25.0 };
    }
    let throttled = Budget { throttle_multiplier: 0.25, ..Budget::default() };
    let personas = (0..4)
        .map(|k| {
            let mut p = synth::persona(
                &format!("batch-{k}"),
                "a",
                PersonaKind::Api,
                300.0,
                Memory::Flat,
                N,
                interval,
                T0,
                &mut rng,
            );
            p.importance = Importance::Background;
            for (i, v) in p.series.cpu_percent.iter_mut().enumerate() {
                *v = if (from..to).contains(&i) { flood_own + k as f32 } else { 2.0 };
            }
            p.budget = Some(throttled.clone());
            p.envelope = Envelope { spec: Some(Budget::default()), ..Envelope::default() };
            p
        })
        .collect();
    MeshView { nodes: vec![node], personas }
}

/// The give-back of a CPU throttle ends on its cause's own signal, the persona's demand, and
/// not on the host's CPU, which the throttle itself keeps low: while the flood goes on with the
/// host at 70 % (clear only because of the throttle) every throttle is held, cycle after cycle;
/// one quiet sample is not the end; two are, and the throttle is back at 1.0x within two cycles
/// of the flood's end, with the default `hysteresis_cycles = 3` as with the bench's 2.
#[tokio::test]
async fn a_throttle_is_given_back_when_its_floods_demand_ends_and_held_while_it_lasts() {
    let (from, to) = (40, 80);
    let v = throttled_flood(from, to, 70.0, 23.0);
    let t = |i: usize| T0 + i as u64 * 5 * MIN;
    for hysteresis_cycles in [2, 3] {
        let mut cfg = BrainConfig::default();
        cfg.guardrails.hysteresis_cycles = hysteresis_cycles;
        let mut brain = Brain::builtin(cfg);
        for k in (0..from).step_by(2) {
            brain.prime(&v, t(k));
        }
        // the flood goes on, the host clear only because of the throttle: held, every cycle
        for i in (from + 2..to).step_by(2) {
            let r = brain.analyse(&v, t(i)).await;
            for d in &r.decisions {
                assert_eq!(d.budget, None, "sample {i}: {} held at 0.25x: {}", d.persona, d.reason);
            }
        }
        // the first sample after the flood: one quiet reading is not its end
        let r = brain.analyse(&v, t(to)).await;
        for d in &r.decisions {
            assert_eq!(d.budget, None, "one quiet sample: {} held: {}", d.persona, d.reason);
        }
        // the next cycle (two quiet samples): every throttle back at the spec's 1.0x
        let r = brain.analyse(&v, t(to + 2)).await;
        for d in &r.decisions {
            assert_eq!(
                d.budget.as_ref().and_then(|b| b.throttle_multiplier),
                Some(1.0),
                "hysteresis {hysteresis_cycles}: {} given back a cycle after its flood: {}",
                d.persona,
                d.reason
            );
            assert!(d.reason.contains("its own demand fell back"), "{}", d.reason);
        }
    }
}

/// The band between "settled" and "at its ceiling" is the hysteresis on the demand: a persona
/// using more than half of what its throttle lets through (15-18 % of a core under 0.25x) on a
/// host that could take it back (40 %, projected 40 + 3 x 8 % < 85 %) has no cause left, but
/// its demand has not settled: its throttle waits out the guardrails' cycles as before.
#[tokio::test]
async fn a_demand_inside_the_band_waits_out_the_hysteresis() {
    let (from, to) = (40, 100);
    let t = |i: usize| T0 + i as u64 * 5 * MIN;
    let v = throttled_flood(from, to, 40.0, 15.0);
    let mut brain = Brain::builtin(BrainConfig::default());
    let mut back_at = None;
    for (cycle, i) in (from + 2..to).step_by(2).enumerate() {
        let r = brain.analyse(&v, t(i)).await;
        if r.decisions.iter().all(|d| d.budget.as_ref().and_then(|b| b.throttle_multiplier) == Some(1.0)) {
            back_at = Some(cycle);
            break;
        }
        for d in &r.decisions {
            assert_eq!(d.budget, None, "cycle {cycle}: {} waits: {}", d.persona, d.reason);
            assert!(d.reason.contains("guardrail hysteresis"), "{}", d.reason);
        }
    }
    // the cycle the host's CPU first reads as clear counts as one
    let cycles = BrainConfig::default().guardrails.hysteresis_cycles as usize;
    assert!(
        back_at.is_some_and(|c| c + 1 >= cycles && c <= cycles + 2),
        "given back after the hysteresis: {back_at:?}"
    );
}
