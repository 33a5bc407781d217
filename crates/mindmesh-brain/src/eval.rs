//! Scoring analysts on scenarios, as FORMAT.md defines it: a decision is correct when its
//! action is accepted (a `migrate` must also name another node of the scenario, one of
//! `migrate_to` where given); a disruptive action where nothing disruptive is accepted is a
//! disruptive false positive; a non-disruptive action where only disruptive ones are accepted
//! is a miss; no decision is wrong.

use std::collections::BTreeMap;

use mindmesh_core::config::BrainConfig;
use mindmesh_core::{Action, Decision};
use serde::Serialize;

use crate::brain::{Brain, CycleReport};
use crate::budget::Direction;
use crate::scenario::{Expectation, Scenario};
use crate::view::PersonaView;

/// One persona of one scenario, judged.
#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    pub scenario: String,
    pub persona: String,
    pub decision: Option<Decision>,
    pub accept: Vec<Action>,
    /// False in an unlabelled scenario (a live snapshot): shown, not scored.
    pub labelled: bool,
    pub correct: bool,
    pub disruptive_fp: bool,
    pub missed: bool,
}

pub fn judge(scenario: &Scenario, decisions: &[Decision]) -> Vec<Judged> {
    scenario
        .view
        .personas
        .iter()
        .map(|p| {
            let e = scenario.expect.get(&p.id);
            let d = decisions.iter().find(|d| d.persona == p.id).cloned();
            let (correct, disruptive_fp, missed) = match (&d, e) {
                (Some(d), Some(e)) => score_one(d, e, p, scenario),
                _ => (false, false, false),
            };
            Judged {
                scenario: scenario.name.clone(),
                persona: p.id.clone(),
                decision: d,
                accept: e.map(|e| e.accept.clone()).unwrap_or_default(),
                labelled: e.is_some(),
                correct,
                disruptive_fp,
                missed,
            }
        })
        .collect()
}

