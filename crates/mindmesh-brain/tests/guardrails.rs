//! Guardrails after any analyst: system personas are never killed, hysteresis needs a
//! persisting condition (crash loops and permanent errors excepted), a cooldown per persona,
//! caps per cycle and on the share of the mesh disrupted, no action on stale data, schema.
//! Proposals come from the in-memory LLM twin so any plan can be tried.

use std::sync::Arc;

use mindmesh_brain::llm::{Reply, ScriptedLlm};
use mindmesh_brain::synth::{self, Memory, Rng};
use mindmesh_brain::view::{MeshView, PersonaView};
use mindmesh_brain::{Brain, CycleReport};
use mindmesh_core::config::BrainConfig;
use mindmesh_core::{Action, Importance, PersonaKind, Phase};
use serde_json::json;

const MIN: u64 = 60_000;
const T0: u64 = 1_700_000_000_000;
const N: usize = 300;

fn persona(id: &str, memory: Memory, seed: u64) -> PersonaView {
    synth::persona(id, "a", PersonaKind::Api, 400.0, memory, N, MIN, T0, &mut Rng::new(seed))
}

/// `leaky` personas leak, the rest are flat; two nodes.
fn view(leaky: usize, flat: usize) -> MeshView {
    let mut personas = Vec::new();
    for i in 0..leaky {
        personas.push(persona(&format!("leak-{i}"), Memory::Leak { mb_per_min: 0.8 }, i as u64));
    }
    for i in 0..flat {
        personas.push(persona(&format!("flat-{i}"), Memory::Flat, 100 + i as u64));
    }
    let nodes = vec![synth::node("a", N, MIN, T0, &mut Rng::new(1)), synth::node("b", N, MIN, T0, &mut Rng::new(2))];
    MeshView { nodes, personas }
}

fn end(v: &MeshView) -> u64 {
    v.last_sample_ms().unwrap()
}

fn plan(v: &MeshView, special: &[(&str, &str, Option<&str>)]) -> Reply {
    let items: Vec<_> = v
        .personas
        .iter()
        .map(|p| {
            let (a, t) = special.iter().find(|(id, _, _)| *id == p.id).map_or(("continue", None), |(_, a, t)| (*a, *t));
            json!({"persona": p.id, "reason": format!("plan {a}"), "action": a, "target": t, "confidence": 0.9})
        })
        .collect();
    Reply::content(json!({ "decisions": items }).to_string())
}

fn llm_brain(script: Vec<Reply>) -> Brain {
    Brain::with_llm(BrainConfig::default(), Arc::new(ScriptedLlm::new(script)))
}

fn decision<'a>(r: &'a CycleReport, id: &str) -> &'a mindmesh_core::Decision {
    r.decisions.iter().find(|d| d.persona == id).unwrap()
}

/// Three observed cycles (the condition persists), then `analyse` at the end.
async fn after_priming(brain: &mut Brain, v: &MeshView) -> CycleReport {
    for k in (1..3).rev() {
        brain.prime(v, end(v) - k * MIN);
    }
    brain.analyse(v, end(v)).await
}

#[tokio::test]
async fn system_personas_are_never_killed_or_hibernated() {
    let mut v = view(1, 2);
    v.personas[0].importance = Importance::System;
    v.personas[1].importance = Importance::System;
    let mut brain = llm_brain(vec![plan(&v, &[("leak-0", "kill", None), ("flat-0", "hibernate", None)])]);
    let r = after_priming(&mut brain, &v).await;
    for id in ["leak-0", "flat-0"] {
        let d = decision(&r, id);
        assert_eq!(d.action, Action::Investigate, "{id}: {}", d.reason);
        assert!(d.reason.starts_with("guardrail system-persona"), "{}", d.reason);
    }
}

#[tokio::test]
async fn hysteresis_needs_the_condition_to_persist() {
    let v = view(1, 1);
    // first cycle ever: the leak is real, but seen once
    let mut brain = Brain::builtin(BrainConfig::default());
    let r = brain.analyse(&v, end(&v)).await;
    let d = decision(&r, "leak-0");
    assert_eq!(d.action, Action::Investigate);
    assert!(
        d.reason.contains("guardrail hysteresis: restart -> investigate, memory leak seen in 1 of the last 3"),
        "{}",
        d.reason
    );
    // the second and third cycle see it again: now it is acted on
    let _ = brain.analyse(&v, end(&v)).await;
    let r = brain.analyse(&v, end(&v)).await;
    assert_eq!(decision(&r, "leak-0").action, Action::Restart);
    // a healthy persona never gets a disruptive action, whatever the plan says
    let mut brain = llm_brain(vec![plan(&v, &[("flat-0", "restart", None)])]);
    let r = after_priming(&mut brain, &v).await;
    assert_eq!(decision(&r, "flat-0").action, Action::Investigate);
    assert!(decision(&r, "flat-0").reason.contains("no condition in its data supports it"));
}

