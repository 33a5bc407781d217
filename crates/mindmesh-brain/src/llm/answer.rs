//! Strict reading of the LLM's answer. Anything that is not a well-formed plan — not JSON, an
//! unknown persona, a persona twice, an unknown action, a migration without a real target, a
//! confidence outside 0–1, an empty reason — rejects the whole answer, and the cycle falls back
//! to the built-in analyst. Personas the answer leaves out are decided by the built-in analyst.

use std::collections::HashMap;

use mindmesh_core::{Action, AnalystKind, BudgetPatch, Decision};
use serde::Deserialize;

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
    /// A budget change (any of the budget's fields; the guardrails keep what the brain may
    /// move and clamp it to the persona's envelope).
    #[serde(default)]
    budget: Option<BudgetPatch>,
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
        let mut d =
            Decision::new(&p.id, action, format!("llm: {}", reason.trim()), item.confidence as f32, AnalystKind::Llm);
        if action == Action::Migrate {
            d.target = target;
        }
        if action == Action::Throttle {
            d.throttle_multiplier = Some(0.5);
        }
        d.budget = item.budget.filter(|b| !b.is_empty());
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
