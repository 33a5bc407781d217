//! Strict reading of the LLM's answer. Anything that is not a well-formed plan — not JSON, an
//! unknown persona, a persona twice, an unknown action, a migration without a real target, a
//! confidence outside 0–1, an empty reason — rejects the whole answer, and the cycle falls back
//! to the built-in analyst. Personas the answer leaves out are decided by the built-in analyst.

use std::collections::HashMap;

use mindmesh_core::{Action, AnalystKind, BudgetPatch, Decision};
use serde::Deserialize;

use crate::budget::Field;
use crate::error::BrainError;
use crate::view::MeshView;

/// Longest reason kept from the model.
pub const MAX_LLM_REASON: usize = 300;
/// Largest answer read.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    decisions: Vec<Item>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    persona: String,
    reason: String,
    action: String,
    #[serde(default)]
    target: Option<String>,
    confidence: f64,
    /// Budget changes (the guardrails keep what the brain may move and clamp it to the
    /// persona's envelope).
    #[serde(default)]
    budget: Option<BudgetAnswer>,
}

/// What the prompt asks for — a list of `{field, value, reason}` — or a budget patch as an
/// object (field: value), which models write too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BudgetAnswer {
    Changes(Vec<BudgetChange>),
    Patch(BudgetPatch),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetChange {
    field: String,
    value: f64,
    #[serde(default)]
    reason: String,
}

/// Longest reason kept for one budget change.
pub const MAX_BUDGET_REASON: usize = 100;

/// The changes as one patch, and their reasons for the decision's (`priority 90: a burst`).
/// A field the brain may not move (the memory budget) is kept, for the guardrails to refuse
/// and say so; a field the budget does not have, or one named twice, is not a plan.
fn budget_patch(changes: Vec<BudgetChange>) -> Result<(BudgetPatch, Vec<String>), String> {
    if changes.len() > 2 * Field::ALL.len() {
        return Err(format!("{} budget changes", changes.len()));
    }
    let mut patch = BudgetPatch::default();
    let mut why = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for c in changes {
        let name = c.field.trim();
        if seen.iter().any(|s| s == name) {
            return Err(format!("budget field {name:?} twice"));
        }
        if !c.value.is_finite() {
            return Err(format!("budget {name:?}: value {}", c.value));
        }
        let short = match Field::parse(name).or_else(|| Field::ALL.into_iter().find(|f| f.short() == name)) {
            Some(f) => {
                f.set(&mut patch, c.value);
                f.short()
            }
            None if name == "max_memory_mb" => {
                patch.max_memory_mb = Some(c.value.clamp(0.0, u64::MAX as f64) as u64);
                "max_memory_mb"
            }
            None => return Err(format!("unknown budget field {name:?}")),
        };
        seen.push(name.to_owned());
        let mut r: String = c.reason.chars().map(|ch| if ch.is_control() { ' ' } else { ch }).collect();
        mindmesh_core::event::truncate_utf8(&mut r, MAX_BUDGET_REASON);
        let r = r.trim();
        why.push(if r.is_empty() { format!("{short} {}", c.value) } else { format!("{short} {}: {r}", c.value) });
    }
    Ok((patch, why))
}

/// The JSON object in `content`: the whole text, or inside a code fence, or between the first
/// `{` and the last `}` (models like to chat around it).
fn json_text(content: &str) -> &str {
    let t = content.trim();
    if t.starts_with('{') {
        return t;
    }
    match (t.find('{'), t.rfind('}')) {
        (Some(a), Some(b)) if b > a => &t[a..=b],
        _ => t,
    }
}