#[tokio::test]
async fn crash_loops_need_no_persistence() {
    let mut v = view(0, 3);
    let n = v.personas[0].series.len();
    for (k, r) in v.personas[0].series.restarts.iter_mut().enumerate() {
        *r = if k + 4 >= n { (k + 5 - n) as f32 * 2.0 } else { 0.0 };
    }
    let mut brain = Brain::builtin(BrainConfig::default());
    let r = brain.analyse(&v, end(&v)).await;
    let d = decision(&r, "flat-0");
    assert_eq!(d.action, Action::Kill, "{}", d.reason);
    assert!(d.reason.contains("crash loop"));
}

#[tokio::test]
async fn cooldown_after_a_disruptive_action() {
    let v = view(1, 1);
    let mut brain = Brain::builtin(BrainConfig::default());
    let r = after_priming(&mut brain, &v).await;
    assert_eq!(decision(&r, "leak-0").action, Action::Restart);
    // the view does not change yet (the restart is being carried out): no second restart
    let r = brain.analyse(&v, end(&v) + 30_000).await;
    let d = decision(&r, "leak-0");
    assert_eq!(d.action, Action::Investigate);
    assert!(d.reason.starts_with("guardrail cooldown: restart -> investigate, restart 30 s ago"), "{}", d.reason);
    // a committed action in the view counts too
    let mut v2 = view(1, 1);
    let at = end(&v2) - 120_000;
    v2.personas[0].recent_actions.push((at, Action::Restart));
    let mut fresh = Brain::builtin(BrainConfig::default());
    let r = after_priming(&mut fresh, &v2).await;
    assert!(decision(&r, "leak-0").reason.starts_with("guardrail cooldown"));
}

#[tokio::test]
async fn caps_per_cycle_and_on_the_share_of_the_mesh() {
    // 5 leaking of 9: the share cap (34% of 9 = 3) and the per-cycle cap (3) allow three
    let v = view(5, 4);
    let mut brain = Brain::builtin(BrainConfig::default());
    let r = after_priming(&mut brain, &v).await;
    let restarts = r.decisions.iter().filter(|d| d.action == Action::Restart).count();
    assert_eq!(restarts, 3);
    let capped: Vec<_> = r.decisions.iter().filter(|d| d.reason.starts_with("guardrail cap")).collect();
    assert_eq!(capped.len(), 2);
    assert!(capped.iter().all(|d| d.action == Action::Investigate));
    // personas already restarting take room
    let mut v = view(5, 4);
    v.personas[8].phase = Phase::Starting;
    v.personas[7].phase = Phase::Backoff;
    let mut brain = Brain::builtin(BrainConfig::default());
    let r = after_priming(&mut brain, &v).await;
    assert_eq!(r.decisions.iter().filter(|d| d.action == Action::Restart).count(), 1);
}

#[tokio::test]
async fn stale_data_is_never_acted_on() {
    let v = view(1, 1);
    let later = end(&v) + 10 * MIN;
    let mut brain = llm_brain(vec![plan(&v, &[("leak-0", "kill", None)])]);
    for k in (1..3).rev() {
        brain.prime(&v, later - k * MIN);
    }
    let r = brain.analyse(&v, later).await;
    let d = decision(&r, "leak-0");
    assert_eq!(d.action, Action::Continue);
    assert!(d.reason.starts_with("guardrail stale-data: kill -> continue"), "{}", d.reason);
}

#[tokio::test]
async fn schema_a_migration_must_name_another_live_node() {
    // to its own node: the answer is not a valid plan at all, the cycle falls back
    let v = view(1, 2);
    let mut brain = llm_brain(vec![plan(&v, &[("leak-0", "migrate", Some("a"))])]);
    let r = after_priming(&mut brain, &v).await;
    assert_eq!(r.fallback.as_ref().unwrap().kind, "invalid");
    // to a node whose data is stale: the guardrail refuses
    let mut v = view(1, 2);
    let b = &mut v.nodes[1].series;
    let keep = b.t_ms.len() - 30;
    b.t_ms.truncate(keep);
    b.cpu_percent.truncate(keep);
    b.memory_used_mb.truncate(keep);
    let mut brain = llm_brain(vec![plan(&v, &[("leak-0", "migrate", Some("b"))])]);
    let r = after_priming(&mut brain, &v).await;
    let d = decision(&r, "leak-0");
    assert_eq!(d.action, Action::Investigate);
    assert!(d.reason.starts_with("guardrail schema: migrate -> investigate"), "{}", d.reason);
    // to a live node: applied
    let v = view(1, 2);
    let mut brain = llm_brain(vec![plan(&v, &[("leak-0", "migrate", Some("b"))])]);
    let r = after_priming(&mut brain, &v).await;
    let d = decision(&r, "leak-0");
    assert_eq!((d.action, d.target.as_deref()), (Action::Migrate, Some("b")));
}

#[tokio::test]
async fn not_running_personas_are_left_alone() {
    let mut v = view(1, 1);
    v.personas[0].phase = Phase::Hibernating;
    let mut brain = llm_brain(vec![plan(&v, &[("leak-0", "restart", None), ("flat-0", "wake", None)])]);
    let r = after_priming(&mut brain, &v).await;
    assert_eq!(decision(&r, "leak-0").action, Action::Continue);
    // wake only makes sense for a hibernating persona
    assert_eq!(decision(&r, "flat-0").action, Action::Continue);
    assert!(decision(&r, "flat-0").reason.starts_with("guardrail schema"));
}
