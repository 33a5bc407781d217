//! What an operator writes in a persona spec reaches the brain through the view a node builds
//! from the spec: the envelope (`[budget.max]`, `[budget.min]`) bounds what the brain does — a
//! user-facing burst raises priority and timeout up to `[budget.max]`, and not at all where the
//! spec leaves the ceiling open — and `[maintenance]` schedules restarts.

use mindmesh_brain::Brain;
use mindmesh_brain::view::{MeshView, NodeView, PersonaView};
use mindmesh_core::config::BrainConfig;
use mindmesh_core::metrics::{HostSample, PersonaSample};
use mindmesh_core::{PersonaSpec, Phase};

const MIN: u64 = 60_000;
const T0: u64 = 1_700_000_000_000;
const N: u64 = 120;

/// Two hours of a chat persona at 10 requests a minute, the last 15 minutes at 40.
fn bursting(spec: &PersonaSpec) -> MeshView {
    let samples: Vec<PersonaSample> = (0..N)
        .map(|i| PersonaSample {
            ts_ms: T0 + i * MIN,
            rss_bytes: 300 << 20,
            peak_rss_bytes: 300 << 20,
            cpu_percent: 5.0 + (i % 3) as f32,
            requests: if i >= N - 15 { 40 + (i % 2) as u32 } else { 10 + (i % 3) as u32 },
            latency_p50_ms: Some(800.0 + (i % 5) as f32 * 10.0),
            latency_p95_ms: Some(1500.0 + (i % 5) as f32 * 20.0),
            latency_p99_ms: Some(2000.0 + (i % 5) as f32 * 30.0),
            ..PersonaSample::default()
        })
        .collect();
    let hosts: Vec<HostSample> = (0..N)
        .map(|i| HostSample {
            ts_ms: T0 + i * MIN,
            cpu_percent: 20.0 + (i % 4) as f32,
            memory_used_bytes: 4 << 30,
            memory_total_bytes: 16 << 30,
            cpu_cores: 8,
        })
        .collect();
    let p = PersonaView::from_samples(spec, "a", Phase::Running, &samples, &[], Some(T0 - 3_600_000), 0);
    MeshView { nodes: vec![NodeView::from_samples("a", &hosts, 0)], personas: vec![p] }
}

fn chat(toml_extra: &str) -> PersonaSpec {
    PersonaSpec::from_toml_str(&format!(
        "name = \"chat\"\ncommand = \"srv\"\nimportance = \"user_facing\"\n[budget]\ninference_queue_priority = 50\nmax_response_time_ms = 30000\n{toml_extra}"
    ))
    .unwrap()
}

#[tokio::test]
async fn a_burst_raises_priority_and_timeout_up_to_the_specs_max() {
    let spec = chat("[budget.max]\ninference_queue_priority = 90\nmax_response_time_ms = 45000\n");
    let view = bursting(&spec);
    assert_eq!(view.personas[0].envelope.max.inference_queue_priority, Some(90), "the view carries the spec's max");
    let end = view.last_sample_ms().unwrap();
    let report = Brain::builtin(BrainConfig::default()).analyse(&view, end).await;
    let d = &report.decisions[0];
    let b = d.budget.as_ref().unwrap_or_else(|| panic!("a budget change: {}", d.reason));
    let prio = b.inference_queue_priority.unwrap_or_else(|| panic!("priority raised: {}", d.reason));
    assert!(prio > 50 && prio <= 90, "{prio}: {}", d.reason);
    let timeout = b.max_response_time_ms.unwrap_or_else(|| panic!("timeout extended: {}", d.reason));
    assert!(timeout > 30_000 && timeout <= 45_000, "{timeout}: {}", d.reason);
    assert!(d.reason.contains("burst"), "{}", d.reason);
}

#[tokio::test]
async fn without_a_max_the_same_burst_raises_nothing() {
    let view = bursting(&chat(""));
    let end = view.last_sample_ms().unwrap();
    let report = Brain::builtin(BrainConfig::default()).analyse(&view, end).await;
    let d = &report.decisions[0];
    let raised = d.budget.as_ref().is_some_and(|b| {
        b.inference_queue_priority.is_some_and(|p| p > 50) || b.max_response_time_ms.is_some_and(|t| t > 30_000)
    });
    assert!(!raised, "the default envelope never raises: {:?} {}", d.budget, d.reason);
}

/// Two hours at about 10 a minute, then the burst: some 1,700 inferences since start.
#[tokio::test]
async fn a_met_maintenance_bound_restarts_after_the_hysteresis_and_a_far_one_does_not() {
    for (bound, restart) in [(1_000u64, true), (100_000, false)] {
        let spec = PersonaSpec::from_toml_str(&format!(
            "name = \"chat\"\ncommand = \"srv\"\nimportance = \"background\"\n[maintenance]\nrestart_after_inferences = {bound}\n"
        ))
        .unwrap();
        let view = bursting(&spec);
        let end = view.last_sample_ms().unwrap();
        let mut brain = Brain::builtin(BrainConfig::default());
        let mut last = None;
        for cycle in 0..3 {
            let r = brain.analyse(&view, end + cycle * MIN).await;
            last = Some(r.decisions[0].clone());
            if cycle == 0 && restart {
                // the policy is a condition like any other: it must hold for the hysteresis cycles
                let d = last.as_ref().unwrap();
                assert_eq!(d.action, mindmesh_core::Action::Investigate, "{}", d.reason);
                assert!(d.reason.contains("scheduled maintenance due"), "{}", d.reason);
            }
        }
        let d = last.unwrap();
        if restart {
            assert_eq!(d.action, mindmesh_core::Action::Restart, "{}", d.reason);
            assert!(d.reason.starts_with("scheduled maintenance: "), "{}", d.reason);
            assert!(d.reason.contains("≥ restart_after_inferences 1,000"), "{}", d.reason);
        } else {
            assert_eq!(d.action, mindmesh_core::Action::Continue, "{}", d.reason);
        }
    }
}

/// The schedule is the operator's policy: an LLM that answers `continue` for a persona whose
/// bound is met does not keep it from its restart.
#[tokio::test]
async fn the_llm_analyst_honours_the_schedule_too() {
    use std::sync::Arc;

    use mindmesh_brain::llm::{Reply, ScriptedLlm};
    let spec = PersonaSpec::from_toml_str(
        "name = \"chat\"\ncommand = \"srv\"\nimportance = \"background\"\n[maintenance]\nrestart_after_inferences = 1000\n",
    )
    .unwrap();
    let view = bursting(&spec);
    let end = view.last_sample_ms().unwrap();
    let said = serde_json::json!({"decisions": [
        {"persona": "chat", "action": "continue", "reason": "looks fine", "target": null, "confidence": 0.9}
    ]})
    .to_string();
    let script: Vec<Reply> = (0..3).map(|_| Reply::content(said.clone())).collect();
    let mut brain = Brain::with_llm(BrainConfig::default(), Arc::new(ScriptedLlm::new(script)));
    let mut last = None;
    for cycle in 0..3 {
        last = Some(brain.analyse(&view, end + cycle * MIN).await);
    }
    let r = last.unwrap();
    assert_eq!(r.analyst_used, mindmesh_core::AnalystKind::Llm, "{:?}", r.fallback);
    let d = &r.decisions[0];
    assert_eq!(d.action, mindmesh_core::Action::Restart, "{}", d.reason);
    assert!(d.reason.starts_with("scheduled maintenance: "), "{}", d.reason);
}