/// Validated decisions by view index, for the personas in `included` that the answer covers.
pub fn parse(content: &str, included: &[usize], view: &MeshView) -> Result<HashMap<usize, Decision>, BrainError> {
    if content.len() > MAX_ANSWER_BYTES {
        return Err(BrainError::LlmInvalid(format!("answer of {} bytes is too large", content.len())));
    }
    let answer: Answer =
        serde_json::from_str(json_text(content)).map_err(|e| BrainError::LlmInvalid(format!("not a plan: {e}")))?;
    let by_id: HashMap<&str, usize> = included.iter().map(|&i| (view.personas[i].id.as_str(), i)).collect();
    let mut out = HashMap::new();
    for (k, item) in answer.decisions.into_iter().enumerate() {
        let bad = |why: String| BrainError::LlmInvalid(format!("decisions[{k}]: {why}"));
        let Some(&i) = by_id.get(item.persona.as_str()) else {
            return Err(bad(format!("unknown persona {:?}", item.persona)));
        };
        if out.contains_key(&i) {
            return Err(bad(format!("persona {:?} decided twice", item.persona)));
        }
        let action =
            Action::parse(item.action.trim()).ok_or_else(|| bad(format!("unknown action {:?}", item.action)))?;
        if !item.confidence.is_finite() || !(0.0..=1.0).contains(&item.confidence) {
            return Err(bad(format!("confidence {} outside 0..1", item.confidence)));
        }
        let mut reason: String = item.reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        if reason.trim().is_empty() {
            return Err(bad("empty reason".into()));
        }
        mindmesh_core::event::truncate_utf8(&mut reason, MAX_LLM_REASON);
        let p = &view.personas[i];
        let target = item.target.filter(|t| !t.trim().is_empty());
        if action == Action::Migrate {
            match &target {
                Some(t) if t != &p.node && view.nodes.iter().any(|n| &n.id == t) => {}
                Some(t) => return Err(bad(format!("migrate target {t:?} is not another node"))),
                None => return Err(bad("migrate without a target".into())),
            }
        }
        let (budget, budget_why) = match item.budget {
            None => (None, Vec::new()),
            Some(BudgetAnswer::Patch(b)) => (Some(b), Vec::new()),
            Some(BudgetAnswer::Changes(c)) => {
                let (b, why) = budget_patch(c).map_err(bad)?;
                (Some(b), why)
            }
        };
        let mut text = format!("llm: {}", reason.trim());
        if !budget_why.is_empty() {
            text.push_str(&format!("; asks budget {}", budget_why.join(", ")));
        }
        let mut d = Decision::new(&p.id, action, text, item.confidence as f32, AnalystKind::Llm);
        if action == Action::Migrate {
            d.target = target;
        }
        if action == Action::Throttle {
            d.throttle_multiplier = Some(0.5);
        }
        d.budget = budget.filter(|b| !b.is_empty());
        out.insert(i, d);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{HostSeries, NodeView, PersonaSeries, PersonaView};
    use mindmesh_core::{Importance, PersonaKind, Phase};

    fn view() -> MeshView {
        let node =
            |id: &str| NodeView { id: id.into(), cpu_cores: 4, memory_total_mb: 8192.0, series: HostSeries::default() };
        let persona = |id: &str| PersonaView {
            id: id.into(),
            node: "a".into(),
            importance: Importance::UserFacing,
            kind: PersonaKind::Api,
            model: None,
            budget: None,
            envelope: Default::default(),
            memory_limit_mb: None,
            uptime_ms_at_first: None,
            phase: Phase::Running,
            series: PersonaSeries::default(),
            events: vec![],
            recent_actions: vec![],
            maintenance: Default::default(),
        };
        MeshView { nodes: vec![node("a"), node("b")], personas: vec![persona("p1"), persona("p2")] }
    }

    #[test]
    fn accepts_a_good_plan_even_fenced() {
        let v = view();
        let s = "Here you go:\n```json\n{\"decisions\":[{\"persona\":\"p1\",\"reason\":\"leak\",\"action\":\"restart\",\"target\":null,\"confidence\":0.9},{\"persona\":\"p2\",\"reason\":\"hot\",\"action\":\"migrate\",\"target\":\"b\",\"confidence\":0.7}]}\n```";
        let d = parse(s, &[0, 1], &v).unwrap();
        assert_eq!(d[&0].action, Action::Restart);
        assert_eq!(d[&1].target.as_deref(), Some("b"));
        assert!(d[&0].reason.starts_with("llm: "));
    }

    #[test]
    fn rejects_what_is_not_a_plan() {
        let v = view();
        let item = |p: &str, a: &str, t: &str, c: f64| {
            format!("{{\"persona\":\"{p}\",\"reason\":\"r\",\"action\":\"{a}\",\"target\":{t},\"confidence\":{c}}}")
        };
        let plan = |items: &[String]| format!("{{\"decisions\":[{}]}}", items.join(","));
        let bad = [
            "not json at all".to_string(),
            "{\"decisions\": [".to_string(),
            plan(&[item("ghost", "restart", "null", 0.5)]),
            plan(&[item("p1", "restart", "null", 0.5), item("p1", "continue", "null", 0.5)]),
            plan(&[item("p1", "explode", "null", 0.5)]),
            plan(&[item("p1", "migrate", "null", 0.5)]),
            plan(&[item("p1", "migrate", "\"a\"", 0.5)]),
            plan(&[item("p1", "restart", "null", 1.5)]),
            "{\"decisions\":[{\"persona\":\"p1\",\"reason\":\" \",\"action\":\"continue\",\"target\":null,\"confidence\":0.5}]}".into(),
            "{\"decisions\":[],\"note\":\"extra\"}".into(),
        ];
        for s in bad {
            assert!(parse(&s, &[0, 1], &v).is_err(), "accepted {s}");
        }
        // a persona outside the prompt is unknown too
        assert!(parse(&plan(&[item("p2", "continue", "null", 0.5)]), &[0], &v).is_err());
    }
}
