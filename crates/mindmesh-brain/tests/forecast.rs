//! The seed's predictive fact: time until memory reaches its budget or hard limit, forecast
//! from the fitted trend, as an anomaly with its horizon — and never from noise.

mod common;

use common::scenario;
use mindmesh_brain::anomaly::{AnomalyKind, FORECAST_HORIZON_MIN};
use mindmesh_brain::scenario::Scenario;
use mindmesh_brain::{Brain, CycleReport};
use mindmesh_core::Action;
use mindmesh_core::config::BrainConfig;

async fn cycle(s: &Scenario) -> CycleReport {
    let mut brain = Brain::builtin(BrainConfig::default());
    for t in s.priming_times(brain.config().guardrails.hysteresis_cycles) {
        brain.prime(&s.view, t);
    }
    brain.analyse(&s.view, s.end_ms).await
}

/// (horizon in minutes, description) of `persona`'s forecast, if it has one.
fn forecast(r: &CycleReport, persona: &str) -> Option<(f32, String)> {
    let h = r.health.iter().find(|h| h.persona == persona).unwrap();
    h.anomalies
        .iter()
        .find(|a| a.kind == AnomalyKind::MemoryForecast)
        .map(|a| (a.horizon_min.unwrap(), a.description.clone()))
}

fn decision(r: &CycleReport, persona: &str) -> (Action, String) {
    let d = r.decisions.iter().find(|d| d.persona == persona).unwrap();
    (d.action, d.reason.clone())
}

#[tokio::test]
async fn a_budget_minutes_away_is_forecast_and_watched() {
    let r = cycle(&scenario("f-budget-in-13-min")).await;
    let (t, text) = forecast(&r, "indexer").expect("a forecast");
    assert!((5.0..=20.0).contains(&t), "{t} min: {text}");
    assert!(text.starts_with("memory reaches its budget 1100 MB in ~"), "{text}");
    assert!(text.contains("MB/min, fitted over") && text.contains("samples"), "{text}");
    let (action, why) = decision(&r, "indexer");
    assert_eq!(action, Action::Investigate, "{why}");
    assert!(why.contains("memory reaches its budget 1100 MB"), "{why}");
    for chat in ["chat-0", "chat-1"] {
        assert!(forecast(&r, chat).is_none(), "{chat}");
    }
}

#[tokio::test]
async fn a_hard_limit_within_the_hour_is_forecast() {
    let r = cycle(&scenario("f-limit-in-50-min")).await;
    let (t, text) = forecast(&r, "scraper").expect("a forecast");
    assert!((30.0..=FORECAST_HORIZON_MIN).contains(&t), "{t} min: {text}");
    assert!(text.starts_with("memory reaches its hard limit 1024 MB"), "{text}");
    assert_eq!(decision(&r, "scraper").0, Action::Investigate);
}

/// The traps: memory jittering just under its budget, and a GC sawtooth whose peaks touch it.
/// A fitted slope of noise has no horizon.
#[tokio::test]
async fn noise_and_sawtooth_near_a_budget_forecast_nothing() {
    for (name, persona) in [("f-trap-noisy-flat-near-budget", "noisy"), ("f-trap-sawtooth-to-budget", "gc-heavy")] {
        let r = cycle(&scenario(name)).await;
        for h in &r.health {
            assert!(
                h.anomalies.iter().all(|a| a.kind != AnomalyKind::MemoryForecast),
                "{name}: {}: {:?}",
                h.persona,
                h.anomalies
            );
        }
        let (action, why) = decision(&r, persona);
        assert_eq!(action, Action::Continue, "{name}: {why}");
    }
}