fn score_one(d: &Decision, e: &Expectation, p: &PersonaView, s: &Scenario) -> (bool, bool, bool) {
    let own_node = p.node.as_str();
    // a budget change rides on a non-disruptive action: `budget` in accept takes it as such
    let mut correct = e.accept.contains(&d.action)
        || (d.budget.is_some() && !d.action.is_disruptive() && e.accept.contains(&Action::Budget));
    // and each field named in `expect.budget` must move one of the ways it allows
    correct &= e
        .budget
        .iter()
        .all(|(&field, dirs)| dirs.contains(&Direction::of(field, p.budget.as_ref(), d.budget.as_ref())));
    if correct && d.action == Action::Migrate {
        correct = d.target.as_deref().is_some_and(|t| {
            t != own_node
                && s.view.nodes.iter().any(|n| n.id == t)
                && e.migrate_to.as_ref().is_none_or(|m| m.iter().any(|x| x == t))
        });
    }
    let any_disruptive = e.accept.iter().any(|a| a.is_disruptive());
    let only_disruptive = e.accept.iter().all(|a| a.is_disruptive());
    let disruptive_fp = d.action.is_disruptive() && !any_disruptive;
    let missed = !d.action.is_disruptive() && only_disruptive;
    (correct, disruptive_fp, missed)
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct ActionScore {
    /// Decided this action and it was accepted.
    pub hits: usize,
    /// Decided this action.
    pub decided: usize,
    /// Personas where this action was accepted and no other accepted action was chosen.
    pub needed: usize,
}

impl ActionScore {
    pub fn precision(&self) -> Option<f64> {
        (self.decided > 0).then(|| self.hits as f64 / self.decided as f64)
    }
    pub fn recall(&self) -> Option<f64> {
        (self.needed > 0).then(|| self.hits as f64 / self.needed as f64)
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub personas: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub disruptive_false_positives: usize,
    pub missed: usize,
    pub per_action: BTreeMap<Action, ActionScore>,
}

pub fn summarize(judged: &[Judged]) -> Summary {
    let mut s = Summary { personas: judged.iter().filter(|j| j.labelled).count(), ..Default::default() };
    for j in judged.iter().filter(|j| j.labelled) {
        s.correct += usize::from(j.correct);
        s.disruptive_false_positives += usize::from(j.disruptive_fp);
        s.missed += usize::from(j.missed);
        let chosen = j.decision.as_ref().map(|d| d.action);
        if let Some(a) = chosen {
            let e = s.per_action.entry(a).or_default();
            e.decided += 1;
            e.hits += usize::from(j.correct);
        }
        for &a in &j.accept {
            // an accepted alternative that was chosen instead does not count against `a`
            if j.correct && chosen != Some(a) {
                continue;
            }
            s.per_action.entry(a).or_default().needed += 1;
        }
    }
    s.accuracy = if s.personas == 0 { 0.0 } else { s.correct as f64 / s.personas as f64 };
    s
}

/// Which analyst to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalAnalyst {
    Builtin,
    Llm,
    Naive,
}

/// A fresh brain per scenario, primed with the samples before the end (so hysteresis sees
/// how long each condition has lasted), then one analysis as of the last sample.
pub async fn run_scenario(
    scenario: &Scenario,
    analyst: EvalAnalyst,
    config: &BrainConfig,
    make_llm: &dyn Fn() -> Brain,
) -> CycleReport {
    let mut brain = match analyst {
        EvalAnalyst::Builtin => Brain::builtin(config.clone()),
        EvalAnalyst::Naive => Brain::naive(config.clone()),
        EvalAnalyst::Llm => make_llm(),
    };
    if analyst != EvalAnalyst::Naive {
        for t in scenario.priming_times(config.guardrails.hysteresis_cycles) {
            brain.prime(&scenario.view, t);
        }
    }
    brain.analyse(&scenario.view, scenario.end_ms).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use mindmesh_core::AnalystKind;

    fn scenario() -> Scenario {
        let text = r#"{
          "format": "mindmesh-scenario/1", "name": "s", "interval_s": 60,
          "nodes": [{"id": "a", "cpu_cores": 4, "memory_mb": 8192, "series": {"t": [0], "cpu_percent": [1], "memory_used_mb": [1]}},
                    {"id": "b", "cpu_cores": 4, "memory_mb": 8192, "series": {"t": [0], "cpu_percent": [1], "memory_used_mb": [1]}}],
          "personas": [
            {"id": "leaky", "node": "a", "series": {"t": [0], "memory_mb": [1]}},
            {"id": "fine", "node": "a", "series": {"t": [0], "memory_mb": [1]}},
            {"id": "hog", "node": "a", "series": {"t": [0], "memory_mb": [1]}},
            {"id": "shared", "node": "a", "series": {"t": [0], "memory_mb": [1]}}],
          "expect": {"leaky": {"accept": ["restart"]}, "fine": {"accept": ["continue"]},
                     "hog": {"accept": ["migrate", "throttle"], "migrate_to": ["b"]},
                     "shared": {"accept": ["continue", "investigate"]}}
        }"#;
        crate::scenario::parse(std::path::Path::new("s.json"), text).unwrap()
    }

    fn d(p: &str, a: Action, target: Option<&str>) -> Decision {
        let mut d = Decision::new(p, a, "r", 0.5, AnalystKind::Builtin);
        d.target = target.map(str::to_owned);
        d
    }

    #[test]
    fn scores_as_format_md_says() {
        let s = scenario();
        let j = judge(
            &s,
            &[
                d("leaky", Action::Investigate, None),
                d("fine", Action::Restart, None),
                d("hog", Action::Migrate, Some("a")),
                d("shared", Action::Investigate, None),
            ],
        );
        let by = |p: &str| j.iter().find(|x| x.persona == p).unwrap();
        assert!(!by("leaky").correct && by("leaky").missed);
        assert!(!by("fine").correct && by("fine").disruptive_fp);
        assert!(!by("hog").correct, "migrate to its own node is wrong");
        assert!(by("shared").correct);
        let sum = summarize(&j);
        assert_eq!((sum.correct, sum.disruptive_false_positives, sum.missed), (1, 1, 1));
        assert_eq!(sum.per_action[&Action::Investigate].precision(), Some(0.5));
        // "continue" was accepted for `shared` but investigate was chosen, correctly: not needed
        assert_eq!(sum.per_action[&Action::Continue].needed, 1);
        let j = judge(&s, &[d("hog", Action::Migrate, Some("b"))]);
        assert!(j.iter().find(|x| x.persona == "hog").unwrap().correct);
        assert_eq!(summarize(&j).correct, 1, "personas without a decision are wrong");
    }
}
